/* ftq.h - public API of libftq: status codes, errors, and the umbrella include.
 *
 * Every fallible function returns an int status: FTQ_OK (0) or a negative FTQ_E* code.
 * On failure the library records a one-line message (lowercase, no final period, the
 * failure first, the subject quoted) that ftq_last_error() returns. The message is
 * thread-local, so threads do not see each other's errors. The library never prints
 * and never exits.
 *
 *     ftq_model *m = NULL;
 *     if (ftq_model_load("models/stories260K", NULL, &m) != FTQ_OK) {
 *         fprintf(stderr, "error: %s\n", ftq_last_error());
 *         return 1;
 *     }
 */
#ifndef FTQ_H
#define FTQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FTQ_VERSION "0.1.0"

enum {
    FTQ_OK = 0,
    FTQ_EIO = -1,          /* cannot open / read / write / map a file */
    FTQ_EFORMAT = -2,      /* file contents malformed or inconsistent */
    FTQ_ENOMEM = -3,       /* allocation failed */
    FTQ_EINVAL = -4,       /* invalid argument or option value */
    FTQ_EUNSUPPORTED = -5, /* valid input that ftq does not implement */
    FTQ_ENOTFOUND = -6,    /* a required file, tensor or key is absent */
    FTQ_EINTERRUPTED = -7, /* stopped by a signal or callback */
    FTQ_ENUMERIC = -8,     /* NaN / Inf or overflow in a computation */
};

/* The message of the last failure in this thread ("" if none). Valid until the next
 * failing call in the same thread. */
const char *ftq_last_error(void);

/* Static name of a status code, e.g. "format error". */
const char *ftq_strerror(int status);

/* Record a failure message and return `status` (for use inside the library and by
 * extensions). printf-style. Always returns `status`. */
int ftq_set_error(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefix the current error message with "prefix: ", keeping the status. Returns status. */
int ftq_wrap_error(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void ftq_clear_error(void);

#ifdef __cplusplus
}
#endif

#include "ftq_core.h"
#include "ftq_io.h"
#include "ftq_gguf.h"
#include "ftq_tokenizer.h"
#include "ftq_model.h"
#include "ftq_bert.h"
#include "ftq_eval.h"
#include "ftq_data.h"
#include "ftq_train.h"
#include "ftq_quant.h"
#include "ftq_prune.h"
#include "ftq_report.h"
#include "ftq_lora.h"

#endif
