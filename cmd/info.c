/* info.c - `ftq info`: what a checkpoint holds. A directory is validated against its
 * config.json (every expected tensor present with the right shape); a single
 * .safetensors file is listed with its metadata, no config needed. A quantized checkpoint
 * (docs/quant-format.md) is validated as the loader does and shown per original tensor:
 * its scheme, original shape and bytes in place of the qweight / qscale / qzero parts. */
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

static int is_legacy_buffer(const char *name)
{
    size_t n = strlen(name);
    return (n > 9 && strcmp(name + n - 9, ".attn.bias") == 0) ||
           (n > 16 && strcmp(name + n - 16, ".attn.masked_bias") == 0);
}

static const char *act_name(ftq_act a)
{
    switch (a) {
    case FTQ_ACT_SILU: return "silu";
    case FTQ_ACT_GELU_TANH: return "gelu_tanh";
    case FTQ_ACT_GELU: return "gelu";
    case FTQ_ACT_RELU: return "relu";
    }
    return "?";
}

/* The quantized entry whose qweight part is `name`, or NULL. */
static const ftq_quant_tensor_info *qentry_of_part(const ftq_quant_tensor_info *ql, size_t nq, const char *name,
                                                   const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    if (n <= k || strcmp(name + n - k, suffix) != 0)
        return NULL;
    for (size_t i = 0; i < nq; i++) {
        size_t b = strlen(ql[i].name);
        if (b > 7 && strcmp(ql[i].name + b - 7, ".weight") == 0)
            b -= 7;
        if (b == n - k && strncmp(ql[i].name, name, b) == 0)
            return &ql[i];
    }
    return NULL;
}

static int is_qpart(const ftq_quant_tensor_info *ql, size_t nq, const char *name)
{
    return qentry_of_part(ql, nq, name, ".qweight") || qentry_of_part(ql, nq, name, ".qscale") ||
           qentry_of_part(ql, nq, name, ".qzero") || qentry_of_part(ql, nq, name, ".qmin");
}

static void print_config_text(const ftq_model_config *c)
{
    printf("architecture: %s (%s family)\n", c->model_type, c->arch == FTQ_ARCH_GPT2 ? "gpt2" : "llama");
    printf("config:       vocab %d, hidden %d, layers %d, heads %d", c->vocab_size, c->hidden_size,
           c->n_layers, c->n_heads);
    if (c->n_kv_heads != c->n_heads)
        printf(" (kv %d)", c->n_kv_heads);
    printf(", head_dim %d, ffn %d, positions %d\n", c->head_dim, c->intermediate_size, c->max_position);
    printf("              %s eps %g, activation %s", c->arch == FTQ_ARCH_GPT2 ? "layer_norm" : "rms_norm",
           (double)c->norm_eps, act_name(c->act));
    if (c->arch == FTQ_ARCH_LLAMA)
        printf(", rope_theta %g", (double)c->rope_theta);
    printf(", %s embeddings%s%s\n", c->tie_word_embeddings ? "tied" : "untied",
           c->qkv_bias ? ", qkv bias" : "", c->o_bias ? ", o bias" : "");
}

static void print_config_json(const ftq_model_config *c)
{
    printf("\"config\": {\"model_type\": ");
    json_print_string(stdout, c->model_type);
    printf(", \"family\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
           "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
           "\"head_dim\": %d, \"max_position_embeddings\": %d, \"norm_eps\": %g, \"rope_theta\": %g, "
           "\"activation\": \"%s\", \"tie_word_embeddings\": %s, \"qkv_bias\": %s, \"o_bias\": %s, "
           "\"mlp_bias\": %s, \"bos_token_id\": %d, \"eos_token_id\": %d, \"pad_token_id\": %d}, ",
           c->arch == FTQ_ARCH_GPT2 ? "gpt2" : "llama", c->vocab_size, c->hidden_size,
           c->intermediate_size, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->max_position,
           (double)c->norm_eps, (double)c->rope_theta, act_name(c->act),
           c->tie_word_embeddings ? "true" : "false", c->qkv_bias ? "true" : "false",
           c->o_bias ? "true" : "false", c->mlp_bias ? "true" : "false", c->bos_token_id,
           c->eos_token_id, c->pad_token_id);
}

int cmd_info(int argc, char **argv)
{
    if (ftq_bert_is_encoder_dir(cmd_model_arg(argc, argv)))
        return cmd_info_bert(argc, argv);
    const char *path = default_model_dir();
    int json = 0, no_tensors = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &path, "PATH", "model directory, a single .safetensors file or a .gguf file", 0, -1},
        {"no-tensors", 0, OPT_FLAG, &no_tensors, NULL, "omit the tensor table", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "info", "[-m PATH] [--json]",
        "Show a checkpoint's architecture, config summary, parameter count, dtypes, file size and\n"
        "tensor table. For a model directory config.json is validated against the tensors (every\n"
        "expected tensor present with the right shape); for a single .safetensors file only its\n"
        "tensors and metadata are shown.",
        NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;

    /* a GGUF file carries its config: it is shown and checked like a model directory */
    int is_gguf = ftq_gguf_is_file(path), is_dir = ftq_is_dir(path) || is_gguf;
    ftq_model_config cfg;
    ftq_checkpoint *ck = NULL;
    ftq_tokenizer *tok = NULL;
    if (is_dir && !is_gguf) {
        char *cfg_path = ftq_path_join(path, "config.json");
        if (!cfg_path)
            return cmd_fail(spec.name, "out of memory");
        int st = ftq_config_load(cfg_path, &cfg);
        free(cfg_path);
        if (st != FTQ_OK)
            return cmd_fail(spec.name, "%s", ftq_last_error());
    }
    if ((is_gguf ? ftq_gguf_checkpoint_open(path, &cfg, &ck) : ftq_checkpoint_open(path, &ck)) != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    if (is_dir && ftq_model_validate(&cfg, ck) != FTQ_OK) {
        int rc = cmd_fail(spec.name, "%s", ftq_last_error());
        ftq_checkpoint_close(ck);
        return rc;
    }
    ftq_quant_tensor_info *ql = NULL;
    size_t nq = 0;
    if (ftq_quant_checkpoint_list(ck, &ql, &nq) != FTQ_OK) {
        int rc = cmd_fail(spec.name, "%s", ftq_last_error());
        ftq_checkpoint_close(ck);
        return rc;
    }
    if (is_dir && ftq_tokenizer_load(path, &tok) != FTQ_OK)
        tok = NULL; /* info works without a tokenizer; it is reported as absent */

    /* parameter count (a quantized tensor counts its original elements) and dtype histogram */
    size_t nt = ftq_checkpoint_count(ck), qbytes = 0;
    long long params = 0;
    int dtype_count[FTQ_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < nt; i++) {
        const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
        dtype_count[t->dtype]++;
        if (!is_legacy_buffer(t->name) && !is_qpart(ql, nq, t->name))
            params += ftq_tensor_numel(t);
    }
    for (size_t i = 0; i < nq; i++) {
        params += ql[i].rows * ql[i].cols;
        qbytes += ql[i].bytes;
    }
    size_t bytes = ftq_checkpoint_total_bytes(ck);
    char shape[128];
    if (json) {
        printf("{\"path\": ");
        json_print_string(stdout, path);
        printf(", \"kind\": \"%s\", ", is_gguf ? "gguf" : is_dir ? "model_dir" : "safetensors");
        if (is_dir)
            print_config_json(&cfg);
        printf("\"parameters\": %lld, \"file_bytes\": %zu, \"tensor_count\": %zu, \"dtypes\": {", params,
               bytes, nt);
        int first = 1;
        for (int d = 0; d < FTQ_DTYPE_COUNT; d++)
            if (dtype_count[d]) {
                printf("%s\"%s\": %d", first ? "" : ", ", ftq_dtype_info(d)->name, dtype_count[d]);
                first = 0;
            }
        printf("}, \"files\": [");
        for (size_t i = 0; i < ftq_checkpoint_nfiles(ck); i++) {
            const ftq_st_file *f = ftq_checkpoint_file(ck, i);
            printf("%s{\"path\": ", i ? ", " : "");
            json_print_string(stdout, ftq_st_path(f));
            printf(", \"bytes\": %zu, \"metadata\": {", ftq_st_file_size(f));
            for (size_t k = 0; k < ftq_st_metadata_count(f); k++) {
                printf("%s", k ? ", " : "");
                json_print_string(stdout, ftq_st_metadata_key(f, k));
                printf(": ");
                json_print_string(stdout, ftq_st_metadata_value(f, k));
            }
            printf("}}");
        }
        printf("]");
        if (nq) {
            printf(", \"quantization\": {\"version\": \"1\", \"bytes\": %zu, \"tensors\": [", qbytes);
            for (size_t i = 0; i < nq; i++) {
                printf("%s{\"name\": ", i ? ", " : "");
                json_print_string(stdout, ql[i].name);
                printf(", \"scheme\": \"%s\", \"shape\": [%lld, %lld], \"quantized_shape\": [%lld, %lld], "
                       "\"transposed\": %s, \"bytes\": %zu}",
                       ql[i].scheme, (long long)ql[i].shape[0], (long long)ql[i].shape[1], (long long)ql[i].rows,
                       (long long)ql[i].cols, ql[i].transposed ? "true" : "false", ql[i].bytes);
            }
            printf("]}");
        }
        if (tok) {
            printf(", \"tokenizer\": {\"kind\": ");
            json_print_string(stdout, ftq_tokenizer_kind_name(tok));
            printf(", \"vocab_size\": %d, \"bos\": %d, \"eos\": %d, \"adds_bos\": %s}",
                   ftq_tokenizer_vocab_size(tok), ftq_tokenizer_bos(tok), ftq_tokenizer_eos(tok),
                   ftq_tokenizer_adds_bos(tok) ? "true" : "false");
        }
        if (!no_tensors) {
            printf(", \"tensors\": [");
            for (size_t i = 0; i < nt; i++) {
                const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
                printf("%s{\"name\": ", i ? ", " : "");
                json_print_string(stdout, t->name);
                printf(", \"dtype\": \"%s\", \"shape\": %s, \"bytes\": %zu}", ftq_dtype_info(t->dtype)->name,
                       ftq_shape_str(t->shape, t->ndim, shape, sizeof shape), t->nbytes);
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("path:         %s\n", path);
        if (is_dir)
            print_config_text(&cfg);
        printf("parameters:   %s\n", fmt_count(params));
        printf("dtypes:      ");
        for (int d = 0; d < FTQ_DTYPE_COUNT; d++)
            if (dtype_count[d])
                printf(" %s x%d", ftq_dtype_info(d)->name, dtype_count[d]);
        printf("\nfiles:        %zu file(s), %s bytes\n", ftq_checkpoint_nfiles(ck), fmt_count((long long)bytes));
        for (size_t i = 0; i < ftq_checkpoint_nfiles(ck); i++) {
            const ftq_st_file *f = ftq_checkpoint_file(ck, i);
            printf("  %s (%s bytes, %zu tensors)", ftq_st_path(f), fmt_count((long long)ftq_st_file_size(f)),
                   ftq_st_count(f));
            for (size_t k = 0; k < ftq_st_metadata_count(f); k++) {
                const char *key = ftq_st_metadata_key(f, k);
                if (strcmp(key, "ftq.quant.tensors") == 0) /* long; shown per tensor below */
                    printf("%s%s=(%zu tensors)", k ? ", " : " metadata ", key, nq);
                else
                    printf("%s%s=%s", k ? ", " : " metadata ", key, ftq_st_metadata_value(f, k));
            }
            printf("\n");
        }
        if (nq) {
            /* schemes with their counts, in order of first appearance */
            printf("quantized:    %zu tensors, %s bytes:", nq, fmt_count((long long)qbytes));
            for (size_t i = 0; i < nq; i++) {
                int seen = 0, count = 0;
                for (size_t j = 0; j < nq; j++) {
                    seen |= j < i && strcmp(ql[j].scheme, ql[i].scheme) == 0;
                    count += strcmp(ql[j].scheme, ql[i].scheme) == 0;
                }
                if (!seen)
                    printf(" %s x%d", ql[i].scheme, count);
            }
            printf("\n");
        }
        if (is_dir) {
            if (tok)
                printf("tokenizer:    %s, vocab %d, bos %d, eos %d%s\n", ftq_tokenizer_kind_name(tok),
                       ftq_tokenizer_vocab_size(tok), ftq_tokenizer_bos(tok), ftq_tokenizer_eos(tok),
                       ftq_tokenizer_adds_bos(tok) ? ", adds BOS" : "");
            else
                printf("tokenizer:    none (%s)\n", ftq_last_error());
        }
        if (!no_tensors) {
            /* a quantized tensor is one row (its scheme, original shape, all parts' bytes) */
            int w = nq ? 9 : 6;
            printf("tensors:\n  %-52s %-*s %-18s %12s\n", "name", w, "dtype", "shape", "bytes");
            for (size_t i = 0; i < nt; i++) {
                const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
                const ftq_quant_tensor_info *q = qentry_of_part(ql, nq, t->name, ".qweight");
                if (q)
                    printf("  %-52s %-*s %-18s %12zu%s%s\n", q->name, w, q->scheme, ftq_shape_str(q->shape, 2, shape, sizeof shape),
                           q->bytes, q->transposed ? "  (stored [out, in])" : "",
                           q->copied_from ? "  (split off the tied embedding)" : "");
                else if (!is_qpart(ql, nq, t->name))
                    printf("  %-52s %-*s %-18s %12zu\n", t->name, w, ftq_dtype_info(t->dtype)->name,
                           ftq_shape_str(t->shape, t->ndim, shape, sizeof shape), t->nbytes);
            }
        }
    }
    ftq_quant_tensor_info_free(ql, nq);
    ftq_tokenizer_free(tok);
    ftq_checkpoint_close(ck);
    return 0;
}
