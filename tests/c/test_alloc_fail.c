/* test_alloc_fail.c: every allocation in core/ may fail, and each failure is a clean error.
 * For a load, a forward, an attribution (with and without a workspace), an edit, a slot
 * projection, a tokenization and a training step, the operation is first run once to count its
 * allocations (kn_alloc_count); then, for every n up to that count, it is run with the n-th
 * allocation failing (kn_alloc_fail_after(n)) and must return its error with a message saying
 * "out of memory", leave its inputs as they were (an edit leaves the weights and the journal
 * unchanged), and leak nothing: the ASan build (build/asan/tests/) checks the leaks at exit.
 * After each failure the same operation runs again without injection and must succeed, so a
 * failure leaves no state behind. */
#include "check.h"
#include "alloc.h"
#include "bert.h"
#include "edit.h"
#include "ig.h"
#include "train.h"
#include "wordpiece.h"

#include <stdlib.h>
#include <string.h>

#define MODEL_DIR "tests/fixtures/ref/odd"

static const int ids[] = { 2, 17, 43, 4, 88, 9, 61, 30, 3 };
enum { T = 9, MASK_POS = 3, TARGET = 9 };

/* Runs op(ctx, err) with the n-th allocation failing for n = 1..count (count from a clean run)
 * and checks each run's result; op returns 0 on success. `after` (may be NULL) checks that the
 * failed run left everything as it was. */
typedef int (*op_fn)(void *ctx, kn_err *err);
static void every_failure(const char *what, op_fn op, void *ctx, int (*after)(void *ctx)) {
    kn_err err = { "" };
    kn_alloc_fail_after(0);
    int rc = op(ctx, &err);
    long count = kn_alloc_count();
    CHECK(rc == 0, "%s: runs without injected failures (%ld allocations): %s", what, count, rc ? err.msg : "ok");
    if (rc != 0) return;
    int bad_rc = 0, bad_msg = 0, bad_after = 0, bad_again = 0;
    long first = 0;
    for (long n = 1; n <= count; n++) {
        kn_err e = { "" };
        kn_alloc_fail_after(n);
        int r = op(ctx, &e);
        kn_alloc_fail_after(0);
        int fail = 0;
        if (r == 0) bad_rc++, fail = 1;
        else if (!strstr(e.msg, "out of memory")) bad_msg++, fail = 1;
        if (after && !after(ctx)) bad_after++, fail = 1;
        kn_err e2 = { "" };
        if (op(ctx, &e2) != 0) bad_again++, fail = 1;
        if (fail && !first) {
            first = n;
            printf("     %s: allocation %ld failing: rc %d, message \"%s\"\n", what, n, r, e.msg);
        }
    }
    CHECK(bad_rc == 0, "%s: fails when any of its %ld allocations fails (%d runs succeeded anyway; first n = %ld)", what, count, bad_rc, first);
    CHECK(bad_msg == 0, "%s: every such failure says \"out of memory\" (%d did not)", what, bad_msg);
    if (after) CHECK(bad_after == 0, "%s: a failed run leaves its inputs unchanged (%d did not)", what, bad_after);
    CHECK(bad_again == 0, "%s: runs cleanly again after each failure (%d did not)", what, bad_again);
}

/* ---- the operations ---- */

static int op_load(void *ctx, kn_err *err) {
    (void)ctx;
    kn_model *m = kn_model_load(MODEL_DIR, err);
    if (!m) return -1;
    kn_model_free(m);
    return 0;
}

static int op_forward(void *ctx, kn_err *err) {
    const kn_model *m = ctx;
    bert_acts *a = bert_acts_new(&m->cfg, 1, T, 1, err);
    if (!a) return -1;
    int row = MASK_POS;
    int rc = bert_forward(m, a, ids, NULL, NULL, 1, T, &row, 1, NULL, 0, err);
    bert_acts_free(a);
    return rc;
}

typedef struct { const kn_model *m; kn_ig_ws *ws; int batch; kn_ig_out out; } ig_ctx;
static int op_ig(void *ctx, kn_err *err) {
    ig_ctx *c = ctx;
    int layers[] = { 0, 2 };
    kn_ig_opts o = { 6, KN_QUAD_MIDPOINT, c->batch, 0, c->ws };
    return kn_ig(c->m, ids, NULL, T, MASK_POS, TARGET, layers, 2, &o, &c->out, err);
}

static int op_ig_ws(void *ctx, kn_err *err) {
    /* a new workspace each time, so its buffers are allocated inside the counted run */
    ig_ctx *c = ctx;
    kn_ig_ws *ws = kn_ig_ws_new();
    if (!ws) return kn_fail(err, "out of memory for a workspace");
    c->ws = ws;
    int rc = op_ig(ctx, err);
    c->ws = NULL;
    kn_ig_ws_free(ws);
    return rc;
}

typedef struct { kn_model *m; float *before; size_t n; int nedits; } edit_ctx;
static int count_edits(const kn_model *m) {
    int n = 0;
    for (kn_edit *e = kn_edits(m); e; e = e->next) n++;
    return n;
}
static int op_edit(void *ctx, kn_err *err) {
    edit_ctx *c = ctx;
    int C = c->m->cfg.hidden;
    int layers[] = { 1, 2 }, slots[] = { 7, 30 };
    float *cols = malloc(sizeof(float) * 2 * C);
    for (int i = 0; i < 2 * C; i++) cols[i] = 0.01f * (float)(i % 13) - 0.05f;
    kn_edit *e = kn_edit_slots(c->m, 2, layers, slots, cols, "alloc test", err);
    free(cols);
    if (!e) return -1;
    /* undo it, so the next run starts from the original weights (the journal keeps the entry) */
    int rc = kn_edit_undo(c->m, e, err);
    c->nedits = count_edits(c->m);
    return rc;
}
static int edit_unchanged(void *ctx) {
    edit_ctx *c = ctx;
    const kn_model *m = c->m;
    size_t off = 0;
    for (int l = 0; l < m->cfg.layers; l++) {
        size_t k = (size_t)m->cfg.hidden * m->cfg.ffn;
        if (memcmp(c->before + off, m->w.layer[l].ffn_out_w, k * sizeof(float)) != 0) return 0;
        off += k;
    }
    return count_edits(m) == c->nedits;
}

static int op_project(void *ctx, kn_err *err) {
    const kn_model *m = ctx;
    float *scores = malloc(sizeof(float) * m->cfg.vocab_size);
    int rc = kn_slot_project(m, 1, 3, scores, err);
    free(scores);
    return rc;
}

static int op_tokenize(void *ctx, kn_err *err) {
    const kn_model *m = ctx;
    int out[64];
    return kn_tokenize(m->vocab, "w1 w2 w17 [MASK] w88 w9 , w61 !", out, 64, err) < 0 ? -1 : 0;
}

static int op_train(void *ctx, kn_err *err) {
    kn_model *m = ctx;
    kn_trainer *t = kn_trainer_new(m, 1, T, 2, 0.01f, err);
    if (!t) return -1;
    int rc = kn_trainer_set_dropout(t, 0.1f, 0.1f, 7, err);
    int rows[] = { 2, 5 }, labels[] = { 43, 9 };
    kn_step_stats st;
    /* lr 0: the step runs every kernel but leaves the weights as they were */
    if (rc == 0) rc = kn_train_step(t, ids, NULL, NULL, 1, T, rows, labels, 2, 0.0f, 1.0f, 0.0f, &st, err);
    kn_trainer_free(t);
    return rc;
}

int main(void) {
    kn_err err = { "" };
    every_failure("kn_model_load", op_load, NULL, NULL);
    kn_model *m = kn_model_load(MODEL_DIR, &err);
    CHECK(m != NULL, "the test model loads: %s", m ? MODEL_DIR : err.msg);
    if (!m) return check_done();

    every_failure("bert_acts_new + bert_forward", op_forward, m, NULL);
    every_failure("kn_tokenize", op_tokenize, m, NULL);
    every_failure("kn_slot_project", op_project, m, NULL);

    int L = 2, F = m->cfg.ffn;
    ig_ctx ic = { m, NULL, 0, { 0 } };
    ic.out.scores = malloc(sizeof(float) * L * F);
    ic.out.acts = malloc(sizeof(float) * L * F);
    ic.out.p_zero = malloc(sizeof(double) * L);
    ic.out.score_sum = malloc(sizeof(double) * L);
    every_failure("kn_ig (no workspace)", op_ig, &ic, NULL);
    ic.batch = 4;
    every_failure("kn_ig (new workspace, chunks of 4)", op_ig_ws, &ic, NULL);
    free(ic.out.scores); free(ic.out.acts); free(ic.out.p_zero); free(ic.out.score_sum);

    edit_ctx ec = { m, NULL, 0, 0 };
    ec.n = (size_t)m->cfg.layers * m->cfg.hidden * m->cfg.ffn;
    ec.before = malloc(sizeof(float) * ec.n);
    for (int l = 0; l < m->cfg.layers; l++)
        memcpy(ec.before + (size_t)l * m->cfg.hidden * m->cfg.ffn, m->w.layer[l].ffn_out_w,
               sizeof(float) * m->cfg.hidden * m->cfg.ffn);
    every_failure("kn_edit_slots + undo", op_edit, &ec, edit_unchanged);
    CHECK(edit_unchanged(&ec), "the weights are the original ones after all the edit runs");
    free(ec.before);

    every_failure("kn_trainer_new + dropout + kn_train_step", op_train, m, NULL);
    kn_model_free(m);

    /* checked sizes: a product that does not fit is refused before any allocation */
    kn_alloc_fail_after(0);
    CHECK(kn_calloc((size_t)1 << 62, 8) == NULL && kn_alloc_count() == 0, "kn_calloc refuses 2^62 x 8 bytes without allocating");
    return check_done();
}
