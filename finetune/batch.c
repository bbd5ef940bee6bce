/* batch.c - from text to training rows: classification rows tokenized and truncated, LM
 * documents packed into fixed blocks (HF run_clm group_texts), and batch assembly with
 * right padding. Rows are tokenized in parallel but stored in input order, so the result
 * never depends on the thread count. */
#include <stdlib.h>
#include <string.h>

#include "finetune/trainer_internal.h"

void ex_set_free(ex_set *s)
{
    if (!s)
        return;
    free(s->off);
    free(s->tok);
    free(s->type);
    free(s->label);
    free(s->line);
    memset(s, 0, sizeof *s);
}

/* Encode n texts concurrently (the tokenizer is immutable); ids[i] / lens[i] per text,
 * st[i] the status of each. */
static void encode_all(const ftq_tokenizer *tok, const char *const *texts, const size_t *tlen, size_t n,
                       int32_t **ids, size_t *lens, int *st, char **errs)
{
#pragma omp parallel for schedule(dynamic, 64)
    for (long i = 0; i < (long)n; i++) {
        size_t len = tlen ? tlen[i] : strlen(texts[i]);
        st[i] = ftq_tokenizer_encode(tok, texts[i], len, 1, &ids[i], &lens[i]);
        if (st[i] != FTQ_OK) {
            errs[i] = strdup(ftq_last_error()); /* the message is thread-local */
            ids[i] = NULL;
            lens[i] = 0;
        }
    }
}

int ex_build_classify(const ftq_dataset *d, const ftq_dataset *d2, ex_encode_fn enc, const void *ctx, int seq,
                      size_t limit, int skip_bad, ex_set *out, size_t *skipped)
{
    memset(out, 0, sizeof *out);
    *skipped = 0;
    size_t n = ftq_dataset_size(d);
    if (limit && limit < n)
        n = limit;
    int32_t **ids = calloc(n + 1, sizeof(int32_t *)), **types = calloc(n + 1, sizeof(int32_t *));
    size_t *lens = calloc(n + 1, sizeof(size_t));
    int *st = calloc(n + 1, sizeof(int)), *cut = calloc(n + 1, sizeof(int));
    char **errs = calloc(n + 1, sizeof(char *));
    out->off = malloc(sizeof(size_t) * (n + 1));
    out->label = malloc(sizeof(int32_t) * (n + 1));
    out->line = malloc(sizeof(size_t) * (n + 1));
    int rc = FTQ_OK;
    if (!ids || !types || !lens || !st || !cut || !errs || !out->off || !out->label || !out->line) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory tokenizing %zu rows", n);
        goto done;
    }
    /* concurrently (the tokenizer is immutable), stored in input order */
#pragma omp parallel for schedule(dynamic, 64)
    for (long i = 0; i < (long)n; i++) {
        st[i] = enc(ctx, ftq_dataset_text(d, (size_t)i), d2 ? ftq_dataset_text(d2, (size_t)i) : NULL, seq, &ids[i],
                    &types[i], &lens[i], &cut[i]);
        if (st[i] != FTQ_OK) {
            errs[i] = strdup(ftq_last_error()); /* the message is thread-local */
            free(ids[i]);
            free(types[i]);
            ids[i] = types[i] = NULL;
            lens[i] = 0;
        }
    }
    size_t total = 0, k = 0;
    int any_types = 0;
    for (size_t i = 0; i < n; i++) {
        if (st[i] != FTQ_OK || lens[i] == 0) {
            if (skip_bad) {
                (*skipped)++;
                continue;
            }
            if (st[i] != FTQ_OK)
                rc = ftq_set_error(st[i], "%s:%zu: %s", ftq_dataset_source(d), ftq_dataset_line(d, i),
                                   errs[i] ? errs[i] : "out of memory"); /* strdup of the message failed */
            else
                rc = ftq_set_error(FTQ_EFORMAT, "%s:%zu: the text has no tokens (empty text and no BOS)",
                                   ftq_dataset_source(d), ftq_dataset_line(d, i));
            goto done;
        }
        if (lens[i] > (size_t)seq) { /* an encoder that ignored seq: never overflow the buffers */
            rc = ftq_set_error(FTQ_EINVAL, "%s:%zu: %zu tokens after truncation to %d", ftq_dataset_source(d),
                               ftq_dataset_line(d, i), lens[i], seq);
            goto done;
        }
        any_types |= types[i] != NULL;
        total += lens[i];
        k++;
    }
    out->tok = malloc(sizeof(int32_t) * (total + 1));
    if (any_types)
        out->type = calloc(total + 1, sizeof(int32_t));
    if (!out->tok || (any_types && !out->type)) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory for %zu tokens", total);
        goto done;
    }
    out->n = k;
    out->off[0] = 0;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        if (st[i] != FTQ_OK || lens[i] == 0)
            continue;
        size_t len = lens[i];
        memcpy(out->tok + out->off[k], ids[i], sizeof(int32_t) * len);
        if (types[i])
            memcpy(out->type + out->off[k], types[i], sizeof(int32_t) * len);
        out->off[k + 1] = out->off[k] + len;
        out->label[k] = ftq_dataset_label(d, i);
        out->line[k] = ftq_dataset_line(d, i);
        out->truncated += (size_t)(cut[i] != 0);
        if (len > out->max_len)
            out->max_len = len;
        k++;
    }
done:
    for (size_t i = 0; ids && types && errs && i < n; i++) {
        free(ids[i]);
        free(types[i]);
        free(errs[i]);
    }
    free(ids);
    free(types);
    free(lens);
    free(st);
    free(cut);
    free(errs);
    if (rc != FTQ_OK)
        ex_set_free(out);
    return rc;
}

static int blank_line(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

int ex_split_documents(const char *text, size_t len, const char ***starts, size_t **lens, size_t *n)
{
    size_t cap = 64, k = 0;
    const char **st = malloc(sizeof(char *) * cap);
    size_t *ln = malloc(sizeof(size_t) * cap);
    if (!st || !ln) {
        free(st);
        free(ln);
        return ftq_set_error(FTQ_ENOMEM, "out of memory splitting documents");
    }
    size_t pos = 0, doc_start = 0, doc_end = 0;
    int in_doc = 0;
    while (pos <= len) {
        const char *nl = pos < len ? memchr(text + pos, '\n', len - pos) : NULL;
        size_t end = nl ? (size_t)(nl - text) : len; /* line = text[pos, end) */
        int blank = blank_line(text + pos, end - pos);
        if (!blank) {
            if (!in_doc)
                doc_start = pos;
            in_doc = 1;
            doc_end = end;
        }
        if ((blank || !nl) && in_doc) {
            if (k == cap) {
                cap *= 2;
                const char **st2 = realloc(st, sizeof(char *) * cap);
                size_t *ln2 = st2 ? realloc(ln, sizeof(size_t) * cap) : NULL;
                if (st2)
                    st = st2;
                if (!st2 || !ln2) {
                    free(st);
                    free(ln);
                    return ftq_set_error(FTQ_ENOMEM, "out of memory splitting documents");
                }
                ln = ln2;
            }
            /* the document keeps its inner newlines; a trailing CR is dropped */
            size_t e = doc_end;
            if (e > doc_start && text[e - 1] == '\r')
                e--;
            st[k] = text + doc_start;
            ln[k] = e - doc_start;
            k++;
            in_doc = 0;
        }
        if (!nl)
            break;
        pos = end + 1;
    }
    *starts = st;
    *lens = ln;
    *n = k;
    return FTQ_OK;
}

int ex_build_lm(const char *const *docs, const size_t *lens, size_t ndocs, const ftq_tokenizer *tok,
                int seq, size_t limit, int keep_tail, ex_set *out)
{
    memset(out, 0, sizeof *out);
    int32_t **ids = calloc(ndocs + 1, sizeof(int32_t *));
    size_t *n_ids = calloc(ndocs + 1, sizeof(size_t));
    int *st = calloc(ndocs + 1, sizeof(int));
    char **errs = calloc(ndocs + 1, sizeof(char *));
    int rc = FTQ_OK;
    if (!ids || !n_ids || !st || !errs) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory tokenizing %zu documents", ndocs);
        goto done;
    }
    encode_all(tok, docs, lens, ndocs, ids, n_ids, st, errs);
    int eos = ftq_tokenizer_eos(tok);
    int add_eos = eos >= 0 && !ftq_tokenizer_adds_eos(tok);
    size_t total = 0;
    for (size_t i = 0; i < ndocs; i++) {
        if (st[i] != FTQ_OK) {
            rc = ftq_set_error(st[i], "document %zu: %s", i + 1, errs[i] ? errs[i] : "out of memory");
            goto done;
        }
        total += n_ids[i] + (size_t)add_eos;
    }
    size_t nblocks = total / (size_t)seq, tail = total % (size_t)seq;
    int use_tail = keep_tail && tail >= 2;
    if (limit && limit < nblocks + (size_t)use_tail) {
        if (limit <= nblocks) {
            nblocks = limit;
            use_tail = 0;
        }
    }
    size_t nb = nblocks + (size_t)use_tail;
    size_t ntok = nblocks * (size_t)seq + (use_tail ? tail : 0);
    out->tok = malloc(sizeof(int32_t) * (ntok + 1));
    out->off = malloc(sizeof(size_t) * (nb + 1));
    if (!out->tok || !out->off) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory for %zu tokens", ntok);
        goto done;
    }
    size_t w = 0;
    for (size_t i = 0; i < ndocs && w < ntok; i++) {
        for (size_t j = 0; j < n_ids[i] && w < ntok; j++)
            out->tok[w++] = ids[i][j];
        if (add_eos && w < ntok)
            out->tok[w++] = eos;
    }
    out->n = nb;
    for (size_t b = 0; b <= nb; b++)
        out->off[b] = b * (size_t)seq < ntok ? b * (size_t)seq : ntok;
    out->max_len = nb ? (nblocks ? (size_t)seq : tail) : 0;
done:
    for (size_t i = 0; ids && errs && i < ndocs; i++) {
        free(ids[i]);
        free(errs[i]);
    }
    free(ids);
    free(n_ids);
    free(st);
    free(errs);
    if (rc != FTQ_OK)
        ex_set_free(out);
    return rc;
}

uint64_t ex_fingerprint(const ex_set *s)
{
    uint64_t h = 1469598103934665603ull;
#define FNV(x)                                      \
    do {                                            \
        uint64_t v_ = (uint64_t)(x);                \
        for (int b_ = 0; b_ < 8; b_++) {            \
            h ^= (v_ >> (8 * b_)) & 0xff;           \
            h *= 1099511628211ull;                  \
        }                                           \
    } while (0)
    FNV(s->n);
    for (size_t i = 0; i < s->n; i++) {
        FNV(s->off[i + 1] - s->off[i]);
        if (s->label)
            FNV((uint32_t)s->label[i]);
    }
    size_t nt = s->n ? s->off[s->n] : 0;
    for (size_t i = 0; i < nt; i++)
        FNV((uint32_t)s->tok[i]);
    for (size_t i = 0; s->type && i < nt; i++)
        FNV((uint32_t)s->type[i]);
#undef FNV
    return h;
}

void batch_fill(const ex_set *s, const uint32_t *idx, int b, int task, int32_t pad, int32_t *ids,
                int32_t *lens, int32_t *targets, int *T_out, int64_t *ntok)
{
    int T = 1;
    for (int r = 0; r < b; r++) {
        int len = (int)(s->off[idx[r] + 1] - s->off[idx[r]]);
        if (len > T)
            T = len;
    }
    int64_t count = 0;
    for (int r = 0; r < b; r++) {
        const int32_t *src = s->tok + s->off[idx[r]];
        int len = (int)(s->off[idx[r] + 1] - s->off[idx[r]]);
        int32_t *row = ids + (size_t)r * (size_t)T;
        memcpy(row, src, sizeof(int32_t) * (size_t)len);
        for (int t = len; t < T; t++)
            row[t] = pad;
        lens[r] = len;
        count += len;
        if (task == FTQ_TASK_CLASSIFY) {
            targets[r] = s->label[idx[r]];
        } else {
            int32_t *tg = targets + (size_t)r * (size_t)T;
            for (int t = 0; t < T; t++)
                tg[t] = t + 1 < len ? src[t + 1] : FTQ_IGNORE_INDEX;
        }
    }
    *T_out = T;
    *ntok = count;
}
