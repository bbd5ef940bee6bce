/* generate.c - `ftq generate`: continue a prompt token by token with the KV cache.
 * Text is streamed to stdout as it is produced; bytes of an incomplete UTF-8 character
 * are held back until the character is complete. */
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

/* Length of the prefix of s that ends on a complete character (no trailing U+FFFD
 * that a later byte token could still complete). */
static size_t stable_prefix(const char *s, size_t len)
{
    while (len >= 3 && (unsigned char)s[len - 3] == 0xEF && (unsigned char)s[len - 2] == 0xBF &&
           (unsigned char)s[len - 1] == 0xBD)
        len -= 3;
    return len;
}

int cmd_generate(int argc, char **argv)
{
    const char *adapter = NULL;
    const char *model = default_model_dir(), *prompt = NULL;
    int n_new = 128, top_k = 40, json = 0, no_bos = 0, ignore_eos = 0, parse_special = 0;
    double temperature = 0.8, top_p = 0.95;
    uint64_t seed = 42;
    int keep_quant = 0;
    const char *precision = "fp32";
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "model directory", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", ADAPTER_HELP, 0, -1},
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "prompt text", 0, -1},
        {"n-predict", 'n', OPT_INT, &n_new, "N", "tokens to generate (stops early at EOS)", 0, 1 << 24},
        {"temperature", 0, OPT_FLOAT, &temperature, "T", "sampling temperature; 0 = greedy", 0, 100},
        {"top-k", 0, OPT_INT, &top_k, "K", "sample among the K most likely tokens (0 = all)", 0, 1 << 30},
        {"top-p", 0, OPT_FLOAT, &top_p, "P", "nucleus: smallest set with probability >= P (1 = off)", 1e-9, 1},
        {"seed", 0, OPT_U64, &seed, "S", "random seed (same seed, same output)", 0, -1},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "do not prepend BOS to the prompt", 0, -1},
        {"parse-special", 0, OPT_FLAG, &parse_special, NULL, PARSE_SPECIAL_HELP, 0, -1},
        {"ignore-eos", 0, OPT_FLAG, &ignore_eos, NULL, "keep going after EOS", 0, -1},
        {"precision", 0, OPT_STR, &precision, "P", PRECISION_HELP, 0, -1},
        {"keep-quant", 0, OPT_FLAG, &keep_quant, NULL, "GGUF: run Q8_0 / Q4_0 / Q4_1 matrices on the int8 / int4 kernels "
         "(other quantized types via Q8_0) instead of expanding them to f32", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object (text, ids, tokens_per_second)", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "generate", "[-m DIR] -p PROMPT [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--json]",
        "Generate a continuation of PROMPT. Sampling draws from softmax(logits / T) (the renormalized\n"
        "p^(1/T)), restricted to the top-k tokens and then to the top-p nucleus; it is reproducible\n"
        "for a given seed and thread count. T = 0 is greedy decoding.",
        NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "prompt", prompt))
        return 2;
    ftq_model *m = NULL;
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
    const ftq_model_config *cfg = ftq_model_get_config(m);
    int32_t *ids = NULL, *all = NULL;
    size_t n_prompt = 0;
    float *logits = NULL;
    ftq_session *s = NULL;
    ftq_sampler *smp = NULL;
    char *text = NULL;
    int rc = 0;
    ftq_tokenizer_set_parse_special(tok, parse_special);
    if (ftq_tokenizer_encode(tok, prompt, strlen(prompt), !no_bos, &ids, &n_prompt) != FTQ_OK) {
        rc = cmd_fail(spec.name, "prompt: %s", ftq_last_error());
        goto out;
    }
    if (n_prompt == 0) {
        rc = cmd_fail(spec.name, "the prompt is empty and the tokenizer adds no BOS");
        goto out;
    }
    int n_ctx = cfg->max_position > 0 ? cfg->max_position : (int)n_prompt + n_new;
    if ((int)n_prompt >= n_ctx) {
        rc = cmd_fail(spec.name, "the prompt has %zu tokens; the model has only %d positions", n_prompt, n_ctx);
        goto out;
    }
    if ((int)n_prompt + n_new > n_ctx)
        n_new = n_ctx - (int)n_prompt;
    ftq_sampler_params sp = {(float)temperature, top_k, (float)top_p, seed};
    if (ftq_sampler_new(&sp, cfg->vocab_size, &smp) != FTQ_OK ||
        ftq_session_new(m, (int)n_prompt + n_new, &s) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    logits = malloc(sizeof(float) * (size_t)cfg->vocab_size);
    all = malloc(sizeof(int32_t) * (n_prompt + (size_t)n_new + 1));
    if (!logits || !all) {
        rc = cmd_fail(spec.name, "out of memory");
        goto out;
    }
    memcpy(all, ids, sizeof(int32_t) * n_prompt);
    size_t n_all = n_prompt, printed = 0;
    double t0 = ftq_time_sec();
    if (ftq_session_eval(s, ids, (int)n_prompt, logits, 0) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    double t_prompt = ftq_time_sec() - t0, t1 = ftq_time_sec();
    const char *stop = "length";
    int eos = ftq_tokenizer_eos(tok);
    for (int i = 0; i < n_new; i++) {
        int32_t next = ftq_sampler_sample(smp, logits);
        all[n_all++] = next;
        if (next == eos && !ignore_eos) {
            stop = "eos";
            break;
        }
        if (!json) { /* stream the newly stable text */
            size_t len = 0;
            free(text);
            text = NULL;
            if (ftq_tokenizer_decode(tok, all, n_all, 1, &text, &len) == FTQ_OK) {
                size_t ok = stable_prefix(text, len);
                if (ok > printed) {
                    fwrite(text + printed, 1, ok - printed, stdout);
                    fflush(stdout);
                    printed = ok;
                }
            }
        }
        if (i + 1 < n_new && ftq_session_eval(s, &next, 1, logits, 0) != FTQ_OK) {
            rc = cmd_fail(spec.name, "%s", ftq_last_error());
            goto out;
        }
    }
    double t_gen = ftq_time_sec() - t1;
    int n_gen = (int)(n_all - n_prompt);
    double tps = t_gen > 0 ? n_gen / t_gen : 0;
    size_t len = 0;
    free(text);
    text = NULL;
    if (ftq_tokenizer_decode(tok, all, n_all, 1, &text, &len) != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s", ftq_last_error());
        goto out;
    }
    if (json) {
        char *ptext = NULL;
        size_t plen = 0;
        ftq_tokenizer_decode(tok, all, n_prompt, 1, &ptext, &plen);
        printf("{\"prompt\": ");
        json_print_string(stdout, prompt);
        printf(", \"text\": ");
        json_print_string(stdout, text);
        printf(", \"generated_text\": ");
        json_print_string(stdout, ptext && plen <= len ? text + plen : text);
        printf(", \"ids\": ");
        json_print_ids(stdout, all, n_all);
        printf(", \"new_ids\": ");
        json_print_ids(stdout, all + n_prompt, (size_t)n_gen);
        printf(", \"prompt_tokens\": %zu, \"generated_tokens\": %d, \"stop_reason\": \"%s\", "
               "\"temperature\": %g, \"top_k\": %d, \"top_p\": %g, \"seed\": %llu, "
               "\"prompt_tokens_per_second\": %.1f, \"tokens_per_second\": %.1f}\n",
               n_prompt, n_gen, stop, temperature, top_k, top_p, (unsigned long long)seed,
               t_prompt > 0 ? n_prompt / t_prompt : 0, tps);
        free(ptext);
    } else {
        if (len > printed)
            fwrite(text + printed, 1, len - printed, stdout);
        printf("\n");
        fprintf(stderr, "[%d tokens, %.1f tokens/s; prompt %zu tokens, %.1f tokens/s; stop: %s]\n", n_gen,
                tps, n_prompt, t_prompt > 0 ? n_prompt / t_prompt : 0, stop);
    }
out:
    free(text);
    free(all);
    free(logits);
    free(ids);
    ftq_sampler_free(smp);
    ftq_session_free(s);
    ftq_tokenizer_free(tok);
    ftq_model_free(m);
    return rc;
}
