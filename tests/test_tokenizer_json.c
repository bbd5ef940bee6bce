/* test_tokenizer_json.c - tokenizer.json components against HF `tokenizers`: one small file per
 * component family (normalizers, Split behaviours, Digits, Punctuation, Whitespace(Split),
 * Metaspace, ByteLevel, BPE with byte fallback / unk / ignore_merges, Unigram, WordPiece, and
 * their decoders) plus Llama-3- and Qwen2-style files, all written by
 * tools/make_tokenizer_json_fixtures.py. Each must give HF's ids byte for byte on the tricky
 * strings and on a WikiText-2 test slice (count + sha256), and decode them as HF does; with
 * special-token text read as text by default and as special tokens with FTQ_ENCODE_PARSE_SPECIAL. */
#include <stdlib.h>
#include <string.h>

#include "include/ftq.h"
#include "tests/sha256.h"
#include "tests/test_util.h"

static void text_sha256(const char *p, size_t n, char out[65])
{
    sha256 s;
    sha256_init(&s);
    sha256_update(&s, p, n);
    sha256_hex(&s, out);
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* The slice of the corpus file the script used (cut at the last newline before `bytes`). */
static char *read_slice(const cJSON *sl, size_t *n)
{
    char *data = NULL;
    size_t len = 0;
    if (ftq_read_file(shared_path(jget(sl, "file")->valuestring), &data, &len) != FTQ_OK)
        return NULL;
    size_t want = (size_t)jget(sl, "bytes")->valuedouble;
    if (want > len) {
        free(data);
        return NULL;
    }
    char hex[65];
    text_sha256(data, want, hex);
    CU_ASSERT_STRING_EQUAL(hex, jget(sl, "sha256")->valuestring);
    *n = want;
    return data;
}

/* One tokenizer: every string (ids and decoded text) and the slice. Returns the mismatches. */
static int check_tokenizer(const char *root, const char *name, const cJSON *strings, const cJSON *res, const char *slice,
                           size_t slen, int hf)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/%s/%s", root, name);
    ftq_tokenizer *t = NULL;
    if (ftq_tokenizer_load(source_path(rel), &t) != FTQ_OK) {
        fprintf(stderr, "\n  %s: %s\n", name, ftq_last_error());
        return 1;
    }
    int bad = 0;
    const cJSON *s = strings->child, *c = jget(res, "cases")->child;
    for (int k = 0; s && c; s = s->next, c = c->next, k++) {
        const char *text = s->valuestring;
        int32_t *ids = NULL;
        size_t n = 0, ne = 0;
        int32_t *want = json_ints(jget(c, "ids"), &ne);
        /* special-token text as plain text (the default; HF with encode_special_tokens) */
        const cJSON *jt = jget(c, "ids_text");
        size_t nt = 0, ntw = 0;
        int32_t *idt = NULL, *wt = json_ints(jt ? jt : jget(c, "ids"), &ntw);
        int rt = ftq_tokenizer_encode(t, text, strlen(text), 0, &idt, &nt);
        if (rt || nt != ntw || (nt && memcmp(idt, wt, nt * sizeof *idt) != 0)) {
            if (bad < 6)
                fprintf(stderr, "\n  %s string %d (\"%.40s\") as text: rc %d, %zu ids, expected %zu", name, k, text,
                        rt, nt, ntw);
            bad++;
        }
        free(idt);
        free(wt);
        /* --parse-special: HF's default (sentencepiece has only the text reading) */
        int rc = ftq_tokenizer_encode_flags(t, text, strlen(text), hf ? FTQ_ENCODE_PARSE_SPECIAL : 0u, &ids, &n);
        if (rc || n != ne || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
            if (bad < 6) {
                fprintf(stderr, "\n  %s string %d (\"%.40s\"): rc %d, %zu ids, expected %zu:", name, k, text, rc, n, ne);
                for (size_t i = 0; i < n && i < 24; i++)
                    fprintf(stderr, " %d%s", ids[i], i < ne && ids[i] == want[i] ? "" : "*");
            }
            bad++;
        } else {
            char *dec = NULL;
            size_t dn = 0;
            const char *wd = cJSON_IsString(jget(c, "decoded")) ? jget(c, "decoded")->valuestring : NULL;
            rc = ftq_tokenizer_decode(t, ids, n, 0, &dec, &dn);
            if (rc || (wd && (dn != strlen(wd) || memcmp(dec, wd, dn) != 0))) {
                if (bad < 6)
                    fprintf(stderr, "\n  %s string %d decodes to \"%.60s\", expected \"%.60s\"", name, k,
                            dec ? dec : "", wd ? wd : "");
                bad++;
            }
            free(dec);
        }
        free(ids);
        free(want);
    }
    const cJSON *sl = jget(res, "slice");
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = ftq_tokenizer_encode(t, slice, slen, 0, &ids, &n);
    char hex[65] = "";
    if (!rc)
        sha256_ids_hex(ids, n, hex);
    if (rc || n != (size_t)jget(sl, "count")->valuedouble || strcmp(hex, jget(sl, "sha256")->valuestring) != 0) {
        fprintf(stderr, "\n  %s slice: rc %d, %zu ids (expected %d), sha256 %s", name, rc, n,
                (int)jget(sl, "count")->valuedouble, hex);
        bad++;
    } else {
        char *dec = NULL;
        size_t dn = 0;
        if (ftq_tokenizer_decode(t, ids, n, 0, &dec, &dn) == FTQ_OK) {
            text_sha256(dec, dn, hex);
            if (cJSON_IsString(jget(sl, "decoded_sha256")) && strcmp(hex, jget(sl, "decoded_sha256")->valuestring) != 0) {
                fprintf(stderr, "\n  %s slice decodes differently from HF", name);
                bad++;
            }
            /* where HF's decode gives the text back, so must ours */
            if (cJSON_IsTrue(jget(sl, "round_trip")) && (dn != slen || memcmp(dec, slice, slen) != 0))
                bad++;
        } else {
            bad++;
        }
        free(dec);
    }
    free(ids);
    ftq_tokenizer_free(t);
    return bad;
}

static cJSON *fixture_of(const char *root)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/%s/expected.json", root);
    cJSON *fx = load_json(source_path(rel));
    CU_ASSERT_PTR_NOT_NULL_FATAL(fx);
    return fx;
}

static cJSON *fixture(void) { return fixture_of("tokenizer_json"); }

static void run_fixture(const char *root, const char *name, int hf)
{
    cJSON *fx = fixture_of(root);
    size_t slen = 0;
    char *slice = read_slice(jget(fx, "slice"), &slen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(slice);
    const cJSON *res = jget(jget(fx, "results"), name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(res);
    ASSERT_INT_EQ(check_tokenizer(root, name, jget(fx, "strings"), res, slice, slen, hf), 0);
    free(slice);
    cJSON_Delete(fx);
}

static void run_one(const char *name) { run_fixture("tokenizer_json", name, 1); }

/* sentencepiece UNIGRAM tokenizer.model files (tools/make_spm_unigram_fixtures.py): float
 * Viterbi, user-defined pieces always chosen, control pieces never matched, byte fallback. */
static void test_spm_unigram_plain(void) { run_fixture("spm_unigram", "plain", 0); }
static void test_spm_unigram_bytes(void) { run_fixture("spm_unigram", "bytes", 0); }

static void test_llama3(void) { run_one("llama3"); }
static void test_qwen2(void) { run_one("qwen2"); }
static void test_digits_bytelevel(void) { run_one("digits_bytelevel"); }
static void test_metaspace_bpe(void) { run_one("metaspace_bpe"); }
static void test_unigram(void) { run_one("unigram"); }
static void test_unigram_bytes(void) { run_one("unigram_bytes"); }
static void test_bpe_unk_punct(void) { run_one("bpe_unk_punct"); }
static void test_wordpiece_split(void) { run_one("wordpiece_split"); }
static void test_bpe_affixes(void) { run_one("bpe_affixes"); }
static void test_split_a(void) { run_one("split_a"); }
static void test_split_b(void) { run_one("split_b"); }
static void test_split_c(void) { run_one("split_c"); }
static void test_split_d(void) { run_one("split_d"); }

/* SmolLM2's tokenizer.json (Sequence[Digits(individual), ByteLevel]) against the shared golden
 * (HF tokenizers on the same file): every case, and WikiText-2 test whole by count and sha256 of
 * the space-joined ids. */
static void test_smollm2_json(void)
{
    cJSON *gold = load_json(shared_path("golden/smollm2/tokenize.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(gold);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load(shared_path("tokenizers/smollm2"), &t));
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), FTQ_TOKENIZER_HF_JSON);
    CU_ASSERT_FALSE(ftq_tokenizer_adds_bos(t));
    const cJSON *c;
    int bad = 0, cases = 0;
    cJSON_ArrayForEach(c, jget(gold, "cases"))
    {
        const char *text = jget(c, "text")->valuestring;
        size_t nw = 0, n = 0;
        int32_t *want = json_ints(jget(c, "ids"), &nw), *ids = NULL;
        ASSERT_OK(ftq_tokenizer_encode(t, text, strlen(text), 1, &ids, &n));
        cases++;
        bad += n != nw || (n && memcmp(ids, want, n * sizeof *ids) != 0);
        free(ids);
        free(want);
    }
    ASSERT_INT_EQ(bad, 0);
    CU_ASSERT(cases >= 80);
    const char *file = "data/wikitext-2-raw/wiki.test.raw";
    const cJSON *wf = jget(jget(gold, "whole_files"), file);
    CU_ASSERT_PTR_NOT_NULL_FATAL(wf);
    char *text = NULL;
    size_t len = 0, n = 0;
    ASSERT_OK(ftq_read_file(shared_path(file), &text, &len));
    int32_t *ids = NULL;
    ASSERT_OK(ftq_tokenizer_encode(t, text, len, 0, &ids, &n));
    ASSERT_INT_EQ(n, jget(wf, "count")->valueint);
    sha256 sh;
    sha256_init(&sh);
    for (size_t i = 0; i < n; i++) {
        char num[16];
        int k = snprintf(num, sizeof num, i ? " %d" : "%d", (int)ids[i]);
        sha256_update(&sh, num, (size_t)k);
    }
    char hex[65];
    sha256_hex(&sh, hex);
    CU_ASSERT_STRING_EQUAL(hex, jget(wf, "sha256_of_space_joined_ids")->valuestring);
    free(ids);
    free(text);
    ftq_tokenizer_free(t);
    cJSON_Delete(gold);
}

/* `ftq tokenize` reads special-token text as text unless --parse-special, says which it did
 * (stderr note, --json "parse_special"), and gives HF's ids either way (encode_special_tokens
 * True / False in the fixture). */
static void test_cli_parse_special(void)
{
    cJSON *fx = fixture();
    const cJSON *strings = jget(fx, "strings"), *s = strings->child;
    const cJSON *c = jget(jget(jget(fx, "results"), "qwen2"), "cases")->child;
    while (s && strstr(s->valuestring, "<|im_start|>") == NULL) {
        s = s->next;
        c = c->next;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(jget(c, "ids_text")); /* the two readings differ */
    char args[4096];
    for (int parse = 0; parse < 2; parse++) {
        const char *path = ftq_path_join(test_tmpdir("tokjson_cli"), "in.txt");
        FILE *fp = fopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
        fputs(s->valuestring, fp);
        fclose(fp);
        snprintf(args, sizeof args, "tokenize -m '%s' -f '%s' --json%s", source_path("tests/fixtures/tokenizer_json/qwen2"),
                 path, parse ? " --parse-special" : "");
        char *out = NULL, *err = NULL;
        CU_ASSERT_EQUAL(ftq_run(args, &out, &err), 0);
        cJSON *j = cJSON_Parse(out ? out : "");
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        size_t n = 0, nw = 0;
        int32_t *ids = json_ints(jget(j, "ids"), &n), *want = json_ints(jget(c, parse ? "ids" : "ids_text"), &nw);
        CU_ASSERT(n == nw && n && memcmp(ids, want, n * sizeof *ids) == 0);
        CU_ASSERT(cJSON_IsBool(jget(j, "parse_special")) && cJSON_IsTrue(jget(j, "parse_special")) == parse);
        ASSERT_INT_EQ(jget(j, "special_texts")->valueint, 2);
        CU_ASSERT(err && strstr(err, parse ? "matched as special tokens" : "read as plain text") != NULL);
        free(ids);
        free(want);
        cJSON_Delete(j);
        free(out);
        free(err);
        free((char *)path);
    }
    cJSON_Delete(fx);
}

/* perplexity, finetune and embed take --parse-special too: perplexity's file tokens follow it. */
static void test_cli_parse_special_data(void)
{
    const char *text = "Once upon a time </s> there was <s> a cat. Once upon a time there was a dog.\n";
    char *path = ftq_path_join(test_tmpdir("tokjson_ppl"), "text.txt");
    FILE *fp = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fputs(text, fp);
    fclose(fp);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load(source_path("datasets/stories260K"), &t));
    int32_t *ids = NULL;
    size_t n_text = 0, n_parsed = 0;
    ASSERT_OK(ftq_tokenizer_encode(t, text, strlen(text), 0, &ids, &n_text));
    free(ids);
    ASSERT_OK(ftq_tokenizer_encode_flags(t, text, strlen(text), FTQ_ENCODE_PARSE_SPECIAL, &ids, &n_parsed));
    free(ids);
    ftq_tokenizer_free(t);
    CU_ASSERT(n_parsed < n_text);
    for (int parse = 0; parse < 2; parse++) {
        char args[4096];
        snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' -c 16 --json%s", source_path("datasets/stories260K"),
                 path, parse ? " --parse-special" : "");
        cJSON *j = ftq_run_json(args);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        ASSERT_INT_EQ(jget(j, "file_tokens")->valueint, parse ? n_parsed : n_text);
        cJSON_Delete(j);
    }
    static const char *const cmds[] = {"finetune", "embed", "generate", "tokenize"};
    for (int k = 0; k < 4; k++) {
        char args[64], *out = NULL, *err = NULL;
        snprintf(args, sizeof args, "%s --help", cmds[k]);
        CU_ASSERT_EQUAL(ftq_run(args, &out, &err), 0);
        CU_ASSERT(out && strstr(out, "--parse-special") != NULL);
        free(out);
        free(err);
    }
    free(path);
}

/* Every tokenizer the script wrote has a test above. */
static void test_all_listed(void)
{
    static const char *const names[] = {"llama3", "qwen2", "digits_bytelevel", "metaspace_bpe", "unigram",
                                        "unigram_bytes", "bpe_unk_punct", "wordpiece_split", "bpe_affixes", "split_a", "split_b",
                                        "split_c", "split_d", NULL};
    cJSON *fx = fixture();
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, jget(fx, "results"))
    {
        int found = 0;
        for (int k = 0; names[k]; k++)
            found |= strcmp(names[k], r->string) == 0;
        CU_ASSERT(found);
        n++;
    }
    ASSERT_INT_EQ(n, 13);
    cJSON_Delete(fx);
}

void test_register_tokenizer_json(void)
{
    static const test_case cases[] = {{"llama3", test_llama3},
                                      {"qwen2", test_qwen2},
                                      {"digits_bytelevel", test_digits_bytelevel},
                                      {"metaspace_bpe", test_metaspace_bpe},
                                      {"unigram", test_unigram},
                                      {"unigram_bytes", test_unigram_bytes},
                                      {"bpe_unk_punct", test_bpe_unk_punct},
                                      {"wordpiece_split", test_wordpiece_split},
                                      {"bpe_affixes", test_bpe_affixes},
                                      {"split_a", test_split_a},
                                      {"split_b", test_split_b},
                                      {"split_c", test_split_c},
                                      {"split_d", test_split_d},
                                      {"all_listed", test_all_listed},
                                      {"smollm2_json", test_smollm2_json},
                                      {"spm_unigram_plain", test_spm_unigram_plain},
                                      {"spm_unigram_bytes", test_spm_unigram_bytes},
                                      {"cli_parse_special", test_cli_parse_special},
                                      {"cli_parse_special_data", test_cli_parse_special_data},
                                      {NULL, NULL}};
    test_add_suite("tokenizer_json", cases);
}
