/* fuzz_tokenizer_layout.c: (seeds: tests/fuzz/corpus/tokenizer_layout/) the tokenizer folder reader (core/tokenizer_load.c) and the tokenizers behind
 * core/tokenizer.h (WordPiece, byte-level and SentencePiece BPE, added tokens, decoding).
 * The input is a layout line ("J" tokenizer.json, "M" vocab.json + merges.txt, "T" vocab.txt),
 * then, separated by FUZZ_SEP: the main file, the second file (merges.txt for "M"), a
 * tokenizer_config.json (left out when empty) and a text.
 * Property: the loader refuses with a message naming the folder or a file in it, or gives a
 * tokenizer whose every id maps to a token and back; tokenizing returns -1 with a message or ids
 * in range, the same ids again with an exact buffer, the checkpoint's special tokens around them
 * with kn_tokenize2_special; a continuation (the text cut in two) is refused with a message or
 * gives ids in range; decoding any of those ids succeeds. */
#include "fuzz_common.h"
#include "tokenizer.h"

#include <sys/stat.h>

static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt", "vocab.txt",
                                    "tokenizer_config.json"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || data[1] != '\n') return 0;
    char layout = (char)data[0];
    const uint8_t *part[4];
    size_t len[4];
    int n = fuzz_split(data + 2, size - 2, 4, part, len);
    static char dir[700];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/tok", fuzz_dir());
        mkdir(dir, 0755);
    }
    char p[800];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    const char *main_name = layout == 'J' ? "tokenizer.json" : layout == 'M' ? "vocab.json" : "vocab.txt";
    snprintf(p, sizeof p, "%s/%s", dir, main_name);
    fuzz_write(p, part[0], len[0]);
    if (layout == 'M' && n > 1) {
        snprintf(p, sizeof p, "%s/merges.txt", dir);
        fuzz_write(p, part[1], len[1]);
    }
    if (n > 2 && len[2]) {
        snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
        fuzz_write(p, part[2], len[2]);
    }
    const char *text = n > 3 ? (const char *)part[3] : "The capital of France is Paris. \xC3\xA9 12345 <s> [MASK] it's";
    size_t tlen = n > 3 ? len[3] : strlen(text);

    kn_err err = {""};
    kn_tokenizer *t = kn_tokenizer_load(dir, &err);
    if (!t) {
        FUZZ_CHECK(strstr(err.msg, dir) != NULL || strstr(err.msg, "tok/") != NULL,
                   "tokenizer refusal does not name the folder: %s", err.msg);
        return 0;
    }
    int V = kn_tokenizer_size(t);
    FUZZ_CHECK(V > 0, "a tokenizer of %d tokens", V);
    for (int i = 0; i < V; i++) {
        const char *s = kn_tokenizer_token(t, i);
        FUZZ_CHECK(s != NULL, "id %d has no token", i);
        /* a token with a NUL inside (from JSON) cannot be looked up as a C string */
        if (strlen(s) && kn_tokenizer_id(t, s) != i) {
            int j = kn_tokenizer_id(t, s);
            FUZZ_CHECK(j >= 0 && strcmp(kn_tokenizer_token(t, j), s) == 0, "token %d does not map back", i);
        }
    }
    int small[4];
    int count = kn_tokenize2(t, text, tlen, small, 4, &err);
    if (count < 0) {
        FUZZ_CHECK(err.msg[0] != '\0', "tokenize failed without a message");
    } else {
        int *ids = malloc(sizeof(int) * ((size_t)count + 16));
        if (!ids) abort();
        int again = kn_tokenize2(t, text, tlen, ids, count, &err);
        FUZZ_CHECK(again == count, "tokenizing twice gave %d then %d ids", count, again);
        for (int i = 0; i < count; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d out of range", ids[i]);
        for (int i = 0; i < count && i < 4; i++) FUZZ_CHECK(ids[i] == small[i], "a short buffer got other ids");
        char out[256];
        FUZZ_CHECK(kn_detokenize(t, ids, count, out, sizeof out, &err) >= 0, "decoding failed: %s", err.msg);
        int with = kn_tokenize2_special(t, text, tlen, NULL, 0, &err);
        FUZZ_CHECK(with >= count && with <= count + 8, "with special tokens %d ids, without %d", with, count);
        free(ids);
        int cont[64];
        int c = kn_tokenize_continuation(t, text, tlen / 2, text + tlen / 2, tlen - tlen / 2, cont, 64, &err);
        if (c < 0) FUZZ_CHECK(err.msg[0] != '\0', "continuation refused without a message");
        for (int i = 0; i < c && i < 64; i++) FUZZ_CHECK(cont[i] >= 0 && cont[i] < V, "continuation id out of range");
    }
    kn_tokenizer_free(t);
    return 0;
}
