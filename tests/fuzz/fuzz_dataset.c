/* fuzz_dataset.c - libFuzzer target: labeled dataset rows (CSV, TSV, JSONL) and plain text.
 * Input: one FLAGS byte, then the file. FLAGS bits 0-1 pick the file name and format (.csv,
 * .tsv, .jsonl, or .txt read with ftq_text_load), bit 2 skip_bad_rows, bit 3 labels
 * optional, bit 4 a fixed label set {negative, positive}, bit 5 columns "sentence" /
 * "label_id" instead of text / label, bit 6 the format given explicitly instead of guessed
 * from the name. Every accepted row is read back and its label checked against the set. */
#include "fuzz_common.h"

#include "ftq_data.h"

static void check_dataset(const ftq_dataset *d)
{
    int nl = ftq_dataset_num_labels(d);
    const char *const *names = ftq_dataset_label_names(d);
    for (int i = 0; i < nl; i++)
        fz_touch(names[i]);
    size_t n = ftq_dataset_size(d);
    if (n == 0)
        __builtin_trap(); /* an empty dataset is an error, never a success */
    for (size_t i = 0; i < n; i++) {
        fz_touch(ftq_dataset_text(d, i));
        int l = ftq_dataset_label(d, i);
        if (l < -1 || l >= nl || ftq_dataset_line(d, i) == 0)
            __builtin_trap();
    }
    size_t peak = 0;
    (void)ftq_dataset_memory(d, &peak);
    fz_touch(ftq_dataset_source(d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    static const char *const file[4] = {"data.csv", "data.tsv", "data.jsonl", "data.txt"};
    static const ftq_data_format fmt[4] = {FTQ_DATA_CSV, FTQ_DATA_TSV, FTQ_DATA_JSONL, FTQ_DATA_TEXT};
    static const char *const fixed[2] = {"negative", "positive"};
    char path[1024];
    fz_write(file[flags & 3], data + 1, size - 1, path, sizeof path);
    if ((flags & 3) == 3) {
        char *text = NULL;
        size_t len = 0;
        if (ftq_text_load(path, &text, &len) == FTQ_OK) {
            if (strlen(text) > len)
                __builtin_trap();
            free(text);
        } else {
            fz_refused();
        }
        return 0;
    }
    ftq_dataset_params p = ftq_dataset_default_params();
    p.skip_bad_rows = (flags >> 2) & 1;
    p.require_labels = !((flags >> 3) & 1);
    if (flags & 16) {
        p.label_names = fixed;
        p.n_label_names = 2;
    }
    if (flags & 32) {
        p.text_col = "sentence";
        p.label_col = "label_id";
    }
    if (flags & 64)
        p.format = fmt[flags & 3];
    ftq_dataset *d = NULL;
    if (ftq_dataset_load(path, &p, &d) == FTQ_OK) {
        check_dataset(d);
        ftq_dataset_free(d);
    } else {
        fz_refused();
    }
    return 0;
}
