/* test_pipeline.c - `ftq pipeline` end to end on the shipped model with a few training
 * steps: the report lists every stage, sizes shrink, heads are measured where they exist,
 * the SVG and the training log are written, and an existing output is refused. */
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"

static void test_pipeline_run(void)
{
    char out[4096], cmd[16384];
    snprintf(out, sizeof out, "%s/run", test_tmpdir("pipeline"));
    snprintf(cmd, sizeof cmd,
             "'%s' pipeline -m '%s' -d '%s' --dev '%s' -f '%s' -o '%s' --max-steps 6 --limit 96 --batch 16 "
             "--prune nm --chunks 3 --ctx 128 --json 2>/dev/null",
             ftq_binary(), source_path("datasets/stories260K"), source_path("datasets/sst2_train_4k.tsv"),
             source_path("datasets/sst2_dev.tsv"), source_path("datasets/tinystories_sample.txt"), out);
    char *stdout_text = NULL;
    int st = run_capture(cmd, &stdout_text);
    ASSERT_INT_EQ(st, 0);
    cJSON *j = cJSON_Parse(stdout_text);
    free(stdout_text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *stages = cJSON_GetObjectItem(j, "stages");
    ASSERT_INT_EQ(cJSON_GetArraySize(stages), 5);
    const char *names[] = {"base", "finetuned", "pruned", "int8", "int4"};
    double size[5], ppl[5], acc5[5] = {0}, f1_5[5] = {0};
    for (int i = 0; i < 5; i++) {
        const cJSON *s = cJSON_GetArrayItem(stages, i);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(s, "stage")->valuestring, names[i]);
        size[i] = cJSON_GetObjectItem(s, "file_bytes")->valuedouble;
        const cJSON *p = cJSON_GetObjectItem(s, "ppl");
        CU_ASSERT(cJSON_IsNumber(p)); /* tied embeddings: every stage keeps an LM head */
        ppl[i] = cJSON_IsNumber(p) ? p->valuedouble : 0;
        CU_ASSERT(cJSON_GetObjectItem(s, "tokens_per_second")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(s, "peak_rss_bytes")->valuedouble > 0);
        const cJSON *acc = cJSON_GetObjectItem(s, "accuracy");
        if (i == 0) {
            CU_ASSERT(cJSON_IsNull(acc)); /* no classification head yet */
        } else {
            CU_ASSERT(cJSON_IsNumber(acc) && acc->valuedouble >= 0.0 && acc->valuedouble <= 1.0);
            ASSERT_INT_EQ(cJSON_GetObjectItem(s, "dev_examples")->valueint, 872);
            acc5[i] = cJSON_IsNumber(acc) ? acc->valuedouble : -1;
            const cJSON *f1 = cJSON_GetObjectItem(s, "macro_f1");
            f1_5[i] = cJSON_IsNumber(f1) ? f1->valuedouble : -1;
        }
    }
    /* the base model's perplexity on 3 chunks of 128: llama.cpp's running value after chunk 3 */
    cJSON *g = load_json(shared_path("golden/stories260K_ppl.json"));
    if (g) {
        const cJSON *run = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(g, "protocols"),
                                                                   "llamacpp_ctx128"), "running_ppl_first_8_chunks");
        ASSERT_NEAR(ppl[0] / cJSON_GetArrayItem(run, 2)->valuedouble - 1, 0, 2e-4);
        cJSON_Delete(g);
    }
    /* Accuracy. Six steps on 96 rows do not learn SST-2: measured 0.4954-0.5011 on the 872
     * dev rows for every stage (chance, sd 0.017), so no bar on the value can test learning
     * (the old "> 0.3" could not fail; learning is tested in the trainer and finetune_cli
     * suites). What can fail: the reported accuracy and macro-F1 are those `ftq classify`
     * computes independently from the saved stage (same rows, --seq 64 as the pipeline):
     * measured identical to the printed 6 decimals, tolerance 1e-6; and quantizing the
     * pruned model flips few predictions: measured |d accuracy| <= 0.0011 (1 row), bound
     * 0.01 (9 rows) to allow rounding-order differences between CPU paths. */
    const char *check[2] = {"finetuned", "int4"};
    const int check_i[2] = {1, 4};
    for (int k = 0; k < 2; k++) {
        char args[8192];
        snprintf(args, sizeof args, "classify -m '%s/%s' -d '%s' --seq 64 --json", out, check[k],
                 source_path("datasets/sst2_dev.tsv"));
        cJSON *c = ftq_run_json(args);
        if (!c)
            continue;
        ASSERT_NEAR(cJSON_GetObjectItem(c, "accuracy")->valuedouble, acc5[check_i[k]], 1e-6);
        ASSERT_NEAR(cJSON_GetObjectItem(c, "macro_f1")->valuedouble, f1_5[check_i[k]], 1e-6);
        cJSON_Delete(c);
    }
    ASSERT_NEAR(acc5[3], acc5[2], 0.01);
    ASSERT_NEAR(acc5[4], acc5[2], 0.01);
    CU_ASSERT(size[3] < 0.5 * size[2]); /* int8 */
    CU_ASSERT(size[4] < size[3]);       /* int4 */
    const cJSON *tr = cJSON_GetObjectItem(j, "training");
    ASSERT_INT_EQ(cJSON_GetObjectItem(tr, "steps")->valueint, 6);
    ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(tr, "loss")), 6);
    cJSON_Delete(j);
    /* the files of the report */
    char path[4200], *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/report.svg", out);
    ASSERT_OK(ftq_read_file(path, &data, &len));
    CU_ASSERT(strncmp(data, "<svg", 4) == 0 && strstr(data, "</svg>") != NULL && strstr(data, "polyline") != NULL);
    free(data);
    const char *dirs[] = {"finetuned", "pruned", "int8", "int4"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s/model.safetensors", out, dirs[i]);
        CU_ASSERT(ftq_is_file(path));
    }
    /* the output exists now: refused without --force, one line on stderr */
    snprintf(cmd, sizeof cmd, "'%s' pipeline -d x -f x -o '%s' 2>&1 >/dev/null", ftq_binary(), out);
    st = run_capture(cmd, &data);
    CU_ASSERT(st != 0);
    CU_ASSERT(strstr(data, "already exists") != NULL);
    free(data);
}

void test_register_pipeline(void)
{
    static const test_case cases[] = {
        {"run", test_pipeline_run},
        {NULL, NULL},
    };
    test_add_suite("pipeline", cases);
}
