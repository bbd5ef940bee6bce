/* normalize.c - the normalizers that run before pre-tokenization: the tokenizer.json op list
 * (Prepend, Replace with a string or a regex, NFC/NFD/NFKC/NFKD through utf8proc, Lowercase,
 * Strip) and sentencepiece's whitespace handling.
 * Invariant: each returns a fresh buffer; the input is never modified. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

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

void ftq_tok_ops_free(ftq_tok_op *ops, int n)
{
    for (int i = 0; i < n; i++) {
        free(ops[i].a);
        free(ops[i].b);
        ftq_tok_regex_free(ops[i].re);
    }
    free(ops);
}

/* Every match of the op's regex replaced by its content (HF Replace with a Regex pattern). */
static int replace_regex(ftq_tok_buf *out, const ftq_tok_op *op, const char *s, size_t len)
{
    ftq_ivec sp = {0};
    int rc = ftq_tok_regex_matches(op->re, s, len, &sp);
    size_t last = 0;
    if (!rc)
        rc = ftq_tok_buf_put(out, "", 0);
    for (size_t i = 0; !rc && i + 1 < sp.n; i += 2) {
        size_t ms = (size_t)sp.v[i], me = (size_t)sp.v[i + 1];
        if (!(rc = ftq_tok_buf_put(out, s + last, ms - last)))
            rc = ftq_tok_buf_put(out, op->b, op->blen);
        last = me;
    }
    free(sp.v);
    return rc ? rc : ftq_tok_buf_put(out, s + last, len - last);
}

/* Unicode normalization form through utf8proc (s is valid UTF-8). */
static int unicode_form(ftq_tok_buf *out, int form, const char *s, size_t len)
{
    if (len == 0)
        return ftq_tok_buf_put(out, "", 0);
    int opts = UTF8PROC_STABLE;
    opts |= form == TOK_NORM_NFC || form == TOK_NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (form == TOK_NORM_NFKC || form == TOK_NORM_NFKD)
        opts |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &d, (utf8proc_option_t)opts);
    if (n < 0)
        return ftq_set_error(FTQ_EFORMAT, "cannot normalize text: %s", utf8proc_errmsg(n));
    int rc = ftq_tok_buf_put(out, (const char *)d, (size_t)n);
    free(d);
    return rc;
}

/* Rust's char::to_lowercase per character (HF Lowercase): the simple mapping, and U+0130
 * to "i" + U+0307 (the one unconditional multi-character lowercase). */
static int lowercase(ftq_tok_buf *out, const char *s, size_t len)
{
    int rc = ftq_tok_buf_put(out, "", 0);
    for (size_t i = 0; i < len && !rc;) {
        uint32_t cp = (unsigned char)s[i];
        int k = ftq_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (k <= 0)
            k = 1;
        char u[8];
        if (cp == 0x130) {
            rc = ftq_tok_buf_put(out, "i\xcc\x87", 3);
        } else {
            uint32_t lo = cp < 0x80 ? (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp)
                                    : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            rc = ftq_tok_buf_put(out, u, (size_t)ftq_utf8_encode(lo, u));
        }
        i += (size_t)k;
    }
    return rc;
}

/* HF Strip: White_Space characters off the left and/or right end. */
static int strip(ftq_tok_buf *out, int left, int right, const char *s, size_t len)
{
    size_t a = 0, b = len;
    while (left && a < b) {
        uint32_t cp = (unsigned char)s[a];
        int k = ftq_utf8_decode((const unsigned char *)s + a, b - a, &cp);
        if (k <= 0 || !ftq_unicode_is_space(cp))
            break;
        a += (size_t)k;
    }
    while (right && b > a) {
        size_t q = b - 1;
        while (q > a && ((unsigned char)s[q] & 0xc0) == 0x80)
            q--;
        uint32_t cp = (unsigned char)s[q];
        if (ftq_utf8_decode((const unsigned char *)s + q, b - q, &cp) <= 0 || !ftq_unicode_is_space(cp))
            break;
        b = q;
    }
    return ftq_tok_buf_put(out, s + a, b - a);
}

int ftq_tok_normalize_ops(const ftq_tok_op *ops, int n, const char *s, size_t len, char **out,
                          size_t *out_len)
{
    ftq_tok_buf cur = {0};
    int rc = ftq_tok_buf_put(&cur, s, len);
    for (int k = 0; k < n && !rc; k++) {
        ftq_tok_buf next = {0};
        const ftq_tok_op *op = &ops[k];
        switch (op->op) {
        case TOK_NORM_PREPEND:
            if (cur.n) /* HF prepends only to non-empty text */
                rc = ftq_tok_buf_put(&next, op->a, op->alen);
            if (!rc)
                rc = ftq_tok_buf_put(&next, cur.p, cur.n);
            break;
        case TOK_NORM_REPLACE:
            rc = op->re ? replace_regex(&next, op, cur.p, cur.n)
                        : ftq_tok_replace_all(&next, cur.p, cur.n, op->a, op->alen, op->b, op->blen);
            break;
        case TOK_NORM_LOWERCASE: rc = lowercase(&next, cur.p, cur.n); break;
        case TOK_NORM_STRIP: rc = strip(&next, op->start, op->stop, cur.p, cur.n); break;
        default: rc = unicode_form(&next, op->op, cur.p, cur.n); break;
        }
        free(cur.p);
        cur = next;
    }
    if (rc) {
        free(cur.p);
        return rc;
    }
    if (!cur.p && (rc = ftq_tok_buf_put(&cur, "", 0)))
        return rc;
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
