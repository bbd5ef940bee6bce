/* attention_enc.c - bidirectional masked multi-head attention (BERT encoders): forward with
 * saved probabilities, its reference, and the backward pass. Every (sequence, head) pair
 * writes its own rows and columns, so OpenMP over pairs needs no reduction. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention_enc.h"
#include "kernels/kernels.h"

/* p: the [T, T] probabilities to keep (pstride T), or one reused row (pstride 0). */
static void head_forward(float *out, float *p, size_t pstride, const float *q, const float *k, const float *v, int ld,
                         int len, int T, int hd, float scale)
{
    for (int i = 0; i < T; i++) {
        float *pi = p + (size_t)i * pstride, mx = -INFINITY;
        for (int j = 0; j < len; j++) {
            pi[j] = ftq_dot(q + (size_t)i * ld, k + (size_t)j * ld, hd) * scale;
            mx = pi[j] > mx ? pi[j] : mx;
        }
        float sum = 0.0f;
        for (int j = 0; j < len; j++) {
            pi[j] = expf(pi[j] - mx);
            sum += pi[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < len; j++)
            pi[j] *= inv;
        for (int j = len; j < T; j++)
            pi[j] = 0.0f;
        float *o = out + (size_t)i * ld;
        memset(o, 0, sizeof(float) * (size_t)hd);
        for (int j = 0; j < len; j++) {
            const float *vj = v + (size_t)j * ld;
            float w = pi[j];
            for (int d = 0; d < hd; d++)
                o[d] += w * vj[d];
        }
    }
}

void ftq_attention_enc_forward(float *out, float *probs, const float *q, const float *k, const float *v, int ld,
                               const int *lens, int B, int T, int H, int hd)
{
    float scale = 1.0f / sqrtf((float)hd);
    int failed = 0;
#pragma omp parallel
    {
        float *row = probs ? NULL : malloc(sizeof(float) * (size_t)T); /* inference: one row at a time */
        if (!probs && !row) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t row0 = (size_t)b * T;
            if (probs || row)
                head_forward(out + row0 * ld + h * hd, probs ? probs + (size_t)bh * T * T : row, probs ? (size_t)T : 0,
                             q + row0 * ld + h * hd, k + row0 * ld + h * hd, v + row0 * ld + h * hd, ld, lens[b], T,
                             hd, scale);
        }
        free(row);
    }
    if (failed)
        for (size_t i = 0; i < (size_t)B * T; i++)
            for (int c = 0; c < H * hd; c++)
                out[i * ld + c] = NAN;
}

void ftq_attention_enc_forward_ref(float *out, float *probs, const float *q, const float *k, const float *v,
                                   int ld, const int *lens, int B, int T, int H, int hd)
{
    double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                float *p = probs + (((size_t)b * H + h) * T + i) * T;
                const float *qi = q + ((size_t)b * T + i) * ld + h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < lens[b]; j++) {
                    const float *kj = k + ((size_t)b * T + j) * ld + h * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += (double)qi[d] * kj[d];
                    p[j] = (float)(s * scale);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j < lens[b]; j++)
                    sum += exp(p[j] - mx);
                for (int j = 0; j < T; j++)
                    p[j] = j < lens[b] ? (float)(exp(p[j] - mx) / sum) : 0.0f;
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j < lens[b]; j++)
                        o += (double)p[j] * v[((size_t)b * T + j) * ld + h * hd + d];
                    out[((size_t)b * T + i) * ld + h * hd + d] = (float)o;
                }
            }
}

void ftq_attention_enc_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                                const float *q, const float *k, const float *v, int ld, const int *lens, int B,
                                int T, int H, int hd)
{
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *dp = malloc(sizeof(float) * (size_t)T);
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, len = lens[b];
            size_t off = (size_t)b * T * ld + (size_t)h * hd;
            const float *P = probs + (size_t)bh * T * T;
            for (int t = 0; t < T; t++) {
                memset(dq + off + (size_t)t * ld, 0, sizeof(float) * (size_t)hd);
                memset(dk + off + (size_t)t * ld, 0, sizeof(float) * (size_t)hd);
                memset(dv + off + (size_t)t * ld, 0, sizeof(float) * (size_t)hd);
            }
            if (!dp)
                continue;
            for (int i = 0; i < T; i++) {
                const float *pi = P + (size_t)i * T, *doi = dout + off + (size_t)i * ld;
                float dot = 0.0f;
                for (int j = 0; j < len; j++) {
                    const float *vj = v + off + (size_t)j * ld;
                    float *dvj = dv + off + (size_t)j * ld;
                    dp[j] = ftq_dot(doi, vj, hd);
                    dot += dp[j] * pi[j];
                    for (int d = 0; d < hd; d++)
                        dvj[d] += pi[j] * doi[d];
                }
                float *dqi = dq + off + (size_t)i * ld;
                const float *qi = q + off + (size_t)i * ld;
                for (int j = 0; j < len; j++) {
                    float ds = pi[j] * (dp[j] - dot) * scale;
                    const float *kj = k + off + (size_t)j * ld;
                    float *dkj = dk + off + (size_t)j * ld;
                    for (int d = 0; d < hd; d++) {
                        dqi[d] += ds * kj[d];
                        dkj[d] += ds * qi[d];
                    }
                }
            }
        }
        free(dp);
    }
}
