/* fuzz_tokenizer.c: a model folder's tokenizer files (core/tokenizer_load.c, tokenizer.c, bpe.c,
 * wordpiece.c): tokenizer.json, vocab.json + merges.txt, vocab.txt, tokenizer_config.json and
 * special_tokens_map.json. The input is parts split at FUZZ_SEP, each "NAME\n" then the bytes
 * of that file; a part named "text" is the text to tokenize (a fixed sentence otherwise). Files
 * the input does not name are absent from the folder.
 * Property: kn_tokenizer_load refuses with a message, or gives a tokenizer whose every id maps
 * to a token and back (first id wins for duplicates) and whose special ids are in range;
 * tokenizing returns -1 with a message or a count of in-range ids that a second call with room
 * for all of them repeats, with and without special tokens; detokenizing those ids succeeds and
 * reports a length that a second call with room for it repeats. */
#include "fuzz_common.h"
#include "tokenizer.h"

static const char *const names[] = { "tokenizer.json", "vocab.json", "merges.txt", "vocab.txt",
                                     "tokenizer_config.json", "special_tokens_map.json" };
enum { NFILES = 6 };

static void tokenize_check(const kn_tokenizer *t, const char *text, size_t len, int special) {
    kn_err err = { "" };
    int V = kn_tokenizer_size(t), small[4];
    int n = special ? kn_tokenize2_special(t, text, len, small, 4, &err) : kn_tokenize2(t, text, len, small, 4, &err);
    if (n < 0) { FUZZ_CHECK(err.msg[0] != '\0', "tokenize failed without a message"); return; }
    int *ids = malloc(sizeof(int) * ((size_t)n + 1));
    if (!ids) abort();
    int again = special ? kn_tokenize2_special(t, text, len, ids, n, &err) : kn_tokenize2(t, text, len, ids, n, &err);
    FUZZ_CHECK(again == n, "tokenizing twice gave %d then %d ids", n, again);
    for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d out of range [0, %d)", ids[i], V);
    for (int i = 0; i < n && i < 4; i++) FUZZ_CHECK(ids[i] == small[i], "a short buffer got other ids");
    char probe[8];
    int dl = kn_detokenize(t, ids, n, probe, sizeof probe, &err);
    FUZZ_CHECK(dl >= 0, "ids the tokenizer made do not detokenize: %s", err.msg);
    char *out = malloc((size_t)dl + 1);
    if (!out) abort();
    FUZZ_CHECK(kn_detokenize(t, ids, n, out, (size_t)dl + 1, &err) == dl, "detokenizing twice gave other lengths");
    FUZZ_CHECK(strlen(out) <= (size_t)dl, "detokenized text longer than reported");
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[NFILES + 2];
    size_t len[NFILES + 2];
    int np = fuzz_split(data, size, NFILES + 2, part, len);
    int present[NFILES] = { 0 };
    const char *text = "Paris is the capital of [MASK]. Übermensch 東京 don't\n  x";
    size_t tlen = strlen(text);
    for (int i = 0; i < np; i++) {
        const uint8_t *nl = memchr(part[i], '\n', len[i]);
        if (!nl) continue;
        size_t nlen = (size_t)(nl - part[i]), blen = len[i] - nlen - 1;
        if (nlen == 4 && memcmp(part[i], "text", 4) == 0) { text = (const char *)nl + 1; tlen = blen; continue; }
        for (int k = 0; k < NFILES; k++)
            if (nlen == strlen(names[k]) && memcmp(part[i], names[k], nlen) == 0 && !present[k]) {
                fuzz_write(fuzz_path(k, names[k]), nl + 1, blen);
                present[k] = 1;
            }
    }
    for (int k = 0; k < NFILES; k++) if (!present[k]) unlink(fuzz_path(k, names[k]));

    kn_err err = { "" };
    kn_tokenizer *t = kn_tokenizer_load(fuzz_dir(), &err);
    if (!t) {
        FUZZ_CHECK(err.msg[0] != '\0', "kn_tokenizer_load failed without a message");
        return 0;
    }
    int V = kn_tokenizer_size(t);
    FUZZ_CHECK(V >= 1, "a tokenizer of %d tokens", V);
    for (int i = 0; i < V; i++) {
        const char *tok = kn_tokenizer_token(t, i);
        FUZZ_CHECK(tok != NULL, "id %d has no token", i);
        int back = kn_tokenizer_id(t, tok);
        FUZZ_CHECK(back >= 0 && back <= i && strcmp(kn_tokenizer_token(t, back), tok) == 0,
                   "token %d does not map back to an id of the same token (got %d)", i, back);
    }
    FUZZ_CHECK(kn_tokenizer_token(t, V) == NULL && kn_tokenizer_token(t, -1) == NULL, "out-of-range id gives a token");
    for (int s = 0; s < KN_SPECIAL_COUNT; s++) {
        int id = kn_tokenizer_special(t, s);
        FUZZ_CHECK(id >= -1 && id < V, "special %d has id %d out of range", s, id);
    }
    tokenize_check(t, text, tlen, 0);
    tokenize_check(t, text, tlen, 1);
    kn_tokenizer_free(t);
    return 0;
}
