/* attention_enc.h - bidirectional (encoder) multi-head self-attention with a key padding
 * mask, forward and backward, for BERT-style models. */
#ifndef FTQ_KERNELS_ATTENTION_ENC_H
#define FTQ_KERNELS_ATTENTION_ENC_H

/* B right-padded sequences of T rows; row b*T + t of q, k, v, out has stride ld floats and
 * head h in columns h*hd .. h*hd+hd-1. Query t of sequence b attends to keys 0..lens[b]-1
 * (every query, padded ones included, so all outputs are finite). Scale 1/sqrt(hd).
 * probs [B, H, T, T] receives the softmax, zeros for masked keys (NULL: not kept; each
 * thread uses one row of T floats, and out is NaN if that allocation fails). OpenMP over
 * (b, h); no BLAS call. */
void ftq_attention_enc_forward(float *out, float *probs, const float *q, const float *k, const float *v, int ld,
                               const int *lens, int B, int T, int H, int hd);
/* Double-loop reference (probs required). */
void ftq_attention_enc_forward_ref(float *out, float *probs, const float *q, const float *k, const float *v,
                                   int ld, const int *lens, int B, int T, int H, int hd);
/* Backward from the saved probs: dq, dk, dv (stride ld) are overwritten. */
void ftq_attention_enc_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                                const float *q, const float *k, const float *v, int ld, const int *lens, int B,
                                int T, int H, int hd);

#endif
