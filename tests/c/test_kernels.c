/* test_kernels.c: the backward kernels of core/kernels.h and the objectives of core/objective.h
 * against central finite differences, and the trainer of core/train.h.
 *
 * Each kernel gets small random inputs (fixed seed, our own xorshift RNG) and a random upstream
 * gradient g; the scalar differentiated is S = sum(g * out), computed in double. Every input
 * entry is perturbed by +-h in float and (S+ - S-) / (x+ - x-) is compared with the analytic
 * gradient: |fd - an| <= FD_REL * max|an| + FD_ABS for every entry (the worst entry is printed;
 * the helpers are in fd_check.h; the decoder families' kernels are in test_kernels_families.c).
 * Checked: linear (input, weight, bias), layernorm (input, weight, bias), gelu, attention
 * (dq, dk, dv with a padding mask holding zeros), kn_target_objective (probability and
 * log-probability, with and without row weights) and kn_mlm_loss with ignored labels.
 * Every backward kernel must ACCUMULATE into its outputs (the documented contract): a second
 * call must give twice the first.
 * Trainer: 30 kn_train_step calls on a fixed batch of the `odd` fixture reduce the MLM loss by a
 * clear margin; kn_trainer_save_state / kn_trainer_load_state round-trip exactly (a restored
 * trainer and the one that kept going take bit-identical next steps). Temporary files go to a
 * mkdtemp directory in /tmp, removed at the end. */
#include "bert.h"
#include "check.h"
#include "fd_check.h"
#include "kernels.h"
#include "objective.h"
#include "train.h"

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- linear */

typedef struct { float *out, *inp, *w, *b, *g; int N, IC, OC; } lin_ctx;
static double lin_scalar(void *p) {
    lin_ctx *c = p;
    linear_forward(c->out, c->inp, c->w, c->b, c->N, c->IC, c->OC);
    return dot(c->g, c->out, (long)c->N * c->OC);
}

static void test_linear(void) {
    printf("# linear\n");
    lin_ctx c = { .N = 3, .IC = 5, .OC = 4 };
    long ni = c.N * c.IC, nw = c.OC * c.IC, no = c.N * c.OC;
    c.inp = rand_vec(ni, 1); c.w = rand_vec(nw, 1); c.b = rand_vec(c.OC, 1); c.g = rand_vec(no, 1); c.out = zeros(no);
    float *dinp = zeros(ni), *dw = zeros(nw), *db = zeros(c.OC), *fd = zeros(nw);
    float h = 1e-2f;
    linear_forward(c.out, c.inp, c.w, c.b, c.N, c.IC, c.OC);
    linear_backward_input(dinp, c.g, c.w, c.N, c.IC, c.OC);
    linear_backward_weight(dw, db, c.g, c.inp, c.N, c.IC, c.OC);
    fd_grad(c.inp, ni, h, lin_scalar, &c, fd);
    check_fd("linear d/d inp", fd, dinp, ni, h);
    fd_grad(c.w, nw, h, lin_scalar, &c, fd);
    check_fd("linear d/d w", fd, dw, nw, h);
    fd_grad(c.b, c.OC, h, lin_scalar, &c, fd);
    check_fd("linear d/d b", fd, db, c.OC, h);

    float *once_i = copy(dinp, ni), *once_w = copy(dw, nw), *once_b = copy(db, c.OC);
    linear_backward_input(dinp, c.g, c.w, c.N, c.IC, c.OC);
    linear_backward_weight(dw, db, c.g, c.inp, c.N, c.IC, c.OC);
    check_doubled("linear_backward_input dinp", dinp, once_i, ni);
    check_doubled("linear_backward_weight dw", dw, once_w, nw);
    check_doubled("linear_backward_weight db", db, once_b, c.OC);

    /* db may be NULL: dw alone, same numbers */
    float *dw2 = zeros(nw);
    linear_backward_weight(dw2, NULL, c.g, c.inp, c.N, c.IC, c.OC);
    CHECK(memcmp(dw2, once_w, sizeof(float) * nw) == 0, "linear_backward_weight with db NULL gives the same dw");
    /* b may be NULL: out = inp . w^T */
    float *nob = zeros(no);
    linear_forward(c.out, c.inp, c.w, c.b, c.N, c.IC, c.OC); /* fd_grad left the last b entry at b - h */
    linear_forward(nob, c.inp, c.w, NULL, c.N, c.IC, c.OC);
    double worst = 0;
    for (int n = 0; n < c.N; n++)
        for (int o = 0; o < c.OC; o++) worst = fmax(worst, fabs(nob[n * c.OC + o] + c.b[o] - c.out[n * c.OC + o]));
    CHECK(worst < 1e-5, "linear_forward with b NULL is the same product without bias (max dev %.1e)", worst);
    free(nob); free(dw2); free(once_i); free(once_w); free(once_b);
    free(c.inp); free(c.w); free(c.b); free(c.g); free(c.out); free(dinp); free(dw); free(db); free(fd);
}

/* ---------------------------------------------------------------- layernorm */

typedef struct { float *out, *mean, *rstd, *inp, *w, *b, *g; int N, C; float eps; } ln_ctx;
static double ln_scalar(void *p) {
    ln_ctx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, c->eps);
    return dot(c->g, c->out, (long)c->N * c->C);
}

static void test_layernorm(void) {
    printf("# layernorm\n");
    ln_ctx c = { .N = 3, .C = 8, .eps = 1e-5f };
    long n = (long)c.N * c.C;
    c.inp = rand_vec(n, 2); c.w = rand_vec(c.C, 1); c.b = rand_vec(c.C, 1); c.g = rand_vec(n, 1);
    for (long i = 0; i < n; i++) c.inp[i] += 0.5f * (float)(i / c.C); /* rows with different means */
    c.out = zeros(n); c.mean = zeros(c.N); c.rstd = zeros(c.N);
    float *dinp = zeros(n), *dw = zeros(c.C), *db = zeros(c.C), *fd = zeros(n);
    float h = 3e-3f;
    ln_scalar(&c);
    layernorm_backward_input(dinp, c.g, c.inp, c.mean, c.rstd, c.w, c.N, c.C);
    layernorm_backward_weight(dw, db, c.g, c.inp, c.mean, c.rstd, c.N, c.C);
    float *mean = copy(c.mean, c.N), *rstd = copy(c.rstd, c.N);
    fd_grad(c.inp, n, h, ln_scalar, &c, fd);
    check_fd("layernorm d/d inp", fd, dinp, n, h);
    fd_grad(c.w, c.C, h, ln_scalar, &c, fd);
    check_fd("layernorm d/d w", fd, dw, c.C, h);
    fd_grad(c.b, c.C, h, ln_scalar, &c, fd);
    check_fd("layernorm d/d b", fd, db, c.C, h);

    float *once_i = copy(dinp, n), *once_w = copy(dw, c.C), *once_b = copy(db, c.C);
    layernorm_backward_input(dinp, c.g, c.inp, mean, rstd, c.w, c.N, c.C);
    layernorm_backward_weight(dw, db, c.g, c.inp, mean, rstd, c.N, c.C);
    check_doubled("layernorm_backward_input dinp", dinp, once_i, n);
    check_doubled("layernorm_backward_weight dw", dw, once_w, c.C);
    check_doubled("layernorm_backward_weight db", db, once_b, c.C);
    free(once_i); free(once_w); free(once_b); free(mean); free(rstd);
    free(c.inp); free(c.w); free(c.b); free(c.g); free(c.out); free(c.mean); free(c.rstd);
    free(dinp); free(dw); free(db); free(fd);
}

/* ---------------------------------------------------------------- gelu */

typedef struct { float *out, *inp, *g; long n; } gelu_ctx;
static double gelu_scalar(void *p) {
    gelu_ctx *c = p;
    gelu_forward(c->out, c->inp, c->n);
    return dot(c->g, c->out, c->n);
}

static void test_gelu(void) {
    printf("# gelu\n");
    gelu_ctx c = { .n = 24 };
    c.inp = rand_vec(c.n, 4); c.g = rand_vec(c.n, 1); c.out = zeros(c.n);
    c.inp[0] = 0; c.inp[1] = -6; c.inp[2] = 6; /* the centre and both tails */
    float *dinp = zeros(c.n), *fd = zeros(c.n);
    float h = 1e-2f;
    gelu_backward(dinp, c.g, c.inp, c.n);
    fd_grad(c.inp, c.n, h, gelu_scalar, &c, fd);
    check_fd("gelu d/d inp", fd, dinp, c.n, h);
    gelu_forward(c.out, c.inp, c.n);
    CHECK(c.out[0] == 0 && fabsf(c.out[1]) < 1e-7f && fabsf(c.out[2] - 6) < 1e-6f, "gelu(0) = 0, gelu(-6) ~ 0, gelu(6) ~ 6");
    float *once = copy(dinp, c.n);
    gelu_backward(dinp, c.g, c.inp, c.n);
    check_doubled("gelu_backward dinp", dinp, once, c.n);
    free(once); free(c.inp); free(c.g); free(c.out); free(dinp); free(fd);
}

/* ---------------------------------------------------------------- attention */

typedef struct { float *ctx, *att, *q, *k, *v, *mask, *g; int B, T, C, NH; } att_ctx;
static double att_scalar(void *p) {
    att_ctx *c = p;
    attention_forward(c->ctx, c->att, c->q, c->k, c->v, c->mask, c->B, c->T, c->C, c->NH);
    return dot(c->g, c->ctx, (long)c->B * c->T * c->C);
}

static void test_attention(void) {
    printf("# attention (B=2, T=4, C=6, NH=2; row 1 has its last two keys padded)\n");
    att_ctx c = { .B = 2, .T = 4, .C = 6, .NH = 2 };
    long n = (long)c.B * c.T * c.C, na = (long)c.B * c.NH * c.T * c.T;
    c.q = rand_vec(n, 1); c.k = rand_vec(n, 1); c.v = rand_vec(n, 1); c.g = rand_vec(n, 1);
    c.ctx = zeros(n); c.att = zeros(na);
    float mask[8] = { 1, 1, 1, 1, 1, 1, 0, 0 };
    c.mask = mask;
    float *dq = zeros(n), *dk = zeros(n), *dv = zeros(n), *datt = zeros(na), *fd = zeros(n);
    float h = 1e-2f;
    att_scalar(&c);
    /* padded keys get (almost) no probability */
    double pad = 0;
    for (int hh = 0; hh < c.NH; hh++)
        for (int t = 0; t < c.T; t++)
            for (int s = 2; s < 4; s++) pad = fmax(pad, c.att[((1L * c.NH + hh) * c.T + t) * c.T + s]);
    CHECK(pad < 1e-30, "padded keys get probability %.1e", pad);
    float *att = copy(c.att, na);
    attention_backward(dq, dk, dv, datt, c.g, att, c.q, c.k, c.v, c.B, c.T, c.C, c.NH);
    fd_grad(c.q, n, h, att_scalar, &c, fd);
    check_fd("attention d/d q", fd, dq, n, h);
    fd_grad(c.k, n, h, att_scalar, &c, fd);
    check_fd("attention d/d k", fd, dk, n, h);
    fd_grad(c.v, n, h, att_scalar, &c, fd);
    check_fd("attention d/d v", fd, dv, n, h);
    double padk = 0;
    for (int t = 2; t < 4; t++)
        for (int j = 0; j < c.C; j++) padk = fmax(padk, fabs(dk[(1L * c.T + t) * c.C + j]) + fabs(dv[(1L * c.T + t) * c.C + j]));
    CHECK(padk < 1e-12, "padded keys receive no gradient in dk, dv (max %.1e)", padk);

    float *oq = copy(dq, n), *ok_ = copy(dk, n), *ov = copy(dv, n);
    memset(datt, 0xff, sizeof(float) * na); /* scratch: garbage in must not matter */
    attention_backward(dq, dk, dv, datt, c.g, att, c.q, c.k, c.v, c.B, c.T, c.C, c.NH);
    check_doubled("attention_backward dq", dq, oq, n);
    check_doubled("attention_backward dk", dk, ok_, n);
    check_doubled("attention_backward dv", dv, ov, n);
    free(oq); free(ok_); free(ov); free(att);
    free(c.q); free(c.k); free(c.v); free(c.g); free(c.ctx); free(c.att);
    free(dq); free(dk); free(dv); free(datt); free(fd);
}

/* ---------------------------------------------------------------- objectives */

typedef struct { float *logits; int P, V; int *target; int use_log; float *weight; int *labels; } obj_ctx;
static double target_scalar(void *p) {
    obj_ctx *c = p;
    double val[8], s = 0;
    kn_target_objective(c->logits, c->P, c->V, c->target, c->use_log, c->weight, val, NULL);
    for (int i = 0; i < c->P; i++) s += (c->weight ? c->weight[i] : 1.0) * val[i];
    return s;
}
static double mlm_scalar(void *p) {
    obj_ctx *c = p;
    return kn_mlm_loss(c->logits, c->P, c->V, c->labels, NULL, NULL, NULL);
}

static void test_objectives(void) {
    printf("# objectives (P=3 or 4 rows, V=7)\n");
    int target[3] = { 2, 0, 6 };
    float weight[3] = { 0.5f, -1.0f, 2.0f };
    obj_ctx c = { .P = 3, .V = 7, .target = target };
    long n = 3 * 7;
    c.logits = rand_vec(n, 2);
    float *dl = zeros(n), *fd = zeros(n), *again = zeros(n);
    float h = 1e-2f;
    for (int use_log = 0; use_log < 2; use_log++) {
        for (int w = 0; w < 2; w++) {
            char what[96];
            snprintf(what, sizeof what, "kn_target_objective %s%s", use_log ? "log-prob" : "prob", w ? ", row weights" : "");
            c.use_log = use_log;
            c.weight = w ? weight : NULL;
            kn_target_objective(c.logits, c.P, c.V, c.target, use_log, c.weight, NULL, dl);
            fd_grad(c.logits, n, h, target_scalar, &c, fd);
            check_fd(what, fd, dl, n, h);
        }
    }
    /* the objective's dlogits is written, not accumulated */
    kn_target_objective(c.logits, c.P, c.V, c.target, 1, NULL, NULL, dl);
    kn_target_objective(c.logits, c.P, c.V, c.target, 1, NULL, NULL, again);
    kn_target_objective(c.logits, c.P, c.V, c.target, 1, NULL, NULL, again);
    CHECK(memcmp(dl, again, sizeof(float) * n) == 0, "kn_target_objective overwrites dlogits (two calls = one)");
    double val[3];
    kn_target_objective(c.logits, c.P, c.V, c.target, 0, NULL, val, NULL);
    double lval[3];
    kn_target_objective(c.logits, c.P, c.V, c.target, 1, NULL, lval, NULL);
    CHECK(fabs(log(val[1]) - lval[1]) < 1e-12 && val[1] > 0 && val[1] < 1, "log of the probability is the log-probability");
    free(c.logits); free(dl); free(fd); free(again);

    int labels[4] = { 3, -100, 0, -1 };
    obj_ctx m = { .P = 4, .V = 7, .labels = labels };
    n = 4 * 7;
    m.logits = rand_vec(n, 2);
    m.logits[2 * 7 + 0] = 5; /* row 2 predicts its label */
    dl = zeros(n); fd = zeros(n);
    for (long i = 0; i < n; i++) dl[i] = 123; /* must be overwritten */
    int labelled = -1, correct = -1;
    double loss = kn_mlm_loss(m.logits, m.P, m.V, labels, dl, &labelled, &correct);
    int expect_correct = 0;
    for (int p = 0; p < 4; p++) {
        if (labels[p] < 0) continue;
        int arg = 0;
        for (int i = 1; i < 7; i++) if (m.logits[p * 7 + i] > m.logits[p * 7 + arg]) arg = i;
        expect_correct += arg == labels[p];
    }
    CHECK(labelled == 2 && correct == expect_correct && loss > 0, "kn_mlm_loss: %d labelled rows (2), %d correct (%d), loss %.4f",
          labelled, correct, expect_correct, loss);
    fd_grad(m.logits, n, h, mlm_scalar, &m, fd);
    check_fd("kn_mlm_loss (labels 3, -100, 0, -1)", fd, dl, n, h);
    double ignored = 0;
    for (int i = 0; i < 7; i++) ignored += fabs(dl[7 + i]) + fabs(dl[21 + i]);
    CHECK(ignored == 0, "rows with ignored labels get exactly zero gradient");
    int none[2] = { -100, -100 };
    CHECK(kn_mlm_loss(m.logits, 2, 7, none, dl, &labelled, NULL) == 0 && labelled == 0, "no labelled row: loss 0");
    free(m.logits); free(dl); free(fd);
}

/* ---------------------------------------------------------------- trainer */

/* The `odd` fixture's inputs (tests/fixtures/ref/odd/inputs.json): 2 rows of 9 tokens, the
 * second padded after 6, and its 5 MLM labels. */
enum { TB = 2, TT = 9, TP = 5 };
static const int t_ids[TB * TT] = { 2, 17, 43, 4, 88, 9, 61, 30, 3, 2, 55, 12, 70, 4, 3, 0, 0, 0 };
static const int t_types[TB * TT] = { 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
static const int t_attn[TB * TT] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };
static const int t_rows[TP] = { 2, 3, 6, 10, 13 };
static const int t_labels[TP] = { 43, 9, 61, 55, 15 };
#define LR 1e-3f

static int step(kn_trainer *t, kn_step_stats *st) {
    kn_err err = { "" };
    int rc = kn_train_step(t, t_ids, t_types, t_attn, TB, TT, t_rows, t_labels, TP, LR, 1.0f, 0.0f, st, &err);
    if (rc) printf("# train step failed: %s\n", err.msg);
    return rc;
}

static int same_weights(const kn_model *a, const kn_model *b) {
    for (int i = 0; i < a->nparams; i++)
        if (memcmp(a->params[i].data, b->params[i].data, sizeof(float) * a->params[i].numel) != 0) return 0;
    return a->nparams == b->nparams;
}

static void test_train_loss(void) {
    printf("# kn_train_step: 30 steps on a fixed batch of the odd fixture\n");
    kn_err err = { "" };
    kn_model *m = kn_model_load("tests/fixtures/ref/odd", &err);
    kn_trainer *t = m ? kn_trainer_new(m, TB, TT, TP, 0.01f, &err) : NULL;
    CHECK(t != NULL, "trainer for the odd fixture (%s)", t ? "ok" : err.msg);
    if (!t) { kn_model_free(m); return; }
    kn_step_stats st = { 0 };
    double first = 0, last = 0;
    int fails = 0;
    for (int s = 0; s < 30; s++) {
        fails += step(t, &st) != 0;
        if (s == 0) first = st.loss;
        last = st.loss;
    }
    CHECK(fails == 0 && t->step == 30 && st.labelled == TP && isfinite(st.grad_norm), "30 steps taken (%d failed), %d labelled rows",
          fails, st.labelled);
    CHECK(last < 0.6 * first, "MLM loss falls by a clear margin: %.4f -> %.4f (needs < 60%% of the first)", first, last);

    int bad_label[TP] = { 43, 9, 97, 55, 15 };
    int rc = kn_train_step(t, t_ids, t_types, t_attn, TB, TT, t_rows, bad_label, TP, LR, 1.0f, 0.0f, &st, &err);
    CHECK(rc != 0 && strstr(err.msg, "label 97"), "a label out of range is refused (%s)", rc ? err.msg : "accepted");
    rc = kn_train_step(t, t_ids, t_types, t_attn, TB, TT, t_rows, t_labels, 0, LR, 1.0f, 0.0f, &st, &err);
    CHECK(rc != 0 && strstr(err.msg, "no labelled rows"), "an empty batch is refused (%s)", rc ? err.msg : "accepted");
    CHECK(t->step == 30, "refused steps do not count (step %lld)", (long long)t->step);
    kn_trainer_free(t);
    kn_model_free(m);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void test_train_state(void) {
    printf("# kn_trainer_save_state / kn_trainer_load_state\n");
    char tmp[64], state[128], mdir[128];
    snprintf(tmp, sizeof tmp, "/tmp/knwb-kernels-XXXXXX");
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return; }
    snprintf(state, sizeof state, "%s/adamw.safetensors", tmp);
    snprintf(mdir, sizeof mdir, "%s/model", tmp);
    kn_err err = { "" };
    kn_model *m1 = kn_model_load("tests/fixtures/ref/odd", &err);
    kn_trainer *t1 = m1 ? kn_trainer_new(m1, TB, TT, TP, 0.01f, &err) : NULL;
    kn_model *m2 = NULL, *m3 = NULL, *g = NULL;
    kn_trainer *t2 = NULL, *t3 = NULL, *tg = NULL;
    if (!t1) { CHECK(0, "trainer (%s)", err.msg); goto out; }
    kn_step_stats s1, s2, s3;
    for (int s = 0; s < 5; s++) step(t1, &s1);
    int rc = kn_trainer_save_state(t1, state, &err);
    CHECK(rc == 0, "state saved after 5 steps (%s)", rc ? err.msg : "ok");
    rc = kn_model_save(m1, mdir, &err);
    CHECK(rc == 0, "weights saved after 5 steps (%s)", rc ? err.msg : "ok");

    /* t2: the saved weights and the saved optimizer state; t3: the saved weights, fresh state */
    m2 = kn_model_load(mdir, &err);
    m3 = kn_model_load(mdir, &err);
    t2 = m2 ? kn_trainer_new(m2, TB, TT, TP, 0.01f, &err) : NULL;
    t3 = m3 ? kn_trainer_new(m3, TB, TT, TP, 0.01f, &err) : NULL;
    if (!t2 || !t3) { CHECK(0, "reloaded trainers (%s)", err.msg); goto out; }
    rc = kn_trainer_load_state(t2, state, &err);
    CHECK(rc == 0, "state loads (%s)", rc ? err.msg : "ok");
    size_t nb = sizeof(float) * m1->nweights;
    CHECK(t2->step == 5 && memcmp(t2->m, t1->m, nb) == 0 && memcmp(t2->v, t1->v, nb) == 0,
          "restored state: step %lld (5), first and second moments bit-identical", (long long)t2->step);
    CHECK(same_weights(m1, m2), "reloaded weights bit-identical before the next step");

    step(t1, &s1);
    step(t2, &s2);
    step(t3, &s3);
    CHECK(same_weights(m1, m2), "after one more identical step, the restored trainer's weights are bit-identical");
    CHECK(s1.loss == s2.loss && t1->step == t2->step && memcmp(t2->m, t1->m, nb) == 0 && memcmp(t2->v, t1->v, nb) == 0,
          "and so are the loss (%.6f), the step count and both moments", s2.loss);
    CHECK(!same_weights(m1, m3), "control: a fresh optimizer state on the same weights steps differently");

    /* a state made for another model shape is refused */
    g = kn_model_load("tests/fixtures/ref/gamma", &err);
    tg = g ? kn_trainer_new(g, TB, TT, TP, 0.01f, &err) : NULL;
    if (tg) {
        rc = kn_trainer_load_state(tg, state, &err);
        CHECK(rc != 0, "the odd state is refused by a gamma trainer");
        if (rc) CHECK_MSG(err.msg, "weights, the model has", "state for another shape");
        CHECK(tg->step == 0, "the refused load leaves the step count at 0");
    }
out:
    kn_trainer_free(t1); kn_trainer_free(t2); kn_trainer_free(t3); kn_trainer_free(tg);
    kn_model_free(m1); kn_model_free(m2); kn_model_free(m3); kn_model_free(g);
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    struct stat sb;
    CHECK(stat(tmp, &sb) != 0, "temporary directory removed");
}

int main(void) {
    test_linear();
    test_layernorm();
    test_gelu();
    test_attention();
    test_objectives();
    test_train_loss();
    test_train_state();
    return check_done();
}
