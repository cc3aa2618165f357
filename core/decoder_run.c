/* decoder_run.c: what is run on the decoder passes of decoder.c: the gradient of a target's
 * probability at the head rows, integrated gradients at one position (Dai et al., left Riemann
 * sum as their code), HF's causal-LM loss with every parameter's gradient (for the trainer),
 * and greedy generation with a key/value cache. */
#include "decoder.h"
#include "alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dec_objective_grad(const dec_acts *a, int V, const int *target, int use_log, float *dlogits, double *obj) {
    for (int p = 0; p < a->p; p++) {
        const float *lg = a->logits + (int64_t)p * V;
        float *d = dlogits + (int64_t)p * V;
        float mx = lg[0];
        for (int j = 1; j < V; j++) if (lg[j] > mx) mx = lg[j];
        double lse = softmax_row(d, lg, V); /* d = probs */
        double logp = (double)lg[target[p]] - mx - lse, P = exp(logp);
        /* d log P / d logit_j = [j = t] - p_j;  d P / d logit_j = P ([j = t] - p_j) */
        float scale = use_log ? 1.0f : (float)P;
        for (int j = 0; j < V; j++) d[j] = -scale * d[j];
        d[target[p]] += scale;
        if (obj) obj[p] = use_log ? logp : P;
    }
}

/* Per quadrature row r (head rows r*nt .. r*nt+nt-1): O_r and dlogits for O = exp(sum log P)
 * (d/dlogits = O * sum_j ([y_j] - p_j)) or sum log P; rows with weight 0 get no gradient. */
static void mt_objective(const dec_acts *a, int V, int nt, int rows, const int *targets, int use_log, const double *weight,
                         float *dlogits, double *obj) {
    for (int r = 0; r < rows; r++) {
        double logp = 0;
        for (int j = 0; j < nt; j++) {
            int64_t h = (int64_t)r * nt + j;
            const float *lg = a->logits + h * V;
            float *d = dlogits + h * V;
            float mx = lg[0];
            for (int v = 1; v < V; v++) if (lg[v] > mx) mx = lg[v];
            double lse = softmax_row(d, lg, V); /* d = probs */
            logp += (double)lg[targets[j]] - mx - lse;
        }
        obj[r] = use_log ? logp : exp(logp);
        float scale = weight[r] == 0.0 ? 0.0f : use_log ? 1.0f : (float)obj[r];
        for (int j = 0; j < nt; j++) {
            float *d = dlogits + ((int64_t)r * nt + j) * V;
            for (int v = 0; v < V; v++) d[v] = -scale * d[v];
            d[targets[j]] += scale;
        }
    }
}

int dec_ig(const dec_model *m, const int *ids, int T, int pos, const int *tpos, const int *targets, int nt, int layer,
           kn_quadrature quad, int steps, int use_log, float *scores, double *p_full, double *p_zero, kn_err *err) {
    const dec_config *c = &m->cfg;
    int C = c->hidden, F = c->ffn, V = c->vocab_size;
    if (layer < 0 || layer >= c->layers) return kn_fail(err, "layer %d out of range [0, %d)", layer, c->layers);
    if (pos < 0 || pos >= T) return kn_fail(err, "position %d out of range [0, %d)", pos, T);
    if (nt < 1) return kn_fail(err, "integrated gradients: %d target tokens, need at least 1", nt);
    for (int j = 0; j < nt; j++) {
        if (targets[j] < 0 || targets[j] >= V) return kn_fail(err, "target %d: id %d out of range [0, %d)", j + 1, targets[j], V);
        if (tpos[j] < pos || tpos[j] >= T)
            return kn_fail(err, "target %d: predicting row %d out of range [%d, %d) (the attributed position to the end)", j + 1,
                           tpos[j], pos, T);
    }
    if (steps < 1) return kn_fail(err, "integrated gradients: steps %d must be >= 1", steps);
    /* the quadrature points, plus an alpha = 0 row of weight 0 when the rule has none (P(0)) */
    double *alpha = kn_malloc(sizeof(double) * ((size_t)steps + 1)), *weight = kn_malloc(sizeof(double) * ((size_t)steps + 1));
    if (!alpha || !weight) { free(alpha); free(weight); return kn_fail(err, "out of memory for %d steps", steps); }
    if (kn_quadrature_points(quad, steps, alpha, weight, err) != 0) { free(alpha); free(weight); return -1; }
    int zero_k = -1;
    for (int k = 0; k < steps && zero_k < 0; k++) if (alpha[k] == 0.0) zero_k = k;
    int R = steps;
    if (zero_k < 0) { alpha[R] = 0.0; weight[R] = 0.0; zero_k = R++; }
    dec_acts *a = dec_acts_new(m, R, T, R * nt, err);
    if (!a) { free(alpha); free(weight); return -1; }
    int rc = -1;
    float *w = kn_malloc(sizeof(float) * (size_t)F);
    float *vals = kn_malloc(sizeof(float) * (size_t)R * F);
    float *dlogits = kn_malloc(sizeof(float) * (size_t)R * nt * V);
    float *g = kn_malloc(sizeof(float) * (size_t)R * T * F);
    double *obj = kn_malloc(sizeof(double) * (size_t)R);
    int *rows = kn_malloc(sizeof(int) * (size_t)R * nt);
    kn_intervention *iv = kn_calloc((size_t)R, sizeof *iv);
    float **dact = kn_calloc((size_t)c->layers, sizeof *dact);
    if (!w || !vals || !dlogits || !g || !obj || !rows || !iv || !dact) { kn_fail(err, "out of memory"); goto done; }
    /* the prompt once: O(w) and w, the activation at (layer, pos) */
    if (dec_forward(m, a, ids, NULL, NULL, 1, T, tpos, nt, NULL, 0, err) != 0) goto done;
    double one = 1.0;
    mt_objective(a, V, nt, 1, targets, use_log, &one, dlogits, obj);
    if (p_full) *p_full = obj[0];
    int64_t NC = (int64_t)a->B * a->T * C, NF = (int64_t)a->B * a->T * F, tc = (int64_t)T * C;
    memcpy(w, a->act + layer * NF + (int64_t)pos * F, sizeof(float) * F);
    /* every row starts at `layer` from the prompt's state there (the layers below are equal) */
    for (int k = 1; k < R; k++) {
        memcpy(a->x + layer * NC + k * tc, a->x + layer * NC, sizeof(float) * tc);
        memcpy(a->keymask + (int64_t)k * T, a->keymask, sizeof(float) * T);
        memcpy(a->ids + (int64_t)k * T, a->ids, sizeof(int) * T);
        memcpy(a->pos + (int64_t)k * T, a->pos, sizeof(int) * T);
        if (!c->learned_pos) {
            memcpy(a->rcos + (int64_t)k * T * c->head_dim, a->rcos, sizeof(float) * T * c->head_dim);
            memcpy(a->rsin + (int64_t)k * T * c->head_dim, a->rsin, sizeof(float) * T * c->head_dim);
        }
    }
    for (int k = 0; k < R; k++) {
        float al = (float)alpha[k];
        for (int i = 0; i < F; i++) vals[(int64_t)k * F + i] = al * w[i];
        iv[k] = (kn_intervention){ .layer = layer, .row = k, .pos = pos, .op = KN_SET, .n = 0, .val = vals + (int64_t)k * F };
        for (int j = 0; j < nt; j++) rows[k * nt + j] = k * T + tpos[j];
    }
    if (dec_forward_from(m, a, layer, R, T, rows, R * nt, iv, R, err) != 0) goto done;
    mt_objective(a, V, nt, R, targets, use_log, weight, dlogits, obj);
    if (p_zero) *p_zero = obj[zero_k];
    dact[layer] = g;
    if (dec_backward(m, a, dlogits, layer, dact, NULL, err) != 0) goto done;
    for (int i = 0; i < F; i++) {
        double s = 0;
        for (int k = 0; k < R; k++) s += weight[k] * g[((int64_t)k * T + pos) * F + i];
        scores[i] = (float)(w[i] * s);
    }
    rc = 0;
done:
    free(alpha); free(weight);
    free(w); free(vals); free(dlogits); free(g); free(obj); free(rows); free(iv); free(dact);
    dec_acts_free(a);
    return rc;
}

int dec_lm_loss(const dec_model *m, dec_acts *a, const int *ids, const int *attn, const int *pos, const int *labels,
                int B, int T, double *loss, float *grads, kn_err *err) {
    int V = m->cfg.vocab_size, n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            int y = labels[b * T + t + 1];
            if (y == -100) continue;
            if (y < 0 || y >= V) return kn_fail(err, "label %d at row %d, position %d out of range [0, %d) (or -100)", y, b, t + 1, V);
            n++;
        }
    if (n == 0) return kn_fail(err, "LM loss: no label other than -100 after the first position of any row");
    if (n > a->P) return kn_fail(err, "LM loss: %d predicted positions exceed the arena's %d head rows", n, a->P);
    int *rows = kn_malloc(sizeof(int) * n), *tg = kn_malloc(sizeof(int) * n);
    float *dl = kn_malloc(sizeof(float) * (size_t)n * V);
    int rc = -1;
    if (!rows || !tg || !dl) { kn_fail(err, "out of memory"); goto done; }
    n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++)
            if (labels[b * T + t + 1] != -100) {
                rows[n] = b * T + t;
                tg[n++] = labels[b * T + t + 1];
            }
    if (dec_forward(m, a, ids, attn, pos, B, T, rows, n, NULL, 0, err) != 0) goto done;
    /* mean cross-entropy: d/d logit_j = (p_j - [j = y]) / n */
    double sum = 0;
    for (int p = 0; p < n; p++) {
        const float *lg = a->logits + (int64_t)p * V;
        float *d = dl + (int64_t)p * V;
        float mx = lg[0];
        for (int j = 1; j < V; j++) if (lg[j] > mx) mx = lg[j];
        double lse = softmax_row(d, lg, V);
        sum -= (double)lg[tg[p]] - mx - lse;
        for (int j = 0; j < V; j++) d[j] /= n;
        d[tg[p]] -= 1.0f / n;
    }
    *loss = sum / n;
    if (grads && dec_backward(m, a, dl, 0, NULL, grads, err) != 0) goto done;
    rc = 0;
done:
    free(rows); free(tg); free(dl);
    return rc;
}

/* ---------------------------------------------------------------- generation */

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* One token at position p through every layer, its keys and values appended to the caches
 * kc[l], vc[l] [S, NKV*D] at row p, attending to rows 0..p. The same kernels as the full
 * forward, on one query row. */
typedef struct step_buf { float *x, *h, *q, *ctx, *tmp, *pre, *up, *act, *att, *cs, *sn, *logits; float mean, rstd; } step_buf;

static int step(const dec_model *m, step_buf *s, float **kc, float **vc, int tok, int p) {
    const dec_config *c = &m->cfg;
    int C = c->hidden, F = c->ffn, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim;
    int ld = c->family == DEC_GPT2 ? 3 * C : 0;
    int gpt2 = c->family == DEC_GPT2;
    memcpy(s->x, m->w.tok_emb + (int64_t)tok * C, sizeof(float) * C);
    if (c->learned_pos) vec_add_into(s->x, m->w.pos_emb + (int64_t)p * C, C);
    else rope_table(s->cs, s->sn, m->inv_freq, &p, 1, c->head_dim);
#define PROJ(out, in, w, b, IC, OC, LD) \
    (gpt2 ? linear_io_forward(out, in, w, b, 1, IC, OC, LD) : linear_forward(out, in, w, b, 1, IC, OC))
#define NORM(out, in, w, b) \
    (c->norm == DEC_LAYERNORM ? layernorm_forward(out, &s->mean, &s->rstd, in, w, b, 1, C, c->norm_eps) \
                              : rmsnorm_forward(out, &s->rstd, in, w, 1, C, c->norm_eps))
    for (int l = 0; l < c->layers; l++) {
        const dec_layer_weights *w = &m->w.layer[l];
        float *kr = kc[l] + (int64_t)p * KD, *vr = vc[l] + (int64_t)p * KD;
        NORM(s->h, s->x, w->ln1_w, w->ln1_b);
        PROJ(s->q, s->h, w->q_w, w->q_b, C, QD, ld);
        PROJ(kr, s->h, w->k_w, w->k_b, C, KD, ld);
        PROJ(vr, s->h, w->v_w, w->v_b, C, KD, ld);
        if (!c->learned_pos) {
            rope_forward(s->q, s->q, s->cs, s->sn, 1, c->heads, c->head_dim);
            rope_forward(kr, kr, s->cs, s->sn, 1, c->kv_heads, c->head_dim);
        }
        attn_dims d = { .B = 1, .T = p + 1, .Tq = 1, .NH = c->heads, .NKV = c->kv_heads, .hd = c->head_dim,
                        .causal = 1, .window = c->sliding_window };
        attn_forward(s->ctx, s->att, s->q, kc[l], vc[l], NULL, NULL, &d);
        PROJ(s->tmp, s->ctx, w->o_w, w->o_b, QD, C, C);
        vec_add_into(s->x, s->tmp, C);
        NORM(s->h, s->x, w->ln2_w, w->ln2_b);
        PROJ(s->pre, s->h, w->fc_w, w->fc_b, C, F, F);
        if (c->gated) {
            linear_forward(s->up, s->h, w->up_w, NULL, 1, C, F);
            glu_forward(c->act, s->act, s->pre, s->up, F);
        } else {
            act_forward(c->act, s->act, s->pre, F);
        }
        PROJ(s->tmp, s->act, w->down_w, w->down_b, F, C, C);
        vec_add_into(s->x, s->tmp, C);
    }
    NORM(s->h, s->x, m->w.lnf_w, m->w.lnf_b);
#undef PROJ
#undef NORM
    linear_forward(s->logits, s->h, m->w.head, NULL, 1, C, c->vocab_size);
    return argmax(s->logits, c->vocab_size);
}

int dec_generate(const dec_model *m, const int *prompt, int T, int n, int *out, kn_err *err) {
    const dec_config *c = &m->cfg;
    if (T < 1 || n < 0) return kn_fail(err, "generate: prompt of %d tokens and %d new ones", T, n);
    if (n == 0) return 0;
    int S = T + n - 1; /* positions fed: the prompt and every generated token but the last */
    if (S > c->max_pos)
        return kn_fail(err, "generate: %d prompt + %d new tokens need %d positions, beyond max_position_embeddings %d", T, n, S + 1,
                       c->max_pos);
    if (c->sliding_window > 0 && S > c->sliding_window)
        return kn_fail(err, "generate: %d positions exceed the sliding window %d (sliding_window)", S, c->sliding_window);
    for (int i = 0; i < T; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return kn_fail(err, "generate: token id %d at position %d out of range [0, %d)", prompt[i], i, c->vocab_size);
    int C = c->hidden, F = c->ffn, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim, L = c->layers;
    int rc = -1;
    step_buf s = { 0 };
    float **kc = kn_calloc((size_t)2 * L, sizeof *kc), **vc = kc ? kc + L : NULL;
    float *cache = kn_malloc(sizeof(float) * (size_t)2 * L * S * KD);
    float *buf = kn_malloc(sizeof(float) * ((size_t)4 * C + 2 * QD + 3 * F + (size_t)c->heads * S + 2 * c->head_dim + c->vocab_size));
    dec_acts *a = dec_acts_new(m, 1, T, 1, err);
    if (!a) goto done;
    if (!kc || !cache || !buf) { kn_fail(err, "out of memory for a KV cache of %d positions", S); goto done; }
    float *b = buf;
    s.x = b; b += C; s.h = b; b += C; s.tmp = b; b += 2 * C;
    s.q = b; b += QD; s.ctx = b; b += QD;
    s.pre = b; b += F; s.up = b; b += F; s.act = b; b += F;
    s.att = b; b += (int64_t)c->heads * S; s.cs = b; b += c->head_dim; s.sn = b; b += c->head_dim; s.logits = b;
    for (int l = 0; l < L; l++) {
        kc[l] = cache + (int64_t)l * S * KD;
        vc[l] = cache + (int64_t)(L + l) * S * KD;
    }
    /* the prompt as one forward; its (rotated) keys and values fill the caches */
    int last = T - 1;
    if (dec_forward(m, a, prompt, NULL, NULL, 1, T, &last, 1, NULL, 0, err) != 0) goto done;
    out[0] = argmax(a->logits, c->vocab_size);
    int64_t NK = (int64_t)a->B * a->T * KD;
    for (int l = 0; l < L; l++) {
        memcpy(kc[l], a->k + l * NK, sizeof(float) * (size_t)T * KD);
        memcpy(vc[l], a->v + l * NK, sizeof(float) * (size_t)T * KD);
    }
    for (int i = 1; i < n; i++) out[i] = step(m, &s, kc, vc, out[i - 1], T + i - 1);
    rc = 0;
done:
    dec_acts_free(a);
    free(kc);
    free(cache);
    free(buf);
    return rc;
}
