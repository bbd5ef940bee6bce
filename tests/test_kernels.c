/* test_kernels.c - every fast kernel (SIMD chosen at run time, sgemm, OpenMP) against its
 * scalar reference, over sizes that hit every SIMD tail (n = 1..67, odd T, head_dim
 * 8/16/64/80) and both sides of the BLAS / attention-path thresholds. Run with
 * FTQ_CPU_MASK=0 to exercise the scalar dispatch as well. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/test_util.h"

static float *randn(ftq_rng *r, size_t n, float scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = ftq_rng_normal(r) * scale;
    return v;
}

/* Worst |got - want| / (atol + rtol |want|) over n floats; > 1 fails. Prints the worst. */
static int check_close(const char *what, const float *got, const float *want, size_t n,
                       double atol, double rtol)
{
    double worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        double q = d / lim;
        if (!(q <= worst)) { /* also catches NaN */
            worst = q;
            wi = i;
        }
    }
    int ok = worst <= 1.0;
    if (!ok)
        fprintf(stderr, "\n  %s: [%zu] got %.9g want %.9g (atol %.2g rtol %.2g)\n", what, wi,
                got[wi], want[wi], atol, rtol);
    CU_ASSERT(ok);
    return ok;
}

/* Dot product tolerance relative to the sum of the magnitudes of the products. */
static void test_dot(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 1);
    for (int n = 0; n <= 300; n += (n < 67 ? 1 : 29)) {
        float *a = randn(&r, (size_t)n, 1.0f), *b = randn(&r, (size_t)n, 1.0f);
        double mag = 0.0, exact = 0.0;
        for (int i = 0; i < n; i++) {
            mag += fabs((double)a[i] * b[i]);
            exact += (double)a[i] * b[i];
        }
        float got = ftq_dot(a, b, n), ref = ftq_dot_ref(a, b, n);
        ASSERT_NEAR(got, exact, 1e-6 * mag + 1e-30);
        ASSERT_NEAR(ref, exact, 1e-6 * n * mag + 1e-30);
        free(a);
        free(b);
    }
}

/* Linear: the dispatching path (dot kernel below FTQ_SGEMM_MIN_WORK, sgemm above) vs the
 * naive triple loop. Tolerance per output: 1e-6 x (|bias| + sum_i |x_i w_i|) — float
 * rounding of a length-n sum with any summation order stays well inside it. */
static void linear_case(ftq_rng *r, int T, int in, int out, int with_bias)
{
    float *x = randn(r, (size_t)T * in, 1.0f), *w = randn(r, (size_t)out * in, 0.5f);
    float *b = with_bias ? randn(r, (size_t)out, 1.0f) : NULL;
    float *y = malloc(sizeof(float) * (size_t)T * out), *y2 = malloc(sizeof(float) * (size_t)T * out);
    ftq_tensor wt = {.name = "w", .dtype = FTQ_DTYPE_F32, .ndim = 2, .shape = {out, in},
                     .nbytes = sizeof(float) * (size_t)out * in, .data = w};
    ftq_linear_forward(y, x, &wt, b, T, in, out);
    ftq_linear_f32_ref(y2, x, w, b, T, in, out);
    int bad = 0;
    for (int t = 0; t < T && !bad; t++)
        for (int o = 0; o < out; o++) {
            double mag = b ? fabs(b[o]) : 0.0;
            for (int i = 0; i < in; i++)
                mag += fabs((double)x[(size_t)t * in + i] * w[(size_t)o * in + i]);
            double d = fabs((double)y[(size_t)t * out + o] - y2[(size_t)t * out + o]);
            if (!(d <= 1e-6 * mag + 1e-30)) {
                fprintf(stderr, "\n  linear T=%d in=%d out=%d bias=%d: [%d,%d] %.9g vs %.9g\n", T, in,
                        out, with_bias, t, o, y[(size_t)t * out + o], y2[(size_t)t * out + o]);
                bad = 1;
                break;
            }
        }
    CU_ASSERT(!bad);
    free(x);
    free(w);
    free(b);
    free(y);
    free(y2);
}

static void test_linear(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 2);
    for (int in = 1; in <= 67; in++)
        linear_case(&r, 1, in, 1 + in % 9, in & 1); /* matvec, every tail, out not %4 */
    for (int out = 1; out <= 9; out++)
        linear_case(&r, 3, 17, out, 1);
    /* batched rows (T >= FTQ_BATCH_MIN_T) but below the sgemm work threshold */
    linear_case(&r, FTQ_BATCH_MIN_T, 17, 9, 1);
    linear_case(&r, FTQ_BATCH_MIN_T + 1, 64, 64, 0);
    /* around the sgemm threshold (64^3 multiply-adds) */
    linear_case(&r, 63, 64, 64, 1);
    linear_case(&r, 64, 64, 64, 1);
    linear_case(&r, 65, 64, 64, 0);
    linear_case(&r, 1, 768, 2304, 1);   /* decoding shape */
    linear_case(&r, 7, 80, 130, 1);
    linear_case(&r, 33, 130, 257, 1);   /* odd everything, sgemm */
    linear_case(&r, 129, 64, 176, 0);
}

/* A weight that does not match the layer is refused with a message, never read past
 * (these were asserts, compiled out in release builds). */
static void test_linear_refusals(void)
{
    float w[6] = {1, 2, 3, 4, 5, 6}, x[3] = {1, 1, 1}, y[4] = {0};
    ftq_tensor wt = {.name = "blk.0.wq", .dtype = FTQ_DTYPE_F32, .ndim = 2, .shape = {2, 3},
                     .nbytes = sizeof w, .data = w};
    ASSERT_OK(ftq_linear_forward_ex(y, x, &wt, NULL, 1, 3, 2, NULL));
    ASSERT_NEAR(y[0], 6.0, 0.0);
    ASSERT_NEAR(y[1], 15.0, 0.0);
    /* a layer that expects [4, 3] */
    ASSERT_INT_EQ(ftq_linear_forward_ex(y, x, &wt, NULL, 1, 3, 4, NULL), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "'blk.0.wq'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "expected [4, 3]"));
    /* fewer bytes than the shape says */
    wt.nbytes = 5 * sizeof(float);
    ASSERT_INT_EQ(ftq_linear_forward_ex(y, x, &wt, NULL, 1, 3, 2, NULL), FTQ_EINVAL);
    wt.nbytes = sizeof w;
    /* a dtype the loader should have converted */
    wt.dtype = FTQ_DTYPE_F16;
    ASSERT_INT_EQ(ftq_linear_forward_ex(y, x, &wt, NULL, 1, 3, 2, NULL), FTQ_EUNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "F16"));
    /* the void form fills the output with NaN instead of leaving it stale */
    ftq_linear_forward(y, x, &wt, NULL, 1, 3, 2);
    CU_ASSERT(isnan(y[0]) && isnan(y[1]));
}

static void test_rmsnorm(void)
{
    if (!test_require_cpu(FTQ_CPU_AVX2 | FTQ_CPU_FMA, "avx2 rmsnorm"))
        return;
    ftq_rng r;
    ftq_rng_seed(&r, 3);
    int Ts[] = {1, 3, 7};
    for (int C = 1; C <= 67 + 768; C += (C < 67 ? 1 : 768)) {
        for (size_t ti = 0; ti < 3; ti++) {
            int T = Ts[ti];
            float *x = randn(&r, (size_t)T * C, 2.0f), *w = randn(&r, (size_t)C, 1.0f);
            float *y = malloc(sizeof(float) * (size_t)T * C), *y2 = malloc(sizeof(float) * (size_t)T * C);
            float rs[7], rs2[7];
            ftq_rmsnorm_forward(y, rs, x, w, 1e-5f, T, C);
            ftq_rmsnorm_forward_ref(y2, rs2, x, w, 1e-5f, T, C);
            check_close("rmsnorm", y, y2, (size_t)T * C, 1e-6, 2e-6);
            check_close("rmsnorm rstd", rs, rs2, (size_t)T, 0.0, 2e-6);
            /* in place */
            ftq_rmsnorm_forward(x, NULL, x, w, 1e-5f, T, C);
            check_close("rmsnorm in place", x, y2, (size_t)T * C, 1e-6, 2e-6);
            free(x);
            free(w);
            free(y);
            free(y2);
        }
    }
}

static void test_layernorm(void)
{
    if (!test_require_cpu(FTQ_CPU_AVX2 | FTQ_CPU_FMA, "avx2 layernorm"))
        return;
    ftq_rng r;
    ftq_rng_seed(&r, 4);
    int Ts[] = {1, 3, 7};
    for (int C = 1; C <= 67 + 768; C += (C < 67 ? 1 : 768)) {
        for (size_t ti = 0; ti < 3; ti++) {
            int T = Ts[ti];
            float *x = randn(&r, (size_t)T * C, 2.0f), *w = randn(&r, (size_t)C, 1.0f);
            float *b = randn(&r, (size_t)C, 1.0f);
            for (int i = 0; i < T * C; i++)
                x[i] += 3.0f; /* non-zero mean */
            float *y = malloc(sizeof(float) * (size_t)T * C), *y2 = malloc(sizeof(float) * (size_t)T * C);
            float mu[7], mu2[7], rs[7], rs2[7];
            ftq_layernorm_forward(y, mu, rs, x, w, ti == 1 ? NULL : b, 1e-5f, T, C);
            ftq_layernorm_forward_ref(y2, mu2, rs2, x, w, ti == 1 ? NULL : b, 1e-5f, T, C);
            check_close("layernorm", y, y2, (size_t)T * C, 1e-5, 1e-5);
            check_close("layernorm mean", mu, mu2, (size_t)T, 1e-6, 1e-6);
            if (C > 1) /* C == 1 has zero variance: rstd = 1/sqrt(eps) times rounding noise */
                check_close("layernorm rstd", rs, rs2, (size_t)T, 0.0, 1e-5);
            free(x);
            free(w);
            free(b);
            free(y);
            free(y2);
        }
    }
}

/* Elementwise: a few ulp (exp-based fast paths vs libm). Inputs include the saturating
 * ranges (|x| up to 100) where exp over/underflows. */
static float *act_inputs(ftq_rng *r, size_t n)
{
    float *x = randn(r, n, 4.0f);
    static const float special[] = {0.0f, -0.0f, 1e-6f, -1e-6f, 30.0f, -30.0f, 88.5f, -88.5f, 100.0f, -100.0f};
    for (size_t i = 0; i < n && i < 10; i++)
        x[n - 1 - i] = special[i];
    return x;
}

static void test_gelu_tanh(void)
{
    if (!test_require_cpu(FTQ_CPU_AVX2 | FTQ_CPU_FMA, "avx2 gelu_tanh"))
        return;
    ftq_rng r;
    ftq_rng_seed(&r, 5);
    for (size_t n = 1; n <= 20000; n = n < 67 ? n + 1 : n * 7 + 3) {
        float *x = act_inputs(&r, n), *y = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n);
        ftq_gelu_tanh_forward(y, x, n);
        ftq_gelu_tanh_forward_ref(y2, x, n);
        check_close("gelu_tanh", y, y2, n, 1e-7, 4e-6);
        ftq_gelu_tanh_forward(x, x, n); /* in place */
        check_close("gelu_tanh in place", x, y2, n, 1e-7, 4e-6);
        free(x);
        free(y);
        free(y2);
    }
}

/* Exact GELU against a double-precision evaluation, and its distance from the tanh form. */
static void test_gelu_erf(void)
{
    float x[] = {-5.0f, -1.0f, -0.5f, 0.0f, 0.3f, 1.0f, 2.5f, 7.0f};
    float y[8];
    ftq_gelu_erf_forward(y, x, 8);
    for (int i = 0; i < 8; i++) {
        double e = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
        ASSERT_NEAR(y[i], e, 1e-6 * (1.0 + fabs(e)));
    }
    float z[1] = {1.0f}, g[1];
    ftq_gelu_tanh_forward_ref(g, z, 1);
    ftq_gelu_erf_forward(z, z, 1);
    CU_ASSERT(fabsf(g[0] - z[0]) > 1e-5f); /* the variants differ */
}

static void test_silu_mul(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 6);
    for (size_t n = 1; n <= 20000; n = n < 67 ? n + 1 : n * 7 + 3) {
        float *g = act_inputs(&r, n), *u = randn(&r, n, 1.0f);
        float *y = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n);
        ftq_silu_mul_forward(y, g, u, n);
        ftq_silu_mul_forward_ref(y2, g, u, n);
        check_close("silu_mul", y, y2, n, 1e-7, 4e-6);
        ftq_silu_mul_forward(g, g, u, n); /* out aliases gate */
        check_close("silu_mul in place", g, y2, n, 1e-7, 4e-6);
        free(g);
        free(u);
        free(y);
        free(y2);
    }
    float one = 1.0f, two = 2.0f, out;
    ftq_silu_mul_forward(&out, &one, &two, 1);
    ASSERT_NEAR(out, 2.0 / (1.0 + exp(-1.0)), 1e-6);
}

/* RoPE: the fast path does the same operations in the same order -> bitwise identical.
 * The table is checked against double math, and the rotation against HF rotate_half. */
static void test_rope(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 7);
    int hds[] = {2, 6, 8, 16, 18, 64, 80, 128};
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
        int hd = hds[hi], half = hd / 2, T = 5, H = 3, pos0 = 37;
        float *ct = malloc(sizeof(float) * 64 * half), *st = malloc(sizeof(float) * 64 * half);
        ftq_rope_table(ct, st, 64, hd, 10000.0);
        float *x = randn(&r, (size_t)T * H * hd, 1.0f), *x2 = malloc(sizeof(float) * T * H * hd);
        float *x0 = malloc(sizeof(float) * T * H * hd);
        memcpy(x2, x, sizeof(float) * T * H * hd);
        memcpy(x0, x, sizeof(float) * T * H * hd);
        ftq_rope_forward(x, ct + pos0 * half, st + pos0 * half, T, H * hd, H, hd);
        ftq_rope_forward_ref(x2, ct + pos0 * half, st + pos0 * half, T, H * hd, H, hd);
        CU_ASSERT(memcmp(x, x2, sizeof(float) * T * H * hd) == 0);
        /* HF: out = x cos + rotate_half(x) sin, rotate_half(x) = [-x2, x1] */
        double worst = 0.0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < hd; i++) {
                    int j = i % half;
                    double a = (double)(pos0 + t) * pow(10000.0, -2.0 * j / hd);
                    const float *v = x0 + (size_t)t * H * hd + (size_t)h * hd;
                    double rot = i < half ? -(double)v[i + half] : (double)v[i - half];
                    double e = v[i] * cos(a) + rot * sin(a);
                    double d = fabs(e - x[(size_t)t * H * hd + (size_t)h * hd + i]);
                    worst = d > worst ? d : worst;
                }
        CU_ASSERT(worst < 1e-6);
        free(ct);
        free(st);
        free(x);
        free(x2);
        free(x0);
    }
}

static void test_softmax(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 8);
    for (int n = 1; n <= 600; n += (n < 67 ? 1 : 131)) {
        float *x = randn(&r, (size_t)n, 3.0f), *x2 = malloc(sizeof(float) * n);
        if (n % 7 == 3)
            x[n / 2] = 80.0f; /* one large logit: the others underflow */
        memcpy(x2, x, sizeof(float) * n);
        ftq_softmax_forward(x, n);
        ftq_softmax_forward_ref(x2, n);
        check_close("softmax", x, x2, (size_t)n, 1e-9, 4e-6);
        double s = 0.0;
        for (int i = 0; i < n; i++)
            s += x[i];
        ASSERT_NEAR(s, 1.0, 1e-5);
        free(x);
        free(x2);
    }
}

/* Attention: sgemm path (T >= FTQ_BATCH_MIN_T), dot path and the OpenMP-only path (AVX2 for
 * head_dim % 8 == 0) vs the naive double loop,
 * with GQA, offsets into a cache (pos0 > 0), row blocks that straddle FTQ_ATTN_ROW_BLOCK,
 * and a sliding window. Outputs are convex combinations of N(0,1) values: atol 2e-6. */
static void attention_case(ftq_rng *r, int H, int KV, int hd, int T, int pos0, int window)
{
    int L = pos0 + T;
    float *q = randn(r, (size_t)T * H * hd, 1.0f);
    float *k = randn(r, (size_t)L * KV * hd, 1.0f), *v = randn(r, (size_t)L * KV * hd, 1.0f);
    float *o = malloc(sizeof(float) * T * H * hd), *o2 = malloc(sizeof(float) * T * H * hd);
    float *sc = malloc(sizeof(float) * ftq_attention_scratch_floats(T, L, H));
    float *sc2 = malloc(sizeof(float) * L);
    ftq_attention_forward(o, sc, q, k, v, T, pos0, H, KV, hd, window);
    ftq_attention_forward_ref(o2, sc2, q, k, v, T, pos0, H, KV, hd, window);
    char what[128];
    snprintf(what, sizeof what, "attention H=%d KV=%d hd=%d T=%d pos0=%d window=%d", H, KV, hd, T,
             pos0, window);
    check_close(what, o, o2, (size_t)T * H * hd, 2e-6, 1e-5);
    /* the OpenMP-only path (quantized models) at every T */
    ftq_attention_forward_omp(o, sc, q, k, v, T, pos0, H, KV, hd, window);
    snprintf(what, sizeof what, "attention_omp H=%d KV=%d hd=%d T=%d pos0=%d window=%d", H, KV, hd, T,
             pos0, window);
    check_close(what, o, o2, (size_t)T * H * hd, 2e-6, 1e-5);
    free(q);
    free(k);
    free(v);
    free(o);
    free(o2);
    free(sc);
    free(sc2);
}

static void test_attention(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 9);
    int cfg[][3] = {{4, 4, 8}, {4, 2, 16}, {8, 2, 64}, {2, 1, 80}, {3, 3, 5}, {12, 12, 64}};
    int Ts[] = {1, 2, FTQ_BATCH_MIN_T - 1, FTQ_BATCH_MIN_T, 9, 65, FTQ_ATTN_ROW_BLOCK + 2};
    int pos0s[] = {0, 5, 70};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
            for (size_t pi = 0; pi < 3; pi++)
                attention_case(&r, cfg[c][0], cfg[c][1], cfg[c][2], Ts[ti], pos0s[pi], 0);
    /* sliding window (Mistral): only the last `window` keys are visible */
    attention_case(&r, 4, 2, 16, 2 * FTQ_ATTN_ROW_BLOCK + 3, 0, 16);
    attention_case(&r, 4, 2, 16, 9, 70, 16);
    attention_case(&r, 4, 2, 16, 1, 70, 16);
    attention_case(&r, 4, 2, 16, 65, 5, 1);
    /* the AVX-512 16-row blocks of the OpenMP path (hd a multiple of 64) under a window */
    attention_case(&r, 4, 2, 64, 65, 5, 16);
    attention_case(&r, 2, 1, 128, 40, 70, 30);
}

/* Causality of the reference itself: changing a future key/value does not change
 * earlier outputs (guards the reference the other tests trust). */
static void test_attention_causal(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 10);
    int H = 2, KV = 1, hd = 8, T = 12;
    float *q = randn(&r, (size_t)T * H * hd, 1.0f);
    float *k = randn(&r, (size_t)T * KV * hd, 1.0f), *v = randn(&r, (size_t)T * KV * hd, 1.0f);
    float *o = malloc(sizeof(float) * T * H * hd), *o2 = malloc(sizeof(float) * T * H * hd);
    float *sc = malloc(sizeof(float) * ftq_attention_scratch_floats(T, T, H));
    ftq_attention_forward(o, sc, q, k, v, T, 0, H, KV, hd, 0);
    k[(T - 1) * KV * hd] += 5.0f;
    v[(T - 1) * KV * hd] += 5.0f;
    ftq_attention_forward(o2, sc, q, k, v, T, 0, H, KV, hd, 0);
    CU_ASSERT(memcmp(o, o2, sizeof(float) * (T - 1) * H * hd) == 0);
    CU_ASSERT(memcmp(o + (T - 1) * H * hd, o2 + (T - 1) * H * hd, sizeof(float) * H * hd) != 0);
    free(q);
    free(k);
    free(v);
    free(o);
    free(o2);
    free(sc);
}

void test_register_kernels(void)
{
    static const test_case cases[] = {
        {"dot", test_dot},
        {"linear", test_linear},
        {"linear_refusals", test_linear_refusals},
        {"rmsnorm", test_rmsnorm},
        {"layernorm", test_layernorm},
        {"gelu_tanh", test_gelu_tanh},
        {"gelu_erf", test_gelu_erf},
        {"silu_mul", test_silu_mul},
        {"rope", test_rope},
        {"softmax", test_softmax},
        {"attention", test_attention},
        {"attention_causal", test_attention_causal},
        {NULL, NULL},
    };
    test_add_suite("kernels", cases);
}
