/* activation.c - elementwise kernels: GELU (tanh and erf), SiLU-gated product, ReLU,
 * residual add. The AVX2 paths evaluate GELU-tanh as x * sigmoid(2u) (identical to
 * 0.5 x (1 + tanh u)) with a ~1 ulp exp, so they agree with the libm references to a few
 * ulp. Work is split into fixed chunks under OpenMP; out may alias the inputs. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

#define CHUNK 4096
#define PAR(n) ((n) > 2 * CHUNK)

static const float GELU_K = 0.7978845608028654f; /* sqrt(2/pi) */
static const float GELU_C = 0.044715f;

void ftq_gelu_tanh_forward_ref(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
    }
}

void ftq_silu_mul_forward_ref(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

#if FTQ_HAVE_X86
FTQ_AVX2 static inline __m256 gelu_tanh8(__m256 x)
{
    /* x / (1 + exp(-2u)), u = k (x + c x^3) */
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(GELU_K), _mm256_fmadd_ps(_mm256_set1_ps(GELU_C), x3, x));
    __m256 e = ftq_exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

FTQ_AVX2 static void gelu_tanh_avx2(float *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, gelu_tanh8(_mm256_loadu_ps(in + i)));
    if (i < n) {
        __m256i m = ftq_tail_mask256((int)(n - i));
        _mm256_maskstore_ps(out + i, m, gelu_tanh8(_mm256_maskload_ps(in + i, m)));
    }
}

FTQ_AVX2 static inline __m256 silu_mul8(__m256 g, __m256 u)
{
    __m256 e = ftq_exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

FTQ_AVX2 static void silu_mul_avx2(float *out, const float *gate, const float *up, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        __m256i m = ftq_tail_mask256((int)(n - i));
        _mm256_maskstore_ps(out + i, m,
                            silu_mul8(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
    }
}
#endif

void ftq_gelu_tanh_forward(float *out, const float *in, size_t n)
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
            gelu_tanh_avx2(out + i0, in + i0, len);
            continue;
        }
#endif
        ftq_gelu_tanh_forward_ref(out + i0, in + i0, len);
    }
}

void ftq_gelu_erf_forward(float *out, const float *in, size_t n)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
}

void ftq_silu_mul_forward(float *out, const float *gate, const float *up, size_t n)
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
            silu_mul_avx2(out + i0, gate + i0, up + i0, len);
            continue;
        }
#endif
        ftq_silu_mul_forward_ref(out + i0, gate + i0, up + i0, len);
    }
}

void ftq_relu_forward(float *out, const float *in, size_t n)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ftq_add_inplace(float *x, const float *y, size_t n)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (PAR(n))
#endif
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}
