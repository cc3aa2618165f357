/* test_train.c: dropout in training (core/train.h, the drop_* masks of core/bert.h).
 * - Masks of all ones change nothing: logits and every weight gradient bit-identical to no mask.
 * - With random masks (kept entries 1/(1-rate)) the backward matches central finite differences
 *   of the masked loss at weights of every kind the masks touch; a neuron dropped at every
 *   position gets exactly zero gradient on its value slot.
 * - The trainer's masks hold only 0 and 1/(1-rate), with the rate's share of zeros; the same seed
 *   gives bit-identical training, another seed a different one; rates of 0 train exactly as a
 *   trainer that never heard of dropout; the arena is left without masks after a step.
 * - Rates outside [0, 1) are refused with a message naming the setting. */
#include "bert.h"
#include "check.h"
#include "objective.h"
#include "train.h"

#include <stdint.h>
#include <stdlib.h>

enum { B = 2, T = 7, V = 40 };

static const bert_config CFG = { .vocab_size = V, .hidden = 16, .layers = 2, .heads = 2, .ffn = 24, .max_pos = 16,
                                 .type_vocab = 2, .pad_token_id = 0, .ln_eps = 1e-12f, .do_lower_case = 1 };

static kn_model *make(void) {
    kn_err err = { "" };
    kn_model *m = kn_model_create(&CFG, 7, NULL, &err);
    if (!m) printf("# kn_model_create: %s\n", err.msg);
    /* larger weights than the 0.02 init, so that every path carries a measurable gradient */
    for (int64_t i = 0; i < m->nparams; i++) {
        kn_param *p = &m->params[i];
        if (p->ndim == 2)
            for (int64_t j = 0; j < p->numel; j++) p->data[j] *= 10.0f;
    }
    return m;
}

static uint64_t lcg = 12345;
static float uniform(void) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((lcg >> 40) * 0x1.0p-24);
}

/* the batch: token ids in [5, V), row b's position 2+b masked and labelled, plus one more */
static int ids[B * T], rows[4], labels[4];
static const int P = 4;
static void make_batch(void) {
    for (int i = 0; i < B * T; i++) ids[i] = 5 + (int)(uniform() * (V - 5));
    for (int b = 0; b < B; b++) {
        rows[2 * b] = b * T + 2 + b;
        labels[2 * b] = ids[rows[2 * b]];
        ids[rows[2 * b]] = 4;
        rows[2 * b + 1] = b * T + 5;
        labels[2 * b + 1] = ids[rows[2 * b + 1]];
    }
}

static double loss_of(kn_model *m, bert_acts *a, float *dlogits) {
    kn_err err = { "" };
    if (bert_forward(m, a, ids, NULL, NULL, B, T, rows, P, NULL, 0, &err) != 0) printf("# forward: %s\n", err.msg);
    return kn_mlm_loss(a->logits, P, V, labels, dlogits, NULL, NULL);
}

static void test_masks_in_the_passes(void) {
    kn_model *m = make();
    kn_err err = { "" };
    bert_acts *a = bert_acts_new(&CFG, B, T, P, &err);
    int L = CFG.layers, C = CFG.hidden, F = CFG.ffn;
    int64_t NC = (int64_t)B * T * C, NF = (int64_t)B * T * F;
    float *mh = malloc(sizeof(float) * 2 * L * NC), *ma = malloc(sizeof(float) * L * NF);
    float *dl = malloc(sizeof(float) * P * V), *g0 = calloc(m->nweights, sizeof(float)), *g1 = calloc(m->nweights, sizeof(float));

    /* masks of ones */
    loss_of(m, a, dl);
    float *logits0 = malloc(sizeof(float) * P * V);
    memcpy(logits0, a->logits, sizeof(float) * P * V);
    bert_backward(m, a, dl, 0, NULL, g0, &err);
    for (int64_t i = 0; i < 2 * L * NC; i++) mh[i] = 1.0f;
    for (int64_t i = 0; i < L * NF; i++) ma[i] = 1.0f;
    a->drop_hidden = mh;
    a->drop_act = ma;
    loss_of(m, a, dl);
    int same = memcmp(logits0, a->logits, sizeof(float) * P * V) == 0;
    bert_backward(m, a, dl, 0, NULL, g1, &err);
    CHECK(same && memcmp(g0, g1, sizeof(float) * m->nweights) == 0,
          "masks of ones: logits and all %lld weight gradients bit-identical to no masks", (long long)m->nweights);

    /* random masks at rate 0.3, and neuron 5 of layer 1 dropped at every position */
    for (int64_t i = 0; i < 2 * L * NC; i++) mh[i] = uniform() < 0.3f ? 0.0f : 1.0f / 0.7f;
    for (int64_t i = 0; i < L * NF; i++) ma[i] = uniform() < 0.3f ? 0.0f : 1.0f / 0.7f;
    for (int r = 0; r < B * T; r++) ma[NF + (int64_t)r * F + 5] = 0.0f;
    double base = loss_of(m, a, dl);
    CHECK(fabs(base - kn_mlm_loss(logits0, P, V, labels, NULL, NULL, NULL)) > 1e-3,
          "random masks change the loss (%.5f vs %.5f without)", base, kn_mlm_loss(logits0, P, V, labels, NULL, NULL, NULL));
    memset(g1, 0, sizeof(float) * m->nweights);
    bert_backward(m, a, dl, 0, NULL, g1, &err);
    const kn_param *w2 = kn_model_param(m, "bert.encoder.layer.1.output.dense.weight");
    double slot = 0;
    for (int c = 0; c < C; c++) slot += fabsf(g1[w2->offset + (int64_t)c * F + 5]);
    CHECK(slot == 0.0, "a neuron dropped everywhere: its value slot's gradient is exactly 0 (sum |g| = %g)", slot);

    const char *probe[] = { "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.output.dense.weight",
                            "bert.encoder.layer.0.attention.output.dense.bias", "bert.encoder.layer.1.intermediate.dense.weight",
                            "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.1.output.dense.bias",
                            "bert.embeddings.word_embeddings.weight" };
    for (int pi = 0; pi < 7; pi++) {
        const kn_param *p = kn_model_param(m, probe[pi]);
        long best = 0;
        for (long j = 0; j < p->numel; j++)
            if (fabsf(g1[p->offset + j]) > fabsf(g1[p->offset + best])) best = j;
        float saved = p->data[best], h = 1e-2f;
        p->data[best] = saved + h;
        double lp = loss_of(m, a, NULL);
        p->data[best] = saved - h;
        double lm = loss_of(m, a, NULL);
        p->data[best] = saved;
        double fd = (lp - lm) / (2 * h), an = g1[p->offset + best];
        CHECK(fabs(an) > 1e-4 && fabs(fd - an) <= 2e-2 * fabs(an) + 1e-4,
              "dropout masks: finite difference d loss / d %s[%ld] %.6f vs analytic %.6f", probe[pi], best, fd, an);
    }
    free(mh); free(ma); free(dl); free(g0); free(g1); free(logits0);
    bert_acts_free(a);
    kn_model_free(m);
}

/* n steps on fresh copies of the model; returns the weights after them (caller frees) */
static float *train(int steps, float hidden, float neuron, uint64_t seed, int set_dropout, kn_trainer **keep) {
    kn_model *m = make();
    kn_err err = { "" };
    kn_trainer *t = kn_trainer_new(m, B, T, P, 0.01f, &err);
    if (set_dropout && kn_trainer_set_dropout(t, hidden, neuron, seed, &err) != 0) printf("# set_dropout: %s\n", err.msg);
    lcg = 999;
    for (int s = 0; s < steps; s++) {
        make_batch();
        if (kn_train_step(t, ids, NULL, NULL, B, T, rows, labels, P, 1e-2f, 1.0f, 0.1f, NULL, &err) != 0)
            printf("# step: %s\n", err.msg);
    }
    float *w = malloc(sizeof(float) * m->nweights);
    for (int i = 0; i < m->nparams; i++) memcpy(w + m->params[i].offset, m->params[i].data, sizeof(float) * m->params[i].numel);
    if (keep) *keep = t;
    else { kn_trainer_free(t); kn_model_free(m); }
    return w;
}

static void test_trainer(void) {
    kn_trainer *t;
    float *wa = train(3, 0.3f, 0.5f, 42, 1, &t);
    kn_model *m = t->model;
    int64_t n = m->nweights;
    int L = CFG.layers, C = CFG.hidden, F = CFG.ffn;
    int64_t used = (int64_t)B * T;
    long zeros_h = 0, zeros_a = 0, other = 0;
    for (int64_t i = 0; i < 2 * L * used * C; i++) {
        float v = t->mask_hidden[i];
        zeros_h += v == 0.0f;
        other += v != 0.0f && v != 1.0f / (1.0f - 0.3f);
    }
    for (int64_t i = 0; i < L * used * F; i++) {
        float v = t->mask_act[i];
        zeros_a += v == 0.0f;
        other += v != 0.0f && v != 2.0f;
    }
    double fh = (double)zeros_h / (2 * L * used * C), fa = (double)zeros_a / (L * used * F);
    CHECK(other == 0, "dropout masks hold only 0 and 1/(1-rate) (%ld other values)", other);
    /* about 4 standard deviations of a binomial share over these 896 and 672 entries */
    CHECK(fabs(fh - 0.3) < 0.06 && fabs(fa - 0.5) < 0.08, "share of dropped entries: hidden %.3f (rate 0.3), neurons %.3f (rate 0.5)", fh, fa);
    CHECK(t->acts->drop_hidden == NULL && t->acts->drop_act == NULL, "the arena holds no masks after a step");
    kn_trainer_free(t);
    kn_model_free(m);

    float *wb = train(3, 0.3f, 0.5f, 42, 1, NULL), *wc = train(3, 0.3f, 0.5f, 43, 1, NULL);
    CHECK(memcmp(wa, wb, sizeof(float) * n) == 0, "the same dropout seed trains bit-identically");
    CHECK(memcmp(wa, wc, sizeof(float) * n) != 0, "another dropout seed trains differently");
    float *w0 = train(3, 0, 0, 42, 1, NULL), *wn = train(3, 0, 0, 0, 0, NULL), *wd = train(3, 0.1f, 0, 42, 1, NULL);
    CHECK(memcmp(w0, wn, sizeof(float) * n) == 0, "dropout rates of 0 train bit-identically to no dropout");
    CHECK(memcmp(w0, wd, sizeof(float) * n) != 0, "a hidden dropout of 0.1 changes the training");
    free(wa); free(wb); free(wc); free(w0); free(wn); free(wd);

    kn_model *m2 = make();
    kn_err err = { "" };
    kn_trainer *t2 = kn_trainer_new(m2, B, T, P, 0.01f, &err);
    int rc = kn_trainer_set_dropout(t2, 1.0f, 0, 1, &err);
    CHECK(rc != 0, "hidden dropout 1.0 is refused");
    CHECK_MSG(err.msg, "hidden dropout", "rate 1.0");
    rc = kn_trainer_set_dropout(t2, 0, -0.1f, 1, &err);
    CHECK(rc != 0, "neuron dropout -0.1 is refused");
    CHECK_MSG(err.msg, "neuron dropout", "rate -0.1");
    rc = kn_trainer_set_dropout(t2, NAN, 0, 1, &err);
    CHECK(rc != 0 && t2->hidden_dropout == 0 && t2->neuron_dropout == 0, "a NaN rate is refused and the trainer keeps no dropout");
    kn_trainer_free(t2);
    kn_model_free(m2);
}

int main(void) {
    lcg = 12345;
    make_batch();
    test_masks_in_the_passes();
    test_trainer();
    return check_done();
}
