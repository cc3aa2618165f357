/* kernels_norm.c: per-row normalisations as forward / backward-input / backward-weight triples:
 * LayerNorm (BERT, GPT-2) and RMSNorm (Llama, Mistral, Qwen2). The row moments that decide the
 * numerics accumulate in double; the cached per-row statistics are float, so a backward sees
 * exactly the numbers its forward used. */
#include "kernels.h"

#include <math.h>

/* ---------------------------------------------------------------- LayerNorm */

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

/* ---------------------------------------------------------------- RMSNorm */

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        double ms = 0;
        for (int i = 0; i < C; i++) ms += (double)x[i] * x[i];
        ms /= C;
        float s = (float)(1.0 / sqrt(ms + eps));
        float *y = out + (long)n * C;
        /* HF's order: the normalised row first, then the weight */
        for (int i = 0; i < C; i++) y[i] = (x[i] * s) * w[i];
        rstd[n] = s;
    }
}

void rmsnorm_backward_input(float *dinp, const float *dout, const float *inp, const float *rstd,
                            const float *w, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
        float *dx = dinp + (long)n * C;
        float s = rstd[n];
        /* y = w * x * s with s = (mean(x^2) + eps)^-1/2, ds/dx_j = -s^3 x_j / C, so
         * dx = s * (dxhat - xhat * mean(dxhat * xhat)) with dxhat = dy * w, xhat = x * s */
        double c = 0;
        for (int i = 0; i < C; i++) c += (double)dy[i] * w[i] * ((double)x[i] * s);
        c /= C;
        for (int i = 0; i < C; i++) {
            double dxh = (double)dy[i] * w[i];
            double xh = (double)x[i] * s;
            dx[i] += (float)(s * (dxh - xh * c));
        }
    }
}

void rmsnorm_backward_weight(float *dw, const float *dout, const float *inp, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
        float s = rstd[n];
        for (int i = 0; i < C; i++) dw[i] += dy[i] * (x[i] * s);
    }
}
