/* ftq_eval.h - perplexity protocols and text generation on an ftq_model.
 *
 * Perplexity protocols (docs/perplexity.md gives the exact definitions):
 *   FTQ_PPL_LLAMACPP          llama.cpp's: stream = [BOS] + tokens (BOS only if add_bos),
 *                             non-overlapping chunks of n_ctx, each chunk's first token
 *                             replaced by BOS (if add_bos), positions n_ctx/2 .. n_ctx-2 scored.
 *   FTQ_PPL_FULL_WINDOW       tokens split into chunks of n_ctx-1 (n_ctx if no BOS); input =
 *                             [BOS] + chunk; every chunk token scored.
 *   FTQ_PPL_LLAMACPP_NO_LEADING_BOS  as FTQ_PPL_LLAMACPP, but the stream is the tokens
 *                             without a leading BOS (a common re-implementation choice;
 *                             chunk starts are still replaced by BOS).
 *   FTQ_PPL_STRIDE            Hugging Face's sliding window: stream = [BOS] + tokens if
 *                             add_bos; windows of n_ctx starting every `stride` tokens; each
 *                             window scores only the tokens not scored by the previous one.
 *
 *     ftq_ppl_params p = ftq_ppl_default_params();
 *     p.n_ctx = 128;
 *     ftq_ppl_result r;
 *     ftq_perplexity(model, tokens, n_tokens, &p, &r);   // r.ppl, r.ppl_stderr, ...
 */
#ifndef FTQ_EVAL_H
#define FTQ_EVAL_H

#include "ftq_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FTQ_PPL_LLAMACPP = 0,
    FTQ_PPL_FULL_WINDOW = 1,
    FTQ_PPL_STRIDE = 2,
    FTQ_PPL_LLAMACPP_NO_LEADING_BOS = 3, /* llama.cpp's, but the stream has no leading BOS */
} ftq_ppl_protocol;

/* Called after each chunk; return non-zero to stop (the result then covers the chunks
 * done and the call returns FTQ_EINTERRUPTED). */
typedef int (*ftq_progress_fn)(void *user, int done, int total, double running_ppl);

typedef struct {
    ftq_ppl_protocol protocol;
    int n_ctx;          /* window / chunk length in tokens (default 512) */
    int n_chunks;       /* 0 = all */
    int stride;         /* FTQ_PPL_STRIDE only */
    int add_bos;        /* 1: BOS as described above; 0: never */
    int bos_id;         /* the BOS id used when add_bos */
    ftq_progress_fn progress;
    void *progress_user;
    /* Optional reference model (e.g. the f32 original of a quantized model): on every scored
     * position the KL divergence KL(P_ref || P_model) and whether both argmaxes agree are
     * accumulated. Same vocabulary required. */
    const ftq_model *ref;
} ftq_ppl_params;

ftq_ppl_params ftq_ppl_default_params(void);

typedef struct {
    double ppl;          /* exp(mean nll) */
    double ppl_stderr;   /* nll_stderr * ppl, as llama.cpp prints */
    double nll;          /* mean negative log-likelihood, nats */
    double nll_stderr;   /* sqrt((mean(nll^2) - mean^2) / (N - 1)) */
    int64_t tokens_scored;
    int chunks;
    int n_ctx;
    int64_t tokens_evaluated; /* tokens run through the model */
    double seconds;
    double tokens_per_second; /* tokens_evaluated / seconds (model time, reference excluded) */
    /* with a reference model */
    double kl;            /* mean KL(P_ref || P_model) over the scored positions, nats */
    double kl_stderr;
    double top1_agree;    /* fraction of scored positions with the same argmax */
    double ref_ppl;       /* the reference model's perplexity on the same positions */
    double top1_stderr;   /* sqrt(a (1 - a) / (N - 1)), a = top1_agree (llama.cpp's "Same top p") */
    double kl_max;        /* the largest KL of one position */
} ftq_ppl_result;

/* The parameter checks ftq_perplexity makes first (context against the model's positions,
 * stride, BOS id, reference model), so a caller can refuse before doing any work. */
int ftq_perplexity_check(const ftq_model *m, const ftq_ppl_params *p);

/* The per-position measures of the reference comparison: KL(P || Q) in nats of the
 * softmaxes of two logit rows (double accumulation, log-sum-exp shifted, so large logits
 * are fine; clamped at 0), and the argmax of a row (the lowest index on ties). */
double ftq_logits_kl(const float *p_logits, const float *q_logits, int vocab);
int ftq_logits_argmax(const float *row, int vocab);

/* tokens: the whole text tokenized once, without BOS. */
int ftq_perplexity(const ftq_model *m, const int32_t *tokens, size_t n_tokens,
                   const ftq_ppl_params *p, ftq_ppl_result *r);

/* ---- sampling -------------------------------------------------------------------- */

typedef struct {
    float temperature; /* 0 = greedy (argmax, lowest id on ties) */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} ftq_sampler_params;

ftq_sampler_params ftq_sampler_default_params(void);

typedef struct ftq_sampler ftq_sampler;
int ftq_sampler_new(const ftq_sampler_params *p, int vocab_size, ftq_sampler **out);
void ftq_sampler_free(ftq_sampler *s);
/* Pick the next id from one row of logits (the row is not modified). Sampling draws from
 * softmax(logits / T) restricted to the top-k, then to the smallest prefix whose mass
 * reaches top_p, renormalized. */
int32_t ftq_sampler_sample(ftq_sampler *s, const float *logits);

#ifdef __cplusplus
}
#endif

#endif
