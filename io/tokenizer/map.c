/* map.c - the small containers behind the tokenizers: a growable id vector, an
 * open-addressing byte-string -> id map that owns its keys, and an (id, id) -> merge map.
 * Invariant: both maps keep their load factor at or below 1/2, so probes terminate. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

int ftq_ivec_reserve(ftq_ivec *v, size_t extra)
{
    if (v->cap - v->n >= extra)
        return FTQ_OK;
    size_t cap = v->cap ? v->cap : 16;
    while (cap - v->n < extra)
        cap *= 2;
    int32_t *p = realloc(v->v, cap * sizeof *p);
    if (!p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu token ids", cap);
    v->v = p;
    v->cap = cap;
    return FTQ_OK;
}

int ftq_ivec_push(ftq_ivec *v, int32_t x)
{
    if (v->n == v->cap) {
        int rc = ftq_ivec_reserve(v, 1);
        if (rc)
            return rc;
    }
    v->v[v->n++] = x;
    return FTQ_OK;
}

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

static int strmap_grow(ftq_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for a %zu-slot map", cap);
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->ents[i].hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = (uint32_t)i + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return FTQ_OK;
}

int ftq_strmap_get(const ftq_strmap *m, const char *key, size_t len, int32_t *val)
{
    if (!m->cap)
        return 0;
    uint32_t h = hash_bytes(key, len);
    for (size_t j = h & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        uint32_t s = m->slots[j];
        if (!s)
            return 0;
        const ftq_strmap_entry *e = &m->ents[s - 1];
        /* len 0: the pool may still be NULL (only empty keys so far) */
        if (e->hash == h && e->len == len && (len == 0 || memcmp(m->pool + e->off, key, len) == 0)) {
            *val = e->val;
            return 1;
        }
    }
}

int ftq_strmap_put(ftq_strmap *m, const char *key, size_t len, int32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        int rc = strmap_grow(m);
        if (rc)
            return rc;
    }
    uint32_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    for (; m->slots[j]; j = (j + 1) & (m->cap - 1)) {
        ftq_strmap_entry *e = &m->ents[m->slots[j] - 1];
        if (e->hash == h && e->len == len && (len == 0 || memcmp(m->pool + e->off, key, len) == 0)) {
            e->val = val;
            return FTQ_OK;
        }
    }
    if (m->n == m->ents_cap) {
        size_t c = m->ents_cap ? m->ents_cap * 2 : 64;
        ftq_strmap_entry *p = realloc(m->ents, c * sizeof *p);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu map entries", c);
        m->ents = p;
        m->ents_cap = c;
    }
    if (len > UINT32_MAX || m->pool_len + len > UINT32_MAX)
        return ftq_set_error(FTQ_ENOMEM, "map key pool exceeds 4 GiB");
    if (m->pool_len + len > m->pool_cap) {
        size_t c = m->pool_cap ? m->pool_cap : 1024;
        while (c < m->pool_len + len)
            c *= 2;
        char *p = realloc(m->pool, c);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu bytes of map keys", c);
        m->pool = p;
        m->pool_cap = c;
    }
    if (len)
        memcpy(m->pool + m->pool_len, key, len);
    m->ents[m->n] = (ftq_strmap_entry){(uint32_t)m->pool_len, (uint32_t)len, h, val};
    m->pool_len += len;
    m->slots[j] = (uint32_t)++m->n;
    return FTQ_OK;
}

void ftq_strmap_clear(ftq_strmap *m)
{
    if (m->cap)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
    m->pool_len = 0;
}

void ftq_strmap_free(ftq_strmap *m)
{
    free(m->slots);
    free(m->ents);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

int ftq_pairmap_get(const ftq_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged)
{
    if (!m->cap)
        return 0;
    uint64_t k = pair_key(a, b);
    for (size_t j = pair_hash(k) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == UINT64_MAX)
            return 0;
        if (m->keys[j] == k) {
            *rank = m->rank[j];
            *merged = m->merged[j];
            return 1;
        }
    }
}

static int pairmap_insert(ftq_pairmap *m, uint64_t k, int32_t rank, int32_t merged)
{
    size_t j = pair_hash(k) & (m->cap - 1);
    while (m->keys[j] != UINT64_MAX && m->keys[j] != k)
        j = (j + 1) & (m->cap - 1);
    int fresh = m->keys[j] != k;
    m->keys[j] = k;
    m->rank[j] = rank;
    m->merged[j] = merged;
    return fresh;
}

int ftq_pairmap_put(ftq_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    if ((m->n + 1) * 2 > m->cap) {
        ftq_pairmap g = {0};
        g.cap = m->cap ? m->cap * 2 : 1024;
        g.keys = malloc(g.cap * sizeof *g.keys);
        g.rank = malloc(g.cap * sizeof *g.rank);
        g.merged = malloc(g.cap * sizeof *g.merged);
        if (!g.keys || !g.rank || !g.merged) {
            ftq_pairmap_free(&g);
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu merges", g.cap / 2);
        }
        memset(g.keys, 0xff, g.cap * sizeof *g.keys);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i] != UINT64_MAX)
                pairmap_insert(&g, m->keys[i], m->rank[i], m->merged[i]);
        g.n = m->n;
        ftq_pairmap_free(m);
        *m = g;
    }
    /* a duplicated merge keeps its last rank, as HF's and OpenAI's dict construction do */
    m->n += (size_t)pairmap_insert(m, pair_key(a, b), rank, merged);
    return FTQ_OK;
}

void ftq_pairmap_free(ftq_pairmap *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

int ftq_tok_buf_put(ftq_tok_buf *b, const char *s, size_t n)
{
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu bytes of text", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n) /* s may be NULL for an empty put */
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return FTQ_OK;
}
