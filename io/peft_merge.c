/* peft_merge.c - an HF model directory with a PEFT LoRA adapter merged in, matched by
 * tensor name (<module>.weight), written through a temporary directory renamed into place
 * (ftq_outdir_*). Adapted tensors become F32 W + scaling * B A (transposed for GPT-2's
 * Conv1D when the adapter says fan_in_fan_out); every other tensor is copied as stored. */
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "ftq_lora.h"

/* The base-model prefix the adapter's module paths start with and a checkpoint may omit
 * (GPT-2's "transformer.", BERT's "bert."), or "". */
static const char *omitted_prefix(const char *mod)
{
    static const char *const pre[] = {"transformer.", "bert."};
    for (size_t i = 0; i < 2; i++)
        if (strncmp(mod, pre[i], strlen(pre[i])) == 0)
            return pre[i];
    return "";
}

/* The adapter module whose weight is `name`, or -1: "<module>.weight", also when the
 * checkpoint omits the base-model prefix. */
static long module_of(const ftq_peft *ad, const char *name)
{
    for (size_t i = 0; i < ftq_peft_module_count(ad); i++) {
        const char *mod = ftq_peft_module_at(ad, i)->module;
        for (int pass = 0; pass < 2; pass++) {
            const char *m = mod;
            if (pass == 1) {
                if (!*omitted_prefix(mod))
                    break;
                m = mod + strlen(omitted_prefix(mod));
            }
            size_t n = strlen(m);
            if (strncmp(name, m, n) == 0 && strcmp(name + n, ".weight") == 0)
                return (long)i;
        }
    }
    return -1;
}

int ftq_peft_merge_dir(const char *base_dir, const char *adapter_dir, const char *out_dir)
{
    ftq_checkpoint *ck = NULL;
    ftq_peft *ad = NULL;
    ftq_tensor *ts = NULL;
    float **bufs = NULL;
    char **names = NULL;
    char *tmp = NULL;
    unsigned char *used = NULL;
    size_t n = 0, nt = 0, cap = 0;
    int rc = ftq_peft_open(adapter_dir, &ad);
    if (rc == FTQ_OK)
        rc = ftq_checkpoint_open(base_dir, &ck);
    if (rc != FTQ_OK)
        goto done;
    n = ftq_checkpoint_count(ck);
    cap = n + ftq_peft_extra_count(ad);
    ts = calloc(cap, sizeof *ts);
    bufs = calloc(cap, sizeof *bufs);
    names = calloc(cap, sizeof *names);
    used = calloc(ftq_peft_module_count(ad) + 1, 1);
    if (!ts || !bufs || !names || !used) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto done;
    }
    const int fifo = ftq_peft_fan_in_fan_out(ad);
    for (size_t i = 0; rc == FTQ_OK && i < n; i++) {
        const ftq_tensor *src = ftq_checkpoint_tensor(ck, i);
        int replaced = 0;
        for (size_t e = 0; e < ftq_peft_extra_count(ad); e++) {
            const char *en;
            ftq_peft_extra_at(ad, e, &en);
            replaced |= strcmp(en, src->name) == 0;
        }
        if (replaced)
            continue; /* the adapter's modules_to_save copy replaces it below */
        ts[nt] = *src;
        /* a head saved with the adapter (modules_to_save) makes the output a model with a head:
         * its base tensors carry the base-model prefix, as HF saves such a model */
        const char *pre = omitted_prefix(ftq_peft_module_at(ad, 0)->module);
        if (ftq_peft_extra_count(ad) && *pre && strncmp(src->name, pre, strlen(pre)) != 0) {
            if (!(names[nt] = malloc(strlen(pre) + strlen(src->name) + 1))) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            strcpy(names[nt], pre);
            strcat(names[nt], src->name);
            ts[nt].name = names[nt];
        }
        long mi = module_of(ad, src->name);
        if (mi >= 0) {
            const ftq_peft_module *pm = ftq_peft_module_at(ad, (size_t)mi);
            int64_t want0 = fifo ? pm->in : pm->out, want1 = fifo ? pm->out : pm->in;
            if (src->ndim != 2 || src->shape[0] != want0 || src->shape[1] != want1) {
                rc = ftq_set_error(FTQ_EFORMAT, "cannot merge '%s' into '%s': tensor '%s' is not [%lld, %lld]",
                                   adapter_dir, base_dir, src->name, (long long)want0, (long long)want1);
                break;
            }
            size_t cnt = (size_t)pm->out * (size_t)pm->in;
            float *w = bufs[nt] = malloc(sizeof(float) * cnt), *d = malloc(sizeof(float) * cnt);
            if (!w || !d) {
                free(d);
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory merging '%s'", src->name);
                break;
            }
            if ((rc = ftq_tensor_to_f32(src, w)) == FTQ_OK && (rc = ftq_peft_delta(ad, (size_t)mi, d)) == FTQ_OK) {
                const size_t O = (size_t)pm->out, I = (size_t)pm->in;
                for (size_t o = 0; o < O; o++)
                    for (size_t c = 0; c < I; c++)
                        w[fifo ? c * O + o : o * I + c] += d[o * I + c];
            }
            free(d);
            ts[nt].dtype = FTQ_DTYPE_F32;
            ts[nt].nbytes = cnt * sizeof(float);
            ts[nt].data = w;
            used[mi] = 1;
        }
        nt++;
    }
    for (size_t i = 0; rc == FTQ_OK && i < ftq_peft_module_count(ad); i++)
        if (!used[i])
            rc = ftq_set_error(FTQ_EFORMAT, "cannot merge '%s' into '%s': the base has no tensor '%s.weight'",
                               adapter_dir, base_dir, ftq_peft_module_at(ad, i)->module);
    for (size_t e = 0; rc == FTQ_OK && e < ftq_peft_extra_count(ad); e++) {
        const char *en;
        const ftq_tensor *t = ftq_peft_extra_at(ad, e, &en);
        ts[nt] = *t;
        ts[nt].name = (char *)en;
        nt++;
    }
    if (rc != FTQ_OK || (rc = ftq_outdir_begin(out_dir, 0, &tmp)) != FTQ_OK)
        goto done;
    char *w = ftq_path_join(tmp, "model.safetensors");
    static const char *const meta[] = {"format", "pt", NULL};
    rc = w ? ftq_st_write(w, ts, nt, meta) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    free(w);
    /* config.json: the adapter directory's (ftq writes the classifier's labels there) or the base's */
    char *acfg = ftq_path_join(adapter_dir, "config.json");
    int adapter_cfg = acfg && ftq_is_file(acfg);
    if (rc == FTQ_OK)
        rc = ftq_copy_model_files(base_dir, tmp, !adapter_cfg);
    if (rc == FTQ_OK && adapter_cfg) {
        char *dst = ftq_path_join(tmp, "config.json");
        rc = dst ? ftq_copy_file(acfg, dst) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(dst);
    }
    free(acfg);
    if (rc == FTQ_OK) {
        rc = ftq_outdir_commit(tmp, out_dir, 0);
        tmp = NULL;
    }
done:
    if (tmp)
        ftq_outdir_abort(tmp);
    if (bufs)
        for (size_t i = 0; i < cap; i++)
            free(bufs[i]);
    if (names)
        for (size_t i = 0; i < cap; i++)
            free(names[i]);
    free(bufs);
    free(names);
    free(ts);
    free(used);
    ftq_checkpoint_close(ck);
    ftq_peft_close(ad);
    return rc;
}
