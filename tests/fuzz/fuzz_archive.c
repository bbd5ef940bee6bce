/* fuzz_archive.c - libFuzzer target: archives (tar, tar.gz/bz2/xz/zst, zip: libarchive
 * with every filter, as io/archive.c opens them) read as io/dataset.c reads them. Input:
 * one MODE byte, then the archive. MODE & 3: 0 the single member as text (ftq_text_load),
 * 1 the single member as a dataset (format from the member name), 2 the member
 * "train.csv" as a dataset, 3 ftq_dataset_detect_format. */
#include "fuzz_common.h"

#include "ftq_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] & 3;
    char path[1024], spec[1100];
    fz_write("data.tar", data + 1, size - 1, path, sizeof path);
    int rc;
    if (mode == 0) {
        char *text = NULL;
        size_t len = 0;
        rc = ftq_text_load(path, &text, &len);
        if (rc == FTQ_OK) {
            if (strlen(text) > len)
                __builtin_trap();
            free(text);
        }
    } else if (mode == 3) {
        ftq_data_format f;
        rc = ftq_dataset_detect_format(path, &f);
    } else {
        if (mode == 2)
            snprintf(spec, sizeof spec, "%s:train.csv", path);
        ftq_dataset_params p = ftq_dataset_default_params();
        p.skip_bad_rows = (data[0] >> 2) & 1;
        ftq_dataset *d = NULL;
        rc = ftq_dataset_load(mode == 2 ? spec : path, &p, &d);
        if (rc == FTQ_OK) {
            for (size_t i = 0; i < ftq_dataset_size(d); i++)
                fz_touch(ftq_dataset_text(d, i));
            ftq_dataset_free(d);
        }
    }
    if (rc != FTQ_OK)
        fz_refused();
    return 0;
}
