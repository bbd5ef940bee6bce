/* qcalib.c - calibrated quantizers (quant/qcalib.h): the importance-weighted group search and
 * GPTQ. Invariants as kernels/quant.c's: no division by a zero scale (a zero or sub-FLT_MIN
 * scale stores 0 and the zero code), f16 scales rounded before the codes are chosen,
 * non-finite weights and scales beyond f16 refused, deterministic for any thread count
 * (every row is independent). */
#include <float.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "kernels/kquant.h"
#include "quant/qcalib.h"

#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* LAPACK from OpenBLAS (Fortran interface; the trailing length is the hidden CHARACTER
 * length gfortran passes, harmless where OpenBLAS's own C versions ignore it). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

enum { ROW_OK = 0, ROW_NONFINITE, ROW_OVERFLOW, ROW_NOMEM };

static float fscale(float d, int f16)
{
    if (!(fabsf(d) >= FLT_MIN))
        return 0.0f;
    return f16 ? ftq_qscale_f16(d) : d;
}

static void codes_for(const float *x, int n, float d, int z, int cmin, int cmax, int *c)
{
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) {
        float r = nearbyintf(x[i] * id) + (float)z;
        r = r < (float)cmin ? (float)cmin : r > (float)cmax ? (float)cmax : r;
        c[i] = (int)r;
    }
}

static int round_clamp(double v, int lo, int hi)
{
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : (int)v;
}

typedef struct {
    const float *x, *u;
    int n, cmin, cmax, f16;
    int *c, *work;
    float d;
    int z;
    double err;
} wbest;

static double werr(const wbest *b, float d, int z, const int *c)
{
    double s = 0.0;
    for (int i = 0; i < b->n; i++) {
        double e = (double)b->x[i] - (double)(d * (float)(c[i] - z));
        s += b->u[i] * e * e;
    }
    return s;
}

/* Try (d, z): codes into work, kept if strictly better. Returns 1 if d was usable. */
static int wtry(wbest *b, float d, int z)
{
    if (d == 0.0f || !isfinite(d))
        return 0;
    codes_for(b->x, b->n, d, z, b->cmin, b->cmax, b->work);
    double e = werr(b, d, z, b->work);
    if (e < b->err) {
        b->err = e;
        b->d = d;
        b->z = z;
        memcpy(b->c, b->work, sizeof(int) * (size_t)b->n);
    }
    return 1;
}

/* The weighted least-squares scale of the codes in work (symmetric), tried. */
static void wrefit_sym(wbest *b, int z)
{
    double sxq = 0.0, sqq = 0.0;
    for (int i = 0; i < b->n; i++) {
        double q = (double)(b->work[i] - z);
        sxq += b->u[i] * (double)b->x[i] * q;
        sqq += b->u[i] * q * q;
    }
    if (sqq > 0.0)
        wtry(b, fscale((float)(sxq / sqq), b->f16), z);
}

/* value = a c + off fitted to the codes in work (asymmetric), tried. */
static void wrefit_asym(wbest *b)
{
    double s = 0, sc = 0, scc = 0, sx = 0, sxc = 0;
    for (int i = 0; i < b->n; i++) {
        double u = b->u[i], c = b->work[i];
        s += u;
        sc += u * c;
        scc += u * c * c;
        sx += u * b->x[i];
        sxc += u * b->x[i] * c;
    }
    double det = s * scc - sc * sc;
    if (!(det > 0.0))
        return;
    double a = (s * sxc - sc * sx) / det, off = (sx - a * sc) / s;
    float d = fscale((float)a, b->f16);
    if (d > 0.0f && isfinite(d))
        wtry(b, d, round_clamp(-off / d, b->cmin, b->cmax));
}

/* One group: the best (d, z) and codes c for weights u. 1 if the plain scale overflows. */
static int wgroup(const ftq_qscheme_traits *tr, const float *x, const float *u, int n, int f16, int *c, int *work,
                  float *dout, int *zout)
{
    wbest b = {x, u, n, tr->cmin, tr->cmax, f16, c, work, 0.0f, 0, 0.0};
    if (tr->zero >= 0) {
        float amax = 0.0f;
        for (int i = 0; i < n; i++)
            amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        const int z = tr->zero;
        float d0 = fscale(amax / tr->qmax, f16);
        *zout = z;
        if (!isfinite(d0))
            return 1;
        codes_for(x, n, d0, z, tr->cmin, tr->cmax, c);
        *dout = d0;
        if (d0 == 0.0f)
            return 0;
        b.d = d0;
        b.z = z;
        b.err = werr(&b, d0, z, c);
        memcpy(work, c, sizeof(int) * (size_t)n);
        wrefit_sym(&b, z);
        for (int s = 0; s < tr->search_signs; s++)
            for (int i = 0; i <= 2 * tr->delta_n; i++) {
                if (s == 0 && i == tr->delta_n)
                    continue;
                float div = tr->qmax + (float)(i - tr->delta_n) * tr->delta_step;
                if (wtry(&b, fscale((s ? -amax : amax) / div, f16), z))
                    wrefit_sym(&b, z);
            }
        *dout = b.d;
        return 0;
    }
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float d0 = fscale((hi - lo) / tr->qmax, f16);
    if (!isfinite(d0))
        return 1;
    int z0 = d0 != 0.0f ? round_clamp(-lo / d0, tr->cmin, tr->cmax) : 0;
    codes_for(x, n, d0, z0, tr->cmin, tr->cmax, c);
    *dout = d0;
    *zout = z0;
    if (d0 == 0.0f)
        return 0;
    b.d = d0;
    b.z = z0;
    b.err = werr(&b, d0, z0, c);
    memcpy(work, c, sizeof(int) * (size_t)n);
    wrefit_asym(&b);
    for (int i = 0; i <= 2 * tr->delta_n; i++) {
        float d = fscale((hi - lo) / (tr->qmax + (float)(i - tr->delta_n) * tr->delta_step), f16);
        if (d == 0.0f || !isfinite(d))
            continue;
        int zs[3] = {round_clamp(-lo / d, tr->cmin, tr->cmax), round_clamp(tr->cmax - nearbyintf(hi / d), tr->cmin, tr->cmax),
                     round_clamp(0.5f * (float)tr->cmax - 0.5f * (lo + hi) / d, tr->cmin, tr->cmax)};
        for (int j = 0; j < 3; j++)
            if (wtry(&b, d, zs[j]))
                wrefit_asym(&b);
    }
    *dout = b.d;
    *zout = b.z;
    return 0;
}

static void put_code(const ftq_qscheme_traits *tr, uint8_t *qs, int k, int c)
{
    ftq_qcode_set(tr->bits == 8 ? FTQ_QSCHEME_Q8 : tr->bits == 5 ? FTQ_QSCHEME_Q5 : FTQ_QSCHEME_Q4, qs, k, c);
}

/* u_j = imp_j * sqrt(sigma2 + x_j^2) over one row (llama.cpp's weighting of an imatrix). */
static void row_weights(const float *x, const double *imp, int n, float *u)
{
    double s2 = 0.0;
    for (int j = 0; j < n; j++)
        s2 += (double)x[j] * x[j];
    double sigma2 = s2 / n;
    for (int j = 0; j < n; j++)
        u[j] = (float)(imp[j] * sqrt(sigma2 + (double)x[j] * x[j]));
}

static int row_status_error(int st, int row, int bad, const float *w, int cols, const ftq_quant_params *p)
{
    if (st == ROW_NONFINITE)
        return ftq_set_error(FTQ_ENUMERIC, "non-finite value %g at row %d, column %d", (double)w[(size_t)row * cols + bad],
                             row, bad);
    if (st == ROW_OVERFLOW)
        return ftq_set_error(FTQ_ENUMERIC, "scale of row %d, columns %d..%d overflows %s", row, bad,
                             bad + p->group - 1 < cols - 1 ? bad + p->group - 1 : cols - 1, p->f16_scales ? "f16" : "f32");
    return ftq_set_error(FTQ_ENOMEM, "out of memory quantizing a row of %d", cols);
}

static int check_args(const ftq_quant_params *p, int rows, int cols)
{
    int rc = ftq_quant_params_check(p);
    if (rc != FTQ_OK)
        return rc;
    if (p->group == FTQ_QGROUP_ROW)
        return ftq_set_error(FTQ_EINVAL, "calibrated quantization needs groups (32, 64 or 128), not one scale per row");
    if (rows <= 0 || cols <= 0)
        return ftq_set_error(FTQ_EINVAL, "invalid tensor shape [%d, %d]", rows, cols);
    return FTQ_OK;
}

/* First failing row's status into an error; FTQ_OK if none. */
static int first_error(const int *st, int rows, const float *w, int cols, const ftq_quant_params *p)
{
    for (int r = 0; r < rows; r++)
        if (st[2 * r] != ROW_OK)
            return row_status_error(st[2 * r], r, st[2 * r + 1], w, cols, p);
    return FTQ_OK;
}

/* ---- importance-weighted search ------------------------------------------------------- */

int ftq_qtensor_quantize_weighted(ftq_qtensor *q, const float *w, int rows, int cols, const ftq_quant_params *p,
                                  const double *imp)
{
    memset(q, 0, sizeof *q);
    int rc = check_args(p, rows, cols);
    if (rc != FTQ_OK)
        return rc;
    if (!w || !imp)
        return ftq_set_error(FTQ_EINVAL, "ftq_qtensor_quantize_weighted: NULL argument");
    if ((rc = ftq_qtensor_alloc(q, p->scheme, rows, cols, p->group)) != FTQ_OK)
        return rc;
    const ftq_qscheme_traits *tr = ftq_qscheme_info(p->scheme);
    int *st = calloc((size_t)rows * 2, sizeof(int));
    if (!st) {
        ftq_qtensor_free(q);
        return ftq_set_error(FTQ_ENOMEM, "out of memory quantizing a [%d, %d] tensor", rows, cols);
    }
    const int gs = q->gsize;
    /* the search costs ~100 candidate passes per weight: a thread team pays from 16k weights */
    const int par = (size_t)rows * cols >= 16384;
    (void)par;
    OMP(omp parallel if (par))
    {
        int *codes = malloc(sizeof(int) * 2 * (size_t)gs);
        float *u = malloc(sizeof(float) * (size_t)cols);
        OMP(omp for schedule(dynamic, 8))
        for (int r = 0; r < rows; r++) {
            const float *x = w + (size_t)r * cols;
            uint8_t *qs = q->qs + (size_t)r * q->row_bytes;
            int *s = &st[2 * r];
            if (!codes || !u) {
                s[0] = ROW_NOMEM;
                continue;
            }
            for (int j = 0; j < cols && s[0] == ROW_OK; j++)
                if (!isfinite(x[j])) {
                    s[0] = ROW_NONFINITE;
                    s[1] = j;
                }
            if (s[0] != ROW_OK)
                continue;
            row_weights(x, imp, cols, u);
            if (ftq_qscheme_is_k(p->scheme)) { /* super-blocks: kernels/kquant.c's weighted search */
                int ks = ftq_kq_quantize_row(p->scheme, x, u, cols, qs, q->scales + (size_t)r * q->ngroups, &s[1]);
                s[0] = ks == 0 ? ROW_OK : ks == 1 ? ROW_OVERFLOW : ROW_NOMEM;
                continue;
            }
            memset(qs, 0, q->row_bytes);
            for (int g = 0, k0 = 0; k0 < cols; g++, k0 += gs) {
                int m = cols - k0 < gs ? cols - k0 : gs, z = 0;
                float d = 0.0f;
                if (wgroup(tr, x + k0, u + k0, m, p->f16_scales, codes, codes + gs, &d, &z)) {
                    s[0] = ROW_OVERFLOW;
                    s[1] = k0;
                    break;
                }
                q->scales[(size_t)r * q->ngroups + g] = d;
                if (q->zeros)
                    q->zeros[(size_t)r * q->ngroups + g] = (uint8_t)z;
                for (int i = 0; i < m; i++)
                    put_code(tr, qs, k0 + i, codes[i]);
            }
        }
        free(codes);
        free(u);
    }
    rc = first_error(st, rows, w, cols, p);
    free(st);
    if (rc != FTQ_OK)
        ftq_qtensor_free(q);
    return rc;
}

/* ---- GPTQ ------------------------------------------------------------------------------ */

ftq_gptq_params ftq_gptq_default_params(void)
{
    ftq_gptq_params g;
    g.damp = 0.01;
    g.act_order = 0;
    return g;
}

typedef struct {
    int j;
    double h;
} diag_ix;

static int by_diag_desc(const void *a, const void *b)
{
    const diag_ix *x = a, *y = b;
    if (x->h != y->h)
        return x->h > y->h ? -1 : 1;
    return x->j - y->j; /* stable: deterministic order on ties */
}

/* U (row-major, upper, float) with H^-1 = U^T U for the permuted, damped H; hdiag gets the
 * damped diagonal in natural order; dead[j] = 1 for columns never activated. */
static int gptq_factor(const float *gram, int64_t ntok, int n, double damp, const int *perm, float *U, double *hdiag,
                       unsigned char *dead)
{
    double *a = malloc(sizeof(double) * (size_t)n * n);
    if (!a)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for a [%d, %d] Hessian", n, n);
    const double s = 2.0 / (double)(ntok > 0 ? ntok : 1);
    double mean = 0.0;
    for (int j = 0; j < n; j++) {
        double h = s * gram[(size_t)j * n + j];
        dead[j] = !(h > 0.0);
        hdiag[j] = dead[j] ? 1.0 : h;
        mean += hdiag[j];
    }
    mean /= n;
    for (int j = 0; j < n; j++)
        hdiag[j] += damp * mean;
    /* column-major M(i, k) = a[i + k n] = H[perm i][perm k] (symmetric: the layout only
     * matters for which triangle LAPACK reads) */
    for (int k = 0; k < n; k++)
        for (int i = 0; i < n; i++) {
            int pi = perm[i], pk = perm[k];
            double v = pi == pk ? hdiag[pi] : (dead[pi] || dead[pk]) ? 0.0 : s * gram[(size_t)pi * n + pk];
            a[i + (size_t)k * n] = v;
        }
    int info = 0;
    dpotrf_("L", &n, a, &n, &info, 1);
    if (info == 0)
        dpotri_("L", &n, a, &n, &info, 1);
    if (info != 0) {
        free(a);
        return ftq_set_error(FTQ_ENUMERIC, "the calibration Hessian is not positive definite (LAPACK info %d) even "
                                           "with damping %g", info, damp);
    }
    for (int k = 0; k < n; k++) /* mirror the lower triangle of H^-1 up */
        for (int i = k + 1; i < n; i++)
            a[k + (size_t)i * n] = a[i + (size_t)k * n];
    dpotrf_("U", &n, a, &n, &info, 1);
    if (info != 0) {
        free(a);
        return ftq_set_error(FTQ_ENUMERIC, "the inverse calibration Hessian is not positive definite (LAPACK info %d)",
                             info);
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            U[(size_t)i * n + k] = k >= i ? (float)a[i + (size_t)k * n] : 0.0f;
    free(a);
    return FTQ_OK;
}

int ftq_qtensor_quantize_gptq(ftq_qtensor *q, const float *w, int rows, int cols, const ftq_quant_params *p,
                              const float *gram, int64_t ntok, const ftq_gptq_params *gp)
{
    memset(q, 0, sizeof *q);
    int rc = check_args(p, rows, cols);
    if (rc != FTQ_OK)
        return rc;
    if (!w || !gram || !gp)
        return ftq_set_error(FTQ_EINVAL, "ftq_qtensor_quantize_gptq: NULL argument");
    if (ftq_qscheme_is_k(p->scheme))
        return ftq_set_error(FTQ_EUNSUPPORTED, "gptq does not take %s super-blocks (use the importance search)",
                             ftq_qscheme_info(p->scheme)->name);
    if (!(gp->damp >= 0.0 && gp->damp < 1e6))
        return ftq_set_error(FTQ_EINVAL, "invalid GPTQ damping %g (expected >= 0)", gp->damp);
    const int n = cols;
    float *U = malloc(sizeof(float) * (size_t)n * n);
    double *hdiag = malloc(sizeof(double) * (size_t)n);
    double *himp = malloc(sizeof(double) * (size_t)n);
    unsigned char *dead = malloc((size_t)n);
    int *perm = malloc(sizeof(int) * (size_t)n);
    diag_ix *order = malloc(sizeof(diag_ix) * (size_t)n);
    int *st = calloc((size_t)rows * 2, sizeof(int));
    if (!U || !hdiag || !himp || !dead || !perm || !order || !st) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory quantizing a [%d, %d] tensor", rows, cols);
        goto out;
    }
    /* the order: natural, or decreasing H_jj (undamped; dead columns last) */
    for (int j = 0; j < n; j++) {
        order[j].j = j;
        order[j].h = gram[(size_t)j * n + j];
    }
    if (gp->act_order)
        qsort(order, (size_t)n, sizeof *order, by_diag_desc);
    for (int j = 0; j < n; j++)
        perm[j] = order[j].j;
    if ((rc = gptq_factor(gram, ntok, n, gp->damp, perm, U, hdiag, dead)) != FTQ_OK)
        goto out;
    for (int j = 0; j < n; j++)
        himp[j] = dead[j] ? 0.0 : hdiag[j];
    if ((rc = ftq_qtensor_alloc(q, p->scheme, rows, cols, p->group)) != FTQ_OK)
        goto out;
    const ftq_qscheme_traits *tr = ftq_qscheme_info(p->scheme);
    const int gs = q->gsize, act = gp->act_order;
    OMP(omp parallel)
    {
        int *codes = malloc(sizeof(int) * 2 * (size_t)gs);
        float *u = malloc(sizeof(float) * (size_t)n);
        float *wr = malloc(sizeof(float) * (size_t)n); /* the row, permuted, being compensated */
        float *xn = malloc(sizeof(float) * (size_t)n); /* a group in natural order */
        OMP(omp for schedule(dynamic, 4))
        for (int r = 0; r < rows; r++) {
            const float *x = w + (size_t)r * cols;
            uint8_t *qs = q->qs + (size_t)r * q->row_bytes;
            float *sc = q->scales + (size_t)r * q->ngroups;
            uint8_t *zs = q->zeros ? q->zeros + (size_t)r * q->ngroups : NULL;
            int *s = &st[2 * r];
            if (!codes || !u || !wr || !xn) {
                s[0] = ROW_NOMEM;
                continue;
            }
            for (int j = 0; j < n && s[0] == ROW_OK; j++)
                if (!isfinite(x[j])) {
                    s[0] = ROW_NONFINITE;
                    s[1] = j;
                }
            if (s[0] != ROW_OK)
                continue;
            row_weights(x, himp, n, u);
            memset(qs, 0, q->row_bytes);
            for (int i = 0; i < n; i++)
                wr[i] = dead[perm[i]] ? 0.0f : x[perm[i]];
            if (act) { /* static groups: scales from the original weights */
                for (int g = 0, k0 = 0; k0 < n && s[0] == ROW_OK; g++, k0 += gs) {
                    int m = n - k0 < gs ? n - k0 : gs, z = 0;
                    float d = 0.0f;
                    for (int i = 0; i < m; i++)
                        xn[i] = dead[k0 + i] ? 0.0f : x[k0 + i];
                    if (wgroup(tr, xn, u + k0, m, p->f16_scales, codes, codes + gs, &d, &z)) {
                        s[0] = ROW_OVERFLOW;
                        s[1] = k0;
                    }
                    sc[g] = d;
                    if (zs)
                        zs[g] = (uint8_t)z;
                }
            }
            for (int i = 0; i < n && s[0] == ROW_OK; i++) {
                const int col = perm[i], g = col / gs;
                if (!act && col % gs == 0) { /* natural order: the group starts here, compensated */
                    int m = n - col < gs ? n - col : gs, z = 0;
                    float d = 0.0f;
                    if (wgroup(tr, wr + i, u + col, m, p->f16_scales, codes, codes + gs, &d, &z)) {
                        s[0] = ROW_OVERFLOW;
                        s[1] = col;
                        break;
                    }
                    sc[g] = d;
                    if (zs)
                        zs[g] = (uint8_t)z;
                }
                const float d = sc[g];
                const int z = tr->zero >= 0 ? tr->zero : zs[g];
                int c = z;
                if (d != 0.0f) {
                    float v = nearbyintf(wr[i] * (1.0f / d)) + (float)z;
                    v = v < (float)tr->cmin ? (float)tr->cmin : v > (float)tr->cmax ? (float)tr->cmax : v;
                    c = (int)v;
                }
                put_code(tr, qs, col, c);
                const float e = (wr[i] - d * (float)(c - z)) / U[(size_t)i * n + i];
                const float *urow = U + (size_t)i * n;
                for (int k = i + 1; k < n; k++)
                    wr[k] -= e * urow[k];
            }
        }
        free(codes);
        free(u);
        free(wr);
        free(xn);
    }
    rc = first_error(st, rows, w, cols, p);
    if (rc != FTQ_OK)
        ftq_qtensor_free(q);
out:
    free(U);
    free(hdiag);
    free(himp);
    free(dead);
    free(perm);
    free(order);
    free(st);
    return rc;
}

int ftq_qtensor_output_error(const ftq_qtensor *q, const float *w, const float *gram, int64_t ntok, double *out)
{
    *out = 0.0;
    const int rows = q->rows, n = q->cols;
    float *e = malloc(sizeof(float) * (size_t)rows * n), *eg = malloc(sizeof(float) * (size_t)rows * n);
    if (!e || !eg) {
        free(e);
        free(eg);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    ftq_qtensor_dequantize(q, e);
    for (size_t i = 0; i < (size_t)rows * n; i++)
        e[i] = w[i] - e[i];
    /* E G on OpenBLAS (float; the result is a report, not a decision) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0f, e, n, gram, n, 0.0f, eg, n);
    double tot = 0.0;
    for (size_t i = 0; i < (size_t)rows * n; i++)
        tot += (double)e[i] * eg[i];
    free(e);
    free(eg);
    *out = tot / (double)(ntok > 0 ? ntok : 1);
    return FTQ_OK;
}
