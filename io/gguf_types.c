/* gguf_types.c - ggml tensor types: packed block structs (sizes asserted against ggml's
 * ggml-common.h layouts), the traits table, and a scalar reference dequantizer per type.
 * Each dequantizer performs ggml's float operations in ggml's order (dequantize_row_* in
 * ggml-quants.c), so its output is bit-identical to ggml and to the gguf Python package. */
#include "ftq.h"
#include "ftq_gguf.h"

#include <string.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t f16_t; /* IEEE half, converted with ftq_f16_to_f32 */

typedef struct {
    f16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
typedef struct {
    f16_t d, m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
typedef struct {
    f16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
typedef struct {
    f16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
typedef struct {
    f16_t d;
    int8_t qs[QK8_0];
} block_q8_0;
typedef struct {
    uint8_t scales[QK_K / 16]; /* 4-bit scale | 4-bit min, per 16 */
    uint8_t qs[QK_K / 4];      /* 2-bit quants */
    f16_t d, dmin;
} block_q2_K;
typedef struct {
    uint8_t hmask[QK_K / 8]; /* high bit of the 3-bit quants */
    uint8_t qs[QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];      /* 16 6-bit scales */
    f16_t d;
} block_q3_K;
typedef struct {
    f16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE]; /* 8 6-bit scales and mins */
    uint8_t qs[QK_K / 2];
} block_q4_K;
typedef struct {
    f16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    f16_t d;
} block_q6_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 block is 24 bytes");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K block is 84 bytes");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K block is 110 bytes");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K block is 144 bytes");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K block is 176 bytes");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K block is 210 bytes");

/* Blocks in a file have no alignment guarantee: each is copied out before use. */
#define LOAD(T, var, src, i)                                   \
    T var;                                                     \
    memcpy(&var, (const unsigned char *)(src) + (i) * sizeof(T), sizeof(T))

static float h2f(f16_t h) { return ftq_f16_to_f32(h); }

static void f32_rows(const void *src, float *y, size_t nb) { memcpy(y, src, nb * sizeof(float)); }

static void f16_rows(const void *src, float *y, size_t nb)
{
    const unsigned char *p = src;
    for (size_t i = 0; i < nb; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = ftq_f16_to_f32(h);
    }
}

static void bf16_rows(const void *src, float *y, size_t nb)
{
    const unsigned char *p = src;
    for (size_t i = 0; i < nb; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = ftq_bf16_to_f32(h);
    }
}

static void q4_0_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, y += QK4_0) {
        LOAD(block_q4_0, b, src, i);
        const float d = h2f(b.d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((b.qs[j] & 0x0f) - 8) * d;
            y[j + QK4_0 / 2] = (float)((b.qs[j] >> 4) - 8) * d;
        }
    }
}

static void q4_1_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, y += QK4_1) {
        LOAD(block_q4_1, b, src, i);
        const float d = h2f(b.d), m = h2f(b.m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(b.qs[j] & 0x0f) * d + m;
            y[j + QK4_1 / 2] = (float)(b.qs[j] >> 4) * d + m;
        }
    }
}

static void q5_0_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, y += QK5_0) {
        LOAD(block_q5_0, b, src, i);
        const float d = h2f(b.d);
        uint32_t qh;
        memcpy(&qh, b.qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)(((b.qs[j] & 0x0f) | xh0) - 16) * d;
            y[j + QK5_0 / 2] = (float)(((b.qs[j] >> 4) | xh1) - 16) * d;
        }
    }
}

static void q5_1_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, y += QK5_1) {
        LOAD(block_q5_1, b, src, i);
        const float d = h2f(b.d), m = h2f(b.m);
        uint32_t qh;
        memcpy(&qh, b.qh, 4);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)((b.qs[j] & 0x0f) | xh0) * d + m;
            y[j + QK5_1 / 2] = (float)((b.qs[j] >> 4) | xh1) * d + m;
        }
    }
}

static void q8_0_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, y += QK8_0) {
        LOAD(block_q8_0, b, src, i);
        const float d = h2f(b.d);
        for (int j = 0; j < QK8_0; j++)
            y[j] = (float)b.qs[j] * d;
    }
}

static void q2_K_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        LOAD(block_q2_K, b, src, i);
        const float d = h2f(b.d), min = h2f(b.dmin);
        const uint8_t *q = b.qs;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                uint8_t sc = b.scales[is++];
                float dl = d * (float)(sc & 0xf), ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l] >> shift) & 3)) - ml;
                sc = b.scales[is++];
                dl = d * (float)(sc & 0xf);
                ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

static void q3_K_rows(const void *src, float *y, size_t nb)
{
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    for (size_t i = 0; i < nb; i++) {
        LOAD(block_q3_K, b, src, i);
        const float d_all = h2f(b.d);
        const uint8_t *q = b.qs, *hm = b.hmask;
        uint8_t m = 1;
        /* unpack 16 6-bit scales: low 4 bits in bytes 0..7, high 2 bits in bytes 8..11 */
        uint32_t aux[4];
        memcpy(aux, b.scales, 12);
        uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int8_t scales[16];
        memcpy(scales, aux, 16);
        int is = 0;
        for (int n = 0; n < QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                float dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

/* The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void q4_K_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        LOAD(block_q4_K, b, src, i);
        const float d = h2f(b.d), min = h2f(b.dmin);
        const uint8_t *q = b.qs;
        int is = 0;
        for (int j = 0; j < QK_K; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is + 0, b.scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            scale_min_k4(is + 1, b.scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void q5_K_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        LOAD(block_q5_K, b, src, i);
        const float d = h2f(b.d), min = h2f(b.dmin);
        const uint8_t *ql = b.qs, *qh = b.qh;
        int is = 0;
        unsigned u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is + 0, b.scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            scale_min_k4(is + 1, b.scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

static void q6_K_rows(const void *src, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        LOAD(block_q6_K, b, src, i);
        const float d = h2f(b.d);
        const uint8_t *ql = b.ql, *qh = b.qh;
        const int8_t *sc = b.scales;
        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

static const struct {
    uint32_t id;
    ftq_ggml_traits tr;
} table[] = {
    {FTQ_GGML_F32, {"F32", 1, 4, f32_rows}},
    {FTQ_GGML_F16, {"F16", 1, 2, f16_rows}},
    {FTQ_GGML_BF16, {"BF16", 1, 2, bf16_rows}},
    {FTQ_GGML_Q4_0, {"Q4_0", QK4_0, sizeof(block_q4_0), q4_0_rows}},
    {FTQ_GGML_Q4_1, {"Q4_1", QK4_1, sizeof(block_q4_1), q4_1_rows}},
    {FTQ_GGML_Q5_0, {"Q5_0", QK5_0, sizeof(block_q5_0), q5_0_rows}},
    {FTQ_GGML_Q5_1, {"Q5_1", QK5_1, sizeof(block_q5_1), q5_1_rows}},
    {FTQ_GGML_Q8_0, {"Q8_0", QK8_0, sizeof(block_q8_0), q8_0_rows}},
    {FTQ_GGML_Q2_K, {"Q2_K", QK_K, sizeof(block_q2_K), q2_K_rows}},
    {FTQ_GGML_Q3_K, {"Q3_K", QK_K, sizeof(block_q3_K), q3_K_rows}},
    {FTQ_GGML_Q4_K, {"Q4_K", QK_K, sizeof(block_q4_K), q4_K_rows}},
    {FTQ_GGML_Q5_K, {"Q5_K", QK_K, sizeof(block_q5_K), q5_K_rows}},
    {FTQ_GGML_Q6_K, {"Q6_K", QK_K, sizeof(block_q6_K), q6_K_rows}},
};

const ftq_ggml_traits *ftq_ggml_type_info(uint32_t type)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].id == type)
            return &table[i].tr;
    return NULL;
}
