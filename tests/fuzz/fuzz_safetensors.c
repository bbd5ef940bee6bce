/* fuzz_safetensors.c - libFuzzer target: a whole safetensors file image (8-byte header
 * length, JSON header, data) through ftq_st_open_memory; every accepted tensor is then read
 * end to end (its bytes, and converted to f32 when small), so an offset the validator let
 * through that points outside the image is an ASan finding. */
#include "fuzz_common.h"

#include "ftq_io.h"

#define MAX_CONVERT 4096 /* elements converted to f32 per tensor */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ftq_st_file *f = NULL;
    if (ftq_st_open_memory(data, size, "fuzz.safetensors", &f) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    volatile unsigned sink = 0;
    size_t hl = ftq_st_header_size(f);
    if (hl > size || ftq_st_file_size(f) != size)
        __builtin_trap(); /* the handle disagrees with the image it validated */
    static float buf[MAX_CONVERT];
    for (size_t i = 0; i < ftq_st_count(f); i++) {
        const ftq_tensor *t = ftq_st_tensor(f, i);
        fz_touch(t->name);
        if (ftq_st_find(f, t->name) != t)
            __builtin_trap(); /* names are unique, so find must return this tensor */
        const unsigned char *p = t->data;
        if (t->nbytes) {
            if (p < data || p + t->nbytes > data + size)
                __builtin_trap();
            sink += p[0] + p[t->nbytes - 1];
        }
        int64_t n = ftq_tensor_numel(t);
        const ftq_dtype_traits *tr = ftq_dtype_info(t->dtype);
        if (n >= 0 && n <= MAX_CONVERT && tr && tr->to_f32)
            (void)ftq_tensor_to_f32(t, buf);
    }
    for (size_t i = 0; i < ftq_st_metadata_count(f); i++) {
        const char *k = ftq_st_metadata_key(f, i);
        sink += (unsigned)fz_touch(k) + (unsigned)fz_touch(ftq_st_metadata_value(f, i));
        if (!ftq_st_metadata_get(f, k))
            __builtin_trap();
    }
    (void)sink;
    ftq_st_close(f);
    return 0;
}
