/* fuzz_tokenizer_model.c - libFuzzer target: tokenizer.model (SentencePiece protobuf,
 * ModelProto). The input is the file; if it loads, fixed samples are encoded and decoded
 * (fuzz_tok.h). */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024];
    fz_write("tokenizer.model", data, size, path, sizeof path);
    ftq_tokenizer *t = NULL;
    if (ftq_tokenizer_load_kind(fz_dir(), FTQ_TOKENIZER_SPM, &t) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    fz_tok_exercise(t, NULL, 0, 0);
    ftq_tokenizer_free(t);
    return 0;
}
