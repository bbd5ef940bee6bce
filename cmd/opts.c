/* opts.c - option parsing and small helpers shared by the ftq commands. */
#define _POSIX_C_SOURCE 200809L
#include "cmd/opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "include/ftq.h"

int cmd_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ftq %s: error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static const ftq_opt *find_long(const ftq_opt *opts, const char *name, size_t len)
{
    for (const ftq_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static const ftq_opt *find_short(const ftq_opt *opts, char c)
{
    for (const ftq_opt *o = opts; o->name; o++)
        if (o->short_name == c)
            return o;
    return NULL;
}

static int set_value(const ftq_cmd_spec *spec, const ftq_opt *o, const char *val)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_FLAG:
        *(int *)o->dest = 1;
        return 0;
    case OPT_STR:
        *(const char **)o->dest = val;
        return 0;
    case OPT_INT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < -2147483647L || v > 2147483647L)
            return cmd_fail(spec->name, "option --%s expects an integer, got '%s'", o->name, val) ? -1 : -1;
        if (o->min <= o->max && (v < o->min || v > o->max))
            return cmd_fail(spec->name, "option --%s must be in [%.0f, %.0f], got %ld", o->name, o->min,
                            o->max, v) ? -1 : -1;
        *(int *)o->dest = (int)v;
        return 0;
    }
    case OPT_U64: {
        if (val[0] == '-')
            return cmd_fail(spec->name, "option --%s expects a non-negative integer, got '%s'",
                            o->name, val) ? -1 : -1;
        unsigned long long v = strtoull(val, &end, 0);
        if (errno || end == val || *end)
            return cmd_fail(spec->name, "option --%s expects a non-negative integer, got '%s'",
                            o->name, val) ? -1 : -1;
        *(uint64_t *)o->dest = (uint64_t)v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v))
            return cmd_fail(spec->name, "option --%s expects a number, got '%s'", o->name, val) ? -1 : -1;
        if (o->min <= o->max && (v < o->min || v > o->max))
            return cmd_fail(spec->name, "option --%s must be in [%g, %g], got %g", o->name, o->min,
                            o->max, v) ? -1 : -1;
        *(double *)o->dest = v;
        return 0;
    }
    }
    return -1;
}

int opts_parse(const ftq_cmd_spec *spec, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const ftq_opt *o = NULL;
        const char *inline_val = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            opts_usage(stdout, spec);
            return 1;
        }
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            o = find_long(spec->opts, a + 2, len);
            if (eq)
                inline_val = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            o = find_short(spec->opts, a[1]);
        } else {
            cmd_fail(spec->name, "unexpected argument '%s' (see 'ftq %s --help')", a, spec->name);
            return -1;
        }
        if (!o) {
            cmd_fail(spec->name, "unknown option '%s' (see 'ftq %s --help')", a, spec->name);
            return -1;
        }
        if (o->type == OPT_FLAG) {
            if (inline_val) {
                cmd_fail(spec->name, "option --%s takes no value", o->name);
                return -1;
            }
            *(int *)o->dest = 1;
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc) {
                cmd_fail(spec->name, "option '%s' needs a value (%s)", a, o->metavar ? o->metavar : "VALUE");
                return -1;
            }
            val = argv[++i];
        }
        if (set_value(spec, o, val) != 0)
            return -1;
    }
    return 0;
}

void opts_usage(FILE *fp, const ftq_cmd_spec *spec)
{
    fprintf(fp, "usage: ftq %s %s\n\n%s\n\noptions:\n", spec->name, spec->synopsis, spec->summary);
    for (const ftq_opt *o = spec->opts; o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        fprintf(fp, "  %-26s %s", left, o->help);
        switch (o->type) {
        case OPT_INT:
            fprintf(fp, " (default %d)", *(int *)o->dest);
            break;
        case OPT_FLOAT:
            fprintf(fp, " (default %g)", *(double *)o->dest);
            break;
        case OPT_U64:
            fprintf(fp, " (default %llu)", (unsigned long long)*(uint64_t *)o->dest);
            break;
        case OPT_STR:
            if (*(const char **)o->dest)
                fprintf(fp, " (default %s)", *(const char **)o->dest);
            break;
        case OPT_FLAG:
            break;
        }
        fputc('\n', fp);
    }
    fprintf(fp, "  %-26s %s\n", "-h, --help", "show this help");
    if (spec->details)
        fprintf(fp, "\n%s\n", spec->details);
}

int opts_require(const ftq_cmd_spec *spec, const char *name, const void *value)
{
    if (value)
        return 0;
    return cmd_fail(spec->name, "missing required option --%s (see 'ftq %s --help')", name, spec->name);
}

void json_print_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\t': fputs("\\t", fp); break;
        case '\b': fputs("\\b", fp); break;
        case '\f': fputs("\\f", fp); break;
        default:
            if (*p < 0x20)
                fprintf(fp, "\\u%04x", *p);
            else
                fputc(*p, fp);
        }
    }
    fputc('"', fp);
}

const char *default_model_dir(void)
{
    const char *env = getenv("FTQ_MODEL");
    if (env && *env)
        return env;
    return FTQ_DEFAULT_MODEL_DIR;
}
