/* ig.h: integrated-gradients attribution of a target token's probability to the FFN neurons
 * (ffn.act) at the [MASK] position, layer by layer, as Dai et al. and their official code do:
 * for layer l, the whole activation vector w at the mask position is replaced by alpha * w along
 * a straight path from 0 (the baseline) to w, and
 *     score_l = w * sum_k weight_k * dP(alpha_k w)/dz.
 * The quadrature points run as one batch of rows; the layers below l are computed once; the
 * MLM head runs at the mask row only; the backward stops at layer l with no weight gradients. */
#ifndef KNWB_IG_H
#define KNWB_IG_H

#include "bert.h"

typedef enum {
    KN_QUAD_LEFT,        /* alpha_k = k/m, k = 0..m-1 (the official code) */
    KN_QUAD_RIGHT,       /* alpha_k = k/m, k = 1..m (the paper's printed sum) */
    KN_QUAD_MIDPOINT,    /* alpha_k = (k + 1/2)/m */
    KN_QUAD_TRAPEZOID,   /* m points from 0 to 1 inclusive, end points half weight */
    KN_QUAD_GAUSS        /* Gauss-Legendre on [0, 1] */
} kn_quadrature;

/* Fills alpha[m] and weight[m] (weights sum to 1). Fails for m < 1 (m < 2 for trapezoid). */
int kn_quadrature_points(kn_quadrature q, int m, double *alpha, double *weight, kn_err *err);
/* "left", "right", "midpoint", "trapezoid", "gauss" -> enum; -1 if unknown. */
int kn_quadrature_parse(const char *name);

/* Scratch kept from one kn_ig call to the next (activation arenas and buffers, grown to the
 * largest prompt seen). Attributing thousands of prompts otherwise allocates and frees megabytes
 * per prompt, and between the small objects a long run keeps alive that fragments the heap: the
 * resident size grew by megabytes per prompt. One workspace serves one model at a time. */
typedef struct kn_ig_ws kn_ig_ws;
kn_ig_ws *kn_ig_ws_new(void);
void kn_ig_ws_free(kn_ig_ws *ws);

typedef struct kn_ig_opts {
    int steps;            /* m */
    kn_quadrature quad;
    int batch;            /* quadrature rows per forward (0 = all m at once) */
    int use_log;          /* attribute log P instead of P */
    kn_ig_ws *ws;         /* NULL: allocate for this call only */
} kn_ig_opts;

typedef struct kn_ig_out {
    float *scores;        /* [nlayers, F] */
    float *acts;          /* [nlayers, F] the activations w at the mask position (the baseline method's scores) */
    double p_full;        /* P(target) of the unmodified model (log P when use_log) */
    double *p_zero;       /* [nlayers] P(target) with layer l's mask-position ffn.act set to 0 */
    double *score_sum;    /* [nlayers] sum of the layer's scores; completeness wants p_full - p_zero */
} kn_ig_out;

/* Attributes one prompt: ids[T] (with [CLS]/[SEP]), types[T] (NULL = all 0), mask_pos, target id, the layers to attribute
 * (layers[nlayers], each in [0, L)). The output arrays are the caller's. */
int kn_ig(const kn_model *m, const int *ids, const int *types, int T, int mask_pos, int target,
          const int *layers, int nlayers, const kn_ig_opts *opts, kn_ig_out *out, kn_err *err);

#endif
