/* dequantize.c - `ftq dequantize`: a quantized checkpoint back to an ordinary Hugging Face
 * checkpoint (F32, F16 or BF16) holding exactly the weights the quantized model uses. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq_quant.h"

int cmd_dequantize(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *dtype = "f32";
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "QDIR", "quantized model directory (from ftq quantize)", 0, -1},
        {"output", 'o', OPT_STR, &out, "OUT", "output directory (must not exist)", 0, -1},
        {"dtype", 0, OPT_STR, &dtype, "D", "f32 (default, exact) | f16 | bf16", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "dequantize", "-m QDIR -o OUT [--dtype f32|f16|bf16]",
        "Turn a quantized model back into an ordinary HF checkpoint: every quantized weight is written\n"
        "as the values the quantized model computes with (scale x (code - zero)), under its original\n"
        "name and layout (GPT-2 Conv1D weights [in, out] again, c_attn whole). With f32 the values\n"
        "are exact; f16 / bf16 round them (and every other floating-point tensor) to that dtype.\n"
        "A head that quantization split off a tied embedding stays a separate lm_head\n"
        "(tie_word_embeddings false), since it now differs from the embedding.",
        NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "model", model) || opts_require(&spec, "output", out))
        return 2;
    ftq_dtype dt;
    if (strcmp(dtype, "f32") == 0)
        dt = FTQ_DTYPE_F32;
    else if (strcmp(dtype, "f16") == 0)
        dt = FTQ_DTYPE_F16;
    else if (strcmp(dtype, "bf16") == 0)
        dt = FTQ_DTYPE_BF16;
    else
        return cmd_fail(spec.name, "unknown --dtype '%s' (expected f32, f16 or bf16)", dtype) + 1;
    double t0 = ftq_time_sec();
    if (ftq_dequantize_model(model, out, dt) != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    printf("wrote %s (%s, %.2f s)\n", out, dtype, ftq_time_sec() - t0);
    return 0;
}
