/* optim.c - AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path):
 *   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = v*b2 + (1-b2)*g*g;
 *   p += (-lr/bc1 * m) / (sqrt(v)/sqrt(bc2) + eps),  bc_i = 1 - b_i^step (in double).
 * Elementwise, so the AVX2 path (same operations in the same order, no fma) matches the
 * scalar reference bit for bit and the OpenMP split cannot change results. */
#include <math.h>

#include "finetune/tmodel.h"
#include "kernels/simd.h"

#define CHUNK 8192

typedef struct {
    float decay_mul; /* 1 - lr*wd, or 1 */
    float w1;        /* 1 - beta1 (lerp weight) */
    float b2, w2;    /* beta2, 1 - beta2 */
    float neg_step;  /* -lr / bc1 */
    float bc2_sqrt, eps;
    int decay;
} adam_consts;

static adam_consts consts(float lr, const ftq_adamw_params *ap, int64_t step, int decay)
{
    adam_consts k;
    double s = (double)(step < 1 ? 1 : step);
    double bc1 = 1.0 - pow((double)ap->beta1, s), bc2 = 1.0 - pow((double)ap->beta2, s);
    k.decay = decay && ap->weight_decay != 0.0f;
    k.decay_mul = (float)(1.0 - (double)lr * (double)ap->weight_decay);
    k.w1 = (float)(1.0 - (double)ap->beta1);
    k.b2 = ap->beta2;
    k.w2 = (float)(1.0 - (double)ap->beta2);
    k.neg_step = (float)(-(double)lr / bc1);
    k.bc2_sqrt = (float)sqrt(bc2);
    k.eps = ap->eps;
    return k;
}

static void adam_scalar(float *p, const float *g, float *m, float *v, size_t n, const adam_consts *k)
{
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i], mi = m[i], vi = v[i];
        if (k->decay)
            pi = pi * k->decay_mul;
        /* torch lerp with weight < 0.5: self + weight * (end - self) */
        mi = mi + k->w1 * (gi - mi);
        vi = vi * k->b2 + k->w2 * gi * gi;
        float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
        pi = pi + k->neg_step * mi / denom;
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

#if FTQ_HAVE_X86
FTQ_AVX2 static void adam_avx2(float *p, const float *g, float *m, float *v, size_t n, const adam_consts *k)
{
    const __m256 dm = _mm256_set1_ps(k->decay_mul), w1 = _mm256_set1_ps(k->w1);
    const __m256 b2 = _mm256_set1_ps(k->b2), w2 = _mm256_set1_ps(k->w2);
    const __m256 ns = _mm256_set1_ps(k->neg_step), bc = _mm256_set1_ps(k->bc2_sqrt);
    const __m256 eps = _mm256_set1_ps(k->eps);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 pi = _mm256_loadu_ps(p + i), gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
        if (k->decay)
            pi = _mm256_mul_ps(pi, dm);
        mi = _mm256_add_ps(mi, _mm256_mul_ps(w1, _mm256_sub_ps(gi, mi)));
        vi = _mm256_add_ps(_mm256_mul_ps(vi, b2), _mm256_mul_ps(_mm256_mul_ps(w2, gi), gi));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc), eps);
        pi = _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(ns, mi), denom));
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
    }
    adam_scalar(p + i, g + i, m + i, v + i, n - i, k);
}
#endif

void ftq_adamw_update_ref(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          const ftq_adamw_params *ap, int64_t step, int decay)
{
    adam_consts k = consts(lr, ap, step, decay);
    adam_scalar(p, g, m, v, n, &k);
}

void ftq_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                      const ftq_adamw_params *ap, int64_t step, int decay)
{
    adam_consts k = consts(lr, ap, step, decay);
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    int avx2 = ftq_use_avx2();
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nchunks > 4)
#endif
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
#if FTQ_HAVE_X86
        if (avx2) {
            adam_avx2(p + i0, g + i0, m + i0, v + i0, len, &k);
            continue;
        }
#endif
        adam_scalar(p + i0, g + i0, m + i0, v + i0, len, &k);
    }
}
