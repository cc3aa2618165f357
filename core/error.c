/* error.c: formatting of core error messages (see error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int kn_fail(kn_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
