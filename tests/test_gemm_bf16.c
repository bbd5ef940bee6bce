/* test_gemm_bf16.c - kernels/gemm_bf16.c: packing (round to nearest even, padding, the
 * three stride patterns of a linear layer), the scalar reference against an independent
 * double-precision product of the same bf16 values, and every SIMD path (AVX512-BF16, AMX)
 * against the reference, bit for bit, on shapes with tails in m, n and k. A path this CPU
 * lacks is SKIPPED. */
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_bf16.h"
#include "tests/test_util.h"

static void fill(float *x, size_t n, uint64_t seed, float scale)
{
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)((double)(ftq_rng_u64(&r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float bf(float x) { return ftq_bf16_to_f32(ftq_f32_to_bf16(x)); }

/* Packing keeps exactly ftq_f32_to_bf16 of each element (ties to even, NaN quiet) wherever
 * it is read from, and zeros in the padding. */
static void pack_case(int m, int k)
{
    float *x = malloc(sizeof(float) * m * k);
    fill(x, (size_t)m * k, 1, 3.0f);
    /* ties: 1 + 2^-8 is halfway between two bf16 values, rounds to even (1); 1 + 3 * 2^-8 up */
    x[0] = 1.0f + 1.0f / 256;
    x[1] = 1.0f + 3.0f / 256;
    x[2] = NAN;
    uint16_t *a = malloc(sizeof(uint16_t) * ftq_bf16_a_elems(m, k));
    uint16_t *at = malloc(sizeof(uint16_t) * ftq_bf16_a_elems(k, m));
    uint16_t *b = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(m, k));
    uint16_t *bt = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(k, m));
    ftq_bf16_pack_a(a, x, m, k, (size_t)k, 1);
    ftq_bf16_pack_a(at, x, k, m, 1, (size_t)k); /* A = x^T */
    ftq_bf16_pack_b(b, x, m, k, (size_t)k, 1);
    ftq_bf16_pack_b(bt, x, k, m, 1, (size_t)k);
    int bad = 0;
    for (int i = 0; i < ftq_bf16_pad32(m); i++)
        for (int j = 0; j < ftq_bf16_pad32(k); j++) {
            float want = i < m && j < k ? bf(x[(size_t)i * k + j]) : 0.0f;
            float got[4] = {ftq_bf16_packed_a_at(a, k, i, j), ftq_bf16_packed_a_at(at, m, j, i),
                            ftq_bf16_packed_b_at(b, k, i, j), ftq_bf16_packed_b_at(bt, m, j, i)};
            for (int q = 0; q < 4; q++)
                if (memcmp(&got[q], &want, 4) != 0 && !(isnan(got[q]) && isnan(want)))
                    bad++;
        }
    ASSERT_INT_EQ(bad, 0);
    ASSERT_NEAR(ftq_bf16_packed_a_at(a, k, 0, 0), 1.0, 0.0);
    ASSERT_NEAR(ftq_bf16_packed_a_at(a, k, 0, 1), 1.0 + 4.0 / 256, 0.0);
    CU_ASSERT(isnan(ftq_bf16_packed_b_at(b, k, 2 / k, 2 % k)));
    free(x);
    free(a);
    free(at);
    free(b);
    free(bt);
}

static void test_pack(void)
{
    pack_case(37, 45);
    pack_case(20, 57);
    pack_case(3, 2);
    pack_case(9, 300); /* B = x^T: 19 panels, three groups of panels packed together */
}

/* C = init + A B^T for f32 x [m, k] and w [n, k] on `path`; also returns the double
 * product of the bf16-rounded values and sum |a b| (error scale) when ref is not NULL. */
static void product(ftq_bf16_path path, float *c, const float *x, const float *w, const float *bias, int m, int n,
                    int k, int accumulate, double *ref, double *mag)
{
    uint16_t *a = malloc(sizeof(uint16_t) * ftq_bf16_a_elems(m, k));
    uint16_t *b = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(n, k));
    ftq_bf16_pack_a(a, x, m, k, (size_t)k, 1);
    ftq_bf16_pack_b(b, w, n, k, (size_t)k, 1);
    ftq_gemm_bf16(path, c, (size_t)n, a, b, m, n, k, bias, accumulate);
    for (int i = 0; ref && i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, g = 0;
            for (int q = 0; q < k; q++) {
                double p = (double)bf(x[(size_t)i * k + q]) * bf(w[(size_t)j * k + q]);
                s += p;
                g += fabs(p);
            }
            ref[(size_t)i * n + j] = s;
            mag[(size_t)i * n + j] = g;
        }
    free(a);
    free(b);
}

static const int shapes[][3] = {{1, 1, 1},    {5, 7, 3},     {33, 17, 31},  {31, 33, 65}, {64, 64, 64},
                                {47, 50, 97}, {100, 37, 300}, {129, 96, 40}, {3, 161, 514}};

/* The reference agrees with a double-precision sum of the same bf16 products within the
 * fp32 accumulation error: k roundings of at most 2^-24 relative to sum |a b| (plus the
 * bias / accumulate add). */
static void test_reference(void)
{
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k), *bias = malloc(sizeof(float) * n);
        float *c = malloc(sizeof(float) * m * n);
        double *ref = malloc(sizeof(double) * m * n), *mag = malloc(sizeof(double) * m * n);
        fill(x, (size_t)m * k, 10 + s, 2.0f);
        fill(w, (size_t)n * k, 20 + s, 0.5f);
        fill(bias, (size_t)n, 30 + s, 1.0f);
        product(FTQ_BF16_SCALAR, c, x, w, bias, m, n, k, 0, ref, mag);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double want = ref[(size_t)i * n + j] + bias[j];
                double tol = (2.0 * k + 2) * ldexp(1.0, -24) * (mag[(size_t)i * n + j] + fabs(bias[j]));
                if (fabs(c[(size_t)i * n + j] - want) > tol) {
                    if (bad++ < 3)
                        fprintf(stderr, "\n  %dx%dx%d [%d,%d]: %.9g, want %.9g (tol %.3g)", m, n, k, i, j,
                                c[(size_t)i * n + j], want, tol);
                }
            }
        /* accumulate: c += A B^T */
        float *c2 = malloc(sizeof(float) * m * n);
        memcpy(c2, c, sizeof(float) * m * n);
        product(FTQ_BF16_SCALAR, c2, x, w, NULL, m, n, k, 1, NULL, NULL);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double want = ref[(size_t)i * n + j] * 2 + bias[j];
                double tol = (4.0 * k + 4) * ldexp(1.0, -24) * (2 * mag[(size_t)i * n + j] + fabs(bias[j]));
                if (fabs(c2[(size_t)i * n + j] - want) > tol)
                    bad++;
            }
        free(x);
        free(w);
        free(bias);
        free(c);
        free(c2);
        free(ref);
        free(mag);
    }
    ASSERT_INT_EQ(bad, 0);
}

/* A SIMD path against the reference on odd shapes, with bias and accumulate. AVX512-BF16:
 * bit for bit (the same order of fp32 additions of exact products; the inputs here have no
 * subnormals, which the instruction flushes). AMX: TDPBF16PS adds in an order of its own,
 * so both are fp32 sums of the same exact products in different orders, each within
 * (k + 1) u sum |a b| of the exact sum (u = 2^-24); they may differ by twice that, plus
 * the rounding of the final init add. AMX is also run twice: same bits. */
static void path_vs_reference(ftq_bf16_path p)
{
    const int exact = p != FTQ_BF16_AMX;
    if (!ftq_bf16_path_available(p)) {
        test_skip("%s path: this cpu (after FTQ_CPU_MASK) lacks it (has: %s)", ftq_bf16_path_name(p),
                  ftq_cpu_features_str());
        return;
    }
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k), *bias = malloc(sizeof(float) * n);
        float *c1 = malloc(sizeof(float) * m * n), *c2 = malloc(sizeof(float) * m * n);
        fill(x, (size_t)m * k, 40 + s, 2.0f);
        fill(w, (size_t)n * k, 50 + s, 0.5f);
        fill(bias, (size_t)n, 60 + s, 1.0f);
        for (int mode = 0; mode < 3; mode++) { /* plain, bias, accumulate onto the bias result */
            if (mode < 2) {
                product(FTQ_BF16_SCALAR, c1, x, w, mode ? bias : NULL, m, n, k, 0, NULL, NULL);
                product(p, c2, x, w, mode ? bias : NULL, m, n, k, 0, NULL, NULL);
            } else {
                product(FTQ_BF16_SCALAR, c1, x, w, NULL, m, n, k, 1, NULL, NULL);
                product(p, c2, x, w, NULL, m, n, k, 1, NULL, NULL);
            }
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    size_t e = (size_t)i * n + j;
                    double g = 0;
                    for (int q = 0; !exact && q < k; q++)
                        g += fabs((double)bf(x[(size_t)i * k + q]) * bf(w[(size_t)j * k + q]));
                    double tol = exact ? 0.0 : (2.0 * k + 4) * ldexp(1.0, -24) * (mode == 2 ? 2 * g : g + 1.0);
                    int differ = exact ? memcmp(&c1[e], &c2[e], 4) != 0 : !(fabs((double)c1[e] - c2[e]) <= tol);
                    if (differ && bad++ < 3)
                        fprintf(stderr, "\n  %s %dx%dx%d mode %d [%d,%d]: %.9g, reference %.9g (tol %.3g)",
                                ftq_bf16_path_name(p), m, n, k, mode, i, j, c2[e], c1[e], tol);
                }
            if (!exact && mode == 0) { /* deterministic */
                float *c3 = malloc(sizeof(float) * m * n);
                product(p, c3, x, w, NULL, m, n, k, 0, NULL, NULL);
                if (memcmp(c2, c3, sizeof(float) * m * n) != 0)
                    bad++;
                free(c3);
            }
        }
        free(x);
        free(w);
        free(bias);
        free(c1);
        free(c2);
    }
    ASSERT_INT_EQ(bad, 0);
}

static void test_avx512(void) { path_vs_reference(FTQ_BF16_AVX512); }
static void test_amx(void) { path_vs_reference(FTQ_BF16_AMX); }

/* The three products of a linear layer through the packing strides, against the f32
 * definitions computed here in double from the bf16 values: Y = X W^T + b, dX = dY W,
 * dW += dY^T X (best path). */
static void test_linear_shapes(void)
{
    const int T = 45, I = 70, O = 33;
    float *x = malloc(sizeof(float) * T * I), *w = malloc(sizeof(float) * O * I), *dy = malloc(sizeof(float) * T * O);
    float *bias = malloc(sizeof(float) * O);
    fill(x, (size_t)T * I, 70, 1.0f);
    fill(w, (size_t)O * I, 71, 0.3f);
    fill(dy, (size_t)T * O, 72, 0.1f);
    fill(bias, (size_t)O, 73, 1.0f);
    float *y = malloc(sizeof(float) * T * O), *dx = malloc(sizeof(float) * T * I), *dw = malloc(sizeof(float) * O * I);
    for (int i = 0; i < O * I; i++)
        dw[i] = 0.25f; /* accumulated onto */
    size_t amax = ftq_bf16_a_elems(O, T) > ftq_bf16_a_elems(T, I) ? ftq_bf16_a_elems(O, T) : ftq_bf16_a_elems(T, I);
    uint16_t *a = malloc(sizeof(uint16_t) * amax);
    uint16_t *bw = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(O, I)), *bwt = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(I, O));
    uint16_t *bx = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(I, T));
    ftq_bf16_pack_b(bw, w, O, I, (size_t)I, 1);
    ftq_bf16_pack_b(bwt, w, I, O, 1, (size_t)I);
    ftq_bf16_pack_a(a, x, T, I, (size_t)I, 1);
    ftq_gemm_bf16(FTQ_BF16_AUTO, y, (size_t)O, a, bw, T, O, I, bias, 0);
    ftq_bf16_pack_a(a, dy, T, O, (size_t)O, 1);
    ftq_gemm_bf16(FTQ_BF16_AUTO, dx, (size_t)I, a, bwt, T, I, O, NULL, 0);
    ftq_bf16_pack_a(a, dy, O, T, 1, (size_t)O);
    ftq_bf16_pack_b(bx, x, I, T, 1, (size_t)I);
    ftq_gemm_bf16(FTQ_BF16_AUTO, dw, (size_t)I, a, bx, O, I, T, NULL, 1);
    /* dW again as (X^T dY)^T: the same sums (products commute exactly, same pair order) */
    float *dw2 = malloc(sizeof(float) * O * I), *dw3 = malloc(sizeof(float) * O * I);
    uint16_t *ax = malloc(sizeof(uint16_t) * ftq_bf16_a_elems(I, T)), *bdy = malloc(sizeof(uint16_t) * ftq_bf16_b_elems(O, T));
    ftq_bf16_pack_a(ax, x, I, T, 1, (size_t)I);
    ftq_bf16_pack_b(bdy, dy, O, T, 1, (size_t)O);
    for (int i = 0; i < O * I; i++)
        dw2[i] = dw3[i] = 0.25f;
    ftq_gemm_bf16_tc(FTQ_BF16_SCALAR, dw2, (size_t)I, ax, bdy, I, O, T, 1);
    ftq_gemm_bf16(FTQ_BF16_SCALAR, dw3, (size_t)I, a, bx, O, I, T, NULL, 1);
    CU_ASSERT(memcmp(dw2, dw3, sizeof(float) * O * I) == 0);
    memcpy(dw3, dw2, sizeof(float) * O * I);
    for (int i = 0; i < O * I; i++)
        dw2[i] = 0.25f;
    ftq_gemm_bf16_tc(FTQ_BF16_AUTO, dw2, (size_t)I, ax, bdy, I, O, T, 1);
    int bad = 0;
    const double u = ldexp(1.0, -24);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < O; o++) {
            double s = bias[o], g = fabs(bias[o]);
            for (int i = 0; i < I; i++) {
                s += (double)bf(x[t * I + i]) * bf(w[o * I + i]);
                g += fabs((double)bf(x[t * I + i]) * bf(w[o * I + i]));
            }
            bad += fabs(y[t * O + o] - s) > (2.0 * I + 2) * u * g;
        }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) {
            double s = 0, g = 0;
            for (int o = 0; o < O; o++) {
                s += (double)bf(dy[t * O + o]) * bf(w[o * I + i]);
                g += fabs((double)bf(dy[t * O + o]) * bf(w[o * I + i]));
            }
            bad += fabs(dx[t * I + i] - s) > (2.0 * O + 2) * u * g;
        }
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double s = 0.25, g = 0.25;
            for (int t = 0; t < T; t++) {
                s += (double)bf(dy[t * O + o]) * bf(x[t * I + i]);
                g += fabs((double)bf(dy[t * O + o]) * bf(x[t * I + i]));
            }
            bad += fabs(dw[o * I + i] - s) > (2.0 * T + 2) * u * g;
            bad += fabs(dw2[o * I + i] - s) > (2.0 * T + 2) * u * g;
        }
    /* and without accumulating */
    ftq_gemm_bf16_tc(FTQ_BF16_SCALAR, dw2, (size_t)I, ax, bdy, I, O, T, 0);
    for (int i = 0; i < O * I; i++)
        bad += fabs(dw2[i] - (dw3[i] - 0.25f)) > 1e-6f * (1.0f + fabsf(dw3[i]));
    free(dw2);
    free(dw3);
    free(ax);
    free(bdy);
    ASSERT_INT_EQ(bad, 0);
    free(x);
    free(w);
    free(dy);
    free(bias);
    free(y);
    free(dx);
    free(dw);
    free(a);
    free(bw);
    free(bwt);
    free(bx);
}

/* 1 and 2 threads give identical bits (each 32 x 32 block is one thread's, in one order),
 * on a product large enough to run in parallel. */
static void test_threads(void)
{
    const int m = 200, n = 150, k = 260;
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
    float *c1 = malloc(sizeof(float) * m * n), *c2 = malloc(sizeof(float) * m * n);
    fill(x, (size_t)m * k, 80, 1.0f);
    fill(w, (size_t)n * k, 81, 1.0f);
    int saved = ftq_get_threads();
    ftq_set_threads(1);
    product(FTQ_BF16_AUTO, c1, x, w, NULL, m, n, k, 0, NULL, NULL);
    ftq_set_threads(2);
    product(FTQ_BF16_AUTO, c2, x, w, NULL, m, n, k, 0, NULL, NULL);
    ftq_set_threads(saved);
    CU_ASSERT(memcmp(c1, c2, sizeof(float) * m * n) == 0);
    free(x);
    free(w);
    free(c1);
    free(c2);
}

void test_register_gemm_bf16(void)
{
    static const test_case cases[] = {
        {"pack", test_pack},         {"reference", test_reference},       {"avx512bf16", test_avx512},
        {"amx", test_amx},           {"linear_shapes", test_linear_shapes}, {"threads", test_threads},
        {NULL, NULL},
    };
    test_add_suite("gemm_bf16", cases);
}
