/* wordpiece.c: BERT's tokenizer (see wordpiece.h), written to give the same tokens as Hugging Face's
 * slow BertTokenizer with its default options (tokenize_chinese_chars on, strip_accents following
 * do_lower_case, no added tokens, never_split = the five special tokens).
 *
 * The steps, in HF's order: special tokens are cut out of the raw text first; with do_lower_case
 * the rest is lower-cased one character at a time; each stretch between special tokens is cleaned
 * (NUL, U+FFFD and category C* characters dropped, whitespace made a space), CJK ideographs become
 * words of their own, the text is NFC-normalized and split on whitespace; each word is then, with
 * do_lower_case, lower-cased, NFD-decomposed and stripped of Mn marks, split on punctuation, and
 * every piece goes through greedy longest-match-first WordPiece.
 *
 * Not a Unicode library: core/unicode_tables.h (generated from Python's unicodedata) holds only
 * what those steps consult. Nor does it follow BertTokenizerFast (Rust), which differs in corner
 * cases (it does not NFC-normalize, for one). */
#include "wordpiece.h"
#include "alloc.h"

#include "unicode_tables.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORD_CHARS 100 /* HF's max_input_chars_per_word: longer words become [UNK] */
#define N_SPECIAL 5

static const char *const special_names[N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

struct kn_vocab {
    int n, lower;
    char *pool;       /* every token's bytes, NUL-terminated, back to back */
    char **tokens;    /* id -> token, pointing into pool */
    size_t *lens;
    int *slots;       /* open-addressing hash table of ids, -1 = empty; size mask + 1 */
    uint32_t mask;
    int special[N_SPECIAL];
};

/* ---- UTF-8 ---- */

/* Decodes the sequence at s; returns its length, or 0 when it is not well-formed UTF-8 (stray
 * continuation byte, overlong form, surrogate, above U+10FFFF, or cut short by the NUL). */
static int utf8_decode(const char *str, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    int len;
    uint32_t c;
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) len = 2, c = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) len = 3, c = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) len = 4, c = s[0] & 0x07;
    else return 0;
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

static int utf8_encode(uint32_t c, char *out) {
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

/* Byte offset of the first malformed sequence in s, or -1 when s is all valid UTF-8. */
static long utf8_invalid_at(const char *s) {
    uint32_t c;
    for (long i = 0; s[i];) {
        int len = utf8_decode(s + i, &c);
        if (!len) return i;
        i += len;
    }
    return -1;
}

/* ---- Unicode properties (tables in unicode_tables.h) ---- */

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const kn_uni_range *uni_range(uint32_t c) {
    size_t lo = 0, hi = COUNT(kn_uni_ranges);
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (kn_uni_ranges[mid].start <= c) lo = mid; else hi = mid;
    }
    return &kn_uni_ranges[lo];
}
static int uni_flags(uint32_t c) { return uni_range(c)->flags; }
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

/* HF's _is_chinese_char: the CJK Unified Ideographs blocks, not Hangul, kana or CJK punctuation. */
static int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Python's str.lower() of one character; writes 1 or 2 code points. */
static int lower_char(uint32_t c, uint32_t out[2]) {
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

typedef struct { uint32_t *at; size_t n, cap; } cpbuf;

static int reserve(cpbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap *= 2;
    uint32_t *p = kn_realloc(b->at, cap * sizeof *p);
    if (!p) return -1;
    b->at = p;
    b->cap = cap;
    return 0;
}

/* Appends the full canonical decomposition of c; the caller has reserved 4 slots (the longest
 * decomposition any code point has, which the table generator checks). */
static void decompose_char(uint32_t c, cpbuf *out) {
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

/* NFD of in[0..n) appended to out: full decomposition, then the canonical ordering of marks
 * (a stable sort by combining class within each run of non-starters). */
static int nfd(const uint32_t *in, size_t n, cpbuf *out) {
    if (reserve(out, 4 * n)) return -1;
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

/* Canonical composition of an NFD buffer, in place (the second half of NFC). A mark joins the
 * last starter unless something left between them has class 0 or a class >= its own. */
static void compose(cpbuf *b) {
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

/* ---- vocabulary ---- */

static uint32_t hash_bytes(const char *s, size_t len) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int lookup(const kn_vocab *v, const char *s, size_t len) {
    for (uint32_t i = hash_bytes(s, len) & v->mask;; i = (i + 1) & v->mask) {
        int id = v->slots[i];
        if (id < 0 || (v->lens[id] == len && memcmp(v->tokens[id], s, len) == 0)) return id;
    }
}

void kn_vocab_free(kn_vocab *v) {
    if (!v) return;
    free(v->pool);
    free(v->tokens);
    free(v->lens);
    free(v->slots);
    free(v);
}

/* Indexes n tokens that point into pool (taking ownership of both). `path` names the file for
 * messages (positions are then 1-based lines); NULL means a token list (0-based indices). */
static kn_vocab *vocab_build(char *pool, char **tokens, int n, int lower, const char *path,
                             kn_err *err) {
    char origin[KN_ERRLEN];
    const char *unit = path ? "line" : "index", *units = path ? "lines" : "indices";
    int base = path ? 1 : 0;
    if (path) snprintf(origin, sizeof origin, "vocab file \"%s\"", path);
    else snprintf(origin, sizeof origin, "token list");

    kn_vocab *v = kn_calloc(1, sizeof *v);
    uint32_t size = 16;
    while (size < 2u * (uint32_t)n) size *= 2;
    if (!v || !(v->lens = kn_malloc((size_t)n * sizeof *v->lens)) ||
        !(v->slots = kn_malloc(size * sizeof *v->slots))) {
        free(pool);
        free(tokens);
        kn_vocab_free(v);
        kn_fail(err, "%s: out of memory for %d tokens", origin, n);
        return NULL;
    }
    v->pool = pool;
    v->tokens = tokens;
    v->n = n;
    v->lower = lower ? 1 : 0;
    v->mask = size - 1;
    memset(v->slots, 0xFF, size * sizeof *v->slots);
    for (int id = 0; id < n; id++) {
        const char *t = tokens[id];
        long bad = utf8_invalid_at(t);
        if (bad >= 0) {
            kn_fail(err, "%s %s %d: invalid UTF-8 at byte %ld of the token", origin, unit, id + base, bad);
            goto fail;
        }
        v->lens[id] = strlen(t);
        uint32_t i = hash_bytes(t, v->lens[id]) & v->mask;
        for (; v->slots[i] >= 0; i = (i + 1) & v->mask) {
            int other = v->slots[i];
            if (v->lens[other] == v->lens[id] && memcmp(tokens[other], t, v->lens[id]) == 0) {
                kn_fail(err, "%s: duplicate token \"%s\" on %s %d and %d (ids %d and %d)", origin, t,
                        units, other + base, id + base, other, id);
                goto fail;
            }
        }
        v->slots[i] = id;
    }
    for (int k = 0; k < N_SPECIAL; k++) {
        v->special[k] = lookup(v, special_names[k], strlen(special_names[k]));
        if (v->special[k] < 0) {
            kn_fail(err, "%s has no %s token (a BERT vocab needs [PAD] [UNK] [CLS] [SEP] [MASK])",
                    origin, special_names[k]);
            goto fail;
        }
    }
    return v;
fail:
    kn_vocab_free(v);
    return NULL;
}

kn_vocab *kn_vocab_load(const char *path, int do_lower_case, kn_err *err) {
    if (!path) { kn_fail(err, "kn_vocab_load: path is NULL"); return NULL; }
    FILE *f = fopen(path, "rb");
    if (!f) { kn_fail(err, "cannot open vocab file \"%s\": %s", path, strerror(errno)); return NULL; }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *p = kn_realloc(buf, cap);
            if (!p) { free(buf); fclose(f); kn_fail(err, "vocab file \"%s\": out of memory", path); return NULL; }
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int read_error = ferror(f);
    fclose(f);
    if (read_error) { free(buf); kn_fail(err, "cannot read vocab file \"%s\"", path); return NULL; }
    if (len == 0) { free(buf); kn_fail(err, "vocab file \"%s\" is empty", path); return NULL; }
    buf[len] = '\0';

    /* One token a line; a final line without '\n' still counts, a final '\n' adds nothing. */
    int n = 0, line = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\0') {
            free(buf);
            kn_fail(err, "vocab file \"%s\" line %d: NUL byte at byte offset %zu", path, line, i);
            return NULL;
        }
        if (buf[i] == '\n') n++, line++;
    }
    if (buf[len - 1] != '\n') n++;
    char **tokens = kn_malloc((size_t)n * sizeof *tokens);
    if (!tokens) { free(buf); kn_fail(err, "vocab file \"%s\": out of memory", path); return NULL; }
    char *s = buf;
    for (int id = 0; id < n; id++) {
        char *end = strchr(s, '\n');
        char *next = end ? end + 1 : s + strlen(s);
        if (!end) end = next;
        if (end > s && end[-1] == '\r') end--;
        *end = '\0';
        tokens[id] = s;
        s = next;
    }
    return vocab_build(buf, tokens, n, do_lower_case, path, err);
}

kn_vocab *kn_vocab_from_tokens(const char *const *tokens, int n, int do_lower_case, kn_err *err) {
    if (n <= 0 || !tokens) { kn_fail(err, "token list is empty (n = %d)", n); return NULL; }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!tokens[i]) { kn_fail(err, "token list index %d: token is NULL", i); return NULL; }
        total += strlen(tokens[i]) + 1;
    }
    char *pool = kn_malloc(total);
    char **copy = kn_malloc((size_t)n * sizeof *copy);
    if (!pool || !copy) {
        free(pool);
        free(copy);
        kn_fail(err, "token list: out of memory for %d tokens", n);
        return NULL;
    }
    char *p = pool;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]) + 1;
        copy[i] = memcpy(p, tokens[i], len);
        p += len;
    }
    return vocab_build(pool, copy, n, do_lower_case, NULL, err);
}

int kn_vocab_size(const kn_vocab *v) { return v ? v->n : 0; }
int kn_vocab_lower(const kn_vocab *v) { return v ? v->lower : 0; }
int kn_vocab_id(const kn_vocab *v, const char *token) {
    return v && token ? lookup(v, token, strlen(token)) : -1;
}
const char *kn_vocab_token(const kn_vocab *v, int id) {
    return v && id >= 0 && id < v->n ? v->tokens[id] : NULL;
}
int kn_vocab_special(const kn_vocab *v, int which) {
    return v && which >= 0 && which < N_SPECIAL ? v->special[which] : -1;
}

/* ---- tokenization ---- */

typedef struct {
    const kn_vocab *v;
    int *ids, max_ids, count;
    cpbuf word, work; /* the word being collected; scratch for normalizing it */
} tokenizer;

static void emit(tokenizer *t, int id) {
    if (t->count < t->max_ids) t->ids[t->count] = id;
    t->count++;
}

/* Greedy longest-match-first WordPiece of one punctuation-free piece (or one punctuation mark). */
static void wordpiece(tokenizer *t, const uint32_t *cps, size_t n) {
    if (n > MAX_WORD_CHARS) { emit(t, t->v->special[KN_TOK_UNK]); return; }
    /* The piece's UTF-8 starts at text + 2; char_at[i] is the byte offset of character i. */
    char bytes[2 + 4 * MAX_WORD_CHARS], *text = bytes + 2;
    size_t char_at[MAX_WORD_CHARS + 1] = {0};
    for (size_t i = 0; i < n; i++) char_at[i + 1] = char_at[i] + (size_t)utf8_encode(cps[i], text + char_at[i]);
    int first_emitted = t->count;
    for (size_t start = 0; start < n;) {
        /* A continuation is looked up as "##" + rest: the two bytes before it belong to pieces
         * already matched (or to the two spare bytes), so they can be overwritten with "##". */
        char *key = text + char_at[start];
        if (start > 0) { key -= 2; memcpy(key, "##", 2); }
        size_t end = n;
        int id = -1;
        for (; end > start; end--) {
            id = lookup(t->v, key, (size_t)(text + char_at[end] - key));
            if (id >= 0) break;
        }
        if (id < 0) { /* one unmatched position makes the whole piece [UNK] */
            t->count = first_emitted;
            emit(t, t->v->special[KN_TOK_UNK]);
            return;
        }
        emit(t, id);
        start = end;
    }
}

static int special_in(const uint32_t *cps, size_t n) {
    for (int k = 0; k < N_SPECIAL; k++) {
        const char *name = special_names[k];
        size_t i = 0;
        while (i < n && name[i] && cps[i] == (unsigned char)name[i]) i++;
        if (i == n && !name[i]) return k;
    }
    return -1;
}

/* Finishes the word collected so far: everything BasicTokenizer does after the whitespace split,
 * then WordPiece. HF normalizes (NFC) the whole text before splitting on whitespace; no
 * composition starts at a space, so normalizing word by word gives the same result. */
static int end_word(tokenizer *t) {
    cpbuf *w = &t->word, *x = &t->work;
    if (!w->n) return 0;
    x->n = 0;
    if (nfd(w->at, w->n, x)) return -1;
    compose(x);
    int special = special_in(x->at, x->n); /* never_split: e.g. "[MA\x01SK]" once cleaned */
    if (special >= 0) {
        emit(t, t->v->special[special]);
        w->n = 0;
        return 0;
    }
    if (t->v->lower) { /* token.lower(), then strip accents: NFD and drop Mn */
        w->n = 0;
        if (reserve(w, 2 * x->n)) return -1;
        for (size_t i = 0; i < x->n; i++) w->n += (size_t)lower_char(x->at[i], w->at + w->n);
        x->n = 0;
        if (nfd(w->at, w->n, x)) return -1;
        size_t kept = 0;
        for (size_t i = 0; i < x->n; i++)
            if (!(uni_flags(x->at[i]) & KN_UNI_MN)) x->at[kept++] = x->at[i];
        x->n = kept;
    }
    size_t run = 0; /* start of the current run of non-punctuation */
    for (size_t i = 0; i < x->n; i++) {
        if (!(uni_flags(x->at[i]) & KN_UNI_PUNCT)) continue;
        if (i > run) wordpiece(t, x->at + run, i - run);
        wordpiece(t, x->at + i, 1);
        run = i + 1;
    }
    if (x->n > run) wordpiece(t, x->at + run, x->n - run);
    w->n = 0;
    return 0;
}

/* One character of cleaned-up text: _clean_text and _tokenize_chinese_chars, streaming. */
static int feed(tokenizer *t, uint32_t c) {
    int flags = uni_flags(c);
    if (flags & KN_UNI_DROP) return 0;
    if (flags & KN_UNI_SPACE) return end_word(t);
    if (is_cjk(c) && end_word(t)) return -1;
    if (reserve(&t->word, 1)) return -1;
    t->word.at[t->word.n++] = c;
    return is_cjk(c) ? end_word(t) : 0;
}

int kn_tokenize(const kn_vocab *v, const char *text, int *ids, int max_ids, kn_err *err) {
    if (!v || !text) return kn_fail(err, "kn_tokenize: vocab and text must not be NULL");
    if (max_ids < 0 || (max_ids > 0 && !ids))
        return kn_fail(err, "kn_tokenize: max_ids %d needs an ids buffer of that size", max_ids);
    long bad = utf8_invalid_at(text);
    if (bad >= 0)
        return kn_fail(err, "text is not valid UTF-8: bad byte 0x%02X at byte offset %ld",
                       (unsigned char)text[bad], bad);
    tokenizer t = {.v = v, .ids = ids, .max_ids = max_ids};
    int failed = 0;
    for (size_t i = 0; text[i] && !failed;) {
        /* Special tokens are found in the raw text, before cleaning or lower-casing, and match
         * exactly (case-sensitive), as PreTrainedTokenizer.tokenize does. */
        int k = 0;
        while (k < N_SPECIAL && strncmp(text + i, special_names[k], strlen(special_names[k]))) k++;
        if (k < N_SPECIAL) {
            failed = end_word(&t);
            emit(&t, v->special[k]);
            i += strlen(special_names[k]);
            continue;
        }
        uint32_t c, lowered[2] = {0, 0};
        i += (size_t)utf8_decode(text + i, &c);
        /* With do_lower_case, PreTrainedTokenizer.tokenize lower-cases the text one character at a
         * time before BasicTokenizer sees it (so a final capital sigma becomes σ, never ς). */
        int n = v->lower ? lower_char(c, lowered) : (lowered[0] = c, 1);
        for (int j = 0; j < n && !failed; j++) failed = feed(&t, lowered[j]);
    }
    if (!failed) failed = end_word(&t);
    free(t.word.at);
    free(t.work.at);
    if (failed) return kn_fail(err, "kn_tokenize: out of memory on a text of %zu bytes", strlen(text));
    return t.count;
}
