/* test_objective.c: the label-smoothed masked-LM loss the trainer uses (core/objective.h):
 * its value against a direct double-precision computation of -sum_i target_i log p_i, its
 * gradient against finite differences, s = 0 against the plain cross-entropy bit for bit, and
 * ignored rows. (The plain loss and its gradient are checked against PyTorch in test_bert.c.) */
#include "check.h"
#include "objective.h"

#include <stdint.h>
#include <stdlib.h>

#define P 4
#define V 7

static double direct_loss(const float *logits, const int *labels, double s) {
    double total = 0;
    int n = 0;
    for (int p = 0; p < P; p++) {
        if (labels[p] < 0) continue;
        const float *row = logits + p * V;
        double mx = row[0], sum = 0;
        for (int i = 1; i < V; i++) if (row[i] > mx) mx = row[i];
        for (int i = 0; i < V; i++) sum += exp(row[i] - mx);
        for (int i = 0; i < V; i++) {
            double target = (i == labels[p] ? 1 - s : 0) + s / V;
            total -= target * (row[i] - mx - log(sum));
        }
        n++;
    }
    return total / n;
}

int main(void) {
    float logits[P * V];
    uint64_t seed = 12345;
    for (int i = 0; i < P * V; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        logits[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 6 - 3);
    }
    int labels[P] = { 2, -100, 6, 0 };
    float d0[P * V], d1[P * V];

    double plain = kn_mlm_loss(logits, P, V, labels, d0, NULL, NULL);
    int n = 0;
    double s0 = kn_mlm_loss_smoothed(logits, P, V, labels, 0.0f, d1, &n, NULL);
    CHECK(plain == s0 && memcmp(d0, d1, sizeof d0) == 0, "smoothing 0 is the plain cross-entropy, bit for bit (%.9f)", plain);
    CHECK(n == 3, "the row labelled -100 is ignored (%d labelled rows)", n);

    for (int k = 0; k < 3; k++) {
        float s = k == 0 ? 0.1f : k == 1 ? 0.2f : 0.5f;
        double got = kn_mlm_loss_smoothed(logits, P, V, labels, s, d1, NULL, NULL);
        double want = direct_loss(logits, labels, s);
        CHECK(fabs(got - want) < 1e-5 * fabs(want), "smoothing %.1f: loss %.7f vs direct %.7f", s, got, want);
        double worst = 0, scale = 0;
        for (int i = 0; i < P * V; i++) {
            float saved = logits[i], h = 1e-2f;
            logits[i] = saved + h;
            double up = kn_mlm_loss_smoothed(logits, P, V, labels, s, NULL, NULL, NULL);
            logits[i] = saved - h;
            double dn = kn_mlm_loss_smoothed(logits, P, V, labels, s, NULL, NULL, NULL);
            logits[i] = saved;
            double fd = (up - dn) / (2 * h);
            if (fabs(fd - d1[i]) > worst) worst = fabs(fd - d1[i]);
            if (fabs(d1[i]) > scale) scale = fabs(d1[i]);
        }
        CHECK(worst <= 1e-2 * scale + 1e-4, "smoothing %.1f: gradient matches finite differences (worst %.2e, scale %.2e)", s, worst, scale);
        double row_sum = 0;
        for (int i = V; i < 2 * V; i++) row_sum += fabs(d1[i]);
        CHECK(row_sum == 0, "smoothing %.1f: no gradient on the ignored row", s);
    }
    return check_done();
}
