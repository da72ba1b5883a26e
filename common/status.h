/* status.h: the one error-passing style of the code base (docs/errors.md).
 *
 * Internal functions return elm_status. A caller that cannot add anything
 * propagates the first failure unchanged with ELM_TRY; a caller that must
 * clean up uses `goto fail` with a single `st` variable. The message goes to
 * the caller's (err, err_size) buffer or the handle, through elmi_errorf. */
#ifndef ELM_COMMON_STATUS_H
#define ELM_COMMON_STATUS_H

#include <stddef.h>

#include "edgelm.h"

#define ELM_TRY(expr)                      \
    do {                                   \
        elm_status elm_try_st_ = (expr);   \
        if (elm_try_st_ != ELM_OK)         \
            return elm_try_st_;            \
    } while (0)

/* Formats a message into err (when not NULL) and returns st. */
elm_status elmi_errorf(char *err, size_t err_size, elm_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
