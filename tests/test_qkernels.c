/* test_qkernels.c - kernels/qlinear.c: activation quantization (fast vs reference, bit for
 * bit), every matmul path (scalar, AVX2, AVX-VNNI, AVX-512 VNNI, each forced) against the
 * scalar reference on the row-major tensor (bit for bit) over in-dims that hit every block
 * and group tail, out = 1..37 (panel tails), T = 1..9 and 33 (row-tile tails), then the
 * quantized product against the f32 product of the dequantized weights within a bound
 * derived from the activation rounding, NaN propagation, threads and FTQ_CPU_MASK. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "tests/test_util.h"

static float *randn(ftq_rng *r, size_t n, float scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = ftq_rng_normal(r) * scale;
    return v;
}

/* Activations with the structure of LLM hidden states: a few outlier channels. */
static float *acts(ftq_rng *r, int T, int n)
{
    float *x = randn(r, (size_t)T * n, 1.0f);
    for (int t = 0; t < T; t++)
        for (int k = 5; k < n; k += 97)
            x[(size_t)t * n + k] *= 20.0f;
    return x;
}

/* The reference activation quantizer keeps its rules: per block dx = max|x| / 127, codes
 * within half a step, exact block sums, zeros beyond n; zero / tiny / NaN / Inf blocks. */
static void test_act_quant_ref(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 1);
    for (int ab = 32; ab <= 128; ab *= 2) {
        for (int n = 1; n <= 300; n += (n < 70 ? 1 : 23)) {
            const int kpad = (n + ab - 1) / ab * ab, nblk = kpad / ab;
            float *x = randn(&r, (size_t)n, 2.0f);
            if (n > 40) {
                for (int k = ab; k < ab + 8 && k < n; k++) /* zero block start */
                    x[k] = 0.0f;
            }
            int8_t *q = malloc((size_t)kpad);
            float d[16];
            int32_t s[16];
            ftq_qact_quantize_row_ref(x, n, kpad, ab, q, d, s);
            int bad = 0;
            for (int b = 0; b < nblk; b++) {
                float amax = 0.0f;
                int32_t sum = 0;
                for (int k = b * ab; k < (b + 1) * ab; k++) {
                    float v = k < n ? x[k] : 0.0f;
                    amax = fabsf(v) > amax ? fabsf(v) : amax;
                    sum += q[k];
                    bad += q[k] < -127 || (k >= n && q[k] != 0);
                    /* round to nearest: within half a step (+ the rounding of 1/d and x/d) */
                    bad += fabsf(v - d[b] * q[k]) > 0.5f * d[b] * (1.0f + 1e-5f) + 1e-30f;
                }
                bad += s[b] != sum || d[b] != amax / 127.0f;
            }
            ASSERT_INT_EQ(bad, 0);
            free(x);
            free(q);
        }
    }
    /* zero, tiny, NaN and Inf blocks */
    float x[96] = {0};
    int8_t q[96];
    float d[3];
    int32_t s[3];
    x[40] = 1e-35f;
    x[70] = 1.0f;
    x[71] = NAN;
    ftq_qact_quantize_row_ref(x, 96, 96, 32, q, d, s);
    CU_ASSERT(d[0] == 0.0f && d[1] == 0.0f && isnan(d[2]));
    int nz = 0;
    for (int k = 0; k < 96; k++)
        nz += q[k] != 0;
    ASSERT_INT_EQ(nz, 0);
    x[71] = -INFINITY;
    ftq_qact_quantize_row_ref(x, 96, 96, 32, q, d, s);
    CU_ASSERT(isnan(d[2]));
}

/* The fast (AVX2) activation quantizer equals the reference byte for byte, over lengths
 * 1..300 (every vector tail), all block sizes, magnitudes from 1e-30 to 1e30, zero, tiny,
 * NaN and Inf blocks, and values exactly on rounding midpoints. */
static void test_act_quant_fast(void)
{
    if (!test_require_cpu(FTQ_CPU_AVX2 | FTQ_CPU_FMA, "avx2 activation quantizer"))
        return; /* the "fast" one would be the reference itself */
    ftq_rng r;
    ftq_rng_seed(&r, 2);
    int bad = 0, cases = 0;
    for (int ab = 32; ab <= 128; ab *= 2) {
        for (int n = 1; n <= 300; n++) {
            const int kpad = (n + ab - 1) / ab * ab, nblk = kpad / ab;
            float *x = randn(&r, (size_t)n, 1.0f);
            const int mode = n % 7;
            for (int k = 0; k < n; k++) {
                if (mode == 1)
                    x[k] *= 1e-30f;
                else if (mode == 2)
                    x[k] *= 1e30f;
                else if (mode == 3) /* midpoints: amax 127 gives dx = 1, x = j + 0.5 */
                    x[k] = k == 0 ? 127.0f : (float)((int)(ftq_rng_u64(&r) % 254) - 127) + 0.5f;
                else if (mode == 4 && k % 41 == 40)
                    x[k] = (k / 41) % 2 ? NAN : -INFINITY;
                else if (mode == 5 && k >= ab / 2)
                    x[k] = 0.0f;
            }
            int8_t *q1 = malloc((size_t)kpad), *q2 = malloc((size_t)kpad);
            float d1[16], d2[16];
            int32_t s1[16], s2[16];
            memset(q2, 0x55, (size_t)kpad);
            ftq_qact_quantize_row_ref(x, n, kpad, ab, q1, d1, s1);
            ftq_qact_quantize_row(x, n, kpad, ab, q2, d2, s2);
            bad += memcmp(q1, q2, (size_t)kpad) != 0 || memcmp(s1, s2, sizeof(int32_t) * nblk) != 0;
            for (int b = 0; b < nblk; b++)
                bad += !(d1[b] == d2[b] || (isnan(d1[b]) && isnan(d2[b])));
            cases++;
            free(x);
            free(q1);
            free(q2);
        }
    }
    ASSERT_INT_EQ(bad, 0);
    CU_ASSERT(cases == 900);
}

/* Each path-dependent test runs once per path (registered as NAME_PATH), so a path this
 * CPU lacks is reported as SKIPPED instead of passing without being run. */
static ftq_qpath cur_path = FTQ_QPATH_SCALAR;

static int paths(ftq_qpath *out)
{
    out[0] = cur_path;
    return 1;
}

static void run_on_path(ftq_qpath p, void (*fn)(void))
{
    if (!ftq_qpath_supported(p)) {
        test_skip("%s path: this cpu (after FTQ_CPU_MASK) lacks it (has: %s)", ftq_qpath_name(p),
                  ftq_cpu_features_str());
        return;
    }
    cur_path = p;
    fn();
    cur_path = FTQ_QPATH_SCALAR;
}

/* PER_PATH4: the four vector paths; PER_PATH also AMX-INT8 (which differs from AVX-512
 * VNNI only on full groups of 16 rows: paths_vs_ref, mostly T < 16, runs on it as
 * amxint8_rows16 instead) */
#define PER_PATH4(fn)                                                          \
    static void fn##_scalar(void) { run_on_path(FTQ_QPATH_SCALAR, fn); }         \
    static void fn##_avx2(void) { run_on_path(FTQ_QPATH_AVX2, fn); }             \
    static void fn##_avxvnni(void) { run_on_path(FTQ_QPATH_AVXVNNI, fn); }       \
    static void fn##_avx512vnni(void) { run_on_path(FTQ_QPATH_AVX512VNNI, fn); }
#define PER_PATH(fn) \
    PER_PATH4(fn)    \
    static void fn##_amxint8(void) { run_on_path(FTQ_QPATH_AMXINT8, fn); }
#define PER_PATH4_CASES(name, fn)                                                          \
    {name "_scalar", fn##_scalar}, {name "_avx2", fn##_avx2}, {name "_avxvnni", fn##_avxvnni}, \
        {name "_avx512vnni", fn##_avx512vnni}
#define PER_PATH_CASES(name, fn) PER_PATH4_CASES(name, fn), {name "_amxint8", fn##_amxint8}

typedef struct {
    ftq_qscheme s;
    int group, ab;
} kconfig;

static const kconfig kconfigs[] = {
    {FTQ_QSCHEME_Q8, 32, 32},   {FTQ_QSCHEME_Q8, 64, 32},   {FTQ_QSCHEME_Q8, 128, 32},
    {FTQ_QSCHEME_Q8, 128, 128}, {FTQ_QSCHEME_Q8, FTQ_QGROUP_ROW, 32},
    {FTQ_QSCHEME_Q8, FTQ_QGROUP_ROW, 128},
    {FTQ_QSCHEME_Q4, 32, 32},   {FTQ_QSCHEME_Q4, 64, 64},   {FTQ_QSCHEME_Q4, 128, 32},
    {FTQ_QSCHEME_Q4, 128, 128}, {FTQ_QSCHEME_Q4A, 32, 32},  {FTQ_QSCHEME_Q4A, 64, 32},
    {FTQ_QSCHEME_Q4A, 128, 64}, {FTQ_QSCHEME_Q4A, 128, 128},
    {FTQ_QSCHEME_Q4M, 32, 32},  {FTQ_QSCHEME_Q4M, 64, 32},  {FTQ_QSCHEME_Q4M, 128, 128},
};
#define NKCONFIGS (int)(sizeof kconfigs / sizeof kconfigs[0])

static ftq_quant_params kparams(kconfig c)
{
    ftq_quant_params p = ftq_quant_default_params();
    p.scheme = c.s;
    p.group = c.group;
    p.search = 1;
    return p;
}

static const char *kname(kconfig c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s g%d ab%d", ftq_qscheme_info(c.s)->name, c.group, c.ab);
    return buf;
}

/* Bit-identical outputs on every path. in-dims: multiples of the group (1, 2, 3, 5 groups)
 * and in-dims that end inside a block (padding). out = 1..37 crosses the 16-row panels and
 * the 4-panel work units; T cycles through 1..9 and 33 so every row-tile remainder occurs. */
static void test_paths_vs_ref(void)
{
    ftq_qpath ps[FTQ_QPATH_COUNT];
    const int np = paths(ps);
    const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 33};
    ftq_rng r;
    ftq_rng_seed(&r, 42);
    long checked = 0;
    int mismatches = 0;
    for (int ci = 0; ci < NKCONFIGS; ci++) {
        const kconfig c = kconfigs[ci];
        const int G = c.group ? c.group : 64;
        const int ins[] = {G, 2 * G, 3 * G, 5 * G, G + 8, 2 * G - 1, 3 * G + 33, 1, 7};
        for (size_t ii = 0; ii < sizeof ins / sizeof ins[0]; ii++) {
            const int in = ins[ii];
            const int maxout = ii < 2 ? 37 : 20;
            for (int out = 1; out <= maxout; out++) {
                const int T = Ts[(out + (int)ii) % 10];
                float *w = randn(&r, (size_t)out * in, 0.05f), *x = acts(&r, T, in);
                float *bias = out % 3 ? randn(&r, (size_t)out, 1.0f) : NULL;
                ftq_quant_params p = kparams(c);
                ftq_qtensor q;
                ftq_qmat m;
                ASSERT_OK(ftq_qtensor_quantize(&q, w, out, in, &p));
                ASSERT_OK(ftq_qmat_pack(&m, &q, c.ab));
                float *yref = malloc(sizeof(float) * T * out), *y = malloc(sizeof(float) * T * out);
                void *scratch = malloc(ftq_qmat_scratch_bytes(&m, T));
                ASSERT_OK(ftq_qtensor_matmul_ref(yref, x, &q, c.ab, bias, T));
                for (int pi = 0; pi < np; pi++) {
                    memset(y, 0xff, sizeof(float) * T * out);
                    ASSERT_OK(ftq_qmat_mul_path(ps[pi], y, x, &m, bias, T, scratch));
                    checked++;
                    if (memcmp(y, yref, sizeof(float) * T * out) != 0) {
                        if (mismatches++ < 5) {
                            char nb[64];
                            int i = 0;
                            while (i < T * out && !memcmp(&y[i], &yref[i], sizeof(float)))
                                i++;
                            fprintf(stderr, "\n  %s path %s in=%d out=%d T=%d: y[%d] = %.9g, ref %.9g\n",
                                    kname(c, nb, sizeof nb), ftq_qpath_name(ps[pi]), in, out, T, i,
                                    y[i], yref[i]);
                        }
                    }
                }
                ftq_qmat_free(&m);
                ftq_qtensor_free(&q);
                free(w);
                free(x);
                free(bias);
                free(yref);
                free(y);
                free(scratch);
            }
        }
    }
    ASSERT_INT_EQ(mismatches, 0);
    if (getenv("FTQ_TEST_VERBOSE"))
        printf("\n  %ld products on %d paths, all bit-identical to the reference", checked, np);
}

/* Larger shapes crossing the 64-row work units and many panels, 1 and 2 threads. */
static void test_large_and_threads(void)
{
    ftq_qpath ps[FTQ_QPATH_COUNT];
    const int np = paths(ps);
    ftq_rng r;
    ftq_rng_seed(&r, 7);
    const int shapes[][3] = {{768, 100, 70}, {172, 64, 130}, {256, 300, 1}};
    for (int ci = 0; ci < NKCONFIGS; ci += 3) {
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int in = shapes[si][0], out = shapes[si][1], T = shapes[si][2];
            kconfig c = kconfigs[ci];
            if (c.group && in % 32) /* 172: partial group, fine for any group */
                c.ab = 32;
            float *w = randn(&r, (size_t)out * in, 0.05f), *x = acts(&r, T, in);
            ftq_quant_params p = kparams(c);
            ftq_qtensor q;
            ftq_qmat m;
            ASSERT_OK(ftq_qtensor_quantize(&q, w, out, in, &p));
            ASSERT_OK(ftq_qmat_pack(&m, &q, c.ab));
            float *yref = malloc(sizeof(float) * T * out), *y = malloc(sizeof(float) * T * out);
            void *scratch = malloc(ftq_qmat_scratch_bytes(&m, T));
            ASSERT_OK(ftq_qtensor_matmul_ref(yref, x, &q, c.ab, NULL, T));
            for (int th = 1; th <= 2; th++) {
                ftq_set_threads(th);
                for (int pi = 0; pi < np; pi++) {
                    ASSERT_OK(ftq_qmat_mul_path(ps[pi], y, x, &m, NULL, T, scratch));
                    CU_ASSERT(memcmp(y, yref, sizeof(float) * T * out) == 0);
                }
                if (ps[0] == FTQ_QPATH_SCALAR) { /* the automatic choice: once, not per path */
                    ASSERT_OK(ftq_qmat_mul(y, x, &m, NULL, T, scratch));
                    CU_ASSERT(memcmp(y, yref, sizeof(float) * T * out) == 0);
                    /* no scratch: a stack buffer (T = 1) or one malloc (T = 70, 130) */
                    memset(y, 0, sizeof(float) * T * out);
                    ASSERT_OK(ftq_qmat_mul(y, x, &m, NULL, T, NULL));
                    CU_ASSERT(memcmp(y, yref, sizeof(float) * T * out) == 0);
                }
            }
            ftq_set_threads(0);
            ftq_qmat_free(&m);
            ftq_qtensor_free(&q);
            free(w);
            free(x);
            free(yref);
            free(y);
            free(scratch);
        }
    }
}

/* Quantized product vs the f32 product of the dequantized weights. The only difference is
 * the activation rounding, |x_k - dx_b qx_k| <= dx_b / 2 per element, so per output
 *     |y_q - y_f| <= sum_b (dx_b / 2) sum_{k in b} |w^_k|  +  (nblk + 2) eps sum_k |x_k w^_k|
 * (the second term: one f32 rounding per block product and per accumulation). This bound
 * is rigorous; typical errors are far below it, which the relative RMS check measures:
 * for normal activations the activation rounding error has RMS dx / sqrt(12) with
 * dx ~ max|x| / 127 ~ 3 sigma / 127, i.e. about 0.7 % of the output RMS; we require < 1 %
 * without outlier channels, and report the worst ratio to the bound. */
static void test_vs_dequantized_f32(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 3);
    const int in = 384, out = 48, T = 9;
    double worst_ratio = 0.0;
    for (int ci = 0; ci < NKCONFIGS; ci++) {
        const kconfig c = kconfigs[ci];
        for (int outliers = 0; outliers <= 1; outliers++) {
            float *w = randn(&r, (size_t)out * in, 0.05f);
            float *x = outliers ? acts(&r, T, in) : randn(&r, (size_t)T * in, 1.0f);
            ftq_quant_params p = kparams(c);
            ftq_qmat m;
            ASSERT_OK(ftq_qmat_quantize(&m, w, out, in, &p, c.ab));
            float *wd = malloc(sizeof(float) * out * in), *y = malloc(sizeof(float) * T * out);
            ftq_qmat_dequantize(&m, wd);
            void *scratch = malloc(ftq_qmat_scratch_bytes(&m, T));
            ASSERT_OK(ftq_qmat_mul(y, x, &m, NULL, T, scratch));
            const int ab = c.ab, kpad = m.kpad, nblk = kpad / ab;
            int8_t *qx = malloc((size_t)kpad);
            float dx[16];
            int32_t sx[16];
            double se = 0.0, sy = 0.0;
            int fails = 0;
            for (int t = 0; t < T; t++) {
                const float *xt = x + (size_t)t * in;
                ftq_qact_quantize_row_ref(xt, in, kpad, ab, qx, dx, sx);
                for (int o = 0; o < out; o++) {
                    const float *wo = wd + (size_t)o * in;
                    double yf = 0.0, bound = 0.0, mag = 0.0;
                    for (int k = 0; k < in; k++) {
                        yf += (double)xt[k] * wo[k];
                        bound += 0.5 * dx[k / ab] * fabs(wo[k]);
                        mag += fabs((double)xt[k] * wo[k]);
                    }
                    bound += (nblk + 2) * FLT_EPSILON * mag;
                    double err = fabs(y[(size_t)t * out + o] - yf);
                    fails += !(err <= bound);
                    worst_ratio = err / bound > worst_ratio ? err / bound : worst_ratio;
                    se += err * err;
                    sy += yf * yf;
                }
            }
            ASSERT_INT_EQ(fails, 0);
            double rel = sqrt(se / sy);
            if (!outliers) {
                if (rel >= 0.01) {
                    char nb[64];
                    fprintf(stderr, "\n  %s: relative rms %.4f\n", kname(c, nb, sizeof nb), rel);
                }
                CU_ASSERT(rel < 0.01);
            }
            if (getenv("FTQ_TEST_VERBOSE")) {
                char nb[64];
                printf("\n  %s %s: rel rms vs f32(deq W) %.5f", kname(c, nb, sizeof nb),
                       outliers ? "outliers" : "normal  ", rel);
            }
            ftq_qmat_free(&m);
            free(w);
            free(x);
            free(wd);
            free(y);
            free(scratch);
            free(qx);
        }
    }
    if (getenv("FTQ_TEST_VERBOSE"))
        printf("\n  worst |y_q - y_f| / bound = %.3f", worst_ratio);
}

/* A NaN or Inf in one activation row makes exactly that row's outputs NaN (the f32 product
 * would be NaN / Inf there); the other rows are unchanged. */
static void test_nan_rows(void)
{
    ftq_qpath ps[FTQ_QPATH_COUNT];
    const int np = paths(ps);
    ftq_rng r;
    ftq_rng_seed(&r, 8);
    const int in = 96, out = 20, T = 5;
    float *w = randn(&r, (size_t)out * in, 0.1f), *x = randn(&r, (size_t)T * in, 1.0f);
    ftq_quant_params p = kparams(kconfigs[10]);
    ftq_qmat m;
    ASSERT_OK(ftq_qmat_quantize(&m, w, out, in, &p, 0));
    float *y0 = malloc(sizeof(float) * T * out), *y = malloc(sizeof(float) * T * out);
    void *scratch = malloc(ftq_qmat_scratch_bytes(&m, T));
    ASSERT_OK(ftq_qmat_mul(y0, x, &m, NULL, T, scratch));
    x[2 * in + 50] = NAN;
    x[4 * in + 3] = INFINITY;
    for (int pi = 0; pi < np; pi++) {
        ASSERT_OK(ftq_qmat_mul_path(ps[pi], y, x, &m, NULL, T, scratch));
        for (int t = 0; t < T; t++) {
            int nan = 0, same = 1;
            for (int o = 0; o < out; o++) {
                nan += isnan(y[t * out + o]);
                same &= y[t * out + o] == y0[t * out + o];
            }
            if (t == 2 || t == 4)
                ASSERT_INT_EQ(nan, out);
            else
                CU_ASSERT(same);
        }
    }
    ftq_qmat_free(&m);
    free(w);
    free(x);
    free(y0);
    free(y);
    free(scratch);
}

static void test_alloc_checks(void)
{
    ftq_qmat m;
    ASSERT_INT_EQ(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q8, 0, 10, 32, 32), FTQ_EINVAL);
    ASSERT_INT_EQ(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q8, 4, 10, 48, 32), FTQ_EINVAL);
    ASSERT_INT_EQ(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q8, 4, 10, 32, 16), FTQ_EINVAL);
    ASSERT_INT_EQ(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q4, 4, 10, 0, 32), FTQ_EINVAL);
    ASSERT_INT_EQ(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q4A, 4, 10, 32, 64), FTQ_EINVAL);
    ASSERT_INT_EQ(ftq_qmat_alloc(&m, FTQ_QSCHEME_COUNT, 4, 10, 32, 32), FTQ_EINVAL);
    ASSERT_OK(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q4A, 17, 100, 64, 0));
    ASSERT_INT_EQ(m.ab, 32);
    ASSERT_INT_EQ(m.kpad, 128);
    ASSERT_INT_EQ(m.npanels, 2);
    ASSERT_INT_EQ(m.ngroups, 2);
    ASSERT_INT_EQ(m.panel_bytes, 128 * 8);
    CU_ASSERT(((uintptr_t)m.qs & 63) == 0);
    ASSERT_INT_EQ(ftq_qmat_bytes(&m), 2 * 1024 + 2 * 2 * 16 * 4 + 2 * 2 * 16);
    ftq_qmat c;
    m.d[5] = 1.5f;
    m.zp[7] = 3;
    m.qs[100] = 0x42;
    ASSERT_OK(ftq_qmat_clone(&c, &m));
    CU_ASSERT(c.mem != m.mem && c.mem_bytes == m.mem_bytes);
    CU_ASSERT(memcmp(c.mem, m.mem, m.mem_bytes) == 0);
    CU_ASSERT(c.d[5] == 1.5f && c.zp[7] == 3 && c.qs[100] == 0x42);
    ftq_qmat_free(&c);
    ftq_qmat_free(&m);
    ftq_qmat_free(&m);
    ftq_qmat_free(NULL);
    /* an unknown path is refused with a message */
    float y[1], x[1] = {1};
    ASSERT_OK(ftq_qmat_alloc(&m, FTQ_QSCHEME_Q8, 1, 1, 32, 32));
    char scratch[256];
    ASSERT_INT_EQ(ftq_qmat_mul_path(FTQ_QPATH_COUNT, y, x, &m, NULL, 1, scratch), FTQ_EUNSUPPORTED);
    CU_ASSERT(strstr(ftq_last_error(), "not supported") != NULL);
    ASSERT_OK(ftq_qmat_mul_path(FTQ_QPATH_SCALAR, y, x, &m, NULL, 1, scratch));
    CU_ASSERT(y[0] == 0.0f); /* all-zero weights */
    ftq_qmat_free(&m);
}

/* FTQ_CPU_MASK steers the automatic choice: run this binary's dispatch_child test under
 * masks and check which path it reports. dispatch_child is registered only in that child
 * (FTQ_TEST_QPATH set), so the suite never counts a test that asserts nothing. */
static void test_dispatch_child(void)
{
    printf("qpath=%s\n", ftq_qpath_name(ftq_qpath_best()));
    CU_ASSERT(ftq_qpath_supported(ftq_qpath_best()));
}

static void test_dispatch(void)
{
    static const struct {
        const char *mask, *want;
        unsigned needs;
    } cases[] = {
        {"0", "scalar", 0},
        {"0x3", "avx2", FTQ_CPU_AVX2 | FTQ_CPU_FMA},
        {"0x83", "avxvnni", FTQ_CPU_AVX2 | FTQ_CPU_FMA | FTQ_CPU_AVXVNNI},
        {"0x3b", "avx512vnni", FTQ_CPU_AVX2 | FTQ_CPU_FMA | FTQ_CPU_AVX512F | FTQ_CPU_AVX512BW | FTQ_CPU_AVX512VNNI},
    };
    unsigned have = ftq_cpu_features();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if ((have & cases[i].needs) != cases[i].needs) {
            test_skip("mask %s (%s): this cpu lacks the features", cases[i].mask, cases[i].want);
            continue;
        }
        char cmd[4096], *out = NULL;
        snprintf(cmd, sizeof cmd, "FTQ_CPU_MASK=%s FTQ_TEST_QPATH=1 '%s/ftq_tests' qkernels:dispatch_child 2>&1",
                 cases[i].mask, FTQ_BINARY_DIR);
        int st = run_capture(cmd, &out);
        ASSERT_INT_EQ(st, 0);
        char want[64];
        snprintf(want, sizeof want, "qpath=%s\n", cases[i].want);
        if (!strstr(out, want))
            fprintf(stderr, "\n  mask %s: expected %s in:\n%s\n", cases[i].mask, want, out);
        CU_ASSERT(strstr(out, want) != NULL);
        free(out);
    }
}

/* AMX-INT8 on full groups of 16 rows (T = 16, 33, 70: tails go to AVX-512 VNNI) for every
 * Q8 configuration (those with 32-element activation blocks take the tiles, the others fall
 * back) and one Q4: bit-identical to the reference, in-dims with 1..19 blocks and a padded
 * tail, out-dims crossing panels. */
static void test_amx_rows16(void)
{
    if (!ftq_qpath_supported(FTQ_QPATH_AMXINT8)) {
        test_skip("amx-int8 path: this cpu (after FTQ_CPU_MASK) lacks it (has: %s)", ftq_cpu_features_str());
        return;
    }
    ftq_rng r;
    ftq_rng_seed(&r, 1616);
    const int ins[] = {32, 96, 200, 608}, outs[] = {1, 17, 40}, Ts[] = {16, 33, 70};
    long checked = 0;
    int bad = 0;
    for (int ci = 0; ci < NKCONFIGS; ci++) {
        const kconfig c = kconfigs[ci];
        if (c.s != FTQ_QSCHEME_Q8 && ci != 6)
            continue;
        for (int ii = 0; ii < 4; ii++)
            for (int oi = 0; oi < 3; oi++) {
                const int in = ins[ii], out = outs[oi], T = Ts[(ii + oi) % 3];
                if (c.group && c.group > in && in % c.group)
                    continue;
                float *w = randn(&r, (size_t)out * in, 0.05f), *x = acts(&r, T, in);
                ftq_quant_params p = kparams(c);
                ftq_qtensor q;
                ftq_qmat m;
                ASSERT_OK(ftq_qtensor_quantize(&q, w, out, in, &p));
                ASSERT_OK(ftq_qmat_pack(&m, &q, c.ab));
                float *yref = malloc(sizeof(float) * T * out), *y = malloc(sizeof(float) * T * out);
                ASSERT_OK(ftq_qtensor_matmul_ref(yref, x, &q, c.ab, NULL, T));
                ASSERT_OK(ftq_qmat_mul_path(FTQ_QPATH_AMXINT8, y, x, &m, NULL, T, NULL));
                bad += memcmp(y, yref, sizeof(float) * T * out) != 0;
                checked++;
                ftq_qmat_free(&m);
                ftq_qtensor_free(&q);
                free(w);
                free(x);
                free(yref);
                free(y);
            }
    }
    ASSERT_INT_EQ(bad, 0);
    CU_ASSERT(checked >= 60);
}

PER_PATH4(test_paths_vs_ref)
PER_PATH(test_large_and_threads)
PER_PATH(test_nan_rows)

void test_register_qkernels(void)
{
    static const test_case cases[] = {
        {"act_quant_ref", test_act_quant_ref},
        {"act_quant_fast", test_act_quant_fast},
        PER_PATH4_CASES("paths_vs_ref", test_paths_vs_ref),
        {"amxint8_rows16", test_amx_rows16},
        PER_PATH_CASES("large_and_threads", test_large_and_threads),
        {"vs_dequantized_f32", test_vs_dequantized_f32},
        PER_PATH_CASES("nan_rows", test_nan_rows),
        {"alloc_checks", test_alloc_checks},
        {"dispatch", test_dispatch},
        {NULL, NULL},
    };
    static const test_case child[] = {
        {"dispatch_child", test_dispatch_child},
        {NULL, NULL},
    };
    test_add_suite("qkernels", getenv("FTQ_TEST_QPATH") ? child : cases);
}
