/* gguf_write.c - GGUF v3 writer (the reader's face in reverse) and ggml's reference
 * quantizers for the types ftq writes. Metadata is serialized as it is added; tensors are
 * borrowed until ftq_gguf_writer_write, which lays them out aligned to 32 bytes and writes
 * the file atomically (temp file, fsync, rename). */
#include "ftq.h"
#include "ftq_gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} wtensor;

struct ftq_gguf_writer {
    unsigned char *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom;
};

static void put(ftq_gguf_writer *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = 2 * (w->kv_len + n) + 256;
        unsigned char *q = realloc(w->kv, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_u32(ftq_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(ftq_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(ftq_gguf_writer *w, const char *s, size_t n)
{
    put_u64(w, n);
    put(w, s, n);
}
static void key(ftq_gguf_writer *w, const char *k, uint32_t type)
{
    put_str(w, k, strlen(k));
    put_u32(w, type);
    w->n_kv++;
}

int ftq_gguf_writer_new(ftq_gguf_writer **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
}

void ftq_gguf_writer_free(ftq_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->t);
    free(w->kv);
    free(w);
}

void ftq_gguf_writer_str(ftq_gguf_writer *w, const char *k, const char *v)
{
    key(w, k, FTQ_GGUF_STRING);
    put_str(w, v, strlen(v));
}

void ftq_gguf_writer_u32(ftq_gguf_writer *w, const char *k, uint32_t v)
{
    key(w, k, FTQ_GGUF_UINT32);
    put_u32(w, v);
}

void ftq_gguf_writer_f32(ftq_gguf_writer *w, const char *k, float v)
{
    key(w, k, FTQ_GGUF_FLOAT32);
    put(w, &v, 4);
}

void ftq_gguf_writer_bool(ftq_gguf_writer *w, const char *k, int v)
{
    unsigned char c = v != 0;
    key(w, k, FTQ_GGUF_BOOL);
    put(w, &c, 1);
}

void ftq_gguf_writer_str_array(ftq_gguf_writer *w, const char *k, const char *const *s, const size_t *lens, size_t n)
{
    key(w, k, FTQ_GGUF_ARRAY);
    put_u32(w, FTQ_GGUF_STRING);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++)
        put_str(w, s[i] ? s[i] : "", s[i] ? (lens ? lens[i] : strlen(s[i])) : 0);
}

void ftq_gguf_writer_array(ftq_gguf_writer *w, const char *k, ftq_gguf_type elem, const void *v, size_t n)
{
    size_t es = elem == FTQ_GGUF_INT32 || elem == FTQ_GGUF_FLOAT32 || elem == FTQ_GGUF_UINT32 ? 4 : 0;
    if (!es) {
        w->oom = 1; /* programmer error: only 4-byte element arrays are written */
        return;
    }
    key(w, k, FTQ_GGUF_ARRAY);
    put_u32(w, elem);
    put_u64(w, n);
    put(w, v, n * es);
}

int ftq_gguf_writer_tensor(ftq_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                           const void *data, size_t nbytes)
{
    const ftq_ggml_traits *tr = ftq_ggml_type_info(type);
    if (!tr || n_dims < 1 || n_dims > 4 || strlen(name) >= FTQ_GGUF_MAX_NAME)
        return ftq_set_error(FTQ_EINVAL, "cannot add tensor '%s' to a GGUF file: bad type, rank or name", name);
    int64_t numel = 1;
    for (int i = 0; i < n_dims; i++)
        numel *= ne[i];
    if (ne[0] % (int64_t)tr->block_size || (size_t)numel / tr->block_size * tr->type_size != nbytes)
        return ftq_set_error(FTQ_EINVAL, "cannot add tensor '%s' to a GGUF file: %zu bytes do not hold its %s shape",
                             name, nbytes, tr->name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < 4; i++)
        t->ne[i] = i < n_dims ? ne[i] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
    return FTQ_OK;
}

static size_t pad_to(size_t n) { return (ALIGN - n % ALIGN) % ALIGN; }

int ftq_gguf_writer_write(const ftq_gguf_writer *w, const char *path)
{
    if (w->oom)
        return ftq_set_error(FTQ_ENOMEM, "cannot write '%s': out of memory", path);
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, path);
    if (rc)
        return rc;
    FILE *f = af.fp;
    static const unsigned char zeros[ALIGN] = {0};
    uint32_t ver = 3;
    uint64_t nt = w->n_t;
    int ok = fwrite("GGUF", 1, 4, f) == 4 && fwrite(&ver, 4, 1, f) == 1 && fwrite(&nt, 8, 1, f) == 1 &&
             fwrite(&w->n_kv, 8, 1, f) == 1 && (w->kv_len == 0 || fwrite(w->kv, 1, w->kv_len, f) == w->kv_len);
    size_t pos = 24 + w->kv_len;
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims;
        ok = fwrite(&len, 8, 1, f) == 1 && fwrite(t->name, 1, len, f) == len && fwrite(&nd, 4, 1, f) == 1;
        for (int d = 0; ok && d < t->n_dims; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            ok = fwrite(&ne, 8, 1, f) == 1;
        }
        ok = ok && fwrite(&t->type, 4, 1, f) == 1 && fwrite(&off, 8, 1, f) == 1;
        pos += 8 + len + 4 + 8 * (size_t)t->n_dims + 4 + 8;
        off += t->nbytes + pad_to(t->nbytes);
    }
    ok = ok && fwrite(zeros, 1, pad_to(pos), f) == pad_to(pos);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        ok = (t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f) == t->nbytes) &&
             fwrite(zeros, 1, pad_to(t->nbytes), f) == pad_to(t->nbytes);
    }
    if (!ok) {
        ftq_atomic_abort(&af);
        return ftq_set_error(FTQ_EIO, "cannot write '%s': write failed (disk full?)", path);
    }
    return ftq_atomic_commit(&af);
}

/* ---- ggml's reference quantizers (quantize_row_*_ref) --------------------------------- */

void ftq_ggml_quantize_q8_0(const float *x, void *dst, size_t nblocks)
{
    unsigned char *y = dst;
    for (size_t i = 0; i < nblocks; i++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = ftq_f32_to_f16(d);
        memcpy(y, &h, 2);
        for (int j = 0; j < 32; j++)
            y[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
    }
}

void ftq_ggml_quantize_q4_0(const float *x, void *dst, size_t nblocks)
{
    unsigned char *y = dst;
    for (size_t i = 0; i < nblocks; i++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = ftq_f32_to_f16(d);
        memcpy(y, &h, 2);
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[16 + j] * id + 8.5f);
            a = a < 15 ? a : 15;
            b = b < 15 ? b : 15;
            y[2 + j] = (unsigned char)(a | (b << 4));
        }
    }
}

void ftq_ggml_quantize_q4_1(const float *x, void *dst, size_t nblocks)
{
    unsigned char *y = dst;
    for (size_t i = 0; i < nblocks; i++, x += 32, y += 20) {
        float min = x[0], max = x[0];
        for (int j = 1; j < 32; j++) {
            min = x[j] < min ? x[j] : min;
            max = x[j] > max ? x[j] : max;
        }
        const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t hd = ftq_f32_to_f16(d), hm = ftq_f32_to_f16(min);
        memcpy(y, &hd, 2);
        memcpy(y + 2, &hm, 2);
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)((x[j] - min) * id + 0.5f), b = (int8_t)((x[16 + j] - min) * id + 0.5f);
            a = a < 15 ? a : 15;
            b = b < 15 ? b : 15;
            y[4 + j] = (unsigned char)(a | (b << 4));
        }
    }
}
