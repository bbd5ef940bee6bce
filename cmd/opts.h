/* opts.h - the one option parser of the ftq commands. Options are declared once, with
 * type, destination (whose initial value is the default shown in --help), range and help
 * text; numbers are checked strictly (whole string, range). */
#ifndef FTQ_CMD_OPTS_H
#define FTQ_CMD_OPTS_H

#include <stdint.h>
#include <stdio.h>

typedef enum { OPT_FLAG, OPT_INT, OPT_FLOAT, OPT_STR, OPT_U64 } opt_type;

typedef struct {
    const char *name;    /* long name without dashes: "model" */
    char short_name;     /* 'm' or 0 */
    opt_type type;
    void *dest;          /* int* (FLAG, INT), double* (FLOAT), const char** (STR), uint64_t* */
    const char *metavar; /* "DIR", "N", ... (NULL for flags) */
    const char *help;
    double min, max;     /* range for INT / FLOAT (ignored when min > max) */
} ftq_opt;

#define OPT_END {NULL, 0, OPT_FLAG, NULL, NULL, NULL, 0, 0}

typedef struct {
    const char *name;     /* "perplexity" */
    const char *synopsis; /* "-m DIR -f FILE [-c CTX]" */
    const char *summary;  /* one line */
    const char *details;  /* paragraphs after the option table, or NULL */
    const ftq_opt *opts;
} ftq_cmd_spec;

/* Parse argv[1..] (argv[0] is the command name). Returns 0 on success, 1 if --help was
 * given (usage already printed to stdout), -1 on a bad option (message printed to
 * stderr). Positional arguments are not accepted. */
int opts_parse(const ftq_cmd_spec *spec, int argc, char **argv);
void opts_usage(FILE *fp, const ftq_cmd_spec *spec);

/* Print "ftq CMD: error: MSG" to stderr; returns the exit code 1. */
int cmd_fail(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Require an option: prints "missing required option --NAME" and returns 1 if value is NULL. */
int opts_require(const ftq_cmd_spec *spec, const char *name, const void *value);

/* JSON string escaping for hand-written JSON output. */
void json_print_string(FILE *fp, const char *s);

/* Directory of the shipped default model (models/stories260K next to the binary's source
 * tree, or $FTQ_MODEL). */
const char *default_model_dir(void);

#endif
