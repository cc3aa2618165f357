/* test_bert.c: parity of the C engine with the PyTorch reference (tests/ref/gen_fixtures.py).
 * For each fixture model: logits, hidden states, ffn.act, target probabilities, the gradient of
 * the target probability and log-probability w.r.t. ffn.act, every weight gradient of the MLM
 * loss, interventions, integrated gradients (left/right Riemann, several m) with completeness,
 * BF16/F16 conversion, and finite-difference checks of the backward pass. */
#include "bert.h"
#include "check.h"
#include "ig.h"
#include "kernels.h"
#include "objective.h"
#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>

#define LOGIT_TOL 1e-5  /* relative to the largest |logit|, as the issue asks */
#define ACT_TOL 2e-5    /* activations and gradients, relative to their largest magnitude */
#define IG_TOL 1e-4     /* IG scores: sums of 20-50 float32 gradients, relative to max |score| */

typedef struct { int B, T; int ids[64], types[64], attn[64], labels[64]; int mask_pos[4], target[4]; int ig_row; } inputs;

static int load_inputs(const char *path, inputs *in) {
    json_error_t e;
    json_t *r = json_load_file(path, 0, &e);
    if (!r) return -1;
    json_t *ids = json_object_get(r, "input_ids");
    in->B = (int)json_array_size(ids);
    in->T = (int)json_array_size(json_array_get(ids, 0));
    const char *keys[] = { "input_ids", "token_type_ids", "attention_mask", "mlm_labels" };
    int *dst[] = { in->ids, in->types, in->attn, in->labels };
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < in->B; b++)
            for (int t = 0; t < in->T; t++)
                dst[k][b * in->T + t] = (int)json_integer_value(json_array_get(json_array_get(json_object_get(r, keys[k]), b), t));
    for (int b = 0; b < in->B; b++) {
        in->mask_pos[b] = (int)json_integer_value(json_array_get(json_object_get(r, "mask_pos"), b));
        in->target[b] = (int)json_integer_value(json_array_get(json_object_get(r, "target"), b));
    }
    in->ig_row = (int)json_integer_value(json_object_get(r, "ig_row"));
    json_decref(r);
    return 0;
}

static const float *ref(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    return t ? (const float *)t->data : NULL;
}

/* Compares only rows b*T+t with attn == 1 (padded query rows are not defined by the reference). */
static double masked_err(const float *got, const float *want, const inputs *in, int width) {
    int n = in->B * in->T;
    float *g = malloc(sizeof(float) * n * width), *w = malloc(sizeof(float) * n * width);
    long k = 0;
    for (int i = 0; i < n; i++) {
        if (!in->attn[i]) continue;
        memcpy(g + k, got + (long)i * width, sizeof(float) * width);
        memcpy(w + k, want + (long)i * width, sizeof(float) * width);
        k += width;
    }
    double e = check_rel_err(g, w, k, 1e-6);
    free(g);
    free(w);
    return e;
}

/* The reference names a gradient by the tensor's spelling in the file: the old gamma/beta, no
 * `bert.` prefix, the output bias as cls.predictions.decoder.bias. */
static void grad_name(const kn_model *m, const st_file *exp, const char *pname, char *out, size_t n) {
    char cands[4][160];
    int k = 0;
    const char *bases[2] = { pname, strncmp(pname, "bert.", 5) == 0 ? pname + 5 : NULL };
    for (int b = 0; b < 2; b++) {
        if (!bases[b]) continue;
        snprintf(cands[k++], sizeof cands[0], "grad.%s", bases[b]);
        const char *ln = strstr(bases[b], "LayerNorm.");
        if (ln && k < 4)
            snprintf(cands[k++], sizeof cands[0], "grad.%.*s%s", (int)(ln - bases[b]) + 10, bases[b],
                     strcmp(ln + 10, "weight") == 0 ? "gamma" : "beta");
    }
    if (strcmp(pname, "cls.predictions.bias") == 0 && k < 4) snprintf(cands[k++], sizeof cands[0], "grad.cls.predictions.decoder.bias");
    snprintf(out, n, "%.159s", cands[0]);
    for (int i = 0; i < k; i++)
        if (st_find(exp, cands[i])) { snprintf(out, n, "%.159s", cands[i]); return; }
    (void)m;
}

static void test_case(const char *name) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "tests/fixtures/ref/%s", name);
    printf("# case %s\n", name);
    kn_err err = { "" };
    kn_model *m = kn_model_load(dir, &err);
    CHECK(m != NULL, "%s: load (%s)", name, m ? "ok" : err.msg);
    if (!m) return;
    inputs in;
    snprintf(path, sizeof path, "%s/inputs.json", dir);
    CHECK(load_inputs(path, &in) == 0, "%s: inputs.json", name);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    st_file *exp = st_open(path, &err);
    CHECK(exp != NULL, "%s: expected.safetensors (%s)", name, exp ? "ok" : err.msg);
    if (!exp) { kn_model_free(m); return; }
    const bert_config *c = &m->cfg;
    int B = in.B, T = in.T, N = B * T, V = c->vocab_size, F = c->ffn, C = c->hidden, L = c->layers;

    /* BF16/F16 conversion: the loaded weights equal the reference's upcast, bit for bit */
    if (st_find(exp, "upcast.bert.embeddings.word_embeddings.weight")) {
        int bad = 0, checked = 0;
        for (int i = 0; i < m->nparams; i++) {
            char nm[160];
            snprintf(nm, sizeof nm, "upcast.%s", m->params[i].name);
            const float *u = ref(exp, nm);
            if (!u) continue;
            checked++;
            if (memcmp(u, m->params[i].data, sizeof(float) * m->params[i].numel) != 0) bad++;
        }
        CHECK(checked == m->nparams && bad == 0, "%s: %d of %d BF16/F16 tensors converted bit-exactly", name, checked - bad, m->nparams);
    }

    /* forward at every position */
    int *rows = malloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) rows[i] = i;
    bert_acts *a = bert_acts_new(c, B, T, N, &err);
    int rc = bert_forward(m, a, in.ids, in.types, in.attn, B, T, rows, N, NULL, 0, &err);
    CHECK(rc == 0, "%s: forward (%s)", name, rc ? err.msg : "ok");
    double e = masked_err(a->logits, ref(exp, "logits"), &in, V);
    CHECK(e < LOGIT_TOL, "%s: logits match PyTorch, max rel err %.2e < %.0e", name, e, LOGIT_TOL);
    e = masked_err(a->x + (long)L * N * C, ref(exp, "hidden"), &in, C);
    CHECK(e < ACT_TOL, "%s: final hidden states, max rel err %.2e < %.0e", name, e, ACT_TOL);
    for (int l = 0; l < L; l++) {
        char nm[64];
        snprintf(nm, sizeof nm, "ffn_act.%d", l);
        e = masked_err(a->ffn_act + (long)l * N * F, ref(exp, nm), &in, F);
        CHECK(e < ACT_TOL, "%s: ffn.act layer %d, max rel err %.2e < %.0e", name, l, e, ACT_TOL);
    }

    /* target probabilities and their gradients w.r.t. ffn.act */
    for (int use_log = 0; use_log < 2; use_log++) {
        int head[4];
        for (int b = 0; b < B; b++) head[b] = b * T + in.mask_pos[b];
        bert_forward(m, a, in.ids, in.types, in.attn, B, T, head, B, NULL, 0, &err);
        double val[4];
        float *dlogits = malloc(sizeof(float) * B * V);
        kn_target_objective(a->logits, B, V, in.target, use_log, NULL, val, dlogits);
        const float *want = ref(exp, use_log ? "logprob" : "prob");
        double worst = 0;
        for (int b = 0; b < B; b++) worst = fmax(worst, fabs(val[b] - want[b]) / fmax(fabs(want[b]), 1e-6));
        CHECK(worst < 1e-5, "%s: %s of the target, rel err %.2e", name, use_log ? "log-probability" : "probability", worst);
        float **dffn = malloc(sizeof(float *) * L);
        for (int l = 0; l < L; l++) dffn[l] = calloc((size_t)N * F, sizeof(float));
        rc = bert_backward(m, a, dlogits, 0, dffn, NULL, &err);
        for (int l = 0; l < L; l++) {
            char nm[64];
            snprintf(nm, sizeof nm, "grad_%s_ffn_act.%d", use_log ? "logprob" : "prob", l);
            e = check_rel_err(dffn[l], ref(exp, nm), (long)N * F, 1e-8);
            CHECK(rc == 0 && e < ACT_TOL, "%s: d %s / d ffn.act layer %d, max rel err %.2e < %.0e", name,
                  use_log ? "log P" : "P", l, e, ACT_TOL);
            free(dffn[l]);
        }
        free(dffn);
        free(dlogits);
    }

    /* MLM loss and every weight gradient */
    {
        int P = 0, head[64], labels[64];
        for (int i = 0; i < N; i++) if (in.labels[i] >= 0) { head[P] = i; labels[P++] = in.labels[i]; }
        bert_forward(m, a, in.ids, in.types, in.attn, B, T, head, P, NULL, 0, &err);
        float *dlogits = malloc(sizeof(float) * P * V);
        double loss = kn_mlm_loss(a->logits, P, V, labels, dlogits, NULL, NULL);
        const float *want = ref(exp, "mlm_loss");
        CHECK(fabs(loss - want[0]) < 1e-5 * fmax(1, fabs(want[0])), "%s: MLM loss %.7f vs %.7f", name, loss, want[0]);
        float *grads = calloc(m->nweights, sizeof(float));
        rc = bert_backward(m, a, dlogits, 0, NULL, grads, &err);
        int bad = 0, found = 0;
        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < m->nparams; i++) {
            char nm[200];
            grad_name(m, exp, m->params[i].name, nm, sizeof nm);
            const float *g = ref(exp, nm);
            if (!g) continue;
            found++;
            /* key biases have an exactly zero true gradient (softmax ignores a shift shared by a
             * row of scores): what is computed is the rounding noise of terms that cancel, as
             * large as the query bias's gradient times float epsilon, so that gradient's scale is
             * the floor (the noise depends on the BLAS kernel the CPU gets) */
            double floor = 1e-3;
            const char *kb = strstr(m->params[i].name, "attention.self.key.bias");
            if (kb) {
                char qn[200], qref[200];
                snprintf(qn, sizeof qn, "%.*squery.bias", (int)(kb - m->params[i].name + strlen("attention.self.")), m->params[i].name);
                grad_name(m, exp, qn, qref, sizeof qref);
                const float *gq = ref(exp, qref);
                for (long j = 0; gq && j < m->params[i].numel; j++) floor = fmax(floor, fabs(gq[j]));
            }
            double ei = check_rel_err(grads + m->params[i].offset, g, m->params[i].numel, floor);
            if (ei > worst) { worst = ei; worst_name = m->params[i].name; }
            if (ei > ACT_TOL) { bad++; printf("  grad %s rel err %.2e\n", m->params[i].name, ei); }
        }
        CHECK(rc == 0 && found == m->nparams && bad == 0, "%s: %d/%d weight gradients of the MLM loss match, worst %.2e (%s)",
              name, found - bad, m->nparams, worst, worst_name);

        /* finite differences of the loss on a few weights of different kinds */
        const char *probe[] = { "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.output.dense.weight",
                                "bert.embeddings.word_embeddings.weight", "cls.predictions.transform.LayerNorm.weight",
                                "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.embeddings.position_embeddings.weight" };
        for (int pi = 0; pi < 6; pi++) {
            const kn_param *p = kn_model_param(m, probe[pi]);
            /* choose the entry with the largest analytic gradient, so the difference is measurable */
            long best = 0;
            for (long j = 0; j < p->numel; j++)
                if (fabsf(grads[p->offset + j]) > fabsf(grads[p->offset + best])) best = j;
            /* ReLU's kink: a step of 1e-2 moves pre-activations across 0, so a ReLU model gets a
             * smaller step (float32 rounding of the loss still far below the tolerance) */
            float saved = p->data[best], h = c->act == KN_ACT_RELU ? 1e-3f : 1e-2f;
            double lp, lm;
            p->data[best] = saved + h;
            bert_forward(m, a, in.ids, in.types, in.attn, B, T, head, P, NULL, 0, &err);
            lp = kn_mlm_loss(a->logits, P, V, labels, NULL, NULL, NULL);
            p->data[best] = saved - h;
            bert_forward(m, a, in.ids, in.types, in.attn, B, T, head, P, NULL, 0, &err);
            lm = kn_mlm_loss(a->logits, P, V, labels, NULL, NULL, NULL);
            p->data[best] = saved;
            double fd = (lp - lm) / (2 * h), an = grads[p->offset + best];
            CHECK(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-4, "%s: finite difference d loss / d %s[%ld]: %.6f vs analytic %.6f",
                  name, probe[pi], best, fd, an);
        }
        free(grads);
        free(dlogits);
    }

    /* finite differences of log P w.r.t. single neurons of ffn.act (via ADD interventions) */
    {
        int b = 0, head = in.mask_pos[0];
        bert_forward(m, a, in.ids, in.types, in.attn, 1, T, &head, 1, NULL, 0, &err);
        float *dlogits = malloc(sizeof(float) * V);
        double base;
        kn_target_objective(a->logits, 1, V, &in.target[b], 1, NULL, &base, dlogits);
        float **dffn = calloc(L, sizeof(float *));
        dffn[0] = calloc((size_t)T * F, sizeof(float));
        bert_backward(m, a, dlogits, 0, dffn, NULL, &err);
        for (int probe = 0; probe < 3; probe++) {
            int pos = probe == 0 ? in.mask_pos[0] : probe, i = (probe * 17 + 5) % F;
            double an = dffn[0][(long)pos * F + i], vp, vm;
            float h = c->act == KN_ACT_RELU ? 1e-3f : 1e-2f;
            kn_intervention iv = { .layer = 0, .row = 0, .pos = pos, .op = KN_ADD, .n = 1, .idx = &i, .scalar = h };
            bert_forward(m, a, in.ids, in.types, in.attn, 1, T, &head, 1, &iv, 1, &err);
            kn_target_objective(a->logits, 1, V, &in.target[b], 1, NULL, &vp, NULL);
            iv.scalar = -h;
            bert_forward(m, a, in.ids, in.types, in.attn, 1, T, &head, 1, &iv, 1, &err);
            kn_target_objective(a->logits, 1, V, &in.target[b], 1, NULL, &vm, NULL);
            double fd = (vp - vm) / (2 * h);
            CHECK(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-4, "%s: finite difference d log P / d ffn.act[0][pos %d][%d]: %.6f vs %.6f",
                  name, pos, i, fd, an);
        }
        free(dffn[0]);
        free(dffn);
        free(dlogits);
    }

    /* interventions: set neurons 3, 7 to 0 and scale 11 by 2 in layer 1 at the mask positions */
    if (ref(exp, "intervened.logits_mask")) {
        int zero_idx[2] = { 3, 7 }, dbl_idx[1] = { 11 }, head[4];
        kn_intervention iv[8];
        int niv = 0;
        for (int b = 0; b < B; b++) {
            head[b] = b * T + in.mask_pos[b];
            iv[niv++] = (kn_intervention){ .layer = 1, .row = b, .pos = in.mask_pos[b], .op = KN_SET, .n = 2, .idx = zero_idx, .scalar = 0 };
            iv[niv++] = (kn_intervention){ .layer = 1, .row = b, .pos = in.mask_pos[b], .op = KN_SCALE, .n = 1, .idx = dbl_idx, .scalar = 2 };
        }
        bert_forward(m, a, in.ids, in.types, in.attn, B, T, head, B, iv, niv, &err);
        e = check_rel_err(a->logits, ref(exp, "intervened.logits_mask"), (long)B * V, 1e-6);
        CHECK(e < LOGIT_TOL, "%s: logits under interventions (zero + double), max rel err %.2e", name, e);
    }

    /* integrated gradients */
    {
        int r = in.ig_row, Tr = 0;
        for (int t = 0; t < T; t++) Tr += in.attn[r * T + t];
        int *layers = malloc(sizeof(int) * L);
        for (int l = 0; l < L; l++) layers[l] = l;
        kn_ig_out out = { malloc(sizeof(float) * L * F), malloc(sizeof(float) * L * F), 0,
                          malloc(sizeof(double) * L), malloc(sizeof(double) * L) };
        struct { const char *key; kn_quadrature q; int m; } runs[] = {
            { "ig_left", KN_QUAD_LEFT, 20 }, { "ig_right", KN_QUAD_RIGHT, 20 },
            { "ig_left_m5", KN_QUAD_LEFT, 5 }, { "ig_left_m50", KN_QUAD_LEFT, 50 } };
        double delta[4];
        const float *pfull = ref(exp, "ig_p_full");
        for (int ri = 0; ri < 4; ri++) {
            kn_ig_opts o = { runs[ri].m, runs[ri].q, ri == 3 ? 7 : 0, 0, NULL }; /* m=50 also exercises chunking */
            rc = kn_ig(m, in.ids + r * T, in.types + r * T, Tr, in.mask_pos[r], in.target[r], layers, L, &o, &out, &err);
            CHECK(rc == 0, "%s: %s runs (%s)", name, runs[ri].key, rc ? err.msg : "ok");
            delta[ri] = 0;
            for (int l = 0; l < L; l++) {
                char nm[64];
                snprintf(nm, sizeof nm, "%s.%d", runs[ri].key, l);
                e = check_rel_err(out.scores + (long)l * F, ref(exp, nm), F, 1e-7);
                CHECK(e < IG_TOL, "%s: %s layer %d scores, max rel err %.2e < %.0e", name, runs[ri].key, l, e, IG_TOL);
                snprintf(nm, sizeof nm, "ig_p_zero.%d", l);
                if (ri == 0)
                    CHECK(fabs(out.p_zero[l] - ref(exp, nm)[0]) < 1e-6, "%s: P(zero at layer %d) %.7f vs %.7f", name, l,
                          out.p_zero[l], ref(exp, nm)[0]);
                delta[ri] += fabs(out.score_sum[l] - (out.p_full - out.p_zero[l]));
            }
            if (ri == 0) CHECK(fabs(out.p_full - pfull[0]) < 1e-6, "%s: P(full) %.7f vs %.7f", name, out.p_full, pfull[0]);
        }
        CHECK(delta[2] > delta[0] && delta[0] > delta[3], "%s: completeness delta shrinks with m (left: m=5 %.2e, m=20 %.2e, m=50 %.2e)",
              name, delta[2], delta[0], delta[3]);
        /* A workspace reused across prompts of other lengths and other row counts gives the same
         * bits as fresh buffers: rows in order, then backwards, alternating m = 20 and m = 50 in
         * chunks of 7 (so the arenas grow, then serve smaller calls). */
        {
            kn_ig_ws *ws = kn_ig_ws_new();
            kn_ig_out ref_out = { malloc(sizeof(float) * L * F), malloc(sizeof(float) * L * F), 0,
                                  malloc(sizeof(double) * L), malloc(sizeof(double) * L) };
            int same = 1, calls = 0;
            for (int pass = 0; pass < 2; pass++) {
                for (int k = 0; k < B; k++) {
                    int rr = pass == 0 ? k : B - 1 - k, Tk = 0;
                    for (int t = 0; t < T; t++) Tk += in.attn[rr * T + t];
                    int mk = (k + pass) % 2 ? 50 : 20;
                    kn_ig_opts fresh = { mk, KN_QUAD_LEFT, mk == 50 ? 7 : 0, 0, NULL }, reuse = fresh;
                    reuse.ws = ws;
                    int r1 = kn_ig(m, in.ids + rr * T, in.types + rr * T, Tk, in.mask_pos[rr], in.target[rr], layers, L, &fresh, &ref_out, &err);
                    int r2 = kn_ig(m, in.ids + rr * T, in.types + rr * T, Tk, in.mask_pos[rr], in.target[rr], layers, L, &reuse, &out, &err);
                    same = same && r1 == 0 && r2 == 0 && memcmp(ref_out.scores, out.scores, sizeof(float) * L * F) == 0
                        && memcmp(ref_out.p_zero, out.p_zero, sizeof(double) * L) == 0 && ref_out.p_full == out.p_full;
                    calls++;
                }
            }
            CHECK(same, "%s: kn_ig with a reused workspace is bit-identical to fresh buffers (%d calls, %d prompt lengths)", name, calls, B);
            kn_ig_ws_free(ws);
            free(ref_out.scores); free(ref_out.acts); free(ref_out.p_zero); free(ref_out.score_sum);
        }
        free(layers); free(out.scores); free(out.acts); free(out.p_zero); free(out.score_sum);
    }

    free(rows);
    bert_acts_free(a);
    st_close(exp);
    kn_model_free(m);
}

int main(void) {
    test_case("odd");
    test_case("gamma");
    test_case("bf16");
    /* BERT folders as found in the wild (tests/ref/gen_bert_variants.py) */
    test_case("bert_untied");
    test_case("bert_i64pos");
    test_case("bert_noprefix");
    test_case("bert_decbias");
    test_case("bert_gelu_new");
    test_case("bert_relu");
    test_case("bert_f16");
    test_case("bert_sharded");
    return check_done();
}
