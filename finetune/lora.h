/* lora.h - LoRA adapters of the trainable decoder (internal): the sites of one block (which
 * of its linears, which output columns of a stacked q|k|v or gate|up product, the HF module
 * path PEFT names them by), target parsing, the adapter product and its backward on raw
 * pointers, and writing a PEFT adapter directory. Invariants: a site's A is [r, in] and B
 * [out, r] (PEFT lora_A / lora_B); the product adds scale * (drop(x) A^T) B^T to columns
 * [o0, o0 + out) of the base output; dropout masks are a pure function of (seed, counter,
 * site, element), so the backward regenerates them instead of storing them. */
#ifndef FTQ_FINETUNE_LORA_H
#define FTQ_FINETUNE_LORA_H

#include "ftq.h"

/* The linears of a decoder block, in forward order. */
enum { LORA_LIN_QKV = 0, LORA_LIN_O = 1, LORA_LIN_FC = 2, LORA_LIN_DOWN = 3, LORA_LIN_N = 4 };

#define FTQ_LORA_MAX_SITES 8

typedef struct {
    const char *target; /* PEFT target name: "q_proj", GPT-2 "c_attn" */
    const char *path;   /* HF module path with %d for the layer: "model.layers.%d.self_attn.q_proj" */
    const char *gguf;   /* llama.cpp tensor base with %d: "blk.%d.attn_q" (NULL: none) */
    int lin;            /* LORA_LIN_* */
    int o0, out, in;    /* output columns [o0, o0 + out) of that linear; its input width */
} ftq_lora_site;

/* The sites of one block of a decoder with config c selected by p->targets (NULL: PEFT's
 * default for the family), in forward order. FTQ_EINVAL naming an unknown target. */
int ftq_lora_sites(const ftq_model_config *c, const ftq_lora_params *p, ftq_lora_site *sites, int *n);

/* alpha / r, or alpha / sqrt(r) with rslora. */
float ftq_lora_scaling(const ftq_lora_params *p);

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
