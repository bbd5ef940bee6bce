/* wordpiece.c - BERT's tokenizer as HF `tokenizers` defines it: BertNormalizer (clean
 * text, CJK spacing, NFD accent stripping, lowercase), BertPreTokenizer (whitespace + every
 * punctuation char), the WordPiece model (greedy longest match, "##" continuations, [UNK]
 * for a word that does not split or is too long), its decoder, and the bare vocab.txt +
 * tokenizer_config.json loader. Unicode properties come from utf8proc. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"

/* ---- character classes as Rust / tokenizers define them ------------------------- */

/* char::is_whitespace: the White_Space property (tokenizers adds \t \n \r, which it has). */
static int is_ws(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0d);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* is_control: every "Other" category (Cc Cf Cn Co Cs) except \t \n \r. */
static int is_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN ||
           k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CS;
}

/* is_bert_punc: ASCII punctuation (incl. $+<=>^`|~) or a Unicode P* category. */
static int is_punc(uint32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* tokenizers' is_chinese_char (note 0x2B920, where transformers' slow tokenizer has 0x2B820). */
static int is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int wput_cp(ftq_tok_buf *b, uint32_t cp)
{
    char u[4];
    return ftq_tok_buf_put(b, u, (size_t)ftq_utf8_encode(cp, u));
}

/* ---- BertNormalizer -------------------------------------------------------------- */

int ftq_tok_bert_normalize(const ftq_tokenizer *t, const char *s, size_t len, char **out, size_t *out_len)
{
    ftq_tok_buf a = {0}, b = {0};
    int rc = ftq_tok_buf_put(&a, "", 0);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len && !rc;) { /* clean_text, handle_chinese_chars */
        uint32_t c = u[i];
        int k = c < 0x80 ? 1 : ftq_utf8_decode(u + i, len - i, &c);
        if (k <= 0)
            return free(a.p), ftq_set_error(FTQ_EFORMAT, "invalid utf-8 at byte offset %zu", i);
        i += (size_t)k;
        if (t->bert_clean) {
            if (c == 0 || c == 0xfffd || is_control(c))
                continue;
            if (is_ws(c))
                c = ' ';
        }
        if (t->bert_chinese && is_cjk(c)) {
            rc = ftq_tok_buf_put(&a, " ", 1);
            if (!rc)
                rc = wput_cp(&a, c);
            if (!rc)
                rc = ftq_tok_buf_put(&a, " ", 1);
        } else {
            rc = wput_cp(&a, c);
        }
    }
    if (!rc && t->bert_strip_accents && a.n) { /* NFD (with canonical reordering) */
        utf8proc_uint8_t *d = NULL;
        utf8proc_ssize_t dn = utf8proc_map((const utf8proc_uint8_t *)a.p, (utf8proc_ssize_t)a.n, &d,
                                           UTF8PROC_DECOMPOSE);
        if (dn < 0) {
            rc = ftq_set_error(dn == UTF8PROC_ERROR_NOMEM ? FTQ_ENOMEM : FTQ_EFORMAT, "cannot normalize text: %s",
                               utf8proc_errmsg(dn));
        } else {
            free(a.p);
            a.p = (char *)d;
            a.n = a.cap = (size_t)dn;
        }
    }
    if (!rc)
        rc = ftq_tok_buf_put(&b, "", 0);
    u = (const unsigned char *)a.p;
    for (size_t i = 0; i < a.n && !rc;) { /* drop Mn after NFD; char-wise lowercase */
        uint32_t c = u[i];
        int k = c < 0x80 ? 1 : ftq_utf8_decode(u + i, a.n - i, &c);
        i += k > 0 ? (size_t)k : 1;
        if (t->bert_strip_accents && c >= 0x80 && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN)
            continue;
        if (t->bert_lowercase) {
            if (c == 0x130) { /* the one unconditional multi-char lowercase: "i\u0307" */
                rc = ftq_tok_buf_put(&b, "i\xcc\x87", 3);
                continue;
            }
            c = c < 0x80 ? (c >= 'A' && c <= 'Z' ? c + 32 : c) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
        rc = wput_cp(&b, c);
    }
    free(a.p);
    if (rc) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    *out_len = b.n;
    return FTQ_OK;
}

/* ---- WordPiece over one pre-token ------------------------------------------------- */

static int wordpiece_word(const ftq_tokenizer *t, const char *w, size_t n, ftq_tok_buf *scratch, ftq_ivec *out)
{
    size_t nchars = 0;
    for (size_t i = 0; i < n; i += (size_t)ftq_utf8_len((unsigned char)w[i]))
        nchars++;
    if (nchars > (size_t)t->wp_max_chars)
        return ftq_ivec_push(out, t->unk_id);
    size_t mark = out->n;
    for (size_t start = 0; start < n;) {
        size_t end = n;
        if (end - start > t->max_piece_len)
            end = start + t->max_piece_len;
        while (end > start && end < n && ((unsigned char)w[end] & 0xc0) == 0x80)
            end--; /* a character boundary (w[n] may be past the caller's text) */
        int32_t id = -1;
        while (end > start) {
            const char *key = w + start;
            size_t klen = end - start;
            if (start > 0) {
                scratch->n = 0;
                int rc = ftq_tok_buf_put(scratch, t->wp_prefix, t->wp_prefix_len);
                if (rc || (rc = ftq_tok_buf_put(scratch, w + start, end - start)))
                    return rc;
                key = scratch->p;
                klen = scratch->n;
            }
            if (ftq_strmap_get(&t->vocab, key, klen, &id))
                break;
            id = -1;
            do
                end--;
            while (end > start && ((unsigned char)w[end] & 0xc0) == 0x80);
        }
        if (id < 0) { /* the whole word becomes [UNK] */
            out->n = mark;
            return ftq_ivec_push(out, t->unk_id);
        }
        int rc = ftq_ivec_push(out, id);
        if (rc)
            return rc;
        start = end;
    }
    return FTQ_OK;
}

/* BertPreTokenizer (if configured) + WordPiece over normalized text. */
int ftq_tok_wordpiece_encode(const ftq_tokenizer *t, const char *s, size_t len, ftq_ivec *out)
{
    ftq_tok_buf scratch = {0};
    int rc = FTQ_OK;
    if (t->pretok != TOK_PRE_BERT) {
        rc = len ? wordpiece_word(t, s, len, &scratch, out) : FTQ_OK;
        free(scratch.p);
        return rc;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t word = 0;
    for (size_t i = 0; i < len && !rc;) {
        uint32_t c = u[i];
        int k = c < 0x80 ? 1 : ftq_utf8_decode(u + i, len - i, &c);
        if (k <= 0) {
            rc = ftq_set_error(FTQ_EFORMAT, "invalid utf-8 at byte offset %zu", i);
            break;
        }
        int ws = is_ws(c), pu = !ws && is_punc(c);
        if (ws || pu) {
            if (i > word)
                rc = wordpiece_word(t, s + word, i - word, &scratch, out);
            if (!rc && pu)
                rc = wordpiece_word(t, s + i, (size_t)k, &scratch, out);
            word = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (!rc && len > word)
        rc = wordpiece_word(t, s + word, len - word, &scratch, out);
    free(scratch.p);
    return rc;
}

/* ---- WordPiece decoder ------------------------------------------------------------ */

/* One token of tokenizers' WordPiece decoder: the continuation prefix is dropped, any other
 * token after the first gets a leading space. Appended to *out (n_out bytes so far). */
int ftq_tok_wordpiece_decode_token(const ftq_tok_op *op, int first, const char *s, size_t n, char **out,
                                   size_t *n_out)
{
    ftq_tok_buf a = {*out, *n_out, *out ? *n_out + 1 : 0};
    int rc = FTQ_OK;
    if (!first) {
        if (n >= op->alen && memcmp(s, op->a, op->alen) == 0) {
            s += op->alen;
            n -= op->alen;
        } else {
            rc = ftq_tok_buf_put(&a, " ", 1);
        }
    }
    if (!rc)
        rc = ftq_tok_buf_put(&a, s, n);
    *out = a.p;
    *n_out = a.n;
    return rc;
}

/* English cleanup of the decoded text (tokenizers' per-token `cleanup` followed by
 * transformers' clean_up_tokenization over the whole string; the second subsumes the first). */
int ftq_tok_wordpiece_cleanup(const char *s, size_t n, char **out, size_t *out_len)
{
    static const char *const cleanup[][2] = {{" .", "."},   {" ?", "?"},     {" !", "!"},   {" ,", ","},
                                             {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"},
                                             {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    ftq_tok_buf a = {0};
    int rc = ftq_tok_buf_put(&a, s, n);
    for (size_t r = 0; !rc && r < sizeof cleanup / sizeof cleanup[0]; r++) {
        const char *pat = cleanup[r][0], *rep = cleanup[r][1];
        size_t pl = strlen(pat), rl = strlen(rep);
        if (!strstr(a.p, pat))
            continue;
        ftq_tok_buf b = {0};
        rc = ftq_tok_buf_put(&b, "", 0);
        for (size_t i = 0; i < a.n && !rc;) {
            int hit = a.n - i >= pl && memcmp(a.p + i, pat, pl) == 0;
            rc = hit ? ftq_tok_buf_put(&b, rep, rl) : ftq_tok_buf_put(&b, a.p + i, 1);
            i += hit ? pl : 1;
        }
        free(a.p);
        a = b;
    }
    if (rc) {
        free(a.p);
        return rc;
    }
    *out = a.p;
    *out_len = a.n;
    return FTQ_OK;
}

/* ---- loaders ---------------------------------------------------------------------- */

static int set_prefix(ftq_tokenizer *t, const char *p, const char *path)
{
    size_t n = strlen(p);
    if (n >= sizeof t->wp_prefix)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': continuing_subword_prefix '%s' is longer than %zu bytes",
                             path, p, sizeof t->wp_prefix - 1);
    memcpy(t->wp_prefix, p, n + 1);
    t->wp_prefix_len = n;
    return FTQ_OK;
}

static const cJSON *jget(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

/* tokenizer.json "model": {"type": "WordPiece", "vocab": {...}, "unk_token", ...}. */
int ftq_tok_wordpiece_from_json(ftq_tokenizer *t, const cJSON *m, const char *path)
{
    const cJSON *vocab = jget(m, "vocab"), *it;
    if (!cJSON_IsObject(vocab) || !vocab->child)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': model.vocab is missing or empty", path);
    t->model = TOK_MODEL_WORDPIECE;
    cJSON_ArrayForEach(it, vocab)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) ||
            it->valuedouble != (double)(int32_t)it->valuedouble)
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': vocab entry '%s' has no valid id", path, it->string);
        int rc = ftq_tok_add_vocab(t, (int32_t)it->valuedouble, it->string, strlen(it->string));
        if (rc)
            return rc;
    }
    const cJSON *unk = jget(m, "unk_token"), *pre = jget(m, "continuing_subword_prefix"),
                *mx = jget(m, "max_input_chars_per_word");
    const char *unk_s = cJSON_IsString(unk) ? unk->valuestring : "[UNK]";
    if (!ftq_strmap_get(&t->vocab, unk_s, strlen(unk_s), &t->unk_id))
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': unk_token '%s' is not in the vocabulary", path, unk_s);
    int rc = set_prefix(t, cJSON_IsString(pre) ? pre->valuestring : "##", path);
    if (rc)
        return rc;
    t->wp_max_chars = 100;
    if (cJSON_IsNumber(mx)) {
        if (mx->valuedouble < 1 || mx->valuedouble > 1e9)
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': max_input_chars_per_word %g is out of range", path,
                                 mx->valuedouble);
        t->wp_max_chars = (int)mx->valuedouble;
    }
    return FTQ_OK;
}

/* tokenizer.json "normalizer": {"type": "BertNormalizer", ...}; strip_accents null follows
 * lowercase. */
int ftq_tok_bert_normalizer_from_json(ftq_tokenizer *t, const cJSON *n)
{
    const cJSON *v;
    t->norm = TOK_NORM_BERT;
    t->bert_clean = !cJSON_IsFalse(jget(n, "clean_text"));
    t->bert_chinese = !cJSON_IsFalse(jget(n, "handle_chinese_chars"));
    t->bert_lowercase = !cJSON_IsFalse(jget(n, "lowercase"));
    v = jget(n, "strip_accents");
    t->bert_strip_accents = cJSON_IsBool(v) ? cJSON_IsTrue(v) : t->bert_lowercase;
    return FTQ_OK;
}

/* Special-token text from tokenizer_config.json: a string or {"content": ...}. */
static const char *cfg_token(const cJSON *cfg, const char *key, const char *dflt)
{
    const cJSON *v = jget(cfg, key);
    if (cJSON_IsObject(v))
        v = jget(v, "content");
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* vocab.txt (one token per line, id = line number) + tokenizer_config.json, as
 * transformers converts a BertTokenizer to its fast form. */
int ftq_tok_load_vocab_txt(ftq_tokenizer *t, const char *dir)
{
    char *path = ftq_path_join(dir, "vocab.txt"), *cpath = ftq_path_join(dir, "tokenizer_config.json");
    char *data = NULL, *cdata = NULL;
    size_t size = 0, csize = 0;
    cJSON *cfg = NULL;
    int rc = path && cpath ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc)
        rc = ftq_is_file(path) ? ftq_read_file_max(path, FTQ_MAX_TOKENIZER_BYTES, &data, &size)
                               : ftq_set_error(FTQ_ENOTFOUND, "cannot load tokenizer: '%s' not found", path);
    if (!rc && ftq_is_file(cpath) && !(rc = ftq_read_file_max(cpath, FTQ_MAX_CONFIG_BYTES, &cdata, &csize))) {
        cfg = cJSON_ParseWithLength(cdata, csize);
        if (!cJSON_IsObject(cfg))
            rc = ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': not a json object", cpath);
    }
    if (!rc && ftq_utf8_invalid_offset(data, size) != size)
        rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': invalid utf-8 at byte offset %zu", path,
                           ftq_utf8_invalid_offset(data, size));
    /* one id per line: the lines the file holds bound the ids */
    size_t lines = 1;
    for (size_t i = 0; !rc && i < size; i++)
        lines += data[i] == '\n';
    if (!rc)
        rc = ftq_tok_allow_ids(t, path, lines);
    int32_t id = 0;
    for (size_t i = 0; !rc && i < size; id++) {
        const char *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        if (id >= (1 << 24)) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': more than 2^24 tokens", path);
            break;
        }
        /* a repeated token keeps its last id, as transformers' load_vocab does */
        if (!(rc = ftq_tok_set_piece(t, id, data + i, e - i)))
            rc = ftq_strmap_put(&t->vocab, data + i, e - i, id);
        i = e + 1;
    }
    if (!rc && id == 0)
        rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': empty vocabulary", path);
    t->model = TOK_MODEL_WORDPIECE;
    t->norm = TOK_NORM_BERT;
    t->pretok = TOK_PRE_BERT;
    t->wp_max_chars = 100;
    if (!rc)
        rc = set_prefix(t, "##", path);
    const cJSON *v;
    t->bert_clean = 1;
    t->bert_chinese = !cJSON_IsFalse(jget(cfg, "tokenize_chinese_chars"));
    t->bert_lowercase = !cJSON_IsFalse(jget(cfg, "do_lower_case"));
    v = jget(cfg, "strip_accents");
    t->bert_strip_accents = cJSON_IsBool(v) ? cJSON_IsTrue(v) : t->bert_lowercase;
    static const char *const keys[] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
    static const char *const dflt[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    int32_t ids[5];
    for (int k = 0; k < 5 && !rc; k++) {
        const char *s = cfg_token(cfg, keys[k], dflt[k]);
        if (!ftq_strmap_get(&t->vocab, s, strlen(s), &ids[k])) {
            if (k == 0 || k == 4) { /* [PAD]/[MASK] may be absent */
                ids[k] = -1;
                continue;
            }
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': %s '%s' is not in the vocabulary", path, keys[k], s);
            break;
        }
        rc = ftq_tok_add_added(t, ids[k], s, 1, 0, 0, 0, 0);
    }
    if (!rc) {
        t->unk_id = ids[1];
        t->decoder = TOK_DEC_CHAIN;
        ftq_tok_op op = {.op = TOK_DEC_WORDPIECE, .start = !cJSON_IsFalse(jget(cfg, "clean_up_tokenization_spaces"))};
        op.a = malloc(3);
        ftq_tok_op *ops = malloc(sizeof *ops);
        if (!op.a || !ops) {
            free(op.a);
            free(ops);
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        } else {
            memcpy(op.a, "##", 3);
            op.alen = 2;
            ops[0] = op;
            t->dec_ops = ops;
            t->n_dec_ops = 1;
        }
    }
    if (!rc) { /* BertProcessing: [CLS] A [SEP] / [CLS] A [SEP] B [SEP] */
        const ftq_tok_tmpl pair[] = {{ids[2], 0}, {FTQ_TMPL_A, 0}, {ids[3], 0}, {FTQ_TMPL_B, 1}, {ids[3], 1}};
        rc = ftq_tok_set_templates(t, pair, 3, pair, 5);
    }
    if (!rc)
        snprintf(t->name, sizeof t->name, "vocab.txt (WordPiece%s)", t->bert_lowercase ? ", uncased" : "");
    cJSON_Delete(cfg);
    free(cdata);
    free(data);
    free(path);
    free(cpath);
    return rc;
}
