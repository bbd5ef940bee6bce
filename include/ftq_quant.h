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

#include "ftq_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What happens to embeddings and heads (docs/quant-format.md section 5):
 *   KEEP  stored as they are (dtype and values)
 *   INT8  q8 with groups of 32
 *   INT4  the linear layers' int4 scheme and group when they are int4, else q4 with
 *         groups of 32
 *   SAME  exactly the linear layers' scheme and group
 *   AUTO  (head only; the default) the output layer (lm_head, or the tied embedding used
 *         as output) INT8, a classifier's score head KEEP */
typedef enum {
    FTQ_QPOLICY_KEEP = 0, /* leave as stored */
    FTQ_QPOLICY_INT8 = 1,
    FTQ_QPOLICY_INT4 = 2,
    FTQ_QPOLICY_SAME = 3, /* the type of the linear layers */
    FTQ_QPOLICY_AUTO = 4, /* head: lm_head INT8, classifier score KEEP */
} ftq_qpolicy;

/* How the linear layers' codes are chosen. With calibration, RTN means the importance-
 * weighted scale search (imatrix); GPTQ needs calibration. */
typedef enum {
    FTQ_QMETHOD_RTN = 0,  /* round to nearest (scale per `search`, or importance-weighted) */
    FTQ_QMETHOD_GPTQ = 1, /* GPTQ error compensation (quant/qcalib.h) */
} ftq_qmethod;

typedef struct {
    int bits;            /* 8 or 4 (linear layers) */
    int group;           /* 32, 64, 128; 0 = one scale per row (int8 only) */
    int asym;            /* int4: scale + zero point */
    int search;          /* per group, the scale minimizing the squared error */
    ftq_qpolicy embeddings; /* token / position embeddings (default documented in docs/quant-format.md) */
    ftq_qpolicy head;       /* output layer (lm_head, tied or not) and classifier head */
    /* Calibration (decoders only; all optional). With calib, every block's linear inputs
     * are measured on windows of calib_ctx tokens of calib (calib_bos first if >= 0) with
     * the source model; each linear layer is then quantized with the importance-weighted
     * search (importance = sum of x_j^2 per input channel) or GPTQ, and the output file's
     * metadata records calib_name, the tokens and the method. */
    const int32_t *calib;   /* calibration token ids (the whole text, no BOS) */
    size_t n_calib;
    int calib_ctx;          /* default 512 */
    int calib_bos;          /* -1: none */
    const char *calib_name; /* recorded in the metadata (e.g. the file's base name) */
    ftq_qmethod method;
    int act_order;          /* GPTQ: columns by decreasing H_jj, static groups */
    double damp;            /* GPTQ: damping, fraction of mean(diag H) (default 0.01) */
    /* AWQ (needs calib; decoders): per input channel scales s = (mean |x_j|)^alpha, alpha
     * searched per layer group on the calibration inputs, folded into the preceding norm
     * (q/k/v, gate/up) or linear (v_proj -> o_proj, up_proj -> down_proj); then the
     * importance search (method RTN) or GPTQ on the scaled layers (quant/awq.h). */
    int awq;
    /* Mixed precision (needs calib, bits 4): > 0 assigns int4 or int8 (q8, groups of 32) to
     * each block linear layer so the average bits per weight of those layers (scales
     * included: q4 g32 = 4.5, q8 g32 = 8.5) stays at most target_bits, upgrading to int8
     * the layers whose int4 version alone costs the most KL divergence per extra byte on
     * the calibration text. The plan goes into the metadata and the report. */
    double target_bits;
    /* Mixed precision: reuse the per-layer sensitivities recorded in this earlier --bits
     * output (a quantized checkpoint) instead of measuring them; refused unless they were
     * measured on the same calibration (file name, tokens, context, BOS), AWQ setting and
     * int4 scheme. NULL: measure. */
    const char *sensitivity_from;
    /* Called after each layer's sensitivity run (done of total layers), or NULL. */
    void (*progress)(void *user, int done, int total, const char *name);
    void *progress_user;
    /* K-quant super-blocks (int4 only): block linear layers whose width is a multiple of 256
     * take q4k (ggml's Q4_K) instead of q4 g32, and target_bits chooses among q4k / q6k / q8
     * for them (q4 / q8 for the others). 0: off. */
    int kquant;
} ftq_quantize_params;

/* bits 8, group 32, symmetric, no search, embeddings KEEP, head AUTO. */
ftq_quantize_params ftq_quantize_default_params(void);

typedef struct {
    char *name;        /* HF name of the source tensor */
    char scheme[24];   /* e.g. "q4a_g32", "q8_row", "f32" */
    double rmse, max_abs, rel_rmse;
    size_t bytes;      /* bytes in the output file */
    int64_t numel;     /* elements of the tensor */
    char method[12];   /* "rtn", "search", "imatrix", "gptq", "awq", "awq+gptq" */
    double sensitivity; /* mixed precision: calibration KL with only this layer int4, else -1 */
    double out_err;    /* calibrated: mean squared output error over the calibration tokens, else -1 */
} ftq_quantize_tensor_report;

typedef struct {
    ftq_quantize_tensor_report *tensors; /* the quantized tensors, in file order */
    size_t n_tensors;
    size_t in_bytes, out_bytes;          /* checkpoint sizes */
    double seconds;
    /* over all quantized elements */
    int64_t numel;
    double rmse, rel_rmse, max_abs;
    size_t q_in_bytes, q_out_bytes; /* the quantized tensors' bytes before / after */
    int head_split;                 /* 1: a tied output layer got its own lm_head (config
                                       tie_word_embeddings is then false) */
    int64_t calib_tokens;           /* calibration tokens measured (0: none) */
    double calib_seconds;           /* time of the calibration pass (and sensitivity runs) */
    double linear_bits;             /* average bits per weight of the block linear layers */
} ftq_quantize_report;

/* Quantize the model in in_dir into out_dir (a whole directory that must not exist,
 * written atomically; config and tokenizer files copied, config.json rewritten only to
 * untie a split-off head). Every linear weight of every block is quantized; embeddings
 * and heads per p (a BERT encoder: its pooler and classifier are the head, kept by AUTO;
 * its embeddings must be KEEP); norms, biases and everything else kept as stored. Refuses NaN / Inf
 * weights naming the tensor, impossible parameters (FTQ_EINVAL with a one-line message)
 * and an already quantized input. report is filled on success (free it with
 * ftq_quantize_report_free) and zeroed on failure. Not thread-safe against other calls
 * that write out_dir; uses OpenMP inside. */
int ftq_quantize_model(const char *in_dir, const char *out_dir, const ftq_quantize_params *p,
                       ftq_quantize_report *report);
void ftq_quantize_report_free(ftq_quantize_report *r);

/* Turn a quantized checkpoint back into an ordinary HF checkpoint with dtype F32, F16 or
 * BF16 weights (exactly the values the quantized model computes with; bit for bit with
 * F32). Names and layouts are the original's (GPT-2 Conv1D [in, out], c_attn whole); a
 * head split off a tied embedding stays a separate lm_head (tie_word_embeddings false).
 * Every floating-point tensor of the output has `dtype`; config.json's torch_dtype says
 * so. out_dir must not exist; it is written atomically. */
int ftq_dequantize_model(const char *in_dir, const char *out_dir, ftq_dtype dtype);

/* 1 if the checkpoint at path (file or directory) is an ftq quantized checkpoint (carries
 * ftq.quant metadata); 0 otherwise, also when it cannot be opened. */
int ftq_is_quantized_checkpoint(const char *path);

/* One quantized tensor of a checkpoint, as its metadata describes it (for `ftq info`). */
typedef struct {
    char *name;          /* NAME, the original tensor's HF name */
    char scheme[24];     /* "q8_g32", "q4a_g128", "q8_row", ... */
    int64_t rows, cols;  /* the quantized matrix [out, in] */
    int64_t shape[2];    /* NAME's shape in the HF layout ([in, out] when transposed) */
    int transposed;      /* GPT-2 Conv1D: stored as the transpose of NAME */
    size_t bytes;        /* qweight + qscale + qzero bytes in the file */
    char *copied_from;   /* a head split off a tied embedding: the embedding's name, else NULL */
} ftq_quant_tensor_info;

/* The quantized tensors of an open checkpoint, sorted by name, after the same validation
 * the loader does (FTQ_EFORMAT / FTQ_EUNSUPPORTED naming file and tensor). *list is NULL
 * and *n 0 for an ordinary checkpoint. Free with ftq_quant_tensor_info_free. */
int ftq_quant_checkpoint_list(const ftq_checkpoint *ck, ftq_quant_tensor_info **list, size_t *n);
void ftq_quant_tensor_info_free(ftq_quant_tensor_info *list, size_t n);

/* Number of quantized (FTQ_DTYPE_QMAT) weight tensors of a loaded model: 0 for an
 * ordinary checkpoint. Code that needs f32 weights (fine-tuning, pruning) must refuse a
 * model for which this is non-zero. */
typedef struct ftq_model ftq_model;
int ftq_model_quantized_count(const ftq_model *m);

#ifdef __cplusplus
}
#endif

#endif
