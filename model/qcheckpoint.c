/* qcheckpoint.c - the index of a quantized checkpoint: `__metadata__` parsed and every part
 * tensor checked against it up front (docs/quant-format.md section 4), so the loader, the
 * dequantizer and `ftq info` only ever see consistent entries; and the row-range reader
 * that turns an entry into a row-major ftq_qtensor. Messages name the file and the tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/checkpoint_src.h"
#include "io/json_util.h"
#include "kernels/kquant.h"
#include "model/qcheckpoint.h"

#define NPARTS 4
static const char *const PART_SUFFIX[NPARTS] = {".qweight", ".qscale", ".qzero", ".qmin"};

const char **ftq_qmeta_carry(const ftq_checkpoint *ck, size_t extra, size_t *n)
{
    const ftq_st_file *f0 = ftq_checkpoint_file(ck, 0);
    size_t nm = f0 ? ftq_st_metadata_count(f0) : 0, k = 0; /* none: a GGUF source */
    const char **meta = calloc(2 * nm + 2 * extra + 3, sizeof(char *));
    if (!meta)
        return NULL;
    meta[k++] = "format";
    meta[k++] = "pt";
    for (size_t i = 0; i < nm; i++) {
        const char *key = ftq_st_metadata_key(f0, i);
        if (strcmp(key, "format") == 0 || strncmp(key, "ftq.quant.", 10) == 0)
            continue;
        meta[k++] = key;
        meta[k++] = ftq_st_metadata_value(f0, i);
    }
    *n = k;
    return meta;
}

char *ftq_qscheme_label(ftq_qscheme s, int group, char *buf, size_t cap)
{
    const ftq_qscheme_traits *tr = ftq_qscheme_info(s);
    if (group == FTQ_QGROUP_ROW)
        snprintf(buf, cap, "%s_row", tr ? tr->name : "?");
    else
        snprintf(buf, cap, "%s_g%d", tr ? tr->name : "?", group);
    return buf;
}

char *ftq_qpart_name(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    if (n > 7 && strcmp(name + n - 7, ".weight") == 0)
        n -= 7;
    char *s = malloc(n + k + 1);
    if (!s)
        return NULL;
    memcpy(s, name, n);
    memcpy(s + n, suffix, k + 1);
    return s;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && strcmp(s + n - k, suf) == 0;
}

void ftq_qindex_free(ftq_qindex *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->e[i].name);
        free(ix->e[i].copied_from);
    }
    free(ix->e);
    free(ix);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const ftq_qentry *)a)->name, ((const ftq_qentry *)b)->name);
}

const ftq_qentry *ftq_qindex_find(const ftq_qindex *ix, const char *name)
{
    if (!ix || !name)
        return NULL;
    ftq_qentry key;
    key.name = (char *)name;
    return bsearch(&key, ix->e, ix->n, sizeof *ix->e, cmp_entry);
}

const ftq_qentry *ftq_qindex_entry_of(const ftq_qindex *ix, const ftq_tensor *t)
{
    if (!ix || !t || ix->n == 0)
        return NULL;
    const char *p = (const char *)t, *lo = (const char *)ix->e, *hi = (const char *)(ix->e + ix->n);
    if (p < lo || p >= hi)
        return NULL;
    const ftq_qentry *e = &ix->e[(size_t)(p - lo) / sizeof *ix->e];
    return &e->view == t ? e : NULL;
}

int ftq_qindex_is_part(const ftq_qindex *ix, const char *name)
{
    if (!ix)
        return 0;
    for (int k = 0; k < NPARTS; k++) {
        if (!has_suffix(name, PART_SUFFIX[k]))
            continue;
        for (size_t i = 0; i < ix->n; i++) {
            const ftq_tensor *t = k == 0 ? ix->e[i].qweight : k == 1 ? ix->e[i].qscale : k == 2 ? ix->e[i].qzero
                                                                                                : ix->e[i].qmin;
            if (t && strcmp(t->name, name) == 0)
                return 1;
        }
    }
    return 0;
}

/* ---- validation ------------------------------------------------------------------------- */

typedef struct {
    const ftq_checkpoint *ck;
    const char *file; /* the file whose metadata is being read */
} vctx;

#define QBAD(c, name, ...) \
    ftq_wrap_error(ftq_set_error(FTQ_EFORMAT, __VA_ARGS__), "quantized tensor '%s' in '%s'", (name), (c)->file)

/* part `k` of entry e: present with dtype and shape [rows, d1] (or absent, when !want). */
static int check_part(const vctx *c, ftq_qentry *e, int k, int want, ftq_dtype dt, int64_t d1,
                      const ftq_tensor **out)
{
    char *pn = ftq_qpart_name(e->name, PART_SUFFIX[k]);
    if (!pn)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    const ftq_tensor *t = ftq_checkpoint_find(c->ck, pn);
    int rc = FTQ_OK;
    char got[64], exp[64];
    int64_t shape[2] = {e->rows, d1};
    ftq_shape_str(shape, 2, exp, sizeof exp);
    if (!want && t)
        rc = QBAD(c, e->name, "'%s' is present but scheme %s has no %s", pn, ftq_qscheme_info(e->scheme)->name,
                  k == 2 ? "zero codes" : "group minimums");
    else if (want && !t)
        rc = QBAD(c, e->name, "missing tensor '%s' (%s %s)", pn, ftq_dtype_info(dt)->name, exp);
    else if (t && t->dtype != dt)
        rc = QBAD(c, e->name, "'%s' has dtype %s, expected %s", pn, ftq_dtype_info(t->dtype)->name,
                  ftq_dtype_info(dt)->name);
    else if (t && (t->ndim != 2 || t->shape[0] != e->rows || t->shape[1] != d1))
        rc = QBAD(c, e->name, "'%s' has shape %s, expected %s (from shape [%d, %d], scheme %s, group %d)", pn,
                  ftq_shape_str(t->shape, t->ndim, got, sizeof got), exp, e->rows, e->cols,
                  ftq_qscheme_info(e->scheme)->name, e->group);
    free(pn);
    *out = t;
    return rc;
}

/* Contents: finite scales, zero codes <= 15, no q8 code -128. */
static int check_values(const vctx *c, const ftq_qentry *e)
{
    size_t ns = (size_t)ftq_tensor_numel(e->qscale);
    const unsigned char *sp = e->qscale->data;
    for (size_t i = 0; i < ns; i++) {
        uint16_t h;
        memcpy(&h, sp + 2 * i, 2);
        if ((h & 0x7c00) == 0x7c00)
            return QBAD(c, e->name, "non-finite scale %g at row %zu, group %zu", (double)ftq_f16_to_f32(h),
                        i / (ns / (size_t)e->rows), i % (ns / (size_t)e->rows));
    }
    if (e->qmin) { /* q4m's f16 minimums: finite too */
        const unsigned char *mp = e->qmin->data;
        for (size_t i = 0; i < ns; i++) {
            uint16_t h;
            memcpy(&h, mp + 2 * i, 2);
            if ((h & 0x7c00) == 0x7c00)
                return QBAD(c, e->name, "non-finite minimum %g at row %zu, group %zu", (double)ftq_f16_to_f32(h),
                            i / (ns / (size_t)e->rows), i % (ns / (size_t)e->rows));
        }
    }
    if (e->qzero) {
        const uint8_t *z = e->qzero->data;
        for (size_t i = 0; i < ns; i++)
            if (z[i] > 15)
                return QBAD(c, e->name, "zero code %d at row %zu, group %zu is above 15", z[i],
                            i / (ns / (size_t)e->rows), i % (ns / (size_t)e->rows));
    }
    if (e->scheme == FTQ_QSCHEME_Q4K) { /* the f16 dmin of each super-block sits in .qweight */
        const uint8_t *q = e->qweight->data;
        size_t nsb = (size_t)e->rows * (size_t)(e->cols / FTQ_QK);
        for (size_t i = 0; i < nsb; i++) {
            uint16_t h = (uint16_t)(q[i * FTQ_Q4K_BYTES] | q[i * FTQ_Q4K_BYTES + 1] << 8);
            if ((h & 0x7c00) == 0x7c00)
                return QBAD(c, e->name, "non-finite dmin %g at row %zu, super-block %zu", (double)ftq_f16_to_f32(h),
                            i / (size_t)(e->cols / FTQ_QK), i % (size_t)(e->cols / FTQ_QK));
        }
    }
    if (e->scheme == FTQ_QSCHEME_Q8) {
        const int8_t *q = e->qweight->data;
        size_t n = (size_t)e->rows * (size_t)e->cols;
        for (size_t i = 0; i < n; i++)
            if (q[i] == -128)
                return QBAD(c, e->name, "q8 code -128 at row %zu, column %zu (codes are in [-127, 127])",
                            i / (size_t)e->cols, i % (size_t)e->cols);
        ftq_checkpoint_release(c->ck, q, n); /* scanned only: not kept resident */
    }
    return FTQ_OK;
}

static int parse_entry(const vctx *c, const char *name, const cJSON *v, ftq_qentry *e)
{
    char got[64];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    const char *dup = NULL;
    if (!cJSON_IsObject(v))
        return QBAD(c, name, "metadata entry is %s, expected an object", ftq_json_type(v));
    if (ftq_json_find_duplicate(v, &dup) != 0)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (dup)
        return QBAD(c, name, "metadata entry has the key '%s' twice", dup);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "scheme");
    if (!cJSON_IsString(s))
        return QBAD(c, name, "\"scheme\" is %s, expected \"q8\", \"q4\", \"q4a\", \"q4m\", \"q5\", \"q6k\" or \"q4k\"", ftq_json_describe(s, got, sizeof got));
    if (ftq_qscheme_from_name(s->valuestring, &e->scheme) != FTQ_OK)
        return QBAD(c, name, "unknown scheme '%s' (expected q8, q4, q4a, q4m, q5, q6k or q4k)", s->valuestring);
    int64_t g = -1;
    const cJSON *gj = cJSON_GetObjectItemCaseSensitive(v, "group");
    if (!ftq_json_int(gj, 0, 1 << 20, &g))
        return QBAD(c, name, "\"group\" is %s, expected 32, 64, 128 or 0 (per row)", ftq_json_describe(gj, got, sizeof got));
    e->group = (int)g;
    ftq_quant_params qp = {e->scheme, e->group, 0, 1};
    if (ftq_quant_params_check(&qp) != FTQ_OK)
        return QBAD(c, name, "group %d is not valid for scheme %s (expected %s)", e->group, s->valuestring,
                    e->scheme == FTQ_QSCHEME_Q8 ? "32, 64, 128 or 0 for per row"
                    : ftq_qscheme_is_k(e->scheme) ? "256" : "32, 64 or 128");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(v, "shape");
    int64_t d[2];
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) != 2 || !ftq_json_int(cJSON_GetArrayItem(sh, 0), 1, INT32_MAX / 2, &d[0]) ||
        !ftq_json_int(cJSON_GetArrayItem(sh, 1), 1, INT32_MAX / 2, &d[1]))
        return QBAD(c, name, "\"shape\" is %s, expected [out, in] with two positive integers",
                    ftq_json_describe(sh, got, sizeof got));
    e->rows = (int)d[0];
    e->cols = (int)d[1];
    if ((ftq_qscheme_is_k(e->scheme) && e->cols % FTQ_QK) || (e->scheme == FTQ_QSCHEME_Q5 && e->cols % 32))
        return QBAD(c, name, "scheme %s needs a multiple of %d inputs, not %d", s->valuestring,
                    e->scheme == FTQ_QSCHEME_Q5 ? 32 : FTQ_QK, e->cols);
    static const char *const bools[] = {"transposed", "search"};
    for (int k = 0; k < 2; k++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(v, bools[k]);
        if (b && !cJSON_IsBool(b))
            return QBAD(c, name, "\"%s\" is %s, expected true or false", bools[k], ftq_json_describe(b, got, sizeof got));
        *(k == 0 ? &e->transposed : &e->search) = cJSON_IsTrue(b);
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(v, "source_dtype");
    if (sd && !cJSON_IsString(sd))
        return QBAD(c, name, "\"source_dtype\" is %s, expected a string", ftq_json_describe(sd, got, sizeof got));
    if (sd)
        snprintf(e->source_dtype, sizeof e->source_dtype, "%s", sd->valuestring);
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(v, "copied_from");
    if (cf && !cJSON_IsString(cf))
        return QBAD(c, name, "\"copied_from\" is %s, expected a string", ftq_json_describe(cf, got, sizeof got));
    if (cf && !(e->copied_from = strdup(cf->valuestring)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");

    /* the parts */
    if (ftq_checkpoint_find(c->ck, name))
        return QBAD(c, name, "the tensor is also stored unquantized");
    int64_t ng = ftq_qrow_groups(e->group, e->cols);
    int64_t qb = (int64_t)ftq_qrow_bytes(e->scheme, e->cols);
    int rc = check_part(c, e, 0, 1, e->scheme == FTQ_QSCHEME_Q8 ? FTQ_DTYPE_I8 : FTQ_DTYPE_U8, qb, &e->qweight);
    if (rc == FTQ_OK)
        rc = check_part(c, e, 1, 1, FTQ_DTYPE_F16, ng, &e->qscale);
    if (rc == FTQ_OK)
        rc = check_part(c, e, 2, e->scheme == FTQ_QSCHEME_Q4A, FTQ_DTYPE_U8, ng, &e->qzero);
    if (rc == FTQ_OK)
        rc = check_part(c, e, 3, e->scheme == FTQ_QSCHEME_Q4M, FTQ_DTYPE_F16, ng, &e->qmin);
    if (rc == FTQ_OK)
        rc = check_values(c, e);
    if (rc != FTQ_OK)
        return rc;
    e->view.name = e->name;
    e->view.dtype = FTQ_DTYPE_QMAT;
    e->view.ndim = 2;
    e->view.shape[0] = e->transposed ? e->cols : e->rows;
    e->view.shape[1] = e->transposed ? e->rows : e->cols;
    return FTQ_OK;
}

/* The entries listed by one file (appended to ix). */
/* The entries of one file's metadata (or, for a checkpoint without files, its own:
 * file = the checkpoint's label). */
static int parse_meta(const ftq_checkpoint *ck, const char *file, const char *ver, const char *list, ftq_qindex *ix)
{
    vctx c = {ck, file};
    if (!ver && !list)
        return FTQ_OK;
    if (!ver)
        return ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': metadata lists "
                             FTQ_QUANT_KEY_TENSORS " but has no " FTQ_QUANT_KEY_VERSION, c.file);
    if (strcmp(ver, FTQ_QUANT_VERSION) != 0)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot read quantized checkpoint '%s': unknown "
                             FTQ_QUANT_KEY_VERSION " '%.32s' (this ftq reads version " FTQ_QUANT_VERSION ")",
                             c.file, ver);
    if (!list)
        return ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': metadata has "
                             FTQ_QUANT_KEY_VERSION " but no " FTQ_QUANT_KEY_TENSORS, c.file);
    char why[128];
    cJSON *root = ftq_json_parse_strict(list, strlen(list), why, sizeof why, NULL);
    if (!root)
        return ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': " FTQ_QUANT_KEY_TENSORS ": %s",
                             c.file, why);
    int rc = FTQ_OK;
    const char *dup = NULL;
    if (!cJSON_IsObject(root))
        rc = ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': " FTQ_QUANT_KEY_TENSORS
                           " is %s, expected an object", c.file, ftq_json_type(root));
    else if (ftq_json_find_duplicate(root, &dup) != 0)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    else if (dup)
        rc = ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': " FTQ_QUANT_KEY_TENSORS
                           " lists '%s' twice", c.file, dup);
    size_t n = rc == FTQ_OK ? (size_t)cJSON_GetArraySize(root) : 0;
    if (n) {
        ftq_qentry *grown = realloc(ix->e, (ix->n + n) * sizeof *grown);
        if (!grown)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else
            ix->e = grown;
    }
    for (const cJSON *it = root ? root->child : NULL; it && rc == FTQ_OK; it = it->next) {
        ftq_qentry *e = &ix->e[ix->n++];
        rc = parse_entry(&c, it->string, it, e);
    }
    cJSON_Delete(root);
    return rc;
}

int ftq_qindex_open(const ftq_checkpoint *ck, const char *label, ftq_qindex **out)
{
    *out = NULL;
    ftq_qindex *ix = calloc(1, sizeof *ix);
    if (!ix)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = FTQ_OK, any_meta = 0;
    for (size_t i = 0; i < ftq_checkpoint_nfiles(ck) && rc == FTQ_OK; i++) {
        const ftq_st_file *f = ftq_checkpoint_file(ck, i);
        const char *ver = ftq_st_metadata_get(f, FTQ_QUANT_KEY_VERSION), *list = ftq_st_metadata_get(f, FTQ_QUANT_KEY_TENSORS);
        any_meta |= ver || list;
        rc = parse_meta(ck, ftq_st_path(f), ver, list, ix);
    }
    if (ftq_checkpoint_nfiles(ck) == 0) { /* built from another format (GGUF --keep-quant) */
        const char *ver = ftq_checkpoint_own_metadata(ck, FTQ_QUANT_KEY_VERSION),
                   *list = ftq_checkpoint_own_metadata(ck, FTQ_QUANT_KEY_TENSORS);
        any_meta |= ver || list;
        rc = parse_meta(ck, label, ver, list, ix);
    }
    if (rc == FTQ_OK && ix->n) {
        /* the views point into the array: fix them after sorting */
        qsort(ix->e, ix->n, sizeof *ix->e, cmp_entry);
        for (size_t i = 0; i < ix->n; i++)
            ix->e[i].view.name = ix->e[i].name;
        for (size_t i = 1; i < ix->n && rc == FTQ_OK; i++)
            if (strcmp(ix->e[i - 1].name, ix->e[i].name) == 0)
                rc = ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': '%s' is listed by two files",
                                   label, ix->e[i].name);
    }
    /* every part must belong to a listed tensor */
    for (size_t i = 0; i < ftq_checkpoint_count(ck) && rc == FTQ_OK; i++) {
        const char *nm = ftq_checkpoint_tensor(ck, i)->name;
        for (int k = 0; k < NPARTS && rc == FTQ_OK; k++) {
            if (!has_suffix(nm, PART_SUFFIX[k]) || ftq_qindex_is_part(ix, nm))
                continue;
            if (!any_meta)
                rc = ftq_set_error(FTQ_EFORMAT, "cannot read checkpoint '%s': tensor '%s' looks quantized but no file "
                                   "has " FTQ_QUANT_KEY_VERSION " metadata (only ftq's quantized format is supported)",
                                   label, nm);
            else
                rc = ftq_set_error(FTQ_EFORMAT, "cannot read quantized checkpoint '%s': tensor '%s' is not listed in "
                                   FTQ_QUANT_KEY_TENSORS, label, nm);
        }
    }
    if (rc != FTQ_OK || !any_meta) {
        ftq_qindex_free(ix);
        return rc;
    }
    *out = ix;
    return FTQ_OK;
}

int ftq_qentry_read(const ftq_qentry *e, int row0, int n, ftq_qtensor *q)
{
    memset(q, 0, sizeof *q);
    if (row0 < 0 || n <= 0 || row0 > e->rows - n)
        return ftq_set_error(FTQ_EINVAL, "rows [%d, %d) outside quantized tensor '%s' of %d rows", row0, row0 + n,
                             e->name, e->rows);
    int rc = ftq_qtensor_alloc(q, e->scheme, n, e->cols, e->group);
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "quantized tensor '%s'", e->name);
    memcpy(q->qs, (const uint8_t *)e->qweight->data + (size_t)row0 * q->row_bytes, (size_t)n * q->row_bytes);
    size_t ns = (size_t)n * q->ngroups, s0 = (size_t)row0 * q->ngroups;
    const unsigned char *sp = (const unsigned char *)e->qscale->data + 2 * s0;
    for (size_t i = 0; i < ns; i++) {
        uint16_t h;
        memcpy(&h, sp + 2 * i, 2);
        q->scales[i] = ftq_f16_to_f32(h);
    }
    if (q->zeros)
        memcpy(q->zeros, (const uint8_t *)e->qzero->data + s0, ns);
    if (q->mins) {
        const unsigned char *mp = (const unsigned char *)e->qmin->data + 2 * s0;
        for (size_t i = 0; i < ns; i++) {
            uint16_t h;
            memcpy(&h, mp + 2 * i, 2);
            q->mins[i] = ftq_f16_to_f32(h);
        }
    }
    return FTQ_OK;
}

/* ---- the public listing ----------------------------------------------------------------- */

void ftq_quant_tensor_info_free(ftq_quant_tensor_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].name);
        free(list[i].copied_from);
    }
    free(list);
}

int ftq_quant_checkpoint_list(const ftq_checkpoint *ck, ftq_quant_tensor_info **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    if (!ck)
        return ftq_set_error(FTQ_EINVAL, "ftq_quant_checkpoint_list: NULL checkpoint");
    const ftq_st_file *f0 = ftq_checkpoint_nfiles(ck) ? ftq_checkpoint_file(ck, 0) : NULL;
    ftq_qindex *ix = NULL;
    int rc = ftq_qindex_open(ck, f0 ? ftq_st_path(f0) : "?", &ix);
    if (rc != FTQ_OK || !ix)
        return rc;
    ftq_quant_tensor_info *l = calloc(ix->n ? ix->n : 1, sizeof *l);
    if (!l)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; l && i < ix->n && rc == FTQ_OK; i++) {
        const ftq_qentry *e = &ix->e[i];
        ftq_quant_tensor_info *t = &l[i];
        t->name = strdup(e->name);
        t->copied_from = e->copied_from ? strdup(e->copied_from) : NULL;
        if (!t->name || (e->copied_from && !t->copied_from))
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        ftq_qscheme_label(e->scheme, e->group, t->scheme, sizeof t->scheme);
        t->rows = e->rows;
        t->cols = e->cols;
        t->shape[0] = e->view.shape[0];
        t->shape[1] = e->view.shape[1];
        t->transposed = e->transposed;
        t->bytes = e->qweight->nbytes + e->qscale->nbytes + (e->qzero ? e->qzero->nbytes : 0) +
                   (e->qmin ? e->qmin->nbytes : 0);
    }
    if (rc == FTQ_OK) {
        *list = l;
        *n = ix->n;
    } else {
        ftq_quant_tensor_info_free(l, ix->n);
    }
    ftq_qindex_free(ix);
    return rc;
}
