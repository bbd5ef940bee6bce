/* bert_internal.h - the ftq_bert and ftq_bert_ws structs, shared by the encoder's forward
 * (model/bert.c) and its training code (finetune/bert_train.c). Invariant: every parameter
 * is a slice of one contiguous f32 buffer laid out by the tensor table; a gradient buffer of
 * the same size binds to the same views. Linear weights are [out, in] (nn.Linear). */
#ifndef FTQ_MODEL_BERT_INTERNAL_H
#define FTQ_MODEL_BERT_INTERNAL_H

#include "ftq.h"
#include "kernels/linear_bf16.h"
#include "kernels/lora.h"
#include "ftq_bert.h"

typedef struct {
    float *wq, *bq, *wk, *bk, *wv, *bv; /* [C, C], [C] */
    float *wo, *bo;                     /* [C, C], [C] attention.output.dense */
    float *ln1_w, *ln1_b;               /* [C] attention.output.LayerNorm */
    float *w1, *b1;                     /* [F, C], [F] intermediate.dense */
    float *w2, *b2;                     /* [C, F], [C] output.dense */
    float *ln2_w, *ln2_b;               /* [C] output.LayerNorm */
} ftq_bert_layer;

typedef struct {
    float *wte, *wpe, *wtt;   /* [V, C], [P, C], [types, C] */
    float *eln_w, *eln_b;     /* [C] embeddings.LayerNorm */
    float *pool_w, *pool_b;   /* [C, C], [C] pooler.dense (NULL if absent) */
    float *cls_w, *cls_b;     /* [labels, C], [labels] classifier (NULL if absent) */
    ftq_bert_layer *L;        /* [n_layers] */
} ftq_bert_views;

/* What a tensor is to the quantizer and the pruner (the per-architecture table they read):
 * a block's linear weight, a head's linear weight (pooler, classifier), an embedding
 * table, or anything else (norms, biases). */
typedef enum { FTQ_BERT_ROLE_OTHER = 0, FTQ_BERT_ROLE_LINEAR, FTQ_BERT_ROLE_HEAD, FTQ_BERT_ROLE_EMBED } ftq_bert_role;

/* The linear weights of a block, in order; which activation feeds each (for Wanda). */
typedef enum { FTQ_BERT_IN_X = 0, FTQ_BERT_IN_ATT, FTQ_BERT_IN_H1, FTQ_BERT_IN_G, FTQ_BERT_IN_NONE } ftq_bert_input;

typedef struct {
    char name[128]; /* full checkpoint name, prefix included */
    int ndim;
    int64_t shape[2];
    size_t off, numel; /* in floats, into the parameter buffer */
    int layer;         /* -1 for embeddings / pooler / classifier */
    size_t field;      /* offsetof in ftq_bert_views (layer < 0) or ftq_bert_layer */
    ftq_bert_role role;
    ftq_bert_input input; /* LINEAR: the activation it multiplies */
    ftq_tensor q;      /* a quantized weight: dtype FTQ_DTYPE_QMAT, data -> ftq_qmat packed for the
                          int8 / int4 kernels (then no slice of params: off and the view are unused);
                          data NULL for an f32 tensor */
} ftq_bert_tensor;

/* The quantized weights of a block (NULL where f32); fields line up with ftq_bert_layer. */
typedef struct {
    const ftq_tensor *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln1_w, *ln1_b, *w1, *b1, *w2, *b2, *ln2_w, *ln2_b;
} ftq_bert_qlayer;

/* LoRA adapters on the six linears of every block (model/bert_lora.c): A [r, in] and B
 * [out, r] live in params after the classifier, at off[(l * BERT_LIN_N + k) * 2 + {0, 1}]. */
enum { BERT_LIN_Q, BERT_LIN_K, BERT_LIN_V, BERT_LIN_O, BERT_LIN_FC1, BERT_LIN_FC2, BERT_LIN_N };
typedef struct {
    int r;
    float scale;
    int on[BERT_LIN_N];
    size_t *off;        /* [L][BERT_LIN_N][2] */
    size_t start;       /* first float of the adapters in params */
    size_t rows_cap;    /* rows the saved products are sized for */
    float *u;           /* [L][BERT_LIN_N][rows_cap r] x A^T of the last forward */
    float *du, *xd;     /* [rows_cap r], [rows_cap max(C, F)] */
    ftq_lora_drop drop; /* p > 0 only in training forwards */
    double dropout;
    int training;       /* set by the trainer around training forwards: dropout on */
    int grow;           /* an adapter applied for inference on a quantized base: the forward grows
                           u, du, xd to its rows (ftq_bert_lora_reserve) instead of refusing */
} ftq_bert_lora;

struct ftq_bert {
    ftq_bert_config cfg;
    float *params; /* n_params floats */
    size_t n_params;
    ftq_bert_tensor *tensors;
    int n_tensors;
    ftq_bert_views w;
    int n_quantized;          /* tensors loaded quantized (0: an f32 model) */
    ftq_bert_qlayer *qL;      /* [n_layers] when n_quantized > 0, else NULL */
    const ftq_tensor *q_pool, *q_cls; /* quantized pooler / classifier weights, or NULL */
    ftq_bert_lora *lora;      /* adapters (mode lora), or NULL */
    ftq_bf16_set *bf16;       /* bf16 training (finetune/bert_bf16.c): the weight matrices whose
                                 products (forward here, backward in bert_train.c) run on bf16
                                 copies; NULL: fp32. Owned (freed with the model) */
};

/* Add LoRA adapters for p's targets (query, key, value, dense = the three dense layers of a
 * block, all-linear; NULL: PEFT's default query,value) after the classifier: A Kaiming-
 * uniform from seed, B zero; products saved for rows_cap rows. */
int ftq_bert_add_lora(ftq_bert *m, const ftq_lora_params *p, uint64_t seed, size_t rows_cap);
/* HF module path of linear k of block l without the "bert." prefix, into buf. */
const char *ftq_bert_lora_module(int l, int k, char *buf, size_t cap);
/* PEFT target name of linear k ("query", "key", "value", "dense"). */
const char *ftq_bert_lora_target(int k);
/* Size the saved products of m's adapters for rows rows (no-op if they already fit). */
int ftq_bert_lora_reserve(const ftq_bert *m, size_t rows);
/* The adapter of linear k in block l: y (row stride ldy) += its product of x (stride ldx). */
void ftq_bert_lora_forward(const ftq_bert *m, int l, int k, float *y, int ldy, const float *x, int ldx, int N);
/* Its backward: gradients into grads (laid out like params), dx (stride lddx) += ...; dy
 * (stride lddy) the gradient of y. */
void ftq_bert_lora_backward(const ftq_bert *m, int l, int k, float *grads, float *dx, int lddx, const float *dy,
                            int lddy, const float *x, int ldx, int N);

/* Number of the model's tensors loaded quantized (0 for an f32 model). */
int ftq_bert_quantized_count(const ftq_bert *m);

/* The forward of ftq_bert_forward, stopping after the first n_layers blocks (at most all;
 * the hidden state of block n_layers - 1 is then ftq_bert_x(ws, n_layers)); used by
 * calibration, which needs the inputs of one block at a time. */
int ftq_bert_forward_layers(const ftq_bert *m, ftq_bert_ws *ws, const int32_t *ids, const int32_t *type_ids,
                            const int *lens, int B, int T, int n_layers);

/* Point views (and its L, n_layers entries the caller provides) into base, a buffer laid
 * out like m->params (e.g. gradients). */
void ftq_bert_bind(const ftq_bert *m, float *base, ftq_bert_views *v, ftq_bert_layer *L);

struct ftq_bert_ws {
    int max_rows, max_T, train, B, T;
    size_t nc, nf; /* max rows * C, max rows * F */
    int *lens;     /* [max_rows] */
    int32_t *ids, *types; /* [max_rows * max_T] of the last forward */
    float *emb;       /* [N, C] embeddings sum (train) */
    float *emb_mean, *emb_rstd; /* [N] */
    float *x;         /* (train ? L + 1 : 2) x [N, C]: input of each layer, then the output */
    float *q, *k, *v, *att, *r1, *h1, *r2; /* per layer (train) or one: [N, C] */
    float *f, *g;     /* [N, F] pre- and post-GELU */
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd; /* [N] per layer */
    float *probs;     /* per layer [B, H, T, T] */
    float *cls_in, *pool_pre, *pooled, *feat; /* [rows, C] */
    float *logits;    /* [rows, labels] */
    float *mem;
    float *bwd;       /* backward scratch (finetune/bert_train.c), allocated on first use */
    void *qscratch;   /* activation codes of the largest quantized product (NULL for f32 models) */
    float *wdeq;      /* training (mode lora) on a quantized base: one dequantized weight for the
                         backward's dX = dY W (the largest quantized tensor), else NULL */
};

/* Per-layer slices of a workspace (layer l; inference reuses one slot). */
static inline size_t ftq_bert_slot(const ftq_bert_ws *ws, int l) { return ws->train ? (size_t)l : 0; }
static inline float *ftq_bert_x(const ftq_bert_ws *ws, int l)
{
    return ws->x + (ws->train ? (size_t)l : (size_t)(l % 2)) * ws->nc;
}

/* Pool the final hidden state of the last forward into out [B, C] (no normalization). */
void ftq_bert_pool_rows(const ftq_bert *m, ftq_bert_ws *ws, ftq_pool pool, float *out);

/* in / out features of block linear k (BERT_LIN_*). */
static inline void ftq_bert_lin_dims(const ftq_bert *m, int k, int *in, int *out)
{
    int C = m->cfg.hidden, F = m->cfg.ffn;
    *in = k == BERT_LIN_FC2 ? F : C;
    *out = k == BERT_LIN_FC1 ? F : C;
}

#endif
