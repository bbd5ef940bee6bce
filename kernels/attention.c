/* attention.c - softmax and causal grouped-query attention over a KV cache laid out
 * [pos][n_kv * hd] per layer. Long chunks: per head and per block of query rows, one sgemm
 * for Q.K^T against only the keys that block can see, the masked softmax in place under
 * OpenMP, one sgemm for P.V straight into the strided output. Short chunks (decoding): one
 * OpenMP task per head with dot products. sgemm is only called outside parallel regions. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

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

#if FTQ_HAVE_X86
#define FTQ_AVX512_ATT __attribute__((target("avx512f,avx2,fma")))
#define QB 16 /* query rows per block: one zmm lane each */

/* Rows [t0, t0 + nr) (nr <= 16) of head h, on AVX-512 with the rows in the lanes: the scores
 * are s[j][lane] (key-major, 16 floats per visible key, -inf where a row cannot see the
 * key), eight keys at a time as broadcast-key x transposed-query FMAs; the softmax runs on
 * all 16 rows at once; the weighted values accumulate 4 rows x 64 dims per pass. hd is a
 * multiple of 64, at most 256. */
FTQ_AVX512_ATT static void rows16_avx512(float *out, float *s, const float *q, const float *k, const float *v,
                                         int t0, int nr, int pos0, int h, int kh, int qs, int ks, int hd,
                                         int window, float scale)
{
    float qt[256][QB] __attribute__((aligned(64)));
    for (int i = 0; i < hd; i++)
        for (int r = 0; r < QB; r++)
            qt[i][r] = r < nr ? q[(size_t)(t0 + r) * qs + (size_t)h * hd + i] * scale : 0.0f;
    const int kbeg = first_key(pos0 + t0, window), nk = pos0 + t0 + nr - kbeg;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i pos = _mm512_add_epi32(_mm512_set1_epi32(pos0 + t0), lane); /* each lane's position */
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    for (int j0 = 0; j0 < nk; j0 += 8) {
        int nj = nk - j0 < 8 ? nk - j0 : 8;
        __m512 acc[8];
        const float *kj[8];
        for (int u = 0; u < 8; u++) {
            acc[u] = _mm512_setzero_ps();
            kj[u] = k + (size_t)(kbeg + j0 + (u < nj ? u : 0)) * ks + (size_t)kh * hd;
        }
        for (int i = 0; i < hd; i++) {
            __m512 qi = _mm512_load_ps(qt[i]);
            for (int u = 0; u < 8; u++)
                acc[u] = _mm512_fmadd_ps(_mm512_set1_ps(kj[u][i]), qi, acc[u]);
        }
        for (int u = 0; u < nj; u++) {
            __m512i key = _mm512_set1_epi32(kbeg + j0 + u);
            __mmask16 see = _mm512_cmple_epi32_mask(key, pos) & live;
            if (window > 0)
                see &= _mm512_cmplt_epi32_mask(_mm512_sub_epi32(pos, key), _mm512_set1_epi32(window));
            __m512 sc = _mm512_mask_blend_ps(see, ninf, acc[u]);
            _mm512_storeu_ps(s + (size_t)(j0 + u) * QB, sc);
            mx = _mm512_max_ps(mx, sc);
        }
    }
    /* softmax over the keys of each lane (dead lanes: max -inf; they are never written) */
    mx = _mm512_mask_blend_ps(live, _mm512_setzero_ps(), mx);
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < nk; j++) {
        __m512 x = _mm512_loadu_ps(s + (size_t)j * QB);
        __mmask16 fin = _mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_OQ);
        __m512 d = _mm512_sub_ps(x, mx);
        __m256 lo = ftq_exp256(_mm512_castps512_ps256(d));
        __m256 hi = ftq_exp256(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
        __m512 e = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
        e = _mm512_maskz_mov_ps(fin, e);
        sum = _mm512_add_ps(sum, e);
        _mm512_storeu_ps(s + (size_t)j * QB, e);
    }
    float inv[QB] __attribute__((aligned(64)));
    _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_mask_blend_ps(live, _mm512_set1_ps(1.0f), sum)));
    const float *vb = v + (size_t)kbeg * ks + (size_t)kh * hd;
    for (int c = 0; c < hd; c += 64)
        for (int r0 = 0; r0 < nr; r0 += 4) {
            __m512 o[4][4];
            for (int r = 0; r < 4; r++)
                for (int d = 0; d < 4; d++)
                    o[r][d] = _mm512_setzero_ps();
            for (int j = 0; j < nk; j++) {
                const float *vj = vb + (size_t)j * ks + c;
                __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16), v2 = _mm512_loadu_ps(vj + 32),
                       v3 = _mm512_loadu_ps(vj + 48);
                const float *pj = s + (size_t)j * QB + r0;
                for (int r = 0; r < 4; r++) {
                    __m512 p = _mm512_set1_ps(pj[r]);
                    o[r][0] = _mm512_fmadd_ps(p, v0, o[r][0]);
                    o[r][1] = _mm512_fmadd_ps(p, v1, o[r][1]);
                    o[r][2] = _mm512_fmadd_ps(p, v2, o[r][2]);
                    o[r][3] = _mm512_fmadd_ps(p, v3, o[r][3]);
                }
            }
            for (int r = 0; r < 4 && r0 + r < nr; r++) {
                float *oh = out + (size_t)(t0 + r0 + r) * qs + (size_t)h * hd + c;
                __m512 iv = _mm512_set1_ps(inv[r0 + r]);
                for (int d = 0; d < 4; d++)
                    _mm512_storeu_ps(oh + 16 * d, _mm512_mul_ps(o[r][d], iv));
            }
        }
}

/* Long chunks on OpenMP alone: (head, 16-row block) items; thread i uses 16 x n_keys floats
 * of the scratch at i * 16 * n_keys (the scratch holds FTQ_ATTN_ROW_BLOCK rows: 8 threads). 0
 * if this path does not apply (then nothing was computed). */
static int attention_rows16(float *out, float *scratch, const float *q, const float *k, const float *v, int T,
                            int pos0, int n_heads, int n_kv, int hd, int window)
{
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (T < QB || hd % 64 != 0 || hd > 256 || threads * QB > FTQ_ATTN_ROW_BLOCK ||
        !(ftq_cpu_features() & FTQ_CPU_AVX512F) || !ftq_use_avx2())
        return 0;
    const int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv, nb = (T + QB - 1) / QB;
    const size_t n_keys = (size_t)(pos0 + T);
    const float scale = 1.0f / sqrtf((float)hd);
    const long items = (long)n_heads * nb;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (long it = 0; it < items; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        int h = (int)(it % n_heads), b = nb - 1 - (int)(it / n_heads); /* the longest blocks first */
        int t0 = b * QB, nr = T - t0 < QB ? T - t0 : QB;
        rows16_avx512(out, scratch + (size_t)tid * QB * n_keys, q, k, v, t0, nr, pos0, h, h / group, qs, ks, hd,
                      window, scale);
    }
    return 1;
}
#undef QB
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
#if FTQ_HAVE_X86
    if (attention_rows16(out, scratch, q, k, v, T, pos0, n_heads, n_kv, hd, window))
        return;
#endif
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
