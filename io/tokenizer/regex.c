/* regex.c - regex pre-tokenizers: a sequence of Split(pattern, Isolated) stages run with
 * Oniguruma (the engine Hugging Face tokenizers uses, Ruby syntax, UTF-8), each stage
 * splitting every piece of the one before into its matches and the gaps between them.
 * Invariant: pieces are non-empty and tile the input in order; compiled patterns are
 * read-only after creation, so splitting may run from several threads at once. */
#include <oniguruma.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

#define MAX_STAGES 4

struct ftq_tok_regex {
    int n;
    regex_t *re[MAX_STAGES];
};

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;

static void init_onig(void)
{
    OnigEncoding enc[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(enc, 1);
}

void ftq_tok_regex_free(ftq_tok_regex *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        onig_free(r->re[i]);
    free(r);
}

int ftq_tok_regex_new(const char *const *patterns, int n, ftq_tok_regex **out)
{
    *out = NULL;
    if (n < 1 || n > MAX_STAGES)
        return ftq_set_error(FTQ_EINVAL, "a regex pre-tokenizer has 1..%d stages, not %d", MAX_STAGES, n);
    pthread_once(&onig_once, init_onig);
    ftq_tok_regex *r = calloc(1, sizeof *r);
    if (!r)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        OnigErrorInfo info;
        const OnigUChar *p = (const OnigUChar *)patterns[i];
        int st = onig_new(&r->re[i], p, p + strlen(patterns[i]), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                          ONIG_SYNTAX_DEFAULT, &info);
        if (st != ONIG_NORMAL) {
            OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
            onig_error_code_to_str(msg, st, &info);
            ftq_tok_regex_free(r);
            return ftq_set_error(FTQ_EFORMAT, "cannot compile pre-tokenizer regex '%s': %s", patterns[i],
                                 (const char *)msg);
        }
        r->n = i + 1;
    }
    *out = r;
    return FTQ_OK;
}

/* Length of the UTF-8 character at s (validated text; 1 for a stray byte). */
static size_t char_len(unsigned char c)
{
    return c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

static int split_stage(const ftq_tok_regex *r, int stage, OnigRegion *reg, const char *s, size_t len,
                       ftq_tok_piece_fn fn, void *user);

static int emit(const ftq_tok_regex *r, int stage, OnigRegion *reg, const char *s, size_t len, ftq_tok_piece_fn fn,
                void *user)
{
    if (len == 0)
        return FTQ_OK;
    if (stage + 1 < r->n)
        return split_stage(r, stage + 1, reg, s, len, fn, user);
    return fn(user, s, len);
}

static int split_stage(const ftq_tok_regex *r, int stage, OnigRegion *reg, const char *s, size_t len,
                       ftq_tok_piece_fn fn, void *user)
{
    const OnigUChar *b = (const OnigUChar *)s, *e = b + len;
    size_t prev = 0, pos = 0;
    while (pos < len) {
        int at = onig_search(r->re[stage], b, e, b + pos, e, reg, ONIG_OPTION_NONE);
        if (at == ONIG_MISMATCH)
            break;
        if (at < 0)
            return ftq_set_error(FTQ_EFORMAT, "pre-tokenizer regex failed at byte %zu (oniguruma error %d)", pos, at);
        size_t ms = (size_t)reg->beg[0], me = (size_t)reg->end[0];
        if (me == ms) { /* an empty match splits nothing: look again one character on */
            pos = ms + char_len(b[ms]);
            continue;
        }
        int rc = emit(r, stage, reg, s + prev, ms - prev, fn, user);
        if (!rc)
            rc = emit(r, stage, reg, s + ms, me - ms, fn, user);
        if (rc)
            return rc;
        prev = pos = me;
    }
    return emit(r, stage, reg, s + prev, len - prev, fn, user);
}

int ftq_tok_regex_split(const ftq_tok_regex *r, const char *s, size_t len, ftq_tok_piece_fn fn, void *user)
{
    OnigRegion *reg = onig_region_new();
    if (!reg)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = split_stage(r, 0, reg, s, len, fn, user);
    onig_region_free(reg, 1);
    return rc;
}

int ftq_tok_regex_matches(const ftq_tok_regex *r, const char *s, size_t len, ftq_ivec *spans)
{
    OnigRegion *reg = onig_region_new();
    if (!reg)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    const OnigUChar *b = (const OnigUChar *)s, *e = b + len;
    size_t pos = 0, last_end = (size_t)-1;
    int rc = FTQ_OK;
    while (!rc && pos <= len) {
        int at = onig_search(r->re[0], b, e, b + pos, e, reg, ONIG_OPTION_NONE);
        if (at == ONIG_MISMATCH)
            break;
        if (at < 0) {
            rc = ftq_set_error(FTQ_EFORMAT, "regex failed at byte %zu (oniguruma error %d)", pos, at);
            break;
        }
        size_t ms = (size_t)reg->beg[0], me = (size_t)reg->end[0];
        if (ms == me && me == last_end) { /* no empty match right after the previous one */
            pos = ms < len ? ms + char_len(b[ms]) : len + 1;
            continue;
        }
        if (!(rc = ftq_ivec_push(spans, (int32_t)ms)))
            rc = ftq_ivec_push(spans, (int32_t)me);
        pos = last_end = me;
    }
    onig_region_free(reg, 1);
    return rc;
}
