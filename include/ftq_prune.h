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

#ifdef __cplusplus
}
#endif

#endif
