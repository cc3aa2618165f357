/* strtab.c: the token table (see strtab.h). FNV-1a hashing, linear probing, at most half full. */
#include "strtab.h"

#include "alloc.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int kn_strtab_init(kn_strtab *t, int n) {
    memset(t, 0, sizeof *t);
    if (n < 0 || n > (1 << 28)) return -1;
    uint32_t size = 16;
    while (size < 2u * (uint32_t)n) size *= 2;
    t->n = n;
    t->mask = size - 1;
    t->tok = kn_calloc((size_t)n + 1, sizeof *t->tok);
    t->len = kn_calloc((size_t)n + 1, sizeof *t->len);
    t->slots = kn_malloc(size * sizeof *t->slots);
    if (!t->tok || !t->len || !t->slots) { kn_strtab_free(t); return -1; }
    memset(t->slots, 0xFF, size * sizeof *t->slots);
    return 0;
}

int kn_strtab_find(const kn_strtab *t, const char *s, size_t len) {
    if (!t->slots) return -1;
    for (uint32_t i = hash_bytes(s, len) & t->mask;; i = (i + 1) & t->mask) {
        int id = t->slots[i];
        if (id < 0 || (t->len[id] == len && memcmp(t->tok[id], s, len) == 0)) return id;
    }
}

int kn_strtab_set(kn_strtab *t, int id, const char *s, size_t len, int *other) {
    if (id < 0 || id >= t->n) return -1;
    if (t->tok[id]) return -3;
    uint32_t i = hash_bytes(s, len) & t->mask;
    for (; t->slots[i] >= 0; i = (i + 1) & t->mask) {
        int o = t->slots[i];
        if (t->len[o] == len && memcmp(t->tok[o], s, len) == 0) {
            if (other) *other = o;
            return -2;
        }
    }
    char *copy = kn_malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    t->tok[id] = copy;
    t->len[id] = len;
    t->slots[i] = id;
    return 0;
}

int kn_strtab_missing(const kn_strtab *t) {
    for (int id = 0; id < t->n; id++)
        if (!t->tok[id]) return id;
    return -1;
}

void kn_strtab_free(kn_strtab *t) {
    if (t->tok)
        for (int i = 0; i < t->n; i++) free(t->tok[i]);
    free(t->tok);
    free(t->len);
    free(t->slots);
    memset(t, 0, sizeof *t);
}
