/* error.h: how core/ reports failure.
 * Every fallible core function returns 0 (or a count) on success and -1 on failure, and writes a
 * sentence naming the file, key, tensor, offset or allowed range into a kn_err the caller owns.
 * core/ never prints; lua/ turns the message into a Lua error. */
#ifndef KNWB_ERROR_H
#define KNWB_ERROR_H

#define KN_ERRLEN 1024

typedef struct kn_err {
    char msg[KN_ERRLEN];
} kn_err;

/* Formats the message into err (if err is not NULL) and returns -1, so callers can write
 * `return kn_fail(err, "token id %d out of range [0, %d)", id, n);`. */
int kn_fail(kn_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
