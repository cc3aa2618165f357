/* bert.h: a BERT masked-language model: configuration, weights, activations, and the
 * forward/backward passes with interventions on the FFN activations (ffn.act).
 *
 * Shapes: B sequences of T tokens (N = B*T rows), C hidden, NH heads, F FFN width, L layers,
 * V vocabulary, P head rows (the positions whose logits are asked for).
 * A "neuron" (l, i) is column i of layer l's FFN activation after GELU: the input of the output
 * projection, so neuron i's value slot is column i of ffn_out_w[C,F]. Zeroing neuron i is
 * exactly zeroing value slot i. */
#ifndef KNWB_BERT_H
#define KNWB_BERT_H

#include <stdint.h>

#include "error.h"
#include "wordpiece.h"

typedef struct bert_config {
    int vocab_size, hidden, layers, heads, ffn, max_pos, type_vocab, pad_token_id;
    float ln_eps;
    int do_lower_case;
    int act;               /* enum kn_act of hidden_act (FFN and MLM head transform); 0 = erf GELU */
    char act_name[24];     /* hidden_act as config.json spells it ("" = "gelu"), written back on save */
    int untied;            /* tie_word_embeddings false: the decoder is its own tensor */
} bert_config;

/* Bounds a config.json must respect (checked before anything is allocated). */
#define KN_MAX_LAYERS 1024
#define KN_MAX_HIDDEN 65536
#define KN_MAX_FFN (1 << 20)
#define KN_MAX_VOCAB (1 << 24)
#define KN_MAX_POS (1 << 20)
#define KN_MAX_TYPES (1 << 16)

typedef struct bert_layer_weights {
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;  /* [C,C], [C] */
    float *ao_w, *ao_b;                        /* attention output [C,C], [C] */
    float *ln1_w, *ln1_b;                      /* [C] */
    float *ffn_in_w, *ffn_in_b;                /* [F,C], [F] */
    float *ffn_out_w, *ffn_out_b;              /* [C,F], [C]: column i = value slot of neuron i */
    float *ln2_w, *ln2_b;                      /* [C] */
} bert_layer_weights;

typedef struct bert_weights {
    float *word_emb;                /* [V,C], also the tied decoder */
    float *pos_emb;                 /* [max_pos,C] */
    float *type_emb;                /* [type_vocab,C] */
    float *emb_ln_w, *emb_ln_b;     /* [C] */
    bert_layer_weights *layer;      /* [L] */
    float *head_w, *head_b;         /* MLM transform [C,C], [C] */
    float *head_ln_w, *head_ln_b;   /* [C] */
    float *decoder_w;               /* [V,C]: word_emb itself when tied, cls.predictions.decoder.weight when untied */
    float *decoder_b;               /* [V] */
} bert_weights;

/* One parameter tensor with its Hugging Face name; data points into the model's storage. */
typedef struct kn_param {
    char name[96];
    int ndim;
    int64_t shape[2];
    int64_t numel;
    int64_t offset;  /* offset of this tensor in a flat gradient / optimizer buffer */
    float *data;
} kn_param;

typedef struct kn_model {
    bert_config cfg;
    bert_weights w;
    kn_param *params;
    int nparams;
    int64_t nweights;      /* total floats over params */
    kn_vocab *vocab;       /* may be NULL for a model made without one */
    void **st;             /* the mmap'd weight files (st_file *[nst]: one, or the shards of an index), or NULL */
    int nst;
    float *owned;          /* owned storage for created or converted tensors */
    int64_t owned_len;
    char *path;            /* folder it was loaded from, or NULL */
    char weights_file[4096];
    uint64_t generation;   /* bumped on every weight change (edits, training), for caches */
    struct kn_edit *edits; /* value-slot edits in order of application (edit.h) */
    int edit_count;
} kn_model;

/* Reads config.json (Hugging Face BertConfig). Missing keys, wrong types and unsupported
 * settings are errors naming the file and key. */
int bert_config_load(const char *path, bert_config *cfg, kn_err *err);
int bert_config_check(const bert_config *cfg, kn_err *err);

/* Loads a Hugging Face BERT folder: config.json, model.safetensors (or the shards that
 * model.safetensors.index.json lists), vocab.txt and optional tokenizer_config.json. F32 tensors
 * are used in place (copy-on-write mmap), F16/BF16 converted. Names as HF writes them or accepts
 * them: with or without the `bert.` prefix, LayerNorm gamma/beta, the output bias as
 * cls.predictions.bias or cls.predictions.decoder.bias; a stored decoder is used when
 * tie_word_embeddings is false. Tensors the model does not use (pooler, NSP head, I64 buffers)
 * may have any dtype. Non-finite weights are refused, naming the tensor and the first index. */
kn_model *kn_model_load(const char *dir, kn_err *err);
/* A randomly initialised model (normal(0, 0.02) weights, zero biases, unit LayerNorm), with an
 * optional vocabulary (may be NULL). Deterministic for a seed. */
kn_model *kn_model_create(const bert_config *cfg, uint64_t seed, kn_vocab *vocab, kn_err *err);
/* Writes config.json, model.safetensors (F32; the decoder only when untied, as HF does), vocab.txt and
 * tokenizer_config.json into dir (created if missing). */
int kn_model_save(const kn_model *m, const char *dir, kn_err *err);
void kn_model_free(kn_model *m);
const kn_param *kn_model_param(const kn_model *m, const char *name);

/* ---- interventions on ffn.act ---- */
enum kn_iop { KN_SET, KN_SCALE, KN_ADD };
typedef struct kn_intervention {
    int layer;
    int row;            /* batch row, or -1 for every row */
    int pos;            /* token position, or -1 for every position */
    enum kn_iop op;
    int n;              /* number of neurons in idx; 0 means all F neurons */
    const int *idx;     /* [n] neuron indices (ignored when n == 0) */
    const float *val;   /* one value per selected neuron ([n], or [F] when n == 0), or NULL */
    float scalar;       /* used for every selected neuron when val is NULL */
} kn_intervention;

/* ---- activations ---- */
typedef struct bert_acts {
    int B, T, P;                 /* capacity */
    int L, F;                    /* layers and FFN width of the model it was planned for */
    int flags;                   /* KN_ACTS_* */
    int b, t, p;                 /* sizes of the last forward */
    /* per layer (index l), each [N, ...] with N = B*T */
    float *x;                    /* [L+1][N,C]: x[0] embeddings output, x[l+1] layer l output (x[l & 1] in an inference arena) */
    float *emb_in;               /* [N,C] embeddings sum before LayerNorm */
    float *emb_mean, *emb_rstd;  /* [N] */
    float *q, *k, *v, *ctx;      /* [L][N,C] */
    float *att;                  /* [L][B,NH,T,T] */
    float *ln1_in, *h1;          /* [L][N,C] */
    float *ln1_mean, *ln1_rstd;  /* [L][N] */
    float *ffn_pre, *ffn_act;    /* [L][N,F] (ffn_act after interventions) */
    float *ln2_in;               /* [L][N,C] */
    float *ln2_mean, *ln2_rstd;  /* [L][N] */
    float *keymask;              /* [B,T] */
    int *head_rows;              /* [P] flat row indices (b*T + t) */
    int *ids, *types;            /* [N] inputs of the last full forward (for the embedding gradients) */
    float *head_in, *head_pre, *head_act, *head_ln; /* [P,C] */
    float *head_mean, *head_rstd;                   /* [P] */
    float *logits;               /* [P,V] */
    /* backward scratch */
    float *dx, *dh1, *dtmp, *dq, *dk, *dv, *dctx;   /* [N,C] */
    float *dffn, *dffn_pre;      /* [N,F] */
    float *datt;                 /* [B,NH,T,T] */
    float *dhead;                /* [P,C] x2 */
    int64_t bytes;
    /* the interventions of the last forward, kept for the backward */
    const kn_intervention *iv;
    int niv;
    /* dropout masks for training (NULL: none), each entry 0 or 1/(1-rate), rows laid out with
     * the arena's capacity like the caches: drop_hidden [L][2][N,C] multiplies the attention and
     * the FFN sub-layer outputs before their residual sums (BERT's hidden dropout), drop_act
     * [L][N,F] multiplies ffn.act after the interventions (neuron dropout). The trainer sets them
     * for one forward/backward pair; inference never does. */
    const float *drop_hidden, *drop_act;
} bert_acts;

/* Plans and allocates activations for up to B sequences of T tokens and P head rows. */
bert_acts *bert_acts_new(const bert_config *cfg, int B, int T, int P, kn_err *err);
/* KN_ACTS_INFERENCE: an arena for passes that never take weight gradients (attribution): the
 * caches only weight gradients read share buffers (x alternates between two; ctx, h1 and
 * ffn.act keep one layer), so only the last layer's values of those stay readable. */
enum { KN_ACTS_INFERENCE = 1 };
bert_acts *bert_acts_new_ex(const bert_config *cfg, int B, int T, int P, int flags, kn_err *err);
void bert_acts_free(bert_acts *a);
/* Bytes an activation arena of that size needs (for planning and reporting). */
int64_t bert_acts_bytes(const bert_config *cfg, int B, int T, int P, int flags);

/* Forward pass. ids, types [B*T] (types may be NULL = all 0), attn [B*T] of 0/1 (may be NULL =
 * all 1). head_rows [P]: flat indices b*T+t whose logits to compute (P may be 0). Interventions
 * are applied to ffn.act after GELU. Validates every id, type and head row. */
int bert_forward(const kn_model *m, bert_acts *a, const int *ids, const int *types,
                 const int *attn, int B, int T, const int *head_rows, int P,
                 const kn_intervention *iv, int niv, kn_err *err);

/* The same forward, starting at layer `start`: a->x[start] [B*T,C] and a->keymask [B*T] must
 * already hold the layer input and the padding mask (used by attribution to reuse the layers
 * below the attributed one). */
int bert_forward_from(const kn_model *m, bert_acts *a, int start, int B, int T,
                      const int *head_rows, int P, const kn_intervention *iv, int niv, kn_err *err);

/* Starts B rows at layer l from a single-sequence forward `one` (B = 1, T tokens): each row
 * gets one's layer-l state except ffn.act at position pos, replaced by vals[r*F .. (r+1)*F);
 * only that position's output is recomputed. Continue with bert_forward_from(m, a, l + 1, ...).
 * The backward of such a batch may stop at layer l's ffn.act (attribution), not go below. */
int bert_layer_patch(const kn_model *m, bert_acts *a, const bert_acts *one, int l, int B, int T, int pos,
                     const float *vals, kn_err *err);

/* Backward from dlogits [P,V] (the gradient of a scalar w.r.t. the logits of the last forward).
 * Without weight gradients (grads NULL) it stops at layer stop_layer's ffn.act. When
 * dffn_act is not NULL, dffn_act[l] (for l >= stop_layer; NULL entries skipped) receives the
 * gradient w.r.t. layer l's ffn.act [N,F] (the post-intervention value). When grads is not NULL
 * (a flat buffer laid out as kn_param.offset), the pass goes all the way down and weight
 * gradients (tied word embeddings included) are accumulated into it. */
int bert_backward(const kn_model *m, bert_acts *a, const float *dlogits, int stop_layer,
                  float **dffn_act, float *grads, kn_err *err);

#endif
