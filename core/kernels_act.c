/* kernels_act.c: elementwise activations and the gated unit (SwiGLU), forward/backward pairs.
 * Float arithmetic in the order Hugging Face's float32 tensors evaluate the same formulas
 * (the erf GELU is knwb's original kernel, unchanged, so BERT's numbers are untouched). Not
 * here: which activation a model uses (the engine reads that from config.json through
 * kn_act_from_name). */
#include "kernels.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- exact (erf) GELU */

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

/* ---------------------------------------------------------------- scalar forms */
/* One value and one derivative per kind; the loops below switch once per call, not per element.
 * gelu_erf/gelu_erf_grad are the expressions of gelu_forward/gelu_backward above. */

#define GELU_TANH_K0 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_TANH_K1 0.044715f

static inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float gelu_erf_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
    float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

/* HF gelu_new: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), x^3 as x*x*x (torch's
 * pow(x, 3.0) and F.gelu(approximate="tanh") both cube by multiplication) */
static inline float gelu_tanh(float x) {
    float u = GELU_TANH_K0 * (x + GELU_TANH_K1 * (x * x * x));
    return 0.5f * x * (1.0f + tanhf(u));
}
static inline float gelu_tanh_grad(float x) {
    float u = GELU_TANH_K0 * (x + GELU_TANH_K1 * (x * x * x));
    float t = tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_TANH_K0 * (1.0f + 3.0f * GELU_TANH_K1 * x * x);
}

static inline float relu(float x) { return x > 0.0f ? x : 0.0f; }
static inline float relu_grad(float x) { return x > 0.0f ? 1.0f : 0.0f; }

/* torch's silu: x / (1 + exp(-x)); its derivative sigmoid(x) * (1 + x * (1 - sigmoid(x))) */
static inline float silu(float x) { return x / (1.0f + expf(-x)); }
static inline float silu_grad(float x) {
    float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

/* ---------------------------------------------------------------- names */

static const struct { const char *name; enum kn_act kind; } act_names[] = {
    { "gelu", KN_ACT_GELU_ERF },          { "gelu_python", KN_ACT_GELU_ERF },
    { "gelu_new", KN_ACT_GELU_TANH },     { "gelu_pytorch_tanh", KN_ACT_GELU_TANH },
    { "relu", KN_ACT_RELU },              { "silu", KN_ACT_SILU },
    { "swish", KN_ACT_SILU },
};

int kn_act_from_name(const char *name, enum kn_act *kind) {
    if (!name) return -1;
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
        if (strcmp(name, act_names[i].name) == 0) {
            *kind = act_names[i].kind;
            return 0;
        }
    return -1;
}

const char *kn_act_name(enum kn_act kind) {
    switch (kind) {
    case KN_ACT_GELU_ERF: return "gelu";
    case KN_ACT_GELU_TANH: return "gelu_new";
    case KN_ACT_RELU: return "relu";
    case KN_ACT_SILU: return "silu";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- elementwise */

void act_forward(enum kn_act kind, float *out, const float *inp, long n) {
    switch (kind) {
    case KN_ACT_GELU_ERF: gelu_forward(out, inp, n); break;
    case KN_ACT_GELU_TANH: for (long i = 0; i < n; i++) out[i] = gelu_tanh(inp[i]); break;
    case KN_ACT_RELU: for (long i = 0; i < n; i++) out[i] = relu(inp[i]); break;
    case KN_ACT_SILU: for (long i = 0; i < n; i++) out[i] = silu(inp[i]); break;
    }
}

void act_backward(enum kn_act kind, float *dinp, const float *dout, const float *inp, long n) {
    switch (kind) {
    case KN_ACT_GELU_ERF: gelu_backward(dinp, dout, inp, n); break;
    case KN_ACT_GELU_TANH: for (long i = 0; i < n; i++) dinp[i] += dout[i] * gelu_tanh_grad(inp[i]); break;
    case KN_ACT_RELU: for (long i = 0; i < n; i++) dinp[i] += dout[i] * relu_grad(inp[i]); break;
    case KN_ACT_SILU: for (long i = 0; i < n; i++) dinp[i] += dout[i] * silu_grad(inp[i]); break;
    }
}

/* ---------------------------------------------------------------- gated (GLU) */
/* One loop per kind, each the same two lines with that kind's scalar forms. */

#define GLU_FORWARD_LOOP(f) \
    for (long i = 0; i < n; i++) act[i] = f(gate[i]) * up[i]

#define GLU_BACKWARD_LOOP(f, f_grad)                  \
    for (long i = 0; i < n; i++) {                    \
        float g = gate[i];                            \
        dgate[i] += dact[i] * up[i] * f_grad(g);      \
        dup[i] += dact[i] * f(g);                     \
    }

void glu_forward(enum kn_act kind, float *act, const float *gate, const float *up, long n) {
    switch (kind) {
    case KN_ACT_GELU_ERF: GLU_FORWARD_LOOP(gelu_erf); break;
    case KN_ACT_GELU_TANH: GLU_FORWARD_LOOP(gelu_tanh); break;
    case KN_ACT_RELU: GLU_FORWARD_LOOP(relu); break;
    case KN_ACT_SILU: GLU_FORWARD_LOOP(silu); break;
    }
}

void glu_backward(enum kn_act kind, float *dgate, float *dup, const float *dact,
                  const float *gate, const float *up, long n) {
    switch (kind) {
    case KN_ACT_GELU_ERF: GLU_BACKWARD_LOOP(gelu_erf, gelu_erf_grad); break;
    case KN_ACT_GELU_TANH: GLU_BACKWARD_LOOP(gelu_tanh, gelu_tanh_grad); break;
    case KN_ACT_RELU: GLU_BACKWARD_LOOP(relu, relu_grad); break;
    case KN_ACT_SILU: GLU_BACKWARD_LOOP(silu, silu_grad); break;
    }
}
