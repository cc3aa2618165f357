/* bert.c: the BERT forward and backward passes over an activation arena, with interventions
 * on ffn.act. Post-LN encoder as in Hugging Face BertForMaskedLM:
 *   h1 = LN1(x + Wo . attn(x) + bo),  act = f(W1 . h1 + b1),  out = LN2(h1 + W2 . act + b2)
 * and the MLM head (dense, act, LN, decoder + bias) only at the rows asked for. The activation
 * (act above, hidden_act: erf GELU, tanh GELU, ReLU) is the same in the FFN and the head, as in
 * HF; the decoder is the word-embedding matrix when tied, its own tensor when untied. */
#include "bert.h"
#include "alloc.h"
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena */

typedef struct plan { const char *name; float **ptr; int64_t n; } plan;

static int plan_acts(const bert_config *c, bert_acts *a, int B, int T, int P, int flags, plan *out) {
    int64_t N = (int64_t)B * T, C = c->hidden, F = c->ffn, L = c->layers, NH = c->heads;
    int n = 0;
#define A(field, count) out[n++] = (plan){ #field, &a->field, (count) }
    /* Under KN_ACTS_INFERENCE the caches that only weight gradients read share buffers: the
     * layer inputs x alternate between two, ctx, h1 and ffn.act keep one layer */
    int inf = flags & KN_ACTS_INFERENCE;
    A(x, (inf ? 2 : L + 1) * N * C);
    A(emb_in, N * C);
    A(emb_mean, N); A(emb_rstd, N);
    A(q, L * N * C); A(k, L * N * C); A(v, L * N * C); A(ctx, (inf ? 1 : L) * N * C);
    A(att, L * B * NH * T * T);
    A(ln1_in, L * N * C); A(h1, (inf ? 1 : L) * N * C);
    A(ln1_mean, L * N); A(ln1_rstd, L * N);
    A(ffn_pre, L * N * F); A(ffn_act, (inf ? 1 : L) * N * F);
    A(ln2_in, L * N * C);
    A(ln2_mean, L * N); A(ln2_rstd, L * N);
    A(keymask, N);
    A(head_in, P * C); A(head_pre, P * C); A(head_act, P * C); A(head_ln, P * C);
    A(head_mean, P); A(head_rstd, P);
    A(logits, P * (int64_t)c->vocab_size);
    A(dx, N * C); A(dh1, N * C); A(dtmp, N * C); A(dq, N * C); A(dk, N * C); A(dv, N * C); A(dctx, N * C);
    A(dffn, N * F); A(dffn_pre, N * F);
    A(datt, B * NH * T * T);
    A(dhead, 2 * P * C);
#undef A
    return n;
}

int64_t bert_acts_bytes(const bert_config *cfg, int B, int T, int P, int flags) {
    bert_acts a;
    plan p[64];
    int n = plan_acts(cfg, &a, B, T, P, flags, p);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += p[i].n * (int64_t)sizeof(float) + 64;
    return total + (int64_t)P * sizeof(int);
}

bert_acts *bert_acts_new(const bert_config *cfg, int B, int T, int P, kn_err *err) {
    return bert_acts_new_ex(cfg, B, T, P, 0, err);
}

bert_acts *bert_acts_new_ex(const bert_config *cfg, int B, int T, int P, int flags, kn_err *err) {
    if (B < 1 || T < 1 || P < 0) { kn_fail(err, "activation arena: bad sizes B=%d T=%d P=%d", B, T, P); return NULL; }
    if (T > cfg->max_pos) {
        kn_fail(err, "sequence of %d tokens exceeds max_position_embeddings %d", T, cfg->max_pos);
        return NULL;
    }
    bert_acts *a = kn_calloc(1, sizeof *a);
    if (!a) { kn_fail(err, "out of memory for an activation arena"); return NULL; }
    plan p[64];
    int n = plan_acts(cfg, a, B, T, P, flags, p);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (p[i].n + 16) & ~(int64_t)15; /* 64-byte aligned slices */
    float *mem = kn_aligned_alloc((size_t)total * sizeof(float) + 64);
    if (!mem) {
        free(a);
        kn_fail(err, "out of memory: activations for %d x %d tokens need %.1f MB", B, T, total * 4.0 / 1e6);
        return NULL;
    }
    memset(mem, 0, (size_t)total * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        *p[i].ptr = mem + off;
        off += (p[i].n + 16) & ~(int64_t)15;
    }
    a->head_rows = kn_calloc((size_t)P + 1, sizeof(int));
    a->ids = kn_calloc((size_t)B * T, sizeof(int));
    a->types = kn_calloc((size_t)B * T, sizeof(int));
    if (!a->head_rows || !a->ids || !a->types) {
        bert_acts_free(a);
        kn_fail(err, "out of memory: activations for %d x %d tokens", B, T);
        return NULL;
    }
    a->B = B; a->T = T; a->P = P;
    a->L = cfg->layers; a->F = cfg->ffn;
    a->flags = flags;
    a->bytes = total * (int64_t)sizeof(float);
    return a;
}

void bert_acts_free(bert_acts *a) {
    if (!a) return;
    free(a->x); /* the first slice is the start of the arena */
    free(a->head_rows);
    free(a->ids);
    free(a->types);
    free(a);
}

/* ---------------------------------------------------------------- interventions */

static void apply_interventions(float *act, int l, int B, int T, int F, const kn_intervention *iv, int niv) {
    for (int j = 0; j < niv; j++) {
        const kn_intervention *v = &iv[j];
        if (v->layer != l) continue;
        for (int b = 0; b < B; b++) {
            if (v->row >= 0 && v->row != b) continue;
            for (int t = 0; t < T; t++) {
                if (v->pos >= 0 && v->pos != t) continue;
                float *z = act + ((int64_t)b * T + t) * F;
                int cnt = v->n ? v->n : F;
                for (int s = 0; s < cnt; s++) {
                    int i = v->n ? v->idx[s] : s;
                    float val = v->val ? v->val[s] : v->scalar;
                    if (v->op == KN_SET) z[i] = val;
                    else if (v->op == KN_SCALE) z[i] *= val;
                    else z[i] += val;
                }
            }
        }
    }
}

/* Gradient through the interventions: a set neuron passes no gradient to GELU, a scaled one
 * passes it scaled, an added constant passes it unchanged. */
static void intervention_backward(float *d, int l, int B, int T, int F, const kn_intervention *iv, int niv) {
    for (int j = niv - 1; j >= 0; j--) {
        const kn_intervention *v = &iv[j];
        if (v->layer != l || v->op == KN_ADD) continue;
        for (int b = 0; b < B; b++) {
            if (v->row >= 0 && v->row != b) continue;
            for (int t = 0; t < T; t++) {
                if (v->pos >= 0 && v->pos != t) continue;
                float *z = d + ((int64_t)b * T + t) * F;
                int cnt = v->n ? v->n : F;
                for (int s = 0; s < cnt; s++) {
                    int i = v->n ? v->idx[s] : s;
                    z[i] = v->op == KN_SET ? 0.0f : z[i] * (v->val ? v->val[s] : v->scalar);
                }
            }
        }
    }
}

/* Non-finite values are refused where they first appear, so that a NaN never reaches a printed
 * probability or a stored score. The weights are finite at load (model.c), so what makes one is
 * an intervention, an edited value slot or an overflow, and the message says where. */
static int first_bad(const float *x, int64_t n, int64_t *at) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) { *at = i; return 1; }
    return 0;
}

static int check_interventions(const bert_config *c, int B, int T, const kn_intervention *iv, int niv, kn_err *err) {
    for (int j = 0; j < niv; j++) {
        const kn_intervention *v = &iv[j];
        if (v->layer < 0 || v->layer >= c->layers)
            return kn_fail(err, "intervention %d: layer %d out of range [0, %d)", j + 1, v->layer, c->layers);
        if (v->row >= B) return kn_fail(err, "intervention %d: batch row %d out of range [0, %d)", j + 1, v->row, B);
        if (v->pos >= T) return kn_fail(err, "intervention %d: position %d out of range [0, %d)", j + 1, v->pos, T);
        if (v->n < 0) return kn_fail(err, "intervention %d: negative neuron count", j + 1);
        if (!v->val && !isfinite(v->scalar)) return kn_fail(err, "intervention %d: value %g is not finite", j + 1, (double)v->scalar);
        for (int s = 0; v->val && s < (v->n ? v->n : c->ffn); s++)
            if (!isfinite(v->val[s])) return kn_fail(err, "intervention %d: value %d (%g) is not finite", j + 1, s + 1, (double)v->val[s]);
        for (int s = 0; s < v->n; s++)
            if (v->idx[s] < 0 || v->idx[s] >= c->ffn)
                return kn_fail(err, "intervention %d: neuron %d out of range [0, %d)", j + 1, v->idx[s], c->ffn);
    }
    return 0;
}

/* ---------------------------------------------------------------- forward */

#define LAYER(ptr, l, per) ((ptr) + (int64_t)(l) * (per))

/* x *= mask, elementwise (dropout; the same mask scales the gradient on the way back) */
static void mul_inplace(float *x, const float *mask, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= mask[i];
}

/* Layer l's input x (l = L: the encoder output) and the caches that an inference arena shares. */
static float *x_of(const bert_acts *a, int l, int64_t per) {
    return a->x + (int64_t)(a->flags & KN_ACTS_INFERENCE ? (l & 1) : l) * per;
}
static float *shared_of(const bert_acts *a, float *base, int l, int64_t per) {
    return base + (int64_t)(a->flags & KN_ACTS_INFERENCE ? 0 : l) * per;
}

static void layer_forward(const kn_model *m, bert_acts *a, int l, int B, int T) {
    const bert_config *c = &m->cfg;
    const bert_layer_weights *w = &m->w.layer[l];
    int N = B * T, C = c->hidden, F = c->ffn;
    int64_t NC = (int64_t)a->B * a->T * C, NF = (int64_t)a->B * a->T * F, NN = (int64_t)a->B * a->T;
    const float *x = x_of(a, l, NC);
    float *q = LAYER(a->q, l, NC), *k = LAYER(a->k, l, NC), *v = LAYER(a->v, l, NC), *ctx = shared_of(a, a->ctx, l, NC);
    float *att = LAYER(a->att, l, (int64_t)a->B * c->heads * a->T * a->T);
    float *ln1_in = LAYER(a->ln1_in, l, NC), *h1 = shared_of(a, a->h1, l, NC), *ln2_in = LAYER(a->ln2_in, l, NC);
    float *pre = LAYER(a->ffn_pre, l, NF), *act = shared_of(a, a->ffn_act, l, NF);
    float *out = x_of(a, l + 1, NC);

    linear_forward(q, x, w->q_w, w->q_b, N, C, C);
    linear_forward(k, x, w->k_w, w->k_b, N, C, C);
    linear_forward(v, x, w->v_w, w->v_b, N, C, C);
    attention_forward(ctx, att, q, k, v, a->keymask, B, T, C, c->heads);
    linear_forward(ln1_in, ctx, w->ao_w, w->ao_b, N, C, C);
    if (a->drop_hidden) mul_inplace(ln1_in, LAYER(a->drop_hidden, 2 * l, NC), (int64_t)N * C);
    for (int64_t i = 0; i < (int64_t)N * C; i++) ln1_in[i] += x[i];
    layernorm_forward(h1, LAYER(a->ln1_mean, l, NN), LAYER(a->ln1_rstd, l, NN), ln1_in, w->ln1_w, w->ln1_b, N, C, c->ln_eps);
    linear_forward(pre, h1, w->ffn_in_w, w->ffn_in_b, N, C, F);
    act_forward((enum kn_act)c->act, act, pre, (int64_t)N * F);
    apply_interventions(act, l, B, T, F, a->iv, a->niv);
    if (a->drop_act) mul_inplace(act, LAYER(a->drop_act, l, NF), (int64_t)N * F);
    linear_forward(ln2_in, act, w->ffn_out_w, w->ffn_out_b, N, F, C);
    if (a->drop_hidden) mul_inplace(ln2_in, LAYER(a->drop_hidden, 2 * l + 1, NC), (int64_t)N * C);
    for (int64_t i = 0; i < (int64_t)N * C; i++) ln2_in[i] += h1[i];
    layernorm_forward(out, LAYER(a->ln2_mean, l, NN), LAYER(a->ln2_rstd, l, NN), ln2_in, w->ln2_w, w->ln2_b, N, C, c->ln_eps);
}

static void head_forward(const kn_model *m, bert_acts *a, int P) {
    const bert_config *c = &m->cfg;
    int C = c->hidden;
    const float *top = x_of(a, c->layers, (int64_t)a->B * a->T * C);
    for (int p = 0; p < P; p++) memcpy(a->head_in + (int64_t)p * C, top + (int64_t)a->head_rows[p] * C, sizeof(float) * C);
    linear_forward(a->head_pre, a->head_in, m->w.head_w, m->w.head_b, P, C, C);
    act_forward((enum kn_act)c->act, a->head_act, a->head_pre, (int64_t)P * C);
    layernorm_forward(a->head_ln, a->head_mean, a->head_rstd, a->head_act, m->w.head_ln_w, m->w.head_ln_b, P, C, c->ln_eps);
    linear_forward(a->logits, a->head_ln, m->w.decoder_w, m->w.decoder_b, P, C, c->vocab_size);
}

int bert_forward_from(const kn_model *m, bert_acts *a, int start, int B, int T,
                      const int *head_rows, int P, const kn_intervention *iv, int niv, kn_err *err) {
    const bert_config *c = &m->cfg;
    if (B < 1 || T < 1 || B > a->B || T > a->T || P > a->P)
        return kn_fail(err, "batch of %d x %d tokens with %d head rows exceeds the activation arena (%d x %d, %d)",
                       B, T, P, a->B, a->T, a->P);
    if (start < 0 || start > c->layers) return kn_fail(err, "start layer %d out of range [0, %d]", start, c->layers);
    for (int p = 0; p < P; p++) {
        if (head_rows[p] < 0 || head_rows[p] >= B * T)
            return kn_fail(err, "head row %d out of range [0, %d)", head_rows[p], B * T);
        a->head_rows[p] = head_rows[p];
    }
    if (check_interventions(c, B, T, iv, niv, err) != 0) return -1;
    /* the arena's row stride is its capacity T; a smaller T is packed densely as B*T rows */
    a->b = B; a->t = T; a->p = P;
    a->iv = iv; a->niv = niv;
    int64_t at;
    for (int l = start; l < c->layers; l++) {
        layer_forward(m, a, l, B, T);
        const float *out = x_of(a, l + 1, (int64_t)a->B * a->T * c->hidden);
        if (first_bad(out, (int64_t)B * T * c->hidden, &at)) {
            int64_t row = at / c->hidden;
            return kn_fail(err, "forward: layer %d's output is non-finite (%g) at batch row %d, position %d, hidden unit %d "
                           "(the weights were finite at load: an intervention or an edited value slot overflowed)",
                           l, (double)out[at], (int)(row / T), (int)(row % T), (int)(at % c->hidden));
        }
    }
    if (P > 0) {
        head_forward(m, a, P);
        if (first_bad(a->logits, (int64_t)P * c->vocab_size, &at)) {
            int hr = a->head_rows[at / c->vocab_size];
            return kn_fail(err, "forward: the MLM head's logit for token %d at batch row %d, position %d is non-finite (%g)",
                           (int)(at % c->vocab_size), hr / T, hr % T, (double)a->logits[at]);
        }
    }
    return 0;
}

int bert_forward(const kn_model *m, bert_acts *a, const int *ids, const int *types,
                 const int *attn, int B, int T, const int *head_rows, int P,
                 const kn_intervention *iv, int niv, kn_err *err) {
    const bert_config *c = &m->cfg;
    int C = c->hidden;
    if (B < 1 || T < 1 || B > a->B || T > a->T)
        return kn_fail(err, "batch of %d x %d tokens exceeds the activation arena (%d x %d)", B, T, a->B, a->T);
    if (T > c->max_pos) return kn_fail(err, "sequence of %d tokens exceeds max_position_embeddings %d", T, c->max_pos);
    for (int i = 0; i < B * T; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return kn_fail(err, "token id %d at row %d, position %d out of range [0, %d)", ids[i], i / T, i % T, c->vocab_size);
        if (types && (types[i] < 0 || types[i] >= c->type_vocab))
            return kn_fail(err, "token type %d at row %d, position %d out of range [0, %d)", types[i], i / T, i % T, c->type_vocab);
    }
    float *emb = a->emb_in;
    for (int i = 0; i < B * T; i++) {
        const float *we = m->w.word_emb + (int64_t)ids[i] * C;
        const float *pe = m->w.pos_emb + (int64_t)(i % T) * C;
        const float *te = m->w.type_emb + (int64_t)(types ? types[i] : 0) * C;
        float *o = emb + (int64_t)i * C;
        for (int j = 0; j < C; j++) o[j] = we[j] + pe[j] + te[j];
        a->keymask[i] = attn ? (attn[i] ? 1.0f : 0.0f) : 1.0f;
        a->ids[i] = ids[i];
        a->types[i] = types ? types[i] : 0;
    }
    layernorm_forward(a->x, a->emb_mean, a->emb_rstd, emb, m->w.emb_ln_w, m->w.emb_ln_b, B * T, C, c->ln_eps);
    return bert_forward_from(m, a, 0, B, T, head_rows, P, iv, niv, err);
}

/* Starts B rows at layer l from a single-sequence run `one` (row 0, T tokens): every row gets
 * one's layer-l state, except ffn.act at position pos, which row r replaces by vals[r*F..F);
 * only that position's FFN output and LayerNorm are recomputed. Exact, because a change of
 * ffn.act at one position changes nothing else in its own layer. */
int bert_layer_patch(const kn_model *m, bert_acts *a, const bert_acts *one, int l, int B, int T, int pos,
                     const float *vals, kn_err *err) {
    const bert_config *c = &m->cfg;
    const bert_layer_weights *w = &m->w.layer[l];
    int C = c->hidden, F = c->ffn;
    if (l < 0 || l >= c->layers) return kn_fail(err, "layer %d out of range [0, %d)", l, c->layers);
    if (B < 1 || B > a->B || B > a->P || T != one->t || T > a->T || one->b != 1)
        return kn_fail(err, "layer patch: %d rows of %d tokens do not fit the arenas", B, T);
    if (pos < 0 || pos >= T) return kn_fail(err, "position %d out of range [0, %d)", pos, T);
    int64_t NC1 = (int64_t)one->B * one->T * C, NN1 = (int64_t)one->B * one->T;
    int64_t NC = (int64_t)a->B * a->T * C, NN = (int64_t)a->B * a->T, NF = (int64_t)a->B * a->T * F;
    int64_t tc = (int64_t)T * C;
    float *act = shared_of(a, a->ffn_act, l, NF);
    for (int r = 0; r < B; r++) {
        memcpy(x_of(a, l, NC) + r * tc, x_of(one, l, NC1), sizeof(float) * tc);
        memcpy(shared_of(a, a->h1, l, NC) + r * tc, shared_of(one, one->h1, l, NC1), sizeof(float) * tc);
        memcpy(LAYER(a->ln2_in, l, NC) + r * tc, LAYER(one->ln2_in, l, NC1), sizeof(float) * tc);
        memcpy(x_of(a, l + 1, NC) + r * tc, x_of(one, l + 1, NC1), sizeof(float) * tc);
        memcpy(LAYER(a->ln2_mean, l, NN) + (int64_t)r * T, LAYER(one->ln2_mean, l, NN1), sizeof(float) * T);
        memcpy(LAYER(a->ln2_rstd, l, NN) + (int64_t)r * T, LAYER(one->ln2_rstd, l, NN1), sizeof(float) * T);
        memcpy(a->keymask + (int64_t)r * T, one->keymask, sizeof(float) * T);
        memcpy(act + ((int64_t)r * T + pos) * F, vals + (int64_t)r * F, sizeof(float) * F);
    }
    /* the patched position: out = LN2(h1 + W2 . act + b2), as B rows of one GEMM */
    float *pin = a->dffn, *pout = a->dh1, *pmean = a->head_mean, *prstd = a->head_rstd;
    for (int r = 0; r < B; r++) memcpy(pin + (int64_t)r * F, vals + (int64_t)r * F, sizeof(float) * F);
    linear_forward(pout, pin, w->ffn_out_w, w->ffn_out_b, B, F, C);
    const float *h1 = shared_of(one, one->h1, l, NC1) + (int64_t)pos * C;
    for (int r = 0; r < B; r++)
        for (int j = 0; j < C; j++) pout[(int64_t)r * C + j] += h1[j];
    float *normed = a->dtmp;
    layernorm_forward(normed, pmean, prstd, pout, w->ln2_w, w->ln2_b, B, C, c->ln_eps);
    for (int r = 0; r < B; r++) {
        int64_t row = (int64_t)r * T + pos;
        memcpy(LAYER(a->ln2_in, l, NC) + row * C, pout + (int64_t)r * C, sizeof(float) * C);
        memcpy(x_of(a, l + 1, NC) + row * C, normed + (int64_t)r * C, sizeof(float) * C);
        LAYER(a->ln2_mean, l, NN)[row] = pmean[r];
        LAYER(a->ln2_rstd, l, NN)[row] = prstd[r];
    }
    a->b = B;
    a->t = T;
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* Gradient slice of a parameter field inside the flat gradient buffer. */
static float *grad_of(const kn_model *m, float *grads, const float *field) {
    if (!grads) return NULL;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].data == field) return grads + m->params[i].offset;
    return NULL;
}

/* a->dx holds d(out of layer l); on return it holds d(x of layer l) unless stopping at ffn.act. */
static void layer_backward(const kn_model *m, bert_acts *a, int l, float *grads, float *dffn_out, int stop_at_act) {
    const bert_config *c = &m->cfg;
    const bert_layer_weights *w = &m->w.layer[l];
    int B = a->b, T = a->t, N = B * T, C = c->hidden, F = c->ffn;
    int64_t NC = (int64_t)a->B * a->T * C, NF = (int64_t)a->B * a->T * F, NN = (int64_t)a->B * a->T;
    int64_t nc = (int64_t)N * C, nf = (int64_t)N * F;
    /* x, ctx, h1 and act are read only for weight gradients, which an inference arena refuses */
    const float *x = x_of(a, l, NC);
    const float *q = LAYER(a->q, l, NC), *k = LAYER(a->k, l, NC), *v = LAYER(a->v, l, NC), *ctx = shared_of(a, a->ctx, l, NC);
    const float *att = LAYER(a->att, l, (int64_t)a->B * c->heads * a->T * a->T);
    const float *ln1_in = LAYER(a->ln1_in, l, NC), *h1 = shared_of(a, a->h1, l, NC), *ln2_in = LAYER(a->ln2_in, l, NC);
    const float *pre = LAYER(a->ffn_pre, l, NF), *act = shared_of(a, a->ffn_act, l, NF);

    /* LN2: dx -> d(ln2_in), kept in dh1 (the residual sends it to h1 as well) */
    memset(a->dh1, 0, sizeof(float) * nc);
    layernorm_backward_input(a->dh1, a->dx, ln2_in, LAYER(a->ln2_mean, l, NN), LAYER(a->ln2_rstd, l, NN), w->ln2_w, N, C);
    if (grads)
        layernorm_backward_weight(grad_of(m, grads, w->ln2_w), grad_of(m, grads, w->ln2_b), a->dx, ln2_in,
                                  LAYER(a->ln2_mean, l, NN), LAYER(a->ln2_rstd, l, NN), N, C);
    /* W2: d(act) = d(branch) . W2, where the branch is d(ln2_in) through the hidden dropout
     * mask (dq is free scratch until the attention backward) */
    const float *dbranch = a->dh1;
    if (a->drop_hidden) {
        memcpy(a->dq, a->dh1, sizeof(float) * nc);
        mul_inplace(a->dq, LAYER(a->drop_hidden, 2 * l + 1, NC), nc);
        dbranch = a->dq;
    }
    memset(a->dffn, 0, sizeof(float) * nf);
    linear_backward_input(a->dffn, dbranch, w->ffn_out_w, N, F, C);
    if (grads) linear_backward_weight(grad_of(m, grads, w->ffn_out_w), grad_of(m, grads, w->ffn_out_b), dbranch, act, N, F, C);
    if (dffn_out) memcpy(dffn_out, a->dffn, sizeof(float) * nf);
    if (stop_at_act) return;
    if (a->drop_act) mul_inplace(a->dffn, LAYER(a->drop_act, l, NF), nf);
    intervention_backward(a->dffn, l, B, T, F, a->iv, a->niv);
    /* GELU and W1: d(h1) gets the FFN branch on top of the residual already in dh1 */
    float *dpre = a->dffn_pre;
    memset(dpre, 0, sizeof(float) * nf);
    act_backward((enum kn_act)c->act, dpre, a->dffn, pre, nf);
    if (grads) linear_backward_weight(grad_of(m, grads, w->ffn_in_w), grad_of(m, grads, w->ffn_in_b), dpre, h1, N, C, F);
    linear_backward_input(a->dh1, dpre, w->ffn_in_w, N, C, F);
    /* LN1: dh1 -> d(ln1_in) in dx (reused: dx = d(x) from the residual plus the attention branch) */
    memset(a->dtmp, 0, sizeof(float) * nc);
    layernorm_backward_input(a->dtmp, a->dh1, ln1_in, LAYER(a->ln1_mean, l, NN), LAYER(a->ln1_rstd, l, NN), w->ln1_w, N, C);
    if (grads)
        layernorm_backward_weight(grad_of(m, grads, w->ln1_w), grad_of(m, grads, w->ln1_b), a->dh1, ln1_in,
                                  LAYER(a->ln1_mean, l, NN), LAYER(a->ln1_rstd, l, NN), N, C);
    /* attention output projection (its branch through the hidden dropout mask, in dq scratch) */
    dbranch = a->dtmp;
    if (a->drop_hidden) {
        memcpy(a->dq, a->dtmp, sizeof(float) * nc);
        mul_inplace(a->dq, LAYER(a->drop_hidden, 2 * l, NC), nc);
        dbranch = a->dq;
    }
    memset(a->dctx, 0, sizeof(float) * nc);
    linear_backward_input(a->dctx, dbranch, w->ao_w, N, C, C);
    if (grads) linear_backward_weight(grad_of(m, grads, w->ao_w), grad_of(m, grads, w->ao_b), dbranch, ctx, N, C, C);
    memset(a->dq, 0, sizeof(float) * nc);
    memset(a->dk, 0, sizeof(float) * nc);
    memset(a->dv, 0, sizeof(float) * nc);
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->dctx, att, q, k, v, B, T, C, c->heads);
    /* d(x) = residual d(ln1_in) + the three projections */
    memcpy(a->dx, a->dtmp, sizeof(float) * nc);
    linear_backward_input(a->dx, a->dq, w->q_w, N, C, C);
    linear_backward_input(a->dx, a->dk, w->k_w, N, C, C);
    linear_backward_input(a->dx, a->dv, w->v_w, N, C, C);
    if (grads) {
        linear_backward_weight(grad_of(m, grads, w->q_w), grad_of(m, grads, w->q_b), a->dq, x, N, C, C);
        linear_backward_weight(grad_of(m, grads, w->k_w), grad_of(m, grads, w->k_b), a->dk, x, N, C, C);
        linear_backward_weight(grad_of(m, grads, w->v_w), grad_of(m, grads, w->v_b), a->dv, x, N, C, C);
    }
}

int bert_backward(const kn_model *m, bert_acts *a, const float *dlogits, int stop_layer,
                  float **dffn_act, float *grads, kn_err *err) {
    const bert_config *c = &m->cfg;
    int C = c->hidden, P = a->p, N = a->b * a->t;
    if (stop_layer < 0 || stop_layer >= c->layers)
        return kn_fail(err, "stop layer %d out of range [0, %d)", stop_layer, c->layers);
    if (grads && (a->flags & KN_ACTS_INFERENCE))
        return kn_fail(err, "weight gradients need an activation arena made without KN_ACTS_INFERENCE");
    /* head: logits = ln . E^T + bias */
    float *dln = a->dhead, *dpre = a->dhead + (int64_t)P * C;
    memset(a->dhead, 0, sizeof(float) * 2 * P * C);
    linear_backward_input(dln, dlogits, m->w.decoder_w, P, C, c->vocab_size);
    if (grads) linear_backward_weight(grad_of(m, grads, m->w.decoder_w), grad_of(m, grads, m->w.decoder_b), dlogits, a->head_ln, P, C, c->vocab_size);
    float *dact = a->dtmp; /* [P,C] scratch */
    memset(dact, 0, sizeof(float) * P * C);
    layernorm_backward_input(dact, dln, a->head_act, a->head_mean, a->head_rstd, m->w.head_ln_w, P, C);
    if (grads) layernorm_backward_weight(grad_of(m, grads, m->w.head_ln_w), grad_of(m, grads, m->w.head_ln_b), dln, a->head_act, a->head_mean, a->head_rstd, P, C);
    act_backward((enum kn_act)c->act, dpre, dact, a->head_pre, (int64_t)P * C);
    memset(a->dx, 0, sizeof(float) * (int64_t)N * C);
    memset(dln, 0, sizeof(float) * P * C);
    linear_backward_input(dln, dpre, m->w.head_w, P, C, C);
    if (grads) linear_backward_weight(grad_of(m, grads, m->w.head_w), grad_of(m, grads, m->w.head_b), dpre, a->head_in, P, C, C);
    for (int p = 0; p < P; p++) {
        float *d = a->dx + (int64_t)a->head_rows[p] * C;
        for (int j = 0; j < C; j++) d[j] += dln[(int64_t)p * C + j];
    }
    /* with weight gradients the pass goes all the way down; without, it stops at the ffn.act
     * of stop_layer, which is all attribution needs */
    int bottom = grads ? 0 : stop_layer;
    for (int l = c->layers - 1; l >= bottom; l--)
        layer_backward(m, a, l, grads, dffn_act ? dffn_act[l] : NULL, !grads && l == stop_layer);
    int64_t at;
    for (int l = bottom; dffn_act && l < c->layers; l++)
        if (dffn_act[l] && first_bad(dffn_act[l], (int64_t)N * c->ffn, &at)) {
            int64_t row = at / c->ffn;
            return kn_fail(err, "backward: the gradient w.r.t. layer %d's ffn.act is non-finite (%g) at batch row %d, position %d, neuron %d",
                           l, (double)dffn_act[l][at], (int)(row / a->t), (int)(row % a->t), (int)(at % c->ffn));
        }
    if (grads) {
        /* embeddings: LayerNorm, then scatter into the word, position and type tables */
        memset(a->dtmp, 0, sizeof(float) * (int64_t)N * C);
        layernorm_backward_input(a->dtmp, a->dx, a->emb_in, a->emb_mean, a->emb_rstd, m->w.emb_ln_w, N, C);
        layernorm_backward_weight(grad_of(m, grads, m->w.emb_ln_w), grad_of(m, grads, m->w.emb_ln_b), a->dx, a->emb_in,
                                  a->emb_mean, a->emb_rstd, N, C);
        float *dwe = grad_of(m, grads, m->w.word_emb), *dpe = grad_of(m, grads, m->w.pos_emb), *dte = grad_of(m, grads, m->w.type_emb);
        for (int i = 0; i < N; i++) {
            const float *d = a->dtmp + (int64_t)i * C;
            float *we = dwe + (int64_t)a->ids[i] * C, *pe = dpe + (int64_t)(i % a->t) * C, *te = dte + (int64_t)a->types[i] * C;
            for (int j = 0; j < C; j++) { we[j] += d[j]; pe[j] += d[j]; te[j] += d[j]; }
        }
        for (int i = 0; i < m->nparams; i++)
            if (first_bad(grads + m->params[i].offset, m->params[i].numel, &at))
                return kn_fail(err, "backward: the gradient of '%s' is non-finite (%g) at flat index %lld", m->params[i].name,
                               (double)grads[m->params[i].offset + at], (long long)at);
    }
    return 0;
}
