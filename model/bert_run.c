/* bert_run.c - many texts (or text pairs) through an encoder: tokenization with the
 * tokenizer's template, HF "longest_first" truncation to max_len tokens (specials kept),
 * right-padded batches, and a callback per batch. */
#include <stdlib.h>
#include <string.h>

#include "model/bert_internal.h"

int ftq_bert_tokenize(const ftq_tokenizer *tk, const char *a, const char *b, int max_len, int32_t **ids,
                      int32_t **types, size_t *n, int *truncated)
{
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    *truncated = 0;
    int rc = ftq_tokenizer_encode(tk, a, strlen(a), 0, &ia, &na);
    if (!rc && b)
        rc = ftq_tokenizer_encode(tk, b, strlen(b), 0, &ib, &nb);
    if (!rc) {
        int ns = ftq_tokenizer_num_special(tk, b != NULL);
        size_t room = max_len > ns ? (size_t)(max_len - ns) : 0;
        while (na + nb > room) { /* longest_first: drop from the end of the longer text */
            *truncated = 1;
            if (na >= nb && na > 0)
                na--;
            else if (nb > 0)
                nb--;
            else
                break;
        }
        rc = ftq_tokenizer_apply_template(tk, ia, na, b ? ib : NULL, nb, ids, types, n);
    }
    free(ia);
    free(ib);
    return rc;
}

int ftq_bert_run_texts(const ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                       size_t n, int max_len, int batch, ftq_bert_batch_fn fn, void *user, size_t *n_truncated,
                       int64_t *n_tokens)
{
    if (max_len < 2 || max_len > m->cfg.max_position)
        return ftq_set_error(FTQ_EINVAL, "sequence length %d is outside 2..%d (max_position_embeddings)", max_len,
                             m->cfg.max_position);
    if (batch < 1)
        batch = 1;
    ftq_bert_ws *ws = NULL;
    int rc = ftq_bert_ws_new(m, batch, max_len, 0, &ws);
    int32_t *ids = malloc(sizeof *ids * (size_t)batch * max_len), *types = malloc(sizeof *types * (size_t)batch * max_len);
    int *lens = malloc(sizeof *lens * (size_t)batch);
    int32_t **rows = calloc((size_t)batch, sizeof *rows), **rtypes = calloc((size_t)batch, sizeof *rtypes);
    if (!rc && (!ids || !types || !lens || !rows || !rtypes))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    size_t trunc = 0;
    int64_t toks = 0;
    for (size_t r0 = 0; !rc && r0 < n; r0 += (size_t)batch) {
        int B = n - r0 < (size_t)batch ? (int)(n - r0) : batch, T = 1;
        for (int b = 0; !rc && b < B; b++) {
            size_t len = 0;
            int tr = 0;
            free(rows[b]);
            free(rtypes[b]);
            rows[b] = rtypes[b] = NULL;
            rc = ftq_bert_tokenize(tk, texts[r0 + b], texts2 ? texts2[r0 + b] : NULL, max_len, &rows[b], &rtypes[b],
                                   &len, &tr);
            if (rc) {
                rc = ftq_wrap_error(rc, "text %zu", r0 + (size_t)b + 1);
                break;
            }
            if (len == 0 || len > (size_t)max_len) {
                rc = ftq_set_error(FTQ_EINVAL, "text %zu has %zu tokens after truncation (expected 1..%d)",
                                   r0 + (size_t)b + 1, len, max_len);
                break;
            }
            lens[b] = (int)len;
            T = lens[b] > T ? lens[b] : T;
            trunc += (size_t)tr;
            toks += (int64_t)len;
        }
        for (int b = 0; !rc && b < B; b++) {
            memset(ids + (size_t)b * T, 0, sizeof *ids * (size_t)T);
            memset(types + (size_t)b * T, 0, sizeof *types * (size_t)T);
            memcpy(ids + (size_t)b * T, rows[b], sizeof *ids * (size_t)lens[b]);
            memcpy(types + (size_t)b * T, rtypes[b], sizeof *types * (size_t)lens[b]);
        }
        if (!rc)
            rc = ftq_bert_forward(m, ws, ids, types, lens, B, T);
        if (!rc)
            rc = fn(user, r0, B, ws);
    }
    for (int b = 0; rows && rtypes && b < batch; b++) {
        free(rows[b]);
        free(rtypes[b]);
    }
    free(rows);
    free(rtypes);
    free(ids);
    free(types);
    free(lens);
    ftq_bert_ws_free(ws);
    if (n_truncated)
        *n_truncated = trunc;
    if (n_tokens)
        *n_tokens = toks;
    return rc;
}
