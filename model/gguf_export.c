/* gguf_export.c - any checkpoint ftq loads as a GGUF file, ftq-quantized ones included: a
 * quantized matrix whose codes and f16 scales are exactly a Q8_0 / Q4_0 tensor is re-laid
 * out block by block (no rounding anywhere), any other is dequantized to the values ftq's
 * kernels compute with and handed to the writer like a float tensor. */
#include <stdlib.h>
#include <string.h>

#include "ftq_gguf.h"
#include "kernels/kquant.h"
#include "model/qcheckpoint.h"

/* The ggml type `e` copies into exactly when the file's matrices are `type`, else 0. A
 * Q8_0 block is d * q (q int8), a Q4_0 block d * (c - 8) (c 0..15), each with one f16 d per
 * 32 inputs, which ftq's groups of 32, 64, 128 or a whole row repeat: Q8_0 holds q8 codes,
 * q4 codes minus 8 and q4a codes minus the group's zero code (all within +-127); Q4_0 holds
 * q4 codes as they are. The f32 value of every element is then the same product of the
 * same two numbers as in ftq (docs/quant-format.md 4.1). A transposed entry (GPT-2 Conv1D)
 * stores the [out, in] matrix, which is the layout GGUF wants: copied the same way. */
static uint32_t exact_type(const ftq_qentry *e, uint32_t type)
{
    if (ftq_qscheme_is_k(e->scheme)) /* q6k / q4k are ggml's Q6_K / Q4_K blocks: exact under keep */
        return type == FTQ_GGUF_EXPORT_KEEP ? (e->scheme == FTQ_QSCHEME_Q6K ? FTQ_GGML_Q6_K : FTQ_GGML_Q4_K) : 0;
    if (e->cols % 32 || (e->group % 32 && e->group != FTQ_QGROUP_ROW))
        return 0;
    if (e->scheme == FTQ_QSCHEME_Q4M) /* d * c + m: only Q4_1 holds it, with groups of 32 */
        return (type == FTQ_GGUF_EXPORT_KEEP || type == FTQ_GGML_Q4_1) && e->group == 32 ? FTQ_GGML_Q4_1 : 0;
    if (type == FTQ_GGUF_EXPORT_KEEP)
        return e->scheme == FTQ_QSCHEME_Q4 ? FTQ_GGML_Q4_0 : e->scheme == FTQ_QSCHEME_Q5 && e->group == 32 ? FTQ_GGML_Q5_0
                                                                                                         : FTQ_GGML_Q8_0;
    if (type == FTQ_GGML_Q8_0)
        return FTQ_GGML_Q8_0;
    if (type == FTQ_GGML_Q4_0 && e->scheme == FTQ_QSCHEME_Q4)
        return FTQ_GGML_Q4_0;
    return 0;
}

/* Code k of a row minus its zero code: q8 the int8 code, q4 the nibble minus 8, q4a the
 * nibble minus the zero code zr[k / G] (file layout, section 4.1). */
static int code_at(const ftq_qentry *e, const uint8_t *row, const uint8_t *zr, int k)
{
    if (e->scheme == FTQ_QSCHEME_Q8)
        return (int8_t)row[k];
    if (e->scheme == FTQ_QSCHEME_Q5)
        return ftq_q5_get(row, k) - 16;
    int c = (row[k / 2] >> (4 * (k % 2))) & 15;
    if (e->scheme == FTQ_QSCHEME_Q4M)
        return c; /* the code itself: its minimum is stored beside it */
    return c - (e->scheme == FTQ_QSCHEME_Q4A ? zr[k / e->group] : 8);
}

/* A q6k / q4k entry as ggml blocks: .qweight's super-block bytes with the f16 d of .qscale
 * put back where ggml keeps it (after sc[16] for Q6_K, first for Q4_K). */
static void *encode_k(const ftq_qentry *e, size_t *nbytes)
{
    const int q6 = e->scheme == FTQ_QSCHEME_Q6K;
    const size_t nsb = (size_t)e->rows * (size_t)(e->cols / FTQ_QK), sb = q6 ? FTQ_Q6K_BYTES : FTQ_Q4K_BYTES;
    *nbytes = nsb * (sb + 2);
    unsigned char *out = malloc(*nbytes ? *nbytes : 1), *y = out;
    if (!out)
        return NULL;
    const unsigned char *qw = e->qweight->data, *qs = e->qscale->data;
    for (size_t i = 0; i < nsb; i++, y += sb + 2) {
        memcpy(y + (q6 ? 0 : 2), qw + i * sb, sb);
        memcpy(y + (q6 ? sb : 0), qs + 2 * i, 2); /* the f16 d, bit for bit */
    }
    return out;
}

static void *encode_exact(const ftq_qentry *e, uint32_t tt, size_t *nbytes)
{
    if (ftq_qscheme_is_k(e->scheme))
        return encode_k(e, nbytes);
    const ftq_ggml_traits *gt = ftq_ggml_type_info(tt);
    size_t nb = (size_t)e->cols / 32, row_bytes = ftq_qrow_bytes(e->scheme, e->cols);
    int ngroups = e->group == FTQ_QGROUP_ROW ? 1 : (e->cols + e->group - 1) / e->group;
    *nbytes = (size_t)e->rows * nb * gt->type_size;
    unsigned char *out = malloc(*nbytes ? *nbytes : 1), *y = out;
    if (!out)
        return NULL;
    const uint8_t *qw = e->qweight->data;
    const unsigned char *qs = e->qscale->data;
    for (int r = 0; r < e->rows; r++) {
        const uint8_t *row = qw + (size_t)r * row_bytes;
        const uint8_t *zr = e->qzero ? (const uint8_t *)e->qzero->data + (size_t)r * (size_t)ngroups : NULL;
        for (size_t b = 0; b < nb; b++, y += gt->type_size) {
            size_t g = e->group == FTQ_QGROUP_ROW ? 0 : b * 32 / (size_t)e->group;
            memcpy(y, qs + 2 * ((size_t)r * (size_t)ngroups + g), 2); /* the f16 scale, bit for bit */
            int k0 = (int)b * 32;
            if (tt == FTQ_GGML_Q4_1) { /* f16 d, f16 m, byte j = c(j) | c(j + 16) << 4 */
                memcpy(y + 2, (const unsigned char *)e->qmin->data + 2 * ((size_t)r * (size_t)ngroups + g), 2);
                for (int j = 0; j < 16; j++)
                    y[4 + j] = (unsigned char)(code_at(e, row, zr, k0 + j) | code_at(e, row, zr, k0 + 16 + j) << 4);
            } else if (tt == FTQ_GGML_Q8_0) {
                for (int j = 0; j < 32; j++)
                    y[2 + j] = (unsigned char)(int8_t)code_at(e, row, zr, k0 + j);
            } else if (tt == FTQ_GGML_Q5_0) { /* qh: bit j = fifth bit of code j; qs: j | j + 16 << 4 */
                uint32_t qh = 0;
                for (int j = 0; j < 32; j++)
                    qh |= (uint32_t)(((code_at(e, row, zr, k0 + j) + 16) >> 4) & 1) << j;
                for (int j = 0; j < 4; j++)
                    y[2 + j] = (unsigned char)(qh >> (8 * j));
                for (int j = 0; j < 16; j++)
                    y[6 + j] = (unsigned char)(((code_at(e, row, zr, k0 + j) + 16) & 15) |
                                               ((code_at(e, row, zr, k0 + 16 + j) + 16) & 15) << 4);
            } else { /* Q4_0: byte j = code j | code j + 16 << 4, codes 0..15 */
                for (int j = 0; j < 16; j++)
                    y[2 + j] = (unsigned char)((code_at(e, row, zr, k0 + j) + 8) | (code_at(e, row, zr, k0 + 16 + j) + 8) << 4);
            }
        }
    }
    return out;
}

/* The entry's values in NAME's own layout (transposed back for GPT-2 Conv1D) as an owned
 * F32 tensor named after the entry. */
static int dequantize_entry(const ftq_qentry *e, ftq_tensor *t)
{
    ftq_qtensor q;
    int rc = ftq_qentry_read(e, 0, e->rows, &q);
    if (rc)
        return rc;
    size_t n = (size_t)e->rows * (size_t)e->cols;
    float *w = malloc(sizeof(float) * n), *o = e->transposed ? malloc(sizeof(float) * n) : w;
    if (!w || !o) {
        free(w);
        if (o != w)
            free(o);
        ftq_qtensor_free(&q);
        return ftq_set_error(FTQ_ENOMEM, "out of memory dequantizing '%s'", e->name);
    }
    ftq_qtensor_dequantize(&q, w);
    ftq_qtensor_free(&q);
    if (e->transposed) {
        for (int r = 0; r < e->rows; r++)
            for (int c = 0; c < e->cols; c++)
                o[(size_t)c * (size_t)e->rows + (size_t)r] = w[(size_t)r * (size_t)e->cols + (size_t)c];
        free(w);
    }
    memset(t, 0, sizeof *t);
    t->name = e->name;
    t->dtype = FTQ_DTYPE_F32;
    t->ndim = 2;
    t->shape[0] = e->transposed ? e->cols : e->rows;
    t->shape[1] = e->transposed ? e->rows : e->cols;
    t->nbytes = sizeof(float) * n;
    t->data = o;
    t->owned = 1;
    return FTQ_OK;
}

int ftq_model_export_gguf(const ftq_model_config *cfg, const ftq_checkpoint *ck, const ftq_tokenizer *tok,
                          uint32_t type, const char *path, ftq_gguf_export_stats *stats)
{
    if (!cfg || !ck || !tok || !path)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_export_gguf: NULL argument");
    ftq_qindex *ix = NULL;
    int rc = ftq_qindex_open(ck, path, &ix);
    if (rc)
        return rc;
    if (!ix) {
        size_t n = ftq_checkpoint_count(ck);
        ftq_gguf_export_tensor *ts = calloc(n ? n : 1, sizeof *ts);
        if (!ts)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            ts[i].t = ftq_checkpoint_tensor(ck, i);
        rc = ftq_gguf_export_tensors(cfg, ts, n, tok, type, path, stats);
        free(ts);
        return rc;
    }
    /* the checkpoint's plain tensors in file order, then each quantized entry where its
     * parts were (the order of the writer's file does not matter to readers) */
    size_t n = ftq_checkpoint_count(ck), k = 0;
    ftq_gguf_export_tensor *ts = calloc(n + ix->n + 1, sizeof *ts);
    ftq_tensor *deq = calloc(ix->n + 1, sizeof *deq);
    void **blocks = calloc(ix->n + 1, sizeof *blocks);
    if (!ts || !deq || !blocks)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
        if (!ftq_qindex_is_part(ix, t->name))
            ts[k++].t = t;
    }
    for (size_t i = 0; !rc && i < ix->n; i++) {
        const ftq_qentry *e = &ix->e[i];
        uint32_t tt = exact_type(e, type);
        if (tt) {
            size_t nbytes = 0;
            if (!(blocks[i] = encode_exact(e, tt, &nbytes))) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            deq[i] = e->view; /* name and shape; no data */
            deq[i].data = NULL;
            ts[k].t = &deq[i];
            ts[k].blocks_type = tt;
            ts[k].blocks = blocks[i];
            ts[k++].blocks_nbytes = nbytes;
        } else {
            if ((rc = dequantize_entry(e, &deq[i])) != FTQ_OK)
                break;
            ts[k++].t = &deq[i];
        }
    }
    if (!rc)
        rc = ftq_gguf_export_tensors(cfg, ts, k, tok, type, path, stats);
    for (size_t i = 0; deq && blocks && i < ix->n; i++) {
        if (deq[i].owned)
            free(deq[i].data);
        free(blocks[i]);
    }
    free(deq);
    free(blocks);
    free(ts);
    ftq_qindex_free(ix);
    return rc;
}
