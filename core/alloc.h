/* alloc.h: checked allocation and checked size arithmetic for core/.
 * Every allocation in core/ goes through these, so that (a) sizes computed from a file's numbers
 * cannot wrap, and (b) a failure-injection test can make the n-th allocation fail and check that
 * every caller reports it through kn_err and leaks nothing. These never print and never abort. */
#ifndef KNWB_ALLOC_H
#define KNWB_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *kn_malloc(size_t bytes);
void *kn_calloc(size_t count, size_t size);
void *kn_realloc(void *p, size_t bytes);
/* 64-byte aligned (bytes is rounded up to a multiple of 64); free with free(). */
void *kn_aligned_alloc(size_t bytes);
char *kn_strdup(const char *s);

/* Failure injection for tests: after kn_alloc_fail_after(n) with n >= 1 the n-th allocation from
 * then on returns NULL, and so does every later one until kn_alloc_fail_after(0). */
void kn_alloc_fail_after(long n);
/* Allocations made since the last kn_alloc_fail_after call. */
long kn_alloc_count(void);

/* *out = a * b (or a + b); returns 0, or -1 when the result does not fit (or an operand is
 * negative, for the int64_t forms). */
int kn_mul_size(size_t a, size_t b, size_t *out);
int kn_add_size(size_t a, size_t b, size_t *out);
int kn_mul_i64(int64_t a, int64_t b, int64_t *out);
int kn_add_i64(int64_t a, int64_t b, int64_t *out);

#endif
