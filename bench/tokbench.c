/* tokbench.c - ftq_bench tokenize: whole-file encoding speed of every tokenizer loader on
 * the corpora the tokenizer suite checks for exact ids (the suite asserts the ids, this
 * reports the time: medians of --reps runs, tokens/s and MB/s, never asserted). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "include/ftq.h"

int ftq_bench_tokenize(int argc, char **argv)
{
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        long x = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
        if (strcmp(argv[i], "--reps") != 0 || i + 1 >= argc || !*argv[i + 1] || *end || x < 1 || x > 1000) {
            fprintf(stderr, "usage: ftq_bench tokenize [--reps N]  (N in 1..1000)\n");
            return 2;
        }
        reps = (int)x;
        i++;
    }
    static const struct {
        const char *name, *dir;
        ftq_tokenizer_kind kind;
    } toks[] = {
        {"gpt2", "tokenizers/gpt2", FTQ_TOKENIZER_HF_JSON},
        {"gpt2", "tokenizers/gpt2", FTQ_TOKENIZER_GPT2_FILES},
        {"llama2", "tokenizers/llama2", FTQ_TOKENIZER_SPM},
        {"llama2", "tokenizers/llama2", FTQ_TOKENIZER_HF_JSON},
        {"stories260K", "models/stories260K", FTQ_TOKENIZER_SPM},
        {"stories260K", "models/stories260K", FTQ_TOKENIZER_HF_JSON},
    };
    static const char *const files[] = {"data/wikitext-2-raw/wiki.test.raw", "data/tinystories/tinystories_sample.txt",
                                        "data/tinyshakespeare/input.txt"};
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!t)
        return 1;
    printf("%-12s %-50s %-40s %9s %9s %10s %8s\n", "tokenizer", "loader", "file", "tokens", "median s", "tokens/s",
           "MB/s");
    int rc = 0;
    for (size_t k = 0; k < sizeof toks / sizeof toks[0] && rc == 0; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/../shared/%s", FTQ_SOURCE_DIR, toks[k].dir);
        ftq_tokenizer *tk = NULL;
        if (ftq_tokenizer_load_kind(path, toks[k].kind, &tk) != FTQ_OK) {
            fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
            rc = 1;
            break;
        }
        for (size_t f = 0; f < sizeof files / sizeof files[0] && rc == 0; f++) {
            char *text = NULL;
            size_t len = 0, n = 0;
            snprintf(path, sizeof path, "%s/../shared/%s", FTQ_SOURCE_DIR, files[f]);
            if (ftq_read_file(path, &text, &len) != FTQ_OK) {
                fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
                rc = 1;
                break;
            }
            for (int r = 0; r < reps && rc == 0; r++) {
                int32_t *ids = NULL;
                double t0 = ftq_time_sec();
                rc = ftq_tokenizer_encode(tk, text, len, 0, &ids, &n);
                t[r] = ftq_time_sec() - t0;
                free(ids);
            }
            if (rc) {
                fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
            } else {
                double med = ftq_bench_median(t, reps);
                printf("%-12s %-50s %-40s %9zu %9.3f %10.0f %8.2f\n", toks[k].name, ftq_tokenizer_kind_name(tk),
                       files[f], n, med, (double)n / med, (double)len / med / 1e6);
            }
            free(text);
        }
        ftq_tokenizer_free(tk);
    }
    free(t);
    return rc;
}
