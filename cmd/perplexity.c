/* perplexity.c - `ftq perplexity`: perplexity of a model on a text file, llama.cpp's
 * protocol by default, Hugging Face's sliding window with --stride. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

static int on_progress(void *user, int done, int total, double ppl)
{
    char label[64];
    (void)user;
    snprintf(label, sizeof label, "ppl %.4f", ppl);
    progress_bar(done, total, label);
    return 0;
}

static const char *protocol_name(ftq_ppl_protocol p)
{
    switch (p) {
    case FTQ_PPL_LLAMACPP: return "llamacpp";
    case FTQ_PPL_LLAMACPP_NO_LEADING_BOS: return "llamacpp-no-leading-bos";
    case FTQ_PPL_FULL_WINDOW: return "full-window";
    case FTQ_PPL_STRIDE: return "stride";
    }
    return "?";
}

int cmd_perplexity(int argc, char **argv)
{
    const char *adapter = NULL;
    int keep_quant = 0;
    const char *precision = "fp32";
    const char *model = default_model_dir(), *file = NULL, *proto = "llamacpp", *ref_dir = NULL;
    int ctx = 512, chunks = 0, stride = 0, json = 0, no_bos = 0, parse_special = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "model directory (config.json + safetensors + tokenizer)", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", ADAPTER_HELP, 0, -1},
        {"file", 'f', OPT_STR, &file, "FILE", "text file, tokenized once as a whole", 0, -1},
        {"ctx", 'c', OPT_INT, &ctx, "CTX", "tokens per window", 2, 1 << 20},
        {"chunks", 0, OPT_INT, &chunks, "N", "evaluate only the first N windows (0 = all)", 0, 1 << 30},
        {"stride", 0, OPT_INT, &stride, "S", "Hugging Face sliding window with stride S (implies --protocol stride)", 1, 1 << 20},
        {"protocol", 0, OPT_STR, &proto, "NAME", "llamacpp | llamacpp-no-leading-bos | full-window | stride", 0, -1},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "never insert BOS (default: as the tokenizer does)", 0, -1},
        {"parse-special", 0, OPT_FLAG, &parse_special, NULL, PARSE_SPECIAL_HELP, 0, -1},
        {"ref", 0, OPT_STR, &ref_dir, "MODEL", "also report KL divergence and top-1 agreement against this model "
         "(e.g. the f32 original; both run chunk by chunk in this process)", 0, -1},
        {"ref-model", 0, OPT_STR, &ref_dir, "MODEL", "the same as --ref", 0, -1},
        {"precision", 0, OPT_STR, &precision, "P", PRECISION_HELP, 0, -1},
        {"keep-quant", 0, OPT_FLAG, &keep_quant, NULL, "GGUF: run Q8_0 / Q4_0 / Q4_1 matrices on the int8 / int4 kernels "
         "(other quantized types via Q8_0) instead of expanding them to f32", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "perplexity", "[-m DIR] -f FILE [-c CTX] [--chunks N] [--stride S] [--ref MODEL] [--json]",
        "Measure perplexity on a text file.",
        "Protocols (docs/perplexity.md):\n"
        "  llamacpp     llama.cpp's: stream = [BOS] + tokens (BOS where the tokenizer adds one:\n"
        "               Llama yes, GPT-2 no); consecutive chunks of CTX tokens, each chunk's first\n"
        "               token replaced by BOS; positions CTX/2 .. CTX-2 of each chunk scored.\n"
        "  llamacpp-no-leading-bos  the same without the leading BOS of the stream.\n"
        "  full-window  chunks of CTX-1 tokens, each evaluated as [BOS] + chunk; every token scored.\n"
        "  stride       Hugging Face's sliding window: windows of CTX tokens every S tokens; each\n"
        "               window scores the tokens the previous one did not.\n"
        "Output: PPL = exp(mean NLL) +/- its standard error (as llama.cpp prints it).",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "file", file))
        return 2;
    ftq_ppl_params p = ftq_ppl_default_params();
    if (strcmp(proto, "llamacpp") == 0)
        p.protocol = FTQ_PPL_LLAMACPP;
    else if (strcmp(proto, "llamacpp-no-leading-bos") == 0)
        p.protocol = FTQ_PPL_LLAMACPP_NO_LEADING_BOS;
    else if (strcmp(proto, "full-window") == 0)
        p.protocol = FTQ_PPL_FULL_WINDOW;
    else if (strcmp(proto, "stride") == 0)
        p.protocol = FTQ_PPL_STRIDE;
    else
        return cmd_fail(spec.name, "unknown --protocol '%s' (expected llamacpp, llamacpp-no-leading-bos, "
                                   "full-window or stride)", proto) + 1;
    if (stride > 0)
        p.protocol = FTQ_PPL_STRIDE;
    if (p.protocol == FTQ_PPL_STRIDE && stride == 0)
        stride = ctx / 2;
    p.n_ctx = ctx;
    p.n_chunks = chunks;
    p.stride = stride;

    ftq_model *m = NULL, *ref = NULL;
    ftq_tokenizer *tok = NULL;
    unsigned load_flags = keep_quant ? FTQ_LOAD_KEEP_QUANT : 0;
    if ((r = cmd_precision_flags(spec.name, precision, adapter, &load_flags)) != 0)
        return r;
    if (cmd_load_ex(spec.name, model, load_flags, &m, &tok))
        return 1;
    if (cmd_apply_adapter(spec.name, adapter, &m)) {
        ftq_tokenizer_free(tok);
        return 1;
    }
    if (ref_dir && ftq_model_load(ref_dir, &ref) != FTQ_OK) {
        int rc = cmd_fail(spec.name, "--ref-model: %s", ftq_last_error());
        ftq_tokenizer_free(tok);
        ftq_model_free(m);
        return rc;
    }
    p.ref = ref;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (ftq_read_file(file, &text, &len) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    double t0 = ftq_time_sec();
    ftq_tokenizer_set_parse_special(tok, parse_special);
    if (ftq_tokenizer_encode(tok, text, len, 0, &ids, &n) != FTQ_OK) {
        rc = cmd_fail(spec.name, "'%s': %s", file, ftq_last_error());
        goto out;
    }
    double t_tok = ftq_time_sec() - t0;
    p.add_bos = !no_bos && ftq_tokenizer_adds_bos(tok) && ftq_tokenizer_bos(tok) >= 0;
    p.bos_id = p.add_bos ? ftq_tokenizer_bos(tok) : 0;
    if (ftq_perplexity_check(m, &p) != FTQ_OK) { /* refuse before any output */
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    if (!json) {
        p.progress = on_progress;
        fprintf(stderr, "%s: %s tokens in %.2f s; protocol %s, ctx %d%s\n", file, fmt_count((long long)n),
                t_tok, protocol_name(p.protocol), ctx, p.add_bos ? ", BOS" : "");
    }
    ftq_ppl_result res;
    int st = ftq_perplexity(m, ids, n, &p, &res);
    progress_done();
    if (st != FTQ_OK) {
        rc = cmd_fail(spec.name, "'%s': %s", file, ftq_last_error());
        goto out;
    }
    if (json) {
        printf("{\"ppl\": %.6f, \"ppl_stderr\": %.6f, \"nll\": %.8f, \"nll_stderr\": %.8f, "
               "\"tokens_scored\": %lld, \"chunks\": %d, \"ctx\": %d, \"protocol\": \"%s\", "
               "\"stride\": %d, \"bos\": %s, \"file_tokens\": %zu, \"tokens_evaluated\": %lld, "
               "\"seconds\": %.3f, \"tokens_per_second\": %.1f, \"threads\": %d, ",
               res.ppl, res.ppl_stderr, res.nll, res.nll_stderr, (long long)res.tokens_scored,
               res.chunks, res.n_ctx, protocol_name(p.protocol),
               p.protocol == FTQ_PPL_STRIDE ? stride : 0, p.add_bos ? "true" : "false", n,
               (long long)res.tokens_evaluated, res.seconds, res.tokens_per_second, ftq_get_threads());
        if (ref)
            printf("\"kl\": %.8f, \"kl_stderr\": %.8f, \"kl_max\": %.6f, \"top1_agree\": %.6f, "
                   "\"top1_stderr\": %.6f, \"ref_ppl\": %.6f, ", res.kl, res.kl_stderr, res.kl_max,
                   res.top1_agree, res.top1_stderr, res.ref_ppl);
        printf("\"model\": ");
        json_print_string(stdout, model);
        printf(", \"file\": ");
        json_print_string(stdout, file);
        printf("}\n");
    } else {
        printf("chunks %d, tokens scored %s, mean nll %.6f +/- %.6f\n", res.chunks,
               fmt_count(res.tokens_scored), res.nll, res.nll_stderr);
        printf("%s tokens/s (%s tokens in %.2f s, %d threads)\n", fmt_count((long long)llround(res.tokens_per_second)),
               fmt_count(res.tokens_evaluated), res.seconds, ftq_get_threads());
        if (ref)
            printf("vs reference: mean KLD %.6f +/- %.6f nats (max %.4f), top-1 agreement %.3f +/- %.3f %%, "
                   "reference PPL %.4f\n", res.kl, res.kl_stderr, res.kl_max, 100 * res.top1_agree,
                   100 * res.top1_stderr, res.ref_ppl);
        printf("PPL = %.4f +/- %.4f\n", res.ppl, res.ppl_stderr);
    }
out:
    free(ids);
    free(text);
    ftq_tokenizer_free(tok);
    ftq_model_free(ref);
    ftq_model_free(m);
    return rc;
}
