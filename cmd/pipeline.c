/* pipeline.c - `ftq pipeline`: the main job end to end. base model -> fine-tune -> prune
 * (optional) -> int8 and int4, each stage measured the same way (perplexity on an evaluation
 * text, dev accuracy / macro-F1, file size, peak memory, tokens/s) and reported as one table,
 * JSON, and an SVG chart with the training loss. A BERT encoder takes the same stages
 * (the trainer fine-tunes every family; no perplexity, shown as n/a; tokens/s = forward
 * speed over the dev texts, eval/stage_bert.c).
 *
 * Every heavy step runs in a forked child: the parent never starts the OpenMP / OpenBLAS
 * thread pools (so forking stays safe) and each stage's peak memory is its own. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq.h"

/* What a child sends back through its pipe. */
typedef struct {
    int rc;
    char msg[1024];
    ftq_stage_metrics m;
    /* training */
    int64_t steps;
    double final_loss, train_loss, train_tps, train_seconds;
    /* prune / quantize */
    double sparsity, seconds;
} child_result;

typedef int (*child_fn)(void *arg, child_result *out);

/* Run fn(arg) in a child process; the parent waits and receives its result. */
static int run_child(child_fn fn, void *arg, child_result *res)
{
    memset(res, 0, sizeof *res);
    int fd[2];
    if (pipe(fd) != 0)
        return ftq_set_error(FTQ_EIO, "cannot create a pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return ftq_set_error(FTQ_EIO, "cannot fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fd[0]);
        child_result r;
        memset(&r, 0, sizeof r);
        cmd_init_threads();
        r.rc = fn(arg, &r);
        if (r.rc != FTQ_OK)
            snprintf(r.msg, sizeof r.msg, "%s", ftq_last_error());
        ssize_t w = write(fd[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 3);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof *res) {
        ssize_t k = read(fd[0], (char *)res + got, sizeof *res - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (got != sizeof *res)
        return ftq_set_error(FTQ_EIO, "a pipeline step died (%s %d)", WIFSIGNALED(st) ? "signal" : "exit",
                             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    if (res->rc != FTQ_OK)
        return ftq_set_error(res->rc, "%s", res->msg);
    return FTQ_OK;
}

/* ---- the steps -------------------------------------------------------------------- */

typedef struct {
    const char *dir;
    const char *name;
    const ftq_stage_eval_params *ep;
    const char *dev_source;
    const char *label_config; /* config.json whose id2label orders the dev labels */
    int encoder;              /* a BERT encoder */
    const char *label_dir;    /* encoder: the directory of label_config */
} eval_job;

/* An encoder classifier's label names in id order (config.json id2label; read without
 * loading the model, so a stage's peak memory is its own model's). */
static int encoder_labels(const char *dir, char ***names, int *n)
{
    char *path = ftq_path_join(dir, "config.json"), *text = NULL;
    size_t len = 0;
    int rc = path ? ftq_read_file_max(path, FTQ_MAX_CONFIG_BYTES, &text, &len) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    cJSON *j = rc == FTQ_OK ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(j, "id2label");
    if (rc == FTQ_OK && !cJSON_IsObject(id2))
        rc = ftq_set_error(FTQ_EFORMAT, "'%s': expected an id2label object (a classifier's labels)", path);
    *n = rc == FTQ_OK ? cJSON_GetArraySize(id2) : 0;
    cJSON_Delete(j);
    free(text);
    free(path);
    return rc == FTQ_OK ? ftq_bert_load_labels(dir, *n, names) : rc;
}

static int do_eval(void *arg, child_result *r)
{
    eval_job *j = arg;
    ftq_stage_eval_params ep = *j->ep;
    ftq_dataset *dev = NULL;
    char **names = NULL;
    int nn = 0, rc = FTQ_OK;
    if (j->dev_source && j->label_config && ftq_is_file(j->label_config) && j->encoder) {
        rc = encoder_labels(j->label_dir, &names, &nn);
        ftq_dataset_params dp = ftq_dataset_default_params();
        dp.label_names = (const char *const *)names;
        dp.n_label_names = nn;
        if (rc == FTQ_OK)
            rc = ftq_dataset_load(j->dev_source, &dp, &dev);
    } else if (j->dev_source && j->encoder) { /* the base encoder: speed over the dev texts */
        ftq_dataset_params dp = ftq_dataset_default_params();
        dp.require_labels = 0;
        rc = ftq_dataset_load(j->dev_source, &dp, &dev);
    } else if (j->dev_source && j->label_config && ftq_is_file(j->label_config)) {
        ftq_model_config cfg;
        if (ftq_config_load(j->label_config, &cfg) == FTQ_OK && cfg.is_classifier) {
            rc = ftq_config_load_labels(j->label_config, &names, &nn);
            ftq_dataset_params dp = ftq_dataset_default_params();
            dp.label_names = (const char *const *)names;
            dp.n_label_names = nn;
            if (rc == FTQ_OK)
                rc = ftq_dataset_load(j->dev_source, &dp, &dev);
        }
    }
    ep.dev = dev;
    ep.dev_speed_only = j->encoder && !j->label_config;
    snprintf(r->m.name, sizeof r->m.name, "%s", j->name);
    if (rc == FTQ_OK)
        rc = ftq_stage_evaluate(j->dir, &ep, &r->m);
    ftq_dataset_free(dev);
    ftq_free_strings(names, nn);
    return rc;
}

typedef struct {
    ftq_train_config c;
} train_job;

static int on_train(void *user, const ftq_train_progress *p)
{
    (void)user;
    if (p->event == FTQ_TRAIN_EVENT_STEP) {
        char label[96];
        snprintf(label, sizeof label, "loss %.4f lr %.2e %.0f tok/s", p->loss, p->lr, p->tokens_per_second);
        progress_bar((int)p->step, (int)p->total_steps, label);
    }
    return 0;
}

static int do_train(void *arg, child_result *r)
{
    train_job *j = arg;
    ftq_trainer *t = NULL;
    int rc = ftq_trainer_new(&j->c, &t);
    if (rc != FTQ_OK)
        return rc;
    ftq_train_result tr;
    rc = ftq_trainer_run(t, &tr);
    progress_done();
    r->steps = tr.steps;
    r->final_loss = tr.final_loss;
    r->train_loss = tr.train_loss;
    r->train_tps = tr.tokens_per_second;
    r->train_seconds = tr.train_seconds;
    ftq_train_result_free(&tr);
    ftq_trainer_free(t);
    return rc;
}

typedef struct {
    const char *in, *out;
    ftq_prune_params p;
    const char *calib_source; /* text file, or the training rows' texts when a table */
    size_t max_calib;         /* calibration tokens at most */
} prune_job;

/* Calibration tokens: a text file, or the texts of a labeled dataset joined by newlines. */
static int calib_tokens(const char *model_dir, const char *source, int32_t **ids, size_t *n, int *bos)
{
    ftq_tokenizer *tok = NULL;
    int rc = ftq_tokenizer_load(model_dir, &tok);
    if (rc != FTQ_OK)
        return rc;
    char *text = NULL;
    size_t len = 0;
    ftq_data_format fmt = FTQ_DATA_TEXT;
    ftq_dataset_detect_format(source, &fmt);
    if (fmt == FTQ_DATA_TEXT) {
        rc = ftq_text_load(source, &text, &len);
    } else {
        ftq_dataset *d = NULL;
        ftq_dataset_params dp = ftq_dataset_default_params();
        dp.require_labels = 0;
        rc = ftq_dataset_load(source, &dp, &d);
        size_t cap = 0;
        for (size_t i = 0; rc == FTQ_OK && i < ftq_dataset_size(d); i++)
            cap += strlen(ftq_dataset_text(d, i)) + 1;
        text = rc == FTQ_OK ? malloc(cap + 1) : NULL;
        if (rc == FTQ_OK && !text)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        for (size_t i = 0; rc == FTQ_OK && i < ftq_dataset_size(d); i++) {
            size_t k = strlen(ftq_dataset_text(d, i));
            memcpy(text + len, ftq_dataset_text(d, i), k);
            len += k;
            text[len++] = '\n';
        }
        if (text)
            text[len] = '\0';
        ftq_dataset_free(d);
    }
    if (rc == FTQ_OK)
        rc = ftq_tokenizer_encode(tok, text, len, 0, ids, n);
    *bos = ftq_tokenizer_adds_bos(tok) ? ftq_tokenizer_bos(tok) : -1;
    free(text);
    ftq_tokenizer_free(tok);
    return rc;
}

static int do_prune(void *arg, child_result *r)
{
    prune_job *j = arg;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = FTQ_OK;
    if (j->p.method == FTQ_PRUNE_WANDA) {
        rc = calib_tokens(j->in, j->calib_source, &ids, &n, &j->p.calib_bos);
        if (rc != FTQ_OK)
            return ftq_wrap_error(rc, "calibration text '%s'", j->calib_source);
        j->p.calib = ids;
        j->p.n_calib = n < j->max_calib ? n : j->max_calib;
    }
    ftq_prune_report rep;
    double t0 = ftq_time_sec();
    rc = ftq_prune_model(j->in, j->out, &j->p, &rep);
    r->seconds = ftq_time_sec() - t0;
    if (rc == FTQ_OK) {
        r->sparsity = rep.pruned_numel ? (double)rep.pruned_zeros / rep.pruned_numel : 0;
        ftq_prune_report_free(&rep);
    }
    free(ids);
    return rc;
}

typedef struct {
    const char *in, *out;
    ftq_quantize_params p;
} quant_job;

static int do_quantize(void *arg, child_result *r)
{
    quant_job *j = arg;
    ftq_quantize_report rep;
    int rc = ftq_quantize_model(j->in, j->out, &j->p, &rep);
    if (rc == FTQ_OK) {
        r->seconds = rep.seconds;
        ftq_quantize_report_free(&rep);
    }
    return rc;
}

typedef struct {
    const char *in, *type, *out;
} export_job;

static int do_export(void *arg, child_result *r)
{
    export_job *j = arg;
    double t0 = ftq_time_sec();
    int rc = cmd_export_gguf(j->in, j->type, j->out);
    r->seconds = ftq_time_sec() - t0;
    return rc;
}

/* Training losses from the trainer's JSON-lines log ({"event":"step",...,"loss":x}). */
static double *read_losses(const char *log_path, int *n)
{
    *n = 0;
    char *data = NULL;
    size_t len = 0;
    if (ftq_read_file(log_path, &data, &len) != FTQ_OK)
        return NULL;
    int cap = 256;
    double *v = malloc(sizeof(double) * (size_t)cap);
    for (char *line = data; v && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        const cJSON *ev = j ? cJSON_GetObjectItem(j, "event") : NULL;
        const cJSON *loss = j ? cJSON_GetObjectItem(j, "loss") : NULL;
        if (cJSON_IsString(ev) && strcmp(ev->valuestring, "step") == 0 && cJSON_IsNumber(loss)) {
            if (*n == cap) {
                cap *= 2;
                double *g = realloc(v, sizeof(double) * (size_t)cap);
                if (!g) {
                    cJSON_Delete(j);
                    break;
                }
                v = g;
            }
            v[(*n)++] = loss->valuedouble;
        }
        cJSON_Delete(j);
        line = nl ? nl + 1 : NULL;
    }
    free(data);
    return v;
}

/* ---- output ------------------------------------------------------------------------ */

static void print_num(FILE *fp, double v, const char *fmt)
{
    if (isfinite(v))
        fprintf(fp, fmt, v);
    else
        fprintf(fp, "null");
}

static void print_stage_json(FILE *fp, const ftq_stage_metrics *s, const char *dir)
{
    fprintf(fp, "{\"stage\": ");
    json_print_string(fp, s->name);
    fprintf(fp, ", \"dir\": ");
    json_print_string(fp, dir);
    fprintf(fp, ", \"ppl\": ");
    print_num(fp, s->ppl, "%.6f");
    fprintf(fp, ", \"ppl_stderr\": ");
    print_num(fp, s->ppl_stderr, "%.6f");
    fprintf(fp, ", \"accuracy\": ");
    print_num(fp, s->accuracy, "%.6f");
    fprintf(fp, ", \"macro_f1\": ");
    print_num(fp, s->macro_f1, "%.6f");
    fprintf(fp, ", \"kl_vs_base\": ");
    print_num(fp, s->kl, "%.6f");
    fprintf(fp, ", \"top1_agree_vs_base\": ");
    print_num(fp, s->top1_agree, "%.6f");
    fprintf(fp, ", \"file_bytes\": %.0f, \"peak_rss_bytes\": %.0f, \"tokens_per_second\": %.1f, "
                "\"classify_per_second\": %.1f, \"dev_examples\": %lld, \"tokens_scored\": %lld}",
            s->file_bytes, s->peak_rss_bytes, s->tokens_per_second, s->classify_per_second,
            (long long)s->dev_examples, (long long)s->tokens_scored);
}

static void cell(char *buf, size_t cap, double v, const char *fmt)
{
    if (isfinite(v))
        snprintf(buf, cap, fmt, v);
    else
        snprintf(buf, cap, "-");
}

static void print_table(FILE *fp, const ftq_stage_metrics *st, int n, int encoder)
{
    fprintf(fp, "%-10s %18s %8s %8s %10s %9s %10s\n", "stage", "perplexity", "dev acc", "macro-F1", "size MB",
            "peak MB", "tokens/s");
    for (int i = 0; i < n; i++) {
        char ppl[40], acc[16], f1[16], tps[16];
        if (isfinite(st[i].ppl))
            snprintf(ppl, sizeof ppl, "%.4f +/- %.4f", st[i].ppl, st[i].ppl_stderr);
        else
            snprintf(ppl, sizeof ppl, "%s", encoder ? "n/a" : "-"); /* an encoder has no LM head */
        cell(acc, sizeof acc, 100 * st[i].accuracy, "%.2f %%");
        cell(f1, sizeof f1, st[i].macro_f1, "%.4f");
        cell(tps, sizeof tps, st[i].tokens_per_second > 0 ? st[i].tokens_per_second : NAN, "%.0f");
        fprintf(fp, "%-10s %18s %8s %8s %10.3f %9.1f %10s\n", st[i].name, ppl, acc, f1, st[i].file_bytes / 1e6,
                st[i].peak_rss_bytes / 1e6, tps);
    }
}

static int write_json_report(const char *path, const ftq_stage_metrics *st, char dirs[][4096], int n,
                             const child_result *train, const double *loss, int n_loss, FILE *also)
{
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, path);
    if (rc != FTQ_OK)
        return rc;
    for (int pass = 0; pass < 2; pass++) {
        FILE *fp = pass ? also : af.fp;
        if (!fp)
            continue;
        fprintf(fp, "{\"stages\": [");
        for (int i = 0; i < n; i++) {
            fprintf(fp, "%s", i ? ", " : "");
            print_stage_json(fp, &st[i], dirs[i]);
        }
        fprintf(fp, "], \"training\": {\"steps\": %lld, \"final_loss\": %.6f, \"train_loss\": %.6f, "
                    "\"tokens_per_second\": %.1f, \"seconds\": %.2f, \"loss\": [",
                (long long)train->steps, train->final_loss, train->train_loss, train->train_tps,
                train->train_seconds);
        for (int i = 0; i < n_loss; i++)
            fprintf(fp, "%s%.5f", i ? ", " : "", loss[i]);
        fprintf(fp, "]}}\n");
    }
    return ftq_atomic_commit(&af);
}

/* ---- the command ------------------------------------------------------------------- */

int cmd_pipeline(int argc, char **argv)
{
    const char *model = default_model_dir(), *train = NULL, *dev = NULL, *eval = NULL, *out = NULL;
    const char *mode = "full", *prune = "none", *nm = NULL, *calib = NULL, *title = NULL, *pool_s = "pooler";
    const char *task = "classify", *export_type = "none";
    int freeze = -1, epochs = 1, max_steps = 0, batch = 32, seq = 64, limit = 0, dev_limit = 0, ctx = 256, chunks = 0;
    int group = 32, search = 0, json = 0, force = 0, calib_max = 0;
    double lr = -1, sparsity = 0.5;
    uint64_t seed = 42;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "pretrained model directory or .gguf file", 0, -1},
        {"data", 'd', OPT_STR, &train, "TRAIN", "labeled training rows (.csv/.tsv/.jsonl, or ARCHIVE:MEMBER); --task lm: text", 0, -1},
        {"dev", 0, OPT_STR, &dev, "DEV", "labeled dev rows for accuracy and macro-F1", 0, -1},
        {"file", 'f', OPT_STR, &eval, "EVAL", "evaluation text for perplexity", 0, -1},
        {"output", 'o', OPT_STR, &out, "OUTDIR", "output directory (must not exist)", 0, -1},
        {"task", 0, OPT_STR, &task, "TASK", "classify (labeled rows) | lm (next-token loss on a text file)", 0, -1},
        {"mode", 0, OPT_STR, &mode, "MODE", "fine-tuning: full | frozen | head", 0, -1},
        {"freeze-layers", 0, OPT_INT, &freeze, "K", "blocks to freeze with --mode frozen (-1: half)", -1, 1 << 20},
        {"epochs", 0, OPT_INT, &epochs, "E", "training epochs", 1, 1000},
        {"max-steps", 0, OPT_INT, &max_steps, "N", "optimizer steps instead of epochs (0 = epochs)", 0, 1 << 30},
        {"lr", 0, OPT_FLOAT, &lr, "LR", "peak learning rate (linear schedule; default 1e-3, encoders 5e-5 and "
                                        "1e-3 for --mode head)", -1, 10},
        {"pool", 0, OPT_STR, &pool_s, "HOW", "encoders: classifier pooling pooler | mean | cls", 0, -1},
        {"batch", 0, OPT_INT, &batch, "B", "rows per batch", 1, 1 << 16},
        {"seq", 0, OPT_INT, &seq, "T", "max tokens per row", 2, 1 << 20},
        {"limit", 0, OPT_INT, &limit, "N", "use only the first N training rows (0 = all)", 0, 1 << 30},
        {"dev-limit", 0, OPT_INT, &dev_limit, "N", "use only the first N dev rows (lm: blocks) in training (0 = all)", 0,
         1 << 30},
        {"seed", 0, OPT_U64, &seed, "S", "seed for the head and shuffling", 0, -1},
        {"prune", 0, OPT_STR, &prune, "METHOD", "none | magnitude | nm | wanda (after fine-tuning)", 0, -1},
        {"sparsity", 0, OPT_FLOAT, &sparsity, "S", "pruning sparsity (magnitude, wanda)", 0, 1},
        {"nm", 0, OPT_STR, &nm, "N:M", "N:M pattern for --prune nm (default 2:4) or wanda", 0, -1},
        {"calib", 0, OPT_STR, &calib, "FILE", "wanda calibration text (default: the training texts)", 0, -1},
        {"calib-tokens", 0, OPT_INT, &calib_max, "N", "wanda: use at most N calibration tokens (0: 65536, "
         "encoders 8192)", 0, 1 << 30},
        {"group", 0, OPT_INT, &group, "G", "int4 group size (32, 64, 128)", 32, 128},
        {"search", 0, OPT_FLAG, &search, NULL, "int4: per-group scale search (minimum squared error)", 0, -1},
        {"export", 0, OPT_STR, &export_type, "TYPE", "also export the last unquantized stage as OUTDIR/model-TYPE.gguf "
                                                     "(f32 | f16 | q8_0 | q4_0 | none)", 0, -1},
        {"ctx", 'c', OPT_INT, &ctx, "CTX", "perplexity window (llama.cpp protocol)", 4, 1 << 20},
        {"chunks", 0, OPT_INT, &chunks, "N", "perplexity: only the first N windows (0 = all)", 0, 1 << 30},
        {"title", 0, OPT_STR, &title, "TEXT", "chart title", 0, -1},
        {"force", 0, OPT_FLAG, &force, NULL, "replace OUTDIR if it exists", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print the report as one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "pipeline", "[-m DIR|FILE.gguf] -d TRAIN [--dev DEV] [-f EVAL] -o OUTDIR [--task classify|lm] [--mode M] "
                    "[--prune METHOD] [--export TYPE] [--json]",
        "The main job end to end: measure the pretrained model, fine-tune a classifier (--task lm:\n"
        "the language model) on TRAIN,\n"
        "optionally prune it, quantize it to int8 and int4, and measure every stage the same way:\n"
        "perplexity on EVAL, dev accuracy and macro-F1, file size, peak memory and tokens/s.",
        "Writes OUTDIR/{finetuned,pruned,int8,int4}/ (HF-layout models), OUTDIR/report.json,\n"
        "OUTDIR/report.svg (bars per stage and the training loss curve) and OUTDIR/train_log.jsonl.\n"
        "Perplexity needs an LM head: a classifier of a model with tied embeddings keeps one (the\n"
        "embedding matrix); with untied embeddings the fine-tuned stages show '-'. int8 is groups of\n"
        "32; int4 uses --group (symmetric) and --search. Each stage is evaluated in its own process,\n"
        "so 'peak MB' is that stage's own peak resident memory.\n"
        "A BERT encoder (model_type bert) needs no EVAL: it has no LM head, so perplexity shows\n"
        "'n/a'; tokens/s is then its forward speed over the dev texts, measured at every stage.\n"
        "Decoders warm up over 6 % of the steps, encoders not (HF Trainer's default).",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    const int encoder = ftq_bert_is_encoder_dir(model);
    if (opts_require(&spec, "data", train) || (!encoder && opts_require(&spec, "file", eval)) ||
        opts_require(&spec, "output", out))
        return 2;
    if (strcmp(pool_s, "mean") != 0 && strcmp(pool_s, "cls") != 0 && strcmp(pool_s, "pooler") != 0)
        return cmd_fail(spec.name, "unknown --pool '%s' (expected pooler, mean or cls)", pool_s) + 1;
    ftq_train_mode tmode;
    if (strcmp(mode, "full") == 0)
        tmode = FTQ_TRAIN_FULL;
    else if (strcmp(mode, "frozen") == 0)
        tmode = FTQ_TRAIN_FROZEN;
    else if (strcmp(mode, "head") == 0)
        tmode = FTQ_TRAIN_HEAD;
    else
        return cmd_fail(spec.name, "unknown --mode '%s' (expected full, frozen or head)", mode) + 1;
    int lm = strcmp(task, "lm") == 0;
    if (!lm && strcmp(task, "classify") != 0)
        return cmd_fail(spec.name, "unknown --task '%s' (expected classify or lm)", task) + 1;
    static const char *const export_types[] = {"none", "f32", "f16", "q8_0", "q4_0", NULL};
    int xt = 0;
    while (export_types[xt] && strcmp(export_types[xt], export_type) != 0)
        xt++;
    if (!export_types[xt])
        return cmd_fail(spec.name, "unknown --export '%s' (expected f32, f16, q8_0, q4_0 or none)", export_type) + 1;
    ftq_prune_params pp = ftq_prune_default_params();
    int do_pr = strcmp(prune, "none") != 0;
    if (strcmp(prune, "magnitude") == 0) {
        pp.method = FTQ_PRUNE_MAGNITUDE;
        pp.scope = FTQ_PRUNE_TENSOR;
    } else if (strcmp(prune, "nm") == 0) {
        pp.method = FTQ_PRUNE_NM;
        pp.n = 2;
        pp.m = 4;
    } else if (strcmp(prune, "wanda") == 0) {
        pp.method = FTQ_PRUNE_WANDA;
    } else if (do_pr) {
        return cmd_fail(spec.name, "unknown --prune '%s' (expected none, magnitude, nm or wanda)", prune) + 1;
    }
    pp.sparsity = (float)sparsity;
    if (nm) {
        int a = 0, b = 0, k = 0;
        if (sscanf(nm, "%d:%d%n", &a, &b, &k) != 2 || nm[k] || a < 1 || b < 2 || a >= b || b > 64)
            return cmd_fail(spec.name, "--nm expects N:M with 0 < N < M <= 64, got '%s'", nm) + 1;
        if (pp.method == FTQ_PRUNE_MAGNITUDE || !do_pr)
            return cmd_fail(spec.name, "--nm needs --prune nm or wanda") + 1;
        pp.n = a;
        pp.m = b;
    }
    if (group != 32 && group != 64 && group != 128)
        return cmd_fail(spec.name, "--group must be 32, 64 or 128, got %d", group) + 1;
    if (force && ftq_is_dir(out) && ftq_remove_tree(out) != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    if (mkdir(out, 0777) != 0)
        return cmd_fail(spec.name, "cannot create output '%s': %s", out,
                        errno == EEXIST ? "it already exists" : strerror(errno));

    enum { MAXST = 6 };
    ftq_stage_metrics st[MAXST];
    char dirs[MAXST][4096];
    int n = 0, rc = 0;
    child_result res, tres;
    memset(&tres, 0, sizeof tres);
    char log_path[4096], path[4096];
    snprintf(log_path, sizeof log_path, "%s/train_log.jsonl", out);

    /* the evaluation text, tokenized once (the tokenizer is the same at every stage) */
    ftq_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    if (!encoder && cmd_load(spec.name, model, NULL, &tok))
        return 1;
    if (!encoder &&
        (ftq_read_file(eval, &text, &len) != FTQ_OK || ftq_tokenizer_encode(tok, text, len, 0, &ids, &n_ids) != FTQ_OK)) {
        rc = cmd_fail(spec.name, "-f '%s': %s", eval, ftq_last_error());
        free(text);
        ftq_tokenizer_free(tok);
        return rc;
    }
    free(text);
    ftq_stage_eval_params ep = ftq_stage_eval_default_params();
    ep.eval_tokens = ids;
    ep.n_eval_tokens = n_ids;
    ep.ppl.n_ctx = ctx;
    ep.ppl.n_chunks = chunks;
    ep.ppl.add_bos = tok && ftq_tokenizer_adds_bos(tok) && ftq_tokenizer_bos(tok) >= 0;
    ep.ppl.bos_id = ep.ppl.add_bos ? ftq_tokenizer_bos(tok) : 0;
    ep.max_len = seq;
    ftq_tokenizer_free(tok);

    const char *last = model;
    /* 1. the pretrained model */
    fprintf(stderr, "[1] measuring the pretrained model\n");
    eval_job ej = {model, "base", &ep, dev, NULL, encoder, NULL};
    snprintf(dirs[n], sizeof dirs[n], "%s", model);
    if (run_child(do_eval, &ej, &res) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto done;
    }
    st[n++] = res.m;

    /* 2. fine-tune */
    snprintf(dirs[n], sizeof dirs[n], "%s/finetuned", out);
    fprintf(stderr, "[2] fine-tuning (%s) -> %s\n", mode, dirs[n]);
    train_job tj;
    tj.c = ftq_train_default_config();
    tj.c.model_dir = model;
    tj.c.train_source = train;
    tj.c.dev_source = dev;
    tj.c.output_dir = dirs[n];
    tj.c.log_path = log_path;
    tj.c.task = lm ? FTQ_TASK_LM : FTQ_TASK_CLASSIFY;
    tj.c.mode = tmode;
    tj.c.freeze_layers = freeze;
    tj.c.epochs = epochs;
    tj.c.max_steps = max_steps;
    tj.c.warmup_ratio = 0.06;
    tj.c.batch_size = batch;
    tj.c.seq_len = seq;
    tj.c.limit = limit;
    tj.c.dev_limit = dev_limit;
    tj.c.seed = seed;
    tj.c.progress = on_train;
    if (encoder) { /* the trainer picks the family; encoders take HF Trainer's defaults */
        tj.c.pool = pool_s;
        tj.c.lr = lr; /* negative: 5e-5, head 1e-3 */
        tj.c.warmup_ratio = 0;
    } else {
        tj.c.lr = lr >= 0 ? lr : 1e-3;
    }
    if (run_child(do_train, &tj, &tres) != FTQ_OK) {
        rc = cmd_fail(spec.name, "fine-tuning: %s", ftq_last_error());
        goto done;
    }
    last = dirs[n];
    char label_cfg[4200];
    if (snprintf(label_cfg, sizeof label_cfg, "%s/config.json", last) >= (int)sizeof label_cfg) {
        rc = cmd_fail(spec.name, "output path too long");
        goto done;
    }
    ej = (eval_job){last, "finetuned", &ep, dev, label_cfg, encoder, dirs[1]};
    if (run_child(do_eval, &ej, &res) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto done;
    }
    st[n++] = res.m;

    /* 3. prune */
    if (do_pr) {
        snprintf(dirs[n], sizeof dirs[n], "%s/pruned", out);
        fprintf(stderr, "[3] pruning (%s) -> %s\n", prune, dirs[n]);
        /* encoders: Wanda calibrates block by block, one forward per block, on fewer tokens */
        prune_job pj = {last, dirs[n], pp, calib ? calib : train,
                        calib_max > 0 ? (size_t)calib_max : encoder ? 8192 : 65536};
        if (run_child(do_prune, &pj, &res) != FTQ_OK) {
            rc = cmd_fail(spec.name, "pruning: %s", ftq_last_error());
            goto done;
        }
        last = dirs[n];
        ej = (eval_job){last, "pruned", &ep, dev, label_cfg, encoder, dirs[1]};
        if (run_child(do_eval, &ej, &res) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s", ftq_last_error());
            goto done;
        }
        st[n++] = res.m;
    }

    /* 4. quantize */
    const char *qname[2] = {"int8", "int4"};
    const char *src = last;
    for (int q = 0; q < 2; q++) {
        snprintf(dirs[n], sizeof dirs[n], "%s/%s", out, qname[q]);
        fprintf(stderr, "[%d] quantizing to %s -> %s\n", 4 + q - !do_pr, qname[q], dirs[n]);
        quant_job qj = {src, dirs[n], ftq_quantize_default_params()};
        qj.p.bits = q ? 4 : 8;
        qj.p.group = q ? group : 32;
        qj.p.search = q ? search : 0;
        if (run_child(do_quantize, &qj, &res) != FTQ_OK) {
            rc = cmd_fail(spec.name, "quantizing to %s: %s", qname[q], ftq_last_error());
            goto done;
        }
        ej = (eval_job){dirs[n], qname[q], &ep, dev, label_cfg, encoder, dirs[1]};
        if (run_child(do_eval, &ej, &res) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s", ftq_last_error());
            goto done;
        }
        st[n++] = res.m;
    }

    /* 5. export (the last stage in floating point) */
    if (xt > 0) {
        snprintf(dirs[n], sizeof dirs[n], "%s/model-%s.gguf", out, export_type);
        fprintf(stderr, "[%d] exporting %s to GGUF %s -> %s\n", 6 - !do_pr, last, export_type, dirs[n]);
        export_job xj = {last, export_type, dirs[n]};
        if (run_child(do_export, &xj, &res) != FTQ_OK) {
            rc = cmd_fail(spec.name, "exporting: %s", ftq_last_error());
            goto done;
        }
        ej = (eval_job){dirs[n], "gguf", &ep, dev, label_cfg, 0, NULL}; /* decoders only */
        if (run_child(do_eval, &ej, &res) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s", ftq_last_error());
            goto done;
        }
        st[n++] = res.m;
    }

    /* 6. report */
    int n_loss = 0;
    double *loss = read_losses(log_path, &n_loss);
    char title_buf[512];
    snprintf(title_buf, sizeof title_buf, "%s", title ? title : "ftq pipeline: base -> fine-tuned -> quantized");
    snprintf(path, sizeof path, "%s/report.svg", out);
    if (ftq_report_svg(path, title_buf, st, n, loss, n_loss) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        free(loss);
        goto done;
    }
    snprintf(path, sizeof path, "%s/report.json", out);
    if (write_json_report(path, st, dirs, n, &tres, loss, n_loss, json ? stdout : NULL) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        free(loss);
        goto done;
    }
    free(loss);
    if (!json) {
        printf("training: %lld steps, final loss %.4f (mean %.4f), %.0f tokens/s, %.1f s\n", (long long)tres.steps,
               tres.final_loss, tres.train_loss, tres.train_tps, tres.train_seconds);
        print_table(stdout, st, n, encoder);
        printf("report: %s/report.svg, %s/report.json\n", out, out);
    }
done:
    free(ids);
    return rc;
}
