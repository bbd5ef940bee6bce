/* bert_bf16.c - bf16 mixed precision for BERT classifier training (autocast's split, as the
 * decoders' tmodel_bf16.c): the fp32 parameter buffer stays the master copy (AdamW, gradients
 * and every reduction fp32); the weight matrices a run multiplies are registered in a
 * kernels/linear_bf16.h set, whose packed bf16 copies the forward (model/bert.c) refreshes
 * once per optimizer step and whose products (forward, dX, dW) run on the bf16 kernels;
 * LayerNorm, attention and its softmax, GELU, pooling's tanh, the loss and the embeddings
 * stay fp32. Frozen blocks are packed once and never take a backward. */
#include <stdlib.h>

#include "finetune/bert_bf16.h"
#include "model/bert_internal.h"

int ftq_bert_bf16_new(const ftq_bert *m, int first_layer, int max_batch, int max_seq, ftq_bf16_set **out)
{
    const ftq_bert_config *c = &m->cfg;
    const int L = c->n_layers, C = c->hidden, N = max_batch * max_seq;
    *out = NULL;
    if (m->n_quantized || m->lora)
        return ftq_set_error(FTQ_EUNSUPPORTED, "bf16 training needs an f32 model without adapters (%d quantized "
                             "tensors%s)", m->n_quantized, m->lora ? ", lora adapters" : "");
    if (!c->num_labels)
        return ftq_set_error(FTQ_EINVAL, "bf16 training: the model has no classifier head");
    ftq_bf16_set *s = malloc(sizeof *s);
    int rc = s ? ftq_bf16_set_init(s, (size_t)L * BERT_LIN_N + 2) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (rc != FTQ_OK) {
        free(s);
        return rc;
    }
    if (first_layer <= L) { /* the encoder trains (or runs frozen below first_layer) */
        for (int l = 0; l < L; l++) {
            const ftq_bert_layer *W = &m->w.L[l];
            const float *mats[BERT_LIN_N] = {W->wq, W->wk, W->wv, W->wo, W->w1, W->w2};
            int tr = l >= first_layer;
            for (int k = 0; k < BERT_LIN_N; k++) {
                int in, o;
                ftq_bert_lin_dims(m, k, &in, &o);
                ftq_bf16_set_add(s, mats[k], o, in, N, tr, tr);
            }
        }
        if (c->has_pooler && c->pool == FTQ_POOL_POOLER)
            ftq_bf16_set_add(s, m->w.pool_w, C, C, max_batch, first_layer <= L, first_layer <= L);
    }
    ftq_bf16_set_add(s, m->w.cls_w, c->num_labels, C, max_batch, 1, first_layer <= L);
    if ((rc = ftq_bf16_set_alloc(s)) != FTQ_OK) {
        ftq_bf16_set_free(s);
        free(s);
        return rc;
    }
    *out = s;
    return FTQ_OK;
}
