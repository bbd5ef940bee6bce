/* test_kquant.c - kernels/kquant.c: the q6k / q4k super-block schemes. The bytes dequantize
 * to the values of an independent transcription of ggml's dequantize_row_q6_K / _q4_K on the
 * reassembled 210 / 144-byte blocks; the error is within the scheme's step; the importance
 * search beats the unweighted one on the weighted error; packing keeps every value; every
 * matmul path (scalar and AVX-512 VNNI forced) equals the scalar reference on the row-major
 * bytes bit for bit over panel and row-tile tails; and the product is close to the f32
 * product of the dequantized weights. */
#include <stdlib.h>
#include <string.h>

#include "ftq_gguf.h"
#include "kernels/kquant.h"
#include "kernels/quant.h"
#include "model/qcheckpoint.h"
#include "quant/qcalib.h"
#include "tests/test_util.h"

static float *randw(ftq_rng *r, int rows, int cols)
{
    float *w = malloc(sizeof(float) * (size_t)rows * cols);
    for (int i = 0; i < rows * cols; i++)
        w[i] = ftq_rng_normal(r) * 0.05f;
    for (int i = 7; i < rows * cols; i += 131) /* a few outliers */
        w[i] *= 8.0f;
    for (int k = 256; k < 256 + 32 && rows > 1; k++) /* a zero sub-block in row 1 */
        w[cols + k] = 0.0f;
    for (int k = 0; k < 32 && rows > 2; k++) /* an all-positive sub-block in row 2 */
        w[2 * cols + k] = 0.01f + fabsf(w[2 * cols + k]);
    return w;
}

static float h2f(const uint8_t *p) { return ftq_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ggml's dequantize_row_q6_K on block_q6_K {ql[128], qh[64], scales[16], d}. */
static void ggml_q6k(const uint8_t *blk, float *y)
{
    const uint8_t *ql = blk, *qh = blk + 128;
    const int8_t *sc = (const int8_t *)(blk + 192);
    const float d = h2f(blk + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* ggml's dequantize_row_q4_K on block_q4_K {d, dmin, scales[12], qs[128]}. */
static void ggml_q4k(const uint8_t *blk, float *y)
{
    const uint8_t *q = blk + 16;
    const float d = h2f(blk), min = h2f(blk + 2);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < 256; j += 64) {
        scale_min_k4(is + 0, blk + 4, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, blk + 4, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

/* The ggml block of super-block s of row r: ftq's .qweight bytes with the f16 d put back. */
static void ggml_block(const ftq_qtensor *q, int r, int s, uint8_t *blk)
{
    const uint8_t *src = q->qs + (size_t)r * q->row_bytes;
    uint16_t h = ftq_f32_to_f16(q->scales[(size_t)r * q->ngroups + s]);
    if (q->scheme == FTQ_QSCHEME_Q6K) {
        memcpy(blk, src + (size_t)s * FTQ_Q6K_BYTES, FTQ_Q6K_BYTES);
        blk[208] = (uint8_t)(h & 255);
        blk[209] = (uint8_t)(h >> 8);
    } else {
        blk[0] = (uint8_t)(h & 255);
        blk[1] = (uint8_t)(h >> 8);
        memcpy(blk + 2, src + (size_t)s * FTQ_Q4K_BYTES, FTQ_Q4K_BYTES);
    }
}

static double werr(const float *w, const float *v, const double *imp, int rows, int cols)
{
    double e = 0;
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < cols; k++) {
            double d = (double)w[(size_t)r * cols + k] - v[(size_t)r * cols + k];
            e += imp[k] * d * d;
        }
    return e;
}

static void test_roundtrip_ggml(void)
{
    ftq_rng rng;
    ftq_rng_seed(&rng, 14);
    const int rows = 9, cols = 512;
    float *w = randw(&rng, rows, cols), *v = malloc(sizeof(float) * rows * cols);
    const ftq_qscheme sch[2] = {FTQ_QSCHEME_Q6K, FTQ_QSCHEME_Q4K};
    const double bound[2] = {0.03, 0.12}; /* relative rms error of 6 and 4 bits */
    for (int si = 0; si < 2; si++) {
        ftq_quant_params p = {sch[si], FTQ_QK, 1, 1};
        ftq_qtensor q;
        CU_ASSERT_EQUAL_FATAL(ftq_qtensor_quantize(&q, w, rows, cols, &p), FTQ_OK);
        CU_ASSERT_EQUAL(q.row_bytes, (size_t)(cols / 256) * (si == 0 ? 208 : 142));
        CU_ASSERT_EQUAL(ftq_qtensor_file_bytes(&q), (size_t)rows * (cols / 256) * (si == 0 ? 210 : 144));
        ftq_qtensor_dequantize(&q, v);
        int mismatch = 0;
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < cols / 256; s++) {
                uint8_t blk[210];
                float ref[256];
                ggml_block(&q, r, s, blk);
                if (si == 0)
                    ggml_q6k(blk, ref);
                else
                    ggml_q4k(blk, ref);
                mismatch += memcmp(ref, v + (size_t)r * cols + 256 * s, sizeof ref) != 0;
            }
        CU_ASSERT_EQUAL(mismatch, 0);
        ftq_qerror e;
        ftq_qerror_compute(w, v, (size_t)rows * cols, &e);
        printf("\n  %s rel rmse %.4f", si == 0 ? "q6k" : "q4k", e.rel_rmse);
        CU_ASSERT(e.rel_rmse < bound[si]);
        /* the zero sub-block stays exactly zero */
        int nz = 0;
        for (int k = 256; k < 288; k++)
            nz += v[cols + k] != 0.0f;
        CU_ASSERT_EQUAL(nz, 0);
        /* packing keeps every value */
        ftq_qmat m;
        CU_ASSERT_EQUAL_FATAL(ftq_qmat_pack(&m, &q, 0), FTQ_OK);
        float *v2 = malloc(sizeof(float) * rows * cols);
        ftq_qmat_dequantize(&m, v2);
        CU_ASSERT_EQUAL(memcmp(v, v2, sizeof(float) * rows * cols), 0);
        free(v2);
        ftq_qmat_free(&m);
        ftq_qtensor_free(&q);
    }
    free(w);
    free(v);
}

static void test_weighted_search(void)
{
    ftq_rng rng;
    ftq_rng_seed(&rng, 3);
    const int rows = 16, cols = 256;
    float *w = randw(&rng, rows, cols), *v = malloc(sizeof(float) * rows * cols);
    double *imp = malloc(sizeof(double) * cols);
    for (int k = 0; k < cols; k++)
        imp[k] = k % 17 == 0 ? 50.0 : 0.2 + 0.01 * (k % 7);
    const ftq_qscheme sch[2] = {FTQ_QSCHEME_Q6K, FTQ_QSCHEME_Q4K};
    for (int si = 0; si < 2; si++) {
        ftq_quant_params p = {sch[si], FTQ_QK, 1, 1};
        ftq_qtensor a, b;
        CU_ASSERT_EQUAL_FATAL(ftq_qtensor_quantize(&a, w, rows, cols, &p), FTQ_OK);
        CU_ASSERT_EQUAL_FATAL(ftq_qtensor_quantize_weighted(&b, w, rows, cols, &p, imp), FTQ_OK);
        ftq_qtensor_dequantize(&a, v);
        double ea = werr(w, v, imp, rows, cols);
        ftq_qtensor_dequantize(&b, v);
        double eb = werr(w, v, imp, rows, cols);
        printf("\n  %s weighted error: plain %.4g, importance %.4g", si == 0 ? "q6k" : "q4k", ea, eb);
        CU_ASSERT(eb < 0.9 * ea);
        ftq_qtensor_free(&a);
        ftq_qtensor_free(&b);
    }
    /* refusals: a width that is not a multiple of 256, gptq */
    ftq_quant_params p = {FTQ_QSCHEME_Q4K, FTQ_QK, 1, 1};
    ftq_qtensor q;
    CU_ASSERT_EQUAL(ftq_qtensor_quantize(&q, w, 2, 192, &p), FTQ_EINVAL);
    p.group = 32;
    CU_ASSERT_EQUAL(ftq_qtensor_quantize(&q, w, 2, 256, &p), FTQ_EINVAL);
    free(w);
    free(v);
    free(imp);
}

static void test_matmul_paths(void)
{
    ftq_rng rng;
    ftq_rng_seed(&rng, 5);
    const int cols = 512, outs[3] = {37, 16, 5}, Ts[7] = {1, 2, 3, 4, 7, 11, 13};
    const ftq_qscheme sch[2] = {FTQ_QSCHEME_Q6K, FTQ_QSCHEME_Q4K};
    int ran_simd = 0;
    for (int si = 0; si < 2; si++)
        for (int oi = 0; oi < 3; oi++) {
            const int rows = outs[oi];
            float *w = randw(&rng, rows, cols), *bias = malloc(sizeof(float) * rows);
            for (int o = 0; o < rows; o++)
                bias[o] = 0.1f * (float)o;
            ftq_quant_params p = {sch[si], FTQ_QK, 1, 1};
            ftq_qtensor q;
            ftq_qmat m;
            CU_ASSERT_EQUAL_FATAL(ftq_qtensor_quantize(&q, w, rows, cols, &p), FTQ_OK);
            CU_ASSERT_EQUAL_FATAL(ftq_qmat_pack(&m, &q, 0), FTQ_OK);
            float *deq = malloc(sizeof(float) * rows * cols);
            ftq_qtensor_dequantize(&q, deq);
            for (int ti = 0; ti < 7; ti++) {
                const int T = Ts[ti];
                float *x = malloc(sizeof(float) * T * cols), *yr = malloc(sizeof(float) * T * rows),
                      *y = malloc(sizeof(float) * T * rows);
                for (int i = 0; i < T * cols; i++)
                    x[i] = ftq_rng_normal(&rng) * (i % 97 == 3 ? 20.0f : 1.0f);
                CU_ASSERT_EQUAL_FATAL(ftq_qtensor_matmul_ref(yr, x, &q, 0, bias, T), FTQ_OK);
                for (int path = FTQ_QPATH_SCALAR; path < FTQ_QPATH_COUNT; path++) {
                    if (!ftq_qpath_supported((ftq_qpath)path))
                        continue;
                    ran_simd += path == FTQ_QPATH_AVX512VNNI;
                    memset(y, 0, sizeof(float) * T * rows);
                    CU_ASSERT_EQUAL(ftq_qmat_mul_path((ftq_qpath)path, y, x, &m, bias, T, NULL), FTQ_OK);
                    if (memcmp(y, yr, sizeof(float) * T * rows) != 0) {
                        CU_FAIL("path differs from the reference");
                        printf("\n  %s rows %d T %d path %s differs", si ? "q4k" : "q6k", rows, T,
                               ftq_qpath_name((ftq_qpath)path));
                    }
                }
                /* close to the f32 product of the dequantized weights (activation rounding) */
                double num = 0, den = 0;
                for (int t = 0; t < T; t++)
                    for (int o = 0; o < rows; o++) {
                        double f = bias[o];
                        for (int k = 0; k < cols; k++)
                            f += (double)x[(size_t)t * cols + k] * deq[(size_t)o * cols + k];
                        num += (f - yr[(size_t)t * rows + o]) * (f - yr[(size_t)t * rows + o]);
                        den += f * f;
                    }
                if (!(num <= 4e-3 * den))
                    printf("\n  rows %d T %d: relative squared error %.3g", rows, T, num / den);
                CU_ASSERT(num <= 4e-3 * den); /* int8 activations: about 1e-3 with 20x outliers */
                free(x);
                free(yr);
                free(y);
            }
            free(deq);
            ftq_qmat_free(&m);
            ftq_qtensor_free(&q);
            free(w);
            free(bias);
        }
    if (!ran_simd)
        test_skip("avx512vnni path: cpu lacks avx512vnni");
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* tests/fixtures/kquant (tools/kquant_fixture.py): random Q6_K / Q4_K blocks and gguf-py's
 * dequantization. ftq's layout of the same bytes (d moved to the scales) dequantizes to
 * gguf-py's values bit for bit, through the row-major tensor, the kernel layout and ftq's
 * own GGUF reader. */
static void test_gguf_py_fixture(void)
{
    static const char *const names[2] = {"q6_k", "q4_k"};
    const ftq_qscheme sch[2] = {FTQ_QSCHEME_Q6K, FTQ_QSCHEME_Q4K};
    const uint32_t gt[2] = {FTQ_GGML_Q6_K, FTQ_GGML_Q4_K};
    for (int si = 0; si < 2; si++) {
        char pb[64], pv[64];
        snprintf(pb, sizeof pb, "tests/fixtures/kquant/%s.blocks", names[si]);
        snprintf(pv, sizeof pv, "tests/fixtures/kquant/%s.f32", names[si]);
        size_t nb = 0, nv = 0;
        unsigned char *blocks = read_all(source_path(pb), &nb), *vals = read_all(source_path(pv), &nv);
        CU_ASSERT_FATAL(blocks && vals);
        const size_t bs = si == 0 ? 210 : 144, nblk = nb / bs;
        CU_ASSERT_FATAL(nblk > 0 && nv == nblk * 256 * 4);
        const int n = (int)(nblk * 256);
        ftq_qtensor q;
        ASSERT_OK(ftq_qtensor_alloc(&q, sch[si], 1, n, FTQ_QK));
        for (size_t b = 0; b < nblk; b++) {
            const unsigned char *blk = blocks + b * bs;
            memcpy(q.qs + b * (bs - 2), blk + (si == 0 ? 0 : 2), bs - 2);
            q.scales[b] = h2f(blk + (si == 0 ? 208 : 0));
        }
        float *v = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
        ftq_qtensor_dequantize(&q, v);
        CU_ASSERT_EQUAL(memcmp(v, vals, sizeof(float) * (size_t)n), 0);
        ftq_qmat m;
        ASSERT_OK(ftq_qmat_pack(&m, &q, 0));
        ftq_qmat_dequantize(&m, g);
        CU_ASSERT_EQUAL(memcmp(g, vals, sizeof(float) * (size_t)n), 0);
        ftq_ggml_type_info(gt[si])->to_f32(blocks, g, nblk);
        CU_ASSERT_EQUAL(memcmp(g, vals, sizeof(float) * (size_t)n), 0);
        ftq_qmat_free(&m);
        ftq_qtensor_free(&q);
        free(v);
        free(g);
        free(blocks);
        free(vals);
    }
}

/* q5 (ggml's Q5_0 grid): codes within half a step of plain rounding's range, the row bytes
 * rebuilt as ggml Q5_0 blocks (independently: qh bit j = fifth bit of code j, qs[j] = code j
 * | code j + 16 << 4) dequantize through ftq's GGUF reader to ftq's values bit for bit, and
 * every matmul path (the int8 kernels) equals the reference on the row-major tensor. */
static void test_q5(void)
{
    ftq_rng rng;
    ftq_rng_seed(&rng, 9);
    const int rows = 21, cols = 96;
    float *w = randw(&rng, rows, cols), *v = malloc(sizeof(float) * rows * cols), *g = malloc(sizeof(float) * cols);
    for (int search = 0; search < 2; search++) {
        ftq_quant_params p = {FTQ_QSCHEME_Q5, 32, search, 1};
        ftq_qtensor q;
        ASSERT_OK(ftq_qtensor_quantize(&q, w, rows, cols, &p));
        CU_ASSERT_EQUAL(q.row_bytes, (size_t)cols / 32 * 20);
        CU_ASSERT_EQUAL(ftq_qtensor_file_bytes(&q), (size_t)rows * cols / 32 * 22);
        ftq_qtensor_dequantize(&q, v);
        int bad = 0;
        for (int r = 0; r < rows; r++) {
            unsigned char blk[3][22];
            for (int b = 0; b < cols / 32; b++) {
                const uint8_t *row = q.qs + (size_t)r * q.row_bytes;
                uint16_t h = ftq_f32_to_f16(q.scales[(size_t)r * q.ngroups + b]);
                blk[b][0] = (unsigned char)(h & 255);
                blk[b][1] = (unsigned char)(h >> 8);
                uint32_t qh = 0;
                int c[32];
                for (int j = 0; j < 32; j++) { /* element j of the group: nibble and fifth bit */
                    const uint8_t *gb = row + 20 * b;
                    c[j] = ((gb[j / 2] >> (4 * (j % 2))) & 15) | ((gb[16 + j / 8] >> (j % 8)) & 1) << 4;
                    qh |= (uint32_t)(c[j] >> 4) << j;
                }
                memcpy(blk[b] + 2, &qh, 4);
                for (int j = 0; j < 16; j++)
                    blk[b][6 + j] = (unsigned char)((c[j] & 15) | (c[j + 16] & 15) << 4);
            }
            ftq_ggml_type_info(FTQ_GGML_Q5_0)->to_f32(blk, g, (size_t)cols / 32);
            bad += memcmp(g, v + (size_t)r * cols, sizeof(float) * cols) != 0;
        }
        CU_ASSERT_EQUAL(bad, 0);
        ftq_qerror e;
        ftq_qerror_compute(w, v, (size_t)rows * cols, &e);
        ftq_quant_params p4 = {FTQ_QSCHEME_Q4, 32, search, 1};
        ftq_qtensor q4;
        ftq_qerror e4;
        ASSERT_OK(ftq_qtensor_quantize(&q4, w, rows, cols, &p4));
        ASSERT_OK(ftq_qtensor_error(&q4, w, &e4));
        ftq_qtensor_free(&q4);
        printf("\n  q5 search %d rel rmse %.4f (q4 %.4f)", search, e.rel_rmse, e4.rel_rmse);
        CU_ASSERT(e.rel_rmse < 0.6 * e4.rel_rmse); /* twice the levels: about half q4's error */
        ftq_qmat m;
        ASSERT_OK(ftq_qmat_pack(&m, &q, 0));
        float *x = malloc(sizeof(float) * 3 * cols), *yr = malloc(sizeof(float) * 3 * rows), *y = malloc(sizeof(float) * 3 * rows);
        for (int i = 0; i < 3 * cols; i++)
            x[i] = ftq_rng_normal(&rng);
        ASSERT_OK(ftq_qtensor_matmul_ref(yr, x, &q, 0, NULL, 3));
        for (int path = FTQ_QPATH_SCALAR; path < FTQ_QPATH_COUNT; path++) {
            if (!ftq_qpath_supported((ftq_qpath)path))
                continue;
            ASSERT_OK(ftq_qmat_mul_path((ftq_qpath)path, y, x, &m, NULL, 3, NULL));
            CU_ASSERT_EQUAL(memcmp(y, yr, sizeof(float) * 3 * rows), 0);
        }
        free(x);
        free(yr);
        free(y);
        ftq_qmat_free(&m);
        ftq_qtensor_free(&q);
    }
    free(w);
    free(v);
    free(g);
}

/* --kquant --bits on stories260K (widths 64 and 172: no super-blocks, so {q4, q5, q8}): the
 * budget is kept, q5 and q8 are both chosen; a second run that reuses the first one's recorded
 * sensitivities (--sensitivity DIR) writes the same file byte for byte. */
static void test_kplan_cache(void)
{
    ftq_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0, nc = 0;
    int32_t *ids = NULL;
    ASSERT_OK(ftq_tokenizer_load(shared_path("models/stories260K"), &tk));
    ASSERT_OK(ftq_read_file(shared_path("data/tinyshakespeare/input.txt"), &text, &len));
    ASSERT_OK(ftq_tokenizer_encode(tk, text, len, 0, &ids, &nc));
    free(text);
    ftq_tokenizer_free(tk);
    const char *tmp = test_tmpdir("kquant_plan");
    char d[2][1024], f[2][1100];
    ftq_quantize_report rep[2];
    for (int k = 0; k < 2; k++) {
        ftq_quantize_params p = ftq_quantize_default_params();
        p.bits = 4;
        p.group = 32;
        p.embeddings = FTQ_QPOLICY_INT8;
        p.calib = ids;
        p.n_calib = 1024;
        p.calib_ctx = 64;
        p.calib_bos = 1;
        p.calib_name = "input.txt";
        p.target_bits = 5.5;
        p.kquant = 1;
        if (k == 1) /* the second run reuses the first one's recorded sensitivities */
            p.sensitivity_from = d[0];
        snprintf(d[k], sizeof d[k], "%s/run%d", tmp, k);
        snprintf(f[k], sizeof f[k], "%s/run%d/model.safetensors", tmp, k);
        ASSERT_OK(ftq_quantize_model(shared_path("models/stories260K"), d[k], &p, &rep[k]));
    }
    int n5 = 0, n8 = 0;
    for (size_t i = 0; i < rep[0].n_tensors; i++) {
        const ftq_quantize_tensor_report *t = &rep[0].tensors[i];
        n5 += t->sensitivity >= 0 && strcmp(t->scheme, "q5_g32") == 0;
        n8 += t->sensitivity >= 0 && strcmp(t->scheme, "q8_g32") == 0;
    }
    printf("\n  plan: %d q5, %d q8, %.3f bits", n5, n8, rep[0].linear_bits);
    CU_ASSERT(n5 > 0 && n8 > 0);
    CU_ASSERT(rep[0].linear_bits <= 5.5 && rep[0].linear_bits > 5.0);
    size_t na = 0, nb = 0;
    unsigned char *a = read_all(f[0], &na), *b = read_all(f[1], &nb);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT(na == nb && memcmp(a, b, na) == 0);
    free(a);
    free(b);
    ftq_quantize_report_free(&rep[0]);
    ftq_quantize_report_free(&rep[1]);
    free(ids);
}

/* --keep-quant on a GGUF holding Q4_K, Q6_K and Q5_0 matrices (the fixture's random blocks,
 * and random Q5_0 blocks): each becomes a q4k / q6k / q5 entry whose values are ggml's
 * dequantization of the same blocks (ftq's GGUF reader), bit for bit. */
static void test_keep_quant_import(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/k.gguf", test_tmpdir("kquant_keep"));
    size_t n6 = 0, n4 = 0, nv = 0;
    unsigned char *b6 = read_all(source_path("tests/fixtures/kquant/q6_k.blocks"), &n6),
                  *b4 = read_all(source_path("tests/fixtures/kquant/q4_k.blocks"), &n4);
    CU_ASSERT_FATAL(b6 && b4 && n6 == 8 * 210 && n4 == 8 * 144);
    unsigned char b5[8 * 8 * 22];
    ftq_rng rng;
    ftq_rng_seed(&rng, 21);
    for (size_t i = 0; i < sizeof b5; i++)
        b5[i] = (unsigned char)(ftq_rng_u64(&rng) >> 56);
    for (int i = 0; i < 64; i++) { /* finite f16 scales */
        uint16_t h = ftq_f32_to_f16(0.001f * (float)(i + 1) * (i % 2 ? -1.0f : 1.0f));
        memcpy(b5 + 22 * i, &h, 2);
    }
    ftq_gguf_writer *w = NULL;
    ASSERT_OK(ftq_gguf_writer_new(&w));
    ftq_gguf_writer_str(w, "general.architecture", "llama");
    ftq_gguf_writer_u32(w, "llama.block_count", 1);
    ftq_gguf_writer_u32(w, "llama.embedding_length", 256);
    ftq_gguf_writer_u32(w, "llama.feed_forward_length", 8);
    ftq_gguf_writer_u32(w, "llama.attention.head_count", 2);
    ftq_gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    ftq_gguf_writer_u32(w, "llama.vocab_size", 8);
    int64_t ne[2] = {256, 8};
    ASSERT_OK(ftq_gguf_writer_tensor(w, "blk.0.ffn_up.weight", FTQ_GGML_Q4_K, 2, ne, b4, n4));
    ASSERT_OK(ftq_gguf_writer_tensor(w, "blk.0.ffn_gate.weight", FTQ_GGML_Q6_K, 2, ne, b6, n6));
    ASSERT_OK(ftq_gguf_writer_tensor(w, "blk.0.attn_output.weight", FTQ_GGML_Q5_0, 2, ne, b5, sizeof b5));
    ASSERT_OK(ftq_gguf_writer_write(w, p));
    ftq_gguf_writer_free(w);
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_gguf_checkpoint_open_ex(p, FTQ_GGUF_KEEP_QUANT, NULL, &ck));
    ftq_qindex *ix = NULL;
    ASSERT_OK(ftq_qindex_open(ck, p, &ix));
    CU_ASSERT_FATAL(ix != NULL);
    static const char *const names[3] = {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                                         "model.layers.0.self_attn.o_proj.weight"};
    const ftq_qscheme want[3] = {FTQ_QSCHEME_Q4K, FTQ_QSCHEME_Q6K, FTQ_QSCHEME_Q5};
    const uint32_t gt[3] = {FTQ_GGML_Q4_K, FTQ_GGML_Q6_K, FTQ_GGML_Q5_0};
    const unsigned char *src[3] = {b4, b6, b5};
    float got[8 * 256], ref[8 * 256];
    for (int k = 0; k < 3; k++) {
        const ftq_qentry *e = ftq_qindex_find(ix, names[k]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        ASSERT_INT_EQ(e->scheme, want[k]);
        ftq_qtensor q;
        ASSERT_OK(ftq_qentry_read(e, 0, e->rows, &q));
        ASSERT_INT_EQ(q.rows * q.cols, 8 * 256);
        ftq_qtensor_dequantize(&q, got);
        ftq_ggml_type_info(gt[k])->to_f32(src[k], ref, (size_t)(8 * 256) / ftq_ggml_type_info(gt[k])->block_size);
        CU_ASSERT_EQUAL(memcmp(got, ref, sizeof got), 0);
        ftq_qtensor_free(&q);
    }
    (void)nv;
    ftq_qindex_free(ix);
    ftq_checkpoint_close(ck);
    free(b6);
    free(b4);
}

/* The command line refuses --kquant without int4, in one line. */
static void test_cli_refusals(void)
{
    char args[2048], *out = NULL, *err = NULL;
    const char *tmp = test_tmpdir("kquant_cli");
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s/a' --type int8 --kquant", shared_path("models/stories260K"), tmp);
    CU_ASSERT(ftq_run(args, &out, &err) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err ? err : "", "--kquant applies to --type int4 only"));
    free(out);
    free(err);
}

void test_register_kquant(void)
{
    static const test_case cases[] = {{"roundtrip_ggml", test_roundtrip_ggml},
                                      {"weighted_search", test_weighted_search},
                                      {"matmul_paths", test_matmul_paths},
                                      {"gguf_py_fixture", test_gguf_py_fixture},
                                      {"q5", test_q5},
                                      {"kplan_cache", test_kplan_cache},
                                      {"cli_refusals", test_cli_refusals},
                                      {"keep_quant_import", test_keep_quant_import},
                                      {NULL, NULL}};
    test_add_suite("kquant", cases);
}
