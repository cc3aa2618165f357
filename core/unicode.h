/* unicode.h: the little Unicode the tokenizers need: UTF-8 decoding and encoding by length,
 * the character classes BERT's BasicTokenizer consults (control, whitespace, punctuation, Mn),
 * Python's one-character str.lower(), and NFD / NFC. The data is core/unicode_tables.h
 * (generated from Python's unicodedata); this is not a general Unicode library. */
#ifndef KNWB_UNICODE_H
#define KNWB_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s (avail bytes left); returns its length, or 0 when it is not
 * well-formed UTF-8 (stray continuation byte, overlong form, surrogate, above U+10FFFF, cut short). */
int kn_utf8_decode(const char *s, size_t avail, uint32_t *cp);
/* Writes c as UTF-8 (1 to 4 bytes) and returns the length. */
int kn_utf8_encode(uint32_t c, char *out);
/* Byte offset of the first malformed sequence in s[0..len), or -1 when it is all valid. */
long kn_utf8_invalid_at(const char *s, size_t len);

enum { KN_UC_DROP = 1, KN_UC_SPACE = 2, KN_UC_PUNCT = 4, KN_UC_MN = 8 };
/* BasicTokenizer's classes of c: KN_UC_DROP (NUL, U+FFFD, Cc/Cf/Cn/Co/Cs other than \t \n \r),
 * KN_UC_SPACE (\t \n \r, Zs), KN_UC_PUNCT (P*, and every ASCII non-alphanumeric symbol),
 * KN_UC_MN (a nonspacing mark). */
int kn_uc_flags(uint32_t c);
/* HF's _is_chinese_char: the CJK Unified Ideographs blocks (not Hangul, kana or punctuation). */
int kn_uc_is_cjk(uint32_t c);
/* Python's str.lower() of one character; writes 1 or 2 code points and returns the count. */
int kn_uc_lower(uint32_t c, uint32_t out[2]);

/* A growable array of code points. */
typedef struct { uint32_t *at; size_t n, cap; } kn_cpbuf;
int kn_cpbuf_reserve(kn_cpbuf *b, size_t extra); /* -1 when out of memory */
void kn_cpbuf_free(kn_cpbuf *b);
/* Appends NFD(in[0..n)) to out. */
int kn_uc_nfd(const uint32_t *in, size_t n, kn_cpbuf *out);
/* Canonical composition of an NFD buffer in place (NFD then this is NFC). */
void kn_uc_compose(kn_cpbuf *b);
/* NFC of a byte string into a new NUL-terminated buffer (free()); bytes that are not UTF-8 are
 * kept as they are, the valid stretches between them normalized. -1 when out of memory. */
int kn_uc_nfc_bytes(const char *s, size_t n, char **out, size_t *out_len);

#endif
