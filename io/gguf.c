/* gguf.c - strict GGUF v2/v3 reader (read-only mmap or a caller's buffer, zero-copy).
 * Invariants: a handle exists only after the whole header validated; every count read from
 * the file is checked against the bytes that remain before anything is sized by it; every
 * tensor's data lies inside the data section, aligned, and no two tensors overlap. */
#define _POSIX_C_SOURCE 200809L
#include "ftq.h"
#include "ftq_gguf.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ftq reads little-endian GGUF in place and needs a little-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define DEFAULT_ALIGNMENT 32

typedef struct {
    char *key;          /* NUL-terminated copy */
    ftq_gguf_value v;
} kv_entry;

struct ftq_gguf {
    char *path;
    const unsigned char *base;
    size_t size;
    void *map; /* NULL for open_memory */
    uint32_t version;
    size_t alignment, data_offset;
    size_t n_kv;
    kv_entry *kv;
    size_t *kv_by_key; /* indices sorted by key */
    size_t n_tensors;
    ftq_gguf_tensor *tensors;
    size_t *t_by_name;
    char *names; /* pool of tensor names */
};

/* ---- accessors ------------------------------------------------------------------- */

const char *ftq_gguf_path(const ftq_gguf *g) { return g->path; }
uint32_t ftq_gguf_version(const ftq_gguf *g) { return g->version; }
size_t ftq_gguf_alignment(const ftq_gguf *g) { return g->alignment; }
size_t ftq_gguf_data_offset(const ftq_gguf *g) { return g->data_offset; }
size_t ftq_gguf_file_size(const ftq_gguf *g) { return g->size; }
size_t ftq_gguf_kv_count(const ftq_gguf *g) { return g->n_kv; }
const char *ftq_gguf_kv_key(const ftq_gguf *g, size_t i) { return i < g->n_kv ? g->kv[i].key : NULL; }
const ftq_gguf_value *ftq_gguf_kv_value(const ftq_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i].v : NULL; }
size_t ftq_gguf_tensor_count(const ftq_gguf *g) { return g->n_tensors; }

const ftq_gguf_tensor *ftq_gguf_tensor_at(const ftq_gguf *g, size_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const ftq_gguf_value *ftq_gguf_find(const ftq_gguf *g, const char *key)
{
    size_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(g->kv[g->kv_by_key[mid]].key, key);
        if (r == 0)
            return &g->kv[g->kv_by_key[mid]].v;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const ftq_gguf_tensor *ftq_gguf_find_tensor(const ftq_gguf *g, const char *name)
{
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(g->tensors[g->t_by_name[mid]].name, name);
        if (r == 0)
            return &g->tensors[g->t_by_name[mid]];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const char *const type_names[FTQ_GGUF_NTYPES] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

/* Bytes of a fixed-size value type; 0 for string and array. */
static size_t scalar_size(uint32_t t)
{
    static const size_t sz[FTQ_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < FTQ_GGUF_NTYPES ? sz[t] : 0;
}

const char *ftq_gguf_type_name(ftq_gguf_type t)
{
    return (unsigned)t < FTQ_GGUF_NTYPES ? type_names[t] : "unknown";
}

static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- array walking (on validated values: cannot fail) ------------------------------ */

/* Bytes of the value of type t at p (validated data). */
static size_t value_bytes(uint32_t t, const unsigned char *p)
{
    if (t == FTQ_GGUF_STRING)
        return 8 + (size_t)rd64(p);
    if (t != FTQ_GGUF_ARRAY)
        return scalar_size(t);
    uint32_t et = rd32(p);
    uint64_t n = rd64(p + 4);
    size_t es = scalar_size(et);
    if (es)
        return 12 + (size_t)n * es;
    size_t off = 12;
    for (uint64_t i = 0; i < n; i++)
        off += value_bytes(et, p + off);
    return off;
}

static void make_value(uint32_t t, const unsigned char *p, ftq_gguf_value *v)
{
    memset(v, 0, sizeof *v);
    v->type = (ftq_gguf_type)t;
    if (t == FTQ_GGUF_STRING) {
        v->len = (size_t)rd64(p);
        v->p = p + 8;
    } else if (t == FTQ_GGUF_ARRAY) {
        v->elem_type = (ftq_gguf_type)rd32(p);
        v->n = rd64(p + 4);
        v->p = p + 12;
        v->len = value_bytes(t, p) - 12;
    } else {
        v->p = p;
        v->len = scalar_size(t);
    }
}

void ftq_gguf_cursor_init(ftq_gguf_cursor *c, const ftq_gguf_value *arr)
{
    c->arr = arr;
    c->i = 0;
    c->off = 0;
}

int ftq_gguf_array_next(ftq_gguf_cursor *c, ftq_gguf_value *elem)
{
    if (!c->arr || c->arr->type != FTQ_GGUF_ARRAY || c->i >= c->arr->n)
        return 0;
    const unsigned char *p = c->arr->p + c->off;
    make_value(c->arr->elem_type, p, elem);
    c->off += value_bytes(c->arr->elem_type, p);
    c->i++;
    return 1;
}

/* ---- typed reads ------------------------------------------------------------------ */

int ftq_gguf_value_int(const ftq_gguf_value *v, int64_t *out)
{
    const unsigned char *p = v->p;
    switch (v->type) {
    case FTQ_GGUF_UINT8: *out = p[0]; return FTQ_OK;
    case FTQ_GGUF_INT8: *out = (int8_t)p[0]; return FTQ_OK;
    case FTQ_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *out = x; return FTQ_OK; }
    case FTQ_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *out = x; return FTQ_OK; }
    case FTQ_GGUF_UINT32: *out = rd32(p); return FTQ_OK;
    case FTQ_GGUF_INT32: *out = (int32_t)rd32(p); return FTQ_OK;
    case FTQ_GGUF_INT64: *out = (int64_t)rd64(p); return FTQ_OK;
    case FTQ_GGUF_UINT64: {
        uint64_t x = rd64(p);
        if (x > (uint64_t)INT64_MAX)
            return FTQ_EFORMAT;
        *out = (int64_t)x;
        return FTQ_OK;
    }
    default: return FTQ_EFORMAT;
    }
}

int ftq_gguf_value_float(const ftq_gguf_value *v, double *out)
{
    if (v->type == FTQ_GGUF_FLOAT32) {
        float f;
        memcpy(&f, v->p, 4);
        *out = f;
        return FTQ_OK;
    }
    if (v->type == FTQ_GGUF_FLOAT64) {
        memcpy(out, v->p, 8);
        return FTQ_OK;
    }
    return FTQ_EFORMAT;
}

static int wrong_type(const ftq_gguf *g, const char *key, const ftq_gguf_value *v, const char *want)
{
    return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': key '%s' is %s (expected %s)", g->path, key,
                         ftq_gguf_type_name(v->type), want);
}

int ftq_gguf_get_int(const ftq_gguf *g, const char *key, int64_t *out)
{
    const ftq_gguf_value *v = ftq_gguf_find(g, key);
    if (!v)
        return FTQ_ENOTFOUND;
    return ftq_gguf_value_int(v, out) == FTQ_OK ? FTQ_OK : wrong_type(g, key, v, "an integer below 2^63");
}

int ftq_gguf_get_float(const ftq_gguf *g, const char *key, double *out)
{
    const ftq_gguf_value *v = ftq_gguf_find(g, key);
    if (!v)
        return FTQ_ENOTFOUND;
    return ftq_gguf_value_float(v, out) == FTQ_OK ? FTQ_OK : wrong_type(g, key, v, "float32 or float64");
}

int ftq_gguf_get_bool(const ftq_gguf *g, const char *key, int *out)
{
    const ftq_gguf_value *v = ftq_gguf_find(g, key);
    if (!v)
        return FTQ_ENOTFOUND;
    if (v->type != FTQ_GGUF_BOOL)
        return wrong_type(g, key, v, "bool");
    *out = v->p[0] != 0;
    return FTQ_OK;
}

int ftq_gguf_get_str(const ftq_gguf *g, const char *key, const char **s, size_t *len)
{
    const ftq_gguf_value *v = ftq_gguf_find(g, key);
    if (!v)
        return FTQ_ENOTFOUND;
    if (v->type != FTQ_GGUF_STRING)
        return wrong_type(g, key, v, "string");
    *s = (const char *)v->p;
    *len = v->len;
    return FTQ_OK;
}

/* ---- validation --------------------------------------------------------------------- */

typedef struct {
    const char *path;
    const unsigned char *base;
    size_t size, pos;
} rd;

#define BAD(r, status, ...) ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "cannot read '%s'", (r)->path)

static size_t left(const rd *r) { return r->size - r->pos; }

static int need(rd *r, size_t n, const char *what)
{
    if (n > left(r))
        return BAD(r, FTQ_EFORMAT, "file ends inside %s at byte %zu (expected %zu more bytes, %zu left)", what,
                   r->pos, n, left(r));
    return FTQ_OK;
}

static int get_u32(rd *r, uint32_t *v, const char *what)
{
    int rc = need(r, 4, what);
    if (rc)
        return rc;
    *v = rd32(r->base + r->pos);
    r->pos += 4;
    return FTQ_OK;
}

static int get_u64(rd *r, uint64_t *v, const char *what)
{
    int rc = need(r, 8, what);
    if (rc)
        return rc;
    *v = rd64(r->base + r->pos);
    r->pos += 8;
    return FTQ_OK;
}

/* A string: u64 length + bytes. */
static int get_str(rd *r, const unsigned char **s, size_t *len, const char *what)
{
    uint64_t n;
    size_t at = r->pos;
    int rc = get_u64(r, &n, what);
    if (rc)
        return rc;
    if (n > left(r))
        return BAD(r, FTQ_EFORMAT, "%s at byte %zu has length %" PRIu64 " but only %zu bytes remain", what, at, n,
                   left(r));
    *s = r->base + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return FTQ_OK;
}

/* Skip over one value of type t, checking it fits (and every nested count before use). */
static int skip_value(rd *r, uint32_t t, int depth, const char *key)
{
    size_t at = r->pos;
    if (t >= FTQ_GGUF_NTYPES)
        return BAD(r, FTQ_EFORMAT, "key '%s' has unknown value type %" PRIu32 " at byte %zu (expected 0..12)", key, t,
                   at);
    size_t es = scalar_size(t);
    if (es) {
        int rc = need(r, es, "a metadata value");
        if (rc)
            return rc;
        if (t == FTQ_GGUF_BOOL && r->base[r->pos] > 1)
            return BAD(r, FTQ_EFORMAT, "key '%s' bool at byte %zu is %u (expected 0 or 1)", key, at, r->base[r->pos]);
        r->pos += es;
        return FTQ_OK;
    }
    if (t == FTQ_GGUF_STRING) {
        const unsigned char *s = NULL;
        size_t len = 0;
        return get_str(r, &s, &len, "a string value");
    }
    if (depth >= FTQ_GGUF_MAX_DEPTH)
        return BAD(r, FTQ_EFORMAT, "key '%s' nests arrays deeper than %d at byte %zu", key, FTQ_GGUF_MAX_DEPTH, at);
    uint32_t et;
    uint64_t n;
    int rc = get_u32(r, &et, "an array header");
    if (!rc)
        rc = get_u64(r, &n, "an array header");
    if (rc)
        return rc;
    if (et >= FTQ_GGUF_NTYPES)
        return BAD(r, FTQ_EFORMAT, "key '%s' array at byte %zu has unknown element type %" PRIu32 " (expected 0..12)",
                   key, at, et);
    /* the smallest an element can be: its fixed size, 8 (a string length), 12 (an array header) */
    size_t min = scalar_size(et) ? scalar_size(et) : et == FTQ_GGUF_STRING ? 8 : 12;
    if (n > left(r) / min)
        return BAD(r, FTQ_EFORMAT,
                   "key '%s' array at byte %zu has %" PRIu64 " elements of %s, more than the %zu bytes left can hold",
                   key, at, n, ftq_gguf_type_name((ftq_gguf_type)et), left(r));
    if (scalar_size(et) && et != FTQ_GGUF_BOOL) {
        r->pos += (size_t)n * min;
        return FTQ_OK;
    }
    for (uint64_t i = 0; i < n; i++)
        if ((rc = skip_value(r, et, depth + 1, key)))
            return rc;
    return FTQ_OK;
}

/* (name, position) pairs: sorting them keeps the index deterministic and finds duplicates. */
typedef struct {
    const char *s;
    size_t i;
} str_idx;

static int cmp_str_idx(const void *a, const void *b)
{
    const str_idx *x = a, *y = b;
    int r = strcmp(x->s, y->s);
    return r ? r : (x->i > y->i) - (x->i < y->i);
}

/* Sort names into idx; returns the index of a duplicate (the later one) or SIZE_MAX. */
static int sort_names(const char *const *names, size_t n, size_t *idx, size_t *dup)
{
    str_idx *t = malloc((n ? n : 1) * sizeof *t);
    if (!t)
        return FTQ_ENOMEM;
    for (size_t i = 0; i < n; i++)
        t[i] = (str_idx){names[i], i};
    qsort(t, n, sizeof *t, cmp_str_idx);
    *dup = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        idx[i] = t[i].i;
        if (i && *dup == SIZE_MAX && strcmp(t[i - 1].s, t[i].s) == 0)
            *dup = t[i].i;
    }
    free(t);
    return FTQ_OK;
}

static int read_kvs(rd *r, ftq_gguf *g, uint64_t n_kv)
{
    /* a key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes */
    if (n_kv > left(r) / 13)
        return BAD(r, FTQ_EFORMAT, "metadata count %" PRIu64 " at byte 16 needs more than the %zu bytes left", n_kv,
                   left(r));
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->kv_by_key = malloc((n_kv ? (size_t)n_kv : 1) * sizeof *g->kv_by_key);
    if (!g->kv || !g->kv_by_key)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        kv_entry *e = &g->kv[i];
        const unsigned char *k = NULL;
        size_t klen = 0, at = r->pos;
        int rc = get_str(r, &k, &klen, "a metadata key");
        if (rc)
            return rc;
        if (klen == 0 || memchr(k, 0, klen))
            return BAD(r, FTQ_EFORMAT, "metadata key %" PRIu64 " at byte %zu is %s (expected a non-empty name)", i, at,
                       klen ? "a name with a NUL byte" : "empty");
        if (!(e->key = malloc(klen + 1)))
            return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
        memcpy(e->key, k, klen);
        e->key[klen] = '\0';
        g->n_kv = (size_t)i + 1;
        uint32_t t;
        if ((rc = get_u32(r, &t, "a metadata value type")))
            return rc;
        size_t vpos = r->pos;
        if ((rc = skip_value(r, t, 0, e->key)))
            return rc;
        make_value(t, r->base + vpos, &e->v);
    }
    const char **keys = malloc((n_kv ? (size_t)n_kv : 1) * sizeof *keys);
    if (!keys)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
    for (size_t i = 0; i < g->n_kv; i++)
        keys[i] = g->kv[i].key;
    size_t dup;
    int rc = sort_names(keys, g->n_kv, g->kv_by_key, &dup);
    free(keys);
    if (rc)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
    if (dup != SIZE_MAX)
        return BAD(r, FTQ_EFORMAT, "metadata key '%s' appears twice (expected unique keys)", g->kv[dup].key);
    return FTQ_OK;
}

static int read_alignment(rd *r, ftq_gguf *g)
{
    g->alignment = DEFAULT_ALIGNMENT;
    const ftq_gguf_value *v = ftq_gguf_find(g, "general.alignment");
    if (!v)
        return FTQ_OK;
    if (v->type != FTQ_GGUF_UINT32)
        return BAD(r, FTQ_EFORMAT, "key 'general.alignment' is %s (expected uint32)", ftq_gguf_type_name(v->type));
    uint32_t a = rd32(v->p);
    if (a == 0 || (a & (a - 1)) || a > (1u << 30))
        return BAD(r, FTQ_EFORMAT, "general.alignment is %" PRIu32 " (expected a power of two up to 2^30)", a);
    g->alignment = a;
    return FTQ_OK;
}

static int read_tensor_info(rd *r, ftq_gguf *g, size_t i, char **pool_at)
{
    ftq_gguf_tensor *t = &g->tensors[i];
    const unsigned char *nm = NULL;
    size_t nlen = 0, at = r->pos;
    int rc = get_str(r, &nm, &nlen, "a tensor name");
    if (rc)
        return rc;
    if (nlen == 0 || nlen >= FTQ_GGUF_MAX_NAME || memchr(nm, 0, nlen))
        return BAD(r, FTQ_EFORMAT, "tensor %zu name at byte %zu has %zu bytes (expected 1..%d without NUL)", i, at, nlen,
                   FTQ_GGUF_MAX_NAME - 1);
    memcpy(*pool_at, nm, nlen);
    (*pool_at)[nlen] = '\0';
    t->name = *pool_at;
    *pool_at += nlen + 1;
    uint32_t nd;
    if ((rc = get_u32(r, &nd, "a tensor descriptor")))
        return rc;
    if (nd < 1 || nd > 4)
        return BAD(r, FTQ_EFORMAT, "tensor '%s' has %" PRIu32 " dimensions (expected 1..4)", t->name, nd);
    t->n_dims = (int)nd;
    int64_t numel = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t ne = 1;
        if (d < (int)nd && (rc = get_u64(r, &ne, "a tensor descriptor")))
            return rc;
        if (ne > (uint64_t)INT64_MAX || (ne && (uint64_t)numel > (uint64_t)INT64_MAX / ne))
            return BAD(r, FTQ_EFORMAT, "tensor '%s' dimension %d is %" PRIu64 " (element count overflows 63 bits)",
                       t->name, d, ne);
        t->ne[d] = (int64_t)ne;
        numel *= (int64_t)ne;
    }
    t->numel = numel;
    uint32_t type;
    if ((rc = get_u32(r, &type, "a tensor descriptor")) || (rc = get_u64(r, &t->offset, "a tensor descriptor")))
        return rc;
    const ftq_ggml_traits *tr = ftq_ggml_type_info(type);
    if (!tr)
        return BAD(r, FTQ_EUNSUPPORTED, "tensor '%s' has ggml type %" PRIu32 ", which ftq does not read "
                   "(expected F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or Q2_K..Q6_K)", t->name, type);
    t->type = type;
    if (t->ne[0] % (int64_t)tr->block_size)
        return BAD(r, FTQ_EFORMAT, "tensor '%s' row of %" PRId64 " elements is not a multiple of the %s block size %zu",
                   t->name, t->ne[0], tr->name, tr->block_size);
    uint64_t blocks = (uint64_t)numel / tr->block_size;
    if (blocks > (uint64_t)SIZE_MAX / tr->type_size || blocks * tr->type_size > r->size)
        return BAD(r, FTQ_EFORMAT, "tensor '%s' of %" PRId64 " %s elements needs more bytes than the file has (%zu)",
                   t->name, numel, tr->name, r->size);
    t->nbytes = (size_t)(blocks * tr->type_size);
    if (t->offset % g->alignment)
        return BAD(r, FTQ_EFORMAT, "tensor '%s' offset %" PRIu64 " is not a multiple of the alignment %zu", t->name,
                   t->offset, g->alignment);
    return FTQ_OK;
}

typedef struct {
    uint64_t off;
    size_t i;
} off_idx;

static int cmp_off(const void *a, const void *b)
{
    const off_idx *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int read_tensors(rd *r, ftq_gguf *g, uint64_t n_t)
{
    /* a descriptor takes at least 8 (name length) + 1 (name) + 4 + 8 (one dim) + 4 + 8 bytes */
    if (n_t > left(r) / 33)
        return BAD(r, FTQ_EFORMAT, "tensor count %" PRIu64 " at byte 8 needs more than the %zu bytes left", n_t,
                   left(r));
    size_t n = (size_t)n_t;
    g->tensors = calloc(n ? n : 1, sizeof *g->tensors);
    g->t_by_name = malloc((n ? n : 1) * sizeof *g->t_by_name);
    g->names = malloc(n * FTQ_GGUF_MAX_NAME + 1);
    if (!g->tensors || !g->t_by_name || !g->names)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
    char *pool = g->names;
    for (size_t i = 0; i < n; i++) {
        int rc = read_tensor_info(r, g, i, &pool);
        if (rc)
            return rc;
        g->n_tensors = i + 1;
    }
    /* the data section starts at the next multiple of the alignment */
    size_t a = g->alignment, start = r->pos + (a - r->pos % a) % a;
    if (start > r->size && n)
        return BAD(r, FTQ_EFORMAT, "data section at byte %zu starts past the end of the file (%zu bytes)", start,
                   r->size);
    g->data_offset = start < r->size ? start : r->size;
    size_t avail = r->size - g->data_offset;
    off_idx *o = malloc((n ? n : 1) * sizeof *o);
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!o || !names) {
        free(o);
        free(names);
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
    }
    int rc = FTQ_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        ftq_gguf_tensor *t = &g->tensors[i];
        o[i] = (off_idx){t->offset, i};
        names[i] = t->name;
        if (t->offset > avail || t->nbytes > avail - t->offset)
            rc = BAD(r, FTQ_EFORMAT,
                     "tensor '%s' data [%" PRIu64 ", %" PRIu64 ") ends past the end of the data section (%zu bytes "
                     "from byte %zu)",
                     t->name, t->offset, t->offset + (uint64_t)t->nbytes, avail, g->data_offset);
        else
            t->data = r->base + g->data_offset + t->offset;
    }
    if (!rc) {
        qsort(o, n, sizeof *o, cmp_off);
        for (size_t i = 1; i < n && !rc; i++) {
            const ftq_gguf_tensor *p = &g->tensors[o[i - 1].i], *q = &g->tensors[o[i].i];
            if (p->offset + p->nbytes > q->offset)
                rc = BAD(r, FTQ_EFORMAT, "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                         ") overlap (expected disjoint data)",
                         p->name, p->offset, p->offset + (uint64_t)p->nbytes, q->name, q->offset,
                         q->offset + (uint64_t)q->nbytes);
        }
    }
    size_t dup = SIZE_MAX;
    if (!rc && sort_names(names, n, g->t_by_name, &dup))
        rc = ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", r->path);
    if (!rc && dup != SIZE_MAX)
        rc = BAD(r, FTQ_EFORMAT, "tensor name '%s' appears twice (expected unique names)", g->tensors[dup].name);
    free(o);
    free(names);
    return rc;
}

static int validate(ftq_gguf *g)
{
    rd r = {g->path, g->base, g->size, 0};
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0)
        return BAD(&r, FTQ_EFORMAT, "no GGUF magic at byte 0 (expected the 4 bytes \"GGUF\")");
    r.pos = 4;
    uint32_t ver;
    uint64_t n_t, n_kv;
    int rc = get_u32(&r, &ver, "the header");
    if (rc)
        return rc;
    if (ver == 1)
        return BAD(&r, FTQ_EUNSUPPORTED, "GGUF version 1 is not supported (expected version 2 or 3)");
    if (ver != 2 && ver != 3)
        return BAD(&r, FTQ_EFORMAT, "GGUF version %" PRIu32 " at byte 4 (expected 2 or 3; a big-endian file "
                   "reads as 0x03000000)", ver);
    g->version = ver;
    if ((rc = get_u64(&r, &n_t, "the header")) || (rc = get_u64(&r, &n_kv, "the header")))
        return rc;
    if ((rc = read_kvs(&r, g, n_kv)) || (rc = read_alignment(&r, g)))
        return rc;
    return read_tensors(&r, g, n_t);
}

/* ---- open / close --------------------------------------------------------------------- */

void ftq_gguf_close(ftq_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv; i++)
        free(g->kv[i].key);
    free(g->kv);
    free(g->kv_by_key);
    free(g->tensors);
    free(g->t_by_name);
    free(g->names);
    if (g->map)
        munmap(g->map, g->size);
    free(g->path);
    free(g);
}

static ftq_gguf *new_handle(const char *path)
{
    ftq_gguf *g = calloc(1, sizeof *g);
    if (g && !(g->path = strdup(path ? path : "(memory)"))) {
        free(g);
        g = NULL;
    }
    return g;
}

int ftq_gguf_open_memory(const void *data, size_t len, const char *name, ftq_gguf **out)
{
    if (!out || (!data && len))
        return ftq_set_error(FTQ_EINVAL, "ftq_gguf_open_memory: NULL argument");
    *out = NULL;
    ftq_gguf *g = new_handle(name);
    if (!g)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    static const unsigned char empty[1] = {0};
    g->base = data ? data : empty;
    g->size = len;
    int rc = validate(g);
    if (rc) {
        ftq_gguf_close(g);
        return rc;
    }
    *out = g;
    return FTQ_OK;
}

int ftq_gguf_open(const char *path, ftq_gguf **out)
{
    if (!path || !out)
        return ftq_set_error(FTQ_EINVAL, "ftq_gguf_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ftq_set_error(FTQ_EIO, "cannot open '%s': no such file or not readable", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ftq_set_error(FTQ_EIO, "cannot open '%s': not a regular file", path);
    }
    ftq_gguf *g = new_handle(path);
    if (!g) {
        close(fd);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    g->size = (size_t)st.st_size;
    static const unsigned char empty[1] = {0};
    g->base = empty;
    if (g->size) {
        void *p = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            ftq_gguf_close(g);
            return ftq_set_error(FTQ_EIO, "cannot map '%s' (%zu bytes)", path, (size_t)st.st_size);
        }
        g->map = p;
        g->base = p;
    }
    close(fd);
    int rc = validate(g);
    if (rc) {
        ftq_gguf_close(g);
        return rc;
    }
    *out = g;
    return FTQ_OK;
}

int ftq_gguf_is_file(const char *path)
{
    if (!path || !ftq_is_file(path))
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char m[4];
    int ok = fread(m, 1, 4, f) == 4 && memcmp(m, GGUF_MAGIC, 4) == 0;
    fclose(f);
    return ok;
}

void ftq_gguf_release(const ftq_gguf *g, const void *p, size_t n)
{
    ftq_mapped_release(g->map != NULL, g->base, g->size, p, n);
}

int ftq_gguf_tensor_to_f32(const ftq_gguf_tensor *t, float *dst)
{
    const ftq_ggml_traits *tr = ftq_ggml_type_info(t->type);
    if (!tr || !tr->to_f32)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot dequantize tensor '%s' of ggml type %" PRIu32, t->name, t->type);
    tr->to_f32(t->data, dst, (size_t)t->numel / tr->block_size);
    return FTQ_OK;
}
