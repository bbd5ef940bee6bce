/* ftq_data.h - labeled datasets (CSV, TSV, JSONL) and plain text, read from files or from
 * inside .tar / .tar.gz / .zip archives.
 *
 * A source is "PATH" or "ARCHIVE:MEMBER" (e.g. "data.tar.gz:train.tsv"); an archive given
 * without a member must hold exactly one regular file. Records are parsed while the
 * source is streamed: the file is never held in memory twice (only the texts are kept).
 *
 *     ftq_dataset_params p = ftq_dataset_default_params();
 *     ftq_dataset *train = NULL;
 *     if (ftq_dataset_load("sst2/train.tsv", &p, &train) != FTQ_OK) { ... ftq_last_error() ... }
 *     // the dev set must use the train set's labels:
 *     p.label_names = ftq_dataset_label_names(train);
 *     p.n_label_names = ftq_dataset_num_labels(train);
 *     ftq_dataset_load("sst2/dev.tsv", &p, &dev);
 *
 * Errors name the source, the line and what was expected:
 *     "train.csv:17: expected 2 fields (text, label), got 3"
 *     "dev.tsv:4: label 'maybe' is not one of: negative, positive"
 * With skip_bad_rows such rows are skipped and counted instead (ftq_dataset_bad_rows).
 *
 * Details: CSV/TSV need a header row; a leading UTF-8 BOM is dropped, CRLF and LF both end
 * lines, blank lines are skipped, texts are kept byte for byte (labels are trimmed). A CSV
 * quote inside an unquoted field is literal; after a closing quote only the delimiter or the
 * end of the line may follow. Integer labels above 65535 are treated as names. A source
 * whose format is (or is guessed as) plain text is refused by ftq_dataset_load. Loading is
 * reentrant; a loaded dataset is immutable and may be read from several threads.
 */
#ifndef FTQ_DATA_H
#define FTQ_DATA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FTQ_DATA_AUTO = 0, /* from the (member) name: .csv, .tsv, .jsonl/.json, anything else text */
    FTQ_DATA_CSV = 1,  /* RFC 4180: header row, quoted fields with "" escapes and newlines */
    FTQ_DATA_TSV = 2,  /* GLUE style: header row, tab-separated, no quoting */
    FTQ_DATA_JSONL = 3,/* one JSON object per line */
    FTQ_DATA_TEXT = 4, /* plain text (ftq_text_load) */
} ftq_data_format;

typedef struct {
    ftq_data_format format;
    const char *text_col;   /* NULL: "text", else "sentence" */
    const char *label_col;  /* NULL: "label" */
    int require_labels;     /* 1 (default): a row without a label is bad */
    int skip_bad_rows;      /* 0 (default): the first bad row is an error */
    /* A fixed label set (e.g. the train set's, or the model's id2label): a label is one of
     * these names, or an integer index into them. NULL: collect the set from the data —
     * if every label is a non-negative integer the ids are used as they are (names "0",
     * "1", ...; num_labels = max + 1), otherwise the sorted distinct names. */
    const char *const *label_names;
    int n_label_names;
} ftq_dataset_params;

ftq_dataset_params ftq_dataset_default_params(void);

typedef struct ftq_dataset ftq_dataset;

int ftq_dataset_load(const char *source, const ftq_dataset_params *p, ftq_dataset **out);
void ftq_dataset_free(ftq_dataset *d); /* NULL is fine */

size_t ftq_dataset_size(const ftq_dataset *d);
const char *ftq_dataset_text(const ftq_dataset *d, size_t i); /* UTF-8, NUL-terminated */
int ftq_dataset_label(const ftq_dataset *d, size_t i);        /* 0..num_labels-1, -1 if none */
size_t ftq_dataset_line(const ftq_dataset *d, size_t i);      /* 1-based line where row i starts */
int ftq_dataset_num_labels(const ftq_dataset *d);
const char *const *ftq_dataset_label_names(const ftq_dataset *d);
size_t ftq_dataset_bad_rows(const ftq_dataset *d);
const char *ftq_dataset_source(const ftq_dataset *d);

/* Bytes the dataset holds (the text arena, the per-row arrays and the label names). If
 * peak_load is not NULL it receives the largest parse buffer used while loading (the read
 * block plus the longest row), which does not grow with the size of the source. */
size_t ftq_dataset_memory(const ftq_dataset *d, size_t *peak_load);

/* The format FTQ_DATA_AUTO picks for `source`: from its name, or for an archive given
 * without a member from the name of the one file inside (the source is opened, its data is
 * not read). Lets a caller choose between ftq_dataset_load and ftq_text_load. */
int ftq_dataset_detect_format(const char *source, ftq_data_format *fmt);

/* The whole text of a source (file or archive member), NUL-terminated, malloc'd. Invalid
 * UTF-8 is an error naming the byte offset. The bytes are returned as they are (a BOM is
 * kept). */
int ftq_text_load(const char *source, char **text, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
