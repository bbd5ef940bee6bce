/* normalize.c - the normalizers that run before pre-tokenization: the tokenizer.json op list
 * (Prepend, Replace, ...) and sentencepiece's whitespace handling.
 * Invariant: each returns a fresh buffer; the input is never modified. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"

static const char SPACE_SYMBOL[] = "\xe2\x96\x81"; /* U+2581, sentencepiece's escaped space */

/* ---- normalizers ----------------------------------------------------------------- */

int ftq_tok_replace_all(ftq_tok_buf *out, const char *s, size_t len, const char *pat, size_t plen, const char *rep,
                       size_t rlen)
{
    size_t i = 0, last = 0;
    int rc = ftq_tok_buf_put(out, "", 0);
    while (!rc && plen && i + plen <= len) {
        if (memcmp(s + i, pat, plen) == 0) {
            if ((rc = ftq_tok_buf_put(out, s + last, i - last)) || (rc = ftq_tok_buf_put(out, rep, rlen)))
                break;
            i += plen;
            last = i;
        } else {
            i++;
        }
    }
    return rc ? rc : ftq_tok_buf_put(out, s + last, len - last);
}

int ftq_tok_normalize_ops(const ftq_tok_op *ops, int n, const char *s, size_t len, char **out,
                          size_t *out_len)
{
    ftq_tok_buf cur = {0};
    int rc = ftq_tok_buf_put(&cur, s, len);
    for (int k = 0; k < n && !rc; k++) {
        ftq_tok_buf next = {0};
        if (ops[k].op == TOK_NORM_PREPEND) {
            if (cur.n) /* HF prepends only to non-empty text */
                rc = ftq_tok_buf_put(&next, ops[k].a, ops[k].alen);
            if (!rc)
                rc = ftq_tok_buf_put(&next, cur.p, cur.n);
        } else {
            rc = ftq_tok_replace_all(&next, cur.p, cur.n, ops[k].a, ops[k].alen, ops[k].b, ops[k].blen);
        }
        free(cur.p);
        cur = next;
    }
    if (rc) {
        free(cur.p);
        return rc;
    }
    *out = cur.p;
    *out_len = cur.n;
    return FTQ_OK;
}

/* sentencepiece Normalizer::Normalize for the identity rule set: optional removal of
 * leading/trailing/repeated spaces, one dummy-prefix space, spaces escaped to U+2581. */
int ftq_tok_spm_normalize(const ftq_tokenizer *t, const char *s, size_t len, ftq_tok_buf *out)
{
    size_t i = 0;
    int rc = ftq_tok_buf_put(out, "", 0);
    if (t->spm_remove_ws)
        while (i < len && s[i] == ' ')
            i++;
    if (i == len || rc)
        return rc;
    const char *ws = t->spm_escape_ws ? SPACE_SYMBOL : " ";
    size_t wsn = t->spm_escape_ws ? 3 : 1;
    if (t->spm_dummy_prefix && (rc = ftq_tok_buf_put(out, ws, wsn)))
        return rc;
    int prev_space = t->spm_remove_ws;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ' ')
            j++;
        if (j > i) {
            if ((rc = ftq_tok_buf_put(out, s + i, j - i)))
                return rc;
            prev_space = 0;
        }
        if (j < len) {
            if (!(t->spm_remove_ws && prev_space) && (rc = ftq_tok_buf_put(out, ws, wsn)))
                return rc;
            prev_space = 1;
            j++;
        }
        i = j;
    }
    if (t->spm_remove_ws)
        while (out->n >= wsn && memcmp(out->p + out->n - wsn, ws, wsn) == 0)
            out->n -= wsn;
    return FTQ_OK;
}
