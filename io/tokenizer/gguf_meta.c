/* gguf_meta.c - a tokenizer from a GGUF file's tokenizer.ggml.* metadata, as llama.cpp reads
 * it: model "gpt2" (byte-level BPE: tokens + merges, pre-tokenizer regexes chosen by
 * tokenizer.ggml.pre from a table) or "llama" (sentencepiece BPE: tokens + scores, byte
 * fallback). Control and user-defined tokens are matched whole in text, as Hugging Face's
 * added tokens are. Invariant: arrays are checked against the token count before use. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ftq_gguf.h"
#include "io/tokenizer/internal.h"

#define MAX_VOCAB (1 << 24)

/* llama.cpp's token types (llama_token_type) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* The regex of Hugging Face's ByteLevel pre-tokenizer (GPT-2's, with the final \s+). */
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* How a pre-tokenizer is written in tokenizer.json: ByteLevel with its regex;
 * Sequence[Digits(individual_digits), ByteLevel(use_regex)]; Sequence[Split(stage 0,
 * Isolated), ByteLevel(use_regex false)]. */
enum { PJ_BYTELEVEL, PJ_DIGITS, PJ_SPLIT };

/* tokenizer.ggml.pre -> Split stages as the models' tokenizer.json files define them (the
 * same splits llama.cpp's llama-vocab.cpp hard-codes per name). NULL stages: GPT-2's regex,
 * run by ftq's built-in scanner. */
static const struct {
    const char *pre;
    const char *stages[3];
    int json; /* PJ_*: its tokenizer.json form */
} pre_table[] = {
    {"default", {NULL}, PJ_BYTELEVEL},
    {"gpt-2", {NULL}, PJ_BYTELEVEL},
    /* SmolLM / StarCoder: Sequence[Digits(individual_digits), ByteLevel(use_regex)] */
    {"smollm", {"\\p{N}", GPT2_RE, NULL}, PJ_DIGITS},
    {"starcoder", {"\\p{N}", GPT2_RE, NULL}, PJ_DIGITS},
    /* Llama 3: Split(regex below, Isolated) + ByteLevel(use_regex false) */
    {"llama-bpe",
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     PJ_SPLIT},
    /* Qwen2: the Llama 3 regex with single digits (its NFC normalizer is not applied) */
    {"qwen2",
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     PJ_SPLIT},
};

int ftq_tok_pre_regex(const char *pre, size_t len, ftq_tok_regex **out)
{
    *out = NULL;
    for (size_t k = 0; k < sizeof pre_table / sizeof pre_table[0]; k++) {
        if (strlen(pre_table[k].pre) != len || memcmp(pre_table[k].pre, pre, len) != 0)
            continue;
        int ns = 0;
        while (ns < 3 && pre_table[k].stages[ns])
            ns++;
        return ns ? ftq_tok_regex_new(pre_table[k].stages, ns, out) : FTQ_OK;
    }
    return FTQ_ENOTFOUND;
}

static cJSON *bytelevel_json(int use_regex)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddStringToObject(o, "type", "ByteLevel") || !cJSON_AddFalseToObject(o, "add_prefix_space") ||
              !cJSON_AddTrueToObject(o, "trim_offsets") || !cJSON_AddBoolToObject(o, "use_regex", use_regex))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *pre_json_at(size_t k)
{
    if (pre_table[k].json == PJ_BYTELEVEL)
        return bytelevel_json(1);
    cJSON *o = cJSON_CreateObject(), *seq = cJSON_CreateArray(), *first = cJSON_CreateObject(), *pat = NULL;
    int ok = o && seq && first && cJSON_AddStringToObject(o, "type", "Sequence");
    /* each item belongs to its parent only once added: adding may fail (an allocation) */
    if (!(ok = ok && cJSON_AddItemToObject(o, "pretokenizers", seq)))
        cJSON_Delete(seq);
    if (!(ok = ok && cJSON_AddItemToArray(seq, first)))
        cJSON_Delete(first);
    if (ok && pre_table[k].json == PJ_DIGITS) {
        ok = cJSON_AddStringToObject(first, "type", "Digits") && cJSON_AddTrueToObject(first, "individual_digits");
    } else if (ok) {
        ok = cJSON_AddStringToObject(first, "type", "Split") && (pat = cJSON_AddObjectToObject(first, "pattern")) &&
             cJSON_AddStringToObject(pat, "Regex", pre_table[k].stages[0]) &&
             cJSON_AddStringToObject(first, "behavior", "Isolated") && cJSON_AddFalseToObject(first, "invert");
    }
    cJSON *bl = ok ? bytelevel_json(pre_table[k].json == PJ_DIGITS) : NULL;
    if (bl && !cJSON_AddItemToArray(seq, bl)) {
        cJSON_Delete(bl);
        bl = NULL;
    }
    if (!bl) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

const char *ftq_tok_gguf_pre_of_json(const cJSON *p)
{
    for (size_t k = 0; k < sizeof pre_table / sizeof pre_table[0]; k++) {
        cJSON *j = pre_json_at(k);
        int same = j && cJSON_Compare(j, p, 1);
        cJSON_Delete(j);
        if (same)
            return pre_table[k].pre;
    }
    return NULL;
}

cJSON *ftq_tok_pre_json(const char *pre)
{
    for (size_t k = 0; k < sizeof pre_table / sizeof pre_table[0]; k++)
        if (strcmp(pre_table[k].pre, pre) == 0)
            return pre_json_at(k);
    return NULL;
}


#define TBAD(path, status, ...) ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "cannot load tokenizer '%s'", (path))

/* An array value of `key` with n elements of type `et`; NULL + error if not. */
static int get_array(const ftq_gguf *g, const char *key, ftq_gguf_type et, uint64_t n, int required,
                     const ftq_gguf_value **out)
{
    const char *path = ftq_gguf_path(g);
    const ftq_gguf_value *v = ftq_gguf_find(g, key);
    *out = NULL;
    if (!v)
        return required ? TBAD(path, FTQ_ENOTFOUND, "missing key '%s'", key) : FTQ_OK;
    if (v->type != FTQ_GGUF_ARRAY || v->elem_type != et)
        return TBAD(path, FTQ_EFORMAT, "key '%s' is %s (expected an array of %s)", key, ftq_gguf_type_name(v->type),
                    ftq_gguf_type_name(et));
    if (n != UINT64_MAX && v->n != n)
        return TBAD(path, FTQ_EFORMAT, "key '%s' has %llu entries (expected one per token: %llu)", key,
                    (unsigned long long)v->n, (unsigned long long)n);
    *out = v;
    return FTQ_OK;
}

static int load_tokens(ftq_tokenizer *t, const ftq_gguf *g, int spm, int32_t *n_out)
{
    const char *path = ftq_gguf_path(g);
    const ftq_gguf_value *tokens, *types, *scores = NULL;
    int rc = get_array(g, "tokenizer.ggml.tokens", FTQ_GGUF_STRING, UINT64_MAX, 1, &tokens);
    if (rc)
        return rc;
    if (tokens->n < 1 || tokens->n > MAX_VOCAB)
        return TBAD(path, FTQ_EFORMAT, "tokenizer.ggml.tokens has %llu entries (expected 1..%d)",
                    (unsigned long long)tokens->n, MAX_VOCAB);
    int32_t n = (int32_t)tokens->n;
    if ((rc = get_array(g, "tokenizer.ggml.token_type", FTQ_GGUF_INT32, tokens->n, 0, &types)) ||
        (rc = get_array(g, "tokenizer.ggml.scores", FTQ_GGUF_FLOAT32, tokens->n, spm, &scores)))
        return rc;
    if ((rc = ftq_tok_allow_ids(t, path, (size_t)n)) || (spm && (rc = ftq_tok_enable_scores(t))))
        return rc;
    ftq_gguf_cursor ct, cy, cs;
    ftq_gguf_cursor_init(&ct, tokens);
    ftq_gguf_cursor_init(&cy, types);
    ftq_gguf_cursor_init(&cs, scores);
    char *tmp = NULL;
    for (int32_t id = 0; id < n && !rc; id++) {
        ftq_gguf_value tv, yv, sv;
        ftq_gguf_array_next(&ct, &tv);
        int64_t type = TT_NORMAL;
        if (types) {
            ftq_gguf_array_next(&cy, &yv);
            ftq_gguf_value_int(&yv, &type);
        }
        if (tv.len == 0 && type != TT_UNUSED) {
            rc = TBAD(path, FTQ_EFORMAT, "token %ld is empty (expected a non-empty string)", (long)id);
            break;
        }
        const char *s = (const char *)tv.p;
        int32_t dup;
        if (tv.len && ftq_strmap_get(&t->vocab, s, tv.len, &dup)) {
            rc = TBAD(path, FTQ_EFORMAT, "token %ld duplicates token %ld", (long)id, (long)dup);
            break;
        }
        if ((rc = ftq_tok_set_piece(t, id, s, tv.len)) || (tv.len && (rc = ftq_strmap_put(&t->vocab, s, tv.len, id))))
            break;
        if (scores) {
            double f;
            ftq_gguf_array_next(&cs, &sv);
            ftq_gguf_value_float(&sv, &f);
            t->score[id] = (float)f;
        }
        switch (type) {
        case TT_NORMAL:
        case TT_UNUSED: t->flags[id] = TOKF_MERGEABLE; break;
        case TT_UNKNOWN: t->flags[id] = TOKF_UNKNOWN | TOKF_SPECIAL; break;
        case TT_BYTE: t->flags[id] = TOKF_BYTE; break;
        case TT_CONTROL:
            if (spm) { /* sentencepiece reads "<s>" in text as text */
                t->flags[id] = TOKF_CONTROL | TOKF_SPECIAL;
                break;
            }
            /* fall through */
        case TT_USER_DEFINED:
            /* matched whole wherever it appears in text (HF added tokens; llama.cpp with
             * parse_special); control tokens are special and skipped by decode */
            if (!(tmp = realloc(tmp, tv.len + 1))) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            memcpy(tmp, s, tv.len);
            tmp[tv.len] = '\0';
            if (strlen(tmp) != tv.len) {
                rc = TBAD(path, FTQ_EFORMAT, "token %ld has a NUL byte", (long)id);
                break;
            }
            rc = ftq_tok_add_added(t, id, tmp, type == TT_CONTROL, 0, 0, 0, 0);
            if (!rc)
                t->flags[id] |= type == TT_CONTROL ? TOKF_CONTROL : TOKF_MERGEABLE;
            break;
        default:
            rc = TBAD(path, FTQ_EFORMAT, "token %ld has token type %lld (expected 1..6)", (long)id, (long long)type);
            break;
        }
    }
    free(tmp);
    *n_out = n;
    return rc;
}

static int load_merges(ftq_tokenizer *t, const ftq_gguf *g)
{
    const char *path = ftq_gguf_path(g);
    const ftq_gguf_value *merges;
    int rc = get_array(g, "tokenizer.ggml.merges", FTQ_GGUF_STRING, UINT64_MAX, 1, &merges);
    if (rc)
        return rc;
    if (merges->n >= (1u << 24))
        return TBAD(path, FTQ_EFORMAT, "%llu merges (at most 2^24)", (unsigned long long)merges->n);
    ftq_gguf_cursor c;
    ftq_gguf_value m;
    ftq_gguf_cursor_init(&c, merges);
    char *cat = NULL;
    size_t cap = 0;
    for (int32_t rank = 0; !rc && ftq_gguf_array_next(&c, &m); rank++) {
        const char *s = (const char *)m.p;
        const char *sp = m.len ? memchr(s + 1, ' ', m.len - 1) : NULL;
        if (!sp || sp == s + m.len - 1) {
            rc = TBAD(path, FTQ_EFORMAT, "merge %ld is not two tokens separated by a space", (long)rank);
            break;
        }
        size_t al = (size_t)(sp - s), bl = m.len - al - 1;
        if (al + bl > cap) {
            cap = 2 * (al + bl);
            char *p = realloc(cat, cap);
            if (!p) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            cat = p;
        }
        memcpy(cat, s, al);
        memcpy(cat + al, sp + 1, bl);
        int32_t ia, ib, im;
        if (!ftq_strmap_get(&t->vocab, s, al, &ia) || !ftq_strmap_get(&t->vocab, sp + 1, bl, &ib) ||
            !ftq_strmap_get(&t->vocab, cat, al + bl, &im)) {
            rc = TBAD(path, FTQ_EFORMAT, "merge %ld '%.*s' joins tokens that are not in the vocabulary", (long)rank,
                      (int)(m.len > 64 ? 64 : m.len), s);
            break;
        }
        rc = ftq_pairmap_put(&t->merges, ia, ib, rank, im);
    }
    free(cat);
    return rc;
}

static int flag(const ftq_gguf *g, const char *key, int def, int *out)
{
    int rc = ftq_gguf_get_bool(g, key, out);
    if (rc == FTQ_ENOTFOUND) {
        *out = def;
        return FTQ_OK;
    }
    return rc;
}

static int special_id(const ftq_gguf *g, const char *key, int32_t n, int32_t *out)
{
    int64_t v;
    int rc = ftq_gguf_get_int(g, key, &v);
    *out = -1;
    if (rc == FTQ_ENOTFOUND)
        return FTQ_OK;
    if (rc)
        return rc;
    if (v < 0 || v >= n)
        return TBAD(ftq_gguf_path(g), FTQ_EFORMAT, "key '%s' is %lld (expected a token id below %ld)", key,
                    (long long)v, (long)n);
    *out = (int32_t)v;
    return FTQ_OK;
}

static int setup_bpe(ftq_tokenizer *t, const ftq_gguf *g)
{
    const char *path = ftq_gguf_path(g), *pre = "default";
    size_t plen = 7;
    int rc = ftq_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &plen);
    if (rc == FTQ_ENOTFOUND) {
        pre = "default";
        plen = 7;
    } else if (rc) {
        return rc;
    }
    rc = ftq_tok_pre_regex(pre, plen, &t->pre_regex);
    if (rc == FTQ_ENOTFOUND)
        return TBAD(path, FTQ_EUNSUPPORTED, "pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported (expected "
                    "default, gpt-2, smollm, starcoder, llama-bpe or qwen2)", (int)(plen > 64 ? 64 : plen), pre);
    if (rc)
        return rc;
    snprintf(t->gguf_pre, sizeof t->gguf_pre, "%.*s", (int)(plen < sizeof t->gguf_pre ? plen : 0), pre);
    t->model = TOK_MODEL_BPE_RANK;
    t->pretok = TOK_PRE_BYTELEVEL;
    t->bl_use_regex = 1;
    t->bl_add_prefix_space = 0;
    t->decoder = TOK_DEC_CHAIN;
    ftq_tok_op op = {.op = TOK_DEC_BYTELEVEL};
    if (!(t->dec_ops = malloc(sizeof op)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->dec_ops[0] = op;
    t->n_dec_ops = 1;
    snprintf(t->name, sizeof t->name, "gguf (byte-level BPE, pre-tokenizer %.*s)", (int)(plen > 40 ? 40 : plen), pre);
    return FTQ_OK;
}

static int setup_spm(ftq_tokenizer *t, const ftq_gguf *g, int32_t n)
{
    int prefix, rc = flag(g, "tokenizer.ggml.add_space_prefix", 1, &prefix);
    if (rc)
        return rc;
    t->model = TOK_MODEL_BPE_SCORE;
    t->norm = TOK_NORM_SPM;
    t->decoder = TOK_DEC_SPM;
    t->spm_dummy_prefix = prefix;
    t->spm_remove_ws = 0;
    t->spm_escape_ws = 1;
    t->byte_fallback = 1;
    if ((rc = special_id(g, "tokenizer.ggml.unknown_token_id", n, &t->unk_id)))
        return rc;
    for (int32_t id = 0; t->unk_id < 0 && id < n; id++)
        if (t->flags[id] & TOKF_UNKNOWN)
            t->unk_id = id;
    snprintf(t->name, sizeof t->name, "gguf (sentencepiece BPE, byte fallback)");
    return FTQ_OK;
}

int ftq_tok_load_gguf(ftq_tokenizer *t, const char *path)
{
    ftq_gguf *g = NULL;
    int rc = ftq_gguf_open(path, &g);
    if (rc)
        return rc;
    const char *model;
    size_t mlen;
    int spm = 0;
    rc = ftq_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen);
    if (rc == FTQ_ENOTFOUND)
        rc = TBAD(path, FTQ_ENOTFOUND, "missing key 'tokenizer.ggml.model'");
    if (!rc) {
        if (mlen == 4 && memcmp(model, "gpt2", 4) == 0)
            spm = 0;
        else if (mlen == 5 && memcmp(model, "llama", 5) == 0)
            spm = 1;
        else
            rc = TBAD(path, FTQ_EUNSUPPORTED, "tokenizer model '%.*s' is not supported (expected gpt2 or llama)",
                      (int)(mlen > 64 ? 64 : mlen), model);
    }
    int32_t n = 0;
    if (!rc)
        rc = load_tokens(t, g, spm, &n);
    if (!rc)
        rc = spm ? setup_spm(t, g, n) : load_merges(t, g);
    if (!rc && !spm)
        rc = setup_bpe(t, g);
    int add_bos = 0, add_eos = 0;
    if (!rc)
        rc = special_id(g, "tokenizer.ggml.bos_token_id", n, &t->bos_id);
    if (!rc)
        rc = special_id(g, "tokenizer.ggml.eos_token_id", n, &t->eos_id);
    /* defaults as Hugging Face's: LlamaTokenizer adds BOS, GPT-2 style BPE adds nothing */
    if (!rc)
        rc = flag(g, "tokenizer.ggml.add_bos_token", spm, &add_bos);
    if (!rc)
        rc = flag(g, "tokenizer.ggml.add_eos_token", 0, &add_eos);
    if (!rc && add_bos && t->bos_id >= 0)
        rc = ftq_ivec_push(&t->prefix, t->bos_id);
    if (!rc && add_eos && t->eos_id >= 0)
        rc = ftq_ivec_push(&t->suffix, t->eos_id);
    ftq_gguf_close(g);
    return rc;
}

/* ---- the reverse: tokenizer.ggml.* keys for a loaded tokenizer ------------------------- */

typedef struct {
    int32_t rank, a, b;
} merge_ent;

static int cmp_merge(const void *x, const void *y)
{
    const merge_ent *p = x, *q = y;
    return (p->rank > q->rank) - (p->rank < q->rank);
}

static int is_added(const ftq_tokenizer *t, int32_t id, int *special)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) {
            *special = t->added[i].special;
            return 1;
        }
    return 0;
}

int ftq_tok_gguf_describe(const ftq_tokenizer *t, ftq_gguf_writer *w)
{
    int spm = t->model == TOK_MODEL_BPE_SCORE;
    if (spm ? t->norm != TOK_NORM_SPM || !t->score
            : t->model != TOK_MODEL_BPE_RANK || t->norm != TOK_NORM_NONE ||
                  (t->pretok == TOK_PRE_STAGES ? !t->gguf_pre[0] /* stages equal to a GGUF pre's */
                                               : t->pretok != TOK_PRE_BYTELEVEL || t->bl_add_prefix_space ||
                                                     !t->bl_use_regex))
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot describe tokenizer '%s' in GGUF: only byte-level BPE with "
                             "GPT-2 style splitting and sentencepiece BPE are supported", t->name);
    int32_t n = t->n_vocab;
    const char **tokens = malloc((size_t)n * sizeof *tokens);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    int32_t *types = malloc((size_t)n * sizeof *types);
    merge_ent *merges = NULL;
    int rc = tokens && lens && types ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int32_t i = 0; !rc && i < n; i++) {
        if (!t->piece[i]) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot describe tokenizer '%s' in GGUF: token id %ld is unused",
                               t->name, (long)i);
            break;
        }
        tokens[i] = t->piece[i];
        lens[i] = t->piece_len[i];
        int f = t->flags[i], special = 0;
        types[i] = f & TOKF_UNKNOWN ? TT_UNKNOWN : f & TOKF_CONTROL ? TT_CONTROL : f & TOKF_BYTE ? TT_BYTE : TT_NORMAL;
        if (types[i] == TT_NORMAL && is_added(t, i, &special))
            types[i] = special ? TT_CONTROL : TT_USER_DEFINED;
        for (size_t k = 0; types[i] == TT_NORMAL && k < t->user_defined.n; k++)
            if (t->user_defined.v[k] == i)
                types[i] = TT_USER_DEFINED;
    }
    if (!rc) {
        ftq_gguf_writer_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
        if (!spm)
            ftq_gguf_writer_str(w, "tokenizer.ggml.pre", t->gguf_pre[0] ? t->gguf_pre : "gpt-2");
        ftq_gguf_writer_str_array(w, "tokenizer.ggml.tokens", tokens, lens, (size_t)n);
        ftq_gguf_writer_array(w, "tokenizer.ggml.token_type", FTQ_GGUF_INT32, types, (size_t)n);
        if (spm) {
            ftq_gguf_writer_array(w, "tokenizer.ggml.scores", FTQ_GGUF_FLOAT32, t->score, (size_t)n);
            ftq_gguf_writer_bool(w, "tokenizer.ggml.add_space_prefix", t->spm_dummy_prefix);
            if (t->unk_id >= 0)
                ftq_gguf_writer_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk_id);
        }
    }
    if (!rc && !spm) {
        size_t nm = 0;
        if (!(merges = malloc((t->merges.n ? t->merges.n : 1) * sizeof *merges)))
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < t->merges.cap; i++)
            if (t->merges.keys[i] != UINT64_MAX)
                merges[nm++] = (merge_ent){t->merges.rank[i], (int32_t)(t->merges.keys[i] >> 32),
                                           (int32_t)(uint32_t)t->merges.keys[i]};
        if (!rc)
            qsort(merges, nm, sizeof *merges, cmp_merge);
        char **ms = rc ? NULL : calloc(nm ? nm : 1, sizeof *ms);
        if (!rc && !ms)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < nm; i++) {
            const char *a = t->piece[merges[i].a], *b = t->piece[merges[i].b];
            size_t la = t->piece_len[merges[i].a], lb = t->piece_len[merges[i].b];
            if (!(ms[i] = malloc(la + lb + 2))) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            memcpy(ms[i], a, la);
            ms[i][la] = ' ';
            memcpy(ms[i] + la + 1, b, lb);
            ms[i][la + lb + 1] = '\0';
        }
        if (!rc)
            ftq_gguf_writer_str_array(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, nm);
        for (size_t i = 0; ms && i < nm; i++)
            free(ms[i]);
        free(ms);
    }
    if (!rc) {
        if (t->bos_id >= 0)
            ftq_gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos_id);
        if (t->eos_id >= 0)
            ftq_gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos_id);
        ftq_gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", t->prefix.n > 0);
        ftq_gguf_writer_bool(w, "tokenizer.ggml.add_eos_token", t->suffix.n > 0);
    }
    free(merges);
    free(tokens);
    free(lens);
    free(types);
    return rc;
}
