/* fd_check.h: what the kernel tests share: a seeded xorshift RNG for inputs, central finite
 * differences of a double-precision scalar, and the two verdicts every backward kernel faces
 * (agreement with the differences; accumulation into its outputs). Header-only, test-only.
 *
 * The scalar differentiated is S = sum(g * out) for a random upstream gradient g, computed in
 * double. Each input entry is perturbed by +-h in float and (S+ - S-) / (x+ - x-) is compared
 * with the analytic gradient: |fd - an| <= FD_REL * max|an| + FD_ABS for every entry (the worst
 * entry is printed). */
#ifndef KNWB_FD_CHECK_H
#define KNWB_FD_CHECK_H

#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FD_REL 1e-2
#define FD_ABS 1e-4

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}
static float *rand_vec(long n, float scale) {
    float *v = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) v[i] = scale * frand();
    return v;
}
static float *zeros(long n) { return calloc((size_t)n, sizeof(float)); }
static float *copy(const float *a, long n) {
    float *c = malloc(sizeof(float) * n);
    memcpy(c, a, sizeof(float) * n);
    return c;
}
static double dot(const float *g, const float *o, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)g[i] * o[i];
    return s;
}

/* The scalar under test, recomputed from the current inputs. */
typedef double (*scalar_fn)(void *ctx);

/* Central differences of f w.r.t. every entry of x (x is restored exactly). */
static void fd_grad(float *x, long n, float h, scalar_fn f, void *ctx, float *out) {
    for (long i = 0; i < n; i++) {
        float save = x[i], xp = save + h, xm = save - h;
        x[i] = xp;
        double sp = f(ctx);
        x[i] = xm;
        double sm = f(ctx);
        x[i] = save;
        out[i] = (float)((sp - sm) / ((double)xp - xm));
    }
}

static void check_fd(const char *what, const float *fd, const float *an, long n, float h) {
    double scale = 0, worst = 0;
    long at = 0;
    for (long i = 0; i < n; i++) scale = fmax(scale, fabs(an[i]));
    for (long i = 0; i < n; i++) {
        double d = fabs((double)fd[i] - an[i]);
        if (d > worst || d != d) { worst = d != d ? INFINITY : d; at = i; }
    }
    double tol = FD_REL * scale + FD_ABS;
    CHECK(worst <= tol && scale > 0, "%s: %ld entries, h=%.0e, max |fd - an| = %.2e at [%ld] (fd %.5f, an %.5f), max |an| = %.3f, tol %.2e",
          what, n, h, worst, at, fd[at], an[at], scale, tol);
}

/* After a second call of a backward kernel, buf must hold twice the first result `once`. */
static void check_doubled(const char *what, const float *buf, const float *once, long n) {
    double worst = 0, scale = 1e-30;
    int exact = 1;
    for (long i = 0; i < n; i++) {
        scale = fmax(scale, fabs(2.0 * once[i]));
        worst = fmax(worst, fabs(buf[i] - 2.0 * once[i]));
        exact &= buf[i] == 2.0f * once[i];
    }
    CHECK(worst <= 1e-6 * scale, "%s accumulates: second call gives 2x the first (%s, max rel dev %.1e)", what,
          exact ? "exact" : "not bit-exact", worst / scale);
}

#endif
