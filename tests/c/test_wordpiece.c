/* test_wordpiece.c: checks core/wordpiece.c against hand-derived Hugging Face BertTokenizer output.
 * The expected tokens follow from the BasicTokenizer + WordpieceTokenizer rules applied by hand
 * to the small vocab in tests/fixtures/wordpiece/vocab.txt (or an inline one); there is no
 * Python in the loop. Run from the repository root (tests/run.sh does). */
#include "check.h"
#include "wordpiece.h"

#define FIXTURES "tests/fixtures/wordpiece/"

/* Writes text with non-printable bytes escaped, so a FAIL line stays on one line. */
static const char *shown(const char *text) {
    static char buf[4][512];
    static int which;
    char *out = buf[which++ % 4];
    size_t k = 0;
    for (const unsigned char *s = (const unsigned char *)text; *s && k + 5 < sizeof buf[0]; s++) {
        if (*s < 0x20 || *s == 0x7F) k += (size_t)snprintf(out + k, 5, "\\x%02X", *s);
        else out[k++] = (char)*s;
    }
    out[k] = '\0';
    return out;
}

/* Tokenizes text and checks the tokens, joined by single spaces, equal want. */
static void expect(const kn_vocab *v, const char *text, const char *want) {
    int ids[512];
    char got[4096] = "";
    kn_err err = {""};
    int n = kn_tokenize(v, text, ids, 512, &err);
    size_t k = 0;
    for (int i = 0; i < n && i < 512 && k < sizeof got - 64; i++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%s", i ? " " : "", kn_vocab_token(v, ids[i]));
    if (n < 0) snprintf(got, sizeof got, "error: %s", err.msg);
    CHECK(n >= 0 && strcmp(got, want) == 0, "%s \"%s\" -> \"%s\" (got \"%s\")",
          kn_vocab_lower(v) ? "uncased" : "cased", shown(text), want, got);
}

static void expect_bad_utf8(const kn_vocab *v, const char *text, const char *offset_phrase) {
    int ids[8];
    kn_err err = {""};
    int n = kn_tokenize(v, text, ids, 8, &err);
    CHECK(n == -1, "invalid UTF-8 \"%s\" is rejected (got %d)", shown(text), n);
    CHECK_MSG(err.msg, offset_phrase, shown(text));
}

static void test_vocab(const kn_vocab *uncased) {
    CHECK(kn_vocab_size(uncased) == 47, "fixture vocab has 47 tokens (got %d)", kn_vocab_size(uncased));
    CHECK(kn_vocab_lower(uncased) == 1, "do_lower_case is remembered");
    CHECK(kn_vocab_special(uncased, KN_TOK_PAD) == 0 && kn_vocab_special(uncased, KN_TOK_UNK) == 1 &&
          kn_vocab_special(uncased, KN_TOK_CLS) == 2 && kn_vocab_special(uncased, KN_TOK_SEP) == 3 &&
          kn_vocab_special(uncased, KN_TOK_MASK) == 4, "special token ids are their line numbers");
    CHECK(kn_vocab_special(uncased, 5) == -1, "an unknown special token kind gives -1");
    CHECK(kn_vocab_id(uncased, "##aff") == 19, "id of \"##aff\" is 19 (got %d)", kn_vocab_id(uncased, "##aff"));
    CHECK(kn_vocab_id(uncased, "Wörld") == 26, "id of a UTF-8 token (got %d)", kn_vocab_id(uncased, "Wörld"));
    CHECK(kn_vocab_id(uncased, "aff") == -1, "an absent token has id -1");
    CHECK(kn_vocab_token(uncased, 46) && strcmp(kn_vocab_token(uncased, 46), "##ᆫ") == 0,
          "the last line, token 46, is \"##ᆫ\"");
    CHECK(kn_vocab_token(uncased, 47) == NULL && kn_vocab_token(uncased, -1) == NULL,
          "ids outside [0, 47) have no token");

    kn_err err = {""};
    kn_vocab *crlf = kn_vocab_load(FIXTURES "crlf.txt", 0, &err);
    CHECK(crlf != NULL, "CRLF vocab loads (%s)", err.msg);
    if (crlf) {
        CHECK(kn_vocab_size(crlf) == 7 && kn_vocab_id(crlf, "[MASK]") == 4 && kn_vocab_id(crlf, "world") == 6,
              "CRLF line ends are stripped and a last line without newline counts");
        kn_vocab_free(crlf);
    }
}

static void test_vocab_errors(void) {
    kn_err err = {""};
    CHECK(kn_vocab_load(FIXTURES "no_such_vocab.txt", 1, &err) == NULL, "a missing vocab file fails");
    CHECK_MSG(err.msg, "no_such_vocab.txt", "missing file");
    CHECK_MSG(err.msg, "cannot open", "missing file");

    CHECK(kn_vocab_load(FIXTURES "empty.txt", 1, &err) == NULL, "an empty vocab file fails");
    CHECK_MSG(err.msg, "empty.txt\" is empty", "empty file");

    CHECK(kn_vocab_load(FIXTURES "no_mask.txt", 1, &err) == NULL, "a vocab without [MASK] fails");
    CHECK_MSG(err.msg, "no_mask.txt", "no [MASK]");
    CHECK_MSG(err.msg, "has no [MASK] token", "no [MASK]");

    CHECK(kn_vocab_load(FIXTURES "duplicate.txt", 1, &err) == NULL, "a vocab with a duplicate token fails");
    CHECK_MSG(err.msg, "duplicate.txt", "duplicate");
    CHECK_MSG(err.msg, "duplicate token \"hello\" on lines 3 and 6", "duplicate");

    const char *dup[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "x", "[SEP]"};
    CHECK(kn_vocab_from_tokens(dup, 7, 0, &err) == NULL, "a token list with a duplicate fails");
    CHECK_MSG(err.msg, "duplicate token \"[SEP]\" on indices 3 and 6", "duplicate in list");
    const char *no_unk[] = {"[PAD]", "[CLS]", "[SEP]", "[MASK]"};
    CHECK(kn_vocab_from_tokens(no_unk, 4, 0, &err) == NULL, "a token list without [UNK] fails");
    CHECK_MSG(err.msg, "has no [UNK] token", "no [UNK] in list");
    const char *bad[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ok", "b\xC3"};
    CHECK(kn_vocab_from_tokens(bad, 7, 0, &err) == NULL, "a token that is not UTF-8 fails");
    CHECK_MSG(err.msg, "index 6: invalid UTF-8 at byte 1", "bad UTF-8 in list");
}

static void test_words(const kn_vocab *uncased, const kn_vocab *cased) {
    expect(uncased, "Paris is the capital of France", "paris is the capital of france");
    expect(cased, "Paris is the capital of France", "Paris is the capital of [UNK]");
    expect(uncased, "unaffable", "un ##aff ##able");
    expect(uncased, "xyz", "[UNK]");
    /* "un ##aff ##able" matches but "z" does not: the whole word is one [UNK], not a tail. */
    expect(uncased, "unaffablez is", "[UNK] is");
    expect(uncased, "aaa", "a ##a ##a");
    expect(uncased, "", "");
    expect(uncased, " \t\n ", "");

    /* Greedy longest-match-first, not the best split: "unaff" wins over "un" + "##affable". */
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "unaff", "##aff", "##able", "##affable"};
    kn_err err = {""};
    kn_vocab *greedy = kn_vocab_from_tokens(toks, 10, 0, &err);
    CHECK(greedy != NULL, "inline vocab builds (%s)", err.msg);
    if (greedy) {
        expect(greedy, "unaffable", "unaff ##able");
        kn_vocab_free(greedy);
    }
}

static void test_long_words(const kn_vocab *cased) {
    char text[512];
    int ids[128];
    kn_err err = {""};
    memset(text, 'a', 100);
    text[100] = '\0';
    int n = kn_tokenize(cased, text, ids, 128, &err);
    CHECK(n == 100 && ids[0] == kn_vocab_id(cased, "a") && ids[99] == kn_vocab_id(cased, "##a"),
          "a 100-character word is still split (a ##a ... : got %d tokens)", n);
    text[100] = 'a', text[101] = '\0';
    n = kn_tokenize(cased, text, ids, 128, &err);
    CHECK(n == 1 && ids[0] == kn_vocab_special(cased, KN_TOK_UNK), "a 101-character word is [UNK] (got %d tokens)", n);
    /* The limit counts characters, not bytes: 100 two-byte "é" still split. */
    for (int i = 0; i < 100; i++) memcpy(text + 2 * i, "é", 2);
    text[200] = '\0';
    n = kn_tokenize(cased, text, ids, 128, &err);
    CHECK(n == 100 && ids[1] == kn_vocab_id(cased, "##é"), "100 x \"é\" (200 bytes) is split (got %d tokens)", n);
    memcpy(text + 200, "é", 3);
    n = kn_tokenize(cased, text, ids, 128, &err);
    CHECK(n == 1 && ids[0] == kn_vocab_special(cased, KN_TOK_UNK), "101 x \"é\" is [UNK] (got %d tokens)", n);
}

static void test_punctuation_and_spaces(const kn_vocab *uncased, const kn_vocab *cased) {
    expect(cased, "Hello!!?", "Hello ! ! ?");
    expect(uncased, "Hello!!?", "hello ! ! ?");
    expect(uncased, "1,234.5", "1 , 234 . 5");
    expect(uncased, "(paris)", "[UNK] paris [UNK]"); /* ASCII punctuation splits even when unknown */
    expect(uncased, "paris\u00BFis", "paris [UNK] is"); /* U+00BF INVERTED QUESTION MARK is Po */
    expect(uncased, "paris$is", "paris [UNK] is");   /* '$' is Sc, but all ASCII symbols split */
    expect(uncased, "hello\tworld\nthe\r\nparis", "hello world the paris");
    expect(uncased, "hello\u00A0world\u3000the\u2028is", "hello world the is"); /* Zs, U+2028 */
    expect(uncased, "hel\x01lo wor\x7Fld", "hello world");   /* Cc dropped, not a space */
    expect(uncased, "hel\u00ADlo wor\u200Bld", "hello world"); /* Cf (soft hyphen, ZWSP) dropped */
    expect(uncased, "hel\uFFFDlo \x0Bworld", "hello world");   /* U+FFFD dropped; \v is Cc */
}

static void test_case_and_accents(const kn_vocab *uncased, const kn_vocab *cased) {
    expect(uncased, "Héllo Wörld", "hello world");
    expect(cased, "Héllo Wörld", "Héllo Wörld");
    expect(uncased, "HE\u0301LLO", "hello");          /* decomposed accent stripped too */
    expect(cased, "He\u0301llo Wo\u0308rld", "Héllo Wörld"); /* NFC composes before lookup */
    expect(cased, "hello\u0301", "[UNK]"); /* NFC makes "helló", which the vocab lacks */
    expect(uncased, "ΑΘΗΝΑ", "αθηνα");
    /* HF lower-cases character by character, so a final capital sigma becomes σ, not ς. */
    expect(uncased, "ΟΔΟΣ", "οδοσ");
    expect(uncased, "МОСКВА Ёлка", "москва елка");
    expect(uncased, "İSTANBUL", "istanbul");          /* İ -> i + U+0307, the dot stripped */
    expect(uncased, "한", "ᄒ ##ᅡ ##ᆫ");              /* accent stripping splits Hangul into jamo */
    expect(cased, "한", "[UNK]");
}

static void test_cjk(const kn_vocab *uncased) {
    expect(uncased, "中国人", "中 国 人");
    expect(uncased, "a中a", "a 中 a");
    expect(uncased, "中x", "中 [UNK]");
}

static void test_special_tokens(const kn_vocab *uncased, const kn_vocab *cased) {
    expect(uncased, "Paris is the capital of [MASK].", "paris is the capital of [MASK] .");
    expect(cased, "Paris is the capital of [MASK].", "Paris is the capital of [MASK] .");
    expect(uncased, "of[MASK][SEP]is", "of [MASK] [SEP] is");
    expect(uncased, "[CLS] hello [SEP] [PAD][UNK]", "[CLS] hello [SEP] [PAD] [UNK]");
    expect(uncased, "[[MASK]]", "[ [MASK] ]");
    /* Special tokens match exactly: other spellings are split as punctuation. */
    expect(uncased, "[mask]", "[ mask ]");
    expect(uncased, "[Mask]", "[ mask ]");
    expect(cased, "[mask]", "[ mask ]");
    expect(cased, "[MASK ]", "[ [UNK] ]");
    /* A control character inside is dropped after special tokens are found, but the cleaned word
     * is still never split (cased only: with lower-casing it was "[ma\x01sk]" by then). */
    expect(cased, "[MA\x01SK]", "[MASK]");
    expect(uncased, "[MA\x01SK]", "[ mask ]");
}

static void test_counts_and_errors(const kn_vocab *uncased) {
    int ids[4] = {-7, -7, -7, -7};
    kn_err err = {""};
    int n = kn_tokenize(uncased, "paris is the capital", ids, 2, &err);
    CHECK(n == 4, "the full count is returned when it exceeds max_ids (got %d)", n);
    CHECK(ids[0] == kn_vocab_id(uncased, "paris") && ids[1] == kn_vocab_id(uncased, "is") && ids[2] == -7,
          "only max_ids ids are written");
    n = kn_tokenize(uncased, "paris is the capital", NULL, 0, &err);
    CHECK(n == 4, "max_ids 0 with no buffer counts (got %d)", n);

    expect_bad_utf8(uncased, "ab\xFF" "cd", "byte offset 2");
    expect_bad_utf8(uncased, "\xC0\xAF", "byte offset 0");           /* overlong '/' */
    expect_bad_utf8(uncased, "héllo\xE4\xB8", "byte offset 6");      /* cut short */
    expect_bad_utf8(uncased, "x \xED\xA0\x80", "byte offset 2");     /* surrogate */
    expect_bad_utf8(uncased, "[MASK]\xF4\x90\x80\x80", "byte offset 6"); /* above U+10FFFF */
    expect_bad_utf8(uncased, "ok \x80", "byte 0x80 at byte offset 3");
}

int main(void) {
    kn_err err = {""};
    kn_vocab *uncased = kn_vocab_load(FIXTURES "vocab.txt", 1, &err);
    CHECK(uncased != NULL, "fixture vocab loads uncased (%s)", err.msg);
    kn_vocab *cased = kn_vocab_load(FIXTURES "vocab.txt", 0, &err);
    CHECK(cased != NULL, "fixture vocab loads cased (%s)", err.msg);
    if (uncased && cased) {
        test_vocab(uncased);
        test_words(uncased, cased);
        test_long_words(cased);
        test_punctuation_and_spaces(uncased, cased);
        test_case_and_accents(uncased, cased);
        test_cjk(uncased);
        test_special_tokens(uncased, cased);
        test_counts_and_errors(uncased);
    }
    test_vocab_errors();
    kn_vocab_free(uncased);
    kn_vocab_free(cased);
    return check_done();
}
