/* alloc.c: checked allocation with a failure-injection counter (see alloc.h). */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

static long fail_at, allocs;

void kn_alloc_fail_after(long n) { fail_at = n > 0 ? n : 0; allocs = 0; }
long kn_alloc_count(void) { return allocs; }

static int injected(void) {
    allocs++;
    return fail_at && allocs >= fail_at;
}

void *kn_malloc(size_t bytes) { return injected() ? NULL : malloc(bytes ? bytes : 1); }

void *kn_calloc(size_t count, size_t size) {
    size_t n;
    if (kn_mul_size(count, size, &n) != 0 || injected()) return NULL;
    return calloc(n ? n : 1, 1);
}

void *kn_realloc(void *p, size_t bytes) { return injected() ? NULL : realloc(p, bytes ? bytes : 1); }

void *kn_aligned_alloc(size_t bytes) {
    size_t n;
    if (kn_add_size(bytes ? bytes : 1, 63, &n) != 0 || injected()) return NULL;
    return aligned_alloc(64, n & ~(size_t)63);
}

char *kn_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = kn_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int kn_mul_size(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out) ? -1 : 0; }
int kn_add_size(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out) ? -1 : 0; }
int kn_mul_i64(int64_t a, int64_t b, int64_t *out) { return (a < 0 || b < 0 || __builtin_mul_overflow(a, b, out)) ? -1 : 0; }
int kn_add_i64(int64_t a, int64_t b, int64_t *out) { return (a < 0 || b < 0 || __builtin_add_overflow(a, b, out)) ? -1 : 0; }
