/* bpe.c - the BPE merge engine: a linked list of symbols plus a heap of candidate pairs,
 * O(n log n) per word (llama-style tokenizers hand over a whole file as one word).
 * Invariant: pairs merge in (rank or -score, left position) order, i.e. leftmost on ties. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"

typedef struct {
    int32_t prev, next, id; /* id -1: not yet known (sentencepiece, decided at the end) */
    uint32_t start, len;    /* bytes of the word; len 0 = merged away */
    int32_t frozen;         /* sentencepiece user-defined symbol: never merged */
} sym;

typedef struct {
    float key;
    int32_t left, right, merged;
    uint32_t len;
} cand;

struct ftq_bpe_work {
    sym *s;
    size_t ns, scap;
    cand *h;
    size_t nh, hcap;
    char *text; /* a word spelled in byte-level characters (ignore_merges lookups) */
    size_t text_cap, text_len;
};

ftq_bpe_work *ftq_bpe_new(void) { return calloc(1, sizeof(ftq_bpe_work)); }

void ftq_bpe_free(ftq_bpe_work *w)
{
    if (!w)
        return;
    free(w->s);
    free(w->h);
    free(w->text);
    free(w);
}

static int before(const cand *a, const cand *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void sift_down(cand *h, size_t n, size_t i)
{
    cand x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(&h[c + 1], &h[c]))
            c++;
        if (!before(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static int heap_push(ftq_bpe_work *w, cand c)
{
    if (w->nh == w->hcap) {
        size_t cap = w->hcap ? w->hcap * 2 : 256;
        cand *p = realloc(w->h, cap * sizeof *p);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu bpe candidates", cap);
        w->h = p;
        w->hcap = cap;
    }
    size_t i = w->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&c, &w->h[p]))
            break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = c;
    return FTQ_OK;
}

static cand heap_pop(ftq_bpe_work *w)
{
    cand top = w->h[0];
    w->h[0] = w->h[--w->nh];
    if (w->nh)
        sift_down(w->h, w->nh, 0);
    return top;
}

static int push_sym(ftq_bpe_work *w, int32_t id, size_t start, size_t len, int frozen)
{
    if (w->ns == w->scap) {
        size_t cap = w->scap ? w->scap * 2 : 256;
        sym *p = realloc(w->s, cap * sizeof *p);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu bpe symbols", cap);
        w->s = p;
        w->scap = cap;
    }
    int32_t i = (int32_t)w->ns++;
    w->s[i] = (sym){i - 1, -1, id, (uint32_t)start, (uint32_t)len, frozen};
    if (i > 0)
        w->s[i - 1].next = i;
    return FTQ_OK;
}

/* Candidate for merging symbols l and r (adjacent), if the model has one. */
static int pair_cand(const ftq_tokenizer *t, const ftq_bpe_work *w, const char *s, int32_t l, int32_t r,
                     cand *c)
{
    const sym *a = &w->s[l], *b = &w->s[r];
    c->left = l;
    c->right = r;
    c->len = a->len + b->len;
    if (t->model == TOK_MODEL_BPE_RANK) {
        int32_t rank;
        if (!ftq_pairmap_get(&t->merges, a->id, b->id, &rank, &c->merged))
            return 0;
        c->key = (float)rank; /* exact: loaders reject more than 2^24 merges */
        return 1;
    }
    if (a->frozen || b->frozen || c->len > t->max_piece_len)
        return 0;
    int32_t id;
    if (!ftq_strmap_get(&t->vocab, s + a->start, c->len, &id) || !(t->flags[id] & TOKF_MERGEABLE))
        return 0;
    c->key = -t->score[id];
    c->merged = id;
    return 1;
}

/* Stale heap entries are skipped, not removed: an entry is live iff its left symbol is
 * alive, still followed by its right symbol, and the two still span the byte count recorded
 * when the entry was pushed (a symbol only grows by absorbing its right neighbour). */
static int merge_all(const ftq_tokenizer *t, ftq_bpe_work *w, const char *s)
{
    w->nh = 0;
    for (size_t i = 0; i + 1 < w->ns; i++) {
        cand c;
        if (pair_cand(t, w, s, (int32_t)i, (int32_t)i + 1, &c)) {
            if (w->nh == w->hcap) { /* bulk load, heapified below */
                size_t cap = w->hcap ? w->hcap * 2 : 256;
                cand *p = realloc(w->h, cap * sizeof *p);
                if (!p)
                    return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu bpe candidates", cap);
                w->h = p;
                w->hcap = cap;
            }
            w->h[w->nh++] = c;
        }
    }
    for (size_t i = w->nh / 2; i-- > 0;)
        sift_down(w->h, w->nh, i);
    while (w->nh) {
        cand c = heap_pop(w);
        sym *a = &w->s[c.left];
        if (a->len == 0 || a->next != c.right || a->len + w->s[c.right].len != c.len)
            continue;
        sym *b = &w->s[c.right];
        a->len += b->len;
        a->id = c.merged;
        a->next = b->next;
        if (b->next >= 0)
            w->s[b->next].prev = c.left;
        b->len = 0;
        cand n;
        if (a->prev >= 0 && pair_cand(t, w, s, a->prev, c.left, &n) && heap_push(w, n))
            return FTQ_ENOMEM;
        if (a->next >= 0 && pair_cand(t, w, s, c.left, a->next, &n) && heap_push(w, n))
            return FTQ_ENOMEM;
    }
    return FTQ_OK;
}

static int32_t lookup(const ftq_tokenizer *t, const char *s, size_t n)
{
    int32_t id;
    if (n == 1 && (unsigned char)s[0] < 128)
        return t->ascii_id[(unsigned char)s[0]];
    return ftq_strmap_get(&t->vocab, s, n, &id) ? id : -1;
}

/* ignore_merges: *id = the id of the whole word if the vocabulary has it (byte-level words
 * are looked up in their byte-level spelling), else -1. */
static int whole_word(const ftq_tokenizer *t, ftq_bpe_work *w, const char *s, size_t len, int byte_level, int32_t *id)
{
    *id = -1;
    if (!byte_level) {
        *id = lookup(t, s, len);
        return FTQ_OK;
    }
    if (len > t->max_piece_len) /* each byte is spelled with 1-2 bytes, never fewer */
        return FTQ_OK;
    if (w->text_cap < 2 * len) {
        char *p = realloc(w->text, 2 * len);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        w->text = p;
        w->text_cap = 2 * len;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += (size_t)ftq_utf8_encode(ftq_bytelevel_cp((unsigned char)s[i]), w->text + n);
    if (!ftq_strmap_get(&t->vocab, w->text, n, id))
        *id = -1;
    return FTQ_OK;
}

/* w->text = [prefix] c [suffix] (w->text_len bytes). */
static int affixed(const ftq_tokenizer *t, ftq_bpe_work *w, const char *c, size_t n, int prefix, int suffix)
{
    size_t need = n + t->wp_prefix_len + t->bpe_suffix_len;
    if (w->text_cap < need) {
        char *p = realloc(w->text, need);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        w->text = p;
        w->text_cap = need;
    }
    size_t k = 0;
    if (prefix) {
        memcpy(w->text, t->wp_prefix, t->wp_prefix_len);
        k = t->wp_prefix_len;
    }
    memcpy(w->text + k, c, n);
    k += n;
    if (suffix) {
        memcpy(w->text + k, t->bpe_suffix, t->bpe_suffix_len);
        k += t->bpe_suffix_len;
    }
    w->text_len = k;
    return FTQ_OK;
}

int ftq_bpe_rank(const ftq_tokenizer *t, ftq_bpe_work *w, const char *s, size_t len, int byte_level,
                 ftq_ivec *out)
{
    w->ns = 0;
    if (len == 0)
        return FTQ_OK;
    int rc;
    int32_t id;
    if (t->ignore_merges) {
        if ((rc = whole_word(t, w, s, len, byte_level, &id)))
            return rc;
        if (id >= 0)
            return ftq_ivec_push(out, id);
    }
    int last_unk = 0;
    int affix = !byte_level && (t->wp_prefix_len || t->bpe_suffix_len);
    for (size_t i = 0; i < len;) {
        size_t n = byte_level ? 1 : (size_t)ftq_utf8_len((unsigned char)s[i]);
        const char *fb = s + i; /* what byte fallback spells: the symbol with its affixes (HF) */
        size_t fbn = n;
        if (affix) { /* continuing_subword_prefix before every character but the first,
                        end_of_word_suffix after the last */
            if ((rc = affixed(t, w, s + i, n, i > 0, i + n == len)))
                return rc;
            fb = w->text;
            fbn = w->text_len;
            id = lookup(t, fb, fbn);
        } else {
            id = byte_level ? t->bl_byte_id[(unsigned char)s[i]] : lookup(t, s + i, n);
        }
        if (id >= 0) {
            if ((rc = push_sym(w, id, i, n, 0)))
                return rc;
            last_unk = 0;
            i += n;
            continue;
        }
        int all_bytes = t->byte_fallback;
        for (size_t k = 0; k < fbn && all_bytes; k++)
            all_bytes = t->byte_id[(unsigned char)fb[k]] >= 0;
        if (all_bytes) {
            for (size_t k = 0; k < fbn; k++) /* rank merges look at ids and symbol lengths only */
                if ((rc = push_sym(w, t->byte_id[(unsigned char)fb[k]], i, 1, 0)))
                    return rc;
            last_unk = 0;
        } else if (t->unk_id >= 0) {
            if (t->fuse_unk && last_unk) {
                w->s[w->ns - 1].len += (uint32_t)n;
            } else if ((rc = push_sym(w, t->unk_id, i, n, 0))) {
                return rc;
            }
            last_unk = 1;
        } /* no unk token: HF drops the character */
        i += n;
    }
    if ((rc = merge_all(t, w, s)))
        return rc;
    if ((rc = ftq_ivec_reserve(out, w->ns)))
        return rc;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next)
        out->v[out->n++] = w->s[i].id;
    return FTQ_OK;
}

/* Longest sentencepiece user-defined piece that starts at s, or 0. */
static size_t user_defined_match(const ftq_tokenizer *t, const char *s, size_t len, int32_t *id)
{
    size_t best = 0;
    for (size_t k = 0; k < t->user_defined.n; k++) {
        int32_t u = t->user_defined.v[k];
        size_t n = t->piece_len[u];
        if (n > best && n <= len && memcmp(s, t->piece[u], n) == 0) {
            best = n;
            *id = u;
        }
    }
    return best;
}

int ftq_bpe_score(const ftq_tokenizer *t, ftq_bpe_work *w, const char *s, size_t len, ftq_ivec *out)
{
    w->ns = 0;
    int rc;
    for (size_t i = 0; i < len;) {
        int32_t id = -1;
        size_t n = t->user_first[(unsigned char)s[i]] ? user_defined_match(t, s + i, len - i, &id) : 0;
        int frozen = n > 0;
        if (!n)
            n = (size_t)ftq_utf8_len((unsigned char)s[i]);
        if ((rc = push_sym(w, id, i, n, frozen)))
            return rc;
        i += n;
    }
    if ((rc = merge_all(t, w, s)))
        return rc;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) {
        const sym *a = &w->s[i];
        int32_t id = a->id >= 0 ? a->id : lookup(t, s + a->start, a->len);
        if (id >= 0) {
            rc = ftq_ivec_push(out, id);
            if (rc)
                return rc;
            continue;
        }
        int all_bytes = t->byte_fallback;
        for (uint32_t k = 0; k < a->len && all_bytes; k++)
            all_bytes = t->byte_id[(unsigned char)s[a->start + k]] >= 0;
        if (all_bytes) {
            for (uint32_t k = 0; k < a->len && !rc; k++)
                rc = ftq_ivec_push(out, t->byte_id[(unsigned char)s[a->start + k]]);
        } else {
            rc = ftq_ivec_push(out, t->unk_id);
        }
        if (rc)
            return rc;
    }
    return FTQ_OK;
}
