/* fuzz_tokenizer_config.c - libFuzzer target: the files that set a tokenizer's special
 * tokens (tokenizer_config.json with added_tokens_decoder / add_bos_token / add_eos_token /
 * add_prefix_space, special_tokens_map.json, config.json's *_token_id). Input:
 * TOKENIZER_CONFIG [NUL SPECIAL_TOKENS_MAP [NUL CONFIG]]; a part that is absent is not
 * written. The tokenizer itself is a fixed small GPT-2 pair (vocab.json, merges.txt). */
#include "fuzz_tok.h"

static const char VOCAB[] =
    "{\"<|endoftext|>\": 0, \"a\": 1, \"b\": 2, \"c\": 3, \"\\u0120\": 4, \"ab\": 5, \"\\u0120a\": 6, \"<s>\": 7,"
    " \"</s>\": 8, \"<unk>\": 9, \"abc\": 10, \"!\": 11, \"\\u010a\": 12}";
static const char MERGES[] = "#version: 0.2\na b\n\xc4\xa0 a\nab c\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    char path[1024];
    if (!ready) {
        fz_write("vocab.json", VOCAB, strlen(VOCAB), path, sizeof path);
        fz_write("merges.txt", MERGES, strlen(MERGES), path, sizeof path);
        ready = 1;
    }
    static const char *const names[3] = {"tokenizer_config.json", "special_tokens_map.json", "config.json"};
    const uint8_t *part[3];
    size_t len[3];
    int np = fz_split(data, size, 3, part, len);
    for (int i = 0; i < 3; i++) {
        if (i < np)
            fz_write(names[i], part[i], len[i], path, sizeof path);
        else
            fz_remove(names[i]);
    }
    ftq_tokenizer *t = NULL;
    if (ftq_tokenizer_load_kind(fz_dir(), FTQ_TOKENIZER_GPT2_FILES, &t) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    fz_tok_exercise(t, NULL, 0, 0);
    ftq_tokenizer_free(t);
    return 0;
}
