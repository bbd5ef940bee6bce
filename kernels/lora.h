/* lora.h - the LoRA adapter product on raw pointers (kernels/lora.c): site A is [r, in]
 * and B [out, r] (PEFT lora_A / lora_B); the forward adds scale * (drop(x) A^T) B^T to y;
 * dropout masks are a pure function of (seed, counter, site, element). */
#ifndef FTQ_KERNELS_LORA_H
#define FTQ_KERNELS_LORA_H

#include <stddef.h>
#include <stdint.h>

/* Dropout of one forward: keep element e of site `site` with probability 1 - p, scaled
 * by 1 / (1 - p). p == 0: identity. */
typedef struct {
    float p;
    uint64_t seed, counter;
} ftq_lora_drop;

/* Forward of one site over N rows: xd = drop(x) (into xd_scratch, [N, in], when p > 0),
 * u = xd A^T ([N, r], saved for the backward), y[:, o0 ..] += scale * u B^T. x has row
 * stride ldx, y row stride ldy (y already points at column o0). */
void ftq_lora_forward(float *y, int ldy, const float *x, int ldx, const float *A, const float *B, float *u,
                      float *xd_scratch, int N, int in, int out, int r, float scale, const ftq_lora_drop *d,
                      uint64_t site);

/* Backward of the same site: gB += scale * dy^T u, du = scale * dy B, gA += du^T drop(x),
 * dx += drop'(du A) (dx NULL: skipped). dy / dx row strides lddy / lddx; scratch [N, in]
 * (used when p > 0), du [N, r]. */
void ftq_lora_backward(float *dx, int lddx, float *gA, float *gB, const float *dy, int lddy, const float *x,
                       int ldx, const float *A, const float *B, const float *u, float *du, float *scratch, int N,
                       int in, int out, int r, float scale, const ftq_lora_drop *d, uint64_t site);

/* Naive reference of the forward (no dropout) for the tests. */
void ftq_lora_forward_ref(float *y, int ldy, const float *x, int ldx, const float *A, const float *B, int N, int in,
                          int out, int r, float scale);

#endif
