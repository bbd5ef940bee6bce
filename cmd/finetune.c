/* finetune.c - `ftq finetune`: fine-tune a checkpoint for sequence classification or as a
 * causal LM and write an HF-loadable model directory. Option consistency is checked (and
 * reported by flag name) before anything is loaded; the trainer validates against the
 * model and data before anything is written. SIGINT saves a checkpoint and exits 130.
 * Under `mpirun -np N` the same command is one rank of a data-parallel run
 * (docs/distributed.md): rank 0 prints; another rank speaks only when it failed first. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/common.h"
#include "cmd/opts.h"
#include "include/ftq_dist.h"

static volatile sig_atomic_t stop_flag;
static FILE *rank_err; /* ranks other than 0: their stderr (stdout and stderr go to /dev/null) */

/* A trainer failure: distributed, only the rank that failed first reports it (the others
 * stopped because of it, or failed alike). */
static int fail_run(const char *name)
{
    int who = ftq_dist_failed_rank(), me = ftq_dist_rank();
    if (ftq_dist_size() == 1)
        return cmd_fail(name, "%s", ftq_last_error());
    if (who >= 0 ? who != me : me != 0)
        return 1;
    fprintf(rank_err ? rank_err : stderr, "ftq %s: error: rank %d of %d: %s\n", name, me, ftq_dist_size(),
            ftq_last_error());
    return 1;
}

static void on_sigint(int sig)
{
    (void)sig;
    stop_flag = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

/* 1 if --name (or --name=...) appears among the arguments. */
static int given(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == '-' && strncmp(argv[i] + 2, name, n) == 0 &&
            (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
            return 1;
    return 0;
}

static void fmt_duration(double s, char *buf, size_t cap)
{
    long v = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (v >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", v / 60, v % 60);
}

typedef struct {
    int json, tty;
    int64_t every; /* non-TTY: a line every N steps */
} progress_ctx;

static int on_progress(void *user, const ftq_train_progress *p)
{
    progress_ctx *pc = user;
    if (p->event == FTQ_TRAIN_EVENT_CLEANUP) { /* said in --json mode too: it is on stderr */
        fprintf(stderr, "removed '%s': left by a run that was killed while writing it\n", p->path);
        return 0;
    }
    if (pc->json)
        return 0;
    char eta[32], label[160];
    if (p->event == FTQ_TRAIN_EVENT_STEP) {
        fmt_duration(p->eta, eta, sizeof eta);
        snprintf(label, sizeof label, "epoch %.2f loss %.4f lr %.2e %s tok/s ETA %s", p->epoch, p->loss, p->lr,
                 fmt_count((long long)llround(p->tokens_per_second)), eta);
        if (pc->tty)
            progress_bar((int)p->step, (int)p->total_steps, label);
        else if (p->step % pc->every == 0 || p->step == p->total_steps)
            fprintf(stderr, "step %lld/%lld %s\n", (long long)p->step, (long long)p->total_steps, label);
    } else if (p->event == FTQ_TRAIN_EVENT_EVAL) {
        progress_done();
        if (!isnan(p->accuracy))
            fprintf(stderr, "step %lld: dev accuracy %.4f, macro-F1 %.4f, loss %.4f\n", (long long)p->step,
                    p->accuracy, p->macro_f1, p->dev_loss);
        else
            fprintf(stderr, "step %lld: dev loss %.4f, perplexity %.4f\n", (long long)p->step, p->dev_loss,
                    p->dev_ppl);
    } else if (p->event == FTQ_TRAIN_EVENT_SAVE) {
        progress_done();
        fprintf(stderr, "step %lld: saved %s\n", (long long)p->step, p->path);
    }
    return 0;
}

static void print_num(const char *key, double v)
{
    if (isfinite(v))
        printf(", \"%s\": %.6g", key, v);
    else
        printf(", \"%s\": null", key);
}

static int finetune_main(int argc, char **argv)
{
    const char *model = default_model_dir(), *data = NULL, *dev = NULL, *output = NULL, *task_s = "classify",
               *mode_s = "full", *text_col = NULL, *label_col = NULL, *init = "pretrained", *resume = NULL,
               *log = NULL, *schedule_s = "linear", *pool = NULL, *text2_col = NULL,
               *precision_s = "fp32";
    int freeze = -1, epochs = 3, batch = 0, seq = 0, accum = 1, json = 0, skip_bad = 0, parse_special = 0;
    int save_every = 0, eval_every = 0, max_steps = 0, warmup = 0, limit = 0, dev_limit = 0;
    double lr = -1, weight_decay = 0.0, max_grad_norm = 1.0, warmup_ratio = 0.0, beta1 = 0.9, beta2 = 0.999,
           adam_eps = 1e-8;
    uint64_t seed = 42;
    int lora_r = 8, rslora = 0, keep_quant = 0;
    double lora_alpha = 8, lora_dropout = 0;
    const char *lora_targets = NULL;
    const ftq_opt opts[] = {
        {"model", 'm', OPT_STR, &model, "DIR", "source checkpoint (config.json + safetensors + tokenizer)", 0, -1},
        {"data", 'd', OPT_STR, &data, "TRAIN", "training data: .csv/.tsv/.jsonl rows, or plain text for --task lm; "
                                               "FILE or ARCHIVE:MEMBER", 0, -1},
        {"dev", 0, OPT_STR, &dev, "DEV", "dev set (classify: labeled rows; lm: text, default the last 10% of TRAIN)", 0, -1},
        {"output", 'o', OPT_STR, &output, "OUTDIR", "output model directory (default ./<model>-finetuned-<task>, or the parent of --resume)", 0, -1},
        {"task", 0, OPT_STR, &task_s, "TASK", "classify | lm", 0, -1},
        {"mode", 0, OPT_STR, &mode_s, "MODE", "full | frozen (first K blocks + embeddings frozen) | head (only the "
                                              "classification head) | lora (adapters on a frozen base; output: a "
                                              "PEFT adapter directory)", 0, -1},
        {"lora-r", 0, OPT_INT, &lora_r, "R", "--mode lora: adapter rank", 1, 4096},
        {"lora-alpha", 0, OPT_FLOAT, &lora_alpha, "A", "--mode lora: scaling alpha / r (default 8)", 1e-30, 1e30},
        {"lora-dropout", 0, OPT_FLOAT, &lora_dropout, "P", "--mode lora: dropout on the adapter input", 0, 0.999},
        {"lora-targets", 0, OPT_STR, &lora_targets, "LIST", "--mode lora: modules (q_proj,k_proj,v_proj,o_proj,"
                                                         "gate_proj,up_proj,down_proj; GPT-2 c_attn,c_proj,c_fc) or "
                                                         "all-linear (default: PEFT's, q_proj,v_proj / c_attn)", 0, -1},
        {"rslora", 0, OPT_FLAG, &rslora, NULL, "--mode lora: scaling alpha / sqrt(r) (rsLoRA)", 0, -1},
        {"keep-quant", 0, OPT_FLAG, &keep_quant, NULL, "--mode lora on a GGUF: keep its Q8_0 / Q4_0 / Q4_1 matrices as "
         "int8 / int4 / q4m (QLoRA; an ftq int8 / int4 directory always is)", 0, -1},
        {"freeze-layers", 0, OPT_INT, &freeze, "K", "blocks to freeze with --mode frozen (-1: half of them)", -1, 1 << 20},
        {"epochs", 0, OPT_INT, &epochs, "E", "passes over the training data", 1, 1 << 20},
        {"max-steps", 0, OPT_INT, &max_steps, "N", "optimizer steps instead of --epochs (0 = use --epochs)", 0, 1 << 30},
        {"lr", 0, OPT_FLOAT, &lr, "LR", "peak learning rate (default 5e-5; encoders with --mode head 1e-3)", 0, 1e300},
        {"schedule", 0, OPT_STR, &schedule_s, "NAME", "constant | linear | cosine (after warmup)", 0, -1},
        {"warmup", 0, OPT_INT, &warmup, "N", "warmup steps (lr rises linearly from 0)", 0, 1 << 30},
        {"warmup-ratio", 0, OPT_FLOAT, &warmup_ratio, "R", "warmup as a fraction of the total steps", 0, 1},
        {"weight-decay", 0, OPT_FLOAT, &weight_decay, "WD", "AdamW decoupled weight decay (never on norms, biases, "
                                                            "embeddings)", 0, 1e6},
        {"adam-beta1", 0, OPT_FLOAT, &beta1, "B1", "AdamW beta1", 0, 0.999999},
        {"adam-beta2", 0, OPT_FLOAT, &beta2, "B2", "AdamW beta2", 0, 0.999999999},
        {"adam-epsilon", 0, OPT_FLOAT, &adam_eps, "EPS", "AdamW epsilon", 1e-30, 1},
        {"max-grad-norm", 0, OPT_FLOAT, &max_grad_norm, "N", "clip the global gradient norm (0 = off)", 0, 1e30},
        {"batch", 0, OPT_INT, &batch, "B", "rows (or blocks) per micro-batch; also the eval batch (default 8; "
                                            "encoders 32)", 1, 1 << 16},
        {"grad-accum", 0, OPT_INT, &accum, "K", "micro-batches per optimizer step", 1, 1 << 16},
        {"seq", 0, OPT_INT, &seq, "T", "max tokens per row / LM block length (0 = min(128, model positions))", 0, 1 << 24},
        {"seed", 0, OPT_U64, &seed, "S", "seed for the new head, --init random and shuffling", 0, -1},
        {"precision", 0, OPT_STR, &precision_s, "P", "fp32 | bf16 (mixed precision: bf16 matmuls with fp32 "
                                                       "accumulation, fp32 master weights; not with --mode lora)", 0, -1},
        {"init", 0, OPT_STR, &init, "HOW", "pretrained | random (HF _init_weights, for from-scratch baselines)", 0, -1},
        {"text-col", 0, OPT_STR, &text_col, "NAME", "text column (default: text, else sentence)", 0, -1},
        {"text2-col", 0, OPT_STR, &text2_col, "NAME", "second text of a sentence pair (encoders: [CLS] A [SEP] B "
                                                    "[SEP])", 0, -1},
        {"pool", 0, OPT_STR, &pool, "HOW", "encoders: pooler ([CLS] through the pooler, as HF; default) | mean | cls",
         0, -1},
        {"label-col", 0, OPT_STR, &label_col, "NAME", "label column (default: label)", 0, -1},
        {"parse-special", 0, OPT_FLAG, &parse_special, NULL, PARSE_SPECIAL_HELP, 0, -1},
        {"skip-bad-rows", 0, OPT_FLAG, &skip_bad, NULL, "skip malformed rows instead of stopping at the first", 0, -1},
        {"limit", 0, OPT_INT, &limit, "N", "use only the first N training rows (lm: blocks); 0 = all", 0, 1 << 30},
        {"dev-limit", 0, OPT_INT, &dev_limit, "N", "use only the first N dev rows (lm: blocks); 0 = all", 0, 1 << 30},
        {"eval-every", 0, OPT_INT, &eval_every, "N", "evaluate on the dev set every N steps (0 = at the end)", 0, 1 << 30},
        {"save-every", 0, OPT_INT, &save_every, "N", "write OUTDIR/checkpoint-STEP every N steps (0 = never)", 0, 1 << 30},
        {"resume", 0, OPT_STR, &resume, "DIR", "continue from OUTDIR/checkpoint-STEP (same arguments)", 0, -1},
        {"log", 0, OPT_STR, &log, "FILE", "JSON-lines metrics log: one object per step and per evaluation", 0, -1},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON summary object at the end", 0, -1},
        OPT_END,
    };
    const ftq_cmd_spec spec = {
        "finetune",
        "[-m DIR] -d TRAIN [--dev DEV] [-o OUTDIR] [--task classify|lm] [--mode full|frozen|head|lora] "
        "[--epochs E | --max-steps N] [--lr LR] [--batch B] [--seq T] [--json]",
        "Fine-tune a checkpoint on the CPU and write a Hugging Face model directory (model.safetensors,\n"
        "config.json, tokenizer files) that ftq and transformers load.",
        "Tasks:\n"
        "  classify  labeled rows (text and label columns). Decoders: a head `score` [labels, hidden]\n"
        "            on the last token (LlamaForSequenceClassification / GPT2ForSequenceClassification),\n"
        "            rows right-padded with pad_token_id (else EOS). BERT encoders: [CLS] A [SEP]\n"
        "            (pairs with --text2-col) pooled by --pool into `classifier`\n"
        "            (BertForSequenceClassification); --mode head trains it on features computed once.\n"
        "            Rows longer than --seq are truncated and counted.\n"
        "  lm        plain text (documents = blank-line separated paragraphs, or rows of a table),\n"
        "            each with BOS as the tokenizer adds it and EOS after, packed into blocks of --seq\n"
        "            tokens; dev loss / perplexity (exp of the mean token NLL over the dev blocks)\n"
        "            before and after.\n"
        "Defaults follow Hugging Face's Trainer; an optimizer step is --grad-accum micro-batches.\n"
        "Training is bit-for-bit reproducible for a seed and thread count ($FTQ_THREADS).\n"
        "Ctrl-C saves OUTDIR/checkpoint-STEP and exits 130; --resume it with the same arguments\n"
        "to finish with exactly the weights of an uninterrupted run. See docs/finetune.md.\n"
        "Under `mpirun -np N` the same command trains data-parallel on N processes: --batch is\n"
        "the global batch, rank 0 writes; see docs/distributed.md.",
        opts};
    int r = opts_parse(&spec, argc, argv);
    if (r)
        return r < 0 ? 2 : 0;
    if (opts_require(&spec, "data", data))
        return 2;

    ftq_train_config c = ftq_train_default_config();
    if (strcmp(task_s, "classify") == 0)
        c.task = FTQ_TASK_CLASSIFY;
    else if (strcmp(task_s, "lm") == 0)
        c.task = FTQ_TASK_LM;
    else
        return cmd_fail(spec.name, "unknown --task '%s' (expected classify or lm)", task_s) + 1;
    if (strcmp(mode_s, "full") == 0)
        c.mode = FTQ_TRAIN_FULL;
    else if (strcmp(mode_s, "frozen") == 0)
        c.mode = FTQ_TRAIN_FROZEN;
    else if (strcmp(mode_s, "head") == 0)
        c.mode = FTQ_TRAIN_HEAD;
    else if (strcmp(mode_s, "lora") == 0)
        c.mode = FTQ_TRAIN_LORA;
    else
        return cmd_fail(spec.name, "unknown --mode '%s' (expected full, frozen, head or lora)", mode_s) + 1;
    static const char *const lora_flags[] = {"lora-r", "lora-alpha", "lora-dropout", "lora-targets", "rslora",
                                             "keep-quant"};
    for (size_t i = 0; i < sizeof lora_flags / sizeof lora_flags[0]; i++)
        if (given(argc, argv, lora_flags[i]) && c.mode != FTQ_TRAIN_LORA)
            return cmd_fail(spec.name, "--%s needs --mode lora (mode is %s)", lora_flags[i], mode_s) + 1;
    c.lora.r = lora_r;
    c.lora.alpha = lora_alpha;
    c.lora.dropout = lora_dropout;
    c.lora.targets = lora_targets;
    c.lora.rslora = rslora;
    c.keep_quant = keep_quant;
    if (ftq_precision_from_name(precision_s, &c.precision) != FTQ_OK)
        return cmd_fail(spec.name, "unknown --precision '%s' (expected fp32 or bf16)", precision_s) + 1;
    if (c.precision == FTQ_PRECISION_BF16 && c.mode == FTQ_TRAIN_LORA)
        return cmd_fail(spec.name, "--precision bf16 does not apply to --mode lora yet (the frozen base runs in "
                                   "fp32 or on the quantized kernels); use --precision fp32") + 1;
    if (ftq_schedule_from_name(schedule_s, &c.schedule) != FTQ_OK)
        return cmd_fail(spec.name, "unknown --schedule '%s' (expected constant, linear or cosine)", schedule_s) + 1;
    if (strcmp(init, "pretrained") != 0 && strcmp(init, "random") != 0)
        return cmd_fail(spec.name, "unknown --init '%s' (expected pretrained or random)", init) + 1;
    if (c.mode == FTQ_TRAIN_HEAD && c.task == FTQ_TASK_LM)
        return cmd_fail(spec.name, "--mode head trains only a classification head; it needs --task classify") + 1;
    if (given(argc, argv, "freeze-layers") && c.mode != FTQ_TRAIN_FROZEN)
        return cmd_fail(spec.name, "--freeze-layers needs --mode frozen (mode is %s)", mode_s) + 1;
    if (given(argc, argv, "epochs") && given(argc, argv, "max-steps"))
        return cmd_fail(spec.name, "give --epochs or --max-steps, not both") + 1;
    if (given(argc, argv, "warmup") && given(argc, argv, "warmup-ratio"))
        return cmd_fail(spec.name, "give --warmup or --warmup-ratio, not both") + 1;
    if (eval_every > 0 && c.task == FTQ_TASK_CLASSIFY && !dev)
        return cmd_fail(spec.name, "--eval-every needs --dev for --task classify") + 1;
    if (dev_limit > 0 && !dev && c.task == FTQ_TASK_CLASSIFY)
        return cmd_fail(spec.name, "--dev-limit needs --dev") + 1;
    if (resume && !ftq_is_dir(resume))
        return cmd_fail(spec.name, "cannot resume from '%s': not a directory (--resume)", resume) + 1;

    /* checks against a decoder's config (a GGUF file's metadata), named by flag (the trainer
     * checks every family) */
    ftq_model_config mc;
    int st = cmd_model_config(model, &mc);
    if (st == FTQ_OK) {
        if (mc.max_position > 0 && seq > mc.max_position)
            return cmd_fail(spec.name, "--seq %d exceeds the model's %d positions", seq, mc.max_position) + 1;
        if (freeze > mc.n_layers)
            return cmd_fail(spec.name, "--freeze-layers %d exceeds the model's %d layers", freeze, mc.n_layers) + 1;
    }
    ftq_clear_error();

    char default_out[4096];
    if (!output && resume) { /* continue in the directory that holds the checkpoint */
        size_t n = strlen(resume);
        while (n > 1 && resume[n - 1] == '/')
            n--;
        while (n > 0 && resume[n - 1] != '/')
            n--;
        if (n == 0) /* "checkpoint-4": the current directory */
            snprintf(default_out, sizeof default_out, ".");
        else /* "out/checkpoint-4" -> "out", "/checkpoint-4" -> "/" */
            snprintf(default_out, sizeof default_out, "%.*s", n > 1 ? (int)n - 1 : 1, resume);
        output = default_out;
    }
    if (!output) {
        const char *base = strrchr(model, '/');
        base = base && base[1] ? base + 1 : model;
        size_t bl = strlen(base);
        while (bl > 1 && base[bl - 1] == '/')
            bl--;
        snprintf(default_out, sizeof default_out, "%.*s-finetuned-%s", (int)bl, base, task_s);
        output = default_out;
    }
    if (ftq_is_file(output))
        return cmd_fail(spec.name, "output '%s' is a file, not a directory (-o)", output);

    c.model_dir = model;
    c.train_source = data;
    c.dev_source = dev;
    c.output_dir = output;
    c.resume_dir = resume;
    c.log_path = log;
    c.text_col = text_col;
    c.label_col = label_col;
    c.text2_col = text2_col;
    c.pool = pool;
    c.skip_bad_rows = skip_bad;
    c.parse_special = parse_special;
    c.limit = limit;
    c.dev_limit = dev_limit;
    c.freeze_layers = freeze;
    c.init_random = strcmp(init, "random") == 0;
    c.lr = lr;
    c.warmup_steps = warmup;
    c.warmup_ratio = warmup_ratio;
    c.weight_decay = weight_decay;
    c.beta1 = beta1;
    c.beta2 = beta2;
    c.eps = adam_eps;
    c.max_grad_norm = max_grad_norm;
    c.epochs = epochs;
    c.max_steps = max_steps;
    c.batch_size = batch;
    c.grad_accum = accum;
    c.seq_len = seq;
    c.seed = seed;
    c.eval_every = eval_every;
    c.save_every = save_every;
    progress_ctx pc = {json, isatty(STDERR_FILENO), 1};
    c.progress = on_progress;
    c.progress_user = &pc;
    c.stop = &stop_flag;

    ftq_trainer *t = NULL;
    if (ftq_trainer_new(&c, &t) != FTQ_OK)
        return fail_run(spec.name);
    const ftq_train_plan *pl = ftq_trainer_plan(t);
    pc.every = pl->total_steps / 20 > 0 ? pl->total_steps / 20 : 1;
    if (!json) {
        fprintf(stderr, "%s %s (%s) on %s %s (%s trainable parameters), seq %d, batch %d x %d, %s steps%s, lr %g "
                "(%s, warmup %lld)\n",
                c.task == FTQ_TASK_LM ? "lm" : "classify", mode_s, pl->arch, fmt_count(pl->train_examples),
                c.task == FTQ_TASK_LM ? "blocks" : "rows", fmt_count((long long)pl->n_trainable), pl->seq_len,
                pl->batch_size, accum, fmt_count(pl->total_steps),
                pl->start_step ? " (resumed)" : "", pl->lr, schedule_s, (long long)pl->warmup_steps);
        if (pl->checkpoint_threads && pl->checkpoint_threads != ftq_get_threads())
            fprintf(stderr, "warning: the checkpoint was trained with %d threads, this run uses %d: the result "
                    "will not be bit-identical to an uninterrupted run (set FTQ_THREADS=%d)\n",
                    pl->checkpoint_threads, ftq_get_threads(), pl->checkpoint_threads);
        if (pl->truncated || pl->dev_truncated)
            fprintf(stderr, "truncated to %d tokens: %lld of %lld training rows, %lld of %lld dev rows\n",
                    pl->seq_len, (long long)pl->truncated, (long long)pl->train_examples,
                    (long long)pl->dev_truncated, (long long)pl->dev_examples);
        if (pl->bad_rows)
            fprintf(stderr, "skipped %lld bad row%s\n", (long long)pl->bad_rows, pl->bad_rows == 1 ? "" : "s");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL); /* what mpirun forwards to every rank (kill -USR1 <mpirun>) */
    ftq_train_result res;
    st = ftq_trainer_run(t, &res);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    progress_done();
    int rc = 0;
    if (st == FTQ_EINTERRUPTED) {
        fprintf(stderr, "ftq finetune: %s (continue with --resume '%s')\n", ftq_last_error(),
                res.checkpoint ? res.checkpoint : "");
        rc = 130;
        goto out;
    }
    if (st != FTQ_OK) {
        rc = fail_run(spec.name);
        goto out;
    }
    if (json) {
        printf("{\"task\": \"%s\", \"mode\": \"%s\", \"arch\": \"%s\", \"steps\": %lld",
               c.task == FTQ_TASK_LM ? "lm" : "classify", mode_s, pl->arch, (long long)res.steps);
        print_num("epochs", res.epochs);
        print_num("final_loss", res.final_loss);
        print_num("train_loss", res.train_loss);
        printf(", \"train_examples\": %lld, \"dev_examples\": %lld", (long long)pl->train_examples,
               (long long)res.dev_examples);
        if (c.task == FTQ_TASK_CLASSIFY && res.has_dev) {
            print_num("accuracy", res.dev.accuracy);
            print_num("macro_f1", res.dev.macro_f1);
            printf(", \"confusion\": ");
            print_confusion_json(stdout, &res.dev);
        } else {
            printf(", \"accuracy\": null, \"macro_f1\": null, \"confusion\": null");
        }
        if (c.task == FTQ_TASK_CLASSIFY) {
            printf(", \"labels\": [");
            for (int i = 0; i < pl->num_labels; i++) {
                printf("%s", i ? ", " : "");
                json_print_string(stdout, pl->label_names[i]);
            }
            printf("]");
        }
        print_num("dev_loss_before", res.dev_loss_before);
        print_num("dev_loss_after", res.dev_loss_after);
        print_num("ppl_before", res.ppl_before);
        print_num("ppl_after", res.ppl_after);
        print_num("tokens_per_second", res.tokens_per_second);
        printf(", \"train_tokens\": %lld, \"truncated\": %lld, \"dev_truncated\": %lld, \"peak_rss_bytes\": %zu",
               (long long)res.train_tokens, (long long)res.truncated, (long long)res.dev_truncated,
               res.peak_rss_bytes);
        print_num("seconds", res.seconds);
        print_num("train_seconds", res.train_seconds);
        printf(", \"trainable_parameters\": %zu, \"parameters\": %zu, \"seq\": %d, \"batch\": %d, \"grad_accum\": %d"
               ", \"resumed_from_step\": %lld, \"threads\": %d, \"output_dir\": ",
               pl->n_trainable, pl->n_params, pl->seq_len, pl->batch_size, accum, (long long)pl->start_step, ftq_get_threads());
        json_print_string(stdout, res.output_dir);
        printf("}\n");
    } else {
        printf("trained %lld steps (%.2f epochs) in %.1f s: %s tokens/s, peak RSS %s MB\n", (long long)res.steps,
               res.epochs, res.seconds, fmt_count((long long)llround(res.tokens_per_second)),
               fmt_count((long long)(res.peak_rss_bytes >> 20)));
        printf("train loss %.4f (last step %.4f)\n", res.train_loss, res.final_loss);
        if (c.task == FTQ_TASK_CLASSIFY && res.has_dev) {
            printf("dev: accuracy %.4f, macro-F1 %.4f (%lld rows)\n", res.dev.accuracy, res.dev.macro_f1,
                   (long long)res.dev.n);
            print_confusion_text(stdout, &res.dev, pl->label_names);
        } else if (c.task == FTQ_TASK_LM && res.has_dev) {
            printf("dev perplexity %.4f -> %.4f (loss %.4f -> %.4f, %lld blocks of %d)\n", res.ppl_before,
                   res.ppl_after, res.dev_loss_before, res.dev_loss_after, (long long)res.dev_examples, pl->seq_len);
        }
        printf("saved %s\n", res.output_dir);
    }
out:
    ftq_train_result_free(&res);
    ftq_trainer_free(t);
    return rc;
}

/* One rank of `mpirun -np N ftq finetune ...`, or the whole run alone. */
int cmd_finetune(int argc, char **argv)
{
    if (ftq_dist_init(&argc, &argv) != FTQ_OK)
        return cmd_fail("finetune", "%s", ftq_last_error());
    if (ftq_dist_size() > 1) {
        if (!getenv("FTQ_THREADS")) { /* the node's cores shared among its ranks */
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            long n = cores > 0 ? cores / ftq_dist_local_size() : 1;
            ftq_set_threads(n > 0 ? (int)n : 1);
        }
        if (ftq_dist_rank() != 0) {
            int fd = dup(STDERR_FILENO);
            rank_err = fd >= 0 ? fdopen(fd, "w") : NULL;
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
                rank_err = rank_err ? rank_err : stderr;
        }
    }
    int rc = finetune_main(argc, argv);
    if (rank_err) {
        fclose(rank_err);
        rank_err = NULL;
    }
    ftq_dist_finalize();
    return rc;
}
