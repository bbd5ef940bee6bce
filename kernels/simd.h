/* simd.h - AVX2/FMA building blocks shared by the kernels (internal). Every function here
 * carries __attribute__((target("avx2,fma"))) so the default build needs no -mavx2; callers
 * must only reach them after checking ftq_cpu_features(). */
#ifndef FTQ_KERNELS_SIMD_H
#define FTQ_KERNELS_SIMD_H

#include "ftq_core.h"

#if defined(__x86_64__) || defined(__i386__)
#define FTQ_HAVE_X86 1
#include <immintrin.h>

#define FTQ_AVX2 __attribute__((target("avx2,fma")))

static inline int ftq_use_avx2(void)
{
    unsigned f = ftq_cpu_features();
    return (f & FTQ_CPU_AVX2) && (f & FTQ_CPU_FMA);
}

FTQ_AVX2 static inline float ftq_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

FTQ_AVX2 static inline float ftq_hmax256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x), Cephes expf: range reduction by ln 2 in two parts, degree-6 polynomial, exponent
 * by integer add. Error ~1 ulp on [-87.3, 88.3]; below that the result is 2^-126 (not 0),
 * at and above 88.376 it is +inf. Callers (softmax with x <= 0, sigmoids) are fine with
 * both. NaN inputs are not preserved (min/max drop them). */
FTQ_AVX2 static inline __m256 ftq_exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365447505531f)),
                      _mm256_set1_ps(88.3762626647949f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Mask selecting the first n (0..8) lanes, for tails. */
FTQ_AVX2 static inline __m256i ftq_tail_mask256(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#else
#define FTQ_HAVE_X86 0
static inline int ftq_use_avx2(void) { return 0; }
#endif

#endif
