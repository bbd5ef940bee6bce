/* test_wordpiece.c - BERT WordPiece tokenization against HF: the 82 shared golden strings
 * (tokenize_bert.json, minilm/tokenize.json) from tokenizer.json and from a bare vocab.txt,
 * decoding, whole files (WikiText-2 test, SST-2 dev, TREC test: count + sha256 of the
 * space-joined ids from minilm/tokenize.json), sentence pairs with token types
 * (minilm/outputs.json) and refusal of bad vocab files. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "tests/sha256.h"
#include "tests/test_util.h"

static ftq_tokenizer *load(const char *rel_dir, int kind)
{
    ftq_tokenizer *t = NULL;
    int rc = kind < 0 ? ftq_tokenizer_load(shared_path(rel_dir), &t)
                      : ftq_tokenizer_load_kind(shared_path(rel_dir), (ftq_tokenizer_kind)kind, &t);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  cannot load %s: %s\n", rel_dir, ftq_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, FTQ_OK);
    return t;
}

/* Every golden case: ids with [CLS]/[SEP] (and optionally the decoded text). */
static void check_cases(const char *golden, const char *dir, int kind, int check_decoded)
{
    cJSON *j = load_json(shared_path(golden));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ftq_tokenizer *t = load(dir, kind);
    const cJSON *c;
    int n_cases = 0, bad = 0, bad_dec = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases"))
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        size_t ne = 0, n = 0;
        int32_t *want = json_ints(cJSON_GetObjectItem(c, "ids"), &ne), *got = NULL;
        ASSERT_OK(ftq_tokenizer_encode(t, text, strlen(text), 1, &got, &n));
        n_cases++;
        if (n != ne || memcmp(got, want, n * sizeof *got) != 0) {
            bad++;
            fprintf(stderr, "\n  %s via %s: case '%s': %zu ids, expected %zu", golden, dir,
                    cJSON_GetObjectItem(c, "name")->valuestring, n, ne);
        }
        const cJSON *dec = cJSON_GetObjectItem(c, "decoded");
        if (check_decoded && cJSON_IsString(dec)) {
            char *s = NULL;
            ASSERT_OK(ftq_tokenizer_decode(t, got, n, 1, &s, NULL));
            if (strcmp(s, dec->valuestring) != 0) {
                bad_dec++;
                fprintf(stderr, "\n  decode '%s': got '%s', expected '%s'", cJSON_GetObjectItem(c, "name")->valuestring,
                        s, dec->valuestring);
            }
            free(s);
        }
        free(want);
        free(got);
    }
    ASSERT_INT_EQ(n_cases, 82);
    ASSERT_INT_EQ(bad, 0);
    ASSERT_INT_EQ(bad_dec, 0);
    ftq_tokenizer_free(t);
    cJSON_Delete(j);
}

static void test_golden_bert_base_json(void)
{
    check_cases("golden/tokenize_bert.json", "tokenizers/bert-base-uncased", FTQ_TOKENIZER_HF_JSON, 1);
}

static void test_golden_bert_base_vocab_txt(void)
{
    check_cases("golden/tokenize_bert.json", "tokenizers/bert-base-uncased", FTQ_TOKENIZER_VOCAB_TXT, 1);
}

static void test_golden_minilm(void)
{
    check_cases("golden/minilm/tokenize.json", "models/all-MiniLM-L6-v2", -1, 0);
    check_cases("golden/minilm/tokenize.json", "models/all-MiniLM-L6-v2", FTQ_TOKENIZER_VOCAB_TXT, 0);
}

static void test_kinds_and_names(void)
{
    ftq_tokenizer *t = load("models/all-MiniLM-L6-v2", -1);
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), FTQ_TOKENIZER_HF_JSON);
    CU_ASSERT_STRING_EQUAL(ftq_tokenizer_kind_name(t), "tokenizer.json (WordPiece, uncased)");
    ASSERT_INT_EQ(ftq_tokenizer_vocab_size(t), 30522);
    ASSERT_INT_EQ(ftq_tokenizer_adds_bos(t), 1); /* [CLS] */
    ASSERT_INT_EQ(ftq_tokenizer_adds_eos(t), 1); /* [SEP] */
    CU_ASSERT(ftq_tokenizer_is_special(t, 101) && ftq_tokenizer_is_special(t, 102) && ftq_tokenizer_is_special(t, 0));
    /* special tokens written in the text are matched whole, never lower-cased or split */
    int32_t *ids = NULL;
    size_t n = 0;
    ASSERT_OK(ftq_tokenizer_encode_flags(t, "a [SEP] B", 9, FTQ_ENCODE_PARSE_SPECIAL, &ids, &n));
    ASSERT_INT_EQ(n, 3);
    if (n == 3) {
        ASSERT_INT_EQ(ids[0], 1037);
        ASSERT_INT_EQ(ids[1], 102);
        ASSERT_INT_EQ(ids[2], 1038);
    }
    free(ids);
    /* by default the same text is text: "[SEP]" is lower-cased and split like any other */
    ASSERT_OK(ftq_tokenizer_encode(t, "a [SEP] B", 9, 0, &ids, &n));
    CU_ASSERT(n > 3);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT(ids[i] != 102);
    free(ids);
    ftq_tokenizer_free(t);
}

/* Pair template: [CLS] A [SEP] B [SEP] with token types 0 then 1 (minilm/outputs.json). */
static void test_pair(void)
{
    cJSON *j = load_json(shared_path("golden/minilm/outputs.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *p = cJSON_GetObjectItem(j, "pair");
    const char *a = cJSON_GetObjectItem(p, "text_a")->valuestring, *b = cJSON_GetObjectItem(p, "text_b")->valuestring;
    size_t ne = 0, nt = 0;
    int32_t *want = json_ints(cJSON_GetObjectItem(p, "ids"), &ne);
    int32_t *want_t = json_ints(cJSON_GetObjectItem(p, "token_type_ids"), &nt);
    for (int kind = 0; kind < 2; kind++) {
        ftq_tokenizer *t = load("models/all-MiniLM-L6-v2", kind ? FTQ_TOKENIZER_VOCAB_TXT : FTQ_TOKENIZER_HF_JSON);
        CU_ASSERT(ftq_tokenizer_has_pair_template(t));
        int32_t *ids = NULL, *tt = NULL;
        size_t n = 0;
        ASSERT_OK(ftq_tokenizer_encode_pair(t, a, strlen(a), b, strlen(b), 1, &ids, &tt, &n));
        ASSERT_INT_EQ(n, ne);
        if (n == ne && n == nt) {
            CU_ASSERT(memcmp(ids, want, n * sizeof *ids) == 0);
            CU_ASSERT(memcmp(tt, want_t, n * sizeof *tt) == 0);
        }
        free(ids);
        free(tt);
        ftq_tokenizer_free(t);
    }
    free(want);
    free(want_t);
    cJSON_Delete(j);
}

/* ---- whole files ---------------------------------------------------------------------- */

typedef struct {
    sha256 h;
    size_t count;
} id_hash;

static void hash_ids(id_hash *x, const int32_t *ids, size_t n)
{
    char num[16];
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(num, sizeof num, x->count ? " %ld" : "%ld", (long)ids[i]);
        sha256_update(&x->h, num, (size_t)k);
        x->count++;
    }
}

static void check_file(const cJSON *files, const char *rel, int rows, ftq_tokenizer *t)
{
    const cJSON *g = cJSON_GetObjectItem(files, rel);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(shared_path(rel), &text, &len));
    id_hash x = {.count = 0};
    sha256_init(&x.h);
    int n_rows = 0;
    if (!rows) {
        int32_t *ids = NULL;
        size_t n = 0;
        ASSERT_OK(ftq_tokenizer_encode(t, text, len, 0, &ids, &n));
        hash_ids(&x, ids, n);
        free(ids);
    } else {
        /* one text per line: SST-2's sentence column (after a header line), or TREC's
         * question after the "LABEL:fine " prefix */
        int tsv = strstr(rel, ".tsv") != NULL;
        for (size_t i = 0, line = 0; i < len; line++) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len, a = i, b = e;
            i = e + 1;
            if ((tsv && line == 0) || a == b)
                continue;
            if (tsv) {
                const char *tab = memchr(text + a, '\t', b - a);
                b = tab ? (size_t)(tab - text) : b;
            } else {
                const char *sp = memchr(text + a, ' ', b - a);
                a = sp ? (size_t)(sp - text) + 1 : b;
            }
            int32_t *ids = NULL;
            size_t n = 0;
            ASSERT_OK(ftq_tokenizer_encode(t, text + a, b - a, 1, &ids, &n));
            hash_ids(&x, ids, n);
            free(ids);
            n_rows++;
        }
        ASSERT_INT_EQ(n_rows, cJSON_GetObjectItem(g, "rows")->valueint);
    }
    char hex[65];
    sha256_hex(&x.h, hex);
    ASSERT_INT_EQ(x.count, cJSON_GetObjectItem(g, "count")->valueint);
    const char *want = cJSON_GetObjectItem(g, "sha256_of_space_joined_ids")->valuestring;
    if (strcmp(hex, want) != 0)
        fprintf(stderr, "\n  %s: sha256 %s, expected %s\n", rel, hex, want);
    CU_ASSERT_STRING_EQUAL(hex, want);
    free(text);
}

static void test_whole_files(void)
{
    cJSON *j = load_json(shared_path("golden/minilm/tokenize.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *files = cJSON_GetObjectItem(j, "files");
    for (int kind = 0; kind < 2; kind++) {
        ftq_tokenizer *t = load("models/all-MiniLM-L6-v2", kind ? FTQ_TOKENIZER_VOCAB_TXT : FTQ_TOKENIZER_HF_JSON);
        check_file(files, "data/wikitext-2-raw/wiki.test.raw", 0, t);
        check_file(files, "data/sst2/dev.tsv", 1, t);
        check_file(files, "data/trec/test", 1, t);
        ftq_tokenizer_free(t);
    }
    cJSON_Delete(j);
}

/* ---- configuration and bad files ------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void encode_str(const ftq_tokenizer *t, const char *s, const int32_t *want, size_t nw)
{
    int32_t *ids = NULL;
    size_t n = 0;
    ASSERT_OK(ftq_tokenizer_encode(t, s, strlen(s), 0, &ids, &n));
    int ok = n == nw && memcmp(ids, want, n * sizeof *ids) == 0;
    if (!ok) {
        fprintf(stderr, "\n  '%s' ->", s);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %ld", (long)ids[i]);
    }
    CU_ASSERT(ok);
    free(ids);
}

/* A hand-made cased vocabulary: do_lower_case false keeps case and accents, unknown words
 * become one [UNK], "##" pieces continue a word, punctuation is split off. */
static void test_vocab_txt_config(void)
{
    const char *dir = test_tmpdir("wordpiece_cased");
    write_file(dir, "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nCafé\n!\nCafe\ncafe\n");
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": false}");
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load(dir, &t));
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), FTQ_TOKENIZER_VOCAB_TXT);
    encode_str(t, "unaffable Café!", (const int32_t[]){5, 6, 7, 8, 9}, 5);
    encode_str(t, "unaffablex CAFE", (const int32_t[]){1, 1}, 2);
    ftq_tokenizer_free(t);
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": true}");
    ASSERT_OK(ftq_tokenizer_load(dir, &t));
    encode_str(t, "CAFÉ!!", (const int32_t[]){11, 9, 9}, 3); /* lower-cased and accent stripped */
    ftq_tokenizer_free(t);
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": true, \"strip_accents\": false}");
    ASSERT_OK(ftq_tokenizer_load(dir, &t));
    encode_str(t, "CAFÉ", (const int32_t[]){1}, 1); /* "café" is not in the vocabulary */
    int32_t *ids = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(ftq_tokenizer_encode_pair(t, "un", 2, "un", 2, 1, &ids, NULL, &n), FTQ_OK);
    ASSERT_INT_EQ(n, 5);
    free(ids);
    ftq_tokenizer_free(t);

    /* refusals: no [UNK] in the vocabulary, invalid UTF-8 */
    write_file(dir, "vocab.txt", "[PAD]\n[CLS]\n[SEP]\nword\n");
    CU_ASSERT_EQUAL(ftq_tokenizer_load(dir, &t), FTQ_EFORMAT);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT(strstr(ftq_last_error(), "unk_token") != NULL);
    write_file(dir, "vocab.txt", "[UNK]\n[CLS]\n[SEP]\n\xff\n");
    CU_ASSERT_EQUAL(ftq_tokenizer_load(dir, &t), FTQ_EFORMAT);
    CU_ASSERT(strstr(ftq_last_error(), "invalid utf-8") != NULL);
}

void test_register_wordpiece(void)
{
    static const test_case cases[] = {{"golden_bert_base_json", test_golden_bert_base_json},
                                      {"golden_bert_base_vocab_txt", test_golden_bert_base_vocab_txt},
                                      {"golden_minilm", test_golden_minilm},
                                      {"kinds_and_names", test_kinds_and_names},
                                      {"pair", test_pair},
                                      {"whole_files", test_whole_files},
                                      {"vocab_txt_config", test_vocab_txt_config},
                                      {NULL, NULL}};
    test_add_suite("wordpiece", cases);
}
