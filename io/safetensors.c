/* safetensors.c - strict reader (read-only mmap, zero-copy tensors) and atomic writer of
 * .safetensors files. Invariants: a handle exists only after the whole header validated;
 * tensors are kept in ascending offset order and exactly tile the data area, so every
 * tensor's data lies inside the file; by_name indexes them sorted by name for ftq_st_find. */
#define _POSIX_C_SOURCE 200809L
#include "ftq.h"
#include "io/json_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; ftq reads it in place and needs a little-endian host"
#endif

struct ftq_st_file {
    char *path;                 /* as given to open; used in messages */
    const unsigned char *base;  /* the whole file image */
    size_t size;
    size_t header_len;
    void *map;                  /* our mmap of base, NULL for ftq_st_open_memory */
    size_t n;
    ftq_tensor *tensors;        /* offset order; names owned, data points into base */
    size_t *by_name;            /* indices into tensors sorted by name */
    size_t n_meta;
    char **meta;                /* 2 * n_meta strings: key, value, ... in header order */
};

/* A tensor while the header is being validated. */
typedef struct {
    ftq_tensor t;
    uint64_t begin, end;
    size_t order; /* position in the header: tie-break so sorting is deterministic */
} entry;

/* ---- accessors ------------------------------------------------------------------- */

const char *ftq_st_path(const ftq_st_file *f) { return f->path; }
size_t ftq_st_file_size(const ftq_st_file *f) { return f->size; }
size_t ftq_st_header_size(const ftq_st_file *f) { return f->header_len; }
size_t ftq_st_count(const ftq_st_file *f) { return f->n; }

void ftq_st_release(const ftq_st_file *f, const void *p, size_t n)
{
    ftq_mapped_release(f->map != NULL, f->base, f->size, p, n);
}

const ftq_tensor *ftq_st_tensor(const ftq_st_file *f, size_t i)
{
    return i < f->n ? &f->tensors[i] : NULL;
}

const ftq_tensor *ftq_st_find(const ftq_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ftq_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t ftq_st_metadata_count(const ftq_st_file *f) { return f->n_meta; }

const char *ftq_st_metadata_key(const ftq_st_file *f, size_t i)
{
    return i < f->n_meta ? f->meta[2 * i] : NULL;
}

const char *ftq_st_metadata_value(const ftq_st_file *f, size_t i)
{
    return i < f->n_meta ? f->meta[2 * i + 1] : NULL;
}

const char *ftq_st_metadata_get(const ftq_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

void ftq_st_close(ftq_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    if (f->map)
        munmap(f->map, f->size);
    free(f->path);
    free(f);
}

/* ---- header validation ----------------------------------------------------------- */

/* Context for one validation: the file name for messages and the data area size. */
typedef struct {
    const char *path;
    uint64_t header_len;
    uint64_t data_size;
} vctx;

#define BAD(ctx, status, ...) ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "cannot read '%s'", (ctx)->path)

static uint64_t read_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int check_prefix(const vctx *c, const unsigned char *data, size_t len, uint64_t *hlen)
{
    if (len < 8)
        return BAD(c, FTQ_EFORMAT,
                   "file has %zu bytes, too short for the header length (expected at least 8 bytes)",
                   len);
    uint64_t h = read_u64le(data);
    if (h == 0)
        return BAD(c, FTQ_EFORMAT, "header length is 0 (expected a JSON object of at least 2 bytes)");
    if (h > FTQ_ST_MAX_HEADER)
        return BAD(c, FTQ_EFORMAT, "header length %" PRIu64 " exceeds the limit (at most %u bytes)",
                   h, FTQ_ST_MAX_HEADER);
    if (h > len - 8)
        return BAD(c, FTQ_EFORMAT,
                   "header length %" PRIu64 " exceeds file size %zu (at most %zu bytes after the 8-byte prefix)",
                   h, len, len - 8);
    *hlen = h;
    return FTQ_OK;
}

static int parse_header(const vctx *c, const char *text, size_t len, cJSON **out)
{
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* cJSON would skip it; safetensors refuses it */
        return BAD(c, FTQ_EFORMAT, "header starts with a UTF-8 byte-order mark (expected '{')");
    size_t bad = ftq_json_check_text(text, len);
    if (bad < len)
        return BAD(c, FTQ_EFORMAT,
                   "header has byte 0x%02x at offset %zu (expected UTF-8 JSON without control characters)",
                   (unsigned char)text[bad], bad);
    /* the header's shape is known: {name: {dtype, shape: [dims], data_offsets: [2]}} and
     * __metadata__ {key: string}; a deeper or longer tree is refused before cJSON builds it
     * (a 100 MB header of "shape": [0,0,...] cost 4 GB of parse tree) */
    size_t deep = ftq_json_find_too_deep(text, len, 3, 64);
    if (deep < len)
        return BAD(c, FTQ_EFORMAT, "header nests deeper than 3 levels or holds an array of more than 64 items at "
                   "offset %zu (expected {name: {dtype, shape, data_offsets}})", deep);
    size_t num = ftq_json_find_nonint(text, len);
    if (num < len) {
        size_t n = 0; /* the header is not NUL-terminated: the number may end the buffer */
        while (num + n < len && text[num + n] && strchr("-+.eE0123456789", text[num + n]))
            n++;
        return BAD(c, FTQ_EFORMAT, "header has the number %.*s at offset %zu (expected integers only: shapes and "
                   "data_offsets)", (int)(n > 24 ? 24 : n), text + num, num);
    }
    char why[96];
    cJSON *root = ftq_json_parse_strict(text, len, why, sizeof why, NULL);
    if (!root)
        return BAD(c, FTQ_EFORMAT, "header is not valid JSON: %s (expected one JSON object padded with spaces)", why);
    if (!cJSON_IsObject(root)) {
        int rc = BAD(c, FTQ_EFORMAT, "header is %s (expected a JSON object)", ftq_json_type(root));
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return FTQ_OK;
}

/* Non-negative integer that a double holds exactly (offsets and dims). */
static int get_u53(const cJSON *v, uint64_t *out)
{
    int64_t i;
    if (!ftq_json_int(v, 0, INT64_MAX, &i))
        return 0;
    *out = (uint64_t)i;
    return 1;
}

static int parse_dtype(const vctx *c, const char *name, const cJSON *v, ftq_dtype *out)
{
    char got[64];
    if (!v)
        return BAD(c, FTQ_EFORMAT, "tensor '%s' has no \"dtype\" (expected a string such as \"F32\")", name);
    if (!cJSON_IsString(v))
        return BAD(c, FTQ_EFORMAT, "tensor '%s' dtype is %s (expected a string such as \"F32\")", name,
                   ftq_json_describe(v, got, sizeof got));
    if (ftq_dtype_from_name(v->valuestring, out) != FTQ_OK)
        return BAD(c, FTQ_EUNSUPPORTED,
                   "tensor '%s' has unknown dtype %s (expected F32, F16, BF16, F64, I8, U8, I16, U16, "
                   "I32, U32, I64, U64, BOOL, F8_E4M3 or F8_E5M2)",
                   name, ftq_json_describe(v, got, sizeof got));
    return FTQ_OK;
}

static int parse_shape(const vctx *c, const char *name, const cJSON *v, ftq_tensor *t)
{
    char got[64];
    if (!v)
        return BAD(c, FTQ_EFORMAT, "tensor '%s' has no \"shape\" (expected an array of non-negative integers)", name);
    if (!cJSON_IsArray(v))
        return BAD(c, FTQ_EFORMAT, "tensor '%s' shape is %s (expected an array of non-negative integers)",
                   name, ftq_json_describe(v, got, sizeof got));
    int nd = cJSON_GetArraySize(v);
    if (nd > FTQ_MAX_DIMS)
        return BAD(c, FTQ_EUNSUPPORTED, "tensor '%s' shape has %d dimensions (at most %d supported)", name,
                   nd, FTQ_MAX_DIMS);
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, v)
    {
        uint64_t dim;
        if (!get_u53(d, &dim))
            return BAD(c, FTQ_EFORMAT, "tensor '%s' shape[%d] is %s (expected a non-negative integer below 2^53)",
                       name, i, ftq_json_describe(d, got, sizeof got));
        t->shape[i++] = (int64_t)dim;
    }
    t->ndim = nd;
    return FTQ_OK;
}

/* Byte size of the shape in dtype, or 0 with an error if it overflows 64 bits. */
static int shape_bytes(const vctx *c, const ftq_tensor *t, uint64_t *out)
{
    uint64_t n = ftq_dtype_info(t->dtype)->block_bytes;
    char sh[160];
    for (int i = 0; i < t->ndim; i++) {
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return BAD(c, FTQ_EFORMAT, "tensor '%s' shape %s x %s overflows 64 bits (expected a byte size that fits)",
                       t->name, ftq_shape_str(t->shape, t->ndim, sh, sizeof sh),
                       ftq_dtype_info(t->dtype)->name);
    }
    *out = n;
    return FTQ_OK;
}

static int parse_offsets(const vctx *c, const char *name, const cJSON *v, entry *e)
{
    char got[64];
    if (!v)
        return BAD(c, FTQ_EFORMAT, "tensor '%s' has no \"data_offsets\" (expected [begin, end])", name);
    if (!cJSON_IsArray(v))
        return BAD(c, FTQ_EFORMAT, "tensor '%s' data_offsets is %s (expected an array [begin, end])", name,
                   ftq_json_describe(v, got, sizeof got));
    if (cJSON_GetArraySize(v) != 2)
        return BAD(c, FTQ_EFORMAT, "tensor '%s' data_offsets has %d entries (expected 2: [begin, end])", name,
                   cJSON_GetArraySize(v));
    uint64_t be[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!get_u53(x, &be[i]))
            return BAD(c, FTQ_EFORMAT,
                       "tensor '%s' data_offsets[%d] is %s (expected a non-negative integer below 2^53)", name, i,
                       ftq_json_describe(x, got, sizeof got));
    }
    if (be[0] > be[1])
        return BAD(c, FTQ_EFORMAT, "tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed (expected begin <= end)",
                   name, be[0], be[1]);
    if (be[1] > c->data_size)
        return BAD(c, FTQ_EFORMAT,
                   "tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] extend past the end of the data area "
                   "(data area is %" PRIu64 " bytes; file truncated?)",
                   name, be[0], be[1], c->data_size);
    e->begin = be[0];
    e->end = be[1];
    return FTQ_OK;
}

/* The three required keys, each exactly once, nothing else. */
static int entry_keys(const vctx *c, const char *name, const cJSON *obj, const cJSON *kv[3])
{
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    kv[0] = kv[1] = kv[2] = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        int k = 0;
        while (k < 3 && strcmp(it->string, keys[k]) != 0)
            k++;
        if (k == 3)
            return BAD(c, FTQ_EFORMAT,
                       "tensor '%s' has unknown key \"%s\" (expected only dtype, shape and data_offsets)", name,
                       it->string);
        if (kv[k])
            return BAD(c, FTQ_EFORMAT, "tensor '%s' has key \"%s\" twice (expected it once)", name, keys[k]);
        kv[k] = it;
    }
    return FTQ_OK;
}

static int parse_entry(const vctx *c, const cJSON *item, entry *e)
{
    const char *name = item->string;
    char got[64];
    if (!name[0])
        return BAD(c, FTQ_EFORMAT, "a tensor has an empty name (expected a non-empty string)");
    if (!cJSON_IsObject(item))
        return BAD(c, FTQ_EFORMAT, "tensor '%s' is %s (expected an object with dtype, shape and data_offsets)",
                   name, ftq_json_describe(item, got, sizeof got));
    const cJSON *kv[3];
    int rc = entry_keys(c, name, item, kv);
    if (rc == FTQ_OK)
        rc = parse_dtype(c, name, kv[0], &e->t.dtype);
    if (rc == FTQ_OK)
        rc = parse_shape(c, name, kv[1], &e->t);
    if (rc == FTQ_OK)
        rc = parse_offsets(c, name, kv[2], e);
    if (rc != FTQ_OK)
        return rc;
    e->t.name = strdup(name);
    if (!e->t.name)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", c->path);
    uint64_t want = 0;
    if ((rc = shape_bytes(c, &e->t, &want)) != FTQ_OK)
        return rc;
    if (want != e->end - e->begin) {
        char sh[160];
        return BAD(c, FTQ_EFORMAT,
                   "tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64 " bytes (expected %" PRIu64
                   " bytes for shape %s x %s)",
                   name, e->begin, e->end, e->end - e->begin, want,
                   ftq_shape_str(e->t.shape, e->t.ndim, sh, sizeof sh), ftq_dtype_info(e->t.dtype)->name);
    }
    e->t.nbytes = (size_t)want;
    return FTQ_OK;
}

static int parse_metadata(const vctx *c, const cJSON *m, ftq_st_file *f)
{
    char got[64];
    if (!cJSON_IsObject(m))
        return BAD(c, FTQ_EFORMAT, "__metadata__ is %s (expected an object of string values)",
                   ftq_json_describe(m, got, sizeof got));
    const char *dup;
    if (ftq_json_find_duplicate(m, &dup) != 0)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", c->path);
    if (dup)
        return BAD(c, FTQ_EFORMAT, "__metadata__ has key \"%s\" twice (expected unique keys)", dup);
    size_t n = (size_t)cJSON_GetArraySize(m);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", c->path);
    const cJSON *it;
    cJSON_ArrayForEach(it, m)
    {
        if (!cJSON_IsString(it))
            return BAD(c, FTQ_EFORMAT, "__metadata__ key \"%s\" is %s (expected a string)", it->string,
                       ftq_json_describe(it, got, sizeof got));
        char *k = strdup(it->string), *v = strdup(it->valuestring);
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++; /* counted before the check so ftq_st_close frees a half-built pair */
        if (!k || !v)
            return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", c->path);
    }
    return FTQ_OK;
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    /* Zero-size tensors sort before the tensor that starts at the same offset. */
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Sorted by offset, every tensor must begin where the previous one ended. */
static int check_tiling(const vctx *c, const entry *e, size_t n)
{
    uint64_t pos = 0;
    const char *prev = NULL;
    uint64_t prev_begin = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin < pos)
            return BAD(c, FTQ_EFORMAT,
                       "tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] overlap tensor '%s' [%" PRIu64 ", %" PRIu64
                       "] (expected it to begin at %" PRIu64 ")",
                       e[i].t.name, e[i].begin, e[i].end, prev, prev_begin, pos, pos);
        if (e[i].begin > pos) {
            if (!prev)
                return BAD(c, FTQ_EFORMAT,
                           "gap of %" PRIu64 " bytes before the first tensor '%s' (expected it to begin at offset 0)",
                           e[i].begin, e[i].t.name);
            return BAD(c, FTQ_EFORMAT,
                       "gap of %" PRIu64 " bytes between tensor '%s' ending at %" PRIu64 " and tensor '%s' "
                       "(expected tensors to tile the data area)",
                       e[i].begin - pos, prev, pos, e[i].t.name);
        }
        if (e[i].end > e[i].begin || !prev) {
            prev = e[i].t.name;
            prev_begin = e[i].begin;
        }
        pos = e[i].end;
    }
    if (pos != c->data_size)
        return BAD(c, FTQ_EFORMAT,
                   "%" PRIu64 " trailing bytes after the %s%s%s (expected file size %" PRIu64 ")",
                   c->data_size - pos, prev ? "last tensor '" : "header", prev ? prev : "", prev ? "'" : "",
                   8 + c->header_len + pos);
    return FTQ_OK;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const ftq_tensor *const *)a)->name, (*(const ftq_tensor *const *)b)->name);
}

static void free_entries(entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].t.name);
    free(e);
}

/* Move the validated entries into f in offset order and build the name index. */
static int install_tensors(const vctx *c, ftq_st_file *f, entry *e, size_t n,
                           const unsigned char *data_area)
{
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->by_name = malloc((n ? n : 1) * sizeof *f->by_name);
    const ftq_tensor **idx = malloc((n ? n : 1) * sizeof *idx);
    if (!f->tensors || !f->by_name || !idx) {
        free(idx);
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", c->path);
    }
    for (size_t i = 0; i < n; i++) {
        f->tensors[i] = e[i].t;
        f->tensors[i].data = (void *)(data_area + e[i].begin); /* read-only mapping */
        f->tensors[i].owned = 0;
        e[i].t.name = NULL; /* ownership moved */
        idx[i] = &f->tensors[i];
    }
    f->n = n;
    qsort(idx, n, sizeof *idx, cmp_tensor_name);
    for (size_t i = 0; i < n; i++)
        f->by_name[i] = (size_t)(idx[i] - f->tensors);
    free(idx);
    return FTQ_OK;
}

static int parse_entries(const vctx *c, const cJSON *root, ftq_st_file *f, entry **out, size_t *count)
{
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) n++;
    entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", c->path);
    size_t k = 0;
    int rc = FTQ_OK;
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "__metadata__") == 0) {
            rc = parse_metadata(c, it, f);
        } else {
            e[k].order = k;
            rc = parse_entry(c, it, &e[k]);
            k++; /* even on failure, so free_entries frees a name strdup'd before the error */
        }
        if (rc != FTQ_OK)
            break;
    }
    if (rc != FTQ_OK) {
        free_entries(e, k);
        return rc;
    }
    *out = e;
    *count = k;
    return FTQ_OK;
}

static int validate(ftq_st_file *f, const char *path)
{
    vctx c = {path, 0, 0};
    uint64_t hlen = 0;
    int rc = check_prefix(&c, f->base, f->size, &hlen);
    if (rc != FTQ_OK)
        return rc;
    f->header_len = (size_t)hlen;
    c.header_len = hlen;
    c.data_size = f->size - 8 - hlen;
    cJSON *root = NULL;
    if ((rc = parse_header(&c, (const char *)f->base + 8, (size_t)hlen, &root)) != FTQ_OK)
        return rc;
    const char *dup = NULL;
    if (ftq_json_find_duplicate(root, &dup) != 0)
        rc = ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", path);
    else if (dup)
        rc = BAD(&c, FTQ_EFORMAT, "tensor name '%s' appears twice in the header (expected unique names)", dup);
    entry *e = NULL;
    size_t n = 0;
    if (rc == FTQ_OK)
        rc = parse_entries(&c, root, f, &e, &n);
    cJSON_Delete(root);
    if (rc != FTQ_OK)
        return rc;
    qsort(e, n, sizeof *e, cmp_entry_offset);
    rc = check_tiling(&c, e, n);
    if (rc == FTQ_OK)
        rc = install_tensors(&c, f, e, n, f->base + 8 + hlen);
    free_entries(e, n);
    return rc;
}

static ftq_st_file *new_handle(const char *path)
{
    ftq_st_file *f = calloc(1, sizeof *f);
    if (f && !(f->path = strdup(path))) {
        free(f);
        f = NULL;
    }
    return f;
}

int ftq_st_open_memory(const void *data, size_t len, const char *name, ftq_st_file **out)
{
    *out = NULL;
    if (!name)
        name = "<memory>";
    ftq_st_file *f = new_handle(name);
    if (!f)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", name);
    f->base = data;
    f->size = len;
    int rc = validate(f, name);
    if (rc != FTQ_OK) {
        ftq_st_close(f);
        return rc;
    }
    *out = f;
    return FTQ_OK;
}

/* open + fstat + mmap; a file too short to map is validated (and rejected) from memory. */
static int map_file(const char *path, ftq_st_file *f)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return ftq_set_error(e == ENOENT ? FTQ_ENOTFOUND : FTQ_EIO, "cannot open '%s': %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ftq_set_error(FTQ_EIO, "cannot read '%s': not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot read '%s': file too large to map", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size >= 8) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ftq_set_error(FTQ_EIO, "cannot map '%s': %s", path, strerror(e));
        }
        f->map = m;
        f->base = m;
    } else {
        f->base = (const unsigned char *)""; /* only the length is looked at */
    }
    close(fd); /* the mapping keeps the file alive */
    return FTQ_OK;
}

int ftq_st_open(const char *path, ftq_st_file **out)
{
    *out = NULL;
    ftq_st_file *f = new_handle(path);
    if (!f)
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", path);
    int rc = map_file(path, f);
    if (rc == FTQ_OK)
        rc = validate(f, path);
    if (rc != FTQ_OK) {
        ftq_st_close(f);
        return rc;
    }
    *out = f;
    return FTQ_OK;
}

/* ---- writer ---------------------------------------------------------------------- */

#define WBAD(path, status, ...) ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "cannot write '%s'", (path))

static int check_write_tensor(const char *path, const ftq_tensor *t)
{
    const ftq_dtype_traits *tr = ftq_dtype_info(t->dtype);
    if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
        return WBAD(path, FTQ_EINVAL, "tensor name '%s' is not allowed (expected a non-empty name other than __metadata__)",
                    t->name ? t->name : "(null)");
    size_t len = strlen(t->name);
    if (ftq_json_check_text(t->name, len) != len)
        return WBAD(path, FTQ_EINVAL, "tensor name '%s' is not valid UTF-8 text", t->name);
    if (!tr || tr->block_size != 1)
        return WBAD(path, FTQ_EINVAL, "tensor '%s' has invalid dtype %d", t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > FTQ_MAX_DIMS)
        return WBAD(path, FTQ_EINVAL, "tensor '%s' has %d dimensions (expected 0..%d)", t->name, t->ndim, FTQ_MAX_DIMS);
    uint64_t n = tr->block_bytes;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (double)t->shape[i] > FTQ_JSON_MAX_EXACT_INT ||
            __builtin_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return WBAD(path, FTQ_EINVAL, "tensor '%s' has invalid shape[%d] = %" PRId64, t->name, i, t->shape[i]);
    }
    if (n != t->nbytes)
        return WBAD(path, FTQ_EINVAL, "tensor '%s' has nbytes %zu (expected %" PRIu64 " for its dtype and shape)",
                    t->name, t->nbytes, n);
    if (n && !t->data)
        return WBAD(path, FTQ_EINVAL, "tensor '%s' has no data", t->name);
    return FTQ_OK;
}

static int check_write_names(const char *path, const ftq_tensor *tensors, size_t n)
{
    const ftq_tensor **idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return ftq_set_error(FTQ_ENOMEM, "cannot write '%s': out of memory", path);
    for (size_t i = 0; i < n; i++)
        idx[i] = &tensors[i];
    qsort(idx, n, sizeof *idx, cmp_tensor_name);
    int rc = FTQ_OK;
    for (size_t i = 1; i < n && rc == FTQ_OK; i++)
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0)
            rc = WBAD(path, FTQ_EINVAL, "tensor name '%s' appears twice (expected unique names)", idx[i]->name);
    free(idx);
    return rc;
}

/* Integers go in as raw JSON text: cJSON would print 1e+15 for a round offset, which the
 * reference (Rust, serde) reader rejects as a non-integer. */
static cJSON *raw_u64(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

static int add_metadata(cJSON *root, const char *const *metadata)
{
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    if (!m)
        return FTQ_ENOMEM;
    for (size_t i = 0; metadata[i]; i += 2) {
        if (!metadata[i + 1])
            return FTQ_EINVAL;
        size_t kl = strlen(metadata[i]), vl = strlen(metadata[i + 1]);
        if (ftq_json_check_text(metadata[i], kl) != kl || ftq_json_check_text(metadata[i + 1], vl) != vl ||
            cJSON_GetObjectItemCaseSensitive(m, metadata[i]))
            return FTQ_EINVAL;
        if (!cJSON_AddStringToObject(m, metadata[i], metadata[i + 1]))
            return FTQ_ENOMEM;
    }
    return FTQ_OK;
}

static int add_tensor_entry(cJSON *root, const ftq_tensor *t, uint64_t begin)
{
    /* Key order dtype, shape, data_offsets as the reference writer: headers diff cleanly. */
    cJSON *o = cJSON_AddObjectToObject(root, t->name);
    if (!o || !cJSON_AddStringToObject(o, "dtype", ftq_dtype_info(t->dtype)->name))
        return FTQ_ENOMEM;
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    if (!shape)
        return FTQ_ENOMEM;
    for (int i = 0; i < t->ndim; i++) {
        cJSON *d = raw_u64((uint64_t)t->shape[i]);
        if (!d || !cJSON_AddItemToArray(shape, d)) {
            cJSON_Delete(d);
            return FTQ_ENOMEM;
        }
    }
    cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
    cJSON *b = raw_u64(begin), *e = raw_u64(begin + t->nbytes);
    if (!offs || !b || !e) {
        cJSON_Delete(b);
        cJSON_Delete(e);
        return FTQ_ENOMEM;
    }
    cJSON_AddItemToArray(offs, b);
    cJSON_AddItemToArray(offs, e);
    return FTQ_OK;
}

/* The header text, padded with spaces to a multiple of 8 so the data area is 8-aligned. */
static int build_header(const char *path, const ftq_tensor *tensors, size_t n, const char *const *metadata,
                        char **out, size_t *out_len)
{
    cJSON *root = cJSON_CreateObject();
    int rc = root ? FTQ_OK : FTQ_ENOMEM;
    if (rc == FTQ_OK && metadata && (rc = add_metadata(root, metadata)) == FTQ_EINVAL)
        rc = WBAD(path, FTQ_EINVAL, "metadata must be unique UTF-8 keys each with a UTF-8 value");
    uint64_t off = 0;
    for (size_t i = 0; i < n && rc == FTQ_OK; i++) {
        rc = add_tensor_entry(root, &tensors[i], off);
        off += tensors[i].nbytes;
    }
    char *text = rc == FTQ_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (rc == FTQ_OK && !text)
        rc = FTQ_ENOMEM;
    if (rc == FTQ_ENOMEM)
        return ftq_set_error(FTQ_ENOMEM, "cannot write '%s': out of memory", path);
    if (rc != FTQ_OK)
        return rc;
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    char *buf = realloc(text, padded + 1);
    if (!buf) {
        free(text);
        return ftq_set_error(FTQ_ENOMEM, "cannot write '%s': out of memory", path);
    }
    memset(buf + len, ' ', padded - len);
    buf[padded] = '\0';
    *out = buf;
    *out_len = padded;
    return FTQ_OK;
}

static int write_all(ftq_atomic_file *af, const char *path, const char *hdr, size_t hlen,
                     const ftq_tensor *tensors, size_t n)
{
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(prefix, 1, 8, af->fp) == 8 && fwrite(hdr, 1, hlen, af->fp) == hlen;
    for (size_t i = 0; i < n && ok; i++)
        ok = tensors[i].nbytes == 0 || fwrite(tensors[i].data, 1, tensors[i].nbytes, af->fp) == tensors[i].nbytes;
    if (!ok)
        return ftq_set_error(FTQ_EIO, "cannot write '%s': %s", path, strerror(errno));
    return FTQ_OK;
}

int ftq_st_write(const char *path, const ftq_tensor *tensors, size_t n, const char *const *metadata)
{
    int rc = FTQ_OK;
    uint64_t total = 0;
    for (size_t i = 0; i < n && rc == FTQ_OK; i++) {
        rc = check_write_tensor(path, &tensors[i]);
        if (rc == FTQ_OK && __builtin_add_overflow(total, (uint64_t)tensors[i].nbytes, &total))
            rc = WBAD(path, FTQ_EINVAL, "total tensor size overflows 64 bits");
    }
    if (rc == FTQ_OK && (double)total > FTQ_JSON_MAX_EXACT_INT)
        rc = WBAD(path, FTQ_EUNSUPPORTED, "total tensor size %" PRIu64 " exceeds 2^53 bytes", total);
    if (rc == FTQ_OK)
        rc = check_write_names(path, tensors, n);
    char *hdr = NULL;
    size_t hlen = 0;
    if (rc == FTQ_OK)
        rc = build_header(path, tensors, n, metadata, &hdr, &hlen);
    if (rc == FTQ_OK && hlen > FTQ_ST_MAX_HEADER)
        rc = WBAD(path, FTQ_EUNSUPPORTED, "header of %zu bytes exceeds the limit of %u bytes", hlen, FTQ_ST_MAX_HEADER);
    ftq_atomic_file af;
    if (rc == FTQ_OK && (rc = ftq_atomic_open(&af, path)) == FTQ_OK) {
        rc = write_all(&af, path, hdr, hlen, tensors, n);
        if (rc == FTQ_OK)
            rc = ftq_atomic_commit(&af);
        else
            ftq_atomic_abort(&af);
    }
    free(hdr);
    return rc;
}
