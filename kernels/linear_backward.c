/* linear_backward.c - backward of out = inp @ W^T + b for a raw f32 weight [out, in]: two
 * sgemm calls over all rows (dinp = dout @ W, dW += dout^T @ inp) and a deterministic
 * column sum for the bias. Never call from inside an OpenMP parallel region. */
#include <cblas.h>
#include <string.h>

#include "kernels/kernels.h"

#define COL_BLOCK 256

void ftq_colsum_accumulate(float *dbias, const float *dout, int T, int out_dim)
{
    int nblk = (out_dim + COL_BLOCK - 1) / COL_BLOCK;
    long work = (long)T * out_dim;
    (void)work;
    (void)nblk;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 65536 && nblk > 1)
#endif
    for (int b = 0; b < nblk; b++) {
        int o0 = b * COL_BLOCK, n = out_dim - o0 < COL_BLOCK ? out_dim - o0 : COL_BLOCK;
        float acc[COL_BLOCK];
        memset(acc, 0, sizeof acc);
        for (int t = 0; t < T; t++) {
            const float *d = dout + (size_t)t * out_dim + o0;
            for (int i = 0; i < n; i++)
                acc[i] += d[i];
        }
        for (int i = 0; i < n; i++)
            dbias[o0 + i] += acc[i];
    }
}

void ftq_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int T, int in_dim, int out_dim,
                         int accumulate_dinp)
{
    if (T <= 0)
        return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, in_dim, out_dim, 1.0f, dout,
                    out_dim, weight, in_dim, accumulate_dinp ? 1.0f : 0.0f, dinp, in_dim);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in_dim, T, 1.0f, dout,
                    out_dim, inp, in_dim, 1.0f, dweight, in_dim);
    if (dbias)
        ftq_colsum_accumulate(dbias, dout, T, out_dim);
}

void ftq_linear_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int T, int in_dim,
                             int out_dim, int accumulate_dinp)
{
    for (int t = 0; t < T; t++) {
        const float *d = dout + (size_t)t * out_dim;
        if (dinp) {
            float *dx = dinp + (size_t)t * in_dim;
            for (int i = 0; i < in_dim; i++) {
                float s = 0.0f;
                for (int o = 0; o < out_dim; o++)
                    s += d[o] * weight[(size_t)o * in_dim + i];
                dx[i] = accumulate_dinp ? dx[i] + s : s;
            }
        }
        if (dbias)
            for (int o = 0; o < out_dim; o++)
                dbias[o] += d[o];
    }
    if (dweight)
        for (int o = 0; o < out_dim; o++)
            for (int i = 0; i < in_dim; i++) {
                float s = 0.0f;
                for (int t = 0; t < T; t++)
                    s += dout[(size_t)t * out_dim + o] * inp[(size_t)t * in_dim + i];
                dweight[(size_t)o * in_dim + i] += s;
            }
}
