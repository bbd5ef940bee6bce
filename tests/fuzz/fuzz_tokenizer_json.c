/* fuzz_tokenizer_json.c - libFuzzer target: tokenizer.json (HF tokenizers). Input:
 * TOKENIZER_JSON [NUL TEXT]; the file is loaded from the scratch directory and, if
 * accepted, TEXT (or fixed samples) is encoded and decoded (fuzz_tok.h). */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[2];
    size_t len[2];
    int np = fz_split(data, size, 2, part, len);
    char path[1024];
    fz_write("tokenizer.json", part[0], len[0], path, sizeof path);
    ftq_tokenizer *t = NULL;
    if (ftq_tokenizer_load_kind(fz_dir(), FTQ_TOKENIZER_HF_JSON, &t) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    fz_tok_exercise(t, part[1], len[1], np > 1);
    ftq_tokenizer_free(t);
    return 0;
}
