/* ig.c: integrated gradients on ffn.act at the mask position (see ig.h). */
#include "ig.h"
#include "alloc.h"
#include "objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int kn_quadrature_parse(const char *name) {
    static const char *names[] = { "left", "right", "midpoint", "trapezoid", "gauss" };
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

/* Gauss-Legendre nodes on [-1, 1] by Newton's method on P_m, mapped to [0, 1]. */
static void gauss_legendre(int m, double *x, double *w) {
    for (int i = 0; i < m; i++) {
        double z = cos(M_PI * (i + 0.75) / (m + 0.5)), pp = 0;
        for (int it = 0; it < 100; it++) {
            double p1 = 1, p2 = 0;
            for (int j = 1; j <= m; j++) {
                double p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j - 1) * z * p2 - (j - 1.0) * p3) / j;
            }
            pp = m * (z * p1 - p2) / (z * z - 1);
            double dz = p1 / pp;
            z -= dz;
            if (fabs(dz) < 1e-15) break;
        }
        x[m - 1 - i] = 0.5 * (z + 1);
        w[m - 1 - i] = 1.0 / ((1 - z * z) * pp * pp); /* = (2/((1-z^2)P'^2)) / 2 on [0,1] */
    }
}

int kn_quadrature_points(kn_quadrature q, int m, double *alpha, double *weight, kn_err *err) {
    if (m < 1) return kn_fail(err, "integrated gradients: steps %d must be >= 1", m);
    switch (q) {
    case KN_QUAD_LEFT: for (int k = 0; k < m; k++) { alpha[k] = (double)k / m; weight[k] = 1.0 / m; } break;
    case KN_QUAD_RIGHT: for (int k = 0; k < m; k++) { alpha[k] = (k + 1.0) / m; weight[k] = 1.0 / m; } break;
    case KN_QUAD_MIDPOINT: for (int k = 0; k < m; k++) { alpha[k] = (k + 0.5) / m; weight[k] = 1.0 / m; } break;
    case KN_QUAD_TRAPEZOID:
        if (m < 2) return kn_fail(err, "integrated gradients: the trapezoid rule needs steps >= 2, got %d", m);
        for (int k = 0; k < m; k++) {
            alpha[k] = (double)k / (m - 1);
            weight[k] = (k == 0 || k == m - 1) ? 0.5 / (m - 1) : 1.0 / (m - 1);
        }
        break;
    case KN_QUAD_GAUSS: gauss_legendre(m, alpha, weight); break;
    default: return kn_fail(err, "integrated gradients: unknown quadrature %d", (int)q);
    }
    return 0;
}

/* Arena pairs are kept per exact shape (tokens, rows): an arena larger than its batch is not
 * used here, because the IG path's patch/forward/backward were written for arenas of the batch's
 * own size (a reused larger arena gave other numbers). Prompts of a fact set come in a handful of
 * lengths, so a few pairs serve a whole run; the least recently used pair makes room. */
#define KN_IG_WS_PAIRS 8
typedef struct { const bert_config *cfg; int T, rows; unsigned long used; bert_acts *one, *many; } ws_pair;

/* kn_ig's per-call buffers */
enum { B_ALPHA, B_WEIGHT, B_VALS, B_HEAD, B_TGT, B_WROW, B_DLOGITS, B_PV, B_DACT, B_COUNT };

struct kn_ig_ws {
    ws_pair pair[KN_IG_WS_PAIRS];
    unsigned long clock;
    void *buf[B_COUNT];
    size_t cap[B_COUNT];
};

kn_ig_ws *kn_ig_ws_new(void) { return kn_calloc(1, sizeof(kn_ig_ws)); }

void kn_ig_ws_free(kn_ig_ws *ws) {
    if (!ws) return;
    for (int i = 0; i < KN_IG_WS_PAIRS; i++) { bert_acts_free(ws->pair[i].one); bert_acts_free(ws->pair[i].many); }
    for (int i = 0; i < B_COUNT; i++) free(ws->buf[i]);
    free(ws);
}

/* Buffer k of at least `bytes`: the workspace's, grown when too small, or a fresh one (ws NULL). */
static void *scratch(kn_ig_ws *ws, int k, size_t bytes) {
    if (!ws) return kn_malloc(bytes);
    if (ws->cap[k] < bytes) {
        free(ws->buf[k]);
        ws->buf[k] = kn_malloc(bytes);
        ws->cap[k] = ws->buf[k] ? bytes : 0;
    }
    return ws->buf[k];
}

/* The two activation arenas for T tokens and `rows` rows: the workspace's pair of that shape
 * (zeroed, as new arenas are), or new ones. */
static int arenas(const bert_config *c, kn_ig_ws *ws, int T, int rows, bert_acts **one, bert_acts **many, kn_err *err) {
    if (!ws) {
        *one = bert_acts_new(c, 1, T, 1, err);
        *many = *one ? bert_acts_new_ex(c, rows, T, rows, KN_ACTS_INFERENCE, err) : NULL;
        return *many ? 0 : -1;
    }
    ws_pair *p = NULL, *lru = &ws->pair[0];
    for (int i = 0; i < KN_IG_WS_PAIRS && !p; i++) {
        ws_pair *q = &ws->pair[i];
        if (q->many && q->cfg == c && q->T == T && q->rows == rows) p = q;
        else if (!q->many || q->used < lru->used) lru = q;
    }
    if (p) {
        memset(p->one->x, 0, (size_t)p->one->bytes);
        memset(p->many->x, 0, (size_t)p->many->bytes);
    } else {
        p = lru;
        bert_acts_free(p->one);
        bert_acts_free(p->many);
        p->one = bert_acts_new(c, 1, T, 1, err);
        p->many = p->one ? bert_acts_new_ex(c, rows, T, rows, KN_ACTS_INFERENCE, err) : NULL;
        if (!p->many) { bert_acts_free(p->one); *p = (ws_pair){ 0 }; return -1; }
        p->cfg = c; p->T = T; p->rows = rows;
    }
    p->used = ++ws->clock;
    *one = p->one;
    *many = p->many;
    return 0;
}

int kn_ig(const kn_model *m, const int *ids, const int *types, int T, int mask_pos, int target,
          const int *layers, int nlayers, const kn_ig_opts *opts, kn_ig_out *out, kn_err *err) {
    const bert_config *c = &m->cfg;
    int F = c->ffn, V = c->vocab_size;
    int steps = opts->steps;
    if (mask_pos < 0 || mask_pos >= T) return kn_fail(err, "mask position %d out of range [0, %d)", mask_pos, T);
    if (target < 0 || target >= V) return kn_fail(err, "target id %d out of range [0, %d)", target, V);
    for (int i = 0; i < nlayers; i++)
        if (layers[i] < 0 || layers[i] >= c->layers)
            return kn_fail(err, "layer %d out of range [0, %d)", layers[i], c->layers);
    if (steps < 1) return kn_fail(err, "integrated gradients: steps %d must be >= 1", steps);
    kn_ig_ws *ws = opts->ws;
    double *alpha = scratch(ws, B_ALPHA, sizeof(double) * ((size_t)steps + 1)), *weight = scratch(ws, B_WEIGHT, sizeof(double) * ((size_t)steps + 1));
    int qrc = alpha && weight ? kn_quadrature_points(opts->quad, steps, alpha, weight, err)
                              : kn_fail(err, "out of memory for %d integrated-gradients steps", steps);
    if (qrc != 0) {
        if (!ws) { free(alpha); free(weight); }
        return -1;
    }
    int chunk = opts->batch > 0 && opts->batch < steps ? opts->batch : steps;
    /* P(zero at layer l) comes from the alpha = 0 point when the rule has one (left Riemann,
     * trapezoid); otherwise one extra row of the first chunk carries alpha = 0, with no gradient */
    int zero_k = -1;
    for (int k = 0; k < steps && zero_k < 0; k++) if (alpha[k] == 0.0) zero_k = k;
    int rows = chunk + (zero_k < 0);

    int rc = -1;
    bert_acts *one = NULL, *many = NULL;
    int have_arenas = arenas(c, ws, T, rows, &one, &many, err) == 0;
    float *vals = scratch(ws, B_VALS, sizeof(float) * (size_t)rows * F);
    int *head = scratch(ws, B_HEAD, sizeof(int) * rows), *tgt = scratch(ws, B_TGT, sizeof(int) * rows);
    float *wrow = scratch(ws, B_WROW, sizeof(float) * rows), *dlogits = scratch(ws, B_DLOGITS, sizeof(float) * (size_t)rows * V);
    double *pv = scratch(ws, B_PV, sizeof(double) * rows);
    float **dffn = kn_calloc(c->layers, sizeof(float *));
    float *dact = scratch(ws, B_DACT, sizeof(float) * (size_t)rows * T * F);
    double *grad_acc = kn_malloc(sizeof(double) * F);
    if (!have_arenas) goto done;
    if (!alpha || !weight || !vals || !head || !tgt || !wrow || !dlogits || !pv || !dffn || !dact || !grad_acc) {
        kn_fail(err, "out of memory in integrated gradients (%d rows of %d tokens)", rows, T);
        goto done;
    }

    int mrow = mask_pos;
    if (bert_forward(m, one, ids, types, NULL, 1, T, &mrow, 1, NULL, 0, err) != 0) goto done;
    kn_target_objective(one->logits, 1, V, &target, opts->use_log, NULL, &out->p_full, NULL);
    for (int r = 0; r < rows; r++) { head[r] = r * T + mask_pos; tgt[r] = target; }
    int64_t NF1 = (int64_t)T * F;

    for (int li = 0; li < nlayers; li++) {
        int l = layers[li];
        const float *w = one->ffn_act + (int64_t)l * NF1 + (int64_t)mask_pos * F;
        memcpy(out->acts + (int64_t)li * F, w, sizeof(float) * F);
        memset(grad_acc, 0, sizeof(double) * F);
        out->p_zero[li] = 0;
        for (int k0 = 0; k0 < steps; k0 += chunk) {
            int n = steps - k0 < chunk ? steps - k0 : chunk;
            int extra = zero_k < 0 && k0 == 0, B = n + extra;
            /* every row is the unmodified run up to layer l, with the mask-position ffn.act
             * replaced by alpha_k * w: only that position of layer l is recomputed */
            for (int r = 0; r < B; r++) {
                double a = r < n ? alpha[k0 + r] : 0.0;
                for (int i = 0; i < F; i++) vals[(int64_t)r * F + i] = (float)(a * w[i]);
                wrow[r] = r < n ? 1.0f : 0.0f;
            }
            if (bert_layer_patch(m, many, one, l, B, T, mask_pos, vals, err) != 0) goto done;
            if (bert_forward_from(m, many, l + 1, B, T, head, B, NULL, 0, err) != 0) goto done;
            kn_target_objective(many->logits, B, V, tgt, opts->use_log, wrow, pv, dlogits);
            if (extra) out->p_zero[li] = pv[n];
            else if (zero_k >= k0 && zero_k < k0 + n) out->p_zero[li] = pv[zero_k - k0];
            dffn[l] = dact;
            if (bert_backward(m, many, dlogits, l, dffn, NULL, err) != 0) goto done;
            dffn[l] = NULL;
            for (int r = 0; r < n; r++) {
                const float *g = dact + ((int64_t)r * T + mask_pos) * F;
                double wk = weight[k0 + r];
                for (int i = 0; i < F; i++) grad_acc[i] += wk * g[i];
            }
        }
        double s = 0;
        float *sc = out->scores + (int64_t)li * F;
        for (int i = 0; i < F; i++) {
            sc[i] = (float)(w[i] * grad_acc[i]);
            s += sc[i];
        }
        out->score_sum[li] = s;
    }
    rc = 0;
done:
    if (!ws) {
        bert_acts_free(one);
        bert_acts_free(many);
        free(alpha); free(weight); free(vals); free(head); free(tgt); free(wrow); free(dlogits);
        free(pv); free(dact);
    }
    free(dffn); free(grad_acc);
    return rc;
}
