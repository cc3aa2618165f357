/* objective.c: target probabilities and the masked-LM loss with their logit gradients.
 * Nothing here allocates: a row's softmax is written into that row of dlogits (which the
 * gradient overwrites next), and without dlogits only its log-normaliser is needed, summed in
 * the same order as softmax_row so both paths give the same bits. */
#include "objective.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

/* log(sum_i exp(row[i] - max)), exactly as softmax_row computes its return value. */
static double row_lse(const float *row, int V) {
    float mx = row[0];
    for (int i = 1; i < V; i++) if (row[i] > mx) mx = row[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += expf(row[i] - mx);
    return log(sum);
}

void kn_target_objective(const float *logits, int P, int V, const int *target, int use_log,
                         const float *weight, double *value, float *dlogits) {
    for (int p = 0; p < P; p++) {
        const float *row = logits + (long)p * V;
        float *probs = dlogits ? dlogits + (long)p * V : NULL; /* [V], overwritten by the gradient */
        double lse = probs ? softmax_row(probs, row, V) : row_lse(row, V);
        float mx = row[0];
        for (int i = 1; i < V; i++) if (row[i] > mx) mx = row[i];
        double logp = (double)row[target[p]] - mx - lse;
        double pt = exp(logp);
        if (value) value[p] = use_log ? logp : pt;
        if (dlogits) {
            float w = weight ? weight[p] : 1.0f;
            float *d = probs;
            /* d log p_t / d z_j = [j == t] - p_j ;  d p_t / d z_j = p_t ([j == t] - p_j) */
            float s = use_log ? w : (float)(w * pt);
            for (int i = 0; i < V; i++) d[i] = -s * probs[i];
            d[target[p]] += s;
        }
    }
}

double kn_mlm_loss(const float *logits, int P, int V, const int *labels, float *dlogits, int *labelled, int *correct) {
    int n = 0, ok = 0;
    for (int p = 0; p < P; p++) n += labels[p] >= 0;
    if (dlogits) memset(dlogits, 0, sizeof(float) * (long)P * V);
    if (labelled) *labelled = n;
    if (correct) *correct = 0;
    if (n == 0) return 0;
    double loss = 0;
    for (int p = 0; p < P; p++) {
        if (labels[p] < 0) continue;
        const float *row = logits + (long)p * V;
        float *probs = dlogits ? dlogits + (long)p * V : NULL; /* [V], overwritten by the gradient */
        double lse = probs ? softmax_row(probs, row, V) : row_lse(row, V);
        float mx = row[0];
        int arg = 0;
        for (int i = 1; i < V; i++) if (row[i] > mx) { mx = row[i]; arg = i; }
        loss -= (double)row[labels[p]] - mx - lse;
        ok += arg == labels[p];
        if (dlogits) {
            float *d = probs;
            for (int i = 0; i < V; i++) d[i] = probs[i] / n;
            d[labels[p]] -= 1.0f / n;
        }
    }
    if (correct) *correct = ok;
    return loss / n;
}

double kn_mlm_loss_smoothed(const float *logits, int P, int V, const int *labels, float s, float *dlogits,
                            int *labelled, int *correct) {
    int n = 0;
    double ce = kn_mlm_loss(logits, P, V, labels, dlogits, &n, correct);
    if (labelled) *labelled = n;
    if (n == 0 || s == 0.0f) return ce;
    /* the uniform part: -1/V sum_i log p_i = logsumexp(row) - mean(row) */
    double uni = 0;
    for (int p = 0; p < P; p++) {
        if (labels[p] < 0) continue;
        const float *row = logits + (long)p * V;
        float mx = row[0];
        for (int i = 1; i < V; i++) if (row[i] > mx) mx = row[i];
        double sum = 0, mean = 0;
        for (int i = 0; i < V; i++) { sum += exp((double)row[i] - mx); mean += row[i]; }
        uni += mx + log(sum) - mean / V;
        if (dlogits) {
            /* kn_mlm_loss left (p - onehot) / n; the smoothed target moves s of the one-hot
             * mass to the uniform distribution */
            float *d = dlogits + (long)p * V;
            for (int i = 0; i < V; i++) d[i] -= s / V / n;
            d[labels[p]] += s / n;
        }
    }
    return (1 - s) * ce + s * uni / n;
}
