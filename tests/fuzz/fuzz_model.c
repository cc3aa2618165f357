/* fuzz_model.c: the model loader (core/model.c) on a whole fuzzed folder: the input is
 * config.json, vocab.txt, model.safetensors and (optionally) tokenizer_config.json, separated by
 * FUZZ_SEP lines. Property: kn_model_load refuses with a message, or gives a model whose
 * parameters all point at floats it may read; a forward over a short prompt then runs inside its
 * arena and gives finite logits whenever the weights are moderate (|w| <= 1000). */
#include "fuzz_common.h"
#include "bert.h"
#include "wordpiece.h"

#include <math.h>

/* Whether every weight is finite and at most 1000 in magnitude: then no float in a forward of
 * a model this small can overflow, so a NaN or infinite logit would be the engine's fault. */
static int weights_moderate(const kn_model *m) {
    for (int i = 0; i < m->nparams; i++)
        for (int64_t j = 0; j < m->params[i].numel; j++)
            if (!(fabsf(m->params[i].data[j]) <= 1000.0f)) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[4];
    size_t len[4];
    int n = fuzz_split(data, size, 4, part, len);
    if (n < 3) return 0; /* not a folder: the single-file readers have their own harnesses */
    fuzz_write(fuzz_path(0, "config.json"), part[0], len[0]);
    fuzz_write(fuzz_path(1, "vocab.txt"), part[1], len[1]);
    fuzz_write(fuzz_path(2, "model.safetensors"), part[2], len[2]);
    if (n == 4) fuzz_write(fuzz_path(3, "tokenizer_config.json"), part[3], len[3]);
    else unlink(fuzz_path(3, "tokenizer_config.json"));

    kn_err err = { "" };
    kn_model *m = kn_model_load(fuzz_dir(), &err);
    if (!m) {
        FUZZ_CHECK(err.msg[0] != '\0', "kn_model_load failed without a message");
        return 0;
    }
    const bert_config *c = &m->cfg;
    FUZZ_CHECK(m->vocab && kn_vocab_size(m->vocab) == c->vocab_size, "vocabulary size differs from the config");
    for (int i = 0; i < m->nparams; i++) {
        FUZZ_CHECK(m->params[i].data != NULL, "parameter '%s' has no data", m->params[i].name);
        volatile float s = 0; /* every float of every parameter is readable (ASan checks) */
        for (int64_t j = 0; j < m->params[i].numel; j++) s += m->params[i].data[j];
        (void)s;
    }
    /* a short prompt, cut to the model's positions */
    int ids[8], T = 0;
    ids[T++] = kn_vocab_special(m->vocab, KN_TOK_CLS);
    int k = kn_tokenize(m->vocab, "Paris is the capital of [MASK] .", ids + 1, 6, &err);
    if (k > 0) T += k < 6 ? k : 6;
    ids[T++] = kn_vocab_special(m->vocab, KN_TOK_SEP);
    if (T > c->max_pos) T = c->max_pos;
    bert_acts *a = bert_acts_new(c, 1, T, 1, &err);
    if (a) {
        int row = T - 1;
        if (bert_forward(m, a, ids, NULL, NULL, 1, T, &row, 1, NULL, 0, &err) == 0 && weights_moderate(m))
            for (int v = 0; v < c->vocab_size; v++)
                FUZZ_CHECK(isfinite(a->logits[v]), "logit %d is %g from weights within +-1000", v, a->logits[v]);
        bert_acts_free(a);
    }
    kn_model_free(m);
    return 0;
}
