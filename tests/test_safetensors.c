/* test_safetensors.c - io/safetensors.c and io/checkpoint.c: the shipped files open, every
 * malformed header is refused with the right status and a message naming the file and the
 * problem, truncation at every length fails cleanly, the writer round-trips every dtype, and
 * sharded checkpoints are cross-checked against their index. Fixtures are crafted here. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/test_util.h"

/* ---- helpers --------------------------------------------------------------------- */

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    if (len)
        CU_ASSERT_EQUAL(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static char crafted_path[4096];

/* dir/name holding: u64le(header length) + header + ndata bytes of data. */
static const char *craft(const char *dir, const char *name, const char *header, size_t ndata)
{
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + ndata);
    put_u64le(buf, hl);
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < ndata; i++)
        buf[8 + hl + i] = (unsigned char)(i * 7 + 1);
    snprintf(crafted_path, sizeof crafted_path, "%s/%s", dir, name);
    write_bytes(crafted_path, buf, 8 + hl + ndata);
    free(buf);
    return crafted_path;
}

/* Open must fail with `status`, leave *out NULL, and name the file and the problem. */
static void expect_fail_at(const char *path, int status, const char *phrase, int line)
{
    ftq_st_file *f = (ftq_st_file *)1;
    ftq_clear_error();
    int rc = ftq_st_open(path, &f);
    const char *msg = ftq_last_error();
    int ok = rc == status && f == NULL && strstr(msg, path) && strstr(msg, phrase);
    if (!ok)
        fprintf(stderr, "\n  line %d: '%s': got status %d (%s) message \"%s\"; expected %d and \"%s\"\n", line,
                path, rc, ftq_strerror(rc), msg, status, phrase);
    CU_ASSERT(ok);
    if (rc == FTQ_OK)
        ftq_st_close(f);
}
#define EXPECT_FAIL(path, status, phrase) expect_fail_at((path), (status), (phrase), __LINE__)

/* Craft a header and expect it refused. */
#define BAD_HEADER(name, header, ndata, status, phrase) \
    EXPECT_FAIL(craft(dir, name, header, ndata), status, phrase)

#define T4(name, b, e) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" #b "," #e "]}"

/* ---- the shipped files ----------------------------------------------------------- */

static void check_tiles(const ftq_st_file *f)
{
    const unsigned char *prev_end = NULL;
    for (size_t i = 0; i < ftq_st_count(f); i++) {
        const ftq_tensor *t = ftq_st_tensor(f, i);
        CU_ASSERT_PTR_EQUAL(ftq_st_find(f, t->name), t);
        CU_ASSERT_EQUAL(t->owned, 0);
        if (prev_end)
            CU_ASSERT_PTR_EQUAL((const unsigned char *)t->data, prev_end);
        prev_end = (const unsigned char *)t->data + t->nbytes;
    }
    CU_ASSERT_PTR_NULL(ftq_st_tensor(f, ftq_st_count(f)));
    CU_ASSERT_PTR_NULL(ftq_st_find(f, "no.such.tensor"));
}

static void test_stories260K(void)
{
    ftq_st_file *f = NULL;
    const char *path = shared_path("models/stories260K/model.safetensors");
    ASSERT_OK(ftq_st_open(path, &f));
    ASSERT_INT_EQ(ftq_st_count(f), 47);
    ASSERT_INT_EQ(ftq_st_header_size(f), 4848);
    ASSERT_INT_EQ(ftq_st_file_size(f), 1044984);
    CU_ASSERT_STRING_EQUAL(ftq_st_path(f), path);
    ASSERT_INT_EQ(ftq_st_metadata_count(f), 1);
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_key(f, 0), "format");
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_value(f, 0), "pt");
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_get(f, "format"), "pt");
    CU_ASSERT_PTR_NULL(ftq_st_metadata_get(f, "nope"));
    CU_ASSERT_PTR_NULL(ftq_st_metadata_key(f, 1));
    int64_t params = 0;
    for (size_t i = 0; i < ftq_st_count(f); i++) {
        CU_ASSERT_EQUAL(ftq_st_tensor(f, i)->dtype, FTQ_DTYPE_F32);
        params += ftq_tensor_numel(ftq_st_tensor(f, i));
    }
    ASSERT_INT_EQ(params, 260032);
    check_tiles(f);
    /* file order is the conversion order: embeddings first, final norm last */
    CU_ASSERT_STRING_EQUAL(ftq_st_tensor(f, 0)->name, "model.embed_tokens.weight");
    CU_ASSERT_STRING_EQUAL(ftq_st_tensor(f, 46)->name, "model.norm.weight");
    const ftq_tensor *wk = ftq_st_find(f, "model.layers.4.self_attn.k_proj.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(wk);
    ASSERT_INT_EQ(wk->ndim, 2);
    ASSERT_INT_EQ(wk->shape[0], 32);
    ASSERT_INT_EQ(wk->shape[1], 64);
    /* the first tensor starts right after the header and is 4-byte aligned for zero-copy */
    ASSERT_INT_EQ((uintptr_t)ftq_st_tensor(f, 0)->data % 8, 0);
    ftq_st_close(f);
    ftq_st_close(NULL);
}

static void test_golden_files(void)
{
    const char *paths[2] = {"golden/gpt2_tiny_random/model.safetensors", "golden/llama_tiny_random/model.safetensors"};
    const size_t counts[2] = {28, 21};
    for (int k = 0; k < 2; k++) {
        ftq_st_file *f = NULL;
        ASSERT_OK(ftq_st_open(shared_path(paths[k]), &f));
        ASSERT_INT_EQ(ftq_st_count(f), counts[k]);
        check_tiles(f);
        ftq_st_close(f);
    }
    ftq_st_file *f = NULL;
    ASSERT_OK(ftq_st_open(shared_path("golden/gpt2_tiny_random/model.safetensors"), &f));
    const ftq_tensor *wte = ftq_st_find(f, "transformer.wte.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(wte);
    ASSERT_INT_EQ(wte->shape[0], 50257);
    ASSERT_INT_EQ(wte->shape[1], 64);
    ASSERT_INT_EQ(wte->nbytes, 50257 * 64 * 4);
    ftq_st_close(f);
}

/* The in-memory entry point sees the same bytes the same way. */
static void test_open_memory(void)
{
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(shared_path("golden/llama_tiny_random/model.safetensors"), &data, &len));
    ftq_st_file *f = NULL;
    ASSERT_OK(ftq_st_open_memory(data, len, "mem.safetensors", &f));
    ASSERT_INT_EQ(ftq_st_count(f), 21);
    CU_ASSERT_STRING_EQUAL(ftq_st_path(f), "mem.safetensors");
    const ftq_tensor *t = ftq_st_find(f, "model.norm.weight");
    CU_ASSERT_PTR_NOT_NULL(t);
    CU_ASSERT(t && (const char *)t->data > data && (const char *)t->data + t->nbytes <= data + len);
    ftq_st_close(f);
    ftq_clear_error();
    CU_ASSERT_EQUAL(ftq_st_open_memory(data, len - 1, "mem.safetensors", &f), FTQ_EFORMAT);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "'mem.safetensors'"));
    free(data);
}

/* ---- malformed files ------------------------------------------------------------- */

static void test_malformed_prefix(void)
{
    const char *dir = test_tmpdir("st_prefix");
    char p[4096];
    unsigned char buf[64] = {0};

    snprintf(p, sizeof p, "%s/short.safetensors", dir);
    write_bytes(p, "\x02\0\0\0\0", 5);
    EXPECT_FAIL(p, FTQ_EFORMAT, "file has 5 bytes, too short");

    snprintf(p, sizeof p, "%s/empty.safetensors", dir);
    write_bytes(p, "", 0);
    EXPECT_FAIL(p, FTQ_EFORMAT, "file has 0 bytes");

    snprintf(p, sizeof p, "%s/huge.safetensors", dir);
    put_u64le(buf, 9000000000000000000ull);
    memcpy(buf + 8, "{}", 2);
    write_bytes(p, buf, 10);
    EXPECT_FAIL(p, FTQ_EFORMAT, "header length 9000000000000000000 exceeds the limit");

    snprintf(p, sizeof p, "%s/longer.safetensors", dir);
    put_u64le(buf, 1000);
    write_bytes(p, buf, 50);
    EXPECT_FAIL(p, FTQ_EFORMAT, "header length 1000 exceeds file size 50");

    snprintf(p, sizeof p, "%s/zero.safetensors", dir);
    put_u64le(buf, 0);
    write_bytes(p, buf, 16);
    EXPECT_FAIL(p, FTQ_EFORMAT, "header length is 0");

    snprintf(p, sizeof p, "%s/missing.safetensors", dir);
    EXPECT_FAIL(p, FTQ_ENOTFOUND, "No such file");
    EXPECT_FAIL(dir, FTQ_EIO, "not a regular file");
}

static void test_malformed_json(void)
{
    const char *dir = test_tmpdir("st_json");
    BAD_HEADER("notjson.st", "{\"a\":", 0, FTQ_EFORMAT, "header is not valid JSON: invalid JSON at byte");
    BAD_HEADER("garbage.st", "hello world", 0, FTQ_EFORMAT, "not valid JSON");
    BAD_HEADER("array.st", "[1, 2]  ", 0, FTQ_EFORMAT, "header is an array (expected a JSON object)");
    BAD_HEADER("string.st", "\"x\"", 0, FTQ_EFORMAT, "header is a string");
    BAD_HEADER("trailing.st", "{}  x", 0, FTQ_EFORMAT, "unexpected data after the JSON value at byte 4");
    BAD_HEADER("twoobjs.st", "{}{}", 0, FTQ_EFORMAT, "unexpected data after the JSON value at byte 2");
    BAD_HEADER("ctrl.st", "{\"a\x01\":1}", 0, FTQ_EFORMAT, "byte 0x01 at offset 3");
    /* a NUL inside the header (JSON text never contains raw control bytes) */
    unsigned char raw[12] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' '};
    char p[4096];
    snprintf(p, sizeof p, "%s/nul.st", dir);
    write_bytes(p, raw, sizeof raw);
    EXPECT_FAIL(p, FTQ_EFORMAT, "byte 0x00 at offset 2");
}

/* Cases where one tensor entry is wrong. */
static void test_malformed_entries(void)
{
    const char *dir = test_tmpdir("st_entries");
    BAD_HEADER("dtype_unknown.st", "{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               FTQ_EUNSUPPORTED, "tensor 'w' has unknown dtype \"F128\"");
    BAD_HEADER("dtype_number.st", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FTQ_EFORMAT,
               "tensor 'w' dtype is 4 (expected a string");
    BAD_HEADER("dtype_missing.st", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FTQ_EFORMAT,
               "tensor 'w' has no \"dtype\"");
    BAD_HEADER("shape_missing.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, FTQ_EFORMAT,
               "tensor 'w' has no \"shape\"");
    BAD_HEADER("offsets_missing.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, FTQ_EFORMAT,
               "tensor 'w' has no \"data_offsets\"");
    BAD_HEADER("shape_negative.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               FTQ_EFORMAT, "tensor 'w' shape[0] is -1 (expected a non-negative integer");
    BAD_HEADER("shape_fraction.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 12,
               FTQ_EFORMAT, "header has the number 1.5 at offset 31 (expected integers only");
    /* integer fields are integer literals, as safetensors' own parser (serde, usize) demands:
     * cJSON would read 8.0 and 8e0 as 8 */
    BAD_HEADER("offsets_fraction.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8]}}", 8,
               FTQ_EFORMAT, "header has the number 0.5 at offset 48 (expected integers only");
    BAD_HEADER("offsets_point0.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8,
               FTQ_EFORMAT, "header has the number 8.0 at offset 50");
    BAD_HEADER("offsets_exp.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", 8,
               FTQ_EFORMAT, "header has the number 8e0 at offset 50");
    BAD_HEADER("shape_point0.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
               FTQ_EFORMAT, "header has the number 2.0 at offset 29");
    /* the tree is bounded before cJSON builds it: depth 3, arrays of at most 64 items */
    BAD_HEADER("deep.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}", 8,
               FTQ_EFORMAT, "header nests deeper than 3 levels or holds an array of more than 64 items at offset 29");
    BAD_HEADER("long.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
               "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"data_offsets\":[0,0]}}",
               0, FTQ_EFORMAT, "holds an array of more than 64 items at offset 156");
    /* a byte-order mark before the JSON: cJSON skips it, safetensors refuses it */
    BAD_HEADER("bom.st", "\xEF\xBB\xBF{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               FTQ_EFORMAT, "header starts with a UTF-8 byte-order mark (expected '{')");
    BAD_HEADER("shape_string.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}", 16,
               FTQ_EFORMAT, "tensor 'w' shape[0] is \"4\"");
    BAD_HEADER("shape_notarray.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
               FTQ_EFORMAT, "tensor 'w' shape is 4 (expected an array");
    BAD_HEADER("shape_2p53.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[10000000000000000],\"data_offsets\":[0,4]}}", 4,
               FTQ_EFORMAT, "below 2^53");
    BAD_HEADER("shape_9dims.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               FTQ_EUNSUPPORTED, "tensor 'w' shape has 9 dimensions (at most 8");
    BAD_HEADER("shape_overflow.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
               FTQ_EFORMAT, "tensor 'w' shape [4294967296, 4294967296, 16] x F32 overflows 64 bits");
    BAD_HEADER("offsets_reversed.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
               FTQ_EFORMAT, "tensor 'w' data_offsets [4, 0] are reversed");
    BAD_HEADER("offsets_three.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
               FTQ_EFORMAT, "tensor 'w' data_offsets has 3 entries (expected 2");
    BAD_HEADER("offsets_string.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}}", 4,
               FTQ_EFORMAT, "tensor 'w' data_offsets is \"0,4\"");
    BAD_HEADER("offsets_huge.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,"
               "100000000000000000000000000000]}}", 4, FTQ_EFORMAT, "tensor 'w' data_offsets[1] is 1e+29");
    BAD_HEADER("offsets_negative.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
               FTQ_EFORMAT, "tensor 'w' data_offsets[0] is -4");
    BAD_HEADER("offsets_range.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1000],\"data_offsets\":[0,4000]}}", 8,
               FTQ_EFORMAT, "tensor 'w' data_offsets [0, 4000] extend past the end of the data area");
    BAD_HEADER("span.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, FTQ_EFORMAT,
               "tensor 'w' data_offsets [0, 8] span 8 bytes (expected 12 bytes for shape [3] x F32)");
    BAD_HEADER("entry_number.st", "{\"w\":5}", 0, FTQ_EFORMAT, "tensor 'w' is 5 (expected an object");
    BAD_HEADER("entry_array.st", "{\"w\":[]}", 0, FTQ_EFORMAT, "tensor 'w' is an array");
    BAD_HEADER("empty_name.st", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FTQ_EFORMAT,
               "a tensor has an empty name");
    BAD_HEADER("unknown_key.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
               FTQ_EFORMAT, "tensor 'w' has unknown key \"x\"");
    BAD_HEADER("key_twice.st",
               "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               FTQ_EFORMAT, "tensor 'w' has key \"dtype\" twice");
    BAD_HEADER("dtype_case.st", "{\"w\":{\"DTYPE\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               FTQ_EFORMAT, "tensor 'w' has unknown key \"DTYPE\"");
    BAD_HEADER("bad_utf8.st", "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               FTQ_EFORMAT, "byte 0xff at offset 3");
}

/* Cases about how the tensors sit in the data area, and about names and metadata. */
static void test_malformed_layout(void)
{
    const char *dir = test_tmpdir("st_layout");
    BAD_HEADER("overlap.st", "{" T4("a", 0, 4) "," "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}",
               10, FTQ_EFORMAT, "tensor 'b' data_offsets [2, 10] overlap tensor 'a' [0, 4]");
    BAD_HEADER("same_span.st", "{" T4("a", 0, 4) "," T4("b", 0, 4) "}", 4, FTQ_EFORMAT, "overlap tensor 'a'");
    BAD_HEADER("gap.st", "{" T4("a", 0, 4) "," T4("b", 8, 12) "}", 12, FTQ_EFORMAT,
               "gap of 4 bytes between tensor 'a' ending at 4 and tensor 'b'");
    BAD_HEADER("not_at_zero.st", "{" T4("a", 4, 8) "}", 8, FTQ_EFORMAT,
               "gap of 4 bytes before the first tensor 'a' (expected it to begin at offset 0)");
    BAD_HEADER("trailing_bytes.st", "{" T4("a", 0, 4) "}", 12, FTQ_EFORMAT,
               "8 trailing bytes after the last tensor 'a'");
    BAD_HEADER("trailing_empty.st", "{}", 3, FTQ_EFORMAT, "3 trailing bytes after the header");
    BAD_HEADER("truncated.st", "{" T4("a", 0, 4) "," T4("b", 4, 8) "}", 6, FTQ_EFORMAT,
               "tensor 'b' data_offsets [4, 8] extend past the end of the data area (data area is 6 bytes");
    BAD_HEADER("duplicate.st", "{" T4("a", 0, 4) "," T4("a", 4, 8) "}", 8, FTQ_EFORMAT,
               "tensor name 'a' appears twice");
    BAD_HEADER("zero_inside.st",
               "{" "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
               8, FTQ_EFORMAT, "tensor 'z' data_offsets [4, 4] overlap tensor 'a' [0, 8]");
    BAD_HEADER("meta_array.st", "{\"__metadata__\":[]," T4("a", 0, 4) "}", 4, FTQ_EFORMAT,
               "__metadata__ is an array (expected an object");
    BAD_HEADER("meta_value.st", "{\"__metadata__\":{\"format\":1}}", 0, FTQ_EFORMAT,
               "__metadata__ key \"format\" is 1 (expected a string)");
    BAD_HEADER("meta_null.st", "{\"__metadata__\":{\"format\":null}}", 0, FTQ_EFORMAT,
               "__metadata__ key \"format\" is null");
    BAD_HEADER("meta_dupkey.st", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, FTQ_EFORMAT,
               "__metadata__ has key \"k\" twice");
    BAD_HEADER("meta_twice.st", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, FTQ_EFORMAT,
               "tensor name '__metadata__' appears twice");
}

/* Valid corner cases: empty header padded with spaces, zero-size tensors, scalars. */
static void test_valid_corners(void)
{
    const char *dir = test_tmpdir("st_valid");
    ftq_st_file *f = NULL;
    ASSERT_OK(ftq_st_open(craft(dir, "empty.st", "{}      ", 0), &f));
    ASSERT_INT_EQ(ftq_st_count(f), 0);
    ASSERT_INT_EQ(ftq_st_metadata_count(f), 0);
    CU_ASSERT_PTR_NULL(ftq_st_find(f, "a"));
    ftq_st_close(f);

    /* zero-size tensors share offsets with their neighbours, at the start, middle and end;
     * scalars have shape [] */
    const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                    "\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                    "\"z2\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                    "\"a\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]},"
                    "\"z3\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                    "\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\xc3\xa9\",\"lr\":\"1.5e-3 \\\" 2.0\"}} \n\t\r";
    ASSERT_OK(ftq_st_open(craft(dir, "zeros.st", h, 8), &f));
    ASSERT_INT_EQ(ftq_st_count(f), 5);
    const char *order[5] = {"z1", "a", "z2", "b", "z3"};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_STRING_EQUAL(ftq_st_tensor(f, (size_t)i)->name, order[i]);
    ASSERT_INT_EQ(ftq_st_find(f, "a")->ndim, 0);
    ASSERT_INT_EQ(ftq_tensor_numel(ftq_st_find(f, "a")), 1);
    ASSERT_INT_EQ(ftq_st_find(f, "z2")->nbytes, 0);
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_get(f, "note"), "caf\xc3\xa9");
    /* numbers inside strings (an escaped quote included) are text, not fractional fields */
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_get(f, "lr"), "1.5e-3 \" 2.0");
    check_tiles(f);
    ftq_st_close(f);
}

/* Every proper prefix of a valid file is an error, in memory and on disk. */
static void test_truncate_every_length(void)
{
    const char *dir = test_tmpdir("st_trunc");
    float a[3] = {1, 2, 3};
    uint16_t b[2] = {0x3c00, 0xc000};
    ftq_tensor t[2] = {{.name = "a", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {3}, .nbytes = 12, .data = a},
                       {.name = "b", .dtype = FTQ_DTYPE_F16, .ndim = 2, .shape = {1, 2}, .nbytes = 4, .data = b}};
    char path[4096];
    snprintf(path, sizeof path, "%s/full.safetensors", dir);
    ASSERT_OK(ftq_st_write(path, t, 2, NULL));
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(path, &data, &len));
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        ftq_st_file *f = NULL;
        char *exact = malloc(n ? n : 1); /* exactly n bytes, so ASan sees any over-read */
        memcpy(exact, data, n);
        if (ftq_st_open_memory(exact, n, "cut", &f) != FTQ_EFORMAT || f)
            bad++;
        free(exact);
        char p[4200];
        snprintf(p, sizeof p, "%s/cut.safetensors", dir);
        write_bytes(p, data, n);
        if (ftq_st_open(p, &f) != FTQ_EFORMAT || f || !strstr(ftq_last_error(), p))
            bad++;
        ftq_st_close(f);
    }
    ASSERT_INT_EQ(bad, 0);
    free(data);
}

/* Found by tests/fuzz/fuzz_safetensors: a fractional number that ends the header (and the
 * image) was measured for the message with strspn, reading past the buffer (ASan). */
static void test_fraction_at_end_of_image(void)
{
    static const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":64e";
    size_t hl = sizeof hdr - 1, len = 8 + hl;
    unsigned char *img = malloc(len); /* exactly the image: no NUL after the header */
    CU_ASSERT_PTR_NOT_NULL_FATAL(img);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, hdr, hl);
    ftq_st_file *f = NULL;
    CU_ASSERT_EQUAL(ftq_st_open_memory(img, len, "end.safetensors", &f), FTQ_EFORMAT);
    CU_ASSERT_PTR_NULL(f);
    if (!strstr(ftq_last_error(), "header has the number 64e at offset"))
        fprintf(stderr, "\n  got \"%s\"\n", ftq_last_error());
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "header has the number 64e at offset"));
    free(img);
}

/* Overwrite every header byte with a few values: no crash, no leak, and whatever opens
 * still tiles the file (run under FTQ_SANITIZE to make this meaningful). */
static void test_header_byte_fuzz(void)
{
    const char *dir = test_tmpdir("st_fuzz");
    float a[4] = {1, 2, 3, 4};
    ftq_tensor t[2] = {{.name = "a", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {3}, .nbytes = 12, .data = a},
                       {.name = "bb", .dtype = FTQ_DTYPE_U8, .ndim = 1, .shape = {4}, .nbytes = 4, .data = a}};
    char path[4096];
    snprintf(path, sizeof path, "%s/f.safetensors", dir);
    const char *meta[] = {"format", "pt", NULL};
    ASSERT_OK(ftq_st_write(path, t, 2, meta));
    char *file = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(path, &file, &len));
    char *data = malloc(len); /* exact size, unlike ftq_read_file's NUL-terminated buffer */
    memcpy(data, file, len);
    free(file);
    const unsigned char vals[] = {0, '"', '[', ']', '{', '}', ',', ':', '-', '1', '9', 'e', '.', ' ', 0xff, 0x80};
    int opened = 0, bad = 0;
    for (size_t i = 0; i < len - 16; i++) {
        unsigned char saved = (unsigned char)data[i];
        for (size_t v = 0; v < sizeof vals; v++) {
            data[i] = (char)vals[v];
            ftq_st_file *f = NULL;
            int rc = ftq_st_open_memory(data, len, "fuzz", &f);
            if (rc == FTQ_OK) {
                opened++;
                size_t sum = 0;
                for (size_t k = 0; k < ftq_st_count(f); k++)
                    sum += ftq_st_tensor(f, k)->nbytes;
                if (sum != len - 8 - ftq_st_header_size(f))
                    bad++;
                ftq_st_close(f);
            } else if (f || !strstr(ftq_last_error(), "'fuzz'")) {
                bad++;
            }
        }
        data[i] = (char)saved;
    }
    ASSERT_INT_EQ(bad, 0);
    CU_ASSERT(opened > 0); /* e.g. a digit swapped inside a name, or a space in the padding */
    free(data);
}

/* ---- writer ---------------------------------------------------------------------- */

static void test_write_roundtrip(void)
{
    const char *dir = test_tmpdir("st_write");
    float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t f16[3] = {0x3c00, 0x7bff, 0x8001}, bf16[2] = {0x3f80, 0xff80};
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    uint8_t u8[3] = {0, 200, 255}, boolv[4] = {0, 1, 1, 0};
    int32_t i32[2] = {-2147483647 - 1, 2147483647};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    int32_t scalar = 42;
    ftq_tensor t[] = {
        {.name = "w.f32", .dtype = FTQ_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .nbytes = 24, .data = f32},
        {.name = "w.f16", .dtype = FTQ_DTYPE_F16, .ndim = 1, .shape = {3}, .nbytes = 6, .data = f16},
        {.name = "w.bf16", .dtype = FTQ_DTYPE_BF16, .ndim = 2, .shape = {1, 2}, .nbytes = 4, .data = bf16},
        {.name = "empty", .dtype = FTQ_DTYPE_F32, .ndim = 2, .shape = {0, 7}, .nbytes = 0, .data = NULL},
        {.name = "w.i8", .dtype = FTQ_DTYPE_I8, .ndim = 1, .shape = {5}, .nbytes = 5, .data = i8},
        {.name = "w.u8", .dtype = FTQ_DTYPE_U8, .ndim = 1, .shape = {3}, .nbytes = 3, .data = u8},
        {.name = "w.i32", .dtype = FTQ_DTYPE_I32, .ndim = 1, .shape = {2}, .nbytes = 8, .data = i32},
        {.name = "w.i64", .dtype = FTQ_DTYPE_I64, .ndim = 1, .shape = {2}, .nbytes = 16, .data = i64},
        {.name = "w.bool", .dtype = FTQ_DTYPE_BOOL, .ndim = 1, .shape = {4}, .nbytes = 4, .data = boolv},
        {.name = "scalar \"q\"\\ caf\xc3\xa9", .dtype = FTQ_DTYPE_I32, .ndim = 0, .nbytes = 4, .data = &scalar},
        {.name = "tail.empty", .dtype = FTQ_DTYPE_BF16, .ndim = 1, .shape = {0}, .nbytes = 0, .data = NULL},
    };
    size_t n = sizeof t / sizeof t[0];
    const char *meta[] = {"format", "pt", "producer", "ftq \"test\"", NULL};
    char path[4096];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    ASSERT_OK(ftq_st_write(path, t, n, meta));
    ASSERT_OK(ftq_st_write(path, t, n, meta)); /* overwrite in place */
    ftq_st_file *f = NULL;
    ASSERT_OK(ftq_st_open(path, &f));
    ASSERT_INT_EQ(ftq_st_count(f), n);
    ASSERT_INT_EQ(ftq_st_header_size(f) % 8, 0);
    ASSERT_INT_EQ((uintptr_t)ftq_st_tensor(f, 0)->data % 8, 0);
    ASSERT_INT_EQ(ftq_st_metadata_count(f), 2);
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_key(f, 0), "format");
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_get(f, "producer"), "ftq \"test\"");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const ftq_tensor *r = ftq_st_tensor(f, i);
        CU_ASSERT_STRING_EQUAL(r->name, t[i].name); /* given order == file order */
        CU_ASSERT_EQUAL(r->dtype, t[i].dtype);
        ASSERT_INT_EQ(r->ndim, t[i].ndim);
        CU_ASSERT(memcmp(r->shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim) == 0);
        ASSERT_INT_EQ(r->nbytes, t[i].nbytes);
        CU_ASSERT(t[i].nbytes == 0 || memcmp(r->data, t[i].data, t[i].nbytes) == 0);
        total += t[i].nbytes;
    }
    ASSERT_INT_EQ(ftq_st_file_size(f), 8 + ftq_st_header_size(f) + total);
    ftq_st_close(f);

    /* the header starts with __metadata__ and uses plain integers */
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(path, &data, &len));
    CU_ASSERT(strncmp(data + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(data + 8, "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"));
    free(data);

    /* no metadata, no tensors: "{}" padded to 8 */
    ASSERT_OK(ftq_st_write(path, NULL, 0, NULL));
    ASSERT_OK(ftq_st_open(path, &f));
    ASSERT_INT_EQ(ftq_st_header_size(f), 8);
    ASSERT_INT_EQ(ftq_st_count(f), 0);
    ASSERT_INT_EQ(ftq_st_metadata_count(f), 0);
    ftq_st_close(f);
}

/* Offsets that cJSON would print as 1e+15 must still be plain integers in the header. */
static void test_write_round_offsets(void)
{
    const char *dir = test_tmpdir("st_write_big");
    char path[4096];
    snprintf(path, sizeof path, "%s/big.safetensors", dir);
    ftq_tensor t = {.name = "huge", .dtype = FTQ_DTYPE_U8, .ndim = 2, .shape = {1000000000000000LL, 0}, .nbytes = 0};
    ASSERT_OK(ftq_st_write(path, &t, 1, NULL));
    char *data = NULL;
    ASSERT_OK(ftq_read_file(path, &data, NULL));
    CU_ASSERT_PTR_NOT_NULL(strstr(data + 8, "[1000000000000000,0]"));
    free(data);
    ftq_st_file *f = NULL;
    ASSERT_OK(ftq_st_open(path, &f));
    ASSERT_INT_EQ(ftq_st_find(f, "huge")->shape[0], 1000000000000000LL);
    ftq_st_close(f);
}

static void expect_write_fail(const char *path, const ftq_tensor *t, size_t n, const char *const *meta, int status,
                              const char *phrase)
{
    int rc = ftq_st_write(path, t, n, meta);
    int ok = rc == status && strstr(ftq_last_error(), phrase) != NULL;
    if (!ok)
        fprintf(stderr, "\n  write: got %d \"%s\", expected %d \"%s\"\n", rc, ftq_last_error(), status, phrase);
    CU_ASSERT(ok);
}

static void test_write_errors(void)
{
    const char *dir = test_tmpdir("st_write_err");
    char path[4096];
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    float v[4] = {0};
    ftq_tensor t[2] = {{.name = "a", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {4}, .nbytes = 16, .data = v},
                       {.name = "a", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {2}, .nbytes = 8, .data = v}};
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor name 'a' appears twice");
    t[1].name = "b";
    t[1].nbytes = 12;
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor 'b' has nbytes 12 (expected 8");
    t[1].nbytes = 8;
    t[1].name = "";
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor name '' is not allowed");
    t[1].name = "__metadata__";
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor name '__metadata__' is not allowed");
    t[1].name = "b";
    t[1].shape[0] = -2;
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor 'b' has invalid shape[0] = -2");
    t[1].shape[0] = 2;
    t[1].dtype = FTQ_DTYPE_COUNT;
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor 'b' has invalid dtype");
    t[1].dtype = FTQ_DTYPE_F32;
    t[1].data = NULL;
    expect_write_fail(path, t, 2, NULL, FTQ_EINVAL, "tensor 'b' has no data");
    t[1].data = v;
    const char *dupmeta[] = {"k", "1", "k", "2", NULL};
    expect_write_fail(path, t, 2, dupmeta, FTQ_EINVAL, "metadata must be unique");
    const char *oddmeta[] = {"k", NULL};
    expect_write_fail(path, t, 2, oddmeta, FTQ_EINVAL, "metadata must be unique");
    char nodir[4200];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir.safetensors", dir);
    expect_write_fail(nodir, t, 2, NULL, FTQ_EIO, "cannot create");
    CU_ASSERT(!ftq_is_file(path)); /* nothing was left behind, not even a temp file */
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* ---- checkpoints ----------------------------------------------------------------- */

static float shard_vals[8] = {1, 2, 3, 4, 5, 6, 7, 8};

static ftq_tensor mk(const char *name, int64_t n)
{
    ftq_tensor t = {.name = (char *)name, .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {n},
                    .nbytes = (size_t)n * 4, .data = shard_vals};
    return t;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_bytes(p, text, strlen(text));
}

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

/* A 2-shard checkpoint: a, b in shard 1; c in shard 2. */
static const char *make_sharded(const char *name, const char *index_json)
{
    const char *dir = test_tmpdir(name);
    static char saved[4096];
    snprintf(saved, sizeof saved, "%s", dir);
    char p[4200];
    ftq_tensor s1[2] = {mk("a", 2), mk("b", 3)}, s2[1] = {mk("c", 8)};
    snprintf(p, sizeof p, "%s/" SHARD1, saved);
    ASSERT_OK(ftq_st_write(p, s1, 2, NULL));
    snprintf(p, sizeof p, "%s/" SHARD2, saved);
    ASSERT_OK(ftq_st_write(p, s2, 1, NULL));
    write_text(saved, "model.safetensors.index.json", index_json);
    return saved;
}

#define GOOD_INDEX                                                                                  \
    "{\"metadata\":{\"total_size\":52},\"weight_map\":{\"a\":\"" SHARD1 "\",\"c\":\"" SHARD2 "\"," \
    "\"b\":\"" SHARD1 "\"}}"

static void test_checkpoint_sharded(void)
{
    const char *dir = make_sharded("ck_sharded", GOOD_INDEX);
    ftq_checkpoint *c = NULL;
    ASSERT_OK(ftq_checkpoint_open(dir, &c));
    ASSERT_INT_EQ(ftq_checkpoint_count(c), 3);
    ASSERT_INT_EQ(ftq_checkpoint_nfiles(c), 2);
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        const ftq_tensor *t = ftq_checkpoint_find(c, names[i]);
        CU_ASSERT_PTR_NOT_NULL(t);
        CU_ASSERT_PTR_EQUAL(ftq_checkpoint_tensor(c, (size_t)i), t); /* shard order, then offset */
    }
    const ftq_tensor *t = ftq_checkpoint_find(c, "c");
    CU_ASSERT(memcmp(t->data, shard_vals, 32) == 0);
    CU_ASSERT_PTR_NULL(ftq_checkpoint_find(c, "d"));
    CU_ASSERT_PTR_NULL(ftq_checkpoint_tensor(c, 3));
    CU_ASSERT_PTR_NULL(ftq_checkpoint_file(c, 2));
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_st_path(ftq_checkpoint_file(c, 1)), SHARD2));
    ASSERT_INT_EQ(ftq_checkpoint_total_bytes(c),
                  ftq_st_file_size(ftq_checkpoint_file(c, 0)) + ftq_st_file_size(ftq_checkpoint_file(c, 1)));
    ftq_checkpoint_close(c);
    ftq_checkpoint_close(NULL);
}

static void expect_ck_fail_at(const char *path, int status, const char *phrase, int line)
{
    ftq_checkpoint *c = (ftq_checkpoint *)1;
    ftq_clear_error();
    int rc = ftq_checkpoint_open(path, &c);
    const char *msg = ftq_last_error();
    int ok = rc == status && c == NULL && strstr(msg, path) && strstr(msg, phrase);
    if (!ok)
        fprintf(stderr, "\n  line %d: '%s': got %d \"%s\", expected %d \"%s\"\n", line, path, rc, msg, status, phrase);
    CU_ASSERT(ok);
    if (rc == FTQ_OK)
        ftq_checkpoint_close(c);
}
#define EXPECT_CK_FAIL(path, status, phrase) expect_ck_fail_at((path), (status), (phrase), __LINE__)

static void test_checkpoint_bad_index(void)
{
    const char *d;
    d = make_sharded("ck_missing_shard", "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\","
                                         "\"c\":\"model-00003-of-00003.safetensors\"}}");
    EXPECT_CK_FAIL(d, FTQ_ENOTFOUND, "shard 'model-00003-of-00003.safetensors' does not exist");
    d = make_sharded("ck_absent", "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\",\"c\":\"" SHARD2 "\","
                                  "\"d\":\"" SHARD2 "\"}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "tensor 'd' is not in shard '" SHARD2 "'");
    d = make_sharded("ck_extra", "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"c\":\"" SHARD2 "\"}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "shard '" SHARD1 "' holds tensor 'b' that \"weight_map\" does not list");
    d = make_sharded("ck_wrong_shard", "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\",\"c\":\"" SHARD2 "\"}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "shard '" SHARD1 "' holds tensor 'b' that \"weight_map\" assigns to '" SHARD2 "'");
    d = make_sharded("ck_dotdot", "{\"weight_map\":{\"a\":\"../" SHARD1 "\"}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "tensor 'a' maps to shard '../" SHARD1 "' (expected a plain file name");
    d = make_sharded("ck_slash", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "maps to shard '/etc/passwd'");
    d = make_sharded("ck_dup", "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"a\":\"" SHARD2 "\"}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "tensor 'a' appears twice in \"weight_map\"");
    d = make_sharded("ck_nomap", "{\"metadata\":{}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "missing key \"weight_map\"");
    d = make_sharded("ck_emptymap", "{\"weight_map\":{}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "\"weight_map\" is empty");
    d = make_sharded("ck_mapnum", "{\"weight_map\":{\"a\":7}}");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "tensor 'a' maps to 7");
    d = make_sharded("ck_notjson", "{\"weight_map\":");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "invalid JSON at byte");
    d = make_sharded("ck_array", "[]");
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "the file is an array");

    /* the same tensor stored in both shards */
    d = make_sharded("ck_both", GOOD_INDEX);
    char p[4200];
    ftq_tensor s2[2] = {mk("a", 2), mk("c", 8)};
    snprintf(p, sizeof p, "%s/" SHARD2, d);
    ASSERT_OK(ftq_st_write(p, s2, 2, NULL));
    EXPECT_CK_FAIL(d, FTQ_EFORMAT, "shard '" SHARD2 "' holds tensor 'a' that \"weight_map\" assigns to '" SHARD1 "'");

    /* a corrupt shard: the reader's message names the shard */
    d = make_sharded("ck_corrupt", GOOD_INDEX);
    snprintf(p, sizeof p, "%s/" SHARD2, d);
    write_bytes(p, "\x10\0\0\0\0\0\0\0{", 9);
    ftq_checkpoint *c = NULL;
    CU_ASSERT_EQUAL(ftq_checkpoint_open(d, &c), FTQ_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), SHARD2));
}

static void test_checkpoint_open_forms(void)
{
    const char *dir = test_tmpdir("ck_forms");
    char p[4200];
    ftq_checkpoint *c = NULL;
    EXPECT_CK_FAIL(dir, FTQ_ENOTFOUND, "no model.safetensors or model.safetensors.index.json");
    snprintf(p, sizeof p, "%s/nope", dir);
    EXPECT_CK_FAIL(p, FTQ_ENOTFOUND, "no such file or directory");

    ftq_tensor t[1] = {mk("x", 4)};
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ASSERT_OK(ftq_st_write(p, t, 1, NULL));
    ASSERT_OK(ftq_checkpoint_open(dir, &c)); /* a directory with model.safetensors */
    ASSERT_INT_EQ(ftq_checkpoint_nfiles(c), 1);
    CU_ASSERT_PTR_NOT_NULL(ftq_checkpoint_find(c, "x"));
    ftq_checkpoint_close(c);
    ASSERT_OK(ftq_checkpoint_open(p, &c)); /* the file itself */
    ASSERT_INT_EQ(ftq_checkpoint_count(c), 1);
    ASSERT_INT_EQ(ftq_checkpoint_total_bytes(c), ftq_st_file_size(ftq_checkpoint_file(c, 0)));
    ftq_checkpoint_close(c);

    write_bytes(p, "not a safetensors file", 22);
    EXPECT_CK_FAIL(dir, FTQ_EFORMAT, "header length");
    EXPECT_CK_FAIL(p, FTQ_EFORMAT, "exceeds");

    ASSERT_OK(ftq_checkpoint_open(shared_path("models/stories260K"), &c));
    ASSERT_INT_EQ(ftq_checkpoint_count(c), 47);
    ASSERT_INT_EQ(ftq_checkpoint_total_bytes(c), 1044984);
    CU_ASSERT_PTR_NOT_NULL(ftq_checkpoint_find(c, "model.layers.2.mlp.down_proj.weight"));
    CU_ASSERT_PTR_NULL(ftq_checkpoint_find(c, "lm_head.weight")); /* tied */
    ftq_checkpoint_close(c);
}

/* Releasing pages keeps a mapped tensor readable with the same bytes; on a memory image it
 * is a no-op (it must never zero memory the caller owns). */
static void test_release(void)
{
    const char *path = shared_path("models/stories260K/model.safetensors");
    ftq_st_file *f = NULL;
    ASSERT_OK(ftq_st_open(path, &f));
    const ftq_tensor *t = ftq_st_find(f, "model.embed_tokens.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    unsigned char *copy = malloc(t->nbytes);
    memcpy(copy, t->data, t->nbytes);
    ftq_st_release(f, t->data, t->nbytes);
    CU_ASSERT_EQUAL(memcmp(copy, t->data, t->nbytes), 0);
    ftq_st_close(f);
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(path, &data, &len));
    ASSERT_OK(ftq_st_open_memory(data, len, "image", &f));
    t = ftq_st_find(f, "model.embed_tokens.weight");
    ftq_st_release(f, t->data, t->nbytes);
    CU_ASSERT_EQUAL(memcmp(copy, t->data, t->nbytes), 0);
    ftq_st_close(f);
    free(data);
    free(copy);
}

void test_register_safetensors(void)
{
    static const test_case cases[] = {
        {"release", test_release},
        {"stories260K", test_stories260K},
        {"golden_files", test_golden_files},
        {"open_memory", test_open_memory},
        {"fraction_at_end_of_image", test_fraction_at_end_of_image},
        {"malformed_prefix", test_malformed_prefix},
        {"malformed_json", test_malformed_json},
        {"malformed_entries", test_malformed_entries},
        {"malformed_layout", test_malformed_layout},
        {"valid_corners", test_valid_corners},
        {"truncate_every_length", test_truncate_every_length},
        {"header_byte_fuzz", test_header_byte_fuzz},
        {"write_roundtrip", test_write_roundtrip},
        {"write_round_offsets", test_write_round_offsets},
        {"write_errors", test_write_errors},
        {"checkpoint_sharded", test_checkpoint_sharded},
        {"checkpoint_bad_index", test_checkpoint_bad_index},
        {"checkpoint_open_forms", test_checkpoint_open_forms},
        {NULL, NULL},
    };
    test_add_suite("safetensors", cases);
}
