/* edit.h: value-slot edits as transactions. Column i of layer l's FFN output projection
 * (ffn_out_w[:, i], C floats) is the value slot of neuron (l, i). An edit writes new columns and
 * keeps the old ones; undo restores them bit for bit. Edits compose: undoing them in any order
 * restores the original weights, because undoing an edit that a later edit overwrote hands its
 * saved columns on to that later edit instead of writing them back. */
#ifndef KNWB_EDIT_H
#define KNWB_EDIT_H

#include "bert.h"

typedef struct kn_edit {
    int id;                 /* 1, 2, ... in order of application; unique per model */
    int n;                  /* slots edited */
    int *layer, *slot;      /* [n] */
    float *old_cols;        /* [n,C] the columns before this edit */
    float *new_cols;        /* [n,C] the columns it wrote */
    char label[128];        /* rule and parameters, for listings and journals */
    int active;
    struct kn_edit *next;   /* all edits of the model, in order of application */
} kn_edit;

/* Writes cols [n,C] into the value slots (layers[j], slots[j]). Refuses n < 1, an index out of
 * range, a slot named twice, or a non-finite value, and then leaves the model unchanged. */
kn_edit *kn_edit_slots(kn_model *m, int n, const int *layers, const int *slots, const float *cols,
                       const char *label, kn_err *err);
int kn_edit_undo(kn_model *m, kn_edit *e, kn_err *err);
/* Reads value slot (layer, i) into col [C]. */
int kn_slot_get(const kn_model *m, int layer, int i, float *col, kn_err *err);
/* The value slot (layer, i) read against every token's word embedding, as the paper's update rule
 * reads it (v' = v - l1 e_t + l2 e_t'): scores[V] = word_emb[V,C] . v[C], the direct projection
 * (no MLM head transform, no bias). The tokens a slot promotes are those with the largest score. */
int kn_slot_project(const kn_model *m, int layer, int i, float *scores, kn_err *err);
/* The model's edits in application order (active and undone), or NULL. */
kn_edit *kn_edits(const kn_model *m);
void kn_edits_free(kn_model *m);

#endif
