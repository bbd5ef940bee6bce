/* trainer_internal.h - what the trainer's files share: tokenized example sets and batch
 * assembly (batch.c), output directories, config.json edits, optimizer and trainer state
 * files (checkpoint.c). Not part of the public API. */
#ifndef FTQ_TRAINER_INTERNAL_H
#define FTQ_TRAINER_INTERNAL_H

#include <cjson/cJSON.h>

#include "ftq.h"

/* ---- examples (batch.c) ---- */

/* n token sequences, back to back: example i is tok[off[i] .. off[i+1]). */
typedef struct {
    size_t n;
    size_t *off;    /* n + 1 */
    int32_t *tok;
    int32_t *type;  /* token types (segment A / B of a pair) like tok, or NULL (all 0) */
    int32_t *label; /* classify: n labels (-1 = unlabeled); NULL for lm */
    size_t *line;   /* classify: source line of each example (for messages); NULL for lm */
    size_t max_len;
    size_t truncated; /* classify: rows cut to the sequence length */
} ex_set;

void ex_set_free(ex_set *s);

/* Tokenize one row (text2: the second text of a pair, or NULL) truncated to seq: *ids and
 * *types (NULL when there are none) malloc'd, *truncated = 1 if tokens were cut. Must be
 * safe to call from several threads at once. */
typedef int (*ex_encode_fn)(const void *ctx, const char *text, const char *text2, int seq, int32_t **ids,
                            int32_t **types, size_t *n, int *truncated);

/* Tokenize rows [0, limit) of a dataset (limit 0 = all) with enc (d2: the same rows read
 * with the second text column, or NULL). A row with no tokens is an error naming its line,
 * or skipped (counted in *skipped) with skip_bad; rows cut to seq are counted in
 * out->truncated. */
int ex_build_classify(const ftq_dataset *d, const ftq_dataset *d2, ex_encode_fn enc, const void *ctx, int seq,
                      size_t limit, int skip_bad, ex_set *out, size_t *skipped);

/* Documents of a plain text: runs of lines separated by blank lines (lines holding only
 * spaces, tabs or CR). Fills starts / lens (malloc'd) with pointers into text. */
int ex_split_documents(const char *text, size_t len, const char ***starts, size_t **lens, size_t *n);

/* HF run_clm: each document tokenized with add_special (BOS where the tokenizer adds one),
 * EOS appended if the tokenizer has one and does not add it itself, everything
 * concatenated and cut into blocks of seq tokens. The tail shorter than seq is dropped
 * (group_texts) unless keep_tail and it has >= 2 tokens. limit 0 = all blocks. */
int ex_build_lm(const char *const *docs, const size_t *lens, size_t ndocs, const ftq_tokenizer *tok,
                int seq, size_t limit, int keep_tail, ex_set *out);

/* FNV-1a over the tokens, offsets, labels and token types (when present): identifies the
 * training data on resume. */
uint64_t ex_fingerprint(const ex_set *s);

/* Assemble a batch of the examples idx[0..b): ids [b x T] right-padded with pad, lens[b],
 * T = the longest row. classify: targets[b] = labels; lm: targets [b x T] = next token,
 * FTQ_IGNORE_INDEX at the last position of each row and on padding. *ntok = tokens that
 * are not padding. */
void batch_fill(const ex_set *s, const uint32_t *idx, int b, int task, int32_t pad, int32_t *ids,
                int32_t *lens, int32_t *targets, int *T, int64_t *ntok);

/* ---- files (checkpoint.c) ---- */

/* mkdir -p; *created = 1 if the last component did not exist before. */
int ckpt_mkdir_p(const char *path, int *created);
void ckpt_fsync_dir(const char *path);

/* Write config.json for the output: the source config.json with the task's edits, unknown
 * keys preserved. classify: architectures [<Family>ForSequenceClassification], id2label,
 * label2id, num_labels, pad_token_id, problem_type; both: torch_dtype "float32". */
int ckpt_write_config(const char *src_config, const char *dst, const ftq_model_config *cfg, int task,
                      const char *const *labels, int num_labels, int pad_id);

/* optimizer.safetensors: F32 tensors "exp_avg" and "exp_avg_sq" of n elements, metadata
 * step. Reading checks the shapes. */
int ckpt_write_optimizer(const char *path, const float *m, const float *v, size_t n, int64_t step);
int ckpt_read_optimizer(const char *path, float *m, float *v, size_t n);

/* Write a cJSON value atomically (pretty-printed). */
int ckpt_write_json(const char *path, const cJSON *j);
/* Read and parse a JSON file (message names the file). */
int ckpt_read_json(const char *path, cJSON **out);

/* Compare the "args" object of a checkpoint with the current run's: the first key whose
 * value differs is an FTQ_EINVAL error naming it as a flag ("--lr 0.001 differs from the
 * checkpoint's 5e-05"). */
int ckpt_check_args(const cJSON *saved, const cJSON *now, const char *dir);

#endif
