/* bert_bf16.h - bf16 mixed-precision training of a BERT classifier (internal; see
 * bert_bf16.c). */
#ifndef FTQ_FINETUNE_BERT_BF16_H
#define FTQ_FINETUNE_BERT_BF16_H

#include "ftq_bert.h"
#include "kernels/linear_bf16.h"

/* A new set (freed with ftq_bf16_set_free + free) of the weight matrices a bf16 run of m
 * multiplies, after its head was added, for batches of up to max_batch x max_seq tokens:
 *   first_layer <= n_layers (modes full / frozen): the six linears of every block (blocks
 *     below first_layer frozen: packed once, no backward), the pooler when it pools, and the
 *     classifier. Attach it as m->bf16: ftq_bert_forward and ftq_bert_loss_grad use it.
 *   first_layer > n_layers (mode head): only the classifier, for the steps on cached
 *     features; the frozen encoder that computes the features stays fp32.
 * FTQ_EUNSUPPORTED for a quantized model or one with LoRA adapters. */
int ftq_bert_bf16_new(const ftq_bert *m, int first_layer, int max_batch, int max_seq, ftq_bf16_set **out);

#endif
