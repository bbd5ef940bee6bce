/* ftq_bert_train.h - fine-tuning a BERT encoder as a sequence classifier: the loss and the
 * gradient of every parameter for one batch (backward through the classifier, pooler or
 * mean/CLS pooling, post-LN blocks with bidirectional masked attention, erf GELU, and the
 * word / position / token-type embeddings), a training loop (AdamW, linear decay, global
 * norm clipping, dynamic padding) in full, frozen and head-only modes, and saving a
 * BertForSequenceClassification directory that HF transformers loads unchanged.
 *
 *     ftq_bert_train_params p = ftq_bert_train_default_params();
 *     ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, seed);   // a fresh classifier
 *     ftq_bert_train(m, tok, texts, NULL, labels, n, &p, NULL, NULL, &report);
 *     ftq_bert_save_classifier(m, "models/all-MiniLM-L6-v2", "out", names, 2);
 */
#ifndef FTQ_BERT_TRAIN_H
#define FTQ_BERT_TRAIN_H

#include "ftq_bert.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FTQ_BERT_FULL = 0,   /* every parameter */
    FTQ_BERT_FROZEN = 1, /* embeddings and the first n_frozen blocks fixed */
    FTQ_BERT_HEAD = 2    /* only the classifier, on features computed once (a cache) */
} ftq_bert_mode;

/* Gradients for one batch after ftq_bert_forward on a train workspace: mean cross-entropy
 * of the classifier logits against labels[B] into *loss; dL/dparam ADDED to grads (laid out
 * like the parameters, ftq_bert_num_params floats). Parameters of blocks below first_layer
 * (and the embeddings, if first_layer > 0) get no gradient; first_layer = n_layers + 1
 * leaves the pooler out too (only the classifier). */
int ftq_bert_loss_grad(ftq_bert *m, ftq_bert_ws *ws, const int32_t *labels, float *grads, int first_layer,
                       double *loss);
size_t ftq_bert_num_params(const ftq_bert *m);  /* floats in the parameter buffer (aligned slices) */
float *ftq_bert_params(ftq_bert *m);             /* the buffer itself */
/* Name, offset and size of tensor i (0 .. n-1) of the buffer; NULL past the end. */
const char *ftq_bert_tensor_info(const ftq_bert *m, int i, size_t *off, size_t *numel);

/* Add (or replace) a classifier head with n_labels outputs: weights normal(0, 0.02) from
 * seed, bias 0 (HF's _init_weights), pooled as `pool` (recorded in the saved config). */
int ftq_bert_add_head(ftq_bert *m, int n_labels, ftq_pool pool, uint64_t seed);

typedef struct {
    ftq_bert_mode mode;
    int n_frozen;          /* FROZEN: blocks kept fixed (default 3) */
    int epochs;            /* 1 */
    int batch;             /* 32 */
    int max_len;           /* 64 */
    double lr;             /* 5e-5 (HEAD: 1e-3) */
    double weight_decay;   /* 0 (HF Trainer's default) */
    double max_grad_norm;  /* 1.0 */
    double warmup_ratio;   /* 0 */
    uint64_t seed;         /* 42 */
} ftq_bert_train_params;

ftq_bert_train_params ftq_bert_train_default_params(void);

typedef struct {
    int64_t steps, tokens; /* optimizer steps, real (unpadded) training tokens */
    size_t truncated;      /* training texts cut to max_len */
    double seconds, last_loss, mean_loss;
    double feature_seconds; /* HEAD: the one forward pass over the data */
} ftq_bert_train_report;

/* Progress callback (may be NULL): step, total steps, loss, lr; return non-zero to stop. */
typedef int (*ftq_bert_progress_fn)(void *user, int64_t step, int64_t total, double loss, double lr);

/* Train the model's classifier (ftq_bert_add_head first) on n labeled texts (texts2: the
 * second text of each pair, or NULL). */
int ftq_bert_train(ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                   const int32_t *labels, size_t n, const ftq_bert_train_params *p, ftq_bert_progress_fn fn,
                   void *user, ftq_bert_train_report *report);

/* Predict labels for n texts: pred[n] (argmax). */
int ftq_bert_predict(const ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                     size_t n, int max_len, int batch, int32_t *pred);

/* Write out_dir (atomically: a temp directory renamed at the end; FTQ_EEXIST-like error if
 * it exists): config.json from src_dir's with architectures BertForSequenceClassification,
 * id2label / label2id and ftq_pool; model.safetensors with HF's names ("bert." prefix,
 * classifier.*); the tokenizer files of src_dir. */
int ftq_bert_save_classifier(const ftq_bert *m, const char *src_dir, const char *out_dir, const char *const *labels,
                             int n_labels);

#ifdef __cplusplus
}
#endif

#endif
