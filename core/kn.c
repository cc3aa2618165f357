/* kn.c: the accessors of kn.h over the engine's structs (today the BERT family's). */
#include "kn.h"
#include "bert.h"
#include "kernels.h"

#include <stddef.h>

void kn_model_dims(const kn_model *m, kn_dims *d) {
    const bert_config *c = &m->cfg;
    d->family = "bert";
    d->causal = 0;
    d->layers = c->layers;
    d->neurons = c->ffn;
    d->hidden = c->hidden;
    d->vocab = c->vocab_size;
    d->max_pos = c->max_pos;
    d->heads = c->heads;
    d->type_vocab = c->type_vocab;
    d->pad_token_id = c->pad_token_id;
    d->do_lower_case = c->do_lower_case;
    d->tied = !c->untied;
    d->norm_eps = c->ln_eps;
    d->act = c->act_name[0] ? c->act_name : kn_act_name((enum kn_act)c->act);
}

int kn_model_neurons(const kn_model *m, int l) { return l >= 0 && l < m->cfg.layers ? m->cfg.ffn : 0; }

const float *kn_model_embedding(const kn_model *m, int id) {
    if (id < 0 || id >= m->cfg.vocab_size) return NULL;
    return m->w.word_emb + (int64_t)id * m->cfg.hidden;
}

int64_t kn_model_nweights(const kn_model *m) { return m->nweights; }
const char *kn_model_path(const kn_model *m) { return m->path; }
const char *kn_model_weights_file(const kn_model *m) { return m->weights_file; }
uint64_t kn_model_generation(const kn_model *m) { return m->generation; }
kn_vocab *kn_model_vocab(const kn_model *m) { return m->vocab; }

bert_acts *kn_acts_new(const kn_model *m, int B, int T, int P, kn_err *err) { return bert_acts_new(&m->cfg, B, T, P, err); }

void kn_acts_capacity(const bert_acts *a, int *B, int *T, int *P) {
    if (B) *B = a->B;
    if (T) *T = a->T;
    if (P) *P = a->P;
}

const float *kn_acts_logits(const bert_acts *a) { return a->logits; }

const float *kn_acts_neurons(const bert_acts *a, int l) {
    if (l < 0 || l >= a->L || (a->flags & KN_ACTS_INFERENCE)) return NULL;
    /* layer stride: the arena's capacity; rows of the last forward packed as b*T + t */
    return a->ffn_act + (int64_t)l * a->B * a->T * a->F;
}
