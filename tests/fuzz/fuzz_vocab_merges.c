/* fuzz_vocab_merges.c - libFuzzer target: the GPT-2 file pair. Input:
 * VOCAB_JSON NUL MERGES_TXT [NUL TEXT]; both files are loaded from the scratch directory
 * (FTQ_TOKENIZER_GPT2_FILES) and, if accepted, TEXT (or fixed samples) is encoded and
 * decoded (fuzz_tok.h). */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    int np = fz_split(data, size, 3, part, len);
    char path[1024];
    fz_write("vocab.json", part[0], len[0], path, sizeof path);
    fz_write("merges.txt", part[1], len[1], path, sizeof path);
    ftq_tokenizer *t = NULL;
    if (ftq_tokenizer_load_kind(fz_dir(), FTQ_TOKENIZER_GPT2_FILES, &t) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    fz_tok_exercise(t, part[2], len[2], np > 2);
    ftq_tokenizer_free(t);
    return 0;
}
