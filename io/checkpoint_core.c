/* checkpoint_core.c - what every checkpoint has whatever its source: the accessors, the
 * metadata of a non-file source, and a checkpoint built from tensors another reader produced
 * (GGUF). Opening safetensors files and directories is checkpoint.c's. */
#include "ftq.h"
#include "io/checkpoint_internal.h"
#include "io/checkpoint_src.h"

#include <stdlib.h>
#include <string.h>

size_t ftq_checkpoint_count(const ftq_checkpoint *c) { return c->n; }
size_t ftq_checkpoint_nfiles(const ftq_checkpoint *c) { return c->nfiles; }

void ftq_checkpoint_release(const ftq_checkpoint *c, const void *p, size_t n)
{
    for (size_t i = 0; i < c->nfiles; i++)
        ftq_st_release(ftq_checkpoint_file(c, i), p, n);
}
size_t ftq_checkpoint_total_bytes(const ftq_checkpoint *c) { return c->total_bytes; }

const ftq_tensor *ftq_checkpoint_tensor(const ftq_checkpoint *c, size_t i)
{
    return i < c->n ? c->all[i] : NULL;
}

const ftq_st_file *ftq_checkpoint_file(const ftq_checkpoint *c, size_t i)
{
    return i < c->nfiles ? c->files[i] : NULL;
}

const ftq_tensor *ftq_checkpoint_find(const ftq_checkpoint *c, const char *name)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->sorted[mid]->name, name);
        if (r == 0)
            return c->sorted[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void ftq_checkpoint_close(ftq_checkpoint *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nfiles; i++)
        ftq_st_close(c->files[i]);
    free(c->files);
    free(c->all);
    free(c->sorted);
    ftq_tensors_free(c->own, c->n_own);
    for (size_t i = 0; i < 2 * c->n_meta; i++)
        free(c->meta[i]);
    free(c->meta);
    free(c);
}

int ftq_checkpoint_set_metadata(ftq_checkpoint *c, const char *key, const char *value)
{
    char **m = realloc(c->meta, (2 * c->n_meta + 2) * sizeof *m);
    if (!m)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    c->meta = m;
    if (!(m[2 * c->n_meta] = strdup(key)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!(m[2 * c->n_meta + 1] = strdup(value))) {
        free(m[2 * c->n_meta]);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    c->n_meta++;
    return FTQ_OK;
}

const char *ftq_checkpoint_own_metadata(const ftq_checkpoint *c, const char *key)
{
    for (size_t i = c->n_meta; i-- > 0;)
        if (strcmp(c->meta[2 * i], key) == 0)
            return c->meta[2 * i + 1];
    return NULL;
}

void ftq_tensors_free(ftq_tensor *tensors, size_t n)
{
    for (size_t i = 0; tensors && i < n; i++) {
        free(tensors[i].name);
        if (tensors[i].owned)
            free(tensors[i].data);
    }
    free(tensors);
}

int ftq_checkpoint_cmp_name(const void *a, const void *b)
{
    return strcmp((*(const ftq_tensor *const *)a)->name, (*(const ftq_tensor *const *)b)->name);
}

void ftq_checkpoint_drop_data(ftq_checkpoint *c, const ftq_tensor *t)
{
    if (!c || !t || c->n_own == 0 || t < c->own || t >= c->own + c->n_own)
        return;
    ftq_tensor *o = &c->own[t - c->own];
    if (o->owned)
        free(o->data);
    o->data = NULL;
    o->owned = 0;
}

int ftq_checkpoint_from_tensors(ftq_tensor *tensors, size_t n, size_t total_bytes, const char *label,
                                ftq_checkpoint **out)
{
    *out = NULL;
    ftq_checkpoint *c = calloc(1, sizeof *c);
    if (!c) {
        ftq_tensors_free(tensors, n);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    c->own = tensors;
    c->n_own = n;
    c->all = malloc((n ? n : 1) * sizeof *c->all);
    c->sorted = malloc((n ? n : 1) * sizeof *c->sorted);
    int rc = c->all && c->sorted ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "cannot open '%s': out of memory", label);
    for (size_t i = 0; rc == FTQ_OK && i < n; i++)
        c->all[i] = c->sorted[i] = &tensors[i];
    c->n = rc == FTQ_OK ? n : 0;
    c->total_bytes = total_bytes;
    if (rc == FTQ_OK) {
        qsort(c->sorted, n, sizeof *c->sorted, ftq_checkpoint_cmp_name);
        for (size_t i = 1; i < n && rc == FTQ_OK; i++)
            if (strcmp(c->sorted[i - 1]->name, c->sorted[i]->name) == 0)
                rc = ftq_set_error(FTQ_EFORMAT, "cannot open checkpoint '%s': tensor '%s' appears twice", label,
                                   c->sorted[i]->name);
    }
    if (rc != FTQ_OK) {
        ftq_checkpoint_close(c);
        return rc;
    }
    *out = c;
    return FTQ_OK;
}
