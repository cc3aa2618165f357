/* wordpiece.c: BERT's tokenizer, written to give the same tokens as Hugging Face's slow
 * BertTokenizer (vocab.txt + tokenizer_config.json) and, with nfc off, its fast one (BertNormalizer
 * + BertPreTokenizer + WordPiece from tokenizer.json). Two entry points share the code:
 * kn_wp_encode (tokenizer_impl.h, behind kn_tokenizer, every setting HF has: lower-casing,
 * strip_accents, tokenize_chinese_chars, never_split, the subword prefix and the word length
 * limit) and the older kn_vocab / kn_tokenize (wordpiece.h, BertTokenizer's defaults).
 *
 * The steps, in HF's order: special tokens are cut out of the raw text first (by the caller); with
 * lower-casing the rest is lower-cased one character at a time; the text is cleaned (NUL, U+FFFD
 * and category C* characters dropped, whitespace made a space), CJK ideographs become words of
 * their own, the slow tokenizer NFC-normalizes, and the text is split on whitespace; a word in
 * never_split is kept whole; otherwise it is lower-cased and/or stripped of accents (NFD, Mn
 * dropped), split on punctuation, and every piece goes through greedy longest-match-first
 * WordPiece. Unicode data: core/unicode.c. */
#include "wordpiece.h"

#include "alloc.h"
#include "fileio.h"
#include "strtab.h"
#include "tokenizer_impl.h"
#include "unicode.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_SPECIAL 5

static const char *const special_names[N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

struct kn_vocab {
    kn_strtab tab;
    kn_wp wp;         /* BertTokenizer's defaults over tab; never = the five special tokens */
    int special[N_SPECIAL];
};

int kn_idbuf_push(kn_idbuf *b, int id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64, bytes;
        if (kn_mul_size(cap, sizeof *b->at, &bytes)) return -1;
        int *p = kn_realloc(b->at, bytes);
        if (!p) return -1;
        b->at = p;
        b->cap = cap;
    }
    b->at[b->n++] = id;
    return 0;
}

/* ---- the encoder ---- */

typedef struct {
    const kn_wp *w;
    kn_idbuf *out;
    kn_cpbuf word, work; /* the word being collected; scratch for normalizing it */
    char *bytes;         /* prefix_len + 4 * max_chars: one piece's UTF-8 */
    size_t *char_at;     /* max_chars + 1 */
    int failed;
} encoder;

static void emit(encoder *e, int id) {
    if (kn_idbuf_push(e->out, id)) e->failed = 1;
}

/* Greedy longest-match-first WordPiece of one punctuation-free piece (or one punctuation mark). */
static void wordpiece(encoder *e, const uint32_t *cps, size_t n) {
    const kn_wp *w = e->w;
    if (n > (size_t)w->max_chars) { emit(e, w->unk); return; }
    /* The piece's UTF-8 starts at text + prefix_len; char_at[i] is character i's byte offset. */
    char *text = e->bytes + w->prefix_len;
    size_t *char_at = e->char_at;
    char_at[0] = 0;
    for (size_t i = 0; i < n; i++) char_at[i + 1] = char_at[i] + (size_t)kn_utf8_encode(cps[i], text + char_at[i]);
    size_t first_emitted = e->out->n;
    for (size_t start = 0; start < n;) {
        /* A continuation is looked up as prefix + rest: the bytes before it belong to pieces
         * already matched (or to the spare bytes), so they can be overwritten with the prefix. */
        char *key = text + char_at[start];
        if (start > 0) { key -= w->prefix_len; memcpy(key, w->prefix, w->prefix_len); }
        size_t end = n;
        int id = -1;
        for (; end > start; end--) {
            id = kn_strtab_find(w->vocab, key, (size_t)(text + char_at[end] - key));
            if (id >= 0) break;
        }
        if (id < 0) { /* one unmatched position makes the whole piece unk */
            e->out->n = first_emitted;
            emit(e, w->unk);
            return;
        }
        emit(e, id);
        start = end;
    }
}

/* The word as a never_split entry: its id (or unk when the vocabulary lacks it), else -2. */
static int never_split_id(encoder *e, const kn_cpbuf *x) {
    const kn_wp *w = e->w;
    if (!w->never.n) return -2;
    char buf[256];
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (k + 4 > sizeof buf) return -2; /* longer than any never_split entry we accept */
        k += (size_t)kn_utf8_encode(x->at[i], buf + k);
    }
    if (kn_strtab_find(&w->never, buf, k) < 0) return -2;
    int id = kn_strtab_find(w->vocab, buf, k);
    return id >= 0 ? id : w->unk;
}

/* Finishes the word collected so far: everything BasicTokenizer does after the whitespace split,
 * then WordPiece. HF normalizes (NFC) the whole text before splitting on whitespace; no
 * composition starts at a space, so normalizing word by word gives the same result. */
static void end_word(encoder *e) {
    const kn_wp *w = e->w;
    kn_cpbuf *wd = &e->word, *x = &e->work;
    if (!wd->n || e->failed) { wd->n = 0; return; }
    x->n = 0;
    if (w->nfc) {
        if (kn_uc_nfd(wd->at, wd->n, x)) { e->failed = 1; return; }
        kn_uc_compose(x);
    } else {
        if (kn_cpbuf_reserve(x, wd->n)) { e->failed = 1; return; }
        memcpy(x->at, wd->at, wd->n * sizeof *x->at);
        x->n = wd->n;
    }
    int keep = never_split_id(e, x); /* e.g. "[MA\x01SK]" once cleaned */
    if (keep != -2) {
        emit(e, keep);
        wd->n = 0;
        return;
    }
    if (w->lower) { /* token.lower() */
        wd->n = 0;
        if (kn_cpbuf_reserve(wd, 2 * x->n)) { e->failed = 1; return; }
        for (size_t i = 0; i < x->n; i++) wd->n += (size_t)kn_uc_lower(x->at[i], wd->at + wd->n);
        uint32_t *t = x->at; size_t tn = x->cap; /* swap: the result goes back to x */
        x->at = wd->at, x->cap = wd->cap, x->n = wd->n;
        wd->at = t, wd->cap = tn, wd->n = 0;
    }
    if (w->strip_accents) { /* NFD, then drop Mn */
        wd->n = 0;
        if (kn_uc_nfd(x->at, x->n, wd)) { e->failed = 1; return; }
        x->n = 0;
        size_t kept = 0;
        for (size_t i = 0; i < wd->n; i++)
            if (!(kn_uc_flags(wd->at[i]) & KN_UC_MN)) wd->at[kept++] = wd->at[i];
        wd->n = kept;
        uint32_t *t = x->at; size_t tn = x->cap;
        x->at = wd->at, x->cap = wd->cap, x->n = wd->n;
        wd->at = t, wd->cap = tn;
    }
    size_t run = 0; /* start of the current run of non-punctuation */
    for (size_t i = 0; i < x->n; i++) {
        if (!(kn_uc_flags(x->at[i]) & KN_UC_PUNCT)) continue;
        if (i > run) wordpiece(e, x->at + run, i - run);
        wordpiece(e, x->at + i, 1);
        run = i + 1;
    }
    if (x->n > run) wordpiece(e, x->at + run, x->n - run);
    wd->n = 0;
}

/* One character of text: _clean_text and _tokenize_chinese_chars, streaming. */
static void feed(encoder *e, uint32_t c) {
    int flags = kn_uc_flags(c);
    if (e->w->clean && (flags & KN_UC_DROP)) return;
    if (flags & KN_UC_SPACE) { end_word(e); return; }
    int cjk = e->w->chinese && kn_uc_is_cjk(c);
    if (cjk) end_word(e);
    if (kn_cpbuf_reserve(&e->word, 1)) { e->failed = 1; return; }
    e->word.at[e->word.n++] = c;
    if (cjk) end_word(e);
}

int kn_wp_encode(const kn_wp *w, const char *text, size_t len, kn_idbuf *out) {
    encoder e = {.w = w, .out = out};
    e.bytes = kn_malloc(w->prefix_len + 4 * (size_t)w->max_chars + 4);
    e.char_at = kn_malloc(((size_t)w->max_chars + 1) * sizeof *e.char_at);
    if (!e.bytes || !e.char_at) e.failed = 1;
    for (size_t i = 0; i < len && !e.failed;) {
        uint32_t c, lowered[2];
        int n = kn_utf8_decode(text + i, len - i, &c);
        if (!n) { c = 0xFFFD; n = 1; } /* callers validate first; never loop on a bad byte */
        i += (size_t)n;
        /* With do_lower_case, PreTrainedTokenizer.tokenize lower-cases the text one character at a
         * time before BasicTokenizer sees it (so a final capital sigma becomes σ, never ς). */
        int k = w->lower ? kn_uc_lower(c, lowered) : (lowered[0] = c, 1);
        for (int j = 0; j < k && !e.failed; j++) feed(&e, lowered[j]);
    }
    end_word(&e);
    kn_cpbuf_free(&e.word);
    kn_cpbuf_free(&e.work);
    free(e.bytes);
    free(e.char_at);
    return e.failed ? -1 : 0;
}

void kn_wp_free(kn_wp *w) { kn_strtab_free(&w->never); }

/* ---- kn_vocab: BertTokenizer with its defaults ---- */

void kn_vocab_free(kn_vocab *v) {
    if (!v) return;
    kn_strtab_free(&v->tab);
    kn_wp_free(&v->wp);
    free(v);
}

/* Indexes n tokens. `path` names the file for messages (positions are then 1-based lines);
 * NULL means a token list (0-based indices). */
static kn_vocab *vocab_build(const char *const *tokens, const size_t *lens, int n, int lower,
                             const char *path, kn_err *err) {
    char origin[KN_ERRLEN];
    const char *unit = path ? "line" : "index", *units = path ? "lines" : "indices";
    int base = path ? 1 : 0;
    if (path) snprintf(origin, sizeof origin, "vocab file \"%s\"", path);
    else snprintf(origin, sizeof origin, "token list");

    kn_vocab *v = kn_calloc(1, sizeof *v);
    if (!v || kn_strtab_init(&v->tab, n) || kn_strtab_init(&v->wp.never, N_SPECIAL)) {
        kn_vocab_free(v);
        kn_fail(err, "%s: out of memory for %d tokens", origin, n);
        return NULL;
    }
    for (int id = 0; id < n; id++) {
        long bad = kn_utf8_invalid_at(tokens[id], lens[id]);
        if (bad >= 0) {
            kn_fail(err, "%s %s %d: invalid UTF-8 at byte %ld of the token", origin, unit, id + base, bad);
            goto fail;
        }
        int other = -1, rc = kn_strtab_set(&v->tab, id, tokens[id], lens[id], &other);
        if (rc == -2) {
            kn_fail(err, "%s: duplicate token \"%s\" on %s %d and %d (ids %d and %d)", origin, tokens[id],
                    units, other + base, id + base, other, id);
            goto fail;
        }
        if (rc) { kn_fail(err, "%s: out of memory for %d tokens", origin, n); goto fail; }
    }
    for (int k = 0; k < N_SPECIAL; k++) {
        v->special[k] = kn_strtab_find(&v->tab, special_names[k], strlen(special_names[k]));
        if (v->special[k] < 0) {
            kn_fail(err, "%s has no %s token (a BERT vocab needs [PAD] [UNK] [CLS] [SEP] [MASK])",
                    origin, special_names[k]);
            goto fail;
        }
        if (kn_strtab_set(&v->wp.never, k, special_names[k], strlen(special_names[k]), NULL)) {
            kn_fail(err, "%s: out of memory", origin);
            goto fail;
        }
    }
    v->wp = (kn_wp){.vocab = &v->tab, .unk = v->special[1], .lower = lower ? 1 : 0,
                    .strip_accents = lower ? 1 : 0, .chinese = 1, .clean = 1, .nfc = 1,
                    .prefix = "##", .prefix_len = 2, .max_chars = 100, .never = v->wp.never};
    return v;
fail:
    kn_vocab_free(v);
    return NULL;
}

/* vocab.txt caps: no real vocabulary comes near them (BERT's has 30522 lines, the largest
 * multilingual ones a few hundred thousand). */
#define VOCAB_MAX_BYTES ((size_t)64 << 20)
#define VOCAB_MAX_LINES (1 << 22)

/* Splits vocab.txt's bytes into lines in place (one token a line; a final line without '\n'
 * still counts, a final '\n' adds nothing; CRLF accepted). Shared with tokenizer_load.c. */
int kn_vocab_txt_lines(char *buf, size_t len, const char *path, char ***tokens_out, size_t **lens_out,
                       int *n_out, kn_err *err) {
    if (len == 0) return kn_fail(err, "vocab file \"%s\" is empty", path);
    size_t n = 0, line = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\0')
            return kn_fail(err, "vocab file \"%s\" line %zu: NUL byte at byte offset %zu", path, line, i);
        if (buf[i] == '\n') n++, line++;
    }
    if (buf[len - 1] != '\n') n++;
    if (n > VOCAB_MAX_LINES)
        return kn_fail(err, "vocab file \"%s\" has %zu lines, more than the %d a vocabulary may have",
                       path, n, VOCAB_MAX_LINES);
    char **tokens = kn_malloc(n * sizeof *tokens);
    size_t *lens = kn_malloc(n * sizeof *lens);
    if (!tokens || !lens) {
        free(tokens);
        free(lens);
        return kn_fail(err, "vocab file \"%s\": out of memory", path);
    }
    char *s = buf, *stop = buf + len;
    for (size_t id = 0; id < n; id++) {
        char *end = memchr(s, '\n', (size_t)(stop - s));
        char *next = end ? end + 1 : stop;
        if (!end) end = stop;
        if (end > s && end[-1] == '\r') end--;
        *end = '\0';
        tokens[id] = s;
        lens[id] = (size_t)(end - s);
        s = next;
    }
    *tokens_out = tokens;
    *lens_out = lens;
    *n_out = (int)n;
    return 0;
}

kn_vocab *kn_vocab_load(const char *path, int do_lower_case, kn_err *err) {
    if (!path) { kn_fail(err, "kn_vocab_load: path is NULL"); return NULL; }
    size_t len;
    char *buf = kn_read_file(path, VOCAB_MAX_BYTES, "a vocab.txt", &len, err);
    if (!buf) return NULL;
    char **tokens;
    size_t *lens;
    int n;
    if (kn_vocab_txt_lines(buf, len, path, &tokens, &lens, &n, err)) { free(buf); return NULL; }
    kn_vocab *v = vocab_build((const char *const *)tokens, lens, n, do_lower_case, path, err);
    free(tokens);
    free(lens);
    free(buf);
    return v;
}

kn_vocab *kn_vocab_from_tokens(const char *const *tokens, int n, int do_lower_case, kn_err *err) {
    if (n <= 0 || !tokens) { kn_fail(err, "token list is empty (n = %d)", n); return NULL; }
    size_t *lens = kn_malloc((size_t)n * sizeof *lens);
    if (!lens) { kn_fail(err, "token list: out of memory for %d tokens", n); return NULL; }
    for (int i = 0; i < n; i++) {
        if (!tokens[i]) { free(lens); kn_fail(err, "token list index %d: token is NULL", i); return NULL; }
        lens[i] = strlen(tokens[i]);
    }
    kn_vocab *v = vocab_build(tokens, lens, n, do_lower_case, NULL, err);
    free(lens);
    return v;
}

int kn_vocab_size(const kn_vocab *v) { return v ? v->tab.n : 0; }
int kn_vocab_lower(const kn_vocab *v) { return v ? v->wp.lower : 0; }
int kn_vocab_id(const kn_vocab *v, const char *token) {
    return v && token ? kn_strtab_find(&v->tab, token, strlen(token)) : -1;
}
const char *kn_vocab_token(const kn_vocab *v, int id) {
    return v && id >= 0 && id < v->tab.n ? v->tab.tok[id] : NULL;
}
int kn_vocab_special(const kn_vocab *v, int which) {
    return v && which >= 0 && which < N_SPECIAL ? v->special[which] : -1;
}

int kn_tokenize(const kn_vocab *v, const char *text, int *ids, int max_ids, kn_err *err) {
    if (!v || !text) return kn_fail(err, "kn_tokenize: vocab and text must not be NULL");
    if (max_ids < 0 || (max_ids > 0 && !ids))
        return kn_fail(err, "kn_tokenize: max_ids %d needs an ids buffer of that size", max_ids);
    size_t len = strlen(text);
    long bad = kn_utf8_invalid_at(text, len);
    if (bad >= 0)
        return kn_fail(err, "text is not valid UTF-8: bad byte 0x%02X at byte offset %ld",
                       (unsigned char)text[bad], bad);
    kn_idbuf out = {0};
    int failed = 0;
    size_t start = 0; /* of the stretch since the last special token */
    for (size_t i = 0; i < len && !failed;) {
        /* Special tokens are found in the raw text, before cleaning or lower-casing, and match
         * exactly (case-sensitive), as PreTrainedTokenizer.tokenize does. */
        int k = 0;
        while (k < N_SPECIAL && strncmp(text + i, special_names[k], strlen(special_names[k]))) k++;
        if (k == N_SPECIAL) { i++; continue; }
        failed = kn_wp_encode(&v->wp, text + start, i - start, &out) || kn_idbuf_push(&out, v->special[k]);
        i += strlen(special_names[k]);
        start = i;
    }
    if (!failed) failed = kn_wp_encode(&v->wp, text + start, len - start, &out);
    if (failed) {
        free(out.at);
        return kn_fail(err, "kn_tokenize: out of memory on a text of %zu bytes", len);
    }
    if (out.n > (size_t)INT32_MAX) { free(out.at); return kn_fail(err, "kn_tokenize: more than 2^31 tokens"); }
    for (size_t i = 0; i < out.n && i < (size_t)max_ids; i++) ids[i] = out.at[i];
    int count = (int)out.n;
    free(out.at);
    return count;
}
