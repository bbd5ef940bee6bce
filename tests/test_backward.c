/* test_backward.c - the backward kernels of kernels/ (embedding.c, norm_backward.c,
 * linear_backward.c, act_backward.c, rope_backward.c, attention_train.c, xent.c). Each op's float gradient is checked against central finite differences of
 * a double-precision reference forward written here (loss = sum(r * y) for a random r, so
 * dout = r): h = 1e-5 leaves FD truncation and rounding near 1e-10, far below float
 * rounding, and the tolerance is 1e-4 of the largest gradient entry (float kernels land
 * near 1e-6). Fast paths are compared with their scalar references over sizes that hit
 * every SIMD tail; run with FTQ_CPU_MASK=0 to exercise the scalar dispatch as well. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/test_util.h"

#define FD_H 1e-5
#define FD_TOL 1e-4

static float *randn(ftq_rng *r, size_t n, float scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = ftq_rng_normal(r) * scale;
    return v;
}

static double *to_double(const float *x, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* A loss evaluated in double from the current contents of the op's double inputs. */
typedef double (*loss_fn)(void *ctx);

/* Central differences of f with respect to x[0..n) compared with the analytic gradient g:
 * max |g - fd| <= FD_TOL * max |fd| + atol (atol: float rounding of intermediate terms
 * that cancel, for ops whose gradient can be much smaller than its parts). */
static int fd_check_atol(const char *what, double *x, size_t n, const float *g, loss_fn f, void *ctx,
                         double atol)
{
    double *fd = malloc(sizeof(double) * (n ? n : 1)), scale = 0.0, worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H;
        double lp = f(ctx);
        x[i] = x0 - FD_H;
        double lm = f(ctx);
        x[i] = x0;
        fd[i] = (lp - lm) / (2.0 * FD_H);
        scale = fabs(fd[i]) > scale ? fabs(fd[i]) : scale;
    }
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - fd[i]);
        if (!(d <= worst)) {
            worst = d;
            wi = i;
        }
    }
    int ok = n == 0 || worst <= FD_TOL * scale + atol || (scale == 0.0 && worst <= 1e-12);
    if (!ok)
        fprintf(stderr, "\n  %s: [%zu] analytic %.9g, finite difference %.9g (scale %.3g)\n", what, wi,
                n ? g[wi] : 0.0, n ? fd[wi] : 0.0, scale);
    CU_ASSERT(ok);
    free(fd);
    return ok;
}

static int fd_check(const char *what, double *x, size_t n, const float *g, loss_fn f, void *ctx)
{
    return fd_check_atol(what, x, n, g, f, ctx, 0.0);
}

/* Worst |got - want| / (atol + rtol |want|) over n floats; > 1 fails. */
static int check_close(const char *what, const float *got, const float *want, size_t n, double atol,
                       double rtol)
{
    double worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double q = fabs((double)got[i] - (double)want[i]) / (atol + rtol * fabs((double)want[i]));
        if (!(q <= worst)) {
            worst = q;
            wi = i;
        }
    }
    int ok = worst <= 1.0;
    if (!ok)
        fprintf(stderr, "\n  %s: [%zu] got %.9g want %.9g (atol %.2g rtol %.2g)\n", what, wi, got[wi],
                want[wi], atol, rtol);
    CU_ASSERT(ok);
    return ok;
}

static float max_abs(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* ---- embedding ------------------------------------------------------------------------------ */

typedef struct {
    double *wte, *wpe;
    const int32_t *ids;
    const float *r;
    int B, T, C;
} emb_ctx;

static double emb_loss(void *p)
{
    emb_ctx *c = p;
    double L = 0.0;
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int i = 0; i < c->C; i++) {
                size_t r = (size_t)b * c->T + t;
                L += c->r[r * c->C + i] * (c->wte[(size_t)c->ids[r] * c->C + i] + c->wpe[(size_t)t * c->C + i]);
            }
    return L;
}

/* Repeated ids (scatter-add collisions), every channel tail of the 64-wide blocks; the
 * fast path is bit-identical to the serial reference (same order per element). */
static void test_embedding(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 101);
    int Cs[] = {1, 7, 64, 65, 130};
    for (size_t ci = 0; ci < sizeof Cs / sizeof Cs[0]; ci++) {
        int B = 3, T = 5, C = Cs[ci], V = 6;
        int32_t ids[15];
        for (int i = 0; i < B * T; i++)
            ids[i] = (int32_t)(ftq_rng_u64(&r) % 4); /* ids 4, 5 never used: zero gradient */
        float *wte = randn(&r, (size_t)V * C, 1.0f), *wpe = randn(&r, (size_t)T * C, 1.0f);
        float *dout = randn(&r, (size_t)B * T * C, 1.0f);
        float *y = malloc(sizeof(float) * B * T * C);
        ftq_embedding_forward(y, ids, wte, wpe, B, T, C);
        ASSERT_NEAR(y[(size_t)(2 * T + 3) * C], wte[(size_t)ids[2 * T + 3] * C] + wpe[(size_t)3 * C], 0.0);
        float *gw = calloc((size_t)V * C, sizeof(float)), *gp = calloc((size_t)T * C, sizeof(float));
        float *gw2 = calloc((size_t)V * C, sizeof(float)), *gp2 = calloc((size_t)T * C, sizeof(float));
        ftq_embedding_backward(gw, gp, dout, ids, B, T, C);
        ftq_embedding_backward_ref(gw2, gp2, dout, ids, B, T, C);
        CU_ASSERT(memcmp(gw, gw2, sizeof(float) * V * C) == 0);
        CU_ASSERT(memcmp(gp, gp2, sizeof(float) * T * C) == 0);
        emb_ctx c = {to_double(wte, (size_t)V * C), to_double(wpe, (size_t)T * C), ids, dout, B, T, C};
        fd_check("embedding dwte", c.wte, (size_t)V * C, gw, emb_loss, &c);
        fd_check("embedding dwpe", c.wpe, (size_t)T * C, gp, emb_loss, &c);
        free(c.wte);
        free(c.wpe);
        free(wte);
        free(wpe);
        free(dout);
        free(y);
        free(gw);
        free(gp);
        free(gw2);
        free(gp2);
    }
}

/* ---- norms ---------------------------------------------------------------------------------- */

typedef struct {
    double *x, *w, *b; /* b NULL: RMSNorm */
    const float *r;
    int T, C;
    double eps;
} norm_ctx;

static double norm_loss(void *p)
{
    norm_ctx *c = p;
    double L = 0.0;
    for (int t = 0; t < c->T; t++) {
        const double *x = c->x + (size_t)t * c->C;
        double m = 0.0, v = 0.0;
        if (c->b) {
            for (int i = 0; i < c->C; i++)
                m += x[i];
            m /= c->C;
        }
        for (int i = 0; i < c->C; i++)
            v += (x[i] - m) * (x[i] - m);
        double rs = 1.0 / sqrt(v / c->C + c->eps);
        for (int i = 0; i < c->C; i++)
            L += c->r[(size_t)t * c->C + i] * ((x[i] - m) * rs * c->w[i] + (c->b ? c->b[i] : 0.0));
    }
    return L;
}

static void norm_case(ftq_rng *r, int layer, int T, int C)
{
    float eps = 1e-5f;
    size_t n = (size_t)T * C;
    float *x = randn(r, n, 1.5f), *w = randn(r, (size_t)C, 1.0f), *b = randn(r, (size_t)C, 0.5f);
    for (size_t i = 0; i < n; i++)
        x[i] += 0.7f;
    float *dout = randn(r, n, 1.0f), *y = malloc(sizeof(float) * n);
    float mean[16], rstd[16];
    if (layer)
        ftq_layernorm_forward(y, mean, rstd, x, w, b, eps, T, C);
    else
        ftq_rmsnorm_forward(y, rstd, x, w, eps, T, C);
    /* dinp accumulates: start from a known non-zero value and subtract it */
    float *dx = malloc(sizeof(float) * n), *dw = calloc((size_t)C, sizeof(float));
    float *db = calloc((size_t)C, sizeof(float)), *dx2 = malloc(sizeof(float) * n);
    float *dw2 = calloc((size_t)C, sizeof(float)), *db2 = calloc((size_t)C, sizeof(float));
    for (size_t i = 0; i < n; i++)
        dx[i] = dx2[i] = 0.25f;
    if (layer) {
        ftq_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, T, C);
        ftq_layernorm_backward_ref(dx2, dw2, db2, dout, x, w, mean, rstd, T, C);
    } else {
        ftq_rmsnorm_backward(dx, dw, dout, x, w, rstd, T, C);
        ftq_rmsnorm_backward_ref(dx2, dw2, dout, x, w, rstd, T, C);
    }
    char what[96];
    snprintf(what, sizeof what, "%s T=%d C=%d", layer ? "layernorm" : "rmsnorm", T, C);
    float sx = max_abs(dx2, n), sw = max_abs(dw2, (size_t)C);
    check_close(what, dx, dx2, n, 2e-6 * (sx + 1.0f), 1e-5);
    check_close(what, dw, dw2, (size_t)C, 2e-6 * sw + 1e-30, 1e-5);
    if (layer)
        check_close(what, db, db2, (size_t)C, 1e-6 * max_abs(db2, (size_t)C) + 1e-30, 1e-5);
    for (size_t i = 0; i < n; i++)
        dx[i] -= 0.25f;
    norm_ctx c = {to_double(x, n), to_double(w, (size_t)C), layer ? to_double(b, (size_t)C) : NULL, dout, T, C, eps};
    /* dx is a difference of terms of size |rstd w dy|; with one or two channels the
     * difference is ~eps-small, so the tolerance includes their float rounding */
    double parts = max_abs(dout, n) * max_abs(w, (size_t)C) * max_abs(rstd, (size_t)T);
    if (C > 1 || !layer) { /* LayerNorm of one channel is constant: nothing to check */
        fd_check_atol(what, c.x, n, dx, norm_loss, &c, 4e-7 * parts);
        fd_check(what, c.w, (size_t)C, dw, norm_loss, &c);
    }
    if (layer)
        fd_check(what, c.b, (size_t)C, db, norm_loss, &c);
    free(c.x);
    free(c.w);
    free(c.b);
    free(x);
    free(w);
    free(b);
    free(dout);
    free(y);
    free(dx);
    free(dw);
    free(db);
    free(dx2);
    free(dw2);
    free(db2);
}

static void test_rmsnorm(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 102);
    for (int C = 1; C <= 67; C++)
        norm_case(&r, 0, 1 + C % 4, C);
    norm_case(&r, 0, 9, 130);
    norm_case(&r, 0, 16, 768); /* several column blocks and OpenMP-sized */
}

static void test_layernorm(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 103);
    for (int C = 1; C <= 67; C++)
        norm_case(&r, 1, 1 + C % 4, C);
    norm_case(&r, 1, 9, 130);
    norm_case(&r, 1, 16, 768);
}

/* ---- linear ---------------------------------------------------------------------------------- */

typedef struct {
    double *x, *w, *b;
    const float *r;
    int T, in, out;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    double L = 0.0;
    for (int t = 0; t < c->T; t++)
        for (int o = 0; o < c->out; o++) {
            double s = c->b[o];
            for (int i = 0; i < c->in; i++)
                s += c->x[(size_t)t * c->in + i] * c->w[(size_t)o * c->in + i];
            L += c->r[(size_t)t * c->out + o] * s;
        }
    return L;
}

static void linear_case(ftq_rng *r, int T, int in, int out, int fd)
{
    size_t nx = (size_t)T * in, nw = (size_t)out * in, ny = (size_t)T * out;
    float *x = randn(r, nx, 1.0f), *w = randn(r, nw, 0.5f), *b = randn(r, (size_t)out, 0.5f);
    float *dout = randn(r, ny, 1.0f);
    float *dx = malloc(sizeof(float) * nx), *dx2 = malloc(sizeof(float) * nx);
    float *dw = malloc(sizeof(float) * nw), *dw2 = malloc(sizeof(float) * nw);
    float *db = malloc(sizeof(float) * out), *db2 = malloc(sizeof(float) * out);
    for (size_t i = 0; i < nw; i++)
        dw[i] = dw2[i] = 0.5f; /* parameter gradients accumulate */
    for (int i = 0; i < out; i++)
        db[i] = db2[i] = -0.5f;
    for (int acc = 0; acc < 2; acc++) {
        for (size_t i = 0; i < nx; i++)
            dx[i] = dx2[i] = 1.0f;
        ftq_linear_backward(dx, acc ? NULL : dw, acc ? NULL : db, dout, x, w, T, in, out, acc);
        ftq_linear_backward_ref(dx2, acc ? NULL : dw2, acc ? NULL : db2, dout, x, w, T, in, out, acc);
        char what[96];
        snprintf(what, sizeof what, "linear T=%d in=%d out=%d acc=%d", T, in, out, acc);
        /* sums of `out` (dx) or `T` (dw) products of N(0,1)-ish terms */
        check_close(what, dx, dx2, nx, 1e-6 * sqrt((double)out) * 4, 1e-5);
        check_close(what, dw, dw2, nw, 1e-6 * sqrt((double)T) * 4, 1e-5);
        check_close(what, db, db2, (size_t)out, 1e-6 * sqrt((double)T) * 4, 1e-5);
    }
    if (fd) {
        for (size_t i = 0; i < nx; i++)
            dx[i] -= 1.0f; /* last round accumulated onto 1 */
        for (size_t i = 0; i < nw; i++)
            dw[i] -= 0.5f;
        for (int i = 0; i < out; i++)
            db[i] += 0.5f;
        lin_ctx c = {to_double(x, nx), to_double(w, nw), to_double(b, (size_t)out), dout, T, in, out};
        fd_check("linear dinp", c.x, nx, dx, lin_loss, &c);
        fd_check("linear dweight", c.w, nw, dw, lin_loss, &c);
        fd_check("linear dbias", c.b, (size_t)out, db, lin_loss, &c);
        free(c.x);
        free(c.w);
        free(c.b);
    }
    free(x);
    free(w);
    free(b);
    free(dout);
    free(dx);
    free(dx2);
    free(dw);
    free(dw2);
    free(db);
    free(db2);
}

static void test_linear(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 104);
    linear_case(&r, 3, 5, 7, 1);
    linear_case(&r, 1, 1, 1, 1);
    linear_case(&r, 9, 17, 4, 1);
    linear_case(&r, 33, 130, 257, 0); /* several bias column blocks */
    linear_case(&r, 64, 64, 192, 0);
    linear_case(&r, 7, 300, 3, 0);
}

/* ---- elementwise ------------------------------------------------------------------------------ */

typedef struct {
    double *x, *u; /* u: silu_mul's up (else NULL) */
    const float *r;
    size_t n;
    int kind; /* 0 gelu tanh, 1 gelu erf, 2 relu, 3 silu*mul */
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    double L = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        double x = c->x[i], y;
        switch (c->kind) {
        case 0:
            y = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
            break;
        case 1:
            y = 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
            break;
        case 2:
            y = x > 0.0 ? x : 0.0;
            break;
        default:
            y = x / (1.0 + exp(-x)) * c->u[i];
            break;
        }
        L += c->r[i] * y;
    }
    return L;
}

/* Finite differences of each activation at inputs away from relu's kink. */
static void test_act_fd(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 105);
    size_t n = 203;
    float *x = randn(&r, n, 2.5f), *u = randn(&r, n, 1.0f), *dout = randn(&r, n, 1.0f);
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 1e-3f)
            x[i] = 0.5f;
    float *g = malloc(sizeof(float) * n), *gu = malloc(sizeof(float) * n);
    const char *names[] = {"gelu_tanh", "gelu_erf", "relu", "silu_mul"};
    for (int kind = 0; kind < 4; kind++) {
        switch (kind) {
        case 0:
            ftq_gelu_tanh_backward(g, x, dout, n);
            break;
        case 1:
            ftq_gelu_erf_backward(g, x, dout, n);
            break;
        case 2:
            ftq_relu_backward(g, x, dout, n);
            break;
        default:
            ftq_silu_mul_backward(g, gu, x, u, dout, n);
            break;
        }
        act_ctx c = {to_double(x, n), kind == 3 ? to_double(u, n) : NULL, dout, n, kind};
        fd_check(names[kind], c.x, n, g, act_loss, &c);
        if (kind == 3)
            fd_check("silu_mul dup", c.u, n, gu, act_loss, &c);
        free(c.x);
        free(c.u);
    }
    free(x);
    free(u);
    free(dout);
    free(g);
    free(gu);
}

/* Fast vs scalar reference over every tail length and saturating inputs (|x| up to 100).
 * Tolerance relative to |dout| (the derivative is O(1)): few-ulp exp differences. */
static void test_act_fast(void)
{
    if (!test_require_cpu(FTQ_CPU_AVX2 | FTQ_CPU_FMA, "avx2 activation backward"))
        return;
    ftq_rng r;
    ftq_rng_seed(&r, 106);
    static const float special[] = {0.0f, -0.0f, 1e-6f, -1e-6f, 30.0f, -30.0f, 88.5f, -88.5f, 100.0f, -100.0f};
    for (size_t n = 1; n <= 20000; n = n < 67 ? n + 1 : n * 7 + 3) {
        float *x = randn(&r, n, 4.0f), *u = randn(&r, n, 1.0f), *d = randn(&r, n, 1.0f);
        for (size_t i = 0; i < n && i < 10; i++)
            x[n - 1 - i] = special[i];
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        float *a2 = malloc(sizeof(float) * n), *b2 = malloc(sizeof(float) * n);
        ftq_gelu_tanh_backward(a, x, d, n);
        ftq_gelu_tanh_backward_ref(b, x, d, n);
        check_close("gelu_tanh_backward", a, b, n, 2e-6 * 4, 1e-5);
        ftq_silu_mul_backward(a, a2, x, u, d, n);
        ftq_silu_mul_backward_ref(b, b2, x, u, d, n);
        check_close("silu_mul_backward dgate", a, b, n, 2e-6 * 4, 1e-5);
        check_close("silu_mul_backward dup", a2, b2, n, 2e-6 * 4, 1e-5);
        /* in place: dgate aliases dout */
        memcpy(a, d, sizeof(float) * n);
        ftq_silu_mul_backward(a, a2, x, u, a, n);
        check_close("silu_mul_backward in place", a, b, n, 2e-6 * 4, 1e-5);
        memcpy(a, d, sizeof(float) * n);
        ftq_gelu_tanh_backward(a, x, a, n);
        ftq_gelu_tanh_backward_ref(b, x, d, n);
        check_close("gelu_tanh_backward in place", a, b, n, 2e-6 * 4, 1e-5);
        free(x);
        free(u);
        free(d);
        free(a);
        free(b);
        free(a2);
        free(b2);
    }
}

/* ---- rope ------------------------------------------------------------------------------------ */

typedef struct {
    double *x;
    const float *ct, *st, *r;
    int T, H, hd;
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *c = p;
    int half = c->hd / 2;
    double L = 0.0;
    for (int t = 0; t < c->T; t++)
        for (int h = 0; h < c->H; h++) {
            const double *v = c->x + ((size_t)t * c->H + h) * c->hd;
            const float *r = c->r + ((size_t)t * c->H + h) * c->hd;
            for (int i = 0; i < half; i++) {
                double co = c->ct[(size_t)t * half + i], si = c->st[(size_t)t * half + i];
                L += r[i] * (v[i] * co - v[i + half] * si) + r[i + half] * (v[i + half] * co + v[i] * si);
            }
        }
    return L;
}

/* The inverse rotation: FD of the rotated output, bit-identity of the fast path, and
 * backward(forward(x)) == x up to rounding. */
static void test_rope(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 107);
    int hds[] = {2, 6, 8, 16, 18, 64, 80};
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
        int hd = hds[hi], half = hd / 2, T = 5, H = 3;
        size_t n = (size_t)T * H * hd;
        float *ct = malloc(sizeof(float) * 64 * half), *st = malloc(sizeof(float) * 64 * half);
        ftq_rope_table(ct, st, 64, hd, 10000.0);
        const float *c0 = ct + 29 * half, *s0 = st + 29 * half; /* positions 29.. */
        float *d = randn(&r, n, 1.0f), *g = malloc(sizeof(float) * n), *g2 = malloc(sizeof(float) * n);
        memcpy(g, d, sizeof(float) * n);
        memcpy(g2, d, sizeof(float) * n);
        ftq_rope_backward(g, c0, s0, T, H * hd, H, hd);
        ftq_rope_backward_ref(g2, c0, s0, T, H * hd, H, hd);
        CU_ASSERT(memcmp(g, g2, sizeof(float) * n) == 0);
        float *x = randn(&r, n, 1.0f);
        rope_ctx c = {to_double(x, n), c0, s0, d, T, H, hd};
        fd_check("rope", c.x, n, g, rope_loss, &c);
        float *y = malloc(sizeof(float) * n);
        memcpy(y, x, sizeof(float) * n);
        ftq_rope_forward(y, c0, s0, T, H * hd, H, hd);
        ftq_rope_backward(y, c0, s0, T, H * hd, H, hd);
        check_close("rope inverse", y, x, n, 1e-6, 1e-6);
        free(c.x);
        free(ct);
        free(st);
        free(d);
        free(g);
        free(g2);
        free(x);
        free(y);
    }
}

/* ---- attention -------------------------------------------------------------------------------- */

typedef struct {
    double *qkv; /* [B*T, (H + 2 KV) hd] */
    const float *r;
    int B, T, H, KV, hd;
} att_ctx;

static double att_loss(void *p)
{
    att_ctx *c = p;
    int ld = (c->H + 2 * c->KV) * c->hd, group = c->H / c->KV, hd = c->hd;
    double L = 0.0, *s = malloc(sizeof(double) * c->T);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int t = 0; t < c->T; t++) {
                const double *q = c->qkv + ((size_t)b * c->T + t) * ld + (size_t)h * hd;
                int kc = c->H * hd + (h / group) * hd, vc = kc + c->KV * hd;
                double m = -INFINITY, z = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *k = c->qkv + ((size_t)b * c->T + j) * ld + kc;
                    double d = 0.0;
                    for (int i = 0; i < hd; i++)
                        d += q[i] * k[i];
                    s[j] = d / sqrt((double)hd);
                    m = s[j] > m ? s[j] : m;
                }
                for (int j = 0; j <= t; j++)
                    z += (s[j] = exp(s[j] - m));
                const float *r = c->r + ((size_t)b * c->T + t) * c->H * hd + (size_t)h * hd;
                for (int i = 0; i < hd; i++) {
                    double o = 0.0;
                    for (int j = 0; j <= t; j++)
                        o += s[j] / z * c->qkv[((size_t)b * c->T + j) * ld + vc + i];
                    L += r[i] * o;
                }
            }
    free(s);
    return L;
}

/* Fast (sgemm, row blocks) and reference forward / backward on the fused qkv layout the
 * model uses; FD of the reference-free fast backward when `fd`. */
static void attention_case(ftq_rng *r, int B, int T, int H, int KV, int hd, int fd)
{
    int ld = (H + 2 * KV) * hd, Q = H * hd;
    size_t N = (size_t)B * T, nqkv = N * ld, nout = N * Q, np = (size_t)B * H * T * T;
    float *qkv = randn(r, nqkv, 1.0f), *dout = randn(r, nout, 1.0f);
    float *o = malloc(sizeof(float) * nout), *o2 = malloc(sizeof(float) * nout);
    float *P = malloc(sizeof(float) * np), *P2 = malloc(sizeof(float) * np);
    float *g = malloc(sizeof(float) * nqkv), *g2 = malloc(sizeof(float) * nqkv);
    float *sc = malloc(sizeof(float) * T * T);
    for (size_t i = 0; i < nqkv; i++)
        g[i] = g2[i] = NAN; /* every entry must be written */
    ftq_attention_train_forward(o, Q, P, qkv, ld, qkv + Q, qkv + Q + KV * hd, ld, B, T, H, KV, hd);
    ftq_attention_train_forward_ref(o2, Q, P2, qkv, ld, qkv + Q, qkv + Q + KV * hd, ld, B, T, H, KV, hd);
    char what[128];
    snprintf(what, sizeof what, "attention B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);
    check_close(what, o, o2, nout, 2e-6, 1e-5);
    check_close(what, P, P2, np, 1e-7, 1e-5);
    ftq_attention_train_backward(g, ld, g + Q, g + Q + KV * hd, ld, sc, dout, Q, P, qkv, ld, qkv + Q,
                                 qkv + Q + KV * hd, ld, B, T, H, KV, hd);
    ftq_attention_train_backward_ref(g2, ld, g2 + Q, g2 + Q + KV * hd, ld, sc, dout, Q, P2, qkv, ld, qkv + Q,
                                     qkv + Q + KV * hd, ld, B, T, H, KV, hd);
    check_close(what, g, g2, nqkv, 2e-6 * sqrt((double)T), 1e-4);
    if (fd) {
        att_ctx c = {to_double(qkv, nqkv), dout, B, T, H, KV, hd};
        fd_check(what, c.qkv, nqkv, g, att_loss, &c);
        free(c.qkv);
    }
    free(qkv);
    free(dout);
    free(o);
    free(o2);
    free(P);
    free(P2);
    free(g);
    free(g2);
    free(sc);
}

static void test_attention(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 108);
    attention_case(&r, 2, 7, 4, 2, 8, 1);   /* GQA, two sequences */
    attention_case(&r, 1, 5, 3, 3, 5, 1);   /* MHA, odd head size */
    attention_case(&r, 2, 4, 4, 1, 16, 1);  /* MQA */
    attention_case(&r, 1, 1, 2, 1, 8, 1);   /* one position */
    attention_case(&r, 2, FTQ_ATTN_ROW_BLOCK + 9, 4, 2, 16, 0); /* row blocks */
    attention_case(&r, 1, 2 * FTQ_ATTN_ROW_BLOCK, 2, 2, 64, 0);
}

/* ---- cross-entropy -------------------------------------------------------------------------- */

typedef struct {
    double *x;
    const int32_t *tg;
    int N, V;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    double L = 0.0;
    int n = 0;
    for (int i = 0; i < c->N; i++) {
        if (c->tg[i] < 0)
            continue;
        const double *x = c->x + (size_t)i * c->V;
        double m = x[0], z = 0.0;
        for (int j = 1; j < c->V; j++)
            m = x[j] > m ? x[j] : m;
        for (int j = 0; j < c->V; j++)
            z += exp(x[j] - m);
        L += log(z) + m - x[c->tg[i]];
        n++;
    }
    return L / n;
}

/* Mean CE with ignored rows: forward loss vs double, backward (dloss = 1 / scored) vs FD,
 * fast vs reference over vocabulary tails. */
static void test_xent(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 109);
    for (int V = 1; V <= 70; V += (V < 20 ? 1 : 7)) {
        int N = 5;
        int32_t tg[5] = {0, FTQ_IGNORE_INDEX, V - 1, V / 2, FTQ_IGNORE_INDEX};
        float *x = randn(&r, (size_t)N * V, 3.0f), *x2 = malloc(sizeof(float) * N * V);
        if (V > 3)
            x[V + 2] = 80.0f; /* a large logit in an ignored row */
        memcpy(x2, x, sizeof(float) * N * V);
        xent_ctx c = {to_double(x, (size_t)N * V), tg, N, V};
        float ls[5], ls2[5];
        int n = ftq_xent_forward(x, ls, tg, N, V), n2 = ftq_xent_forward_ref(x2, ls2, tg, N, V);
        ASSERT_INT_EQ(n, 3);
        ASSERT_INT_EQ(n2, 3);
        double want = xent_loss(&c) * 3, got = 0.0;
        for (int i = 0; i < N; i++)
            got += ls[i];
        ASSERT_NEAR(got, want, 1e-5 * (1.0 + fabs(want)));
        CU_ASSERT(ls[1] == 0.0f && ls[4] == 0.0f);
        check_close("xent loss", ls, ls2, (size_t)N, 1e-6, 1e-5);
        ftq_xent_backward(x, tg, 1.0f / n, N, V);
        ftq_xent_backward_ref(x2, tg, 1.0f / n, N, V);
        check_close("xent backward", x, x2, (size_t)N * V, 1e-7, 1e-5);
        fd_check("xent", c.x, (size_t)N * V, x, xent_loss, &c);
        free(c.x);
        free(x);
        free(x2);
    }
}

/* ---- thread-count invariance ------------------------------------------------------------------ */

/* The OpenMP paths split reductions by columns (each element summed by one thread in row
 * order) and elementwise work by fixed chunks, so 1 and 2 threads give the same bits.
 * Sizes are above every kernel's parallel threshold. */
static void run_kernels(float *out, const float *x, const float *w, const float *dy, const int32_t *ids,
                        const int32_t *tg, int T, int C)
{
    size_t n = (size_t)T * C, o = 0;
    float mean[128], rstd[128], *y = malloc(n * sizeof(float));
    memset(out, 0, sizeof(float) * (5 * n + 8 * (size_t)C));
    ftq_layernorm_forward(y, mean, rstd, x, w, w, 1e-5f, T, C);
    ftq_layernorm_backward(out + o, out + o + n, out + o + n + C, dy, x, w, mean, rstd, T, C);
    o += n + 2 * (size_t)C;
    ftq_rmsnorm_forward(y, rstd, x, w, 1e-5f, T, C);
    ftq_rmsnorm_backward(out + o, out + o + n, dy, x, w, rstd, T, C);
    o += n + (size_t)C;
    ftq_colsum_accumulate(out + o, dy, T, C);
    o += (size_t)C;
    ftq_embedding_backward(out + o, out + o + 16 * (size_t)C, dy, ids, 4, T / 4, C); /* 16 tokens, T/4 positions */
    o += (16 + (size_t)T / 4) * C;
    ftq_gelu_tanh_backward(out + o, x, dy, n);
    o += n;
    memcpy(y, x, n * sizeof(float));
    ftq_xent_forward(y, out + o, tg, T, C);
    ftq_xent_backward(y, tg, 0.5f, T, C);
    memcpy(out + o + T, y, n * sizeof(float));
    free(y);
}

static void test_thread_invariance(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 110);
    int T = 128, C = 768;
    size_t n = (size_t)T * C, no = 5 * n + 8 * (size_t)C + 64 * (size_t)C;
    float *x = randn(&r, n, 1.0f), *w = randn(&r, (size_t)C, 1.0f), *dy = randn(&r, n, 1.0f);
    int32_t ids[128], tg[128];
    for (int i = 0; i < T; i++) {
        ids[i] = (int32_t)(ftq_rng_u64(&r) % 16);
        tg[i] = i % 5 == 0 ? FTQ_IGNORE_INDEX : (int32_t)(ftq_rng_u64(&r) % (uint64_t)C);
    }
    float *a = malloc(no * sizeof(float)), *b = malloc(no * sizeof(float));
    int saved = ftq_get_threads();
    ftq_set_threads(1);
    run_kernels(a, x, w, dy, ids, tg, T, C);
    ftq_set_threads(2);
    run_kernels(b, x, w, dy, ids, tg, T, C);
    ftq_set_threads(saved);
    CU_ASSERT(memcmp(a, b, (5 * n + 8 * (size_t)C) * sizeof(float)) == 0);
    free(x);
    free(w);
    free(dy);
    free(a);
    free(b);
}

void test_register_backward(void)
{
    static const test_case cases[] = {
        {"embedding", test_embedding},
        {"rmsnorm", test_rmsnorm},
        {"layernorm", test_layernorm},
        {"linear", test_linear},
        {"act_fd", test_act_fd},
        {"act_fast", test_act_fast},
        {"rope", test_rope},
        {"attention", test_attention},
        {"xent", test_xent},
        {"thread_invariance", test_thread_invariance},
        {NULL, NULL},
    };
    test_add_suite("backward", cases);
}
