/* common.c - shared command helpers (see common.h). */
#define _POSIX_C_SOURCE 200809L
#include "cmd/common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/opts.h"

int cmd_load(const char *cmd, const char *dir, ftq_model **model, ftq_tokenizer **tok)
{
    return cmd_load_ex(cmd, dir, 0, model, tok);
}

int cmd_load_ex(const char *cmd, const char *dir, unsigned flags, ftq_model **model, ftq_tokenizer **tok)
{
    if (model) {
        *model = NULL;
        if (ftq_model_load_ex(dir, flags, model) != FTQ_OK)
            return cmd_fail(cmd, "%s", ftq_last_error());
    }
    if (tok) {
        *tok = NULL;
        if (ftq_tokenizer_load(dir, tok) != FTQ_OK) {
            int rc = cmd_fail(cmd, "%s", ftq_last_error());
            if (model) {
                ftq_model_free(*model);
                *model = NULL;
            }
            return rc;
        }
    }
    return 0;
}

int cmd_model_config(const char *model, ftq_model_config *mc)
{
    int st;
    if (ftq_gguf_is_file(model)) {
        ftq_gguf *g = NULL;
        if ((st = ftq_gguf_open(model, &g)) == FTQ_OK)
            st = ftq_gguf_model_config(g, mc);
        ftq_gguf_close(g);
    } else {
        char *cp = ftq_path_join(model, "config.json");
        st = cp ? ftq_config_load(cp, mc) : FTQ_ENOMEM;
        free(cp);
    }
    return st;
}

int cmd_calib_ids(const char *cmd, const char *model, const char *calib, int32_t **ids, size_t *n, int *bos)
{
    ftq_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    if (cmd_load(cmd, model, NULL, &tok))
        return 1;
    int rc = 0;
    if (ftq_read_file(calib, &text, &len) != FTQ_OK || ftq_tokenizer_encode(tok, text, len, 0, ids, n) != FTQ_OK)
        rc = cmd_fail(cmd, "--calib '%s': %s", calib, ftq_last_error());
    else
        *bos = ftq_tokenizer_adds_bos(tok) ? ftq_tokenizer_bos(tok) : -1;
    free(text);
    ftq_tokenizer_free(tok);
    return rc;
}

int cmd_precision_flags(const char *cmd, const char *precision, const char *adapter, unsigned *flags)
{
    if (strcmp(precision, "fp32") == 0)
        return 0;
    if (strcmp(precision, "bf16") != 0)
        return cmd_fail(cmd, "unknown --precision '%s' (expected fp32 or bf16)", precision) + 1;
    if (adapter)
        return cmd_fail(cmd, "--precision bf16 cannot merge --adapter (the merge needs f32 weights); merge it first "
                             "with ftq merge, or use --precision fp32") + 1;
    *flags |= FTQ_LOAD_BF16;
    return 0;
}

int cmd_apply_adapter(const char *cmd, const char *adapter, ftq_model **model)
{
    if (!adapter || !*model)
        return 0;
    if (ftq_model_apply_adapter(*model, adapter) != FTQ_OK) {
        int rc = cmd_fail(cmd, "%s", ftq_last_error());
        ftq_model_free(*model);
        *model = NULL;
        return rc;
    }
    return 0;
}

int cmd_input_text(const char *cmd, const char *file, const char *text, const char **out,
                   size_t *len, char **owned)
{
    *owned = NULL;
    if ((file != NULL) == (text != NULL))
        return cmd_fail(cmd, "give exactly one of -f FILE or -p TEXT");
    if (text) {
        *out = text;
        *len = strlen(text);
        return 0;
    }
    if (ftq_read_file(file, owned, len) != FTQ_OK)
        return cmd_fail(cmd, "%s", ftq_last_error());
    *out = *owned;
    return 0;
}

const char *fmt_count(long long v)
{
    static char bufs[4][32];
    static int k;
    char *b = bufs[k++ & 3];
    char tmp[32];
    int neg = v < 0;
    unsigned long long u = neg ? 0ull - (unsigned long long)v : (unsigned long long)v;
    int n = snprintf(tmp, sizeof tmp, "%llu", u), o = 0;
    if (neg)
        b[o++] = '-';
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            b[o++] = ',';
        b[o++] = tmp[i];
    }
    b[o] = '\0';
    return b;
}

static int bar_active;

void progress_bar(int done, int total, const char *label)
{
    if (!isatty(STDERR_FILENO) || total <= 0)
        return;
    int width = 30, fill = (int)((long long)width * done / total);
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '=' : (i == fill ? '>' : ' '), stderr);
    fprintf(stderr, "] %d/%d %s\033[K", done, total, label ? label : "");
    fflush(stderr);
    bar_active = 1;
}

void progress_done(void)
{
    if (bar_active) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        bar_active = 0;
    }
}

int label_width(const char *const *names, int n)
{
    int w = 8;
    for (int i = 0; i < n; i++)
        if ((int)strlen(names[i]) + 2 > w)
            w = (int)strlen(names[i]) + 2;
    return w > 24 ? 24 : w;
}

void print_confusion_json(FILE *fp, const ftq_cls_metrics *m)
{
    if (!m->confusion) { /* more than FTQ_CONFUSION_MAX labels */
        fprintf(fp, "null");
        return;
    }
    fprintf(fp, "[");
    for (int i = 0; i < m->num_labels; i++) {
        fprintf(fp, "%s[", i ? ", " : "");
        for (int j = 0; j < m->num_labels; j++)
            fprintf(fp, "%s%lld", j ? ", " : "", (long long)m->confusion[i * m->num_labels + j]);
        fprintf(fp, "]");
    }
    fprintf(fp, "]");
}

void print_confusion_text(FILE *fp, const ftq_cls_metrics *m, const char *const *names)
{
    if (!m->confusion) {
        fprintf(fp, "confusion: not shown for %d labels (at most %d)\n", m->num_labels, FTQ_CONFUSION_MAX);
        return;
    }
    int w = label_width(names, m->num_labels);
    fprintf(fp, "confusion (rows: true label, columns: predicted)\n%*s", w, "");
    for (int j = 0; j < m->num_labels; j++)
        fprintf(fp, " %*.*s", w, w, names[j]);
    fprintf(fp, "\n");
    for (int i = 0; i < m->num_labels; i++) {
        fprintf(fp, "%*.*s", w, w, names[i]);
        for (int j = 0; j < m->num_labels; j++)
            fprintf(fp, " %*lld", w, (long long)m->confusion[i * m->num_labels + j]);
        fprintf(fp, "\n");
    }
}

void json_print_ids(FILE *fp, const int32_t *ids, size_t n)
{
    fputc('[', fp);
    for (size_t i = 0; i < n; i++)
        fprintf(fp, "%s%d", i ? ", " : "", (int)ids[i]);
    fputc(']', fp);
}
