/* attention.c - softmax and causal grouped-query attention over a KV cache laid out
 * [pos][n_kv * hd] per layer. Long chunks: per head and per block of query rows, one sgemm
 * for Q.K^T against only the keys that block can see, the masked softmax in place under
 * OpenMP, one sgemm for P.V straight into the strided output. Short chunks (decoding): one
 * OpenMP task per head with dot products. sgemm is only called outside parallel regions. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

void ftq_softmax_forward_ref(float *x, int n)
{
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m)
            m = x[i];
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

#if FTQ_HAVE_X86
FTQ_AVX2 static void softmax_avx2(float *x, int n)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    int tail = i;
    __m256i tm = ftq_tail_mask256(n - tail);
    if (tail < n)
        mv = _mm256_max_ps(mv, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                                _mm256_maskload_ps(x + tail, tm),
                                                _mm256_castsi256_ps(tm)));
    __m256 m = _mm256_set1_ps(ftq_hmax256(mv));
    __m256 s = _mm256_setzero_ps();
    for (i = 0; i < tail; i += 8) {
        __m256 e = ftq_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    if (tail < n) {
        __m256 e = ftq_exp256(_mm256_sub_ps(_mm256_maskload_ps(x + tail, tm), m));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(tm));
        _mm256_maskstore_ps(x + tail, tm, e);
        s = _mm256_add_ps(s, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / ftq_hsum256(s));
    for (i = 0; i < tail; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (tail < n)
        _mm256_maskstore_ps(x + tail, tm, _mm256_mul_ps(_mm256_maskload_ps(x + tail, tm), inv));
}
#endif

void ftq_softmax_forward(float *x, int n)
{
#if FTQ_HAVE_X86
    if (ftq_use_avx2()) {
        softmax_avx2(x, n);
        return;
    }
#endif
    ftq_softmax_forward_ref(x, n);
}

/* First key visible from position p. */
static inline int first_key(int p, int window)
{
    return (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
}

size_t ftq_attention_scratch_floats(int T, int n_keys, int n_heads)
{
    (void)T;
    int rows = FTQ_ATTN_ROW_BLOCK > n_heads ? FTQ_ATTN_ROW_BLOCK : n_heads;
    return (size_t)rows * (size_t)n_keys;
}

void ftq_attention_forward_ref(float *out, float *scratch, const float *q, const float *k,
                               const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                               int window)
{
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < T; t++) {
        int p = pos0 + t, lo = first_key(p, window);
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + (size_t)t * qs + (size_t)h * hd;
            int kh = h / group;
            for (int j = lo; j <= p; j++) {
                const float *kj = k + (size_t)j * ks + (size_t)kh * hd;
                float s = 0.0f;
                for (int i = 0; i < hd; i++)
                    s += qh[i] * kj[i];
                scratch[j - lo] = s * scale;
            }
            ftq_softmax_forward_ref(scratch, p - lo + 1);
            float *oh = out + (size_t)t * qs + (size_t)h * hd;
            for (int i = 0; i < hd; i++) {
                float s = 0.0f;
                for (int j = lo; j <= p; j++)
                    s += scratch[j - lo] * v[(size_t)j * ks + (size_t)kh * hd + i];
                oh[i] = s;
            }
        }
    }
}

#if FTQ_HAVE_X86
/* One head over all T query rows, head_dim a multiple of 8: FMA dot products for the
 * scores, FMA accumulation of the value rows. sc holds the row's scores. */
FTQ_AVX2 static void head_rows_avx2(float *out, float *sc, const float *q, const float *k,
                                    const float *v, int T, int pos0, int h, int kh, int qs, int ks,
                                    int hd, int window, float scale)
{
    for (int t = 0; t < T; t++) {
        int p = pos0 + t, lo = first_key(p, window), n = p - lo + 1;
        const float *qh = q + (size_t)t * qs + (size_t)h * hd;
        const float *kb = k + (size_t)lo * ks + (size_t)kh * hd;
        for (int j = 0; j < n; j++) {
            const float *kj = kb + (size_t)j * ks;
            __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(qh), _mm256_loadu_ps(kj));
            for (int i = 8; i < hd; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(kj + i), acc);
            sc[j] = ftq_hsum256(acc) * scale;
        }
        ftq_softmax_forward(sc, n);
        float *oh = out + (size_t)t * qs + (size_t)h * hd;
        const float *vb = v + (size_t)lo * ks + (size_t)kh * hd;
        for (int i = 0; i < hd; i += 8) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int j = 0;
            for (; j + 2 <= n; j += 2) {
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(sc[j]), _mm256_loadu_ps(vb + (size_t)j * ks + i), a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(sc[j + 1]), _mm256_loadu_ps(vb + (size_t)(j + 1) * ks + i), a1);
            }
            if (j < n)
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(sc[j]), _mm256_loadu_ps(vb + (size_t)j * ks + i), a0);
            _mm256_storeu_ps(oh + i, _mm256_add_ps(a0, a1));
        }
    }
}
#endif

/* Decoding / short chunks: heads in parallel, scratch row h holds head h's scores. */
static void attention_dots(float *out, float *scratch, const float *q, const float *k,
                           const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                           int window)
{
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    int n_keys = pos0 + T;
    float scale = 1.0f / sqrtf((float)hd);
    long work = (long)T * n_heads * n_keys * hd;
    int avx2 = ftq_use_avx2();
    (void)work;
    (void)avx2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 32768)
#endif
    for (int h = 0; h < n_heads; h++) {
        float *sc = scratch + (size_t)h * n_keys;
        int kh = h / group;
#if FTQ_HAVE_X86
        if (avx2 && hd % 8 == 0) {
            head_rows_avx2(out, sc, q, k, v, T, pos0, h, kh, qs, ks, hd, window, scale);
            continue;
        }
#endif
        for (int t = 0; t < T; t++) {
            int p = pos0 + t, lo = first_key(p, window), n = p - lo + 1;
            const float *qh = q + (size_t)t * qs + (size_t)h * hd;
            for (int j = lo; j <= p; j++)
                sc[j - lo] = ftq_dot(qh, k + (size_t)j * ks + (size_t)kh * hd, hd) * scale;
            ftq_softmax_forward(sc, n);
            float *oh = out + (size_t)t * qs + (size_t)h * hd;
            memset(oh, 0, sizeof(float) * (size_t)hd);
            for (int j = 0; j < n; j++) {
                const float *vj = v + (size_t)(lo + j) * ks + (size_t)kh * hd;
                float pj = sc[j];
                for (int i = 0; i < hd; i++)
                    oh[i] += pj * vj[i];
            }
        }
    }
}

/* Long chunks: for each head and block of RB query rows [r0, r1) at positions
 * pos0+r0 .. pos0+r1-1, the visible keys are [first_key(pos0+r0), pos0+r1): one sgemm for
 * the scores, a masked softmax per row, one sgemm for the weighted values. */
static void attention_sgemm(float *out, float *scratch, const float *q, const float *k,
                            const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                            int window)
{
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_heads; h++) {
        int kh = h / group;
        for (int r0 = 0; r0 < T; r0 += FTQ_ATTN_ROW_BLOCK) {
            int r1 = r0 + FTQ_ATTN_ROW_BLOCK < T ? r0 + FTQ_ATTN_ROW_BLOCK : T;
            int nr = r1 - r0;
            int kbeg = first_key(pos0 + r0, window), kend = pos0 + r1, nk = kend - kbeg;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hd, scale,
                        q + (size_t)r0 * qs + (size_t)h * hd, qs,
                        k + (size_t)kbeg * ks + (size_t)kh * hd, ks, 0.0f, scratch, nk);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((long)nr * nk > 8192)
#endif
            for (int r = 0; r < nr; r++) {
                int p = pos0 + r0 + r;
                int lo = first_key(p, window) - kbeg, hi = p - kbeg; /* inclusive range */
                float *row = scratch + (size_t)r * nk;
                if (lo > 0)
                    memset(row, 0, sizeof(float) * (size_t)lo);
                ftq_softmax_forward(row + lo, hi - lo + 1);
                if (hi + 1 < nk)
                    memset(row + hi + 1, 0, sizeof(float) * (size_t)(nk - hi - 1));
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, nk, 1.0f, scratch, nk,
                        v + (size_t)kbeg * ks + (size_t)kh * hd, ks, 0.0f,
                        out + (size_t)r0 * qs + (size_t)h * hd, qs);
        }
    }
}

void ftq_attention_forward_omp(float *out, float *scratch, const float *q, const float *k,
                               const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                               int window)
{
    attention_dots(out, scratch, q, k, v, T, pos0, n_heads, n_kv, hd, window);
}

void ftq_attention_forward(float *out, float *scratch, const float *q, const float *k,
                           const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                           int window)
{
    if (T >= FTQ_BATCH_MIN_T)
        attention_sgemm(out, scratch, q, k, v, T, pos0, n_heads, n_kv, hd, window);
    else
        attention_dots(out, scratch, q, k, v, T, pos0, n_heads, n_kv, hd, window);
}
