/* linear.c - y = x W^T + b against a weight tensor [out, in]: the single entry point that
 * every matmul with a weight goes through. F32: batched products (T >= FTQ_BATCH_MIN_T)
 * use one cblas_sgemm over all rows; short chunks and tiny products use an AVX2 (or
 * scalar) dot product per output under OpenMP, blocked so each weight row is read once per
 * chunk. sgemm is never called inside a parallel region. QMAT (int8 / int4): the kernels of
 * kernels/qlinear.h, OpenMP only, never OpenBLAS. */
#include <math.h>
#include <string.h>
#include <cblas.h>

#include "ftq.h"
#include "kernels/kernels.h"
#include "kernels/bmat.h"
#include "kernels/qlinear.h"
#include "kernels/simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

float ftq_dot_ref(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

#if FTQ_HAVE_X86
FTQ_AVX2 static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
        __m256i m = ftq_tail_mask256(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return ftq_hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* Four outputs at once: one pass over x, four weight rows (halves the loads of x). */
FTQ_AVX2 static void dot4_avx2(float *out, const float *x, const float *w, size_t ldw, int n)
{
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + i), s0);
        s1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + i), s1);
        s2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + i), s2);
        s3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + i), s3);
    }
    if (i < n) {
        __m256i m = ftq_tail_mask256(n - i);
        __m256 xv = _mm256_maskload_ps(x + i, m);
        s0 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w0 + i, m), s0);
        s1 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w1 + i, m), s1);
        s2 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w2 + i, m), s2);
        s3 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w3 + i, m), s3);
    }
    out[0] = ftq_hsum256(s0);
    out[1] = ftq_hsum256(s1);
    out[2] = ftq_hsum256(s2);
    out[3] = ftq_hsum256(s3);
}
#endif

float ftq_dot(const float *a, const float *b, int n)
{
#if FTQ_HAVE_X86
    if (ftq_use_avx2())
        return dot_avx2(a, b, n);
#endif
    return ftq_dot_ref(a, b, n);
}

void ftq_linear_f32_ref(float *out, const float *in, const float *w, const float *bias, int T,
                        int in_dim, int out_dim)
{
    for (int t = 0; t < T; t++) {
        for (int o = 0; o < out_dim; o++) {
            float s = bias ? bias[o] : 0.0f;
            for (int i = 0; i < in_dim; i++)
                s += in[(size_t)t * in_dim + i] * w[(size_t)o * in_dim + i];
            out[(size_t)t * out_dim + o] = s;
        }
    }
}

/* Small products: blocks of 4 weight rows are the parallel unit; each block is applied to
 * every input row while it is hot in cache. Writes of different blocks are disjoint. */
static void linear_dots(float *out, const float *in, const float *w, const float *bias, int T,
                        int in_dim, int out_dim)
{
    int avx2 = ftq_use_avx2();
    int nblk = (out_dim + 3) / 4;
    long work = (long)T * in_dim * out_dim;
    (void)work;
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 32768)
#endif
    for (int b = 0; b < nblk; b++) {
        int o0 = b * 4;
        const float *wb = w + (size_t)o0 * in_dim;
        for (int t = 0; t < T; t++) {
            const float *x = in + (size_t)t * in_dim;
            float *y = out + (size_t)t * out_dim + o0;
#if FTQ_HAVE_X86
            if (avx2 && o0 + 4 <= out_dim) {
                dot4_avx2(y, x, wb, (size_t)in_dim, in_dim);
            } else
#endif
            {
                for (int o = o0; o < out_dim && o < o0 + 4; o++)
                    y[o - o0] = ftq_dot(x, w + (size_t)o * in_dim, in_dim);
            }
            if (bias)
                for (int o = o0; o < out_dim && o < o0 + 4; o++)
                    y[o - o0] += bias[o];
        }
    }
}

void ftq_linear_f32(float *out, const float *in, const float *w, const float *bias, int T,
                    int in_dim, int out_dim)
{
    if (T <= 0 || out_dim <= 0)
        return;
    if (T < FTQ_BATCH_MIN_T || (long)T * in_dim * out_dim < FTQ_SGEMM_MIN_WORK) {
        linear_dots(out, in, w, bias, T, in_dim, out_dim);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out_dim; o++)
                out[(size_t)t * out_dim + o] = bias[o];
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out_dim, in_dim, 1.0f, in, in_dim, w,
                in_dim, beta, out, out_dim);
}

int ftq_linear_forward_ex(float *out, const float *in, const ftq_tensor *w, const float *bias,
                          int T, int in_dim, int out_dim, void *scratch)
{
    /* Checked, not asserted: the shapes come from files (the loader checks them too, but an
     * assert vanishes under NDEBUG and a mismatch would read past the weights). */
    const char *name = w->name ? w->name : "?";
    if (w->ndim != 2 || w->shape[0] != out_dim || w->shape[1] != in_dim) {
        char sb[96];
        return ftq_set_error(FTQ_EINVAL, "linear layer '%s': weight shape %s, expected [%d, %d]", name,
                             ftq_shape_str(w->shape, w->ndim, sb, sizeof sb), out_dim, in_dim);
    }
    if (!w->data)
        return ftq_set_error(FTQ_EINVAL, "linear layer '%s': weight has no data", name);
    switch (w->dtype) {
    case FTQ_DTYPE_F32:
        if (w->nbytes < sizeof(float) * (size_t)out_dim * (size_t)in_dim)
            return ftq_set_error(FTQ_EINVAL, "linear layer '%s': %zu bytes of weights, expected %zu", name,
                                 w->nbytes, sizeof(float) * (size_t)out_dim * (size_t)in_dim);
        ftq_linear_f32(out, in, (const float *)w->data, bias, T, in_dim, out_dim);
        return FTQ_OK;
    case FTQ_DTYPE_QMAT: {
        const ftq_qmat *q = (const ftq_qmat *)w->data;
        if (q->rows != out_dim || q->cols != in_dim)
            return ftq_set_error(FTQ_EINVAL, "linear layer '%s': quantized weight [%d, %d], expected [%d, %d]",
                                 name, q->rows, q->cols, out_dim, in_dim);
        return ftq_qmat_mul(out, in, q, bias, T, scratch);
    }
    case FTQ_DTYPE_BMAT: {
        const ftq_bmat *bm = (const ftq_bmat *)w->data;
        if (bm->rows != out_dim || bm->cols != in_dim)
            return ftq_set_error(FTQ_EINVAL, "linear layer '%s': bf16 weight [%d, %d], expected [%d, %d]", name,
                                 bm->rows, bm->cols, out_dim, in_dim);
        return ftq_bmat_mul(out, in, bm, bias, T, scratch);
    }
    default: { /* the loader converts or rejects every other dtype */
        const ftq_dtype_traits *tr = ftq_dtype_info(w->dtype);
        return ftq_set_error(FTQ_EUNSUPPORTED, "linear layer '%s': unsupported weight dtype %s", name,
                             tr ? tr->name : "?");
    }
    }
}

void ftq_linear_forward(float *out, const float *in, const ftq_tensor *w, const float *bias,
                        int T, int in_dim, int out_dim)
{
    if (ftq_linear_forward_ex(out, in, w, bias, T, in_dim, out_dim, NULL) != FTQ_OK)
        for (size_t i = 0; i < (size_t)T * (size_t)out_dim; i++) /* no memory for the activations */
            out[i] = NAN;
}

size_t ftq_linear_scratch_bytes(const ftq_tensor *w, int T)
{
    if (!w || !w->data)
        return 0;
    if (w->dtype == FTQ_DTYPE_QMAT)
        return ftq_qmat_scratch_bytes((const ftq_qmat *)w->data, T);
    if (w->dtype == FTQ_DTYPE_BMAT)
        return ftq_bmat_scratch_bytes((const ftq_bmat *)w->data, T);
    return 0;
}

int ftq_linear_on_omp(const ftq_tensor *w) { return w->dtype == FTQ_DTYPE_QMAT || w->dtype == FTQ_DTYPE_BMAT; }

void ftq_weight_row(const ftq_tensor *w, int r, float *out)
{
    if (w->dtype == FTQ_DTYPE_QMAT)
        ftq_qmat_dequantize_row((const ftq_qmat *)w->data, r, out);
    else if (w->dtype == FTQ_DTYPE_BMAT)
        ftq_bmat_row((const ftq_bmat *)w->data, r, out);
    else
        memcpy(out, (const float *)w->data + (size_t)r * (size_t)w->shape[1], sizeof(float) * (size_t)w->shape[1]);
}

/* A stage over `rows` >= FTQ_BATCH_MIN_T rows spends its time in sgemm on OpenBLAS's
 * threads; OpenMP regions between those calls would make the two pools spin against each
 * other, so such a stage runs its elementwise kernels on this thread alone. nthreads-var
 * is per thread, so this affects no other thread; ftq_sgemm_stage_end restores it. */
int ftq_sgemm_stage_begin(int rows)
{
#ifdef _OPENMP
    if (rows >= FTQ_BATCH_MIN_T) {
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        return saved;
    }
#endif
    (void)rows;
    return 0;
}

void ftq_sgemm_stage_end(int saved)
{
#ifdef _OPENMP
    if (saved > 0)
        omp_set_num_threads(saved);
#endif
    (void)saved;
}
