/* model.h - the ftq_model and ftq_session structs (internal). Invariants: every weight is
 * an F32 ftq_tensor, except that linear weights, embeddings and heads loaded from a
 * quantized checkpoint are FTQ_DTYPE_QMAT (data -> an ftq_qmat the model owns, listed in
 * `qmats`), and with FTQ_LOAD_BF16 the others are FTQ_DTYPE_BMAT (data -> an ftq_bmat in
 * `allocs`); every linear weight has shape [out, in] (nn.Linear); a tensor the
 * architecture lacks has data == NULL and ndim == 0. Descriptor names are borrowed from
 * the checkpoint (kept open by the model); data is either a zero-copy view of the mmap
 * (owned == 0) or memory the model allocated (owned == 1, freed through `allocs`). */
#ifndef FTQ_MODEL_INTERNAL_H
#define FTQ_MODEL_INTERNAL_H

#include "ftq.h"
#include "kernels/qlinear.h"

/* One transformer block. Llama: norm = RMSNorm (norm*_b absent), MLP =
 * w_down(silu(w_gate x) * w_up x). GPT-2: norm = LayerNorm, MLP = w_down(act(w_up x + b_up))
 * + b_down with w_up = mlp.c_fc^T and w_down = mlp.c_proj^T; wq/wk/wv are the three column
 * blocks of attn.c_attn, transposed. Shapes (C hidden, Q = n_heads*hd, K = n_kv*hd, F ffn): */
typedef struct {
    ftq_tensor norm1_w, norm1_b; /* [C] */
    ftq_tensor wq, bq;           /* [Q, C], [Q] */
    ftq_tensor wk, bk;           /* [K, C], [K] */
    ftq_tensor wv, bv;           /* [K, C], [K] */
    ftq_tensor wo, bo;           /* [C, Q], [C] */
    ftq_tensor norm2_w, norm2_b; /* [C] */
    ftq_tensor w_gate, b_gate;   /* [F, C], [F]   (llama only) */
    ftq_tensor w_up, b_up;       /* [F, C], [F] */
    ftq_tensor w_down, b_down;   /* [C, F], [C] */
} ftq_layer_weights;

/* A LoRA adapter kept beside a quantized weight w (ftq_model_apply_adapter on a QMAT base,
 * which cannot be merged into): every product with w adds scale (x A^T) B^T, as PEFT's
 * forward does. A [r, in] and B [out, r] (this part's rows of lora_B) are model-owned f32. */
typedef struct {
    const ftq_tensor *w;
    const float *A, *B;
    int r, in, out;
    float scale;
} ftq_side_lora;

struct ftq_model {
    ftq_model_config cfg;
    ftq_checkpoint *ck; /* owned; tensors view into it */
    char *dir;
    ftq_tensor tok_emb;         /* [V, C] */
    ftq_tensor pos_emb;         /* [P, C] (GPT-2 only) */
    ftq_layer_weights *layers;  /* [n_layers] */
    ftq_tensor norm_w, norm_b;  /* final norm [C] (norm_b GPT-2 only) */
    ftq_tensor lm_head;         /* [V, C]; the same data as tok_emb when tied; absent (data
                                   NULL) in an untied sequence classifier */
    ftq_tensor score;           /* [num_labels, C] classifier head (score.weight), else absent */
    int64_t n_params;           /* embeddings counted once when tied */
    void **allocs;              /* every buffer the model owns */
    size_t n_allocs, cap_allocs;
    ftq_qmat **qmats;           /* quantized matrices (their structs are in allocs) */
    size_t n_qmats;
    int n_quantized;            /* tensors of the model that are QMAT (tied head once) */
    ftq_side_lora *side;        /* adapters on quantized weights (model-owned), n_side of them */
    size_t n_side;
};

/* A session: the KV cache [layer][pos][n_kv * hd] (the K/V projections write their rows
 * straight into it, and Q.K^T for one head is one sgemm with leading dimension n_kv*hd),
 * RoPE tables and activations for up to n_batch rows; ftq_session_eval splits longer
 * inputs into chunks of n_batch. */
/* Calibration statistics (pruning, quantization): per layer, the sum over tokens of x_j^2
 * of the input of each kind of linear layer. Arrays are [n_layers][dim]. */
typedef struct {
    double *attn_in; /* [L][C]  input of q/k/v (GPT-2 c_attn) */
    double *o_in;    /* [L][Q]  input of o_proj (attn.c_proj) */
    double *mlp_in;  /* [L][C]  input of gate/up (mlp.c_fc) */
    double *down_in; /* [L][F]  input of down_proj (mlp.c_proj) */
    /* optional (NULL: not collected): the sum over tokens of x x^T of the same inputs, each
     * [L][dim][dim] row-major (GPTQ's Hessian is twice this) */
    float *attn_gram, *o_gram, *mlp_gram, *down_gram;
    /* optional (NULL: not collected): the sum over tokens of |x_j|, [L][dim] (AWQ) */
    double *attn_abs, *o_abs, *mlp_abs, *down_abs;
    int64_t tokens;  /* rows accumulated (per layer) */
    int last_layer;  /* the forward stops after this layer (and computes no logits) */
} ftq_act_stats;

struct ftq_session {
    const ftq_model *m;
    ftq_act_stats *stats;        /* NULL, or statistics to accumulate (all rows, no logits) */
    int n_ctx, n_batch, pos;
    float *k_cache, *v_cache;    /* [L][n_ctx][n_kv*hd] */
    float *rope_cos, *rope_sin;  /* [n_ctx][hd/2] (llama only) */
    float *x;                    /* [B, C] residual stream */
    float *xb;                   /* [B, C] normed input / block outputs */
    float *q;                    /* [B, Q] */
    float *att;                  /* [B, Q] attention output */
    float *hb, *hb2;             /* [B, F] MLP hidden (hb2 llama only) */
    float *scratch;              /* attention scores */
    void *qscratch;              /* activations of the quantized matmuls (NULL if none) */
    void *mem;                   /* one allocation holding all of the above */
};

/* Run n ids through a reset session and write the final-normed hidden state of the last
 * token (hidden_size floats): the input of the LM and classification heads. */
int ftq_session_eval_hidden(ftq_session *s, const int32_t *ids, int n, float *hidden);

/* RoPE of a llama-family config (model/rope.c): inv_freq [min(head_dim / 2, n)] with
 * rope_scaling applied, and the cos / sin tables [n_pos][head_dim / 2] from them (the same
 * tables as ftq_rope_table when there is no scaling). */
void ftq_rope_inv_freq(const ftq_model_config *c, double *inv_freq, int n);
void ftq_model_rope_table(float *cos_t, float *sin_t, int n_pos, const ftq_model_config *c);

/* dst = src's [out, in] matrix as packed bf16 (dtype FTQ_DTYPE_BMAT, an ftq_bmat in the
 * model's allocations): rows [c0, c0 + rows) of src, or, transposed, columns [c0, c0 + rows)
 * of a [in, out_total] src (GPT-2 Conv1D). model/load_bf16.c. */
int ftq_model_bind_bmat(ftq_model *m, ftq_tensor *dst, const ftq_tensor *src, int transposed, int64_t c0,
                        int64_t rows, const char *label);

/* malloc that the model frees with itself (listed in allocs); NULL when out of memory. */
void *ftq_model_alloc(ftq_model *m, size_t bytes);

static inline const float *ftq_tdata(const ftq_tensor *t) { return (const float *)t->data; }

#endif
