/* objective.h: the scalars knwb differentiates, computed from head logits [P,V]:
 * the probability (or log-probability) of a target token at each head row, and the masked-LM
 * cross-entropy. Each returns values and, when asked, d(sum of values)/d(logits). */
#ifndef KNWB_OBJECTIVE_H
#define KNWB_OBJECTIVE_H

/* value[p] = P(target[p] | row p) (or its log when use_log). dlogits [P,V] (may be NULL) gets
 * the gradient of sum_p weight[p] * value[p] (weight NULL = all 1). */
void kn_target_objective(const float *logits, int P, int V, const int *target, int use_log,
                         const float *weight, double *value, float *dlogits);

/* Mean cross-entropy over the rows whose label is >= 0 (labels < 0 are ignored, as HF's -100).
 * dlogits [P,V] (may be NULL) gets d(loss)/d(logits). correct (may be NULL) counts the labelled
 * rows whose argmax is the label. Returns 0 when no row is labelled. */
double kn_mlm_loss(const float *logits, int P, int V, const int *labels, float *dlogits, int *labelled, int *correct);

/* Masked-LM cross-entropy with label smoothing s in [0, 1): each labelled row's target is
 * (1 - s) onehot(label) + s / V. Returns that loss (mean over labelled rows); dlogits (may be
 * NULL) gets its gradient, (p - target) / n. s = 0 is kn_mlm_loss exactly. */
double kn_mlm_loss_smoothed(const float *logits, int P, int V, const int *labels, float s, float *dlogits,
                            int *labelled, int *correct);

#endif
