/* vocab.c - building a tokenizer: the id tables, vocabulary entries, added tokens and scores
 * that every loader fills through these calls (no loader writes the tables directly).
 * Invariant: no id at or beyond id_limit is ever stored, so no allocation is sized by an
 * unchecked id read from a file. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"


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

char *ftq_tok_dup_bytes(const char *s, size_t n)
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
    x->content = ftq_tok_dup_bytes(content, len);
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
