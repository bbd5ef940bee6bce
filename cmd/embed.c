/* embed.c - `ftq embed`: sentence embeddings from a BERT encoder as sentence-transformers
 * defines them for the directory (1_Pooling mean/cls/max, then Normalize if listed), for
 * one text or every row of a file; optionally the cosine similarity matrix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq_bert_train.h"

typedef struct {
    const ftq_bert *m;
    ftq_pool pool;
    int normalize, dim;
    float *out; /* [n, dim] */
} embed_ctx;

static int on_batch(void *user, size_t row0, int B, ftq_bert_ws *ws)
{
    embed_ctx *c = user;
    (void)B;
    return ftq_bert_pool(c->m, ws, c->pool, c->normalize, c->out + row0 * (size_t)c->dim);
}

static const char *pool_name(ftq_pool p)
{
    return p == FTQ_POOL_MEAN ? "mean" : p == FTQ_POOL_CLS ? "cls" : p == FTQ_POOL_MAX ? "max" : "pooler";
}

/* The texts of -d: a dataset's text column, or the non-empty lines of a text file. */
static int read_texts(const char *cmd, const char *src, const char *text_col, char **owned, ftq_dataset **ds,
                      const char ***texts, size_t *n)
{
    ftq_data_format fmt = FTQ_DATA_AUTO;
    if (ftq_dataset_detect_format(src, &fmt) != FTQ_OK)
        return cmd_fail(cmd, "%s", ftq_last_error());
    if (fmt == FTQ_DATA_TEXT) {
        size_t len = 0;
        if (ftq_text_load(src, owned, &len) != FTQ_OK)
            return cmd_fail(cmd, "%s", ftq_last_error());
        size_t cap = 1;
        for (size_t i = 0; i < len; i++)
            cap += (*owned)[i] == '\n';
        *texts = malloc(sizeof **texts * cap);
        if (!*texts)
            return cmd_fail(cmd, "out of memory");
        *n = 0;
        for (char *p = *owned, *end = *owned + len; p < end;) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            char *e = nl ? nl : end;
            if (e > p && e[-1] == '\r')
                e[-1] = '\0';
            *e = '\0';
            if (*p)
                (*texts)[(*n)++] = p;
            p = e + 1;
        }
        return 0;
    }
    ftq_dataset_params dp = ftq_dataset_default_params();
    dp.text_col = text_col;
    dp.require_labels = 0;
    if (ftq_dataset_load(src, &dp, ds) != FTQ_OK)
        return cmd_fail(cmd, "%s", ftq_last_error());
    *n = ftq_dataset_size(*ds);
    *texts = malloc(sizeof **texts * (*n + 1));
    if (!*texts)
        return cmd_fail(cmd, "out of memory");
    for (size_t i = 0; i < *n; i++)
        (*texts)[i] = ftq_dataset_text(*ds, i);
    return 0;
}

int cmd_embed(int argc, char **argv)
{
    const char *model = default_model_dir(), *prompt = NULL, *data = NULL, *text_col = NULL, *adapter = NULL;
    int json = 0, sim = 0, seq = 0, batch = 32, limit = 0, parse_special = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "BERT encoder directory (sentence-transformers layout or plain)", 0, -1},
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "embed one text", 0, -1},
        {"data", 'd', OPT_STR, &data, "FILE", "embed every row: a text file (one text per line) or a "
                                             ".csv/.tsv/.jsonl with a text column", 0, -1},
        {"text-col", 0, OPT_STR, &text_col, "NAME", "text column (default: text, else sentence)", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", ADAPTER_HELP, 0, -1},
        {"seq", 0, OPT_INT, &seq, "T", "truncate texts to T tokens (0 = max_seq_length, else the positions)", 0,
         1 << 20},
        {"batch", 0, OPT_INT, &batch, "N", "texts per forward pass", 1, 4096},
        {"limit", 0, OPT_INT, &limit, "N", "only the first N rows (0 = all)", 0, 1 << 30},
        {"parse-special", 0, OPT_FLAG, &parse_special, NULL, PARSE_SPECIAL_HELP, 0, -1},
        {"similarity", 0, OPT_FLAG, &sim, NULL, "print the cosine similarity matrix instead", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"embeddings\": [[...], ...], \"dim\": D}", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "embed", "-m DIR (-p TEXT | -d FILE) [--similarity] [--json]",
        "Sentence embeddings as sentence-transformers computes them for the model directory:\n"
        "[CLS] text [SEP] through the encoder, pooled as 1_Pooling/config.json says (mean, cls or\n"
        "max over the real tokens), L2-normalised if modules.json lists Normalize.",
        "Output: one line of D numbers per text, in input order; --json prints one object;\n"
        "--similarity prints the n x n cosine matrix. Texts longer than the sequence length are\n"
        "truncated (and counted on stderr).",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if ((prompt != NULL) == (data != NULL))
        return cmd_fail(spec.name, "give exactly one of -p TEXT or -d FILE") + 1;
    if (!ftq_bert_is_encoder_dir(model))
        return cmd_fail(spec.name, "'%s' is not an encoder (config.json model_type must be \"bert\")", model);
    ftq_bert *m = NULL;
    ftq_tokenizer *tok = NULL;
    ftq_dataset *ds = NULL;
    char *owned = NULL;
    const char **texts = NULL;
    size_t n = 0;
    int rc = 0;
    embed_ctx ctx = {0};
    if (ftq_bert_load(model, &m) != FTQ_OK || ftq_tokenizer_load(model, &tok) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    if (adapter && ftq_bert_apply_adapter(m, adapter) != FTQ_OK) { /* its head, if any, is not used */
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    ftq_tokenizer_set_parse_special(tok, parse_special);
    int max_seq = 0;
    if (ftq_bert_st_pooling(model, &ctx.pool, &ctx.normalize, &max_seq) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    const ftq_bert_config *cfg = ftq_bert_get_config(m);
    if (seq > cfg->max_position) {
        rc = cmd_fail(spec.name, "--seq %d exceeds the model's %d positions", seq, cfg->max_position);
        goto out;
    }
    int T = seq ? seq : max_seq ? max_seq : cfg->max_position;
    if (T > cfg->max_position)
        T = cfg->max_position;
    if (prompt) {
        texts = malloc(sizeof *texts);
        if (!texts) {
            rc = cmd_fail(spec.name, "out of memory");
            goto out;
        }
        texts[0] = prompt;
        n = 1;
    } else if ((rc = read_texts(spec.name, data, text_col, &owned, &ds, &texts, &n))) {
        goto out;
    }
    if (limit > 0 && (size_t)limit < n)
        n = (size_t)limit;
    if (n == 0) {
        rc = cmd_fail(spec.name, "'%s' holds no text", data);
        goto out;
    }
    ctx.m = m;
    ctx.dim = cfg->hidden;
    ctx.out = malloc(sizeof(float) * n * (size_t)ctx.dim);
    if (!ctx.out) {
        rc = cmd_fail(spec.name, "out of memory for %zu embeddings", n);
        goto out;
    }
    size_t truncated = 0;
    int64_t tokens = 0;
    double t0 = ftq_time_sec();
    if (ftq_bert_run_texts(m, tok, texts, NULL, n, T, batch, on_batch, &ctx, &truncated, &tokens) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s%s%s", data ? data : "", data ? ": " : "", ftq_last_error());
        goto out;
    }
    double secs = ftq_time_sec() - t0;
    if (truncated)
        fprintf(stderr, "ftq embed: %zu of %zu texts truncated to %d tokens\n", truncated, n, T);
    int D = ctx.dim;
    if (sim) {
        if (json)
            printf("{\"similarity\": [");
        for (size_t i = 0; i < n; i++) {
            if (json)
                printf("%s[", i ? ", " : "");
            for (size_t j = 0; j < n; j++) {
                const float *a = ctx.out + i * D, *b = ctx.out + j * D;
                double ab = 0, aa = 0, bb = 0;
                for (int d = 0; d < D; d++) {
                    ab += (double)a[d] * b[d];
                    aa += (double)a[d] * a[d];
                    bb += (double)b[d] * b[d];
                }
                double cs = ab / fmax(sqrt(aa) * sqrt(bb), 1e-12);
                printf(json ? "%s%.6f" : "%s%.4f", j ? (json ? ", " : " ") : "", cs);
            }
            printf(json ? "]" : "\n");
        }
        if (json)
            printf("], \"n\": %zu}\n", n);
    } else if (json) {
        printf("{\"embeddings\": [");
        for (size_t i = 0; i < n; i++) {
            printf("%s[", i ? ", " : "");
            for (int d = 0; d < D; d++)
                printf("%s%.9g", d ? ", " : "", ctx.out[i * D + d]);
            printf("]");
        }
        printf("], \"dim\": %d, \"pooling\": \"%s\", \"normalize\": %s, \"tokens\": %lld, \"truncated\": %zu, "
               "\"seconds\": %.3f}\n",
               D, pool_name(ctx.pool), ctx.normalize ? "true" : "false", (long long)tokens, truncated, secs);
    } else {
        for (size_t i = 0; i < n; i++)
            for (int d = 0; d < D; d++)
                printf("%.9g%c", ctx.out[i * D + d], d + 1 < D ? ' ' : '\n');
    }
out:
    free(ctx.out);
    free(texts);
    free(owned);
    ftq_dataset_free(ds);
    ftq_tokenizer_free(tok);
    ftq_bert_free(m);
    return rc;
}
