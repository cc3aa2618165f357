/* kn.h: what code outside the engine (lua/) may know about a model and its activations.
 * The bindings ask these accessors instead of reading a family's structs (bert_config,
 * bert_weights, bert_acts fields), so a family can change its layout, or a new family plug in,
 * without the bindings changing. Every size a caller needs is here: layers, neurons per layer,
 * hidden width, vocabulary, positions, whether the model is causal, the family's name.
 *
 * A neuron (l, i) is component i of the activation entering layer l's down projection; its value
 * slot is what multiplies it (core/edit.h reads and writes slots). */
#ifndef KNWB_KN_H
#define KNWB_KN_H

#include <stdint.h>

#include "error.h"

typedef struct kn_model kn_model;
typedef struct bert_acts bert_acts; /* an activation arena, opaque here */

typedef struct kn_dims {
    const char *family;  /* "bert" */
    int causal;          /* 0: bidirectional (a [MASK] prompt), 1: predicts the next token */
    int layers;          /* L */
    int neurons;         /* neurons per layer (FFN width F); the same in every layer */
    int hidden;          /* C */
    int vocab;           /* V */
    int max_pos;         /* longest sequence, special tokens included */
    int heads;           /* attention heads */
    int type_vocab;      /* token types (BERT segments; 1 for a family without them) */
    int pad_token_id;
    int do_lower_case;   /* the tokenizer lower-cases */
    int tied;            /* the output head multiplies by the input embeddings */
    double norm_eps;     /* LayerNorm / RMSNorm epsilon */
    const char *act;     /* hidden_act as config.json spells it */
} kn_dims;

void kn_model_dims(const kn_model *m, kn_dims *d);
/* Neurons of layer l (0 when l is out of range). */
int kn_model_neurons(const kn_model *m, int l);
/* Row id [C] of the input embedding matrix (NULL when id is out of range). */
const float *kn_model_embedding(const kn_model *m, int id);
/* Total floats over the model's parameters. */
int64_t kn_model_nweights(const kn_model *m);
/* The folder it was loaded from (NULL for a created model), and the weights file it maps. */
const char *kn_model_path(const kn_model *m);
const char *kn_model_weights_file(const kn_model *m);
/* Bumped on every weight change (edits, training): a cache key. */
uint64_t kn_model_generation(const kn_model *m);
/* The model's vocabulary (NULL for a model created without one). */
typedef struct kn_vocab kn_vocab;
kn_vocab *kn_model_vocab(const kn_model *m);

/* An activation arena for up to B sequences of T tokens with P head rows, sized for m. */
bert_acts *kn_acts_new(const kn_model *m, int B, int T, int P, kn_err *err);
/* Its capacity (any pointer may be NULL). */
void kn_acts_capacity(const bert_acts *a, int *B, int *T, int *P);
/* Logits [P,V] of the last forward's head rows. */
const float *kn_acts_logits(const bert_acts *a);
/* Layer l's neuron activations after interventions, [B*T, F] rows b*T + t of the last forward
 * (B, T of that forward); NULL when the arena does not keep that layer. */
const float *kn_acts_neurons(const bert_acts *a, int l);

#endif
