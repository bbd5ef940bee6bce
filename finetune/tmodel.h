/* tmodel.h - the trainable model (internal): the flat parameter buffer and its views, the
 * segment (sizes) table, the saved activations and the backward scratch. Invariants: the
 * parameters are ONE buffer in the order embeddings | block 0 .. L-1 | final norm |
 * lm_head (untied LM) | score (classify); the trainable parameters are the suffix from
 * `off`; grads has n_train floats laid out like params[off ..]; every buffer the passes use
 * is allocated in ftq_tmodel_new for max_batch x max_seq. */
#ifndef FTQ_TMODEL_INTERNAL_H
#define FTQ_TMODEL_INTERNAL_H

#include "ftq.h"
#include "finetune/lora.h"
#include "kernels/linear_bf16.h"

/* One block's parameters (views). C hidden, Q = n_heads*hd, K = n_kv*hd, F ffn; absent
 * tensors are NULL. q/k/v and gate/up are stacked so each is one matmul. */
typedef struct {
    float *norm1_w, *norm1_b; /* [C], [C] (b: GPT-2 LayerNorm) */
    float *wqkv;              /* [Q + 2K, C]: q_proj | k_proj | v_proj rows (GPT-2 c_attn^T) */
    float *bqkv;              /* [Q + 2K] (GPT-2, qwen2, llama attention_bias) */
    float *wo, *bo;           /* [C, Q], [C] (GPT-2 attn.c_proj^T) */
    float *norm2_w, *norm2_b; /* [C], [C] */
    float *w_fc;              /* llama [2F, C]: gate_proj | up_proj rows; GPT-2 [F, C] c_fc^T */
    float *b_fc;              /* llama [2F], GPT-2 [F] */
    float *w_down, *b_down;   /* [C, F], [C] (GPT-2 mlp.c_proj^T) */
} ftq_tblock;

typedef struct {
    float *wte;               /* [V, C] */
    float *wpe;               /* [P, C] (GPT-2) */
    ftq_tblock *blocks;       /* [L] */
    float *normf_w, *normf_b; /* [C], [C] (b: GPT-2) */
    float *lm_head;           /* [V, C] untied LM only; the output layer is wte otherwise */
    float *score;             /* [NL, C] classify only */
} ftq_tparams;

/* How a segment is initialized by init_random (HF _init_weights). */
enum { SEG_MATRIX = 0, SEG_EMBED = 1, SEG_NORM = 2, SEG_BIAS = 3, SEG_LORA_A = 4, SEG_LORA_B = 5 };

/* One HF tensor of the layout: the public segment plus its file shape and init rule. */
typedef struct {
    ftq_param_segment seg; /* name, offset, size, decay */
    int ndim;
    int64_t shape[2];      /* shape in the HF file */
    int transposed;        /* the buffer holds [shape[1], shape[0]] (GPT-2 Conv1D) */
    int kind;              /* SEG_* */
    float std_scale;       /* init std multiplier (GPT-2 c_proj: 1/sqrt(2L)) */
} ftq_tseg;

/* Saved activations of one block (trainable blocks own a set; frozen blocks share one
 * scratch set). N = B*T rows. */
typedef struct {
    float *x;             /* [N, C] block input (residual stream) */
    float *mean1, *rstd1; /* [N] (mean: LayerNorm only) */
    float *h1;            /* [N, C] norm1 output */
    float *qkv;           /* [N, Q + 2K] after RoPE */
    float *probs;         /* [B, H, T, T] attention probabilities */
    float *y;             /* [N, Q] attention output (o_proj input) */
    float *x1;            /* [N, C] residual after attention */
    float *mean2, *rstd2; /* [N] */
    float *h2;            /* [N, C] norm2 output */
    float *fc;            /* llama [N, 2F] gate | up; GPT-2 [N, F] pre-activation */
    float *act;           /* [N, F] down_proj input */
} ftq_tacts;

struct ftq_tmodel {
    ftq_model_config cfg; /* with is_classifier / num_labels set for the classify task */
    ftq_tmodel_params p;
    int NL;               /* labels (classify) */
    int first_block;      /* lowest block with trainable parameters (L if none) */

    float *params, *grads;
    size_t n_params, off, n_train;
    ftq_tparams w, g;     /* views into params / grads (g: NULL where frozen) */
    ftq_tseg *segs;
    size_t n_segs, first_seg; /* segs[first_seg ..] are the trainable ones */
    char *names;          /* storage of the segment names */

    /* activations, sized for max_batch x max_seq */
    ftq_tacts *acts;      /* [L]; frozen blocks point at `shared` */
    ftq_tacts shared;     /* scratch set for frozen blocks (unused if none) */
    int recompute;        /* mode lora: every block shares one h1 / h2 / act buffer, which the
                             backward recomputes (the same deterministic forward code) from the
                             kept x, x1 and fc: ~40 % less activation memory, same bits */
    float *xf, *meanf, *rstdf, *hf; /* final norm input / stats / output [N, C] */
    float *tmp;           /* [N, C] projection outputs before the residual add */
    float *logits;        /* LM: [chunk_rows, V]; classify: [max_batch, NL] */
    int chunk_rows;       /* LM rows per logits chunk */
    float *losses;        /* [N] */
    float *pooled;        /* [max_batch, C] classify */
    float *rope_cos, *rope_sin; /* [max_seq, hd/2] (llama) */
    /* backward scratch */
    float *dres, *dh;     /* [N, C] residual-stream gradient, norm-output gradient */
    float *dqkv, *dy;     /* [N, Q + 2K], [N, Q] */
    float *dfc, *dact;    /* [N, 2F or F], [N, F] */
    float *datt;          /* [T, T] */
    float *dpooled;       /* [max_batch, C] */
    void *act_mem;

    /* bf16 precision (tmodel_bf16.c): packed bf16 copies of the weight matrices, looked up
     * by their fp32 pointer (kernels/linear_bf16.h); bf.mats is NULL in fp32 */
    ftq_bf16_set bf;

    /* the last forward */
    int B, T, fwd_ok, has_targets, n_scored;
    int32_t *ids, *targets; /* [N] copies (classify targets: [B]) */
    int32_t *pool_row;      /* [B] classify: the pooled row b*T + lengths[b] - 1 */

    /* LoRA (mode lora): the adapters are the last segments of the layout, after score; site
     * s of block l has A = lora_w[2 (l ns + s)], B = lora_w[2 (l ns + s) + 1] */
    int lora_ns;
    ftq_lora_site lora_sites[FTQ_LORA_MAX_SITES];
    float lora_scale;
    float **lora_w, **lora_g; /* [2 L ns] views into params / grads */
    float *lora_u;            /* [L ns][N r] x A^T of the last forward */
    float *lora_du, *lora_xd; /* [N r], [N max in] backward / dropout scratch */
    int lora_train;           /* dropout in the forwards (training) */
    /* mode lora: the block matrices are not in params; the passes read the frozen model's
     * tensors (f32 views or int8 / int4 QMAT) through these scratch buffers */
    const struct ftq_model *base;
    float *lin_tmp;           /* [N, max part rows] one part's product before it is scattered */
    void *qscratch;           /* ftq_linear_scratch_bytes of the largest quantized part */
    float *wdeq;              /* [max part rows x in] one dequantized matrix (dX = dY W) */
    int stage_saved;          /* OpenMP threads outside the sgemm stage (quantized kernels) */
    int ext_emb, ext_head;    /* wte / lm_head are the model's f32 tensors, not in params */
    const ftq_tensor *qemb;   /* mode lora: the model's quantized (QMAT) embedding, read in place
                                 (rows dequantized per token), else NULL */
    const ftq_tensor *qhead;  /* mode lora: the quantized LM head (qemb when tied), else NULL:
                                 logits on the quantized kernels, dX by row chunks of wdeq */
    int head_chunk;           /* rows of qhead dequantized into wdeq at a time */
    ftq_lora_drop lora_drop;  /* the last forward's dropout */
};

/* Adapter sites of block l on linear `lin`: the forward adds them to y (row stride ldy)
 * from input x (row stride ldx); the backward accumulates gA / gB and adds to dx. */
void ftq_tmodel_lora_forward(ftq_tmodel *tm, int l, int lin, float *y, int ldy, const float *x, int ldx);
void ftq_tmodel_lora_backward(ftq_tmodel *tm, int l, int lin, float *dx, int lddx, const float *dy, int lddy,
                              const float *x, int ldx);

/* The scalar reference of ftq_adamw_update (finetune/optim.c); the fast path agrees with
 * it bit for bit. */
void ftq_adamw_update_ref(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          const ftq_adamw_params *ap, int64_t step, int decay);

/* tmodel_bf16.c: register the weight matrices of a bf16 model in tm->bf. The matmuls of the
 * passes go through ftq_bf16_linear_forward / _backward (kernels/linear_bf16.h) on tm->bf:
 * fp32 kernels in an fp32 model and for unregistered weights, else the bf16 copies. */
int ftq_tmodel_bf16_init(ftq_tmodel *tm);

#endif
