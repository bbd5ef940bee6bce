/* gguf_sidecar.c - the side files of a Hugging Face model directory made from a GGUF file's
 * metadata, so the commands that write model directories (quantize, prune, finetune,
 * pipeline) accept a GGUF source: config.json from the `<arch>.*` keys, tokenizer.json and
 * tokenizer_config.json from the tokenizer ftq loads from `tokenizer.ggml.*` (so the ids are
 * the ones ftq and llama.cpp use for the file). Invariant: every file is written atomically,
 * and a refused tokenizer writes nothing. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ftq_gguf.h"
#include "io/tokenizer/internal.h"

#define SBAD(path, status, ...)                                                                                       \
    ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "cannot write model files for '%s'", (path))

/* The shortest decimal that reads back as the same float (config.json's 1e-05, not
 * 9.99999974737875e-06). */
static double float_decimal(float f)
{
    char buf[48];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

static int write_json(const cJSON *j, const char *dir, const char *name, int pretty)
{
    char *path = ftq_path_join(dir, name);
    char *text = path ? (pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j)) : NULL;
    if (!text) {
        free(path);
        return ftq_set_error(FTQ_ENOMEM, "out of memory writing '%s'", name);
    }
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, path);
    if (rc == FTQ_OK) {
        if (pretty) { /* cJSON indents with tabs and writes ":\t"; strings never hold a raw tab */
            for (const char *p = text; *p; p++) {
                if (*p != '\t')
                    fputc(*p, af.fp);
                else
                    fputs(p > text && p[-1] == ':' ? " " : "  ", af.fp);
            }
        } else {
            fputs(text, af.fp);
        }
        fputc('\n', af.fp);
        rc = ftq_atomic_commit(&af);
    }
    cJSON_free(text);
    free(path);
    return rc;
}

/* ---- config.json ------------------------------------------------------------------- */

static cJSON *config_json(const ftq_model_config *c)
{
    cJSON *j = cJSON_CreateObject(), *arch = cJSON_CreateStringArray((const char *const[]){"LlamaForCausalLM"}, 1);
    if (!j || !arch) {
        cJSON_Delete(j);
        cJSON_Delete(arch);
        return NULL;
    }
    cJSON_AddItemToObject(j, "architectures", arch);
    int ok = cJSON_AddStringToObject(j, "model_type", "llama") && cJSON_AddStringToObject(j, "hidden_act", "silu") &&
             cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size) &&
             cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size) &&
             cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers) &&
             cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads) &&
             cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads) &&
             cJSON_AddNumberToObject(j, "head_dim", c->head_dim) &&
             cJSON_AddNumberToObject(j, "rms_norm_eps", float_decimal(c->norm_eps)) &&
             cJSON_AddNumberToObject(j, "rope_theta", float_decimal(c->rope_theta)) &&
             cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_position) &&
             cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size) &&
             cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_word_embeddings) &&
             cJSON_AddBoolToObject(j, "attention_bias", c->qkv_bias || c->o_bias) &&
             cJSON_AddFalseToObject(j, "mlp_bias") && cJSON_AddNumberToObject(j, "initializer_range", 0.02) &&
             cJSON_AddStringToObject(j, "torch_dtype", "float32") && cJSON_AddTrueToObject(j, "use_cache");
    cJSON *rs = NULL;
    if (ok && c->rope_scaling == FTQ_ROPE_SCALING_NONE) {
        ok = cJSON_AddNullToObject(j, "rope_scaling") != NULL;
    } else if (ok && (rs = cJSON_AddObjectToObject(j, "rope_scaling"))) {
        int l3 = c->rope_scaling == FTQ_ROPE_SCALING_LLAMA3;
        ok = cJSON_AddStringToObject(rs, "rope_type", l3 ? "llama3" : "linear") &&
             cJSON_AddNumberToObject(rs, "factor", float_decimal(c->rope_factor));
        if (ok && l3)
            ok = cJSON_AddNumberToObject(rs, "low_freq_factor", float_decimal(c->rope_low_freq_factor)) &&
                 cJSON_AddNumberToObject(rs, "high_freq_factor", float_decimal(c->rope_high_freq_factor)) &&
                 cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_position);
    } else {
        ok = 0;
    }
    if (ok && c->bos_token_id >= 0)
        ok = cJSON_AddNumberToObject(j, "bos_token_id", c->bos_token_id) != NULL;
    if (ok && c->eos_token_id >= 0)
        ok = cJSON_AddNumberToObject(j, "eos_token_id", c->eos_token_id) != NULL;
    if (ok && c->pad_token_id >= 0)
        ok = cJSON_AddNumberToObject(j, "pad_token_id", c->pad_token_id) != NULL;
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- tokenizer.json ---------------------------------------------------------------- */

typedef struct {
    int32_t rank, a, b;
} merge_ent;

static int cmp_merge(const void *x, const void *y)
{
    const merge_ent *p = x, *q = y;
    return (p->rank > q->rank) - (p->rank < q->rank);
}

/* A NUL-terminated copy of token id's bytes (NULL on a NUL inside or out of memory). */
static char *piece_str(const ftq_tokenizer *t, int32_t id)
{
    if (strlen(t->piece[id]) != t->piece_len[id])
        return NULL;
    return strdup(t->piece[id]);
}

static cJSON *added_json(const ftq_added_token *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddNumberToObject(o, "id", a->id) && cJSON_AddStringToObject(o, "content", a->content) &&
        cJSON_AddFalseToObject(o, "single_word") && cJSON_AddFalseToObject(o, "lstrip") &&
        cJSON_AddFalseToObject(o, "rstrip") && cJSON_AddFalseToObject(o, "normalized") &&
        cJSON_AddBoolToObject(o, "special", a->special))
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* {"SpecialToken": {"id": content, "type_id": type}} or {"Sequence": {"id": "A", ...}} */
static int tmpl_item(cJSON *arr, const char *kind, const char *id, int type)
{
    cJSON *o = cJSON_CreateObject(), *in = o ? cJSON_AddObjectToObject(o, kind) : NULL;
    if (!in || !cJSON_AddStringToObject(in, "id", id) || !cJSON_AddNumberToObject(in, "type_id", type)) {
        cJSON_Delete(o);
        return 0;
    }
    cJSON_AddItemToArray(arr, o);
    return 1;
}

/* The post-processor. Byte-level: ByteLevel (offsets only), then a template adding BOS / EOS
 * when the GGUF says so (Hugging Face's Llama 3 layout). Sentencepiece: the template alone,
 * as LlamaTokenizerFast builds it ("<s>:0 $A:0", pair "<s>:0 $A:0 <s>:1 $B:1"). */
static cJSON *post_json(const ftq_tokenizer *t, int byte_level)
{
    cJSON *bl = NULL;
    if (byte_level) {
        bl = cJSON_CreateObject();
        if (!bl || !cJSON_AddStringToObject(bl, "type", "ByteLevel") ||
            !cJSON_AddTrueToObject(bl, "add_prefix_space") || !cJSON_AddFalseToObject(bl, "trim_offsets") ||
            !cJSON_AddTrueToObject(bl, "use_regex")) {
            cJSON_Delete(bl);
            return NULL;
        }
        if (!t->prefix.n && !t->suffix.n)
            return bl;
    }
    cJSON *tp = cJSON_CreateObject(), *seq = NULL, *procs = NULL;
    if (byte_level) {
        seq = cJSON_CreateObject();
        procs = seq ? cJSON_AddArrayToObject(seq, "processors") : NULL;
        if (!procs || !tp || !cJSON_AddStringToObject(seq, "type", "Sequence")) {
            cJSON_Delete(bl);
            cJSON_Delete(seq);
            cJSON_Delete(tp);
            return NULL;
        }
        cJSON_AddItemToArray(procs, bl);
        cJSON_AddItemToArray(procs, tp);
    } else {
        if (!tp)
            return NULL;
        seq = tp;
    }
    cJSON *single = cJSON_AddArrayToObject(tp, "single"), *pair = cJSON_AddArrayToObject(tp, "pair");
    cJSON *specials = cJSON_AddObjectToObject(tp, "special_tokens");
    int ok = single && pair && specials && cJSON_AddStringToObject(tp, "type", "TemplateProcessing");
    const ftq_ivec *ends[2] = {&t->prefix, &t->suffix};
    for (int part = 0; ok && part < 2; part++) { /* single: P A S; pair: P A S P B S */
        for (int e = 0; ok && e < 2; e++) {
            for (size_t i = 0; ok && i < ends[e]->n; i++) {
                const char *s = t->piece[ends[e]->v[i]];
                ok = (part || tmpl_item(single, "SpecialToken", s, 0)) && tmpl_item(pair, "SpecialToken", s, part);
            }
            if (ok && e == 0)
                ok = (part || tmpl_item(single, "Sequence", "A", 0)) &&
                     tmpl_item(pair, "Sequence", part ? "B" : "A", part);
        }
    }
    for (int e = 0; ok && e < 2; e++)
        for (size_t i = 0; ok && i < ends[e]->n; i++) {
            int32_t id = ends[e]->v[i];
            const char *s = t->piece[id];
            if (cJSON_GetObjectItemCaseSensitive(specials, s))
                continue;
            cJSON *st = cJSON_AddObjectToObject(specials, s);
            cJSON *ids = st ? cJSON_AddArrayToObject(st, "ids") : NULL, *toks = ids ? cJSON_AddArrayToObject(st, "tokens") : NULL;
            cJSON *n = cJSON_CreateNumber(id), *str = cJSON_CreateString(s);
            ok = toks && n && str && cJSON_AddStringToObject(st, "id", s);
            if (ok) {
                cJSON_AddItemToArray(ids, n);
                cJSON_AddItemToArray(toks, str);
            } else {
                cJSON_Delete(n);
                cJSON_Delete(str);
            }
        }
    if (!ok) {
        cJSON_Delete(seq);
        return NULL;
    }
    return seq;
}

/* ---- sentencepiece (tokenizer.ggml.model "llama") ------------------------------------ */

/* One candidate merge of generate_merges (transformers' convert_slow_tokenizer.py). */
typedef struct {
    float score;           /* score of the merged piece (0 for ids 0..2, as LlamaConverter) */
    int32_t lchars, rchars; /* lengths of the parts in characters */
    int32_t a, b;           /* the parts */
    size_t seq;             /* order of discovery: piece id, then (a, b) */
} spm_merge;

static int cmp_spm_local(const void *x, const void *y)
{
    const spm_merge *p = x, *q = y;
    if (p->a != q->a)
        return (p->a > q->a) - (p->a < q->a);
    return (p->b > q->b) - (p->b < q->b);
}

/* Python's stable sort on (score, len(a), len(b)) with reverse=True: descending keys, ties
 * in discovery order. */
static int cmp_spm_merge(const void *x, const void *y)
{
    const spm_merge *p = x, *q = y;
    if (p->score != q->score)
        return p->score < q->score ? 1 : -1;
    if (p->lchars != q->lchars)
        return p->lchars < q->lchars ? 1 : -1;
    if (p->rchars != q->rchars)
        return p->rchars < q->rchars ? 1 : -1;
    return (p->seq > q->seq) - (p->seq < q->seq);
}

static int utf8_chars(const char *s, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* The merges Hugging Face derives from a sentencepiece BPE vocabulary (generate_merges): for
 * every piece, each split into two pieces of the vocabulary (at a character boundary), in
 * order of the parts' ids; all of them ordered by the piece's score, then the longer left
 * part, then the longer right part. */
static int spm_merges(const ftq_tokenizer *t, const char *path, spm_merge **out, size_t *nout)
{
    size_t n = 0, cap = 0;
    spm_merge *m = NULL;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *p = t->piece[id];
        size_t len = p ? t->piece_len[id] : 0, first = n;
        if (id >= 3 && !isfinite(t->score[id])) {
            free(m);
            return SBAD(path, FTQ_EFORMAT, "token %ld has score %g (expected a finite number)", (long)id,
                        (double)t->score[id]);
        }
        for (size_t k = 1; k < len; k++) {
            int32_t a, b;
            if (((unsigned char)p[k] & 0xc0) == 0x80 || !ftq_strmap_get(&t->vocab, p, k, &a) ||
                !ftq_strmap_get(&t->vocab, p + k, len - k, &b))
                continue;
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 1024;
                spm_merge *q = realloc(m, nc * sizeof *q);
                if (!q) {
                    free(m);
                    return ftq_set_error(FTQ_ENOMEM, "out of memory");
                }
                m = q;
                cap = nc;
            }
            m[n++] = (spm_merge){id < 3 ? 0.0f : t->score[id], utf8_chars(p, k), utf8_chars(p + k, len - k), a, b, 0};
        }
        if (n > first) /* m may still be NULL */
            qsort(m + first, n - first, sizeof *m, cmp_spm_local);
        for (size_t i = first; i < n; i++)
            m[i].seq = i;
    }
    if (n)
        qsort(m, n, sizeof *m, cmp_spm_merge);
    *out = m;
    *nout = n;
    return FTQ_OK;
}

static cJSON *json_replace(const char *from, const char *to)
{
    cJSON *o = cJSON_CreateObject(), *pat = o ? cJSON_AddObjectToObject(o, "pattern") : NULL;
    if (pat && cJSON_AddStringToObject(o, "type", "Replace") && cJSON_AddStringToObject(pat, "String", from) &&
        cJSON_AddStringToObject(o, "content", to))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static cJSON *json_typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "type", type))
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* Adds item to arr; on a NULL item returns 0. */
static int push(cJSON *arr, cJSON *item)
{
    if (!item)
        return 0;
    cJSON_AddItemToArray(arr, item);
    return 1;
}

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, sentencepiece's escaped space */

/* tokenizer.json of a sentencepiece BPE tokenizer as transformers' LlamaConverter writes it
 * (legacy): BPE with byte fallback and fuse_unk over merges derived from the scores, the
 * normalizer Prepend("▁") (when add_space_prefix) + Replace(" " -> "▁"), no pre-tokenizer,
 * the decoder Replace / ByteFallback / Fuse / Strip, and the unknown, control (special) and
 * user-defined (not special) tokens as added tokens. */
static int spm_tokenizer_json(const ftq_tokenizer *t, const char *path, cJSON **out)
{
    *out = NULL;
    spm_merge *me = NULL;
    size_t nm = 0;
    int rc = spm_merges(t, path, &me, &nm);
    if (rc)
        return rc;
    cJSON *j = cJSON_CreateObject(), *model = cJSON_CreateObject(), *post = post_json(t, 0);
    cJSON *added = cJSON_CreateArray(), *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    cJSON *norm = json_typed("Sequence"), *dec = json_typed("Sequence");
    if (!j || !model || !post || !added || !vocab || !merges || !norm || !dec) {
        cJSON_Delete(j);
        cJSON_Delete(model);
        cJSON_Delete(post);
        cJSON_Delete(added);
        cJSON_Delete(vocab);
        cJSON_Delete(merges);
        cJSON_Delete(norm);
        cJSON_Delete(dec);
        free(me);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON_AddItemToObject(j, "added_tokens", added);
    cJSON_AddItemToObject(j, "normalizer", norm);
    cJSON_AddNullToObject(j, "pre_tokenizer");
    cJSON_AddItemToObject(j, "post_processor", post);
    cJSON_AddItemToObject(j, "decoder", dec);
    cJSON_AddItemToObject(j, "model", model);
    cJSON *nl = cJSON_AddArrayToObject(norm, "normalizers"), *dl = cJSON_AddArrayToObject(dec, "decoders");
    int ok = nl && dl;
    if (ok && t->spm_dummy_prefix) {
        cJSON *pp = json_typed("Prepend");
        ok = pp && cJSON_AddStringToObject(pp, "prepend", SPM_SPACE);
        if (!ok)
            cJSON_Delete(pp);
        else
            cJSON_AddItemToArray(nl, pp);
    }
    ok = ok && push(nl, json_replace(" ", SPM_SPACE)) && push(dl, json_replace(SPM_SPACE, " ")) &&
         push(dl, json_typed("ByteFallback")) && push(dl, json_typed("Fuse"));
    if (ok && t->spm_dummy_prefix) {
        cJSON *st = json_typed("Strip");
        ok = st && cJSON_AddStringToObject(st, "content", " ") && cJSON_AddNumberToObject(st, "start", 1) &&
             cJSON_AddNumberToObject(st, "stop", 0);
        if (!ok)
            cJSON_Delete(st);
        else
            cJSON_AddItemToArray(dl, st);
    }
    const char *unk = t->unk_id >= 0 && t->unk_id < t->n_vocab ? t->piece[t->unk_id] : NULL;
    ok = ok && cJSON_AddStringToObject(model, "type", "BPE") && cJSON_AddNullToObject(model, "dropout") &&
         (unk ? cJSON_AddStringToObject(model, "unk_token", unk) : cJSON_AddNullToObject(model, "unk_token")) &&
         cJSON_AddNullToObject(model, "continuing_subword_prefix") && cJSON_AddNullToObject(model, "end_of_word_suffix") &&
         cJSON_AddTrueToObject(model, "fuse_unk") && cJSON_AddTrueToObject(model, "byte_fallback") &&
         cJSON_AddFalseToObject(model, "ignore_merges");
    if (ok) {
        cJSON_AddItemToObject(model, "vocab", vocab);
        cJSON_AddItemToObject(model, "merges", merges);
    } else {
        cJSON_Delete(vocab);
        cJSON_Delete(merges);
    }
    if (!ok)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    /* added tokens in id order: unknown and control tokens special, user-defined ones not */
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        int special = (t->flags[id] & (TOKF_UNKNOWN | TOKF_CONTROL)) != 0, user = 0;
        for (int i = 0; !special && i < t->n_added; i++)
            user |= t->added[i].id == id;
        if (!special && !user)
            continue;
        char *s = piece_str(t, id);
        ftq_added_token a = {.id = id, .content = s, .special = special};
        cJSON *o = s ? added_json(&a) : NULL;
        free(s);
        if (!o)
            rc = s ? ftq_set_error(FTQ_ENOMEM, "out of memory")
                   : SBAD(path, FTQ_EFORMAT, "token %ld is missing or has a NUL byte", (long)id);
        else
            cJSON_AddItemToArray(added, o);
    }
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        char *s = t->piece[id] ? piece_str(t, id) : NULL;
        cJSON *n = s ? cJSON_CreateNumber(id) : NULL;
        if (!s)
            rc = SBAD(path, FTQ_EFORMAT, "token %ld is missing or has a NUL byte", (long)id);
        else if (!n)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else
            cJSON_AddItemToObject(vocab, s, n);
        free(s);
    }
    for (size_t i = 0; i < nm && !rc; i++) {
        cJSON *pair = cJSON_CreateArray();
        char *a = piece_str(t, me[i].a), *b = piece_str(t, me[i].b);
        if (!pair || !a || !b || !push(pair, cJSON_CreateString(a)) || !push(pair, cJSON_CreateString(b))) {
            cJSON_Delete(pair);
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        } else {
            cJSON_AddItemToArray(merges, pair);
        }
        free(a);
        free(b);
    }
    free(me);
    if (rc)
        cJSON_Delete(j);
    else
        *out = j;
    return rc;
}

/* tokenizer.json of a loaded byte-level BPE tokenizer (from a GGUF file). */
static int tokenizer_json(const ftq_tokenizer *t, const char *path, cJSON **out)
{
    *out = NULL;
    if (t->model == TOK_MODEL_BPE_SCORE && t->norm == TOK_NORM_SPM && t->score && t->byte_fallback)
        return spm_tokenizer_json(t, path, out);
    int byte_level = t->pretok == TOK_PRE_BYTELEVEL || (t->pretok == TOK_PRE_STAGES && t->gguf_pre[0]);
    if (t->model != TOK_MODEL_BPE_RANK || !byte_level || t->norm != TOK_NORM_NONE)
        return SBAD(path, FTQ_EUNSUPPORTED, "only byte-level BPE tokenizers (tokenizer.ggml.model gpt2) can be "
                    "written as tokenizer.json, and sentencepiece BPE ones (llama)");
    cJSON *pre = ftq_tok_pre_json(t->gguf_pre[0] ? t->gguf_pre : "default");
    if (!pre)
        return SBAD(path, FTQ_EUNSUPPORTED, "pre-tokenizer '%s' has no tokenizer.json form", t->gguf_pre);
    cJSON *j = cJSON_CreateObject(), *model = cJSON_CreateObject(), *post = post_json(t, 1);
    cJSON *added = cJSON_CreateArray(), *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    cJSON *dec = cJSON_CreateObject();
    merge_ent *me = NULL;
    char *buf = NULL;
    int rc = FTQ_OK;
    if (!j || !model || !post || !added || !vocab || !merges || !dec) {
        cJSON_Delete(pre);
        cJSON_Delete(model);
        cJSON_Delete(post);
        cJSON_Delete(added);
        cJSON_Delete(vocab);
        cJSON_Delete(merges);
        cJSON_Delete(dec);
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto done;
    }
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON_AddItemToObject(j, "added_tokens", added);
    cJSON_AddNullToObject(j, "normalizer");
    cJSON_AddItemToObject(j, "pre_tokenizer", pre);
    cJSON_AddItemToObject(j, "post_processor", post);
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddTrueToObject(dec, "add_prefix_space");
    cJSON_AddTrueToObject(dec, "trim_offsets");
    cJSON_AddTrueToObject(dec, "use_regex");
    cJSON_AddItemToObject(j, "decoder", dec);
    cJSON_AddItemToObject(j, "model", model);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddBoolToObject(model, "ignore_merges", t->ignore_merges);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);

    /* added tokens in id order (HF lists them so), special = control */
    int32_t prev = -1;
    for (int done = 0; done < t->n_added && !rc; done++) {
        const ftq_added_token *best = NULL;
        for (int i = 0; i < t->n_added; i++)
            if (t->added[i].id > prev && (!best || t->added[i].id < best->id))
                best = &t->added[i];
        if (!best)
            break;
        prev = best->id;
        cJSON *a = added_json(best);
        if (!a)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else
            cJSON_AddItemToArray(added, a);
    }
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        char *s = t->piece[id] ? piece_str(t, id) : NULL;
        cJSON *n = s ? cJSON_CreateNumber(id) : NULL;
        if (!s) /* (duplicates were refused at load) */
            rc = SBAD(path, FTQ_EFORMAT, "token %ld is missing or has a NUL byte", (long)id);
        else if (!n)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else
            cJSON_AddItemToObject(vocab, s, n);
        if (rc)
            cJSON_Delete(n);
        free(s);
    }
    /* merges in rank order, "a b" */
    size_t nm = 0;
    if (!rc && !(me = malloc((t->merges.n ? t->merges.n : 1) * sizeof *me)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < t->merges.cap; i++)
        if (t->merges.keys[i] != UINT64_MAX)
            me[nm++] = (merge_ent){t->merges.rank[i], (int32_t)(t->merges.keys[i] >> 32), (int32_t)(uint32_t)t->merges.keys[i]};
    if (!rc)
        qsort(me, nm, sizeof *me, cmp_merge);
    for (size_t i = 0; !rc && i < nm; i++) {
        size_t la = t->piece_len[me[i].a], lb = t->piece_len[me[i].b];
        char *nb = realloc(buf, la + lb + 2);
        if (!nb) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            break;
        }
        buf = nb;
        memcpy(buf, t->piece[me[i].a], la);
        buf[la] = ' ';
        memcpy(buf + la + 1, t->piece[me[i].b], lb);
        buf[la + lb + 1] = '\0';
        if (memchr(buf, ' ', la) || memchr(buf + la + 1, ' ', lb)) {
            rc = SBAD(path, FTQ_EFORMAT, "merge %zu joins a token with a space (expected byte-level pieces)", i);
            break;
        }
        cJSON *s = cJSON_CreateString(buf);
        if (!s)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else
            cJSON_AddItemToArray(merges, s);
    }
done:
    free(me);
    free(buf);
    if (rc)
        cJSON_Delete(j);
    else
        *out = j;
    return rc;
}

/* tokenizer_config.json: the special tokens by text, add_bos/eos, context length, and the
 * chat template the GGUF carries. */
static cJSON *tokenizer_config_json(const ftq_tokenizer *t, const ftq_model_config *c, const ftq_gguf *g)
{
    cJSON *j = cJSON_CreateObject();
    /* sentencepiece: LlamaTokenizerFast (legacy, so it keeps the normalizer of tokenizer.json;
     * an add_prefix_space key would make it rebuild the tokenizer from a tokenizer.model) */
    const int spm = t->model == TOK_MODEL_BPE_SCORE;
    int ok = j && cJSON_AddStringToObject(j, "tokenizer_class", spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast") &&
             cJSON_AddBoolToObject(j, "add_bos_token", t->prefix.n > 0) &&
             cJSON_AddBoolToObject(j, "add_eos_token", t->suffix.n > 0) &&
             (spm ? cJSON_AddTrueToObject(j, "legacy") != NULL : cJSON_AddFalseToObject(j, "add_prefix_space") != NULL) &&
             cJSON_AddFalseToObject(j, "clean_up_tokenization_spaces") &&
             cJSON_AddNumberToObject(j, "model_max_length", c->max_position);
    const struct {
        const char *key;
        int32_t id;
    } sp[] = {{"bos_token", t->bos_id}, {"eos_token", t->eos_id}, {"unk_token", t->unk_id}, {"pad_token", c->pad_token_id}};
    for (size_t k = 0; ok && k < sizeof sp / sizeof sp[0]; k++)
        if (sp[k].id >= 0 && sp[k].id < t->n_vocab && t->piece[sp[k].id] &&
            strlen(t->piece[sp[k].id]) == t->piece_len[sp[k].id])
            ok = cJSON_AddStringToObject(j, sp[k].key, t->piece[sp[k].id]) != NULL;
    const char *tmpl;
    size_t tl;
    if (ok && ftq_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tl) == FTQ_OK) {
        char *s = strndup(tmpl, tl);
        ok = s && strlen(s) == tl && cJSON_AddStringToObject(j, "chat_template", s);
        free(s);
    }
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- the entry points --------------------------------------------------------------- */

int ftq_gguf_write_model_files(const char *gguf_path, const char *dir)
{
    if (!gguf_path || !dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_gguf_write_model_files: NULL argument");
    ftq_gguf *g = NULL;
    ftq_tokenizer *tok = NULL;
    cJSON *cj = NULL, *tj = NULL, *tc = NULL;
    ftq_model_config cfg;
    int rc = ftq_gguf_open(gguf_path, &g);
    if (!rc)
        rc = ftq_gguf_model_config(g, &cfg);
    if (!rc && cfg.arch != FTQ_ARCH_LLAMA)
        rc = SBAD(gguf_path, FTQ_EUNSUPPORTED, "only llama-architecture files get a config.json (this is '%s')",
                  cfg.model_type);
    if (!rc && cfg.rope_scaling == FTQ_ROPE_SCALING_FREQS)
        rc = SBAD(gguf_path, FTQ_EUNSUPPORTED, "rope frequency factors (the rope_freqs tensor) have no config.json "
                  "form (expected rope scaling none, linear or llama3)");
    if (!rc)
        rc = ftq_tokenizer_load(gguf_path, &tok);
    if (!rc && !(cj = config_json(&cfg)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc)
        rc = tokenizer_json(tok, gguf_path, &tj);
    if (!rc && !(tc = tokenizer_config_json(tok, &cfg, g)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc)
        rc = write_json(cj, dir, "config.json", 1);
    if (!rc)
        rc = write_json(tj, dir, "tokenizer.json", 0);
    if (!rc)
        rc = write_json(tc, dir, "tokenizer_config.json", 1);
    cJSON_Delete(cj);
    cJSON_Delete(tj);
    cJSON_Delete(tc);
    ftq_tokenizer_free(tok);
    ftq_gguf_close(g);
    return rc;
}

int ftq_model_files_copy(const char *src, const char *dst, int with_config)
{
    if (ftq_gguf_is_file(src))
        return ftq_gguf_write_model_files(src, dst);
    return ftq_copy_model_files(src, dst, with_config);
}

int ftq_gguf_model_files_tmpdir(const char *gguf_path, char **dir)
{
    *dir = NULL;
    const char *base = getenv("TMPDIR");
    size_t n = strlen(base && *base ? base : "/tmp") + 32;
    char *d = malloc(n);
    if (!d)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    snprintf(d, n, "%s/ftq-gguf-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(d)) {
        int rc = ftq_set_error(FTQ_EIO, "cannot create a temporary directory '%s': %s", d, strerror(errno));
        free(d);
        return rc;
    }
    int rc = ftq_gguf_write_model_files(gguf_path, d);
    if (rc) {
        ftq_remove_tree(d);
        free(d);
        return rc;
    }
    *dir = d;
    return FTQ_OK;
}
