/* ftq_prune.h - weight pruning: unstructured magnitude, N:M semi-structured, and Wanda.
 *
 * All functions work on one row-major weight matrix W [rows = out, cols = in] (nn.Linear
 * layout) and zero the pruned entries in place. Selection is exact and deterministic: a
 * request for sparsity s over n candidates prunes exactly round(s * n) of them, the lowest
 * scores first, ties broken by position (lower index pruned first).
 *
 *     ftq_prune_magnitude(w, rows, cols, 0.5f, FTQ_PRUNE_ROW);       // 50 % of every row
 *     ftq_prune_nm(w, rows, cols, 2, 4);                             // 2:4
 *     ftq_prune_wanda(w, rows, cols, act_norm, 0.5f, 0, 0);          // Wanda, 50 % per row
 *
 * Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs"): the score of
 * W[i][j] is |W[i][j]| * ||X_j||, where ||X_j|| is the L2 norm of input feature j over the
 * calibration tokens (ftq uses sqrt(mean x_j^2), which ranks identically within a row), and
 * weights are compared within each output row.
 */
#ifndef FTQ_PRUNE_H
#define FTQ_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FTQ_PRUNE_TENSOR = 0, /* the lowest |w| of the whole matrix */
    FTQ_PRUNE_ROW = 1,    /* the same fraction of every output row */
} ftq_prune_scope;

/* Magnitude pruning of one matrix. sparsity in [0, 1]. */
int ftq_prune_magnitude(float *w, int64_t rows, int64_t cols, float sparsity, ftq_prune_scope scope);

/* N:M: in every group of m consecutive input weights of a row keep the n largest |w|
 * (ties: the lower index is kept). cols must be a multiple of m; 0 < n < m. */
int ftq_prune_nm(float *w, int64_t rows, int64_t cols, int n, int m);

/* Wanda: act_norm [cols] >= 0 (finite). With n_m > 0 the scores are used N:M-style (keep n
 * of every m) instead of a per-row fraction. */
int ftq_prune_wanda(float *w, int64_t rows, int64_t cols, const float *act_norm, float sparsity,
                    int n, int m);

/* Global magnitude threshold over several matrices: the |w| value t such that pruning every
 * entry with |w| < t (and ties as described above, in the order of the arrays) removes
 * round(sparsity * total) entries. ftq_prune_global applies it. */
typedef struct {
    float *w;
    int64_t n; /* elements */
} ftq_prune_span;
int ftq_prune_global(ftq_prune_span *spans, size_t n_spans, float sparsity);

/* Zeros in w[0..n) (exact 0.0f or -0.0f). */
int64_t ftq_count_zeros(const float *w, int64_t n);

/* ---- whole models ------------------------------------------------------------------ */

typedef enum {
    FTQ_PRUNE_MAGNITUDE = 0,
    FTQ_PRUNE_NM = 1,
    FTQ_PRUNE_WANDA = 2,
} ftq_prune_method;

#define FTQ_PRUNE_GLOBAL 2 /* a third scope for whole models: one threshold over every linear */

typedef struct {
    ftq_prune_method method;
    float sparsity;          /* magnitude / wanda */
    int n, m;                /* nm; wanda with n:m when m > 0 */
    int scope;               /* FTQ_PRUNE_TENSOR, FTQ_PRUNE_ROW or FTQ_PRUNE_GLOBAL (magnitude) */
    const int32_t *calib;    /* wanda: calibration token ids (the whole text, no BOS) */
    size_t n_calib;
    int calib_ctx;           /* wanda: tokens per calibration window (default 256) */
    int calib_bos;           /* BOS id to start each window with, -1 for none */
    int include_embeddings;  /* also prune the token (and position) embeddings (magnitude, nm) */
    int include_head;        /* also prune an untied lm_head / classifier score (magnitude, nm) */
} ftq_prune_params;

ftq_prune_params ftq_prune_default_params(void);

typedef struct {
    char *name;      /* HF tensor name */
    int64_t numel;
    int64_t zeros;   /* after pruning */
} ftq_prune_tensor_report;

typedef struct {
    ftq_prune_tensor_report *tensors; /* the pruned tensors, in file order */
    size_t n_tensors;
    int64_t pruned_numel, pruned_zeros; /* over the pruned tensors */
    int64_t model_numel, model_zeros;   /* over every parameter of the checkpoint */
    int64_t calib_tokens;
} ftq_prune_report;

/* Prune the linear layers of the model in in_dir (embeddings, norms and heads stay dense
 * unless asked; a BERT encoder's heads are its pooler and classifier, and Wanda calibrates
 * it on windows of calib_ctx tokens, at most its positions, with calib_bos first if >= 0) and write a normal HF checkpoint to out_dir (same tensor names, layouts
 * and dtypes; config and tokenizer files copied), atomically as a whole directory.
 * Wanda runs layer by layer: the calibration inputs of block l come from the model with
 * blocks < l already pruned (as the reference implementation does). */
int ftq_prune_model(const char *in_dir, const char *out_dir, const ftq_prune_params *p,
                    ftq_prune_report *report);
void ftq_prune_report_free(ftq_prune_report *r);

#ifdef __cplusplus
}
#endif

#endif
