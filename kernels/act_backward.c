/* act_backward.c - derivatives of the elementwise activations: dinp = dout * f'(inp).
 * The AVX2 paths write tanh(u) = 2 sigmoid(2u) - 1 and use the ~1 ulp exp of simd.h, so
 * they agree with the libm references to a few ulp of the result's scale. Work is split
 * into fixed chunks under OpenMP (disjoint writes); dinp may alias dout. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

#define CHUNK 4096
#define PAR(n) ((n) > 2 * CHUNK)

static const float GELU_K = 0.7978845608028654f; /* sqrt(2/pi) */
static const float GELU_C = 0.044715f;

void ftq_gelu_tanh_backward_ref(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float th = tanhf(GELU_K * (x + GELU_C * x * x * x));
        float d = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        dinp[i] = dout[i] * d;
    }
}

void ftq_silu_mul_backward_ref(float *dgate, float *dup, const float *gate, const float *up,
                               const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = 1.0f / (1.0f + expf(-g));
        dup[i] = d * g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}

#if FTQ_HAVE_X86
FTQ_AVX2 static inline __m256 gelu_tanh_grad8(__m256 x)
{
    /* s = sigmoid(2u): gelu' = s + 2 x s (1 - s) k (1 + 3 c x^2) */
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(GELU_K),
                             _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(GELU_C), x2), x, x));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = ftq_exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 du = _mm256_mul_ps(_mm256_set1_ps(GELU_K),
                              _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_C), x2, one));
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(x, x), _mm256_mul_ps(s, _mm256_sub_ps(one, s))), du);
    return _mm256_add_ps(s, t);
}

FTQ_AVX2 static void gelu_tanh_backward_avx2(float *dinp, const float *inp, const float *dout, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dinp + i, _mm256_mul_ps(_mm256_loadu_ps(dout + i), gelu_tanh_grad8(_mm256_loadu_ps(inp + i))));
    if (i < n) {
        __m256i m = ftq_tail_mask256((int)(n - i));
        __m256 g = gelu_tanh_grad8(_mm256_maskload_ps(inp + i, m));
        _mm256_maskstore_ps(dinp + i, m, _mm256_mul_ps(_mm256_maskload_ps(dout + i, m), g));
    }
}

FTQ_AVX2 static inline void silu_mul_grad8(float *dgate, float *dup, const float *gate,
                                           const float *up, const float *dout, __m256i m, int masked)
{
    __m256 g = masked ? _mm256_maskload_ps(gate, m) : _mm256_loadu_ps(gate);
    __m256 u = masked ? _mm256_maskload_ps(up, m) : _mm256_loadu_ps(up);
    __m256 d = masked ? _mm256_maskload_ps(dout, m) : _mm256_loadu_ps(dout);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, ftq_exp256(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    __m256 vu = _mm256_mul_ps(_mm256_mul_ps(d, g), s);
    __m256 vg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, u), s),
                              _mm256_fmadd_ps(g, _mm256_sub_ps(one, s), one));
    if (masked) {
        _mm256_maskstore_ps(dup, m, vu);
        _mm256_maskstore_ps(dgate, m, vg);
    } else {
        _mm256_storeu_ps(dup, vu);
        _mm256_storeu_ps(dgate, vg);
    }
}

FTQ_AVX2 static void silu_mul_backward_avx2(float *dgate, float *dup, const float *gate,
                                            const float *up, const float *dout, size_t n)
{
    size_t i = 0;
    __m256i all = _mm256_set1_epi32(-1);
    for (; i + 8 <= n; i += 8)
        silu_mul_grad8(dgate + i, dup + i, gate + i, up + i, dout + i, all, 0);
    if (i < n)
        silu_mul_grad8(dgate + i, dup + i, gate + i, up + i, dout + i, ftq_tail_mask256((int)(n - i)), 1);
}
#endif

void ftq_gelu_tanh_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    int avx2 = ftq_use_avx2();
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
#if FTQ_HAVE_X86
        if (avx2) {
            gelu_tanh_backward_avx2(dinp + i0, inp + i0, dout + i0, len);
            continue;
        }
#endif
        ftq_gelu_tanh_backward_ref(dinp + i0, inp + i0, dout + i0, len);
    }
}

void ftq_gelu_erf_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

void ftq_relu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t i = 0; i < n; i++)
        dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
}

void ftq_silu_mul_backward(float *dgate, float *dup, const float *gate, const float *up,
                           const float *dout, size_t n)
{
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    int avx2 = ftq_use_avx2();
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
#if FTQ_HAVE_X86
        if (avx2) {
            silu_mul_backward_avx2(dgate + i0, dup + i0, gate + i0, up + i0, dout + i0, len);
            continue;
        }
#endif
        ftq_silu_mul_backward_ref(dgate + i0, dup + i0, gate + i0, up + i0, dout + i0, len);
    }
}
