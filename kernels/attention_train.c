/* attention_train.c - causal grouped-query self-attention for training: the forward saves
 * the softmax probabilities [B, H, T, T], the backward goes through them. Work is per
 * (sequence, head) and per block of FTQ_ATTN_ROW_BLOCK query rows, each block against only
 * the keys it can see: sgemm for Q K^T, P V, dO V^T, P^T dO, dS K and dS^T Q; the masked
 * softmax and its gradient are row kernels (AVX2). dK and dV of a KV head collect the
 * contributions of its query heads in ascending head and block order (deterministic).
 * sgemm is only called outside OpenMP regions. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

#define RB FTQ_ATTN_ROW_BLOCK

/* ---- softmax gradient of one row: ds = p * (ds - sum(p * ds)) over n entries --------- */

static void softmax_grad_row_ref(float *ds, const float *p, int n)
{
    float dot = 0.0f;
    for (int j = 0; j < n; j++)
        dot += p[j] * ds[j];
    for (int j = 0; j < n; j++)
        ds[j] = p[j] * (ds[j] - dot);
}

#if FTQ_HAVE_X86
FTQ_AVX2 static void softmax_grad_row_avx2(float *ds, const float *p, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(ds + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(p + j + 8), _mm256_loadu_ps(ds + j + 8), s1);
    }
    for (; j + 8 <= n; j += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(ds + j), s0);
    int tail = j;
    __m256i tm = ftq_tail_mask256(n - tail);
    if (tail < n)
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(p + tail, tm), _mm256_maskload_ps(ds + tail, tm), s1);
    __m256 dot = _mm256_set1_ps(ftq_hsum256(_mm256_add_ps(s0, s1)));
    for (j = 0; j < tail; j += 8)
        _mm256_storeu_ps(ds + j, _mm256_mul_ps(_mm256_loadu_ps(p + j), _mm256_sub_ps(_mm256_loadu_ps(ds + j), dot)));
    if (tail < n)
        _mm256_maskstore_ps(ds + tail, tm, _mm256_mul_ps(_mm256_maskload_ps(p + tail, tm),
                                                         _mm256_sub_ps(_mm256_maskload_ps(ds + tail, tm), dot)));
}
#endif

static void softmax_grad_row(float *ds, const float *p, int n)
{
#if FTQ_HAVE_X86
    if (ftq_use_avx2()) {
        softmax_grad_row_avx2(ds, p, n);
        return;
    }
#endif
    softmax_grad_row_ref(ds, p, n);
}

/* ---- forward -------------------------------------------------------------------------- */

void ftq_attention_train_forward(float *out, int ldo, float *probs, const float *q, int ldq,
                                 const float *k, const float *v, int ldkv, int B, int T,
                                 int n_heads, int n_kv, int hd)
{
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < n_heads; h++) {
            size_t row0 = (size_t)b * T;
            const float *qh = q + row0 * ldq + (size_t)h * hd;
            const float *kh = k + row0 * ldkv + (size_t)(h / group) * hd;
            const float *vh = v + row0 * ldkv + (size_t)(h / group) * hd;
            float *P = probs + ((size_t)b * n_heads + h) * (size_t)T * T;
            float *oh = out + row0 * ldo + (size_t)h * hd;
            for (int r0 = 0; r0 < T; r0 += RB) {
                int r1 = r0 + RB < T ? r0 + RB : T, nr = r1 - r0;
                float *Pb = P + (size_t)r0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, r1, hd, scale,
                            qh + (size_t)r0 * ldq, ldq, kh, ldkv, 0.0f, Pb, T);
                for (int r = 0; r < nr; r++) {
                    float *row = Pb + (size_t)r * T;
                    int t = r0 + r;
                    ftq_softmax_forward(row, t + 1);
                    memset(row + t + 1, 0, sizeof(float) * (size_t)(T - t - 1));
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, r1, 1.0f, Pb, T, vh,
                            ldkv, 0.0f, oh + (size_t)r0 * ldo, ldo);
            }
        }
}

void ftq_attention_train_forward_ref(float *out, int ldo, float *probs, const float *q, int ldq,
                                     const float *k, const float *v, int ldkv, int B, int T,
                                     int n_heads, int n_kv, int hd)
{
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < n_heads; h++) {
            int g = h / group;
            float *P = probs + ((size_t)b * n_heads + h) * (size_t)T * T;
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * ldq + (size_t)h * hd;
                float *row = P + (size_t)t * T;
                for (int j = 0; j < T; j++) {
                    if (j > t) {
                        row[j] = 0.0f;
                        continue;
                    }
                    const float *kj = k + ((size_t)b * T + j) * ldkv + (size_t)g * hd;
                    float s = 0.0f;
                    for (int i = 0; i < hd; i++)
                        s += qt[i] * kj[i];
                    row[j] = s * scale;
                }
                ftq_softmax_forward_ref(row, t + 1);
                float *ot = out + ((size_t)b * T + t) * ldo + (size_t)h * hd;
                for (int i = 0; i < hd; i++) {
                    float s = 0.0f;
                    for (int j = 0; j <= t; j++)
                        s += row[j] * v[((size_t)b * T + j) * ldkv + (size_t)g * hd + i];
                    ot[i] = s;
                }
            }
        }
}

/* ---- backward ------------------------------------------------------------------------- */

static void zero_heads(float *x, int ld, int rows, int width)
{
    for (int r = 0; r < rows; r++)
        memset(x + (size_t)r * ld, 0, sizeof(float) * (size_t)width);
}

void ftq_attention_train_backward(float *dq, int lddq, float *dk, float *dv, int lddkv,
                                  float *scratch, const float *dout, int ldo, const float *probs,
                                  const float *q, int ldq, const float *k, const float *v,
                                  int ldkv, int B, int T, int n_heads, int n_kv, int hd)
{
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    zero_heads(dk, lddkv, B * T, n_kv * hd);
    zero_heads(dv, lddkv, B * T, n_kv * hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < n_heads; h++) {
            size_t row0 = (size_t)b * T, goff = (size_t)(h / group) * hd;
            const float *qh = q + row0 * ldq + (size_t)h * hd;
            const float *kh = k + row0 * ldkv + goff, *vh = v + row0 * ldkv + goff;
            const float *doh = dout + row0 * ldo + (size_t)h * hd;
            float *dqh = dq + row0 * lddq + (size_t)h * hd;
            float *dkh = dk + row0 * lddkv + goff, *dvh = dv + row0 * lddkv + goff;
            const float *P = probs + ((size_t)b * n_heads + h) * (size_t)T * T;
            for (int r0 = 0; r0 < T; r0 += RB) {
                int r1 = r0 + RB < T ? r0 + RB : T, nr = r1 - r0;
                const float *Pb = P + (size_t)r0 * T;
                /* dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, nr, 1.0f, Pb, T,
                            doh + (size_t)r0 * ldo, ldo, 1.0f, dvh, lddkv);
                /* dP = dO[r0:r1] V[0:r1]^T, then dS in place (keys after t stay 0) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, r1, hd, 1.0f,
                            doh + (size_t)r0 * ldo, ldo, vh, ldkv, 0.0f, scratch, r1);
                for (int r = 0; r < nr; r++) {
                    int t = r0 + r;
                    float *ds = scratch + (size_t)r * r1;
                    softmax_grad_row(ds, Pb + (size_t)r * T, t + 1);
                    if (t + 1 < r1)
                        memset(ds + t + 1, 0, sizeof(float) * (size_t)(r1 - t - 1));
                }
                /* dQ[r0:r1] = scale dS K[0:r1];  dK[0:r1] += scale dS^T Q[r0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, r1, scale, scratch,
                            r1, kh, ldkv, 0.0f, dqh + (size_t)r0 * lddq, lddq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, nr, scale, scratch, r1,
                            qh + (size_t)r0 * ldq, ldq, 1.0f, dkh, lddkv);
            }
        }
}

void ftq_attention_train_backward_ref(float *dq, int lddq, float *dk, float *dv, int lddkv,
                                      float *scratch, const float *dout, int ldo,
                                      const float *probs, const float *q, int ldq,
                                      const float *k, const float *v, int ldkv, int B, int T,
                                      int n_heads, int n_kv, int hd)
{
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    zero_heads(dk, lddkv, B * T, n_kv * hd);
    zero_heads(dv, lddkv, B * T, n_kv * hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < n_heads; h++) {
            int g = h / group;
            const float *P = probs + ((size_t)b * n_heads + h) * (size_t)T * T;
            for (int t = 0; t < T; t++) {
                const float *p = P + (size_t)t * T;
                const float *dot = dout + ((size_t)b * T + t) * ldo + (size_t)h * hd;
                const float *qt = q + ((size_t)b * T + t) * ldq + (size_t)h * hd;
                float *ds = scratch;
                for (int j = 0; j <= t; j++) {
                    const float *vj = v + ((size_t)b * T + j) * ldkv + (size_t)g * hd;
                    float *dvj = dv + ((size_t)b * T + j) * lddkv + (size_t)g * hd;
                    float s = 0.0f;
                    for (int i = 0; i < hd; i++) {
                        s += dot[i] * vj[i];
                        dvj[i] += p[j] * dot[i];
                    }
                    ds[j] = s;
                }
                softmax_grad_row_ref(ds, p, t + 1);
                float *dqt = dq + ((size_t)b * T + t) * lddq + (size_t)h * hd;
                for (int i = 0; i < hd; i++)
                    dqt[i] = 0.0f;
                for (int j = 0; j <= t; j++) {
                    const float *kj = k + ((size_t)b * T + j) * ldkv + (size_t)g * hd;
                    float *dkj = dk + ((size_t)b * T + j) * lddkv + (size_t)g * hd;
                    for (int i = 0; i < hd; i++) {
                        dqt[i] += scale * ds[j] * kj[i];
                        dkj[i] += scale * ds[j] * qt[i];
                    }
                }
            }
        }
}
