/* embedding.c - token (+ learned position) embedding lookup and its backward scatter-add.
 * The backward is deterministic without atomics: the fast path gives each thread a block
 * of channels, and every thread walks all rows in ascending order, so each dwte element
 * receives its contributions in the same order as the serial reference. */
#include <string.h>

#include "kernels/kernels.h"

#define CH_BLOCK 64

void ftq_embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe,
                           int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t r = (size_t)b * T + t;
            float *o = out + r * C;
            const float *e = wte + (size_t)ids[r] * C;
            if (wpe) {
                const float *p = wpe + (size_t)t * C;
                for (int i = 0; i < C; i++)
                    o[i] = e[i] + p[i];
            } else {
                memcpy(o, e, sizeof(float) * (size_t)C);
            }
        }
}

void ftq_embedding_backward_ref(float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                                int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t r = (size_t)b * T + t;
            const float *d = dout + r * C;
            if (dwte) {
                float *w = dwte + (size_t)ids[r] * C;
                for (int i = 0; i < C; i++)
                    w[i] += d[i];
            }
            if (dwpe) {
                float *p = dwpe + (size_t)t * C;
                for (int i = 0; i < C; i++)
                    p[i] += d[i];
            }
        }
}

void ftq_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                            int B, int T, int C)
{
    int nblk = (C + CH_BLOCK - 1) / CH_BLOCK;
    long work = (long)B * T * C;
    (void)work;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 65536 && nblk > 1)
#endif
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * CH_BLOCK, c1 = c0 + CH_BLOCK < C ? c0 + CH_BLOCK : C;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                size_t r = (size_t)b * T + t;
                const float *d = dout + r * C;
                if (dwte) {
                    float *w = dwte + (size_t)ids[r] * C;
                    for (int i = c0; i < c1; i++)
                        w[i] += d[i];
                }
                if (dwpe) {
                    float *p = dwpe + (size_t)t * C;
                    for (int i = c0; i < c1; i++)
                        p[i] += d[i];
                }
            }
    }
}
