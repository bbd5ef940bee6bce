/* tokenize.c - `ftq tokenize`: token ids of a text, as the model's tokenizer gives them. */
#include <stdio.h>
#include <stdlib.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

/* How many special tokens parsing would match in the text. */
static int count_special_text(const ftq_tokenizer *tok, const char *in, size_t len, size_t *count)
{
    int32_t *ids = NULL;
    size_t n = 0;
    *count = 0;
    int rc = ftq_tokenizer_encode_flags(tok, in, len, FTQ_ENCODE_PARSE_SPECIAL, &ids, &n);
    for (size_t i = 0; rc == FTQ_OK && i < n; i++)
        *count += ftq_tokenizer_is_special(tok, ids[i]) != 0;
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = default_model_dir(), *file = NULL, *text = NULL;
    int no_bos = 0, json = 0, pieces = 0, parse_special = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "model directory holding the tokenizer files", 0, -1},
        {"file", 'f', OPT_STR, &file, "FILE", "tokenize the whole file", 0, -1},
        {"prompt", 'p', OPT_STR, &text, "TEXT", "tokenize TEXT", 0, -1},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "do not add BOS/EOS even if the tokenizer would", 0, -1},
        {"no-special", 0, OPT_FLAG, &no_bos, NULL, "the same: no BOS/EOS, no [CLS]/[SEP]", 0, -1},
        {"parse-special", 0, OPT_FLAG, &parse_special, NULL, PARSE_SPECIAL_HELP, 0, -1},
        {"pieces", 0, OPT_FLAG, &pieces, NULL, "print 'id<TAB>piece' per line instead of the ids", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"ids\": [...], \"count\": N}", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {"tokenize", "[-m DIR] (-f FILE | -p TEXT) [--no-bos] [--parse-special] [--json]",
                               "Print the token ids of the whole input, as Hugging Face's tokenizer for "
                               "the model gives them\n(tokenizer.json, else tokenizer.model, else "
                               "vocab.json + merges.txt, else vocab.txt);\nan encoder's [CLS] ... [SEP] "
                               "are added unless --no-special.",
                               "Special-token text in the input (<|im_start|>, </s>, [SEP]) is read as plain text\n"
                               "unless --parse-special, which matches it as those tokens (HF's default); when the\n"
                               "input holds such text, a note on stderr says which was done (--json: \"parse_special\").",
                               opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    ftq_tokenizer *tok = NULL;
    if (cmd_load(spec.name, model, NULL, &tok))
        return 1;
    const char *in;
    size_t len;
    char *owned;
    if (cmd_input_text(spec.name, file, text, &in, &len, &owned)) {
        ftq_tokenizer_free(tok);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    unsigned flags = (no_bos ? 0u : FTQ_ENCODE_ADD_SPECIAL) | (parse_special ? FTQ_ENCODE_PARSE_SPECIAL : 0u);
    int rc = ftq_tokenizer_encode_flags(tok, in, len, flags, &ids, &n);
    size_t n_special = 0; /* special-token texts in the input: what parsing them finds */
    if (rc == FTQ_OK)
        rc = count_special_text(tok, in, len, &n_special);
    if (rc == FTQ_OK && n_special)
        fprintf(stderr, "ftq tokenize: %zu special-token text%s in the input %s\n", n_special,
                n_special == 1 ? "" : "s",
                parse_special ? "matched as special tokens (--parse-special)"
                              : "read as plain text (--parse-special matches them as special tokens)");
    if (rc != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s%s%s", file ? file : "", file ? ": " : "", ftq_last_error());
    } else if (json) {
        printf("{\"ids\": ");
        json_print_ids(stdout, ids, n);
        printf(", \"count\": %zu, \"parse_special\": %s, \"special_texts\": %zu}\n", n,
               parse_special ? "true" : "false", n_special);
    } else if (pieces) {
        for (size_t i = 0; i < n; i++) {
            const char *pc = ftq_tokenizer_piece(tok, ids[i]);
            printf("%d\t", (int)ids[i]);
            json_print_string(stdout, pc ? pc : "");
            putchar('\n');
        }
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", (int)ids[i]);
        putchar('\n');
    }
    free(ids);
    free(owned);
    ftq_tokenizer_free(tok);
    return rc;
}
