/* load_bf16.c - binding a checkpoint's weight matrix as packed bf16 (FTQ_LOAD_BF16): the
 * tensor's values go straight into the kernel layout of kernels/bmat.h, from F32 by round to
 * nearest even, from BF16 exactly (never widened), from F16 / F64 through one temporary f32
 * copy. */
#include <stdlib.h>
#include <string.h>

#include "kernels/bmat.h"
#include "model/model.h"

int ftq_model_bind_bmat(ftq_model *m, ftq_tensor *dst, const ftq_tensor *src, int transposed, int64_t c0,
                        int64_t rows, const char *label)
{
    /* [out, in] = src, or columns [c0, c0 + rows) of a [in, out_total] src transposed */
    int64_t cols = transposed ? src->shape[0] : src->shape[1];
    size_t so = transposed ? 1 : (size_t)cols, si = transposed ? (size_t)src->shape[1] : 1;
    size_t off = transposed ? (size_t)c0 : (size_t)c0 * (size_t)cols;
    if (rows > (1 << 30) || cols > (1 << 30))
        return ftq_set_error(FTQ_EUNSUPPORTED, "model '%s': tensor '%s' is too large for the bf16 kernels", label,
                             src->name);
    ftq_bmat *bm = ftq_model_alloc(m, sizeof *bm);
    size_t bytes = 2 * ftq_bmat_elems((int)rows, (int)cols);
    unsigned char *raw = bm ? ftq_model_alloc(m, bytes + 64) : NULL;
    if (!raw)
        return ftq_set_error(FTQ_ENOMEM, "model '%s': out of memory packing tensor '%s' as bf16", label, src->name);
    bm->rows = (int)rows;
    bm->cols = (int)cols;
    bm->b = (uint16_t *)(void *)(raw + ((64 - ((uintptr_t)raw & 63)) & 63)); /* 64-byte panels */
    if (src->dtype == FTQ_DTYPE_BF16) {
        ftq_bmat_pack_bf16(bm, (const unsigned char *)src->data + 2 * off, so, si);
    } else if (src->dtype == FTQ_DTYPE_F32 && ((uintptr_t)src->data & 3) == 0) {
        ftq_bmat_pack_f32(bm, (const float *)src->data + off, so, si);
    } else {
        float *tmp = malloc(sizeof(float) * (size_t)ftq_tensor_numel(src));
        if (!tmp)
            return ftq_set_error(FTQ_ENOMEM, "model '%s': out of memory converting tensor '%s'", label, src->name);
        int rc = ftq_tensor_to_f32(src, tmp);
        if (rc == FTQ_OK)
            ftq_bmat_pack_f32(bm, tmp + off, so, si);
        free(tmp);
        if (rc != FTQ_OK)
            return rc;
    }
    memset(dst, 0, sizeof *dst);
    dst->name = src->name;
    dst->dtype = FTQ_DTYPE_BMAT;
    dst->ndim = 2;
    dst->shape[0] = rows;
    dst->shape[1] = cols;
    dst->nbytes = bytes;
    dst->data = bm;
    dst->owned = 1;
    return FTQ_OK;
}
