/* kernels_attention.c: the scaled dot-product attention core of every family (kernels.h states
 * the masks and shapes): grouped-query heads, bidirectional with BERT's -10000 key padding mask
 * or causal (optionally windowed) with excluded keys at probability exactly 0, and queries that
 * may be any subset of the rows. Per (sequence, head) it is three GEMMs on the heads' column
 * blocks in place (strides NH*hd for queries, NKV*hd for keys and values), and a softmax per
 * query row. Not here: the q/k/v/output projections and RoPE, which the engine applies around
 * it. */
#include "kernels.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

int attn_check(const attn_dims *d, const int *qpos, kn_err *err) {
    if (d->B < 1 || d->T < 1 || d->NH < 1 || d->NKV < 1 || d->hd < 1)
        return kn_fail(err, "attention: B %d, T %d, NH %d, NKV %d, hd %d must all be at least 1",
                       d->B, d->T, d->NH, d->NKV, d->hd);
    if (d->Tq < 1 || d->Tq > d->T)
        return kn_fail(err, "attention: %d query rows per sequence out of range [1, %d]", d->Tq, d->T);
    if (d->NH % d->NKV != 0)
        return kn_fail(err, "attention: %d query heads are not a multiple of %d key/value heads", d->NH, d->NKV);
    if (d->causal != 0 && d->causal != 1) return kn_fail(err, "attention: causal must be 0 or 1, got %d", d->causal);
    if (d->window < 0 || (d->window > 0 && !d->causal))
        return kn_fail(err, "attention: sliding window %d must be >= 0 and needs causal attention", d->window);
    if ((int64_t)d->NH * d->hd > INT_MAX)
        return kn_fail(err, "attention: %d heads of width %d exceed the GEMM's int range", d->NH, d->hd);
    /* the largest buffers, att [B, NH, Tq, T] and q [B*Tq, NH*hd], indexed in 64 bits */
    if ((double)d->B * d->NH * d->Tq * d->T > (double)INT64_MAX / 8 || (double)d->B * d->T * d->NH * d->hd > (double)INT64_MAX / 8)
        return kn_fail(err, "attention: B %d x NH %d x T %d overflows 64-bit sizes", d->B, d->NH, d->T);
    if (qpos) {
        for (int b = 0; b < d->B; b++)
            for (int i = 0; i < d->Tq; i++) {
                int p = qpos[(int64_t)b * d->Tq + i];
                if (p < 0 || p >= d->T)
                    return kn_fail(err, "attention: query %d of sequence %d at position %d out of range [0, %d)", i, b, p, d->T);
            }
    }
    return 0;
}

/* row[T] <- softmax over the keys s in [lo, hi] with mask[s] != 0 (mask NULL: all), every other
 * entry exactly 0; a row with no such key becomes all zeros. Sums in double, as softmax_row. */
static void softmax_keys(float *row, int lo, int hi, const float *mask, int T) {
    float mx = -INFINITY;
    for (int s = lo; s <= hi; s++)
        if ((!mask || mask[s] != 0.0f) && row[s] > mx) mx = row[s];
    if (mx == -INFINITY) {
        memset(row, 0, sizeof(float) * T);
        return;
    }
    double sum = 0;
    for (int s = 0; s < T; s++) {
        if (s < lo || s > hi || (mask && mask[s] == 0.0f)) {
            row[s] = 0.0f;
            continue;
        }
        float e = expf(row[s] - mx);
        row[s] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int s = lo; s <= hi; s++) row[s] *= inv;
}

void attn_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                  const float *keymask, const int *qpos, const attn_dims *d) {
    int B = d->B, T = d->T, Tq = d->Tq, NH = d->NH, hd = d->hd, group = d->NH / d->NKV;
    int QC = NH * hd, KC = d->NKV * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        const float *mask = keymask ? keymask + (int64_t)b * T : NULL;
        const int *pos = qpos ? qpos + (int64_t)b * Tq : NULL;
        for (int h = 0; h < NH; h++) {
            const float *qb = q + (int64_t)b * Tq * QC + (int64_t)h * hd;
            const float *kb = k + (int64_t)b * T * KC + (int64_t)(h / group) * hd;
            const float *vb = v + (int64_t)b * T * KC + (int64_t)(h / group) * hd;
            float *A = att + ((int64_t)b * NH + h) * Tq * T;
            /* scores[Tq,T] = q_h . k_g^T * scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, T, hd, scale, qb, QC, kb, KC,
                        0.0f, A, T);
            for (int i = 0; i < Tq; i++) {
                float *row = A + (int64_t)i * T;
                if (!d->causal) {
                    if (mask)
                        for (int s = 0; s < T; s++) row[s] += (1.0f - mask[s]) * -10000.0f;
                    softmax_row(row, row, T);
                } else {
                    int p = pos ? pos[i] : T - Tq + i;
                    int lo = d->window > 0 && p - d->window + 1 > 0 ? p - d->window + 1 : 0;
                    softmax_keys(row, lo, p, mask, T);
                }
            }
            /* ctx_h[Tq,hd] = A . v_g */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, T, 1.0f, A, T, vb, KC,
                        0.0f, ctx + (int64_t)b * Tq * QC + (int64_t)h * hd, QC);
        }
    }
}

void attn_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                   const float *att, const float *q, const float *k, const float *v, const attn_dims *d) {
    int B = d->B, T = d->T, Tq = d->Tq, NH = d->NH, hd = d->hd, group = d->NH / d->NKV;
    int QC = NH * hd, KC = d->NKV * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int64_t qoff = (int64_t)b * Tq * QC + (int64_t)h * hd;
            int64_t koff = (int64_t)b * T * KC + (int64_t)(h / group) * hd;
            const float *A = att + ((int64_t)b * NH + h) * Tq * T;
            float *dA = datt + ((int64_t)b * NH + h) * Tq * T;
            /* dA = dctx_h . v_g^T ; dv_g += A^T . dctx_h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, T, hd, 1.0f, dctx + qoff, QC,
                        v + koff, KC, 0.0f, dA, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, Tq, 1.0f, A, T, dctx + qoff, QC,
                        1.0f, dv + koff, KC);
            /* softmax backward: dS = A * (dA - sum(dA * A)); excluded keys have A = 0, so dS = 0 */
            for (int i = 0; i < Tq; i++) {
                const float *a = A + (int64_t)i * T;
                float *da = dA + (int64_t)i * T;
                double dot = 0;
                for (int s = 0; s < T; s++) dot += (double)a[s] * da[s];
                for (int s = 0; s < T; s++) da[s] = a[s] * (da[s] - (float)dot);
            }
            /* dq_h += dS . k_g * scale ; dk_g += dS^T . q_h * scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, T, scale, dA, T, k + koff, KC,
                        1.0f, dq + qoff, QC);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, Tq, scale, dA, T, q + qoff, QC,
                        1.0f, dk + koff, KC);
        }
    }
}

void attention_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                       const float *keymask, int B, int T, int C, int NH) {
    attn_dims d = { .B = B, .T = T, .Tq = T, .NH = NH, .NKV = NH, .hd = C / NH, .causal = 0, .window = 0 };
    attn_forward(ctx, att, q, k, v, keymask, NULL, &d);
}

void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                        const float *att, const float *q, const float *k, const float *v,
                        int B, int T, int C, int NH) {
    attn_dims d = { .B = B, .T = T, .Tq = T, .NH = NH, .NKV = NH, .hd = C / NH, .causal = 0, .window = 0 };
    attn_backward(dq, dk, dv, datt, dctx, att, q, k, v, &d);
}
