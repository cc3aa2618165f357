/* wordpiece.h: BERT's tokenizer: vocab.txt loading, basic tokenization and greedy WordPiece.
 * Matches Hugging Face BertTokenizer (BasicTokenizer + WordpieceTokenizer): whitespace and
 * punctuation split, CJK characters split, control characters dropped, optional lower-casing with
 * accent stripping, longest-match-first pieces with "##" continuation, [UNK] for words over
 * max_chars characters, and special tokens ([CLS] [SEP] [MASK] [PAD] [UNK]) kept whole. */
#ifndef KNWB_WORDPIECE_H
#define KNWB_WORDPIECE_H

#include "error.h"

typedef struct kn_vocab kn_vocab;

/* Loads a vocab.txt (one token a line, id = line number from 0). Fails, naming the file, when it
 * cannot be read, is empty, holds a duplicate token, or lacks one of [PAD] [UNK] [CLS] [SEP] [MASK]. */
kn_vocab *kn_vocab_load(const char *path, int do_lower_case, kn_err *err);
/* Builds a vocabulary from an array of n tokens (same checks as kn_vocab_load). */
kn_vocab *kn_vocab_from_tokens(const char *const *tokens, int n, int do_lower_case, kn_err *err);
void kn_vocab_free(kn_vocab *v);

int kn_vocab_size(const kn_vocab *v);
int kn_vocab_lower(const kn_vocab *v);
/* Id of an exact token string, or -1 when absent. */
int kn_vocab_id(const kn_vocab *v, const char *token);
/* Token string of an id, or NULL when out of range. */
const char *kn_vocab_token(const kn_vocab *v, int id);

enum { KN_TOK_PAD, KN_TOK_UNK, KN_TOK_CLS, KN_TOK_SEP, KN_TOK_MASK };
/* Id of one of the special tokens above. */
int kn_vocab_special(const kn_vocab *v, int which);

/* Tokenizes UTF-8 text into ids (no [CLS]/[SEP] added). Writes at most max_ids ids and returns
 * the full count (which may exceed max_ids: call again with a larger buffer), or -1 on invalid
 * UTF-8 (message gives the byte offset). */
int kn_tokenize(const kn_vocab *v, const char *text, int *ids, int max_ids, kn_err *err);

#endif
