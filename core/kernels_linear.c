/* kernels_linear.c: dense layers as forward / backward-input / backward-weight triples, for
 * both weight layouts checkpoints store (see kernels.h): [out, in] (nn.Linear) and [in, out]
 * (GPT-2's Conv1D). Each is one cblas_sgemm on the weight in place; nothing is transposed or
 * copied. Not here: the bias-free fused projections' splitting, which is the engine's. */
#include "kernels.h"

#include <cblas.h>
#include <string.h>

/* ---------------------------------------------------------------- weight [out, in] */

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC) {
    if (b) {
        for (int n = 0; n < N; n++) memcpy(out + (long)n * OC, b, sizeof(float) * OC);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC,
                b ? 1.0f : 0.0f, out, OC);
}

void linear_backward_input(float *dinp, const float *dout, const float *w, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC,
                1.0f, dinp, IC);
}

static void add_column_sums(float *db, const float *dout, int N, int OC) {
    for (int n = 0; n < N; n++) {
        const float *row = dout + (long)n * OC;
        for (int o = 0; o < OC; o++) db[o] += row[o];
    }
}

void linear_backward_weight(float *dw, float *db, const float *dout, const float *inp, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC,
                1.0f, dw, IC);
    if (db) add_column_sums(db, dout, N, OC);
}

/* ---------------------------------------------------------------- weight [in, out] */

void linear_io_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC, int ldw) {
    if (b) {
        for (int n = 0; n < N; n++) memcpy(out + (long)n * OC, b, sizeof(float) * OC);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, w, ldw,
                b ? 1.0f : 0.0f, out, OC);
}

void linear_io_backward_input(float *dinp, const float *dout, const float *w, int N, int IC, int OC, int ldw) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, IC, OC, 1.0f, dout, OC, w, ldw,
                1.0f, dinp, IC);
}

void linear_io_backward_weight(float *dw, float *db, const float *dout, const float *inp, int N, int IC, int OC, int ldw) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, N, 1.0f, inp, IC, dout, OC,
                1.0f, dw, ldw);
    if (db) add_column_sums(db, dout, N, OC);
}
