/* bmat.c - packed bf16 weight matrices for inference (layout and rounding in bmat.h): packing
 * from f32 or from stored bf16, row reads, and the product, a GEMV for a few rows (AVX512-BF16
 * or the scalar reference, bit-identical) and ftq_gemm_bf16 for more. */
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "kernels/bmat.h"
#include "kernels/simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PANEL 16

static inline float bf16_f32(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void ftq_bmat_pack_f32(ftq_bmat *m, const float *src, size_t so, size_t si)
{
    ftq_bf16_pack_b(m->b, src, m->rows, m->cols, so, si);
}

void ftq_bmat_pack_bf16(ftq_bmat *m, const void *src, size_t so, size_t si)
{
    const int rows = m->rows, cols = m->cols, kp = ftq_bf16_pad32(cols);
    const int npan = ftq_bf16_pad32(rows) / PANEL;
    const size_t pstride = (size_t)kp * PANEL;
    const unsigned char *s = src;
    long work = (long)rows * cols;
    (void)work;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 262144)
#endif
    for (int p = 0; p < npan; p++) {
        uint16_t *d = m->b + (size_t)p * pstride;
        memset(d, 0, sizeof(uint16_t) * pstride);
        for (int j = 0; j < PANEL && p * PANEL + j < rows; j++) {
            const unsigned char *row = s + 2 * (size_t)(p * PANEL + j) * so;
            if (si == 1) {
                for (int r = 0; 2 * r + 1 < cols; r++) /* a pair is 4 contiguous bytes */
                    memcpy(d + (size_t)r * 32 + 2 * j, row + 4 * (size_t)r, 4);
                if (cols & 1)
                    memcpy(d + (size_t)(cols >> 1) * 32 + 2 * j, row + 2 * (size_t)(cols - 1), 2);
            } else {
                for (int i = 0; i < cols; i++)
                    memcpy(d + (size_t)(i >> 1) * 32 + 2 * j + (i & 1), row + 2 * (size_t)i * si, 2);
            }
        }
    }
}

float ftq_bmat_at(const ftq_bmat *m, int o, int i) { return ftq_bf16_packed_b_at(m->b, m->cols, o, i); }

void ftq_bmat_row(const ftq_bmat *m, int o, float *out)
{
    const int kp = ftq_bf16_pad32(m->cols);
    const uint16_t *d = m->b + (size_t)(o / PANEL) * kp * PANEL + 2 * (o % PANEL);
    for (int i = 0; i < m->cols; i++)
        out[i] = bf16_f32(d[(size_t)(i >> 1) * 32 + (i & 1)]);
}

size_t ftq_bmat_scratch_bytes(const ftq_bmat *m, int T)
{
    return T > 0 ? ftq_bf16_a_elems(T, m->cols) * sizeof(uint16_t) : 0;
}

/* ---- GEMV ------------------------------------------------------------------------------
 * xa: T rows of kp bf16 activations (zeros past cols). Outputs [j0, j1) of each row. */

/* GCC 12 at -O2 / -O3 vectorized the pair loop of this function wrongly (even and odd
 * products of a pair mixed up: 1*1 + 3*2 came out as 8, measured); the reference stays
 * scalar code. */
__attribute__((optimize("no-tree-loop-vectorize"))) static void gemv_scalar(float *y, const uint16_t *xa, const ftq_bmat *m, const float *bias, int T, int j0, int j1)
{
    const int kp = ftq_bf16_pad32(m->cols);
    for (int t = 0; t < T; t++) {
        const uint16_t *a = xa + (size_t)t * kp;
        for (int p = j0 / PANEL; p * PANEL < j1; p++) { /* one panel: 16 outputs in lanes */
            const uint16_t *b = m->b + (size_t)p * kp * PANEL;
            float c[PANEL] = {0};
            for (int r = 0; r < kp / 2; r++) { /* odd product first, as gemm_bf16's reference */
                float a0 = bf16_f32(a[2 * r]), a1 = bf16_f32(a[2 * r + 1]);
                const uint16_t *br = b + (size_t)r * 32;
                for (int l = 0; l < PANEL; l++) {
                    float s = c[l] + a1 * bf16_f32(br[2 * l + 1]);
                    c[l] = s + a0 * bf16_f32(br[2 * l]);
                }
            }
            for (int l = 0; l < PANEL && p * PANEL + l < j1; l++) {
                int j = p * PANEL + l;
                y[(size_t)t * m->rows + j] = bias ? bias[j] + c[l] : c[l];
            }
        }
    }
}

#if FTQ_HAVE_X86
#define FTQ_AVX512BF16_ __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* NP panels (16 outputs each) starting at panel p, T rows: NP * T independent accumulators,
 * each NP weight rows loaded once per k-pair and used by every row. */
FTQ_AVX512BF16_ static inline __attribute__((always_inline)) void
gemv_panels(float *y, const uint16_t *xa, const ftq_bmat *m, const float *bias, int T, int NP, int p)
{
    const int kp = ftq_bf16_pad32(m->cols), n = m->rows;
    const size_t pstride = (size_t)kp * PANEL;
    const uint16_t *b = m->b + (size_t)p * pstride;
    __m512 c[FTQ_BMAT_GEMV_T - 1][4];
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NP; q++)
            c[t][q] = _mm512_setzero_ps();
    for (int r = 0; r < kp / 2; r++) {
        __m512bh v[4];
        for (int q = 0; q < NP; q++)
            v[q] = (__m512bh)_mm512_loadu_si512(b + q * pstride + (size_t)r * 32);
        for (int t = 0; t < T; t++) {
            uint32_t pair;
            memcpy(&pair, xa + (size_t)t * kp + 2 * r, 4);
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            for (int q = 0; q < NP; q++)
                c[t][q] = _mm512_dpbf16_ps(c[t][q], av, v[q]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NP; q++) {
            int j0 = (p + q) * PANEL, nj = n - j0 < PANEL ? n - j0 : PANEL;
            if (nj <= 0)
                continue;
            __mmask16 k = (__mmask16)((1u << nj) - 1);
            __m512 s = c[t][q];
            if (bias)
                s = _mm512_add_ps(_mm512_maskz_loadu_ps(k, bias + j0), s);
            _mm512_mask_storeu_ps(y + (size_t)t * n + j0, k, s);
        }
}

FTQ_AVX512BF16_ static void gemv_avx512(float *y, const uint16_t *xa, const ftq_bmat *m, const float *bias, int T,
                                         int p)
{
    /* four panels at a time (the panel count is even: rows are padded to 32) */
    int four = (ftq_bf16_pad32(m->rows) / PANEL - p) >= 4;
    switch (T * 2 + four) {
    case 2: gemv_panels(y, xa, m, bias, 1, 2, p); break;
    case 3: gemv_panels(y, xa, m, bias, 1, 4, p); break;
    case 4: gemv_panels(y, xa, m, bias, 2, 2, p); break;
    case 5: gemv_panels(y, xa, m, bias, 2, 4, p); break;
    case 6: gemv_panels(y, xa, m, bias, 3, 2, p); break;
    default: gemv_panels(y, xa, m, bias, 3, 4, p); break;
    }
}
#endif

_Static_assert(FTQ_BMAT_GEMV_T == 4, "gemv_avx512 handles 1 to 3 rows");

static void gemv(ftq_bf16_path path, float *y, const uint16_t *xa, const ftq_bmat *m, const float *bias, int T)
{
    const int npan = ftq_bf16_pad32(m->rows) / PANEL, ngroups = (npan + 3) / 4;
    long work = (long)m->rows * m->cols * T;
    (void)work;
    (void)path;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 65536)
#endif
    for (int g = 0; g < ngroups; g++) {
#if FTQ_HAVE_X86
        if (path == FTQ_BF16_AVX512 || path == FTQ_BF16_AMX) {
            gemv_avx512(y, xa, m, bias, T, 4 * g);
            continue;
        }
#endif
        int j0 = 4 * g * PANEL, j1 = j0 + 4 * PANEL < m->rows ? j0 + 4 * PANEL : m->rows;
        gemv_scalar(y, xa, m, bias, T, j0, j1);
    }
}

/* ---- the product ----------------------------------------------------------------------- */

int ftq_bmat_mul_path(ftq_bf16_path path, float *y, const float *x, const ftq_bmat *m, const float *bias, int T,
                      void *scratch)
{
    if (T <= 0 || m->rows <= 0)
        return FTQ_OK;
    if (path == FTQ_BF16_AUTO)
        path = ftq_bf16_best_path();
    else if (!ftq_bf16_path_available(path))
        path = FTQ_BF16_SCALAR;
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(ftq_bmat_scratch_bytes(m, T))))
        return ftq_set_error(FTQ_ENOMEM, "out of memory for the bf16 activations of %d rows", T);
    uint16_t *xa = scratch;
    const int kp = ftq_bf16_pad32(m->cols);
    if (T < FTQ_BMAT_GEMV_T) {
        for (int t = 0; t < T; t++) {
            uint16_t *d = xa + (size_t)t * kp;
            for (int i = 0; i < m->cols; i++)
                d[i] = ftq_f32_to_bf16(x[(size_t)t * m->cols + i]);
            memset(d + m->cols, 0, sizeof(uint16_t) * (size_t)(kp - m->cols));
        }
        gemv(path, y, xa, m, bias, T);
    } else {
        ftq_bf16_pack_a(xa, x, T, m->cols, (size_t)m->cols, 1);
        ftq_gemm_bf16(path, y, (size_t)m->rows, xa, m->b, T, m->rows, m->cols, bias, 0);
    }
    free(own);
    return FTQ_OK;
}

int ftq_bmat_mul(float *y, const float *x, const ftq_bmat *m, const float *bias, int T, void *scratch)
{
    return ftq_bmat_mul_path(FTQ_BF16_AUTO, y, x, m, bias, T, scratch);
}
