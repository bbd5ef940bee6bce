/* bert_cmds.c - `ftq finetune` and `ftq classify` on a BERT encoder directory (config.json
 * model_type bert): cmd_finetune / cmd_classify hand over to these when -m names one.
 * Sentence pairs come from --text-col A --text2-col B. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq_bert_train.h"

const char *cmd_model_arg(int argc, char **argv)
{
    const char *m = default_model_dir();
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) && i + 1 < argc)
            m = argv[++i];
        else if (strncmp(argv[i], "--model=", 8) == 0)
            m = argv[i] + 8;
    }
    return m;
}

/* Texts (and second texts, labels) of a dataset; with text2_col the file is read twice. */
typedef struct {
    ftq_dataset *a, *b;
    const char **t1, **t2;
    int32_t *labels;
    size_t n;
} rows;

static void rows_free(rows *r)
{
    ftq_dataset_free(r->a);
    ftq_dataset_free(r->b);
    free(r->t1);
    free(r->t2);
    free(r->labels);
    memset(r, 0, sizeof *r);
}

static int rows_load(const char *cmd, const char *src, const char *text_col, const char *text2_col,
                     const char *label_col, const char *const *names, int n_names, int require_labels, int limit,
                     rows *r)
{
    memset(r, 0, sizeof *r);
    ftq_dataset_params p = ftq_dataset_default_params();
    p.text_col = text_col;
    p.label_col = label_col;
    p.require_labels = require_labels;
    p.label_names = names;
    p.n_label_names = n_names;
    if (ftq_dataset_load(src, &p, &r->a) != FTQ_OK)
        return cmd_fail(cmd, "%s", ftq_last_error());
    if (text2_col) {
        p.text_col = text2_col;
        p.label_names = ftq_dataset_label_names(r->a);
        p.n_label_names = ftq_dataset_num_labels(r->a);
        if (ftq_dataset_load(src, &p, &r->b) != FTQ_OK)
            return cmd_fail(cmd, "%s", ftq_last_error());
        if (ftq_dataset_size(r->b) != ftq_dataset_size(r->a))
            return cmd_fail(cmd, "%s: columns '%s' and '%s' give different row counts", src, text_col ? text_col : "text",
                            text2_col);
    }
    r->n = ftq_dataset_size(r->a);
    if (limit > 0 && (size_t)limit < r->n)
        r->n = (size_t)limit;
    r->t1 = malloc(sizeof *r->t1 * (r->n + 1));
    r->t2 = r->b ? malloc(sizeof *r->t2 * (r->n + 1)) : NULL;
    r->labels = malloc(sizeof *r->labels * (r->n + 1));
    if (!r->t1 || (r->b && !r->t2) || !r->labels)
        return cmd_fail(cmd, "out of memory");
    for (size_t i = 0; i < r->n; i++) {
        r->t1[i] = ftq_dataset_text(r->a, i);
        if (r->b)
            r->t2[i] = ftq_dataset_text(r->b, i);
        r->labels[i] = ftq_dataset_label(r->a, i);
    }
    return 0;
}

static int parse_pool(const char *s, ftq_pool *p)
{
    if (strcmp(s, "pooler") == 0)
        *p = FTQ_POOL_POOLER;
    else if (strcmp(s, "mean") == 0)
        *p = FTQ_POOL_MEAN;
    else if (strcmp(s, "cls") == 0)
        *p = FTQ_POOL_CLS;
    else
        return -1;
    return 0;
}

typedef struct {
    int tty, json;
    double t0;
} prog;

static int on_step(void *user, int64_t step, int64_t total, double loss, double lr)
{
    prog *p = user;
    if (p->json)
        return 0;
    char label[128];
    snprintf(label, sizeof label, "loss %.4f lr %.2e %.1f s", loss, lr, ftq_time_sec() - p->t0);
    if (p->tty)
        progress_bar((int)step, (int)total, label);
    else if (step % 50 == 0 || step == total)
        fprintf(stderr, "step %lld/%lld %s\n", (long long)step, (long long)total, label);
    return 0;
}

static double accuracy(const int32_t *gold, const int32_t *pred, size_t n, size_t *labeled)
{
    size_t ok = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        if (gold[i] >= 0) {
            k++;
            ok += gold[i] == pred[i];
        }
    *labeled = k;
    return k ? (double)ok / (double)k : NAN;
}

int cmd_finetune_bert(int argc, char **argv)
{
    const char *model = default_model_dir(), *data = NULL, *dev = NULL, *output = NULL, *task = "classify",
               *mode_s = "full", *pool_s = "pooler", *text_col = NULL, *text2_col = NULL, *label_col = NULL;
    int freeze = -1, epochs = 3, batch = 32, seq = 0, json = 0, limit = 0, dev_limit = 0, parse_special = 0;
    double lr = -1, wd = 0.0, clip = 1.0, warmup_ratio = 0.0;
    uint64_t seed = 42;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "BERT encoder directory", 0, -1},
        {"data", 'd', OPT_STR, &data, "TRAIN", "labeled .csv/.tsv/.jsonl rows (FILE or ARCHIVE:MEMBER)", 0, -1},
        {"dev", 0, OPT_STR, &dev, "DEV", "labeled dev rows: accuracy after training", 0, -1},
        {"output", 'o', OPT_STR, &output, "OUTDIR", "BertForSequenceClassification directory to write", 0, -1},
        {"task", 0, OPT_STR, &task, "TASK", "classify (the only task for encoders)", 0, -1},
        {"mode", 0, OPT_STR, &mode_s, "MODE", "full | frozen (embeddings + first K blocks fixed) | head (classifier "
                                              "only, on features computed once)", 0, -1},
        {"pool", 0, OPT_STR, &pool_s, "HOW", "pooler ([CLS] through the pooler, as HF) | mean | cls", 0, -1},
        {"freeze-layers", 0, OPT_INT, &freeze, "K", "blocks to freeze with --mode frozen (-1: half of them)", -1, 1 << 20},
        {"epochs", 0, OPT_INT, &epochs, "E", "passes over the training data", 1, 1 << 20},
        {"lr", 0, OPT_FLOAT, &lr, "LR", "peak learning rate (default 5e-5; head: 1e-3)", -1, 1e300},
        {"weight-decay", 0, OPT_FLOAT, &wd, "WD", "AdamW decoupled weight decay", 0, 1e6},
        {"max-grad-norm", 0, OPT_FLOAT, &clip, "N", "clip the global gradient norm (0 = off)", 0, 1e30},
        {"warmup-ratio", 0, OPT_FLOAT, &warmup_ratio, "R", "linear warmup as a fraction of the steps", 0, 1},
        {"batch", 0, OPT_INT, &batch, "B", "rows per step (padded to the longest in the batch)", 1, 1 << 16},
        {"seq", 0, OPT_INT, &seq, "T", "max tokens per row incl. [CLS]/[SEP] (0 = min(128, positions))", 0, 1 << 24},
        {"seed", 0, OPT_U64, &seed, "S", "seed for the new head and shuffling", 0, -1},
        {"text-col", 0, OPT_STR, &text_col, "NAME", "text column (default: text, else sentence)", 0, -1},
        {"text2-col", 0, OPT_STR, &text2_col, "NAME", "second text of a pair ([CLS] A [SEP] B [SEP])", 0, -1},
        {"label-col", 0, OPT_STR, &label_col, "NAME", "label column (default: label)", 0, -1},
        {"limit", 0, OPT_INT, &limit, "N", "use only the first N training rows (0 = all)", 0, 1 << 30},
        {"dev-limit", 0, OPT_INT, &dev_limit, "N", "use only the first N dev rows (0 = all)", 0, 1 << 30},
        {"parse-special", 0, OPT_FLAG, &parse_special, NULL, PARSE_SPECIAL_HELP, 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON summary object at the end", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "finetune", "-m BERT_DIR -d TRAIN [--dev DEV] -o OUTDIR [--mode full|frozen|head] [--pool pooler|mean|cls]",
        "Fine-tune a BERT encoder as a sequence classifier (AdamW, linear decay, gradient clipping,\n"
        "dynamic padding) and write a BertForSequenceClassification directory.",
        "--pool mean / cls are recorded in config.json as \"ftq_pool\" and honoured by ftq; HF's\n"
        "BertForSequenceClassification ignores the key and always uses the pooler.",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "data", data) || opts_require(&spec, "output", output))
        return 2;
    ftq_bert_train_params p = ftq_bert_train_default_params();
    ftq_pool pool;
    if (strcmp(task, "classify") != 0)
        return cmd_fail(spec.name, "--task '%s' is not available for an encoder (only classify)", task) + 1;
    if (parse_pool(pool_s, &pool))
        return cmd_fail(spec.name, "--pool '%s' is not pooler, mean or cls", pool_s) + 1;
    if (strcmp(mode_s, "full") == 0)
        p.mode = FTQ_BERT_FULL;
    else if (strcmp(mode_s, "frozen") == 0)
        p.mode = FTQ_BERT_FROZEN;
    else if (strcmp(mode_s, "head") == 0)
        p.mode = FTQ_BERT_HEAD;
    else
        return cmd_fail(spec.name, "--mode '%s' is not full, frozen or head", mode_s) + 1;
    if (ftq_is_dir(output) || ftq_is_file(output))
        return cmd_fail(spec.name, "output '%s' already exists", output);
    ftq_bert *m = NULL;
    ftq_tokenizer *tok = NULL;
    rows tr = {0}, dv = {0};
    int32_t *pred = NULL;
    int rc = 0;
    if (ftq_bert_load(model, &m) != FTQ_OK || ftq_tokenizer_load(model, &tok) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    ftq_tokenizer_set_parse_special(tok, parse_special);
    const ftq_bert_config *c = ftq_bert_get_config(m);
    if (seq > c->max_position) {
        rc = cmd_fail(spec.name, "--seq %d exceeds the model's %d positions", seq, c->max_position);
        goto out;
    }
    if ((rc = rows_load(spec.name, data, text_col, text2_col, label_col, NULL, 0, 1, limit, &tr)))
        goto out;
    int nl = ftq_dataset_num_labels(tr.a);
    const char *const *names = ftq_dataset_label_names(tr.a);
    if (dev && (rc = rows_load(spec.name, dev, text_col, text2_col, label_col, names, nl, 1, dev_limit, &dv)))
        goto out;
    p.epochs = epochs;
    p.batch = batch;
    p.max_len = seq ? seq : (c->max_position < 128 ? c->max_position : 128);
    p.lr = lr >= 0 ? lr : p.mode == FTQ_BERT_HEAD ? 1e-3 : 5e-5;
    p.weight_decay = wd;
    p.max_grad_norm = clip;
    p.warmup_ratio = warmup_ratio;
    p.seed = seed;
    p.n_frozen = freeze >= 0 ? freeze : c->n_layers / 2;
    if (p.n_frozen > c->n_layers) {
        rc = cmd_fail(spec.name, "--freeze-layers %d exceeds the model's %d blocks", p.n_frozen, c->n_layers);
        goto out;
    }
    if (ftq_bert_add_head(m, nl, pool, seed) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    prog pg = {isatty(STDERR_FILENO), json, ftq_time_sec()};
    ftq_bert_train_report rep;
    if (ftq_bert_train(m, tok, tr.t1, tr.t2, tr.labels, tr.n, &p, on_step, &pg, &rep) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s: %s", data, ftq_last_error());
        goto out;
    }
    progress_done();
    if (rep.truncated)
        fprintf(stderr, "ftq finetune: %zu of %zu training texts truncated to %d tokens\n", rep.truncated, tr.n,
                p.max_len);
    double acc = NAN, dev_secs = 0;
    size_t labeled = 0;
    if (dev) {
        pred = malloc(sizeof *pred * (dv.n + 1));
        double t0 = ftq_time_sec();
        if (!pred || ftq_bert_predict(m, tok, dv.t1, dv.t2, dv.n, p.max_len, 64, pred, NULL) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s: %s", dev, pred ? ftq_last_error() : "out of memory");
            goto out;
        }
        dev_secs = ftq_time_sec() - t0;
        acc = accuracy(dv.labels, pred, dv.n, &labeled);
    }
    if (ftq_bert_save_classifier(m, model, output, names, nl) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    /* training tokens/s; head-only: the one forward pass over the data that computes the cache */
    double tps = p.mode == FTQ_BERT_HEAD ? (rep.feature_seconds > 0 ? (double)rep.tokens / rep.feature_seconds : 0)
                 : rep.seconds > 0      ? (double)rep.tokens / rep.seconds /* tokens of every epoch */
                                        : 0;
    if (json) {
        printf("{\"output\": ");
        json_print_string(stdout, output);
        printf(", \"mode\": \"%s\", \"pool\": \"%s\", \"examples\": %zu, \"steps\": %lld, \"train_seconds\": %.3f, "
               "\"feature_seconds\": %.3f, \"train_tokens\": %lld, \"tokens_per_second\": %.1f, \"final_loss\": %.6f, "
               "\"mean_loss\": %.6f, \"truncated\": %zu",
               mode_s, pool_s, tr.n, (long long)rep.steps, rep.seconds, rep.feature_seconds,
               (long long)rep.tokens, tps, rep.last_loss, rep.mean_loss, rep.truncated);
        if (dev)
            printf(", \"dev_examples\": %zu, \"dev_accuracy\": %.6f, \"dev_seconds\": %.3f", labeled, acc, dev_secs);
        printf("}\n");
    } else {
        printf("trained %s (%s, pool %s) on %zu rows: %lld steps in %.1f s (%.0f tokens/s), final loss %.4f\n", model,
               mode_s, pool_s, tr.n, (long long)rep.steps, rep.seconds, tps, rep.last_loss);
        if (dev)
            printf("dev accuracy %.4f on %zu rows\n", acc, labeled);
        printf("saved %s\n", output);
    }
out:
    free(pred);
    rows_free(&tr);
    rows_free(&dv);
    ftq_tokenizer_free(tok);
    ftq_bert_free(m);
    return rc;
}

int cmd_classify_bert(int argc, char **argv)
{
    const char *model = default_model_dir(), *prompt = NULL, *prompt2 = NULL, *data = NULL, *text_col = NULL,
               *text2_col = NULL, *label_col = NULL;
    int json = 0, limit = 0, seq = 0, batch = 32;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "BertForSequenceClassification directory", 0, -1},
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "classify one text", 0, -1},
        {"text2", 0, OPT_STR, &prompt2, "TEXT", "with -p: the second text of a pair ([CLS] A [SEP] B [SEP])", 0, -1},
        {"data", 'd', OPT_STR, &data, "FILE", "classify every row of a .csv/.tsv/.jsonl; labeled rows are scored", 0, -1},
        {"text-col", 0, OPT_STR, &text_col, "NAME", "text column (default: text, else sentence)", 0, -1},
        {"text2-col", 0, OPT_STR, &text2_col, "NAME", "second text of a pair", 0, -1},
        {"label-col", 0, OPT_STR, &label_col, "NAME", "label column (default: label)", 0, -1},
        {"limit", 0, OPT_INT, &limit, "N", "only the first N rows (0 = all)", 0, 1 << 30},
        {"seq", 0, OPT_INT, &seq, "T", "truncate to T tokens (0 = the model's positions)", 0, 1 << 24},
        {"batch", 0, OPT_INT, &batch, "B", "rows per forward pass", 1, 4096},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {"classify", "-m BERT_DIR (-p TEXT [--text2 TEXT] | -d FILE) [--json]",
                               "Predict labels with a BERT sequence classifier ([CLS] text [SEP], pooled as the "
                               "config says).",
                               NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if ((prompt != NULL) == (data != NULL))
        return cmd_fail(spec.name, "give exactly one of -p TEXT or -d FILE") + 1;
    if (prompt2 && !prompt)
        return cmd_fail(spec.name, "--text2 goes with -p (for -d use --text2-col)") + 1;
    ftq_bert *m = NULL;
    ftq_tokenizer *tok = NULL;
    char **names = NULL;
    int n_names = 0, rc = 0;
    rows rw = {0};
    int32_t *pred = NULL;
    float *logits = NULL;
    if (ftq_bert_load(model, &m) != FTQ_OK || ftq_tokenizer_load(model, &tok) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    const ftq_bert_config *c = ftq_bert_get_config(m);
    if (!c->num_labels) {
        rc = cmd_fail(spec.name, "'%s' has no classification head (train one with 'ftq finetune')", model);
        goto out;
    }
    n_names = c->num_labels;
    if (ftq_bert_load_labels(model, n_names, &names) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    int T = seq > 0 && seq < c->max_position ? seq : c->max_position;
    if (prompt) {
        rw.n = 1;
        rw.t1 = malloc(sizeof *rw.t1);
        rw.t2 = prompt2 ? malloc(sizeof *rw.t2) : NULL;
        rw.labels = malloc(sizeof *rw.labels);
        if (!rw.t1 || (prompt2 && !rw.t2) || !rw.labels) {
            rc = cmd_fail(spec.name, "out of memory");
            goto out;
        }
        rw.t1[0] = prompt;
        if (prompt2)
            rw.t2[0] = prompt2;
        rw.labels[0] = -1;
    } else if ((rc = rows_load(spec.name, data, text_col, text2_col, label_col, (const char *const *)names, n_names, 0,
                               limit, &rw))) {
        goto out;
    }
    pred = malloc(sizeof *pred * (rw.n + 1));
    logits = malloc(sizeof *logits * (rw.n + 1) * (size_t)c->num_labels);
    double t0 = ftq_time_sec();
    if (!pred || !logits || ftq_bert_predict(m, tok, rw.t1, rw.t2, rw.n, T, batch, pred, logits) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", pred && logits ? ftq_last_error() : "out of memory");
        goto out;
    }
    double secs = ftq_time_sec() - t0;
    size_t labeled = 0;
    double acc = accuracy(rw.labels, pred, rw.n, &labeled);
    if (prompt && json) {
        printf("{\"label\": ");
        json_print_string(stdout, names[pred[0]]);
        printf(", \"label_id\": %d, \"logits\": [", (int)pred[0]);
        for (int i = 0; i < c->num_labels; i++)
            printf("%s%.7g", i ? ", " : "", logits[i]);
        printf("]}\n");
    } else if (prompt) {
        printf("%s\n", names[pred[0]]);
    } else if (json) {
        printf("{\"examples\": %zu, \"labeled\": %zu", rw.n, labeled);
        if (labeled)
            printf(", \"accuracy\": %.6f", acc);
        printf(", \"predictions\": [");
        for (size_t i = 0; i < rw.n; i++) {
            printf("%s", i ? ", " : "");
            json_print_string(stdout, names[pred[i]]);
        }
        printf("], \"seconds\": %.3f}\n", secs);
    } else if (labeled) {
        printf("%s: %zu rows (%zu labeled) in %.2f s\naccuracy %.4f\n", data, rw.n, labeled, secs, acc);
    } else {
        for (size_t i = 0; i < rw.n; i++)
            printf("%s\t%s\n", names[pred[i]], rw.t1[i]);
    }
out:
    free(pred);
    free(logits);
    rows_free(&rw);
    if (names)
        ftq_free_strings(names, n_names);
    ftq_tokenizer_free(tok);
    ftq_bert_free(m);
    return rc;
}

int cmd_info_bert(int argc, char **argv)
{
    const char *model = default_model_dir();
    int json = 0, no_tensors = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "BERT encoder directory", 0, -1},
        {"no-tensors", 0, OPT_FLAG, &no_tensors, NULL, "do not list the tensors", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {"info", "-m BERT_DIR [--no-tensors] [--json]",
                               "Show a BERT encoder's config, parameters, pooling, head and tensors.", NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    ftq_bert *m = NULL;
    ftq_tokenizer *tok = NULL;
    char **names = NULL;
    if (ftq_bert_load(model, &m) != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    const ftq_bert_config *c = ftq_bert_get_config(m);
    ftq_pool st_pool;
    int st_norm = 0, st_seq = 0, rc = 0;
    if (ftq_tokenizer_load(model, &tok) != FTQ_OK || ftq_bert_st_pooling(model, &st_pool, &st_norm, &st_seq) != FTQ_OK ||
        (c->num_labels && ftq_bert_load_labels(model, c->num_labels, &names) != FTQ_OK)) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    static const char *const pools[] = {"pooler", "mean", "cls", "max"};
    const char *arch = c->num_labels ? "BertForSequenceClassification" : "BertModel";
    if (json) {
        printf("{\"architecture\": \"%s\", \"model_type\": \"bert\", \"config\": {\"vocab_size\": %d, \"hidden_size\": %d, "
               "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"intermediate_size\": %d, "
               "\"max_position_embeddings\": %d, \"type_vocab_size\": %d, \"layer_norm_eps\": %g, \"prefix\": \"%s\", "
               "\"pooler\": %s}, \"parameters\": %lld, \"embedding_pooling\": \"%s\", \"normalize\": %s",
               arch, c->vocab_size, c->hidden, c->n_layers, c->n_heads, c->ffn, c->max_position, c->type_vocab,
               (double)c->eps, c->prefix, c->has_pooler ? "true" : "false", (long long)ftq_bert_param_count(m),
               pools[st_pool], st_norm ? "true" : "false");
        if (c->num_labels) {
            printf(", \"num_labels\": %d, \"classifier_pooling\": \"%s\", \"labels\": [", c->num_labels, pools[c->pool]);
            for (int i = 0; i < c->num_labels; i++) {
                printf("%s", i ? ", " : "");
                json_print_string(stdout, names[i]);
            }
            printf("]");
        }
        printf(", \"tokenizer\": ");
        json_print_string(stdout, ftq_tokenizer_kind_name(tok));
        if (!no_tensors) {
            printf(", \"tensors\": [");
            size_t off, numel;
            const char *nm;
            for (int i = 0; (nm = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
                printf("%s{\"name\": ", i ? ", " : "");
                json_print_string(stdout, nm);
                printf(", \"numel\": %zu}", numel);
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("architecture: bert (%s%s)\n", arch, c->prefix[0] ? ", names with the bert. prefix" : "");
        printf("config:       vocab %d, hidden %d, layers %d, heads %d, head_dim %d, ffn %d, positions %d, types %d\n",
               c->vocab_size, c->hidden, c->n_layers, c->n_heads, c->head_dim, c->ffn, c->max_position, c->type_vocab);
        printf("              layer_norm eps %g, activation gelu (erf), post-LN, %s\n", (double)c->eps,
               c->has_pooler ? "pooler" : "no pooler");
        printf("parameters:   %s\n", fmt_count(ftq_bert_param_count(m)));
        printf("embeddings:   %s pooling%s (sentence-transformers)\n", pools[st_pool], st_norm ? ", normalized" : "");
        if (c->num_labels) {
            printf("classifier:   %d labels (", c->num_labels);
            for (int i = 0; i < c->num_labels; i++)
                printf("%s%s", i ? ", " : "", names[i]);
            printf("), pooled by %s\n", pools[c->pool]);
        }
        printf("tokenizer:    %s, vocab %d\n", ftq_tokenizer_kind_name(tok), ftq_tokenizer_vocab_size(tok));
        size_t off, numel;
        const char *nm;
        for (int i = 0; !no_tensors && (nm = ftq_bert_tensor_info(m, i, &off, &numel)); i++)
            printf("  %-64s %12s\n", nm, fmt_count((long long)numel));
    }
out:
    if (names)
        ftq_free_strings(names, c->num_labels);
    ftq_tokenizer_free(tok);
    ftq_bert_free(m);
    return rc;
}
