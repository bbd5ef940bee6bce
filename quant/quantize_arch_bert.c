/* quantize_arch_bert.c - which weights of a BERT encoder ftq_quantize_model quantizes, read
 * from the encoder's tensor table (model/bert.c: each tensor's role): every block's linear
 * weights (query, key, value, attention output, intermediate, output) with the linear
 * scheme; the pooler and the classifier are the head (`--head`: auto keeps them, as a
 * decoder's classifier score head is kept); the embeddings stay as stored. With calibration
 * text each block's linear weights get the importance-weighted search on the sums of x_j^2
 * of their input over the calibration windows (measured on the unquantized encoder; GPTQ,
 * AWQ and mixed precision are refused: post-LN blocks feed each norm's output to the
 * residual too, so AWQ's scales have nowhere exact to go but v -> o). */
#include <stdlib.h>
#include <string.h>

#include "model/bert_internal.h"
#include "quant/bert_calib.h"
#include "quant/quantize_internal.h"

typedef struct {
    ftq_bert *m;
    ftq_checkpoint *ck;
    double *imp; /* calibration: [L][FTQ_BERT_IN_NONE][max(C, F)] sums of x_j^2 */
} bert_source;

static void release(void *owner)
{
    bert_source *b = owner;
    if (!b)
        return;
    free(b->imp);
    ftq_bert_free(b->m);
    ftq_checkpoint_close(b->ck);
    free(b);
}

static int open_bert(const char *dir, const ftq_quantize_params *p, ftq_qsource *src, ftq_qjobs *js)
{
    if (p->embeddings != FTQ_QPOLICY_KEEP)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot quantize '%s': quantized embeddings are not supported for bert "
                             "encoders (use --embeddings keep)", dir);
    bert_source *b = calloc(1, sizeof *b);
    if (!b)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    src->owner = b;
    src->release = release;
    int rc = ftq_bert_load(dir, &b->m);
    if (rc == FTQ_OK)
        rc = ftq_checkpoint_open(dir, &b->ck);
    if (rc != FTQ_OK)
        return rc;
    src->ck = b->ck;
    const ftq_bert_config *c = &b->m->cfg;
    const size_t D = (size_t)(c->ffn > c->hidden ? c->ffn : c->hidden);
    if (p->calib) {
        double t0 = ftq_time_sec();
        const ftq_bert_calib cal = {p->calib, p->n_calib, p->calib_ctx, p->calib_bos};
        b->imp = calloc((size_t)c->n_layers * FTQ_BERT_IN_NONE * D, sizeof(double));
        rc = b->imp ? ftq_bert_input_sums_all(b->m, &cal, "calibrate", b->imp, &src->calib_tokens)
                    : ftq_set_error(FTQ_ENOMEM, "out of memory");
        src->calib_seconds = ftq_time_sec() - t0;
        if (rc != FTQ_OK)
            return rc;
    }
    ftq_quant_params lin, head;
    ftq_qpolicy_resolve(p, FTQ_QPOLICY_SAME, &lin);
    int q_head = p->head != FTQ_QPOLICY_AUTO && ftq_qpolicy_resolve(p, p->head, &head);
    const ftq_bert *m = b->m;
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        if (t->role != FTQ_BERT_ROLE_LINEAR && !(t->role == FTQ_BERT_ROLE_HEAD && q_head))
            continue;
        ftq_qjob *j = ftq_qjobs_add(js);
        if (!j)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        j->name = t->name;
        j->src = ftq_checkpoint_find(b->ck, t->name);
        j->w = m->params + t->off;
        j->rows = (int)t->shape[0];
        j->cols = (int)t->shape[1];
        j->quantize = 1;
        j->qp = t->role == FTQ_BERT_ROLE_LINEAR ? lin : head;
        if (b->imp && t->role == FTQ_BERT_ROLE_LINEAR && t->layer >= 0 && t->input < FTQ_BERT_IN_NONE) {
            j->layer = t->layer;
            j->imp = b->imp + ((size_t)t->layer * FTQ_BERT_IN_NONE + t->input) * D;
            j->ntok = src->calib_tokens;
        }
    }
    return FTQ_OK;
}

const ftq_quant_arch ftq_quant_arch_bert = {"bert", ftq_bert_is_encoder_dir, open_bert};
