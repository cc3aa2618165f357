/* tokenizer.c: the kn_tokenizer calls (see tokenizer.h) that every kind shares: added tokens cut
 * out of the raw text first (leftmost, then longest, with lstrip/rstrip taking the whitespace
 * beside them), the stretches between them handed to WordPiece (wordpiece.c) or BPE (bpe.c), the
 * checkpoint's special tokens around the text, continuations, decoding and saving. Loading is
 * tokenizer_load.c. */
#include "alloc.h"
#include "fileio.h"
#include "tokenizer_impl.h"
#include "unicode.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kn_tokenizer_free(kn_tokenizer *t) {
    if (!t) return;
    kn_strtab_free(&t->vocab);
    for (int i = 0; i < t->nadded; i++) free(t->added[i].content);
    free(t->added);
    kn_wp_free(&t->wp);
    kn_bpe_free(t->bpe);
    for (int i = 0; i < t->nfiles; i++) free(t->files[i].data);
    free(t);
}

int kn_tokenizer_size(const kn_tokenizer *t) { return t ? t->vocab.n : 0; }
int kn_tokenizer_id(const kn_tokenizer *t, const char *tok) {
    return t && tok ? kn_strtab_find(&t->vocab, tok, strlen(tok)) : -1;
}
const char *kn_tokenizer_token(const kn_tokenizer *t, int id) {
    return t && id >= 0 && id < t->vocab.n ? t->vocab.tok[id] : NULL;
}
int kn_tokenizer_special(const kn_tokenizer *t, int which) {
    return t && which >= 0 && which < KN_SPECIAL_COUNT ? t->special[which] : -1;
}
int kn_tokenizer_adds_bos(const kn_tokenizer *t) { return t && t->nprefix > 0; }
int kn_tokenizer_adds_eos(const kn_tokenizer *t) { return t && t->nsuffix > 0; }
const char *kn_tokenizer_kind(const kn_tokenizer *t) {
    if (!t) return "";
    return t->kind == KN_KIND_WORDPIECE ? "wordpiece" : t->kind == KN_KIND_BYTELEVEL ? "bpe-bytelevel" : "bpe-sentencepiece";
}

/* ---- encoding ---- */

static int is_space_at(const char *s, size_t n, size_t *len) {
    uint32_t c;
    int k = kn_utf8_decode(s, n, &c);
    if (!k) return 0;
    *len = (size_t)k;
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           (c >= 0x80 && (kn_uc_flags(c) & KN_UC_SPACE));
}

/* The added token starting at s (the longest when several do), or -1. */
static int added_at(const kn_tokenizer *t, const char *s, size_t n) {
    int best = -1;
    for (int i = 0; i < t->nadded; i++) {
        const kn_added *a = &t->added[i];
        if (a->len <= n && (best < 0 || a->len > t->added[best].len) && s[0] == a->content[0] &&
            !memcmp(s, a->content, a->len))
            best = i;
    }
    return best;
}

static int encode_stretch(const kn_tokenizer *t, const char *s, size_t n, int at_start, kn_idbuf *out, kn_err *err) {
    if (!n) return 0;
    if (t->kind == KN_KIND_WORDPIECE)
        return kn_wp_encode(&t->wp, s, n, out) ? kn_fail(err, "out of memory tokenizing %zu bytes", n) : 0;
    return kn_bpe_encode(t, s, n, at_start, out, err);
}

static int encode(const kn_tokenizer *t, const char *text, size_t len, kn_idbuf *out, kn_err *err) {
    if (!t || (!text && len)) return kn_fail(err, "tokenize: tokenizer and text must not be NULL");
    if (t->kind == KN_KIND_WORDPIECE || !kn_bpe_takes_bytes(t)) {
        long bad = kn_utf8_invalid_at(text, len);
        if (bad >= 0)
            return kn_fail(err, "text is not valid UTF-8: bad byte 0x%02X at byte offset %ld (a %s tokenizer takes UTF-8 text)",
                           (unsigned char)text[bad], bad, kn_tokenizer_kind(t));
    }
    char *own = NULL;
    if (t->text_prefix_space || t->text_nfc) { /* slow GPT-2 add_prefix_space, slow Qwen2 NFC */
        size_t n = len + (size_t)t->text_prefix_space;
        if (!(own = kn_malloc(n + 1))) return kn_fail(err, "out of memory tokenizing %zu bytes", len);
        own[0] = ' ';
        if (len) memcpy(own + t->text_prefix_space, text, len);
        if (t->text_nfc) {
            char *nfc;
            if (kn_uc_nfc_bytes(own, n, &nfc, &n)) { free(own); return kn_fail(err, "out of memory tokenizing %zu bytes", len); }
            free(own);
            own = nfc;
        }
        text = own;
        len = n;
    }
    int rc = 0;
    size_t start = 0, i = 0;
    while (i < len && !rc) {
        int a = t->nadded ? added_at(t, text + i, len - i) : -1;
        if (a < 0) { i++; continue; }
        const kn_added *ad = &t->added[a];
        size_t end = i, next = i + ad->len, k;
        if (ad->lstrip) /* the whitespace before the token goes with it */
            while (end > start) {
                size_t back = end - 1;
                while (back > start && ((unsigned char)text[back] & 0xC0) == 0x80) back--;
                if (!is_space_at(text + back, end - back, &k) || back + k != end) break;
                end = back;
            }
        if (ad->rstrip)
            while (next < len && is_space_at(text + next, len - next, &k)) next += k;
        rc = encode_stretch(t, text + start, end - start, start == 0, out, err);
        if (!rc && kn_idbuf_push(out, ad->id)) rc = kn_fail(err, "out of memory tokenizing %zu bytes", len);
        i = start = next;
    }
    if (!rc) rc = encode_stretch(t, text + start, len - start, start == 0, out, err);
    free(own);
    if (!rc && out->n > (size_t)INT32_MAX / 2) rc = kn_fail(err, "tokenize: more than 2^30 tokens");
    return rc;
}

static int give(kn_idbuf *b, int *ids, int max, kn_err *err) {
    if (max < 0 || (max > 0 && !ids)) {
        free(b->at);
        return kn_fail(err, "tokenize: max %d needs an ids buffer of that size", max);
    }
    for (size_t i = 0; i < b->n && i < (size_t)max; i++) ids[i] = b->at[i];
    int n = (int)b->n;
    free(b->at);
    return n;
}

int kn_tokenize2(const kn_tokenizer *t, const char *text, size_t len, int *ids, int max, kn_err *err) {
    kn_idbuf b = {0};
    if (encode(t, text, len, &b, err)) { free(b.at); return -1; }
    return give(&b, ids, max, err);
}

int kn_tokenize2_special(const kn_tokenizer *t, const char *text, size_t len, int *ids, int max, kn_err *err) {
    kn_idbuf b = {0};
    int rc = 0;
    for (int i = 0; t && i < t->nprefix && !rc; i++) rc = kn_idbuf_push(&b, t->prefix[i]);
    if (!rc) rc = encode(t, text, len, &b, err);
    else kn_fail(err, "out of memory");
    for (int i = 0; !rc && i < t->nsuffix; i++)
        if (kn_idbuf_push(&b, t->suffix[i])) rc = kn_fail(err, "out of memory");
    if (rc) { free(b.at); return -1; }
    return give(&b, ids, max, err);
}

int kn_tokenize_continuation(const kn_tokenizer *t, const char *prompt, size_t plen, const char *cont, size_t clen,
                             int *ids, int max, kn_err *err) {
    if (!t || (!prompt && plen) || (!cont && clen)) return kn_fail(err, "tokenize_continuation: NULL argument");
    kn_idbuf p = {0}, j = {0};
    size_t total;
    char *joint = NULL;
    if (kn_add_size(plen, clen, &total) || !(joint = kn_malloc(total + 1))) return kn_fail(err, "out of memory");
    if (plen) memcpy(joint, prompt, plen);
    if (clen) memcpy(joint + plen, cont, clen);
    int rc = encode(t, prompt, plen, &p, err);
    if (!rc) rc = encode(t, joint, total, &j, err);
    free(joint);
    if (!rc) {
        size_t same = 0;
        while (same < p.n && same < j.n && p.at[same] == j.at[same]) same++;
        if (same < p.n) {
            const char *a = t->vocab.tok[p.at[same]], *b = same < j.n ? t->vocab.tok[j.at[same]] : "(nothing)";
            rc = kn_fail(err, "the continuation \"%.*s\" does not tokenize on its own after the prompt: the prompt's "
                         "token %zu \"%s\" becomes \"%s\" (write the continuation with the space it follows, "
                         "e.g. \" Paris\", and the prompt without a trailing space)",
                         (int)(clen > 60 ? 60 : clen), cont, same, a, b);
        } else if (j.n == p.n) {
            rc = kn_fail(err, "the continuation \"%.*s\" adds no token after the prompt", (int)(clen > 60 ? 60 : clen), cont);
        }
    }
    if (rc) { free(p.at); free(j.at); return -1; }
    memmove(j.at, j.at + p.n, (j.n - p.n) * sizeof *j.at);
    j.n -= p.n;
    free(p.at);
    return give(&j, ids, max, err);
}

/* ---- decoding ---- */

/* HF's clean_up_tokenization: no space before . ? ! , and the English contractions. */
static void cleanup_spaces(kn_bytebuf *b) {
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (int r = 0; r < 10; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), o = 0;
        for (size_t i = 0; i < b->n;) {
            if (b->n - i >= fl && !memcmp(b->at + i, from[r], fl)) {
                memmove(b->at + o, to[r], tl);
                o += tl;
                i += fl;
            } else {
                b->at[o++] = b->at[i++];
            }
        }
        b->n = o;
        if (b->at) b->at[o] = '\0';
    }
}

int kn_detokenize(const kn_tokenizer *t, const int *ids, int n, char *out, size_t cap, kn_err *err) {
    if (!t || n < 0 || (n > 0 && !ids)) return kn_fail(err, "detokenize: NULL tokenizer or ids");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab.n)
            return kn_fail(err, "detokenize: ids[%d] = %d is not a token id in [0, %d)", i, ids[i], t->vocab.n);
    kn_bytebuf b = {0};
    int rc = kn_bytebuf_add(&b, "", 0);
    if (t->kind == KN_KIND_WORDPIECE) {
        /* " ".join(tokens).replace(" ##", "").strip() */
        const kn_wp *w = &t->wp;
        for (int i = 0; i < n && !rc; i++) {
            const char *s = t->vocab.tok[ids[i]];
            size_t len = t->vocab.len[ids[i]];
            if (i > 0 && len >= w->prefix_len && w->prefix_len && !memcmp(s, w->prefix, w->prefix_len))
                rc = kn_bytebuf_add(&b, s + w->prefix_len, len - w->prefix_len);
            else
                rc = (i > 0 && kn_bytebuf_add(&b, " ", 1)) || kn_bytebuf_add(&b, s, len);
        }
        while (!rc && b.n && (b.at[b.n - 1] == ' ')) b.at[--b.n] = '\0';
    } else if (!rc) {
        rc = kn_bpe_decode(t, ids, n, &b);
    }
    if (rc) { free(b.at); return kn_fail(err, "detokenize: out of memory"); }
    if (t->cleanup) cleanup_spaces(&b);
    if (b.n > (size_t)INT32_MAX) { free(b.at); return kn_fail(err, "detokenize: text over 2 GB"); }
    if (cap) {
        size_t k = b.n < cap - 1 ? b.n : cap - 1;
        memcpy(out, b.at, k);
        out[k] = '\0';
    }
    int len = (int)b.n;
    free(b.at);
    return len;
}

/* ---- saving ---- */

int kn_tokenizer_save(const kn_tokenizer *t, const char *dir, kn_err *err) {
    if (!t || !dir) return kn_fail(err, "kn_tokenizer_save: NULL argument");
    char path[4200];
    size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    if (t->nfiles) {
        for (int i = 0; i < t->nfiles; i++) {
            snprintf(path, sizeof path, "%s%s%s", dir, sep, t->files[i].name);
            if (kn_write_file_atomic(path, t->files[i].data, t->files[i].len, err)) return -1;
        }
        return 0;
    }
    /* built from a token list: vocab.txt + the settings a BertTokenizer reads */
    kn_bytebuf b = {0};
    int rc = 0;
    for (int i = 0; i < t->vocab.n && !rc; i++)
        rc = kn_bytebuf_add(&b, t->vocab.tok[i], t->vocab.len[i]) || kn_bytebuf_add(&b, "\n", 1);
    if (rc) { free(b.at); return kn_fail(err, "kn_tokenizer_save: out of memory"); }
    snprintf(path, sizeof path, "%s%svocab.txt", dir, sep);
    rc = kn_write_file_atomic(path, b.at, b.n, err);
    free(b.at);
    if (rc) return -1;
    char cfg[256];
    int n = snprintf(cfg, sizeof cfg, "{\n  \"do_lower_case\": %s,\n  \"strip_accents\": null,\n  \"tokenize_chinese_chars\": true,\n  \"tokenizer_class\": \"BertTokenizer\"\n}\n",
                     t->wp.lower ? "true" : "false");
    snprintf(path, sizeof path, "%s%stokenizer_config.json", dir, sep);
    return kn_write_file_atomic(path, cfg, (size_t)n, err);
}
