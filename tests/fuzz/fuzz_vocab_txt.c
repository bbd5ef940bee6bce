/* fuzz_vocab_txt.c - libFuzzer target: BERT WordPiece vocab.txt (one token per line, the
 * line number is the id) with an optional tokenizer_config.json (do_lower_case, ...). Input:
 * VOCAB_TXT [NUL TOKENIZER_CONFIG [NUL TEXT]]; loaded from the scratch directory as
 * FTQ_TOKENIZER_VOCAB_TXT and, if accepted, TEXT (or fixed samples) is encoded and decoded
 * (fuzz_tok.h), and TEXT cut in two is encoded as a pair. */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    int np = fz_split(data, size, 3, part, len);
    char path[1024];
    fz_write("vocab.txt", part[0], len[0], path, sizeof path);
    if (np > 1)
        fz_write("tokenizer_config.json", part[1], len[1], path, sizeof path);
    else
        fz_remove("tokenizer_config.json");
    ftq_tokenizer *t = NULL;
    if (ftq_tokenizer_load_kind(fz_dir(), FTQ_TOKENIZER_VOCAB_TXT, &t) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    fz_tok_exercise(t, part[2], len[2], np > 2);
    size_t n = len[2] < FZ_MAX_TEXT ? len[2] : FZ_MAX_TEXT, half = n / 2;
    int32_t *ids = NULL, *types = NULL;
    size_t nids = 0;
    for (int special = 0; special < 2; special++) {
        if (ftq_tokenizer_encode_pair(t, (const char *)part[2], half, (const char *)part[2] + half, n - half, special,
                                      &ids, &types, &nids) == FTQ_OK) {
            for (size_t i = 0; i < nids; i++)
                if (ids[i] < 0 || ids[i] >= ftq_tokenizer_vocab_size(t) || types[i] < 0 || types[i] > 1)
                    __builtin_trap();
            free(ids);
            free(types);
        }
        ids = types = NULL;
    }
    ftq_tokenizer_free(t);
    return 0;
}
