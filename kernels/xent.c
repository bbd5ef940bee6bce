/* xent.c - fused softmax + cross-entropy over rows of logits (LM heads: rows x vocab;
 * classification: rows x labels). The forward leaves the softmax in place so the backward
 * is one pass: (p - onehot) * dloss. Rows whose target is negative (HF ignore_index -100)
 * are not scored: loss 0, gradient 0. OpenMP over rows (disjoint writes). */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

static float xent_row_ref(float *x, int target, int V)
{
    float m = x[0];
    for (int j = 1; j < V; j++)
        if (x[j] > m)
            m = x[j];
    float xt = x[target], s = 0.0f;
    for (int j = 0; j < V; j++) {
        x[j] = expf(x[j] - m);
        s += x[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < V; j++)
        x[j] *= inv;
    return logf(s) + m - xt;
}

#if FTQ_HAVE_X86
FTQ_AVX2 static float xent_row_avx2(float *x, int target, int V)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= V; j += 8)
        mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + j));
    int tail = j;
    __m256i tm = ftq_tail_mask256(V - tail);
    if (tail < V)
        mv = _mm256_max_ps(mv, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x + tail, tm),
                                                _mm256_castsi256_ps(tm)));
    float m = ftq_hmax256(mv), xt = x[target];
    __m256 mb = _mm256_set1_ps(m);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (j = 0; j + 16 <= tail; j += 16) {
        __m256 e0 = ftq_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), mb));
        __m256 e1 = ftq_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mb));
        _mm256_storeu_ps(x + j, e0);
        _mm256_storeu_ps(x + j + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; j < tail; j += 8) {
        __m256 e = ftq_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), mb));
        _mm256_storeu_ps(x + j, e);
        s0 = _mm256_add_ps(s0, e);
    }
    if (tail < V) {
        __m256 e = _mm256_and_ps(ftq_exp256(_mm256_sub_ps(_mm256_maskload_ps(x + tail, tm), mb)),
                                 _mm256_castsi256_ps(tm));
        _mm256_maskstore_ps(x + tail, tm, e);
        s1 = _mm256_add_ps(s1, e);
    }
    float s = ftq_hsum256(_mm256_add_ps(s0, s1));
    __m256 inv = _mm256_set1_ps(1.0f / s);
    for (j = 0; j < tail; j += 8)
        _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), inv));
    if (tail < V)
        _mm256_maskstore_ps(x + tail, tm, _mm256_mul_ps(_mm256_maskload_ps(x + tail, tm), inv));
    return logf(s) + m - xt;
}
#endif

int ftq_xent_forward_ref(float *x, float *losses, const int32_t *targets, int N, int V)
{
    int n = 0;
    for (int i = 0; i < N; i++) {
        losses[i] = 0.0f;
        if (targets[i] < 0)
            continue;
        losses[i] = xent_row_ref(x + (size_t)i * V, targets[i], V);
        n++;
    }
    return n;
}

int ftq_xent_forward(float *x, float *losses, const int32_t *targets, int N, int V)
{
    int avx2 = ftq_use_avx2();
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((long)N * V > 65536)
#endif
    for (int i = 0; i < N; i++) {
        losses[i] = 0.0f;
        if (targets[i] < 0)
            continue;
#if FTQ_HAVE_X86
        if (avx2) {
            losses[i] = xent_row_avx2(x + (size_t)i * V, targets[i], V);
            continue;
        }
#endif
        losses[i] = xent_row_ref(x + (size_t)i * V, targets[i], V);
    }
    int n = 0;
    for (int i = 0; i < N; i++)
        n += targets[i] >= 0;
    return n;
}

void ftq_xent_backward_ref(float *x, const int32_t *targets, float dloss, int N, int V)
{
    for (int i = 0; i < N; i++) {
        float *row = x + (size_t)i * V;
        if (targets[i] < 0) {
            memset(row, 0, sizeof(float) * (size_t)V);
            continue;
        }
        for (int j = 0; j < V; j++)
            row[j] = (row[j] - (j == targets[i] ? 1.0f : 0.0f)) * dloss;
    }
}

void ftq_xent_backward(float *x, const int32_t *targets, float dloss, int N, int V)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((long)N * V > 65536)
#endif
    for (int i = 0; i < N; i++) {
        float *row = x + (size_t)i * V;
        if (targets[i] < 0) {
            memset(row, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float pt = row[targets[i]];
        for (int j = 0; j < V; j++) /* (p - 0) * dloss; vectorized by the compiler */
            row[j] *= dloss;
        row[targets[i]] = (pt - 1.0f) * dloss;
    }
}
