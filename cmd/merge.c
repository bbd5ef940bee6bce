/* merge.c - `ftq merge`: a base model directory and a PEFT LoRA adapter written as one
 * ordinary HF model directory (W + scaling * B A), which every command, quantize and export
 * then take as they take any model. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

int cmd_merge(int argc, char **argv)
{
    const char *model = NULL, *adapter = NULL, *out = NULL;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "BASE", "base model directory (safetensors, f32 / f16 / bf16)", 0, -1},
        {"adapter", 0, OPT_STR, &adapter, "DIR", "PEFT adapter directory (adapter_config.json + "
                                                 "adapter_model.safetensors, e.g. from ftq finetune --mode lora)", 0, -1},
        {"output", 'o', OPT_STR, &out, "OUT", "output model directory (must not exist)", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "merge", "-m BASE --adapter DIR -o OUT",
        "Merge a PEFT LoRA adapter into its base model: every adapted weight becomes\n"
        "W + scaling * lora_B @ lora_A (float32; GPT-2 Conv1D weights stay [in, out]), heads saved\n"
        "with the adapter (modules_to_save, e.g. score.weight) are added, and the rest is copied as\n"
        "stored. config.json comes from the adapter directory when it has one (a classifier's\n"
        "labels), else from the base. The directory appears complete or not at all.",
        NULL, opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "model", model) || opts_require(&spec, "adapter", adapter) ||
        opts_require(&spec, "output", out))
        return 2;
    double t0 = ftq_time_sec();
    if (ftq_peft_merge_dir(model, adapter, out) != FTQ_OK)
        return cmd_fail(spec.name, "%s", ftq_last_error());
    printf("wrote %s (%.2f s)\n", out, ftq_time_sec() - t0);
    return 0;
}
