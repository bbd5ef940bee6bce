/* ftq_bert.h - BERT-family encoders (config.json model_type "bert"): BertModel and
 * BertForSequenceClassification checkpoints, with or without the "bert." name prefix.
 * Bidirectional attention with a padding mask, post-LN blocks, exact erf GELU, pooler
 * (dense + tanh), classifier head; sentence-transformers pooling for embeddings.
 *
 *     ftq_bert *m = NULL;
 *     ftq_bert_load("models/all-MiniLM-L6-v2", &m);
 *     ftq_bert_ws *ws = NULL;
 *     ftq_bert_ws_new(m, 8, 128, 0, &ws);            // room for 8 rows of 128 tokens
 *     ftq_bert_forward(m, ws, ids, NULL, lens, B, T); // ids [B*T] right-padded
 *     ftq_bert_pool(m, ws, FTQ_POOL_MEAN, 1, emb);    // B x hidden, L2-normalised
 *     ftq_bert_ws_free(ws);
 *     ftq_bert_free(m);
 *
 * All parameters live in one contiguous f32 buffer (gradients and optimizer moments can
 * share its layout). A model is immutable after loading; a workspace is per thread.
 * ftq_bert_load also reads an ftq int8 / int4 directory (ftq_quantize_model,
 * docs/quant-format.md): its quantized linear weights stay packed for the int8 / int4
 * kernels (never expanded to f32) and the forward runs on them; a training workspace
 * (train = 1) for such a model is refused.
 */
#ifndef FTQ_BERT_H
#define FTQ_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftq_bert ftq_bert;
typedef struct ftq_bert_ws ftq_bert_ws;

typedef enum {
    FTQ_POOL_POOLER = 0, /* [CLS] through the pooler (dense + tanh): HF BertForSequenceClassification */
    FTQ_POOL_MEAN = 1,   /* mean of the last hidden state over the real tokens */
    FTQ_POOL_CLS = 2,    /* the last hidden state of [CLS] */
    FTQ_POOL_MAX = 3     /* element-wise max over the real tokens */
} ftq_pool;

typedef struct {
    int vocab_size, hidden, n_layers, n_heads, head_dim, ffn, max_position, type_vocab;
    float eps;
    int has_pooler;
    int num_labels; /* 0 unless a classifier */
    ftq_pool pool;  /* classification pooling ("ftq_pool" in config.json; pooler by default) */
    char prefix[8]; /* "bert." or "" as in the checkpoint */
} ftq_bert_config;

/* 1 if dir/config.json names model_type "bert" (no other checks). */
int ftq_bert_is_encoder_dir(const char *dir);

/* Load config.json + safetensors. Every expected tensor must be present with the right
 * shape; an unknown tensor is an error (except embeddings.position_ids). */
int ftq_bert_load(const char *dir, ftq_bert **out);
void ftq_bert_free(ftq_bert *m);
const ftq_bert_config *ftq_bert_get_config(const ftq_bert *m);
int64_t ftq_bert_param_count(const ftq_bert *m);

/* Activations for up to max_rows sequences of max_T tokens (max_T <= max_position).
 * train = 1 keeps what the backward pass needs. */
int ftq_bert_ws_new(const ftq_bert *m, int max_rows, int max_T, int train, ftq_bert_ws **out);
void ftq_bert_ws_free(ftq_bert_ws *ws);

/* Encode B right-padded rows of T ids (type_ids NULL: all 0); lens[b] real tokens of row b
 * (1..T). Keys past lens[b] are masked; padded positions get finite, unused outputs. */
int ftq_bert_forward(const ftq_bert *m, ftq_bert_ws *ws, const int32_t *ids, const int32_t *type_ids,
                     const int *lens, int B, int T);
/* The last hidden state of the last forward: [B*T, hidden], row b*T + t. */
const float *ftq_bert_hidden(const ftq_bert *m, const ftq_bert_ws *ws);
/* Pool the last forward into out [B, hidden]; normalize = 1 divides each row by its L2
 * norm (sentence-transformers' Normalize). FTQ_EINVAL for the pooler on a model without. */
int ftq_bert_pool(const ftq_bert *m, ftq_bert_ws *ws, ftq_pool pool, int normalize, float *out);
/* Classifier logits [B, num_labels] of the last forward, pooled as the config says. */
int ftq_bert_classify(const ftq_bert *m, ftq_bert_ws *ws, float *logits);

/* Add (or replace) a classifier head with n_labels outputs: weights normal(0, 0.02) from
 * seed, bias 0 (HF's _init_weights), pooled as `pool` (recorded in the saved config). */
int ftq_bert_add_head(ftq_bert *m, int n_labels, ftq_pool pool, uint64_t seed);

/* Tokenize a text (b NULL) or a pair with the tokenizer's template, truncating the texts
 * (longest first, special tokens kept) to max_len tokens; *truncated = 1 if anything was
 * cut. *ids and *types are malloc'd. */
typedef struct ftq_tokenizer ftq_tokenizer;
int ftq_bert_tokenize(const ftq_tokenizer *tk, const char *a, const char *b, int max_len, int32_t **ids,
                      int32_t **types, size_t *n, int *truncated);

/* Run n texts (texts2 NULL, or the second text of each pair) in right-padded batches of at
 * most `batch` rows of at most max_len tokens; after each forward fn(user, first row, B, ws)
 * reads the workspace (e.g. ftq_bert_pool) and returns 0 to go on. Counts truncated texts
 * and real tokens (either pointer may be NULL). */
typedef int (*ftq_bert_batch_fn)(void *user, size_t row0, int B, ftq_bert_ws *ws);
int ftq_bert_run_texts(const ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                       size_t n, int max_len, int batch, ftq_bert_batch_fn fn, void *user, size_t *n_truncated,
                       int64_t *n_tokens);

/* The n_labels label names of dir/config.json's id2label ("LABEL_<i>" where absent); free
 * with ftq_free_strings(names, n_labels). */
int ftq_bert_load_labels(const char *dir, int n_labels, char ***names);

/* sentence-transformers pooling of a directory: modules.json + 1_Pooling/config.json (mean,
 * cls or max; Normalize if listed). Without those files: mean, normalized. *max_seq (may be
 * NULL) gets sentence_bert_config.json's max_seq_length, or 0 if absent. */
int ftq_bert_st_pooling(const char *dir, ftq_pool *pool, int *normalize, int *max_seq);

#ifdef __cplusplus
}
#endif

#endif
