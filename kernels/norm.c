/* norm.c - RMSNorm and LayerNorm over the rows of a [T, C] activation. Statistics are
 * accumulated in float (8 lanes in the AVX2 path); LayerNorm uses two passes (mean, then
 * the biased variance of x - mean) for accuracy. OpenMP over rows; out may equal in. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

#define ROWS_PAR(T, C) ((long)(T) * (C) > 16384)

void ftq_rmsnorm_forward_ref(float *out, float *rstd, const float *in, const float *w,
                             float eps, int T, int C)
{
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * C;
        float *y = out + (size_t)t * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++)
            ss += x[i] * x[i];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++)
            y[i] = (x[i] * r) * w[i];
        if (rstd)
            rstd[t] = r;
    }
}

void ftq_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *in,
                               const float *w, const float *b, float eps, int T, int C)
{
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * C;
        float *y = out + (size_t)t * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++)
            m += x[i];
        m /= (float)C;
        float v = 0.0f;
        for (int i = 0; i < C; i++)
            v += (x[i] - m) * (x[i] - m);
        v /= (float)C;
        float r = 1.0f / sqrtf(v + eps);
        for (int i = 0; i < C; i++)
            y[i] = (x[i] - m) * r * w[i] + (b ? b[i] : 0.0f);
        if (mean)
            mean[t] = m;
        if (rstd)
            rstd[t] = r;
    }
}

#if FTQ_HAVE_X86
FTQ_AVX2 static void rmsnorm_row_avx2(float *y, float *rstd, const float *x, const float *w,
                                      float eps, int C)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= C; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    for (; i + 8 <= C; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(a, a, s0);
    }
    if (i < C) {
        __m256 a = _mm256_maskload_ps(x + i, ftq_tail_mask256(C - i));
        s1 = _mm256_fmadd_ps(a, a, s1);
    }
    float r = 1.0f / sqrtf(ftq_hsum256(_mm256_add_ps(s0, s1)) / (float)C + eps);
    __m256 rv = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= C; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv),
                                              _mm256_loadu_ps(w + i)));
    if (i < C) {
        __m256i m = ftq_tail_mask256(C - i);
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(x + i, m), rv),
                                 _mm256_maskload_ps(w + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
    if (rstd)
        *rstd = r;
}

FTQ_AVX2 static void layernorm_row_avx2(float *y, float *mean, float *rstd, const float *x,
                                        const float *w, const float *b, float eps, int C)
{
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= C; i += 8)
        s = _mm256_add_ps(s, _mm256_loadu_ps(x + i));
    __m256i tm = ftq_tail_mask256(C - i);
    int tail = i;
    if (i < C)
        s = _mm256_add_ps(s, _mm256_maskload_ps(x + i, tm));
    float m = ftq_hsum256(s) / (float)C;
    __m256 mv = _mm256_set1_ps(m);
    s = _mm256_setzero_ps();
    for (i = 0; i < tail; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
        s = _mm256_fmadd_ps(d, d, s);
    }
    if (tail < C) {
        /* masked-out lanes load 0, and 0 - m must not count */
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + tail, tm), mv),
                                 _mm256_castsi256_ps(tm));
        s = _mm256_fmadd_ps(d, d, s);
    }
    float r = 1.0f / sqrtf(ftq_hsum256(s) / (float)C + eps);
    __m256 rv = _mm256_set1_ps(r);
    for (i = 0; i < tail; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv),
                                 _mm256_loadu_ps(w + i));
        if (b)
            v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, v);
    }
    if (tail < C) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + tail, tm), mv), rv),
                                 _mm256_maskload_ps(w + tail, tm));
        if (b)
            v = _mm256_add_ps(v, _mm256_maskload_ps(b + tail, tm));
        _mm256_maskstore_ps(y + tail, tm, v);
    }
    if (mean)
        *mean = m;
    if (rstd)
        *rstd = r;
}
#endif

void ftq_rmsnorm_forward(float *out, float *rstd, const float *in, const float *w, float eps,
                         int T, int C)
{
#if FTQ_HAVE_X86
    if (ftq_use_avx2()) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C))
#endif
        for (int t = 0; t < T; t++)
            rmsnorm_row_avx2(out + (size_t)t * C, rstd ? rstd + t : NULL, in + (size_t)t * C, w,
                             eps, C);
        return;
    }
#endif
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C))
#endif
    for (int t = 0; t < T; t++)
        ftq_rmsnorm_forward_ref(out + (size_t)t * C, rstd ? rstd + t : NULL, in + (size_t)t * C,
                                w, eps, 1, C);
}

void ftq_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                           const float *b, float eps, int T, int C)
{
#if FTQ_HAVE_X86
    if (ftq_use_avx2()) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C))
#endif
        for (int t = 0; t < T; t++)
            layernorm_row_avx2(out + (size_t)t * C, mean ? mean + t : NULL, rstd ? rstd + t : NULL,
                               in + (size_t)t * C, w, b, eps, C);
        return;
    }
#endif
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ROWS_PAR(T, C))
#endif
    for (int t = 0; t < T; t++)
        ftq_layernorm_forward_ref(out + (size_t)t * C, mean ? mean + t : NULL,
                                  rstd ? rstd + t : NULL, in + (size_t)t * C, w, b, eps, 1, C);
}
