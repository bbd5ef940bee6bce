/* ftq_bert_train.h - the pieces for fine-tuning a BERT encoder as a sequence classifier:
 * the loss and the gradient of every parameter for one batch (backward through the
 * classifier, pooler or mean/CLS pooling, post-LN blocks with bidirectional masked
 * attention, erf GELU, and the word / position / token-type embeddings), a new classifier
 * head, prediction, and saving a BertForSequenceClassification directory that HF
 * transformers loads unchanged. The training loop itself is ftq_trainer (ftq_train.h),
 * the same for encoders and decoders (finetune/arch_bert.c adapts these functions to it).
 *
 *     ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, seed);   // a fresh classifier
 *     ftq_bert_forward(m, ws, ids, types, lens, B, T);  // ws made with train = 1
 *     ftq_bert_loss_grad(m, ws, labels, grads, 0, &loss);
 *     ftq_bert_save_classifier(m, "models/all-MiniLM-L6-v2", "out", names, 2);
 */
#ifndef FTQ_BERT_TRAIN_H
#define FTQ_BERT_TRAIN_H

#include "ftq_bert.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Gradients for one batch after ftq_bert_forward on a train workspace: mean cross-entropy
 * of the classifier logits against labels[B] into *loss; dL/dparam ADDED to grads (laid out
 * like the parameters, ftq_bert_num_params floats). Parameters of blocks below first_layer
 * (and the embeddings, if first_layer > 0) get no gradient; first_layer = n_layers + 1
 * leaves the pooler out too (only the classifier). */
int ftq_bert_loss_grad(ftq_bert *m, ftq_bert_ws *ws, const int32_t *labels, float *grads, int first_layer,
                       double *loss);
/* The same with the gradients multiplied by scale (1 / micro-batches for accumulation;
 * scale 1 gives exactly ftq_bert_loss_grad's values). */
int ftq_bert_loss_grad_scaled(ftq_bert *m, ftq_bert_ws *ws, const int32_t *labels, float *grads, int first_layer,
                              float scale, double *loss);
size_t ftq_bert_num_params(const ftq_bert *m);  /* floats in the parameter buffer (aligned slices) */
float *ftq_bert_params(ftq_bert *m);             /* the buffer itself */
/* Name, offset and size of tensor i (0 .. n-1) of the buffer; NULL past the end. */
const char *ftq_bert_tensor_info(const ftq_bert *m, int i, size_t *off, size_t *numel);

/* Predict labels for n texts: pred[n] (argmax); logits [n, num_labels] too unless NULL. */
int ftq_bert_predict(const ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                     size_t n, int max_len, int batch, int32_t *pred, float *logits);

/* Write out_dir (atomically: a temp directory renamed at the end; FTQ_EEXIST-like error if
 * it exists): config.json from src_dir's with architectures BertForSequenceClassification,
 * id2label / label2id and ftq_pool; model.safetensors with HF's names ("bert." prefix,
 * classifier.*); the tokenizer files of src_dir. */
int ftq_bert_save_classifier(const ftq_bert *m, const char *src_dir, const char *out_dir, const char *const *labels,
                             int n_labels);
/* The same files written into the existing directory dir (not atomic: the caller builds
 * dir as a temporary and renames it, as the trainer's checkpoints do). A model with lora
 * adapters gets no model.safetensors (its weights are the adapter, written beside it). */
int ftq_bert_write_classifier(const ftq_bert *m, const char *src_dir, const char *dir, const char *const *labels,
                              int n_labels);

/* Merge the PEFT LoRA adapter in dir (ftq finetune --mode lora, or PEFT's own for
 * BertForSequenceClassification) into the f32 block weights (W += scaling B A) and take its
 * classifier (modules_to_save) as the head, pooled as its config.json's ftq_pool says
 * (pooler by default). On a quantized base (ftq quantize int8 / int4) the adapter is kept
 * beside the weights instead: every adapted product adds scaling (x A^T) B^T. An unknown
 * module, or a module outside the block linears on a quantized base, is refused by name. */
int ftq_bert_apply_adapter(ftq_bert *m, const char *dir);

#ifdef __cplusplus
}
#endif

#endif
