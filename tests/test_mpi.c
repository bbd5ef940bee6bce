/* test_mpi.c - data-parallel fine-tuning: `mpirun -np 2 ftq finetune ...` against the same
 * command alone (the same global batch, one thread per process), for lm (stories260K) and
 * classify (golden/bert_tiny_random in modes full, frozen and head; stories260K as a
 * decoder classifier); resume under MPI bit-identical to the uninterrupted MPI run and
 * resumable alone; a failure on one rank (a bad row, a checkpoint it cannot write) or a NaN
 * stops both with one message; and the process group of one a plain run gets. The mpirun
 * tests are SKIPPED (counted) in a build without MPI or where mpirun is missing.
 *
 * Tolerances. The two runs differ only in the order float32 sums are taken: a micro-batch's
 * row / token reductions split at the shard boundary and the two halves added by
 * MPI_Allreduce. Each summed element is then off by a few ulps of the sum of its terms'
 * magnitudes (~1e-7 relative), which bounds the loss (a mean of float losses) and the
 * gradient norm: 1e-5 relative is ~100x that and far below what a wrong shard or weight
 * does (a dropped or doubled row moves the loss by ~1/B = 10 %, an unscaled shard doubles
 * the gradient norm). AdamW's step lr * m / (sqrt(v) + eps) has |step| <= ~lr whatever the
 * gradient's scale, and a relative gradient error d moves it by ~d * lr, so after S steps a
 * weight is within S * lr * 1e-3 of the other run (a loose multiple of d; the rare element
 * whose gradient is pure rounding noise may flip its step's sign and be off by up to
 * 2 * S * lr, so that bound is the hard limit, and at most 0.1 % of the elements may exceed
 * the tight one). Runs under MPI with the same N reduce in the same fixed order (the same
 * shards, the same buckets, MPI_Allreduce of 2 ranks is a + b), so they are compared bit
 * for bit. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "include/ftq_dist.h"
#include "tests/test_util.h"

/* timeout: a rank left waiting in a collective must fail the test, not hang the suite */
#define MPIRUN "timeout 300 mpirun --oversubscribe --allow-run-as-root"

/* LeakSanitizer in the ranks (ASan build). Open MPI keeps allocations made in MPI_Init /
 * MPI_Finalize for the life of the process, many from its MCA components, which
 * MPI_Finalize dlclose()s: with the default fast unwinder their stacks end in "<unknown
 * module>" and no suppression can name them. So a checked run unwinds slowly
 * (fast_unwind_on_malloc=0), which reaches the Open MPI library frames that
 * tests/lsan_openmpi.supp suppresses, and ftq's own leaks are still reported; that costs
 * seconds under ASan, so only the runs that cover the distributed paths (checkpoints on
 * every rank, split head-mode features, sharded evaluation) are checked, and the other
 * ranks run with detect_leaks=0. Without ASan the variable is ignored. */
static const char *lsan_env(int check)
{
    static char env[4400];
    if (!check)
        return "LSAN_OPTIONS=detect_leaks=0";
    static char logs[4300];
    if (!logs[0]) /* a rank's stderr is /dev/null: the reports go to files (printed on failure) */
        snprintf(logs, sizeof logs, "%s/lsan", test_tmpdir("mpi_lsan"));
    snprintf(env, sizeof env,
             "LSAN_OPTIONS=suppressions='%s':print_suppressions=0:fast_unwind_on_malloc=0:log_path='%s'",
             source_path("tests/lsan_openmpi.supp"), logs);
    return env;
}

static int mpi_ready(void)
{
    if (!ftq_dist_available()) {
        test_skip("built without MPI (-DFTQ_MPI=OFF)");
        return 0;
    }
    char *out = NULL;
    int st = run_capture("mpirun --version 2>&1", &out);
    free(out);
    if (st != 0) {
        test_skip("mpirun is not installed");
        return 0;
    }
    return 1;
}

/* Run `ftq ARGS` with np ranks (np 0: alone), one thread per process; stderr into *err
 * (malloc'd), and printed if the run fails unexpectedly; leak_check: see lsan_env. Returns
 * the exit status. */
static int run_ftq(int np, const char *args, char **err, int expect_ok, int leak_check)
{
    static char cmd[40000], err_path[4300];
    if (!err_path[0]) /* once: test_tmpdir reuses its buffer and wipes the directory */
        snprintf(err_path, sizeof err_path, "%s/mpi_stderr.txt", test_tmpdir("mpi_err"));
    char launch[64] = "";
    if (np > 0)
        snprintf(launch, sizeof launch, MPIRUN " -np %d", np);
    snprintf(cmd, sizeof cmd, "FTQ_THREADS=1 %s %s '%s' %s 2>'%s'", np > 0 ? lsan_env(leak_check) : "", launch,
             ftq_binary(), args, err_path);
    char *out = NULL;
    int st = run_capture(cmd, &out);
    free(out);
    size_t len = 0;
    if (ftq_read_file(err_path, err, &len) != FTQ_OK)
        *err = strdup("");
    if (st != 0 && expect_ok) {
        fprintf(stderr, "\n  [%s] exit %d:\n%s", cmd, st, *err);
        if (leak_check && np > 0) /* LeakSanitizer's reports, if any */
            system("cat '" FTQ_BINARY_DIR "'/test-tmp/mpi_lsan/lsan.* >&2 2>/dev/null");
    }
    return st;
}

typedef struct {
    int n;
    double loss[64], gn[64], dev[64];
    int n_dev;
} run_log;

static void read_log(const char *path, run_log *l)
{
    memset(l, 0, sizeof *l);
    char *text = NULL;
    size_t len = 0;
    if (ftq_read_file(path, &text, &len) != FTQ_OK) {
        CU_FAIL("cannot read the training log");
        return;
    }
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const char *ev = cJSON_GetStringValue(cJSON_GetObjectItem(j, "event"));
        if (ev && strcmp(ev, "step") == 0 && l->n < 64) {
            l->loss[l->n] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss"));
            l->gn[l->n++] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "grad_norm"));
        } else if (ev && strcmp(ev, "eval") == 0 && l->n_dev < 64) {
            l->dev[l->n_dev++] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "dev_loss"));
        }
        cJSON_Delete(j);
    }
    free(text);
}

/* Loss curve, gradient norms and dev losses within 1e-5 relative (see the top). */
static void compare_logs(const run_log *a, const run_log *b, int steps, int evals)
{
    ASSERT_INT_EQ(a->n, steps);
    ASSERT_INT_EQ(b->n, steps);
    ASSERT_INT_EQ(a->n_dev, evals);
    ASSERT_INT_EQ(b->n_dev, evals);
    for (int i = 0; i < a->n && i < b->n; i++) {
        ASSERT_NEAR(b->loss[i], a->loss[i], 1e-5 * fabs(a->loss[i]));
        ASSERT_NEAR(b->gn[i], a->gn[i], 1e-5 * fabs(a->gn[i]));
        CU_ASSERT(a->gn[i] > 0);
    }
    for (int i = 0; i < a->n_dev && i < b->n_dev; i++)
        ASSERT_NEAR(b->dev[i], a->dev[i], 1e-5 * fabs(a->dev[i]));
}

/* Max |a - b| over every F32 tensor of two model.safetensors (or, for LoRA, two
 * adapter_model.safetensors; all present in both);
 * *over: elements beyond `tight`. Returns -1 if they cannot be compared. */
static double weight_diff(const char *da, const char *db, double tight, size_t *over, size_t *total)
{
    char pa[4400], pb[4400];
    snprintf(pa, sizeof pa, "%s/model.safetensors", da);
    if (access(pa, F_OK) != 0) /* mode lora: the adapter */
        snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", da);
    snprintf(pb, sizeof pb, "%s/%s", db, strrchr(pa, '/') + 1);
    ftq_st_file *fa = NULL, *fb = NULL;
    double mx = -1;
    *over = *total = 0;
    if (ftq_st_open(pa, &fa) != FTQ_OK || ftq_st_open(pb, &fb) != FTQ_OK) {
        fprintf(stderr, "\n  %s\n", ftq_last_error());
        goto out;
    }
    if (ftq_st_count(fa) != ftq_st_count(fb))
        goto out;
    mx = 0;
    for (size_t i = 0; i < ftq_st_count(fa); i++) {
        const ftq_tensor *x = ftq_st_tensor(fa, i), *y = ftq_st_find(fb, x->name);
        if (!y || y->nbytes != x->nbytes || x->dtype != FTQ_DTYPE_F32 || y->dtype != FTQ_DTYPE_F32) {
            mx = -1;
            goto out;
        }
        const float *u = x->data, *v = y->data;
        for (size_t e = 0; e < x->nbytes / 4; e++) {
            double d = fabs((double)u[e] - v[e]);
            mx = d > mx || d != d ? d : mx;
            *over += d > tight;
        }
        *total += x->nbytes / 4;
    }
out:
    ftq_st_close(fa);
    ftq_st_close(fb);
    return mx;
}

static void compare_weights(const char *da, const char *db, double lr, int steps)
{
    size_t over = 0, total = 0;
    double tight = steps * lr * 1e-3, hard = 2 * steps * lr;
    double mx = weight_diff(da, db, tight, &over, &total);
    if (mx > hard || over * 1000 > total)
        fprintf(stderr, "\n  %s vs %s: max |weight diff| %.3g (tight %.3g, hard %.3g), %zu of %zu beyond tight", da,
                db, mx, tight, hard, over, total);
    CU_ASSERT(mx >= 0 && mx <= hard);
    CU_ASSERT(total > 0 && over * 1000 <= total);
}

static int files_equal(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int eq = ftq_read_file(a, &x, &nx) == FTQ_OK && ftq_read_file(b, &y, &ny) == FTQ_OK && nx == ny &&
             memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

/* The same `finetune` arguments alone and with 2 ranks (-o and --log appended): logs and
 * weights agree within the tolerances above. */
static void pair(const char *name, const char *args, int steps, int evals, double lr, int leak_check)
{
    char w[4200];
    snprintf(w, sizeof w, "%s", test_tmpdir(name));
    char dir[2][4300];
    static char full[32768];
    run_log l[2];
    for (int k = 0; k < 2; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/np%d", w, k ? 2 : 1);
        snprintf(full, sizeof full, "finetune %s -o '%s' --log '%s/log.jsonl'", args, dir[k], dir[k]);
        char *err = NULL;
        ASSERT_INT_EQ(run_ftq(k ? 2 : 0, full, &err, 1, leak_check), 0);
        free(err);
        snprintf(full, sizeof full, "%s/log.jsonl", dir[k]);
        read_log(full, &l[k]);
    }
    compare_logs(&l[0], &l[1], steps, evals);
    compare_weights(dir[0], dir[1], lr, steps);
}

/* lm on stories260K: batch 7 over 2 ranks (rows split 3 + 4, weights 3/7 and 4/7), two
 * micro-batches a step, an evaluation in the middle and at the end. */
static void test_lm_matches_one_process(void)
{
    if (!mpi_ready())
        return;
    char args[8192];
    snprintf(args, sizeof args,
             "-m '%s' -d '%s' --task lm --seq 32 --batch 7 --grad-accum 2 --limit 56 --dev-limit 9 --max-steps 6 "
             "--lr 1e-3 --eval-every 3",
             shared_path("models/stories260K"), source_path("datasets/tinystories_sample.txt"));
    pair("mpi_lm", args, 6, 3, 1e-3, 0); /* evals: before, at step 3, at the end */
}

/* The same with LoRA adapters on every linear layer (only A, B train; the adapter is compared). */
static void test_lora_matches_one_process(void)
{
    if (!mpi_ready())
        return;
    char args[8192];
    snprintf(args, sizeof args,
             "-m '%s' -d '%s' --task lm --mode lora --lora-r 4 --lora-targets all-linear --seq 32 --batch 7 "
             "--grad-accum 2 --limit 56 --dev-limit 9 --max-steps 6 --lr 1e-3 --eval-every 3",
             shared_path("models/stories260K"), source_path("datasets/tinystories_sample.txt"));
    pair("mpi_lora", args, 6, 3, 1e-3, 0);
}

/* classify with 41 dev rows (batch 9: 5 batches, the last of 5 rows, round-robin over the
 * ranks) on `model` with the given extra flags, for each of n cases. */
typedef struct {
    const char *name, *model, *extra;
    double lr;
    int leak_check;
} cls_case;

static void classify_pairs(const cls_case *cases, size_t n)
{
    char w[4200], cmd[8800];
    snprintf(w, sizeof w, "%s", test_tmpdir("mpi_cls_data"));
    snprintf(cmd, sizeof cmd, "head -n 49 '%s' > '%s/train.tsv' && head -n 42 '%s' > '%s/dev.tsv'",
             shared_path("data/sst2/train.tsv"), w, shared_path("data/sst2/dev.tsv"), w);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    for (size_t i = 0; i < n; i++) {
        char args[16384];
        snprintf(args, sizeof args,
                 "-m '%s' -d '%s/train.tsv' --dev '%s/dev.tsv' --seq 32 --batch 9 --max-steps 4 --eval-every 2 %s",
                 shared_path(cases[i].model), w, w, cases[i].extra);
        pair(cases[i].name, args, 4, 2, cases[i].lr, cases[i].leak_check);
    }
}

/* The tiny BERT in each mode (head: the cached features split across the ranks). */
static void test_classify_bert_modes(void)
{
    if (!mpi_ready())
        return;
    static const cls_case cases[] = {
        {"mpi_cls_full", "golden/bert_tiny_random", "--mode full --lr 1e-3", 1e-3, 0},
        {"mpi_cls_frozen", "golden/bert_tiny_random", "--mode frozen --freeze-layers 1 --lr 1e-3", 1e-3, 0},
        {"mpi_cls_head", "golden/bert_tiny_random", "--mode head --lr 1e-2", 1e-2, 1},
        {"mpi_cls_lora", "golden/bert_tiny_random", "--mode lora --lora-r 4 --lora-targets all-linear --lr 1e-3",
         1e-3, 0},
    };
    classify_pairs(cases, sizeof cases / sizeof cases[0]);
}

/* stories260K as a decoder classifier (last-token pooling, padded rows). */
static void test_classify_decoder(void)
{
    if (!mpi_ready())
        return;
    static const cls_case cases[] = {{"mpi_cls_decoder", "models/stories260K", "--mode full --lr 1e-3", 1e-3, 0}};
    classify_pairs(cases, 1);
}

/* Resume under MPI from checkpoint-2 of a 2-rank run: the weights and the optimizer state
 * equal the uninterrupted 2-rank run's bit for bit; the same checkpoint resumed by one
 * process finishes within the tolerances of the top. */
static void test_resume(void)
{
    if (!mpi_ready())
        return;
    char w[4200];
    snprintf(w, sizeof w, "%s", test_tmpdir("mpi_resume"));
    char base[8192], a[4400], b[4400], c[4400], p1[4500], p2[4500];
    static char args[32768];
    snprintf(base, sizeof base,
             "finetune -m '%s' -d '%s' --task lm --seq 32 --batch 5 --limit 40 --dev-limit 4 --max-steps 5 --lr 1e-3 "
             "--save-every 2",
             shared_path("models/stories260K"), source_path("datasets/tinystories_sample.txt"));
    snprintf(a, sizeof a, "%s/whole", w);
    snprintf(b, sizeof b, "%s/resumed", w);
    snprintf(c, sizeof c, "%s/alone", w);
    char *err = NULL;
    snprintf(args, sizeof args, "%s -o '%s'", base, a);
    ASSERT_INT_EQ(run_ftq(2, args, &err, 1, 1), 0);
    free(err);
    snprintf(args, sizeof args, "%s -o '%s' --resume '%s/checkpoint-2'", base, b, a);
    ASSERT_INT_EQ(run_ftq(2, args, &err, 1, 0), 0);
    free(err);
    snprintf(p1, sizeof p1, "%s/model.safetensors", a);
    snprintf(p2, sizeof p2, "%s/model.safetensors", b);
    CU_ASSERT(files_equal(p1, p2));
    snprintf(p1, sizeof p1, "%s/checkpoint-4/optimizer.safetensors", a);
    snprintf(p2, sizeof p2, "%s/checkpoint-4/optimizer.safetensors", b);
    CU_ASSERT(files_equal(p1, p2));
    snprintf(args, sizeof args, "%s -o '%s' --resume '%s/checkpoint-2'", base, c, a);
    ASSERT_INT_EQ(run_ftq(0, args, &err, 1, 0), 0);
    free(err);
    compare_weights(a, c, 1e-3, 5);
}

/* Error lines ftq printed (mpirun adds its own notice about the exit codes). */
static int ftq_errors(const char *err, const char **first)
{
    int n = 0;
    *first = NULL;
    for (const char *p = err; (p = strstr(p, "ftq finetune: error")); p++, n++)
        if (!*first)
            *first = p;
    return n;
}

/* Rank 1 alone reads a training file with a malformed row (mpirun's MPMD form gives the
 * ranks different -d): both ranks stop, one message names rank 1 and the row, nothing is
 * written. Then a NaN at step 2 on every rank: one message, checkpoint-1 intact. */
static void test_fault_stops_all(void)
{
    if (!mpi_ready())
        return;
    char w[4200];
    snprintf(w, sizeof w, "%s", test_tmpdir("mpi_fault"));
    static char cmd[65536], args[16384];
    char out[4400];
    snprintf(cmd, sizeof cmd,
             "head -n 33 '%s' > '%s/good.tsv' && head -n 20 '%s' > '%s/bad.tsv' && printf 'no label here\\n' >> "
             "'%s/bad.tsv' && tail -n +21 '%s/good.tsv' >> '%s/bad.tsv'",
             shared_path("data/sst2/train.tsv"), w, shared_path("data/sst2/train.tsv"), w, w, w, w);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(out, sizeof out, "%s/out", w);
    const char *tiny = shared_path("golden/bert_tiny_random");
    char tail[8800];
    snprintf(tail, sizeof tail, "finetune -m '%s' --max-steps 3 --batch 8 -o '%s'", tiny, out);
    snprintf(cmd, sizeof cmd, "FTQ_THREADS=1 %s " MPIRUN " -np 1 '%s' %s -d '%s/good.tsv' : -np 1 '%s' %s -d "
             "'%s/bad.tsv' 2>'%s/err.txt'",
             lsan_env(0), ftq_binary(), tail, w, ftq_binary(), tail, w, w);
    CU_ASSERT(system(cmd) != 0);
    char path[4500], *err = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/err.txt", w);
    if (ftq_read_file(path, &err, &len) != FTQ_OK)
        err = strdup("");
    const char *first = NULL;
    ASSERT_INT_EQ(ftq_errors(err, &first), 1);
    CU_ASSERT(first && strstr(first, "rank 1 of 2") && strstr(first, "bad.tsv"));
    if (!first || !strstr(first, "bad.tsv"))
        fprintf(stderr, "\n  stderr:\n%s", err);
    CU_ASSERT(access(out, F_OK) != 0);
    free(err);

    snprintf(args, sizeof args,
             "finetune -m '%s' -d '%s/good.tsv' -o '%s' --lr 1e30 --max-grad-norm 0 --save-every 1 --max-steps 20 "
             "--batch 8",
             shared_path("models/stories260K"), w, out);
    CU_ASSERT(run_ftq(2, args, &err, 0, 0) != 0);
    ASSERT_INT_EQ(ftq_errors(err, &first), 1);
    CU_ASSERT(first && (strstr(first, "nan") || strstr(first, "inf") || strstr(first, "non-finite")));
    CU_ASSERT(first && strstr(first, "checkpoint-1"));
    snprintf(path, sizeof path, "%s/checkpoint-1/trainer_state.json", out);
    cJSON *j = load_json(path);
    CU_ASSERT(j && cJSON_GetNumberValue(cJSON_GetObjectItem(j, "global_step")) == 1);
    cJSON_Delete(j);
    free(err);
}

/* Rank 0 alone cannot write checkpoint-2 (a file holds its name): rank 1, already waiting
 * for the step's agreement, stops too; one message, from rank 0, names it; checkpoint-1 is
 * intact and no temporary directory is left. */
static void test_checkpoint_fault(void)
{
    if (!mpi_ready())
        return;
    char w[4200], out[4300], path[4500];
    static char args[16384];
    snprintf(w, sizeof w, "%s", test_tmpdir("mpi_ckpt_fault"));
    snprintf(out, sizeof out, "%s/out", w);
    snprintf(path, sizeof path, "%s/checkpoint-2", out);
    CU_ASSERT_EQUAL_FATAL(mkdir(out, 0755), 0);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    snprintf(args, sizeof args,
             "finetune -m '%s' -d '%s' --task lm --seq 32 --batch 4 --limit 16 --dev-limit 2 --max-steps 4 "
             "--save-every 1 -o '%s'",
             shared_path("models/stories260K"), source_path("datasets/tinystories_sample.txt"), out);
    char *err = NULL;
    const char *first = NULL;
    CU_ASSERT(run_ftq(2, args, &err, 0, 0) != 0);
    ASSERT_INT_EQ(ftq_errors(err, &first), 1);
    CU_ASSERT(first && strstr(first, "rank 0 of 2") && strstr(first, "checkpoint-2"));
    if (!first || !strstr(first, "checkpoint-2"))
        fprintf(stderr, "\n  stderr:\n%s", err);
    free(err);
    snprintf(path, sizeof path, "%s/checkpoint-1/trainer_state.json", out);
    cJSON *j = load_json(path);
    CU_ASSERT(j && cJSON_GetNumberValue(cJSON_GetObjectItem(j, "global_step")) == 1);
    cJSON_Delete(j);
    char cmd[4600], *ls = NULL;
    snprintf(cmd, sizeof cmd, "ls '%s'", out);
    ASSERT_INT_EQ(run_capture(cmd, &ls), 0);
    CU_ASSERT(ls && !strstr(ls, "tmp")); /* checkpoint-1, the blocking file, nothing half-written */
    free(ls);
}

/* Not started by mpirun (with or without MPI in the build): a group of one, whose
 * collectives leave the buffers as they are and whose agreement is the rank's own status. */
static void test_single_process(void)
{
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK")) {
        test_skip("the test runner itself was started by mpirun");
        return;
    }
    int argc = 1;
    char arg0[] = "ftq_tests", *argv0[] = {arg0, NULL}, **argv = argv0;
    ASSERT_OK(ftq_dist_init(&argc, &argv));
    ASSERT_INT_EQ(ftq_dist_rank(), 0);
    ASSERT_INT_EQ(ftq_dist_size(), 1);
    float f[3] = {1.5f, -2.0f, 3.25f};
    double d[2] = {0.1, 1e300};
    ASSERT_OK(ftq_dist_allreduce(f, 3, FTQ_DIST_F32, FTQ_DIST_SUM));
    ASSERT_OK(ftq_dist_allreduce(d, 2, FTQ_DIST_F64, FTQ_DIST_MAX));
    CU_ASSERT(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
    CU_ASSERT(d[0] == 0.1 && d[1] == 1e300);
    ASSERT_OK(ftq_dist_bcast(f, sizeof f, 0));
    ASSERT_OK(ftq_dist_barrier());
    ASSERT_INT_EQ(ftq_dist_agree(FTQ_OK), FTQ_OK);
    ftq_set_error(FTQ_EIO, "cannot read 'x'");
    ASSERT_INT_EQ(ftq_dist_agree(FTQ_EIO), FTQ_EIO);
    CU_ASSERT_STRING_EQUAL(ftq_last_error(), "cannot read 'x'");
    ASSERT_INT_EQ(ftq_dist_failed_rank(), -1);
    ftq_clear_error();
    ftq_dist_finalize();
}

void test_register_mpi(void)
{
    static const test_case cases[] = {
        {"single_process", test_single_process},
        {"lm_matches_one_process", test_lm_matches_one_process},
        {"lora_matches_one_process", test_lora_matches_one_process},
        {"classify_bert_modes", test_classify_bert_modes},
        {"classify_decoder", test_classify_decoder},
        {"resume", test_resume},
        {"fault_stops_all", test_fault_stops_all},
        {"checkpoint_fault", test_checkpoint_fault},
        {NULL, NULL},
    };
    test_add_suite("mpi", cases);
}
