/* gguf_sidecar.c - the side files of a Hugging Face model directory made from a GGUF file's
 * metadata, so the commands that write model directories (quantize, prune, finetune,
 * pipeline) accept a GGUF source: config.json from the `<arch>.*` keys, tokenizer.json and
 * tokenizer_config.json from the tokenizer ftq loads from `tokenizer.ggml.*` (so the ids are
 * the ones ftq and llama.cpp use for the file). Invariant: every file is written atomically,
 * and a refused tokenizer writes nothing. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
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

/* The post-processor: ByteLevel (offsets only), then a template adding BOS / EOS when the
 * GGUF says so (Hugging Face's Llama 3 layout). */
static cJSON *post_json(const ftq_tokenizer *t)
{
    cJSON *bl = cJSON_CreateObject();
    if (!bl || !cJSON_AddStringToObject(bl, "type", "ByteLevel") || !cJSON_AddTrueToObject(bl, "add_prefix_space") ||
        !cJSON_AddFalseToObject(bl, "trim_offsets") || !cJSON_AddTrueToObject(bl, "use_regex")) {
        cJSON_Delete(bl);
        return NULL;
    }
    if (!t->prefix.n && !t->suffix.n)
        return bl;
    cJSON *seq = cJSON_CreateObject(), *procs = seq ? cJSON_AddArrayToObject(seq, "processors") : NULL;
    cJSON *tp = cJSON_CreateObject();
    if (!procs || !tp || !cJSON_AddStringToObject(seq, "type", "Sequence")) {
        cJSON_Delete(bl);
        cJSON_Delete(seq);
        cJSON_Delete(tp);
        return NULL;
    }
    cJSON_AddItemToArray(procs, bl);
    cJSON_AddItemToArray(procs, tp);
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

/* tokenizer.json of a loaded byte-level BPE tokenizer (from a GGUF file). */
static int tokenizer_json(const ftq_tokenizer *t, const char *path, cJSON **out)
{
    *out = NULL;
    int byte_level = t->pretok == TOK_PRE_BYTELEVEL || (t->pretok == TOK_PRE_STAGES && t->gguf_pre[0]);
    if (t->model != TOK_MODEL_BPE_RANK || !byte_level || t->norm != TOK_NORM_NONE)
        return SBAD(path, FTQ_EUNSUPPORTED, "only byte-level BPE tokenizers (tokenizer.ggml.model gpt2) can be "
                    "written as tokenizer.json; sentencepiece (llama) tokenizers are not supported yet");
    cJSON *pre = ftq_tok_pre_json(t->gguf_pre[0] ? t->gguf_pre : "default");
    if (!pre)
        return SBAD(path, FTQ_EUNSUPPORTED, "pre-tokenizer '%s' has no tokenizer.json form", t->gguf_pre);
    cJSON *j = cJSON_CreateObject(), *model = cJSON_CreateObject(), *post = post_json(t);
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
    int ok = j && cJSON_AddStringToObject(j, "tokenizer_class", "PreTrainedTokenizerFast") &&
             cJSON_AddBoolToObject(j, "add_bos_token", t->prefix.n > 0) &&
             cJSON_AddBoolToObject(j, "add_eos_token", t->suffix.n > 0) &&
             cJSON_AddFalseToObject(j, "add_prefix_space") &&
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
