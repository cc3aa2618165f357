/* decoder_config.c: config.json of the decoder families (GPT2Config, LlamaConfig,
 * MistralConfig, Qwen2Config) into a dec_config. A key that changes the math and that knwb does
 * not implement is refused by name, never ignored. */
#include "decoder.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static int get_int(json_t *root, const char *path, const char *key, int required, int def, int *out, kn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return kn_fail(err, "%s: missing key \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return kn_fail(err, "%s: key \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < -1 || x > 1000000000) return kn_fail(err, "%s: key \"%s\" = %lld out of range [-1, 1e9]", path, key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_num(json_t *root, const char *path, const char *key, int required, double def, double *out, kn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return kn_fail(err, "%s: missing key \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return kn_fail(err, "%s: key \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return kn_fail(err, "%s: key \"%s\" is not finite", path, key);
    return 0;
}

static int get_bool(json_t *root, const char *path, const char *key, int def, int *out, kn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_boolean(v)) return kn_fail(err, "%s: key \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* A boolean key that must have a given value (a setting knwb does not implement otherwise). */
static int want_bool(json_t *root, const char *path, const char *key, int want, const char *why, kn_err *err) {
    int v;
    if (get_bool(root, path, key, want, &v, err) != 0) return -1;
    if (v != want) return kn_fail(err, "%s: key \"%s\" = %s is not supported (%s)", path, key, v ? "true" : "false", why);
    return 0;
}

static int parse_rope(json_t *root, const char *path, dec_config *c, kn_err *err) {
    double theta;
    if (get_num(root, path, "rope_theta", 0, 10000.0, &theta, err) != 0) return -1;
    c->rope.type = KN_ROPE_DEFAULT;
    c->rope.theta = theta;
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) return kn_fail(err, "%s: key \"rope_scaling\" must be an object or null", path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!json_is_string(t)) return kn_fail(err, "%s: key \"rope_scaling\" needs a string \"rope_type\" (or \"type\")", path);
    const char *kind = json_string_value(t);
    if (strcmp(kind, "default") == 0) return 0;
    if (strcmp(kind, "linear") == 0) c->rope.type = KN_ROPE_LINEAR;
    else if (strcmp(kind, "llama3") == 0) c->rope.type = KN_ROPE_LLAMA3;
    else
        return kn_fail(err, "%s: key \"rope_scaling\": rope type \"%s\" is not supported (knwb implements default, linear, llama3)",
                       path, kind);
    if (get_num(rs, path, "factor", 1, 0, &c->rope.factor, err) != 0)
        return kn_fail(err, "%s: key \"rope_scaling.factor\" missing or not a number", path);
    if (c->rope.type == KN_ROPE_LLAMA3) {
        static const char *keys[] = { "low_freq_factor", "high_freq_factor", "original_max_position_embeddings" };
        double *dst[] = { &c->rope.low_freq_factor, &c->rope.high_freq_factor, &c->rope.original_max_position_embeddings };
        for (int i = 0; i < 3; i++)
            if (get_num(rs, path, keys[i], 1, 0, dst[i], err) != 0)
                return kn_fail(err, "%s: key \"rope_scaling.%s\" missing or not a number", path, keys[i]);
    }
    /* every other key of rope_scaling would change the math */
    const char *k;
    json_t *val;
    json_object_foreach(rs, k, val) {
        static const char *known[] = { "rope_type", "type", "factor", "low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings" };
        int ok = 0;
        for (int i = 0; i < 6; i++) ok |= strcmp(k, known[i]) == 0;
        if (!ok) return kn_fail(err, "%s: key \"rope_scaling.%s\" is not supported", path, k);
    }
    return 0;
}

static int parse_gpt2(json_t *root, const char *path, dec_config *c, kn_err *err) {
    c->family = DEC_GPT2;
    if (get_int(root, path, "vocab_size", 1, 0, &c->vocab_size, err) || get_int(root, path, "n_embd", 1, 0, &c->hidden, err) ||
        get_int(root, path, "n_layer", 1, 0, &c->layers, err) || get_int(root, path, "n_head", 1, 0, &c->heads, err) ||
        get_int(root, path, "n_positions", 1, 0, &c->max_pos, err))
        return -1;
    int inner;
    if (get_int(root, path, "n_inner", 0, 0, &inner, err) != 0) return -1;
    c->ffn = inner > 0 ? inner : 4 * c->hidden; /* n_inner null or absent: 4 * n_embd */
    double eps;
    if (get_num(root, path, "layer_norm_epsilon", 0, 1e-5, &eps, err) != 0) return -1;
    c->norm = DEC_LAYERNORM;
    c->norm_eps = (float)eps;
    json_t *act = json_object_get(root, "activation_function");
    const char *an = act ? (json_is_string(act) ? json_string_value(act) : NULL) : "gelu_new";
    if (!an || kn_act_from_name(an, &c->act) != 0)
        return kn_fail(err, "%s: key \"activation_function\" = \"%s\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)",
                       path, an ? an : "?");
    c->gated = 0;
    c->learned_pos = 1;
    c->kv_heads = c->heads;
    c->head_dim = c->heads > 0 ? c->hidden / c->heads : 0;
    if (c->heads > 0 && c->hidden % c->heads != 0)
        return kn_fail(err, "%s: key \"n_embd\" = %d is not a multiple of \"n_head\" = %d", path, c->hidden, c->heads);
    c->qkv_bias = c->out_bias = c->mlp_bias = 1;
    if (get_bool(root, path, "tie_word_embeddings", 1, &c->tied, err) != 0) return -1;
    if (want_bool(root, path, "scale_attn_weights", 1, "knwb scales scores by 1/sqrt(head width)", err) ||
        want_bool(root, path, "scale_attn_by_inverse_layer_idx", 0, "knwb does not scale scores by layer", err) ||
        want_bool(root, path, "add_cross_attention", 0, "knwb has no cross-attention", err))
        return -1;
    return 0;
}

static int parse_llama(json_t *root, const char *path, dec_config *c, kn_err *err) {
    c->family = DEC_LLAMA;
    if (get_int(root, path, "vocab_size", 1, 0, &c->vocab_size, err) || get_int(root, path, "hidden_size", 1, 0, &c->hidden, err) ||
        get_int(root, path, "num_hidden_layers", 1, 0, &c->layers, err) ||
        get_int(root, path, "num_attention_heads", 1, 0, &c->heads, err) ||
        get_int(root, path, "intermediate_size", 1, 0, &c->ffn, err) ||
        get_int(root, path, "max_position_embeddings", 1, 0, &c->max_pos, err))
        return -1;
    if (get_int(root, path, "num_key_value_heads", 0, c->heads, &c->kv_heads, err) != 0) return -1;
    if (c->heads < 1) return kn_fail(err, "%s: key \"num_attention_heads\" = %d must be at least 1", path, c->heads);
    if (get_int(root, path, "head_dim", 0, c->hidden / c->heads, &c->head_dim, err) != 0) return -1;
    if (!json_object_get(root, "head_dim") && c->hidden % c->heads != 0)
        return kn_fail(err, "%s: key \"hidden_size\" = %d is not a multiple of \"num_attention_heads\" = %d", path, c->hidden, c->heads);
    double eps;
    if (get_num(root, path, "rms_norm_eps", 0, 1e-6, &eps, err) != 0) return -1;
    c->norm = DEC_RMSNORM;
    c->norm_eps = (float)eps;
    json_t *act = json_object_get(root, "hidden_act");
    const char *an = act ? (json_is_string(act) ? json_string_value(act) : NULL) : "silu";
    if (!an || kn_act_from_name(an, &c->act) != 0)
        return kn_fail(err, "%s: key \"hidden_act\" = \"%s\" is not supported (silu, gelu, gelu_new, gelu_pytorch_tanh, relu)",
                       path, an ? an : "?");
    c->gated = 1;
    c->learned_pos = 0;
    if (parse_rope(root, path, c, err) != 0) return -1;
    if (get_bool(root, path, "tie_word_embeddings", 0, &c->tied, err) != 0) return -1;
    int ab = 0;
    if (strcmp(c->model_type, "qwen2") == 0) {
        c->qkv_bias = 1; /* Qwen2Attention: q/k/v with bias, o_proj without */
        c->out_bias = 0;
        if (want_bool(root, path, "use_sliding_window", 0, "knwb does not implement Qwen2's per-layer window", err) != 0) return -1;
    } else {
        if (get_bool(root, path, "attention_bias", 0, &ab, err) != 0) return -1;
        c->qkv_bias = c->out_bias = ab; /* LlamaAttention: q/k/v and o_proj all take attention_bias */
    }
    if (want_bool(root, path, "mlp_bias", 0, "knwb's gated FFN has no biases", err) != 0) return -1;
    c->mlp_bias = 0;
    c->sliding_window = 0;
    if (strcmp(c->model_type, "mistral") == 0 && get_int(root, path, "sliding_window", 0, 0, &c->sliding_window, err) != 0)
        return -1;
    if (c->sliding_window < 0) return kn_fail(err, "%s: key \"sliding_window\" = %d must be positive", path, c->sliding_window);
    return 0;
}

int dec_config_load(const char *path, dec_config *c, kn_err *err) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return kn_fail(err, "%s: cannot read JSON: %s (line %d)", path, jerr.text, jerr.line);
    int rc = -1;
    if (!json_is_object(root)) { kn_fail(err, "%s: not a JSON object", path); goto done; }
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) { kn_fail(err, "%s: missing string key \"model_type\" (supported: gpt2, llama, mistral, qwen2)", path); goto done; }
    const char *type = json_string_value(mt);
    static const char *types[] = { "gpt2", "llama", "mistral", "qwen2" };
    static const char *archs[] = { "GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM" };
    int which = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(type, types[i]) == 0) which = i;
    if (which < 0) {
        kn_fail(err, "%s: key \"model_type\" = \"%s\" is not a decoder family knwb supports (gpt2, llama, mistral, qwen2)", path, type);
        goto done;
    }
    strcpy(c->model_type, type);
    json_t *ar = json_object_get(root, "architectures");
    if (ar && !json_is_null(ar)) {
        size_t i;
        json_t *e;
        int found = 0;
        if (!json_is_array(ar)) { kn_fail(err, "%s: key \"architectures\" must be an array", path); goto done; }
        json_array_foreach(ar, i, e) found |= json_is_string(e) && strcmp(json_string_value(e), archs[which]) == 0;
        if (!found) {
            kn_fail(err, "%s: key \"architectures\" does not name %s (the %s causal LM knwb reads)", path, archs[which], type);
            goto done;
        }
    }
    if ((which == 0 ? parse_gpt2 : parse_llama)(root, path, c, err) != 0) goto done;
    if (get_int(root, path, "bos_token_id", 0, -1, &c->bos_token_id, err) != 0) goto done;
    json_t *eos = json_object_get(root, "eos_token_id");
    if (json_is_array(eos) && json_array_size(eos) > 0) {
        /* Llama-3 lists several eos ids; the first is kept (generation never stops at eos) */
        json_t *e0 = json_array_get(eos, 0);
        if (!json_is_integer(e0)) { kn_fail(err, "%s: key \"eos_token_id\" must hold integers", path); goto done; }
        c->eos_token_id = (int)json_integer_value(e0);
    } else if (get_int(root, path, "eos_token_id", 0, -1, &c->eos_token_id, err) != 0) goto done;
    if (dec_config_check(c, err) != 0) {
        char tmp[KN_ERRLEN];
        snprintf(tmp, sizeof tmp, "%s", err ? err->msg : "");
        kn_fail(err, "%s: %s", path, tmp);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int dec_config_check(const dec_config *c, kn_err *err) {
    if (c->vocab_size < 1 || c->hidden < 1 || c->layers < 1 || c->heads < 1 || c->ffn < 1 || c->max_pos < 1)
        return kn_fail(err, "vocab_size %d, hidden %d, layers %d, heads %d, ffn %d, max positions %d must all be at least 1",
                       c->vocab_size, c->hidden, c->layers, c->heads, c->ffn, c->max_pos);
    if (c->kv_heads < 1 || c->heads % c->kv_heads != 0)
        return kn_fail(err, "num_attention_heads %d is not a multiple of num_key_value_heads %d", c->heads, c->kv_heads);
    if (c->head_dim < 1) return kn_fail(err, "head width %d must be at least 1", c->head_dim);
    if (!c->learned_pos && c->head_dim % 2 != 0) return kn_fail(err, "RoPE needs an even head width, got %d", c->head_dim);
    if (c->family == DEC_GPT2 && c->head_dim * c->heads != c->hidden)
        return kn_fail(err, "GPT-2 head width %d x %d heads != hidden %d", c->head_dim, c->heads, c->hidden);
    if (!(c->norm_eps >= 0)) return kn_fail(err, "norm epsilon %g must be >= 0", c->norm_eps);
    if ((double)c->vocab_size * c->hidden > 4e12 || (double)c->ffn * c->hidden > 4e12)
        return kn_fail(err, "sizes too large (vocab %d, hidden %d, ffn %d)", c->vocab_size, c->hidden, c->ffn);
    return 0;
}
