/* train.c: masked-LM training steps with AdamW (see train.h). */
#include "train.h"
#include "alloc.h"
#include "objective.h"
#include "kernels.h"
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kn_trainer *kn_trainer_new(kn_model *m, int B, int T, int P, float weight_decay, kn_err *err) {
    if (P < 0) { kn_fail(err, "trainer: %d labelled rows", P); return NULL; }
    kn_trainer *t = kn_calloc(1, sizeof *t);
    if (!t) { kn_fail(err, "out of memory for a trainer"); return NULL; }
    t->model = m;
    t->acts = bert_acts_new(&m->cfg, B, T, P, err);
    t->grads = kn_calloc((size_t)m->nweights, sizeof(float));
    t->m = kn_calloc((size_t)m->nweights, sizeof(float));
    t->v = kn_calloc((size_t)m->nweights, sizeof(float));
    t->dlogits = kn_calloc(((size_t)P + 1) * (size_t)m->cfg.vocab_size, sizeof(float));
    if (!t->acts || !t->grads || !t->m || !t->v || !t->dlogits) {
        if (t->acts) kn_fail(err, "out of memory for the optimizer state of %lld weights", (long long)m->nweights);
        kn_trainer_free(t);
        return NULL;
    }
    t->beta1 = 0.9f;
    t->beta2 = 0.999f;
    t->eps = 1e-8f;
    t->weight_decay = weight_decay;
    return t;
}

void kn_trainer_free(kn_trainer *t) {
    if (!t) return;
    bert_acts_free(t->acts);
    free(t->grads);
    free(t->m);
    free(t->v);
    free(t->dlogits);
    free(t->mask_hidden);
    free(t->mask_act);
    free(t);
}

int kn_trainer_set_dropout(kn_trainer *t, float hidden, float neuron, uint64_t seed, kn_err *err) {
    if (!(hidden >= 0 && hidden < 1)) return kn_fail(err, "hidden dropout %g out of range [0, 1)", hidden);
    if (!(neuron >= 0 && neuron < 1)) return kn_fail(err, "neuron dropout %g out of range [0, 1)", neuron);
    const bert_config *c = &t->model->cfg;
    int64_t N = (int64_t)t->acts->B * t->acts->T;
    if (hidden > 0 && !t->mask_hidden) t->mask_hidden = kn_calloc((size_t)(2 * c->layers * N), sizeof(float) * c->hidden);
    if (neuron > 0 && !t->mask_act) t->mask_act = kn_calloc((size_t)(c->layers * N), sizeof(float) * c->ffn);
    if ((hidden > 0 && !t->mask_hidden) || (neuron > 0 && !t->mask_act))
        return kn_fail(err, "out of memory for the dropout masks");
    t->hidden_dropout = hidden;
    t->neuron_dropout = neuron;
    t->dropout_seed = seed;
    return 0;
}

/* splitmix64: a small, well-mixed generator; one stream per (seed, step) */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Fills `slices` slices of `per` floats (the first n of each used) with 0 or 1/(1-rate). */
static void fill_mask(float *mask, int slices, int64_t per, int64_t n, float rate, uint64_t *rng) {
    float keep = 1.0f / (1.0f - rate);
    for (int s = 0; s < slices; s++)
        for (int64_t i = 0; i < n; i++) {
            double u = (double)(splitmix64(rng) >> 11) * 0x1.0p-53; /* uniform in [0, 1) */
            mask[s * per + i] = u < rate ? 0.0f : keep;
        }
}

static int train_step(kn_trainer *t, const int *ids, const int *types, const int *attn, int B, int T,
                      const int *rows, const int *labels, int P, float lr, float clip, float label_smoothing,
                      kn_step_stats *st, kn_err *err);

int kn_train_step(kn_trainer *t, const int *ids, const int *types, const int *attn, int B, int T,
                  const int *rows, const int *labels, int P, float lr, float clip, float label_smoothing,
                  kn_step_stats *st, kn_err *err) {
    kn_model *m = t->model;
    int V = m->cfg.vocab_size;
    if (P < 1) return kn_fail(err, "training batch has no labelled rows");
    if (!(label_smoothing >= 0 && label_smoothing < 1)) return kn_fail(err, "label_smoothing %g out of range [0, 1)", label_smoothing);
    for (int p = 0; p < P; p++)
        if (labels[p] >= V) return kn_fail(err, "label %d out of range [0, %d)", labels[p], V);
    if (B < 1 || T < 1 || B > t->acts->B || T > t->acts->T)
        return kn_fail(err, "batch of %d x %d tokens exceeds the trainer's %d x %d", B, T, t->acts->B, t->acts->T);
    const bert_config *c = &m->cfg;
    int64_t cap = (int64_t)t->acts->B * t->acts->T, used = (int64_t)B * T;
    uint64_t rng = t->dropout_seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(t->step + 1));
    if (t->hidden_dropout > 0) fill_mask(t->mask_hidden, 2 * c->layers, cap * c->hidden, used * c->hidden, t->hidden_dropout, &rng);
    if (t->neuron_dropout > 0) fill_mask(t->mask_act, c->layers, cap * c->ffn, used * c->ffn, t->neuron_dropout, &rng);
    t->acts->drop_hidden = t->hidden_dropout > 0 ? t->mask_hidden : NULL;
    t->acts->drop_act = t->neuron_dropout > 0 ? t->mask_act : NULL;
    int rc = train_step(t, ids, types, attn, B, T, rows, labels, P, lr, clip, label_smoothing, st, err);
    t->acts->drop_hidden = t->acts->drop_act = NULL;
    return rc;
}

/* The step proper, with this step's dropout masks (if any) in place on the arena. */
static int train_step(kn_trainer *t, const int *ids, const int *types, const int *attn, int B, int T,
                      const int *rows, const int *labels, int P, float lr, float clip, float label_smoothing,
                      kn_step_stats *st, kn_err *err) {
    kn_model *m = t->model;
    int V = m->cfg.vocab_size;
    if (bert_forward(m, t->acts, ids, types, attn, B, T, rows, P, NULL, 0, err) != 0) return -1;
    int n = 0, correct = 0;
    /* label smoothing keeps the softmax from saturating; the loss reported is the plain
     * cross-entropy, comparable across settings */
    kn_mlm_loss_smoothed(t->acts->logits, P, V, labels, label_smoothing, t->dlogits, &n, &correct);
    if (n == 0) return kn_fail(err, "training batch has no labelled rows");
    double loss = kn_mlm_loss(t->acts->logits, P, V, labels, NULL, NULL, NULL);
    memset(t->grads, 0, sizeof(float) * m->nweights);
    if (bert_backward(m, t->acts, t->dlogits, 0, NULL, t->grads, err) != 0) return -1;
    double norm = 0;
    for (int64_t i = 0; i < m->nweights; i++) norm += (double)t->grads[i] * t->grads[i];
    norm = sqrt(norm);
    float scale = (clip > 0 && norm > clip) ? (float)(clip / norm) : 1.0f;
    if (!isfinite(norm)) return kn_fail(err, "gradient norm is not finite at step %lld (learning rate too high?)", (long long)t->step + 1);
    t->step++;
    float b1c = 1.0f - powf(t->beta1, (float)t->step), b2c = 1.0f - powf(t->beta2, (float)t->step);
    for (int i = 0; i < m->nparams; i++) {
        kn_param *p = &m->params[i];
        float wd = p->ndim == 2 ? t->weight_decay : 0.0f;
        float *w = p->data, *g = t->grads + p->offset, *mm = t->m + p->offset, *vv = t->v + p->offset;
        for (int64_t j = 0; j < p->numel; j++) {
            float gj = g[j] * scale;
            mm[j] = t->beta1 * mm[j] + (1 - t->beta1) * gj;
            vv[j] = t->beta2 * vv[j] + (1 - t->beta2) * gj * gj;
            float mhat = mm[j] / b1c, vhat = vv[j] / b2c;
            w[j] -= lr * (mhat / (sqrtf(vhat) + t->eps) + wd * w[j]);
        }
    }
    m->generation++;
    if (st) { st->loss = loss; st->grad_norm = norm; st->labelled = n; st->correct = correct; }
    return 0;
}

int kn_trainer_save_state(const kn_trainer *t, const char *path, kn_err *err) {
    float step[2] = { (float)(t->step >> 24), (float)(t->step & 0xffffff) }; /* exact in float */
    const char *names[] = { "adamw.step", "adamw.m", "adamw.v" };
    int ndim[] = { 1, 1, 1 };
    int64_t shapes[3][8] = { { 2 }, { t->model->nweights }, { t->model->nweights } };
    const float *data[] = { step, t->m, t->v };
    return st_write(path, 3, names, ndim, (const int64_t(*)[8])shapes, data, err);
}

int kn_trainer_load_state(kn_trainer *t, const char *path, kn_err *err) {
    st_file *f = st_open(path, err);
    if (!f) return -1;
    const st_tensor *s = st_find(f, "adamw.step"), *m = st_find(f, "adamw.m"), *v = st_find(f, "adamw.v");
    int rc = -1;
    if (!s || !m || !v || s->numel != 2 || s->dtype != ST_F32)
        kn_fail(err, "%s: not a knwb optimizer state (needs adamw.step, adamw.m, adamw.v)", path);
    else if (m->numel != t->model->nweights || v->numel != t->model->nweights)
        kn_fail(err, "%s: optimizer state holds %lld weights, the model has %lld", path, (long long)m->numel,
                (long long)t->model->nweights);
    else {
        float step[2];
        st_to_f32(s, step);
        t->step = ((int64_t)step[0] << 24) + (int64_t)step[1];
        st_to_f32(m, t->m);
        st_to_f32(v, t->v);
        rc = 0;
    }
    st_close(f);
    return rc;
}
