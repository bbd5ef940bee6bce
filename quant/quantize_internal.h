/* quantize_internal.h - what ftq_quantize_model (quant/quantize_model.c) shares with the
 * per-architecture weight selectors (quant/quantize_arch_*.c): the job list (one entry per
 * tensor the output stores quantized, or as a split-off copy) and the source of the
 * tensors copied through unchanged. Adding an architecture is adding a selector file and a
 * row in quantize_model.c's table; the writer never branches on the architecture. */
#ifndef FTQ_QUANT_QUANTIZE_INTERNAL_H
#define FTQ_QUANT_QUANTIZE_INTERNAL_H

#include "ftq.h"
#include "kernels/quant.h"

typedef struct {
    const char *name;        /* NAME in the output file */
    const char *copied_from; /* split-off tied head: the embedding's name */
    const ftq_tensor *src;   /* the checkpoint tensor it comes from (dtype, bytes) */
    const float *w;          /* [rows, cols] f32 */
    float *owned;            /* w when assembled here */
    int rows, cols;
    int transposed;
    int quantize;            /* 0: written as stored (a split head kept in floating point) */
    ftq_quant_params qp;
    ftq_qtensor q;
    ftq_qerror err;
    uint16_t *scales16;      /* [rows][ngroups] */
    /* calibration (NULL: none): the input statistics of this linear layer */
    const double *imp;       /* [cols] sum over tokens of x_j^2 */
    const float *gram;       /* [cols][cols] sum over tokens of x x^T (GPTQ) */
    int64_t ntok;
    int gptq, act_order, awq;
    int replace;             /* not quantized: w (f32, the source's shape) replaces the stored
                                values (a norm weight or bias AWQ's scales were folded into) */
    double damp;
    int layer;               /* block index of a linear layer, -1 otherwise */
    double sensitivity;      /* mixed precision: KL with only this layer int4 (-1: not measured) */
    double out_err;          /* calibrated: mean squared output error (-1: not measured) */
} ftq_qjob;

typedef struct {
    ftq_qjob *j;
    size_t n, cap;
} ftq_qjobs;

/* A loaded source: its checkpoint (every tensor not in a job is copied from it as stored)
 * and whatever owns the f32 weights the jobs point into. */
typedef struct {
    const ftq_checkpoint *ck;
    void *owner;
    void (*release)(void *owner);
    int split; /* a tied head got its own lm_head: config.json is rewritten untied */
    int64_t calib_tokens;
    double calib_seconds;
    const double *awq_alpha; /* [awq_layers][4] the chosen alphas (-1: not applied), or NULL */
    int awq_layers;
} ftq_qsource;

/* One architecture: match(dir) says whether it applies (NULL: the fallback), open loads the
 * source and appends a job for every weight p selects, in model order. */
typedef struct {
    const char *name;
    int (*match)(const char *dir);
    int (*open)(const char *dir, const ftq_quantize_params *p, ftq_qsource *src, ftq_qjobs *js);
} ftq_quant_arch;

ftq_qjob *ftq_qjobs_add(ftq_qjobs *js);
/* The quantization a policy means (qp filled); 0 for KEEP. */
int ftq_qpolicy_resolve(const ftq_quantize_params *p, ftq_qpolicy pol, ftq_quant_params *qp);

/* How the sensitivities of p's --bits plan were measured, as the output records it
 * ("sensitivity_scheme") and --sensitivity DIR checks it: the int4 scheme's label, plus
 * "+kquant" with p->kquant. */
void ftq_qcalib_sens_label(const ftq_quantize_params *p, char *lab, size_t cap);

/* The architectures (quant/quantize_arch_*.c). */
extern const ftq_quant_arch ftq_quant_arch_bert;
extern const ftq_quant_arch ftq_quant_arch_decoder;

#endif
