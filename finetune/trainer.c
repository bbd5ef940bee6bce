/* trainer.c - ftq_trainer: loads and validates everything up front (ftq_trainer_new writes
 * nothing), then runs the optimizer loop: seeded epoch orders, gradient accumulation,
 * clipping, AdamW, evaluation, checkpoints and exact resume. The model family (decoder, BERT
 * encoder) is reached only through its table of operations (finetune/arch.h), so nothing here
 * branches on it. Invariant: the state saved in a checkpoint (weights, moments, step, epoch,
 * position, RNG) is all the loop depends on, so a resumed run computes bit for bit what the
 * uninterrupted run computes. Distributed (ftq_dist_size() > 1, docs/distributed.md): every
 * rank holds the same state; each micro-batch of --batch rows is split into contiguous
 * shards, one per rank, weighted so the summed gradient is the one-process mean; rank 0
 * alone writes files and reports; every collective is preceded by ftq_dist_agree, so a
 * failure on one rank stops all of them at the same point. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "finetune/arch.h"
#include "include/ftq_dist.h"
#include "io/json_util.h"

typedef struct {
    int64_t step;
    double epoch, loss, lr, grad_norm;
} hist_entry;

struct ftq_trainer {
    ftq_train_config c;
    ftq_train_plan plan;
    const tarch_ops *ops;   /* the model family (arch_table.c) */
    tarch *arch;
    tarch_info info;
    ex_set train, dev;
    char **labels;          /* classify: num_labels names */
    int num_labels;
    float *params, *grads, *m, *v;
    size_t n_params, n_train, t_off;
    float *logits;
    int max_T;
    /* loop state: everything a checkpoint records */
    int64_t step, epoch, pos;       /* pos: micro-batches of epoch `epoch` already consumed */
    ftq_rng rng_epoch;              /* the state that draws epoch `epoch`'s order */
    ftq_rng rng_next;               /* the state after drawing it */
    int order_ready;
    uint32_t *perm;
    hist_entry *hist;
    size_t n_hist, cap_hist;
    double dev_loss_before;
    int64_t nb;                     /* micro-batches per epoch */
    cJSON *args;
    int ran;
    int rank, world;                /* ftq_dist_rank / ftq_dist_size */
    /* run-time bookkeeping (not in checkpoints) */
    FILE *log;
    int created_outdir;
    char *last_ckpt;
    int64_t last_ckpt_step;
    int64_t tokens;
    double train_seconds;
};

ftq_train_config ftq_train_default_config(void)
{
    ftq_train_config c;
    memset(&c, 0, sizeof c);
    c.task = FTQ_TASK_CLASSIFY;
    c.mode = FTQ_TRAIN_FULL;
    c.lora = ftq_lora_default_params();
    c.freeze_layers = -1;
    c.lr = 5e-5;
    c.schedule = FTQ_SCHEDULE_LINEAR;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.max_grad_norm = 1.0;
    c.epochs = 3;
    c.batch_size = 8;
    c.grad_accum = 1;
    c.seed = 42;
    return c;
}

const ftq_train_plan *ftq_trainer_plan(const ftq_trainer *t) { return &t->plan; }

void ftq_trainer_free(ftq_trainer *t)
{
    if (!t)
        return;
    if (t->arch)
        t->ops->free(t->arch);
    ex_set_free(&t->train);
    ex_set_free(&t->dev);
    if (t->labels)
        ftq_free_strings(t->labels, t->num_labels);
    free((void *)t->plan.label_names);
    free(t->m);
    free(t->v);
    free(t->logits);
    free(t->perm);
    free(t->hist);
    free(t->last_ckpt);
    cJSON_Delete(t->args);
    if (t->log)
        fclose(t->log);
    free(t);
}

void ftq_train_result_free(ftq_train_result *r)
{
    if (!r)
        return;
    ftq_cls_metrics_free(&r->dev);
    free(r->checkpoint);
    free(r->output_dir);
    memset(r, 0, sizeof *r);
}

/* ---- setup ------------------------------------------------------------------------ */

/* Rows (CSV / TSV / JSONL) or plain text: the dataset reader's own choice, which also looks
 * inside an archive given without a member. A source it cannot open is treated as text, so
 * the text loader reports the problem. */
static int is_table_source(const char *src)
{
    ftq_data_format fmt = FTQ_DATA_TEXT;
    if (ftq_dataset_detect_format(src, &fmt) != FTQ_OK) {
        ftq_clear_error();
        return 0;
    }
    return fmt != FTQ_DATA_TEXT;
}

static const char *task_name(int task) { return task == FTQ_TASK_LM ? "lm" : "classify"; }
static const char *mode_name(int mode)
{
    return mode == FTQ_TRAIN_HEAD ? "head" : mode == FTQ_TRAIN_FROZEN ? "frozen" : mode == FTQ_TRAIN_LORA ? "lora" : "full";
}

static int check_options(const ftq_train_config *c)
{
    if (!c->model_dir || !c->train_source || !c->output_dir)
        return ftq_set_error(FTQ_EINVAL, "a model directory, a training set and an output directory are required");
    if (c->task != FTQ_TASK_LM && c->task != FTQ_TASK_CLASSIFY)
        return ftq_set_error(FTQ_EINVAL, "unknown task %d", (int)c->task);
    if (c->mode != FTQ_TRAIN_FULL && c->mode != FTQ_TRAIN_FROZEN && c->mode != FTQ_TRAIN_HEAD &&
        c->mode != FTQ_TRAIN_LORA)
        return ftq_set_error(FTQ_EINVAL, "unknown mode %d", (int)c->mode);
    int lrc;
    if (c->mode == FTQ_TRAIN_LORA && (lrc = ftq_lora_check(&c->lora)) != FTQ_OK)
        return lrc;
    if (c->mode == FTQ_TRAIN_HEAD && c->task == FTQ_TASK_LM)
        return ftq_set_error(FTQ_EINVAL, "mode head trains only a classification head; it needs task classify");
    if (c->freeze_layers >= 0 && c->mode != FTQ_TRAIN_FROZEN)
        return ftq_set_error(FTQ_EINVAL, "freeze-layers is only for mode frozen (mode is %s)", mode_name(c->mode));
    if (c->batch_size < 0)
        return ftq_set_error(FTQ_EINVAL, "batch size must be at least 1, got %d", c->batch_size);
    if (c->grad_accum < 1)
        return ftq_set_error(FTQ_EINVAL, "gradient accumulation must be at least 1, got %d", c->grad_accum);
    if (c->max_steps < 0 || (c->max_steps == 0 && c->epochs < 1))
        return ftq_set_error(FTQ_EINVAL, "train for at least one epoch or one step (epochs %d, max steps %lld)",
                             c->epochs, (long long)c->max_steps);
    if (c->seq_len < 0 || c->seq_len == 1)
        return ftq_set_error(FTQ_EINVAL, "sequence length must be at least 2, got %d", c->seq_len);
    if (!isfinite(c->lr))
        return ftq_set_error(FTQ_EINVAL, "learning rate must be finite, got %g", c->lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0))
        return ftq_set_error(FTQ_EINVAL, "AdamW needs 0 <= beta1, beta2 < 1 and eps > 0 (got %g, %g, %g)",
                             c->beta1, c->beta2, c->eps);
    if (!(c->weight_decay >= 0) || !(c->max_grad_norm >= 0) || !(c->warmup_ratio >= 0 && c->warmup_ratio <= 1) ||
        c->warmup_steps < 0)
        return ftq_set_error(FTQ_EINVAL, "weight decay, max grad norm and warmup must be >= 0 (warmup ratio <= 1)");
    if (c->eval_every < 0 || c->save_every < 0 || c->limit < 0 || c->dev_limit < 0)
        return ftq_set_error(FTQ_EINVAL, "eval-every, save-every and limits must be >= 0");
    if (c->eval_every > 0 && c->task == FTQ_TASK_CLASSIFY && !c->dev_source)
        return ftq_set_error(FTQ_EINVAL, "eval-every needs a dev set for task classify");
    if (c->text2_col && c->task != FTQ_TASK_CLASSIFY)
        return ftq_set_error(FTQ_EINVAL, "a second text column is for task classify (sentence pairs)");
    return FTQ_OK;
}

/* Held-out split of a plain text: the last 10 % of its bytes, starting at a line start. */
static size_t text_split_point(const char *text, size_t len)
{
    size_t cut = len - len / 10;
    if (cut >= len)
        return len;
    for (size_t i = cut; i < len; i++)
        if (text[i] == '\n')
            return i + 1 < len ? i + 1 : len;
    for (size_t i = cut; i > 0; i--)
        if (text[i - 1] == '\n')
            return i;
    return len;
}

static int load_lm_data(ftq_trainer *t)
{
    const ftq_train_config *c = &t->c;
    int seq = t->plan.seq_len, rc = FTQ_OK;
    ftq_dataset *dtr = NULL, *ddev = NULL;
    char *text = NULL, *dtext = NULL;
    size_t len = 0, dlen = 0;
    const char **docs = NULL, **ddocs = NULL;
    size_t *dl = NULL, *ddl = NULL, nd = 0, ndd = 0;
    ftq_dataset_params dp = ftq_dataset_default_params();
    dp.text_col = c->text_col;
    dp.label_col = c->label_col;
    dp.require_labels = 0;
    dp.skip_bad_rows = c->skip_bad_rows;
    /* training documents, and the held-out ones when there is no dev source */
    if (is_table_source(c->train_source)) {
        if ((rc = ftq_dataset_load(c->train_source, &dp, &dtr)) != FTQ_OK)
            goto out;
        t->plan.bad_rows = (int64_t)ftq_dataset_bad_rows(dtr);
        size_t n = ftq_dataset_size(dtr), ntrain = n;
        if (!c->dev_source && n >= 2)
            ntrain = n - (n / 10 > 0 ? n / 10 : 1);
        docs = malloc(sizeof(char *) * (n + 1));
        dl = malloc(sizeof(size_t) * (n + 1));
        if (!docs || !dl) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            docs[i] = ftq_dataset_text(dtr, i);
            dl[i] = strlen(docs[i]);
        }
        nd = ntrain;
        if (!c->dev_source) {
            ddocs = docs + ntrain;
            ndd = n - ntrain;
            ddl = dl + ntrain;
        }
    } else {
        if ((rc = ftq_text_load(c->train_source, &text, &len)) != FTQ_OK)
            goto out;
        size_t cut = c->dev_source ? len : text_split_point(text, len);
        if ((rc = ex_split_documents(text, cut, &docs, &dl, &nd)) != FTQ_OK)
            goto out;
        if (!c->dev_source && (rc = ex_split_documents(text + cut, len - cut, &ddocs, &ddl, &ndd)) != FTQ_OK)
            goto out;
    }
    if ((rc = ex_build_lm(docs, dl, nd, t->info.tok, seq, (size_t)c->limit, 0, &t->train)) != FTQ_OK) {
        ftq_wrap_error(rc, "'%s'", c->train_source);
        goto out;
    }
    if (t->train.n == 0) {
        rc = ftq_set_error(FTQ_EINVAL, "'%s' has fewer tokens than one block of %d (lower the sequence length)",
                           c->train_source, seq);
        goto out;
    }
    if (c->dev_source) {
        if (is_table_source(c->dev_source)) {
            if ((rc = ftq_dataset_load(c->dev_source, &dp, &ddev)) != FTQ_OK)
                goto out;
            ndd = ftq_dataset_size(ddev);
            ddocs = malloc(sizeof(char *) * (ndd + 1));
            ddl = malloc(sizeof(size_t) * (ndd + 1));
            if (!ddocs || !ddl) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                goto out;
            }
            for (size_t i = 0; i < ndd; i++) {
                ddocs[i] = ftq_dataset_text(ddev, i);
                ddl[i] = strlen(ddocs[i]);
            }
        } else {
            if ((rc = ftq_text_load(c->dev_source, &dtext, &dlen)) != FTQ_OK)
                goto out;
            if ((rc = ex_split_documents(dtext, dlen, &ddocs, &ddl, &ndd)) != FTQ_OK)
                goto out;
        }
    }
    if (ndd > 0 && (rc = ex_build_lm(ddocs, ddl, ndd, t->info.tok, seq, (size_t)c->dev_limit, 1, &t->dev)) != FTQ_OK)
        ftq_wrap_error(rc, "'%s'", c->dev_source ? c->dev_source : c->train_source);
out:
    /* in the table case without a dev source, ddocs / ddl point into docs / dl */
    if (!(dtr && !c->dev_source)) {
        free(ddocs);
        free(ddl);
    }
    free(docs);
    free(dl);
    free(text);
    free(dtext);
    ftq_dataset_free(dtr);
    ftq_dataset_free(ddev);
    return rc;
}

/* ex_build_classify's tokenizer: the family's own (pairs, token types, truncation). */
typedef struct {
    const tarch_ops *ops;
    const tarch *arch;
} encode_ctx;

static int encode_row(const void *ctx, const char *text, const char *text2, int seq, int32_t **ids, int32_t **types,
                      size_t *n, int *truncated)
{
    const encode_ctx *e = ctx;
    return e->ops->encode(e->arch, text, text2, seq, ids, types, n, truncated);
}

/* A labeled table (and, for pairs, the same file read with the second text column). */
static int load_rows(const char *src, ftq_dataset_params *dp, const char *text2_col, ftq_dataset **d,
                     ftq_dataset **d2)
{
    int rc = ftq_dataset_load(src, dp, d);
    if (rc != FTQ_OK || !text2_col)
        return rc;
    ftq_dataset_params p2 = *dp;
    p2.text_col = text2_col;
    p2.label_names = ftq_dataset_label_names(*d);
    p2.n_label_names = ftq_dataset_num_labels(*d);
    if ((rc = ftq_dataset_load(src, &p2, d2)) != FTQ_OK)
        return rc;
    if (ftq_dataset_size(*d2) != ftq_dataset_size(*d))
        return ftq_set_error(FTQ_EFORMAT, "'%s': columns '%s' and '%s' give different row counts (%zu and %zu)", src,
                             dp->text_col ? dp->text_col : "text", text2_col, ftq_dataset_size(*d),
                             ftq_dataset_size(*d2));
    return FTQ_OK;
}

static int load_classify_data(ftq_trainer *t, const char *label_src_dir)
{
    const ftq_train_config *c = &t->c;
    int rc = FTQ_OK;
    ftq_dataset *dtr = NULL, *dtr2 = NULL, *ddev = NULL, *ddev2 = NULL;
    char **fixed = NULL;
    int n_fixed = 0;
    encode_ctx ec = {t->ops, t->arch};
    ftq_dataset_params dp = ftq_dataset_default_params();
    dp.text_col = c->text_col;
    dp.label_col = c->label_col;
    dp.require_labels = 1;
    dp.skip_bad_rows = c->skip_bad_rows;
    if (label_src_dir) { /* a classifier already: its labels, in its order */
        if ((rc = t->ops->load_labels(t->arch, label_src_dir, &fixed, &n_fixed)) != FTQ_OK)
            return rc;
        dp.label_names = (const char *const *)fixed;
        dp.n_label_names = n_fixed;
    }
    size_t skipped = 0;
    if ((rc = load_rows(c->train_source, &dp, c->text2_col, &dtr, &dtr2)) != FTQ_OK)
        goto out;
    t->num_labels = ftq_dataset_num_labels(dtr);
    if (t->num_labels < 2) {
        rc = ftq_set_error(FTQ_EINVAL, "'%s' has %d distinct label%s; classification needs at least 2",
                           c->train_source, t->num_labels, t->num_labels == 1 ? "" : "s");
        goto out;
    }
    t->labels = calloc((size_t)t->num_labels, sizeof(char *));
    if (!t->labels) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < t->num_labels; i++)
        if (!(t->labels[i] = strdup(ftq_dataset_label_names(dtr)[i]))) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            goto out;
        }
    if ((rc = ex_build_classify(dtr, dtr2, encode_row, &ec, t->plan.seq_len, (size_t)c->limit, c->skip_bad_rows,
                                &t->train, &skipped)) != FTQ_OK)
        goto out;
    t->plan.bad_rows = (int64_t)(ftq_dataset_bad_rows(dtr) + skipped);
    if (t->train.n == 0) {
        rc = ftq_set_error(FTQ_EINVAL, "'%s' has no usable rows", c->train_source);
        goto out;
    }
    if (c->dev_source) {
        dp.label_names = (const char *const *)t->labels;
        dp.n_label_names = t->num_labels;
        if ((rc = load_rows(c->dev_source, &dp, c->text2_col, &ddev, &ddev2)) != FTQ_OK)
            goto out;
        if ((rc = ex_build_classify(ddev, ddev2, encode_row, &ec, t->plan.seq_len, (size_t)c->dev_limit,
                                    c->skip_bad_rows, &t->dev, &skipped)) != FTQ_OK)
            goto out;
    }
out:
    if (fixed)
        ftq_free_strings(fixed, n_fixed);
    ftq_dataset_free(dtr);
    ftq_dataset_free(dtr2);
    ftq_dataset_free(ddev);
    ftq_dataset_free(ddev2);
    return rc;
}

/* Add `v` under `k` (or to an array with k NULL); 0 if v is NULL or cJSON is out of memory,
 * with v freed either way, so builders can `ok &= add_item(...)` and give up once at the end. */
static int add_item(cJSON *o, const char *k, cJSON *v)
{
    if (v && (k ? cJSON_AddItemToObject(o, k, v) : cJSON_AddItemToArray(o, v)))
        return 1;
    cJSON_Delete(v);
    return 0;
}

static cJSON *build_args(const ftq_trainer *t)
{
    const ftq_train_config *c = &t->c;
    cJSON *a = cJSON_CreateObject();
    if (!a)
        return NULL;
    int ok = 1; /* every key or none: a missing key would let a resume accept any value */
    ok &= cJSON_AddStringToObject(a, "task", task_name(c->task)) != NULL;
    ok &= cJSON_AddStringToObject(a, "mode", mode_name(c->mode)) != NULL;
    if (c->mode == FTQ_TRAIN_FROZEN)
        ok &= cJSON_AddNumberToObject(a, "freeze-layers", t->plan.freeze_layers) != NULL;
    if (c->mode == FTQ_TRAIN_LORA) {
        ok &= cJSON_AddNumberToObject(a, "lora-r", c->lora.r) != NULL;
        ok &= cJSON_AddNumberToObject(a, "lora-alpha", c->lora.alpha) != NULL;
        ok &= cJSON_AddNumberToObject(a, "lora-dropout", c->lora.dropout) != NULL;
        ok &= cJSON_AddStringToObject(a, "lora-targets", c->lora.targets ? c->lora.targets : "default") != NULL;
        ok &= cJSON_AddBoolToObject(a, "rslora", c->lora.rslora) != NULL;
    }
    ok &= cJSON_AddStringToObject(a, "init", c->init_random ? "random" : "pretrained") != NULL;
    if (c->precision != FTQ_PRECISION_FP32)
        ok &= cJSON_AddStringToObject(a, "precision", ftq_precision_name(c->precision)) != NULL;
    ok &= cJSON_AddNumberToObject(a, "lr", c->lr) != NULL;
    ok &= cJSON_AddStringToObject(a, "schedule", ftq_schedule_name(c->schedule)) != NULL;
    ok &= cJSON_AddNumberToObject(a, "warmup", (double)c->warmup_steps) != NULL;
    ok &= cJSON_AddNumberToObject(a, "warmup-ratio", c->warmup_ratio) != NULL;
    ok &= cJSON_AddNumberToObject(a, "weight-decay", c->weight_decay) != NULL;
    ok &= cJSON_AddNumberToObject(a, "adam-beta1", c->beta1) != NULL;
    ok &= cJSON_AddNumberToObject(a, "adam-beta2", c->beta2) != NULL;
    ok &= cJSON_AddNumberToObject(a, "adam-epsilon", c->eps) != NULL;
    ok &= cJSON_AddNumberToObject(a, "max-grad-norm", c->max_grad_norm) != NULL;
    ok &= cJSON_AddNumberToObject(a, "batch", c->batch_size) != NULL;
    ok &= cJSON_AddNumberToObject(a, "grad-accum", c->grad_accum) != NULL;
    ok &= cJSON_AddNumberToObject(a, "seq", t->plan.seq_len) != NULL;
    char buf[128];
    snprintf(buf, sizeof buf, "%" PRIu64, c->seed);
    ok &= cJSON_AddStringToObject(a, "seed", buf) != NULL;
    if (c->max_steps > 0)
        ok &= cJSON_AddNumberToObject(a, "max-steps", (double)c->max_steps) != NULL;
    else
        ok &= cJSON_AddNumberToObject(a, "epochs", c->epochs) != NULL;
    ok &= cJSON_AddNumberToObject(a, "limit", (double)c->limit) != NULL;
    if (c->pool) /* only when given: checkpoints of runs without it stay resumable */
        ok &= cJSON_AddStringToObject(a, "pool", c->pool) != NULL;
    snprintf(buf, sizeof buf, "%zu examples, fingerprint %016" PRIx64, t->train.n, ex_fingerprint(&t->train));
    ok &= cJSON_AddStringToObject(a, "_training data", buf) != NULL;
    ok &= cJSON_AddNumberToObject(a, "_pad token id", t->plan.pad_id) != NULL;
    if (c->task == FTQ_TASK_CLASSIFY) {
        ok &= add_item(a, "_labels", cJSON_CreateStringArray((const char *const *)t->labels, t->num_labels));
    }
    if (!ok) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

static int alloc_buffers(ftq_trainer *t)
{
    size_t B = (size_t)t->c.batch_size;
    t->logits = malloc(sizeof(float) * B * (size_t)(t->num_labels > 0 ? t->num_labels : 1));
    t->m = calloc(t->n_train ? t->n_train : 1, sizeof(float));
    t->v = calloc(t->n_train ? t->n_train : 1, sizeof(float));
    t->perm = malloc(sizeof(uint32_t) * (t->train.n + 1));
    if (!t->logits || !t->m || !t->v || !t->perm)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for training buffers (%zu trainable parameters)", t->n_train);
    return FTQ_OK;
}

static int hist_push(ftq_trainer *t, hist_entry e)
{
    if (t->n_hist == t->cap_hist) {
        size_t cap = t->cap_hist ? 2 * t->cap_hist : 256;
        hist_entry *h = realloc(t->hist, sizeof(hist_entry) * cap);
        if (!h)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        t->hist = h;
        t->cap_hist = cap;
    }
    t->hist[t->n_hist++] = e;
    return FTQ_OK;
}

static int parse_u64_hex(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsString(v))
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v->valuestring, &end, 16);
    if (errno || end == v->valuestring || *end)
        return 0;
    *out = (uint64_t)x;
    return 1;
}

static int get_i64(const cJSON *j, const char *key, int64_t *out)
{
    /* range-checked before the cast: "global_step": 1e300 would be undefined */
    return ftq_json_int(cJSON_GetObjectItemCaseSensitive(j, key), 0, INT64_MAX, out);
}

static int load_resume_state(ftq_trainer *t)
{
    const char *dir = t->c.resume_dir;
    char *path = ftq_path_join(dir, "trainer_state.json");
    cJSON *j = NULL;
    int rc = path ? ckpt_read_json(path, &j) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    free(path);
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "cannot resume from '%s'", dir);
    if ((rc = ckpt_check_args(cJSON_GetObjectItemCaseSensitive(j, "args"), t->args, dir)) != FTQ_OK)
        goto out;
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(j, "rng_state");
    int ok = get_i64(j, "global_step", &t->step) && get_i64(j, "epoch_index", &t->epoch) &&
             get_i64(j, "batch_position", &t->pos) && cJSON_GetArraySize(rng) == 4;
    for (int i = 0; ok && i < 4; i++)
        ok = parse_u64_hex(cJSON_GetArrayItem(rng, i), &t->rng_epoch.s[i]);
    if (!ok || t->pos >= t->nb || t->step > t->plan.total_steps) {
        rc = ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': trainer_state.json lacks a valid global_step, "
                           "epoch_index, batch_position or rng_state", dir);
        goto out;
    }
    int64_t threads = 0;
    if (get_i64(j, "threads", &threads))
        t->plan.checkpoint_threads = (int)threads;
    const cJSON *dlb = cJSON_GetObjectItemCaseSensitive(j, "dev_loss_before");
    t->dev_loss_before = cJSON_IsNumber(dlb) ? dlb->valuedouble : NAN;
    const cJSON *h, *hist = cJSON_GetObjectItemCaseSensitive(j, "log_history");
    cJSON_ArrayForEach(h, hist)
    {
        hist_entry e = {0, 0, 0, 0, 0};
        const cJSON *f;
        get_i64(h, "step", &e.step);
        if (cJSON_IsNumber(f = cJSON_GetObjectItemCaseSensitive(h, "epoch")))
            e.epoch = f->valuedouble;
        if (cJSON_IsNumber(f = cJSON_GetObjectItemCaseSensitive(h, "loss")))
            e.loss = f->valuedouble;
        if (cJSON_IsNumber(f = cJSON_GetObjectItemCaseSensitive(h, "learning_rate")))
            e.lr = f->valuedouble;
        if (cJSON_IsNumber(f = cJSON_GetObjectItemCaseSensitive(h, "grad_norm")))
            e.grad_norm = f->valuedouble;
        if ((rc = hist_push(t, e)) != FTQ_OK)
            goto out;
    }
    char *opt = ftq_path_join(dir, "optimizer.safetensors");
    rc = opt ? ckpt_read_optimizer(opt, t->m, t->v, t->n_train) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    free(opt);
    t->plan.start_step = t->step;
out:
    cJSON_Delete(j);
    return rc;
}

static int trainer_new_local(const ftq_train_config *cfg, ftq_trainer **out)
{
    *out = NULL;
    int rc = check_options(cfg);
    if (rc != FTQ_OK)
        return rc;
    ftq_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->c = *cfg;
    ftq_train_config *c = &t->c;
    t->dev_loss_before = NAN;
    t->last_ckpt_step = -1;
    t->rank = ftq_dist_rank();
    t->world = ftq_dist_size();
    if (t->rank != 0) { /* rank 0 reports and logs for the job */
        c->progress = NULL;
        c->log_path = NULL;
    }

    /* the model family reads the source's config and tokenizer and checks its options */
    t->ops = tarch_find(c->model_dir);
    if ((rc = t->ops->open(c, &t->arch, &t->info)) != FTQ_OK)
        goto fail;
    t->plan.arch = t->ops->name;
    if (c->task == FTQ_TASK_LM && !t->info.supports_lm) {
        rc = ftq_set_error(FTQ_EINVAL, "task lm is not available for '%s' (a %s model)", c->model_dir, t->ops->name);
        goto fail;
    }
    if (c->batch_size == 0) /* the family's defaults (both recorded in a checkpoint's args) */
        c->batch_size = t->info.default_batch;
    if (c->lr < 0)
        c->lr = c->mode == FTQ_TRAIN_HEAD ? t->info.default_head_lr : t->info.default_lr;
    if (c->resume_dir) {
        if (!ftq_is_dir(c->resume_dir)) {
            rc = ftq_set_error(FTQ_ENOTFOUND, "cannot resume from '%s': not a directory", c->resume_dir);
            goto fail;
        }
        if ((rc = t->ops->check_resume(t->arch, c->resume_dir, c->task)) != FTQ_OK)
            goto fail;
    }

    /* sequence length, frozen layers, pad id */
    int max_pos = t->info.max_position;
    t->plan.seq_len = c->seq_len ? c->seq_len : (max_pos < 128 ? max_pos : 128);
    if (t->plan.seq_len > max_pos) {
        rc = ftq_set_error(FTQ_EINVAL, "sequence length %d exceeds the model's %d positions", t->plan.seq_len, max_pos);
        goto fail;
    }
    t->plan.freeze_layers = 0;
    if (c->mode == FTQ_TRAIN_FROZEN) {
        t->plan.freeze_layers = c->freeze_layers >= 0 ? c->freeze_layers : t->info.n_layers / 2;
        if (t->plan.freeze_layers > t->info.n_layers) {
            rc = ftq_set_error(FTQ_EINVAL, "cannot freeze %d layers: the model has %d", t->plan.freeze_layers,
                               t->info.n_layers);
            goto fail;
        }
    }
    t->plan.pad_id = t->info.pad_id;
    t->plan.batch_size = c->batch_size;
    t->plan.lr = c->lr;

    /* data */
    if (c->task == FTQ_TASK_CLASSIFY)
        rc = load_classify_data(t, c->resume_dir ? c->resume_dir : (t->info.is_classifier ? c->model_dir : NULL));
    else
        rc = load_lm_data(t);
    if (rc != FTQ_OK)
        goto fail;
    t->plan.truncated = (int64_t)t->train.truncated;
    t->plan.dev_truncated = (int64_t)t->dev.truncated;
    t->max_T = (int)(t->train.max_len > t->dev.max_len ? t->train.max_len : t->dev.max_len);
    if (t->max_T < 2)
        t->max_T = 2;

    /* the trainable model */
    tarch_build tb;
    memset(&tb, 0, sizeof tb);
    tb.task = c->task;
    tb.num_labels = c->task == FTQ_TASK_CLASSIFY ? t->num_labels : 0;
    tb.mode = c->mode;
    tb.freeze_layers = t->plan.freeze_layers;
    tb.init_random = c->init_random;
    tb.seed = c->seed;
    tb.max_batch = c->batch_size;
    tb.max_seq = t->max_T;
    tb.precision = c->precision;
    tb.weights_dir = c->resume_dir;
    if ((rc = t->ops->build(t->arch, &tb)) != FTQ_OK)
        goto fail;
    t->params = t->ops->params(t->arch, &t->n_params);
    t->grads = t->ops->grads(t->arch, &t->n_train, &t->t_off);
    size_t covered = 0, nseg = t->ops->segment_count(t->arch);
    for (size_t i = 0; i < nseg; i++) {
        const ftq_param_segment *s = t->ops->segment(t->arch, i);
        if (s->offset < t->t_off || s->offset + s->size > t->t_off + t->n_train) {
            rc = ftq_set_error(FTQ_EINVAL, "trainable segment '%s' lies outside the trainable range", s->name);
            goto fail;
        }
        covered += s->size;
    }
    if (covered != t->n_train) {
        rc = ftq_set_error(FTQ_EINVAL, "the trainable segments cover %zu of %zu trainable parameters", covered,
                           t->n_train);
        goto fail;
    }
    if ((rc = alloc_buffers(t)) != FTQ_OK)
        goto fail;

    /* step arithmetic (HF: max_steps = epochs * ceil(batches / accum)) */
    size_t N = t->train.n, B = (size_t)c->batch_size, K = (size_t)c->grad_accum;
    t->nb = (int64_t)((N + B - 1) / B);
    t->plan.steps_per_epoch = (t->nb + (int64_t)K - 1) / (int64_t)K;
    t->plan.total_steps = c->max_steps > 0 ? c->max_steps : (int64_t)c->epochs * t->plan.steps_per_epoch;
    t->plan.epochs = (int)((t->plan.total_steps + t->plan.steps_per_epoch - 1) / t->plan.steps_per_epoch);
    t->plan.warmup_steps = ftq_schedule_warmup_steps(c->warmup_steps, c->warmup_ratio, t->plan.total_steps);
    t->plan.train_examples = (int64_t)N;
    t->plan.dev_examples = (int64_t)t->dev.n;
    t->plan.num_labels = t->num_labels;
    t->plan.n_params = t->n_params;
    t->plan.n_trainable = t->n_train;
    t->plan.output_dir = c->output_dir;
    if (t->num_labels > 0) {
        const char **names = malloc(sizeof(char *) * (size_t)t->num_labels);
        if (!names) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < t->num_labels; i++)
            names[i] = t->labels[i];
        t->plan.label_names = names;
    }
    if (!(t->args = build_args(t))) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto fail;
    }
    ftq_rng_seed(&t->rng_epoch, c->seed);
    if (c->resume_dir && (rc = load_resume_state(t)) != FTQ_OK)
        goto fail;
    *out = t;
    return FTQ_OK;
fail:
    ftq_trainer_free(t);
    return rc;
}

/* FNV-1a over 8-byte words (then the tail bytes), continuing from h: a fingerprint for
 * comparing ranks, fast enough for every weight of a model. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Every rank must have the same value of h: else an FTQ_EINVAL error naming `what`. */
static int same_on_all_ranks(uint64_t h, const char *what)
{
    int64_t v[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)}; /* min and -max in one reduction */
    int rc = ftq_dist_allreduce(v, 2, FTQ_DIST_I64, FTQ_DIST_MIN);
    if (rc == FTQ_OK && v[0] != -v[1])
        rc = ftq_set_error(FTQ_EINVAL, "the ranks of this job differ in %s", what);
    return rc;
}

int ftq_trainer_new(const ftq_train_config *cfg, ftq_trainer **out)
{
    int rc = ftq_dist_agree(trainer_new_local(cfg, out));
    if (rc == FTQ_OK && ftq_dist_size() > 1) { /* the same arguments, data and initial weights */
        const ftq_trainer *t = *out;
        char *a = cJSON_PrintUnformatted(t->args);
        uint64_t h = a ? fnv(0xcbf29ce484222325ULL, a, strlen(a)) : 0, dh = ex_fingerprint(&t->dev);
        free(a);
        if ((rc = same_on_all_ranks(fnv(h, &dh, sizeof dh), "their arguments or data (give every rank the same "
                                                          "options and files)")) == FTQ_OK)
            rc = same_on_all_ranks(fnv(h, t->params, sizeof(float) * t->n_params), "their initial weights");
    }
    if (rc != FTQ_OK && *out) {
        ftq_trainer_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- evaluation ------------------------------------------------------------------- */

/* Distributed, the dev batches (the same ones as alone) go round-robin to the ranks; each
 * batch's loss and predictions have one contributor in the sums that gather them, so every
 * rank ends with exactly the one-process values and adds the losses in batch order. */
static int eval_classify(ftq_trainer *t, ftq_cls_metrics *m, double *loss_out)
{
    const ex_set *s = &t->dev;
    size_t B = (size_t)t->c.batch_size, nbat = (s->n + B - 1) / B;
    int32_t *pred = calloc(s->n + 1, sizeof(int32_t));
    uint32_t *idx = malloc(sizeof(uint32_t) * B);
    double *bl = calloc(nbat + 1, sizeof(double)); /* loss x rows of each batch */
    int rc = FTQ_OK;
    double loss_sum = 0;
    if (!pred || !idx || !bl)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t k = (size_t)t->rank; rc == FTQ_OK && k < nbat; k += (size_t)t->world) {
        size_t i0 = k * B;
        int b = (int)(s->n - i0 < B ? s->n - i0 : B);
        int64_t ntok = 0;
        double loss = 0;
        for (int r = 0; r < b; r++)
            idx[r] = (uint32_t)(i0 + (size_t)r);
        if ((rc = t->ops->eval_batch(t->arch, s, idx, b, &loss, t->logits, &ntok)) != FTQ_OK)
            break;
        bl[k] = loss * b;
        for (int r = 0; r < b; r++)
            pred[i0 + (size_t)r] = ftq_argmax(t->logits + (size_t)r * (size_t)t->num_labels, t->num_labels);
    }
    if ((rc = ftq_dist_agree(rc)) != FTQ_OK ||
        (rc = ftq_dist_allreduce(bl, nbat, FTQ_DIST_F64, FTQ_DIST_SUM)) != FTQ_OK ||
        (rc = ftq_dist_allreduce(pred, s->n, FTQ_DIST_I32, FTQ_DIST_SUM)) != FTQ_OK)
        goto out;
    for (size_t k = 0; k < nbat; k++)
        loss_sum += bl[k];
    rc = ftq_cls_metrics_compute(s->label, pred, s->n, t->num_labels, m);
    if (loss_out)
        *loss_out = s->n ? loss_sum / (double)s->n : NAN;
out:
    free(pred);
    free(idx);
    free(bl);
    return rc;
}

/* Mean NLL over every scored token of the dev blocks (each block scores len - 1 targets). */
static int eval_lm(ftq_trainer *t, double *loss_out)
{
    const ex_set *s = &t->dev;
    *loss_out = NAN;
    if (s->n == 0)
        return FTQ_OK;
    size_t B = (size_t)t->c.batch_size, nbat = (s->n + B - 1) / B;
    uint32_t *idx = malloc(sizeof(uint32_t) * B);
    double *bl = calloc(2 * nbat, sizeof(double)); /* per batch: loss x scored, scored (as eval_classify) */
    double sum = 0;
    int64_t scored = 0;
    int rc = idx && bl ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t j = (size_t)t->rank; rc == FTQ_OK && j < nbat; j += (size_t)t->world) {
        size_t i0 = j * B;
        int b = (int)(s->n - i0 < B ? s->n - i0 : B);
        int64_t ntok = 0;
        double loss = 0;
        for (int r = 0; r < b; r++)
            idx[r] = (uint32_t)(i0 + (size_t)r);
        if ((rc = t->ops->eval_batch(t->arch, s, idx, b, &loss, NULL, &ntok)) != FTQ_OK)
            break;
        int64_t k = ntok - b; /* len - 1 targets per row */
        bl[2 * j] = loss * (double)k;
        bl[2 * j + 1] = (double)k;
    }
    if ((rc = ftq_dist_agree(rc)) == FTQ_OK)
        rc = ftq_dist_allreduce(bl, 2 * nbat, FTQ_DIST_F64, FTQ_DIST_SUM);
    for (size_t j = 0; rc == FTQ_OK && j < nbat; j++) {
        sum += bl[2 * j];
        scored += (int64_t)bl[2 * j + 1];
    }
    free(idx);
    free(bl);
    if (rc == FTQ_OK && scored > 0)
        *loss_out = sum / (double)scored;
    return rc;
}

/* ---- output files ----------------------------------------------------------------- */

static void json_num(FILE *fp, const char *key, double v)
{
    if (isfinite(v))
        fprintf(fp, ", \"%s\": %.10g", key, v);
    else
        fprintf(fp, ", \"%s\": null", key);
}

static int ensure_outdir(ftq_trainer *t)
{
    int created = 0;
    int rc = ckpt_mkdir_p(t->c.output_dir, &created);
    if (created)
        t->created_outdir = 1;
    return rc;
}

/* The HF model files of the current weights into dir. */
static int write_model_files(ftq_trainer *t, const char *dir)
{
    return t->ops->save(t->arch, dir, (const char *const *)t->labels, t->num_labels);
}

static int params_finite(const ftq_trainer *t)
{
    const float *p = t->params + t->t_off;
    for (size_t i = 0; i < t->n_train; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

static char *hex64(uint64_t x, char *buf)
{
    snprintf(buf, 19, "%016" PRIx64, x);
    return buf;
}

static int write_state(ftq_trainer *t, const char *path)
{
    cJSON *j = cJSON_CreateObject(), *args = cJSON_Duplicate(t->args, 1);
    cJSON *rng = cJSON_CreateArray(), *hist = cJSON_CreateArray();
    if (!j || !args || !rng || !hist) {
        cJSON_Delete(j);
        cJSON_Delete(args);
        cJSON_Delete(rng);
        cJSON_Delete(hist);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    char buf[32];
    int ok = 1; /* a state file missing a key or a log entry is never written */
    ok &= cJSON_AddStringToObject(j, "format", "ftq-trainer-state") != NULL;
    ok &= cJSON_AddNumberToObject(j, "version", 1) != NULL;
    ok &= cJSON_AddNumberToObject(j, "global_step", (double)t->step) != NULL;
    ok &= cJSON_AddNumberToObject(j, "epoch", (double)t->epoch + (double)t->pos / (double)t->nb) != NULL;
    ok &= cJSON_AddNumberToObject(j, "epoch_index", (double)t->epoch) != NULL;
    ok &= cJSON_AddNumberToObject(j, "batch_position", (double)t->pos) != NULL;
    for (int i = 0; i < 4; i++)
        ok &= add_item(rng, NULL, cJSON_CreateString(hex64(t->rng_epoch.s[i], buf)));
    ok &= add_item(j, "rng_state", rng);
    ok &= cJSON_AddNumberToObject(j, "learning_rate", t->n_hist ? t->hist[t->n_hist - 1].lr : 0.0) != NULL;
    ok &= cJSON_AddNumberToObject(j, "total_steps", (double)t->plan.total_steps) != NULL;
    ok &= cJSON_AddNumberToObject(j, "steps_per_epoch", (double)t->plan.steps_per_epoch) != NULL;
    ok &= cJSON_AddNumberToObject(j, "warmup_steps", (double)t->plan.warmup_steps) != NULL;
    ok &= cJSON_AddNumberToObject(j, "train_examples", (double)t->train.n) != NULL;
    ok &= cJSON_AddNumberToObject(j, "threads", ftq_get_threads()) != NULL;
    if (isfinite(t->dev_loss_before))
        ok &= cJSON_AddNumberToObject(j, "dev_loss_before", t->dev_loss_before) != NULL;
    ok &= add_item(j, "args", args);
    for (size_t i = 0; ok && i < t->n_hist; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e) {
            ok = 0;
            break;
        }
        ok &= cJSON_AddNumberToObject(e, "step", (double)t->hist[i].step) != NULL;
        ok &= cJSON_AddNumberToObject(e, "epoch", t->hist[i].epoch) != NULL;
        ok &= cJSON_AddNumberToObject(e, "loss", t->hist[i].loss) != NULL;
        ok &= cJSON_AddNumberToObject(e, "learning_rate", t->hist[i].lr) != NULL;
        ok &= cJSON_AddNumberToObject(e, "grad_norm", t->hist[i].grad_norm) != NULL;
        ok &= add_item(hist, NULL, e);
    }
    ok &= add_item(j, "log_history", hist);
    int rc = ok ? ckpt_write_json(path, j) : ftq_set_error(FTQ_ENOMEM, "out of memory writing '%s'", path);
    cJSON_Delete(j);
    return rc;
}

/* OUTDIR/checkpoint-STEP, built in checkpoint-STEP.tmp.PID and renamed when complete. */
static int write_checkpoint(ftq_trainer *t)
{
    if (t->last_ckpt_step == t->step)
        return FTQ_OK;
    if (!params_finite(t))
        return ftq_set_error(FTQ_ENUMERIC, "parameters became non-finite at step %lld; checkpoint not written",
                             (long long)t->step);
    int rc = ensure_outdir(t);
    if (rc != FTQ_OK)
        return rc;
    size_t n = strlen(t->c.output_dir) + 64;
    char *dir = malloc(n), *tmp = malloc(n), *old = malloc(n);
    char *p1 = NULL, *p2 = NULL;
    if (!dir || !tmp || !old) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(dir, n, "%s/checkpoint-%lld", t->c.output_dir, (long long)t->step);
    snprintf(tmp, n, "%s.tmp.%ld", dir, (long)getpid());
    snprintf(old, n, "%s.old.%ld", dir, (long)getpid());
    if ((rc = ftq_remove_tree(tmp)) != FTQ_OK || (rc = ckpt_mkdir_p(tmp, NULL)) != FTQ_OK)
        goto out;
    p1 = ftq_path_join(tmp, "optimizer.safetensors");
    p2 = ftq_path_join(tmp, "trainer_state.json");
    if (!p1 || !p2) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_model_files(t, tmp)) != FTQ_OK ||
        (rc = ckpt_write_optimizer(p1, t->m, t->v, t->n_train, t->step)) != FTQ_OK ||
        (rc = write_state(t, p2)) != FTQ_OK)
        goto out;
    ckpt_fsync_dir(tmp);
    if (ftq_is_dir(dir)) { /* a checkpoint of an earlier run with this step: replace it */
        if (rename(dir, old) != 0) {
            rc = ftq_set_error(FTQ_EIO, "cannot replace '%s': %s", dir, strerror(errno));
            goto out;
        }
    }
    if (rename(tmp, dir) != 0) {
        rc = ftq_set_error(FTQ_EIO, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno));
        goto out;
    }
    ckpt_fsync_dir(t->c.output_dir);
    ftq_remove_tree(old);
    free(t->last_ckpt);
    t->last_ckpt = dir;
    dir = NULL;
    t->last_ckpt_step = t->step;
out:
    if (rc != FTQ_OK && tmp)
        ftq_remove_tree(tmp);
    free(dir);
    free(tmp);
    free(old);
    free(p1);
    free(p2);
    return rc;
}

/* Distributed: rank 0 writes; the others check that their trained weights equal its
 * (the same reduced gradients on every rank keep them equal) and learn the path. */
static int save_checkpoint(ftq_trainer *t)
{
    int rc = FTQ_OK;
    if (t->world > 1 && t->last_ckpt_step != t->step)
        rc = same_on_all_ranks(fnv(0xcbf29ce484222325ULL, t->params + t->t_off, sizeof(float) * t->n_train),
                               "their trained weights (the ranks diverged)");
    if (rc != FTQ_OK)
        return rc;
    rc = ftq_dist_agree(t->rank == 0 ? write_checkpoint(t) : FTQ_OK);
    if (rc == FTQ_OK && t->rank != 0 && t->last_ckpt_step != t->step) {
        size_t n = strlen(t->c.output_dir) + 64;
        char *dir = malloc(n);
        if (dir)
            snprintf(dir, n, "%s/checkpoint-%lld", t->c.output_dir, (long long)t->step);
        free(t->last_ckpt);
        t->last_ckpt = dir; /* only for messages: NULL reads "no checkpoint was saved" */
        t->last_ckpt_step = t->step;
    }
    return rc;
}

/* The final model: every file written into OUTDIR/.final.tmp.PID first, then renamed into
 * OUTDIR one by one, so a failed write leaves OUTDIR as it was. */
static int write_final(ftq_trainer *t)
{
    if (!params_finite(t))
        return ftq_set_error(FTQ_ENUMERIC, "parameters became non-finite at step %lld; the model was not saved",
                             (long long)t->step);
    int rc = ensure_outdir(t);
    if (rc != FTQ_OK)
        return rc;
    size_t n = strlen(t->c.output_dir) + 64;
    char *tmp = malloc(n);
    if (!tmp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s/.final.tmp.%ld", t->c.output_dir, (long)getpid());
    if ((rc = ftq_remove_tree(tmp)) == FTQ_OK && (rc = ckpt_mkdir_p(tmp, NULL)) == FTQ_OK)
        rc = write_model_files(t, tmp);
    if (rc == FTQ_OK) {
        static const char *const files[] = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer.model",
                                            "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                                            "merges.txt", "vocab.txt", "added_tokens.json",
                                            "generation_config.json", "adapter_config.json",
                                            "adapter_model.safetensors"};
        for (size_t i = 0; rc == FTQ_OK && i < sizeof files / sizeof files[0]; i++) {
            char *a = ftq_path_join(tmp, files[i]), *b = ftq_path_join(t->c.output_dir, files[i]);
            if (!a || !b)
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            else if (ftq_is_file(a)) {
                if (rename(a, b) != 0)
                    rc = ftq_set_error(FTQ_EIO, "cannot rename '%s' to '%s': %s", a, b, strerror(errno));
            } else if (ftq_is_file(b)) {
                unlink(b); /* left by an earlier run of another model: it would shadow this one's */
            }
            free(a);
            free(b);
        }
        ckpt_fsync_dir(t->c.output_dir);
    }
    ftq_remove_tree(tmp);
    free(tmp);
    return rc;
}

static int save_final(ftq_trainer *t) { return ftq_dist_agree(t->rank == 0 ? write_final(t) : FTQ_OK); }

/* ---- the loop --------------------------------------------------------------------- */

static void log_line(ftq_trainer *t, const char *fmt_event, const ftq_train_progress *p)
{
    if (!t->log)
        return;
    fprintf(t->log, "{\"event\": \"%s\", \"step\": %lld", fmt_event, (long long)p->step);
    json_num(t->log, "epoch", p->epoch);
    if (p->event == FTQ_TRAIN_EVENT_STEP) {
        json_num(t->log, "loss", p->loss);
        json_num(t->log, "learning_rate", p->lr);
        json_num(t->log, "grad_norm", p->grad_norm);
        json_num(t->log, "tokens_per_second", p->tokens_per_second);
        if (t->c.task == FTQ_TASK_CLASSIFY)
            fprintf(t->log, ", \"truncated\": %lld", (long long)t->plan.truncated);
    } else if (t->c.task == FTQ_TASK_CLASSIFY) {
        json_num(t->log, "accuracy", p->accuracy);
        json_num(t->log, "macro_f1", p->macro_f1);
        json_num(t->log, "dev_loss", p->dev_loss);
    } else {
        json_num(t->log, "dev_loss", p->dev_loss);
        json_num(t->log, "perplexity", p->dev_ppl);
    }
    if (p->event == FTQ_TRAIN_EVENT_EVAL && t->c.task == FTQ_TASK_CLASSIFY)
        fprintf(t->log, ", \"dev_truncated\": %lld", (long long)t->plan.dev_truncated);
    json_num(t->log, "elapsed", p->elapsed);
    fprintf(t->log, "}\n");
    fflush(t->log);
}

static ftq_train_progress progress_base(const ftq_trainer *t, ftq_train_event ev, double t_start)
{
    ftq_train_progress p;
    memset(&p, 0, sizeof p);
    p.event = ev;
    p.step = t->step;
    p.total_steps = t->plan.total_steps;
    p.epoch = (double)t->epoch + (double)t->pos / (double)t->nb;
    p.elapsed = ftq_time_sec() - t_start;
    p.tokens_per_second = t->train_seconds > 0 ? (double)t->tokens / t->train_seconds : 0;
    int64_t done = t->step - t->plan.start_step;
    p.eta = done > 0 ? t->train_seconds / (double)done * (double)(t->plan.total_steps - t->step) : 0;
    p.loss = p.lr = p.grad_norm = NAN;
    p.accuracy = p.macro_f1 = p.dev_loss = p.dev_ppl = NAN;
    return p;
}

/* Evaluate on dev, log and report. metrics_out (classify) receives the metrics if non-NULL. */
static int do_eval(ftq_trainer *t, double t_start, int *stop, ftq_cls_metrics *metrics_out, double *lm_loss)
{
    ftq_train_progress p = progress_base(t, FTQ_TRAIN_EVENT_EVAL, t_start);
    int rc;
    if (t->c.task == FTQ_TASK_CLASSIFY) {
        if (t->dev.n == 0)
            return FTQ_OK;
        ftq_cls_metrics m;
        if ((rc = ftq_dist_agree(eval_classify(t, &m, &p.dev_loss))) != FTQ_OK)
            return rc;
        p.accuracy = m.accuracy;
        p.macro_f1 = m.macro_f1;
        if (metrics_out)
            *metrics_out = m;
        else
            ftq_cls_metrics_free(&m);
    } else {
        if ((rc = eval_lm(t, &p.dev_loss)) != FTQ_OK)
            return rc;
        if (!isfinite(p.dev_loss))
            return FTQ_OK;
        p.dev_ppl = exp(p.dev_loss);
        if (lm_loss)
            *lm_loss = p.dev_loss;
    }
    log_line(t, "eval", &p);
    if (t->c.progress && t->c.progress(t->c.progress_user, &p))
        *stop = 1;
    return FTQ_OK;
}

static int open_log(ftq_trainer *t)
{
    if (!t->c.log_path)
        return FTQ_OK;
    char *dir = strdup(t->c.log_path);
    if (!dir)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    int rc = FTQ_OK;
    if (slash && slash != dir) {
        *slash = '\0';
        int created = 0;
        rc = ckpt_mkdir_p(dir, &created);
        if (created && strcmp(dir, t->c.output_dir) == 0)
            t->created_outdir = 1;
    }
    free(dir);
    if (rc != FTQ_OK)
        return rc;
    t->log = fopen(t->c.log_path, t->c.resume_dir ? "a" : "w");
    if (!t->log)
        return ftq_set_error(FTQ_EIO, "cannot open log '%s': %s", t->c.log_path, strerror(errno));
    return FTQ_OK;
}

static void new_epoch_order(ftq_trainer *t)
{
    for (size_t i = 0; i < t->train.n; i++)
        t->perm[i] = (uint32_t)i;
    t->rng_next = t->rng_epoch;
    ftq_shuffle(t->perm, t->train.n, &t->rng_next);
    t->order_ready = 1;
}

/* Any rank asked to stop (rank 0's callback, a signal on any rank): all stop together. */
static int stopping(const ftq_trainer *t, int cb_stop)
{
    int32_t s = cb_stop || (t->c.stop && *t->c.stop);
    ftq_dist_allreduce(&s, 1, FTQ_DIST_I32, FTQ_DIST_MAX); /* alone, or if it fails: this rank's own */
    return s != 0;
}

static const char *ckpt_note(const ftq_trainer *t, char *buf, size_t cap)
{
    if (t->last_ckpt)
        snprintf(buf, cap, "the last good checkpoint is '%s'", t->last_ckpt);
    else
        snprintf(buf, cap, "no checkpoint was saved");
    return buf;
}

/* The family's work before training (head mode's features), timed and counted as training. */
static int prepare_sets(ftq_trainer *t)
{
    if (!t->ops->prepare)
        return FTQ_OK;
    double t0 = ftq_time_sec();
    int64_t ntok[2] = {0, 0};
    int rc = ftq_dist_agree(t->ops->prepare(t->arch, &t->train, &ntok[0]));
    if (rc == FTQ_OK && t->dev.n > 0)
        rc = ftq_dist_agree(t->ops->prepare(t->arch, &t->dev, &ntok[1]));
    if (rc == FTQ_OK)
        rc = ftq_dist_allreduce(ntok, 1, FTQ_DIST_I64, FTQ_DIST_SUM);
    t->tokens += ntok[0];
    t->train_seconds += ftq_time_sec() - t0;
    return rc;
}

/* One optimizer step: grad_accum micro-batches (fewer at the end of an epoch). Distributed,
 * rank r takes rows [b r / N, b (r + 1) / N) of each micro-batch of b rows with weight
 * (its rows / b): the loss is the mean over rows (lm: over scored tokens, and every training
 * block scores seq - 1), so the gradients summed over the ranks are the one-process mean. */
static int train_step(ftq_trainer *t, double *loss_out, double *lr_out, double *gn_out)
{
    const ftq_train_config *c = &t->c;
    int64_t group = t->nb - t->pos < c->grad_accum ? t->nb - t->pos : c->grad_accum;
    size_t N = t->train.n, B = (size_t)c->batch_size;
    double sums[2] = {0, 0}; /* loss, tokens */
    char note[600];
    int rc = FTQ_OK;
    memset(t->grads, 0, sizeof(float) * t->n_train);
    for (int64_t g = 0; g < group && rc == FTQ_OK; g++) {
        size_t first = (size_t)(t->pos + g) * B;
        int b = (int)(N - first < B ? N - first : B);
        int lo = (int)((int64_t)b * t->rank / t->world), hi = (int)((int64_t)b * (t->rank + 1) / t->world);
        if (hi == lo)
            continue;
        float scale = hi - lo == b ? 1.0f / (float)group : (float)((double)(hi - lo) / b / (double)group);
        int64_t ntok = 0;
        double loss = 0;
        rc = t->ops->train_batch(t->arch, &t->train, t->perm + first + lo, hi - lo, scale, &loss, &ntok);
        if (rc == FTQ_OK && !isfinite(loss))
            rc = ftq_set_error(FTQ_ENUMERIC, "loss is %s at step %lld (learning rate %g); stopped, %s",
                               isnan(loss) ? "nan" : "inf", (long long)t->step + 1,
                               c->lr * ftq_schedule_factor(c->schedule, t->step, t->plan.warmup_steps,
                                                           t->plan.total_steps),
                               ckpt_note(t, note, sizeof note));
        sums[0] += hi - lo == b ? loss : loss * (double)(hi - lo) / b;
        sums[1] += (double)ntok;
    }
    if ((rc = ftq_dist_agree(rc)) != FTQ_OK || (rc = ftq_dist_allreduce(sums, 2, FTQ_DIST_F64, FTQ_DIST_SUM)) ||
        (rc = ftq_dist_allreduce(t->grads, t->n_train, FTQ_DIST_F32, FTQ_DIST_SUM)) != FTQ_OK)
        return rc;
    double loss_sum = sums[0];
    t->tokens += (int64_t)sums[1];
    double gn = ftq_grad_clip(t->grads, t->n_train, c->max_grad_norm);
    if (!isfinite(gn))
        return ftq_set_error(FTQ_ENUMERIC, "gradient norm is %s at step %lld; stopped, %s", isnan(gn) ? "nan" : "inf",
                             (long long)t->step + 1, ckpt_note(t, note, sizeof note));
    double lr = c->lr * ftq_schedule_factor(c->schedule, t->step, t->plan.warmup_steps, t->plan.total_steps);
    ftq_adamw_params ap = {(float)c->beta1, (float)c->beta2, (float)c->eps, (float)c->weight_decay};
    for (size_t i = 0, ns = t->ops->segment_count(t->arch); i < ns; i++) {
        const ftq_param_segment *s = t->ops->segment(t->arch, i);
        size_t o = s->offset - t->t_off;
        ftq_adamw_update(t->params + s->offset, t->grads + o, t->m + o, t->v + o, s->size, (float)lr, &ap,
                         t->step + 1, s->decay);
    }
    t->step++;
    t->pos += group;
    if (t->pos == t->nb) {
        t->pos = 0;
        t->epoch++;
        t->rng_epoch = t->rng_next;
        t->order_ready = 0;
    }
    *loss_out = loss_sum / (double)group;
    *lr_out = lr;
    *gn_out = gn;
    return FTQ_OK;
}

int ftq_trainer_run(ftq_trainer *t, ftq_train_result *r)
{
    memset(r, 0, sizeof *r);
    r->dev_loss_before = r->dev_loss_after = r->ppl_before = r->ppl_after = NAN;
    if (t->ran)
        return ftq_set_error(FTQ_EINVAL, "a trainer runs once");
    t->ran = 1;
    double t_start = ftq_time_sec();
    int rc = open_log(t), cb_stop = 0;
    /* checkpoint-N.tmp.PID/ and the like of a run that was killed mid-write */
    char **stale = NULL;
    int n_stale = 0;
    if (rc == FTQ_OK && t->rank == 0)
        rc = ftq_sweep_stale(t->c.output_dir, NULL, &stale, &n_stale);
    for (int i = 0; i < n_stale && t->c.progress; i++) {
        ftq_train_progress sp = progress_base(t, FTQ_TRAIN_EVENT_CLEANUP, t_start);
        sp.path = stale[i];
        t->c.progress(t->c.progress_user, &sp);
    }
    ftq_free_strings(stale, n_stale);
    if ((rc = ftq_dist_agree(rc)) != FTQ_OK || (rc = prepare_sets(t)) != FTQ_OK)
        goto done;
    if (t->c.task == FTQ_TASK_LM && t->step == 0 && t->dev.n > 0) {
        double l = NAN;
        if ((rc = do_eval(t, t_start, &cb_stop, NULL, &l)) != FTQ_OK)
            goto done;
        t->dev_loss_before = l;
    }
    while (t->step < t->plan.total_steps) {
        if (stopping(t, cb_stop)) {
            if ((rc = save_checkpoint(t)) == FTQ_OK)
                rc = ftq_set_error(FTQ_EINTERRUPTED, "interrupted at step %lld of %lld; checkpoint saved to '%s'",
                                   (long long)t->step, (long long)t->plan.total_steps, t->last_ckpt);
            goto done;
        }
        if (!t->order_ready)
            new_epoch_order(t);
        double t0 = ftq_time_sec(), loss = 0, lr = 0, gn = 0;
        if ((rc = train_step(t, &loss, &lr, &gn)) != FTQ_OK)
            goto done;
        t->train_seconds += ftq_time_sec() - t0;
        double epoch = (double)t->epoch + (double)t->pos / (double)t->nb;
        hist_entry e = {t->step, epoch, loss, lr, gn};
        if ((rc = ftq_dist_agree(hist_push(t, e))) != FTQ_OK)
            goto done;
        ftq_train_progress p = progress_base(t, FTQ_TRAIN_EVENT_STEP, t_start);
        p.loss = loss;
        p.lr = lr;
        p.grad_norm = gn;
        log_line(t, "step", &p);
        if (t->c.progress && t->c.progress(t->c.progress_user, &p))
            cb_stop = 1;
        if (t->c.eval_every > 0 && t->step % t->c.eval_every == 0 && t->step < t->plan.total_steps &&
            (rc = do_eval(t, t_start, &cb_stop, NULL, NULL)) != FTQ_OK)
            goto done;
        if (t->c.save_every > 0 && t->step % t->c.save_every == 0) {
            if ((rc = save_checkpoint(t)) != FTQ_OK)
                goto done;
            ftq_train_progress sp = progress_base(t, FTQ_TRAIN_EVENT_SAVE, t_start);
            sp.path = t->last_ckpt;
            if (t->c.progress && t->c.progress(t->c.progress_user, &sp))
                cb_stop = 1;
        }
    }
    /* final evaluation and the model */
    if (t->c.task == FTQ_TASK_CLASSIFY && t->dev.n > 0) {
        if ((rc = do_eval(t, t_start, &cb_stop, &r->dev, NULL)) != FTQ_OK)
            goto done;
        r->has_dev = 1;
    } else if (t->c.task == FTQ_TASK_LM && t->dev.n > 0) {
        if ((rc = do_eval(t, t_start, &cb_stop, NULL, &r->dev_loss_after)) != FTQ_OK)
            goto done;
        r->has_dev = 1;
    }
    if ((rc = save_final(t)) != FTQ_OK)
        goto done;
    if (!(r->output_dir = strdup(t->c.output_dir)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
done:
    r->steps = t->step;
    r->epochs = (double)t->epoch + (double)t->pos / (double)t->nb;
    r->final_loss = t->n_hist ? t->hist[t->n_hist - 1].loss : NAN;
    double sum = 0;
    for (size_t i = 0; i < t->n_hist; i++)
        sum += t->hist[i].loss;
    r->train_loss = t->n_hist ? sum / (double)t->n_hist : NAN;
    r->train_tokens = t->tokens;
    r->truncated = t->plan.truncated;
    r->dev_truncated = t->plan.dev_truncated;
    r->train_seconds = t->train_seconds;
    r->tokens_per_second = t->train_seconds > 0 ? (double)t->tokens / t->train_seconds : 0;
    r->seconds = ftq_time_sec() - t_start;
    r->peak_rss_bytes = ftq_peak_rss_bytes();
    r->dev_examples = (int64_t)t->dev.n;
    r->dev_loss_before = t->dev_loss_before;
    r->ppl_before = exp(t->dev_loss_before);
    r->ppl_after = exp(r->dev_loss_after);
    if (t->last_ckpt && !(r->checkpoint = strdup(t->last_ckpt)) && rc == FTQ_OK)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory"); /* else keep the first error */
    if (t->log) {
        fclose(t->log);
        t->log = NULL;
    }
    /* a directory this run created and never finished anything in goes away again */
    if (rc != FTQ_OK && t->created_outdir)
        rmdir(t->c.output_dir);
    return rc;
}
