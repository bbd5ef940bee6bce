/* arch_decoder.c - the trainer's decoder family: Llama- and GPT-2-family causal LMs (and
 * their *ForSequenceClassification checkpoints) through ftq_tmodel. Classification pools
 * the last non-padding token into a `score` head; rows are right-padded with pad_token_id
 * (else EOS). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "finetune/arch.h"

struct tarch {
    const ftq_train_config *c;
    ftq_model_config src_cfg;
    char *src_config_path;
    char *gguf_files; /* a GGUF source: its config.json + tokenizer files, in a temporary directory */
    ftq_tokenizer *tok;
    ftq_model *model;
    ftq_tmodel *tm;
    ftq_task task;
    int pad_id;
    int32_t *ids, *lens, *targets;
};

static int dec_claims(const char *model_dir)
{
    (void)model_dir;
    return 1;
}

static void dec_free(tarch *a)
{
    if (!a)
        return;
    ftq_tmodel_free(a->tm);
    ftq_model_free(a->model);
    ftq_tokenizer_free(a->tok);
    free(a->src_config_path);
    if (a->gguf_files)
        ftq_remove_tree(a->gguf_files);
    free(a->gguf_files);
    free(a->ids);
    free(a->lens);
    free(a->targets);
    free(a);
}

static int dec_open(const ftq_train_config *c, tarch **out, tarch_info *info)
{
    *out = NULL;
    if (c->pool)
        return ftq_set_error(FTQ_EINVAL, "pooling '%s' is for encoders; '%s' is a decoder, which pools at the last "
                             "token", c->pool, c->model_dir);
    tarch *a = calloc(1, sizeof *a);
    if (!a)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    a->c = c;
    int rc = FTQ_OK;
    /* the output copies config.json and tokenizer files: a GGUF's are written from its metadata */
    if (ftq_gguf_is_file(c->model_dir) && (rc = ftq_gguf_model_files_tmpdir(c->model_dir, &a->gguf_files)) != FTQ_OK)
        goto fail;
    if (!(a->src_config_path = ftq_path_join(a->gguf_files ? a->gguf_files : c->model_dir, "config.json"))) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = ftq_config_load(a->src_config_path, &a->src_cfg)) != FTQ_OK)
        goto fail;
    if ((rc = ftq_tokenizer_load(c->model_dir, &a->tok)) != FTQ_OK)
        goto fail;
    ftq_tokenizer_set_parse_special(a->tok, c->parse_special);
    if (c->task == FTQ_TASK_LM && a->src_cfg.is_classifier) {
        rc = ftq_set_error(FTQ_EINVAL, "task lm needs a causal LM; '%s' is a sequence classifier", c->model_dir);
        goto fail;
    }
    const ftq_model_config *mc = &a->src_cfg;
    a->pad_id = mc->pad_token_id >= 0 ? mc->pad_token_id : ftq_tokenizer_eos(a->tok);
    if (c->task == FTQ_TASK_CLASSIFY && (a->pad_id < 0 || a->pad_id >= mc->vocab_size)) {
        rc = ftq_set_error(FTQ_EINVAL, "'%s' defines no pad_token_id and its tokenizer has no EOS to pad with",
                           c->model_dir);
        goto fail;
    }
    if (a->pad_id < 0)
        a->pad_id = 0; /* lm blocks are never padded in training */
    memset(info, 0, sizeof *info);
    info->n_layers = mc->n_layers;
    info->max_position = mc->max_position > 0 ? mc->max_position : 1 << 20;
    info->pad_id = a->pad_id;
    info->is_classifier = mc->is_classifier;
    info->supports_lm = 1;
    info->default_batch = 8;
    info->default_lr = info->default_head_lr = 5e-5;
    info->tok = a->tok;
    *out = a;
    return FTQ_OK;
fail:
    dec_free(a);
    return rc;
}

/* The fields that decide tensor shapes must agree between -m and a resumed checkpoint. */
static int same_shape_config(const ftq_model_config *a, const ftq_model_config *b, const char *dir)
{
#define CMP(f)                                                                                      \
    if (a->f != b->f)                                                                               \
    return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': its model differs from the source model " \
                                     "(" #f " %d in the checkpoint, %d in the source)", dir, (int)b->f, (int)a->f)
    CMP(arch);
    CMP(vocab_size);
    CMP(hidden_size);
    CMP(intermediate_size);
    CMP(n_layers);
    CMP(n_heads);
    CMP(n_kv_heads);
    CMP(tie_word_embeddings);
#undef CMP
    return FTQ_OK;
}

static int dec_check_resume(tarch *a, const char *dir, ftq_task task)
{
    ftq_model_config ck;
    char *p = ftq_path_join(dir, "config.json");
    int rc = p ? ftq_config_load(p, &ck) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    free(p);
    if (rc != FTQ_OK)
        return rc;
    if ((rc = same_shape_config(&a->src_cfg, &ck, dir)) != FTQ_OK)
        return rc;
    /* its labels are used: only a classifier's are checked against its weights */
    if (task == FTQ_TASK_CLASSIFY && !ck.is_classifier)
        return ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': its config.json is not a sequence classifier "
                             "(expected the checkpoint of a --task classify run)", dir);
    return FTQ_OK;
}

static int dec_load_labels(tarch *a, const char *dir, char ***names, int *n)
{
    (void)a;
    char *p = ftq_path_join(dir, "config.json");
    int rc = p ? ftq_config_load_labels(p, names, n) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    free(p);
    return rc;
}

static int dec_encode(const tarch *a, const char *text, const char *text2, int seq, int32_t **ids, int32_t **types,
                      size_t *n, int *truncated)
{
    *types = NULL;
    *truncated = 0;
    if (text2)
        return ftq_set_error(FTQ_EUNSUPPORTED, "sentence pairs need an encoder (a decoder reads one text per row)");
    int rc = ftq_tokenizer_encode(a->tok, text, strlen(text), 1, ids, n);
    if (rc == FTQ_OK && *n > (size_t)seq) { /* keep the start (HF truncation on one sequence) */
        *n = (size_t)seq;
        *truncated = 1;
    }
    return rc;
}

/* config.json "initializer_range" (HF's std for new weights), or `fallback`. */
static float initializer_range(const char *config_path, float fallback)
{
    cJSON *j = NULL;
    if (ckpt_read_json(config_path, &j) != FTQ_OK) {
        ftq_clear_error();
        return fallback;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "initializer_range");
    float r = cJSON_IsNumber(v) && v->valuedouble > 0 && isfinite(v->valuedouble) ? (float)v->valuedouble : fallback;
    cJSON_Delete(j);
    return r;
}

static int dec_build(tarch *a, const tarch_build *b)
{
    /* mode lora resumes from the source model plus the checkpoint's adapter */
    const int lora = b->mode == FTQ_TRAIN_LORA;
    if (a->c->keep_quant && b->mode != FTQ_TRAIN_LORA)
        return ftq_set_error(FTQ_EINVAL, "keep-quant trains on a quantized base: only mode lora can (mode full / "
                             "frozen / head update or copy float weights)");
    int rc = ftq_model_load_ex(b->weights_dir && !lora ? b->weights_dir : a->c->model_dir,
                               a->c->keep_quant ? FTQ_LOAD_KEEP_QUANT : 0, &a->model);
    if (rc != FTQ_OK)
        return rc;
    ftq_tmodel_params tp = ftq_tmodel_default_params();
    tp.task = b->task;
    tp.num_labels = b->task == FTQ_TASK_CLASSIFY ? b->num_labels : 0;
    tp.mode = b->mode;
    tp.freeze_layers = b->freeze_layers;
    tp.init_random = b->weights_dir ? 0 : b->init_random;
    tp.seed = b->seed;
    tp.init_std = initializer_range(a->src_config_path, tp.init_std);
    tp.max_batch = b->max_batch;
    tp.max_seq = b->max_seq;
    tp.lora = a->c->lora;
    tp.precision = b->precision;
    if ((rc = ftq_tmodel_new(a->model, &tp, &a->tm)) != FTQ_OK)
        return rc;
    if (lora && b->weights_dir && (rc = ftq_tmodel_load_adapter(a->tm, b->weights_dir)) != FTQ_OK)
        return rc;
    a->task = b->task;
    size_t B = (size_t)b->max_batch, T = (size_t)b->max_seq;
    a->ids = malloc(sizeof(int32_t) * B * T);
    a->lens = malloc(sizeof(int32_t) * B);
    a->targets = malloc(sizeof(int32_t) * B * T);
    if (!a->ids || !a->lens || !a->targets)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for training buffers");
    return FTQ_OK;
}

static float *dec_params(tarch *a, size_t *n) { return ftq_tmodel_param_buffer(a->tm, n); }

static float *dec_grads(tarch *a, size_t *n_trainable, size_t *offset)
{
    *offset = ftq_tmodel_trainable_offset(a->tm);
    return ftq_tmodel_grad_buffer(a->tm, n_trainable);
}

static size_t dec_segment_count(const tarch *a) { return ftq_tmodel_segment_count(a->tm); }
static const ftq_param_segment *dec_segment(const tarch *a, size_t i) { return ftq_tmodel_segment(a->tm, i); }

static int dec_forward(tarch *a, const ex_set *s, const uint32_t *idx, int b, double *loss, float *logits,
                       int64_t *ntok)
{
    int T = 0;
    float l = 0;
    batch_fill(s, idx, b, a->task, a->pad_id, a->ids, a->lens, a->targets, &T, ntok);
    int rc = ftq_tmodel_forward(a->tm, a->ids, a->lens, b, T, a->targets, &l, logits);
    *loss = l;
    return rc;
}

static int dec_train_batch(tarch *a, const ex_set *s, const uint32_t *idx, int b, float scale, double *loss,
                           int64_t *ntok)
{
    ftq_tmodel_set_training(a->tm, 1);
    int rc = dec_forward(a, s, idx, b, loss, NULL, ntok);
    ftq_tmodel_set_training(a->tm, 0);
    if (rc != FTQ_OK || !isfinite(*loss))
        return rc;
    return ftq_tmodel_backward(a->tm, scale);
}

static int dec_eval_batch(tarch *a, const ex_set *s, const uint32_t *idx, int b, double *loss, float *logits,
                          int64_t *ntok)
{
    return dec_forward(a, s, idx, b, loss, a->task == FTQ_TASK_CLASSIFY ? logits : NULL, ntok);
}

static int dec_save(tarch *a, const char *dir, const char *const *labels, int num_labels)
{
    char *w = ftq_path_join(dir, "model.safetensors"), *cj = ftq_path_join(dir, "config.json");
    int rc = w && cj ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    /* mode lora: a PEFT adapter; config.json (labels) and tokenizer files beside it */
    if (rc == FTQ_OK && a->c->mode == FTQ_TRAIN_LORA)
        rc = ftq_tmodel_save_adapter(a->tm, dir, a->c->model_dir);
    else if (rc == FTQ_OK)
        rc = ftq_tmodel_save_weights(a->tm, w);
    if (rc == FTQ_OK)
        rc = ckpt_write_config(a->src_config_path, cj, &a->src_cfg, a->task, labels, num_labels, a->pad_id);
    if (rc == FTQ_OK)
        rc = ftq_copy_model_files(a->gguf_files ? a->gguf_files : a->c->model_dir, dir, 0);
    free(w);
    free(cj);
    return rc;
}

const tarch_ops tarch_decoder_ops = {
    "decoder",      dec_claims, dec_open,          dec_free,          dec_check_resume, dec_load_labels,
    dec_encode,     dec_build,  dec_params,        dec_grads,         dec_segment_count, dec_segment,
    dec_train_batch, dec_eval_batch, dec_save,  NULL,
};
