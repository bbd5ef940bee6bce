/* pretok.c - the pre-tokenizers of a tokenizer.json as a list of stages, each splitting every
 * piece of the one before: Split (regex or string; Isolated, Removed, MergedWithPrevious,
 * MergedWithNext, Contiguous; invert), Punctuation, Digits, WhitespaceSplit, Whitespace,
 * Metaspace and ByteLevel (last only), with HF tokenizers' semantics (pattern matches tile the
 * text, the behaviour folds them into pieces, empty pieces vanish).
 * Invariant: pieces reach the callback in text order; the tokenizer is only read. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"

typedef struct {
    size_t s, e;
    int m; /* is a match (after invert) */
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spans;

static int spans_push(spans *v, size_t s, size_t e, int m)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 16;
        span *p = realloc(v->v, cap * sizeof *p);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (span){s, e, m};
    return FTQ_OK;
}

static int is_punct(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2f) || (cp >= 0x3a && cp <= 0x40) || (cp >= 0x5b && cp <= 0x60) ||
               (cp >= 0x7b && cp <= 0x7e);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int char_matches(int match, uint32_t cp)
{
    switch (match) {
    case TOK_MATCH_SPACE: return ftq_unicode_is_space(cp);
    case TOK_MATCH_PUNCT: return is_punct(cp);
    default: return ftq_unicode_is_number(cp); /* Rust's char::is_numeric: N* */
    }
}

/* The pattern's matches and the gaps between them, tiling s (HF Pattern::find_matches). */
static int find_matches(const ftq_tok_pre *p, const char *s, size_t len, spans *out)
{
    int rc = FTQ_OK;
    size_t prev = 0;
    if (p->match == TOK_MATCH_REGEX || p->match == TOK_MATCH_STRING) {
        ftq_ivec m = {0};
        if (p->match == TOK_MATCH_REGEX) {
            rc = ftq_tok_regex_matches(p->re, s, len, &m);
        } else {
            for (size_t i = 0; !rc && i + p->slen <= len;) {
                if (memcmp(s + i, p->str, p->slen) == 0) {
                    if (!(rc = ftq_ivec_push(&m, (int32_t)i)))
                        rc = ftq_ivec_push(&m, (int32_t)(i + p->slen));
                    i += p->slen;
                } else {
                    i++;
                }
            }
        }
        for (size_t i = 0; !rc && i + 1 < m.n; i += 2) {
            size_t ms = (size_t)m.v[i], me = (size_t)m.v[i + 1];
            if (prev != ms)
                rc = spans_push(out, prev, ms, 0);
            if (!rc)
                rc = spans_push(out, ms, me, 1);
            prev = me;
        }
        free(m.v);
    } else { /* a character predicate: every matching character is a match of its own */
        for (size_t i = 0; !rc && i < len;) {
            uint32_t cp = (unsigned char)s[i];
            int k = ftq_utf8_decode((const unsigned char *)s + i, len - i, &cp);
            size_t n = k > 0 ? (size_t)k : 1;
            if (char_matches(p->match, cp)) {
                if (prev < i)
                    rc = spans_push(out, prev, i, 0);
                if (!rc)
                    rc = spans_push(out, i, i + n, 1);
                prev = i + n;
            }
            i += n;
        }
    }
    if (!rc && prev != len)
        rc = spans_push(out, prev, len, 0);
    return rc;
}

/* Fold the tiling into pieces by the behaviour (HF NormalizedString::split). */
static int fold(int behavior, int invert, const spans *in, spans *out)
{
    int rc = FTQ_OK, prev_match = 0;
    if (behavior == TOK_SPLIT_MERGED_NEXT) { /* from the end: a match joins the piece after it */
        for (size_t j = in->n; j-- > 0 && !rc;) {
            span x = in->v[j];
            int m = x.m != invert;
            if (m && !prev_match && out->n)
                out->v[out->n - 1].s = x.s;
            else
                rc = spans_push(out, x.s, x.e, 0);
            prev_match = m;
        }
        for (size_t a = 0, b = out->n; b-- > a + 1; a++) {
            span tmp = out->v[a];
            out->v[a] = out->v[b];
            out->v[b] = tmp;
        }
        return rc;
    }
    for (size_t j = 0; j < in->n && !rc; j++) {
        span x = in->v[j];
        int m = x.m != invert;
        switch (behavior) {
        case TOK_SPLIT_REMOVED:
            if (!m)
                rc = spans_push(out, x.s, x.e, 0);
            break;
        case TOK_SPLIT_ISOLATED: rc = spans_push(out, x.s, x.e, 0); break;
        case TOK_SPLIT_MERGED_PREV:
            if (m && !prev_match && out->n)
                out->v[out->n - 1].e = x.e;
            else
                rc = spans_push(out, x.s, x.e, 0);
            break;
        default: /* Contiguous */
            if (m == prev_match && out->n)
                out->v[out->n - 1].e = x.e;
            else
                rc = spans_push(out, x.s, x.e, 0);
            break;
        }
        prev_match = m;
    }
    return rc;
}

static int run(const ftq_tokenizer *t, int k, const char *s, size_t len, int at_start, ftq_tok_piece_fn fn,
               void *user);

/* Split s by the stage's pattern and behaviour; each non-empty piece goes to stage k + 1. */
static int split_run(const ftq_tokenizer *t, int k, const ftq_tok_pre *p, const char *s, size_t len, int at_start,
                     ftq_tok_piece_fn fn, void *user)
{
    spans tiles = {0}, pieces = {0};
    int rc = find_matches(p, s, len, &tiles);
    if (!rc)
        rc = fold(p->behavior, p->invert, &tiles, &pieces);
    for (size_t j = 0; j < pieces.n && !rc; j++)
        if (pieces.v[j].e > pieces.v[j].s)
            rc = run(t, k + 1, s + pieces.v[j].s, pieces.v[j].e - pieces.v[j].s, at_start && pieces.v[j].s == 0,
                     fn, user);
    free(tiles.v);
    free(pieces.v);
    return rc;
}

/* HF Whitespace: the matches of \w+|[^\w\s]+ (Rust regex classes), whitespace dropped. */
static int word_class(uint32_t cp)
{
    if (ftq_unicode_is_space(cp))
        return 0;
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z' ? 1 : (cp >= '0' && cp <= '9') || cp == '_' ? 1 : 2;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    int w = (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ND) || c == UTF8PROC_CATEGORY_NL ||
            c == UTF8PROC_CATEGORY_PC || cp == 0x200c || cp == 0x200d || (cp >= 0x24b6 && cp <= 0x24e9);
    return w ? 1 : 2;
}

static int whitespace_run(const ftq_tokenizer *t, int k, const char *s, size_t len, int at_start,
                          ftq_tok_piece_fn fn, void *user)
{
    int rc = FTQ_OK;
    size_t start = 0;
    int cls = 0;
    for (size_t i = 0; i <= len && !rc;) {
        uint32_t cp = 0;
        int n = 1, c = 0;
        if (i < len) {
            cp = (unsigned char)s[i];
            n = ftq_utf8_decode((const unsigned char *)s + i, len - i, &cp);
            if (n <= 0)
                n = 1;
            c = word_class(cp);
        }
        if (c != cls) {
            if (cls)
                rc = run(t, k + 1, s + start, i - start, at_start && start == 0, fn, user);
            start = i;
            cls = c;
        }
        i += (size_t)n;
    }
    return rc;
}

/* HF Metaspace: spaces become the replacement, which is prepended as the scheme says, then
 * the text splits before each replacement (MergedWithNext). */
static int metaspace_run(const ftq_tokenizer *t, int k, const ftq_tok_pre *p, const char *s, size_t len,
                         int at_start, ftq_tok_piece_fn fn, void *user)
{
    ftq_tok_buf b = {0};
    int rc = ftq_tok_replace_all(&b, s, len, " ", 1, p->str, p->slen);
    int starts = b.n >= p->slen && memcmp(b.p, p->str, p->slen) == 0;
    if (!rc && !starts && (p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && at_start))) {
        ftq_tok_buf c = {0};
        if (!(rc = ftq_tok_buf_put(&c, p->str, p->slen)))
            rc = ftq_tok_buf_put(&c, b.p, b.n);
        free(b.p);
        b = c;
    }
    if (!rc && p->split) {
        ftq_tok_pre sp = {.kind = TOK_PT_SPLIT, .match = TOK_MATCH_STRING, .behavior = TOK_SPLIT_MERGED_NEXT,
                          .str = p->str, .slen = p->slen};
        rc = split_run(t, k, &sp, b.p, b.n, at_start, fn, user);
    } else if (!rc) {
        rc = run(t, k + 1, b.p, b.n, at_start, fn, user);
    }
    free(b.p);
    return rc;
}

/* HF ByteLevel (the last stage): a space before a piece that lacks one, then the GPT-2 regex. */
static int bytelevel_run(const ftq_tok_pre *p, const char *s, size_t len, ftq_tok_piece_fn fn, void *user)
{
    ftq_tok_buf b = {0};
    int rc = FTQ_OK;
    if (p->add_prefix_space && s[0] != ' ') {
        if (!(rc = ftq_tok_buf_put(&b, " ", 1)))
            rc = ftq_tok_buf_put(&b, s, len);
        s = b.p;
        len = b.n;
    }
    if (!rc && !p->use_regex) {
        rc = fn(user, s, len);
    } else {
        for (size_t i = 0; i < len && !rc;) {
            size_t e = ftq_gpt2_pretoken_end((const unsigned char *)s, len, i);
            rc = fn(user, s + i, e - i);
            i = e;
        }
    }
    free(b.p);
    return rc;
}

static int run(const ftq_tokenizer *t, int k, const char *s, size_t len, int at_start, ftq_tok_piece_fn fn,
               void *user)
{
    if (len == 0)
        return FTQ_OK;
    if (k == t->n_pre)
        return fn(user, s, len);
    const ftq_tok_pre *p = &t->pre[k];
    switch (p->kind) {
    case TOK_PT_SPLIT: return split_run(t, k, p, s, len, at_start, fn, user);
    case TOK_PT_WHITESPACE: return whitespace_run(t, k, s, len, at_start, fn, user);
    case TOK_PT_METASPACE: return metaspace_run(t, k, p, s, len, at_start, fn, user);
    default: return bytelevel_run(p, s, len, fn, user);
    }
}

int ftq_tok_pretokenize(const ftq_tokenizer *t, const char *s, size_t len, int at_start, ftq_tok_piece_fn fn,
                        void *user)
{
    return run(t, 0, s, len, at_start, fn, user);
}

void ftq_tok_pre_free(ftq_tok_pre *pre, int n)
{
    for (int i = 0; i < n; i++) {
        ftq_tok_regex_free(pre[i].re);
        free(pre[i].str);
    }
    free(pre);
}

/* ---- loading from tokenizer.json ------------------------------------------------- */

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static int flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = get(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int unsupported(const char *path, const char *what)
{
    return ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': pre_tokenizer %s is not supported", path, what);
}

static int bad(const char *path, const char *what)
{
    return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': pre_tokenizer %s", path, what);
}

static int push(ftq_tokenizer *t, ftq_tok_pre *x)
{
    if (t->n_pre >= 64)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': more than 64 pre-tokenizers", t->src);
    ftq_tok_pre *p = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *p);
    if (!p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->pre = p;
    t->pre[t->n_pre++] = *x;
    return FTQ_OK;
}

static int behavior_of(const cJSON *o, const char *dflt, int *out)
{
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const cJSON *b = get(o, "behavior");
    const char *s = cJSON_IsString(b) ? b->valuestring : dflt;
    for (int i = 0; i < 5; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = i;
            return FTQ_OK;
        }
    return FTQ_EFORMAT;
}

static int copy_str(const char *s, char **dst, size_t *n)
{
    *n = strlen(s);
    *dst = ftq_tok_dup_bytes(s, *n);
    return *dst ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
}

int ftq_tok_pre_from_json(ftq_tokenizer *t, const cJSON *p, const char *path)
{
    if (!p || cJSON_IsNull(p))
        return FTQ_OK;
    const cJSON *ty = get(p, "type");
    const char *type = cJSON_IsString(ty) ? ty->valuestring : "(no type)";
    if (t->pre_byte_level)
        return unsupported(path, "after ByteLevel");
    ftq_tok_pre x = {0};
    int rc = FTQ_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, get(p, "pretokenizers"))
        {
            if ((rc = ftq_tok_pre_from_json(t, it, path)))
                return rc;
        }
        return FTQ_OK;
    } else if (strcmp(type, "Split") == 0) {
        const cJSON *pat = get(p, "pattern"), *re = get(pat, "Regex"), *str = get(pat, "String");
        x.kind = TOK_PT_SPLIT;
        x.invert = flag(p, "invert", 0);
        if (behavior_of(p, NULL, &x.behavior))
            return bad(path, "Split without a known behavior");
        if (cJSON_IsString(re)) {
            const char *pats[1] = {re->valuestring};
            x.match = TOK_MATCH_REGEX;
            if ((rc = ftq_tok_regex_new(pats, 1, &x.re))) {
                char msg[256];
                snprintf(msg, sizeof msg, "%s", ftq_last_error());
                return ftq_set_error(rc, "cannot load '%s': pre_tokenizer %s", path, msg);
            }
        } else if (cJSON_IsString(str) && str->valuestring[0]) {
            x.match = TOK_MATCH_STRING;
            if ((rc = copy_str(str->valuestring, &x.str, &x.slen)))
                return rc;
        } else {
            return bad(path, "Split without a Regex or a non-empty String pattern");
        }
    } else if (strcmp(type, "Punctuation") == 0) {
        x.kind = TOK_PT_SPLIT;
        x.match = TOK_MATCH_PUNCT;
        if (behavior_of(p, "Isolated", &x.behavior))
            return bad(path, "Punctuation with an unknown behavior");
    } else if (strcmp(type, "Digits") == 0) {
        x.kind = TOK_PT_SPLIT;
        x.match = TOK_MATCH_NUMERIC;
        x.behavior = flag(p, "individual_digits", 0) ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        x.kind = TOK_PT_SPLIT;
        x.match = TOK_MATCH_SPACE;
        x.behavior = TOK_SPLIT_REMOVED;
    } else if (strcmp(type, "Whitespace") == 0) {
        x.kind = TOK_PT_WHITESPACE;
    } else if (strcmp(type, "Metaspace") == 0) {
        const cJSON *rep = get(p, "replacement"), *scheme = get(p, "prepend_scheme");
        x.kind = TOK_PT_METASPACE;
        x.split = flag(p, "split", 1);
        x.prepend = flag(p, "add_prefix_space", 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        if (cJSON_IsString(scheme)) {
            const char *sc = scheme->valuestring;
            x.prepend = strcmp(sc, "always") == 0 ? TOK_PREPEND_ALWAYS
                        : strcmp(sc, "first") == 0 ? TOK_PREPEND_FIRST
                        : strcmp(sc, "never") == 0 ? TOK_PREPEND_NEVER
                                                   : -1;
            if (x.prepend < 0)
                return bad(path, "Metaspace with an unknown prepend_scheme");
        }
        if (!cJSON_IsString(rep) || !rep->valuestring[0])
            return bad(path, "Metaspace without a replacement character");
        if ((rc = copy_str(rep->valuestring, &x.str, &x.slen)))
            return rc;
    } else if (strcmp(type, "ByteLevel") == 0) {
        x.kind = TOK_PT_BYTELEVEL;
        x.add_prefix_space = flag(p, "add_prefix_space", 1);
        x.use_regex = flag(p, "use_regex", 1);
        t->pre_byte_level = 1;
    } else {
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': pre_tokenizer '%s' is not supported", path, type);
    }
    if ((rc = push(t, &x))) {
        ftq_tok_regex_free(x.re);
        free(x.str);
    }
    return rc;
}
