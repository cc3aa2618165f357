/* test_edit.c: value-slot edits (core/edit.h) on the `odd` fixture.
 * - An edit followed by its undo leaves EVERY weight bit-identical (all parameters snapshotted
 *   with memcpy before) and the logits bit-identical; kn_slot_get reads back what was written.
 * - Two edits A and B on overlapping slots, undone A-then-B and (fresh model) B-then-A, both
 *   restore the original bit for bit; in between, the slots still edited hold the right columns.
 * - Undoing twice is an error naming the edit. Zero neurons, an out-of-range layer or neuron, a
 *   slot named twice and a NaN/Inf value are refused with a message and leave the model (and
 *   its edit list) unchanged, even when the bad slot comes after good ones.
 * - The definition of a neuron: zeroing value slot i of layer l gives the same logits as the
 *   intervention KN_SET 0 on neuron i at every position of layer l (bit-exact, else <= 1e-6).
 * - A saved edited model reloads with the edit in place.
 * The saved folder lives under a mkdtemp directory in /tmp, removed at the end. */
#include "bert.h"
#include "check.h"
#include "edit.h"

#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define ODD "tests/fixtures/ref/odd"
enum { B = 2, T = 9 };

static kn_model *load_odd(void) {
    kn_err err = { "" };
    kn_model *m = kn_model_load(ODD, &err);
    if (!m) printf("# cannot load %s: %s\n", ODD, err.msg);
    return m;
}

/* All weights, laid out by kn_param.offset. */
static float *snapshot(const kn_model *m) {
    float *s = malloc(sizeof(float) * m->nweights);
    for (int i = 0; i < m->nparams; i++)
        memcpy(s + m->params[i].offset, m->params[i].data, sizeof(float) * m->params[i].numel);
    return s;
}

/* Number of parameter tensors that differ from the snapshot in any bit. */
static int tensors_changed(const kn_model *m, const float *snap) {
    int changed = 0;
    for (int i = 0; i < m->nparams; i++)
        changed += memcmp(snap + m->params[i].offset, m->params[i].data, sizeof(float) * m->params[i].numel) != 0;
    return changed;
}

/* Logits [B*T, V] of a fixed batch (second row padded after 6 tokens), malloc'd. */
static float *logits_of(const kn_model *m, const kn_intervention *iv, int niv) {
    int V = m->cfg.vocab_size, ids[B * T], types[B * T], attn[B * T], rows[B * T];
    for (int i = 0; i < B * T; i++) {
        int t = i % T;
        ids[i] = t == 0 ? 2 : t == 3 ? 4 : 5 + (i * 7) % (V - 5);
        types[i] = i < T && t >= 5;
        attn[i] = i < T || t < 6;
        rows[i] = i;
    }
    kn_err err = { "" };
    bert_acts *a = bert_acts_new(&m->cfg, B, T, B * T, &err);
    float *out = calloc((size_t)B * T * V, sizeof(float));
    if (!a || bert_forward(m, a, ids, types, attn, B, T, rows, B * T, iv, niv, &err) != 0)
        printf("# forward failed: %s\n", err.msg);
    else
        memcpy(out, a->logits, sizeof(float) * B * T * V);
    bert_acts_free(a);
    return out;
}

static int same_floats(const float *a, const float *b, long n) { return memcmp(a, b, sizeof(float) * n) == 0; }

/* n columns of C floats from a small LCG, distinct per seed. */
static float *random_cols(int n, int C, unsigned seed) {
    float *c = malloc(sizeof(float) * n * C);
    uint32_t s = seed * 2654435761u + 1;
    for (int i = 0; i < n * C; i++) {
        s = s * 1664525u + 1013904223u;
        c[i] = ((s >> 8) / 16777216.0f - 0.5f) * 0.5f;
    }
    return c;
}

static int count_edits(const kn_model *m) {
    int n = 0;
    for (kn_edit *e = kn_edits(m); e; e = e->next) n++;
    return n;
}

/* 1 if value slot (l, i) holds exactly col. */
static int slot_is(const kn_model *m, int l, int i, const float *col) {
    float got[256];
    kn_err err = { "" };
    return kn_slot_get(m, l, i, got, &err) == 0 && same_floats(got, col, m->cfg.hidden);
}

/* ---------------------------------------------------------------- edit + undo */

static void test_edit_undo(void) {
    printf("# edit then undo\n");
    kn_model *m = load_odd();
    if (!m) return;
    int C = m->cfg.hidden, V = m->cfg.vocab_size;
    float *snap = snapshot(m), *base = logits_of(m, NULL, 0);
    int layers[3] = { 0, 1, 2 }, slots[3] = { 4, 17, 49 };
    float *cols = random_cols(3, C, 1);
    kn_err err = { "" };
    uint64_t gen = m->generation;
    kn_edit *e = kn_edit_slots(m, 3, layers, slots, cols, "test edit", &err);
    CHECK(e != NULL, "edit of 3 slots (%s)", e ? "ok" : err.msg);
    if (!e) goto out;
    CHECK(e->id == 1 && e->n == 3 && e->active && kn_edits(m) == e && strcmp(e->label, "test edit") == 0,
          "the edit is listed: id %d, %d slots, active %d, label \"%s\"", e->id, e->n, e->active, e->label);
    CHECK(m->generation > gen, "the edit bumps the model generation (%llu -> %llu)", (unsigned long long)gen,
          (unsigned long long)m->generation);
    int got = 0;
    for (int j = 0; j < 3; j++) got += slot_is(m, layers[j], slots[j], cols + j * C);
    CHECK(got == 3, "kn_slot_get returns the written column for %d of 3 slots", got);
    int changed = tensors_changed(m, snap);
    CHECK(changed == 3, "exactly the 3 output.dense.weight tensors changed (%d)", changed);
    float *edited = logits_of(m, NULL, 0);
    CHECK(!same_floats(edited, base, (long)B * T * V), "the edit changes the logits");

    gen = m->generation;
    int rc = kn_edit_undo(m, e, &err);
    CHECK(rc == 0 && !e->active, "undo (%s)", rc ? err.msg : "ok");
    CHECK(m->generation > gen, "the undo bumps the model generation");
    changed = tensors_changed(m, snap);
    CHECK(changed == 0, "after undo every weight is bit-identical (%d tensors differ)", changed);
    float *after = logits_of(m, NULL, 0);
    CHECK(same_floats(after, base, (long)B * T * V), "after undo the logits are bit-identical");

    rc = kn_edit_undo(m, e, &err);
    CHECK(rc != 0, "undoing the same edit twice is refused");
    if (rc) {
        CHECK_MSG(err.msg, "edit 1", "second undo");
        CHECK_MSG(err.msg, "test edit", "second undo");
        CHECK_MSG(err.msg, "already undone", "second undo");
    }
    CHECK(tensors_changed(m, snap) == 0, "the refused second undo leaves every weight unchanged");
    free(edited);
    free(after);
out:
    free(cols);
    free(snap);
    free(base);
    kn_model_free(m);
}

/* ---------------------------------------------------------------- overlapping edits */

/* A edits (1,5) (1,6) (2,3); B edits (1,6) (2,3) (0,9): two slots in common. */
static const int A_layer[3] = { 1, 1, 2 }, A_slot[3] = { 5, 6, 3 };
static const int B_layer[3] = { 1, 2, 0 }, B_slot[3] = { 6, 3, 9 };

static void overlapping(int a_first) {
    const char *order = a_first ? "A then B" : "B then A";
    kn_model *m = load_odd();
    if (!m) return;
    int C = m->cfg.hidden, V = m->cfg.vocab_size;
    float *snap = snapshot(m), *base = logits_of(m, NULL, 0);
    float *ca = random_cols(3, C, 2), *cb = random_cols(3, C, 3);
    float orig15[256];
    kn_err err = { "" };
    kn_slot_get(m, 1, 5, orig15, &err);
    kn_edit *a = kn_edit_slots(m, 3, A_layer, A_slot, ca, "A", &err);
    kn_edit *b = a ? kn_edit_slots(m, 3, B_layer, B_slot, cb, "B", &err) : NULL;
    CHECK(a && b && a->id == 1 && b->id == 2, "%s: edits A and B applied (%s)", order, b ? "ok" : err.msg);
    if (!a || !b) goto out;
    CHECK(slot_is(m, 1, 5, ca) && slot_is(m, 1, 6, cb) && slot_is(m, 2, 3, cb + C) && slot_is(m, 0, 9, cb + 2 * C),
          "%s: the shared slots hold B's columns, (1,5) holds A's", order);

    int rc1 = kn_edit_undo(m, a_first ? a : b, &err);
    if (a_first)
        CHECK(rc1 == 0 && slot_is(m, 1, 5, orig15) && slot_is(m, 1, 6, cb) && slot_is(m, 2, 3, cb + C) && slot_is(m, 0, 9, cb + 2 * C),
              "%s: after undoing A, (1,5) is original and B's three slots keep B's columns", order);
    else
        CHECK(rc1 == 0 && slot_is(m, 1, 5, ca) && slot_is(m, 1, 6, ca + C) && slot_is(m, 2, 3, ca + 2 * C),
              "%s: after undoing B, A's three slots hold A's columns again", order);

    int rc2 = kn_edit_undo(m, a_first ? b : a, &err);
    CHECK(rc1 == 0 && rc2 == 0, "%s: both undos succeed (%s)", order, rc2 ? err.msg : "ok");
    int changed = tensors_changed(m, snap);
    CHECK(changed == 0, "%s: every weight is bit-identical to the original (%d tensors differ)", order, changed);
    float *after = logits_of(m, NULL, 0);
    CHECK(same_floats(after, base, (long)B * T * V), "%s: logits bit-identical to the original", order);
    free(after);
out:
    free(ca);
    free(cb);
    free(snap);
    free(base);
    kn_model_free(m);
}

/* Four edits over a pool of 6 slots (each edit names 3, every slot shared by two edits), undone
 * in all 24 orders on one model. After every undo each pool slot must hold the column of the
 * latest still-active edit naming it, or its original column when none is left. */
static void all_undo_orders(void) {
    enum { NE = 4, NS = 3, POOL = 6 };
    static const int pool_l[POOL] = { 1, 1, 1, 2, 2, 0 }, pool_i[POOL] = { 0, 1, 2, 0, 1, 7 };
    static const int pick[NE][NS] = { { 0, 1, 3 }, { 1, 2, 4 }, { 2, 3, 5 }, { 0, 4, 5 } };
    kn_model *m = load_odd();
    if (!m) return;
    int C = m->cfg.hidden;
    float *snap = snapshot(m), *orig = malloc(sizeof(float) * POOL * C), *cols[NE];
    kn_err err = { "" };
    for (int s = 0; s < POOL; s++) kn_slot_get(m, pool_l[s], pool_i[s], orig + s * C, &err);
    for (int e = 0; e < NE; e++) cols[e] = random_cols(NS, C, 10 + e);
    int orders = 0, wrong_states = 0, failed_undos = 0, not_restored = 0;
    int perm[NE] = { 0, 1, 2, 3 };
    for (int k = 0; k < 24; k++) {
        /* the k-th permutation of 0..3 (factorial number system) */
        int avail[NE] = { 0, 1, 2, 3 }, n = NE, r = k;
        for (int j = 0; j < NE; j++) {
            int f = 1;
            for (int q = 2; q < NE - j; q++) f *= q;
            int idx = r / f;
            r %= f;
            perm[j] = avail[idx];
            for (int q = idx; q < n - 1; q++) avail[q] = avail[q + 1];
            n--;
        }
        kn_edit *ed[NE];
        int active[NE];
        for (int e = 0; e < NE; e++) {
            int ls[NS], is[NS];
            for (int j = 0; j < NS; j++) { ls[j] = pool_l[pick[e][j]]; is[j] = pool_i[pick[e][j]]; }
            ed[e] = kn_edit_slots(m, NS, ls, is, cols[e], "perm", &err);
            active[e] = ed[e] != NULL;
        }
        for (int j = 0; j < NE; j++) {
            int e = perm[j];
            if (!ed[e] || kn_edit_undo(m, ed[e], &err) != 0) { failed_undos++; continue; }
            active[e] = 0;
            for (int s = 0; s < POOL; s++) {
                const float *want = orig + s * C;
                for (int f = 0; f < NE; f++)
                    for (int q = 0; q < NS; q++)
                        if (active[f] && pick[f][q] == s) want = cols[f] + q * C;
                wrong_states += !slot_is(m, pool_l[s], pool_i[s], want);
            }
        }
        not_restored += tensors_changed(m, snap) != 0;
        orders++;
    }
    CHECK(orders == 24 && failed_undos == 0 && wrong_states == 0,
          "4 overlapping edits undone in all %d orders: %d wrong slot states over %d checks, %d failed undos", orders,
          wrong_states, orders * NE * POOL, failed_undos);
    CHECK(not_restored == 0, "all 24 orders restore every weight bit for bit (%d did not)", not_restored);
    for (int e = 0; e < NE; e++) free(cols[e]);
    free(orig);
    free(snap);
    kn_model_free(m);
}

/* ---------------------------------------------------------------- refused edits */

static void refused(kn_model *m, const float *snap, const char *what, int n, const int *layers, const int *slots,
                    const float *cols, const char *needle) {
    kn_err err = { "" };
    int before = count_edits(m), ids = m->edit_count;
    kn_edit *e = kn_edit_slots(m, n, layers, slots, cols, what, &err);
    CHECK(e == NULL, "%s: refused", what);
    if (!e) CHECK_MSG(err.msg, needle, what);
    CHECK(tensors_changed(m, snap) == 0 && count_edits(m) == before && m->edit_count == ids,
          "%s: every weight unchanged and no edit recorded", what);
}

static void test_refused(void) {
    printf("# refused edits\n");
    kn_model *m = load_odd();
    if (!m) return;
    int C = m->cfg.hidden, L = m->cfg.layers, F = m->cfg.ffn;
    float *snap = snapshot(m), *cols = random_cols(3, C, 4);
    int l3[3] = { 0, 1, 2 }, s3[3] = { 1, 2, 3 };
    refused(m, snap, "edit of zero neurons", 0, l3, s3, cols, "at least one");
    int bad_l[3] = { 0, 1, L }, bad_l2[1] = { -1 };
    refused(m, snap, "third slot's layer = L", 3, bad_l, s3, cols, "out of range");
    refused(m, snap, "layer -1", 1, bad_l2, s3, cols, "layer -1");
    int bad_s[3] = { 1, 2, F }, bad_s2[2] = { 0, -3 };
    char want[64];
    snprintf(want, sizeof want, "neuron %d out of range [0, %d)", F, F);
    refused(m, snap, "third slot's neuron = F", 3, l3, bad_s, cols, want);
    refused(m, snap, "neuron -3", 2, l3, bad_s2, cols, "neuron -3");
    int dup_l[3] = { 1, 0, 1 }, dup_s[3] = { 7, 7, 7 };
    refused(m, snap, "slot (1, 7) named twice", 3, dup_l, dup_s, cols, "(1, 7) twice");
    float *nan_cols = random_cols(3, C, 5);
    nan_cols[2 * C + 5] = NAN;
    refused(m, snap, "NaN in the third column", 3, l3, s3, nan_cols, "not finite");
    nan_cols[2 * C + 5] = 0;
    nan_cols[C] = -INFINITY;
    refused(m, snap, "-Inf in the second column", 3, l3, s3, nan_cols, "not finite");

    float col[256];
    kn_err err = { "" };
    CHECK(kn_slot_get(m, L, 0, col, &err) != 0 && strstr(err.msg, "layer"), "kn_slot_get refuses layer %d (%s)", L, err.msg);
    CHECK(kn_slot_get(m, 0, F, col, &err) != 0 && strstr(err.msg, "neuron"), "kn_slot_get refuses neuron %d (%s)", F, err.msg);

    /* a valid edit still works afterwards and gets id 1 (refusals consume no ids) */
    kn_edit *e = kn_edit_slots(m, 3, l3, s3, cols, "after refusals", &err);
    CHECK(e && e->id == 1 && count_edits(m) == 1, "a valid edit after the refusals gets id 1 (%s)", e ? "ok" : err.msg);
    free(nan_cols);
    free(cols);
    free(snap);
    kn_model_free(m);
}

/* ---------------------------------------------------------------- zero slot == KN_SET 0 */

static void test_zero_is_intervention(void) {
    printf("# zeroing value slot i == intervention KN_SET 0 on neuron i at every position\n");
    kn_model *m = load_odd();
    if (!m) return;
    int C = m->cfg.hidden, V = m->cfg.vocab_size, F = m->cfg.ffn;
    float *zero = calloc(C, sizeof(float)), *snap = snapshot(m);
    for (int l = 0; l < m->cfg.layers; l++) {
        for (int k = 0; k < 2; k++) {
            int i = (l * 19 + k * 31 + 3) % F;
            kn_intervention iv = { .layer = l, .row = -1, .pos = -1, .op = KN_SET, .n = 1, .idx = &i, .scalar = 0 };
            float *by_iv = logits_of(m, &iv, 1);
            kn_err err = { "" };
            kn_edit *e = kn_edit_slots(m, 1, &l, &i, zero, "zero", &err);
            float *by_edit = logits_of(m, NULL, 0);
            double rel = check_rel_err(by_edit, by_iv, (long)B * T * V, 1e-6);
            int exact = same_floats(by_edit, by_iv, (long)B * T * V);
            CHECK(e && (exact || rel <= 1e-6), "layer %d neuron %d: zeroed slot vs KN_SET 0: %s (max rel err %.2e)", l, i,
                  exact ? "bit-identical" : "not bit-identical", rel);
            if (e) kn_edit_undo(m, e, &err);
            free(by_iv);
            free(by_edit);
        }
    }
    CHECK(tensors_changed(m, snap) == 0, "all zeroing edits undone: weights bit-identical");
    free(zero);
    free(snap);
    kn_model_free(m);
}

/* ---------------------------------------------------------------- save an edited model */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void test_save_edited(void) {
    printf("# a saved edited model reloads with the edit\n");
    char tmp[64], dir[128];
    snprintf(tmp, sizeof tmp, "/tmp/knwb-edit-XXXXXX");
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return; }
    snprintf(dir, sizeof dir, "%s/edited", tmp);
    kn_model *m = load_odd();
    if (!m) { rmdir(tmp); return; }
    int C = m->cfg.hidden, V = m->cfg.vocab_size;
    float *cols = random_cols(2, C, 6), *base = logits_of(m, NULL, 0);
    int layers[2] = { 2, 0 }, slots[2] = { 11, 40 };
    kn_err err = { "" };
    kn_edit *e = kn_edit_slots(m, 2, layers, slots, cols, "to save", &err);
    float *edited = logits_of(m, NULL, 0);
    int rc = e ? kn_model_save(m, dir, &err) : -1;
    CHECK(rc == 0, "edited model saves (%s)", rc ? err.msg : "ok");
    kn_model *r = rc == 0 ? kn_model_load(dir, &err) : NULL;
    CHECK(r != NULL, "edited model reloads (%s)", r ? "ok" : err.msg);
    if (r) {
        float *got = logits_of(r, NULL, 0);
        CHECK(same_floats(got, edited, (long)B * T * V) && !same_floats(got, base, (long)B * T * V),
              "reloaded logits equal the edited model's (and differ from the original)");
        CHECK(slot_is(r, 2, 11, cols) && slot_is(r, 0, 40, cols + C), "reloaded value slots hold the edit's columns");
        CHECK(kn_edits(r) == NULL, "the reloaded model starts with no edit history");
        free(got);
    }
    /* undo on the in-memory model is unaffected by the save */
    if (e) {
        kn_edit_undo(m, e, &err);
        float *after = logits_of(m, NULL, 0);
        CHECK(same_floats(after, base, (long)B * T * V), "undo after saving restores the original logits");
        free(after);
    }
    kn_model_free(r);
    kn_model_free(m);
    free(cols);
    free(base);
    free(edited);
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    struct stat sb;
    CHECK(stat(tmp, &sb) != 0, "temporary directory removed");
}

int main(void) {
    test_edit_undo();
    printf("# overlapping edits A and B\n");
    overlapping(1);
    overlapping(0);
    all_undo_orders();
    test_refused();
    test_zero_is_intervention();
    test_save_edited();
    return check_done();
}
