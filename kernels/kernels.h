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
#define FTQ_SGEMM_MIN_WORK (64L * 64L * 64L)

/* out[T, out_dim] = in[T, in_dim] @ w^T + bias, where w is [out_dim, in_dim] (nn.Linear)
 * and bias is NULL or [out_dim]. The one entry point for every matmul against a weight:
 * it dispatches on w->dtype (only F32 today; the loader rejects anything else). `out` must
 * not alias `in`. Must not be called from inside an OpenMP parallel region (it calls
 * OpenBLAS and opens its own regions). */
void ftq_linear_forward(float *out, const float *in, const ftq_tensor *w, const float *bias,
                        int T, int in_dim, int out_dim);

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
/* Naive double-loop reference (scratch: n_keys floats). */
void ftq_attention_forward_ref(float *out, float *scratch, const float *q, const float *k,
                               const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                               int window);

#endif
