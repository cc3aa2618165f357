/* train.h: masked-LM training of a kn_model: one step = forward at the labelled rows, the
 * cross-entropy loss, the full backward with weight gradients, global-norm gradient clipping
 * and an AdamW update (decoupled weight decay, none on biases and LayerNorm parameters). */
#ifndef KNWB_TRAIN_H
#define KNWB_TRAIN_H

#include "bert.h"

typedef struct kn_trainer {
    kn_model *model;
    bert_acts *acts;
    float *grads, *m, *v;     /* [nweights] each, laid out by kn_param.offset */
    float *dlogits;           /* [P,V] */
    int64_t step;             /* AdamW steps taken */
    float beta1, beta2, eps, weight_decay;
    float hidden_dropout, neuron_dropout; /* rates in [0, 1); 0 = off (see kn_trainer_set_dropout) */
    uint64_t dropout_seed;
    float *mask_hidden, *mask_act;        /* this step's masks, allocated when a rate is set */
} kn_trainer;

/* A trainer for batches of up to B sequences of T tokens with up to P labelled rows. */
kn_trainer *kn_trainer_new(kn_model *m, int B, int T, int P, float weight_decay, kn_err *err);
void kn_trainer_free(kn_trainer *t);

/* Dropout during training steps (inverted: kept entries are scaled by 1/(1-rate), so nothing
 * changes at inference). hidden: BERT's hidden dropout on the attention and FFN sub-layer outputs
 * before their residual sums; neuron: on ffn.act, the knowledge-neuron activations themselves.
 * The masks of step s depend only on (seed, s), so a resumed run draws the same ones. Rates
 * outside [0, 1) are errors. */
int kn_trainer_set_dropout(kn_trainer *t, float hidden, float neuron, uint64_t seed, kn_err *err);

typedef struct kn_step_stats { double loss, grad_norm; int labelled, correct; } kn_step_stats;

/* One step on a batch: ids/types/attn [B*T], rows [P] (flat b*T+t) with labels [P] (< 0 ignored),
 * learning rate lr, clip = max global gradient norm (<= 0: none). label_smoothing in [0, 1). */
int kn_train_step(kn_trainer *t, const int *ids, const int *types, const int *attn, int B, int T,
                  const int *rows, const int *labels, int P, float lr, float clip, float label_smoothing,
                  kn_step_stats *stats, kn_err *err);

/* Saves / restores the AdamW state (step and moments) as a safetensors file, so an interrupted
 * pretraining resumes exactly. Loading refuses a file made for a different model shape. */
int kn_trainer_save_state(const kn_trainer *t, const char *path, kn_err *err);
int kn_trainer_load_state(kn_trainer *t, const char *path, kn_err *err);

#endif
