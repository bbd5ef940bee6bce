/* tmodel_lora.c - the trainable decoder's adapters as a PEFT adapter directory:
 * adapter_config.json (LoraConfig's fields) and adapter_model.safetensors with PEFT's
 * tensor names (the segment names of the layout; the classification head as
 * modules_to_save: base_model.model.score.weight). */
#include <stdlib.h>
#include <string.h>

#include "finetune/tmodel.h"
#include "finetune/trainer_internal.h"

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const ftq_tensor *)a)->name, ((const ftq_tensor *)b)->name);
}

static int write_adapter_config(const ftq_tmodel *tm, const char *path, const char *base_name)
{
    cJSON *j = cJSON_CreateObject(), *t = cJSON_CreateArray();
    if (!j || !t) {
        cJSON_Delete(j);
        cJSON_Delete(t);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    for (int s = 0; s < tm->lora_ns; s++) {
        int seen = 0;
        for (int q = 0; q < s; q++)
            seen |= strcmp(tm->lora_sites[q].target, tm->lora_sites[s].target) == 0;
        if (!seen)
            cJSON_AddItemToArray(t, cJSON_CreateString(tm->lora_sites[s].target));
    }
    const int cls = tm->p.task == FTQ_TASK_CLASSIFY;
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", cls ? "SEQ_CLS" : "CAUSAL_LM");
    cJSON_AddStringToObject(j, "base_model_name_or_path", base_name ? base_name : "");
    cJSON_AddNumberToObject(j, "r", tm->p.lora.r);
    cJSON_AddNumberToObject(j, "lora_alpha", tm->p.lora.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", tm->p.lora.dropout);
    cJSON_AddItemToObject(j, "target_modules", t);
    if (cls) {
        cJSON *m = cJSON_CreateArray();
        cJSON_AddItemToArray(m, cJSON_CreateString("score"));
        cJSON_AddItemToObject(j, "modules_to_save", m);
    } else {
        cJSON_AddNullToObject(j, "modules_to_save");
    }
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", tm->cfg.arch == FTQ_ARCH_GPT2);
    cJSON_AddBoolToObject(j, "use_rslora", tm->p.lora.rslora != 0);
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "revision");
    int rc = ckpt_write_json(path, j);
    cJSON_Delete(j);
    return rc;
}

int ftq_tmodel_save_adapter(const ftq_tmodel *tm, const char *dir, const char *base_name)
{
    if (!tm || !dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_save_adapter: NULL argument");
    if (tm->p.mode != FTQ_TRAIN_LORA)
        return ftq_set_error(FTQ_EINVAL, "the model has no lora adapters (mode is not lora)");
    size_t n = tm->n_segs - tm->first_seg;
    ftq_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    char *score_name = NULL;
    int rc = FTQ_OK;
    if (!ts)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const ftq_tseg *s = &tm->segs[tm->first_seg + i];
        ftq_tensor *t = &ts[i];
        t->name = (char *)s->seg.name;
        if (s->kind != SEG_LORA_A && s->kind != SEG_LORA_B) { /* the head, modules_to_save */
            const char *pre = "base_model.model.";
            if (!(score_name = malloc(strlen(pre) + strlen(s->seg.name) + 1))) {
                free(ts);
                return ftq_set_error(FTQ_ENOMEM, "out of memory");
            }
            strcpy(score_name, pre);
            strcat(score_name, s->seg.name);
            t->name = score_name;
        }
        t->dtype = FTQ_DTYPE_F32;
        t->ndim = 2;
        t->shape[0] = s->shape[0];
        t->shape[1] = s->shape[1];
        t->nbytes = s->seg.size * sizeof(float);
        t->data = tm->params + s->seg.offset;
    }
    qsort(ts, n, sizeof *ts, cmp_tensor_name);
    char *w = ftq_path_join(dir, "adapter_model.safetensors"), *cj = ftq_path_join(dir, "adapter_config.json");
    if (!w || !cj)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    char ctr[32];
    snprintf(ctr, sizeof ctr, "%llu", (unsigned long long)tm->lora_drop.counter);
    const char *const meta[] = {"format", "pt", "ftq.lora_dropout_counter", ctr, NULL};
    if (rc == FTQ_OK)
        rc = ftq_st_write(w, ts, n, meta);
    if (rc == FTQ_OK)
        rc = write_adapter_config(tm, cj, base_name);
    free(w);
    free(cj);
    free(score_name);
    free(ts);
    return rc;
}

int ftq_tmodel_load_adapter(ftq_tmodel *tm, const char *dir)
{
    if (!tm || !dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_load_adapter: NULL argument");
    if (tm->p.mode != FTQ_TRAIN_LORA)
        return ftq_set_error(FTQ_EINVAL, "the model has no lora adapters (mode is not lora)");
    char *path = ftq_path_join(dir, "adapter_model.safetensors");
    if (!path)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    ftq_st_file *f = NULL;
    int rc = ftq_st_open(path, &f);
    for (size_t i = tm->first_seg; rc == FTQ_OK && i < tm->n_segs; i++) {
        const ftq_tseg *s = &tm->segs[i];
        char name[320];
        if (s->kind == SEG_LORA_A || s->kind == SEG_LORA_B)
            snprintf(name, sizeof name, "%s", s->seg.name);
        else
            snprintf(name, sizeof name, "base_model.model.%s", s->seg.name);
        const ftq_tensor *t = ftq_st_find(f, name);
        if (!t) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load adapter '%s': tensor '%s' is missing", path, name);
            break;
        }
        if (t->ndim != 2 || t->shape[0] != s->shape[0] || t->shape[1] != s->shape[1]) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load adapter '%s': tensor '%s' has shape [%lld, %lld], expected "
                               "[%lld, %lld]", path, name, (long long)t->shape[0],
                               (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)s->shape[0],
                               (long long)s->shape[1]);
            break;
        }
        rc = ftq_tensor_to_f32(t, tm->params + s->seg.offset);
    }
    /* the dropout masks drawn so far (ftq's own adapters), so that a resumed run continues them */
    const char *ctr = rc == FTQ_OK ? ftq_st_metadata_get(f, "ftq.lora_dropout_counter") : NULL;
    if (ctr)
        tm->lora_drop.counter = strtoull(ctr, NULL, 10);
    ftq_st_close(f);
    free(path);
    return rc;
}
