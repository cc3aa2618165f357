/* kernels.c: the small shared pieces of the kernel set (see kernels.h): the softmax of one row
 * and the double-precision sum that the objectives and attention use, vector adds for residual
 * connections and gradients that meet, and embedding lookups. The layers' kernels live in
 * kernels_linear.c, kernels_norm.c, kernels_act.c, kernels_rope.c and kernels_attention.c. */
#include "kernels.h"

#include <math.h>
#include <string.h>

double softmax_row(float *probs, const float *logits, int V) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        float e = expf(logits[i] - mx);
        probs[i] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < V; i++) probs[i] *= inv;
    return log(sum);
}

double sum_floats(const float *a, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += a[i];
    return s;
}

void vec_add_into(float *y, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += x[i];
}

void vec_add(float *out, const float *a, const float *b, long n) {
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void embedding_forward(float *out, const int *ids, const float *table, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (long)n * C, table + (long)ids[n] * C, sizeof(float) * C);
}

void embedding_backward_weight(float *dtable, const float *dout, const int *ids, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *row = dtable + (long)ids[n] * C;
        const float *g = dout + (long)n * C;
        for (int j = 0; j < C; j++) row[j] += g[j];
    }
}
