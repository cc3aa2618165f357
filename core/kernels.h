/* kernels.h: the transformer math of every model family (BERT, GPT-2, Llama/Mistral/Qwen2) as
 * forward/backward pairs (llm.c style). It is math only: no model, no config, no allocation, no
 * printing; the few functions that can be handed impossible settings return kn_err messages.
 *
 * Conventions, stated once:
 * - Arguments go outputs, caches, inputs, weights, sizes.
 * - Every backward ACCUMULATES into its outputs (callers zero them first); input-gradients and
 *   weight-gradients are separate calls, so attribution never pays for weight gradients.
 * - Shapes: N rows (= B*T tokens), C hidden, F FFN width, NH query heads, NKV key/value heads,
 *   hd head width, V vocabulary. Heads are hd-wide column blocks of a row.
 * - Linear weights come in the two layouts checkpoints use: [out, in] row-major (Hugging Face
 *   nn.Linear: linear_*) and [in, out] (GPT-2's Conv1D: linear_io_*), both used in place.
 *
 * Sources: both linear layouts in kernels_linear.c, LayerNorm and RMSNorm in kernels_norm.c,
 * activations in kernels_act.c, rotary embeddings in kernels_rope.c, attention in
 * kernels_attention.c, softmax, sums, vector and embedding helpers in kernels.c. */
#ifndef KNWB_KERNELS_H
#define KNWB_KERNELS_H

#include "error.h"

/* ---------------------------------------------------------------- linear, weight [out, in] */

/* out[N,OC] = inp[N,IC] . w[OC,IC]^T + b[OC] (b may be NULL) */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);
/* dinp[N,IC] += dout[N,OC] . w[OC,IC] */
void linear_backward_input(float *dinp, const float *dout, const float *w, int N, int IC, int OC);
/* dw[OC,IC] += dout^T . inp, db[OC] += column sums of dout (db may be NULL) */
void linear_backward_weight(float *dw, float *db, const float *dout, const float *inp, int N, int IC, int OC);

/* ---------------------------------------------------------------- linear, weight [in, out] */
/* GPT-2's Conv1D stores its weight [in, out]: out = inp . w + b. ldw is the row stride of w
 * (= OC for a whole matrix); ldw > OC takes a column block in place, e.g. the query, key or
 * value third of GPT-2's fused c_attn [C, 3C] is w + 0, w + C or w + 2C with ldw = 3C (and its
 * bias b + 0, b + C, b + 2C). dw has the same stride, so the three blocks' gradients land in
 * one [C, 3C] gradient. */

/* out[N,OC] = inp[N,IC] . w[IC,OC] + b[OC] (b may be NULL) */
void linear_io_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC, int ldw);
/* dinp[N,IC] += dout[N,OC] . w[IC,OC]^T */
void linear_io_backward_input(float *dinp, const float *dout, const float *w, int N, int IC, int OC, int ldw);
/* dw[IC,OC] += inp^T . dout, db[OC] += column sums of dout (db may be NULL) */
void linear_io_backward_weight(float *dw, float *db, const float *dout, const float *inp, int N, int IC, int OC, int ldw);

/* ---------------------------------------------------------------- LayerNorm (BERT, GPT-2) */

/* out[N,C] = (inp - mean) * rstd * w + b; caches mean[N], rstd[N] */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps);
void layernorm_backward_input(float *dinp, const float *dout, const float *inp,
                              const float *mean, const float *rstd, const float *w, int N, int C);
void layernorm_backward_weight(float *dw, float *db, const float *dout, const float *inp,
                               const float *mean, const float *rstd, int N, int C);

/* ---------------------------------------------------------------- RMSNorm (Llama, Mistral, Qwen2) */

/* out[N,C] = inp * rstd * w with rstd = 1/sqrt(mean(inp^2) + eps) (no centring, no bias), as HF
 * LlamaRMSNorm: (x * rstd) * w; mean(x^2) accumulated in double; caches rstd[N]. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
/* dinp[N,C] += rstd * (dy*w - xhat * mean(dy*w * xhat)), xhat = inp * rstd */
void rmsnorm_backward_input(float *dinp, const float *dout, const float *inp, const float *rstd,
                            const float *w, int N, int C);
/* dw[C] += sum over rows of dout * inp * rstd */
void rmsnorm_backward_weight(float *dw, const float *dout, const float *inp, const float *rstd, int N, int C);

/* ---------------------------------------------------------------- activations */

/* exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)) (BERT's "gelu") */
void gelu_forward(float *out, const float *inp, long n);
void gelu_backward(float *dinp, const float *dout, const float *inp, long n);

/* The activations of the supported families. GELU_TANH is 0.5 x (1 + tanh(sqrt(2/pi) (x +
 * 0.044715 x^3))): HF's "gelu_new" (GPT-2) and "gelu_pytorch_tanh"; RELU is max(x, 0) with
 * derivative 0 at 0 (as torch); SILU is x * sigmoid(x) = x / (1 + exp(-x)) (HF "silu"/"swish"). */
enum kn_act { KN_ACT_GELU_ERF, KN_ACT_GELU_TANH, KN_ACT_RELU, KN_ACT_SILU };

/* The kind that a Hugging Face hidden_act / activation_function string names: "gelu" and
 * "gelu_python" (erf), "gelu_new" and "gelu_pytorch_tanh" (tanh), "relu", "silu" and "swish".
 * Returns 0, or -1 for any other name (the caller refuses the config, naming its key). */
int kn_act_from_name(const char *name, enum kn_act *kind);
/* The canonical HF name of a kind ("gelu", "gelu_new", "relu", "silu"). */
const char *kn_act_name(enum kn_act kind);

/* out[n] = f(inp[n]); KN_ACT_GELU_ERF is gelu_forward itself (bit for bit) */
void act_forward(enum kn_act kind, float *out, const float *inp, long n);
/* dinp[n] += dout[n] * f'(inp[n]) */
void act_backward(enum kn_act kind, float *dinp, const float *dout, const float *inp, long n);

/* Gated linear unit: act[n] = f(gate[n]) * up[n], as HF computes act_fn(gate_proj(x)) *
 * up_proj(x). With KN_ACT_SILU this is Llama's SwiGLU (Mistral, Qwen2 too); act is the neuron
 * activation, the input of down_proj. */
void glu_forward(enum kn_act kind, float *act, const float *gate, const float *up, long n);
/* dgate[n] += dact * up * f'(gate); dup[n] += dact * f(gate) */
void glu_backward(enum kn_act kind, float *dgate, float *dup, const float *dact,
                  const float *gate, const float *up, long n);

/* ---------------------------------------------------------------- rotary position embeddings */
/* Hugging Face's rotate-half layout (LlamaRotaryEmbedding, apply_rotary_pos_emb): a head of
 * width d (even) is two halves x1 = x[0, d/2), x2 = x[d/2, d); rotate_half(x) = (-x2, x1);
 * tables cos, sin [N, d] hold cat(freqs, freqs) with freqs[i] = pos * inv_freq[i]; and
 * x' = x * cos + rotate_half(x) * sin, i.e. pair (x1[i], x2[i]) turns by angle freqs[i].
 *
 * Precision: inv_freq, the angles and the tables are float32 values rounded exactly where HF's
 * float32 tensors round them (HF builds inv_freq in float32 from an int64 arange, multiplies by
 * float32 positions, takes float32 cos/sin), with only pow, cos and sin evaluated in double and
 * rounded once (so correctly rounded). We do not compute the "exact" angle in double: the
 * checkpoints were trained, and HF runs them, with these float32 angles, and at long positions
 * the two differ by far more than a rounding step (pos * inv_freq rounded to float32 is off by
 * up to pos * 2^-24 radians, 4e-3 rad at position 65535; measured on the test cases: cos
 * tables 1e-3 apart at position 131071), so the float32 recipe is the model's own positional
 * function. What remains: torch's float32 pow is not always correctly rounded, so an HF
 * inv_freq entry can sit 1 ulp from ours (seen once in 39 test entries, a near-tie), which moves
 * that frequency's angle by pos * 1 ulp; cos/sin match HF's to 6e-8 given the same inv_freq. */

enum kn_rope_type { KN_ROPE_DEFAULT, KN_ROPE_LINEAR, KN_ROPE_LLAMA3 };

typedef struct kn_rope {
    enum kn_rope_type type;
    double theta;            /* rope_theta (the base) */
    double factor;           /* rope_scaling.factor: LINEAR and LLAMA3 */
    double low_freq_factor;  /* LLAMA3: rope_scaling.low_freq_factor */
    double high_freq_factor; /* LLAMA3: rope_scaling.high_freq_factor */
    double original_max_position_embeddings; /* LLAMA3: rope_scaling.original_max_position_embeddings */
} kn_rope;

/* inv_freq[d/2] for head width d: DEFAULT 1/theta^(2i/d); LINEAR the same divided by factor
 * (HF's current _compute_linear_scaling_rope_parameters, equal to dividing the positions);
 * LLAMA3 HF's _compute_llama3_parameters (wavelengths 2 pi / inv_freq above
 * original_max_position_embeddings / low_freq_factor divided by factor, below
 * original_max_position_embeddings / high_freq_factor kept, smoothly blended between).
 * Refuses an odd or non-positive d and out-of-range settings, naming the setting. */
int rope_inv_freq(float *inv_freq, const kn_rope *rope, int d, kn_err *err);
/* cos[N,d], sin[N,d] for row positions pos[N] (pos NULL: row n is at position n). */
void rope_table(float *cos, float *sin, const float *inv_freq, const int *pos, int N, int d);
/* out[N, H*d] = inp rotated head by head with table row n for row n; out may be inp (in place) */
void rope_forward(float *out, const float *inp, const float *cos, const float *sin, int N, int H, int d);
/* dinp[N, H*d] += the inverse rotation of dout (the transpose of the forward) */
void rope_backward(float *dinp, const float *dout, const float *cos, const float *sin, int N, int H, int d);

/* ---------------------------------------------------------------- attention */
/* One scaled dot-product attention core for every family. Each of B sequences has T keys at
 * positions 0..T-1 and Tq query rows at positions qpos[b*Tq + i] (qpos NULL: the last Tq
 * positions T-Tq..T-1, so Tq = T is the whole sequence and Tq < T a KV-cached step, or only
 * the rows a prediction needs). Query head h reads key/value head h / (NH/NKV) (grouped-query
 * attention; NKV = NH is plain multi-head). Scores are q.k / sqrt(hd).
 *
 * Masks:
 * - causal = 0 (BERT): keymask[B,T] (1 real, 0 padding; NULL = all real) adds -10000 to padded
 *   keys' scores, as HF BERT does; with NKV = NH, Tq = T this is exactly the float arithmetic
 *   of knwb's original attention (tested bit for bit).
 * - causal = 1 (GPT-2, Llama, Mistral, Qwen2): query at position p sees keys s <= p, and with
 *   window > 0 (Mistral's sliding_window) only keys with p - s < window (HF's
 *   sliding_window_overlay: s > p - window); keys with keymask 0 are excluded too. Excluded keys
 *   get probability exactly 0, as HF's min-float mask gives. A query row left with no key at
 *   all (a padded row before any real token) gets all-zero probabilities and a zero context. */
typedef struct attn_dims {
    int B;      /* sequences */
    int T;      /* keys (and values) per sequence */
    int Tq;     /* query rows per sequence, 1 <= Tq <= T */
    int NH;     /* query heads */
    int NKV;    /* key/value heads; NH is a multiple of NKV */
    int hd;     /* head width */
    int causal; /* 0: bidirectional with the -10000 key padding mask; 1: causal */
    int window; /* causal only: sliding window length, 0 = none */
} attn_dims;

/* Refuses inconsistent dims (and qpos entries outside [0, T), if qpos is given), naming them. */
int attn_check(const attn_dims *d, const int *qpos, kn_err *err);

/* q[B*Tq, NH*hd], k and v [B*T, NKV*hd] -> ctx[B*Tq, NH*hd] (heads concatenated);
 * caches the probabilities att[B, NH, Tq, T]. */
void attn_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                  const float *keymask, const int *qpos, const attn_dims *d);
/* dq[B*Tq, NH*hd] += ..., dk, dv [B*T, NKV*hd] += ... (summed over the query heads of a group);
 * datt[B, NH, Tq, T] is scratch (overwritten). */
void attn_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                   const float *att, const float *q, const float *k, const float *v, const attn_dims *d);

/* BERT's multi-head self-attention on q, k, v [B*T, C] (heads are C/NH-wide column blocks),
 * keymask[B,T] as above, att[B,NH,T,T]: attn_forward / attn_backward with NKV = NH, Tq = T,
 * causal = 0 (thin wrappers, bit-identical to the original kernels; datt is scratch). */
void attention_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                       const float *keymask, int B, int T, int C, int NH);
void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                        const float *att, const float *q, const float *k, const float *v,
                        int B, int T, int C, int NH);

/* ---------------------------------------------------------------- reductions, vectors */

/* probs[V] = softmax(logits[V]) computed in double for the sum; returns log of the sum of exps
 * shifted by the max (so log p_i = logits_i - max - ret). */
double softmax_row(float *probs, const float *logits, int V);

/* Sum of a[n], in double. */
double sum_floats(const float *a, long n);

/* y[n] += x[n] (a residual's second path; a gradient reaching a tensor along two paths) */
void vec_add_into(float *y, const float *x, long n);
/* out[n] = a[n] + b[n] (a residual connection; out may be a or b) */
void vec_add(float *out, const float *a, const float *b, long n);

/* out[N,C] = table[ids[n], :] (token or position embeddings); ids must lie in [0, rows of
 * table): the caller validates them, with the message naming the row and position. */
void embedding_forward(float *out, const int *ids, const float *table, int N, int C);
/* dtable[ids[n], :] += dout[n, :] (repeated ids add up) */
void embedding_backward_weight(float *dtable, const float *dout, const int *ids, int N, int C);

#endif
