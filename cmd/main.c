/* main.c - the ftq binary: a table of subcommands (cmd/<name>.c exports cmd_<name>), and
 * the OpenMP wait policy the binary starts with (below). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "include/ftq.h"

/* libgomp's default wait policy spins an idle worker for GOMP_SPINCOUNT = 300,000 pause
 * iterations (milliseconds on this CPU) before it sleeps. On a machine whose cores are
 * shared, a spinning worker holds the core its sibling (preempted mid-region) needs, and the
 * int8 / int4 paths, which are OpenMP only, ran 5-15x slower with 2 threads than with 1
 * (OpenBLAS's workers, under the f32 matmuls, yield instead). 30,000 iterations (about a
 * millisecond) still cover the gaps between consecutive regions of one forward pass: on a
 * quiet machine two-thread generation runs as fast as with the default, while 1,000 cost
 * 24-38 % of it (SmolLM2 int8 / int4 tg: 163 / 256 tokens/s default, 172 / 270 at 30,000,
 * 124 / 160 at 1,000). libgomp reads its environment
 * once, in its own constructor (before main; a pre-initializer's setenv is undone by libc's
 * start-up), so the binary re-executes itself once with the variable set. An explicit
 * GOMP_SPINCOUNT or OMP_WAIT_POLICY wins; if the exec fails, ftq runs on as it is. */
static void set_omp_wait_default(char **argv)
{
#ifdef __linux__
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY"))
        return;
    if (setenv("GOMP_SPINCOUNT", "30000", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"info", cmd_info, "show a model's architecture, config, parameters and tensors"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"perplexity", cmd_perplexity, "measure perplexity on a text file"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"finetune", cmd_finetune, "fine-tune a model for classification or as a language model"},
    {"classify", cmd_classify, "predict labels with a sequence-classification model"},
    {"embed", cmd_embed, "sentence embeddings from a BERT encoder (sentence-transformers pooling)"},
    {"pipeline", cmd_pipeline, "the main job: fine-tune, prune, quantize, and measure every stage"},
    {"prune", cmd_prune, "prune a model's linear layers (magnitude, N:M, Wanda)"},
    {"quantize", cmd_quantize, "quantize a model to int8 / int4 weights"},
    {"merge", cmd_merge, "merge a PEFT LoRA adapter into its base model"},
    {"dequantize", cmd_dequantize, "turn a quantized model back into an ordinary HF checkpoint"},
    {"export", cmd_export, "write a model as a GGUF file for llama.cpp (f32, f16, q8_0, q4_0)"},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: ftq <command> [options]\n\n"
                "ftq loads Hugging Face checkpoints as they are (config.json + *.safetensors +\n"
                "tokenizer files) and evaluates, fine-tunes and quantizes them on the CPU.\n\n"
                "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'ftq <command> --help' or 'ftq help <command>' documents each command's flags.\n"
                "-m defaults to the shipped stories260K model (override with $FTQ_MODEL).\n"
                "$FTQ_THREADS sets the thread count (default: all cores).\n");
}

int main(int argc, char **argv)
{
    set_omp_wait_default(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("ftq %s (cpu: %s)\n", FTQ_VERSION, ftq_cpu_features_str());
        return 0;
    }
    char *help_argv[4];
    if (strcmp(name, "help") == 0) { /* 'ftq help CMD' == 'ftq CMD --help' */
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        help_argv[0] = argv[0];
        help_argv[1] = argv[2];
        help_argv[2] = "--help";
        help_argv[3] = NULL;
        argv = help_argv;
        argc = 3;
        name = argv[1];
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            cmd_init_threads();
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "ftq: error: unknown command '%s' (see 'ftq --help')\n", name);
    return 2;
}
