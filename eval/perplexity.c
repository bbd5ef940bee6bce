/* perplexity.c - the perplexity protocols of ftq_eval.h (llama.cpp's, full window, and
 * Hugging Face's sliding window). NLL is accumulated in double; a window is always
 * evaluated from position 0 of a fresh KV cache. */
#include "include/ftq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ftq_ppl_params ftq_ppl_default_params(void)
{
    ftq_ppl_params p;
    memset(&p, 0, sizeof p);
    p.protocol = FTQ_PPL_LLAMACPP;
    p.n_ctx = 512;
    p.add_bos = 1;
    p.bos_id = 1;
    return p;
}

typedef struct {
    double sum, sum2;
    int64_t n;
} nll_acc;

/* Accumulators of the reference comparison. */
typedef struct {
    nll_acc kl, ref_nll;
    int64_t agree;
    double kl_max;
} ref_acc;

int ftq_logits_argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* log-sum-exp of a row, in double */
static double row_lse(const float *row, int vocab)
{
    float mx = row[0];
    for (int i = 1; i < vocab; i++)
        if (row[i] > mx)
            mx = row[i];
    double s = 0.0;
    for (int i = 0; i < vocab; i++)
        s += exp((double)row[i] - mx);
    return log(s) + mx;
}

/* KL(P || Q) of two logit rows: sum p (log p - log q). */
double ftq_logits_kl(const float *p_logits, const float *q_logits, int vocab)
{
    double lp = row_lse(p_logits, vocab), lq = row_lse(q_logits, vocab), kl = 0.0;
    for (int i = 0; i < vocab; i++) {
        double a = p_logits[i] - lp;
        kl += exp(a) * (a - (q_logits[i] - lq));
    }
    return kl > 0.0 ? kl : 0.0; /* rounding can make an identical pair -1e-17 */
}

/* -log softmax(row)[target] in double */
static double token_nll(const float *row, int vocab, int target) { return row_lse(row, vocab) - row[target]; }

static void acc_add(nll_acc *a, double v)
{
    a->sum += v;
    a->sum2 += v * v;
    a->n++;
}

/* One window: evaluate ids[0..len) and score positions [j0, j1] (inclusive) of the
 * window, position j predicting ids[j + 1]. */
static int score_window(ftq_session *s, const int32_t *ids, int len, int j0, int j1, int vocab,
                        float *logits, nll_acc *acc, ftq_session *rs, float *ref_logits, ref_acc *racc,
                        double *model_seconds)
{
    ftq_session_reset(s);
    double t0 = ftq_time_sec();
    int rc = ftq_session_eval(s, ids, len, logits, 1);
    *model_seconds += ftq_time_sec() - t0;
    if (rc != FTQ_OK)
        return rc;
    if (rs) {
        ftq_session_reset(rs);
        rc = ftq_session_eval(rs, ids, len, ref_logits, 1);
        if (rc != FTQ_OK)
            return ftq_wrap_error(rc, "reference model");
    }
    for (int j = j0; j <= j1; j++) {
        const float *row = logits + (size_t)j * vocab;
        double v = token_nll(row, vocab, ids[j + 1]);
        if (!isfinite(v))
            return ftq_set_error(FTQ_ENUMERIC, "perplexity: non-finite log-likelihood at window "
                                               "position %d", j);
        acc_add(acc, v);
        if (rs) {
            const float *rrow = ref_logits + (size_t)j * vocab;
            double kl = ftq_logits_kl(rrow, row, vocab);
            acc_add(&racc->kl, kl);
            racc->kl_max = kl > racc->kl_max ? kl : racc->kl_max;
            acc_add(&racc->ref_nll, token_nll(rrow, vocab, ids[j + 1]));
            racc->agree += ftq_logits_argmax(rrow, vocab) == ftq_logits_argmax(row, vocab);
        }
    }
    return FTQ_OK;
}

int ftq_perplexity_check(const ftq_model *m, const ftq_ppl_params *p)
{
    const ftq_model_config *cfg = ftq_model_get_config(m);
    int min_ctx = p->protocol == FTQ_PPL_LLAMACPP || p->protocol == FTQ_PPL_LLAMACPP_NO_LEADING_BOS ? 4 : 2;
    if (p->n_ctx < min_ctx)
        return ftq_set_error(FTQ_EINVAL, "perplexity: context %d is too small (at least %d)", p->n_ctx,
                             min_ctx);
    if (cfg->max_position > 0 && p->n_ctx > cfg->max_position)
        return ftq_set_error(FTQ_EINVAL,
                             "perplexity: context %d exceeds the model's %d positions", p->n_ctx,
                             cfg->max_position);
    if (p->protocol == FTQ_PPL_STRIDE && (p->stride < 1 || p->stride > p->n_ctx))
        return ftq_set_error(FTQ_EINVAL, "perplexity: stride %d must be in [1, %d]", p->stride,
                             p->n_ctx);
    if (p->add_bos && (p->bos_id < 0 || p->bos_id >= cfg->vocab_size))
        return ftq_set_error(FTQ_EINVAL, "perplexity: BOS id %d outside the vocabulary", p->bos_id);
    if (p->n_chunks < 0)
        return ftq_set_error(FTQ_EINVAL, "perplexity: negative chunk count");
    if (p->ref && ftq_model_get_config(p->ref)->vocab_size != cfg->vocab_size)
        return ftq_set_error(FTQ_EINVAL, "perplexity: the reference model's vocabulary (%d) differs from the "
                                         "model's (%d)", ftq_model_get_config(p->ref)->vocab_size, cfg->vocab_size);
    if (p->ref && ftq_model_get_config(p->ref)->max_position > 0 &&
        p->n_ctx > ftq_model_get_config(p->ref)->max_position)
        return ftq_set_error(FTQ_EINVAL, "perplexity: context %d exceeds the reference model's %d positions",
                             p->n_ctx, ftq_model_get_config(p->ref)->max_position);
    return FTQ_OK;
}

int ftq_perplexity(const ftq_model *m, const int32_t *tokens, size_t n_tokens,
                   const ftq_ppl_params *p, ftq_ppl_result *r)
{
    memset(r, 0, sizeof *r);
    int rc = ftq_perplexity_check(m, p);
    if (rc != FTQ_OK)
        return rc;
    const int N = p->n_ctx;
    const int vocab = ftq_model_get_config(m)->vocab_size;
    const int bos = p->add_bos ? 1 : 0;
    const int llamacpp = p->protocol == FTQ_PPL_LLAMACPP || p->protocol == FTQ_PPL_LLAMACPP_NO_LEADING_BOS;
    /* tokens of the stream that come before the text: the leading BOS */
    const int lead = p->protocol == FTQ_PPL_LLAMACPP_NO_LEADING_BOS ? 0 : bos;

    /* stream = [BOS] + tokens for the llama.cpp and sliding protocols */
    size_t stream_len = n_tokens + (size_t)lead;
    int32_t *stream = malloc(sizeof(int32_t) * (stream_len + 1));
    int32_t *win = malloc(sizeof(int32_t) * (size_t)N);
    float *logits = malloc(sizeof(float) * (size_t)N * (size_t)vocab);
    float *ref_logits = p->ref ? malloc(sizeof(float) * (size_t)N * (size_t)vocab) : NULL;
    ftq_session *s = NULL, *rs = NULL;
    ref_acc racc;
    memset(&racc, 0, sizeof racc);
    double model_seconds = 0.0;
    if (!stream || !win || !logits || (p->ref && !ref_logits)) {
        rc = ftq_set_error(FTQ_ENOMEM, "perplexity: out of memory");
        goto done;
    }
    if (lead)
        stream[0] = p->bos_id;
    memcpy(stream + lead, tokens, sizeof(int32_t) * n_tokens);
    rc = ftq_session_new(m, N, &s);
    if (rc == FTQ_OK && p->ref)
        rc = ftq_session_new(p->ref, N, &rs);
    if (rc != FTQ_OK)
        goto done;

    /* plan the windows */
    int64_t n_win;
    if (llamacpp)
        n_win = (int64_t)(stream_len / (size_t)N);
    else if (p->protocol == FTQ_PPL_FULL_WINDOW)
        n_win = (int64_t)(n_tokens / (size_t)(N - bos));
    else
        n_win = stream_len <= (size_t)N ? 1 : (int64_t)((stream_len - (size_t)N + p->stride - 1) / (size_t)p->stride) + 1;
    if (p->n_chunks > 0 && n_win > p->n_chunks)
        n_win = p->n_chunks;
    if (n_win < 1 || stream_len < 2) {
        rc = ftq_set_error(FTQ_EINVAL,
                           "perplexity: %zu tokens are too few for one window of %d tokens",
                           n_tokens, N);
        goto done;
    }

    nll_acc acc = {0, 0, 0};
    double t0 = ftq_time_sec();
    size_t prev_end = 0;
    for (int64_t c = 0; c < n_win; c++) {
        int len = N, j0, j1;
        if (llamacpp) {
            memcpy(win, stream + (size_t)c * N, sizeof(int32_t) * (size_t)N);
            if (bos)
                win[0] = p->bos_id;
            j0 = N / 2;
            j1 = N - 2;
        } else if (p->protocol == FTQ_PPL_FULL_WINDOW) {
            int L = N - bos;
            if (bos)
                win[0] = p->bos_id;
            memcpy(win + bos, tokens + (size_t)c * L, sizeof(int32_t) * (size_t)L);
            j0 = 0;
            j1 = N - 2;
        } else {
            size_t begin = (size_t)c * (size_t)p->stride;
            size_t end = begin + (size_t)N < stream_len ? begin + (size_t)N : stream_len;
            len = (int)(end - begin);
            int trg = (int)(end - prev_end);
            memcpy(win, stream + begin, sizeof(int32_t) * (size_t)len);
            /* window index i is a target iff i >= len - trg; it is predicted by i - 1 */
            int first_target = len - trg < 1 ? 1 : len - trg;
            j0 = first_target - 1;
            j1 = len - 2;
            prev_end = end;
        }
        rc = score_window(s, win, len, j0, j1, vocab, logits, &acc, rs, ref_logits, &racc, &model_seconds);
        if (rc != FTQ_OK)
            goto done;
        r->tokens_evaluated += len;
        r->chunks = (int)(c + 1);
        double mean = acc.n ? acc.sum / (double)acc.n : 0.0;
        if (p->progress && p->progress(p->progress_user, (int)(c + 1), (int)n_win, exp(mean))) {
            rc = ftq_set_error(FTQ_EINTERRUPTED, "perplexity: stopped after %d of %lld windows",
                               (int)(c + 1), (long long)n_win);
            break;
        }
        if (p->protocol == FTQ_PPL_STRIDE && prev_end == stream_len)
            break;
    }
    r->seconds = p->ref ? model_seconds : ftq_time_sec() - t0;
    r->n_ctx = N;
    r->tokens_scored = acc.n;
    if (acc.n > 0) {
        double mean = acc.sum / (double)acc.n;
        double var = acc.sum2 / (double)acc.n - mean * mean;
        r->nll = mean;
        r->ppl = exp(mean);
        r->nll_stderr = acc.n > 1 && var > 0 ? sqrt(var / (double)(acc.n - 1)) : 0.0;
        r->ppl_stderr = r->nll_stderr * r->ppl;
    }
    r->tokens_per_second = r->seconds > 0 ? (double)r->tokens_evaluated / r->seconds : 0.0;
    if (p->ref && racc.kl.n > 0) {
        double n = (double)racc.kl.n, mean = racc.kl.sum / n, var = racc.kl.sum2 / n - mean * mean;
        r->kl = mean;
        r->kl_stderr = n > 1 && var > 0 ? sqrt(var / (n - 1)) : 0.0;
        r->top1_agree = (double)racc.agree / n;
        r->top1_stderr = n > 1 ? sqrt(r->top1_agree * (1 - r->top1_agree) / (n - 1)) : 0.0;
        r->kl_max = racc.kl_max;
        r->ref_ppl = exp(racc.ref_nll.sum / n);
    }
done:
    ftq_session_free(rs);
    free(ref_logits);
    ftq_session_free(s);
    free(logits);
    free(win);
    free(stream);
    return rc;
}
