/* arch_bert.c - the trainer's encoder family: BERT (config.json model_type "bert") as a
 * sequence classifier through ftq_bert and its backward (bert_train.c). Rows are
 * [CLS] A [SEP] (or pairs [CLS] A [SEP] B [SEP] with token types) truncated to the sequence
 * length, right-padded with id 0; pooled as --pool says (pooler, HF's default; mean; cls).
 * The classifier head is always new (for the labels of the training data; a source
 * classifier's head is replaced). Head-only training is feature extraction: the frozen encoder runs once over each example
 * set (in batches of 64 rows, in file order; split across the ranks of a distributed run) and
 * the classifier trains on that cache.
 * Invariant: the parameter layout is the source's plus a head at the end, also on resume
 * (a checkpoint's values are copied in by tensor name), so optimizer moments line up. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "finetune/arch.h"
#include "finetune/bert_bf16.h"
#include "include/ftq_bert_train.h"
#include "include/ftq_dist.h"
#include "kernels/kernels.h"
#include "model/bert_internal.h"

#define FEATURE_BATCH 64 /* rows per forward of the head-mode feature pass */

typedef struct {
    const ex_set *s; /* the example set these features belong to */
    float *feats;    /* [s->n, hidden] */
} feat_cache;

struct tarch {
    const ftq_train_config *c;
    ftq_tokenizer *tok;
    ftq_bert *m;
    ftq_bert *ck; /* the resume checkpoint, until build copies it in */
    char *resume_adapter; /* a lora run's checkpoint directory to resume from (its adapter), else NULL */
    ftq_pool pool;
    int pool_given;
    ftq_train_mode mode;
    int first_layer; /* the lowest block with gradients; n_layers + 1: only the classifier */
    size_t from;     /* the first trainable float */
    float *grads;    /* laid out like m->params (n_params floats) */
    ftq_param_segment *segs;
    char **seg_names;
    size_t n_segs;
    ftq_bert_ws *ws; /* training / evaluation (not in head mode) */
    int max_batch, max_seq;
    int32_t *ids, *types, *labels;
    int *lens;
    float *logits, *x;
    feat_cache cache[2];
    ftq_bf16_set *head_bf16; /* bf16 mode head: the classifier's copies (other modes: m->bf16) */
};

static int bert_claims(const char *model_dir) { return ftq_bert_is_encoder_dir(model_dir); }

static void bert_free(tarch *a)
{
    if (!a)
        return;
    ftq_tokenizer_free(a->tok);
    ftq_bert_free(a->m);
    ftq_bert_free(a->ck);
    free(a->resume_adapter);
    free(a->grads);
    for (size_t i = 0; a->seg_names && i < a->n_segs; i++)
        free(a->seg_names[i]);
    free(a->seg_names);
    free(a->segs);
    ftq_bert_ws_free(a->ws);
    free(a->ids);
    free(a->types);
    free(a->labels);
    free(a->lens);
    free(a->logits);
    free(a->x);
    for (int i = 0; i < 2; i++)
        free(a->cache[i].feats);
    if (a->head_bf16) {
        ftq_bf16_set_free(a->head_bf16);
        free(a->head_bf16);
    }
    free(a);
}

static int parse_pool(const char *s, ftq_pool *p)
{
    static const char *const names[] = {"pooler", "mean", "cls"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *p = (ftq_pool)i;
            return FTQ_OK;
        }
    return ftq_set_error(FTQ_EINVAL, "unknown pooling '%s' (expected pooler, mean or cls)", s);
}

static int bert_open(const ftq_train_config *c, tarch **out, tarch_info *info)
{
    *out = NULL;
    if (c->task != FTQ_TASK_CLASSIFY)
        return ftq_set_error(FTQ_EINVAL, "task lm needs a causal LM; '%s' is an encoder (task classify only)",
                             c->model_dir);
    if (c->init_random)
        return ftq_set_error(FTQ_EUNSUPPORTED, "random initialization is not available for encoders ('%s')",
                             c->model_dir);
    if (c->precision == FTQ_PRECISION_BF16 && c->mode == FTQ_TRAIN_LORA)
        return ftq_set_error(FTQ_EUNSUPPORTED, "precision bf16 does not apply to mode lora yet ('%s'); use fp32",
                             c->model_dir);
    tarch *a = calloc(1, sizeof *a);
    if (!a)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    a->c = c;
    int rc = FTQ_OK;
    if (c->pool && (rc = parse_pool(c->pool, &a->pool)) != FTQ_OK)
        goto fail;
    a->pool_given = c->pool != NULL;
    if ((rc = ftq_bert_load(c->model_dir, &a->m)) != FTQ_OK || (rc = ftq_tokenizer_load(c->model_dir, &a->tok)))
        goto fail;
    ftq_tokenizer_set_parse_special(a->tok, c->parse_special);
    const ftq_bert_config *bc = ftq_bert_get_config(a->m);
    if (!a->pool_given)
        a->pool = FTQ_POOL_POOLER;
    if (a->pool == FTQ_POOL_POOLER && !bc->has_pooler) {
        rc = ftq_set_error(FTQ_EINVAL, "'%s' has no pooler: choose pooling mean or cls", c->model_dir);
        goto fail;
    }
    memset(info, 0, sizeof *info);
    info->n_layers = bc->n_layers;
    info->max_position = bc->max_position;
    info->pad_id = 0; /* [PAD]; padded positions are masked, their id is never read */
    info->is_classifier = 0; /* a source classifier's head is replaced by one for the data's labels */
    info->default_batch = 32;
    info->default_lr = 5e-5;
    info->default_head_lr = 1e-3;
    info->tok = a->tok;
    *out = a;
    return FTQ_OK;
fail:
    bert_free(a);
    return rc;
}

static int bert_check_resume(tarch *a, const char *dir, ftq_task task)
{
    (void)task;
    if (!ftq_bert_is_encoder_dir(dir))
        return ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': its config.json is not a BERT model", dir);
    char *ad = ftq_path_join(dir, "adapter_model.safetensors");
    if (!ad)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int lora = ftq_is_file(ad);
    free(ad);
    if (lora) { /* a lora run's checkpoint: its adapter and head are read by build, onto the source */
        if (a->c->mode != FTQ_TRAIN_LORA)
            return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': it is the checkpoint of a lora run (resume it "
                                 "with --mode lora)", dir);
        return (a->resume_adapter = strdup(dir)) ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    int rc = ftq_bert_load(dir, &a->ck);
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "cannot resume from '%s'", dir);
    const ftq_bert_config *s = ftq_bert_get_config(a->m), *k = ftq_bert_get_config(a->ck);
#define CMP(f)                                                                                           \
    if (s->f != k->f)                                                                                    \
    return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': its model differs from the source model (" #f \
                                     " %d in the checkpoint, %d in the source)", dir, (int)k->f, (int)s->f)
    CMP(vocab_size);
    CMP(hidden);
    CMP(n_layers);
    CMP(n_heads);
    CMP(ffn);
    CMP(max_position);
    CMP(type_vocab);
    CMP(has_pooler);
#undef CMP
    if (!k->num_labels)
        return ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': it has no classifier head (expected the "
                             "checkpoint of a --task classify run)", dir);
    return FTQ_OK;
}

static int bert_load_labels(tarch *a, const char *dir, char ***names, int *n)
{
    (void)a;
    char *p = ftq_path_join(dir, "config.json");
    cJSON *j = NULL;
    int rc = p ? ckpt_read_json(p, &j) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    free(p);
    if (rc != FTQ_OK)
        return rc;
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(j, "id2label");
    int count = cJSON_IsObject(id2) ? cJSON_GetArraySize(id2) : 0;
    cJSON_Delete(j);
    if (count < 1 || count > 1 << 16)
        return ftq_set_error(FTQ_EFORMAT, "'%s/config.json' has no usable id2label (expected 1..65536 labels)", dir);
    *n = count;
    return ftq_bert_load_labels(dir, count, names);
}

static int bert_encode(const tarch *a, const char *text, const char *text2, int seq, int32_t **ids, int32_t **types,
                       size_t *n, int *truncated)
{
    return ftq_bert_tokenize(a->tok, text, text2, seq, ids, types, n, truncated);
}

/* Offset of the first trained float: the layout is embeddings, blocks, pooler, classifier. */
static size_t trainable_from(const ftq_bert *m, int first_layer)
{
    char name[160];
    if (first_layer <= 0)
        return 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        if (first_layer > m->cfg.n_layers) {
            if (strcmp(t->name, "classifier.weight") == 0)
                return t->off;
        } else if (first_layer == m->cfg.n_layers) {
            snprintf(name, sizeof name, "%spooler.dense.weight", m->cfg.prefix);
            if (strcmp(t->name, name) == 0 || strcmp(t->name, "classifier.weight") == 0)
                return t->off;
        } else if (t->layer == first_layer) {
            return t->off;
        }
    }
    return m->n_params;
}

/* The checkpoint's values into the source's layout, tensor by tensor. */
static int copy_checkpoint(tarch *a, const char *dir)
{
    const ftq_bert *m = a->m, *k = a->ck;
    static const char *const pools[] = {"pooler", "mean", "cls", "max"};
    if (k->cfg.num_labels != m->cfg.num_labels)
        return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': its head has %d labels, this run's data %d", dir,
                             k->cfg.num_labels, m->cfg.num_labels);
    if (k->cfg.pool != m->cfg.pool)
        return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': --pool %s differs from the checkpoint's %s", dir,
                             pools[m->cfg.pool], pools[k->cfg.pool]);
    size_t pm = strlen(m->cfg.prefix), pk = strlen(k->cfg.prefix);
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        int head = strncmp(t->name, "classifier.", 11) == 0;
        const char *base = t->name + (head ? 0 : pm);
        const ftq_bert_tensor *src = NULL;
        for (int j = 0; j < k->n_tensors && !src; j++) {
            const char *kb = k->tensors[j].name;
            if (strncmp(kb, "classifier.", 11) != 0)
                kb += pk;
            if (strcmp(kb, base) == 0)
                src = &k->tensors[j];
        }
        if (!src || src->numel != t->numel)
            return ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': tensor '%s' is %s", dir, base,
                                 src ? "of another size" : "missing");
        memcpy(m->params + t->off, k->params + src->off, sizeof(float) * t->numel);
    }
    return FTQ_OK;
}

/* Mode lora: one segment per adapter matrix (PEFT's names; decayed, as HF's Trainer decays
 * every weight that is not a bias or a LayerNorm), each with its alignment padding. */
static int lora_segments(tarch *a)
{
    const ftq_bert *m = a->m;
    const ftq_bert_lora *lo = m->lora;
    const int L = m->cfg.n_layers;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BERT_LIN_N; k++) {
            if (!lo->on[k])
                continue;
            for (int ab = 0; ab < 2; ab++) {
                size_t i = ((size_t)l * BERT_LIN_N + k) * 2 + ab, end = m->n_params;
                for (size_t j = i + 1; j < (size_t)L * BERT_LIN_N * 2; j++) /* the next adapter matrix */
                    if (lo->on[(j / 2) % BERT_LIN_N]) {
                        end = lo->off[j];
                        break;
                    }
                char mod[160];
                ftq_bert_lora_module(l, k, mod, sizeof mod);
                size_t nl = strlen(mod) + 64;
                char *name = malloc(nl);
                if (!name)
                    return ftq_set_error(FTQ_ENOMEM, "out of memory");
                snprintf(name, nl, "base_model.model.bert.%s.lora_%c.weight", mod, ab ? 'B' : 'A');
                a->seg_names[a->n_segs] = name;
                ftq_param_segment *s = &a->segs[a->n_segs++];
                s->name = name;
                s->offset = lo->off[i];
                s->size = end - lo->off[i];
                s->decay = 1;
            }
        }
    return FTQ_OK;
}

static void adapter_name(int l, int k, int ab, char *buf, size_t cap)
{
    char mod[160];
    ftq_bert_lora_module(l, k, mod, sizeof mod);
    snprintf(buf, cap, "base_model.model.bert.%s.lora_%c.weight", mod, ab ? 'B' : 'A');
}

/* Resume a lora run: the checkpoint's adapters and classifier (save_adapter's names and
 * shapes) into the fresh ones, and the count of dropout masks drawn, so that the run goes
 * on exactly as if it had not stopped. */
static int load_adapter(tarch *a, const char *dir)
{
    ftq_bert *m = a->m;
    const ftq_bert_lora *lo = m->lora;
    char *path = ftq_path_join(dir, "adapter_model.safetensors");
    if (!path)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    ftq_st_file *f = NULL;
    int rc = ftq_st_open(path, &f);
    const int NL = m->cfg.num_labels, C = m->cfg.hidden;
    for (int l = 0; rc == FTQ_OK && l < m->cfg.n_layers; l++)
        for (int k = 0; rc == FTQ_OK && k < BERT_LIN_N; k++)
            for (int ab = 0; rc == FTQ_OK && lo->on[k] && ab < 2; ab++) {
                int in, out;
                ftq_bert_lin_dims(m, k, &in, &out);
                char name[256];
                adapter_name(l, k, ab, name, sizeof name);
                const ftq_tensor *t = ftq_st_find(f, name);
                int64_t r0 = ab ? out : lo->r, r1 = ab ? lo->r : in;
                if (!t || t->ndim != 2 || t->shape[0] != r0 || t->shape[1] != r1)
                    rc = ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': tensor '%s' is %s (expected [%lld, %lld]: "
                                       "the same --lora-r and --lora-targets)", path, name,
                                       t ? "of another shape" : "missing", (long long)r0, (long long)r1);
                else
                    rc = ftq_tensor_to_f32(t, m->params + lo->off[((size_t)l * BERT_LIN_N + k) * 2 + ab]);
            }
    static const char *const head[2] = {"base_model.model.classifier.weight", "base_model.model.classifier.bias"};
    for (int h = 0; rc == FTQ_OK && h < 2; h++) {
        const ftq_tensor *t = ftq_st_find(f, head[h]);
        if (!t || ftq_tensor_numel(t) != (int64_t)(h ? NL : NL * C))
            rc = ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': tensor '%s' is %s (expected %d labels)", path,
                               head[h], t ? "of another size" : "missing", NL);
        else
            rc = ftq_tensor_to_f32(t, h ? m->w.cls_b : m->w.cls_w);
    }
    const char *ctr = rc == FTQ_OK ? ftq_st_metadata_get(f, "ftq.lora_dropout_counter") : NULL;
    if (ctr)
        m->lora->drop.counter = strtoull(ctr, NULL, 10);
    ftq_st_close(f);
    free(path);
    return rc;
}

static int bert_build(tarch *a, const tarch_build *b)
{
    ftq_bert *m = a->m;
    int rc = FTQ_OK;
    /* a new head for the data's labels (HF _init_weights), also over a source classifier's */
    if ((rc = ftq_bert_add_head(m, b->num_labels, a->pool, b->seed)) != FTQ_OK)
        return rc;
    if (b->weights_dir && !a->resume_adapter) {
        rc = a->ck ? copy_checkpoint(a, b->weights_dir)
                   : ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': not checked", b->weights_dir);
        ftq_bert_free(a->ck);
        a->ck = NULL;
        if (rc != FTQ_OK)
            return rc;
    }
    int L = m->cfg.n_layers, C = m->cfg.hidden, NL = m->cfg.num_labels;
    a->mode = b->mode;
    a->first_layer = b->mode == FTQ_TRAIN_HEAD ? L + 1 : b->mode == FTQ_TRAIN_FROZEN ? b->freeze_layers : 0;
    a->from = trainable_from(m, a->first_layer);
    if (b->mode == FTQ_TRAIN_LORA) { /* the classifier (modules_to_save) and the adapters after it */
        if (b->weights_dir && !a->resume_adapter)
            return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': it holds no adapter (not the checkpoint of a "
                                 "lora run)", b->weights_dir);
        a->from = trainable_from(m, L + 1);
        if ((rc = ftq_bert_add_lora(m, &a->c->lora, b->seed, (size_t)b->max_batch * (size_t)b->max_seq)) != FTQ_OK)
            return rc;
        if (a->resume_adapter && (rc = load_adapter(a, a->resume_adapter)) != FTQ_OK)
            return rc;
    }
    a->max_batch = b->max_batch;
    a->max_seq = b->max_seq;
    /* segments: every tensor from `from` on, each with the alignment padding after it */
    size_t cap = (size_t)m->n_tensors + (m->lora ? (size_t)L * BERT_LIN_N * 2 : 0);
    a->segs = calloc(cap, sizeof *a->segs);
    a->seg_names = calloc(cap, sizeof *a->seg_names);
    a->grads = calloc(m->n_params, sizeof(float));
    if (!a->segs || !a->seg_names || !a->grads)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu gradients", m->n_params);
    size_t pl = strlen(m->cfg.prefix);
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        if (t->off < a->from)
            continue;
        size_t end = i + 1 < m->n_tensors ? m->tensors[i + 1].off : m->lora ? m->lora->start : m->n_params;
        if (end < t->off + t->numel)
            return ftq_set_error(FTQ_EINVAL, "bert tensor '%s' overlaps the next one", t->name);
        /* the alignment padding is never read as a weight, but AdamW and the finiteness
         * checks walk it: zero, not whatever the allocation held */
        memset(m->params + t->off + t->numel, 0, sizeof(float) * (end - t->off - t->numel));
        int head = strncmp(t->name, "classifier.", 11) == 0;
        const char *base = t->name + (head ? 0 : pl);
        size_t nl = strlen(base) + 8;
        char *name = malloc(nl);
        if (!name)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        snprintf(name, nl, "%s%s", head ? "" : "bert.", base); /* the name HF saves */
        a->seg_names[a->n_segs] = name;
        ftq_param_segment *s = &a->segs[a->n_segs++];
        s->name = name;
        s->offset = t->off;
        s->size = end - t->off;
        /* HF's convention: no decay on biases, LayerNorm and embeddings */
        s->decay = !(strstr(base, "bias") || strstr(base, "LayerNorm") || strstr(base, "embeddings"));
    }
    if (m->lora && (rc = lora_segments(a)) != FTQ_OK)
        return rc;
    size_t rows = (size_t)(b->max_batch > FEATURE_BATCH ? b->max_batch : FEATURE_BATCH);
    a->ids = malloc(sizeof(int32_t) * rows * (size_t)b->max_seq);
    a->types = malloc(sizeof(int32_t) * rows * (size_t)b->max_seq);
    a->labels = malloc(sizeof(int32_t) * rows);
    a->lens = malloc(sizeof(int) * rows);
    a->logits = malloc(sizeof(float) * rows * (size_t)NL);
    a->x = malloc(sizeof(float) * rows * (size_t)C);
    if (!a->ids || !a->types || !a->labels || !a->lens || !a->logits || !a->x)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for training buffers");
    if (b->mode != FTQ_TRAIN_HEAD)
        rc = ftq_bert_ws_new(m, b->max_batch, b->max_seq, 1, &a->ws);
    if (rc == FTQ_OK && b->precision == FTQ_PRECISION_BF16) /* mode head: fp32 features, bf16 classifier */
        rc = ftq_bert_bf16_new(m, a->first_layer, b->max_batch, b->max_seq,
                               b->mode == FTQ_TRAIN_HEAD ? &a->head_bf16 : &m->bf16);
    return rc;
}

static float *bert_params(tarch *a, size_t *n)
{
    *n = a->m->n_params;
    return a->m->params;
}

static float *bert_grads(tarch *a, size_t *n_trainable, size_t *offset)
{
    *offset = a->from;
    *n_trainable = a->m->n_params - a->from;
    return a->grads + a->from;
}

static size_t bert_segment_count(const tarch *a) { return a->n_segs; }
static const ftq_param_segment *bert_segment(const tarch *a, size_t i) { return i < a->n_segs ? &a->segs[i] : NULL; }

/* Rows idx[0..b) of s right-padded with 0 to their longest; returns T. */
static int gather(tarch *a, const ex_set *s, const uint32_t *idx, int b, int64_t *ntok)
{
    int T = 1;
    for (int r = 0; r < b; r++) {
        a->lens[r] = (int)(s->off[idx[r] + 1] - s->off[idx[r]]);
        T = a->lens[r] > T ? a->lens[r] : T;
        *ntok += a->lens[r];
        a->labels[r] = s->label ? s->label[idx[r]] : -1;
    }
    for (int r = 0; r < b; r++) {
        size_t o = s->off[idx[r]];
        int32_t *ids = a->ids + (size_t)r * T, *ty = a->types + (size_t)r * T;
        memset(ids, 0, sizeof *ids * (size_t)T);
        memset(ty, 0, sizeof *ty * (size_t)T);
        memcpy(ids, s->tok + o, sizeof *ids * (size_t)a->lens[r]);
        if (s->type)
            memcpy(ty, s->type + o, sizeof *ty * (size_t)a->lens[r]);
    }
    return T;
}

/* Mean cross-entropy of logits [b, NL] over the labeled rows; with dz, its gradient times
 * scale replaces the logits. */
static double xent(float *z, const int32_t *labels, int b, int NL, int grad, float scale)
{
    double tot = 0;
    int n = 0;
    for (int r = 0; r < b; r++) {
        float *zb = z + (size_t)r * NL;
        int y = labels[r];
        double mx = zb[0], s = 0;
        for (int i = 1; i < NL; i++)
            mx = zb[i] > mx ? zb[i] : mx;
        for (int i = 0; i < NL; i++)
            s += exp((double)zb[i] - mx);
        if (y >= 0) {
            tot += mx + log(s) - zb[y];
            n++;
        }
        if (grad)
            for (int i = 0; i < NL; i++)
                zb[i] = (float)((exp((double)zb[i] - mx) / s - (i == y)) / b * scale);
    }
    return n ? tot / n : NAN;
}

/* Head mode: the pooled features of every row of s, computed once. */
static int features(tarch *a, const ex_set *s, const float **out, int64_t *ntok)
{
    feat_cache *fc = NULL;
    for (int i = 0; i < 2 && !fc; i++)
        if (a->cache[i].s == s)
            fc = &a->cache[i];
    if (fc) {
        *out = fc->feats;
        return FTQ_OK;
    }
    fc = !a->cache[0].s ? &a->cache[0] : &a->cache[1];
    free(fc->feats);
    int C = a->m->cfg.hidden;
    fc->s = NULL;
    if (!(fc->feats = malloc(sizeof(float) * (s->n + 1) * (size_t)C)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu feature rows", s->n);
    /* the same batches of 64 rows as one process computes, a contiguous run of them per
     * rank, then each rank's rows broadcast to the others: every rank ends with the features
     * one process computes, bit for bit */
    ftq_bert_ws *ws = NULL;
    uint32_t idx[FEATURE_BATCH];
    size_t nbat = (s->n + FEATURE_BATCH - 1) / FEATURE_BATCH, W = (size_t)ftq_dist_size();
    size_t R = (size_t)ftq_dist_rank();
    int rc = ftq_bert_ws_new(a->m, FEATURE_BATCH, a->max_seq, 0, &ws);
    for (size_t k = nbat * R / W; rc == FTQ_OK && k < nbat * (R + 1) / W; k++) {
        size_t r0 = k * FEATURE_BATCH;
        int B = s->n - r0 < FEATURE_BATCH ? (int)(s->n - r0) : FEATURE_BATCH;
        for (int r = 0; r < B; r++)
            idx[r] = (uint32_t)(r0 + (size_t)r);
        int T = gather(a, s, idx, B, ntok);
        rc = ftq_bert_forward(a->m, ws, a->ids, a->types, a->lens, B, T);
        if (rc == FTQ_OK)
            rc = ftq_bert_pool(a->m, ws, a->m->cfg.pool, 0, fc->feats + r0 * (size_t)C);
    }
    ftq_bert_ws_free(ws);
    rc = ftq_dist_agree(rc);
    for (size_t r = 0; rc == FTQ_OK && W > 1 && r < W; r++) {
        size_t lo = nbat * r / W * FEATURE_BATCH, hi = nbat * (r + 1) / W * FEATURE_BATCH;
        hi = hi < s->n ? hi : s->n;
        if (hi > lo)
            rc = ftq_dist_bcast(fc->feats + lo * (size_t)C, sizeof(float) * (hi - lo) * (size_t)C, (int)r);
    }
    if (rc != FTQ_OK)
        return rc;
    fc->s = s;
    *out = fc->feats;
    return FTQ_OK;
}

/* Head mode: logits of rows idx from the cache (the pooled features stay in a->x). */
static int head_logits(tarch *a, const ex_set *s, const uint32_t *idx, int b, int64_t *ntok)
{
    const float *f = NULL;
    int rc = features(a, s, &f, ntok);
    if (rc != FTQ_OK)
        return rc;
    int C = a->m->cfg.hidden, NL = a->m->cfg.num_labels;
    for (int r = 0; r < b; r++) {
        memcpy(a->x + (size_t)r * C, f + (size_t)idx[r] * C, sizeof(float) * (size_t)C);
        a->labels[r] = s->label ? s->label[idx[r]] : -1;
    }
    ftq_bf16_set_refresh(a->head_bf16);
    ftq_bf16_linear_forward(a->head_bf16, a->logits, a->x, a->m->w.cls_w, a->m->w.cls_b, b, C, NL);
    return FTQ_OK;
}

static int bert_train_batch(tarch *a, const ex_set *s, const uint32_t *idx, int b, float scale, double *loss,
                            int64_t *ntok)
{
    *ntok = 0;
    int rc;
    if (a->mode == FTQ_TRAIN_HEAD) {
        if ((rc = head_logits(a, s, idx, b, ntok)) != FTQ_OK)
            return rc;
        int C = a->m->cfg.hidden, NL = a->m->cfg.num_labels;
        *loss = xent(a->logits, a->labels, b, NL, 1, scale);
        if (!isfinite(*loss))
            return FTQ_OK;
        ftq_bf16_linear_backward(a->head_bf16, NULL, a->grads + (a->m->w.cls_w - a->m->params),
                                 a->grads + (a->m->w.cls_b - a->m->params), a->logits, a->x, a->m->w.cls_w, b, C, NL,
                                 0);
        ftq_bf16_set_mark(a->head_bf16, 1); /* an optimizer step comes next */
        return FTQ_OK;
    }
    int T = gather(a, s, idx, b, ntok);
    if (a->m->lora)
        a->m->lora->training = 1;
    rc = ftq_bert_forward(a->m, a->ws, a->ids, a->types, a->lens, b, T);
    if (a->m->lora)
        a->m->lora->training = 0;
    if (rc != FTQ_OK)
        return rc;
    return ftq_bert_loss_grad_scaled(a->m, a->ws, a->labels, a->grads, a->first_layer, scale, loss);
}

static int bert_eval_batch(tarch *a, const ex_set *s, const uint32_t *idx, int b, double *loss, float *logits,
                           int64_t *ntok)
{
    *ntok = 0;
    int rc, NL = a->m->cfg.num_labels;
    if (a->mode == FTQ_TRAIN_HEAD) {
        rc = head_logits(a, s, idx, b, ntok);
    } else {
        int T = gather(a, s, idx, b, ntok);
        rc = ftq_bert_forward(a->m, a->ws, a->ids, a->types, a->lens, b, T);
        if (rc == FTQ_OK)
            rc = ftq_bert_classify(a->m, a->ws, a->logits);
    }
    if (rc != FTQ_OK)
        return rc;
    if (logits)
        memcpy(logits, a->logits, sizeof(float) * (size_t)b * NL);
    *loss = xent(a->logits, a->labels, b, NL, 0, 1.0f);
    return FTQ_OK;
}

/* Head mode: the features of every row of s, computed before training (split across the
 * ranks of a distributed run); other modes have nothing to prepare. */
static int bert_prepare(tarch *a, const ex_set *s, int64_t *ntok)
{
    *ntok = 0;
    const float *f = NULL;
    return a->mode == FTQ_TRAIN_HEAD && s->n > 0 ? features(a, s, &f, ntok) : FTQ_OK;
}

/* Mode lora: a PEFT adapter for BertForSequenceClassification (task SEQ_CLS, the
 * classifier as modules_to_save) beside config.json (labels) and the tokenizer files. */
static int save_adapter(const tarch *a, const char *dir)
{
    const ftq_bert *m = a->m;
    const ftq_bert_lora *lo = m->lora;
    const int L = m->cfg.n_layers;
    size_t n = 0, cap = (size_t)L * BERT_LIN_N * 2 + 2;
    ftq_tensor *ts = calloc(cap, sizeof *ts);
    char **names = calloc(cap, sizeof *names);
    int rc = ts && names ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    int in_of[BERT_LIN_N], out_of[BERT_LIN_N];
    for (int k = 0; k < BERT_LIN_N; k++) {
        in_of[k] = k == BERT_LIN_FC2 ? m->cfg.ffn : m->cfg.hidden;
        out_of[k] = k == BERT_LIN_FC1 ? m->cfg.ffn : m->cfg.hidden;
    }
    for (int l = 0; rc == FTQ_OK && l < L; l++)
        for (int k = 0; rc == FTQ_OK && k < BERT_LIN_N; k++)
            for (int ab = 0; lo->on[k] && ab < 2; ab++) {
                if (!(names[n] = malloc(256))) {
                    rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                    break;
                }
                adapter_name(l, k, ab, names[n], 256);
                ftq_tensor *t = &ts[n++];
                t->name = names[n - 1];
                t->dtype = FTQ_DTYPE_F32;
                t->ndim = 2;
                t->shape[0] = ab ? out_of[k] : lo->r;
                t->shape[1] = ab ? lo->r : in_of[k];
                t->nbytes = sizeof(float) * (size_t)(t->shape[0] * t->shape[1]);
                t->data = m->params + lo->off[((size_t)l * BERT_LIN_N + k) * 2 + ab];
            }
    const int NL = m->cfg.num_labels, C = m->cfg.hidden;
    ftq_tensor *cw = &ts[n++], *cb = &ts[n++];
    cw->name = "base_model.model.classifier.weight";
    cw->dtype = cb->dtype = FTQ_DTYPE_F32;
    cw->ndim = 2;
    cw->shape[0] = NL;
    cw->shape[1] = C;
    cw->nbytes = sizeof(float) * (size_t)NL * C;
    cw->data = m->w.cls_w;
    cb->name = "base_model.model.classifier.bias";
    cb->ndim = 1;
    cb->shape[0] = NL;
    cb->nbytes = sizeof(float) * (size_t)NL;
    cb->data = m->w.cls_b;
    char *w = ftq_path_join(dir, "adapter_model.safetensors"), *cj = ftq_path_join(dir, "adapter_config.json");
    char ctr[32]; /* the dropout masks drawn so far: a resumed run continues them */
    snprintf(ctr, sizeof ctr, "%llu", (unsigned long long)lo->drop.counter);
    const char *const meta[] = {"format", "pt", "ftq.lora_dropout_counter", ctr, NULL};
    if (rc == FTQ_OK)
        rc = w && cj ? ftq_st_write(w, ts, n, meta) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    cJSON *j = rc == FTQ_OK ? cJSON_CreateObject() : NULL, *tg = cJSON_CreateArray(), *ms = cJSON_CreateArray();
    if (rc == FTQ_OK && j && tg && ms) {
        /* full suffixes: PEFT's bare "dense" would also adapt the pooler */
        static const char *const full[BERT_LIN_N] = {"query", "key", "value", "attention.output.dense",
                                                     "intermediate.dense", "output.dense"};
        for (int k = 0; k < BERT_LIN_N; k++)
            if (lo->on[k])
                cJSON_AddItemToArray(tg, cJSON_CreateString(full[k]));
        cJSON_AddItemToArray(ms, cJSON_CreateString("classifier"));
        cJSON_AddStringToObject(j, "peft_type", "LORA");
        cJSON_AddStringToObject(j, "task_type", "SEQ_CLS");
        cJSON_AddStringToObject(j, "base_model_name_or_path", a->c->model_dir);
        cJSON_AddNumberToObject(j, "r", lo->r);
        cJSON_AddNumberToObject(j, "lora_alpha", a->c->lora.alpha);
        cJSON_AddNumberToObject(j, "lora_dropout", lo->dropout);
        cJSON_AddItemToObject(j, "target_modules", tg);
        cJSON_AddItemToObject(j, "modules_to_save", ms);
        tg = ms = NULL;
        cJSON_AddStringToObject(j, "bias", "none");
        cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
        cJSON_AddBoolToObject(j, "use_rslora", a->c->lora.rslora != 0);
        cJSON_AddBoolToObject(j, "use_dora", 0);
        cJSON_AddBoolToObject(j, "inference_mode", 1);
        rc = ckpt_write_json(cj, j);
    } else if (rc == FTQ_OK) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    cJSON_Delete(j);
    cJSON_Delete(tg);
    cJSON_Delete(ms);
    free(w);
    free(cj);
    for (size_t i = 0; names && i < cap; i++)
        free(names[i]);
    free(names);
    free(ts);
    return rc;
}

static int bert_save(tarch *a, const char *dir, const char *const *labels, int num_labels)
{
    if (a->m->lora) { /* config.json and tokenizer files as for a classifier, the weights as an adapter */
        int rc = ftq_bert_write_classifier(a->m, a->c->model_dir, dir, labels, num_labels); /* no weights */
        return rc == FTQ_OK ? save_adapter(a, dir) : rc;
    }
    return ftq_bert_write_classifier(a->m, a->c->model_dir, dir, labels, num_labels);
}

const tarch_ops tarch_bert_ops = {
    "bert",          bert_claims, bert_open,          bert_free,          bert_check_resume, bert_load_labels,
    bert_encode,     bert_build,  bert_params,        bert_grads,         bert_segment_count, bert_segment,
    bert_train_batch, bert_eval_batch, bert_save,  bert_prepare,
};
