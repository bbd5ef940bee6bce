/* common.h - what several commands share: loading a model directory with its tokenizer,
 * reading the input text, progress bars, number formatting. */
#ifndef FTQ_CMD_COMMON_H
#define FTQ_CMD_COMMON_H

#include <stdio.h>

#include "include/ftq.h"

/* Load model and/or tokenizer from dir (either out-pointer may be NULL). Prints the error
 * and returns 1 on failure. */
int cmd_load(const char *cmd, const char *dir, ftq_model **model, ftq_tokenizer **tok);
/* The same with ftq_model_load_ex flags (FTQ_LOAD_KEEP_QUANT for --keep-quant). */
int cmd_load_ex(const char *cmd, const char *dir, unsigned flags, ftq_model **model, ftq_tokenizer **tok);
/* The architecture config of -m without loading the weights: a GGUF file's metadata or
 * DIR/config.json. FTQ_OK, or a status (with the error set, except FTQ_ENOMEM). */
int cmd_model_config(const char *model, ftq_model_config *mc);
/* The token ids of the calibration text `calib` (--calib) with -m's tokenizer, and the BOS id
 * a sequence starts with (-1: none). 0, or prints and returns the exit code. */
int cmd_calib_ids(const char *cmd, const char *model, const char *calib, int32_t **ids, size_t *n, int *bos);
/* Merge the PEFT adapter `adapter` (NULL: nothing) into a loaded model; prints and returns 1 on failure
 * (the model is freed and set to NULL). */
int cmd_apply_adapter(const char *cmd, const char *adapter, ftq_model **model);
/* --precision of the inference commands: "fp32" (0) or "bf16" (FTQ_LOAD_BF16) added to
 * *flags; a one-line error (returns 2) for another name or bf16 with an adapter to merge. */
int cmd_precision_flags(const char *cmd, const char *precision, const char *adapter, unsigned *flags);
#define PRECISION_HELP "fp32 | bf16: hold weight matrices, embeddings and heads as packed bf16 only (half the " \
    "memory; a BF16 checkpoint is not widened) and multiply on the bf16 kernels (AMX / AVX512-BF16); norms, " \
    "softmax and attention stay fp32"
#define ADAPTER_HELP "PEFT LoRA adapter directory merged into -m on load (ftq finetune --mode lora)"

/* Text from -f FILE or -p TEXT (exactly one must be given). *owned is set to the malloc'd
 * buffer to free (NULL for -p). Prints the error and returns 1 on failure. */
int cmd_input_text(const char *cmd, const char *file, const char *text, const char **out,
                   size_t *len, char **owned);

/* 1234567 -> "1,234,567" (static rotating buffers). */
const char *fmt_count(long long v);

/* A one-line progress bar on stderr if it is a TTY: "[=====>    ] 12/40 label". */
void progress_bar(int done, int total, const char *label);
void progress_done(void);

/* Classification metrics: the column width for label names (8..24), the confusion matrix
 * as a JSON array of rows, and as a text table with the label names. */
int label_width(const char *const *names, int n);
void print_confusion_json(FILE *fp, const ftq_cls_metrics *m);
void print_confusion_text(FILE *fp, const ftq_cls_metrics *m, const char *const *names);

/* --parse-special: text is text unless asked (docs/tokenizers.md). */
#define PARSE_SPECIAL_HELP                                                                            \
    "match special-token text (<|im_start|>, </s>, [SEP]) in the input as those tokens, as HF's "     \
    "tokenizers do; default: read it as plain text, as llama.cpp and sentencepiece do"

/* Print a malloc'd int32 array as a JSON array. */
void json_print_ids(FILE *fp, const int32_t *ids, size_t n);

#endif
