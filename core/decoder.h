/* decoder.h: the pre-LN causal decoder families, GPT-2 (GPT2LMHeadModel) and Llama
 * (LlamaForCausalLM, and on the same code MistralForCausalLM and Qwen2ForCausalLM):
 * configuration from config.json, weights mapped from Hugging Face safetensors, and the
 * forward/backward passes with interventions on ffn.act, integrated gradients, the LM-loss
 * gradient of every parameter, and greedy generation with a KV cache.
 *
 * Per layer (pre-norm):  h = norm1(x); q, k, v = proj(h) (RoPE on q, k for Llama);
 *   x' = x + O . attn(q, k, v) (+ bo);  h2 = norm2(x');
 *   act = gelu_new(W_fc h2 + b_fc) (GPT-2) or silu(W_gate h2) * (W_up h2) (Llama);
 *   out = x' + W_down . act (+ b_down).   Then the final norm and the head (tied or lm_head).
 * A "neuron" (l, i) is component i of act, the input of layer l's down projection. Its value
 * slot is what multiplies it: row i of GPT-2's Conv1D mlp.c_proj.weight [F, C] and column i
 * of Llama's mlp.down_proj.weight [C, F]; zeroing neuron i is exactly zeroing slot i.
 *
 * Shapes: B sequences of T tokens (N = B*T rows), C hidden, NH query heads, NKV key/value
 * heads, D head width, F FFN width, L layers, V vocabulary, P head rows. Sources: the config in
 * decoder_config.c, the loader in decoder_load.c, the passes in decoder.c, IG, LM loss and
 * generation in decoder_run.c. */
#ifndef KNWB_DECODER_H
#define KNWB_DECODER_H

#include <stdint.h>

#include "bert.h"      /* kn_param, kn_intervention (the same structs and semantics as BERT's) */
#include "ig.h"        /* kn_quadrature */
#include "error.h"
#include "kernels.h"
#include "safetensors.h"

enum dec_family { DEC_GPT2, DEC_LLAMA };
enum dec_norm { DEC_LAYERNORM, DEC_RMSNORM };

typedef struct dec_config {
    char model_type[16];   /* "gpt2", "llama", "mistral", "qwen2" */
    enum dec_family family;
    int vocab_size, hidden, layers, heads, kv_heads, head_dim, ffn, max_pos;
    enum dec_norm norm;
    float norm_eps;        /* layer_norm_epsilon / rms_norm_eps */
    enum kn_act act;       /* the activation (of the gate, when gated) */
    int gated;             /* 1: act = f(gate x) * (up x) (SwiGLU) */
    int learned_pos;       /* 1: wpe table (GPT-2); 0: RoPE */
    kn_rope rope;          /* RoPE settings (learned_pos == 0) */
    int qkv_bias;          /* q/k/v projections have biases (GPT-2, Qwen2, Llama attention_bias) */
    int out_bias;          /* attention output and FFN projections have biases (GPT-2; Llama attention_bias for o_proj) */
    int mlp_bias;          /* FFN projections have biases (GPT-2) */
    int sliding_window;    /* Mistral: 0 = none; a prompt longer than it is refused */
    int tied;              /* head = token embeddings */
    int bos_token_id, eos_token_id; /* -1 when absent */
} dec_config;

/* Reads config.json; every missing key, wrong type and unsupported setting is an error naming
 * the file and the key (model_type must be gpt2, llama, mistral or qwen2). */
int dec_config_load(const char *path, dec_config *cfg, kn_err *err);
/* Checks the sizes (positive, heads divisible by kv_heads, even RoPE head width, ...). */
int dec_config_check(const dec_config *cfg, kn_err *err);

/* Weights, pointers into the files' mappings (F32, in place) or into owned storage (F16/BF16
 * converted). Layouts as the checkpoints store them:
 * - GPT-2 (Conv1D, [in, out], used with linear_io_*): q_w, k_w, v_w point at columns 0, C, 2C
 *   of c_attn.weight [C, 3C] (ld = 3C) and q_b, k_b, v_b into c_attn.bias [3C]; o_w c_proj
 *   [C, C]; fc_w c_fc [C, F]; down_w mlp.c_proj [F, C] (row i = value slot i).
 * - Llama (nn.Linear, [out, in], used with linear_*): q_w [NH*D, C], k_w, v_w [NKV*D, C], o_w
 *   [C, NH*D], fc_w = gate_proj [F, C], up_w [F, C], down_w [C, F] (column i = value slot i). */
typedef struct dec_layer_weights {
    float *ln1_w, *ln1_b;          /* [C] (b NULL for RMSNorm) */
    float *q_w, *k_w, *v_w;        /* see above */
    float *q_b, *k_b, *v_b;        /* [NH*D], [NKV*D] or NULL */
    float *o_w, *o_b;              /* o_b NULL without bias */
    float *ln2_w, *ln2_b;
    float *fc_w, *fc_b;            /* GPT-2 c_fc / Llama gate_proj */
    float *up_w;                   /* Llama up_proj, NULL for GPT-2 */
    float *down_w, *down_b;
} dec_layer_weights;

typedef struct dec_weights {
    float *tok_emb;                /* [V, C] wte / embed_tokens */
    float *pos_emb;                /* [max_pos, C] wpe, NULL for RoPE */
    dec_layer_weights *layer;      /* [L] */
    float *lnf_w, *lnf_b;          /* final norm [C] (b NULL for RMSNorm) */
    float *head;                   /* [V, C]: tok_emb when tied, else lm_head.weight */
} dec_weights;

typedef struct dec_model {
    dec_config cfg;
    dec_weights w;
    kn_param *params;              /* every parameter under its Hugging Face name (as in the files) */
    int nparams;
    int64_t nweights;              /* total floats over params (the flat gradient's length) */
    float *inv_freq;               /* [D/2] RoPE inverse frequencies, NULL for learned positions */
    st_file **files;               /* the opened safetensors files (owned), nfiles of them */
    int nfiles;
    float *owned;                  /* converted or created tensors */
    int64_t owned_len;
} dec_model;

/* Loads a Hugging Face folder: config.json and model.safetensors, or
 * model.safetensors.index.json and the shards it names. Tensor names are accepted with and
 * without the `transformer.` (GPT-2) / `model.` (Llama) prefix; lm_head.weight is absent when
 * tied (if present in a tied checkpoint it must equal the embeddings). GPT-2's attn.bias /
 * attn.masked_bias buffers and Llama's rotary_emb.inv_freq buffers are skipped (HF recomputes
 * them); any other unknown tensor, a missing one or a wrong shape is an error naming it. */
dec_model *dec_model_load(const char *dir, kn_err *err);
/* The same from a parsed config and files already opened (ownership of files passes to the
 * model, also on failure; files is an array of nfiles that the model keeps). */
dec_model *dec_model_from_files(const dec_config *cfg, st_file **files, int nfiles, kn_err *err);
/* A random model (normal(0, std) matrices, biases 0.1 N, norms 1 + 0.1 N), owned storage,
 * deterministic for a seed: for tests. */
dec_model *dec_model_create(const dec_config *cfg, uint64_t seed, float std, kn_err *err);
void dec_model_free(dec_model *m);
const kn_param *dec_model_param(const dec_model *m, const char *name);

/* Neuron i of layer l's value slot: C floats at ptr[j * stride], j < C: row i of GPT-2's
 * mlp.c_proj.weight [F, C] (stride 1), column i of Llama's down_proj.weight [C, F] (stride F).
 * NULL for l or i out of range. */
float *dec_value_slot(const dec_model *m, int l, int i, int *stride);

/* ---- activations ---- */
typedef struct dec_acts {
    int B, T, P;                   /* capacity */
    int b, t, p;                   /* sizes of the last forward */
    float *x;                      /* [L+1][N,C] layer inputs; x[L] the last layer's output */
    float *h1, *h1_mean, *h1_rstd; /* [L][N,C], [L][N] norm1 output and stats (mean unused for RMSNorm) */
    float *q, *k, *v;              /* [L][N,NH*D], [L][N,NKV*D], [L][N,NKV*D] (q, k after RoPE) */
    float *att;                    /* [L][B,NH,T,T] */
    float *ctx;                    /* [L][N,NH*D] */
    float *xm;                     /* [L][N,C] residual after attention (norm2 input) */
    float *h2, *h2_mean, *h2_rstd; /* [L][N,C], [L][N] */
    float *pre, *up;               /* [L][N,F]: GPT-2 c_fc output / Llama gate output; Llama up output */
    float *act;                    /* [L][N,F] ffn.act (after interventions) */
    float *keymask;                /* [B*T] */
    int *ids;                      /* [B*T] */
    int *pos;                      /* [B*T] positions */
    float *rcos, *rsin;            /* [N, D] RoPE tables of the rows' positions */
    int *head_rows;                /* [P] */
    float *hf_in, *hf, *hf_mean, *hf_rstd; /* [P,C], [P,C], [P], [P] final norm */
    float *logits;                 /* [P,V] */
    /* backward scratch */
    float *dx, *dh, *dtmp;         /* [N,C] */
    float *dq, *dk, *dv, *dctx, *dq2, *dk2; /* [N,NH*D] (dk, dv, dk2 [N,NKV*D]) */
    float *dact, *dpre, *dup;      /* [N,F] */
    float *datt;                   /* [B,NH,T,T] */
    float *dhf;                    /* [P,C] x2 */
    int64_t bytes;
    const kn_intervention *iv;
    int niv;
} dec_acts;

/* Allocates activations for up to B sequences of T tokens and P head rows (T must not exceed
 * max_position_embeddings, nor Mistral's sliding window). */
dec_acts *dec_acts_new(const dec_model *m, int B, int T, int P, kn_err *err);
void dec_acts_free(dec_acts *a);
/* Bytes such an arena takes (for planning batch sizes and reporting memory). */
int64_t dec_acts_bytes(const dec_config *cfg, int B, int T, int P);

/* Forward. ids [B*T]; attn [B*T] 0/1 (NULL = all 1; left or right padding: padded keys are
 * never attended); pos [B*T] the position of each token (NULL = 0..T-1 in every row, as HF's
 * default position_ids, which the fixtures use for right padding; for left padding pass
 * cumsum(mask) - 1 clamped at 0, as HF's generate does). head_rows [P]: flat rows b*T+t whose
 * logits to compute. Interventions on ffn.act exactly as BERT's (kn_intervention: set, scale,
 * add; row -1 / pos -1 = all). Validates ids, positions, head rows and interventions. */
int dec_forward(const dec_model *m, dec_acts *a, const int *ids, const int *attn, const int *pos,
                int B, int T, const int *head_rows, int P, const kn_intervention *iv, int niv, kn_err *err);
/* The same forward from layer `start`, a->x[start], keymask, pos and the RoPE tables already
 * filled for B x T rows (attribution reuses the layers below). */
int dec_forward_from(const dec_model *m, dec_acts *a, int start, int B, int T, const int *head_rows, int P,
                     const kn_intervention *iv, int niv, kn_err *err);

/* Backward from dlogits [P,V] as bert_backward: without grads it stops at stop_layer's
 * ffn.act; dffn_act[l] (l >= stop_layer, NULL entries skipped) receives d/d ffn.act of layer l
 * [N,F] (w.r.t. the post-intervention value); with grads (flat, laid out by kn_param.offset) it
 * goes down to the embeddings and accumulates every parameter's gradient (tied head included). */
int dec_backward(const dec_model *m, dec_acts *a, const float *dlogits, int stop_layer,
                 float **dffn_act, float *grads, kn_err *err);

/* ---- runs (decoder_run.c) ---- */

/* dlogits[P,V] for the objective sum_p P(target[p]) (use_log 0) or sum_p log P (use_log 1) at
 * the last forward's head rows; obj[p] receives each row's P or log P (may be NULL). */
void dec_objective_grad(const dec_acts *a, int V, const int *target, int use_log, float *dlogits, double *obj);

/* Integrated gradients of one prompt ids[T] (unpadded) at layer `layer`, position pos (Dai et
 * al.): the activation vector w there is replaced by alpha_k w along the quadrature's points
 * (kn_quadrature_points of ig.h; KN_QUAD_LEFT is the official code's left Riemann sum
 * alpha_k = k/steps), all points as one batch of rows starting at `layer` (the layers below are
 * computed once), and scores[F] = w * sum_k weight_k dO/dz at z = alpha_k w.
 * The objective O is the target's probability, teacher-forced over nt tokens: the prompt rows
 * tpos[j] predict targets[j] (single-token: nt = 1, tpos = {pos} for the last prompt token;
 * multi-token: ids holds prompt + target[0..nt-2] and tpos = T_prompt-1 ..), and
 * O = prod_j P(targets[j] | row tpos[j]) = exp(sum_j log P), or sum_j log P when use_log.
 * Every tpos[j] must be >= pos (a row before pos does not depend on z). p_full, p_zero (may be
 * NULL): O with w, and with 0 at (layer, pos). */
int dec_ig(const dec_model *m, const int *ids, int T, int pos, const int *tpos, const int *targets, int nt, int layer,
           kn_quadrature quad, int steps, int use_log, float *scores, double *p_full, double *p_zero, kn_err *err);

/* The causal-LM loss of HF (logits at t predict labels[t+1], mean cross-entropy over labels
 * != -100) of a batch (attn, pos as dec_forward), and with grads (flat, laid out by
 * kn_param.offset; accumulated, so zero it first; may be NULL) every parameter's gradient.
 * The arena needs P >= the number of labelled positions (B*(T-1) at most). */
int dec_lm_loss(const dec_model *m, dec_acts *a, const int *ids, const int *attn, const int *pos, const int *labels,
                int B, int T, double *loss, float *grads, kn_err *err);

/* Greedy generation with a KV cache: out[n] are the argmax continuations of prompt[T], each
 * equal to the argmax of a full forward of the sequence so far (no stop at EOS). */
int dec_generate(const dec_model *m, const int *prompt, int T, int n, int *out, kn_err *err);

#endif
