/* test_tokenizer.c - tokenizers against Hugging Face / sentencepiece / OpenAI references:
 * the shared golden strings through every loader, whole corpus files (count + SHA-256 of the
 * ids from tests/fixtures/tokenizer, written by tools/make_tokenizer_fixtures.py), added
 * tokens, decode edge cases, and refusal of truncated, corrupt or unsupported files. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"
#include "io/unicode.h"
#include "tests/sha256.h"
#include "tests/test_util.h"

static void test_sha256_known(void)
{
    sha256 s;
    char hex[65];
    sha256_init(&s);
    sha256_update(&s, "abc", 3);
    sha256_hex(&s, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_init(&s);
    sha256_update(&s, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56);
    sha256_hex(&s, hex);
    CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha256_init(&s); /* odd-sized updates across block boundaries */
    for (int i = 0; i < 1000; i += 7)
        sha256_update(&s, "aaaaaaa", i + 7 <= 1000 ? 7 : (size_t)(1000 - i));
    sha256_hex(&s, hex);
    CU_ASSERT_STRING_EQUAL(hex, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

/* ---- helpers --------------------------------------------------------------------- */

static const char *GPT2_DIR = "tokenizers/gpt2";
static const char *LLAMA2_DIR = "tokenizers/llama2";
static const char *STORIES_DIR = "models/stories260K";

static ftq_tokenizer *load_kind(const char *rel_dir, ftq_tokenizer_kind kind)
{
    ftq_tokenizer *t = NULL;
    int rc = ftq_tokenizer_load_kind(shared_path(rel_dir), kind, &t);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  cannot load %s kind %d: %s\n", rel_dir, (int)kind, ftq_last_error());
    CU_ASSERT_EQUAL(rc, FTQ_OK);
    return t;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int32_t *v, size_t n)
{
    fprintf(stderr, "    %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Encode `text` and compare with a JSON id array; prints the case on mismatch. */
static int check_encode(const ftq_tokenizer *t, const char *what, const char *text, int add_special,
                        const cJSON *expected)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = ftq_tokenizer_encode(t, text, strlen(text), add_special, &ids, &n);
    size_t ne = 0;
    int32_t *exp = json_ints(expected, &ne);
    int ok = rc == FTQ_OK && ids_equal(ids, n, exp, ne);
    if (!ok) {
        fprintf(stderr, "\n  [%s] %s: encode mismatch (add_special=%d, rc %d %s)\n", ftq_tokenizer_kind_name(t), what,
                add_special, rc, rc ? ftq_last_error() : "");
        print_ids("expected", exp, ne);
        print_ids("got     ", ids, n);
    }
    free(ids);
    free(exp);
    return ok;
}

static int check_decode(const ftq_tokenizer *t, const char *what, const cJSON *ids_json, int skip,
                        const char *expected)
{
    size_t n = 0;
    int32_t *ids = json_ints(ids_json, &n);
    char *text = NULL;
    size_t len = 0;
    int rc = ftq_tokenizer_decode(t, ids, n, skip, &text, &len);
    int ok = rc == FTQ_OK && len == strlen(expected) && memcmp(text, expected, len) == 0;
    if (!ok) {
        fprintf(stderr, "\n  [%s] %s: decode(skip_special=%d) = \"%s\" (rc %d), expected \"%s\"\n",
                ftq_tokenizer_kind_name(t), what, skip, text ? text : "", rc, expected);
        print_ids("ids", ids, n);
    }
    free(ids);
    free(text);
    return ok;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *jget(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static void expect_error(int rc, int want, const char *needle);

/* ---- golden strings -------------------------------------------------------------- */

static void run_golden(const char *golden, const char *dir, ftq_tokenizer_kind kind)
{
    cJSON *g = load_json(shared_path(golden));
    ftq_tokenizer *t = load_kind(dir, kind);
    if (!g || !t) {
        cJSON_Delete(g);
        ftq_tokenizer_free(t);
        return;
    }
    int bad = 0, cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(g, "cases"))
    {
        const char *name = jstr(c, "name"), *text = jstr(c, "text"), *decoded = jstr(c, "decoded");
        cases++;
        bad += !check_encode(t, name, text, 0, jget(c, "ids"));
        if (jget(c, "ids_with_bos"))
            bad += !check_encode(t, name, text, 1, jget(c, "ids_with_bos"));
        else
            bad += !check_encode(t, name, text, 1, jget(c, "ids")); /* GPT-2 adds nothing */
        bad += !check_decode(t, name, jget(c, "ids"), 1, decoded);
    }
    ASSERT_INT_EQ(cases, 82);
    ASSERT_INT_EQ(bad, 0);
    ftq_tokenizer_free(t);
    cJSON_Delete(g);
}

static void test_golden_gpt2_json(void) { run_golden("golden/tokenize_gpt2.json", GPT2_DIR, FTQ_TOKENIZER_HF_JSON); }
static void test_golden_gpt2_files(void)
{
    run_golden("golden/tokenize_gpt2.json", GPT2_DIR, FTQ_TOKENIZER_GPT2_FILES);
}
static void test_golden_llama2_spm(void) { run_golden("golden/tokenize_llama2.json", LLAMA2_DIR, FTQ_TOKENIZER_SPM); }
static void test_golden_llama2_json(void)
{
    run_golden("golden/tokenize_llama2.json", LLAMA2_DIR, FTQ_TOKENIZER_HF_JSON);
}
static void test_golden_stories_spm(void)
{
    run_golden("golden/tokenize_stories260K.json", STORIES_DIR, FTQ_TOKENIZER_SPM);
}
static void test_golden_stories_json(void)
{
    run_golden("golden/tokenize_stories260K.json", STORIES_DIR, FTQ_TOKENIZER_HF_JSON);
}

/* The scanner's pieces equal the regex pieces recorded in the GPT-2 golden file. */
static void test_gpt2_pretokens(void)
{
    cJSON *g = load_json(shared_path("golden/tokenize_gpt2.json"));
    if (!g)
        return;
    int bad = 0, cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(g, "cases"))
    {
        const char *text = jstr(c, "text");
        size_t len = strlen(text), p = 0;
        cases += jget(c, "pretokens") != NULL;
        const cJSON *pt;
        cJSON_ArrayForEach(pt, jget(c, "pretokens"))
        {
            size_t e = p < len ? ftq_gpt2_pretoken_end((const unsigned char *)text, len, p) : p;
            if (e - p != strlen(pt->valuestring) || memcmp(text + p, pt->valuestring, e - p) != 0) {
                fprintf(stderr, "\n  %s: pretoken at %zu is \"%.*s\", expected \"%s\"\n", jstr(c, "name"), p,
                        (int)(e - p), text + p, pt->valuestring);
                bad++;
                break;
            }
            p = e;
        }
        if (p != len && !bad) {
            fprintf(stderr, "\n  %s: scanner left %zu bytes\n", jstr(c, "name"), len - p);
            bad++;
        }
    }
    ASSERT_INT_EQ(cases, 82); /* every case has its pretokens: an empty list must not pass */
    ASSERT_INT_EQ(bad, 0);
    cJSON_Delete(g);
}

/* \s+(?!\S) and the other alternatives on hand-made strings. */
static void test_gpt2_regex_cases(void)
{
    static const struct {
        const char *text;
        const char *pieces[8];
    } cases[] = {
        {"a  b", {"a", " ", " b"}},
        {"a \nb", {"a", " ", "\n", "b"}},
        {"a\n\nb", {"a", "\n", "\n", "b"}},
        {"a \t b", {"a", " \t", " b"}},
        {"x   ", {"x", "   "}},
        {"don't'S 's", {"don", "'t", "'", "S", " '", "s"}},
        {"I'll we've 're'd", {"I", "'ll", " we", "'ve", " '", "re", "'d"}},
        {"$12.5 abc", {"$", "12", ".", "5", " abc"}},
        {" !!x", {" !!", "x"}},
        {"\xc2\xa0" "a", {"\xc2\xa0", "a"}},          /* NBSP is \s, single before non-space */
        {"a \xe3\x80\x80 b", {"a", " \xe3\x80\x80", " b"}}, /* ideographic space */
        {"\xd9\xa3\xd9\xa4x", {"\xd9\xa3\xd9\xa4", "x"}},  /* Arabic-Indic digits are \p{N} */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].text;
        size_t len = strlen(s), p = 0;
        for (int k = 0; cases[i].pieces[k]; k++) {
            size_t e = ftq_gpt2_pretoken_end((const unsigned char *)s, len, p);
            if (e - p != strlen(cases[i].pieces[k]) || memcmp(s + p, cases[i].pieces[k], e - p) != 0) {
                fprintf(stderr, "\n  \"%s\" piece %d: \"%.*s\", expected \"%s\"\n", s, k, (int)(e - p), s + p,
                        cases[i].pieces[k]);
                CU_FAIL("gpt2 pre-token");
                break;
            }
            p = e;
        }
        ASSERT_INT_EQ(p, len);
    }
}

static void test_unicode_classes(void)
{
    CU_ASSERT(ftq_unicode_is_letter('a') && ftq_unicode_is_letter(0xe9) && ftq_unicode_is_letter(0x4e2d));
    CU_ASSERT(!ftq_unicode_is_letter('1') && !ftq_unicode_is_letter(0x301) && !ftq_unicode_is_letter(0x1f600));
    CU_ASSERT(ftq_unicode_is_number(0x663) && ftq_unicode_is_number(0xbd) && ftq_unicode_is_number(0x2167));
    CU_ASSERT(ftq_unicode_is_space(0x85) && ftq_unicode_is_space(0x3000) && ftq_unicode_is_space(0x2029));
    CU_ASSERT(!ftq_unicode_is_space(0x200b) && !ftq_unicode_is_space(0x1c) && !ftq_unicode_is_space(0xfeff));
    /* the inline ASCII fast paths agree with utf8proc's categories */
    int bad = 0;
    for (uint32_t cp = 0; cp < 0x80; cp++)
        bad += ftq_unicode_is_letter(cp) != ftq_unicode_letter_cp(cp) ||
               ftq_unicode_is_number(cp) != ftq_unicode_number_cp(cp) ||
               ftq_unicode_is_space(cp) != ftq_unicode_space_cp(cp);
    ASSERT_INT_EQ(bad, 0);
}

/* ---- whole files ----------------------------------------------------------------- */

static const char *const WHOLE_FILES[] = {"data/wikitext-2-raw/wiki.test.raw", "data/tinystories/tinystories_sample.txt",
                                          "data/tinyshakespeare/input.txt"};

static const cJSON *fixture_for(const cJSON *fx, const char *tok, const char *file)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, jget(fx, "results"))
    {
        const char *a = jstr(r, "tokenizer"), *b = jstr(r, "file");
        if (a && b && strcmp(a, tok) == 0 && strcmp(b, file) == 0)
            return r;
    }
    return NULL;
}

/* counts quoted in shared/golden/logs/verify_whole_file.txt (sentencepiece) */
static long verify_log_count(const char *tok, const char *file)
{
    static const struct {
        const char *tok, *file;
        long n;
    } log[] = {
        {"stories260K", "data/tinystories/tinystories_sample.txt", 100707},
        {"stories260K", "data/wikitext-2-raw/wiki.test.raw", 809289},
        {"stories260K", "data/tinyshakespeare/input.txt", 693363},
        {"llama2", "data/tinystories/tinystories_sample.txt", 52342},
        {"llama2", "data/wikitext-2-raw/wiki.test.raw", 335687},
        {"llama2", "data/tinyshakespeare/input.txt", 368633},
    };
    for (size_t i = 0; i < sizeof log / sizeof log[0]; i++)
        if (strcmp(log[i].tok, tok) == 0 && strcmp(log[i].file, file) == 0)
            return log[i].n;
    return -1;
}

static void run_whole_files(const char *tok_name, const char *dir, ftq_tokenizer_kind k1, ftq_tokenizer_kind k2)
{
    cJSON *fx = load_json(source_path("tests/fixtures/tokenizer/whole_files.json"));
    ftq_tokenizer *t1 = load_kind(dir, k1), *t2 = load_kind(dir, k2);
    if (!fx || !t1 || !t2)
        goto done;
    for (size_t f = 0; f < sizeof WHOLE_FILES / sizeof WHOLE_FILES[0]; f++) {
        char *text = NULL;
        size_t len = 0;
        ASSERT_OK(ftq_read_file(shared_path(WHOLE_FILES[f]), &text, &len));
        const cJSON *exp = fixture_for(fx, tok_name, WHOLE_FILES[f]);
        CU_ASSERT_PTR_NOT_NULL(exp);
        sha256 fs;
        char fhex[65];
        sha256_init(&fs);
        sha256_update(&fs, text, len);
        sha256_hex(&fs, fhex);
        const char *want_hex = jstr(jget(fx, "file_sha256"), WHOLE_FILES[f]);
        if (!want_hex || strcmp(fhex, want_hex) != 0) {
            fprintf(stderr, "\n  %s changed (sha256 %s): the fixture no longer describes it\n", WHOLE_FILES[f], fhex);
            CU_FAIL("corpus file differs from the one the fixture was made from");
        }
        int32_t *ids[2] = {NULL, NULL};
        size_t n[2] = {0, 0};
        ftq_tokenizer *ts[2] = {t1, t2};
        for (int k = 0; k < 2; k++) {
            /* encoding speed is measured by `ftq_bench tokenize`, never asserted here */
            int rc = ftq_tokenizer_encode(ts[k], text, len, 0, &ids[k], &n[k]);
            if (rc)
                fprintf(stderr, "\n  %s\n", ftq_last_error());
            CU_ASSERT_EQUAL(rc, FTQ_OK);
            fprintf(stderr, "\n    %-11s %-40s %-48s %7zu tokens", tok_name, WHOLE_FILES[f],
                    ftq_tokenizer_kind_name(ts[k]), n[k]);
            char hex[65];
            sha256_ids_hex(ids[k], n[k], hex);
            if (exp) {
                ASSERT_INT_EQ(n[k], (long long)cJSON_GetNumberValue(jget(exp, "count")));
                if (strcmp(hex, jstr(exp, "sha256")) != 0) {
                    fprintf(stderr, "\n  %s %s: sha256 %s, expected %s\n", tok_name, WHOLE_FILES[f], hex,
                            jstr(exp, "sha256"));
                    size_t nf = 0;
                    int32_t *first = json_ints(jget(exp, "first_ids"), &nf);
                    print_ids("expected first", first, nf);
                    print_ids("got first     ", ids[k], n[k] < nf ? n[k] : nf);
                    free(first);
                    CU_FAIL("whole-file ids differ from the reference");
                }
            }
            long logged = verify_log_count(tok_name, WHOLE_FILES[f]);
            if (logged >= 0)
                ASSERT_INT_EQ(n[k], logged);
            char *back = NULL;
            size_t blen = 0;
            ASSERT_OK(ftq_tokenizer_decode(ts[k], ids[k], n[k], 1, &back, &blen));
            CU_ASSERT(blen == len && memcmp(back, text, len) == 0);
            free(back);
        }
        CU_ASSERT(ids_equal(ids[0], n[0], ids[1], n[1]));
        free(ids[0]);
        free(ids[1]);
        free(text);
    }
    fprintf(stderr, "\n");
done:
    ftq_tokenizer_free(t1);
    ftq_tokenizer_free(t2);
    cJSON_Delete(fx);
}

static void test_whole_files_gpt2(void)
{
    run_whole_files("gpt2", GPT2_DIR, FTQ_TOKENIZER_HF_JSON, FTQ_TOKENIZER_GPT2_FILES);
}
static void test_whole_files_llama2(void)
{
    run_whole_files("llama2", LLAMA2_DIR, FTQ_TOKENIZER_SPM, FTQ_TOKENIZER_HF_JSON);
}
static void test_whole_files_stories(void)
{
    run_whole_files("stories260K", STORIES_DIR, FTQ_TOKENIZER_SPM, FTQ_TOKENIZER_HF_JSON);
}

/* ---- special / added tokens and decode edge cases (HF tokenizers fixtures) ------- */

static const char *dir_of(const char *tok)
{
    return strcmp(tok, "gpt2") == 0 ? GPT2_DIR : strcmp(tok, "llama2") == 0 ? LLAMA2_DIR : STORIES_DIR;
}

static void test_added_tokens(void)
{
    cJSON *fx = load_json(source_path("tests/fixtures/tokenizer/special_cases.json"));
    if (!fx)
        return;
    static const ftq_tokenizer_kind kinds[] = {FTQ_TOKENIZER_HF_JSON, FTQ_TOKENIZER_SPM, FTQ_TOKENIZER_GPT2_FILES};
    int bad = 0, checked = 0;
    for (int k = 0; k < 3; k++) {
        const char *last = "";
        ftq_tokenizer *t = NULL;
        const cJSON *c;
        cJSON_ArrayForEach(c, jget(fx, "encode"))
        {
            const char *tok = jstr(c, "tokenizer");
            if ((kinds[k] == FTQ_TOKENIZER_SPM) == (strcmp(tok, "gpt2") == 0) && kinds[k] != FTQ_TOKENIZER_HF_JSON)
                continue; /* gpt2 has no tokenizer.model, llama has no vocab.json */
            if (strcmp(tok, last) != 0) {
                ftq_tokenizer_free(t);
                t = load_kind(dir_of(tok), kinds[k]);
                ftq_tokenizer_set_parse_special(t, 1); /* the fixtures are HF's default */
                last = tok;
            }
            if (!t)
                break;
            bad += !check_encode(t, jstr(c, "text"), jstr(c, "text"), 0, jget(c, "ids"));
            bad += !check_encode(t, jstr(c, "text"), jstr(c, "text"), 1, jget(c, "ids_special"));
            checked++;
        }
        ftq_tokenizer_free(t);
    }
    ASSERT_INT_EQ(checked, 20 + 14 + 6);
    ASSERT_INT_EQ(bad, 0);
    cJSON_Delete(fx);

    /* the same behaviour spelled out: special-token text is text unless parsing is asked for */
    ftq_tokenizer *g = load_kind(GPT2_DIR, FTQ_TOKENIZER_HF_JSON), *l = load_kind(LLAMA2_DIR, FTQ_TOKENIZER_SPM);
    int32_t *ids = NULL;
    size_t n = 0;
    if (g) {
        const int32_t want[] = {15496, 50256, 6894};
        ASSERT_OK(ftq_tokenizer_encode_flags(g, "Hello<|endoftext|>world", 23, FTQ_ENCODE_PARSE_SPECIAL, &ids, &n));
        CU_ASSERT(ids_equal(ids, n, want, 3));
        free(ids);
        /* as text: OpenAI's encoder gives "Hello" "<" "|" "end" "of" "text" "|" ">" "world" */
        const int32_t want_text[] = {15496, 27, 91, 437, 1659, 5239, 91, 29, 6894};
        ASSERT_OK(ftq_tokenizer_encode(g, "Hello<|endoftext|>world", 23, 0, &ids, &n));
        CU_ASSERT(ids_equal(ids, n, want_text, 9));
        free(ids);
        CU_ASSERT_FALSE(ftq_tokenizer_parses_special(g));
        ftq_tokenizer_set_parse_special(g, 1);
        CU_ASSERT(ftq_tokenizer_parses_special(g));
        ASSERT_OK(ftq_tokenizer_encode(g, "Hello<|endoftext|>world", 23, 0, &ids, &n));
        CU_ASSERT(ids_equal(ids, n, want, 3));
        free(ids);
    }
    if (l) {
        const int32_t want[] = {1, 15043, 2, 3186};
        ASSERT_OK(ftq_tokenizer_encode_flags(l, "Hello</s>world", 14, FTQ_ENCODE_ADD_SPECIAL | FTQ_ENCODE_PARSE_SPECIAL,
                                             &ids, &n));
        CU_ASSERT(ids_equal(ids, n, want, 4));
        free(ids);
        ASSERT_OK(ftq_tokenizer_encode(l, "Hello</s>world", 14, 1, &ids, &n));
        int has_eos = 0;
        for (size_t i = 0; i < n; i++)
            has_eos |= ids[i] == 2;
        CU_ASSERT(n > 4 && !has_eos); /* sentencepiece reads "</s>" in text as characters */
        free(ids);
    }
    ftq_tokenizer_free(g);
    ftq_tokenizer_free(l);
}

static void test_decode_cases(void)
{
    cJSON *fx = load_json(source_path("tests/fixtures/tokenizer/special_cases.json"));
    if (!fx)
        return;
    int bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(fx, "decode"))
    {
        const char *tok = jstr(c, "tokenizer");
        ftq_tokenizer *t = load_kind(dir_of(tok), FTQ_TOKENIZER_HF_JSON);
        if (!t)
            continue;
        bad += !check_decode(t, tok, jget(c, "ids"), 1, jstr(c, "hf_skip"));
        bad += !check_decode(t, tok, jget(c, "ids"), 0, jstr(c, "hf_keep"));
        ftq_tokenizer_free(t);
        if (strcmp(tok, "gpt2") == 0) {
            t = load_kind(GPT2_DIR, FTQ_TOKENIZER_GPT2_FILES);
            bad += t && !check_decode(t, tok, jget(c, "ids"), 1, jstr(c, "hf_skip"));
        } else {
            t = load_kind(dir_of(tok), FTQ_TOKENIZER_SPM);
            bad += t && !check_decode(t, tok, jget(c, "ids"), 1, jstr(c, "sp"));
        }
        ftq_tokenizer_free(t);
    }
    ASSERT_INT_EQ(bad, 0);
    cJSON_Delete(fx);
}

/* A tokenizer.model variant next to an expected.json written with sentencepiece. */
static void run_spm_fixture(const char *rel_dir, int n_cases)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/expected.json", rel_dir);
    cJSON *fx = load_json(source_path(rel));
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load_kind(source_path(rel_dir), FTQ_TOKENIZER_SPM, &t));
    int bad = 0, n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(fx, "encode"))
    {
        bad += !check_encode(t, jstr(c, "text"), jstr(c, "text"), 0, jget(c, "ids"));
        bad += !check_decode(t, jstr(c, "text"), jget(c, "ids"), 1, jstr(c, "decoded"));
        n++;
    }
    cJSON_ArrayForEach(c, jget(fx, "decode"))
    bad += !check_decode(t, "decode", jget(c, "ids"), 1, jstr(c, "decoded"));
    ASSERT_INT_EQ(n, n_cases);
    ASSERT_INT_EQ(bad, 0);
    ftq_tokenizer_free(t);
    cJSON_Delete(fx);
}

/* sentencepiece remove_extra_whitespaces = true (a variant of the stories260K model). */
static void test_spm_remove_whitespace(void) { run_spm_fixture("tests/fixtures/tokenizer/stories260K_rmws", 13); }

/* USER_DEFINED pieces are cut out whole before merging and never merge further. */
static void test_spm_user_defined(void) { run_spm_fixture("tests/fixtures/tokenizer/stories260K_user", 8); }

/* A literal U+2581 encodes like a space, as in sentencepiece (and decodes as one). */
static void test_spm_literal_space_symbol(void)
{
    ftq_tokenizer *t = load_kind(LLAMA2_DIR, FTQ_TOKENIZER_SPM);
    if (!t)
        return;
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    ASSERT_OK(ftq_tokenizer_encode(t, "a\xe2\x96\x81" "b", 5, 0, &a, &na));
    ASSERT_OK(ftq_tokenizer_encode(t, "a b", 3, 0, &b, &nb));
    CU_ASSERT(ids_equal(a, na, b, nb));
    const int32_t want[] = {263, 289};
    CU_ASSERT(ids_equal(a, na, want, 2));
    free(a);
    free(b);
    ftq_tokenizer_free(t);
}

/* Added tokens with lstrip / rstrip / normalized / single_word (HF tokenizers fixture). */
static void test_added_token_options(void)
{
    cJSON *fx = load_json(source_path("tests/fixtures/tokenizer/stories260K_added/expected.json"));
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load(source_path("tests/fixtures/tokenizer/stories260K_added"), &t));
    ftq_tokenizer_set_parse_special(t, 1); /* the fixtures are HF's default */
    ASSERT_INT_EQ(ftq_tokenizer_vocab_size(t), 517);
    CU_ASSERT(ftq_tokenizer_is_special(t, 512) && !ftq_tokenizer_is_special(t, 513));
    int bad = 0, n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(fx, "encode"))
    {
        const char *text = jstr(c, "text");
        bad += !check_encode(t, text, text, 0, jget(c, "ids"));
        bad += !check_encode(t, text, text, 1, jget(c, "ids_special"));
        bad += !check_decode(t, text, jget(c, "ids"), 1, jstr(c, "decoded_skip"));
        bad += !check_decode(t, text, jget(c, "ids"), 0, jstr(c, "decoded_keep"));
        n++;
    }
    ASSERT_INT_EQ(n, 19);
    ASSERT_INT_EQ(bad, 0);
    ftq_tokenizer_free(t);
    cJSON_Delete(fx);
}

/* Write the shared GPT-2 tokenizer.json with one change into a fresh directory. */
static const char *gpt2_variant(const char *name, void (*change)(cJSON *))
{
    char *data = NULL;
    size_t len = 0;
    if (ftq_read_file(shared_path("tokenizers/gpt2/tokenizer.json"), &data, &len) != FTQ_OK)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(data, len);
    free(data);
    change(j);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    const char *dir = test_tmpdir(name);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *fp = fopen(path, "wb");
    int ok = fp && fputs(out, fp) >= 0;
    if (fp)
        ok &= fclose(fp) == 0;
    free(out);
    return ok ? dir : NULL;
}

static void set_prefix_space(cJSON *j)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "pre_tokenizer"), "add_prefix_space", cJSON_CreateTrue());
}

static void set_ignore_merges(cJSON *j)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "ignore_merges", cJSON_CreateTrue());
}

static void set_split_sequence(cJSON *j)
{
    cJSON_ReplaceItemInObject(
        j, "pre_tokenizer",
        cJSON_Parse("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                    "\"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
                    " \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                    "false, \"trim_offsets\": true, \"use_regex\": false}]}"));
}

static void set_llama3_split(cJSON *j)
{
    cJSON_ReplaceItemInObject(
        j, "pre_tokenizer",
        cJSON_Parse("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+\"}, \"behavior\": "
                    "\"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                    "\"use_regex\": false}]}"));
}

static int run_variant(const char *dir, const cJSON *cases, const char *label)
{
    ftq_tokenizer *t = NULL;
    int bad = 0;
    if (!dir || ftq_tokenizer_load(dir, &t) != FTQ_OK) {
        fprintf(stderr, "\n  %s: %s\n", label, ftq_last_error());
        return 1;
    }
    const cJSON *c;
    cJSON *g = load_json(shared_path("golden/tokenize_gpt2.json"));
    const cJSON *gc = jget(g, "cases")->child;
    cJSON_ArrayForEach(c, cases)
    {
        bad += !check_encode(t, jstr(c, "name"), jstr(gc, "text"), 0, jget(c, "ids"));
        gc = gc->next;
    }
    cJSON_Delete(g);
    ftq_tokenizer_free(t);
    return bad;
}

/* tokenizer.json variants: pre-tokenizer add_prefix_space, ignore_merges, and the
 * Sequence[Split(GPT-2 regex), ByteLevel] spelling of the same pre-tokenizer. */
static void test_gpt2_json_variants(void)
{
    cJSON *fx = load_json(source_path("tests/fixtures/tokenizer/gpt2_variants.json"));
    cJSON *g = load_json(shared_path("golden/tokenize_gpt2.json"));
    const cJSON *v = jget(fx, "variants");
    ASSERT_INT_EQ(run_variant(gpt2_variant("tok_gpt2_aps", set_prefix_space),
                              jget(v, "pre_tokenizer.add_prefix_space=true"), "add_prefix_space"), 0);
    ASSERT_INT_EQ(run_variant(gpt2_variant("tok_gpt2_im", set_ignore_merges), jget(v, "model.ignore_merges=true"),
                              "ignore_merges"), 0);
    CU_ASSERT(cJSON_IsTrue(jget(fx, "split_sequence_equals_golden")));
    ASSERT_INT_EQ(run_variant(gpt2_variant("tok_gpt2_seq", set_split_sequence), jget(g, "cases"), "split"), 0);
    ftq_tokenizer *t = NULL; /* another Split regex runs as a pre-tokenizer stage (tokenizer_json suite) */
    ASSERT_OK(ftq_tokenizer_load(gpt2_variant("tok_gpt2_l3", set_llama3_split), &t));
    ftq_tokenizer_free(t);
    cJSON_Delete(g);
    cJSON_Delete(fx);
}

/* ignore_merges looks a byte-level word up in its byte-level spelling. */
static void test_bytelevel_map(void)
{
    /* OpenAI bytes_to_unicode, literally */
    uint32_t cs[256];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        cs[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    ASSERT_INT_EQ(n, 68);
    int bad = 0;
    for (int b = 0; b < 256; b++)
        bad += ftq_bytelevel_cp((unsigned char)b) != cs[b] || ftq_bytelevel_byte(cs[b]) != b;
    for (uint32_t cp = 0; cp < 1000; cp++) {
        int b = ftq_bytelevel_byte(cp);
        bad += b >= 0 && cs[b] != cp;
    }
    ASSERT_INT_EQ(bad, 0);
    CU_ASSERT_EQUAL(ftq_bytelevel_cp(' '), 0x120); /* 'Ġ' */
}

/* Seeded random strings and id sequences, through every loader of each tokenizer. */
static void test_fuzz_fixture(void)
{
    cJSON *fx = load_json(source_path("tests/fixtures/tokenizer/fuzz.json"));
    if (!fx)
        return;
    static const struct {
        const char *name, *dir;
        ftq_tokenizer_kind kinds[2];
    } toks[] = {
        {"gpt2", "tokenizers/gpt2", {FTQ_TOKENIZER_HF_JSON, FTQ_TOKENIZER_GPT2_FILES}},
        {"llama2", "tokenizers/llama2", {FTQ_TOKENIZER_HF_JSON, FTQ_TOKENIZER_SPM}},
        {"stories260K", "models/stories260K", {FTQ_TOKENIZER_HF_JSON, FTQ_TOKENIZER_SPM}},
    };
    int bad = 0, nenc = 0, ndec = 0;
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        for (int k = 0; k < 2; k++) {
            ftq_tokenizer *t = load_kind(toks[i].dir, toks[i].kinds[k]);
            if (!t)
                continue;
            const cJSON *c;
            cJSON_ArrayForEach(c, jget(fx, "encode"))
            {
                if (strcmp(jstr(c, "tokenizer"), toks[i].name) != 0)
                    continue;
                bad += !check_encode(t, "fuzz", jstr(c, "text"), 0, jget(c, "ids"));
                nenc++;
            }
            cJSON_ArrayForEach(c, jget(fx, "decode"))
            {
                if (strcmp(jstr(c, "tokenizer"), toks[i].name) != 0)
                    continue;
                if (toks[i].kinds[k] == FTQ_TOKENIZER_SPM) {
                    bad += !check_decode(t, "fuzz", jget(c, "ids"), 1, jstr(c, "sp"));
                } else {
                    bad += !check_decode(t, "fuzz", jget(c, "ids"), 1, jstr(c, "hf_skip"));
                    bad += !check_decode(t, "fuzz", jget(c, "ids"), 0, jstr(c, "hf_keep"));
                }
                ndec++;
            }
            ftq_tokenizer_free(t);
        }
    }
    ASSERT_INT_EQ(nenc, 6 * 300);
    ASSERT_INT_EQ(ndec, 6 * 150);
    ASSERT_INT_EQ(bad, 0);
    cJSON_Delete(fx);
}

typedef struct {
    const ftq_tokenizer *t;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    char *back;
    int rc;
} enc_job;

static void *enc_thread(void *arg)
{
    enc_job *j = arg;
    j->rc = ftq_tokenizer_encode(j->t, j->text, j->len, 1, &j->ids, &j->n);
    if (!j->rc)
        j->rc = ftq_tokenizer_decode(j->t, j->ids, j->n, 1, &j->back, NULL);
    return NULL;
}

/* A loaded tokenizer is shared read-only: concurrent calls give the single-thread result. */
static void test_concurrent_encode(void)
{
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(shared_path("data/tinystories/tinystories_sample.txt"), &text, &len));
    static const struct {
        const char *dir;
        ftq_tokenizer_kind kind;
    } toks[] = {{"tokenizers/gpt2", FTQ_TOKENIZER_GPT2_FILES},
                {"tokenizers/llama2", FTQ_TOKENIZER_HF_JSON},
                {"models/stories260K", FTQ_TOKENIZER_SPM}};
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
        ftq_tokenizer *t = load_kind(toks[k].dir, toks[k].kind);
        if (!t)
            continue;
        enum { NT = 4 };
        enc_job jobs[NT + 1];
        pthread_t th[NT];
        for (int i = 0; i <= NT; i++)
            jobs[i] = (enc_job){t, text, len - (size_t)i * 1000, NULL, 0, NULL, 0}; /* different lengths */
        enc_thread(&jobs[NT]);
        for (int i = 0; i < NT; i++)
            CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, enc_thread, &jobs[i]), 0);
        for (int i = 0; i < NT; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i <= NT; i++) {
            enc_job ref = {t, text, jobs[i].len, NULL, 0, NULL, 0};
            if (i < NT)
                enc_thread(&ref);
            else
                ref = jobs[NT];
            CU_ASSERT_EQUAL(jobs[i].rc, FTQ_OK);
            CU_ASSERT(ids_equal(jobs[i].ids, jobs[i].n, ref.ids, ref.n));
            CU_ASSERT(jobs[i].back && strlen(jobs[i].back) == jobs[i].len && memcmp(jobs[i].back, text, jobs[i].len) == 0);
            if (i < NT) {
                free(ref.ids);
                free(ref.back);
            }
        }
        for (int i = 0; i <= NT; i++) {
            free(jobs[i].ids);
            free(jobs[i].back);
        }
        ftq_tokenizer_free(t);
    }
    free(text);
}

/* ---- API surface ----------------------------------------------------------------- */

static void test_properties(void)
{
    static const struct {
        const char *dir;
        ftq_tokenizer_kind kind;
        int vocab, bos, eos, adds_bos;
    } cases[] = {
        {"tokenizers/gpt2", FTQ_TOKENIZER_HF_JSON, 50257, 50256, 50256, 0},
        {"tokenizers/gpt2", FTQ_TOKENIZER_GPT2_FILES, 50257, 50256, 50256, 0},
        {"tokenizers/llama2", FTQ_TOKENIZER_HF_JSON, 32000, 1, 2, 1},
        {"tokenizers/llama2", FTQ_TOKENIZER_SPM, 32000, 1, 2, 1},
        {"models/stories260K", FTQ_TOKENIZER_HF_JSON, 512, 1, 2, 1},
        {"models/stories260K", FTQ_TOKENIZER_SPM, 512, 1, 2, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ftq_tokenizer *t = load_kind(cases[i].dir, cases[i].kind);
        if (!t)
            continue;
        CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), cases[i].kind);
        ASSERT_INT_EQ(ftq_tokenizer_vocab_size(t), cases[i].vocab);
        ASSERT_INT_EQ(ftq_tokenizer_bos(t), cases[i].bos);
        ASSERT_INT_EQ(ftq_tokenizer_eos(t), cases[i].eos);
        ASSERT_INT_EQ(ftq_tokenizer_adds_bos(t), cases[i].adds_bos);
        ASSERT_INT_EQ(ftq_tokenizer_adds_eos(t), 0);
        CU_ASSERT(ftq_tokenizer_is_special(t, cases[i].eos));
        CU_ASSERT(!ftq_tokenizer_is_special(t, 300));
        CU_ASSERT(!ftq_tokenizer_is_special(t, -1));
        CU_ASSERT_PTR_NULL(ftq_tokenizer_piece(t, cases[i].vocab));
        CU_ASSERT(strlen(ftq_tokenizer_kind_name(t)) > 0);
        ftq_tokenizer_free(t);
    }
    ftq_tokenizer *t = load_kind(GPT2_DIR, FTQ_TOKENIZER_HF_JSON);
    if (t) {
        CU_ASSERT_STRING_EQUAL(ftq_tokenizer_piece(t, 995), "\xc4\xa0world"); /* "Ġworld" */
        ftq_tokenizer_free(t);
    }
    t = load_kind(STORIES_DIR, FTQ_TOKENIZER_SPM);
    if (t) {
        CU_ASSERT_STRING_EQUAL(ftq_tokenizer_piece(t, 13), "<0x0A>");
        int32_t *ids = NULL;
        size_t n = 0;
        const int32_t want[] = {1, 403, 407, 261, 378};
        ASSERT_OK(ftq_tokenizer_encode(t, "Once upon a time", 16, 1, &ids, &n));
        CU_ASSERT(ids_equal(ids, n, want, 5));
        free(ids);
        ftq_tokenizer_free(t);
    }
    ftq_tokenizer_free(NULL);
}

static void test_load_picks_files(void)
{
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load(shared_path(LLAMA2_DIR), &t));
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), FTQ_TOKENIZER_HF_JSON);
    ftq_tokenizer_free(t);

    const char *dir = test_tmpdir("tok_pick");
    char path[4096], src[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    snprintf(src, sizeof src, "%s", shared_path("models/stories260K/tokenizer.model"));
    ASSERT_OK(ftq_copy_file(src, path));
    ASSERT_OK(ftq_tokenizer_load(dir, &t));
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), FTQ_TOKENIZER_SPM);
    ASSERT_INT_EQ(ftq_tokenizer_adds_bos(t), 1); /* LlamaTokenizer default without a config */
    int32_t *sp = NULL;
    size_t nsp = 0;
    const int32_t sp_want[] = {1, 403, 2, 1}; /* control pieces are split out like HF's special tokens */
    ASSERT_OK(ftq_tokenizer_encode_flags(t, "Once</s><s>", 11, FTQ_ENCODE_ADD_SPECIAL | FTQ_ENCODE_PARSE_SPECIAL,
                                         &sp, &nsp));
    CU_ASSERT(ids_equal(sp, nsp, sp_want, 4));
    free(sp);
    ftq_tokenizer_free(t);

    dir = test_tmpdir("tok_pick_gpt2");
    static const char *const names[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(src, sizeof src, "%s/%s", shared_path(GPT2_DIR), names[i]);
        ASSERT_OK(ftq_copy_file(src, path));
    }
    ASSERT_OK(ftq_tokenizer_load(dir, &t));
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(t), FTQ_TOKENIZER_GPT2_FILES);
    ASSERT_INT_EQ(ftq_tokenizer_bos(t), 50256); /* from the vocab: "<|endoftext|>" */
    ASSERT_INT_EQ(ftq_tokenizer_adds_bos(t), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    const int32_t want[] = {15496, 11, 616, 3290, 318, 13779};
    ASSERT_OK(ftq_tokenizer_encode(t, "Hello, my dog is cute", 21, 1, &ids, &n));
    CU_ASSERT(ids_equal(ids, n, want, 6));
    free(ids);
    const int32_t want_eot[] = {64, 50256};
    ASSERT_OK(ftq_tokenizer_encode_flags(t, "a<|endoftext|>", 14, FTQ_ENCODE_ADD_SPECIAL | FTQ_ENCODE_PARSE_SPECIAL,
                                         &ids, &n));
    CU_ASSERT(ids_equal(ids, n, want_eot, 2));
    free(ids);
    ftq_tokenizer_free(t);
}

/* ---- errors ---------------------------------------------------------------------- */

static void expect_error(int rc, int want, const char *needle)
{
    if (rc != want || !strstr(ftq_last_error(), needle))
        fprintf(stderr, "\n  got rc %d \"%s\", expected rc %d mentioning \"%s\"\n", rc, ftq_last_error(), want, needle);
    CU_ASSERT_EQUAL(rc, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), needle));
}

static void test_missing_files(void)
{
    ftq_tokenizer *t = NULL;
    const char *dir = test_tmpdir("tok_empty");
    expect_error(ftq_tokenizer_load(dir, &t), FTQ_ENOTFOUND, "tokenizer.model");
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), dir));
    expect_error(ftq_tokenizer_load("/nonexistent/ftq-tok", &t), FTQ_ENOTFOUND, "/nonexistent/ftq-tok");
    expect_error(ftq_tokenizer_load_kind(shared_path(GPT2_DIR), FTQ_TOKENIZER_SPM, &t), FTQ_ENOTFOUND,
                 "tokenizer.model");
    expect_error(ftq_tokenizer_load_kind(shared_path(LLAMA2_DIR), FTQ_TOKENIZER_GPT2_FILES, &t), FTQ_ENOTFOUND,
                 "vocab.json");
    expect_error(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_HF_JSON, &t), FTQ_ENOTFOUND, "tokenizer.json");
    CU_ASSERT_PTR_NULL(t);
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t w = fwrite(data, 1, n, fp);
    return fclose(fp) == 0 && w == n ? 0 : -1;
}

/* Found by tests/fuzz/fuzz_tokenizer_config: a GPT-2 vocabulary without the bytes of a word
 * gives that word no ids (HF drops what it cannot map when there is no unk token); encoding
 * it, and the same word again from the pre-token cache, used to compute NULL + 0 (undefined
 * behaviour, caught by the sanitizer run of this suite). */
static void test_gpt2_word_without_ids(void)
{
    const char *dir = test_tmpdir("tok_gpt2_noids");
    char path[4096];
    static const char vocab[] = "{\"a\": 0, \"b\": 1}";
    static const char merges[] = "#version: 0.2\n";
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, vocab, sizeof vocab - 1), 0);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, merges, sizeof merges - 1), 0);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_GPT2_FILES, &t));
    if (!t)
        return;
    int32_t *ids = NULL;
    size_t n = 99;
    ASSERT_OK(ftq_tokenizer_encode(t, "xy", 2, 0, &ids, &n)); /* first word: nothing maps */
    ASSERT_INT_EQ((int)n, 0);
    free(ids);
    ids = NULL;
    ASSERT_OK(ftq_tokenizer_encode(t, "xy xy", 5, 0, &ids, &n)); /* "xy" again, now from the cache */
    ASSERT_INT_EQ((int)n, 0);
    free(ids);
    ids = NULL;
    const int32_t want[] = {0, 1, 0}; /* 'a', 'b', 'a': spaces ("\u0120") and 'x' have no id */
    ASSERT_OK(ftq_tokenizer_encode(t, "ab xy a", 7, 0, &ids, &n));
    CU_ASSERT(ids_equal(ids, n, want, 3));
    free(ids);
    ftq_tokenizer_free(t);
}

/* Found by tests/fuzz/fuzz_vocab_txt: two empty lines at the top of vocab.txt put the empty
 * token in the map twice while its key pool was still NULL, and the comparison computed
 * NULL + 0 (undefined behaviour: clang's UBSan reports it; gcc's does not check NULL + 0). */
static void test_vocab_txt_empty_lines(void)
{
    const char *dir = test_tmpdir("tok_vocab_empty");
    char path[4096];
    static const char vocab[] = "\n\n[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n";
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, vocab, sizeof vocab - 1), 0);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_VOCAB_TXT, &t));
    if (!t)
        return;
    ASSERT_INT_EQ(ftq_tokenizer_vocab_size(t), 8);
    int32_t *ids = NULL;
    size_t n = 0;
    const int32_t want[] = {4, 7, 5}; /* [CLS] a [SEP] */
    ASSERT_OK(ftq_tokenizer_encode(t, "a", 1, 1, &ids, &n));
    CU_ASSERT(ids_equal(ids, n, want, 3));
    free(ids);
    ftq_tokenizer_free(t);
}

/* Found by tests/fuzz/fuzz_tokenizer_json: WordPiece read the byte after a word that ends the
 * text (w[n]) while looking for a character boundary; the text need not be NUL-terminated, so
 * this read past the caller's buffer (ASan). */
static void test_wordpiece_text_end(void)
{
    /* no normalizer: the pre-tokens point into the caller's text */
    static const char json[] = "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
                               "\"continuing_subword_prefix\":\"##\",\"max_input_chars_per_word\":100,"
                               "\"vocab\":{\"[UNK]\":0,\"cat\":1,\"c\":2,\"##at\":3}},"
                               "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}}";
    const char *dir = test_tmpdir("tok_wp_end");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, json, sizeof json - 1), 0);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_HF_JSON, &t));
    if (!t)
        return;
    char *exact = malloc(7); /* "cat cat" without a terminator */
    CU_ASSERT_PTR_NOT_NULL_FATAL(exact);
    memcpy(exact, "cat cat", 7);
    int32_t *ids = NULL;
    size_t n = 0;
    const int32_t want[] = {1, 1};
    ASSERT_OK(ftq_tokenizer_encode(t, exact, 7, 0, &ids, &n));
    CU_ASSERT(ids_equal(ids, n, want, 2));
    free(ids);
    free(exact);
    ftq_tokenizer_free(t);
}

/* Every prefix of the stories260K tokenizer.model is refused with a format error. */
static void test_spm_truncated(void)
{
    char *data = NULL;
    size_t size = 0;
    ASSERT_OK(ftq_read_file(shared_path("models/stories260K/tokenizer.model"), &data, &size));
    const char *dir = test_tmpdir("tok_trunc");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    int bad = 0;
    for (size_t len = 0; len < size; len++) {
        CU_ASSERT_EQUAL_FATAL(write_file(path, data, len), 0);
        ftq_tokenizer *t = NULL;
        int rc = ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_SPM, &t);
        if (rc != FTQ_EFORMAT || t || !strstr(ftq_last_error(), "byte offset")) {
            if (bad++ < 5)
                fprintf(stderr, "\n  truncated to %zu bytes: rc %d \"%s\"\n", len, rc, ftq_last_error());
        }
        ftq_tokenizer_free(t);
    }
    ASSERT_INT_EQ(bad, 0);
    /* the full file still loads */
    CU_ASSERT_EQUAL_FATAL(write_file(path, data, size), 0);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_SPM, &t));
    ftq_tokenizer_free(t);

    /* random corruption: any outcome but a crash or leak; a loaded model must still work */
    ftq_rng r;
    ftq_rng_seed(&r, 42);
    for (int it = 0; it < 3000; it++) {
        char *c = malloc(size);
        memcpy(c, data, size);
        int flips = 1 + (int)(ftq_rng_u64(&r) % 4);
        for (int k = 0; k < flips; k++)
            c[ftq_rng_u64(&r) % size] = (char)ftq_rng_u64(&r);
        CU_ASSERT_EQUAL_FATAL(write_file(path, c, size), 0);
        free(c);
        t = NULL;
        if (ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_SPM, &t) == FTQ_OK) {
            int32_t *ids = NULL;
            size_t n = 0;
            char *back = NULL;
            if (ftq_tokenizer_encode(t, "Once upon a time, Zürich.\n", 27, 1, &ids, &n) == FTQ_OK &&
                ftq_tokenizer_decode(t, ids, n, 0, &back, NULL) == FTQ_OK)
                free(back);
            free(ids);
        }
        ftq_tokenizer_free(t);
    }
    free(data);
}

static void test_spm_word_unsupported(void)
{
    char *data = NULL;
    size_t size = 0;
    ASSERT_OK(ftq_read_file(shared_path("models/stories260K/tokenizer.model"), &data, &size));
    /* model_type (trainer_spec field 3, varint 2 = BPE) -> 3 = WORD. Find the trainer_spec
     * (top-level field 2, key 0x12) after the pieces and patch its model_type byte. */
    size_t p = 0;
    while (p < size && (unsigned char)data[p] == 0x0a) { /* skip pieces: key 0x0a, 1-2 byte length */
        size_t n = (unsigned char)data[p + 1], hdr = 2;
        if (n & 0x80) {
            n = (n & 0x7f) | (size_t)(unsigned char)data[p + 2] << 7;
            hdr = 3;
        }
        p += hdr + n;
    }
    CU_ASSERT_EQUAL_FATAL((unsigned char)data[p], 0x12);
    size_t q = p + 2 + (((unsigned char)data[p + 1] & 0x80) ? 1 : 0), end = size;
    int patched = 0;
    while (q + 1 < end && !patched) { /* walk trainer_spec fields until key 0x18 (field 3) */
        unsigned char key = (unsigned char)data[q];
        if (key == 0x18) {
            CU_ASSERT_EQUAL(data[q + 1], 2);
            data[q + 1] = 3;
            patched = 1;
        } else if ((key & 7) == 2) {
            q += 2 + (unsigned char)data[q + 1];
        } else {
            break;
        }
    }
    CU_ASSERT_FATAL(patched);
    const char *dir = test_tmpdir("tok_word");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, data, size), 0);
    ftq_tokenizer *t = NULL;
    expect_error(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_SPM, &t), FTQ_EUNSUPPORTED, "WORD");
    free(data);
}

static void json_case(const char *name, const char *json, int want, const char *needle)
{
    const char *dir = test_tmpdir(name);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, json, strlen(json)), 0);
    ftq_tokenizer *t = NULL;
    expect_error(ftq_tokenizer_load(dir, &t), want, needle);
    CU_ASSERT_PTR_NULL(t);
}

#define MINI_VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]"

static void test_json_errors(void)
{
    json_case("tokj_notjson", "{\"model\": {\"type\": \"BPE\",", FTQ_EFORMAT, "not valid json");
    json_case("tokj_unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", \"x\"]]}}", FTQ_EFORMAT,
              "[piece, score]");
    json_case("tokj_wordlevel", "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}", FTQ_EUNSUPPORTED,
              "WordLevel");
    json_case("tokj_wordpiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", FTQ_EFORMAT,
              "unk_token");
    json_case("tokj_novocab", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", FTQ_EFORMAT, "vocab");
    json_case("tokj_nomodel", "{\"normalizer\": null}", FTQ_EFORMAT, "model");
    json_case("tokj_badmerge", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}",
              FTQ_EFORMAT, "merge 0");
    json_case("tokj_precompiled", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB "}, \"normalizer\": {\"type\": "
              "\"Sequence\", \"normalizers\": [{\"type\": \"Precompiled\"}]}}", FTQ_EUNSUPPORTED, "Precompiled");
    json_case("tokj_scripts", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB "}, \"pre_tokenizer\": {\"type\": "
              "\"UnicodeScripts\"}}", FTQ_EUNSUPPORTED, "UnicodeScripts");
    json_case("tokj_decoder", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB "}, \"decoder\": {\"type\": "
              "\"CTC\"}}", FTQ_EUNSUPPORTED, "CTC");
    json_case("tokj_regex", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB "}, \"normalizer\": {\"type\": "
              "\"Replace\", \"pattern\": {\"Regex\": \"( +\"}, \"content\": \" \"}}", FTQ_EFORMAT, "cannot compile");
    json_case("tokj_split", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB "}, \"pre_tokenizer\": {\"type\": "
              "\"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}}", FTQ_EFORMAT, "behavior");
    json_case("tokj_bl_first", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB "}, \"pre_tokenizer\": {\"type\": "
              "\"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}}",
              FTQ_EUNSUPPORTED, "after ByteLevel");
    /* ids are checked against the entries the file defines before anything is allocated for
     * them (a 68-byte file with id 1e8 used to allocate 1.7 GB), and must have no holes or
     * duplicates */
    json_case("tokj_bigid", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":100000000},\"merges\":[]}}",
              FTQ_EFORMAT, "token id 100000000 is out of range (the files define 2 tokens, so ids must be 0..1)");
    json_case("tokj_bigid9", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1000000000},\"merges\":[]}}",
              FTQ_EFORMAT, "token id 1000000000 is out of range");
    json_case("tokj_gap", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2,\"c\":3},\"merges\":[]}}",
              FTQ_EFORMAT, "tokenizer.json': token id 3 is out of range (the files define 3 tokens");
    /* an added token that repeats a vocab id leaves room for a hole: refused as one */
    json_case("tokj_hole", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"c\":2},\"merges\":[]},"
              "\"added_tokens\":[{\"id\":0,\"content\":\"a\"}]}",
              FTQ_EFORMAT, "tokenizer.json': no token has id 1 (ids must run 0..2 without holes)");
    json_case("tokj_dupid", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
              FTQ_EFORMAT, "id 0 is given to both 'a' and 'b'");
    json_case("tokj_dupkey", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}",
              FTQ_EFORMAT, "token 'a' appears twice (ids 0 and 1)");
    /* a post-processor id is range-checked before use (1e10 was cast to int: undefined) */
    json_case("tokj_postbig", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"<s>\":1},\"merges\":[]},"
              "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
              "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":"
              "{\"id\":\"<s>\",\"ids\":[1e10],\"tokens\":[\"<s>\"]}}}}",
              FTQ_EFORMAT, "post_processor token '<s>' is not in the vocabulary");
    json_case("tokj_addedbig", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
              "\"added_tokens\":[{\"id\":2000000000,\"content\":\"<x>\"}]}",
              FTQ_EFORMAT, "token id 2000000000 is out of range (the files define 2 tokens");
    json_case("tokj_addednext", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
              "\"added_tokens\":[{\"id\":0,\"content\":\"a\"},{\"id\":3,\"content\":\"<x>\"}]}",
              FTQ_EFORMAT, "token id 3 is out of range (the files define 3 tokens");

    /* a minimal valid file: pair-form merges, no pre-tokenizer, no decoder (join with ' ') */
    const char *dir = test_tmpdir("tokj_mini");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const char *mini = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<u>\": 3}, "
                       "\"merges\": [[\"a\", \"b\"]], \"unk_token\": \"<u>\", \"fuse_unk\": true}}";
    CU_ASSERT_EQUAL_FATAL(write_file(path, mini, strlen(mini)), 0);
    ftq_tokenizer *t = NULL;
    ASSERT_OK(ftq_tokenizer_load(dir, &t));
    int32_t *ids = NULL;
    size_t n = 0;
    const int32_t want[] = {2, 0, 3, 1, 3, 2};
    ASSERT_OK(ftq_tokenizer_encode(t, "abaxyb\xc3\xa9" "ab", 10, 1, &ids, &n));
    if (!ids_equal(ids, n, want, 6))
        print_ids("mini", ids, n);
    CU_ASSERT(ids_equal(ids, n, want, 6));
    char *text = NULL;
    ASSERT_OK(ftq_tokenizer_decode(t, ids, n, 1, &text, NULL));
    CU_ASSERT_STRING_EQUAL(text, "ab a <u> b <u> ab");
    free(text);
    free(ids);
    ftq_tokenizer_free(t);
}

/* vocab.json + merges.txt and tokenizer_config.json's added_tokens_decoder: the same id
 * bounds as tokenizer.json */
static void gpt2_files_case(const char *name, const char *vocab, const char *cfg, const char *needle)
{
    const char *dir = test_tmpdir(name);
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, vocab, strlen(vocab)), 0);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    CU_ASSERT_EQUAL_FATAL(write_file(path, "#version: 0.2\n", 14), 0);
    if (cfg) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        CU_ASSERT_EQUAL_FATAL(write_file(path, cfg, strlen(cfg)), 0);
    }
    ftq_tokenizer *t = NULL;
    expect_error(ftq_tokenizer_load_kind(dir, FTQ_TOKENIZER_GPT2_FILES, &t), FTQ_EFORMAT, needle);
    CU_ASSERT_PTR_NULL(t);
}

static void test_id_bounds(void)
{
    gpt2_files_case("tokg_bigid", "{\"a\": 0, \"b\": 100000000}", NULL,
                    "vocab.json': token id 100000000 is out of range (the files define 2 tokens");
    gpt2_files_case("tokg_gap", "{\"a\": 0, \"b\": 2}", NULL, "vocab.json': token id 2 is out of range");
    gpt2_files_case("tokg_dup", "{\"a\": 0, \"b\": 0}", NULL, "id 0 is given to both 'a' and 'b'");
    gpt2_files_case("tokg_cfgbig", "{\"a\": 0, \"b\": 1}",
                    "{\"added_tokens_decoder\": {\"1000000000\": {\"content\": \"<x>\"}}}",
                    "tokenizer_config.json': token id 1000000000 is out of range (the files define 3 tokens");
    gpt2_files_case("tokg_cfghole", "{\"a\": 0, \"b\": 1}",
                    "{\"added_tokens_decoder\": {\"0\": {\"content\": \"a\"}, \"3\": {\"content\": \"<y>\"}}}",
                    "tokenizer_config.json': no token has id 2");
}

static void test_invalid_utf8(void)
{
    ftq_tokenizer *t = load_kind(STORIES_DIR, FTQ_TOKENIZER_HF_JSON);
    if (!t)
        return;
    static const struct {
        const char *s;
        size_t len;
        const char *offset;
    } cases[] = {
        {"abc\xff", 4, "offset 3"},         {"a\xc0\xaf", 3, "offset 1"},     /* overlong */
        {"ab\xed\xa0\x80", 5, "offset 2"}, /* surrogate */                     {"\xe2\x82", 2, "offset 0"}, /* cut */
        {"ok \xf4\x90\x80\x80", 7, "offset 3"}, /* > U+10FFFF */           {"x\x80y", 3, "offset 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        expect_error(ftq_tokenizer_encode(t, cases[i].s, cases[i].len, 0, &ids, &n), FTQ_EFORMAT, cases[i].offset);
        CU_ASSERT_PTR_NULL(ids);
    }
    /* embedded NUL is valid UTF-8 and goes through byte fallback */
    int32_t *ids = NULL;
    size_t n = 0;
    const int32_t want[] = {261, 3, 430}; /* ▁a <0x00> b, as HF tokenizers gives */
    ASSERT_OK(ftq_tokenizer_encode(t, "a\0b", 3, 0, &ids, &n));
    CU_ASSERT(ids_equal(ids, n, want, 3));
    free(ids);
    /* bad ids on decode */
    const int32_t badids[] = {5, 512};
    char *text = NULL;
    expect_error(ftq_tokenizer_decode(t, badids, 2, 1, &text, NULL), FTQ_EINVAL, "512");
    CU_ASSERT_PTR_NULL(text);
    ftq_tokenizer_free(t);
}

void test_register_tokenizer(void)
{
    static const test_case cases[] = {
        {"sha256_known", test_sha256_known},
        {"unicode_classes", test_unicode_classes},
        {"gpt2_regex_cases", test_gpt2_regex_cases},
        {"gpt2_pretokens", test_gpt2_pretokens},
        {"golden_gpt2_json", test_golden_gpt2_json},
        {"golden_gpt2_files", test_golden_gpt2_files},
        {"golden_llama2_spm", test_golden_llama2_spm},
        {"golden_llama2_json", test_golden_llama2_json},
        {"golden_stories_spm", test_golden_stories_spm},
        {"golden_stories_json", test_golden_stories_json},
        {"bytelevel_map", test_bytelevel_map},
        {"added_tokens", test_added_tokens},
        {"added_token_options", test_added_token_options},
        {"gpt2_json_variants", test_gpt2_json_variants},
        {"decode_cases", test_decode_cases},
        {"fuzz_fixture", test_fuzz_fixture},
        {"spm_remove_whitespace", test_spm_remove_whitespace},
        {"spm_user_defined", test_spm_user_defined},
        {"spm_literal_space_symbol", test_spm_literal_space_symbol},
        {"concurrent_encode", test_concurrent_encode},
        {"properties", test_properties},
        {"load_picks_files", test_load_picks_files},
        {"missing_files", test_missing_files},
        {"spm_truncated", test_spm_truncated},
        {"gpt2_word_without_ids", test_gpt2_word_without_ids},
        {"vocab_txt_empty_lines", test_vocab_txt_empty_lines},
        {"wordpiece_text_end", test_wordpiece_text_end},
        {"spm_word_unsupported", test_spm_word_unsupported},
        {"json_errors", test_json_errors},
        {"id_bounds", test_id_bounds},
        {"invalid_utf8", test_invalid_utf8},
        {"whole_files_gpt2", test_whole_files_gpt2},
        {"whole_files_llama2", test_whole_files_llama2},
        {"whole_files_stories", test_whole_files_stories},
        {NULL, NULL},
    };
    test_add_suite("tokenizer", cases);
}
