/* bert_calib.h - calibration statistics of a BERT encoder's block inputs (internal), shared
 * by Wanda pruning (quant/prune_arch_bert.c) and calibrated quantization
 * (quant/quantize_arch_bert.c): windows of ctx tokens (bos first when >= 0) of the
 * calibration ids, 8 windows per forward pass, every token real (full windows). */
#ifndef FTQ_QUANT_BERT_CALIB_H
#define FTQ_QUANT_BERT_CALIB_H

#include "model/bert_internal.h"

typedef struct {
    const int32_t *ids; /* the calibration text's ids (no BOS) */
    size_t n;
    int ctx;            /* tokens per window, bos included (clamped to max_position) */
    int bos;            /* -1: none */
} ftq_bert_calib;

/* sum[FTQ_BERT_IN_X .. FTQ_BERT_IN_G][j] = the sum over the calibration tokens of x_j^2 of
 * block l's four inputs (the hidden state for query / key / value, the attention output,
 * the post-LN hidden state, the GELU output), each array zeroed first (C, C, C and ffn
 * doubles); *tokens = the tokens summed. `what` names the caller in messages ("prune",
 * "quantize"). FTQ_EINVAL (bad context, fewer tokens than a window), FTQ_ENOMEM. */
int ftq_bert_block_input_sums(const ftq_bert *m, const ftq_bert_calib *cal, int l, const char *what,
                              double *sum[FTQ_BERT_IN_NONE], int64_t *tokens);

/* The same sums for every block at once from one forward pass per batch (a training
 * workspace keeps each block's activations): sums [n_layers][FTQ_BERT_IN_NONE][max(C, ffn)]
 * doubles, zeroed first. For calibration on the unquantized encoder (Wanda needs each block
 * after the earlier ones are pruned, so it takes the one above per block). */
int ftq_bert_input_sums_all(const ftq_bert *m, const ftq_bert_calib *cal, const char *what, double *sums,
                            int64_t *tokens);

#endif
