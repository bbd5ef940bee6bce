/* bert_cmds.c - `ftq classify` and `ftq info` on a BERT encoder directory (config.json
 * model_type bert): cmd_classify / cmd_info hand over to these when -m names one
 * (`ftq finetune` trains encoders and decoders through the same trainer).
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

int cmd_classify_bert(int argc, char **argv)
{
    const char *model = default_model_dir(), *prompt = NULL, *prompt2 = NULL, *data = NULL, *text_col = NULL,
               *text2_col = NULL, *label_col = NULL, *adapter = NULL;
    int json = 0, limit = 0, seq = 0, batch = 32;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "BertForSequenceClassification directory", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", ADAPTER_HELP, 0, -1},
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
    if (adapter && ftq_bert_apply_adapter(m, adapter) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    const ftq_bert_config *c = ftq_bert_get_config(m);
    if (!c->num_labels) {
        rc = cmd_fail(spec.name, "'%s' has no classification head (train one with 'ftq finetune')", model);
        goto out;
    }
    n_names = c->num_labels;
    if (ftq_bert_load_labels(adapter ? adapter : model, n_names, &names) != FTQ_OK) {
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
