/* arch.h - the per-architecture half of the trainer. trainer.c owns the loop, the data,
 * checkpoints, resume, evaluation and logging; everything that depends on the model family
 * sits behind one small table of operations, one file per family (arch_decoder.c: Llama /
 * GPT-2 through ftq_tmodel; arch_bert.c: BERT encoders through ftq_bert). Adding a family
 * is adding a file and a row in arch_table.c; trainer.c never names a family.
 * Calls go one way: trainer.c -> arch_table.c -> arch_*.c -> batch.c / checkpoint.c /
 * model; no arch file calls into trainer.c.
 *
 * Contract of the trainable state an arch exposes (what makes resume exact): one flat f32
 * parameter buffer; the trainable parameters are a contiguous range [offset, offset + n)
 * of it with a gradient buffer of n floats laid out alike, covered by the segments (one per
 * tensor, possibly with alignment padding) that AdamW walks. The optimizer moments and
 * checkpoints follow that layout, so it must be the same in every run with the same args. */
#ifndef FTQ_FINETUNE_ARCH_H
#define FTQ_FINETUNE_ARCH_H

#include "finetune/trainer_internal.h"

typedef struct tarch tarch; /* an arch's own state, opaque to trainer.c */

/* What open() tells the trainer about the source model. */
typedef struct {
    int n_layers;
    int max_position;     /* positions the model has (> 0) */
    int pad_id;           /* id rows are padded with (classify), -1 if none */
    int is_classifier;    /* the source is a sequence classifier: its labels are kept */
    int supports_lm;      /* task lm is possible */
    int default_batch;    /* used when the config's batch_size is 0 */
    double default_lr, default_head_lr; /* used when the config's lr is negative */
    const ftq_tokenizer *tok;           /* for lm data (owned by the arch) */
} tarch_info;

/* What build() makes the trainable model for. */
typedef struct {
    ftq_task task;
    int num_labels;
    ftq_train_mode mode;
    int freeze_layers;
    int init_random;
    uint64_t seed;
    int max_batch, max_seq;
    ftq_precision precision;
    const char *weights_dir; /* NULL: the source; else a checkpoint of this run to continue */
} tarch_build;

typedef struct {
    const char *name; /* "decoder", "bert" */
    /* 1 if this family reads model_dir (the table asks in order; the last row takes the rest) */
    int (*claims)(const char *model_dir);
    /* Read the source's config and tokenizer and check the options that concern the family
     * (task, pooling, sentence pairs, random init). Writes nothing (BERT loads its weights
     * here, the decoders in build). */
    int (*open)(const ftq_train_config *c, tarch **out, tarch_info *info);
    void (*free)(tarch *a);
    /* A checkpoint directory agrees with the source (shapes, classifier or not). */
    int (*check_resume)(tarch *a, const char *dir, ftq_task task);
    /* The label names a classifier directory (source or checkpoint) was saved with. */
    int (*load_labels)(tarch *a, const char *dir, char ***names, int *n);
    /* Tokenize one row (text2 NULL, or the second text of a pair) as the family's classifier
     * sees it, truncated to seq: *ids (and *types, or NULL when the family has none) are
     * malloc'd; *truncated = 1 if tokens were cut. Called concurrently. */
    int (*encode)(const tarch *a, const char *text, const char *text2, int seq, int32_t **ids, int32_t **types,
                  size_t *n, int *truncated);
    /* Load the weights and make the trainable model. */
    int (*build)(tarch *a, const tarch_build *b);
    float *(*params)(tarch *a, size_t *n);
    float *(*grads)(tarch *a, size_t *n_trainable, size_t *offset);
    size_t (*segment_count)(const tarch *a);
    const ftq_param_segment *(*segment)(const tarch *a, size_t i);
    /* Rows idx[0..b) of s: loss (mean over the rows, or the scored tokens for lm) and
     * grads += scale * d loss / d param. A non-finite loss is returned without touching the
     * gradients. *ntok: tokens the encoder / decoder ran forward for this call. */
    int (*train_batch)(tarch *a, const ex_set *s, const uint32_t *idx, int b, float scale, double *loss,
                       int64_t *ntok);
    /* The same rows without gradients; logits [b, num_labels] for classify (may be NULL). */
    int (*eval_batch)(tarch *a, const ex_set *s, const uint32_t *idx, int b, double *loss, float *logits,
                      int64_t *ntok);
    /* The HF model files of the current weights (weights, config.json, tokenizer files) into
     * the existing directory dir. */
    int (*save)(tarch *a, const char *dir, const char *const *labels, int num_labels);
    /* Optional (NULL: nothing to do): work on every row of s done once before training,
     * such as head mode's frozen features. Called on every rank of a distributed run at the
     * same point, so it may split the work across ranks (ftq_dist_*); *ntok: tokens this
     * rank ran forward. */
    int (*prepare)(tarch *a, const ex_set *s, int64_t *ntok);
} tarch_ops;

/* The family that reads model_dir. */
const tarch_ops *tarch_find(const char *model_dir);

extern const tarch_ops tarch_decoder_ops;
extern const tarch_ops tarch_bert_ops;

#endif
