/* prune_write.c - the pruned weights' one output file, shared by every architecture's
 * pruning (prune_model.c, prune_arch_*.c). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "include/ftq.h"
#include "quant/prune_internal.h"

#include <stdlib.h>
#include <string.h>

/* Write outs (nt tensors) as dir/model.safetensors, one file that keeps the metadata of the
 * source's first file. */
int ftq_prune_write_weights(const ftq_checkpoint *ck, const char *dir, const ftq_tensor *outs, size_t nt)
{
    const ftq_st_file *f0 = ftq_checkpoint_file(ck, 0);
    size_t nm = f0 ? ftq_st_metadata_count(f0) : 0;
    const char **meta = calloc(2 * nm + 3, sizeof(char *));
    for (size_t k = 0; meta && k < nm; k++) {
        meta[2 * k] = ftq_st_metadata_key(f0, k);
        meta[2 * k + 1] = ftq_st_metadata_value(f0, k);
    }
    if (meta && !f0) { /* a GGUF source has no safetensors file; transformers wants "format": "pt" */
        meta[0] = "format";
        meta[1] = "pt";
    }
    char *path = ftq_path_join(dir, "model.safetensors");
    int rc = !meta || !path ? ftq_set_error(FTQ_ENOMEM, "out of memory")
                            : ftq_st_write(path, outs, nt, (const char *const *)meta);
    free(path);
    free(meta);
    return rc;
}

int ftq_prune_count_untouched(const ftq_tensor *ft, ftq_prune_report *r)
{
    int64_t n = ftq_tensor_numel(ft);
    if (n <= 0)
        return FTQ_OK;
    float *tmp = malloc(sizeof(float) * (size_t)n);
    if (!tmp) /* the report would silently undercount */
        return ftq_set_error(FTQ_ENOMEM, "out of memory reading '%s'", ft->name);
    if (ftq_tensor_to_f32(ft, tmp) == FTQ_OK)
        r->model_zeros += ftq_count_zeros(tmp, n);
    free(tmp);
    return FTQ_OK;
}

int ftq_prune_emit(const ftq_tensor *ft, const float *w, int64_t n, ftq_prune_report *r, void **buf)
{
    const ftq_dtype_traits *tr = ftq_dtype_info(ft->dtype);
    int64_t z = ftq_count_zeros(w, n);
    r->model_zeros += z;
    r->pruned_numel += n;
    r->pruned_zeros += z;
    ftq_prune_tensor_report *tr_out = &r->tensors[r->n_tensors];
    if (!(tr_out->name = strdup(ft->name)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    r->n_tensors++;
    tr_out->numel = n;
    tr_out->zeros = z;
    if (!tr->from_f32)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot write pruned tensor '%s' as %s", ft->name, tr->name);
    if (!(*buf = malloc(ft->nbytes ? ft->nbytes : 1)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory writing pruned tensor '%s'", ft->name);
    tr->from_f32(w, *buf, (size_t)n);
    return FTQ_OK;
}
