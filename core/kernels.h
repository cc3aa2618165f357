/* kernels.h: the math of a BERT layer as forward/backward pairs (llm.c style).
 * Arguments go outputs, caches, inputs, weights, sizes. Every backward ACCUMULATES into its
 * outputs (callers zero them first), and input-gradients and weight-gradients are separate
 * calls, so attribution never pays for weight gradients. Shapes use N rows (= B*T tokens),
 * C hidden, F FFN width, NH heads, V vocabulary. Linear weights are stored as Hugging Face
 * does, [out, in] row-major. No allocation, no printing. */
#ifndef KNWB_KERNELS_H
#define KNWB_KERNELS_H

/* out[N,OC] = inp[N,IC] . w[OC,IC]^T + b[OC] (b may be NULL) */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);
/* dinp[N,IC] += dout[N,OC] . w[OC,IC] */
void linear_backward_input(float *dinp, const float *dout, const float *w, int N, int IC, int OC);
/* dw[OC,IC] += dout^T . inp, db[OC] += column sums of dout (db may be NULL) */
void linear_backward_weight(float *dw, float *db, const float *dout, const float *inp, int N, int IC, int OC);

/* out[N,C] = (inp - mean) * rstd * w + b; caches mean[N], rstd[N] */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps);
void layernorm_backward_input(float *dinp, const float *dout, const float *inp,
                              const float *mean, const float *rstd, const float *w, int N, int C);
void layernorm_backward_weight(float *dw, float *db, const float *dout, const float *inp,
                               const float *mean, const float *rstd, int N, int C);

/* exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)) */
void gelu_forward(float *out, const float *inp, long n);
void gelu_backward(float *dinp, const float *dout, const float *inp, long n);

/* Multi-head self-attention core on q,k,v [B*T, C] (heads are C/NH-wide column blocks).
 * att[B,NH,T,T] caches the probabilities; keymask[B,T] is 1 for real tokens, 0 for padding
 * (adds -10000 to the scores, as BERT does). ctx[B*T, C] is the concatenated head outputs. */
void attention_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                       const float *keymask, int B, int T, int C, int NH);
/* datt[B,NH,T,T] is scratch (overwritten). */
void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                        const float *att, const float *q, const float *k, const float *v,
                        int B, int T, int C, int NH);

/* probs[V] = softmax(logits[V]) computed in double for the sum; returns log of the sum of exps
 * shifted by the max (so log p_i = logits_i - max - ret). */
double softmax_row(float *probs, const float *logits, int V);

/* Sum of a[n], in double. */
double sum_floats(const float *a, long n);

#endif
