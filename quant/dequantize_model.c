/* dequantize_model.c - a quantized checkpoint back to an ordinary HF checkpoint: every
 * quantized NAME is written as d * (c - z) (the values the quantized model computes with),
 * in the original name and layout (GPT-2 Conv1D transposed back to [in, out]), in the
 * source's tensor order; every floating-point tensor gets the requested dtype. The output
 * directory appears only when complete. */
#include <stdlib.h>
#include <string.h>

#include "model/qcheckpoint.h"

static const char *torch_name(ftq_dtype d)
{
    return d == FTQ_DTYPE_F32 ? "float32" : d == FTQ_DTYPE_F16 ? "float16" : "bfloat16";
}

/* The dequantized NAME of entry e as `dtype` in HF's layout (malloc'd into *data). */
static int dequantize_entry(const ftq_qentry *e, ftq_dtype dtype, ftq_tensor *t, void **data)
{
    ftq_qtensor q;
    int rc = ftq_qentry_read(e, 0, e->rows, &q);
    if (rc != FTQ_OK)
        return rc;
    size_t n = (size_t)e->rows * (size_t)e->cols;
    float *w = malloc(sizeof(float) * n);
    float *tr = e->transposed ? malloc(sizeof(float) * n) : NULL;
    const ftq_dtype_traits *dt = ftq_dtype_info(dtype);
    void *out = dtype == FTQ_DTYPE_F32 ? NULL : malloc(n * dt->block_bytes);
    if (!w || (e->transposed && !tr) || (dtype != FTQ_DTYPE_F32 && !out)) {
        free(w);
        free(tr);
        free(out);
        ftq_qtensor_free(&q);
        return ftq_set_error(FTQ_ENOMEM, "out of memory dequantizing '%s'", e->name);
    }
    ftq_qtensor_dequantize(&q, w);
    ftq_qtensor_free(&q);
    if (tr) { /* [out, in] -> [in, out] */
        enum { B = 32 };
        for (int o0 = 0; o0 < e->rows; o0 += B)
            for (int i0 = 0; i0 < e->cols; i0 += B)
                for (int o = o0; o < e->rows && o < o0 + B; o++)
                    for (int i = i0; i < e->cols && i < i0 + B; i++)
                        tr[(size_t)i * e->rows + o] = w[(size_t)o * e->cols + i];
        free(w);
        w = tr;
    }
    if (out) {
        dt->from_f32(w, out, n);
        free(w);
    } else {
        out = w;
    }
    memset(t, 0, sizeof *t);
    t->name = e->name;
    t->dtype = dtype;
    t->ndim = 2;
    t->shape[0] = e->view.shape[0];
    t->shape[1] = e->view.shape[1];
    t->nbytes = n * dt->block_bytes;
    t->data = out;
    *data = out;
    return FTQ_OK;
}

/* An ordinary tensor, floating-point ones converted to dtype (*data: a buffer to free). */
static int convert_plain(const ftq_tensor *src, ftq_dtype dtype, ftq_tensor *t, void **data)
{
    *t = *src;
    t->owned = 0;
    *data = NULL;
    const ftq_dtype_traits *st = ftq_dtype_info(src->dtype), *dt = ftq_dtype_info(dtype);
    if (!st->is_float || !st->to_f32 || st->block_size != 1 || src->dtype == dtype)
        return FTQ_OK;
    size_t n = (size_t)ftq_tensor_numel(src);
    float *f = malloc(sizeof(float) * (n ? n : 1));
    void *out = malloc(n * dt->block_bytes + 1);
    if (!f || !out) {
        free(f);
        free(out);
        return ftq_set_error(FTQ_ENOMEM, "out of memory converting '%s'", src->name);
    }
    st->to_f32(src->data, f, n);
    dt->from_f32(f, out, n);
    free(f);
    t->dtype = dtype;
    t->nbytes = n * dt->block_bytes;
    t->data = out;
    *data = out;
    return FTQ_OK;
}

static int write_checkpoint(const ftq_checkpoint *ck, const ftq_qindex *ix, ftq_dtype dtype, const char *dir)
{
    size_t nt = ftq_checkpoint_count(ck), n = 0;
    ftq_tensor *outs = calloc(nt ? nt : 1, sizeof *outs);
    void **bufs = calloc(nt ? nt : 1, sizeof *bufs);
    int rc = outs && bufs ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < nt && rc == FTQ_OK; i++) {
        const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
        const ftq_qentry *e = NULL;
        for (size_t k = 0; k < ix->n && !e; k++)
            if (ix->e[k].qweight == t)
                e = &ix->e[k];
        if (e)
            rc = dequantize_entry(e, dtype, &outs[n], &bufs[n]);
        else if (ftq_qindex_is_part(ix, t->name))
            continue; /* qscale / qzero */
        else
            rc = convert_plain(t, dtype, &outs[n], &bufs[n]);
        n++;
    }
    if (rc == FTQ_OK) {
        size_t k = 0;
        const char **meta = ftq_qmeta_carry(ck, 0, &k);
        char *path = ftq_path_join(dir, "model.safetensors");
        if (!meta || !path) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        } else {
            rc = ftq_st_write(path, outs, n, (const char *const *)meta);
        }
        free(meta);
        free(path);
    }
    for (size_t i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    free(outs);
    return rc;
}

int ftq_dequantize_model(const char *in_dir, const char *out_dir, ftq_dtype dtype)
{
    if (!in_dir || !out_dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_dequantize_model: NULL argument");
    if (dtype != FTQ_DTYPE_F32 && dtype != FTQ_DTYPE_F16 && dtype != FTQ_DTYPE_BF16)
        return ftq_set_error(FTQ_EINVAL, "cannot dequantize to dtype %d: expected F32, F16 or BF16", (int)dtype);
    ftq_checkpoint *ck = NULL;
    ftq_qindex *ix = NULL;
    int rc = ftq_checkpoint_open(in_dir, &ck);
    if (rc == FTQ_OK)
        rc = ftq_qindex_open(ck, in_dir, &ix);
    if (rc == FTQ_OK && !ix)
        rc = ftq_set_error(FTQ_EINVAL, "cannot dequantize '%s': it is not a quantized checkpoint (no "
                           FTQ_QUANT_KEY_VERSION " metadata)", in_dir);
    char *tmp = NULL;
    if (rc == FTQ_OK)
        rc = ftq_outdir_begin(out_dir, 0, &tmp);
    if (rc == FTQ_OK)
        rc = write_checkpoint(ck, ix, dtype, tmp);
    if (rc == FTQ_OK && ftq_is_dir(in_dir)) {
        char *src = ftq_path_join(in_dir, "config.json"), *dst = ftq_path_join(tmp, "config.json");
        rc = !src || !dst         ? ftq_set_error(FTQ_ENOMEM, "out of memory")
             : !ftq_is_file(src) ? FTQ_OK
                                 : ftq_qconfig_write(src, dst, 0, torch_name(dtype));
        free(src);
        free(dst);
        if (rc == FTQ_OK)
            rc = ftq_copy_model_files(in_dir, tmp, 0);
    }
    if (rc == FTQ_OK) {
        rc = ftq_outdir_commit(tmp, out_dir, 0);
        tmp = NULL;
    }
    ftq_outdir_abort(tmp);
    ftq_qindex_free(ix);
    ftq_checkpoint_close(ck);
    return rc;
}
