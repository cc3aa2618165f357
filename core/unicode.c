/* unicode.c: UTF-8, BasicTokenizer's character classes, lower-casing and NFD/NFC (see unicode.h).
 * Moved here from wordpiece.c so that the BPE tokenizers (NFC normalizer, byte offsets of bad
 * UTF-8) share one copy. */
#include "unicode.h"

#include "alloc.h"
#include "unicode_tables.h"

#include <stdlib.h>

_Static_assert((int)KN_UC_DROP == (int)KN_UNI_DROP && (int)KN_UC_SPACE == (int)KN_UNI_SPACE &&
               (int)KN_UC_PUNCT == (int)KN_UNI_PUNCT &&
               (int)KN_UC_MN == (int)KN_UNI_MN, "unicode.h flags are the table's");

/* ---- UTF-8 ---- */

int kn_utf8_decode(const char *str, size_t avail, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    int len;
    uint32_t c;
    if (!avail) return 0;
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) len = 2, c = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) len = 3, c = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) len = 4, c = s[0] & 0x07;
    else return 0;
    if ((size_t)len > avail) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || c > 0x10FFFF ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

int kn_utf8_encode(uint32_t c, char *out) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xC0 | c >> 6); out[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

long kn_utf8_invalid_at(const char *s, size_t len) {
    uint32_t c;
    for (size_t i = 0; i < len;) {
        int n = kn_utf8_decode(s + i, len - i, &c);
        if (!n) return (long)i;
        i += (size_t)n;
    }
    return -1;
}

/* ---- character properties (tables in unicode_tables.h) ---- */

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const kn_uni_range *uni_range(uint32_t c) {
    size_t lo = 0, hi = COUNT(kn_uni_ranges);
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (kn_uni_ranges[mid].start <= c) lo = mid; else hi = mid;
    }
    return &kn_uni_ranges[lo];
}
int kn_uc_flags(uint32_t c) { return uni_range(c)->flags; }
/* Shortcuts below U+0300 (no combining class) and U+00C0 (no decomposition) are checked by the
 * table generator. */
static int uni_ccc(uint32_t c) { return c < 0x300 ? 0 : uni_range(c)->ccc; }

static int cmp_first_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}
static int cmp_first_two_u32(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

int kn_uc_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int kn_uc_lower(uint32_t c, uint32_t out[2]) {
    if (c < 0x80) { out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c; return 1; }
    if (c == 0x130) { out[0] = 'i'; out[1] = 0x307; return 2; } /* I WITH DOT ABOVE */
    const kn_uni_lower *m = bsearch(&c, kn_uni_lowers, COUNT(kn_uni_lowers), sizeof *m, cmp_first_u32);
    out[0] = m ? m->lower : c;
    return 1;
}

/* Hangul syllables decompose and compose by arithmetic rather than by table. */
enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7,
       H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28, H_NCOUNT = 21 * 28, H_SCOUNT = 19 * 21 * 28 };

/* ---- growable code point buffers ---- */

int kn_cpbuf_reserve(kn_cpbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64, bytes;
    while (cap < b->n + extra) {
        if (kn_mul_size(cap, 2, &cap)) return -1;
    }
    if (kn_mul_size(cap, sizeof *b->at, &bytes)) return -1;
    uint32_t *p = kn_realloc(b->at, bytes);
    if (!p) return -1;
    b->at = p;
    b->cap = cap;
    return 0;
}

void kn_cpbuf_free(kn_cpbuf *b) {
    free(b->at);
    b->at = NULL;
    b->n = b->cap = 0;
}

/* Appends the full canonical decomposition of c; the caller has reserved 4 slots (the longest
 * decomposition any code point has, which the table generator checks). */
static void decompose_char(uint32_t c, kn_cpbuf *out) {
    if (c - H_SBASE < H_SCOUNT) {
        uint32_t s = c - H_SBASE;
        out->at[out->n++] = H_LBASE + s / H_NCOUNT;
        out->at[out->n++] = H_VBASE + s % H_NCOUNT / H_TCOUNT;
        if (s % H_TCOUNT) out->at[out->n++] = H_TBASE + s % H_TCOUNT;
        return;
    }
    const kn_uni_decomp *d = c < 0xC0 ? NULL
        : bsearch(&c, kn_uni_decomps, COUNT(kn_uni_decomps), sizeof *d, cmp_first_u32);
    if (!d) { out->at[out->n++] = c; return; }
    decompose_char(d->first, out);
    if (d->second) decompose_char(d->second, out);
}

/* Full decomposition, then the canonical ordering of marks (a stable sort by combining class
 * within each run of non-starters). */
int kn_uc_nfd(const uint32_t *in, size_t n, kn_cpbuf *out) {
    size_t need;
    if (kn_mul_size(4, n, &need) || kn_cpbuf_reserve(out, need)) return -1;
    size_t first = out->n;
    for (size_t i = 0; i < n; i++) decompose_char(in[i], out);
    for (size_t i = first + 1; i < out->n; i++) {
        uint32_t c = out->at[i];
        int ccc = uni_ccc(c);
        size_t j = i;
        for (; ccc && j > first && uni_ccc(out->at[j - 1]) > ccc; j--) out->at[j] = out->at[j - 1];
        out->at[j] = c;
    }
    return 0;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a - H_LBASE < H_LCOUNT && b - H_VBASE < H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a - H_SBASE < H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b - H_TBASE - 1 < H_TCOUNT - 1)
        return a + (b - H_TBASE);
    uint32_t key[2] = {a, b};
    const kn_uni_comp *m = bsearch(key, kn_uni_comps, COUNT(kn_uni_comps), sizeof *m, cmp_first_two_u32);
    return m ? m->composite : 0;
}

/* A mark joins the last starter unless something left between them has class 0 or a class >=
 * its own. */
void kn_uc_compose(kn_cpbuf *b) {
    size_t out = 0, starter = SIZE_MAX;
    int last_ccc = 0;
    for (size_t i = 0; i < b->n; i++) {
        uint32_t c = b->at[i], composite;
        int ccc = uni_ccc(c);
        if (starter != SIZE_MAX && (out - 1 == starter || (last_ccc && last_ccc < ccc)) &&
            (composite = compose_pair(b->at[starter], c))) {
            b->at[starter] = composite;
            continue;
        }
        if (!ccc) starter = out;
        last_ccc = ccc;
        b->at[out++] = c;
    }
    b->n = out;
}

int kn_uc_nfc_bytes(const char *s, size_t n, char **out, size_t *out_len) {
    kn_cpbuf cps = {0}, nf = {0};
    size_t cap = 0, k = 0, need;
    char *o = NULL;
    int rc = 0;
    /* NFC never makes a stretch longer than 3 bytes per input byte (a 1-byte character decomposes
     * into at most 4 code points of at most 3 bytes, which compose again): 3n + 1 is enough. */
    if (kn_mul_size(n, 3, &need) || kn_add_size(need, 1, &cap) || !(o = kn_malloc(cap))) return -1;
    for (size_t i = 0; i <= n && !rc;) {
        uint32_t c;
        int len = i < n ? kn_utf8_decode(s + i, n - i, &c) : 0;
        if (len) {
            if (kn_cpbuf_reserve(&cps, 1)) { rc = -1; break; }
            cps.at[cps.n++] = c;
            i += (size_t)len;
            continue;
        }
        nf.n = 0;
        if (kn_uc_nfd(cps.at, cps.n, &nf)) { rc = -1; break; }
        kn_uc_compose(&nf);
        for (size_t j = 0; j < nf.n; j++) {
            if (k + 4 > cap) { /* cannot happen by the bound above; refuse rather than overrun */
                rc = -1;
                break;
            }
            k += (size_t)kn_utf8_encode(nf.at[j], o + k);
        }
        cps.n = 0;
        if (i < n && !rc) {
            if (k + 1 > cap) { rc = -1; break; }
            o[k++] = s[i]; /* a byte that is not UTF-8 is kept as it is */
        }
        i++;
    }
    kn_cpbuf_free(&cps);
    kn_cpbuf_free(&nf);
    if (rc) { free(o); return -1; }
    o[k] = '\0';
    *out = o;
    *out_len = k;
    return 0;
}
