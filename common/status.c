#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>

elm_status elmi_errorf(char *err, size_t err_size, elm_status st, const char *fmt, ...) {
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return st;
}
