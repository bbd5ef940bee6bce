/* tokenizer.c - public tokenizer API: file choice, BOS/EOS config, added-token splitting,
 * encode (normalizer -> pre-tokenizer -> BPE) and the HF / sentencepiece decoders.
 * Invariant: a loaded tokenizer is never written again; calls keep scratch space private. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/tok_internal.h"
#include "io/unicode.h"

static const char SPACE_SYMBOL[] = "\xe2\x96\x81"; /* U+2581, sentencepiece's escaped space */

/* ---- construction ---------------------------------------------------------------- */

ftq_tokenizer *ftq_tok_alloc(void)
{
    ftq_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = t->bl_byte_id[i] = -1;
    for (int i = 0; i < 128; i++)
        t->ascii_id[i] = -1;
    return t;
}

void ftq_tokenizer_free(ftq_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->flags);
    ftq_strmap_free(&t->vocab);
    ftq_pairmap_free(&t->merges);
    free(t->user_defined.v);
    for (int i = 0; i < t->n_norm_ops; i++) {
        free(t->norm_ops[i].a);
        free(t->norm_ops[i].b);
    }
    free(t->norm_ops);
    for (int i = 0; i < t->n_dec_ops; i++) {
        free(t->dec_ops[i].a);
        free(t->dec_ops[i].b);
    }
    free(t->dec_ops);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    free(t->added);
    free(t->prefix.v);
    free(t->suffix.v);
    free(t->tmpl_single);
    free(t->tmpl_pair);
    ftq_tok_regex_free(t->pre_regex);
    free(t);
}

static int grow_ids(ftq_tokenizer *t, size_t need)
{
    if (need <= t->cap)
        return FTQ_OK;
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < need)
        cap *= 2;
    char **piece = realloc(t->piece, cap * sizeof *piece);
    if (piece)
        t->piece = piece;
    uint32_t *plen = realloc(t->piece_len, cap * sizeof *plen);
    if (plen)
        t->piece_len = plen;
    uint8_t *flags = realloc(t->flags, cap);
    if (flags)
        t->flags = flags;
    if (!piece || !plen || !flags)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu vocabulary entries", cap);
    if (t->score) {
        float *sc = realloc(t->score, cap * sizeof *sc);
        if (!sc)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu vocabulary scores", cap);
        t->score = sc;
        memset(t->score + t->cap, 0, (cap - t->cap) * sizeof *sc);
    }
    memset(t->piece + t->cap, 0, (cap - t->cap) * sizeof *piece);
    memset(t->piece_len + t->cap, 0, (cap - t->cap) * sizeof *plen);
    memset(t->flags + t->cap, 0, cap - t->cap);
    t->cap = cap;
    return FTQ_OK;
}

int ftq_tok_allow_ids(ftq_tokenizer *t, const char *path, size_t n)
{
    snprintf(t->src, sizeof t->src, "%s", path);
    if (n > (size_t)(INT32_MAX - 1 - t->id_limit))
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': %zu vocabulary entries exceed the id range", path, n);
    t->id_limit += (int32_t)n;
    return FTQ_OK;
}

/* Set the text of id (replacing any previous text); extends n_vocab. Not added to the map. */
int ftq_tok_set_piece(ftq_tokenizer *t, int32_t id, const char *s, size_t len)
{
    if (id < 0 || id >= t->id_limit)
        return ftq_set_error(FTQ_EFORMAT,
                             "cannot load '%s': token id %ld is out of range (the files define %ld tokens, so ids "
                             "must be 0..%ld)",
                             t->src[0] ? t->src : "tokenizer", (long)id, (long)t->id_limit, (long)t->id_limit - 1);
    int rc = grow_ids(t, (size_t)id + 1);
    if (rc)
        return rc;
    char *p = malloc(len + 1);
    if (!p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    memcpy(p, s, len);
    p[len] = '\0';
    free(t->piece[id]);
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)len;
    if (id >= t->n_vocab)
        t->n_vocab = id + 1;
    return FTQ_OK;
}

int ftq_tok_add_vocab(ftq_tokenizer *t, int32_t id, const char *s, size_t len)
{
    int32_t other;
    if (id >= 0 && id < t->n_vocab && t->piece[id])
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': id %ld is given to both '%.40s' and '%.40s'", t->src,
                             (long)id, t->piece[id], s);
    if (ftq_strmap_get(&t->vocab, s, len, &other))
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': token '%.40s' appears twice (ids %ld and %ld)", t->src,
                             s, (long)other, (long)id);
    int rc = ftq_tok_set_piece(t, id, s, len);
    return rc ? rc : ftq_strmap_put(&t->vocab, s, len, id);
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int ftq_tok_add_added(ftq_tokenizer *t, int32_t id, const char *content, int special, int lstrip,
                      int rstrip, int single_word, int normalized)
{
    size_t len = strlen(content);
    if (len == 0)
        return ftq_set_error(FTQ_EFORMAT, "added token %ld has empty content", (long)id);
    for (int i = 0; i < t->n_added; i++) /* a later definition of the same id wins */
        if (t->added[i].id == id) {
            free(t->added[i].content);
            memmove(&t->added[i], &t->added[i + 1], (size_t)(t->n_added - i - 1) * sizeof *t->added);
            t->n_added--;
            break;
        }
    ftq_added_token *a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
    if (!a)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->added = a;
    ftq_added_token *x = &t->added[t->n_added];
    memset(x, 0, sizeof *x);
    x->id = id;
    x->content = dup_bytes(content, len);
    if (!x->content)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    x->len = len;
    x->special = special;
    x->lstrip = lstrip;
    x->rstrip = rstrip;
    x->single_word = single_word;
    x->normalized = normalized;
    t->n_added++;
    int rc = ftq_tok_set_piece(t, id, content, len);
    if (rc)
        return rc;
    if (special)
        t->flags[id] |= TOKF_SPECIAL;
    return FTQ_OK;
}

int ftq_tok_enable_scores(ftq_tokenizer *t)
{
    if (t->score)
        return FTQ_OK;
    t->score = calloc(t->cap ? t->cap : 1, sizeof *t->score);
    return t->score ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
}

/* ---- normalizers ----------------------------------------------------------------- */

static int replace_all(ftq_tok_buf *out, const char *s, size_t len, const char *pat, size_t plen, const char *rep,
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
            rc = replace_all(&next, cur.p, cur.n, ops[k].a, ops[k].alen, ops[k].b, ops[k].blen);
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
static int spm_normalize(const ftq_tokenizer *t, const char *s, size_t len, ftq_tok_buf *out)
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

/* ---- added tokens ---------------------------------------------------------------- */

static int is_word_char(uint32_t cp) { return cp == '_' || ftq_unicode_is_letter(cp) || ftq_unicode_is_number(cp); }

static uint32_t cp_before(const char *s, size_t pos, size_t *start)
{
    size_t k = pos - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
        k--;
    uint32_t cp = (unsigned char)s[k];
    ftq_utf8_decode((const unsigned char *)s + k, pos - k, &cp);
    *start = k;
    return cp;
}

static uint32_t cp_at(const char *s, size_t len, size_t pos, size_t *n)
{
    uint32_t cp = (unsigned char)s[pos];
    int k = ftq_utf8_decode((const unsigned char *)s + pos, len - pos, &cp);
    *n = k > 0 ? (size_t)k : 1;
    return cp;
}

/* Leftmost-longest added token in s[from, len) of the given phase (normalized or not).
 * [*ms, *me) includes the whitespace that lstrip/rstrip swallow. */
static int next_added(const ftq_tokenizer *t, const char *s, size_t len, size_t from, int normalized_phase,
                      size_t *ms, size_t *me, int32_t *id)
{
    for (size_t p = from; p < len; p++) {
        if (!t->added_first[(unsigned char)s[p]])
            continue;
        const ftq_added_token *best = NULL;
        for (int k = 0; k < t->n_added; k++) {
            const ftq_added_token *a = &t->added[k];
            int phase = a->normalized && t->norm == TOK_NORM_OPS;
            if (phase != normalized_phase || a->match_len > len - p || (best && a->match_len <= best->match_len))
                continue;
            if (memcmp(s + p, a->match, a->match_len) != 0)
                continue;
            if (a->single_word) {
                size_t q, n;
                if ((p > 0 && is_word_char(cp_before(s, p, &q))) ||
                    (p + a->match_len < len && is_word_char(cp_at(s, len, p + a->match_len, &n))))
                    continue;
            }
            best = a;
        }
        if (!best)
            continue;
        size_t a = p, b = p + best->match_len, q, n;
        if (best->lstrip)
            while (a > from && ftq_unicode_is_space(cp_before(s, a, &q)))
                a = q;
        if (best->rstrip)
            while (b < len && ftq_unicode_is_space(cp_at(s, len, b, &n)))
                b += n;
        *ms = a;
        *me = b;
        *id = best->id;
        return 1;
    }
    return 0;
}

/* ---- encoding -------------------------------------------------------------------- */

typedef struct {
    ftq_bpe_work *bpe;
    ftq_strmap cache; /* GPT-2 pre-token -> offset of [count, ids...] in cache_ids */
    ftq_ivec cache_ids;
    ftq_tok_buf tmp;
} enc_ctx;

enum { CACHE_MAX_WORD = 64, CACHE_MAX_ENTRIES = 1 << 16 };

static int bytelevel_word(const ftq_tokenizer *t, enc_ctx *c, const char *s, size_t n, ftq_ivec *out)
{
    int32_t off;
    if (n <= CACHE_MAX_WORD && ftq_strmap_get(&c->cache, s, n, &off)) {
        int32_t cnt = c->cache_ids.v[off];
        int rc = ftq_ivec_reserve(out, (size_t)cnt);
        if (rc)
            return rc;
        if (cnt) /* a word may give no ids (bytes missing from the vocab): out->v may be NULL */
            memcpy(out->v + out->n, c->cache_ids.v + off + 1, (size_t)cnt * sizeof(int32_t));
        out->n += (size_t)cnt;
        return FTQ_OK;
    }
    size_t before = out->n;
    int rc = ftq_bpe_rank(t, c->bpe, s, n, 1, out);
    if (rc || n > CACHE_MAX_WORD)
        return rc;
    if (c->cache.n >= CACHE_MAX_ENTRIES) {
        ftq_strmap_clear(&c->cache);
        c->cache_ids.n = 0;
    }
    size_t cnt = out->n - before;
    off = (int32_t)c->cache_ids.n;
    if ((rc = ftq_ivec_reserve(&c->cache_ids, cnt + 1)))
        return rc;
    c->cache_ids.v[c->cache_ids.n++] = (int32_t)cnt;
    if (cnt)
        memcpy(c->cache_ids.v + c->cache_ids.n, out->v + before, cnt * sizeof(int32_t));
    c->cache_ids.n += cnt;
    return ftq_strmap_put(&c->cache, s, n, off);
}

typedef struct {
    const ftq_tokenizer *t;
    enc_ctx *c;
    ftq_ivec *out;
} word_sink;

static int regex_piece(void *user, const char *s, size_t n)
{
    word_sink *w = user;
    return bytelevel_word(w->t, w->c, s, n, w->out);
}

/* Pre-tokenize and run the model over normalized text. */
static int encode_normalized(const ftq_tokenizer *t, enc_ctx *c, const char *s, size_t len, ftq_ivec *out)
{
    if (len == 0)
        return FTQ_OK;
    if (t->model == TOK_MODEL_BPE_SCORE)
        return ftq_bpe_score(t, c->bpe, s, len, out);
    if (t->model == TOK_MODEL_WORDPIECE)
        return ftq_tok_wordpiece_encode(t, s, len, out);
    if (t->pretok != TOK_PRE_BYTELEVEL)
        return ftq_bpe_rank(t, c->bpe, s, len, 0, out);
    if (t->bl_add_prefix_space && s[0] != ' ') {
        c->tmp.n = 0;
        int rc = ftq_tok_buf_put(&c->tmp, " ", 1);
        if (rc || (rc = ftq_tok_buf_put(&c->tmp, s, len)))
            return rc;
        s = c->tmp.p;
        len = c->tmp.n;
    }
    if (t->pre_regex) {
        word_sink w = {t, c, out};
        return ftq_tok_regex_split(t->pre_regex, s, len, regex_piece, &w);
    }
    if (!t->bl_use_regex)
        return ftq_bpe_rank(t, c->bpe, s, len, 1, out);
    for (size_t p = 0; p < len;) {
        size_t e = ftq_gpt2_pretoken_end((const unsigned char *)s, len, p);
        int rc = bytelevel_word(t, c, s + p, e - p, out);
        if (rc)
            return rc;
        p = e;
    }
    return FTQ_OK;
}

/* Normalize one piece of raw text (between non-normalized added tokens) and encode it,
 * splitting on normalized added tokens first. */
static int encode_piece(const ftq_tokenizer *t, enc_ctx *c, const char *s, size_t len, ftq_ivec *out)
{
    if (t->norm == TOK_NORM_NONE)
        return encode_normalized(t, c, s, len, out);
    char *ns = NULL;
    size_t nl = 0;
    int rc;
    if (t->norm == TOK_NORM_SPM) {
        ftq_tok_buf b = {0};
        rc = spm_normalize(t, s, len, &b);
        ns = b.p;
        nl = b.n;
    } else if (t->norm == TOK_NORM_BERT) {
        rc = ftq_tok_bert_normalize(t, s, len, &ns, &nl);
    } else {
        rc = ftq_tok_normalize_ops(t->norm_ops, t->n_norm_ops, s, len, &ns, &nl);
    }
    size_t from = 0, ms, me;
    int32_t id;
    while (!rc && t->norm == TOK_NORM_OPS && next_added(t, ns, nl, from, 1, &ms, &me, &id)) {
        if (!(rc = encode_normalized(t, c, ns + from, ms - from, out)))
            rc = ftq_ivec_push(out, id);
        from = me;
    }
    if (!rc)
        rc = encode_normalized(t, c, ns + from, nl - from, out);
    free(ns);
    return rc;
}

int ftq_tokenizer_encode(const ftq_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n)
{
    if (!t || !ids || !n || (!text && len))
        return ftq_set_error(FTQ_EINVAL, "cannot encode: NULL argument");
    *ids = NULL;
    *n = 0;
    if (len > (size_t)INT32_MAX / 2)
        return ftq_set_error(FTQ_EINVAL, "cannot encode: text of %zu bytes is too long", len);
    size_t bad = ftq_utf8_invalid_offset(text, len);
    if (bad != len)
        return ftq_set_error(FTQ_EFORMAT, "cannot encode: invalid utf-8 at byte offset %zu (byte 0x%02x)", bad,
                             (unsigned char)text[bad]);
    enc_ctx c = {0};
    ftq_ivec out = {0};
    int rc = FTQ_OK;
    c.bpe = ftq_bpe_new();
    if (!c.bpe)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc && add_special && t->prefix.n && !(rc = ftq_ivec_reserve(&out, t->prefix.n))) {
        memcpy(out.v, t->prefix.v, t->prefix.n * sizeof(int32_t));
        out.n = t->prefix.n;
    }
    size_t from = 0, ms, me;
    int32_t id;
    while (!rc && len && next_added(t, text, len, from, 0, &ms, &me, &id)) {
        if (!(rc = encode_piece(t, &c, text + from, ms - from, &out)))
            rc = ftq_ivec_push(&out, id);
        from = me;
    }
    if (!rc)
        rc = encode_piece(t, &c, text + from, len - from, &out);
    for (size_t i = 0; !rc && add_special && i < t->suffix.n; i++)
        rc = ftq_ivec_push(&out, t->suffix.v[i]);
    ftq_bpe_free(c.bpe);
    ftq_strmap_free(&c.cache);
    free(c.cache_ids.v);
    free(c.tmp.p);
    if (rc) {
        free(out.v);
        return rc;
    }
    if (!out.v) /* callers may always free(*ids) and index it when n > 0 */
        out.v = malloc(sizeof(int32_t));
    if (!out.v)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    *ids = out.v;
    *n = out.n;
    return FTQ_OK;
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
            if (!(rc = replace_all(&out->b, s, n, op->a, op->alen, op->b, op->blen)))
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
        rc = replace_all(out, s, len, SPACE_SYMBOL, 3, " ", 1);
    }
    if (!rc)
        rc = flush_spm_bytes(out, &bytes);
    free(bytes.p);
    return rc;
}

int ftq_tokenizer_decode(const ftq_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                         size_t *len)
{
    if (!t || !text || (!ids && n))
        return ftq_set_error(FTQ_EINVAL, "cannot decode: NULL argument");
    *text = NULL;
    if (len)
        *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab || !t->piece[ids[i]])
            return ftq_set_error(FTQ_EINVAL, "cannot decode: token id %ld at position %zu is not in the vocabulary "
                                 "(size %d)", (long)ids[i], i, (int)t->n_vocab);
    ftq_tok_buf out = {0};
    int rc = t->decoder == TOK_DEC_SPM ? decode_spm(t, ids, n, skip_special, &out)
                                       : decode_chain(t, ids, n, skip_special, &out);
    if (rc) {
        free(out.p);
        return rc;
    }
    *text = out.p;
    if (len)
        *len = out.n;
    return FTQ_OK;
}

/* ---- special tokens and configuration files -------------------------------------- */

/* Parse dir/name if it exists: FTQ_OK with *j NULL when absent. */
static int read_json_opt(const char *dir, const char *name, cJSON **j)
{
    *j = NULL;
    char *path = ftq_path_join(dir, name);
    if (!path)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = FTQ_OK;
    if (ftq_is_file(path)) {
        char *data = NULL;
        size_t n = 0;
        rc = ftq_read_file_max(path, FTQ_MAX_CONFIG_BYTES, &data, &n);
        if (!rc) {
            *j = cJSON_ParseWithLength(data, n);
            if (!*j || !cJSON_IsObject(*j)) {
                cJSON_Delete(*j);
                *j = NULL;
                rc = ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': not a json object", path);
            }
        }
        free(data);
    }
    free(path);
    return rc;
}

/* A special-token entry is a string or {"content": string, ...}. */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c))
            return c->valuestring;
    }
    return NULL;
}

static int32_t token_id(const ftq_tokenizer *t, const char *s)
{
    if (!s)
        return -1;
    size_t len = strlen(s);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0)
            return t->added[i].id;
    int32_t id;
    return ftq_strmap_get(&t->vocab, s, len, &id) ? id : -1;
}

/* BOS or EOS: tokenizer_config.json, special_tokens_map.json, config.json ids, then the
 * id the loader found (sentencepiece trainer spec), then well-known names in the vocab. */
static int32_t pick_special(const ftq_tokenizer *t, const cJSON *cfg, const cJSON *stm, const cJSON *mc,
                            const char *key, const char *id_key, int32_t loader_id, const char *const *names)
{
    int32_t id = token_id(t, token_text(cJSON_GetObjectItemCaseSensitive(cfg, key)));
    if (id < 0)
        id = token_id(t, token_text(cJSON_GetObjectItemCaseSensitive(stm, key)));
    if (id < 0) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(mc, id_key);
        if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < t->n_vocab && t->piece[(int32_t)v->valuedouble])
            id = (int32_t)v->valuedouble;
    }
    if (id < 0 && loader_id >= 0 && loader_id < t->n_vocab)
        id = loader_id;
    for (int k = 0; id < 0 && names[k]; k++)
        id = token_id(t, names[k]);
    return id;
}

static int json_flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* transformers' slow tokenizers split on the tokens of added_tokens_decoder (or, without
 * one, on their special tokens); the sentencepiece and GPT-2 file loaders copy that. */
static int config_added_tokens(ftq_tokenizer *t, const cJSON *cfg, const cJSON *stm)
{
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    const cJSON *it;
    int rc = FTQ_OK;
    if (cJSON_IsObject(dec)) {
        cJSON_ArrayForEach(it, dec)
        {
            char *end = NULL;
            long id = strtol(it->string, &end, 10);
            const char *content = token_text(it);
            if (!end || *end || id < 0 || id >= INT32_MAX - 1 || !content)
                return ftq_set_error(FTQ_EFORMAT, "tokenizer_config.json: bad added_tokens_decoder entry '%s'",
                                     it->string);
            rc = ftq_tok_add_added(t, (int32_t)id, content, json_flag(it, "special", 1), json_flag(it, "lstrip", 0),
                                   json_flag(it, "rstrip", 0), json_flag(it, "single_word", 0),
                                   json_flag(it, "normalized", 0));
            if (rc)
                return rc;
        }
        return FTQ_OK;
    }
    /* Without a decoder table the class defaults apply: LlamaTokenizer's <unk>/<s>/</s> are
     * the sentencepiece control and unknown pieces, GPT2Tokenizer's are all <|endoftext|>. */
    for (int32_t id = 0; id < t->n_vocab && !rc; id++)
        if (t->kind == FTQ_TOKENIZER_SPM && (t->flags[id] & (TOKF_CONTROL | TOKF_UNKNOWN)))
            rc = ftq_tok_add_added(t, id, t->piece[id], 1, 0, 0, 0, 0);
    int32_t id;
    if (!rc && t->kind == FTQ_TOKENIZER_GPT2_FILES && ftq_strmap_get(&t->vocab, "<|endoftext|>", 13, &id))
        rc = ftq_tok_add_added(t, id, "<|endoftext|>", 1, 0, 0, 0, 0);
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token", NULL};
    for (int k = 0; keys[k] && !rc; k++) {
        const char *s = token_text(cJSON_GetObjectItemCaseSensitive(cfg, keys[k]));
        if (!s)
            s = token_text(cJSON_GetObjectItemCaseSensitive(stm, keys[k]));
        if (s && ftq_strmap_get(&t->vocab, s, strlen(s), &id))
            rc = ftq_tok_add_added(t, id, s, 1, 0, 0, 0, 0);
    }
    return rc;
}

static int configure(ftq_tokenizer *t, const char *dir)
{
    cJSON *cfg = NULL, *stm = NULL, *mc = NULL;
    int rc = read_json_opt(dir, "tokenizer_config.json", &cfg);
    if (!rc)
        rc = read_json_opt(dir, "special_tokens_map.json", &stm);
    if (!rc)
        rc = read_json_opt(dir, "config.json", &mc);
    if (!rc && t->kind != FTQ_TOKENIZER_HF_JSON) {
        /* added_tokens_decoder may define ids beyond the vocabulary, one per entry */
        char *p = ftq_path_join(dir, "tokenizer_config.json");
        rc = p ? ftq_tok_allow_ids(t, p, (size_t)cJSON_GetArraySize(
                                             cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder")))
               : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(p);
        if (!rc)
            rc = config_added_tokens(t, cfg, stm);
    }
    if (rc)
        goto done;
    if (t->kind == FTQ_TOKENIZER_GPT2_FILES)
        t->bl_add_prefix_space = json_flag(cfg, "add_prefix_space", 0);
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL};
    t->bos_id = pick_special(t, cfg, stm, mc, "bos_token", "bos_token_id", t->bos_id, bos_names);
    t->eos_id = pick_special(t, cfg, stm, mc, "eos_token", "eos_token_id", t->eos_id, eos_names);

    /* Defaults: the tokenizer.json post-processor (already in prefix/suffix), LlamaTokenizer's
     * add_bos_token=True for sentencepiece, nothing for GPT-2. tokenizer_config.json wins. */
    int add_bos = t->kind == FTQ_TOKENIZER_SPM ? 1 : -1, add_eos = t->kind == FTQ_TOKENIZER_SPM ? 0 : -1;
    if (t->kind == FTQ_TOKENIZER_GPT2_FILES)
        add_bos = add_eos = 0;
    add_bos = json_flag(cfg, "add_bos_token", add_bos);
    add_eos = json_flag(cfg, "add_eos_token", add_eos);
    if (add_bos >= 0) {
        t->prefix.n = 0;
        if (add_bos && t->bos_id >= 0)
            rc = ftq_ivec_push(&t->prefix, t->bos_id);
    }
    if (!rc && add_eos >= 0) {
        t->suffix.n = 0;
        if (add_eos && t->eos_id >= 0)
            rc = ftq_ivec_push(&t->suffix, t->eos_id);
    }
done:
    cJSON_Delete(cfg);
    cJSON_Delete(stm);
    cJSON_Delete(mc);
    return rc;
}

/* Lookup tables and added-token match strings, once the vocabulary is complete. */
static int check_holes(const ftq_tokenizer *t)
{
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (!t->piece[i])
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': no token has id %ld (ids must run 0..%ld without holes)",
                                 t->src, (long)i, (long)t->n_vocab - 1);
    return FTQ_OK;
}

static int finalize(ftq_tokenizer *t)
{
    int32_t id;
    char name[8];
    int hrc = check_holes(t);
    if (hrc)
        return hrc;
    for (int b = 0; b < 256; b++) {
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = ftq_strmap_get(&t->vocab, name, 6, &id) ? id : -1;
        if (b < 128) {
            char ch = (char)b;
            t->ascii_id[b] = ftq_strmap_get(&t->vocab, &ch, 1, &id) ? id : -1;
        }
        if (t->pretok == TOK_PRE_BYTELEVEL) {
            char u[4];
            int k = ftq_utf8_encode(ftq_bytelevel_cp((unsigned char)b), u);
            t->bl_byte_id[b] = ftq_strmap_get(&t->vocab, u, (size_t)k, &id) ? id : -1;
        }
    }
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->piece[i] && t->piece_len[i] > t->max_piece_len)
            t->max_piece_len = t->piece_len[i];
    for (int i = 0; i < t->n_added; i++) {
        ftq_added_token *a = &t->added[i];
        int rc = FTQ_OK;
        if (a->normalized && t->norm == TOK_NORM_OPS) {
            rc = ftq_tok_normalize_ops(t->norm_ops, t->n_norm_ops, a->content, a->len, &a->match, &a->match_len);
        } else if ((a->match = dup_bytes(a->content, a->len))) {
            a->match_len = a->len;
        } else {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        }
        if (rc)
            return rc;
        /* HF's id_to_token (and so its decoders) see a normalized token in normalized form */
        if (a->normalized && t->norm == TOK_NORM_OPS && (rc = ftq_tok_set_piece(t, a->id, a->match, a->match_len)))
            return rc;
        if (a->match_len)
            t->added_first[(unsigned char)a->match[0]] = 1;
    }
    if (t->model == TOK_MODEL_BPE_SCORE && !t->score)
        return ftq_set_error(FTQ_EFORMAT, "sentencepiece model without scores");
    return FTQ_OK;
}

int ftq_tokenizer_load_kind(const char *dir, ftq_tokenizer_kind kind, ftq_tokenizer **out)
{
    if (!dir || !out)
        return ftq_set_error(FTQ_EINVAL, "cannot load tokenizer: NULL argument");
    *out = NULL;
    if (kind == FTQ_TOKENIZER_GGUF ? !ftq_is_file(dir) : !ftq_is_dir(dir))
        return ftq_set_error(FTQ_ENOTFOUND, "cannot load tokenizer from '%s': not a %s", dir,
                             kind == FTQ_TOKENIZER_GGUF ? "file" : "directory");
    ftq_tokenizer *t = ftq_tok_alloc();
    if (!t)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->kind = kind;
    int rc;
    switch (kind) {
    case FTQ_TOKENIZER_HF_JSON: rc = ftq_tok_load_hf_json(t, dir); break;
    case FTQ_TOKENIZER_SPM: rc = ftq_tok_load_spm(t, dir); break;
    case FTQ_TOKENIZER_GPT2_FILES: rc = ftq_tok_load_gpt2_files(t, dir); break;
    case FTQ_TOKENIZER_VOCAB_TXT: rc = ftq_tok_load_vocab_txt(t, dir); break;
    case FTQ_TOKENIZER_GGUF: rc = ftq_tok_load_gguf(t, dir); break;
    default: rc = ftq_set_error(FTQ_EINVAL, "unknown tokenizer kind %d", (int)kind); break;
    }
    if (!rc)
        rc = check_holes(t); /* named after the model's own file, before tokenizer_config.json adds */
    if (!rc && kind != FTQ_TOKENIZER_GGUF) /* a GGUF file carries its own BOS/EOS flags */
        rc = configure(t, dir);
    if (!rc)
        rc = finalize(t);
    if (rc) {
        ftq_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return FTQ_OK;
}

int ftq_tokenizer_load(const char *dir, ftq_tokenizer **out)
{
    if (!dir || !out)
        return ftq_set_error(FTQ_EINVAL, "cannot load tokenizer: NULL argument");
    *out = NULL;
    if (ftq_gguf_is_file(dir))
        return ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_GGUF, out);
    static const char *const files[] = {"tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt",
                                        "vocab.txt"};
    int have[5];
    for (int i = 0; i < 5; i++) {
        char *p = ftq_path_join(dir, files[i]);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        have[i] = ftq_is_file(p);
        free(p);
    }
    if (have[0])
        return ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_HF_JSON, out);
    if (have[1])
        return ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_SPM, out);
    if (have[2] && have[3])
        return ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_GPT2_FILES, out);
    if (have[4])
        return ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_VOCAB_TXT, out);
    return ftq_set_error(FTQ_ENOTFOUND,
                         "no tokenizer in '%s': looked for tokenizer.json, tokenizer.model, vocab.json + merges.txt, "
                         "vocab.txt",
                         dir);
}

/* ---- accessors ------------------------------------------------------------------- */

ftq_tokenizer_kind ftq_tokenizer_get_kind(const ftq_tokenizer *t) { return t->kind; }
int ftq_tokenizer_vocab_size(const ftq_tokenizer *t) { return t->n_vocab; }
int ftq_tokenizer_bos(const ftq_tokenizer *t) { return t->bos_id; }
int ftq_tokenizer_eos(const ftq_tokenizer *t) { return t->eos_id; }
int ftq_tokenizer_adds_bos(const ftq_tokenizer *t) { return t->prefix.n > 0; }
int ftq_tokenizer_adds_eos(const ftq_tokenizer *t) { return t->suffix.n > 0; }
const char *ftq_tokenizer_kind_name(const ftq_tokenizer *t) { return t->name; }

const char *ftq_tokenizer_piece(const ftq_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? t->piece[id] : NULL;
}

int ftq_tokenizer_is_special(const ftq_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->flags[id] & TOKF_SPECIAL) != 0;
}
