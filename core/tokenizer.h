/* tokenizer.h: Hugging Face tokenizers read from a model folder, giving HF's token ids.
 *   "wordpiece"          BERT: vocab.txt (+ tokenizer_config.json, BertTokenizer's defaults when
 *                        it is absent: do_lower_case true) or tokenizer.json with a WordPiece model
 *                        (BertNormalizer + BertPreTokenizer).
 *   "bpe-bytelevel"      GPT-2 / Qwen2 / Llama-3: vocab.json + merges.txt (GPT-2's pre-split regex,
 *                        Qwen2's for a Qwen2Tokenizer) or tokenizer.json with a BPE model under a
 *                        ByteLevel pre-tokenizer (and a Split regex before it, run with PCRE2).
 *   "bpe-sentencepiece"  Llama-2 / Mistral: tokenizer.json with a BPE model and byte fallback,
 *                        normalizer Prepend ▁ + Replace " " -> ▁ (or a Metaspace pre-tokenizer).
 * tokenizer.json wins when a folder has it (as HF's AutoTokenizer does); tokenizer_config.json
 * names the special tokens and says whether BOS/EOS are added. Added tokens are matched in the
 * raw text before the model. Anything the loader reads but cannot honour is refused, naming the
 * file and key.
 *
 * WordPiece follows BertTokenizerFast (what AutoTokenizer returns, also for a vocab.txt-only
 * folder): BertNormalizer without NFC, so NFD input keeps its marks when accents are not
 * stripped; never_split from tokenizer_config.json is honoured as the slow BertTokenizer does.
 * (core/wordpiece.h's kn_tokenize keeps the slow tokenizer's NFC.)
 *
 * Text is taken by length. A NUL byte is data, handled as HF handles U+0000: WordPiece drops it
 * (BERT's text cleaning), byte-level BPE encodes byte 0x00, SentencePiece BPE falls back to
 * <0x00>. Bytes that are not UTF-8 are refused with their offset by WordPiece (and by a BPE
 * without byte fallback); byte-level BPE and byte-fallback BPE encode them, each such byte a
 * pseudo-character that the pre-split regexes see as U+FFFD (neither letter, digit nor space)
 * and that becomes its own byte token (<0xNN> or the byte-level character). */
#ifndef KNWB_TOKENIZER_H
#define KNWB_TOKENIZER_H

#include <stddef.h>

#include "error.h"

typedef struct kn_tokenizer kn_tokenizer;

/* Reads the tokenizer files of a model folder. */
kn_tokenizer *kn_tokenizer_load(const char *dir, kn_err *err);
/* A WordPiece tokenizer over n tokens (id = index) with BertTokenizer's defaults; lower sets
 * do_lower_case (accents are then stripped). The tokens must include [UNK]; [PAD] [CLS] [SEP]
 * [MASK] are used when present. */
kn_tokenizer *kn_tokenizer_wordpiece(const char *const *tokens, int n, int lower, kn_err *err);
void kn_tokenizer_free(kn_tokenizer *t);
/* Writes the tokenizer files into dir (which must exist): the files it was loaded from, byte for
 * byte, or vocab.txt + tokenizer_config.json for kn_tokenizer_wordpiece. Each file is written
 * atomically (core/fileio.h); a whole model folder is staged by its caller. */
int kn_tokenizer_save(const kn_tokenizer *t, const char *dir, kn_err *err);

int kn_tokenizer_size(const kn_tokenizer *t);
/* Id of an exact token string (as the vocabulary spells it: "Ġthe", "▁the", "##s"), or -1. */
int kn_tokenizer_id(const kn_tokenizer *t, const char *tok);
/* Token string of an id, or NULL when out of range. */
const char *kn_tokenizer_token(const kn_tokenizer *t, int id);

enum { KN_SPECIAL_PAD, KN_SPECIAL_UNK, KN_SPECIAL_CLS, KN_SPECIAL_SEP, KN_SPECIAL_MASK,
       KN_SPECIAL_BOS, KN_SPECIAL_EOS, KN_SPECIAL_COUNT };
/* Id of a special token, -1 when the tokenizer has none. */
int kn_tokenizer_special(const kn_tokenizer *t, int which);
/* Whether encoding with special tokens puts a token before the text (BOS, or BERT's [CLS]) and
 * after it (EOS, or BERT's [SEP]), as the checkpoint's settings say. */
int kn_tokenizer_adds_bos(const kn_tokenizer *t);
int kn_tokenizer_adds_eos(const kn_tokenizer *t);
/* "wordpiece", "bpe-bytelevel" or "bpe-sentencepiece". */
const char *kn_tokenizer_kind(const kn_tokenizer *t);

/* Tokenizes text[0..len) without special tokens. Writes at most max ids and returns the full
 * count (call again with a larger buffer when it exceeds max), or -1 with a message. */
int kn_tokenize2(const kn_tokenizer *t, const char *text, size_t len, int *ids, int max, kn_err *err);
/* The same with the checkpoint's special tokens around the text (BOS / [CLS] ... EOS / [SEP]). */
int kn_tokenize2_special(const kn_tokenizer *t, const char *text, size_t len, int *ids, int max,
                         kn_err *err);
/* The ids of cont as it tokenizes right after prompt (no special tokens): the tokens of
 * prompt + cont after those of prompt. cont is appended byte for byte, so a decoder's target
 * carries its own leading space (" Paris"). Refused, naming the tokens, when prompt's tokens are
 * not a prefix of the joint ones (cont merges into prompt's last token), or cont adds none. */
int kn_tokenize_continuation(const kn_tokenizer *t, const char *prompt, size_t plen, const char *cont,
                             size_t clen, int *ids, int max, kn_err *err);
/* Text of n ids, as HF's decode with skip_special_tokens=False: WordPiece joins with spaces and
 * glues "##" pieces (and cleans up spaces before punctuation when clean_up_tokenization_spaces);
 * byte-level BPE maps back to bytes; SentencePiece turns ▁ into spaces, <0xNN> into bytes and
 * drops the one leading space. Byte sequences that are not UTF-8 become U+FFFD as in HF. Writes
 * at most cap - 1 bytes and a NUL, returns the full length (like snprintf), or -1 for an id out
 * of range. */
int kn_detokenize(const kn_tokenizer *t, const int *ids, int n, char *out, size_t cap, kn_err *err);

#endif
