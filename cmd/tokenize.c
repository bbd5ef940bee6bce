/* tokenize.c - `ftq tokenize`: token ids of a text, as the model's tokenizer gives them. */
#include <stdlib.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"

int cmd_tokenize(int argc, char **argv)
{
    const char *model = default_model_dir(), *file = NULL, *text = NULL;
    int no_bos = 0, json = 0, pieces = 0;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "model directory holding the tokenizer files", 0, -1},
        {"file", 'f', OPT_STR, &file, "FILE", "tokenize the whole file", 0, -1},
        {"prompt", 'p', OPT_STR, &text, "TEXT", "tokenize TEXT", 0, -1},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "do not add BOS/EOS even if the tokenizer would", 0, -1},
        {"no-special", 0, OPT_FLAG, &no_bos, NULL, "the same: no BOS/EOS, no [CLS]/[SEP]", 0, -1},
        {"pieces", 0, OPT_FLAG, &pieces, NULL, "print 'id<TAB>piece' per line instead of the ids", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"ids\": [...], \"count\": N}", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {"tokenize", "[-m DIR] (-f FILE | -p TEXT) [--no-bos] [--json]",
                               "Print the token ids of the whole input, as Hugging Face's tokenizer for "
                               "the model gives them\n(tokenizer.json, else tokenizer.model, else "
                               "vocab.json + merges.txt, else vocab.txt);\nan encoder's [CLS] ... [SEP] "
                               "are added unless --no-special.",
                               NULL, opts};
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
    int rc = ftq_tokenizer_encode(tok, in, len, !no_bos, &ids, &n);
    if (rc != FTQ_OK) {
        rc = cmd_fail(spec.name, "%s%s%s", file ? file : "", file ? ": " : "", ftq_last_error());
    } else if (json) {
        printf("{\"ids\": ");
        json_print_ids(stdout, ids, n);
        printf(", \"count\": %zu}\n", n);
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
