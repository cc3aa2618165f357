/* decoder.c: the forward and backward passes of the pre-LN decoder families (decoder.h gives
 * the per-layer math) over an activation arena, with interventions on ffn.act exactly as
 * BERT's. GPT-2 uses its Conv1D weights in place with linear_io_* (the fused c_attn as three
 * column blocks, ld 3C); Llama uses nn.Linear weights with linear_*. The final norm and the
 * head run only at the rows asked for. */
#include "decoder.h"
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena */

typedef struct plan { float **ptr; int64_t n; } plan;

static int plan_acts(const dec_config *c, dec_acts *a, int B, int T, int P, plan *out) {
    int64_t N = (int64_t)B * T, C = c->hidden, F = c->ffn, L = c->layers, NH = c->heads, D = c->head_dim;
    int64_t QD = NH * D, KD = (int64_t)c->kv_heads * D, att = (int64_t)B * NH * T * T;
    int n = 0;
#define A(field, count) out[n++] = (plan){ &a->field, (count) }
    A(x, (L + 1) * N * C);
    A(h1, L * N * C); A(h1_mean, L * N); A(h1_rstd, L * N);
    A(q, L * N * QD); A(k, L * N * KD); A(v, L * N * KD);
    A(att, L * att); A(ctx, L * N * QD);
    A(xm, L * N * C);
    A(h2, L * N * C); A(h2_mean, L * N); A(h2_rstd, L * N);
    A(pre, L * N * F); A(up, c->gated ? L * N * F : 1); A(act, L * N * F);
    A(keymask, N);
    A(rcos, c->learned_pos ? 1 : N * D); A(rsin, c->learned_pos ? 1 : N * D);
    A(hf_in, P * C); A(hf, P * C); A(hf_mean, P); A(hf_rstd, P);
    A(logits, P * (int64_t)c->vocab_size);
    A(dx, N * C); A(dh, N * C); A(dtmp, N * C);
    A(dq, N * QD); A(dk, N * KD); A(dv, N * KD); A(dctx, N * QD); A(dq2, N * QD); A(dk2, N * KD);
    A(dact, N * F); A(dpre, N * F); A(dup, c->gated ? N * F : 1);
    A(datt, att);
    A(dhf, 2 * P * C);
#undef A
    return n;
}

int64_t dec_acts_bytes(const dec_config *cfg, int B, int T, int P) {
    dec_acts a;
    plan p[64];
    int n = plan_acts(cfg, &a, B, T, P, p);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (p[i].n + 16) & ~(int64_t)15;
    return total * (int64_t)sizeof(float);
}

dec_acts *dec_acts_new(const dec_model *m, int B, int T, int P, kn_err *err) {
    const dec_config *c = &m->cfg;
    if (B < 1 || T < 1 || P < 0) { kn_fail(err, "activation arena: bad sizes B=%d T=%d P=%d", B, T, P); return NULL; }
    if (T > c->max_pos) {
        kn_fail(err, "sequence of %d tokens exceeds max_position_embeddings %d", T, c->max_pos);
        return NULL;
    }
    if (c->sliding_window > 0 && T > c->sliding_window) {
        kn_fail(err, "sequence of %d tokens exceeds the sliding window %d (sliding_window; knwb refuses longer prompts)", T,
                c->sliding_window);
        return NULL;
    }
    dec_acts *a = kn_calloc(1, sizeof *a);
    if (!a) { kn_fail(err, "out of memory"); return NULL; }
    plan p[64];
    int n = plan_acts(c, a, B, T, P, p);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (p[i].n + 16) & ~(int64_t)15; /* 64-byte aligned slices */
    size_t bytes;
    float *mem = NULL;
    if (kn_mul_size((size_t)total, sizeof(float), &bytes) == 0) mem = kn_aligned_alloc(bytes);
    a->head_rows = kn_calloc((size_t)P + 1, sizeof(int));
    a->ids = kn_calloc((size_t)B * T, sizeof(int));
    a->pos = kn_calloc((size_t)B * T, sizeof(int));
    if (!mem || !a->head_rows || !a->ids || !a->pos) {
        free(mem);
        free(a->head_rows);
        free(a->ids);
        free(a->pos);
        free(a);
        kn_fail(err, "out of memory: decoder activations for %d x %d tokens need %.1f MB", B, T, total * 4.0 / 1e6);
        return NULL;
    }
    memset(mem, 0, bytes);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        *p[i].ptr = mem + off;
        off += (p[i].n + 16) & ~(int64_t)15;
    }
    a->B = B; a->T = T; a->P = P;
    a->bytes = (int64_t)bytes;
    return a;
}

void dec_acts_free(dec_acts *a) {
    if (!a) return;
    free(a->x); /* the first slice is the start of the arena */
    free(a->head_rows);
    free(a->ids);
    free(a->pos);
    free(a);
}

/* ---------------------------------------------------------------- interventions (as BERT's) */

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

/* A set neuron passes no gradient below it, a scaled one passes it scaled, an added constant
 * passes it unchanged. */
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

static int check_interventions(const dec_config *c, int B, int T, const kn_intervention *iv, int niv, kn_err *err) {
    for (int j = 0; j < niv; j++) {
        const kn_intervention *v = &iv[j];
        if (v->layer < 0 || v->layer >= c->layers)
            return kn_fail(err, "intervention %d: layer %d out of range [0, %d)", j + 1, v->layer, c->layers);
        if (v->row >= B) return kn_fail(err, "intervention %d: batch row %d out of range [0, %d)", j + 1, v->row, B);
        if (v->pos >= T) return kn_fail(err, "intervention %d: position %d out of range [0, %d)", j + 1, v->pos, T);
        if (v->n < 0) return kn_fail(err, "intervention %d: negative neuron count", j + 1);
        if (v->op != KN_SET && v->op != KN_SCALE && v->op != KN_ADD) return kn_fail(err, "intervention %d: unknown operation", j + 1);
        for (int s = 0; s < v->n; s++)
            if (v->idx[s] < 0 || v->idx[s] >= c->ffn)
                return kn_fail(err, "intervention %d: neuron %d out of range [0, %d)", j + 1, v->idx[s], c->ffn);
    }
    return 0;
}

/* ---------------------------------------------------------------- forward */

#define LAYER(ptr, l, per) ((ptr) + (int64_t)(l) * (per))

typedef struct strides { int64_t NC, NQ, NK, NF, NN, ATT; } strides;

static strides strides_of(const dec_config *c, const dec_acts *a) {
    int64_t N = (int64_t)a->B * a->T, D = c->head_dim;
    return (strides){ N * c->hidden, N * c->heads * D, N * c->kv_heads * D, N * c->ffn, N,
                      (int64_t)a->B * c->heads * a->T * a->T };
}

static void norm_forward(const dec_config *c, float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N) {
    if (c->norm == DEC_LAYERNORM) layernorm_forward(out, mean, rstd, inp, w, b, N, c->hidden, c->norm_eps);
    else rmsnorm_forward(out, rstd, inp, w, N, c->hidden, c->norm_eps);
}

static void norm_backward(const dec_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *mean, const float *rstd, const float *w, int N) {
    if (c->norm == DEC_LAYERNORM) {
        layernorm_backward_input(dinp, dout, inp, mean, rstd, w, N, c->hidden);
        if (dw) layernorm_backward_weight(dw, db, dout, inp, mean, rstd, N, c->hidden);
    } else {
        rmsnorm_backward_input(dinp, dout, inp, rstd, w, N, c->hidden);
        if (dw) rmsnorm_backward_weight(dw, dout, inp, rstd, N, c->hidden);
    }
}

/* out[N,OC] = inp[N,IC] through a projection in its family's layout; GPT-2's q/k/v are
 * column blocks of c_attn (ld 3C), everything else whole matrices. */
static void proj_forward(const dec_config *c, float *out, const float *inp, const float *w, const float *b,
                         int N, int IC, int OC, int ld) {
    if (c->family == DEC_GPT2) linear_io_forward(out, inp, w, b, N, IC, OC, ld);
    else linear_forward(out, inp, w, b, N, IC, OC);
}
static void proj_backward(const dec_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, int N, int IC, int OC, int ld) {
    if (c->family == DEC_GPT2) {
        if (dinp) linear_io_backward_input(dinp, dout, w, N, IC, OC, ld);
        if (dw) linear_io_backward_weight(dw, db, dout, inp, N, IC, OC, ld);
    } else {
        if (dinp) linear_backward_input(dinp, dout, w, N, IC, OC);
        if (dw) linear_backward_weight(dw, db, dout, inp, N, IC, OC);
    }
}

static attn_dims dims_of(const dec_config *c, int B, int T) {
    return (attn_dims){ .B = B, .T = T, .Tq = T, .NH = c->heads, .NKV = c->kv_heads, .hd = c->head_dim,
                        .causal = 1, .window = c->sliding_window };
}

static void layer_forward(const dec_model *m, dec_acts *a, int l, int B, int T) {
    const dec_config *c = &m->cfg;
    const dec_layer_weights *w = &m->w.layer[l];
    strides s = strides_of(c, a);
    int N = B * T, C = c->hidden, F = c->ffn, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim;
    int ld = c->family == DEC_GPT2 ? 3 * C : 0;
    const float *x = LAYER(a->x, l, s.NC);
    float *h1 = LAYER(a->h1, l, s.NC), *q = LAYER(a->q, l, s.NQ), *k = LAYER(a->k, l, s.NK), *v = LAYER(a->v, l, s.NK);
    float *att = LAYER(a->att, l, s.ATT), *ctx = LAYER(a->ctx, l, s.NQ), *xm = LAYER(a->xm, l, s.NC);
    float *h2 = LAYER(a->h2, l, s.NC), *pre = LAYER(a->pre, l, s.NF), *act = LAYER(a->act, l, s.NF);
    float *out = LAYER(a->x, l + 1, s.NC);

    norm_forward(c, h1, LAYER(a->h1_mean, l, s.NN), LAYER(a->h1_rstd, l, s.NN), x, w->ln1_w, w->ln1_b, N);
    proj_forward(c, q, h1, w->q_w, w->q_b, N, C, QD, ld);
    proj_forward(c, k, h1, w->k_w, w->k_b, N, C, KD, ld);
    proj_forward(c, v, h1, w->v_w, w->v_b, N, C, KD, ld);
    if (!c->learned_pos) {
        rope_forward(q, q, a->rcos, a->rsin, N, c->heads, c->head_dim);
        rope_forward(k, k, a->rcos, a->rsin, N, c->kv_heads, c->head_dim);
    }
    attn_dims d = dims_of(c, B, T);
    attn_forward(ctx, att, q, k, v, a->keymask, NULL, &d);
    proj_forward(c, xm, ctx, w->o_w, w->o_b, N, QD, C, C);
    vec_add(xm, xm, x, (int64_t)N * C);
    norm_forward(c, h2, LAYER(a->h2_mean, l, s.NN), LAYER(a->h2_rstd, l, s.NN), xm, w->ln2_w, w->ln2_b, N);
    proj_forward(c, pre, h2, w->fc_w, w->fc_b, N, C, F, F);
    if (c->gated) {
        float *up = LAYER(a->up, l, s.NF);
        linear_forward(up, h2, w->up_w, NULL, N, C, F);
        glu_forward(c->act, act, pre, up, (int64_t)N * F);
    } else {
        act_forward(c->act, act, pre, (int64_t)N * F);
    }
    apply_interventions(act, l, B, T, F, a->iv, a->niv);
    proj_forward(c, out, act, w->down_w, w->down_b, N, F, C, C);
    vec_add(out, out, xm, (int64_t)N * C);
}

static void head_forward(const dec_model *m, dec_acts *a, int P) {
    const dec_config *c = &m->cfg;
    int C = c->hidden;
    const float *top = LAYER(a->x, c->layers, strides_of(c, a).NC);
    for (int p = 0; p < P; p++) memcpy(a->hf_in + (int64_t)p * C, top + (int64_t)a->head_rows[p] * C, sizeof(float) * C);
    norm_forward(c, a->hf, a->hf_mean, a->hf_rstd, a->hf_in, m->w.lnf_w, m->w.lnf_b, P);
    linear_forward(a->logits, a->hf, m->w.head, NULL, P, C, c->vocab_size);
}

int dec_forward_from(const dec_model *m, dec_acts *a, int start, int B, int T, const int *head_rows, int P,
                     const kn_intervention *iv, int niv, kn_err *err) {
    const dec_config *c = &m->cfg;
    if (B < 1 || T < 1 || B > a->B || T > a->T || P < 0 || P > a->P)
        return kn_fail(err, "batch of %d x %d tokens with %d head rows exceeds the activation arena (%d x %d, %d)", B, T, P,
                       a->B, a->T, a->P);
    if (start < 0 || start > c->layers) return kn_fail(err, "start layer %d out of range [0, %d]", start, c->layers);
    for (int p = 0; p < P; p++) {
        if (head_rows[p] < 0 || head_rows[p] >= B * T)
            return kn_fail(err, "head row %d out of range [0, %d)", head_rows[p], B * T);
        a->head_rows[p] = head_rows[p];
    }
    if (check_interventions(c, B, T, iv, niv, err) != 0) return -1;
    a->b = B; a->t = T; a->p = P;
    a->iv = iv; a->niv = niv;
    for (int l = start; l < c->layers; l++) layer_forward(m, a, l, B, T);
    if (P > 0) head_forward(m, a, P);
    return 0;
}

int dec_forward(const dec_model *m, dec_acts *a, const int *ids, const int *attn, const int *pos,
                int B, int T, const int *head_rows, int P, const kn_intervention *iv, int niv, kn_err *err) {
    const dec_config *c = &m->cfg;
    int C = c->hidden, N = B * T;
    if (B < 1 || T < 1 || B > a->B || T > a->T)
        return kn_fail(err, "batch of %d x %d tokens exceeds the activation arena (%d x %d)", B, T, a->B, a->T);
    if (T > c->max_pos) return kn_fail(err, "sequence of %d tokens exceeds max_position_embeddings %d", T, c->max_pos);
    if (c->sliding_window > 0 && T > c->sliding_window)
        return kn_fail(err, "sequence of %d tokens exceeds the sliding window %d (sliding_window)", T, c->sliding_window);
    for (int i = 0; i < N; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return kn_fail(err, "token id %d at row %d, position %d out of range [0, %d)", ids[i], i / T, i % T, c->vocab_size);
        int p = pos ? pos[i] : i % T;
        if (p < 0 || p >= c->max_pos)
            return kn_fail(err, "position %d at row %d, token %d out of range [0, %d) (max_position_embeddings)", p, i / T, i % T,
                           c->max_pos);
        if (attn && attn[i] != 0 && attn[i] != 1)
            return kn_fail(err, "attention mask value %d at row %d, position %d must be 0 or 1", attn[i], i / T, i % T);
    }
    for (int i = 0; i < N; i++) {
        a->ids[i] = ids[i];
        a->pos[i] = pos ? pos[i] : i % T;
        a->keymask[i] = attn ? (float)attn[i] : 1.0f;
    }
    embedding_forward(a->x, ids, m->w.tok_emb, N, C);
    if (c->learned_pos) {
        for (int i = 0; i < N; i++) vec_add_into(a->x + (int64_t)i * C, m->w.pos_emb + (int64_t)a->pos[i] * C, C);
    } else {
        rope_table(a->rcos, a->rsin, m->inv_freq, a->pos, N, c->head_dim);
    }
    return dec_forward_from(m, a, 0, B, T, head_rows, P, iv, niv, err);
}

/* ---------------------------------------------------------------- backward */

/* The gradient slice of the weights at ptr (which may be inside a parameter: GPT-2's k and v
 * blocks of c_attn), or NULL without grads. */
static float *grad_of(const dec_model *m, float *grads, const float *ptr) {
    if (!grads || !ptr) return NULL;
    for (int i = 0; i < m->nparams; i++) {
        const kn_param *p = &m->params[i];
        if (ptr >= p->data && ptr < p->data + p->numel) return grads + p->offset + (ptr - p->data);
    }
    return NULL;
}

/* a->dx holds d(out of layer l); on return it holds d(x of layer l), unless stopping at ffn.act. */
static void layer_backward(const dec_model *m, dec_acts *a, int l, float *grads, float *dffn_out, int stop_at_act) {
    const dec_config *c = &m->cfg;
    const dec_layer_weights *w = &m->w.layer[l];
    strides s = strides_of(c, a);
    int B = a->b, T = a->t, N = B * T, C = c->hidden, F = c->ffn, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim;
    int ld = c->family == DEC_GPT2 ? 3 * C : 0;
    int64_t nc = (int64_t)N * C, nf = (int64_t)N * F;
    const float *x = LAYER(a->x, l, s.NC), *h1 = LAYER(a->h1, l, s.NC);
    const float *q = LAYER(a->q, l, s.NQ), *k = LAYER(a->k, l, s.NK), *v = LAYER(a->v, l, s.NK);
    const float *att = LAYER(a->att, l, s.ATT), *ctx = LAYER(a->ctx, l, s.NQ), *xm = LAYER(a->xm, l, s.NC);
    const float *h2 = LAYER(a->h2, l, s.NC), *pre = LAYER(a->pre, l, s.NF), *act = LAYER(a->act, l, s.NF);
#define G(p) grad_of(m, grads, (p))

    /* down projection: d(act) = dx . W_down; the residual keeps dx for xm */
    memset(a->dact, 0, sizeof(float) * nf);
    proj_backward(c, a->dact, G(w->down_w), G(w->down_b), a->dx, act, w->down_w, N, F, C, C);
    if (dffn_out) memcpy(dffn_out, a->dact, sizeof(float) * nf);
    if (stop_at_act) return;
    intervention_backward(a->dact, l, B, T, F, a->iv, a->niv);
    /* activation (gated or not) and the FFN input projection(s) into d(h2) */
    memset(a->dpre, 0, sizeof(float) * nf);
    memset(a->dh, 0, sizeof(float) * nc);
    if (c->gated) {
        const float *up = LAYER(a->up, l, s.NF);
        memset(a->dup, 0, sizeof(float) * nf);
        glu_backward(c->act, a->dpre, a->dup, a->dact, pre, up, nf);
        proj_backward(c, a->dh, G(w->up_w), NULL, a->dup, h2, w->up_w, N, C, F, F);
    } else {
        act_backward(c->act, a->dpre, a->dact, pre, nf);
    }
    proj_backward(c, a->dh, G(w->fc_w), G(w->fc_b), a->dpre, h2, w->fc_w, N, C, F, F);
    /* norm2: d(xm) = dx (residual) + norm2 backward of dh */
    norm_backward(c, a->dx, G(w->ln2_w), G(w->ln2_b), a->dh, xm, LAYER(a->h2_mean, l, s.NN), LAYER(a->h2_rstd, l, s.NN),
                  w->ln2_w, N);
    /* attention output projection */
    memset(a->dctx, 0, sizeof(float) * (int64_t)N * QD);
    proj_backward(c, a->dctx, G(w->o_w), G(w->o_b), a->dx, ctx, w->o_w, N, QD, C, C);
    memset(a->dq, 0, sizeof(float) * (int64_t)N * QD);
    memset(a->dk, 0, sizeof(float) * (int64_t)N * KD);
    memset(a->dv, 0, sizeof(float) * (int64_t)N * KD);
    attn_dims d = dims_of(c, B, T);
    attn_backward(a->dq, a->dk, a->dv, a->datt, a->dctx, att, q, k, v, &d);
    /* RoPE: the gradients w.r.t. the unrotated projections */
    float *dq = a->dq, *dk = a->dk;
    if (!c->learned_pos) {
        memset(a->dq2, 0, sizeof(float) * (int64_t)N * QD);
        memset(a->dk2, 0, sizeof(float) * (int64_t)N * KD);
        rope_backward(a->dq2, a->dq, a->rcos, a->rsin, N, c->heads, c->head_dim);
        rope_backward(a->dk2, a->dk, a->rcos, a->rsin, N, c->kv_heads, c->head_dim);
        dq = a->dq2;
        dk = a->dk2;
    }
    memset(a->dh, 0, sizeof(float) * nc);
    proj_backward(c, a->dh, G(w->q_w), G(w->q_b), dq, h1, w->q_w, N, C, QD, ld);
    proj_backward(c, a->dh, G(w->k_w), G(w->k_b), dk, h1, w->k_w, N, C, KD, ld);
    proj_backward(c, a->dh, G(w->v_w), G(w->v_b), a->dv, h1, w->v_w, N, C, KD, ld);
    /* norm1: d(x) = d(xm) (residual) + norm1 backward of dh */
    norm_backward(c, a->dx, G(w->ln1_w), G(w->ln1_b), a->dh, x, LAYER(a->h1_mean, l, s.NN), LAYER(a->h1_rstd, l, s.NN),
                  w->ln1_w, N);
#undef G
}

int dec_backward(const dec_model *m, dec_acts *a, const float *dlogits, int stop_layer,
                 float **dffn_act, float *grads, kn_err *err) {
    const dec_config *c = &m->cfg;
    int C = c->hidden, P = a->p, N = a->b * a->t;
    if (stop_layer < 0 || stop_layer >= c->layers) return kn_fail(err, "stop layer %d out of range [0, %d)", stop_layer, c->layers);
    /* head: logits = hf . head^T; hf = final norm of the top rows */
    float *dhf = a->dhf, *dtop = a->dhf + (int64_t)P * C;
    memset(a->dhf, 0, sizeof(float) * 2 * P * C);
    linear_backward_input(dhf, dlogits, m->w.head, P, C, c->vocab_size);
    if (grads) linear_backward_weight(grad_of(m, grads, m->w.head), NULL, dlogits, a->hf, P, C, c->vocab_size);
    norm_backward(c, dtop, grad_of(m, grads, m->w.lnf_w), grad_of(m, grads, m->w.lnf_b), dhf, a->hf_in, a->hf_mean,
                  a->hf_rstd, m->w.lnf_w, P);
    memset(a->dx, 0, sizeof(float) * (int64_t)N * C);
    for (int p = 0; p < P; p++) vec_add_into(a->dx + (int64_t)a->head_rows[p] * C, dtop + (int64_t)p * C, C);
    int bottom = grads ? 0 : stop_layer;
    for (int l = c->layers - 1; l >= bottom; l--)
        layer_backward(m, a, l, grads, dffn_act ? dffn_act[l] : NULL, !grads && l == stop_layer);
    if (grads) {
        embedding_backward_weight(grad_of(m, grads, m->w.tok_emb), a->dx, a->ids, N, C);
        if (c->learned_pos) embedding_backward_weight(grad_of(m, grads, m->w.pos_emb), a->dx, a->pos, N, C);
    }
    return 0;
}
