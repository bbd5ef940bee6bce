/* linear_bf16.h - the weight matmuls of a model trained in bf16 mixed precision (internal),
 * shared by the decoders (finetune/tmodel_bf16.c) and the BERT encoders (model/bert.c,
 * finetune/bert_bf16.c). A set of registered fp32 weight matrices W [out, in] (nn.Linear)
 * each keeps packed bf16 copies for the products of a linear layer on kernels/gemm_bf16.h:
 * one for y = x W^T (+ b) and, when the backward reaches the layer, one for dx = dy W; dW
 * packs its two activation operands per call. The copies are converted from the fp32 master
 * weights by ftq_bf16_set_refresh when marked stale (once per optimizer step).
 * Invariant: after a refresh, every copy holds bf16(W) of the fp32 weights at that moment;
 * whoever writes the weights marks the set stale (1: the trainable ones, 2: all) before the
 * next forward. A matrix that is not registered, a NULL set, or more rows than a matrix was
 * registered for take the fp32 kernels (ftq_linear_f32 / ftq_linear_backward).
 * Call from outside any OpenMP parallel region (the products open their own). */
#ifndef FTQ_KERNELS_LINEAR_BF16_H
#define FTQ_KERNELS_LINEAR_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/gemm_bf16.h"

typedef struct {
    const float *w;      /* [out, in] fp32 master weights */
    int out, in;
    int rows;            /* most rows of an activation multiplied with it */
    int trainable;       /* gets dW and is refreshed at stale level 1 (else only at 2) */
    int need_bwd;        /* the backward reaches it (its input gradient is needed) */
    uint16_t *fwd, *bwd; /* packed B of Y = X W^T (n = out, k = in) and dX = dY W (n = in, k = out) */
} ftq_bf16_mat;

typedef struct {
    ftq_bf16_mat *mats;
    size_t n, cap;
    uint16_t *a, *b; /* packing scratch of the activation operands */
    int stale;       /* 2: every copy, 1: the trainable ones, 0: fresh */
    ftq_bf16_path path; /* of the products: AUTO (init's) unless a test picks one */
} ftq_bf16_set;

/* Room for cap matrices (FTQ_ENOMEM). */
int ftq_bf16_set_init(ftq_bf16_set *s, size_t cap);
/* Register W (ignored once cap is reached or if w is NULL). */
void ftq_bf16_set_add(ftq_bf16_set *s, const float *w, int out, int in, int rows, int trainable, int need_bwd);
/* Allocate the copies and the scratch for what is registered; marks everything stale.
 * FTQ_ENOMEM with the megabytes asked for. */
int ftq_bf16_set_alloc(ftq_bf16_set *s);
void ftq_bf16_set_free(ftq_bf16_set *s);
/* Raise the stale level to `level` (1 or 2); NULL: no-op. */
void ftq_bf16_set_mark(ftq_bf16_set *s, int level);
/* Re-pack what the stale level asks for; NULL or fresh: no-op. */
void ftq_bf16_set_refresh(ftq_bf16_set *s);

/* out[N, out_dim] = in W^T + bias, on the bf16 copies of W if it is registered in s (see top). */
void ftq_bf16_linear_forward(ftq_bf16_set *s, float *out, const float *in, const float *w, const float *bias, int N,
                             int in_dim, int out_dim);
/* The backward of ftq_linear_backward (same arguments, same meaning: dinp written, or added
 * to if accumulate_dinp; dweight and dbias added to; any of the three may be NULL), the two
 * products on the bf16 kernels if W is registered (dbias: fp32 column sums). */
void ftq_bf16_linear_backward(ftq_bf16_set *s, float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *w, int N, int in_dim, int out_dim, int accumulate_dinp);

/* A pass whose products run here, on OpenMP's threads: its few sgemm calls (attention) run
 * on the calling thread alone, so OpenBLAS's workers sleep instead of spinning in
 * sched_yield on the cores OpenMP's threads need (the counterpart of kernels.h's
 * ftq_sgemm_stage_begin). Returns what ftq_bf16_stage_end restores. Never nest two stages. */
int ftq_bf16_stage_begin(void);
void ftq_bf16_stage_end(int saved);

#endif
