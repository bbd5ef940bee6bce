/* prune.c - `ftq prune`: magnitude, N:M or Wanda pruning of a model's linear layers into a
 * new HF checkpoint, with the sparsity reached per tensor and overall. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq_prune.h"

static int parse_nm(const char *s, int *n, int *m)
{
    char *end = NULL;
    long a = strtol(s, &end, 10);
    if (end == s || *end != ':')
        return -1;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (end == t || *end || a < 1 || b < 2 || a >= b || b > 64)
        return -1;
    *n = (int)a;
    *m = (int)b;
    return 0;
}

int cmd_prune(int argc, char **argv)
{
    const char *model = default_model_dir(), *out = NULL, *method = "magnitude", *nm = NULL, *scope = NULL;
    const char *calib = NULL;
    double sparsity = 0.5;
    int calib_ctx = 256, calib_tokens = 65536, incl_emb = 0, incl_head = 0, json = 0, show = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "model directory", 0, -1},
        {"output", 'o', OPT_STR, &out, "OUT", "output directory (must not exist)", 0, -1},
        {"method", 0, OPT_STR, &method, "NAME", "magnitude | nm | wanda", 0, -1},
        {"sparsity", 0, OPT_FLOAT, &sparsity, "S", "fraction of weights to zero (magnitude, wanda)", 0, 1},
        {"nm", 0, OPT_STR, &nm, "N:M", "keep N of every M consecutive inputs (method nm, default 2:4; or wanda N:M)", 0, -1},
        {"scope", 0, OPT_STR, &scope, "SCOPE", "magnitude: tensor | row | global (default tensor); wanda: row", 0, -1},
        {"calib", 0, OPT_STR, &calib, "FILE", "calibration text for wanda (never your evaluation text)", 0, -1},
        {"calib-ctx", 0, OPT_INT, &calib_ctx, "N", "tokens per calibration window", 2, 1 << 20},
        {"calib-tokens", 0, OPT_INT, &calib_tokens, "N", "use at most N calibration tokens", 1, 1 << 30},
        {"include-embeddings", 0, OPT_FLAG, &incl_emb, NULL, "also prune the embeddings (magnitude, nm)", 0, -1},
        {"include-head", 0, OPT_FLAG, &incl_head, NULL, "also prune an untied lm_head / classifier head", 0, -1},
        {"tensors", 0, OPT_FLAG, &show, NULL, "print the sparsity of every pruned tensor", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "prune", "[-m DIR] -o OUT --method magnitude|nm|wanda [--sparsity S] [--nm N:M] [--scope tensor|row|global] [--calib FILE]",
        "Prune the linear layers of a model and write a normal HF checkpoint (same names, layouts and\n"
        "dtypes). Embeddings, norms and heads stay dense unless asked.",
        "Methods:\n"
        "  magnitude  zero the smallest |w|: per tensor (default), per output row, or one global\n"
        "             threshold over every linear layer\n"
        "  nm         in every group of M consecutive input weights of a row keep the N largest\n"
        "  wanda      score |w| x ||x|| (the input feature's RMS over the calibration tokens),\n"
        "             compared within each output row; block by block, each block calibrated\n"
        "             with the blocks before it already pruned. --nm N:M gives Wanda N:M.\n"
        "Selection is exact: round(S x n) weights are zeroed (ties by position).",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "output", out))
        return 2;
    ftq_prune_params p = ftq_prune_default_params();
    p.sparsity = (float)sparsity;
    p.include_embeddings = incl_emb;
    p.include_head = incl_head;
    p.calib_ctx = calib_ctx;
    if (strcmp(method, "magnitude") == 0)
        p.method = FTQ_PRUNE_MAGNITUDE;
    else if (strcmp(method, "nm") == 0)
        p.method = FTQ_PRUNE_NM;
    else if (strcmp(method, "wanda") == 0)
        p.method = FTQ_PRUNE_WANDA;
    else
        return cmd_fail(spec.name, "unknown --method '%s' (expected magnitude, nm or wanda)", method) + 1;
    if (p.method == FTQ_PRUNE_NM && !nm)
        nm = "2:4";
    if (nm && p.method == FTQ_PRUNE_MAGNITUDE)
        return cmd_fail(spec.name, "--nm needs --method nm or wanda") + 1;
    if (nm && parse_nm(nm, &p.n, &p.m) != 0)
        return cmd_fail(spec.name, "--nm expects N:M with 0 < N < M <= 64, got '%s'", nm) + 1;
    p.scope = FTQ_PRUNE_TENSOR;
    if (scope) {
        if (p.method != FTQ_PRUNE_MAGNITUDE && strcmp(scope, "row") != 0)
            return cmd_fail(spec.name, "--scope %s applies to magnitude pruning only", scope) + 1;
        if (strcmp(scope, "tensor") == 0)
            p.scope = FTQ_PRUNE_TENSOR;
        else if (strcmp(scope, "row") == 0)
            p.scope = FTQ_PRUNE_ROW;
        else if (strcmp(scope, "global") == 0)
            p.scope = FTQ_PRUNE_GLOBAL;
        else
            return cmd_fail(spec.name, "unknown --scope '%s' (expected tensor, row or global)", scope) + 1;
    }
    if (p.method == FTQ_PRUNE_WANDA && !calib)
        return cmd_fail(spec.name, "--method wanda needs --calib FILE (calibration text)") + 1;
    if (p.method != FTQ_PRUNE_WANDA && calib)
        return cmd_fail(spec.name, "--calib is used by --method wanda only") + 1;

    int32_t *ids = NULL;
    size_t n = 0;
    if (calib) {
        int rc = cmd_calib_ids(spec.name, model, calib, &ids, &n, &p.calib_bos);
        if (rc)
            return rc;
        p.calib = ids;
        p.n_calib = n < (size_t)calib_tokens ? n : (size_t)calib_tokens;
    }
    ftq_prune_report rep;
    double t0 = ftq_time_sec();
    if (ftq_prune_model(model, out, &p, &rep) != FTQ_OK) {
        free(ids);
        return cmd_fail(spec.name, "%s", ftq_last_error());
    }
    double secs = ftq_time_sec() - t0;
    free(ids);
    double sp_pruned = rep.pruned_numel ? (double)rep.pruned_zeros / rep.pruned_numel : 0;
    double sp_model = rep.model_numel ? (double)rep.model_zeros / rep.model_numel : 0;
    if (json) {
        printf("{\"output\": ");
        json_print_string(stdout, out);
        printf(", \"method\": \"%s\", \"sparsity_requested\": %g, \"nm\": \"%d:%d\", "
               "\"sparsity_pruned_tensors\": %.6f, \"sparsity_model\": %.6f, \"pruned_params\": %lld, "
               "\"model_params\": %lld, \"calib_tokens\": %lld, \"seconds\": %.3f, \"tensors\": [",
               method, p.method == FTQ_PRUNE_NM ? 0.0 : sparsity, p.n, p.m, sp_pruned, sp_model,
               (long long)rep.pruned_numel, (long long)rep.model_numel, (long long)rep.calib_tokens, secs);
        for (size_t i = 0; i < rep.n_tensors; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            json_print_string(stdout, rep.tensors[i].name);
            printf(", \"numel\": %lld, \"sparsity\": %.6f}", (long long)rep.tensors[i].numel,
                   rep.tensors[i].numel ? (double)rep.tensors[i].zeros / rep.tensors[i].numel : 0.0);
        }
        printf("]}\n");
    } else {
        if (show)
            for (size_t i = 0; i < rep.n_tensors; i++)
                printf("  %-52s %12s  %6.2f %%\n", rep.tensors[i].name, fmt_count(rep.tensors[i].numel),
                       100.0 * rep.tensors[i].zeros / (rep.tensors[i].numel ? rep.tensors[i].numel : 1));
        printf("pruned %zu tensors (%s weights): sparsity %.2f %%; whole model %.2f %% of %s parameters\n",
               rep.n_tensors, fmt_count(rep.pruned_numel), 100 * sp_pruned, 100 * sp_model,
               fmt_count(rep.model_numel));
        printf("wrote %s (%.2f s)\n", out, secs);
    }
    ftq_prune_report_free(&rep);
    return 0;
}
