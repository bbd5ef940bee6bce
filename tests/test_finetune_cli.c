/* test_finetune_cli.c - `ftq finetune` and `ftq classify` end to end: help, the one-line
 * error contract for impossible options and bad data (and no output directory left behind),
 * a run whose output `ftq classify` loads, exact resume through the CLI, the NaN stop, and
 * Ctrl-C (exit 130 with a checkpoint). Data are a few dozen SST-2 rows copied to a temp dir. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test_util.h"

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

/* A work dir with train.tsv (48 rows), dev.tsv (40 rows) of SST-2. Returns a static copy. */
static const char *workdir(const char *name)
{
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s", test_tmpdir(name));
    CU_ASSERT_EQUAL(sh("head -n 49 '%s' > '%s/train.tsv'", shared_path("data/sst2/train.tsv"), dir), 0);
    CU_ASSERT_EQUAL(sh("head -n 41 '%s' > '%s/dev.tsv'", shared_path("data/sst2/dev.tsv"), dir), 0);
    return dir;
}

static void test_help(void)
{
    const char *cmds[] = {"finetune", "classify"};
    for (int i = 0; i < 2; i++) {
        char *a = NULL, *b = NULL, *e1 = NULL, *e2 = NULL, args[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        CU_ASSERT_EQUAL(ftq_run(args, &a, &e1), 0);
        snprintf(args, sizeof args, "help %s", cmds[i]);
        CU_ASSERT_EQUAL(ftq_run(args, &b, &e2), 0);
        CU_ASSERT_STRING_EQUAL(a, b);
        CU_ASSERT_PTR_NOT_NULL(strstr(a, "--json"));
        if (i == 0) {
            const char *flags[] = {"--model", "--data", "--dev", "--output", "--task", "--mode", "--freeze-layers",
                                   "--epochs", "--max-steps", "--lr", "--batch", "--seq", "--grad-accum", "--seed",
                                   "--text-col", "--label-col", "--init", "--save-every", "--resume", "--log",
                                   "--schedule", "--warmup", "--warmup-ratio", "--weight-decay", "--max-grad-norm",
                                   "--skip-bad-rows", "--eval-every", "--limit", "--dev-limit"};
            for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
                if (!strstr(a, flags[k])) {
                    fprintf(stderr, "\n  finetune --help lacks %s", flags[k]);
                    CU_FAIL("flag missing from help");
                }
        }
        free(a);
        free(b);
        free(e1);
        free(e2);
    }
    char *out = NULL, *err = NULL;
    CU_ASSERT_EQUAL(ftq_run("--help", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "finetune"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "classify"));
    free(out);
    free(err);
}

static void test_impossible_options(void)
{
    const char *w = workdir("ftcli_opts");
    char base[8400], out[4300], args[16384];
    snprintf(out, sizeof out, "%s/out", w);
    snprintf(base, sizeof base, "finetune -m '%s' -d '%s/train.tsv' -o '%s'", shared_path("models/stories260K"), w, out);
    const struct {
        const char *extra, *phrase;
    } cases[] = {
        {"--mode head --task lm", "--mode head"},
        {"--mode frozen --freeze-layers 9", "--freeze-layers 9"},
        {"--freeze-layers 1", "--freeze-layers needs --mode frozen"},
        {"--epochs 2 --max-steps 3", "not both"},
        {"--batch 0", "--batch"},
        {"--seq 100000", "--seq 100000"},
        {"--task regression", "--task"},
        {"--mode partial", "--mode"},
        {"--schedule exp", "--schedule"},
        {"--init zeros", "--init"},
        {"--warmup 3 --warmup-ratio 0.1", "not both"},
        {"--lr abc", "--lr"},
        {"--eval-every 5", "--eval-every needs --dev"},
        {"--resume /nonexistent/checkpoint-3", "/nonexistent/checkpoint-3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "%s %s", base, cases[i].extra);
        ftq_expect_error(args, cases[i].phrase, out);
    }
    /* missing -d */
    snprintf(args, sizeof args, "finetune -m '%s' -o '%s'", shared_path("models/stories260K"), out);
    ftq_expect_error(args, "--data", out);
}

static void test_bad_data(void)
{
    const char *w = workdir("ftcli_data");
    char dir[4200], out[4300], args[16384];
    snprintf(dir, sizeof dir, "%s", w);
    snprintf(out, sizeof out, "%s/out", dir);
    const char *model = shared_path("models/stories260K");
    /* a dev label that the training set does not have */
    CU_ASSERT_EQUAL(sh("printf 'sentence\\tlabel\\ngood\\tpos\\nbad\\tneg\\n' > '%s/t.tsv'; "
                       "printf 'sentence\\tlabel\\nfine\\tpos\\nhmm\\tmaybe\\n' > '%s/d.tsv'", dir, dir), 0);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/t.tsv' --dev '%s/d.tsv' -o '%s' --max-steps 1", model, dir,
             dir, out);
    ftq_expect_error(args, "maybe", out);
    /* a malformed CSV row, named by line */
    CU_ASSERT_EQUAL(sh("printf 'text,label\\ngood movie,1\\nbad,movie,0\\n' > '%s/bad.csv'%s", dir, ""), 0);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/bad.csv' -o '%s' --max-steps 1", model, dir, out);
    ftq_expect_error(args, ":3", out);
    /* ... which --skip-bad-rows skips and counts */
    char *o = NULL, *e = NULL;
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/bad.csv' -o '%s/skip' --max-steps 1 --skip-bad-rows", model,
             dir, dir);
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "skipped 1 bad row"));
    free(o);
    free(e);
    /* a single label is refused */
    CU_ASSERT_EQUAL(sh("printf 'text,label\\ngood movie,pos\\nfine,pos\\n' > '%s/one.csv'%s", dir, ""), 0);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/one.csv' -o '%s' --max-steps 1", model, dir, out);
    ftq_expect_error(args, "at least 2", out);
    /* a model directory without tokenizer files */
    char nt[4300];
    snprintf(nt, sizeof nt, "%s/notok", dir);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/config.json' '%s/model.safetensors' '%s/'", nt, model, model, nt);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/train.tsv' -o '%s' --max-steps 1", nt, dir, out);
    ftq_expect_error(args, "tokenizer", out);
    /* a missing training file */
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/nope.tsv' -o '%s'", model, dir, out);
    ftq_expect_error(args, "nope.tsv", out);
    /* a label out of range for a model that already has a 2-label head */
    char cls[4300];
    snprintf(cls, sizeof cls, "%s/cls", dir);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/train.tsv' -o '%s' --max-steps 1 --json", model, dir, cls);
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    free(o);
    free(e);
    CU_ASSERT_EQUAL(sh("printf 'sentence\\tlabel\\ngood\\t1\\nbad\\t7\\n' > '%s/r.tsv'%s", dir, ""), 0);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/r.tsv' -o '%s' --max-steps 1", cls, dir, out);
    ftq_expect_error(args, "7", out);
    snprintf(args, sizeof args, "classify -m '%s' -d '%s/r.tsv'", cls, dir);
    ftq_expect_error(args, "7", NULL);
    /* classify without a head, and without input */
    snprintf(args, sizeof args, "classify -m '%s' -p hello", model);
    ftq_expect_error(args, "no classification head", NULL);
    snprintf(args, sizeof args, "classify -m '%s'", cls);
    ftq_expect_error(args, "-p TEXT or -d FILE", NULL);
}

static void test_train_and_classify(void)
{
    const char *w = workdir("ftcli_run");
    char dir[4200], out[4300], args[32768], lg[4300];
    snprintf(dir, sizeof dir, "%s", w);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(lg, sizeof lg, "%s/log.jsonl", dir);
    /* the training set from inside a .tar.gz */
    CU_ASSERT_EQUAL(sh("cd '%s' && tar czf data.tar.gz train.tsv%s", dir, ""), 0);
    /* an archive holding one file needs no member name: its rows are read as rows */
    char one[4300];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/data.tar.gz' -o '%s' --max-steps 1 --json",
             shared_path("models/stories260K"), dir, one);
    cJSON *j1 = ftq_run_json(args);
    if (j1)
        ASSERT_INT_EQ(cJSON_GetObjectItem(j1, "train_examples")->valueint, 48);
    cJSON_Delete(j1);
    snprintf(args, sizeof args,
             "finetune -m '%s' -d '%s/data.tar.gz:train.tsv' --dev '%s/dev.tsv' -o '%s' --epochs 2 --lr 1e-3 "
             "--eval-every 4 --log '%s' --json",
             shared_path("models/stories260K"), dir, dir, out, lg);
    cJSON *j = ftq_run_json(args);
    if (!j)
        return;
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "steps")->valueint, 12); /* 48 rows / 8, 2 epochs */
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "train_examples")->valueint, 48);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "dev_examples")->valueint, 40);
    const cJSON *acc = cJSON_GetObjectItem(j, "accuracy");
    CU_ASSERT(cJSON_IsNumber(acc) && acc->valuedouble >= 0 && acc->valuedouble <= 1);
    CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(j, "macro_f1")));
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(j, "confusion")), 2);
    CU_ASSERT(cJSON_GetObjectItem(j, "tokens_per_second")->valuedouble > 0);
    CU_ASSERT(cJSON_GetObjectItem(j, "peak_rss_bytes")->valuedouble > 0);
    CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(j, "final_loss")));
    double acc_train = acc->valuedouble;
    cJSON_Delete(j);
    /* the log: 12 step lines and 3 evals (steps 4, 8 and the final one) */
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(lg, &text, &len));
    ASSERT_INT_EQ(count_lines(text), 15);
    int evals = 0;
    for (char *p = text; (p = strstr(p, "\"event\": \"eval\"")); p++)
        evals++;
    ASSERT_INT_EQ(evals, 3);
    free(text);
    /* HF layout */
    const char *files[] = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer.model",
                           "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    for (int i = 0; i < 7; i++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        CU_ASSERT(ftq_is_file(p));
    }
    /* classify loads it; the dev accuracy is the one finetune reported (same rows, same
     * truncation; the logits differ only by float rounding) */
    snprintf(args, sizeof args, "classify -m '%s' -d '%s/dev.tsv' --seq 128 --json", out, dir);
    j = ftq_run_json(args);
    if (!j)
        return;
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "examples")->valueint, 40);
    ASSERT_NEAR(cJSON_GetObjectItem(j, "accuracy")->valuedouble, acc_train, 0.051);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "classify -m '%s' -p 'a gorgeous , witty , seductive movie .' --json", out);
    j = ftq_run_json(args);
    if (!j)
        return;
    const char *label = cJSON_GetObjectItem(j, "label")->valuestring;
    CU_ASSERT(strcmp(label, "0") == 0 || strcmp(label, "1") == 0);
    const cJSON *pr = cJSON_GetObjectItem(j, "probabilities");
    ASSERT_NEAR(cJSON_GetObjectItem(pr, "0")->valuedouble + cJSON_GetObjectItem(pr, "1")->valuedouble, 1.0, 1e-5);
    cJSON_Delete(j);
}

static int files_equal(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int ok = ftq_read_file(a, &x, &nx) == FTQ_OK && ftq_read_file(b, &y, &ny) == FTQ_OK && nx == ny &&
             memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return ok;
}

/* The contract of docs/finetune.md: --save-every k, then --resume checkpoint-k with the same
 * arguments, gives the bytes of the uninterrupted run. */
static void test_resume_cli(void)
{
    const char *w = workdir("ftcli_resume");
    char dir[4200], args[32768], common[8400], a[4400], b[4400];
    snprintf(dir, sizeof dir, "%s", w);
    snprintf(common, sizeof common,
             "finetune -m '%s' -d '%s/train.tsv' --max-steps 7 --lr 1e-3 --grad-accum 2 --warmup 2 "
             "--schedule cosine --weight-decay 0.01 --json",
             shared_path("models/stories260K"), dir);
    char *o = NULL, *e = NULL;
    snprintf(args, sizeof args, "%s -o '%s/A'", common, dir);
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    free(o);
    free(e);
    snprintf(args, sizeof args, "%s -o '%s/B' --save-every 3", common, dir);
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    free(o);
    free(e);
    /* without -o the run continues in the checkpoint's parent */
    snprintf(args, sizeof args, "%s --resume '%s/B/checkpoint-3'", common, dir);
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    if (strstr(o, "resumed_from_step\": 3") == NULL)
        fprintf(stderr, "\n  %s", o);
    CU_ASSERT_PTR_NOT_NULL(strstr(o, "\"resumed_from_step\": 3"));
    free(o);
    free(e);
    snprintf(a, sizeof a, "%s/A/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/B/model.safetensors", dir);
    CU_ASSERT(files_equal(a, b));
    /* the checkpoint itself: HF model + trainer state + moments */
    const char *ck[] = {"model.safetensors", "config.json", "trainer_state.json", "optimizer.safetensors",
                        "tokenizer.model"};
    for (int i = 0; i < 5; i++) {
        snprintf(a, sizeof a, "%s/B/checkpoint-6/%s", dir, ck[i]);
        CU_ASSERT(ftq_is_file(a));
    }
    /* a different argument that matters is refused by name; one that does not is fine */
    snprintf(args, sizeof args, "%s -o '%s/C' --resume '%s/B/checkpoint-3' --batch 4", common, dir, dir);
    ftq_expect_error(args, "--batch", NULL);
    snprintf(args, sizeof args, "%s -o '%s/C' --resume '%s/B/checkpoint-3' --seed 1", common, dir, dir);
    ftq_expect_error(args, "--seed", NULL);
    snprintf(args, sizeof args, "%s -o '%s/C' --resume '%s/B/checkpoint-3' --eval-every 100 --dev '%s/dev.tsv'",
             common, dir, dir, dir);
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    free(o);
    free(e);
    snprintf(a, sizeof a, "%s/A/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/C/model.safetensors", dir);
    CU_ASSERT(files_equal(a, b));
}

/* A run killed while writing a checkpoint leaves checkpoint-N.tmp.PID/ behind; the next
 * run in that output directory removes those of dead processes and says so, and keeps
 * those of live ones (pid 1 is always alive). */
static void test_stale_tmp(void)
{
    const char *w = workdir("ftcli_stale");
    char dir[4200], args[16384], p[4400];
    snprintf(dir, sizeof dir, "%s", w);
    pid_t dead = fork(); /* a pid that certainly ended: a child reaped at once */
    CU_ASSERT_FATAL(dead >= 0);
    if (dead == 0)
        _exit(0);
    CU_ASSERT_EQUAL(waitpid(dead, NULL, 0), dead);
    const char *stale[] = {"checkpoint-3.tmp.%ld", ".final.tmp.%ld", "model.safetensors.tmp.%ld"};
    char names[3][64];
    for (int i = 0; i < 3; i++) {
        snprintf(names[i], sizeof names[i], stale[i], (long)dead);
        snprintf(p, sizeof p, "%s/out/%s", dir, names[i]);
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && echo x > '%s/model.safetensors'", p, p);
        CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    }
    snprintf(p, sizeof p, "%s/out/checkpoint-2.tmp.1", dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(p, 0755), 0);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s/train.tsv' --max-steps 1 -o '%s/out' --json",
             shared_path("models/stories260K"), dir, dir);
    char *o = NULL, *e = NULL;
    CU_ASSERT_EQUAL(ftq_run(args, &o, &e), 0);
    for (int i = 0; i < 3; i++) {
        char said[4500];
        snprintf(said, sizeof said, "removed '%s/out/%s': left by a run that was killed", dir, names[i]);
        if (!strstr(e, said))
            fprintf(stderr, "\n  expected \"%s\" in:\n%s", said, e);
        CU_ASSERT_PTR_NOT_NULL(strstr(e, said));
        snprintf(p, sizeof p, "%s/out/%s", dir, names[i]);
        CU_ASSERT(!ftq_is_dir(p));
    }
    snprintf(p, sizeof p, "%s/out/checkpoint-2.tmp.1", dir);
    CU_ASSERT(ftq_is_dir(p));
    CU_ASSERT_PTR_NULL(strstr(e, "checkpoint-2.tmp.1"));
    free(o);
    free(e);
}

static void test_nan_cli(void)
{
    const char *w = workdir("ftcli_nan");
    char dir[4200], out[4300], args[16384], p[4400];
    snprintf(dir, sizeof dir, "%s", w);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(args, sizeof args,
             "finetune -m '%s' -d '%s/train.tsv' -o '%s' --lr 1e30 --max-grad-norm 0 --save-every 1 --max-steps 20",
             shared_path("models/stories260K"), dir, out);
    char *o = NULL, *e = NULL;
    int st = ftq_run(args, &o, &e);
    CU_ASSERT(st != 0 && st != 130);
    /* the last stderr line is the error; it names the step and the checkpoint kept */
    char *last = strstr(e, "error:");
    CU_ASSERT_PTR_NOT_NULL(last);
    if (last) {
        CU_ASSERT(strstr(last, "nan") || strstr(last, "inf") || strstr(last, "non-finite"));
        CU_ASSERT_PTR_NOT_NULL(strstr(last, "step"));
        CU_ASSERT_PTR_NOT_NULL(strstr(last, "checkpoint-"));
        CU_ASSERT_EQUAL(count_lines(last), 1);
    }
    free(o);
    free(e);
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    CU_ASSERT(!ftq_is_file(p));
    snprintf(p, sizeof p, "%s/checkpoint-1/trainer_state.json", out);
    CU_ASSERT(ftq_is_file(p));
    CU_ASSERT(ftq_is_dir(out)); /* else find fails and wc still prints 0 */
    snprintf(args, sizeof args, "find '%s' -name '*.tmp*' | wc -l", out);
    CU_ASSERT_EQUAL(run_capture(args, &o), 0);
    ASSERT_INT_EQ(atoi(o), 0);
    free(o);
}

static void test_sigint(void)
{
    const char *w = workdir("ftcli_sigint");
    char dir[4200], cmd[16384];
    snprintf(dir, sizeof dir, "%s", w);
    /* start a long run, wait for its first logged step, then Ctrl-C it. The wait has no
     * time limit (a loaded machine may take long for one step); it ends when the log has a
     * line or the process has exited (then the exit status is not 130 and the test fails) */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && ('%s' finetune -m '%s' -d train.tsv -o out --max-steps 1000000 --log log.jsonl --json "
             ">stdout.txt 2>stderr.txt & pid=$!; while [ ! -s log.jsonl ] && kill -0 $pid 2>/dev/null; do "
             "sleep 0.05; done; kill -INT $pid; wait $pid; echo $?)",
             dir, ftq_binary(), shared_path("models/stories260K"));
    char *o = NULL;
    run_capture(cmd, &o);
    ASSERT_INT_EQ(atoi(o), 130);
    free(o);
    char p[4400], *err = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/stderr.txt", dir);
    ASSERT_OK(ftq_read_file(p, &err, &len));
    ASSERT_INT_EQ(count_lines(err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "interrupted at step"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--resume"));
    free(err);
    snprintf(cmd, sizeof cmd, "ls -d '%s'/out/checkpoint-* | grep -vc '[.]tmp[.]'", dir);
    run_capture(cmd, &o);
    ASSERT_INT_EQ(atoi(o), 1);
    free(o);
}

void test_register_finetune_cli(void)
{
    static const test_case cases[] = {
        {"help", test_help},
        {"impossible_options", test_impossible_options},
        {"bad_data", test_bad_data},
        {"train_and_classify", test_train_and_classify},
        {"resume", test_resume_cli},
        {"stale_tmp", test_stale_tmp},
        {"nan", test_nan_cli},
        {"sigint", test_sigint},
        {NULL, NULL},
    };
    test_add_suite("finetune_cli", cases);
}
