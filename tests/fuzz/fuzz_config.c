/* fuzz_config.c - libFuzzer target: config.json through ftq_config_parse; an accepted
 * config is also read by ftq_config_load_labels (id2label / num_labels) from the scratch
 * directory and counted by ftq_config_param_count. */
#include "fuzz_common.h"

#include "ftq_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ftq_model_config cfg;
    if (ftq_config_parse((const char *)data, size, "config.json", &cfg) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    (void)ftq_config_param_count(&cfg);
    char path[1024];
    fz_write("config.json", data, size, path, sizeof path);
    char **names = NULL;
    int n = 0;
    if (ftq_config_load_labels(path, &names, &n) == FTQ_OK) {
        for (int i = 0; i < n; i++)
            fz_touch(names[i]);
        ftq_free_strings(names, n);
    } else {
        fz_refused();
    }
    return 0;
}
