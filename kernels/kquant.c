/* kquant.c - the q6k / q4k super-block schemes of kernels/kquant.h: byte access in ggml's
 * block layouts, the importance-weighted quantizers, dequantization, the kernel layout, the
 * scalar reference product and the scalar panel path. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "kernels/kquant.h"

size_t ftq_kq_row_bytes(ftq_qscheme s, int n)
{
    return (size_t)(n / FTQ_QK) * (s == FTQ_QSCHEME_Q6K ? FTQ_Q6K_BYTES : FTQ_Q4K_BYTES);
}

/* ---- byte access ---------------------------------------------------------------------- */

/* q6k super-block: ql[128] qh[64] sc[16]. Element e of the block: half h = e / 128, quarter
 * q = (e % 128) / 32, l = e % 32: low 4 bits in ql[64 h + 32 (q & 1) + l] (nibble q >> 1),
 * high 2 bits in qh[32 h + l] at bit 2 q (ggml's dequantize_row_q6_K). */
int ftq_q6k_code(const uint8_t *row, int i)
{
    const uint8_t *b = row + (size_t)(i / FTQ_QK) * FTQ_Q6K_BYTES;
    int e = i % FTQ_QK, h = e / 128, q = (e % 128) / 32, l = e % 32;
    int lo = (b[64 * h + 32 * (q & 1) + l] >> (4 * (q >> 1))) & 15;
    int hi = (b[128 + 32 * h + l] >> (2 * q)) & 3;
    return lo | hi << 4;
}

static void q6k_set(uint8_t *b, int e, int c)
{
    int h = e / 128, q = (e % 128) / 32, l = e % 32;
    uint8_t *pl = &b[64 * h + 32 * (q & 1) + l], *ph = &b[128 + 32 * h + l];
    int sl = 4 * (q >> 1), sh = 2 * q;
    *pl = (uint8_t)((*pl & ~(15 << sl)) | ((c & 15) << sl));
    *ph = (uint8_t)((*ph & ~(3 << sh)) | (((c >> 4) & 3) << sh));
}

int ftq_q6k_scale(const uint8_t *row, int j)
{
    return (int8_t)row[(size_t)(j / 16) * FTQ_Q6K_BYTES + 192 + j % 16];
}

/* q4k super-block: dmin(f16) sc[12] qs[128]. Element e: chunk c = e / 64, nibble (e % 64) / 32
 * of qs[32 c + e % 32]; sub-block e / 32 (ggml's get_scale_min_k4 for the 6-bit pairs). */
int ftq_q4k_code(const uint8_t *row, int i)
{
    const uint8_t *qs = row + (size_t)(i / FTQ_QK) * FTQ_Q4K_BYTES + 14;
    int e = i % FTQ_QK;
    return (qs[32 * (e / 64) + e % 32] >> (4 * ((e % 64) / 32))) & 15;
}

void ftq_q4k_scale_min(const uint8_t *row, int j, int *sc, int *m)
{
    const uint8_t *q = row + (size_t)(j / 8) * FTQ_Q4K_BYTES + 2;
    j %= 8;
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

float ftq_q4k_dmin(const uint8_t *row, int s)
{
    const uint8_t *b = row + (size_t)s * FTQ_Q4K_BYTES;
    return ftq_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
}

static void q4k_put_scales(uint8_t *q, const int *sc, const int *m)
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

/* ---- dequantization ------------------------------------------------------------------- */

void ftq_kq_dequantize_row(ftq_qscheme s, const uint8_t *qs, const float *d, int n, float *out)
{
    for (int i = 0; i < n; i++) {
        float ds = d[i / FTQ_QK];
        if (s == FTQ_QSCHEME_Q6K) {
            float d1 = ds * (float)ftq_q6k_scale(qs, i / 16);
            out[i] = d1 * (float)(ftq_q6k_code(qs, i) - 32);
        } else {
            int sc, m;
            ftq_q4k_scale_min(qs, i / 32, &sc, &m);
            float d1 = ds * (float)sc, m1 = ftq_q4k_dmin(qs, i / FTQ_QK) * (float)m;
            float p = d1 * (float)ftq_q4k_code(qs, i); /* exact: no rounding before the subtraction */
            out[i] = p - m1;
        }
    }
}

/* ---- quantization --------------------------------------------------------------------- */

static float f16_nearest(float v) { return ftq_f16_to_f32(ftq_f32_to_f16(v)); }

static int rint_clamp(float v, int lo, int hi)
{
    v = nearbyintf(v);
    return v < (float)lo ? lo : v > (float)hi ? hi : (int)v;
}

/* Symmetric: codes q = clamp(round(x / a), lo, hi) for a scale a; weighted error of a * q. */
static double sym_err(const float *x, const float *u, int n, float a, int lo, int hi, int *q)
{
    double e = 0;
    float ia = 1.0f / a;
    for (int i = 0; i < n; i++) {
        q[i] = rint_clamp(x[i] * ia, lo, hi);
        double r = (double)x[i] - (double)a * q[i];
        e += u[i] * r * r;
    }
    return e;
}

/* The best unconstrained scale of one q6k sub-block (16 weights): candidates x_max / (c)
 * for divisors around -32 and 31 (either end of the code range takes the largest weight),
 * each followed by a weighted least-squares refit of its codes. 0 for an all-zero block. */
static float q6k_sub_scale(const float *x, const float *u, int n)
{
    float xm = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(xm))
            xm = x[i];
    if (!(fabsf(xm) >= 1e-30f))
        return 0;
    int q[32];
    double best = INFINITY;
    float ba = 0;
    for (int side = 0; side < 2; side++)
        for (int k = -6; k <= 6; k++) {
            float div = side ? -32.0f + 0.1f * (float)k : 31.0f + 0.1f * (float)k;
            float a = xm / div;
            for (int it = 0; it < 2; it++) {
                double e = sym_err(x, u, n, a, -32, 31, q);
                if (e < best) {
                    best = e;
                    ba = a;
                }
                double sxq = 0, sqq = 0;
                for (int i = 0; i < n; i++) {
                    sxq += (double)u[i] * x[i] * q[i];
                    sqq += (double)u[i] * q[i] * q[i];
                }
                if (!(sqq > 0))
                    break;
                a = (float)(sxq / sqq);
                if (!(fabsf(a) >= 1e-30f))
                    break;
            }
        }
    return ba;
}

/* Weighted error of a q6k sub-block with the exact dequantization (d * sc) * (c - 32). */
static double q6k_sub_err(const float *x, const float *u, int n, float d, int sc, int *c)
{
    float d1 = d * (float)sc;
    double e = 0;
    float id = d1 != 0.0f ? 1.0f / d1 : 0.0f;
    for (int i = 0; i < n; i++) {
        c[i] = d1 != 0.0f ? rint_clamp(x[i] * id, -32, 31) + 32 : 32;
        double r = (double)x[i] - (double)(d1 * (float)(c[i] - 32));
        e += u[i] * r * r;
    }
    return e;
}

static int q6k_block(const float *x, const float *u, uint8_t *b, float *dout)
{
    float a[16], amax = 0;
    for (int j = 0; j < 16; j++) {
        a[j] = q6k_sub_scale(x + 16 * j, u + 16 * j, 16);
        amax = fabsf(a[j]) > amax ? fabsf(a[j]) : amax;
    }
    memset(b, 0, FTQ_Q6K_BYTES);
    if (!(amax >= 1e-30f)) { /* all zero: d = 0, codes 32 */
        for (int e = 0; e < FTQ_QK; e++)
            q6k_set(b, e, 32);
        *dout = 0;
        return 0;
    }
    int c[16], cbest[16][16], scb[16];
    double best = INFINITY;
    float dbest = 0;
    /* a few super-block scales: max |a| / (127 - k); each sub-block then takes the best of
     * the nearest 8-bit scale and its two neighbours */
    for (int k = 0; k < 6; k++) {
        float d = f16_nearest(amax / (127.0f - 2.0f * (float)k));
        if (!isfinite(d))
            return 1;
        if (d == 0.0f)
            continue;
        double tot = 0;
        int sc[16], cc[16][16];
        for (int j = 0; j < 16; j++) {
            int s0 = rint_clamp(a[j] / d, -128, 127);
            double eb = INFINITY;
            for (int t = s0 - 1; t <= s0 + 1; t++) {
                if (t < -128 || t > 127)
                    continue;
                double e = q6k_sub_err(x + 16 * j, u + 16 * j, 16, d, t, c);
                if (e < eb) {
                    eb = e;
                    sc[j] = t;
                    memcpy(cc[j], c, sizeof c);
                }
            }
            tot += eb;
        }
        if (tot < best) {
            best = tot;
            dbest = d;
            memcpy(scb, sc, sizeof sc);
            memcpy(cbest, cc, sizeof cc);
        }
    }
    if (dbest == 0.0f) /* amax tiny: every f16 candidate underflowed */
        dbest = 0;
    for (int j = 0; j < 16; j++) {
        b[192 + j] = (uint8_t)(int8_t)(dbest != 0.0f ? scb[j] : 0);
        for (int i = 0; i < 16; i++)
            q6k_set(b, 16 * j + i, dbest != 0.0f ? cbest[j][i] : 32);
    }
    *dout = dbest;
    return 0;
}

/* Best (a, b) of one q4k sub-block for value = a * c - b, c in [0, 15], a > 0, b >= 0
 * (ggml's make_qkx3 idea: a grid of scales from [min(x, 0), max x], each refitted by weighted
 * least squares with b clamped to >= 0). */
static void q4k_sub_fit(const float *x, const float *u, int n, float *aout, float *bout)
{
    float lo = 0, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (hi <= lo) { /* constant non-positive block */
        *aout = 0;
        *bout = -lo;
        return;
    }
    int c[32];
    double best = INFINITY;
    float ba = (hi - lo) / 15.0f, bb = -lo;
    for (int k = -9; k <= 18; k++) {
        float a = (hi - lo) / (15.0f + 0.1f * (float)k), b = -lo;
        for (int it = 0; it < 2; it++) {
            float ia = 1.0f / a;
            double e = 0, s = 0, sc = 0, scc = 0, sx = 0, sxc = 0;
            for (int i = 0; i < n; i++) {
                c[i] = rint_clamp((x[i] + b) * ia, 0, 15);
                double r = (double)x[i] - ((double)a * c[i] - b);
                e += u[i] * r * r;
                s += u[i];
                sc += (double)u[i] * c[i];
                scc += (double)u[i] * c[i] * c[i];
                sx += (double)u[i] * x[i];
                sxc += (double)u[i] * x[i] * c[i];
            }
            if (e < best) {
                best = e;
                ba = a;
                bb = b;
            }
            double det = s * scc - sc * sc;
            if (!(det > 0))
                break;
            double na = (s * sxc - sc * sx) / det, nb = -(sx - na * sc) / s;
            if (nb < 0) { /* min above 0: b = 0, a = sum u x c / sum u c^2 */
                nb = 0;
                na = scc > 0 ? sxc / scc : 0;
            }
            if (!(na > 1e-30))
                break;
            a = (float)na;
            b = (float)nb;
        }
    }
    *aout = ba;
    *bout = bb;
}

static double q4k_sub_err(const float *x, const float *u, int n, float d, float dmin, int sc, int m, int *c)
{
    float d1 = d * (float)sc, m1 = dmin * (float)m;
    float id = d1 != 0.0f ? 1.0f / d1 : 0.0f;
    double e = 0;
    for (int i = 0; i < n; i++) {
        c[i] = d1 != 0.0f ? rint_clamp((x[i] + m1) * id, 0, 15) : 0;
        float p = d1 * (float)c[i];
        double r = (double)x[i] - (double)(p - m1);
        e += u[i] * r * r;
    }
    return e;
}

static int q4k_block(const float *x, const float *u, uint8_t *blk, float *dout)
{
    float a[8], bm[8], amax = 0, bmax = 0;
    for (int j = 0; j < 8; j++) {
        q4k_sub_fit(x + 32 * j, u + 32 * j, 32, &a[j], &bm[j]);
        amax = a[j] > amax ? a[j] : amax;
        bmax = bm[j] > bmax ? bm[j] : bmax;
    }
    memset(blk, 0, FTQ_Q4K_BYTES);
    double best = INFINITY;
    int scb[8] = {0}, mb[8] = {0}, cb[8][32];
    float dbest = 0, dminbest = 0;
    memset(cb, 0, sizeof cb);
    for (int k = 0; k < 4; k++) {
        float d = amax > 0 ? f16_nearest(amax / (63.0f - (float)k)) : 0.0f;
        float dmin = bmax > 0 ? f16_nearest(bmax / (63.0f - (float)k)) : 0.0f;
        if (!isfinite(d) || !isfinite(dmin))
            return 1;
        double tot = 0;
        int sc[8], mm[8], cc[8][32], c[32];
        for (int j = 0; j < 8; j++) {
            int s0 = d > 0 ? rint_clamp(a[j] / d, 0, 63) : 0, m0 = dmin > 0 ? rint_clamp(bm[j] / dmin, 0, 63) : 0;
            double eb = INFINITY;
            for (int ts = s0 - 1; ts <= s0 + 1; ts++)
                for (int tm = m0 - 1; tm <= m0 + 1; tm++) {
                    if (ts < 0 || ts > 63 || tm < 0 || tm > 63)
                        continue;
                    double e = q4k_sub_err(x + 32 * j, u + 32 * j, 32, d, dmin, ts, tm, c);
                    if (e < eb) {
                        eb = e;
                        sc[j] = ts;
                        mm[j] = tm;
                        memcpy(cc[j], c, sizeof c);
                    }
                }
            tot += eb;
        }
        if (tot < best) {
            best = tot;
            dbest = d;
            dminbest = dmin;
            memcpy(scb, sc, sizeof sc);
            memcpy(mb, mm, sizeof mm);
            memcpy(cb, cc, sizeof cc);
        }
    }
    uint16_t hm = ftq_f32_to_f16(dminbest);
    blk[0] = (uint8_t)(hm & 255);
    blk[1] = (uint8_t)(hm >> 8);
    q4k_put_scales(blk + 2, scb, mb);
    uint8_t *qs = blk + 14;
    for (int e = 0; e < FTQ_QK; e++) {
        int c = cb[e / 32][e % 32];
        qs[32 * (e / 64) + e % 32] |= (uint8_t)(c << (4 * ((e % 64) / 32)));
    }
    *dout = dbest;
    return 0;
}

int ftq_kq_quantize_row(ftq_qscheme s, const float *x, const float *u, int n, uint8_t *qs, float *d, int *bad)
{
    float *own = NULL;
    if (!u) {
        own = malloc(sizeof(float) * (size_t)n);
        if (!own)
            return 2;
        double s2 = 0;
        for (int i = 0; i < n; i++)
            s2 += (double)x[i] * x[i];
        for (int i = 0; i < n; i++)
            own[i] = (float)sqrt(s2 / n + (double)x[i] * x[i]);
        u = own;
    }
    int rc = 0;
    for (int b = 0; b < n / FTQ_QK && !rc; b++) {
        const float *xb = x + (size_t)b * FTQ_QK, *ub = u + (size_t)b * FTQ_QK;
        rc = s == FTQ_QSCHEME_Q6K ? q6k_block(xb, ub, qs + (size_t)b * FTQ_Q6K_BYTES, &d[b])
                                  : q4k_block(xb, ub, qs + (size_t)b * FTQ_Q4K_BYTES, &d[b]);
        if (rc && bad)
            *bad = b * FTQ_QK;
    }
    free(own);
    return rc;
}

/* ---- kernel layout -------------------------------------------------------------------- */

int ftq_kq_qmat_alloc(ftq_qmat *m, ftq_qscheme s, int rows, int cols, int ab)
{
    memset(m, 0, sizeof *m);
    if (rows <= 0 || cols <= 0)
        return ftq_set_error(FTQ_EINVAL, "invalid quantized matrix shape [%d, %d]", rows, cols);
    if (cols % FTQ_QK)
        return ftq_set_error(FTQ_EINVAL, "%s needs a multiple of 256 columns, not %d",
                             s == FTQ_QSCHEME_Q6K ? "q6k" : "q4k", cols);
    if (ab != 0 && ab != 32)
        return ftq_set_error(FTQ_EINVAL, "%s takes activation blocks of 32, not %d", s == FTQ_QSCHEME_Q6K ? "q6k" : "q4k",
                             ab);
    m->scheme = s;
    m->rows = rows;
    m->cols = cols;
    m->ab = 32;
    m->kpad = cols;
    m->group = FTQ_QK;
    m->ngroups = cols / FTQ_QK;
    m->npanels = (rows + FTQ_QPANEL - 1) / FTQ_QPANEL;
    m->panel_bytes = (size_t)cols * (s == FTQ_QSCHEME_Q6K ? 16 : 8);
    size_t nq = ((size_t)m->npanels * m->panel_bytes + 63) / 64 * 64;
    size_t nsb = (size_t)m->npanels * m->ngroups;
    size_t nd = nsb * 2 * FTQ_QPANEL * sizeof(float), nz = nsb * 16 * FTQ_QPANEL;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, nq + nd + nz) != 0)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for a quantized [%d, %d] matrix", rows, cols);
    memset(mem, 0, nq + nd + nz);
    m->mem = mem;
    m->mem_bytes = nq + nd + nz;
    m->qs = mem;
    m->d = (float *)(void *)((char *)mem + nq);
    m->zp = (uint8_t *)mem + nq + nd;
    return FTQ_OK;
}

size_t ftq_kq_qmat_bytes(const ftq_qmat *m)
{
    size_t nsb = (size_t)m->npanels * m->ngroups;
    return (size_t)m->npanels * m->panel_bytes + nsb * FTQ_QPANEL * (2 * sizeof(float) + 16);
}

void ftq_kq_qmat_fill(ftq_qmat *m, const uint8_t *qs, size_t row_bytes, const float *d)
{
    const int q6 = m->scheme == FTQ_QSCHEME_Q6K, ns = m->ngroups;
    for (int r = 0; r < m->rows; r++) {
        const uint8_t *row = qs + (size_t)r * row_bytes;
        const int p = r / FTQ_QPANEL, l = r % FTQ_QPANEL;
        ftq_qchunk *panel = (ftq_qchunk *)(void *)(m->qs + (size_t)p * m->panel_bytes);
        for (int s = 0; s < ns; s++) {
            size_t sb = (size_t)p * ns + s;
            m->d[(sb * 2) * FTQ_QPANEL + l] = d[(size_t)r * ns + s];
            m->d[(sb * 2 + 1) * FTQ_QPANEL + l] = q6 ? 0.0f : ftq_q4k_dmin(row, s);
            for (int j = 0; j < 16; j++) {
                int v;
                if (q6) {
                    v = ftq_q6k_scale(row, 16 * s + j);
                } else {
                    int sc, mn;
                    ftq_q4k_scale_min(row, 8 * s + j % 8, &sc, &mn);
                    v = j < 8 ? sc : mn;
                }
                m->zp[(sb * 16 + j) * FTQ_QPANEL + l] = (uint8_t)v;
            }
        }
        for (int k = 0; k < m->cols; k++) {
            if (q6) {
                panel[k / 4].b[l][k % 4] = (uint8_t)ftq_q6k_code(row, k);
            } else {
                uint8_t *b = &panel[k / 8].b[l][k % 4];
                *b = (uint8_t)(*b | ftq_q4k_code(row, k) << ((k % 8) / 4 * 4));
            }
        }
    }
}

void ftq_kq_qmat_dequantize_row(const ftq_qmat *m, int r, float *out)
{
    const int p = r / FTQ_QPANEL, l = r % FTQ_QPANEL, ns = m->ngroups;
    const ftq_qchunk *panel = (const ftq_qchunk *)(const void *)(m->qs + (size_t)p * m->panel_bytes);
    for (int k = 0; k < m->cols; k++) {
        size_t sb = (size_t)p * ns + k / FTQ_QK;
        float d = m->d[(sb * 2) * FTQ_QPANEL + l];
        int e = k % FTQ_QK;
        if (m->scheme == FTQ_QSCHEME_Q6K) {
            int sc = (int8_t)m->zp[(sb * 16 + e / 16) * FTQ_QPANEL + l];
            float d1 = d * (float)sc;
            out[k] = d1 * (float)(panel[k / 4].b[l][k % 4] - 32);
        } else {
            int sc = m->zp[(sb * 16 + e / 32) * FTQ_QPANEL + l], mn = m->zp[(sb * 16 + 8 + e / 32) * FTQ_QPANEL + l];
            float d1 = d * (float)sc, m1 = m->d[(sb * 2 + 1) * FTQ_QPANEL + l] * (float)mn;
            float pr = d1 * (float)((panel[k / 8].b[l][k % 4] >> ((k % 8) / 4 * 4)) & 15);
            out[k] = pr - m1;
        }
    }
}

/* ---- products ------------------------------------------------------------------------- */

int ftq_kq_matmul_ref(float *y, const float *x, ftq_qscheme s, int rows, int cols, const uint8_t *qs,
                      size_t row_bytes, const float *d, const float *bias, int T)
{
    const int nblk = cols / 32, ns = cols / FTQ_QK;
    int8_t *qx = malloc((size_t)cols + (sizeof(float) + sizeof(int32_t)) * (size_t)nblk);
    if (!qx)
        return ftq_set_error(FTQ_ENOMEM, "out of memory in the quantized reference matmul");
    float *dx = (float *)(void *)(qx + cols);
    int32_t *sx = (int32_t *)(void *)(dx + nblk);
    for (int t = 0; t < T; t++) {
        ftq_qact_quantize_row_ref(x + (size_t)t * cols, cols, cols, 32, qx, dx, sx);
        for (int o = 0; o < rows; o++) {
            const uint8_t *row = qs + (size_t)o * row_bytes;
            float acc = 0.0f;
            for (int b = 0; b < nblk; b++) {
                const int k0 = 32 * b, sb = b / 8;
                const float ds = d[(size_t)o * ns + sb];
                if (s == FTQ_QSCHEME_Q6K) {
                    int32_t s0 = 0, s1 = 0, x0 = 0;
                    for (int k = 0; k < 16; k++) {
                        s0 += ftq_q6k_code(row, k0 + k) * qx[k0 + k];
                        s1 += ftq_q6k_code(row, k0 + 16 + k) * qx[k0 + 16 + k];
                        x0 += qx[k0 + k];
                    }
                    int32_t isum = ftq_q6k_scale(row, 2 * b) * (s0 - 32 * x0) +
                                   ftq_q6k_scale(row, 2 * b + 1) * (s1 - 32 * (sx[b] - x0));
                    acc = fmaf((float)isum, ds * dx[b], acc);
                } else {
                    int sc, mn;
                    ftq_q4k_scale_min(row, b, &sc, &mn);
                    int32_t s0 = 0;
                    for (int k = 0; k < 32; k++)
                        s0 += ftq_q4k_code(row, k0 + k) * qx[k0 + k];
                    int32_t isum = sc * s0, msum = mn * sx[b];
                    acc = fmaf((float)isum, ds * dx[b], acc);
                    acc = fmaf((float)msum, -(ftq_q4k_dmin(row, sb) * dx[b]), acc);
                }
            }
            y[(size_t)t * rows + o] = bias ? acc + bias[o] : acc;
        }
    }
    free(qx);
    return FTQ_OK;
}

void ftq_kq_run_scalar(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                       const float *bias)
{
    const int nblk = a->nblk, ns = w->ngroups, q6 = w->scheme == FTQ_QSCHEME_Q6K;
    for (int p = p0; p < p1; p++) {
        const uint8_t *wq = w->qs + (size_t)p * w->panel_bytes;
        for (int t = t0; t < t1; t++) {
            const int8_t *xq = a->qs + (size_t)t * a->kpad;
            float acc[FTQ_QPANEL] = {0};
            for (int b = 0; b < nblk; b++) {
                const size_t sb = (size_t)p * ns + b / 8;
                const float *dv = w->d + sb * 2 * FTQ_QPANEL, *dm = dv + FTQ_QPANEL;
                const uint8_t *zv = w->zp + sb * 16 * FTQ_QPANEL;
                const float dx = a->d[(size_t)t * nblk + b];
                const int32_t sx = a->s[(size_t)t * nblk + b];
                int32_t s0[FTQ_QPANEL] = {0}, s1[FTQ_QPANEL] = {0};
                if (q6) {
                    int32_t x0 = 0;
                    for (int k = 32 * b; k < 32 * b + 16; k++)
                        x0 += xq[k];
                    for (int k = 32 * b; k < 32 * b + 32; k += 4) {
                        const uint8_t *c = wq + (size_t)k * 16;
                        int32_t *sv = k < 32 * b + 16 ? s0 : s1;
                        for (int i = 0; i < 4; i++)
                            for (int l = 0; l < FTQ_QPANEL; l++)
                                sv[l] += (int32_t)c[4 * l + i] * xq[k + i];
                    }
                    const int j0 = 2 * (b % 8);
                    for (int l = 0; l < FTQ_QPANEL; l++) {
                        int32_t is = (int8_t)zv[j0 * FTQ_QPANEL + l] * (s0[l] - 32 * x0) +
                                     (int8_t)zv[(j0 + 1) * FTQ_QPANEL + l] * (s1[l] - 32 * (sx - x0));
                        acc[l] = fmaf((float)is, dv[l] * dx, acc[l]);
                    }
                } else {
                    for (int k = 32 * b; k < 32 * b + 32; k += 8) {
                        const uint8_t *c = wq + (size_t)k * 8;
                        for (int i = 0; i < 4; i++)
                            for (int l = 0; l < FTQ_QPANEL; l++)
                                s0[l] += (int32_t)(c[4 * l + i] & 15) * xq[k + i] + (int32_t)(c[4 * l + i] >> 4) * xq[k + 4 + i];
                    }
                    const int j = b % 8;
                    for (int l = 0; l < FTQ_QPANEL; l++) {
                        int32_t is = zv[j * FTQ_QPANEL + l] * s0[l], ms = zv[(8 + j) * FTQ_QPANEL + l] * sx;
                        acc[l] = fmaf((float)is, dv[l] * dx, acc[l]);
                        acc[l] = fmaf((float)ms, -(dm[l] * dx), acc[l]);
                    }
                }
            }
            float *yr = y + (size_t)t * w->rows;
            for (int l = 0; l < FTQ_QPANEL && p * FTQ_QPANEL + l < w->rows; l++) {
                int o = p * FTQ_QPANEL + l;
                yr[o] = bias ? acc[l] + bias[o] : acc[l];
            }
        }
    }
}
