/* rope.c - rotary position embedding in the Hugging Face rotate_half layout: within each
 * head, element i pairs with i + head_dim/2 (not the interleaved (2i, 2i+1) layout of
 * llama2.c / Meta). Angles come from a precomputed table so every position is exact. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

void ftq_rope_table_freqs(float *cos_t, float *sin_t, int n_pos, int half, const double *inv_freq)
{
    for (int i = 0; i < half; i++)
        for (int p = 0; p < n_pos; p++) {
            double a = (double)p * inv_freq[i];
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
}

void ftq_rope_table(float *cos_t, float *sin_t, int n_pos, int head_dim, double theta)
{
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow(theta, -2.0 * i / (double)head_dim);
        for (int p = 0; p < n_pos; p++) {
            double a = (double)p * inv_freq;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

void ftq_rope_forward_ref(float *x, const float *cos_t, const float *sin_t, int T, int stride,
                          int n_heads, int head_dim)
{
    int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * stride + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

#if FTQ_HAVE_X86
FTQ_AVX2 static void rope_row_avx2(float *x, const float *c, const float *s, int n_heads,
                                   int head_dim)
{
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v0 = x + (size_t)h * head_dim, *v1 = v0 + half;
        int i = 0;
        for (; i + 8 <= half; i += 8) {
            __m256 a = _mm256_loadu_ps(v0 + i), b = _mm256_loadu_ps(v1 + i);
            __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
            /* same rounding as the reference: a*c - b*s, b*c + a*s without fma */
            _mm256_storeu_ps(v0 + i, _mm256_sub_ps(_mm256_mul_ps(a, cv), _mm256_mul_ps(b, sv)));
            _mm256_storeu_ps(v1 + i, _mm256_add_ps(_mm256_mul_ps(b, cv), _mm256_mul_ps(a, sv)));
        }
        for (; i < half; i++) {
            float a = v0[i], b = v1[i];
            v0[i] = a * c[i] - b * s[i];
            v1[i] = b * c[i] + a * s[i];
        }
    }
}
#endif

void ftq_rope_forward(float *x, const float *cos_t, const float *sin_t, int T, int stride,
                      int n_heads, int head_dim)
{
    int half = head_dim / 2;
    int avx2 = ftq_use_avx2();
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((long)T * n_heads * head_dim > 16384)
#endif
    for (int t = 0; t < T; t++) {
        float *row = x + (size_t)t * stride;
        const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
#if FTQ_HAVE_X86
        if (avx2) {
            rope_row_avx2(row, c, s, n_heads, head_dim);
            continue;
        }
#endif
        ftq_rope_forward_ref(row, c, s, 1, stride, n_heads, head_dim);
    }
}
