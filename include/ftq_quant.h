/* ftq_quant.h - quantized checkpoints: int8 / int4 weights in a self-describing
 * safetensors file (docs/quant-format.md), written from and turned back into ordinary HF
 * checkpoints. ftq_model_load reads a quantized checkpoint directly; its linear layers then
 * run on the int8 / int4 kernels.
 *
 *     ftq_quantize_params qp = ftq_quantize_default_params();
 *     qp.bits = 4; qp.group = 32; qp.search = 1;
 *     ftq_quantize_report rep;
 *     if (ftq_quantize_model("model_dir", "model-int4", &qp, &rep) != FTQ_OK) { ... }
 *     // rep.tensors[i].rmse / .max_abs per tensor, rep.out_bytes
 *     ftq_quantize_report_free(&rep);
 */
#ifndef FTQ_QUANT_H
#define FTQ_QUANT_H

#include "ftq_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FTQ_QPOLICY_KEEP = 0, /* leave as stored */
    FTQ_QPOLICY_INT8 = 1,
    FTQ_QPOLICY_INT4 = 2,
    FTQ_QPOLICY_SAME = 3, /* the type of the linear layers */
} ftq_qpolicy;

typedef struct {
    int bits;            /* 8 or 4 (linear layers) */
    int group;           /* 32, 64, 128; 0 = one scale per row (int8 only) */
    int asym;            /* int4: scale + zero point */
    int search;          /* per group, the scale minimizing the squared error */
    ftq_qpolicy embeddings; /* token / position embeddings (default documented in docs/quant-format.md) */
    ftq_qpolicy head;       /* output layer (lm_head, tied or not) and classifier head */
} ftq_quantize_params;

ftq_quantize_params ftq_quantize_default_params(void);

typedef struct {
    char *name;        /* HF name of the source tensor */
    char scheme[24];   /* e.g. "q4a_g32", "q8_row", "f32" */
    double rmse, max_abs, rel_rmse;
    size_t bytes;      /* bytes in the output file */
} ftq_quantize_tensor_report;

typedef struct {
    ftq_quantize_tensor_report *tensors; /* the quantized tensors, in file order */
    size_t n_tensors;
    size_t in_bytes, out_bytes;          /* checkpoint sizes */
    double seconds;
} ftq_quantize_report;

/* Quantize the model in in_dir into out_dir (a whole directory, written atomically; config
 * and tokenizer files copied). Refuses NaN / Inf weights naming the tensor. */
int ftq_quantize_model(const char *in_dir, const char *out_dir, const ftq_quantize_params *p,
                       ftq_quantize_report *report);
void ftq_quantize_report_free(ftq_quantize_report *r);

/* Turn a quantized checkpoint back into an ordinary HF checkpoint with dtype F32, F16 or
 * BF16 weights (exactly the values the quantized model computes with). */
int ftq_dequantize_model(const char *in_dir, const char *out_dir, ftq_dtype dtype);

/* 1 if the checkpoint at path (file or directory) is an ftq quantized checkpoint. */
int ftq_is_quantized_checkpoint(const char *path);

#ifdef __cplusplus
}
#endif

#endif
