/* lora.c - the LoRA adapter product y += scale * (drop(x) A^T) B^T and its backward as
 * sgemm calls on strided raw pointers, with counter-based dropout masks (a pure function of
 * seed, counter, site and element: the backward regenerates them instead of storing them).
 * Shared by the decoder (finetune/tmodel_pass.c) and BERT (model/bert.c, bert_train.c). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/lora.h"

/* ---- dropout ----------------------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* xd = drop(x) [N, in] contiguous (x row stride ldx). */
static void drop_apply(float *xd, const float *x, int ldx, int N, int in, const ftq_lora_drop *d, uint64_t site)
{
    const uint64_t base = mix64(mix64(d->seed ^ mix64(d->counter)) ^ site);
    const float keep = 1.0f / (1.0f - d->p);
    const uint32_t thr = (uint32_t)((double)d->p * 4294967296.0 > 4294967295.0 ? 4294967295.0
                                                                                  : (double)d->p * 4294967296.0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < in; j++) {
            uint64_t e = (uint64_t)i * (uint64_t)in + (uint64_t)j;
            uint32_t h = (uint32_t)(mix64(base + e) >> 32);
            xd[(size_t)i * in + j] = h >= thr ? x[(size_t)i * ldx + j] * keep : 0.0f;
        }
}

/* ---- the product ------------------------------------------------------------------------------- */

void ftq_lora_forward(float *y, int ldy, const float *x, int ldx, const float *A, const float *B, float *u,
                      float *xd_scratch, int N, int in, int out, int r, float scale, const ftq_lora_drop *d,
                      uint64_t site)
{
    if (N <= 0)
        return;
    const float *xd = x;
    int ldxd = ldx;
    if (d && d->p > 0) {
        drop_apply(xd_scratch, x, ldx, N, in, d, site);
        xd = xd_scratch;
        ldxd = in;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, in, 1.0f, xd, ldxd, A, in, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, r, scale, u, r, B, r, 1.0f, y, ldy);
}

void ftq_lora_backward(float *dx, int lddx, float *gA, float *gB, const float *dy, int lddy, const float *x,
                       int ldx, const float *A, const float *B, const float *u, float *du, float *scratch, int N,
                       int in, int out, int r, float scale, const ftq_lora_drop *d, uint64_t site)
{
    if (N <= 0)
        return;
    const int drop = d && d->p > 0;
    /* gB += scale * dy^T u */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, N, scale, dy, lddy, u, r, 1.0f, gB, r);
    /* du = scale * dy B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, out, scale, dy, lddy, B, r, 0.0f, du, r);
    /* gA += du^T drop(x) */
    const float *xd = x;
    int ldxd = ldx;
    if (drop) {
        drop_apply(scratch, x, ldx, N, in, d, site);
        xd = scratch;
        ldxd = in;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, N, 1.0f, du, r, xd, ldxd, 1.0f, gA, in);
    if (!dx)
        return;
    if (!drop) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, du, r, A, in, 1.0f, dx, lddx);
        return;
    }
    /* dx += mask * keep * (du A): the mask is where drop(x) kept x; regenerate it on ones */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, du, r, A, in, 0.0f, scratch, in);
    const uint64_t base = mix64(mix64(d->seed ^ mix64(d->counter)) ^ site);
    const float keep = 1.0f / (1.0f - d->p);
    const uint32_t thr = (uint32_t)((double)d->p * 4294967296.0 > 4294967295.0 ? 4294967295.0
                                                                                  : (double)d->p * 4294967296.0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < in; j++) {
            uint64_t e = (uint64_t)i * (uint64_t)in + (uint64_t)j;
            uint32_t h = (uint32_t)(mix64(base + e) >> 32);
            if (h >= thr)
                dx[(size_t)i * lddx + j] += scratch[(size_t)i * in + j] * keep;
        }
}

void ftq_lora_forward_ref(float *y, int ldy, const float *x, int ldx, const float *A, const float *B, int N, int in,
                          int out, int r, float scale)
{
    for (int i = 0; i < N; i++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int k = 0; k < r; k++) {
                double uk = 0;
                for (int j = 0; j < in; j++)
                    uk += (double)x[(size_t)i * ldx + j] * A[(size_t)k * in + j];
                s += uk * B[(size_t)o * r + k];
            }
            y[(size_t)i * ldy + o] += (float)(scale * s);
        }
}
