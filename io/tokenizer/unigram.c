/* unigram.c - the Unigram model of HF tokenizers (SentencePiece's unigram): Viterbi over the
 * pieces of the vocabulary with their log-probability scores, unknown characters at the
 * lowest score minus 10, consecutive unknowns fused, byte fallback to <0xXX> pieces.
 * Invariant: scores are doubles, summed in text order, and a later candidate replaces the
 * best path only when strictly better (shorter pieces are tried first), as HF does. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

static const double UNK_PENALTY = 10.0;

int ftq_tok_unigram_from_json(ftq_tokenizer *t, const cJSON *m, const char *path)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *it;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(m, "unk_id");
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(m, "byte_fallback");
    int n = cJSON_GetArraySize(vocab);
    if (!cJSON_IsArray(vocab) || n == 0)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': Unigram model.vocab is missing or empty", path);
    if (!(t->uni_score = malloc((size_t)n * sizeof *t->uni_score)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->uni_n = (size_t)n;
    t->uni_min_score = INFINITY;
    int32_t id = 0;
    cJSON_ArrayForEach(it, vocab)
    {
        const cJSON *piece = cJSON_GetArrayItem(it, 0), *score = cJSON_GetArrayItem(it, 1);
        if (cJSON_GetArraySize(it) != 2 || !cJSON_IsString(piece) || !cJSON_IsNumber(score) ||
            !isfinite(score->valuedouble))
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': Unigram vocab entry %ld is not [piece, score]", path,
                                 (long)id);
        int rc = ftq_tok_add_vocab(t, id, piece->valuestring, strlen(piece->valuestring));
        if (rc)
            return rc;
        t->uni_score[id] = score->valuedouble;
        if (score->valuedouble < t->uni_min_score)
            t->uni_min_score = score->valuedouble;
        id++;
    }
    t->unk_id = -1;
    if (cJSON_IsNumber(unk)) {
        if (!(unk->valuedouble >= 0 && unk->valuedouble < n))
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': Unigram unk_id %g is not a vocabulary id", path,
                                 unk->valuedouble);
        t->unk_id = (int32_t)unk->valuedouble;
    }
    t->byte_fallback = cJSON_IsTrue(bf);
    t->model = TOK_MODEL_UNIGRAM;
    return FTQ_OK;
}

/* One result piece s[a, b): its id, or its bytes' <0xXX> ids, or unk. */
static int emit(const ftq_tokenizer *t, const char *s, size_t a, size_t b, ftq_ivec *out)
{
    int32_t id;
    if (ftq_strmap_get(&t->vocab, s + a, b - a, &id))
        return ftq_ivec_push(out, id);
    if (t->byte_fallback) {
        size_t k = a;
        while (k < b && t->byte_id[(unsigned char)s[k]] >= 0)
            k++;
        if (k == b) {
            int rc = FTQ_OK;
            for (k = a; k < b && !rc; k++)
                rc = ftq_ivec_push(out, t->byte_id[(unsigned char)s[k]]);
            return rc;
        }
    }
    if (t->unk_id < 0)
        return ftq_set_error(FTQ_EFORMAT, "cannot encode: '%.*s' is not in the Unigram vocabulary and the model has "
                             "no unk_id", (int)(b - a > 40 ? 40 : b - a), s + a);
    return ftq_ivec_push(out, t->unk_id);
}

/* The best-path lattice over byte offsets 0..len: the piece that ends at each offset and where
   it starts (-1: not reached). Scores live beside it, in double (HF) or float (sentencepiece). */
typedef struct {
    int32_t *from, *id;
    void *score;
} lattice;

static int lattice_new(lattice *lt, size_t len, size_t score_size)
{
    lt->from = malloc((len + 1) * sizeof *lt->from);
    lt->id = malloc((len + 1) * sizeof *lt->id);
    lt->score = calloc(len + 1, score_size);
    if (!lt->from || !lt->id || !lt->score) {
        free(lt->from), free(lt->id), free(lt->score);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i <= len; i++)
        lt->from[i] = lt->id[i] = -1;
    lt->from[0] = 0;
    return FTQ_OK;
}

static void lattice_free(lattice *lt)
{
    free(lt->from), free(lt->id), free(lt->score);
}

/* Walk a solved lattice back from the end and push (start, end) pairs of the best path's pieces
   to `bounds`, last piece first; consecutive pieces whose id is `fuse_id` become one piece. */
static int backtrack(const lattice *lt, size_t len, int32_t fuse_id, ftq_ivec *bounds)
{
    int rc = FTQ_OK;
    size_t end = len, unk_end = 0;
    int in_unk = 0;
    while (end > 0 && !rc) {
        size_t start = (size_t)lt->from[end];
        if (lt->id[end] == fuse_id) {
            if (!in_unk)
                unk_end = end;
            in_unk = 1;
        } else {
            if (in_unk && !(rc = ftq_ivec_push(bounds, (int32_t)end)))
                rc = ftq_ivec_push(bounds, (int32_t)unk_end);
            in_unk = 0;
            if (!rc && !(rc = ftq_ivec_push(bounds, (int32_t)start)))
                rc = ftq_ivec_push(bounds, (int32_t)end);
        }
        end = start;
    }
    if (!rc && in_unk && !(rc = ftq_ivec_push(bounds, 0)))
        rc = ftq_ivec_push(bounds, (int32_t)unk_end);
    return rc;
}

/* Bytes in the UTF-8 character that starts at s[at]. */
static size_t char_len(const char *s, size_t len, size_t at)
{
    size_t n = 1;
    while (at + n < len && ((unsigned char)s[at + n] & 0xc0) == 0x80)
        n++;
    return n;
}

int ftq_tok_unigram_encode(const ftq_tokenizer *t, const char *s, size_t len, ftq_ivec *out)
{
    if (len == 0)
        return FTQ_OK;
    lattice lt;
    int rc = lattice_new(&lt, len, sizeof(double));
    if (rc)
        return rc;
    double *score = lt.score;
    const double unk_score = t->uni_min_score - UNK_PENALTY;
    for (size_t at = 0; at < len;) {
        size_t mblen = char_len(s, len, at);
        double here = score[at];
        int single = 0;
        size_t maxl = len - at < t->max_piece_len ? len - at : t->max_piece_len;
        for (size_t l = 1; l <= maxl; l++) {
            if (at + l < len && ((unsigned char)s[at + l] & 0xc0) == 0x80)
                continue; /* pieces end on character boundaries */
            int32_t id;
            if (!ftq_strmap_get(&t->vocab, s + at, l, &id) || (size_t)id >= t->uni_n)
                continue;
            double cand = t->uni_score[id] + here;
            size_t e = at + l;
            if (lt.from[e] < 0 || cand > score[e])
                score[e] = cand, lt.id[e] = id, lt.from[e] = (int32_t)at;
            if (l == mblen)
                single = 1;
        }
        size_t e = at + mblen;
        double cand = unk_score + here;
        if (!single && (lt.from[e] < 0 || cand > score[e]))
            score[e] = cand, lt.id[e] = t->unk_id, lt.from[e] = (int32_t)at;
        at += mblen;
    }
    /* back from the end: pieces in reverse, unknown runs fused */
    ftq_ivec bounds = {0}; /* (start, end) pairs, reversed */
    rc = backtrack(&lt, len, t->unk_id >= 0 ? t->unk_id : INT32_MIN, &bounds);
    for (size_t k = bounds.n; !rc && k >= 2; k -= 2)
        rc = emit(t, s, (size_t)bounds.v[k - 2], (size_t)bounds.v[k - 1], out);
    free(bounds.v);
    lattice_free(&lt);
    return rc;
}

/* ---- sentencepiece (tokenizer.model) --------------------------------------------- */

int ftq_tok_unigram_encode_spm(const ftq_tokenizer *t, const char *s, size_t len, ftq_ivec *out)
{
    if (len == 0)
        return FTQ_OK;
    lattice lt;
    int rc = lattice_new(&lt, len, sizeof(float));
    if (rc)
        return rc;
    float *score = lt.score;
    const float unk_score = (float)t->uni_min_score - (float)UNK_PENALTY;
    const float max_score = (float)t->uni_max_score;
    for (size_t at = 0; at < len;) {
        size_t mblen = char_len(s, len, at);
        const float here = score[at];
        int single = 0;
        size_t maxl = len - at < t->max_piece_len ? len - at : t->max_piece_len;
        for (size_t l = 1; l <= maxl; l++) {
            int32_t id;
            if (!ftq_strmap_get(&t->vocab, s + at, l, &id) ||
                (t->flags[id] & (TOKF_CONTROL | TOKF_UNKNOWN | TOKF_BYTE | TOKF_UNUSED)))
                continue; /* only NORMAL and USER_DEFINED pieces are in sentencepiece's trie */
            size_t e = at + l;
            if (t->flags[id] & TOKF_USER) { /* a bonus that always selects it, in double as sentencepiece */
                double cand = ((float)l * max_score - 0.1) + here;
                if (lt.from[e] < 0 || cand > score[e])
                    score[e] = (float)cand, lt.id[e] = id, lt.from[e] = (int32_t)at;
            } else {
                float cand = t->score[id] + here;
                if (lt.from[e] < 0 || cand > score[e])
                    score[e] = cand, lt.id[e] = id, lt.from[e] = (int32_t)at;
            }
            if (l == mblen)
                single = 1;
        }
        size_t e = at + mblen;
        float cand = unk_score + here;
        if (!single && (lt.from[e] < 0 || cand > score[e]))
            score[e] = cand, lt.id[e] = t->unk_id, lt.from[e] = (int32_t)at;
        at += mblen;
    }
    /* back from the end; consecutive unknowns become one piece, then bytes with byte fallback */
    ftq_ivec bounds = {0};
    rc = backtrack(&lt, len, t->unk_id, &bounds);
    for (size_t k = bounds.n; !rc && k >= 2; k -= 2) {
        size_t a = (size_t)bounds.v[k - 2], b = (size_t)bounds.v[k - 1];
        int32_t id;
        if (!ftq_strmap_get(&t->vocab, s + a, b - a, &id) ||
            (t->flags[id] & (TOKF_CONTROL | TOKF_UNKNOWN | TOKF_BYTE | TOKF_UNUSED)))
            id = t->unk_id;
        if (id == t->unk_id && t->byte_fallback) {
            for (size_t q = a; q < b && !rc; q++)
                rc = ftq_ivec_push(out, t->byte_id[(unsigned char)s[q]] >= 0 ? t->byte_id[(unsigned char)s[q]] : t->unk_id);
        } else {
            rc = ftq_ivec_push(out, id);
        }
    }
    free(bounds.v);
    lattice_free(&lt);
    return rc;
}
