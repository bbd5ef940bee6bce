/* ftq_train.h - fine-tuning: the trainable model (forward with saved activations, hand-
 * written backward, flat parameter / gradient buffers), AdamW, and the trainer.
 *
 * Layout (llm.c style): all parameters live in ONE float buffer in the order
 *   embeddings (tok, pos) | block 0 | block 1 | ... | block L-1 | final norm | lm_head
 *   (untied LM only) | score (classification head, classify only)
 * so the trainable parameters of every mode are a contiguous suffix of it:
 *   full    everything (offset 0)
 *   frozen  blocks K.. onward (embeddings and the first K blocks frozen; with tied
 *           embeddings the output layer is the frozen embedding matrix)
 *   head    only the classification head `score` (task classify)
 * Gradients and the AdamW moments are allocated for that suffix only, and the backward
 * pass stops at the lowest trainable block. Linear weights are [out, in] (GPT-2 Conv1D
 * weights are transposed on the way in and out).
 *
 *     ftq_tmodel_params tp = ftq_tmodel_default_params();
 *     tp.task = FTQ_TASK_CLASSIFY; tp.num_labels = 2; tp.mode = FTQ_TRAIN_FULL;
 *     ftq_tmodel *tm = NULL;
 *     ftq_tmodel_new(model, &tp, &tm);
 *     ftq_tmodel_zero_grad(tm);
 *     ftq_tmodel_forward(tm, ids, lengths, B, T, labels, &loss, NULL);
 *     ftq_tmodel_backward(tm, 1.0f);
 *     // optimizer over ftq_tmodel_param_buffer() / ftq_tmodel_grad_buffer() ...
 *
 * Determinism: for the same inputs and thread count every function here gives bit-identical
 * results (no floating-point atomics, no OpenMP reductions whose order can vary).
 */
#ifndef FTQ_TRAIN_H
#define FTQ_TRAIN_H

#include "ftq_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FTQ_TASK_LM = 0, FTQ_TASK_CLASSIFY = 1 } ftq_task;
typedef enum { FTQ_TRAIN_FULL = 0, FTQ_TRAIN_FROZEN = 1, FTQ_TRAIN_HEAD = 2, FTQ_TRAIN_LORA = 3 } ftq_train_mode;

/* LoRA (mode lora), as PEFT's LoraConfig: every targeted linear y = x W^T + b gains
 * scaling * (dropout(x) A^T) B^T with A [r, in] Kaiming-uniform (a = sqrt(5), i.e.
 * U(-1/sqrt(in), 1/sqrt(in))), B [out, r] zero, scaling = alpha / r (rsLoRA: alpha /
 * sqrt(r)). Only A, B (and a classification head, PEFT's modules_to_save) train. */
typedef struct {
    int r;               /* rank (default 8) */
    double alpha;        /* lora_alpha (default 8) */
    double dropout;      /* lora_dropout in [0, 1) (default 0) */
    int rslora;          /* use_rslora */
    const char *targets; /* comma-separated module names (q_proj, ..., GPT-2 c_attn, c_proj, c_fc;
                            BERT query, key, value, dense) or "all-linear"; NULL: the family's
                            PEFT default (Llama q_proj,v_proj; GPT-2 c_attn; BERT query,value) */
} ftq_lora_params;

ftq_lora_params ftq_lora_default_params(void);
/* FTQ_EINVAL unless 1 <= r <= 4096, alpha > 0 and 0 <= dropout < 1. */
int ftq_lora_check(const ftq_lora_params *p);
/* Arithmetic of the matmuls with weights. bf16 is mixed precision (autocast's split): fp32
 * master weights, gradients and optimizer state; the weight matrices' matmuls (forward,
 * input gradient, weight gradient) take bf16 copies of their operands and accumulate in
 * fp32; norms, attention, softmax, loss and reductions stay fp32. */
typedef enum { FTQ_PRECISION_FP32 = 0, FTQ_PRECISION_BF16 = 1 } ftq_precision;
const char *ftq_precision_name(ftq_precision p);                  /* "fp32", "bf16" */
int ftq_precision_from_name(const char *name, ftq_precision *out); /* FTQ_EINVAL if unknown */

#define FTQ_IGNORE_INDEX (-100) /* LM target that is not scored (HF's ignore_index) */

typedef struct {
    ftq_task task;
    int num_labels;       /* classify: size of the head */
    ftq_train_mode mode;
    int freeze_layers;    /* frozen: K */
    int init_random;      /* re-initialize every weight as HF's _init_weights does
                             (normal(0, initializer_range) matrices and embeddings, norms 1,
                             biases 0) instead of using the pretrained values */
    uint64_t seed;        /* for the new head and for init_random */
    float init_std;       /* initializer_range (default 0.02) */
    int max_batch;        /* activation buffers are sized for max_batch x max_seq */
    int max_seq;
    ftq_lora_params lora; /* mode lora */
    ftq_precision precision; /* bf16: the weight matrices also live as packed bf16 copies
                                (4 bytes per weight more), refreshed from the fp32 weights by
                                the first forward after a backward or after
                                ftq_tmodel_params_updated */
} ftq_tmodel_params;

ftq_tmodel_params ftq_tmodel_default_params(void);

typedef struct ftq_tmodel ftq_tmodel;

/* Copy the weights of `m` into the flat buffer and add a head as the task needs. If `m`
 * is a sequence classifier checkpoint (config architectures *ForSequenceClassification,
 * tensor score.weight) its head is used; otherwise a new head is drawn from
 * normal(0, init_std) with `seed`. */
int ftq_tmodel_new(const ftq_model *m, const ftq_tmodel_params *p, ftq_tmodel **out);
void ftq_tmodel_free(ftq_tmodel *tm);

/* Forward on B rows of T ids (row-major [B, T]).
 *   LM:       targets [B*T], FTQ_IGNORE_INDEX = not scored; loss = mean cross-entropy over
 *             scored targets (HF: labels shifted by the caller: targets[t] = ids[t+1]).
 *   classify: targets [B] labels; row b is pooled at position lengths[b] - 1 (the last
 *             non-padding token, right padding); loss = mean cross-entropy over rows.
 * lengths may be NULL (every row T long). logits (optional): classify [B, num_labels]. */
int ftq_tmodel_forward(ftq_tmodel *tm, const int32_t *ids, const int32_t *lengths, int B, int T,
                       const int32_t *targets, float *loss, float *logits);

/* Backward of the last forward: grads += scale * d loss / d param for the trainable
 * parameters (scale = 1 / grad_accum for accumulation). */
int ftq_tmodel_backward(ftq_tmodel *tm, float scale);
/* Mode lora: on, the forwards that follow apply lora dropout (a fresh mask each forward,
 * which its backward reuses); off (the default), dropout is the identity (evaluation). */
void ftq_tmodel_set_training(ftq_tmodel *tm, int on);
/* Mode lora: write a PEFT adapter into the existing directory dir: adapter_config.json
 * (peft_type LORA, task_type CAUSAL_LM / SEQ_CLS, modules_to_save ["score"] for classify)
 * and adapter_model.safetensors (base_model.model.<module>.lora_A.weight [r, in],
 * .lora_B.weight [out, r], classify: base_model.model.score.weight). base_name goes to
 * base_model_name_or_path. */
int ftq_tmodel_save_adapter(const ftq_tmodel *tm, const char *dir, const char *base_name);
/* Mode lora: read every adapter tensor (and the head) of the layout from
 * dir/adapter_model.safetensors by its PEFT name; FTQ_EFORMAT naming a missing tensor or
 * a wrong shape. */
int ftq_tmodel_load_adapter(ftq_tmodel *tm, const char *dir);
void ftq_tmodel_zero_grad(ftq_tmodel *tm);

/* The flat buffers. params has n entries; the trainable ones are params[offset ..
 * offset + n_trainable), and grads has n_trainable entries. */
float *ftq_tmodel_param_buffer(ftq_tmodel *tm, size_t *n);
float *ftq_tmodel_grad_buffer(ftq_tmodel *tm, size_t *n_trainable);
size_t ftq_tmodel_trainable_offset(const ftq_tmodel *tm);
/* Tell a bf16 model its fp32 parameters were written by something other than an optimizer
 * step after a backward (which the model assumes: a backward marks the bf16 copies of the
 * trainable weights stale, the next forward converts them once). No-op for fp32. */
void ftq_tmodel_params_updated(ftq_tmodel *tm);

/* The trainable range as named segments (one per HF tensor), for weight decay (decay = 0
 * for norms, biases and embeddings), logging and tests. Offsets are into params. */
typedef struct {
    const char *name; /* HF tensor name */
    size_t offset, size;
    int decay;
} ftq_param_segment;
size_t ftq_tmodel_segment_count(const ftq_tmodel *tm);          /* trainable segments */
const ftq_param_segment *ftq_tmodel_segment(const ftq_tmodel *tm, size_t i);

const ftq_model_config *ftq_tmodel_config(const ftq_tmodel *tm);

/* Write every parameter as an HF checkpoint file (names and layouts exactly as HF's
 * *ForCausalLM / *ForSequenceClassification state dict; Conv1D transposed back; tied
 * output omitted), atomically. */
int ftq_tmodel_save_weights(const ftq_tmodel *tm, const char *path);

/* ---- AdamW ------------------------------------------------------------------------- */

typedef struct {
    float beta1, beta2, eps, weight_decay;
} ftq_adamw_params;

/* One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p, bias-corrected
 * moments; step counts from 1) on n elements. */
void ftq_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                      const ftq_adamw_params *ap, int64_t step, int decay);

/* ---- trainer ----------------------------------------------------------------------
 * The fine-tuning loop around the engine above: data -> batches -> forward / backward ->
 * global-norm clipping -> AdamW with a warmup schedule, evaluation, checkpoints, resume.
 *
 *     ftq_train_config c = ftq_train_default_config();
 *     c.model_dir = "models/stories260K";
 *     c.train_source = "sst2/train.tsv"; c.dev_source = "sst2/dev.tsv";
 *     c.output_dir = "out"; c.task = FTQ_TASK_CLASSIFY;
 *     ftq_trainer *t = NULL;
 *     if (ftq_trainer_new(&c, &t) != FTQ_OK) { ... ftq_last_error() ... }  // nothing written yet
 *     ftq_train_result r;
 *     int st = ftq_trainer_run(t, &r);  // FTQ_OK, FTQ_EINTERRUPTED (checkpoint saved), ...
 *     ftq_train_result_free(&r);
 *     ftq_trainer_free(t);
 *
 * The same trainer trains every model family it knows: Llama / GPT-2 decoders (through the
 * ftq_tmodel above) and BERT encoders (ftq_bert_train.h; task classify, sentence pairs with
 * text2_col, pooling with pool, head mode on a cache of frozen features). The family is
 * picked from model_dir (finetune/arch_table.c); options it cannot take are FTQ_EINVAL.
 *
 * Defaults follow Hugging Face's Trainer (docs/finetune.md): lr 5e-5, linear schedule, no
 * warmup, weight decay 0, AdamW betas 0.9 / 0.999, eps 1e-8, max_grad_norm 1, 3 epochs,
 * batch 8, gradient accumulation 1, seed 42; no dropout.
 *
 * Step arithmetic: an epoch is ceil(N / batch) micro-batches over a fresh seeded shuffle
 * of the N examples (Fisher-Yates, ftq_rng); an optimizer step consumes grad_accum
 * micro-batches (the last group of an epoch may be shorter) and averages their gradients.
 * Optimizer step s (0-based) uses lr * ftq_schedule_factor(s). The same seed, arguments and
 * thread count give bit-identical weights, also across --save-every / --resume.
 */

#include <signal.h> /* sig_atomic_t: the stop flag a SIGINT handler sets */

typedef enum {
    FTQ_SCHEDULE_CONSTANT = 0, /* HF get_constant_schedule_with_warmup */
    FTQ_SCHEDULE_LINEAR = 1,   /* HF get_linear_schedule_with_warmup */
    FTQ_SCHEDULE_COSINE = 2,   /* HF get_cosine_schedule_with_warmup (num_cycles 0.5) */
} ftq_schedule;

/* The learning-rate multiplier for 0-based optimizer step `step` (HF's lr_lambda):
 *   warmup:   step < warmup -> step / max(1, warmup)
 *   constant: 1
 *   linear:   max(0, (total - step) / max(1, total - warmup))
 *   cosine:   max(0, 0.5 * (1 + cos(pi * (step - warmup) / max(1, total - warmup)))) */
double ftq_schedule_factor(ftq_schedule s, int64_t step, int64_t warmup, int64_t total);
/* HF's get_warmup_steps: warmup_steps if > 0, else ceil(total * warmup_ratio). */
int64_t ftq_schedule_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total);
const char *ftq_schedule_name(ftq_schedule s); /* "constant", "linear", "cosine" */
int ftq_schedule_from_name(const char *name, ftq_schedule *out); /* FTQ_EINVAL if unknown */

/* Global L2 norm of n gradients, summed in double over fixed 64K-element chunks whose
 * partial sums are added in order: the result does not depend on the thread count. */
double ftq_grad_norm(const float *g, size_t n);
/* torch.nn.utils.clip_grad_norm_: if max_norm > 0 and norm > max_norm, scale g by
 * max_norm / (norm + 1e-6). Returns the norm before clipping (NaN / Inf are returned as
 * they are and g is left alone). */
double ftq_grad_clip(float *g, size_t n, double max_norm);

/* Fisher-Yates shuffle of perm[0..n) in place, drawing j uniformly from [0, i] with
 * ftq_rng_u64 (rejection sampling, no modulo bias). */
void ftq_shuffle(uint32_t *perm, size_t n, ftq_rng *rng);

/* ---- classification metrics ---- */

#define FTQ_CONFUSION_MAX 1024 /* labels up to which the confusion matrix is kept (8 MB) */

typedef struct {
    int num_labels;
    int64_t n;           /* examples counted */
    int64_t *confusion;  /* [num_labels x num_labels], row = true label, column = predicted;
                            NULL above FTQ_CONFUSION_MAX labels (its size grows as the square) */
    double *precision, *recall, *f1; /* per label (0 when undefined, as sklearn's zero_division=0) */
    int64_t *support;    /* per label: examples whose true label it is */
    double accuracy;
    double macro_f1;     /* mean F1 over the labels present in the gold or the predicted labels
                            (sklearn f1_score(average="macro") default) */
} ftq_cls_metrics;

/* gold / pred hold n labels in [0, num_labels); gold entries < 0 (unlabeled) are skipped.
 * FTQ_EINVAL for a label out of range. Free with ftq_cls_metrics_free. */
int ftq_cls_metrics_compute(const int32_t *gold, const int32_t *pred, size_t n, int num_labels,
                            ftq_cls_metrics *out);
void ftq_cls_metrics_free(ftq_cls_metrics *m);
/* argmax with the lowest index on ties (NaN never wins). */
int ftq_argmax(const float *v, int n);

/* ---- the trainer ---- */

typedef enum {
    FTQ_TRAIN_EVENT_STEP = 0, /* after an optimizer step */
    FTQ_TRAIN_EVENT_EVAL = 1, /* after a dev evaluation */
    FTQ_TRAIN_EVENT_SAVE = 2, /* after a checkpoint was written (path in `path`) */
    FTQ_TRAIN_EVENT_CLEANUP = 3, /* before training: removed `path`, a temporary checkpoint or
                                    model file left in the output directory by a killed run */
} ftq_train_event;

typedef struct {
    ftq_train_event event;
    int64_t step, total_steps;  /* completed optimizer steps */
    double epoch;               /* fractional epochs done */
    double loss;                /* STEP: mean loss of the step's micro-batches */
    double lr;                  /* STEP: learning rate used by the step */
    double grad_norm;           /* STEP: global norm before clipping */
    double tokens_per_second;   /* training tokens (non-padding) per second of this run */
    double elapsed, eta;        /* seconds */
    /* EVAL: classify accuracy / macro_f1, lm dev loss and perplexity (NaN when absent) */
    double accuracy, macro_f1, dev_loss, dev_ppl;
    const char *path;           /* SAVE: the checkpoint directory */
} ftq_train_progress;

/* Called from the training thread. Returning non-zero stops the run like the stop flag. */
typedef int (*ftq_train_progress_fn)(void *user, const ftq_train_progress *p);

typedef struct {
    /* what to train */
    const char *model_dir;     /* HF checkpoint directory (config.json, safetensors, tokenizer) */
    const char *train_source;  /* "PATH" or "ARCHIVE:MEMBER" (ftq_data.h) */
    const char *dev_source;    /* NULL: classify has no dev metrics; lm holds out the last 10 %
                                  of the training text (cut at a line start) */
    const char *output_dir;    /* created when the first file is written */
    const char *resume_dir;    /* NULL, or OUTDIR/checkpoint-STEP of a run with the same args */
    const char *log_path;      /* NULL, or a JSON-lines metrics log (appended to on resume) */
    const char *text_col, *label_col; /* NULL: the dataset reader's defaults */
    const char *text2_col;     /* classify: the second text of a sentence pair (encoders), or NULL */
    const char *pool;          /* classify pooling for encoders: "pooler" (HF's, the default), "mean",
                                  "cls"; NULL = the model's own (decoders pool the last token) */
    int skip_bad_rows;
    int parse_special;         /* special-token text in the data becomes those tokens (else text) */
    int64_t limit;             /* classify: first N rows; lm: first N blocks (0 = all) */
    int64_t dev_limit;         /* the same for the dev set */
    ftq_task task;             /* default FTQ_TASK_CLASSIFY */
    ftq_train_mode mode;       /* default FTQ_TRAIN_FULL */
    int freeze_layers;         /* frozen: K blocks (-1: n_layers / 2) */
    ftq_lora_params lora;      /* mode lora: the adapters (output: a PEFT adapter directory) */
    int keep_quant;            /* mode lora, GGUF source: its quantized matrices stay int8 / int4 (QLoRA) */
    int init_random;           /* HF _init_weights instead of the pretrained values */
    ftq_precision precision;   /* matmul precision (default fp32; bf16 not with mode lora) */
    /* optimization (HF TrainingArguments names in brackets) */
    double lr;                 /* [learning_rate] 5e-5; negative: the model family's default
                                  (decoders 5e-5; encoders 5e-5, mode head 1e-3) */
    ftq_schedule schedule;     /* [lr_scheduler_type] linear */
    int64_t warmup_steps;      /* [warmup_steps] 0 */
    double warmup_ratio;       /* [warmup_ratio] 0, used when warmup_steps is 0 */
    double weight_decay;       /* [weight_decay] 0; never on norms, biases, embeddings */
    double beta1, beta2, eps;  /* [adam_beta1/2, adam_epsilon] 0.9, 0.999, 1e-8 */
    double max_grad_norm;      /* [max_grad_norm] 1.0; 0 = no clipping */
    int epochs;                /* [num_train_epochs] 3, unless max_steps > 0 */
    int64_t max_steps;         /* [max_steps] 0 = epochs decide */
    int batch_size;            /* [per_device_train_batch_size] 8 (also the eval batch); 0: the
                                  model family's default (decoders 8, encoders 32) */
    int grad_accum;            /* [gradient_accumulation_steps] 1 */
    int seq_len;               /* tokens per row / block; 0 = min(128, max positions) */
    uint64_t seed;             /* [seed] 42: head init, random init, shuffling */
    int64_t eval_every;        /* evaluate on dev every N steps (0 = only at the end) */
    int64_t save_every;        /* checkpoint-STEP every N steps (0 = none) */
    ftq_train_progress_fn progress;
    void *progress_user;
    const volatile sig_atomic_t *stop; /* non-zero -> checkpoint + FTQ_EINTERRUPTED */
} ftq_train_config;

ftq_train_config ftq_train_default_config(void);

/* What ftq_trainer_new resolved (valid until ftq_trainer_free). */
typedef struct {
    int64_t train_examples, dev_examples; /* rows (classify) or blocks (lm) */
    int64_t bad_rows;                     /* skipped with skip_bad_rows */
    int64_t truncated, dev_truncated;     /* classify rows cut to seq_len (which is at most the
                                             model's positions) */
    const char *arch;                     /* the model family: "decoder", "bert" */
    int batch_size;                       /* resolved (the family's default if 0 was asked) */
    double lr;                            /* resolved peak learning rate */
    int64_t steps_per_epoch, total_steps, warmup_steps;
    int64_t start_step;                   /* > 0 when resuming */
    int checkpoint_threads;               /* resuming: the thread count the checkpoint was
                                             trained with (bit-identity needs the same), else 0 */
    int epochs;                           /* epochs the run touches */
    int seq_len, pad_id, num_labels, freeze_layers;
    const char *const *label_names;       /* classify */
    size_t n_params, n_trainable;
    const char *output_dir;
} ftq_train_plan;

typedef struct {
    int64_t steps;              /* optimizer steps done (including those before a resume) */
    double epochs;              /* fractional epochs done */
    double final_loss;          /* loss of the last step */
    double train_loss;          /* mean step loss over the whole run (HF train_loss) */
    int64_t train_tokens;       /* non-padding tokens run forward in training (this process); an
                                   encoder in mode head runs each row once (the feature cache) */
    int64_t truncated, dev_truncated; /* classify rows cut to the sequence length */
    double tokens_per_second, seconds, train_seconds;
    size_t peak_rss_bytes;
    int has_dev;
    ftq_cls_metrics dev;        /* classify with a dev set */
    int64_t dev_examples;
    /* lm: dev loss (mean NLL over scored tokens of the dev blocks, the tmodel forward) and
     * perplexity exp(loss), before training and after; NaN when there is no dev text */
    double dev_loss_before, dev_loss_after, ppl_before, ppl_after;
    char *checkpoint;           /* last checkpoint directory written (malloc'd) or NULL */
    char *output_dir;           /* where the final model went (malloc'd) or NULL */
} ftq_train_result;

typedef struct ftq_trainer ftq_trainer;

/* Find the model family (finetune/arch_table.c: BERT encoders, else Llama / GPT-2 decoders),
 * load the model, tokenizer, data (tokenized, packed) and a resume checkpoint; validate
 * every option against them. Writes nothing. The config is copied, but the strings it points
 * to (and the stop flag) must outlive the trainer. A trainer is used from one thread; the
 * kernels inside use $FTQ_THREADS / ftq_set_threads. */
int ftq_trainer_new(const ftq_train_config *c, ftq_trainer **out);
const ftq_train_plan *ftq_trainer_plan(const ftq_trainer *t);
/* Train, evaluate and save (final model into output_dir, checkpoints as configured).
 * FTQ_EINTERRUPTED: the stop flag / callback stopped the run; a checkpoint was saved
 * (r->checkpoint). FTQ_ENUMERIC: a non-finite loss or gradient norm; the message names the
 * step and the last good checkpoint; nothing else is written. r is filled in every case
 * and must be freed. Call once per trainer.
 * Distributed (after ftq_dist_init joined an mpirun job, include/ftq_dist.h): every rank
 * calls ftq_trainer_new and ftq_trainer_run with the same config; both are collective, the
 * ranks share each batch, only rank 0 writes files and calls the progress callback, and a
 * failure on one rank fails the call on every rank (docs/distributed.md). */
int ftq_trainer_run(ftq_trainer *t, ftq_train_result *r);
void ftq_trainer_free(ftq_trainer *t);
void ftq_train_result_free(ftq_train_result *r);

#ifdef __cplusplus
}
#endif

#endif
