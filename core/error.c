/* error.c - thread-local last-error message and status names.
 * Invariant: ftq_set_error always returns the status it was given, so callers can write
 * `return ftq_set_error(FTQ_EFORMAT, "...")`. */
#include "ftq.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_CAP 1024

static _Thread_local char last_error[ERR_CAP];

const char *ftq_last_error(void) { return last_error; }

void ftq_clear_error(void) { last_error[0] = '\0'; }

int ftq_set_error(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

int ftq_wrap_error(int status, const char *fmt, ...)
{
    char prefix[ERR_CAP], old[ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    if (snprintf(last_error, sizeof last_error, "%s: %s", prefix, old) < 0) /* truncation is fine */
        last_error[0] = '\0';
    return status;
}

const char *ftq_strerror(int status)
{
    switch (status) {
    case FTQ_OK: return "ok";
    case FTQ_EIO: return "i/o error";
    case FTQ_EFORMAT: return "format error";
    case FTQ_ENOMEM: return "out of memory";
    case FTQ_EINVAL: return "invalid argument";
    case FTQ_EUNSUPPORTED: return "unsupported";
    case FTQ_ENOTFOUND: return "not found";
    case FTQ_EINTERRUPTED: return "interrupted";
    case FTQ_ENUMERIC: return "numeric error";
    default: return "unknown error";
    }
}
