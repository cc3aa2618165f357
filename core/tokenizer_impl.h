/* tokenizer_impl.h: the inside of kn_tokenizer, shared by tokenizer.c (the public calls, added
 * tokens, special tokens, decoding), tokenizer_load.c (reading a folder), wordpiece.c (WordPiece)
 * and bpe.c (BPE, its normalizers and pre-tokenizers). Not for callers outside core/. */
#ifndef KNWB_TOKENIZER_IMPL_H
#define KNWB_TOKENIZER_IMPL_H

#include "error.h"
#include "strtab.h"
#include "tokenizer.h"

#include <stddef.h>

/* A growable id list. */
typedef struct { int *at; size_t n, cap; } kn_idbuf;
int kn_idbuf_push(kn_idbuf *b, int id); /* -1 when out of memory */

/* WordPiece settings: BertTokenizer's (slow, from vocab.txt + tokenizer_config.json) or
 * BertNormalizer + BertPreTokenizer + WordPiece (fast, from tokenizer.json). */
typedef struct kn_wp {
    const kn_strtab *vocab;
    int unk;            /* id of the unknown token */
    int lower;          /* lower-case (do_lower_case / BertNormalizer.lowercase) */
    int strip_accents;  /* NFD and drop Mn: already resolved (null = follow lower) */
    int chinese;        /* CJK ideographs become words of their own */
    int clean;          /* drop NUL, U+FFFD and controls; whitespace becomes a space */
    int nfc;            /* slow BasicTokenizer NFC-normalizes the text; the fast one does not */
    char prefix[16];    /* continuing_subword_prefix, "##" */
    size_t prefix_len;
    int max_chars;      /* max_input_chars_per_word: longer words are unk */
    kn_strtab never;    /* never_split words (slow only; empty otherwise) */
} kn_wp;

/* Tokenizes valid UTF-8 text[0..len) that holds no added token; appends the ids to out.
 * Returns 0, or -1 when out of memory. */
int kn_wp_encode(const kn_wp *w, const char *text, size_t len, kn_idbuf *out);
void kn_wp_free(kn_wp *w);
/* Splits vocab.txt's bytes (buf[len] is a NUL) into lines in place: tokens[i] / lens[i] for line i.
 * Refuses an empty file, a NUL byte and more lines than a vocabulary may have, naming path. */
int kn_vocab_txt_lines(char *buf, size_t len, const char *path, char ***tokens, size_t **lens, int *n,
                       kn_err *err);

/* An added token (tokenizer.json added_tokens, tokenizer_config.json added_tokens_decoder and
 * the special tokens it names): matched in the raw text before the model sees it. */
typedef struct kn_added {
    char *content;
    size_t len;
    int id, lstrip, rstrip, special;
} kn_added;

typedef struct kn_bpe kn_bpe; /* bpe.c */

enum { KN_KIND_WORDPIECE, KN_KIND_BYTELEVEL, KN_KIND_SENTENCEPIECE };

#define KN_TOK_MAX_FILES 8
#define KN_TOK_MAX_AFFIX 4

struct kn_tokenizer {
    int kind;
    kn_strtab vocab;                 /* every id, model tokens and added tokens */
    int special[KN_SPECIAL_COUNT];   /* ids, -1 when absent */
    int prefix[KN_TOK_MAX_AFFIX], nprefix; /* what encoding with special tokens puts around */
    int suffix[KN_TOK_MAX_AFFIX], nsuffix;
    kn_added *added;
    int nadded;
    int text_prefix_space;           /* slow GPT-2 add_prefix_space: " " + text */
    int text_nfc;                    /* slow Qwen2Tokenizer: NFC of the text first */
    int cleanup;                     /* clean_up_tokenization_spaces when decoding */
    kn_wp wp;
    kn_bpe *bpe;
    /* the files read, written back unchanged by kn_tokenizer_save */
    struct { char name[32]; char *data; size_t len; } files[KN_TOK_MAX_FILES];
    int nfiles;
};

/* ---- bpe.c ---- */
typedef struct json_t json_t;
typedef struct { char *at; size_t n, cap; } kn_bytebuf;
int kn_bytebuf_add(kn_bytebuf *b, const char *s, size_t n); /* -1 when out of memory */

/* Makes t->bpe and t->vocab (ids 0..n_total-1) and puts the model's vocabulary (a JSON object
 * token -> id, from `file`) in it. */
int kn_bpe_create(kn_tokenizer *t, json_t *vocab, int n_total, const char *file, kn_err *err);
/* Merges from merges.txt ("a b" lines after an optional "#version" line). */
int kn_bpe_merges_txt(kn_tokenizer *t, const char *buf, size_t len, const char *file, kn_err *err);
/* Merges from tokenizer.json's model.merges ("a b" strings or [a, b] pairs). */
int kn_bpe_merges_json(kn_tokenizer *t, json_t *merges, const char *file, kn_err *err);
/* Slow GPT2Tokenizer / Qwen2Tokenizer: byte-level, text split by `regex` (findall). */
int kn_bpe_slow_bytelevel(kn_tokenizer *t, const char *regex, const char *file, kn_err *err);
/* tokenizer.json: the model's options (unk_token, byte_fallback, fuse_unk, ignore_merges, ...),
 * normalizer, pre_tokenizer and decoder; sets t->kind. Unsupported settings are refused by name. */
int kn_bpe_configure(kn_tokenizer *t, json_t *model, json_t *normalizer, json_t *pretok, json_t *decoder,
                     const char *file, kn_err *err);
/* Encodes one stretch of text between added tokens; `at_start` says it begins the input. */
int kn_bpe_encode(const kn_tokenizer *t, const char *text, size_t len, int at_start, kn_idbuf *out,
                  kn_err *err);
/* Appends the decoded bytes of n ids to out (HF's decoders; see kn_detokenize). */
int kn_bpe_decode(const kn_tokenizer *t, const int *ids, int n, kn_bytebuf *out);
void kn_bpe_free(kn_bpe *b);
/* Whether the pipeline puts a space (or ▁) before the text: ByteLevel add_prefix_space, a
 * Metaspace prepend_scheme other than never, or a Prepend normalizer. */
int kn_bpe_prefix_space(const kn_tokenizer *t);
/* Whether any byte string can be encoded (byte-level, or byte fallback): then bytes that are not
 * UTF-8 are taken, one pseudo-character each, instead of refused. */
int kn_bpe_takes_bytes(const kn_tokenizer *t);

/* The GPT-2 and Qwen2 pre-split patterns (HF's slow tokenizers and ByteLevel's use_regex). */
extern const char kn_gpt2_regex[], kn_qwen2_regex[];

#endif
