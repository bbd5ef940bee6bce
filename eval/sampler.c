/* sampler.c - next-token selection: greedy, or seeded sampling from softmax(logits / T)
 * restricted to top-k and top-p. Deterministic for a seed: candidates are visited in a
 * fixed order (descending probability, ties by id). */
#include "include/ftq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float logit;
    int32_t id;
} cand;

struct ftq_sampler {
    ftq_sampler_params p;
    int vocab;
    ftq_rng rng;
    cand *c;
    double *prob;
};

ftq_sampler_params ftq_sampler_default_params(void)
{
    ftq_sampler_params p = {0.8f, 40, 0.95f, 42};
    return p;
}

int ftq_sampler_new(const ftq_sampler_params *p, int vocab_size, ftq_sampler **out)
{
    *out = NULL;
    if (vocab_size < 1)
        return ftq_set_error(FTQ_EINVAL, "sampler: vocabulary size %d", vocab_size);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ftq_set_error(FTQ_EINVAL, "sampler: temperature must be >= 0, got %g", p->temperature);
    if (p->top_k < 0)
        return ftq_set_error(FTQ_EINVAL, "sampler: top-k must be >= 0, got %d", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ftq_set_error(FTQ_EINVAL, "sampler: top-p must be in (0, 1], got %g", p->top_p);
    ftq_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return ftq_set_error(FTQ_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->vocab = vocab_size;
    s->c = malloc(sizeof(cand) * (size_t)vocab_size);
    s->prob = malloc(sizeof(double) * (size_t)vocab_size);
    if (!s->c || !s->prob) {
        ftq_sampler_free(s);
        return ftq_set_error(FTQ_ENOMEM, "sampler: out of memory");
    }
    ftq_rng_seed(&s->rng, p->seed);
    *out = s;
    return FTQ_OK;
}

void ftq_sampler_free(ftq_sampler *s)
{
    if (!s)
        return;
    free(s->c);
    free(s->prob);
    free(s);
}

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* a ranks before b: higher logit, then lower id */
static int before(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *a, const void *b) { return before(a, b) ? -1 : 1; }

static void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Keep the k best candidates of x in c[0..k), sorted best first. A bounded min-heap
 * (worst on top) keeps this O(V log k). */
static void top_k_select(const float *x, int n, int k, cand *c)
{
    int size = 0;
    for (int i = 0; i < n; i++) {
        cand v = {x[i], i};
        if (size < k) {
            int j = size++;
            c[j] = v;
            while (j > 0 && before(&c[(j - 1) / 2], &c[j])) {
                swap_cand(&c[j], &c[(j - 1) / 2]);
                j = (j - 1) / 2;
            }
        } else if (before(&v, &c[0])) {
            c[0] = v;
            int j = 0;
            for (;;) {
                int l = 2 * j + 1, r = l + 1, m = j;
                if (l < size && before(&c[m], &c[l]))
                    m = l;
                if (r < size && before(&c[m], &c[r]))
                    m = r;
                if (m == j)
                    break;
                swap_cand(&c[j], &c[m]);
                j = m;
            }
        }
    }
    qsort(c, (size_t)size, sizeof(cand), cmp_cand);
}

int32_t ftq_sampler_sample(ftq_sampler *s, const float *logits)
{
    const int V = s->vocab;
    if (s->p.temperature == 0.0f)
        return argmax(logits, V);
    int k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
    if (k < V) {
        top_k_select(logits, V, k, s->c);
    } else {
        for (int i = 0; i < V; i++) {
            s->c[i].logit = logits[i];
            s->c[i].id = i;
        }
        if (s->p.top_p < 1.0f)
            qsort(s->c, (size_t)V, sizeof(cand), cmp_cand);
    }
    /* softmax(logits / T) over the candidates */
    float mx = s->c[0].logit;
    for (int i = 1; i < k; i++)
        if (s->c[i].logit > mx)
            mx = s->c[i].logit;
    double inv_t = 1.0 / (double)s->p.temperature, total = 0.0;
    for (int i = 0; i < k; i++) {
        s->prob[i] = exp(((double)s->c[i].logit - mx) * inv_t);
        total += s->prob[i];
    }
    /* top-p: the smallest prefix (best first) whose mass reaches top_p */
    int n = k;
    if (s->p.top_p < 1.0f) {
        double cum = 0.0, target = (double)s->p.top_p * total;
        for (int i = 0; i < k; i++) {
            cum += s->prob[i];
            if (cum >= target) {
                n = i + 1;
                break;
            }
        }
        total = cum;
    }
    double u = (double)(ftq_rng_u64(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->prob[i];
        if (u < cum)
            return s->c[i].id;
    }
    return s->c[n - 1].id;
}
