/* kernels.h - fp32 forward kernels of the transformer (internal): free functions on raw
 * row-major pointers with explicit shapes, llm.c style; they know nothing of the model.
 * Every kernel with a fast path (SIMD chosen at run time, BLAS, OpenMP) has a plain scalar
 * `_ref` twin that the tests compare against. No kernel allocates, prints or fails. */
#ifndef FTQ_KERNELS_H
#define FTQ_KERNELS_H

#include <stddef.h>

#include "ftq_core.h"

/* ---- linear layers ------------------------------------------------------------------ */

/* Rows from which a chunk is "batched": ftq_linear_forward and ftq_attention_forward use
 * cblas_sgemm (on OpenBLAS's threads) from FTQ_BATCH_MIN_T rows on, and their own
 * dot-product kernels under OpenMP below it. Keeping the two thread pools apart matters:
 * short OpenMP regions between multi-threaded sgemm calls make libgomp's spinning workers
 * and OpenBLAS's fight for the cores (on 2 cores, 2 threads ran slower than 1). */
#define FTQ_BATCH_MIN_T 8

/* Work (T * in_dim * out_dim multiply-adds) from which a batched linear calls sgemm; below
 * it the dot-product kernel is cheaper than sgemm's packing. */
/* Keep OpenMP and OpenBLAS apart: a stage of `rows` >= FTQ_BATCH_MIN_T rows (its matmuls on
 * OpenBLAS's threads) runs its OpenMP kernels on the calling thread only. Returns what
 * ftq_sgemm_stage_end needs to restore (0 = nothing changed). Never nest two stages. */
int ftq_sgemm_stage_begin(int rows);
void ftq_sgemm_stage_end(int saved);

#define FTQ_SGEMM_MIN_WORK (64L * 64L * 64L)

/* out[T, out_dim] = in[T, in_dim] @ w^T + bias, where w is [out_dim, in_dim] (nn.Linear)
 * and bias is NULL or [out_dim]. The one entry point for every matmul against a weight:
 * it dispatches on w->dtype: F32 (OpenBLAS / dot kernels), QMAT (data -> ftq_qmat; the
 * int8 / int4 kernels of kernels/qlinear.h, OpenMP only), BMAT (data -> ftq_bmat; packed
 * bf16, kernels/bmat.h, OpenMP only). `out` must not alias `in`. Must
 * not be called from inside an OpenMP parallel region (it calls OpenBLAS and opens its
 * own regions).
 * _ex takes the scratch of a quantized product (ftq_linear_scratch_bytes(w, T) bytes, any
 * alignment; unused for F32) and returns FTQ_OK; with scratch NULL a QMAT product uses the
 * stack or one malloc and may return FTQ_ENOMEM. The plain form passes NULL and fills
 * `out` with NaN in that case. */
int ftq_linear_forward_ex(float *out, const float *in, const ftq_tensor *w, const float *bias,
                          int T, int in_dim, int out_dim, void *scratch);
void ftq_linear_forward(float *out, const float *in, const ftq_tensor *w, const float *bias,
                        int T, int in_dim, int out_dim);
/* Scratch bytes ftq_linear_forward_ex needs for T rows (0 for F32 weights). */
size_t ftq_linear_scratch_bytes(const ftq_tensor *w, int T);
/* 1 if products with w run on OpenMP alone (QMAT, BMAT), 0 if on OpenBLAS (F32). */
int ftq_linear_on_omp(const ftq_tensor *w);
/* out[C] = row r of a weight matrix or embedding table w [rows, C] in f32: F32 copied,
 * QMAT and BMAT dequantized (the values their products use). */
void ftq_weight_row(const ftq_tensor *w, int r, float *out);

/* The same on a raw f32 weight pointer, and its naive triple-loop reference. */
void ftq_linear_f32(float *out, const float *in, const float *w, const float *bias, int T,
                    int in_dim, int out_dim);
void ftq_linear_f32_ref(float *out, const float *in, const float *w, const float *bias, int T,
                        int in_dim, int out_dim);

/* sum_i a[i] * b[i] (run-time SIMD selection) and its scalar reference. */
float ftq_dot(const float *a, const float *b, int n);
float ftq_dot_ref(const float *a, const float *b, int n);

/* ---- normalization ------------------------------------------------------------------ */

/* RMSNorm over rows: out[t] = in[t] / sqrt(mean(in[t]^2) + eps) * w. rstd is NULL or [T]
 * (saved for the backward pass). out may equal in. */
void ftq_rmsnorm_forward(float *out, float *rstd, const float *in, const float *w, float eps,
                         int T, int C);
void ftq_rmsnorm_forward_ref(float *out, float *rstd, const float *in, const float *w,
                             float eps, int T, int C);

/* LayerNorm over rows with the biased variance: out = (in - mean) * rstd * w + b.
 * mean, rstd are NULL or [T]; b may be NULL. out may equal in. */
void ftq_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                           const float *b, float eps, int T, int C);
void ftq_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *in,
                               const float *w, const float *b, float eps, int T, int C);

/* ---- elementwise -------------------------------------------------------------------- */

/* GELU, tanh approximation (gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * out may equal in. */
void ftq_gelu_tanh_forward(float *out, const float *in, size_t n);
void ftq_gelu_tanh_forward_ref(float *out, const float *in, size_t n);
/* Exact GELU 0.5 x (1 + erf(x / sqrt 2)); scalar only (erff), OpenMP over chunks. */
void ftq_gelu_erf_forward(float *out, const float *in, size_t n);
/* out = silu(gate) * up, silu(x) = x / (1 + exp(-x)). out may equal gate or up. */
void ftq_silu_mul_forward(float *out, const float *gate, const float *up, size_t n);
void ftq_silu_mul_forward_ref(float *out, const float *gate, const float *up, size_t n);
void ftq_relu_forward(float *out, const float *in, size_t n);
/* x += y */
void ftq_add_inplace(float *x, const float *y, size_t n);

/* ---- rotary position embedding ------------------------------------------------------ */

/* Fill cos/sin tables [n_pos][head_dim/2] for positions 0..n_pos-1: angle = pos *
 * theta^(-2i/head_dim), computed in double (the references are float64). */
void ftq_rope_table(float *cos_t, float *sin_t, int n_pos, int head_dim, double theta);
/* The same for given frequencies inv_freq [half] (scaled RoPE, model/rope.c): angle = pos *
 * inv_freq[i] in double. */
void ftq_rope_table_freqs(float *cos_t, float *sin_t, int n_pos, int half, const double *inv_freq);

/* In-place HF rotate_half RoPE on x [T, n_heads * head_dim] (row stride `stride` floats):
 * pairs (i, i + head_dim/2) of every head of row t rotate by the angle in row t of
 * cos_t/sin_t (already offset to the row's position). */
void ftq_rope_forward(float *x, const float *cos_t, const float *sin_t, int T, int stride,
                      int n_heads, int head_dim);
void ftq_rope_forward_ref(float *x, const float *cos_t, const float *sin_t, int T, int stride,
                          int n_heads, int head_dim);

/* ---- softmax and attention ---------------------------------------------------------- */

/* In-place softmax of one row of n floats (n >= 1). */
void ftq_softmax_forward(float *x, int n);
void ftq_softmax_forward_ref(float *x, int n);

/* From FTQ_BATCH_MIN_T query rows on, ftq_attention_forward uses sgemm per head (blocks of
 * FTQ_ATTN_ROW_BLOCK rows, each against only the keys it can see); below it a per-head
 * dot-product loop under OpenMP. */
#define FTQ_ATTN_ROW_BLOCK 128

/* Causal grouped-query attention of T new queries at positions pos0..pos0+T-1.
 *   q    [T, n_heads * hd]            (row stride n_heads * hd)
 *   k, v [pos0 + T, n_kv * hd]        (the cache rows of one layer; new rows included)
 *   out  [T, n_heads * hd]
 * Query head h reads KV head h / (n_heads / n_kv). Scale 1/sqrt(hd). Query at position p
 * sees keys j with j <= p and, if window > 0, p - j < window (Mistral sliding window).
 * scratch: ftq_attention_scratch_floats(T, pos0 + T, n_heads) floats. */
void ftq_attention_forward(float *out, float *scratch, const float *q, const float *k,
                           const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                           int window);
size_t ftq_attention_scratch_floats(int T, int n_keys, int n_heads);
/* The same for any T with OpenMP over heads and no OpenBLAS call: for forward passes whose
 * matmuls all run on OpenMP (quantized models), so the two thread pools never alternate. */
void ftq_attention_forward_omp(float *out, float *scratch, const float *q, const float *k,
                               const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                               int window);
/* Naive double-loop reference (scratch: n_keys floats). */
void ftq_attention_forward_ref(float *out, float *scratch, const float *q, const float *k,
                               const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                               int window);

/* ==== training: forward helpers and backward passes ===================================
 * (kernels/embedding.c, norm_backward.c, linear_backward.c, act_backward.c,
 * rope_backward.c, attention_train.c, xent.c)
 * Conventions (llm.c): parameter gradients ACCUMULATE (+=); activation gradients are
 * overwritten unless a kernel says otherwise; a NULL gradient pointer skips that output.
 * Reductions over rows (weight and bias gradients, the embedding scatter) give each
 * output element to one thread, which sums the rows in ascending order, so results are
 * bit-identical for any thread count and equal to the single-threaded order. Kernels that
 * call sgemm must not be called from inside an OpenMP parallel region. */

/* ---- embeddings ----------------------------------------------------------------------- */

/* out[b, t] = wte[ids[b, t]] + wpe[t] (wpe NULL: no position embedding). */
void ftq_embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe,
                           int B, int T, int C);
/* dwte[ids[b, t]] += dout[b, t] (rows in ascending (b, t) order); dwpe[t] += sum_b dout[b, t].
 * dwte or dwpe may be NULL. Fast path: OpenMP over channel blocks. */
void ftq_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                            int B, int T, int C);
void ftq_embedding_backward_ref(float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                                int B, int T, int C);

/* ---- normalization backward ----------------------------------------------------------- */

/* RMSNorm y = x * rstd * w (rstd saved by ftq_rmsnorm_forward):
 *   dinp += rstd * (w dy) - rstd^3 / C * x * sum(w dy x)      (dinp NULL: skipped)
 *   dweight += sum_t dy * x * rstd                              (dweight NULL: skipped) */
void ftq_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int T, int C);
void ftq_rmsnorm_backward_ref(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, const float *rstd, int T, int C);

/* LayerNorm y = (x - mean) * rstd * w + b (mean, rstd saved by ftq_layernorm_forward):
 *   dinp += rstd * (w dy - mean(w dy) - xhat * mean(w dy xhat))
 *   dweight += sum_t dy * xhat, dbias += sum_t dy          (each may be NULL) */
void ftq_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int T, int C);
void ftq_layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *mean,
                                const float *rstd, int T, int C);

/* ---- linear backward ------------------------------------------------------------------ */

/* For out = inp @ weight^T + bias (inp [T, in_dim], weight [out_dim, in_dim]):
 *   dinp  = dout @ weight          (overwritten, or += if accumulate_dinp)
 *   dweight += dout^T @ inp,  dbias += colsum(dout)
 * Any of dinp, dweight, dbias may be NULL. Matmuls are single sgemm calls over all rows. */
void ftq_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int T, int in_dim, int out_dim,
                         int accumulate_dinp);
void ftq_linear_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int T, int in_dim,
                             int out_dim, int accumulate_dinp);
/* dbias[o] += sum_t dout[t, o] (rows in ascending order). */
void ftq_colsum_accumulate(float *dbias, const float *dout, int T, int out_dim);

/* ---- elementwise backward ----------------------------------------------------------- */

/* dinp = dout * f'(inp) for the activations above; dinp may equal dout. */
void ftq_gelu_tanh_backward(float *dinp, const float *inp, const float *dout, size_t n);
void ftq_gelu_tanh_backward_ref(float *dinp, const float *inp, const float *dout, size_t n);
void ftq_gelu_erf_backward(float *dinp, const float *inp, const float *dout, size_t n);
void ftq_relu_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* out = silu(gate) * up: dgate = dout * up * silu'(gate), dup = dout * silu(gate).
 * dgate may equal dout. */
void ftq_silu_mul_backward(float *dgate, float *dup, const float *gate, const float *up,
                           const float *dout, size_t n);
void ftq_silu_mul_backward_ref(float *dgate, float *dup, const float *gate, const float *up,
                               const float *dout, size_t n);

/* ---- rotary embedding backward ------------------------------------------------------ */

/* In place on the gradient dx (same layout and tables as ftq_rope_forward): the inverse
 * (transposed) rotation, (da, db) <- (da c + db s, db c - da s). */
void ftq_rope_backward(float *dx, const float *cos_t, const float *sin_t, int T, int stride,
                       int n_heads, int head_dim);
void ftq_rope_backward_ref(float *dx, const float *cos_t, const float *sin_t, int T, int stride,
                           int n_heads, int head_dim);

/* ---- attention for training ----------------------------------------------------------- */

/* Causal grouped-query self-attention over B independent sequences of T positions.
 *   q    [B*T rows, row stride ldq]; query head h is columns h*hd .. h*hd+hd-1
 *   k, v [B*T rows, row stride ldkv]; KV head g = h / (n_heads / n_kv)
 *   out  [B*T rows, row stride ldo]
 *   probs [B, n_heads, T, T]: row t holds the softmax over keys 0..t and zeros after
 *         (saved for the backward pass).
 * Scale 1/sqrt(hd). Per (b, h): one sgemm for the scores, the masked softmax, one sgemm
 * for probs @ V. */
void ftq_attention_train_forward(float *out, int ldo, float *probs, const float *q, int ldq,
                                 const float *k, const float *v, int ldkv, int B, int T,
                                 int n_heads, int n_kv, int hd);
void ftq_attention_train_forward_ref(float *out, int ldo, float *probs, const float *q, int ldq,
                                     const float *k, const float *v, int ldkv, int B, int T,
                                     int n_heads, int n_kv, int hd);
/* Backward: dq [B*T, lddq] is overwritten; dk, dv [B*T, lddkv] are overwritten with the
 * sum over the query heads sharing each KV head, added in ascending head order.
 * scratch: T*T floats. */
void ftq_attention_train_backward(float *dq, int lddq, float *dk, float *dv, int lddkv,
                                  float *scratch, const float *dout, int ldo, const float *probs,
                                  const float *q, int ldq, const float *k, const float *v,
                                  int ldkv, int B, int T, int n_heads, int n_kv, int hd);
void ftq_attention_train_backward_ref(float *dq, int lddq, float *dk, float *dv, int lddkv,
                                      float *scratch, const float *dout, int ldo,
                                      const float *probs, const float *q, int ldq,
                                      const float *k, const float *v, int ldkv, int B, int T,
                                      int n_heads, int n_kv, int hd);

/* ---- softmax cross-entropy ---------------------------------------------------------- */

/* N rows of V logits against targets (a negative target, e.g. -100, is not scored). In
 * place: each row of x becomes its softmax; losses[i] = logsumexp(row) - row[target]
 * (0 for unscored rows). Returns the number of scored rows. */
int ftq_xent_forward(float *x, float *losses, const int32_t *targets, int N, int V);
int ftq_xent_forward_ref(float *x, float *losses, const int32_t *targets, int N, int V);
/* In place on the softmax from ftq_xent_forward: x = (x - onehot(target)) * dloss for
 * scored rows, 0 for unscored rows (the gradient of dloss * sum of losses). */
void ftq_xent_backward(float *x, const int32_t *targets, float dloss, int N, int V);
void ftq_xent_backward_ref(float *x, const int32_t *targets, float dloss, int N, int V);

/* gram[dim][dim] += x^T x over the T rows of x [T, dim] (float accumulation, one sgemm). */
void ftq_gram_accumulate(float *gram, const float *x, int T, int dim);

#endif
