/* qcheckpoint.h - quantized checkpoints on disk (internal; docs/quant-format.md section 4):
 * the index of a checkpoint's quantized tensors, read from `__metadata__` and validated
 * against the stored NAME.qweight / .qscale / .qzero tensors before anything uses them, and
 * the conversion of those tensors (or a range of their rows) into the row-major ftq_qtensor.
 * Shared by the model loader, the dequantizer and `ftq info`.
 *
 *     ftq_qindex *ix = NULL;
 *     int rc = ftq_qindex_open(ck, "models/q4", &ix);   // ix stays NULL: not quantized
 *     const ftq_qentry *e = ix ? ftq_qindex_find(ix, "model.layers.0.mlp.up_proj.weight") : NULL;
 *     ftq_qtensor q;
 *     if (e) rc = ftq_qentry_read(e, 0, e->rows, &q);  // rows [0, rows) of [out, in]
 *     ftq_qtensor_free(&q);
 *     ftq_qindex_free(ix);
 *
 * The index borrows the checkpoint's tensors: close the checkpoint after the index.
 */
#ifndef FTQ_QUANT_QCHECKPOINT_H
#define FTQ_QUANT_QCHECKPOINT_H

#include "ftq.h"
#include "kernels/quant.h"

#define FTQ_QUANT_VERSION "1"
#define FTQ_QUANT_KEY_VERSION "ftq.quant.version"
#define FTQ_QUANT_KEY_TENSORS "ftq.quant.tensors"
/* JSON: the calibration (file, tokens, ctx, method) and any mixed-precision plan */
#define FTQ_QUANT_KEY_CALIB "ftq.quant.calibration"

/* One quantized tensor NAME, stored as BASE.qweight, BASE.qscale and (q4a) BASE.qzero. */
typedef struct {
    char *name;            /* NAME, the HF name of the original tensor */
    ftq_qscheme scheme;
    int group;             /* 32 / 64 / 128, or FTQ_QGROUP_ROW (0) */
    int rows, cols;        /* the quantized matrix [out, in] ("shape") */
    int transposed;        /* NAME is [in, out] in HF's layout (GPT-2 Conv1D): the matrix is
                              its transpose */
    int search;            /* informational */
    char source_dtype[16]; /* informational ("" if absent) */
    char *copied_from;     /* informational: a split-off tied head's embedding, else NULL */
    const ftq_tensor *qweight, *qscale, *qzero; /* in the checkpoint; qzero NULL unless q4a */
    const ftq_tensor *qmin; /* BASE.qmin (F16 [rows, groups], q4m's group minimums), else NULL */
    ftq_tensor view;       /* name NAME, dtype QMAT, NAME's HF shape, data NULL: stands for
                              the tensor where a reader looks NAME up */
} ftq_qentry;

typedef struct {
    ftq_qentry *e; /* sorted by name */
    size_t n;
} ftq_qindex;

/* Read and validate the quantization metadata of every file of ck (their union; a NAME
 * listed twice is an error). *out is NULL (and FTQ_OK) when no file carries ftq.quant
 * metadata and no tensor is named *.qweight / *.qscale / *.qzero. Every rule of the
 * format is checked here (version, scheme, group, shape, presence, dtype and shape of the
 * parts, q8 codes of -128, zero codes above 15, non-finite scales, NAME also stored
 * unquantized, stray parts), with a one-line FTQ_EFORMAT message naming the file and
 * the tensor. `label` names the checkpoint when no file applies. */
int ftq_qindex_open(const ftq_checkpoint *ck, const char *label, ftq_qindex **out);
void ftq_qindex_free(ftq_qindex *ix);
const ftq_qentry *ftq_qindex_find(const ftq_qindex *ix, const char *name);
/* The entry whose view is t, or NULL (t is an ordinary tensor). */
const ftq_qentry *ftq_qindex_entry_of(const ftq_qindex *ix, const ftq_tensor *t);
/* 1 if `name` is a part (BASE.qweight / .qscale / .qzero) of an entry. */
int ftq_qindex_is_part(const ftq_qindex *ix, const char *name);

/* Rows [row0, row0 + n) of the entry's matrix as a row-major tensor (scales converted from
 * F16 exactly). FTQ_EINVAL for a bad range, FTQ_ENOMEM. */
int ftq_qentry_read(const ftq_qentry *e, int row0, int n, ftq_qtensor *q);

/* The metadata a rewritten checkpoint carries over from its first file: "format" = "pt"
 * first, then every source key except "format" and ftq.quant.*, then `extra` free key /
 * value slots and the NULL terminator. *n is the number of strings filled. Strings point
 * into the checkpoint. NULL on out of memory. Free the array with free(). */
const char **ftq_qmeta_carry(const ftq_checkpoint *ck, size_t extra, size_t *n);

/* "q4a_g32", "q8_row", ... into buf. Returns buf. */
char *ftq_qscheme_label(ftq_qscheme s, int group, char *buf, size_t cap);

/* BASE of NAME: NAME without a trailing ".weight" (or NAME itself), plus `suffix`, as a
 * malloc'd string (NULL on OOM). */
char *ftq_qpart_name(const char *name, const char *suffix);

/* Copy config.json from src to dst with tie_word_embeddings false (untie) and / or
 * torch_dtype set (non-NULL), in HF's two-space layout; the file is written atomically. */
int ftq_qconfig_write(const char *src, const char *dst, int untie, const char *torch_dtype);

#endif
