/* tokenizer.c - the tokenizers' one face: the public API. Picks the files, runs the loader of
 * that kind from a table (each loader fills the tokenizer through vocab.c and never calls
 * back here), reads BOS/EOS config, splits on added tokens, and runs encode (normalizer ->
 * pre-tokenizer -> model) and decode (decode.c).
 * Invariant: a loaded tokenizer is never written again; calls keep scratch space private. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"

/* ---- construction ---------------------------------------------------------------- */
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
    ftq_tok_ops_free(t->norm_ops, t->n_norm_ops);
    ftq_tok_ops_free(t->dec_ops, t->n_dec_ops);
    ftq_tok_pre_free(t->pre, t->n_pre);
    free(t->uni_score);
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
                      int parse_special, size_t *ms, size_t *me, int32_t *id)
{
    for (size_t p = from; p < len; p++) {
        if (!t->added_first[(unsigned char)s[p]])
            continue;
        const ftq_added_token *best = NULL;
        for (int k = 0; k < t->n_added; k++) {
            const ftq_added_token *a = &t->added[k];
            int phase = a->normalized && t->norm == TOK_NORM_OPS;
            if (phase != normalized_phase || a->match_len > len - p || (best && a->match_len <= best->match_len) ||
                (a->special && !parse_special))
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
    int parse_special;
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

/* The model over one piece of the pre-tokenizer stages. */
static int stage_piece(void *user, const char *s, size_t n)
{
    word_sink *w = user;
    const ftq_tokenizer *t = w->t;
    switch (t->model) {
    case TOK_MODEL_UNIGRAM: return ftq_tok_unigram_encode(t, s, n, w->out);
    case TOK_MODEL_WORDPIECE: return ftq_tok_wordpiece_encode(t, s, n, w->out);
    case TOK_MODEL_BPE_SCORE: return ftq_bpe_score(t, w->c->bpe, s, n, w->out);
    default:
        return t->pre_byte_level ? bytelevel_word(t, w->c, s, n, w->out) : ftq_bpe_rank(t, w->c->bpe, s, n, 0, w->out);
    }
}

/* Pre-tokenize and run the model over normalized text (at_start: it begins the input). */
static int encode_normalized(const ftq_tokenizer *t, enc_ctx *c, const char *s, size_t len, int at_start,
                             ftq_ivec *out)
{
    if (len == 0)
        return FTQ_OK;
    if (t->pretok == TOK_PRE_STAGES) {
        word_sink w = {t, c, out};
        return ftq_tok_pretokenize(t, s, len, at_start, stage_piece, &w);
    }
    if (t->model == TOK_MODEL_UNIGRAM)
        return t->kind == FTQ_TOKENIZER_SPM ? ftq_tok_unigram_encode_spm(t, s, len, out)
                                            : ftq_tok_unigram_encode(t, s, len, out);
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
static int encode_piece(const ftq_tokenizer *t, enc_ctx *c, const char *s, size_t len, int at_start,
                        ftq_ivec *out)
{
    if (t->norm == TOK_NORM_NONE)
        return encode_normalized(t, c, s, len, at_start, out);
    char *ns = NULL;
    size_t nl = 0;
    int rc;
    if (t->norm == TOK_NORM_SPM) {
        ftq_tok_buf b = {0};
        rc = ftq_tok_spm_normalize(t, s, len, &b);
        ns = b.p;
        nl = b.n;
    } else if (t->norm == TOK_NORM_BERT) {
        rc = ftq_tok_bert_normalize(t, s, len, &ns, &nl);
    } else {
        rc = ftq_tok_normalize_ops(t->norm_ops, t->n_norm_ops, s, len, &ns, &nl);
    }
    size_t from = 0, ms, me;
    int32_t id;
    while (!rc && t->norm == TOK_NORM_OPS && next_added(t, ns, nl, from, 1, c->parse_special, &ms, &me, &id)) {
        if (!(rc = encode_normalized(t, c, ns + from, ms - from, at_start && from == 0, out)))
            rc = ftq_ivec_push(out, id);
        from = me;
    }
    if (!rc)
        rc = encode_normalized(t, c, ns + from, nl - from, at_start && from == 0, out);
    free(ns);
    return rc;
}

int ftq_tokenizer_encode(const ftq_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n)
{
    if (!t)
        return ftq_set_error(FTQ_EINVAL, "cannot encode: NULL argument");
    return ftq_tokenizer_encode_flags(t, text, len,
                                      (add_special ? FTQ_ENCODE_ADD_SPECIAL : 0u) |
                                          (t->parse_special ? FTQ_ENCODE_PARSE_SPECIAL : 0u),
                                      ids, n);
}

void ftq_tokenizer_set_parse_special(ftq_tokenizer *t, int on)
{
    if (t)
        t->parse_special = on != 0;
}

int ftq_tokenizer_parses_special(const ftq_tokenizer *t) { return t && t->parse_special; }

int ftq_tokenizer_encode_flags(const ftq_tokenizer *t, const char *text, size_t len, unsigned flags,
                               int32_t **ids, size_t *n)
{
    int add_special = (flags & FTQ_ENCODE_ADD_SPECIAL) != 0;
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
    c.parse_special = (flags & FTQ_ENCODE_PARSE_SPECIAL) != 0;
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
    while (!rc && len && next_added(t, text, len, from, 0, c.parse_special, &ms, &me, &id)) {
        if (!(rc = encode_piece(t, &c, text + from, ms - from, from == 0, &out)))
            rc = ftq_ivec_push(&out, id);
        from = me;
    }
    if (!rc)
        rc = encode_piece(t, &c, text + from, len - from, from == 0, &out);
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
    int rc = ftq_tok_decode(t, ids, n, skip_special, &out);
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
        if (t->pretok == TOK_PRE_BYTELEVEL || t->pre_byte_level) {
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
        } else if ((a->match = ftq_tok_dup_bytes(a->content, a->len))) {
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

/* The loaders, one per kind, in the order ftq_tokenizer_load tries them on a directory: a
 * kind is chosen when all of its files are present. */
typedef struct {
    ftq_tokenizer_kind kind;
    int (*load)(ftq_tokenizer *t, const char *src);
    int from_file;            /* src is a file (GGUF), not a directory */
    const char *files[2];     /* what must be in the directory (NULL-padded) */
} tok_loader;

static const tok_loader LOADERS[] = {
    {FTQ_TOKENIZER_HF_JSON, ftq_tok_load_hf_json, 0, {"tokenizer.json", NULL}},
    {FTQ_TOKENIZER_SPM, ftq_tok_load_spm, 0, {"tokenizer.model", NULL}},
    {FTQ_TOKENIZER_GPT2_FILES, ftq_tok_load_gpt2_files, 0, {"vocab.json", "merges.txt"}},
    {FTQ_TOKENIZER_VOCAB_TXT, ftq_tok_load_vocab_txt, 0, {"vocab.txt", NULL}},
    {FTQ_TOKENIZER_GGUF, ftq_tok_load_gguf, 1, {NULL, NULL}},
};
enum { N_LOADERS = (int)(sizeof LOADERS / sizeof LOADERS[0]) };

static const tok_loader *find_loader(ftq_tokenizer_kind kind)
{
    for (int i = 0; i < N_LOADERS; i++)
        if (LOADERS[i].kind == kind)
            return &LOADERS[i];
    return NULL;
}

int ftq_tokenizer_load_kind(const char *dir, ftq_tokenizer_kind kind, ftq_tokenizer **out)
{
    if (!dir || !out)
        return ftq_set_error(FTQ_EINVAL, "cannot load tokenizer: NULL argument");
    *out = NULL;
    const tok_loader *ld = find_loader(kind);
    if (!ld)
        return ftq_set_error(FTQ_EINVAL, "unknown tokenizer kind %d", (int)kind);
    if (ld->from_file ? !ftq_is_file(dir) : !ftq_is_dir(dir))
        return ftq_set_error(FTQ_ENOTFOUND, "cannot load tokenizer from '%s': not a %s", dir,
                             ld->from_file ? "file" : "directory");
    ftq_tokenizer *t = ftq_tok_alloc();
    if (!t)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->kind = kind;
    int rc = ld->load(t, dir);
    if (!rc)
        rc = check_holes(t); /* named after the model's own file, before tokenizer_config.json adds */
    if (!rc && !ld->from_file) /* a GGUF file carries its own BOS/EOS flags */
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

/* 1 if every file the loader needs is in dir, 0 if not, negative on error. */
static int has_files(const tok_loader *ld, const char *dir)
{
    for (int k = 0; k < 2 && ld->files[k]; k++) {
        char *p = ftq_path_join(dir, ld->files[k]);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        int have = ftq_is_file(p);
        free(p);
        if (!have)
            return 0;
    }
    return 1;
}

int ftq_tokenizer_load(const char *dir, ftq_tokenizer **out)
{
    if (!dir || !out)
        return ftq_set_error(FTQ_EINVAL, "cannot load tokenizer: NULL argument");
    *out = NULL;
    if (ftq_gguf_is_file(dir))
        return ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_GGUF, out);
    for (int i = 0; i < N_LOADERS; i++) {
        if (LOADERS[i].from_file)
            continue;
        int have = has_files(&LOADERS[i], dir);
        if (have < 0)
            return have;
        if (have)
            return ftq_tokenizer_load_kind(dir, LOADERS[i].kind, out);
    }
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

int ftq_tokenizer_encode_pair(const ftq_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                              int add_special, int32_t **ids, int32_t **type_ids, size_t *n)
{
    if (!t || !ids || !n)
        return ftq_set_error(FTQ_EINVAL, "cannot encode pair: NULL argument");
    *ids = NULL;
    if (type_ids)
        *type_ids = NULL;
    *n = 0;
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    int rc = ftq_tokenizer_encode(t, a, alen, 0, &ia, &na);
    if (!rc)
        rc = ftq_tokenizer_encode(t, b, blen, 0, &ib, &nb);
    if (!rc && add_special) {
        rc = ftq_tokenizer_apply_template(t, ia, na, ib, nb, ids, type_ids, n);
    } else if (!rc) { /* A B with types 0 / 1 */
        int32_t *oi = malloc((na + nb + 1) * sizeof *oi), *ot = malloc((na + nb + 1) * sizeof *ot);
        if (!oi || !ot) {
            free(oi);
            free(ot);
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        } else {
            memcpy(oi, ia, na * sizeof *oi);
            memcpy(oi + na, ib, nb * sizeof *oi);
            for (size_t i = 0; i < na + nb; i++)
                ot[i] = i >= na;
            *ids = oi;
            *n = na + nb;
            if (type_ids)
                *type_ids = ot;
            else
                free(ot);
        }
    }
    free(ia);
    free(ib);
    return rc;
}
