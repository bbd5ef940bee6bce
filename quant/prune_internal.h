/* prune_internal.h - the per-architecture part of ftq_prune_model (quant/prune_model.c):
 * run() loads the model in in_dir, prunes the weights p selects and writes model.safetensors
 * (the file's own names, layouts and dtypes) into dir, filling the report; the caller checks
 * the parameters, copies config and tokenizer files and commits the directory. Adding an
 * architecture is adding a file and a row in prune_model.c's table. */
#ifndef FTQ_QUANT_PRUNE_INTERNAL_H
#define FTQ_QUANT_PRUNE_INTERNAL_H

#include "ftq.h"
#include "ftq_prune.h"

typedef struct {
    const char *name;
    int (*match)(const char *dir); /* NULL: the fallback */
    int (*run)(const char *in_dir, const char *dir, const ftq_prune_params *p, ftq_prune_report *report);
} ftq_prune_arch;

extern const ftq_prune_arch ftq_prune_arch_bert;

/* Write outs (nt tensors) as dir/model.safetensors with the metadata of ck's first file
 * (prune_model.c). */
int ftq_prune_write_weights(const ftq_checkpoint *ck, const char *dir, const ftq_tensor *outs, size_t nt);

/* A float tensor of the source that pruning left alone: add its zeros to report->model_zeros
 * (prune_write.c). */
int ftq_prune_count_untouched(const ftq_tensor *ft, ftq_prune_report *report);

/* A pruned tensor: w holds its n values in the file's layout. Add it to the report and put a new
 * buffer with the values in ft's dtype in *buf (exact zeros stay zeros). */
int ftq_prune_emit(const ftq_tensor *ft, const float *w, int64_t n, ftq_prune_report *report, void **buf);

#endif
