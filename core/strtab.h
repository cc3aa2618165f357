/* strtab.h: a token table: id -> byte string and byte string -> id (open addressing), the
 * vocabulary behind every tokenizer. Tokens are byte strings with a length (a NUL inside is
 * allowed); each is also stored NUL-terminated for callers that want a C string. */
#ifndef KNWB_STRTAB_H
#define KNWB_STRTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct kn_strtab {
    int n;            /* ids 0..n-1 */
    char **tok;       /* id -> token (NUL-terminated copy), NULL for an id not set yet */
    size_t *len;
    int *slots;       /* hash slots holding ids, -1 = empty */
    uint32_t mask;
} kn_strtab;

/* Makes an empty table for ids 0..n-1. Returns -1 when out of memory (or n out of range). */
int kn_strtab_init(kn_strtab *t, int n);
/* Sets id's token (copied). Returns 0; -1 when out of memory; -2 when the token is already
 * another id's (*other = that id); -3 when id already has a token. */
int kn_strtab_set(kn_strtab *t, int id, const char *s, size_t len, int *other);
/* Id of the token s[0..len), or -1. */
int kn_strtab_find(const kn_strtab *t, const char *s, size_t len);
/* First id without a token, or -1 when every id has one. */
int kn_strtab_missing(const kn_strtab *t);
void kn_strtab_free(kn_strtab *t);

#endif
