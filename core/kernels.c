/* kernels.c: forward/backward pairs of the BERT layer math (see kernels.h for conventions).
 * GEMMs go through cblas_sgemm; everything else is plain loops that the compiler vectorizes.
 * Reductions that decide numerics (LayerNorm moments, softmax sums) accumulate in double. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

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

void linear_backward_weight(float *dw, float *db, const float *dout, const float *inp, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC,
                1.0f, dw, IC);
    if (db) {
        for (int n = 0; n < N; n++) {
            const float *row = dout + (long)n * OC;
            for (int o = 0; o < OC; o++) db[o] += row[o];
        }
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C; i++) { double d = x[i] - m; v += d * d; }
        v /= C;
        float s = (float)(1.0 / sqrt(v + eps));
        float mf = (float)m;
        float *y = out + (long)n * C;
        for (int i = 0; i < C; i++) y[i] = (x[i] - mf) * s * w[i] + b[i];
        mean[n] = mf;
        rstd[n] = s;
    }
}

void layernorm_backward_input(float *dinp, const float *dout, const float *inp,
                              const float *mean, const float *rstd, const float *w, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
        float *dx = dinp + (long)n * C;
        float m = mean[n], s = rstd[n];
        /* dxhat = dy * w; dx = s * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
        double a = 0, c = 0;
        for (int i = 0; i < C; i++) {
            double dxh = (double)dy[i] * w[i];
            double xh = (x[i] - m) * s;
            a += dxh;
            c += dxh * xh;
        }
        a /= C;
        c /= C;
        for (int i = 0; i < C; i++) {
            double dxh = (double)dy[i] * w[i];
            double xh = (x[i] - m) * s;
            dx[i] += (float)(s * (dxh - a - xh * c));
        }
    }
}

void layernorm_backward_weight(float *dw, float *db, const float *dout, const float *inp,
                               const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
        float m = mean[n], s = rstd[n];
        for (int i = 0; i < C; i++) {
            dw[i] += dy[i] * ((x[i] - m) * s);
            db[i] += dy[i];
        }
    }
}

void gelu_forward(float *out, const float *inp, long n) {
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, long n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void attention_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                       const float *keymask, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        const float *mask = keymask + (long)b * T;
        for (int h = 0; h < NH; h++) {
            const float *qb = q + (long)b * T * C + h * hs;
            const float *kb = k + (long)b * T * C + h * hs;
            const float *vb = v + (long)b * T * C + h * hs;
            float *A = att + ((long)b * NH + h) * T * T;
            /* scores[T,T] = q_h . k_h^T * scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, qb, C, kb, C,
                        0.0f, A, T);
            for (int t = 0; t < T; t++) {
                float *row = A + (long)t * T;
                for (int s = 0; s < T; s++) row[s] += (1.0f - mask[s]) * -10000.0f;
                softmax_row(row, row, T);
            }
            /* ctx_h[T,hs] = A . v_h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, A, T, vb, C,
                        0.0f, ctx + (long)b * T * C + h * hs, C);
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                        const float *att, const float *q, const float *k, const float *v,
                        int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            long off = (long)b * T * C + h * hs;
            const float *A = att + ((long)b * NH + h) * T * T;
            float *dA = datt + ((long)b * NH + h) * T * T;
            /* dA = dctx_h . v_h^T ; dv_h += A^T . dctx_h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dctx + off, C,
                        v + off, C, 0.0f, dA, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, A, T, dctx + off, C,
                        1.0f, dv + off, C);
            /* softmax backward: dS = A * (dA - sum(dA * A)) */
            for (int t = 0; t < T; t++) {
                const float *a = A + (long)t * T;
                float *da = dA + (long)t * T;
                double dot = 0;
                for (int s = 0; s < T; s++) dot += (double)a[s] * da[s];
                for (int s = 0; s < T; s++) da[s] = a[s] * (da[s] - (float)dot);
            }
            /* dq_h += dS . k_h * scale ; dk_h += dS^T . q_h * scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dA, T, k + off, C,
                        1.0f, dq + off, C);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dA, T, q + off, C,
                        1.0f, dk + off, C);
        }
    }
}

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
