/* fuzz_vocab.c: vocab.txt (kn_vocab_load in core/wordpiece.c) and the WordPiece tokenizer.
 * The input is a vocabulary, then FUZZ_SEP, then a text to tokenize with it (a fixed sentence
 * when there is no separator); its first byte's low bit picks lower-casing.
 * Property: the loader refuses with a message naming the file, or gives a vocabulary whose every
 * id maps to a token and back; tokenizing returns -1 with a message (invalid UTF-8) or a count of
 * ids that are all in range, and asking again with room for all of them gives the same count. */
#include "fuzz_common.h"
#include "wordpiece.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data, size, 2, part, len);
    const char *path = fuzz_path(0, "vocab.txt");
    fuzz_write(path, part[0], len[0]);
    int lower = size > 0 && (data[0] & 1);
    kn_err err = { "" };
    kn_vocab *v = kn_vocab_load(path, lower, &err);
    if (!v) {
        FUZZ_CHECK(strstr(err.msg, path) != NULL, "vocab refusal does not name the file: %s", err.msg);
        return 0;
    }
    int V = kn_vocab_size(v);
    FUZZ_CHECK(V >= 5, "vocabulary of %d tokens lacks the special tokens", V);
    for (int i = 0; i < V; i++) {
        const char *t = kn_vocab_token(v, i);
        FUZZ_CHECK(t && kn_vocab_id(v, t) == i, "token %d does not map back to its id", i);
    }
    FUZZ_CHECK(kn_vocab_token(v, V) == NULL && kn_vocab_token(v, -1) == NULL, "out-of-range id gives a token");
    char *text;
    if (n == 2) {
        text = malloc(len[1] + 1);
        if (!text) abort();
        memcpy(text, part[1], len[1]);
        text[len[1]] = '\0';
    } else {
        text = strdup("Paris is the capital of [MASK]. Überraschung, 東京!");
    }
    int small[4];
    int count = kn_tokenize(v, text, small, 4, &err);
    if (count >= 0) {
        int *ids = malloc(sizeof(int) * (size_t)(count + 1));
        if (!ids) abort();
        int again = kn_tokenize(v, text, ids, count, &err);
        FUZZ_CHECK(again == count, "tokenizing twice gave %d then %d ids", count, again);
        for (int i = 0; i < count; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d out of range", ids[i]);
        for (int i = 0; i < count && i < 4; i++) FUZZ_CHECK(ids[i] == small[i], "a short buffer got other ids");
        free(ids);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "tokenize failed without a message");
    }
    free(text);
    kn_vocab_free(v);
    return 0;
}
