/* classify.c - `ftq classify`: predict labels with a sequence-classification checkpoint
 * (LlamaForSequenceClassification / GPT2ForSequenceClassification layout, e.g. the output of
 * `ftq finetune --task classify`), for one text or every row of a dataset; with labels, the
 * accuracy, macro-F1 and confusion matrix. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

/* softmax in double: probabilities of n logits */
static void softmax(const float *x, int n, double *p)
{
    double mx = x[0], s = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    for (int i = 0; i < n; i++)
        s += p[i] = exp((double)x[i] - mx);
    for (int i = 0; i < n; i++)
        p[i] /= s;
}

/* A session for `need` tokens: sized by the inputs seen so far, not by the model's position
 * count (a 400 KB model claiming 2M positions made a 4-token prompt allocate 2 GB). Grows
 * geometrically up to T. */
static int fit_session(const ftq_model *m, ftq_session **s, int *cap, int need, int T)
{
    if (*s && need <= *cap)
        return FTQ_OK;
    int c = *cap * 2 > need ? *cap * 2 : need;
    if (c < 64)
        c = 64;
    if (c > T)
        c = T;
    ftq_session_free(*s);
    *s = NULL;
    *cap = 0;
    int rc = ftq_session_new(m, c, s);
    if (rc == FTQ_OK)
        *cap = c;
    return rc;
}

static void print_table(const ftq_cls_metrics *m, char **names)
{
    int w = label_width((const char *const *)names, m->num_labels);
    printf("%*s %9s %9s %9s %9s\n", w, "label", "precision", "recall", "f1", "support");
    for (int i = 0; i < m->num_labels; i++) {
        long long support = (long long)m->support[i];
        printf("%*.*s %9.4f %9.4f %9.4f %9lld\n", w, w, names[i], m->precision[i], m->recall[i], m->f1[i], support);
    }
    print_confusion_text(stdout, m, (const char *const *)names);
}

int cmd_classify(int argc, char **argv)
{
    const char *adapter = NULL;
    if (ftq_bert_is_encoder_dir(cmd_model_arg(argc, argv)))
        return cmd_classify_bert(argc, argv);
    const char *model = default_model_dir(), *prompt = NULL, *data = NULL, *text_col = NULL, *label_col = NULL;
    int json = 0, limit = 0, seq = 0, skip_bad = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "sequence-classification model directory", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", ADAPTER_HELP, 0, -1},
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "classify one text", 0, -1},
        {"data", 'd', OPT_STR, &data, "FILE", "classify every row of a .csv/.tsv/.jsonl (FILE or ARCHIVE:MEMBER); "
                                             "rows with labels are scored", 0, -1},
        {"text-col", 0, OPT_STR, &text_col, "NAME", "text column (default: text, else sentence)", 0, -1},
        {"label-col", 0, OPT_STR, &label_col, "NAME", "label column (default: label)", 0, -1},
        {"limit", 0, OPT_INT, &limit, "N", "only the first N rows (0 = all)", 0, 1 << 30},
        {"seq", 0, OPT_INT, &seq, "T", "truncate texts to T tokens (0 = the model's positions)", 0, 1 << 24},
        {"skip-bad-rows", 0, OPT_FLAG, &skip_bad, NULL, "skip malformed rows instead of stopping", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "classify", "[-m DIR] (-p TEXT | -d FILE) [--limit N] [--json]",
        "Predict labels with a sequence classifier: the text is tokenized as the tokenizer does (BOS\n"
        "included), truncated, run through the model and scored by the head at its last token.",
        "With -d, rows whose label is one of the model's labels (id2label names or ids) are scored:\n"
        "accuracy, macro-F1 (mean F1 over the labels that occur) and the confusion matrix.",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if ((prompt != NULL) == (data != NULL))
        return cmd_fail(spec.name, "give exactly one of -p TEXT or -d FILE") + 1;

    ftq_model *m = NULL;
    ftq_tokenizer *tok = NULL;
    if (cmd_load(spec.name, model, &m, &tok))
        return 1;
    if (cmd_apply_adapter(spec.name, adapter, &m)) {
        ftq_tokenizer_free(tok);
        return 1;
    }
    int rc = 0, nl = ftq_model_num_labels(m), n_names = 0;
    char **names = NULL;
    ftq_session *s = NULL;
    ftq_dataset *ds = NULL;
    float *logits = NULL;
    double *probs = NULL;
    int32_t *gold = NULL, *pred = NULL, *ids = NULL;
    ftq_cls_metrics met;
    memset(&met, 0, sizeof met);
    /* an adapter carrying a head names its labels in its own config.json */
    char *acfg = adapter ? ftq_path_join(adapter, "config.json") : NULL;
    char *cfg_path = acfg && ftq_is_file(acfg) ? acfg : ftq_path_join(model, "config.json");
    if (cfg_path != acfg)
        free(acfg);
    if (nl <= 0) {
        rc = cmd_fail(spec.name, "'%s' has no classification head (train one with 'ftq finetune --task classify')",
                      model);
        goto out;
    }
    if (!cfg_path || ftq_config_load_labels(cfg_path, &names, &n_names) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    if (n_names != nl) {
        rc = cmd_fail(spec.name, "'%s': config.json names %d labels but the head has %d", model, n_names, nl);
        goto out;
    }
    int max_pos = ftq_model_get_config(m)->max_position;
    if (max_pos > 0 && seq > max_pos) {
        rc = cmd_fail(spec.name, "--seq %d exceeds the model's %d positions", seq, max_pos);
        goto out;
    }
    int T = seq > 0 ? seq : (max_pos > 0 ? max_pos : 2048), s_cap = 0;
    logits = malloc(sizeof(float) * (size_t)nl);
    probs = malloc(sizeof(double) * (size_t)nl);
    if (!logits || !probs) {
        rc = cmd_fail(spec.name, "out of memory");
        goto out;
    }
    double t0 = ftq_time_sec();
    if (prompt) {
        size_t n = 0;
        if (ftq_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n) != FTQ_OK) {
            rc = cmd_fail(spec.name, "prompt: %s", ftq_last_error());
            goto out;
        }
        if (n == 0) {
            rc = cmd_fail(spec.name, "the prompt is empty and the tokenizer adds no BOS");
            goto out;
        }
        if (n > (size_t)T)
            n = (size_t)T;
        if (fit_session(m, &s, &s_cap, (int)n, T) != FTQ_OK || ftq_model_classify(m, s, ids, (int)n, logits) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s", ftq_last_error());
            goto out;
        }
        softmax(logits, nl, probs);
        int best = ftq_argmax(logits, nl);
        if (json) {
            printf("{\"label\": ");
            json_print_string(stdout, names[best]);
            printf(", \"label_id\": %d, \"probabilities\": {", best);
            for (int i = 0; i < nl; i++) {
                printf("%s", i ? ", " : "");
                json_print_string(stdout, names[i]);
                printf(": %.6f", probs[i]);
            }
            printf("}, \"logits\": [");
            for (int i = 0; i < nl; i++)
                printf("%s%.6f", i ? ", " : "", logits[i]);
            printf("], \"tokens\": %zu}\n", n);
        } else {
            printf("%s\t%.4f\n", names[best], probs[best]);
        }
        goto out;
    }

    ftq_dataset_params dp = ftq_dataset_default_params();
    dp.text_col = text_col;
    dp.label_col = label_col;
    dp.require_labels = 0;
    dp.skip_bad_rows = skip_bad;
    dp.label_names = (const char *const *)names;
    dp.n_label_names = nl;
    if (ftq_dataset_load(data, &dp, &ds) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    size_t rows = ftq_dataset_size(ds), labeled = 0;
    if (limit > 0 && (size_t)limit < rows)
        rows = (size_t)limit;
    gold = malloc(sizeof(int32_t) * (rows + 1));
    pred = malloc(sizeof(int32_t) * (rows + 1));
    if (!gold || !pred) {
        rc = cmd_fail(spec.name, "out of memory");
        goto out;
    }
    int64_t tokens = 0;
    for (size_t i = 0; i < rows; i++) {
        const char *text = ftq_dataset_text(ds, i);
        size_t n = 0;
        free(ids);
        ids = NULL;
        if (ftq_tokenizer_encode(tok, text, strlen(text), 1, &ids, &n) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s:%zu: %s", ftq_dataset_source(ds), ftq_dataset_line(ds, i), ftq_last_error());
            goto out;
        }
        if (n == 0) {
            rc = cmd_fail(spec.name, "%s:%zu: the text has no tokens", ftq_dataset_source(ds), ftq_dataset_line(ds, i));
            goto out;
        }
        if (n > (size_t)T)
            n = (size_t)T;
        if (fit_session(m, &s, &s_cap, (int)n, T) != FTQ_OK || ftq_model_classify(m, s, ids, (int)n, logits) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s:%zu: %s", ftq_dataset_source(ds), ftq_dataset_line(ds, i), ftq_last_error());
            goto out;
        }
        tokens += (int64_t)n;
        pred[i] = ftq_argmax(logits, nl);
        gold[i] = ftq_dataset_label(ds, i);
        labeled += gold[i] >= 0;
        if (!json && isatty(STDERR_FILENO) && (i + 1) % 50 == 0)
            progress_bar((int)(i + 1), (int)rows, "rows");
    }
    progress_done();
    double secs = ftq_time_sec() - t0;
    if (labeled && ftq_cls_metrics_compute(gold, pred, rows, nl, &met) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    if (json) {
        printf("{\"examples\": %zu, \"labeled\": %zu", rows, labeled);
        if (labeled) {
            printf(", \"accuracy\": %.6f, \"macro_f1\": %.6f, \"confusion\": ", met.accuracy, met.macro_f1);
            print_confusion_json(stdout, &met);
            printf(", \"f1\": [");
            for (int i = 0; i < nl; i++)
                printf("%s%.6f", i ? ", " : "", met.f1[i]);
            printf("]");
        } else {
            printf(", \"accuracy\": null, \"macro_f1\": null, \"confusion\": null");
        }
        printf(", \"labels\": [");
        for (int i = 0; i < nl; i++) {
            printf("%s", i ? ", " : "");
            json_print_string(stdout, names[i]);
        }
        printf("], \"predictions\": [");
        for (size_t i = 0; i < rows; i++) {
            printf("%s", i ? ", " : "");
            json_print_string(stdout, names[pred[i]]);
        }
        printf("], \"tokens\": %lld, \"seconds\": %.3f, \"rows_per_second\": %.1f}\n", (long long)tokens, secs,
               secs > 0 ? rows / secs : 0);
    } else if (labeled) {
        printf("%s: %zu rows (%zu labeled) in %.2f s\n", data, rows, labeled, secs);
        printf("accuracy %.4f, macro-F1 %.4f\n", met.accuracy, met.macro_f1);
        print_table(&met, names);
    } else {
        for (size_t i = 0; i < rows; i++)
            printf("%s\t%s\n", names[pred[i]], ftq_dataset_text(ds, i));
    }
out:
    ftq_cls_metrics_free(&met);
    free(cfg_path);
    free(gold);
    free(pred);
    free(ids);
    free(logits);
    free(probs);
    if (names)
        ftq_free_strings(names, n_names);
    ftq_dataset_free(ds);
    ftq_session_free(s);
    ftq_tokenizer_free(tok);
    ftq_model_free(m);
    return rc;
}
