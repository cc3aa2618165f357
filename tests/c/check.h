/* check.h: the tiny test harness shared by the C tests.
 * CHECK prints "ok"/"FAIL" with what was compared; check_done prints the closing tally
 * "N passed, N failed" that tests/run.sh adds up, and returns the exit status. */
#ifndef KNWB_CHECK_H
#define KNWB_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            check_passed++;                                                 \
            printf("ok   ");                                                \
        } else {                                                            \
            check_failed++;                                                 \
            printf("FAIL %s:%d ", __FILE__, __LINE__);                      \
        }                                                                   \
        printf(__VA_ARGS__);                                                \
        printf("\n");                                                       \
    } while (0)

/* Asserts that `msg` contains `needle` (used to check that errors name what went wrong). */
#define CHECK_MSG(msg, needle, what)                                        \
    CHECK(strstr((msg), (needle)) != NULL, "%s: error names \"%s\" (got: %s)", \
          (what), (needle), (msg))

/* Largest |a-b| / (scale) over n values, where scale = max(max|b|, floor). */
static inline double check_rel_err(const float *a, const float *b, long n, double floor) {
    double scale = floor, worst = 0;
    for (long i = 0; i < n; i++) if (fabs(b[i]) > scale) scale = fabs(b[i]);
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / scale;
        if (d > worst || d != d) worst = (d != d) ? INFINITY : d;
    }
    return worst;
}

static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
