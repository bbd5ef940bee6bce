/* export.c - `ftq export`: write a model ftq loads (a Hugging Face or fine-tuned directory,
 * an ftq-quantized directory, or a GGUF file) as a GGUF file llama.cpp runs. */
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

static const struct {
    const char *name;
    uint32_t type;
} types[] = {
    {"f32", FTQ_GGML_F32},
    {"f16", FTQ_GGML_F16},
    {"bf16", FTQ_GGML_BF16},
    {"q8_0", FTQ_GGML_Q8_0},
    {"q4_0", FTQ_GGML_Q4_0},
    {"q4_1", FTQ_GGML_Q4_1},
    {"keep", FTQ_GGUF_EXPORT_KEEP},
};

/* The tokenizer GGUF can describe: for a directory, sentencepiece's tokenizer.model when
 * present (a tokenizer.json of a sentencepiece model has normalizers GGUF has no keys for). */
static int load_tokenizer(const char *path, ftq_tokenizer **tok)
{
    char *spm = ftq_is_dir(path) ? ftq_path_join(path, "tokenizer.model") : NULL;
    int rc = spm && ftq_is_file(spm) ? ftq_tokenizer_load_kind(path, FTQ_TOKENIZER_SPM, tok)
                                     : ftq_tokenizer_load(path, tok);
    free(spm);
    return rc;
}

/* types[] index of a --type name, or -1 */
static int find_type(const char *name)
{
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        if (strcmp(types[k].name, name) == 0)
            return (int)k;
    return -1;
}

/* Load model (a directory or a GGUF file) with its config and tokenizer and write it to out. */
static int export_model(const char *model, uint32_t type, int keep_quant, const char *out,
                        ftq_gguf_export_stats *st)
{
    ftq_model_config cfg;
    ftq_checkpoint *ck = NULL;
    ftq_tokenizer *tok = NULL;
    int rc;
    if (ftq_gguf_is_file(model)) {
        rc = ftq_gguf_checkpoint_open_ex(model, keep_quant ? FTQ_GGUF_KEEP_QUANT : 0, &cfg, &ck);
    } else {
        char *cfg_path = ftq_path_join(model, "config.json");
        rc = cfg_path ? ftq_config_load(cfg_path, &cfg) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(cfg_path);
        if (rc == FTQ_OK)
            rc = ftq_checkpoint_open(model, &ck);
        if (rc == FTQ_OK)
            rc = ftq_model_validate(&cfg, ck);
    }
    if (rc == FTQ_OK)
        rc = load_tokenizer(model, &tok);
    if (rc == FTQ_OK)
        rc = ftq_model_export_gguf(&cfg, ck, tok, type, out, st);
    ftq_tokenizer_free(tok);
    ftq_checkpoint_close(ck);
    return rc;
}

int cmd_export_gguf(const char *model, const char *type_s, const char *out)
{
    int k = find_type(type_s);
    if (k < 0)
        return 2;
    ftq_gguf_export_stats st = {0, 0};
    return export_model(model, types[k].type, 0, out, &st);
}

int cmd_export(int argc, char **argv)
{
    const char *model = default_model_dir(), *out = NULL, *type_s = "f32", *adapter = NULL;
    int json = 0, keep_quant = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "PATH", "model directory or .gguf file", 0, -1},
        {"output", 'o', OPT_STR, &out, "FILE", "GGUF file to write (replaced atomically)", 0, -1},
        {"type", 0, OPT_STR, &type_s, "TYPE", "f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | keep for the weight matrices", 0, -1},
        {"keep-quant", 0, OPT_FLAG, &keep_quant, NULL, "GGUF source: read Q8_0 / Q4_0 / Q4_1 matrices as int8 / int4 / q4m (other "
         "quantized types via Q8_0), so --type q8_0 / q4_0 / keep copy them through unchanged", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", "write this PEFT LoRA adapter (of the base -m) as a llama.cpp "
         "LoRA adapter GGUF instead of the model (llama-cli --lora FILE)", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "export", "[-m PATH] -o FILE.gguf [--type f32|f16|bf16|q8_0|q4_0|q4_1|keep] [--adapter DIR]",
        "Write a llama-family model as a GGUF file for llama.cpp: general.* / llama.* /\n"
        "tokenizer.ggml.* keys, blk.N.* tensor names, Q/K rows permuted as llama.cpp's converter\n"
        "does. Norms stay F32; q8_0 / q4_0 / q4_1 use ggml's reference quantizers (a matrix whose\n"
        "rows are not a multiple of 32 is written F16). From an ftq-quantized directory, int8 and\n"
        "int4 matrices are copied into q8_0 (int8, int4) or q4_0 (int4) without requantizing\n"
        "(docs/gguf.md); other combinations are dequantized and converted. keep: every matrix\n"
        "exactly as ftq has it (int8 and asymmetric int4 as q8_0, int4 as q4_0, floats as\n"
        "f32 / f16 / bf16).",
        NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (!out)
        return cmd_fail(spec.name, "missing required option --output");
    if (adapter) { /* the base's config names the architecture and the heads of the Q/K permutation */
        ftq_model_config mc;
        int st = cmd_model_config(model, &mc);
        if (st == FTQ_OK)
            st = ftq_peft_export_gguf(adapter, &mc, out);
        if (st != FTQ_OK)
            return cmd_fail(spec.name, "%s", ftq_last_error());
        printf("wrote %s (llama.cpp LoRA adapter)\n", out);
        return 0;
    }
    int k = find_type(type_s);
    if (k < 0)
        return cmd_fail(spec.name, "unknown --type '%s' (expected f32, f16, bf16, q8_0, q4_0, q4_1 or keep)", type_s);
    double t0 = ftq_time_sec();
    ftq_gguf_export_stats st = {0, 0};
    int rc = export_model(model, types[k].type, keep_quant, out, &st);
    if (rc != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    size_t bytes = 0;
    FILE *f = fopen(out, "rb");
    if (f && fseek(f, 0, SEEK_END) == 0)
        bytes = (size_t)ftell(f);
    if (f)
        fclose(f);
    double secs = ftq_time_sec() - t0;
    if (json)
        printf("{\"output\": \"%s\", \"type\": \"%s\", \"bytes\": %zu, \"copied\": %d, \"converted\": %d, "
               "\"seconds\": %.3f}\n", out, type_s, bytes, st.copied, st.encoded, secs);
    else if (st.copied)
        printf("wrote %s (%s, %s bytes; %d quantized matrices copied without requantizing) in %.1f s\n", out,
               type_s, fmt_count((long long)bytes), st.copied, secs);
    else
        printf("wrote %s (%s, %s bytes) in %.1f s\n", out, type_s, fmt_count((long long)bytes), secs);
    return 0;
}
