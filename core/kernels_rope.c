/* kernels_rope.c: rotary position embeddings in Hugging Face's rotate-half layout (see
 * kernels.h for the layout and the precision contract): the inverse frequencies for the
 * default, linear and llama3 rope_scaling types, the cos/sin tables for given positions, and
 * the rotation of q or k with its transpose as the backward. Not here: reading rope_theta or
 * rope_scaling from config.json (the engine's), the dynamic/yarn/longrope types, partial
 * rotary widths.
 *
 * Every step below is one float32 operation, in the order HF's float32 tensor code performs it
 * (torch's `scalar / tensor` is `tensor.reciprocal() * scalar`, and a Python scalar meets a
 * float32 tensor as a float32), so the values are HF's up to the last-bit differences of
 * torch's own pow, cos and sin, which we evaluate in double and round once. */
#include "kernels.h"

#include <math.h>

int rope_inv_freq(float *inv_freq, const kn_rope *rope, int d, kn_err *err) {
    if (d < 2 || d % 2 != 0) return kn_fail(err, "rope: head width %d must be even and at least 2", d);
    if (!(rope->theta > 0) || !isfinite(rope->theta))
        return kn_fail(err, "rope_theta %g must be a positive finite number", rope->theta);
    if (rope->type != KN_ROPE_DEFAULT && (!(rope->factor > 0) || !isfinite(rope->factor)))
        return kn_fail(err, "rope_scaling.factor %g must be a positive finite number", rope->factor);
    if (rope->type == KN_ROPE_LLAMA3) {
        if (!(rope->low_freq_factor > 0) || !isfinite(rope->low_freq_factor))
            return kn_fail(err, "rope_scaling.low_freq_factor %g must be a positive finite number", rope->low_freq_factor);
        if (!(rope->high_freq_factor > rope->low_freq_factor) || !isfinite(rope->high_freq_factor))
            return kn_fail(err, "rope_scaling.high_freq_factor %g must be finite and greater than low_freq_factor %g",
                           rope->high_freq_factor, rope->low_freq_factor);
        if (!(rope->original_max_position_embeddings >= 1) || !isfinite(rope->original_max_position_embeddings))
            return kn_fail(err, "rope_scaling.original_max_position_embeddings %g must be at least 1",
                           rope->original_max_position_embeddings);
    } else if (rope->type != KN_ROPE_DEFAULT && rope->type != KN_ROPE_LINEAR) {
        return kn_fail(err, "rope: unknown rope_scaling type %d", (int)rope->type);
    }
    int half = d / 2;
    float base = (float)rope->theta;
    /* 1 / base^(arange(0, d, 2).float() / d) */
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)d;
        inv_freq[i] = 1.0f / (float)pow((double)base, (double)e);
    }
    if (rope->type == KN_ROPE_LINEAR) {
        float f = (float)rope->factor;
        for (int i = 0; i < half; i++) inv_freq[i] = inv_freq[i] / f;
    } else if (rope->type == KN_ROPE_LLAMA3) {
        double old_len = rope->original_max_position_embeddings;
        float f = (float)rope->factor, lo = (float)rope->low_freq_factor, ocl = (float)old_len;
        float low_wavelen = (float)(old_len / rope->low_freq_factor);   /* Python floats, met as float32 */
        float high_wavelen = (float)(old_len / rope->high_freq_factor);
        float span = (float)(rope->high_freq_factor - rope->low_freq_factor);
        float two_pi = (float)(2.0 * M_PI);
        for (int i = 0; i < half; i++) {
            float inv = inv_freq[i];
            float wavelen = (1.0f / inv) * two_pi;
            float scaled = wavelen > low_wavelen ? inv / f : inv;
            float smooth = ((1.0f / wavelen) * ocl - lo) / span;
            float smoothed = (1.0f - smooth) * scaled / f + smooth * scaled;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv_freq[i] = medium ? smoothed : scaled;
        }
    }
    return 0;
}

void rope_table(float *cos_t, float *sin_t, const float *inv_freq, const int *pos, int N, int d) {
    int half = d / 2;
    for (int n = 0; n < N; n++) {
        float p = (float)(pos ? pos[n] : n);
        float *c = cos_t + (long)n * d, *s = sin_t + (long)n * d;
        for (int i = 0; i < half; i++) {
            float angle = p * inv_freq[i];
            c[i] = c[i + half] = (float)cos((double)angle);
            s[i] = s[i + half] = (float)sin((double)angle);
        }
    }
}

void rope_forward(float *out, const float *inp, const float *cos_t, const float *sin_t, int N, int H, int d) {
    int half = d / 2;
    long width = (long)H * d;
    for (int n = 0; n < N; n++) {
        const float *c = cos_t + (long)n * d, *s = sin_t + (long)n * d;
        for (int h = 0; h < H; h++) {
            const float *x = inp + n * width + (long)h * d;
            float *y = out + n * width + (long)h * d;
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half]; /* both read before either is written (in place) */
                y[i] = x1 * c[i] - x2 * s[i];
                y[i + half] = x2 * c[i + half] + x1 * s[i + half];
            }
        }
    }
}

void rope_backward(float *dinp, const float *dout, const float *cos_t, const float *sin_t, int N, int H, int d) {
    int half = d / 2;
    long width = (long)H * d;
    for (int n = 0; n < N; n++) {
        const float *c = cos_t + (long)n * d, *s = sin_t + (long)n * d;
        for (int h = 0; h < H; h++) {
            const float *dy = dout + n * width + (long)h * d;
            float *dx = dinp + n * width + (long)h * d;
            for (int i = 0; i < half; i++) {
                float dy1 = dy[i], dy2 = dy[i + half];
                dx[i] += dy1 * c[i] + dy2 * s[i + half];
                dx[i + half] += dy2 * c[i + half] - dy1 * s[i];
            }
        }
    }
}
