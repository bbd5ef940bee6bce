/* metrics.c - the pure arithmetic of training: HF learning-rate schedules, deterministic
 * global-norm clipping, Fisher-Yates shuffling and classification metrics (accuracy,
 * per-label precision / recall / F1, macro-F1, confusion matrix). No model, no I/O. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"

/* ---- schedules (transformers/optimization.py, lr_lambda of each get_*_schedule) ---- */

double ftq_schedule_factor(ftq_schedule s, int64_t step, int64_t warmup, int64_t total)
{
    if (step < warmup)
        return (double)step / (double)(warmup > 1 ? warmup : 1);
    int64_t span = total - warmup > 1 ? total - warmup : 1;
    switch (s) {
    case FTQ_SCHEDULE_CONSTANT:
        return 1.0;
    case FTQ_SCHEDULE_LINEAR: {
        double f = (double)(total - step) / (double)span;
        return f > 0.0 ? f : 0.0;
    }
    case FTQ_SCHEDULE_COSINE: {
        /* num_cycles = 0.5: cos(pi * num_cycles * 2 * progress) */
        double progress = (double)(step - warmup) / (double)span;
        double f = 0.5 * (1.0 + cos(3.14159265358979323846 * 0.5 * 2.0 * progress));
        return f > 0.0 ? f : 0.0;
    }
    }
    return 1.0;
}

int64_t ftq_schedule_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total)
{
    if (warmup_steps > 0)
        return warmup_steps;
    return warmup_ratio > 0 ? (int64_t)ceil((double)total * warmup_ratio) : 0;
}

static const char *const schedule_names[] = {"constant", "linear", "cosine"};

const char *ftq_schedule_name(ftq_schedule s)
{
    return (unsigned)s < 3 ? schedule_names[s] : "?";
}

int ftq_schedule_from_name(const char *name, ftq_schedule *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, schedule_names[i]) == 0) {
            *out = (ftq_schedule)i;
            return FTQ_OK;
        }
    return ftq_set_error(FTQ_EINVAL, "unknown schedule '%s' (expected constant, linear or cosine)", name);
}

/* ---- clipping ---- */

#define NORM_CHUNK ((size_t)1 << 16)

double ftq_grad_norm(const float *g, size_t n)
{
    size_t nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double stack[64], *part = nchunks <= 64 ? stack : malloc(sizeof(double) * nchunks);
    double total = 0;
    if (!part) { /* still deterministic, just serial */
        for (size_t i = 0; i < n; i++)
            total += (double)g[i] * (double)g[i];
        return sqrt(total);
    }
    /* Fixed chunks, partial sums combined in chunk order: identical for any thread count. */
#pragma omp parallel for schedule(static) if (nchunks > 4)
    for (long c = 0; c < (long)nchunks; c++) {
        size_t lo = (size_t)c * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++)
            s += (double)g[i] * (double)g[i];
        part[c] = s;
    }
    for (size_t c = 0; c < nchunks; c++)
        total += part[c];
    if (part != stack)
        free(part);
    return sqrt(total);
}

double ftq_grad_clip(float *g, size_t n, double max_norm)
{
    double norm = ftq_grad_norm(g, n);
    if (max_norm > 0 && isfinite(norm)) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) {
            float c = (float)coef; /* torch multiplies the fp32 grads by an fp32 coefficient */
            for (size_t i = 0; i < n; i++)
                g[i] *= c;
        }
    }
    return norm;
}

/* ---- shuffling ---- */

static uint64_t uniform_below(ftq_rng *r, uint64_t bound)
{
    /* rejection sampling: reject the top partial range so every residue is equally likely */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do
        x = ftq_rng_u64(r);
    while (x >= limit);
    return x % bound;
}

void ftq_shuffle(uint32_t *perm, size_t n, ftq_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)uniform_below(rng, (uint64_t)i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* ---- classification metrics ---- */

int ftq_argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best] || (v[best] != v[best] && v[i] == v[i]))
            best = i;
    return best;
}

void ftq_cls_metrics_free(ftq_cls_metrics *m)
{
    if (!m)
        return;
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->support);
    memset(m, 0, sizeof *m);
}

int ftq_cls_metrics_compute(const int32_t *gold, const int32_t *pred, size_t n, int num_labels,
                            ftq_cls_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (num_labels < 1)
        return ftq_set_error(FTQ_EINVAL, "metrics need at least one label, got %d", num_labels);
    size_t L = (size_t)num_labels;
    out->num_labels = num_labels;
    /* per-label counts in O(L); the L x L matrix only while it is small */
    if (L <= FTQ_CONFUSION_MAX && !(out->confusion = calloc(L * L, sizeof(int64_t)))) {
        ftq_cls_metrics_free(out);
        return ftq_set_error(FTQ_ENOMEM, "out of memory for metrics");
    }
    int64_t *cnt = calloc(3 * L, sizeof(int64_t)); /* tp, gold count, predicted count */
    out->precision = calloc(L, sizeof(double));
    out->recall = calloc(L, sizeof(double));
    out->f1 = calloc(L, sizeof(double));
    out->support = calloc(L, sizeof(int64_t));
    if (!cnt || !out->precision || !out->recall || !out->f1 || !out->support) {
        free(cnt);
        ftq_cls_metrics_free(out);
        return ftq_set_error(FTQ_ENOMEM, "out of memory for metrics");
    }
    int64_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        if (gold[i] < 0)
            continue;
        if (gold[i] >= num_labels || pred[i] < 0 || pred[i] >= num_labels) {
            int bad = gold[i] >= num_labels ? gold[i] : pred[i];
            free(cnt);
            ftq_cls_metrics_free(out);
            return ftq_set_error(FTQ_EINVAL, "label %d of example %zu is outside [0, %d)", bad, i, num_labels);
        }
        if (out->confusion)
            out->confusion[(size_t)gold[i] * L + (size_t)pred[i]]++;
        cnt[gold[i]] += gold[i] == pred[i];
        cnt[L + (size_t)gold[i]]++;
        cnt[2 * L + (size_t)pred[i]]++;
        correct += gold[i] == pred[i];
        out->n++;
    }
    out->accuracy = out->n ? (double)correct / (double)out->n : 0.0;
    double f1_sum = 0;
    int present = 0;
    for (size_t k = 0; k < L; k++) {
        int64_t tp = cnt[k], row = cnt[L + k] /* gold k */, col = cnt[2 * L + k] /* predicted k */;
        out->support[k] = row;
        out->precision[k] = col ? (double)tp / (double)col : 0.0;
        out->recall[k] = row ? (double)tp / (double)row : 0.0;
        /* 2 tp / (2 tp + fp + fn): sklearn's form, 0 when the label never occurs */
        out->f1[k] = row + col ? 2.0 * (double)tp / (double)(row + col) : 0.0;
        if (row + col) {
            f1_sum += out->f1[k];
            present++;
        }
    }
    out->macro_f1 = present ? f1_sum / present : 0.0;
    free(cnt);
    return FTQ_OK;
}
