/* bpe.c: byte-pair encoding as Hugging Face runs it, with the normalizers, pre-tokenizers and
 * decoders that GPT-2, Llama-2/Mistral, Llama-3 and Qwen2 checkpoints use:
 *   normalizers     Prepend, Replace (a String pattern), NFC, Sequence;
 *   pre-tokenizers  Split (a Regex or String pattern, behaviour Isolated or Removed), ByteLevel
 *                   (add_prefix_space, use_regex = GPT-2's pattern), Metaspace, Sequence;
 *   model           BPE with merges by rank (lowest first, leftmost among equals), byte-level
 *                   alphabet or byte fallback (<0xNN>), unk (fused), ignore_merges;
 *   decoders        ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence.
 * Regexes are HF's own (Unicode classes, lookahead), run by PCRE2 in UTF + UCP mode. Anything
 * else a tokenizer.json asks for is refused by name rather than approximated. */
#include "alloc.h"
#include "tokenizer_impl.h"
#include "unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char kn_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char kn_qwen2_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define MAX_STEPS 8

enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC };
typedef struct { int type; char *a, *b; size_t alen, blen; } norm_step;

enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
enum { SPLIT_ISOLATED, SPLIT_REMOVED };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };
typedef struct {
    int type;
    pcre2_code *re;       /* Split, and ByteLevel with use_regex */
    int behavior;         /* Split */
    int prefix_space;     /* ByteLevel add_prefix_space */
    char repl[8];         /* Metaspace replacement */
    size_t repl_len;
    int prepend, split;   /* Metaspace prepend_scheme, split */
} pre_step;

struct kn_bpe {
    int n_model;               /* ids the model's vocab gives (for messages) */
    uint64_t *mkey;            /* merges: (left id << 32 | right id) -> rank, merged id */
    int *mrank, *mnew;
    uint32_t mmask;
    int nmerges, mcap;
    int byte_level;
    int byte_id[256];          /* byte-level: id of the character standing for byte b */
    uint16_t char_byte[324];   /* byte-level: code point -> byte + 1 (0 = not a byte char) */
    int fallback_id[256];      /* byte_fallback: id of <0xNN> */
    int unk, byte_fallback, fuse_unk, ignore_merges;
    norm_step norm[MAX_STEPS];
    int nnorm;
    pre_step pre[MAX_STEPS];
    int npre;
    int strip_start;           /* decoder: leading spaces to drop (Strip start / Metaspace) */
    int sp_decode;             /* decoder turns ▁ into a space and <0xNN> into bytes */
};

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* ▁ U+2581 */

int kn_bytebuf_add(kn_bytebuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (kn_mul_size(cap, 2, &cap)) return -1;
        }
        char *p = kn_realloc(b->at, cap);
        if (!p) return -1;
        b->at = p;
        b->cap = cap;
    }
    if (n) memcpy(b->at + b->n, s, n);
    b->n += n;
    b->at[b->n] = '\0';
    return 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes for
 * U+0100 onwards in byte order. */
static uint32_t byte_char(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

void kn_bpe_free(kn_bpe *b) {
    if (!b) return;
    free(b->mkey);
    free(b->mrank);
    free(b->mnew);
    for (int i = 0; i < b->nnorm; i++) free(b->norm[i].a), free(b->norm[i].b);
    for (int i = 0; i < b->npre; i++) pcre2_code_free(b->pre[i].re);
    free(b);
}

int kn_bpe_create(kn_tokenizer *t, json_t *vocab, int n_total, const char *file, kn_err *err) {
    kn_bpe *b = kn_calloc(1, sizeof *b);
    if (!b) return kn_fail(err, "%s: out of memory", file);
    t->bpe = b;
    b->unk = -1;
    b->fuse_unk = 0;
    for (int i = 0; i < 256; i++) b->byte_id[i] = b->fallback_id[i] = -1;
    if (kn_strtab_init(&t->vocab, n_total)) return kn_fail(err, "%s: out of memory for %d tokens", file, n_total);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= n_total)
            return kn_fail(err, "%s: vocab entry \"%s\" has id %s, not an integer in [0, %d)", file, key,
                           json_is_integer(v) ? "out of range" : "that is not an integer", n_total);
        int other = -1, rc = kn_strtab_set(&t->vocab, (int)id, key, strlen(key), &other);
        if (rc == -3)
            return kn_fail(err, "%s: vocab entries \"%s\" and \"%s\" share id %d", file, t->vocab.tok[id], key, (int)id);
        if (rc) return kn_fail(err, "%s: out of memory for %d tokens", file, n_total);
        if ((int)id + 1 > b->n_model) b->n_model = (int)id + 1;
    }
    return 0;
}

/* ---- merges ---- */

static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int merge_find(const kn_bpe *b, int l, int r, int *merged) {
    if (!b->mkey || l < 0 || r < 0) return -1;
    uint64_t k = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint32_t i = hash_pair(k) & b->mmask;; i = (i + 1) & b->mmask) {
        if (b->mrank[i] < 0) return -1;
        if (b->mkey[i] == k) { *merged = b->mnew[i]; return b->mrank[i]; }
    }
}

static int merges_reserve(kn_bpe *b, int n, const char *file, kn_err *err) {
    uint32_t size = 16;
    while (size < 2u * (uint32_t)n + 2) size *= 2;
    b->mkey = kn_malloc(size * sizeof *b->mkey);
    b->mrank = kn_malloc(size * sizeof *b->mrank);
    b->mnew = kn_malloc(size * sizeof *b->mnew);
    if (!b->mkey || !b->mrank || !b->mnew) return kn_fail(err, "%s: out of memory for %d merges", file, n);
    memset(b->mrank, 0xFF, size * sizeof *b->mrank);
    b->mmask = size - 1;
    b->mcap = n;
    return 0;
}

/* Adds merge `rank` (a + b); `where` says where it was read, for messages. A repeated pair keeps
 * its first (lowest) rank, as a rank lookup of HF's would find it. */
static int merge_add(kn_tokenizer *t, const char *a, size_t al, const char *bb, size_t bl, const char *where,
                     kn_err *err) {
    kn_bpe *b = t->bpe;
    int l = kn_strtab_find(&t->vocab, a, al), r = kn_strtab_find(&t->vocab, bb, bl);
    char joined[1024];
    if (al + bl >= sizeof joined) return kn_fail(err, "%s: merge of %zu bytes is too long", where, al + bl);
    memcpy(joined, a, al);
    memcpy(joined + al, bb, bl);
    int m = kn_strtab_find(&t->vocab, joined, al + bl);
    if (l < 0 || r < 0 || m < 0)
        return kn_fail(err, "%s: merge \"%.*s %.*s\": token \"%.*s\" is not in the vocabulary", where, (int)al, a,
                       (int)bl, bb, l < 0 ? (int)al : r < 0 ? (int)bl : (int)(al + bl),
                       l < 0 ? a : r < 0 ? bb : joined);
    uint64_t k = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint32_t i = hash_pair(k) & b->mmask;
    for (; b->mrank[i] >= 0; i = (i + 1) & b->mmask)
        if (b->mkey[i] == k) return 0;
    b->mkey[i] = k;
    b->mrank[i] = b->nmerges++;
    b->mnew[i] = m;
    return 0;
}

int kn_bpe_merges_txt(kn_tokenizer *t, const char *buf, size_t len, const char *file, kn_err *err) {
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (lines >= (1 << 26)) return kn_fail(err, "%s: %d lines, more than a merges file may have", file, lines);
    if (merges_reserve(t->bpe, lines + 1, file, err)) return -1;
    size_t pos = 0;
    for (int line = 1; pos < len; line++) {
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r') n--;
        /* HF skips a first line starting "#version" and empty lines */
        if ((line == 1 && n >= 8 && memcmp(s, "#version", 8) == 0) || n == 0) continue;
        const char *sp = memchr(s, ' ', n);
        char where[600];
        snprintf(where, sizeof where, "%s line %d", file, line);
        if (!sp || sp == s || sp + 1 == s + n || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
            return kn_fail(err, "%s: expected two tokens separated by one space", where);
        if (memchr(s, '\0', n)) return kn_fail(err, "%s: NUL byte", where);
        if (merge_add(t, s, (size_t)(sp - s), sp + 1, (size_t)(s + n - sp - 1), where, err)) return -1;
    }
    return 0;
}

int kn_bpe_merges_json(kn_tokenizer *t, json_t *merges, const char *file, kn_err *err) {
    if (!json_is_array(merges)) return kn_fail(err, "%s: model.merges must be an array", file);
    size_t n = json_array_size(merges);
    if (n >= (1u << 26)) return kn_fail(err, "%s: %zu merges, more than a tokenizer may have", file, n);
    if (merges_reserve(t->bpe, (int)n + 1, file, err)) return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        char where[600];
        snprintf(where, sizeof where, "%s model.merges[%zu]", file, i);
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            size_t len = json_string_length(m);
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ') || strlen(s) != len)
                return kn_fail(err, "%s: expected \"a b\" (two tokens separated by one space)", where);
            if (merge_add(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), where, err)) return -1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            json_t *a = json_array_get(m, 0), *c = json_array_get(m, 1);
            if (merge_add(t, json_string_value(a), json_string_length(a), json_string_value(c),
                          json_string_length(c), where, err))
                return -1;
        } else {
            return kn_fail(err, "%s: expected a string \"a b\" or a pair [\"a\", \"b\"]", where);
        }
    }
    return 0;
}

/* ---- configuration ---- */

static pcre2_code *compile_regex(const char *pattern, size_t len, const char *where, kn_err *err) {
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                   &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        kn_fail(err, "%s: regex does not compile at offset %zu: %s", where, (size_t)at, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is used when JIT fails */
    return re;
}

static int finish_byte_level(kn_tokenizer *t, const char *file, kn_err *err) {
    kn_bpe *b = t->bpe;
    b->byte_level = 1;
    for (int i = 0; i < 256; i++) {
        char s[4];
        uint32_t c = byte_char(i);
        b->char_byte[c] = (uint16_t)(i + 1);
        b->byte_id[i] = kn_strtab_find(&t->vocab, s, (size_t)kn_utf8_encode(c, s));
    }
    (void)file, (void)err;
    t->kind = KN_KIND_BYTELEVEL;
    return 0;
}

int kn_bpe_slow_bytelevel(kn_tokenizer *t, const char *regex, const char *file, kn_err *err) {
    kn_bpe *b = t->bpe;
    pre_step *p = &b->pre[b->npre++];
    p->type = PRE_SPLIT;
    p->behavior = SPLIT_ISOLATED;
    if (!(p->re = compile_regex(regex, strlen(regex), file, err))) return -1;
    return finish_byte_level(t, file, err);
}

static int get_bool(json_t *o, const char *key, int dflt, int *out, const char *where, kn_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = dflt; return 0; }
    if (!json_is_boolean(v)) return kn_fail(err, "%s: \"%s\" must be true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

static const char *type_of(json_t *o) {
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "";
}

/* A String pattern of Replace / Split ({"String": "..."}); NULL when it is not one. */
static const char *string_pattern(json_t *o, size_t *len) {
    json_t *s = json_object_get(json_object_get(o, "pattern"), "String");
    if (!json_is_string(s)) return NULL;
    *len = json_string_length(s);
    return json_string_value(s);
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = kn_malloc(n + 1);
    if (p) { memcpy(p, s, n); p[n] = '\0'; }
    return p;
}

static int add_normalizer(kn_bpe *b, json_t *n, const char *file, kn_err *err) {
    char where[600];
    snprintf(where, sizeof where, "%s normalizer \"%s\"", file, type_of(n));
    const char *type = type_of(n);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers"), *x;
        size_t i;
        if (!json_is_array(list)) return kn_fail(err, "%s: \"normalizers\" must be an array", where);
        json_array_foreach(list, i, x) if (add_normalizer(b, x, file, err)) return -1;
        return 0;
    }
    if (b->nnorm == MAX_STEPS) return kn_fail(err, "%s: more than %d normalizer steps", where, MAX_STEPS);
    norm_step *s = &b->norm[b->nnorm];
    if (!strcmp(type, "Prepend")) {
        json_t *p = json_object_get(n, "prepend");
        if (!json_is_string(p)) return kn_fail(err, "%s: \"prepend\" must be a string", where);
        s->type = NORM_PREPEND;
        s->alen = json_string_length(p);
        if (!(s->a = dup_bytes(json_string_value(p), s->alen))) return kn_fail(err, "%s: out of memory", where);
    } else if (!strcmp(type, "Replace")) {
        size_t plen;
        const char *pat = string_pattern(n, &plen);
        json_t *c = json_object_get(n, "content");
        if (!pat || !plen) return kn_fail(err, "%s: only a non-empty {\"String\": ...} pattern is supported", where);
        if (!json_is_string(c)) return kn_fail(err, "%s: \"content\" must be a string", where);
        s->type = NORM_REPLACE;
        s->alen = plen;
        s->blen = json_string_length(c);
        s->a = dup_bytes(pat, plen);
        s->b = dup_bytes(json_string_value(c), s->blen);
        if (!s->a || !s->b) { free(s->a); free(s->b); s->a = s->b = NULL; return kn_fail(err, "%s: out of memory", where); }
    } else if (!strcmp(type, "NFC")) {
        s->type = NORM_NFC;
    } else {
        return kn_fail(err, "%s: unsupported normalizer (supported: Prepend, Replace, NFC, Sequence)", where);
    }
    b->nnorm++;
    return 0;
}

static int add_pretok(kn_bpe *b, json_t *p, const char *file, int *byte_level, int *metaspace, kn_err *err) {
    char where[600];
    const char *type = type_of(p);
    snprintf(where, sizeof where, "%s pre_tokenizer \"%s\"", file, type);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers"), *x;
        size_t i;
        if (!json_is_array(list)) return kn_fail(err, "%s: \"pretokenizers\" must be an array", where);
        json_array_foreach(list, i, x) if (add_pretok(b, x, file, byte_level, metaspace, err)) return -1;
        return 0;
    }
    if (b->npre == MAX_STEPS) return kn_fail(err, "%s: more than %d pre-tokenizer steps", where, MAX_STEPS);
    pre_step *s = &b->pre[b->npre];
    memset(s, 0, sizeof *s);
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        json_t *rx = json_object_get(pat, "Regex");
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        int invert;
        if (get_bool(p, "invert", 0, &invert, where, err)) return -1;
        if (invert) return kn_fail(err, "%s: \"invert\": true is not supported", where);
        if (beh && !strcmp(beh, "Isolated")) s->behavior = SPLIT_ISOLATED;
        else if (beh && !strcmp(beh, "Removed")) s->behavior = SPLIT_REMOVED;
        else return kn_fail(err, "%s: behavior \"%s\" is not supported (Isolated, Removed)", where, beh ? beh : "(missing)");
        if (json_is_string(rx)) {
            if (!(s->re = compile_regex(json_string_value(rx), json_string_length(rx), where, err))) return -1;
        } else {
            size_t plen;
            const char *lit = string_pattern(p, &plen);
            if (!lit || !plen) return kn_fail(err, "%s: \"pattern\" must be {\"Regex\": ...} or a non-empty {\"String\": ...}", where);
            int code;
            PCRE2_SIZE at;
            s->re = pcre2_compile((PCRE2_SPTR)lit, plen, PCRE2_LITERAL | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
            if (!s->re) return kn_fail(err, "%s: cannot compile the literal pattern", where);
        }
        s->type = PRE_SPLIT;
    } else if (!strcmp(type, "ByteLevel")) {
        int use_regex = 1;
        if (get_bool(p, "add_prefix_space", 1, &s->prefix_space, where, err) ||
            get_bool(p, "use_regex", 1, &use_regex, where, err))
            return -1;
        if (use_regex && !(s->re = compile_regex(kn_gpt2_regex, strlen(kn_gpt2_regex), where, err))) return -1;
        s->type = PRE_BYTELEVEL;
        *byte_level = 1;
    } else if (!strcmp(type, "Metaspace")) {
        json_t *r = json_object_get(p, "replacement");
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        int add_prefix = 1;
        if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) >= sizeof s->repl)
            return kn_fail(err, "%s: \"replacement\" must be one character", where);
        s->repl_len = json_string_length(r);
        memcpy(s->repl, json_string_value(r), s->repl_len);
        if (get_bool(p, "split", 1, &s->split, where, err) ||
            get_bool(p, "add_prefix_space", 1, &add_prefix, where, err))
            return -1;
        if (!scheme) s->prepend = add_prefix ? PREPEND_ALWAYS : PREPEND_NEVER;
        else if (!strcmp(scheme, "always")) s->prepend = PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) s->prepend = PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) s->prepend = PREPEND_NEVER;
        else return kn_fail(err, "%s: prepend_scheme \"%s\" is not one of always, first, never", where, scheme);
        s->type = PRE_METASPACE;
        *metaspace = 1;
    } else {
        return kn_fail(err, "%s: unsupported pre-tokenizer (supported: Split, ByteLevel, Metaspace, Sequence)", where);
    }
    b->npre++;
    return 0;
}

static int add_decoder(kn_bpe *b, json_t *d, const char *file, kn_err *err) {
    const char *type = type_of(d);
    char where[600];
    snprintf(where, sizeof where, "%s decoder \"%s\"", file, type);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(d, "decoders"), *x;
        size_t i;
        if (!json_is_array(list)) return kn_fail(err, "%s: \"decoders\" must be an array", where);
        json_array_foreach(list, i, x) if (add_decoder(b, x, file, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel") || !strcmp(type, "Fuse")) return 0;
    if (!strcmp(type, "ByteFallback")) { b->sp_decode = 1; return 0; }
    if (!strcmp(type, "Replace")) {
        size_t plen;
        const char *pat = string_pattern(d, &plen);
        const char *c = json_string_value(json_object_get(d, "content"));
        if (!pat || strcmp(pat, SPACE_MARK) || !c || strcmp(c, " "))
            return kn_fail(err, "%s: only Replace \"\u2581\" -> \" \" is supported", where);
        b->sp_decode = 1;
        return 0;
    }
    if (!strcmp(type, "Strip")) {
        const char *c = json_string_value(json_object_get(d, "content"));
        json_t *start = json_object_get(d, "start"), *stop = json_object_get(d, "stop");
        if (!c || strcmp(c, " ") || !json_is_integer(start) || !json_is_integer(stop) || json_integer_value(stop) != 0 ||
            json_integer_value(start) < 0 || json_integer_value(start) > 8)
            return kn_fail(err, "%s: only Strip of up to 8 leading \" \" (stop 0) is supported", where);
        b->strip_start = (int)json_integer_value(start);
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = json_string_value(json_object_get(d, "prepend_scheme"));
        int add_prefix = 1;
        if (get_bool(d, "add_prefix_space", 1, &add_prefix, where, err)) return -1;
        b->sp_decode = 1;
        b->strip_start = scheme ? strcmp(scheme, "never") != 0 : add_prefix;
        return 0;
    }
    return kn_fail(err, "%s: unsupported decoder (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)", where);
}

int kn_bpe_takes_bytes(const kn_tokenizer *t) { return t->bpe && (t->bpe->byte_level || t->bpe->byte_fallback); }

int kn_bpe_prefix_space(const kn_tokenizer *t) {
    const kn_bpe *b = t->bpe;
    for (int i = 0; i < b->npre; i++) {
        if (b->pre[i].type == PRE_BYTELEVEL) return b->pre[i].prefix_space;
        if (b->pre[i].type == PRE_METASPACE) return b->pre[i].prepend != PREPEND_NEVER;
    }
    for (int i = 0; i < b->nnorm; i++)
        if (b->norm[i].type == NORM_PREPEND) return 1;
    return 0;
}

int kn_bpe_configure(kn_tokenizer *t, json_t *model, json_t *normalizer, json_t *pretok, json_t *decoder,
                     const char *file, kn_err *err) {
    kn_bpe *b = t->bpe;
    char where[600];
    snprintf(where, sizeof where, "%s model", file);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return kn_fail(err, "%s: \"dropout\" must be null (BPE dropout makes tokenization random)", where);
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, keys[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return kn_fail(err, "%s: \"%s\" is not supported (only null)", where, keys[i]);
    }
    if (get_bool(model, "byte_fallback", 0, &b->byte_fallback, where, err) ||
        get_bool(model, "fuse_unk", 0, &b->fuse_unk, where, err) ||
        get_bool(model, "ignore_merges", 0, &b->ignore_merges, where, err))
        return -1;
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) return kn_fail(err, "%s: \"unk_token\" must be a string or null", where);
        b->unk = kn_strtab_find(&t->vocab, json_string_value(unk), json_string_length(unk));
        if (b->unk < 0) return kn_fail(err, "%s: unk_token \"%s\" is not in the vocabulary", where, json_string_value(unk));
    }
    if (b->byte_fallback)
        for (int i = 0; i < 256; i++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", i);
            b->fallback_id[i] = kn_strtab_find(&t->vocab, s, 6);
        }
    int byte_level = 0, metaspace = 0;
    if (normalizer && !json_is_null(normalizer) && add_normalizer(b, normalizer, file, err)) return -1;
    if (pretok && !json_is_null(pretok) && add_pretok(b, pretok, file, &byte_level, &metaspace, err)) return -1;
    if (decoder && !json_is_null(decoder) && add_decoder(b, decoder, file, err)) return -1;
    if (byte_level) {
        if (metaspace || b->byte_fallback)
            return kn_fail(err, "%s: a ByteLevel pre-tokenizer with Metaspace or byte_fallback is not supported", file);
        return finish_byte_level(t, file, err);
    }
    int marks = metaspace;
    for (int i = 0; i < b->nnorm; i++)
        if (b->norm[i].type == NORM_REPLACE && b->norm[i].blen == 3 && !memcmp(b->norm[i].b, SPACE_MARK, 3)) marks = 1;
    if (!marks)
        return kn_fail(err, "%s: a BPE model needs a ByteLevel pre-tokenizer (GPT-2 style) or spaces made \u2581 "
                       "(a Replace normalizer or a Metaspace pre-tokenizer, SentencePiece style)", file);
    t->kind = KN_KIND_SENTENCEPIECE;
    return 0;
}

/* ---- encoding ---- */

/* Text pieces: each is its own allocation (normalizers and prefixes change the bytes). */
typedef struct { char *s; size_t n; int first; } piece;
typedef struct { piece *at; size_t n, cap; } pieces;

static int pieces_add(pieces *p, const char *s, size_t n, int first) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        piece *q = kn_realloc(p->at, cap * sizeof *q);
        if (!q) return -1;
        p->at = q;
        p->cap = cap;
    }
    char *c = dup_bytes(s, n);
    if (!c) return -1;
    p->at[p->n++] = (piece){c, n, first};
    return 0;
}
static void pieces_free(pieces *p) {
    for (size_t i = 0; i < p->n; i++) free(p->at[i].s);
    free(p->at);
    p->at = NULL;
    p->n = p->cap = 0;
}

/* One normalizer step over s (replaced in *s, *n). */
static int normalize(const norm_step *st, char **s, size_t *n) {
    kn_bytebuf out = {0};
    int rc = 0;
    if (st->type == NORM_PREPEND) {
        if (!*n) return 0;
        rc = kn_bytebuf_add(&out, st->a, st->alen) || kn_bytebuf_add(&out, *s, *n);
    } else if (st->type == NORM_REPLACE) {
        size_t i = 0;
        while (i < *n && !rc) {
            if (*n - i >= st->alen && !memcmp(*s + i, st->a, st->alen)) {
                rc = kn_bytebuf_add(&out, st->b, st->blen);
                i += st->alen;
            } else {
                rc = kn_bytebuf_add(&out, *s + i, 1);
                i++;
            }
        }
        if (!rc && !out.at) rc = kn_bytebuf_add(&out, "", 0);
    } else { /* NFC */
        char *o;
        size_t on;
        if (kn_uc_nfc_bytes(*s, *n, &o, &on)) return -1;
        free(*s);
        *s = o;
        *n = on;
        return 0;
    }
    if (rc) { free(out.at); return -1; }
    free(*s);
    *s = out.at;
    *n = out.n;
    return 0;
}

/* Splits s by re: every match is a piece, and so is the text between matches unless `removed`.
 * A byte that is not UTF-8 is matched as U+FFFD would be (neither \p{L}, \p{N} nor \s), one
 * pseudo-character per byte, and the piece keeps the original byte. */
static int regex_split_valid(const pcre2_code *re, int removed, const char *s, size_t n, int first,
                             const size_t *orig, const char *src, pieces *out);

static int regex_split(const pcre2_code *re, int removed, const char *s, size_t n, int first, pieces *out) {
    if (kn_utf8_invalid_at(s, n) < 0) return regex_split_valid(re, removed, s, n, first, NULL, s, out);
    size_t cap = 3 * n + 1;
    char *sub = kn_malloc(cap);
    size_t *orig = kn_malloc((cap + 1) * sizeof *orig), m = 0;
    if (!sub || !orig) { free(sub); free(orig); return -1; }
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int k = kn_utf8_decode(s + i, n - i, &c);
        if (k) {
            for (int j = 0; j < k; j++) orig[m] = i + (size_t)j, sub[m++] = s[i + j];
            i += (size_t)k;
        } else {
            for (int j = 0; j < 3; j++) orig[m] = i, sub[m++] = "\xEF\xBF\xBD"[j];
            i++;
        }
    }
    orig[m] = n;
    int rc = regex_split_valid(re, removed, sub, m, first, orig, s, out);
    free(sub);
    free(orig);
    return rc;
}

/* s[0..n) is valid UTF-8; piece [a, b) of s is src[orig[a], orig[b]) (orig NULL: the identity). */
static int piece_from(pieces *out, const char *src, const size_t *orig, size_t a, size_t b, int first) {
    size_t oa = orig ? orig[a] : a, ob = orig ? orig[b] : b;
    return pieces_add(out, src + oa, ob - oa, first && oa == 0);
}

static int regex_split_valid(const pcre2_code *re, int removed, const char *s, size_t n, int first,
                             const size_t *orig, const char *src, pieces *out) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return -1;
    size_t pos = 0, last = 0;
    int rc = 0;
    while (pos <= n && !rc) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
        if (m < 0) break; /* PCRE2_ERROR_NOMATCH; other errors cannot arise on a compiled pattern */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing: step one character on */
            uint32_t c;
            int k = ms < n ? kn_utf8_decode(s + ms, n - ms, &c) : 1;
            pos = ms + (size_t)(k ? k : 1);
            continue;
        }
        if (ms > last && !removed) rc = piece_from(out, src, orig, last, ms, first);
        if (!rc && !removed) rc = piece_from(out, src, orig, ms, me, first);
        last = pos = me;
    }
    if (!rc && last < n && !removed) rc = piece_from(out, src, orig, last, n, first);
    pcre2_match_data_free(md);
    return rc;
}

static int pretokenize(const pre_step *st, pieces *in, pieces *out) {
    for (size_t i = 0; i < in->n; i++) {
        piece *p = &in->at[i];
        if (st->type == PRE_SPLIT) {
            if (regex_split(st->re, st->behavior == SPLIT_REMOVED, p->s, p->n, p->first, out)) return -1;
        } else if (st->type == PRE_BYTELEVEL) {
            if (st->prefix_space && (p->n == 0 || p->s[0] != ' ')) { /* HF: when not starting with one */
                char *q = kn_malloc(p->n + 2);
                if (!q) return -1;
                q[0] = ' ';
                memcpy(q + 1, p->s, p->n);
                free(p->s);
                p->s = q;
                p->n++;
            }
            if (st->re) { if (regex_split(st->re, 0, p->s, p->n, p->first, out)) return -1; }
            else if (pieces_add(out, p->s, p->n, p->first)) return -1;
        } else { /* Metaspace: spaces become the replacement, which may be prepended, then split */
            kn_bytebuf b = {0};
            int rc = 0;
            int prepend = st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && p->first);
            /* spaces are replaced first, so a piece starting with a space starts with the mark */
            if (prepend && p->n && p->s[0] != ' ' && !(p->n >= st->repl_len && !memcmp(p->s, st->repl, st->repl_len)))
                rc = kn_bytebuf_add(&b, st->repl, st->repl_len);
            for (size_t j = 0; j < p->n && !rc; j++)
                rc = p->s[j] == ' ' ? kn_bytebuf_add(&b, st->repl, st->repl_len) : kn_bytebuf_add(&b, p->s + j, 1);
            if (!rc && !st->split) rc = pieces_add(out, b.at ? b.at : "", b.n, p->first);
            else if (!rc) { /* split before each replacement (MergedWithNext) */
                size_t start = 0;
                for (size_t j = 1; j <= b.n && !rc; j++)
                    if (j == b.n || (b.n - j >= st->repl_len && !memcmp(b.at + j, st->repl, st->repl_len))) {
                        rc = pieces_add(out, b.at + start, j - start, p->first && start == 0);
                        start = j;
                    }
            }
            free(b.at);
            if (rc) return -1;
        }
    }
    return 0;
}

/* BPE of one piece's symbols (ids), merging in place; returns the new count, or (size_t)-1 when
 * out of memory. The pair of lowest rank is merged first, the leftmost among equal ranks (HF's
 * order): a heap of candidate pairs keyed by (rank, position of the left symbol) over a linked
 * list of symbols, stale entries skipped when popped, so a long piece costs O(n log n). */
typedef struct { int rank, pos, left, right; } cand;

static int cand_less(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static size_t merge_all(const kn_bpe *b, int *sym, size_t n) {
    if (n < 2) return n;
    if (n > INT32_MAX / 4) return (size_t)-1;
    int *next = kn_malloc(n * sizeof *next), *prev = kn_malloc(n * sizeof *prev);
    /* each merge pushes at most two candidates: n - 1 at first, 2 (n - 1) later */
    cand *heap = kn_malloc(3 * n * sizeof *heap);
    if (!next || !prev || !heap) { free(next); free(prev); free(heap); return (size_t)-1; }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int)i + 1 : -1;
        prev[i] = (int)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int m, r = merge_find(b, sym[i], sym[i + 1], &m);
        if (r >= 0) heap_push(heap, &hn, (cand){r, (int)i, sym[i], sym[i + 1]});
    }
    while (hn) {
        cand c = heap_pop(heap, &hn);
        int q = next[c.pos];
        if (sym[c.pos] != c.left || q < 0 || sym[q] != c.right) continue; /* stale */
        int merged;
        merge_find(b, c.left, c.right, &merged);
        sym[c.pos] = merged;
        next[c.pos] = next[q];
        if (next[q] >= 0) prev[next[q]] = c.pos;
        sym[q] = -1; /* removed */
        int p = prev[c.pos], r, m;
        if (p >= 0 && (r = merge_find(b, sym[p], merged, &m)) >= 0) heap_push(heap, &hn, (cand){r, p, sym[p], merged});
        if (next[c.pos] >= 0 && (r = merge_find(b, merged, sym[next[c.pos]], &m)) >= 0)
            heap_push(heap, &hn, (cand){r, c.pos, merged, sym[next[c.pos]]});
    }
    size_t k = 0;
    for (int i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    free(next);
    free(prev);
    free(heap);
    return k;
}

static int model_encode(const kn_tokenizer *t, const char *s, size_t n, kn_idbuf *out, kn_err *err) {
    const kn_bpe *b = t->bpe;
    if (!n) return 0;
    kn_idbuf sym = {0};
    kn_bytebuf word = {0};
    int rc = 0;
    if (b->byte_level) {
        for (size_t i = 0; i < n && !rc; i++) {
            unsigned char c = (unsigned char)s[i];
            char u[4];
            if (b->ignore_merges) rc = kn_bytebuf_add(&word, u, (size_t)kn_utf8_encode(byte_char(c), u));
            if (rc) break;
            int id = b->byte_id[c];
            if (id < 0) id = b->unk;
            if (id < 0) {
                free(sym.at); free(word.at);
                return kn_fail(err, "byte 0x%02X has no token in the vocabulary and there is no unk_token", c);
            }
            rc = kn_idbuf_push(&sym, id);
        }
    } else {
        int last_unk = 0;
        for (size_t i = 0; i < n && !rc;) {
            uint32_t c;
            int k = kn_utf8_decode(s + i, n - i, &c);
            /* a byte that is not UTF-8 (allowed only with byte fallback) is its own <0xNN> */
            int id = k ? kn_strtab_find(&t->vocab, s + i, (size_t)k) : -1;
            if (!k) k = 1;
            if (id >= 0) {
                rc = kn_idbuf_push(&sym, id);
                last_unk = 0;
            } else {
                int all = b->byte_fallback;
                for (int j = 0; j < k && all; j++) all = b->fallback_id[(unsigned char)s[i + j]] >= 0;
                if (all) {
                    for (int j = 0; j < k && !rc; j++) rc = kn_idbuf_push(&sym, b->fallback_id[(unsigned char)s[i + j]]);
                    last_unk = 0;
                } else if (b->unk >= 0) {
                    if (!(b->fuse_unk && last_unk)) rc = kn_idbuf_push(&sym, b->unk);
                    last_unk = 1;
                } else {
                    free(sym.at);
                    return kn_fail(err, "the character \"%.*s\" has no token, no byte fallback and there is no unk_token", k, s + i);
                }
            }
            i += (size_t)k;
        }
    }
    if (rc) { free(sym.at); free(word.at); return kn_fail(err, "out of memory tokenizing %zu bytes", n); }
    int whole = -1;
    if (b->ignore_merges) whole = b->byte_level ? kn_strtab_find(&t->vocab, word.at, word.n) : kn_strtab_find(&t->vocab, s, n);
    free(word.at);
    if (whole >= 0 && whole < b->n_model) { free(sym.at); return kn_idbuf_push(out, whole) ? kn_fail(err, "out of memory") : 0; }
    size_t m = merge_all(b, sym.at, sym.n);
    if (m == (size_t)-1) { free(sym.at); return kn_fail(err, "out of memory tokenizing %zu bytes", n); }
    for (size_t i = 0; i < m && !rc; i++) rc = kn_idbuf_push(out, sym.at[i]);
    free(sym.at);
    return rc ? kn_fail(err, "out of memory tokenizing %zu bytes", n) : 0;
}

int kn_bpe_encode(const kn_tokenizer *t, const char *text, size_t len, int at_start, kn_idbuf *out, kn_err *err) {
    const kn_bpe *b = t->bpe;
    char *s = dup_bytes(text, len);
    size_t n = len;
    if (!s) return kn_fail(err, "out of memory tokenizing %zu bytes", len);
    for (int i = 0; i < b->nnorm; i++)
        if (normalize(&b->norm[i], &s, &n)) { free(s); return kn_fail(err, "out of memory tokenizing %zu bytes", len); }
    pieces cur = {0}, next = {0};
    int rc = pieces_add(&cur, s, n, at_start);
    free(s);
    for (int i = 0; i < b->npre && !rc; i++) {
        rc = pretokenize(&b->pre[i], &cur, &next);
        pieces_free(&cur);
        cur = next;
        next = (pieces){0};
    }
    if (rc) { pieces_free(&cur); pieces_free(&next); return kn_fail(err, "out of memory tokenizing %zu bytes", len); }
    for (size_t i = 0; i < cur.n && !rc; i++) rc = model_encode(t, cur.at[i].s, cur.at[i].n, out, err);
    pieces_free(&cur);
    return rc;
}

/* ---- decoding ---- */

/* Appends bytes as UTF-8 with each ill-formed sequence (a maximal subpart) replaced by U+FFFD,
 * as Rust's from_utf8_lossy and Python's errors="replace" do. */
static int add_lossy(kn_bytebuf *out, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int k = kn_utf8_decode(s + i, n - i, &c);
        if (k) {
            if (kn_bytebuf_add(out, s + i, (size_t)k)) return -1;
            i += (size_t)k;
            continue;
        }
        /* the maximal subpart: a lead byte and the continuation bytes that could still follow it */
        unsigned char l = (unsigned char)s[i];
        size_t j = i + 1;
        int need = l >= 0xC2 && l <= 0xDF ? 1 : l >= 0xE0 && l <= 0xEF ? 2 : l >= 0xF0 && l <= 0xF4 ? 3 : 0;
        for (int q = 0; q < need && j < n; q++, j++) {
            unsigned char x = (unsigned char)s[j];
            unsigned lo = 0x80, hi = 0xBF;
            if (q == 0) {
                if (l == 0xE0) lo = 0xA0;
                else if (l == 0xED) hi = 0x9F;
                else if (l == 0xF0) lo = 0x90;
                else if (l == 0xF4) hi = 0x8F;
            }
            if (x < lo || x > hi) break;
        }
        if (kn_bytebuf_add(out, "\xEF\xBF\xBD", 3)) return -1;
        i = j;
    }
    return 0;
}

/* ByteFallback: a run of <0xNN> tokens is its bytes when they are UTF-8, else one U+FFFD each. */
static int flush_bytes(kn_bytebuf *out, kn_bytebuf *pend) {
    int rc = 0;
    if (!pend->n) return 0;
    if (kn_utf8_invalid_at(pend->at, pend->n) < 0) rc = kn_bytebuf_add(out, pend->at, pend->n);
    else
        for (size_t i = 0; i < pend->n && !rc; i++) rc = kn_bytebuf_add(out, "\xEF\xBF\xBD", 3);
    pend->n = 0;
    return rc;
}

static int hex_byte(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

int kn_bpe_decode(const kn_tokenizer *t, const int *ids, int n, kn_bytebuf *out) {
    const kn_bpe *b = t->bpe;
    kn_bytebuf raw = {0}, pend = {0};
    int rc = kn_bytebuf_add(&raw, "", 0);
    for (int i = 0; i < n && !rc; i++) {
        const char *s = t->vocab.tok[ids[i]];
        size_t len = t->vocab.len[ids[i]];
        if (b->byte_level) { /* every character a byte character, or the token's own UTF-8 */
            char bytes[1024];
            size_t k = 0;
            int all = len <= sizeof bytes;
            for (size_t j = 0; j < len && all;) {
                uint32_t c;
                int q = kn_utf8_decode(s + j, len - j, &c);
                if (!q || c >= 324 || !b->char_byte[c]) { all = 0; break; }
                bytes[k++] = (char)(b->char_byte[c] - 1);
                j += (size_t)q;
            }
            rc = all ? kn_bytebuf_add(&raw, bytes, k) : kn_bytebuf_add(&raw, s, len);
            continue;
        }
        int hb = b->sp_decode && b->byte_fallback ? hex_byte(s, len) : -1;
        if (hb >= 0) {
            char c = (char)hb;
            rc = kn_bytebuf_add(&pend, &c, 1);
            continue;
        }
        rc = flush_bytes(&raw, &pend);
        for (size_t j = 0; j < len && !rc;) {
            if (b->sp_decode && len - j >= 3 && !memcmp(s + j, SPACE_MARK, 3)) { rc = kn_bytebuf_add(&raw, " ", 1); j += 3; }
            else { rc = kn_bytebuf_add(&raw, s + j, 1); j++; }
        }
    }
    if (!rc) rc = flush_bytes(&raw, &pend);
    size_t skip = 0;
    while (!rc && skip < (size_t)b->strip_start && skip < raw.n && raw.at[skip] == ' ') skip++;
    if (!rc) rc = add_lossy(out, raw.at + skip, raw.n - skip);
    free(raw.at);
    free(pend.at);
    return rc;
}
