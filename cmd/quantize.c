/* quantize.c - `ftq quantize`: a model's linear layers (and optionally embeddings and
 * heads) to int8 / int4 in ftq's quantized safetensors format, with the weight error per
 * tensor and the sizes before and after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq_quant.h"

static const char *const POLICY_NAMES[] = {"keep", "int8", "int4", "same", "auto"};

static int parse_policy(const char *s, int allow_auto, ftq_qpolicy *out)
{
    for (int i = 0; i <= FTQ_QPOLICY_AUTO; i++)
        if (strcmp(s, POLICY_NAMES[i]) == 0 && (allow_auto || i != FTQ_QPOLICY_AUTO)) {
            *out = (ftq_qpolicy)i;
            return 0;
        }
    return -1;
}

static void on_sensitivity(void *user, int done, int total, const char *name)
{
    char label[96];
    (void)user;
    snprintf(label, sizeof label, "sensitivity %s", name);
    progress_bar(done, total, label);
}

int cmd_quantize(int argc, char **argv)
{
    const char *model = default_model_dir(), *out = NULL, *type = "int8", *emb = "keep", *head = "auto";
    const char *calib = NULL, *method = "rtn", *sens_from = NULL;
    int group = -1, asym = 0, kquant = 0, search = 0, json = 0, show = 0, calib_tokens = 65536, calib_ctx = 512;
    int act_order = 0, awq = 0;
    double damp = 0.01, bits = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "model directory (F32, F16 or BF16 weights)", 0, -1},
        {"output", 'o', OPT_STR, &out, "OUT", "output directory (must not exist)", 0, -1},
        {"type", 0, OPT_STR, &type, "TYPE", "int8 | int4 (the linear layers; default int8)", 0, -1},
        {"group", 0, OPT_INT, &group, "G", "weights per scale: 32 (default), 64, 128; 0 = one per row (int8)", -1, 1 << 20},
        {"asym", 0, OPT_FLAG, &asym, NULL, "int4 with a zero point per group (q4a) instead of symmetric (q4)", 0, -1},
        {"kquant", 0, OPT_FLAG, &kquant, NULL,
         "int4: layers 256k wide take q4k super-blocks (GGUF Q4_K); --bits mixes q4k / q6k / q8", 0, -1},
        {"search", 0, OPT_FLAG, &search, NULL, "per group, search the scale with the least squared error", 0, -1},
        {"embeddings", 0, OPT_STR, &emb, "P", "token / position embeddings: keep (default) | int8 | int4 | same", 0, -1},
        {"head", 0, OPT_STR, &head, "P", "output layer: auto (default) | keep | int8 | int4 | same", 0, -1},
        {"calib", 0, OPT_STR, &calib, "FILE", "calibration text (never your evaluation text): importance-weighted "
         "scale search, and what --method gptq and --bits need", 0, -1},
        {"calib-tokens", 0, OPT_INT, &calib_tokens, "N", "use at most N calibration tokens", 1, 1 << 30},
        {"calib-ctx", 0, OPT_INT, &calib_ctx, "N", "tokens per calibration window", 2, 1 << 20},
        {"method", 0, OPT_STR, &method, "M", "rtn (default; with --calib the importance-weighted search) | gptq | awq "
         "(activation-aware scales, then the importance-weighted search)", 0, -1},
        {"awq", 0, OPT_FLAG, &awq, NULL, "activation-aware scales before --method (awq with gptq: --method gptq --awq)", 0, -1},
        {"act-order", 0, OPT_FLAG, &act_order, NULL, "gptq: columns by decreasing Hessian diagonal (static groups)", 0, -1},
        {"damp", 0, OPT_FLOAT, &damp, "F", "gptq: damping, fraction of the mean Hessian diagonal", 0, 10},
        {"bits", 0, OPT_FLOAT, &bits, "B", "int4 with --calib: mixed int4 / int8 per linear layer by measured "
         "sensitivity, at most B bits per weight on average (q4 g32 = 4.5, q8 g32 = 8.5)", 0, 8.5},
        {"sensitivity", 0, OPT_STR, &sens_from, "DIR", "with --bits: reuse the layer sensitivities recorded in DIR, an "
         "earlier --bits output with the same --calib, --calib-tokens, --calib-ctx, awq, --kquant and int4 scheme", 0, -1},
        {"tensors", 0, OPT_FLAG, &show, NULL, "print the error of every quantized tensor", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "quantize", "[-m DIR] -o OUT [--type int8|int4] [--group G] [--asym] [--kquant] [--search] [--embeddings P] [--head P]\n"
        "       [--calib FILE [--calib-tokens N] [--method rtn|gptq|awq] [--awq] [--act-order] [--bits B [--sensitivity DIR]]]",
        "Quantize a model to int8 or int4 weights (docs/quant-format.md). The output directory holds\n"
        "model.safetensors in ftq's quantized format plus the config and tokenizer files; ftq loads it\n"
        "like any model (perplexity, generate, classify), 'ftq dequantize' turns it back into an\n"
        "ordinary HF checkpoint.",
        "What is quantized (the default policy):\n"
        "  linear layers   every q/k/v/o and MLP weight of every block: --type, --group, --asym\n"
        "                  (int8: q8, symmetric codes in [-127, 127]; int4: q4, codes in [-8, 7],\n"
        "                  or q4a, codes in [0, 15] with a zero point); one f16 scale per group\n"
        "  output layer    --head auto: lm_head to int8 (groups of 32) even with --type int4,\n"
        "                  because the output layer is the most quantization-sensitive matrix\n"
        "                  (llama.cpp keeps it at higher precision too). A tied head (the\n"
        "                  embedding used as output) is then stored as a separate quantized\n"
        "                  lm_head and config.json gets tie_word_embeddings false; the embedding\n"
        "                  stays as stored for lookups. A classifier's score head is kept.\n"
        "  embeddings      --embeddings keep: as stored\n"
        "  norms, biases   always kept as stored\n"
        "Policies for --head / --embeddings: keep (as stored), int8 (q8, groups of 32), int4 (the\n"
        "linear layers' int4 scheme and group with --type int4, else q4 with groups of 32), same\n"
        "(exactly the linear layers' scheme). --head int8/int4/same also applies to a score head.\n"
        "Quantized embeddings are dequantized row by row at lookup. When a tied embedding and\n"
        "the head get the same quantization they stay tied (one matrix).\n"
        "Calibration (--calib FILE; BERT encoders: the importance search only): one forward pass\n"
        "over windows of --calib-ctx tokens of FILE measures every block linear layer's input (sum\n"
        "of x^2 per input channel, as llama.cpp's imatrix; with gptq also sum x x^T). Then each\n"
        "group's scale minimizes the importance-weighted error (rtn), or GPTQ compensates each\n"
        "column's rounding error in the later columns (gptq; H = 2 X^T X, 1 % damping). awq first\n"
        "multiplies each input channel of every linear layer by s = (mean |x|)^alpha (alpha\n"
        "searched per block and layer group for the least output error on the calibration inputs)\n"
        "and divides it out of the norm or linear layer before (exact in f32: the file's norm\n"
        "weights change). --bits B measures, for each linear layer, the KL divergence from the\n"
        "source model on a calibration window with only that layer at int4, and stores at int8\n"
        "the layers with the most KL per extra byte that fit B; the measurements are recorded, and\n"
        "--sensitivity DIR reuses those of an earlier --bits output for another budget. The\n"
        "calibration (file, tokens, method) and the plan are recorded in the file's metadata.\n"
        "Errors are measured against the source weights: RMSE, max |error| and relative RMSE\n"
        "(RMSE / RMS of the weights). NaN / Inf weights are refused, naming the tensor.",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "output", out))
        return 2;
    ftq_quantize_params p = ftq_quantize_default_params();
    if (strcmp(type, "int8") == 0)
        p.bits = 8;
    else if (strcmp(type, "int4") == 0)
        p.bits = 4;
    else
        return cmd_fail(spec.name, "unknown --type '%s' (expected int8 or int4)", type) + 1;
    if (asym && p.bits == 8)
        return cmd_fail(spec.name, "--asym applies to --type int4 only (int8 is symmetric)") + 1;
    if (group == 0 && p.bits == 4)
        return cmd_fail(spec.name, "--group 0 (one scale per row) needs --type int8; int4 takes 32, 64 or 128") + 1;
    if (group != -1 && group != 0 && group != 32 && group != 64 && group != 128)
        return cmd_fail(spec.name, "--group %d is not supported (expected 32, 64 or 128, or 0 for per row with int8)",
                        group) + 1;
    p.group = group == -1 ? 32 : group;
    p.asym = asym;
    if (kquant && p.bits != 4)
        return cmd_fail(spec.name, "--kquant applies to --type int4 only") + 1;
    p.kquant = kquant;
    p.search = search;
    if (parse_policy(emb, 0, &p.embeddings))
        return cmd_fail(spec.name, "unknown --embeddings '%s' (expected keep, int8, int4 or same)", emb) + 1;
    if (parse_policy(head, 1, &p.head))
        return cmd_fail(spec.name, "unknown --head '%s' (expected auto, keep, int8, int4 or same)", head) + 1;
    if (strcmp(method, "rtn") == 0)
        p.method = FTQ_QMETHOD_RTN;
    else if (strcmp(method, "gptq") == 0)
        p.method = FTQ_QMETHOD_GPTQ;
    else if (strcmp(method, "awq") == 0)
        awq = 1;
    else
        return cmd_fail(spec.name, "unknown --method '%s' (expected rtn, gptq or awq)", method) + 1;
    if (!calib && (p.method == FTQ_QMETHOD_GPTQ || bits > 0 || act_order || awq))
        return cmd_fail(spec.name, "--method gptq|awq, --awq, --act-order and --bits need --calib FILE") + 1;
    p.awq = awq;
    if (bits > 0 && p.bits != 4)
        return cmd_fail(spec.name, "--bits applies to --type int4 (it mixes int4 and int8)") + 1;
    if (calib && p.group == 0)
        return cmd_fail(spec.name, "--calib needs groups (--group 32, 64 or 128)") + 1;
    p.act_order = act_order;
    p.damp = damp;
    p.target_bits = bits;
    if (sens_from && !(bits > 0))
        return cmd_fail(spec.name, "--sensitivity DIR needs --bits B (it reuses a mixed-precision plan's measurements)") + 1;
    p.sensitivity_from = sens_from;

    int32_t *ids = NULL;
    if (calib) {
        size_t n = 0;
        int rc = cmd_calib_ids(spec.name, model, calib, &ids, &n, &p.calib_bos);
        if (rc)
            return rc;
        p.calib = ids;
        p.n_calib = n < (size_t)calib_tokens ? n : (size_t)calib_tokens;
        p.calib_ctx = calib_ctx;
        const char *base = strrchr(calib, '/');
        p.calib_name = base ? base + 1 : calib;
    }
    if (bits > 0 && !json && !sens_from)
        p.progress = on_sensitivity;
    ftq_quantize_report rep;
    if (bits > 0 && !json && !sens_from)
        fprintf(stderr, "measuring each linear layer's sensitivity (one forward pass each)\n");
    int qrc = ftq_quantize_model(model, out, &p, &rep);
    if (bits > 0 && !json && !sens_from)
        progress_done();
    free(ids);
    if (qrc != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    double ratio = rep.out_bytes ? (double)rep.in_bytes / (double)rep.out_bytes : 0;
    double qratio = rep.q_out_bytes ? (double)rep.q_in_bytes / (double)rep.q_out_bytes : 0;
    if (json) {
        printf("{\"output\": ");
        json_print_string(stdout, out);
        printf(", \"type\": \"%s\", \"group\": %d, \"asym\": %s, \"search\": %s, \"embeddings\": \"%s\", "
               "\"head\": \"%s\", \"head_split\": %s, \"in_bytes\": %zu, \"out_bytes\": %zu, \"ratio\": %.4f, "
               "\"quantized_in_bytes\": %zu, \"quantized_out_bytes\": %zu, \"quantized_ratio\": %.4f, "
               "\"quantized_params\": %lld, \"rmse\": %.6g, \"rel_rmse\": %.6g, \"max_abs\": %.6g, "
               "\"seconds\": %.3f, \"calib_tokens\": %lld, \"calib_seconds\": %.3f, \"method\": \"%s\", "
               "\"act_order\": %s, \"target_bits\": %g, \"linear_bits\": %.4f, \"tensors\": [",
               type, p.group, asym ? "true" : "false", search ? "true" : "false", POLICY_NAMES[p.embeddings],
               POLICY_NAMES[p.head], rep.head_split ? "true" : "false", rep.in_bytes, rep.out_bytes, ratio,
               rep.q_in_bytes, rep.q_out_bytes, qratio, (long long)rep.numel, rep.rmse, rep.rel_rmse, rep.max_abs,
               rep.seconds, (long long)rep.calib_tokens, rep.calib_seconds, method, act_order ? "true" : "false", bits,
               rep.linear_bits);
        for (size_t i = 0; i < rep.n_tensors; i++) {
            const ftq_quantize_tensor_report *t = &rep.tensors[i];
            printf("%s{\"name\": ", i ? ", " : "");
            json_print_string(stdout, t->name);
            printf(", \"scheme\": \"%s\", \"method\": \"%s\", \"numel\": %lld, \"rmse\": %.6g, \"max_abs\": %.6g, "
                   "\"rel_rmse\": %.6g, \"bytes\": %zu",
                   t->scheme, t->method, (long long)t->numel, t->rmse, t->max_abs, t->rel_rmse, t->bytes);
            if (t->sensitivity >= 0)
                printf(", \"sensitivity\": %.6g", t->sensitivity);
            if (t->out_err >= 0)
                printf(", \"output_mse\": %.6g", t->out_err);
            printf("}");
        }
        printf("]}\n");
    } else {
        if (show) {
            printf("  %-48s %-9s %-8s %12s %10s %10s %8s %12s %10s\n", "tensor", "scheme", "method", "weights", "rmse",
                   "max |err|", "rel", "bytes", "KL int4");
            for (size_t i = 0; i < rep.n_tensors; i++) {
                const ftq_quantize_tensor_report *t = &rep.tensors[i];
                char sens[24] = "";
                if (t->sensitivity >= 0)
                    snprintf(sens, sizeof sens, "%.5f", t->sensitivity);
                printf("  %-48s %-9s %-8s %12s %10.3g %10.3g %7.3f%% %12s %10s\n", t->name, t->scheme, t->method,
                       fmt_count(t->numel), t->rmse, t->max_abs, 100 * t->rel_rmse, fmt_count((long long)t->bytes), sens);
            }
        }
        if (rep.calib_tokens > 0)
            printf("calibration: %s tokens of '%s' (%s), %.2f s\n", fmt_count(rep.calib_tokens), p.calib_name,
                   p.method == FTQ_QMETHOD_GPTQ ? (act_order ? "gptq, act order" : "gptq")
                   : awq                       ? "awq, importance-weighted search"
                                               : "importance-weighted search",
                   rep.calib_seconds);
        if (bits > 0) {
            /* layers per scheme label, in order of first appearance (q4 / q8, or with --kquant also
             * q4k / q5 / q6k) */
            const char *lab[8];
            int cnt[8], nl = 0;
            for (size_t i = 0; i < rep.n_tensors; i++) {
                const ftq_quantize_tensor_report *t = &rep.tensors[i];
                if (t->sensitivity < 0)
                    continue;
                int k = 0;
                while (k < nl && strcmp(lab[k], t->scheme) != 0)
                    k++;
                if (k == nl && nl < 8) {
                    lab[nl] = t->scheme;
                    cnt[nl++] = 0;
                }
                if (k < nl)
                    cnt[k]++;
            }
            printf("mixed precision plan (budget %.3g bits per weight, got %.3f):", bits, rep.linear_bits);
            for (int k = 0; k < nl; k++)
                printf("%s %d linear layers %s", k ? "," : "", cnt[k], lab[k]);
            printf("\n");
            for (size_t i = 0; i < rep.n_tensors; i++) {
                const ftq_quantize_tensor_report *t = &rep.tensors[i];
                if (t->sensitivity >= 0 && !(p.kquant ? strncmp(t->scheme, "q4", 2) == 0 : strncmp(t->scheme, "q8", 2) != 0))
                    printf("  %-8s %-48s KL with it int4 alone %.5f\n", t->scheme, t->name, t->sensitivity);
            }
        }
        printf("quantized %zu tensors (%s weights): rmse %.3g, relative %.3f %%, max |error| %.3g\n", rep.n_tensors,
               fmt_count(rep.numel), rep.rmse, 100 * rep.rel_rmse, rep.max_abs);
        printf("  their bytes %s -> %s (%.2fx)\n", fmt_count((long long)rep.q_in_bytes),
               fmt_count((long long)rep.q_out_bytes), qratio);
        printf("file: %s -> %s bytes (%.2fx)\n", fmt_count((long long)rep.in_bytes), fmt_count((long long)rep.out_bytes),
               ratio);
        if (rep.head_split)
            printf("the tied output layer is stored as a separate lm_head (config: tie_word_embeddings false)\n");
        printf("wrote %s (%.2f s)\n", out, rep.seconds);
    }
    ftq_quantize_report_free(&rep);
    return 0;
}
