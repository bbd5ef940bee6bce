/* hf_json.c - Hugging Face tokenizer.json loader (models BPE and WordPiece) with the
 * normalizers, pre-tokenizers, post-processors and decoders that GPT-2, Llama and BERT style
 * files use.
 * Invariant: anything the file asks for that ftq does not implement is refused at load
 * time with FTQ_EUNSUPPORTED naming the component, never silently approximated. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

/* The GPT-2 pre-tokenizer regex as tokenizers writes it in a Split pre-tokenizer. */
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static const char *type_of(const cJSON *o)
{
    const cJSON *ty = get(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "(no type)";
}

static int flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = get(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int unsupported(const char *path, const char *what, const char *type)
{
    return ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': %s '%s' is not supported", path, what, type);
}

static int bad(const char *path, const char *what)
{
    return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': %s", path, what);
}

/* Copy a JSON string into an op field. */
static int op_str(const cJSON *v, char **dst, size_t *len)
{
    if (!cJSON_IsString(v))
        return FTQ_EFORMAT;
    *len = strlen(v->valuestring);
    *dst = malloc(*len + 1);
    if (!*dst)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    memcpy(*dst, v->valuestring, *len + 1);
    return FTQ_OK;
}

static int push_op(ftq_tok_op **ops, int *n, ftq_tok_op op)
{
    ftq_tok_op *p = *n < 1024 ? realloc(*ops, (size_t)(*n + 1) * sizeof *p) : NULL;
    if (!p) {
        free(op.a);
        free(op.b);
        ftq_tok_regex_free(op.re);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    *ops = p;
    (*ops)[(*n)++] = op;
    return FTQ_OK;
}

/* Replace {"pattern": {"String": s}, "content": c}; a Regex pattern is unsupported. */
static int replace_op(const cJSON *o, const char *path, const char *what, int op_code, ftq_tok_op *op)
{
    const cJSON *pat = get(o, "pattern");
    memset(op, 0, sizeof *op);
    op->op = op_code;
    const cJSON *re = get(pat, "Regex");
    if (re) {
        if (!cJSON_IsString(re) || op_str(get(o, "content"), &op->b, &op->blen))
            return bad(path, "Replace without a Regex string and content");
        const char *pats[1] = {re->valuestring};
        int rc = ftq_tok_regex_new(pats, 1, &op->re);
        if (rc) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", ftq_last_error());
            free(op->b);
            return ftq_set_error(rc, "cannot load '%s': %s %s", path, what, msg);
        }
        return FTQ_OK;
    }
    if (op_str(get(pat, "String"), &op->a, &op->alen) || op_str(get(o, "content"), &op->b, &op->blen)) {
        free(op->a);
        return bad(path, "Replace without a String pattern and content");
    }
    if (op->alen == 0) {
        free(op->a);
        free(op->b);
        return bad(path, "Replace with an empty pattern");
    }
    return FTQ_OK;
}

static int load_normalizer(ftq_tokenizer *t, const cJSON *n, const char *path)
{
    if (!n || cJSON_IsNull(n))
        return FTQ_OK;
    const char *ty = type_of(n);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *it;
        int rc = FTQ_OK;
        cJSON_ArrayForEach(it, get(n, "normalizers"))
        {
            if ((rc = load_normalizer(t, it, path)))
                return rc;
        }
        return rc;
    }
    if (strcmp(ty, "BertNormalizer") == 0) {
        if (t->norm != TOK_NORM_NONE)
            return unsupported(path, "normalizer", "BertNormalizer in a Sequence");
        return ftq_tok_bert_normalizer_from_json(t, n);
    }
    if (t->norm == TOK_NORM_BERT)
        return unsupported(path, "normalizer", "BertNormalizer in a Sequence");
    ftq_tok_op op = {0};
    if (strcmp(ty, "Prepend") == 0) {
        op.op = TOK_NORM_PREPEND;
        if (op_str(get(n, "prepend"), &op.a, &op.alen))
            return bad(path, "Prepend normalizer without a string");
    } else if (strcmp(ty, "Replace") == 0) {
        int rc = replace_op(n, path, "normalizer", TOK_NORM_REPLACE, &op);
        if (rc)
            return rc;
    } else if (strcmp(ty, "NFC") == 0) {
        op.op = TOK_NORM_NFC;
    } else if (strcmp(ty, "NFD") == 0) {
        op.op = TOK_NORM_NFD;
    } else if (strcmp(ty, "NFKC") == 0) {
        op.op = TOK_NORM_NFKC;
    } else if (strcmp(ty, "NFKD") == 0) {
        op.op = TOK_NORM_NFKD;
    } else if (strcmp(ty, "Lowercase") == 0) {
        op.op = TOK_NORM_LOWERCASE;
    } else if (strcmp(ty, "Strip") == 0) {
        op.op = TOK_NORM_STRIP;
        op.start = flag(n, "strip_left", 1);
        op.stop = flag(n, "strip_right", 1);
    } else {
        return unsupported(path, "normalizer", ty);
    }
    t->norm = TOK_NORM_OPS;
    return push_op(&t->norm_ops, &t->n_norm_ops, op);
}

/* Any other list: the general pre-tokenizer stages (pretok.c). */
static int generic_pre(ftq_tokenizer *t, const cJSON *p, const char *path)
{
    t->pretok = TOK_PRE_STAGES;
    /* one of GGUF's tokenizer.ggml.pre splits (SmolLM2's, Llama 3's, Qwen2's): named, so the
     * tokenizer can be exported to GGUF */
    const char *gp = ftq_tok_gguf_pre_of_json(p);
    if (gp)
        snprintf(t->gguf_pre, sizeof t->gguf_pre, "%s", gp);
    return ftq_tok_pre_from_json(t, p, path);
}

/* ByteLevel alone, BertPreTokenizer, and Split(GPT-2 regex) + ByteLevel run on their own fast
 * paths (the GPT-2 scanner); everything else as a list of stages. */
static int load_pretokenizer(ftq_tokenizer *t, const cJSON *p, const char *path)
{
    if (!p || cJSON_IsNull(p))
        return FTQ_OK;
    const char *ty = type_of(p);
    if (strcmp(ty, "ByteLevel") == 0) {
        t->pretok = TOK_PRE_BYTELEVEL;
        t->bl_add_prefix_space = flag(p, "add_prefix_space", 1);
        t->bl_use_regex = flag(p, "use_regex", 1);
        return FTQ_OK;
    }
    if (strcmp(ty, "BertPreTokenizer") == 0) {
        t->pretok = TOK_PRE_BERT;
        return FTQ_OK;
    }
    if (strcmp(ty, "Sequence") != 0)
        return generic_pre(t, p, path);
    /* Accept [ByteLevel] and [Split(GPT-2 regex, Isolated), ByteLevel(use_regex false,
     * add_prefix_space false)]: both are exactly ByteLevel with its regex. */
    const cJSON *seq = get(p, "pretokenizers");
    int n = cJSON_GetArraySize(seq);
    if (n == 1)
        return load_pretokenizer(t, cJSON_GetArrayItem(seq, 0), path);
    const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
    const cJSON *re = get(get(split, "pattern"), "Regex"), *beh = get(split, "behavior");
    if (n == 2 && strcmp(type_of(split), "Split") == 0 && cJSON_IsString(re) &&
        strcmp(re->valuestring, GPT2_PATTERN) == 0 && cJSON_IsString(beh) &&
        strcmp(beh->valuestring, "Isolated") == 0 && !flag(split, "invert", 0) &&
        strcmp(type_of(bl), "ByteLevel") == 0 && !flag(bl, "use_regex", 1) && !flag(bl, "add_prefix_space", 1)) {
        t->pretok = TOK_PRE_BYTELEVEL;
        t->bl_use_regex = 1;
        t->bl_add_prefix_space = 0;
        return FTQ_OK;
    }
    return generic_pre(t, p, path);
}

static int load_decoder(ftq_tokenizer *t, const cJSON *d, const char *path)
{
    if (!d || cJSON_IsNull(d))
        return FTQ_OK;
    const char *ty = type_of(d);
    int rc = FTQ_OK;
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, get(d, "decoders"))
        {
            if ((rc = load_decoder(t, it, path)))
                return rc;
        }
        return rc;
    }
    ftq_tok_op op = {0};
    if (strcmp(ty, "ByteLevel") == 0) {
        op.op = TOK_DEC_BYTELEVEL;
    } else if (strcmp(ty, "ByteFallback") == 0) {
        op.op = TOK_DEC_BYTEFALLBACK;
    } else if (strcmp(ty, "Fuse") == 0) {
        op.op = TOK_DEC_FUSE;
    } else if (strcmp(ty, "WordPiece") == 0) {
        op.op = TOK_DEC_WORDPIECE;
        op.start = flag(d, "cleanup", 1);
        const cJSON *pre = get(d, "prefix");
        const char *ps = cJSON_IsString(pre) ? pre->valuestring : "##";
        op.alen = strlen(ps);
        if (!(op.a = malloc(op.alen + 1)))
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        memcpy(op.a, ps, op.alen + 1);
    } else if (strcmp(ty, "Replace") == 0) {
        if ((rc = replace_op(d, path, "decoder", TOK_DEC_REPLACE, &op)))
            return rc;
        if (op.re) {
            ftq_tok_regex_free(op.re);
            free(op.b);
            return unsupported(path, "decoder", "Replace with a Regex pattern");
        }
    } else if (strcmp(ty, "Metaspace") == 0) {
        const cJSON *rep = get(d, "replacement"), *scheme = get(d, "prepend_scheme");
        op.op = TOK_DEC_METASPACE;
        op.start = flag(d, "add_prefix_space", 1);
        if (cJSON_IsString(scheme))
            op.start = strcmp(scheme->valuestring, "never") != 0;
        if (!cJSON_IsString(rep) || !rep->valuestring[0] || op_str(rep, &op.a, &op.alen))
            return bad(path, "Metaspace decoder without a replacement character");
    } else if (strcmp(ty, "Strip") == 0) {
        const cJSON *start = get(d, "start"), *stop = get(d, "stop");
        op.op = TOK_DEC_STRIP;
        if (op_str(get(d, "content"), &op.a, &op.alen) || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop) ||
            start->valuedouble < 0 || stop->valuedouble < 0 || start->valuedouble > 1e6 || stop->valuedouble > 1e6) {
            free(op.a);
            return bad(path, "Strip decoder needs content, start and stop");
        }
        op.start = (int)start->valuedouble;
        op.stop = (int)stop->valuedouble;
    } else {
        return unsupported(path, "decoder", ty);
    }
    return push_op(&t->dec_ops, &t->n_dec_ops, op);
}

/* The id of a special token named in a post-processor. */
static int32_t special_id(const ftq_tokenizer *t, const cJSON *specials, const char *name)
{
    const cJSON *ids = get(get(specials, name), "ids");
    if (cJSON_GetArraySize(ids) == 1 && cJSON_IsNumber(cJSON_GetArrayItem(ids, 0))) {
        /* range-checked before the cast (1e10 would be undefined); an id must be a token */
        double v = cJSON_GetArrayItem(ids, 0)->valuedouble;
        return v >= 0 && v < t->n_vocab && v == floor(v) && t->piece[(int32_t)v] ? (int32_t)v : -1;
    }
    for (int i = 0; i < t->n_added; i++)
        if (strcmp(t->added[i].content, name) == 0)
            return t->added[i].id;
    int32_t id;
    return ftq_strmap_get(&t->vocab, name, strlen(name), &id) ? id : -1;
}

/* A TemplateProcessing template: [{"SpecialToken": {"id", "type_id"}} | {"Sequence": {"id": "A"|"B",
 * "type_id"}}, ...] (at most 16 items). */
static int parse_template(const ftq_tokenizer *t, const cJSON *arr, const cJSON *specials, const char *path,
                          ftq_tok_tmpl *out, int *n)
{
    const cJSON *it;
    *n = 0;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *sp = get(it, "SpecialToken"), *sq = get(it, "Sequence");
        const cJSON *o = sp ? sp : sq, *id = get(o, "id"), *ty = get(o, "type_id");
        if (*n >= 16)
            return bad(path, "TemplateProcessing template with more than 16 items");
        if (!cJSON_IsString(id))
            return bad(path, "TemplateProcessing item is neither SpecialToken nor Sequence");
        ftq_tok_tmpl x = {0, cJSON_IsNumber(ty) && ty->valuedouble >= 0 && ty->valuedouble < 256 ? (int)ty->valuedouble : 0};
        if (sq) {
            if (strcmp(id->valuestring, "A") != 0 && strcmp(id->valuestring, "B") != 0)
                return bad(path, "TemplateProcessing sequence is neither A nor B");
            x.id = id->valuestring[0] == 'A' ? FTQ_TMPL_A : FTQ_TMPL_B;
        } else {
            x.id = special_id(t, specials, id->valuestring);
            if (x.id < 0)
                return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': post_processor token '%s' is not in the "
                                     "vocabulary", path, id->valuestring);
        }
        out[(*n)++] = x;
    }
    return FTQ_OK;
}

static int load_post(ftq_tokenizer *t, const cJSON *p, const char *path)
{
    if (!p || cJSON_IsNull(p))
        return FTQ_OK;
    const char *ty = type_of(p);
    int rc = FTQ_OK;
    if (strcmp(ty, "ByteLevel") == 0)
        return FTQ_OK; /* only adjusts offsets */
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, get(p, "processors"))
        {
            if ((rc = load_post(t, it, path)))
                return rc;
        }
        return rc;
    }
    if (strcmp(ty, "TemplateProcessing") == 0) {
        const cJSON *specials = get(p, "special_tokens");
        ftq_tok_tmpl single[16], pair[16];
        int ns = 0, np = 0;
        if ((rc = parse_template(t, get(p, "single"), specials, path, single, &ns)) ||
            (rc = parse_template(t, get(p, "pair"), specials, path, pair, &np)))
            return rc;
        if ((rc = ftq_tok_set_templates(t, single, ns, np ? pair : NULL, np)))
            return ftq_set_error(rc, "cannot load '%s': post_processor: %s", path, ftq_last_error());
        return FTQ_OK;
    }
    if (strcmp(ty, "RobertaProcessing") == 0 || strcmp(ty, "BertProcessing") == 0) {
        const cJSON *cls = get(p, "cls"), *sep = get(p, "sep");
        if (!cJSON_IsNumber(cJSON_GetArrayItem(cls, 1)) || !cJSON_IsNumber(cJSON_GetArrayItem(sep, 1)))
            return bad(path, "post_processor without cls/sep ids");
        int32_t c = (int32_t)cJSON_GetArrayItem(cls, 1)->valuedouble, e = (int32_t)cJSON_GetArrayItem(sep, 1)->valuedouble;
        if (strcmp(ty, "BertProcessing") == 0) {
            const ftq_tok_tmpl pair[] = {{c, 0}, {FTQ_TMPL_A, 0}, {e, 0}, {FTQ_TMPL_B, 1}, {e, 1}};
            return ftq_tok_set_templates(t, pair, 3, pair, 5);
        }
        const ftq_tok_tmpl pair[] = {{c, 0}, {FTQ_TMPL_A, 0}, {e, 0}, {e, 0}, {FTQ_TMPL_B, 0}, {e, 0}};
        return ftq_tok_set_templates(t, pair, 3, pair, 6);
    }
    return unsupported(path, "post_processor", ty);
}

static int is_id(const cJSON *v) { return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < INT32_MAX - 1 && v->valuedouble == (double)(int32_t)v->valuedouble; }

static int load_model(ftq_tokenizer *t, const cJSON *m, const char *path)
{
    if (!cJSON_IsObject(m))
        return bad(path, "'model' is missing");
    const cJSON *ty = get(m, "type");
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "WordPiece") == 0)
        return ftq_tok_wordpiece_from_json(t, m, path);
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "Unigram") == 0)
        return ftq_tok_unigram_from_json(t, m, path);
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "BPE") != 0)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': model type '%s' is not supported (only BPE, Unigram and WordPiece)",
                             path, ty->valuestring);
    if (!ty && !get(m, "merges"))
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': model without type or merges is not supported "
                             "(only BPE)", path);
    const cJSON *dropout = get(m, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return unsupported(path, "BPE option", "dropout");
    const cJSON *pre = get(m, "continuing_subword_prefix"), *suf = get(m, "end_of_word_suffix");
    if ((cJSON_IsString(pre) && strlen(pre->valuestring) >= sizeof t->wp_prefix) ||
        (cJSON_IsString(suf) && strlen(suf->valuestring) >= sizeof t->bpe_suffix))
        return bad(path, "BPE continuing_subword_prefix or end_of_word_suffix longer than 15 bytes");
    if (cJSON_IsString(pre)) {
        t->wp_prefix_len = strlen(pre->valuestring);
        memcpy(t->wp_prefix, pre->valuestring, t->wp_prefix_len + 1);
    }
    if (cJSON_IsString(suf)) {
        t->bpe_suffix_len = strlen(suf->valuestring);
        memcpy(t->bpe_suffix, suf->valuestring, t->bpe_suffix_len + 1);
    }
    t->model = TOK_MODEL_BPE_RANK;
    t->byte_fallback = flag(m, "byte_fallback", 0);
    t->fuse_unk = flag(m, "fuse_unk", 0);
    t->ignore_merges = flag(m, "ignore_merges", 0);

    const cJSON *vocab = get(m, "vocab"), *it;
    if (!cJSON_IsObject(vocab) || !vocab->child)
        return bad(path, "model.vocab is missing or empty");
    int rc;
    cJSON_ArrayForEach(it, vocab)
    {
        if (!is_id(it))
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': vocab entry '%s' has no valid id", path, it->string);
        if ((rc = ftq_tok_add_vocab(t, (int32_t)it->valuedouble, it->string, strlen(it->string))))
            return rc;
    }
    const cJSON *unk = get(m, "unk_token");
    if (cJSON_IsString(unk) && !ftq_strmap_get(&t->vocab, unk->valuestring, strlen(unk->valuestring), &t->unk_id))
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': unk_token '%s' is not in the vocabulary", path,
                             unk->valuestring);

    const cJSON *merges = get(m, "merges");
    if (!cJSON_IsArray(merges))
        return bad(path, "model.merges is missing");
    if (cJSON_GetArraySize(merges) >= (1 << 24))
        return bad(path, "more than 2^24 merges");
    int32_t rank = 0;
    char *cat = NULL;
    size_t cat_cap = 0;
    rc = FTQ_OK;
    cJSON_ArrayForEach(it, merges)
    {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(it)) { /* "a b" (tokenizers < 0.20) */
            const char *sp = strchr(it->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = it->valuestring;
                al = (size_t)(sp - a);
                b = sp + 1;
                bl = strlen(b);
            }
        } else if (cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) && cJSON_IsString(it->child->next)) {
            a = it->child->valuestring; /* ["a", "b"] (tokenizers >= 0.20) */
            al = strlen(a);
            b = it->child->next->valuestring;
            bl = strlen(b);
        }
        if (!a) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': merge %ld is not \"a b\" or [\"a\", \"b\"]", path,
                               (long)rank);
            break;
        }
        if (al + bl + 1 > cat_cap) {
            cat_cap = 2 * (al + bl + 1);
            char *p = realloc(cat, cat_cap);
            if (!p) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            cat = p;
        }
        /* the merged token drops b's continuing_subword_prefix (HF: a + b[prefix_len..]) */
        size_t skip = t->wp_prefix_len && bl >= t->wp_prefix_len && memcmp(b, t->wp_prefix, t->wp_prefix_len) == 0
                          ? t->wp_prefix_len
                          : 0;
        memcpy(cat, a, al);
        memcpy(cat + al, b + skip, bl - skip);
        int32_t ia, ib, im;
        if (!ftq_strmap_get(&t->vocab, a, al, &ia) || !ftq_strmap_get(&t->vocab, b, bl, &ib) ||
            !ftq_strmap_get(&t->vocab, cat, al + bl - skip, &im)) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': merge %ld ('%.*s' + '%.*s') uses a token that is not "
                               "in the vocabulary", path, (long)rank, (int)al, a, (int)bl, b);
            break;
        }
        if ((rc = ftq_pairmap_put(&t->merges, ia, ib, rank, im)))
            break;
        rank++;
    }
    free(cat);
    return rc;
}

static int load_added(ftq_tokenizer *t, const cJSON *added, const char *path)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, added)
    {
        const cJSON *id = get(it, "id"), *content = get(it, "content");
        if (!is_id(id) || !cJSON_IsString(content))
            return bad(path, "added_tokens entry without id and content");
        int rc = ftq_tok_add_added(t, (int32_t)id->valuedouble, content->valuestring, flag(it, "special", 0),
                                   flag(it, "lstrip", 0), flag(it, "rstrip", 0), flag(it, "single_word", 0),
                                   flag(it, "normalized", 1));
        if (rc)
            return rc;
    }
    return FTQ_OK;
}

int ftq_tok_load_hf_json(ftq_tokenizer *t, const char *dir)
{
    char *path = ftq_path_join(dir, "tokenizer.json");
    if (!path)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    char *data = NULL;
    size_t size = 0;
    cJSON *root = NULL;
    int rc = ftq_is_file(path) ? ftq_read_file_max(path, FTQ_MAX_TOKENIZER_BYTES, &data, &size)
                               : ftq_set_error(FTQ_ENOTFOUND, "cannot load tokenizer: '%s' not found", path);
    if (!rc) {
        root = cJSON_ParseWithLength(data, size);
        if (!root || !cJSON_IsObject(root)) {
            const char *where = cJSON_GetErrorPtr();
            rc = ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': not valid json (near byte offset %zu)", path,
                               where && where >= data && where <= data + size ? (size_t)(where - data) : (size_t)0);
        }
    }
    t->decoder = TOK_DEC_CHAIN;
    /* ids are bounded by the entries the file defines: vocab plus added tokens */
    if (!rc)
        rc = ftq_tok_allow_ids(t, path,
                               (size_t)cJSON_GetArraySize(get(get(root, "model"), "vocab")) +
                                   (size_t)cJSON_GetArraySize(get(root, "added_tokens")));
    if (!rc)
        rc = load_model(t, get(root, "model"), path);
    if (!rc)
        rc = load_added(t, get(root, "added_tokens"), path);
    if (!rc)
        rc = load_normalizer(t, get(root, "normalizer"), path);
    if (!rc)
        rc = load_pretokenizer(t, get(root, "pre_tokenizer"), path);
    if (!rc)
        rc = load_post(t, get(root, "post_processor"), path);
    if (!rc)
        rc = load_decoder(t, get(root, "decoder"), path);
    if (!rc && t->model == TOK_MODEL_WORDPIECE && (t->pretok == TOK_PRE_BYTELEVEL || t->pre_byte_level))
        rc = unsupported(path, "pre_tokenizer", "ByteLevel with a WordPiece model");
    if (!rc && t->model == TOK_MODEL_BPE_RANK && (t->wp_prefix_len || t->bpe_suffix_len) &&
        (t->pretok == TOK_PRE_BYTELEVEL || t->pre_byte_level))
        rc = unsupported(path, "BPE option", "continuing_subword_prefix/end_of_word_suffix with ByteLevel");
    if (!rc && t->model == TOK_MODEL_UNIGRAM && (t->pretok == TOK_PRE_BYTELEVEL || t->pre_byte_level))
        rc = unsupported(path, "pre_tokenizer", "ByteLevel with a Unigram model");
    if (!rc && t->model != TOK_MODEL_WORDPIECE && (t->pretok == TOK_PRE_BERT || t->norm == TOK_NORM_BERT))
        rc = unsupported(path, "pre_tokenizer/normalizer", "BertPreTokenizer or BertNormalizer with a BPE model");
    if (!rc && t->model == TOK_MODEL_WORDPIECE)
        snprintf(t->name, sizeof t->name, "tokenizer.json (WordPiece%s)", t->bert_lowercase ? ", uncased" : "");
    else if (!rc)
        snprintf(t->name, sizeof t->name, "tokenizer.json (%s%s%s)", t->model == TOK_MODEL_UNIGRAM ? "Unigram" : "BPE",
                 t->pretok == TOK_PRE_BYTELEVEL || t->pre_byte_level ? ", ByteLevel" : "",
                 t->byte_fallback ? ", byte fallback" : "");
    cJSON_Delete(root);
    free(data);
    free(path);
    return rc;
}
