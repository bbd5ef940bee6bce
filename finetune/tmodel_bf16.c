/* tmodel_bf16.c - bf16 mixed precision of the trainable model: every block weight matrix
 * (and the LM head) of the fp32 buffer is registered in tm->bf (kernels/linear_bf16.h), whose
 * packed bf16 copies are converted from the fp32 master weights once per optimizer step
 * (the first forward after a backward). Invariant: a copy is never older than the last
 * ftq_tmodel_params_updated / backward before the current forward. Matrices that are not
 * registered (the classification head, a frozen base outside the buffer) and every fp32
 * model take the fp32 kernels. */
#include <string.h>

#include "finetune/tmodel.h"

const char *ftq_precision_name(ftq_precision p) { return p == FTQ_PRECISION_BF16 ? "bf16" : "fp32"; }

int ftq_precision_from_name(const char *name, ftq_precision *out)
{
    if (name && strcmp(name, "fp32") == 0)
        *out = FTQ_PRECISION_FP32;
    else if (name && strcmp(name, "bf16") == 0)
        *out = FTQ_PRECISION_BF16;
    else
        return ftq_set_error(FTQ_EINVAL, "unknown precision '%s' (expected fp32 or bf16)", name ? name : "");
    return FTQ_OK;
}

static void add_mat(ftq_tmodel *tm, const float *w, int out, int in, int rows, int need_bwd)
{
    uintptr_t lo = (uintptr_t)tm->params, hi = (uintptr_t)(tm->params + tm->n_params);
    if (!w || (uintptr_t)w < lo || (uintptr_t)w >= hi)
        return; /* not in the fp32 buffer (e.g. a frozen base kept as the model's tensors): fp32 path */
    ftq_bf16_set_add(&tm->bf, w, out, in, rows, (size_t)(w - tm->params) >= tm->off, need_bwd);
}

int ftq_tmodel_bf16_init(ftq_tmodel *tm)
{
    const ftq_model_config *c = &tm->cfg;
    const int L = c->n_layers, C = c->hidden_size, F = c->intermediate_size;
    const int Q = c->n_heads * c->head_dim, K = c->n_kv_heads * c->head_dim;
    const int FC = c->arch == FTQ_ARCH_LLAMA ? 2 * F : F;
    const int N = tm->p.max_batch * tm->p.max_seq;
    int rc = ftq_bf16_set_init(&tm->bf, (size_t)L * 4 + 1);
    if (rc != FTQ_OK)
        return rc;
    for (int l = 0; l < L; l++) {
        const ftq_tblock *w = &tm->w.blocks[l];
        int bwd = l >= tm->first_block;
        add_mat(tm, w->wqkv, Q + 2 * K, C, N, bwd);
        add_mat(tm, w->wo, C, Q, N, bwd);
        add_mat(tm, w->w_fc, FC, C, N, bwd);
        add_mat(tm, w->w_down, C, F, N, bwd);
    }
    if (tm->p.task == FTQ_TASK_LM)
        add_mat(tm, tm->w.lm_head ? tm->w.lm_head : tm->w.wte, c->vocab_size, C, tm->chunk_rows, 1);
    return ftq_bf16_set_alloc(&tm->bf);
}

void ftq_tmodel_params_updated(ftq_tmodel *tm)
{
    if (tm)
        ftq_bf16_set_mark(&tm->bf, 2);
}
