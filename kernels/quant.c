/* quant.c - the scheme traits table, deterministic scalar quantizers (plain and search),
 * dequantization, error measures, packing into the kernel layout and the reference matmul.
 * Invariants: no division by a zero scale (a zero or sub-FLT_MIN scale stores 0 and the zero
 * code); non-finite input and scales beyond f16 are refused, never written; the search
 * keeps the plain result unless a candidate is strictly better. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "kernels/kquant.h"
#include "kernels/quant.h"

#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* Elements below which a tensor is (de)quantized on the calling thread. */
#define PAR_MIN_ELEMS 32768

/* ---- group quantization primitives ---------------------------------------------------- */

float ftq_qscale_f16(float d)
{
    float a = fabsf(d);
    uint16_t h = ftq_f32_to_f16(a);
    float v = ftq_f16_to_f32(h);
    if (v < a) /* round the magnitude up; 0x7bff + 1 is +Inf */
        v = ftq_f16_to_f32((uint16_t)(h + 1));
    return d < 0 ? -v : v;
}

float ftq_qscale_f16_nearest(float d)
{
    float v = ftq_f16_to_f32(ftq_f32_to_f16(fabsf(d)));
    if (v < 0x1p-14f) /* subnormal f16: too coarse for nearest, round up as q4 does */
        return ftq_qscale_f16(d);
    return d < 0 ? -v : v;
}

/* The scale a group stores for a raw scale d: 0 below FLT_MIN (so 1/d stays finite). */
static float final_scale(const ftq_qscheme_traits *tr, float d, int f16)
{
    if (!(fabsf(d) >= FLT_MIN))
        return 0.0f;
    if (!f16)
        return d;
    return tr->f16_nearest ? ftq_qscale_f16_nearest(d) : ftq_qscale_f16(d);
}

static void group_codes(const float *x, int n, float d, int z, int cmin, int cmax, int *c)
{
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) {
        float r = nearbyintf(x[i] * id) + (float)z; /* clamp in float: no int overflow */
        r = r < (float)cmin ? (float)cmin : r > (float)cmax ? (float)cmax : r;
        c[i] = (int)r;
    }
}

/* Squared error with the dequantization expression of ftq_dequantize_row. */
static double group_sse(const float *x, int n, float d, int z, const int *c)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double e = (double)x[i] - (double)(d * (float)(c[i] - z));
        s += e * e;
    }
    return s;
}

/* round(v) clamped to [lo, hi], clamping before the conversion (v may be huge). */
static int round_clamp(double v, int lo, int hi)
{
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : (int)v;
}

/* Best candidate so far; try_cand replaces it only on a strictly smaller error, so the plain
 * result (tried first) survives ties and the search is never worse. */
typedef struct {
    const float *x;
    int n, cmin, cmax;
    int *c, *work; /* best codes, scratch codes */
    float d;
    int z;
    double sse;
} best_t;

static void try_cand(best_t *b, float d, int z)
{
    if (d == 0.0f || !isfinite(d))
        return;
    group_codes(b->x, b->n, d, z, b->cmin, b->cmax, b->work);
    double e = group_sse(b->x, b->n, d, z, b->work);
    if (e < b->sse) {
        b->sse = e;
        b->d = d;
        b->z = z;
        memcpy(b->c, b->work, sizeof(int) * (size_t)b->n);
    }
}

/* Symmetric schemes. Plain: d = max|x| / qmax. Search: d = s * max|x| / (qmax + delta) for
 * the delta grid and sign(s) of the traits, then a least-squares refit d = sum(x q) / sum(q^2)
 * of the best codes. Returns 0, or 1 if the plain scale overflows f16 / f32. */
static int sym_group(const ftq_qscheme_traits *tr, const float *x, int n, int search, int f16,
                     int *c, int *work, float *dout, int *zout)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const int z = tr->zero;
    float d0 = final_scale(tr, amax / tr->qmax, f16);
    *zout = z;
    if (!isfinite(d0))
        return 1;
    group_codes(x, n, d0, z, tr->cmin, tr->cmax, c);
    *dout = d0;
    if (!search || d0 == 0.0f)
        return 0;
    best_t b = {x, n, tr->cmin, tr->cmax, c, work, d0, z, group_sse(x, n, d0, z, c)};
    for (int s = 0; s < tr->search_signs; s++) {
        for (int i = 0; i <= 2 * tr->delta_n; i++) {
            if (s == 0 && i == tr->delta_n)
                continue; /* the plain scale */
            float div = tr->qmax + (float)(i - tr->delta_n) * tr->delta_step;
            try_cand(&b, final_scale(tr, (s ? -amax : amax) / div, f16), z);
        }
    }
    double sxq = 0.0, sqq = 0.0;
    for (int i = 0; i < n; i++) {
        double q = (double)(c[i] - z);
        sxq += (double)x[i] * q;
        sqq += q * q;
    }
    if (sqq > 0.0)
        try_cand(&b, final_scale(tr, (float)(sxq / sqq), f16), z);
    *dout = b.d;
    return 0;
}

/* Asymmetric (q4a). Plain: [lo, hi] = [min(x, 0), max(x, 0)], d = (hi - lo) / 15,
 * z = round(-lo / d). Search: d = (hi - lo) / (15 + delta) with the zero code aligning lo,
 * aligning hi, or centring the range (each clipping a different end), then a least-squares
 * refit of value = a * c + b over the best codes. */
static int asym_group(const ftq_qscheme_traits *tr, const float *x, int n, int search, int f16,
                      int *c, int *work, float *dout, int *zout)
{
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float d0 = final_scale(tr, (hi - lo) / tr->qmax, f16);
    if (!isfinite(d0))
        return 1;
    int z0 = d0 != 0.0f ? round_clamp(-lo / d0, tr->cmin, tr->cmax) : 0;
    group_codes(x, n, d0, z0, tr->cmin, tr->cmax, c);
    *dout = d0;
    *zout = z0;
    if (!search || d0 == 0.0f)
        return 0;
    best_t b = {x, n, tr->cmin, tr->cmax, c, work, d0, z0, group_sse(x, n, d0, z0, c)};
    for (int i = 0; i <= 2 * tr->delta_n; i++) {
        float d = final_scale(tr, (hi - lo) / (tr->qmax + (float)(i - tr->delta_n) * tr->delta_step), f16);
        if (d == 0.0f || !isfinite(d))
            continue;
        int zs[3] = {round_clamp(-lo / d, tr->cmin, tr->cmax),
                     round_clamp(tr->cmax - nearbyintf(hi / d), tr->cmin, tr->cmax),
                     round_clamp(0.5f * (float)tr->cmax - 0.5f * (lo + hi) / d, tr->cmin, tr->cmax)};
        for (int j = 0; j < 3; j++) {
            if ((j == 1 && zs[1] == zs[0]) || (j == 2 && (zs[2] == zs[0] || zs[2] == zs[1])))
                continue;
            if (d == d0 && zs[j] == z0)
                continue;
            try_cand(&b, d, zs[j]);
        }
    }
    double sc = 0.0, scc = 0.0, sx = 0.0, sxc = 0.0;
    for (int i = 0; i < n; i++) {
        sc += c[i];
        scc += (double)c[i] * c[i];
        sx += x[i];
        sxc += (double)x[i] * c[i];
    }
    double det = n * scc - sc * sc;
    if (det > 0.0) {
        double a = (n * sxc - sc * sx) / det, off = (sx - a * sc) / n;
        float d = final_scale(tr, (float)a, f16);
        if (d > 0.0f && isfinite(d))
            try_cand(&b, d, round_clamp(-off / d, tr->cmin, tr->cmax));
    }
    *dout = b.d;
    *zout = b.z;
    return 0;
}

/* q4m (ggml's Q4_1): value = d * c + m. m = min(x) rounded down to an f16 (so every element
 * is at or above it), d = (max(x) - m) / 15 rounded up to an f16, c = round((x - m) / d)
 * clamped to [0, 15]. A constant group stores d = 0 and m (its value rounded down). No search:
 * the scheme exists to hold Q4_1 tensors exactly; its quantizer is the plain one. Returns 1
 * when m or d overflows f16. */
static float f16_down(float v)
{
    uint16_t h = ftq_f32_to_f16(v);
    float r = ftq_f16_to_f32(h);
    if (r <= v)
        return r;
    if (h == 0) /* +0 above a tiny negative v: the smallest negative subnormal */
        return ftq_f16_to_f32(0x8001);
    return ftq_f16_to_f32((uint16_t)(h & 0x8000 ? h + 1 : h - 1)); /* one step towards -Inf */
}

static int min_group(const float *x, int n, int f16, int *c, float *dout, float *mout)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float m = f16 ? f16_down(lo) : lo;
    if (!isfinite(m))
        return 1;
    float d = (hi - m) / 15.0f;
    d = !(d >= FLT_MIN) ? 0.0f : f16 ? ftq_qscale_f16(d) : d;
    if (!isfinite(d))
        return 1;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) {
        float r = nearbyintf((x[i] - m) * id);
        c[i] = r < 0.0f ? 0 : r > 15.0f ? 15 : (int)r;
    }
    *dout = d;
    *mout = m;
    return 0;
}

typedef int (*group_fn)(const ftq_qscheme_traits *, const float *, int, int, int, int *, int *,
                        float *, int *);

static const struct {
    ftq_qscheme_traits t;
    group_fn quantize_group;
} schemes[FTQ_QSCHEME_COUNT] = {
    /*                 name   bits cmin cmax zero qmax  step  n  signs nearest */
    [FTQ_QSCHEME_Q8] = {{"q8", 8, -127, 127, 0, 127.0f, 1.0f, 10, 1, 1}, sym_group},
    [FTQ_QSCHEME_Q4] = {{"q4", 4, 0, 15, 8, 7.0f, 0.1f, 10, 2, 0}, sym_group},
    [FTQ_QSCHEME_Q4A] = {{"q4a", 4, 0, 15, -1, 15.0f, 0.1f, 10, 1, 0}, asym_group},
    [FTQ_QSCHEME_Q4M] = {{"q4m", 4, 0, 15, 0, 15.0f, 0.0f, 0, 1, 0}, NULL}, /* min_group */
    /* super-blocks (kernels/kquant.h): their own quantizer; the traits only name them */
    [FTQ_QSCHEME_Q6K] = {{"q6k", 6, 0, 63, 32, 31.0f, 0.1f, 6, 2, 1}, NULL},
    [FTQ_QSCHEME_Q4K] = {{"q4k", 4, 0, 15, -1, 15.0f, 0.1f, 9, 1, 1}, NULL},
    [FTQ_QSCHEME_Q5] = {{"q5", 5, 0, 31, 16, 15.0f, 0.1f, 10, 2, 0}, sym_group},
};

const ftq_qscheme_traits *ftq_qscheme_info(ftq_qscheme s)
{
    if ((int)s < 0 || s >= FTQ_QSCHEME_COUNT)
        return NULL;
    return &schemes[s].t;
}

int ftq_qscheme_from_name(const char *name, ftq_qscheme *out)
{
    for (int i = 0; i < FTQ_QSCHEME_COUNT; i++) {
        if (strcmp(schemes[i].t.name, name) == 0) {
            *out = (ftq_qscheme)i;
            return FTQ_OK;
        }
    }
    return FTQ_ENOTFOUND;
}

/* ---- parameters and rows -------------------------------------------------------------- */

ftq_quant_params ftq_quant_default_params(void)
{
    ftq_quant_params p = {FTQ_QSCHEME_Q8, 32, 0, 1};
    return p;
}

int ftq_quant_params_check(const ftq_quant_params *p)
{
    if (!ftq_qscheme_info(p->scheme))
        return ftq_set_error(FTQ_EINVAL, "unknown quantization scheme %d", (int)p->scheme);
    if (ftq_qscheme_is_k(p->scheme)) {
        if (p->group != FTQ_QK)
            return ftq_set_error(FTQ_EINVAL, "invalid group size %d: %s takes super-blocks of 256", p->group,
                                 ftq_qscheme_info(p->scheme)->name);
    } else if (p->group == FTQ_QGROUP_ROW) {
        if (p->scheme != FTQ_QSCHEME_Q8)
            return ftq_set_error(FTQ_EINVAL, "per-row scales need q8: %s takes a group of 32, 64 or 128",
                                 ftq_qscheme_info(p->scheme)->name);
    } else if (p->group != 32 && p->group != 64 && p->group != 128) {
        return ftq_set_error(FTQ_EINVAL, "invalid group size %d: expected 32, 64, 128 or per row", p->group);
    }
    return FTQ_OK;
}

size_t ftq_qrow_bytes(ftq_qscheme s, int n)
{
    if (ftq_qscheme_is_k(s))
        return ftq_kq_row_bytes(s, n);
    if (s == FTQ_QSCHEME_Q5)
        return ((size_t)n + 31) / 32 * 20;
    return s == FTQ_QSCHEME_Q8 ? (size_t)n : ((size_t)n + 1) / 2;
}

int ftq_qrow_groups(int group, int n) { return group == FTQ_QGROUP_ROW ? 1 : (n + group - 1) / group; }

enum { ROW_OK = 0, ROW_NONFINITE, ROW_OVERFLOW, ROW_NOMEM };

/* One row, no message: status ROW_*, *bad = element (non-finite) or group start (overflow). */
static int quantize_row_impl(const ftq_quant_params *p, const float *x, int n, uint8_t *qs,
                             float *scales, uint8_t *zeros, float *mins, int *bad, int *codes, int *work)
{
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            *bad = i;
            return ROW_NONFINITE;
        }
    }
    if (ftq_qscheme_is_k(p->scheme)) {
        int st = ftq_kq_quantize_row(p->scheme, x, NULL, n, qs, scales, bad);
        return st == 0 ? ROW_OK : st == 1 ? ROW_OVERFLOW : ROW_NOMEM;
    }
    const ftq_qscheme_traits *tr = &schemes[p->scheme].t;
    const group_fn fn = schemes[p->scheme].quantize_group;
    const int gsize = p->group == FTQ_QGROUP_ROW ? n : p->group;
    memset(qs, 0, ftq_qrow_bytes(p->scheme, n));
    for (int g = 0, k0 = 0; k0 < n; g++, k0 += gsize) {
        int m = n - k0 < gsize ? n - k0 : gsize;
        float d = 0.0f;
        int z = 0;
        if (fn ? fn(tr, x + k0, m, p->search, p->f16_scales, codes, work, &d, &z)
               : min_group(x + k0, m, p->f16_scales, codes, &d, &mins[g])) {
            *bad = k0;
            return ROW_OVERFLOW;
        }
        scales[g] = d;
        if (zeros)
            zeros[g] = (uint8_t)z;
        for (int i = 0; i < m; i++) {
            ftq_qcode_set(p->scheme, qs, k0 + i, codes[i]);
        }
    }
    return ROW_OK;
}

/* The message of a failed row: "non-finite value nan at row 3, column 17" or "scale of
 * row 3, columns 32..63 overflows f16 (|x| up to 2e+07)" (row < 0: a lone row, "index"). */
static int row_error(int st, const float *x, int bad, const ftq_quant_params *p, int n, int row)
{
    char where[48] = "";
    if (row >= 0)
        snprintf(where, sizeof where, "row %d, ", row);
    if (st == ROW_NONFINITE)
        return ftq_set_error(FTQ_ENUMERIC, "non-finite value %g at %s%s %d", (double)x[bad], where,
                             row >= 0 ? "column" : "index", bad);
    if (st == ROW_OVERFLOW) {
        int gsize = p->group == FTQ_QGROUP_ROW ? n : p->group;
        int end = bad + gsize < n ? bad + gsize : n;
        float mx = 0.0f;
        for (int i = bad; i < end; i++)
            mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
        return ftq_set_error(FTQ_ENUMERIC, "scale of %s%s %d..%d overflows %s (|x| up to %g)", where,
                             row >= 0 ? "columns" : "elements", bad, end - 1,
                             p->f16_scales ? "f16" : "f32", (double)mx);
    }
    return ftq_set_error(FTQ_ENOMEM, "out of memory quantizing a row of %d", n);
}

int ftq_quantize_row(const ftq_quant_params *p, const float *x, int n, uint8_t *qs, float *scales,
                     uint8_t *zeros, int *bad)
{
    int rc = ftq_quant_params_check(p);
    if (rc != FTQ_OK)
        return rc;
    if (n <= 0)
        return ftq_set_error(FTQ_EINVAL, "invalid row length %d", n);
    if (p->scheme == FTQ_QSCHEME_Q5 && n % 32)
        return ftq_set_error(FTQ_EINVAL, "q5 needs a multiple of 32 elements, not %d", n);
    if (ftq_qscheme_is_k(p->scheme) && n % FTQ_QK)
        return ftq_set_error(FTQ_EINVAL, "%s needs a multiple of 256 elements, not %d", schemes[p->scheme].t.name, n);
    if (p->scheme == FTQ_QSCHEME_Q4A && !zeros)
        return ftq_set_error(FTQ_EINVAL, "q4a needs a zero-code buffer");
    if (p->scheme == FTQ_QSCHEME_Q4M)
        return ftq_set_error(FTQ_EINVAL, "q4m rows carry group minimums: quantize them with ftq_qtensor_quantize");
    int gsize = p->group == FTQ_QGROUP_ROW ? n : p->group;
    int *codes = malloc(sizeof(int) * 2 * (size_t)gsize);
    if (!codes)
        return ftq_set_error(FTQ_ENOMEM, "out of memory quantizing a row of %d", n);
    int b = -1;
    int st = quantize_row_impl(p, x, n, qs, scales, p->scheme == FTQ_QSCHEME_Q4A ? zeros : NULL, NULL, &b,
                               codes, codes + gsize);
    free(codes);
    if (bad)
        *bad = b;
    return st == ROW_OK ? FTQ_OK : row_error(st, x, b, p, n, -1);
}

static void dequantize_row(ftq_qscheme s, int group, const uint8_t *qs, const float *scales,
                           const uint8_t *zeros, const float *mins, int n, float *out)
{
    if (ftq_qscheme_is_k(s)) {
        ftq_kq_dequantize_row(s, qs, scales, n, out);
        return;
    }
    const ftq_qscheme_traits *tr = &schemes[s].t;
    const int gsize = group == FTQ_QGROUP_ROW ? n : group;
    for (int g = 0, k0 = 0; k0 < n; g++, k0 += gsize) {
        const float d = scales[g];
        const int z = tr->zero >= 0 ? tr->zero : zeros[g];
        const int end = k0 + gsize < n ? k0 + gsize : n;
        for (int k = k0; k < end; k++) {
            int c = ftq_qcode_get(s, qs, k);
            if (mins) /* q4m: ggml's Q4_1 expression */
                out[k] = (float)c * d + mins[g];
            else
                out[k] = d * (float)(c - z);
        }
    }
}

void ftq_dequantize_row(ftq_qscheme s, int group, const uint8_t *qs, const float *scales,
                        const uint8_t *zeros, int n, float *out)
{
    dequantize_row(s, group, qs, scales, zeros, NULL, n, out);
}

void ftq_qtensor_dequantize_row(const ftq_qtensor *q, int r, float *out)
{
    dequantize_row(q->scheme, q->group, q->qs + (size_t)r * q->row_bytes, q->scales + (size_t)r * q->ngroups,
                   q->zeros ? q->zeros + (size_t)r * q->ngroups : NULL,
                   q->mins ? q->mins + (size_t)r * q->ngroups : NULL, q->cols, out);
}

/* ---- tensors -------------------------------------------------------------------------- */

void ftq_qtensor_free(ftq_qtensor *q)
{
    if (!q)
        return;
    free(q->mem);
    memset(q, 0, sizeof *q);
}

int ftq_qtensor_alloc(ftq_qtensor *q, ftq_qscheme s, int rows, int cols, int group)
{
    memset(q, 0, sizeof *q);
    ftq_quant_params p = {s, group, 0, 1};
    int rc = ftq_quant_params_check(&p);
    if (rc != FTQ_OK)
        return rc;
    if (rows <= 0 || cols <= 0)
        return ftq_set_error(FTQ_EINVAL, "invalid tensor shape [%d, %d]", rows, cols);
    if (ftq_qscheme_is_k(s) && cols % FTQ_QK)
        return ftq_set_error(FTQ_EINVAL, "%s needs a multiple of 256 columns, not %d", schemes[s].t.name, cols);
    if (s == FTQ_QSCHEME_Q5 && cols % 32)
        return ftq_set_error(FTQ_EINVAL, "q5 needs a multiple of 32 columns, not %d", cols);
    q->scheme = s;
    q->rows = rows;
    q->cols = cols;
    q->group = group;
    q->gsize = group == FTQ_QGROUP_ROW ? cols : group;
    q->ngroups = ftq_qrow_groups(group, cols);
    q->row_bytes = ftq_qrow_bytes(s, cols);
    size_t nq = (size_t)rows * q->row_bytes, ns = (size_t)rows * q->ngroups;
    size_t nq4 = (nq + 3) / 4 * 4;
    size_t total = nq4 + ns * sizeof(float) * (s == FTQ_QSCHEME_Q4M ? 2 : 1) + (s == FTQ_QSCHEME_Q4A ? ns : 0);
    q->mem = malloc(total ? total : 1);
    if (!q->mem)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for a quantized [%d, %d] tensor", rows, cols);
    q->qs = q->mem;
    q->scales = (float *)((char *)q->mem + nq4);
    q->zeros = s == FTQ_QSCHEME_Q4A ? (uint8_t *)q->mem + nq4 + ns * sizeof(float) : NULL;
    q->mins = s == FTQ_QSCHEME_Q4M ? q->scales + ns : NULL;
    return FTQ_OK;
}

int ftq_qtensor_quantize(ftq_qtensor *q, const float *w, int rows, int cols,
                         const ftq_quant_params *p)
{
    memset(q, 0, sizeof *q);
    int rc = ftq_quant_params_check(p);
    if (rc != FTQ_OK)
        return rc;
    if (rows <= 0 || cols <= 0)
        return ftq_set_error(FTQ_EINVAL, "invalid tensor shape [%d, %d]", rows, cols);
    if ((rc = ftq_qtensor_alloc(q, p->scheme, rows, cols, p->group)) != FTQ_OK)
        return rc;
    int *st = calloc((size_t)rows * 2, sizeof(int));
    if (!st) {
        ftq_qtensor_free(q);
        return ftq_set_error(FTQ_ENOMEM, "out of memory quantizing a [%d, %d] tensor", rows, cols);
    }
    const int gsize = q->gsize;
    const int par = (size_t)rows * cols >= PAR_MIN_ELEMS;
    (void)par;
    OMP(omp parallel if (par))
    {
        int *codes = malloc(sizeof(int) * 2 * (size_t)gsize);
        OMP(omp for schedule(dynamic, 16))
        for (int r = 0; r < rows; r++) {
            st[2 * r] = codes ? quantize_row_impl(p, w + (size_t)r * cols, cols, q->qs + (size_t)r * q->row_bytes,
                                                  q->scales + (size_t)r * q->ngroups,
                                                  q->zeros ? q->zeros + (size_t)r * q->ngroups : NULL,
                                                  q->mins ? q->mins + (size_t)r * q->ngroups : NULL,
                                                  &st[2 * r + 1], codes, codes + gsize)
                              : ROW_NOMEM;
        }
        free(codes);
    }
    for (int r = 0; r < rows; r++) {
        if (st[2 * r] != ROW_OK) {
            const float *x = w + (size_t)r * cols;
            int s = st[2 * r], b = st[2 * r + 1];
            free(st);
            ftq_qtensor_free(q);
            return row_error(s, x, b, p, cols, r);
        }
    }
    free(st);
    return FTQ_OK;
}

void ftq_qtensor_dequantize(const ftq_qtensor *q, float *out)
{
    const int par = (size_t)q->rows * q->cols >= PAR_MIN_ELEMS;
    (void)par;
    OMP(omp parallel for schedule(static) if (par))
    for (int r = 0; r < q->rows; r++)
        ftq_qtensor_dequantize_row(q, r, out + (size_t)r * q->cols);
}

size_t ftq_qtensor_file_bytes(const ftq_qtensor *q)
{
    size_t ns = (size_t)q->rows * q->ngroups;
    return (size_t)q->rows * q->row_bytes + 2 * ns + (q->zeros ? ns : 0) + (q->mins ? 2 * ns : 0);
}

/* ---- errors --------------------------------------------------------------------------- */

void ftq_qerror_compute(const float *ref, const float *got, size_t n, ftq_qerror *e)
{
    double se = 0.0, sr = 0.0, mx = 0.0;
    size_t mi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)ref[i] - (double)got[i];
        se += d * d;
        sr += (double)ref[i] * ref[i];
        if (isnan(d)) { /* the first NaN wins */
            if (!isnan(mx)) {
                mx = NAN;
                mi = i;
            }
        } else if (!isnan(mx) && fabs(d) > mx) {
            mx = fabs(d);
            mi = i;
        }
    }
    e->rmse = n ? sqrt(se / (double)n) : 0.0;
    e->rel_rmse = sr > 0.0 ? sqrt(se / sr) : 0.0;
    e->max_abs = mx;
    e->max_index = mi;
}

int ftq_qtensor_error(const ftq_qtensor *q, const float *w, ftq_qerror *e)
{
    float *row = malloc(sizeof(float) * (size_t)q->cols);
    if (!row)
        return ftq_set_error(FTQ_ENOMEM, "out of memory measuring a quantized tensor");
    double se = 0.0, sr = 0.0, mx = 0.0;
    size_t mi = 0;
    for (int r = 0; r < q->rows; r++) {
        ftq_qtensor_dequantize_row(q, r, row);
        const float *x = w + (size_t)r * q->cols;
        for (int k = 0; k < q->cols; k++) {
            double d = (double)x[k] - (double)row[k];
            se += d * d;
            sr += (double)x[k] * x[k];
            if (fabs(d) > mx) {
                mx = fabs(d);
                mi = (size_t)r * q->cols + k;
            }
        }
    }
    free(row);
    size_t n = (size_t)q->rows * q->cols;
    e->rmse = sqrt(se / (double)n);
    e->rel_rmse = sr > 0.0 ? sqrt(se / sr) : 0.0;
    e->max_abs = mx;
    e->max_index = mi;
    return FTQ_OK;
}

/* ---- kernel layout -------------------------------------------------------------------- */

/* Code of element k of row r: q8 as the signed q, int4 as the nibble. */
static int code_at(const ftq_qtensor *q, int r, int k)
{
    const uint8_t *row = q->qs + (size_t)r * q->row_bytes;
    return ftq_qcode_get(q->scheme, row, k);
}

int ftq_qmat_pack(ftq_qmat *m, const ftq_qtensor *q, int ab)
{
    /* q5 runs on the int8 kernels: byte = (c - 16) + 128, the same d */
    int rc = ftq_qmat_alloc(m, q->scheme == FTQ_QSCHEME_Q5 ? FTQ_QSCHEME_Q8 : q->scheme, q->rows, q->cols, q->group, ab);
    if (rc != FTQ_OK)
        return rc;
    if (ftq_qscheme_is_k(q->scheme)) {
        ftq_kq_qmat_fill(m, q->qs, q->row_bytes, q->scales);
        return FTQ_OK;
    }
    const int ng = m->ngroups, q8 = m->scheme == FTQ_QSCHEME_Q8;
    const ftq_qscheme_traits *tr = &schemes[q->scheme].t;
    const int z8 = q->scheme == FTQ_QSCHEME_Q5 ? tr->zero : 0;
    for (int r = 0; r < q->rows; r++) {
        const int p = r / FTQ_QPANEL, l = r % FTQ_QPANEL;
        ftq_qchunk *panel = (ftq_qchunk *)(void *)(m->qs + (size_t)p * m->panel_bytes);
        for (int g = 0; g < ng; g++) {
            size_t src = (size_t)r * q->ngroups + g, dst = ((size_t)p * ng + g) * FTQ_QPANEL + l;
            m->d[dst] = q->scales[src];
            if (m->zp)
                m->zp[dst] = q->zeros[src];
            if (m->mn)
                m->mn[dst] = q->mins[src];
        }
        for (int k = 0; k < m->kpad; k++) {
            int c;
            if (k < q->cols)
                c = code_at(q, r, k);
            else /* padding: the zero code (activations are 0 there anyway) */
                c = tr->zero >= 0 ? tr->zero : q->zeros[(size_t)r * q->ngroups + (k / q->gsize < ng ? k / q->gsize : ng - 1)];
            if (q8) {
                panel[k / 4].b[l][k % 4] = (uint8_t)(c - z8 + 128);
            } else {
                uint8_t *b = &panel[k / 8].b[l][k % 4];
                int sh = (k % 8) / 4 * 4;
                *b = (uint8_t)((*b & ~(15 << sh)) | (c << sh));
            }
        }
    }
    return FTQ_OK;
}

int ftq_qmat_quantize(ftq_qmat *m, const float *w, int rows, int cols, const ftq_quant_params *p,
                      int ab)
{
    ftq_qtensor q;
    memset(m, 0, sizeof *m);
    int rc = ftq_qtensor_quantize(&q, w, rows, cols, p);
    if (rc != FTQ_OK)
        return rc;
    rc = ftq_qmat_pack(m, &q, ab);
    ftq_qtensor_free(&q);
    return rc;
}

void ftq_qmat_dequantize(const ftq_qmat *m, float *out)
{
    for (int r = 0; r < m->rows; r++)
        ftq_qmat_dequantize_row(m, r, out + (size_t)r * m->cols);
}

int ftq_qtensor_matmul_ref(float *y, const float *x, const ftq_qtensor *w, int ab,
                           const float *bias, int T)
{
    if (ab == 0)
        ab = FTQ_QACT_BLOCK;
    if (ftq_qscheme_is_k(w->scheme))
        return ab != 32 ? ftq_set_error(FTQ_EINVAL, "%s takes activation blocks of 32, not %d", schemes[w->scheme].t.name, ab)
                        : ftq_kq_matmul_ref(y, x, w->scheme, w->rows, w->cols, w->qs, w->row_bytes, w->scales, bias, T);
    if (ab != 32 && ab != 64 && ab != 128)
        return ftq_set_error(FTQ_EINVAL, "invalid activation block %d: expected 32, 64 or 128", ab);
    if (w->group != FTQ_QGROUP_ROW && w->group % ab != 0)
        return ftq_set_error(FTQ_EINVAL, "activation block %d does not divide the group size %d", ab, w->group);
    const int cols = w->cols, kpad = (cols + ab - 1) / ab * ab, nblk = kpad / ab;
    const ftq_qscheme_traits *tr = &schemes[w->scheme].t;
    int8_t *qx = malloc((size_t)kpad + (sizeof(float) + sizeof(int32_t)) * (size_t)nblk);
    if (!qx)
        return ftq_set_error(FTQ_ENOMEM, "out of memory in the quantized reference matmul");
    float *dx = (float *)(void *)(qx + kpad); /* kpad is a multiple of 32: aligned */
    int32_t *sx = (int32_t *)(void *)(dx + nblk);
    for (int t = 0; t < T; t++) {
        ftq_qact_quantize_row_ref(x + (size_t)t * cols, cols, kpad, ab, qx, dx, sx);
        for (int o = 0; o < w->rows; o++) {
            float acc = 0.0f;
            for (int b = 0; b < nblk; b++) {
                const int k0 = b * ab, k1 = k0 + ab < cols ? k0 + ab : cols, g = k0 / w->gsize;
                const size_t gi = (size_t)o * w->ngroups + g;
                const int z = tr->zero >= 0 ? tr->zero : w->zeros[gi];
                int32_t isum = 0;
                for (int k = k0; k < k1; k++)
                    isum += (code_at(w, o, k) - z) * qx[k];
                acc = fmaf((float)isum, w->scales[gi] * dx[b], acc);
                if (w->mins) /* q4m: + m * dx * sum(qx), as ggml's Q4_1 x Q8_1 */
                    acc = fmaf((float)sx[b], w->mins[gi] * dx[b], acc);
            }
            y[(size_t)t * w->rows + o] = bias ? acc + bias[o] : acc;
        }
    }
    free(qx);
    return FTQ_OK;
}
