/* arch_table.c - the model families the trainer knows, asked in order; the last row (the
 * decoders: Llama and GPT-2 families, whose loader reports what it cannot read) takes every
 * directory the rows before it do not claim. */
#include "finetune/arch.h"

static const tarch_ops *const archs[] = {&tarch_bert_ops, &tarch_decoder_ops};

const tarch_ops *tarch_find(const char *model_dir)
{
    size_t n = sizeof archs / sizeof archs[0];
    for (size_t i = 0; i + 1 < n; i++)
        if (archs[i]->claims(model_dir))
            return archs[i];
    return archs[n - 1];
}
