/* norm_backward.c - RMSNorm and LayerNorm backward. The input gradient is a per-row
 * computation (AVX2 row kernels, OpenMP over rows); the weight / bias gradients are column
 * sums over rows, split by column blocks so each element is reduced by one thread in row
 * order (deterministic for any thread count, no floating-point reductions across threads). */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

#define ROWS_PAR(T, C) ((long)(T) * (C) > 16384)
#define COL_BLOCK 64

/* ---- scalar references ---------------------------------------------------------------- */

void ftq_rmsnorm_backward_ref(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, const float *rstd, int T, int C)
{
    for (int t = 0; t < T; t++) {
        const float *dy = dout + (size_t)t * C, *x = inp + (size_t)t * C;
        float r = rstd[t];
        if (dinp) {
            float s = 0.0f;
            for (int i = 0; i < C; i++)
                s += weight[i] * dy[i] * x[i];
            float k = r * r * r * s / (float)C;
            float *dx = dinp + (size_t)t * C;
            for (int i = 0; i < C; i++)
                dx[i] += r * weight[i] * dy[i] - k * x[i];
        }
        if (dweight)
            for (int i = 0; i < C; i++)
                dweight[i] += dy[i] * x[i] * r;
    }
}

void ftq_layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *mean,
                                const float *rstd, int T, int C)
{
    for (int t = 0; t < T; t++) {
        const float *dy = dout + (size_t)t * C, *x = inp + (size_t)t * C;
        float m = mean[t], r = rstd[t];
        if (dinp) {
            float m1 = 0.0f, m2 = 0.0f;
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - m) * r, dn = weight[i] * dy[i];
                m1 += dn;
                m2 += dn * xh;
            }
            m1 /= (float)C;
            m2 /= (float)C;
            float *dx = dinp + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - m) * r, dn = weight[i] * dy[i];
                dx[i] += r * (dn - m1 - xh * m2);
            }
        }
        for (int i = 0; i < C; i++) {
            if (dweight)
                dweight[i] += dy[i] * (x[i] - m) * r;
            if (dbias)
                dbias[i] += dy[i];
        }
    }
}

/* ---- fast paths ----------------------------------------------------------------------- */

/* dw[c] += sum_t dy[t,c] (x[t,c] - mean[t]) rstd[t], db[c] += sum_t dy[t,c] for c in
 * [c0, c1) (mean NULL: 0). Rows in ascending order per element. */
static void col_grads(float *dw, float *db, const float *dout, const float *inp,
                      const float *mean, const float *rstd, int T, int C, int c0, int c1)
{
    float aw[COL_BLOCK], ab[COL_BLOCK];
    int n = c1 - c0;
    for (int i = 0; i < n; i++)
        aw[i] = ab[i] = 0.0f;
    for (int t = 0; t < T; t++) {
        const float *dy = dout + (size_t)t * C + c0, *x = inp + (size_t)t * C + c0;
        float m = mean ? mean[t] : 0.0f, r = rstd[t];
        if (dw)
            for (int i = 0; i < n; i++)
                aw[i] += dy[i] * ((x[i] - m) * r);
        if (db)
            for (int i = 0; i < n; i++)
                ab[i] += dy[i];
    }
    for (int i = 0; i < n; i++) {
        if (dw)
            dw[c0 + i] += aw[i];
        if (db)
            db[c0 + i] += ab[i];
    }
}

static void col_grads_all(float *dw, float *db, const float *dout, const float *inp,
                          const float *mean, const float *rstd, int T, int C)
{
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
    (void)nblk;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C) && nblk > 1)
#endif
    for (int b = 0; b < nblk; b++) {
        int c0 = b * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        col_grads(dw, db, dout, inp, mean, rstd, T, C, c0, c1);
    }
}

#if FTQ_HAVE_X86
/* One row of the RMSNorm input gradient (dx +=). */
FTQ_AVX2 static void rms_row_avx2(float *dx, const float *dy, const float *x, const float *w,
                                  float r, int C)
{
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= C; i += 8)
        s = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(dy + i)),
                            _mm256_loadu_ps(x + i), s);
    int tail = i;
    __m256i tm = ftq_tail_mask256(C - tail);
    if (tail < C)
        s = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_maskload_ps(w + tail, tm),
                                          _mm256_maskload_ps(dy + tail, tm)),
                            _mm256_maskload_ps(x + tail, tm), s);
    float k = r * r * r * ftq_hsum256(s) / (float)C;
    __m256 rv = _mm256_set1_ps(r), kv = _mm256_set1_ps(k);
    for (i = 0; i < tail; i += 8) {
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(rv, _mm256_loadu_ps(w + i)), _mm256_loadu_ps(dy + i));
        g = _mm256_fnmadd_ps(kv, _mm256_loadu_ps(x + i), g);
        _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), g));
    }
    if (tail < C) {
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(rv, _mm256_maskload_ps(w + tail, tm)),
                                 _mm256_maskload_ps(dy + tail, tm));
        g = _mm256_fnmadd_ps(kv, _mm256_maskload_ps(x + tail, tm), g);
        _mm256_maskstore_ps(dx + tail, tm, _mm256_add_ps(_mm256_maskload_ps(dx + tail, tm), g));
    }
}

/* One row of the LayerNorm input gradient (dx +=). */
FTQ_AVX2 static void ln_row_avx2(float *dx, const float *dy, const float *x, const float *w,
                                 float m, float r, int C)
{
    __m256 mv = _mm256_set1_ps(m), rv = _mm256_set1_ps(r);
    __m256 s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= C; i += 8) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
        __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(dy + i));
        s1 = _mm256_add_ps(s1, dn);
        s2 = _mm256_fmadd_ps(dn, xh, s2);
    }
    int tail = i;
    __m256i tm = ftq_tail_mask256(C - tail);
    if (tail < C) {
        /* masked lanes: dn = 0, so neither sum sees them */
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + tail, tm), mv), rv);
        __m256 dn = _mm256_mul_ps(_mm256_maskload_ps(w + tail, tm), _mm256_maskload_ps(dy + tail, tm));
        s1 = _mm256_add_ps(s1, dn);
        s2 = _mm256_fmadd_ps(dn, xh, s2);
    }
    __m256 m1 = _mm256_set1_ps(ftq_hsum256(s1) / (float)C);
    __m256 m2 = _mm256_set1_ps(ftq_hsum256(s2) / (float)C);
    for (i = 0; i < tail; i += 8) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
        __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(dy + i));
        __m256 g = _mm256_mul_ps(rv, _mm256_fnmadd_ps(xh, m2, _mm256_sub_ps(dn, m1)));
        _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), g));
    }
    if (tail < C) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + tail, tm), mv), rv);
        __m256 dn = _mm256_mul_ps(_mm256_maskload_ps(w + tail, tm), _mm256_maskload_ps(dy + tail, tm));
        __m256 g = _mm256_mul_ps(rv, _mm256_fnmadd_ps(xh, m2, _mm256_sub_ps(dn, m1)));
        _mm256_maskstore_ps(dx + tail, tm, _mm256_add_ps(_mm256_maskload_ps(dx + tail, tm), g));
    }
}
#endif

void ftq_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int T, int C)
{
    if (dinp) {
        int avx2 = ftq_use_avx2();
        (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C))
#endif
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * C;
#if FTQ_HAVE_X86
            if (avx2) {
                rms_row_avx2(dinp + o, dout + o, inp + o, weight, rstd[t], C);
                continue;
            }
#endif
            ftq_rmsnorm_backward_ref(dinp + o, NULL, dout + o, inp + o, weight, rstd + t, 1, C);
        }
    }
    if (dweight)
        col_grads_all(dweight, NULL, dout, inp, NULL, rstd, T, C);
}

void ftq_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int T, int C)
{
    if (dinp) {
        int avx2 = ftq_use_avx2();
        (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C))
#endif
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * C;
#if FTQ_HAVE_X86
            if (avx2) {
                ln_row_avx2(dinp + o, dout + o, inp + o, weight, mean[t], rstd[t], C);
                continue;
            }
#endif
            ftq_layernorm_backward_ref(dinp + o, NULL, NULL, dout + o, inp + o, weight, mean + t,
                                       rstd + t, 1, C);
        }
    }
    if (dweight || dbias)
        col_grads_all(dweight, dbias, dout, inp, mean, rstd, T, C);
}
