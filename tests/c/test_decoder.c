/* test_decoder.c: the decoder families (core/decoder.h) against the PyTorch float64 reference
 * fixtures of tests/ref/gen_decoders.py (gpt2, gpt2_noprefix, llama, llama_tied, llama3_rope,
 * llama_linear_rope, qwen2, mistral, llama_bf16, llama_sharded): logits, ffn.act, the gradient
 * of P(target) and log P w.r.t. ffn.act, integrated gradients per layer, the LM-loss gradient
 * of every parameter, interventions, zero-neuron = zero-slot, multi-token log P and its
 * gradient, greedy generation (KV cache) against the fixture and against full forwards; then
 * finite differences of the whole LM-loss backward on tiny random models, and bad configs.
 *
 * Tolerances (float32 engine against float64 truth rounded to float32), each relative to the
 * largest magnitude of the compared tensor: logits, activations 1e-4; gradients w.r.t. ffn.act
 * 1e-3; IG 2e-3; parameter gradients 2e-3 (scale floor 1e-4); probabilities 1e-5 absolute.
 *
 * GPT-2 folders hold HF's BOOL/U8 attn.bias causal-mask buffers, which core/safetensors.c does
 * not read yet: the test loads a copy of such a file with those entries removed from the header
 * (the data section untouched), and checks the loader skips them when present by name. */
#include "check.h"
#include "decoder.h"
#include "alloc.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures/ref/"

static double rel(const float *a, const float *b, long n, double floor) { return check_rel_err(a, b, n, floor); }

static const float *expt(const st_file *e, const char *name, long want) {
    const st_tensor *t = st_find(e, name);
    if (!t || t->dtype != ST_F32 || (want >= 0 && t->numel != want)) return NULL;
    return (const float *)t->data;
}

static int *json_ints(json_t *a, int *n) {
    if (json_is_array(json_array_get(a, 0))) { /* [B][T] flattened */
        int rows = json_array_size(a), cols = json_array_size(json_array_get(a, 0));
        int *v = malloc(sizeof(int) * rows * cols);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) v[r * cols + c] = json_integer_value(json_array_get(json_array_get(a, r), c));
        *n = rows * cols;
        return v;
    }
    *n = json_array_size(a);
    int *v = malloc(sizeof(int) * (*n + 1));
    for (int i = 0; i < *n; i++) v[i] = json_integer_value(json_array_get(a, i));
    return v;
}

/* A copy of a safetensors file without the entries of dtypes core/safetensors.c does not read
 * (HF's BOOL/U8 mask buffers); offsets stay valid since the data section is copied as is. */
static int strip_buffers(const char *src, const char *dst) {
    FILE *f = fopen(src, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len);
    if (fread(buf, 1, len, f) != (size_t)len) { fclose(f); free(buf); return -1; }
    fclose(f);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)buf[i] << (8 * i);
    json_t *h = json_loadb((const char *)buf + 8, hl, 0, NULL);
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(h, tmp, k, v) {
        const char *dt = json_string_value(json_object_get(v, "dtype"));
        if (dt && strcmp(dt, "F32") && strcmp(dt, "F16") && strcmp(dt, "BF16")) json_object_del(h, k);
    }
    char *s = json_dumps(h, JSON_COMPACT);
    size_t sl = strlen(s), pad = (8 - sl % 8) % 8;
    FILE *o = fopen(dst, "wb");
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(((uint64_t)(sl + pad)) >> (8 * i));
    fwrite(le, 1, 8, o);
    fwrite(s, 1, sl, o);
    for (size_t i = 0; i < pad; i++) fputc(' ', o);
    fwrite(buf + 8 + hl, 1, len - 8 - hl, o);
    fclose(o);
    free(s);
    free(buf);
    json_decref(h);
    return 0;
}

static int copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    if (!a || !b) { if (a) fclose(a); if (b) fclose(b); return -1; }
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
    return 0;
}

static dec_model *load_case(const char *name, char *tmpdir) {
    kn_err err = { "" };
    char dir[512], path[1024], dst[1024];
    snprintf(dir, sizeof dir, FIX "%s", name);
    tmpdir[0] = 0;
    if (strncmp(name, "gpt2", 4) == 0) {
        strcpy(tmpdir, "/tmp/knwb_test_decoder_XXXXXX");
        if (!mkdtemp(tmpdir)) return NULL;
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        snprintf(dst, sizeof dst, "%s/model.safetensors", tmpdir);
        strip_buffers(path, dst);
        snprintf(path, sizeof path, "%s/config.json", dir);
        snprintf(dst, sizeof dst, "%s/config.json", tmpdir);
        copy_file(path, dst);
        snprintf(dir, sizeof dir, "%s", tmpdir);
    }
    dec_model *m = dec_model_load(dir, &err);
    CHECK(m != NULL, "%s: loads (%s)", name, m ? "ok" : err.msg);
    return m;
}

static void cleanup_tmp(const char *tmpdir) {
    if (!tmpdir[0]) return;
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir); unlink(p);
    snprintf(p, sizeof p, "%s/config.json", tmpdir); unlink(p);
    rmdir(tmpdir);
}

static void run_case(const char *name) {
    printf("# %s\n", name);
    char tmpdir[256];
    kn_err err = { "" };
    dec_model *m = load_case(name, tmpdir);
    if (!m) return;
    const dec_config *c = &m->cfg;
    int L = c->layers, F = c->ffn, V = c->vocab_size;
    char path[512], key[160];
    snprintf(path, sizeof path, FIX "%s/expected.safetensors", name);
    st_file *e = st_open(path, &err);
    CHECK(e != NULL, "%s: expected.safetensors (%s)", name, e ? "ok" : err.msg);
    snprintf(path, sizeof path, FIX "%s/inputs.json", name);
    json_t *in = json_load_file(path, 0, NULL);
    CHECK(in != NULL, "%s: inputs.json", name);
    if (!e || !in) { dec_model_free(m); return; }
    int n, nb;
    json_t *ids_j = json_object_get(in, "input_ids");
    int B = json_array_size(ids_j), T = json_array_size(json_array_get(ids_j, 0));
    int N = B * T;
    int *ids = json_ints(ids_j, &n), *am = json_ints(json_object_get(in, "attention_mask"), &n);
    int *labels = json_ints(json_object_get(in, "lm_labels"), &n);
    int *pred = json_ints(json_object_get(in, "pred_pos"), &nb), *target = json_ints(json_object_get(in, "target"), &nb);

    /* ---- forward at every row: logits and ffn.act */
    dec_acts *a = dec_acts_new(m, B, T, N, &err);
    int *all = malloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) all[i] = i;
    CHECK(a && a->bytes == dec_acts_bytes(c, B, T, N), "%s: arena of %lld bytes as dec_acts_bytes plans", name,
          a ? (long long)a->bytes : -1LL);
    int rc = dec_forward(m, a, ids, am, NULL, B, T, all, N, NULL, 0, &err);
    CHECK(rc == 0, "%s: forward (%s)", name, rc ? err.msg : "ok");
    const float *el = expt(e, "logits", (long)N * V);
    double d = el ? rel(a->logits, el, (long)N * V, 1e-3) : INFINITY;
    CHECK(d < 1e-4, "%s: logits [%d,%d,%d] rel err %.2e < 1e-4", name, B, T, V, d);
    int64_t NF = (int64_t)a->B * a->T * F;
    for (int l = 0; l < L; l++) {
        snprintf(key, sizeof key, "ffn_act.%d", l);
        const float *ea = expt(e, key, (long)N * F);
        d = ea ? rel(a->act + l * NF, ea, (long)N * F, 1e-3) : INFINITY;
        CHECK(d < 1e-4, "%s: ffn_act.%d rel err %.2e < 1e-4", name, l, d);
    }
    if (!c->learned_pos) {
        const float *ef = expt(e, "rope.inv_freq", c->head_dim / 2);
        d = ef ? rel(m->inv_freq, ef, c->head_dim / 2, 0) : INFINITY;
        CHECK(d < 1e-6, "%s: rope inv_freq rel err %.2e < 1e-6", name, d);
    }

    /* ---- P(target), log P at pred_pos and their gradients w.r.t. every layer's ffn.act */
    int rows[8];
    for (int b = 0; b < B; b++) rows[b] = b * T + pred[b];
    float *dl = malloc(sizeof(float) * B * V);
    float *g = malloc(sizeof(float) * (size_t)L * N * F);
    float **gp = malloc(sizeof(float *) * L);
    for (int l = 0; l < L; l++) gp[l] = g + (int64_t)l * N * F;
    for (int use_log = 0; use_log < 2; use_log++) {
        double obj[8];
        rc = dec_forward(m, a, ids, am, NULL, B, T, rows, B, NULL, 0, &err);
        dec_objective_grad(a, V, target, use_log, dl, obj);
        rc |= dec_backward(m, a, dl, 0, gp, NULL, &err);
        CHECK(rc == 0, "%s: backward to ffn.act (%s)", name, rc ? err.msg : "ok");
        const float *ep = expt(e, use_log ? "logprob" : "prob", B);
        double w = 0;
        for (int b = 0; b < B; b++) w = fmax(w, fabs(obj[b] - ep[b]));
        CHECK(w < 1e-5, "%s: %s at pred_pos max |diff| %.2e < 1e-5", name, use_log ? "log P" : "P", w);
        for (int l = 0; l < L; l++) {
            snprintf(key, sizeof key, "grad_%s_ffn_act.%d", use_log ? "logprob" : "prob", l);
            const float *eg = expt(e, key, (long)N * F);
            d = eg ? rel(gp[l], eg, (long)N * F, 1e-6) : INFINITY;
            CHECK(d < 1e-3, "%s: %s rel err %.2e < 1e-3", name, key, d);
        }
    }

    /* ---- interventions at pred_pos: layer 1, neurons 3, 7 set to 0, neuron 11 doubled */
    json_t *ivj = json_object_get(in, "intervene");
    int il = json_integer_value(json_object_get(ivj, "layer")), nz, nd;
    int *zero = json_ints(json_object_get(ivj, "zero"), &nz), *dbl = json_ints(json_object_get(ivj, "double"), &nd);
    kn_intervention iv[16];
    int niv = 0;
    for (int b = 0; b < B; b++) {
        iv[niv++] = (kn_intervention){ .layer = il, .row = b, .pos = pred[b], .op = KN_SET, .n = nz, .idx = zero, .scalar = 0.0f };
        iv[niv++] = (kn_intervention){ .layer = il, .row = b, .pos = pred[b], .op = KN_SCALE, .n = nd, .idx = dbl, .scalar = 2.0f };
    }
    rc = dec_forward(m, a, ids, am, NULL, B, T, rows, B, iv, niv, &err);
    const float *ei = expt(e, "intervened.logits_pred", (long)B * V);
    d = ei && rc == 0 ? rel(a->logits, ei, (long)B * V, 1e-3) : INFINITY;
    CHECK(d < 1e-4, "%s: intervened logits at pred_pos rel err %.2e < 1e-4", name, d);

    /* ---- zeroing neuron i everywhere == zeroing its value slot, and = the reference */
    json_t *zj = json_object_get(in, "zero_slot");
    int zl = json_integer_value(json_object_get(zj, "layer")), zi = json_integer_value(json_object_get(zj, "neuron"));
    kn_intervention z = { .layer = zl, .row = -1, .pos = -1, .op = KN_SET, .n = 1, .idx = &zi, .scalar = 0.0f };
    rc = dec_forward(m, a, ids, am, NULL, B, T, all, N, &z, 1, &err);
    float *lz = malloc(sizeof(float) * (size_t)N * V);
    memcpy(lz, a->logits, sizeof(float) * (size_t)N * V);
    const float *ez = expt(e, "zero_slot.logits", (long)N * V);
    d = ez && rc == 0 ? rel(lz, ez, (long)N * V, 1e-3) : INFINITY;
    CHECK(d < 1e-4, "%s: zero-neuron logits rel err %.2e < 1e-4", name, d);
    float *dw = m->w.layer[zl].down_w;
    int C = c->hidden, stride = 0;
    float *vs = dec_value_slot(m, zl, zi, &stride);
    CHECK(vs == (c->family == DEC_GPT2 ? dw + (int64_t)zi * C : dw + zi) && stride == (c->family == DEC_GPT2 ? 1 : F),
          "%s: value slot %d of layer %d is %s %d of the down projection (stride %d)", name, zi, zl,
          c->family == DEC_GPT2 ? "row" : "column", zi, stride);
    float *saved = malloc(sizeof(float) * C);
    for (int j = 0; j < C; j++) {
        saved[j] = vs[(int64_t)j * stride];
        vs[(int64_t)j * stride] = 0.0f;
    }
    rc = dec_forward(m, a, ids, am, NULL, B, T, all, N, NULL, 0, &err);
    d = 0;
    for (long i = 0; i < (long)N * V; i++) d = fmax(d, fabs(a->logits[i] - lz[i]));
    CHECK(rc == 0 && d == 0.0, "%s: zeroing neuron %d of layer %d == zeroing its value slot (%s of the down projection): max |diff| %.1e",
          name, zi, zl, c->family == DEC_GPT2 ? "row" : "column", d);
    for (int j = 0; j < C; j++) vs[(int64_t)j * stride] = saved[j];
    rc = dec_forward(m, a, ids, am, NULL, B, T, all, N, NULL, 0, &err);
    d = el && rc == 0 ? rel(a->logits, el, (long)N * V, 1e-3) : INFINITY;
    CHECK(d < 1e-4, "%s: the slot restored, logits back to the reference (rel err %.2e)", name, d);

    /* ---- LM loss and the gradient of every parameter */
    float *grads = calloc((size_t)m->nweights, sizeof(float));
    double loss = 0;
    rc = dec_lm_loss(m, a, ids, am, NULL, labels, B, T, &loss, grads, &err);
    const float *eloss = expt(e, "lm_loss", 1);
    CHECK(rc == 0 && fabs(loss - eloss[0]) < 1e-5 * fabs(eloss[0]), "%s: lm_loss %.7f vs %.7f (%s)", name, loss, eloss[0],
          rc ? err.msg : "ok");
    double worst = 0;
    const char *worst_name = "";
    int missing = 0;
    for (int i = 0; i < m->nparams; i++) {
        const kn_param *p = &m->params[i];
        snprintf(key, sizeof key, "grad.%s", p->name);
        const float *eg = expt(e, key, p->numel);
        if (!eg) { missing++; printf("  missing %s\n", key); continue; }
        double r = rel(grads + p->offset, eg, p->numel, 1e-4);
        if (r > worst) { worst = r; worst_name = p->name; }
    }
    CHECK(missing == 0 && worst < 2e-3, "%s: lm_loss gradients of all %d parameters, worst rel err %.2e (%s) < 2e-3", name,
          m->nparams, worst, worst_name);

    /* ---- integrated gradients at pred_pos of row ig_row alone, every layer: left m = 20 and 5,
     * right m = 20 */
    int r = json_integer_value(json_object_get(in, "ig_row")), steps = json_integer_value(json_object_get(in, "ig_steps"));
    int Tr = 0;
    for (int t = 0; t < T; t++) Tr += am[r * T + t];
    float *sc = malloc(sizeof(float) * F);
    for (int l = 0; l < L; l++) {
        for (int pass = 0; pass < 3; pass++) {
            int ms = pass == 1 ? 5 : steps;
            kn_quadrature q = pass == 2 ? KN_QUAD_RIGHT : KN_QUAD_LEFT;
            double pf, pz;
            rc = dec_ig(m, ids + r * T, Tr, pred[r], &pred[r], &target[r], 1, l, q, ms, 0, sc, &pf, &pz, &err);
            snprintf(key, sizeof key, pass == 0 ? "ig_left.%d" : pass == 1 ? "ig_left_m5.%d" : "ig_right.%d", l);
            const float *eg = expt(e, key, F);
            d = eg && rc == 0 ? rel(sc, eg, F, 1e-6) : INFINITY;
            CHECK(d < 2e-3, "%s: IG layer %d, m=%d %s rel err %.2e < 2e-3 (%s)", name, l, ms, pass == 2 ? "right" : "left", d,
                  rc ? err.msg : "ok");
            snprintf(key, sizeof key, "ig_p_zero.%d", l);
            const float *e0 = expt(e, key, 1), *e1 = expt(e, "ig_p_full", 1);
            CHECK(fabs(pz - e0[0]) < 1e-5 && fabs(pf - e1[0]) < 1e-5, "%s: IG layer %d P(w) %.6f vs %.6f, P(0) %.6f vs %.6f", name, l, pf,
                  e1[0], pz, e0[0]);
        }
    }

    /* ---- multi-token: teacher-forced sum of log P and its gradient w.r.t. ffn.act */
    int np, nt;
    int *mtp = json_ints(json_object_get(in, "mt_prompt"), &np), *mtt = json_ints(json_object_get(in, "mt_target"), &nt);
    int S = np + nt - 1;
    int *seq = malloc(sizeof(int) * S), mrows[16];
    for (int i = 0; i < np; i++) seq[i] = mtp[i];
    for (int i = 0; i + 1 < nt; i++) seq[np + i] = mtt[i];
    for (int i = 0; i < nt; i++) mrows[i] = np - 1 + i;
    dec_acts *am1 = dec_acts_new(m, 1, S, nt, &err);
    double objs[16], lp = 0;
    rc = dec_forward(m, am1, seq, NULL, NULL, 1, S, mrows, nt, NULL, 0, &err);
    float *dlm = malloc(sizeof(float) * nt * V);
    dec_objective_grad(am1, V, mtt, 1, dlm, objs);
    for (int i = 0; i < nt; i++) lp += objs[i];
    for (int l = 0; l < L; l++) gp[l] = g + (int64_t)l * S * F;
    rc |= dec_backward(m, am1, dlm, 0, gp, NULL, &err);
    const float *emt = expt(e, "mt_logprob", 1);
    CHECK(rc == 0 && fabs(lp - emt[0]) < 1e-4, "%s: multi-token log P %.6f vs %.6f", name, lp, emt[0]);
    for (int l = 0; l < L; l++) {
        snprintf(key, sizeof key, "grad_mt_logprob_ffn_act.%d", l);
        const float *eg = expt(e, key, (long)S * F);
        d = eg ? rel(gp[l], eg, (long)S * F, 1e-6) : INFINITY;
        CHECK(d < 1e-3, "%s: %s rel err %.2e < 1e-3", name, key, d);
    }

    /* multi-token IG at the last prompt position: O = P(target) teacher-forced, left and right */
    for (int l = 0; l < L; l++)
        for (int pass = 0; pass < 2; pass++) {
            double pf, pz;
            rc = dec_ig(m, seq, S, np - 1, mrows, mtt, nt, l, pass ? KN_QUAD_RIGHT : KN_QUAD_LEFT, steps, 0, sc, &pf, &pz, &err);
            snprintf(key, sizeof key, pass ? "ig_mt_right.%d" : "ig_mt_left.%d", l);
            const float *eg = expt(e, key, F);
            d = eg && rc == 0 ? rel(sc, eg, F, 1e-9) : INFINITY;
            snprintf(key, sizeof key, "ig_mt_p_zero.%d", l);
            const float *e0 = expt(e, key, 1), *e1 = expt(e, "mt_prob", 1);
            CHECK(d < 2e-3 && fabs(pz - e0[0]) <= 1e-4 * e0[0] && fabs(pf - e1[0]) <= 1e-4 * e1[0],
                  "%s: multi-token IG layer %d %s rel err %.2e < 2e-3; P(w) %.4e vs %.4e, P(0) %.4e vs %.4e (%s)", name, l,
                  pass ? "right" : "left", d, pf, e1[0], pz, e0[0], rc ? err.msg : "ok");
        }

    /* ---- greedy generation with the KV cache: the fixture, and the argmax of full forwards */
    int gn, steps_g = json_integer_value(json_object_get(in, "gen_steps"));
    int *gprompt = json_ints(json_object_get(in, "gen_prompt"), &gn);
    int out[64], full[64], sq[128];
    rc = dec_generate(m, gprompt, gn, steps_g, out, &err);
    const float *et = expt(e, "gen_tokens", steps_g);
    int same = rc == 0 && et != NULL;
    for (int i = 0; same && i < steps_g; i++) same = out[i] == (int)et[i];
    CHECK(same, "%s: greedy %d tokens with the KV cache equal the reference (%s)", name, steps_g, rc ? err.msg : "ok");
    memcpy(sq, gprompt, sizeof(int) * gn);
    dec_acts *ag = dec_acts_new(m, 1, gn + steps_g, 1, &err);
    for (int i = 0; i < steps_g; i++) {
        int len = gn + i, lastrow = len - 1;
        dec_forward(m, ag, sq, NULL, NULL, 1, len, &lastrow, 1, NULL, 0, &err);
        int best = 0;
        for (int j = 1; j < V; j++) if (ag->logits[j] > ag->logits[best]) best = j;
        full[i] = best;
        sq[len] = best;
    }
    same = rc == 0;
    for (int i = 0; same && i < steps_g; i++) same = out[i] == full[i];
    CHECK(same, "%s: generate equals the step-by-step argmax of full forwards", name);

    dec_acts_free(ag);
    dec_acts_free(am1);
    free(gprompt); free(seq); free(dlm); free(mtp); free(mtt); free(sc); free(grads); free(saved); free(lz);
    free(zero); free(dbl); free(dl); free(g); free(gp); free(all);
    free(ids); free(am); free(labels); free(pred); free(target);
    dec_acts_free(a);
    json_decref(in);
    st_close(e);
    dec_model_free(m);
    cleanup_tmp(tmpdir);
}

/* ---------------------------------------------------------------- finite differences */

typedef struct fd_ctx { dec_model *m; dec_acts *a; const int *ids, *am, *pos, *labels; int B, T; } fd_ctx;

static double lm_loss_of(fd_ctx *x, float *grads) {
    double loss = NAN;
    kn_err err;
    if (dec_lm_loss(x->m, x->a, x->ids, x->am, x->pos, x->labels, x->B, x->T, &loss, grads, &err) != 0) {
        printf("  dec_lm_loss: %s\n", err.msg);
        return NAN;
    }
    return loss;
}

static void fd_model(const char *what, const dec_config *cfg, int left_pad) {
    kn_err err = { "" };
    dec_model *m = dec_model_create(cfg, 7, 0.3f, &err);
    CHECK(m != NULL, "%s: random model (%s)", what, m ? "ok" : err.msg);
    if (!m) return;
    enum { B = 2, T = 6 };
    int ids[B * T], am[B * T], pos[B * T], labels[B * T];
    uint64_t s = 12345;
    for (int i = 0; i < B * T; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        ids[i] = (int)(s % cfg->vocab_size);
        am[i] = 1;
    }
    /* row 1: left-padded by 2, positions from 0 at the first real token (cumsum - 1) */
    for (int t = 0; t < T; t++) {
        int padded = left_pad && t < 2;
        am[T + t] = !padded;
        pos[t] = t;
        pos[T + t] = padded ? 0 : t - (left_pad ? 2 : 0);
        labels[t] = ids[t];
        labels[T + t] = padded ? -100 : ids[T + t];
    }
    dec_acts *a = dec_acts_new(m, B, T, B * T, &err);
    fd_ctx x = { m, a, ids, am, pos, labels, B, T };
    float *g = calloc(m->nweights, sizeof(float));
    lm_loss_of(&x, g);
    double worst = 0, scale = 0;
    const char *wn = "";
    int count = 0;
    for (int i = 0; i < m->nparams; i++) {
        kn_param *p = &m->params[i];
        double pscale = 0;
        for (int64_t j = 0; j < p->numel; j++) pscale = fmax(pscale, fabs(g[p->offset + j]));
        for (int k = 0; k < 4; k++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            int64_t j = (int64_t)(s % p->numel);
            float save = p->data[j], h = 1e-2f;
            p->data[j] = save + h;
            double lp = lm_loss_of(&x, NULL);
            p->data[j] = save - h;
            double lm = lm_loss_of(&x, NULL);
            p->data[j] = save;
            double fd = (lp - lm) / (2.0 * h), an = g[p->offset + j];
            double err_ = fabs(fd - an) / (pscale + 1e-3);
            if (err_ > worst) { worst = err_; wn = p->name; }
            scale = fmax(scale, fabs(an));
            count++;
        }
    }
    CHECK(worst < 2e-2 && scale > 0, "%s: LM-loss gradient vs central differences (h=1e-2) at %d entries of %d parameters: worst %.2e (%s) < 2e-2 of the tensor's max",
          what, count, m->nparams, worst, wn);
    free(g);
    dec_acts_free(a);
    dec_model_free(m);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void bad_configs(void) {
    char dir[] = "/tmp/knwb_test_decoder_cfg_XXXXXX";
    if (!mkdtemp(dir)) return;
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct { const char *json, *needle; } cases[] = {
        { "{\"model_type\":\"gptj\"}", "gpt2, llama, mistral, qwen2" },
        { "{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
          "\"num_key_value_heads\":3,\"intermediate_size\":8,\"max_position_embeddings\":8}", "num_key_value_heads" },
        { "{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
          "\"intermediate_size\":8,\"max_position_embeddings\":8,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}}", "yarn" },
        { "{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"num_attention_heads\":2,"
          "\"intermediate_size\":8,\"max_position_embeddings\":8}", "num_hidden_layers" },
        { "{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"n_positions\":8,"
          "\"scale_attn_by_inverse_layer_idx\":true}", "scale_attn_by_inverse_layer_idx" },
        { "{\"model_type\":\"qwen2\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
          "\"intermediate_size\":8,\"max_position_embeddings\":8,\"use_sliding_window\":true}", "use_sliding_window" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].json);
        dec_config c;
        kn_err err = { "" };
        int rc = dec_config_load(path, &c, &err);
        CHECK(rc != 0, "bad config %zu refused", i + 1);
        CHECK_MSG(err.msg, cases[i].needle, "bad config");
        CHECK_MSG(err.msg, "config.json", "bad config names the file");
    }
    unlink(path);
    rmdir(dir);
}

static void bad_inputs(void) {
    kn_err err = { "" };
    dec_model *m = dec_model_load(FIX "mistral", &err);
    CHECK(m != NULL, "mistral loads (%s)", m ? "ok" : err.msg);
    if (!m) return;
    dec_acts *a = dec_acts_new(m, 1, m->cfg.sliding_window + 1, 1, &err);
    CHECK(a == NULL, "a prompt longer than Mistral's sliding window is refused");
    CHECK_MSG(err.msg, "sliding window", "window");
    int ids[40] = { 0 }, out[40];
    CHECK(dec_generate(m, ids, 10, 10, out, &err) != 0, "generation past the sliding window is refused");
    dec_model_free(m);
    m = dec_model_load(FIX "llama", &err);
    if (!m) return;
    a = dec_acts_new(m, 1, m->cfg.max_pos + 1, 1, &err);
    CHECK(a == NULL, "a prompt longer than max_position_embeddings is refused");
    CHECK_MSG(err.msg, "max_position_embeddings", "max positions");
    a = dec_acts_new(m, 1, 4, 1, &err);
    int bad[4] = { 1, 2, 9999, 3 }, row = 3;
    CHECK(dec_forward(m, a, bad, NULL, NULL, 1, 4, &row, 1, NULL, 0, &err) != 0, "token id out of range refused");
    CHECK_MSG(err.msg, "9999", "bad id");
    dec_acts_free(a);
    dec_model_free(m);
    /* a shard named in the index but absent */
    char dir[] = "/tmp/knwb_test_decoder_shard_XXXXXX", p1[256], p2[256];
    if (!mkdtemp(dir)) return;
    snprintf(p1, sizeof p1, "%s/config.json", dir);
    copy_file(FIX "llama_sharded/config.json", p1);
    snprintf(p2, sizeof p2, "%s/model.safetensors.index.json", dir);
    copy_file(FIX "llama_sharded/model.safetensors.index.json", p2);
    char p3[256];
    snprintf(p3, sizeof p3, "%s/model-00001-of-00002.safetensors", dir);
    copy_file(FIX "llama_sharded/model-00001-of-00002.safetensors", p3);
    m = dec_model_load(dir, &err);
    CHECK(m == NULL, "a missing shard is refused");
    CHECK_MSG(err.msg, "model-00002-of-00002.safetensors", "missing shard");
    dec_model_free(m);
    unlink(p1); unlink(p2); unlink(p3);
    rmdir(dir);
}

/* ---------------------------------------------------------------- loader refusals */

/* Writes src's parameters (with edits) as dir/model.safetensors next to src_dir's config.json:
 * rename_bare strips the "model." prefix, extra adds a tensor, bad_shape transposes one 2-D
 * tensor's shape, head adds lm_head.weight (= the embeddings, or perturbed). */
static dec_model *rewrite_and_load(const dec_model *src, const char *src_dir, int rename_bare, const char *extra,
                                   const char *bad_shape, int head, kn_err *err) {
    char dir[] = "/tmp/knwb_test_decoder_load_XXXXXX", p[256], q[256];
    if (!mkdtemp(dir)) return NULL;
    int n = src->nparams, k = 0;
    const char **names = calloc(n + 2, sizeof *names);
    int *nd = calloc(n + 2, sizeof *nd);
    int64_t (*sh)[8] = calloc(n + 2, sizeof *sh);
    const float **data = calloc(n + 2, sizeof *data);
    float *pert = NULL;
    for (int i = 0; i < n; i++, k++) {
        const kn_param *pp = &src->params[i];
        names[k] = rename_bare && strncmp(pp->name, "model.", 6) == 0 ? pp->name + 6 : pp->name;
        nd[k] = pp->ndim;
        sh[k][0] = pp->shape[0];
        sh[k][1] = pp->shape[1];
        if (bad_shape && strcmp(pp->name, bad_shape) == 0) { sh[k][0] = pp->shape[1]; sh[k][1] = pp->shape[0]; }
        data[k] = pp->data;
    }
    if (extra) { names[k] = extra; nd[k] = 1; sh[k][0] = 4; data[k++] = src->params[0].data; }
    if (head) {
        const kn_param *e = &src->params[0];
        pert = malloc(sizeof(float) * e->numel);
        memcpy(pert, e->data, sizeof(float) * e->numel);
        if (head == 2) pert[17] += 1e-3f;
        names[k] = "lm_head.weight"; nd[k] = 2; sh[k][0] = e->shape[0]; sh[k][1] = e->shape[1]; data[k++] = pert;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_write(p, k, names, nd, (const int64_t (*)[8])sh, data, err);
    snprintf(q, sizeof q, "%s/config.json", dir);
    snprintf(p, sizeof p, "%s/config.json", src_dir);
    copy_file(p, q);
    dec_model *m = dec_model_load(dir, err);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    unlink(q);
    rmdir(dir);
    free(names); free(nd); free(sh); free(data); free(pert);
    return m;
}

static void loader_checks(void) {
    kn_err err = { "" };
    dec_model *src = dec_model_load(FIX "llama_tied", &err);
    CHECK(src != NULL, "llama_tied loads (%s)", src ? "ok" : err.msg);
    if (!src) return;
    dec_model *m = rewrite_and_load(src, FIX "llama_tied", 1, NULL, NULL, 0, &err);
    int same = m != NULL && m->nparams == src->nparams;
    for (int i = 0; same && i < m->nparams; i++)
        same = memcmp(m->params[i].data, src->params[i].data, sizeof(float) * m->params[i].numel) == 0;
    CHECK(same, "names without the model. prefix load the same weights (%s)", m ? "ok" : err.msg);
    dec_model_free(m);
    m = rewrite_and_load(src, FIX "llama_tied", 0, "model.layers.0.mlp.extra_proj.weight", NULL, 0, &err);
    CHECK(m == NULL, "an unknown tensor is refused");
    CHECK_MSG(err.msg, "model.layers.0.mlp.extra_proj.weight", "unknown tensor");
    dec_model_free(m);
    m = rewrite_and_load(src, FIX "llama_tied", 0, NULL, "model.layers.1.self_attn.k_proj.weight", 0, &err);
    CHECK(m == NULL, "a tensor of the wrong shape is refused");
    CHECK_MSG(err.msg, "'model.layers.1.self_attn.k_proj.weight' has shape [24, 8], expected [8, 24]", "wrong shape");
    dec_model_free(m);
    m = rewrite_and_load(src, FIX "llama_tied", 0, NULL, NULL, 1, &err);
    CHECK(m != NULL && m->w.head == m->w.tok_emb, "a tied checkpoint storing lm_head.weight equal to the embeddings loads (%s)",
          m ? "ok" : err.msg);
    dec_model_free(m);
    m = rewrite_and_load(src, FIX "llama_tied", 0, NULL, NULL, 2, &err);
    CHECK(m == NULL, "a tied checkpoint whose lm_head.weight differs from the embeddings is refused");
    CHECK_MSG(err.msg, "lm_head.weight", "tied head");
    dec_model_free(m);
    dec_model_free(src);
}

/* Left padding: a row padded on the left, with positions cumsum(mask) - 1 as HF's generate
 * passes them, gives the unpadded sequence's logits and activations at its real tokens. */
static void left_padding(const char *name) {
    kn_err err = { "" };
    char tmpdir[256];
    dec_model *m = load_case(name, tmpdir);
    if (!m) return;
    enum { T = 7, PAD = 3 };
    int V = m->cfg.vocab_size, F = m->cfg.ffn;
    int ids[2 * T], am[2 * T], pos[2 * T], rows[2 * T];
    for (int t = 0; t < T; t++) {
        ids[t] = (37 * t + 11) % V;                     /* row 0: T real tokens */
        ids[T + t] = t < PAD ? 0 : ids[t - PAD];        /* row 1: PAD pads, then row 0's first T - PAD */
        am[t] = 1;
        am[T + t] = t >= PAD;
        pos[t] = t;
        pos[T + t] = t < PAD ? 0 : t - PAD;
    }
    for (int i = 0; i < 2 * T; i++) rows[i] = i;
    dec_acts *a = dec_acts_new(m, 2, T, 2 * T, &err);
    int rc = dec_forward(m, a, ids, am, pos, 2, T, rows, 2 * T, NULL, 0, &err);
    double dl = 0, da = 0, scale = 0;
    int64_t NF = (int64_t)a->B * a->T * F;
    for (int t = PAD; t < T; t++) {
        const float *x = a->logits + (int64_t)(T + t) * V, *y = a->logits + (int64_t)(t - PAD) * V;
        for (int j = 0; j < V; j++) { dl = fmax(dl, fabs(x[j] - y[j])); scale = fmax(scale, fabs(y[j])); }
        for (int l = 0; l < m->cfg.layers; l++) {
            const float *u = a->act + l * NF + (int64_t)(T + t) * F, *w = a->act + l * NF + (int64_t)(t - PAD) * F;
            for (int j = 0; j < F; j++) da = fmax(da, fabs(u[j] - w[j]));
        }
    }
    CHECK(rc == 0 && dl <= 1e-5 * scale && da < 1e-5, "%s: left-padded row (%d pads, positions cumsum - 1) = the unpadded one: logits max |diff| %.1e (scale %.1f), ffn.act %.1e",
          name, PAD, dl, scale, da);
    dec_acts_free(a);
    dec_model_free(m);
    cleanup_tmp(tmpdir);
}

/* Every allocation of the loader, the arena, IG and generation failing in turn: each call
 * reports it and leaks nothing (ASan's leak check runs on the sanitizer build). */
static void alloc_failures(void) {
    const char *dirs[] = { FIX "llama_sharded", FIX "llama_bf16" };
    int reported = 0, calls = 0, bad = 0;
    for (int d = 0; d < 2; d++)
        for (long n = 1; n < 400; n++) {
            kn_err err = { "" };
            kn_alloc_fail_after(n);
            dec_model *m = dec_model_load(dirs[d], &err);
            int ids[5] = { 1, 7, 9, 11, 4 }, tpos = 4, tg = 5, out[3];
            float sc[64];
            int rc = -1;
            if (m) {
                rc = dec_ig(m, ids, 5, 4, &tpos, &tg, 1, 1, KN_QUAD_GAUSS, 3, 0, sc, NULL, NULL, &err);
                if (rc == 0) rc = dec_generate(m, ids, 5, 3, out, &err);
            }
            kn_alloc_fail_after(0);
            calls++;
            if (m && rc == 0) { dec_model_free(m); break; } /* n passed the last allocation */
            if (err.msg[0]) reported++;
            else bad++;
            dec_model_free(m);
        }
    CHECK(bad == 0 && reported > 10, "allocation failures in load/IG/generate: %d runs, %d reported, %d silent", calls, reported, bad);
}

int main(void) {
    static const char *cases[] = { "gpt2", "gpt2_noprefix", "llama", "llama_tied", "llama3_rope", "llama_linear_rope",
                                   "qwen2", "mistral", "llama_bf16", "llama_sharded" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i]);

    dec_config g = { .model_type = "gpt2", .family = DEC_GPT2, .vocab_size = 23, .hidden = 12, .layers = 2, .heads = 3,
                     .kv_heads = 3, .head_dim = 4, .ffn = 20, .max_pos = 16, .norm = DEC_LAYERNORM, .norm_eps = 1e-5f,
                     .act = KN_ACT_GELU_TANH, .learned_pos = 1, .qkv_bias = 1, .out_bias = 1, .mlp_bias = 1, .tied = 1 };
    fd_model("tiny gpt2 (tied, right-aligned rows)", &g, 0);
    fd_model("tiny gpt2 (left padding)", &g, 1);
    dec_config l = { .model_type = "llama", .family = DEC_LLAMA, .vocab_size = 23, .hidden = 12, .layers = 2, .heads = 4,
                     .kv_heads = 2, .head_dim = 4, .ffn = 18, .max_pos = 64, .norm = DEC_RMSNORM, .norm_eps = 1e-5f,
                     .act = KN_ACT_SILU, .gated = 1, .learned_pos = 0,
                     .rope = { .type = KN_ROPE_LLAMA3, .theta = 500000, .factor = 8, .low_freq_factor = 1,
                               .high_freq_factor = 4, .original_max_position_embeddings = 16 },
                     .qkv_bias = 1, .out_bias = 1, .tied = 0 };
    fd_model("tiny llama (GQA 4/2, q/k/v/o biases, llama3 RoPE, untied, left padding)", &l, 1);
    l.tied = 1;
    l.out_bias = 0;
    l.rope.type = KN_ROPE_DEFAULT;
    fd_model("tiny llama (tied, qwen2-style q/k/v biases, default RoPE)", &l, 0);
    bad_configs();
    bad_inputs();
    loader_checks();
    left_padding("gpt2");
    alloc_failures();
    left_padding("llama");
    return check_done();
}
