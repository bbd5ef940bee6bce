/* fuzz_gguf.c - libFuzzer target: a whole GGUF file image through ftq_gguf_open_memory; an
 * accepted file is then walked completely (every key, every value, arrays nested to any depth,
 * typed reads) and every tensor's bytes are read and small ones dequantized, so a count or
 * offset the validator let through that points outside the image is an ASan finding.
 * Self-contained (no shared fuzz header) so it builds with
 *   clang -fsanitize=fuzzer,address,undefined -I include -I . tests/fuzz/fuzz_gguf.c <lib sources> */
#include <stdint.h>
#include <string.h>

#include "ftq.h"
#include "ftq_gguf.h"

#define MAX_DEQUANT 4096 /* elements dequantized per tensor */

static unsigned walk_value(const ftq_gguf_value *v, const unsigned char *lo, const unsigned char *hi, int depth)
{
    unsigned sink = 0;
    if (v->len && (v->p < lo || v->p + v->len > hi))
        __builtin_trap(); /* a value outside the image */
    if (v->len)
        sink += v->p[0] + v->p[v->len - 1];
    int64_t i;
    double f;
    if (ftq_gguf_value_int(v, &i) == FTQ_OK)
        sink += (unsigned)i;
    if (ftq_gguf_value_float(v, &f) == FTQ_OK)
        sink += f == f;
    if (v->type != FTQ_GGUF_ARRAY)
        return sink;
    if (depth > FTQ_GGUF_MAX_DEPTH)
        __builtin_trap(); /* the validator caps nesting */
    ftq_gguf_cursor c;
    ftq_gguf_value e;
    uint64_t n = 0;
    ftq_gguf_cursor_init(&c, v);
    while (ftq_gguf_array_next(&c, &e)) {
        sink += walk_value(&e, v->p, v->p + v->len, depth + 1);
        n++;
    }
    if (n != v->n)
        __builtin_trap();
    return sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ftq_gguf *g = NULL;
    if (ftq_gguf_open_memory(data, size, "fuzz.gguf", &g) != FTQ_OK) {
        if (g || !ftq_last_error()[0])
            __builtin_trap(); /* a refusal leaves no handle and says why */
        return 0;
    }
    volatile unsigned sink = 0;
    const unsigned char *lo = data, *hi = data + size;
    for (size_t i = 0; i < ftq_gguf_kv_count(g); i++) {
        const char *k = ftq_gguf_kv_key(g, i);
        if (ftq_gguf_find(g, k) != ftq_gguf_kv_value(g, i))
            __builtin_trap(); /* keys are unique */
        sink += walk_value(ftq_gguf_kv_value(g, i), lo, hi, 0);
        int64_t iv;
        double fv;
        int b;
        const char *s;
        size_t len;
        (void)ftq_gguf_get_int(g, k, &iv);
        (void)ftq_gguf_get_float(g, k, &fv);
        (void)ftq_gguf_get_bool(g, k, &b);
        if (ftq_gguf_get_str(g, k, &s, &len) == FTQ_OK && len)
            sink += (unsigned char)s[len - 1];
    }
    static float buf[MAX_DEQUANT];
    for (size_t i = 0; i < ftq_gguf_tensor_count(g); i++) {
        const ftq_gguf_tensor *t = ftq_gguf_tensor_at(g, i);
        if (ftq_gguf_find_tensor(g, t->name) != t)
            __builtin_trap(); /* names are unique */
        const unsigned char *p = t->data;
        if (t->nbytes) {
            if (p < lo || p + t->nbytes > hi)
                __builtin_trap();
            sink += p[0] + p[t->nbytes - 1];
        }
        if (t->numel >= 0 && t->numel <= MAX_DEQUANT)
            (void)ftq_gguf_tensor_to_f32(t, buf);
    }
    (void)sink;
    ftq_gguf_close(g);
    return 0;
}
