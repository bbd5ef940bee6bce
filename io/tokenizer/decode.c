/* decode.c - ids back to text: the tokenizer.json decoder chain (ByteLevel, Replace,
 * ByteFallback, Fuse, Strip, WordPiece) and sentencepiece's decoder.
 * Invariant: invalid UTF-8 never leaves here; it becomes U+FFFD as HF / sentencepiece write it. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"

static const char SPACE_SYMBOL[] = "\xe2\x96\x81"; /* U+2581, sentencepiece's escaped space */

static uint32_t cp_at(const char *s, size_t len, size_t pos, size_t *n)
{
    uint32_t cp = (unsigned char)s[pos];
    int k = ftq_utf8_decode((const unsigned char *)s + pos, len - pos, &cp);
    *n = k > 0 ? (size_t)k : 1;
    return cp;
}

/* ---- decoding -------------------------------------------------------------------- */

static const char REPLACEMENT[] = "\xef\xbf\xbd";

/* Append bytes, replacing each maximal invalid subpart with U+FFFD (Python
 * errors='replace', Rust from_utf8_lossy). */
static int put_lossy(ftq_tok_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    int rc = ftq_tok_buf_put(b, "", 0);
    while (!rc && i < n) {
        uint32_t cp;
        int k = u[i] < 0x80 ? 1 : ftq_utf8_decode(u + i, n - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (!(rc = ftq_tok_buf_put(b, s + run, i - run)))
            rc = ftq_tok_buf_put(b, REPLACEMENT, 3);
        i += ftq_utf8_maximal_subpart(u + i, n - i);
        run = i;
    }
    return rc ? rc : ftq_tok_buf_put(b, s + run, n - run);
}

/* Token strings between decoder steps: token i is p[off[i], off[i+1]). */
typedef struct {
    ftq_tok_buf b;
    size_t *off;
    size_t n, cap;
} toks;

static int toks_end(toks *t)
{
    if (t->n + 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        size_t *p = realloc(t->off, cap * sizeof *p);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu decoded tokens", cap);
        t->off = p;
        t->cap = cap;
        if (t->n == 0)
            t->off[0] = 0;
    }
    t->off[++t->n] = t->b.n;
    return FTQ_OK;
}

static int toks_add(toks *t, const char *s, size_t n)
{
    int rc = ftq_tok_buf_put(&t->b, s, n);
    return rc ? rc : toks_end(t);
}

static void toks_free(toks *t)
{
    free(t->b.p);
    free(t->off);
    memset(t, 0, sizeof *t);
}

static int byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char ch = s[k] >= 'A' && s[k] <= 'F' ? (char)(s[k] - 'A' + 'a') : s[k];
        const char *d = ch ? strchr(hex, ch) : NULL;
        if (!d)
            return -1;
        v = v * 16 + (int)(d - hex);
    }
    return v;
}

static int flush_fallback(toks *out, ftq_tok_buf *bytes)
{
    int rc = FTQ_OK;
    if (!bytes->n)
        return rc;
    if (ftq_utf8_invalid_offset(bytes->p, bytes->n) == bytes->n) {
        rc = toks_add(out, bytes->p, bytes->n);
    } else { /* HF ByteFallback: one U+FFFD per byte of an invalid run */
        for (size_t i = 0; i < bytes->n && !rc; i++)
            rc = toks_add(out, REPLACEMENT, 3);
    }
    bytes->n = 0;
    return rc;
}

static int apply_dec_op(const ftq_tok_op *op, const toks *in, toks *out)
{
    int rc = FTQ_OK;
    ftq_tok_buf tmp = {0};
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = in->b.p + in->off[i];
        size_t n = in->off[i + 1] - in->off[i];
        switch (op->op) {
        case TOK_DEC_BYTELEVEL: { /* per token: all chars byte-level, else the raw text */
            size_t mark = tmp.n, p = 0;
            while (p < n && !rc) {
                size_t k;
                int byte = ftq_bytelevel_byte(cp_at(s, n, p, &k));
                if (byte < 0)
                    break;
                char ch = (char)byte;
                rc = ftq_tok_buf_put(&tmp, &ch, 1);
                p += k;
            }
            if (!rc && p < n) {
                tmp.n = mark;
                rc = ftq_tok_buf_put(&tmp, s, n);
            }
            break;
        }
        case TOK_DEC_REPLACE:
            if (!(rc = ftq_tok_replace_all(&out->b, s, n, op->a, op->alen, op->b, op->blen)))
                rc = toks_end(out);
            break;
        case TOK_DEC_BYTEFALLBACK: {
            int v = byte_token(s, n);
            if (v >= 0) {
                char ch = (char)v;
                rc = ftq_tok_buf_put(&tmp, &ch, 1);
            } else if (!(rc = flush_fallback(out, &tmp))) {
                rc = toks_add(out, s, n);
            }
            break;
        }
        case TOK_DEC_FUSE:
            rc = ftq_tok_buf_put(&tmp, s, n);
            break;
        case TOK_DEC_WORDPIECE:
            rc = ftq_tok_wordpiece_decode_token(op, i == 0, s, n, &tmp.p, &tmp.n);
            tmp.cap = tmp.p ? tmp.n + 1 : 0;
            break;
        case TOK_DEC_METASPACE: { /* the replacement becomes ' ', all dropped in a first token (HF) */
            size_t last = 0;
            for (size_t p = 0; p + op->alen <= n && !rc;) {
                if (memcmp(s + p, op->a, op->alen) != 0) {
                    p++;
                    continue;
                }
                if (!(rc = ftq_tok_buf_put(&out->b, s + last, p - last)) && !(i == 0 && op->start))
                    rc = ftq_tok_buf_put(&out->b, " ", 1);
                p += op->alen;
                last = p;
            }
            if (!rc && !(rc = ftq_tok_buf_put(&out->b, s + last, n - last)))
                rc = toks_end(out);
            break;
        }
        case TOK_DEC_STRIP: {
            size_t a = 0, b = n;
            for (int k = 0; k < op->start && b - a >= op->alen && memcmp(s + a, op->a, op->alen) == 0; k++)
                a += op->alen;
            for (int k = 0; k < op->stop && b - a >= op->alen && memcmp(s + b - op->alen, op->a, op->alen) == 0;
                 k++)
                b -= op->alen;
            rc = toks_add(out, s + a, b - a);
            break;
        }
        }
    }
    if (!rc && op->op == TOK_DEC_BYTEFALLBACK)
        rc = flush_fallback(out, &tmp);
    else if (!rc && op->op == TOK_DEC_WORDPIECE && op->start) {
        char *w = NULL;
        size_t wn = 0;
        if (!(rc = ftq_tok_wordpiece_cleanup(tmp.p ? tmp.p : "", tmp.n, &w, &wn)))
            rc = toks_add(out, w, wn);
        free(w);
    } else if (!rc && (op->op == TOK_DEC_FUSE || op->op == TOK_DEC_WORDPIECE))
        rc = toks_add(out, tmp.p ? tmp.p : "", tmp.n);
    else if (!rc && op->op == TOK_DEC_BYTELEVEL && !(rc = put_lossy(&out->b, tmp.p ? tmp.p : "", tmp.n)))
        rc = toks_end(out);
    free(tmp.p);
    return rc;
}

static int decode_chain(const ftq_tokenizer *t, const int32_t *ids, size_t n, int skip_special, ftq_tok_buf *out)
{
    toks cur = {0};
    int rc = FTQ_OK;
    for (size_t i = 0; i < n && !rc; i++)
        if (!(skip_special && (t->flags[ids[i]] & TOKF_SPECIAL)))
            rc = toks_add(&cur, t->piece[ids[i]], t->piece_len[ids[i]]);
    for (int k = 0; k < t->n_dec_ops && !rc; k++) {
        toks next = {0};
        rc = apply_dec_op(&t->dec_ops[k], &cur, &next);
        toks_free(&cur);
        cur = next;
    }
    rc = rc ? rc : ftq_tok_buf_put(out, "", 0);
    for (size_t i = 0; i < cur.n && !rc; i++) {
        if (t->n_dec_ops == 0 && i > 0) /* no decoder: HF joins tokens with spaces */
            rc = ftq_tok_buf_put(out, " ", 1);
        if (!rc)
            rc = ftq_tok_buf_put(out, cur.b.p + cur.off[i], cur.off[i + 1] - cur.off[i]);
    }
    toks_free(&cur);
    return rc;
}

/* sentencepiece's byte pieces: each valid character as is, each other byte U+FFFD. */
static int flush_spm_bytes(ftq_tok_buf *out, ftq_tok_buf *bytes)
{
    int rc = FTQ_OK;
    for (size_t i = 0; i < bytes->n && !rc;) {
        uint32_t cp;
        int k = ftq_utf8_decode((const unsigned char *)bytes->p + i, bytes->n - i, &cp);
        rc = k > 0 ? ftq_tok_buf_put(out, bytes->p + i, (size_t)k) : ftq_tok_buf_put(out, REPLACEMENT, 3);
        i += k > 0 ? (size_t)k : 1;
    }
    bytes->n = 0;
    return rc;
}

/* SentencePieceProcessor::Decode: U+2581 -> ' ', the first piece loses one leading U+2581
 * (while no text has been produced yet), byte pieces fused into UTF-8 with U+FFFD per
 * invalid byte. With skip_special, control pieces vanish (as in sentencepiece) and unknown
 * pieces are dropped (as in HF); without it both are written as their text (as in HF). */
static int decode_spm(const ftq_tokenizer *t, const int32_t *ids, size_t n, int skip_special, ftq_tok_buf *out)
{
    ftq_tok_buf bytes = {0};
    int rc = ftq_tok_buf_put(out, "", 0);
    int is_bos_ws = 1, bos_ws_seen = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        uint8_t f = t->flags[id];
        if ((f & TOKF_BYTE) && t->piece_len[id] == 6) {
            char ch = (char)byte_token(t->piece[id], 6);
            rc = ftq_tok_buf_put(&bytes, &ch, 1);
            continue;
        }
        if (skip_special && (f & TOKF_UNKNOWN))
            continue; /* as if absent (HF drops it; sentencepiece would write " ⁇ ") */
        if ((rc = flush_spm_bytes(out, &bytes))) /* a control piece ends a byte run even unseen */
            break;
        if (bos_ws_seen || out->n)
            is_bos_ws = 0;
        const char *s = t->piece[id];
        size_t len = t->piece_len[id];
        bos_ws_seen = 0;
        if (f & (TOKF_SPECIAL | TOKF_CONTROL | TOKF_UNKNOWN)) {
            if (!skip_special)
                rc = ftq_tok_buf_put(out, s, len);
            continue;
        }
        if (is_bos_ws && (t->spm_dummy_prefix || t->spm_remove_ws) && len >= 3 && memcmp(s, SPACE_SYMBOL, 3) == 0) {
            s += 3;
            len -= 3;
            bos_ws_seen = !t->spm_remove_ws;
        }
        rc = ftq_tok_replace_all(out, s, len, SPACE_SYMBOL, 3, " ", 1);
    }
    if (!rc)
        rc = flush_spm_bytes(out, &bytes);
    free(bytes.p);
    return rc;
}

int ftq_tok_decode(const ftq_tokenizer *t, const int32_t *ids, size_t n, int skip_special, ftq_tok_buf *out)
{
    return t->decoder == TOK_DEC_SPM ? decode_spm(t, ids, n, skip_special, out)
                                     : decode_chain(t, ids, n, skip_special, out);
}
