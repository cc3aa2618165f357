/* model.c: a BERT model's life cycle: config.json, the parameter table with Hugging Face
 * names, loading a checkpoint folder, random initialisation, and saving.
 * The math lives in bert.c; this file only decides where every tensor's floats are. */
#include "bert.h"
#include "alloc.h"
#include "edit.h"
#include "kernels.h"
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- config.json */

/* An integer key within [lo, hi]: the bounds keep every size computed from the config far from
 * overflow and refuse absurd values before anything is allocated. */
static int get_int(json_t *root, const char *path, const char *key, int required, int def, int lo, int hi, int *out, kn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) return kn_fail(err, "%s: missing key \"%s\" (a BERT config needs it)", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return kn_fail(err, "%s: key \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return kn_fail(err, "%s: key \"%s\" = %lld is out of range [%d, %d]", path, key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

int bert_config_check(const bert_config *c, kn_err *err) {
    if (c->vocab_size < 5) return kn_fail(err, "config: vocab_size %d must be at least 5 (the special tokens)", c->vocab_size);
    if (c->vocab_size > KN_MAX_VOCAB || c->hidden > KN_MAX_HIDDEN || c->layers > KN_MAX_LAYERS || c->ffn > KN_MAX_FFN ||
        c->max_pos > KN_MAX_POS || c->type_vocab > KN_MAX_TYPES || c->heads > c->hidden)
        return kn_fail(err, "config: sizes out of range (vocab_size <= %d, hidden_size <= %d, num_hidden_layers <= %d, "
                       "intermediate_size <= %d, max_position_embeddings <= %d, type_vocab_size <= %d, "
                       "num_attention_heads <= hidden_size)", KN_MAX_VOCAB, KN_MAX_HIDDEN, KN_MAX_LAYERS, KN_MAX_FFN,
                       KN_MAX_POS, KN_MAX_TYPES);
    enum kn_act kind;
    if (c->act_name[0] && (kn_act_from_name(c->act_name, &kind) != 0 || (int)kind != c->act))
        return kn_fail(err, "config: hidden_act \"%s\" does not name activation %d", c->act_name, c->act);
    if (c->act < KN_ACT_GELU_ERF || c->act > KN_ACT_SILU) return kn_fail(err, "config: activation %d unknown", c->act);
    if (c->hidden < 1 || c->layers < 1 || c->heads < 1 || c->ffn < 1 || c->max_pos < 2 || c->type_vocab < 1)
        return kn_fail(err, "config: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, type_vocab_size must be >= 1 and max_position_embeddings >= 2");
    if (c->hidden % c->heads != 0)
        return kn_fail(err, "config: hidden_size %d is not divisible by num_attention_heads %d", c->hidden, c->heads);
    if (!(c->ln_eps > 0) || c->ln_eps > 1) return kn_fail(err, "config: layer_norm_eps %g must be in (0, 1]", c->ln_eps);
    return 0;
}

int bert_config_load(const char *path, bert_config *c, kn_err *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (jerr.line < 0 || strstr(jerr.text, "unable to open"))
            return kn_fail(err, "%s: cannot read: %s", path, jerr.text);
        return kn_fail(err, "%s:%d:%d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
    }
    int rc = -1;
    memset(c, 0, sizeof *c);
    if (!json_is_object(root)) { kn_fail(err, "%s: not a JSON object", path); goto done; }
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "bert") != 0)) {
        kn_fail(err, "%s: model_type \"%s\" is not supported (knwb reads BERT models: model_type \"bert\")",
                path, json_is_string(mt) ? json_string_value(mt) : "?");
        goto done;
    }
    if (get_int(root, path, "vocab_size", 1, 0, 5, KN_MAX_VOCAB, &c->vocab_size, err) ||
        get_int(root, path, "hidden_size", 1, 0, 1, KN_MAX_HIDDEN, &c->hidden, err) ||
        get_int(root, path, "num_hidden_layers", 1, 0, 1, KN_MAX_LAYERS, &c->layers, err) ||
        get_int(root, path, "num_attention_heads", 1, 0, 1, KN_MAX_HIDDEN, &c->heads, err) ||
        get_int(root, path, "intermediate_size", 1, 0, 1, KN_MAX_FFN, &c->ffn, err) ||
        get_int(root, path, "max_position_embeddings", 1, 0, 2, KN_MAX_POS, &c->max_pos, err) ||
        get_int(root, path, "type_vocab_size", 0, 2, 1, KN_MAX_TYPES, &c->type_vocab, err) ||
        get_int(root, path, "pad_token_id", 0, 0, 0, KN_MAX_VOCAB, &c->pad_token_id, err))
        goto done;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie)) { kn_fail(err, "%s: key \"tie_word_embeddings\" must be true or false", path); goto done; }
    c->untied = tie && json_is_false(tie);
    json_t *eps = json_object_get(root, "layer_norm_eps");
    if (eps && !json_is_number(eps)) { kn_fail(err, "%s: key \"layer_norm_eps\" must be a number", path); goto done; }
    c->ln_eps = eps ? (float)json_number_value(eps) : 1e-12f;
    json_t *act = json_object_get(root, "hidden_act");
    enum kn_act kind = KN_ACT_GELU_ERF;
    if (act && (!json_is_string(act) || strlen(json_string_value(act)) >= sizeof c->act_name ||
                kn_act_from_name(json_string_value(act), &kind) != 0)) {
        kn_fail(err, "%s: hidden_act \"%s\" is not supported (knwb implements \"gelu\", \"gelu_python\", \"gelu_new\", "
                "\"gelu_pytorch_tanh\", \"relu\", \"silu\", \"swish\")", path, json_is_string(act) ? json_string_value(act) : "?");
        goto done;
    }
    c->act = (int)kind;
    snprintf(c->act_name, sizeof c->act_name, "%s", act ? json_string_value(act) : "gelu");
    json_t *pe = json_object_get(root, "position_embedding_type");
    if (pe && (!json_is_string(pe) || strcmp(json_string_value(pe), "absolute") != 0)) {
        kn_fail(err, "%s: position_embedding_type must be \"absolute\"", path);
        goto done;
    }
    kn_err e2;
    if (bert_config_check(c, &e2) != 0) { kn_fail(err, "%s: %s", path, e2.msg + strlen("config: ")); goto done; }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static int bert_config_write(const char *path, const bert_config *c, kn_err *err) {
    json_t *r = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string("BertForMaskedLM"));
    json_object_set_new(r, "architectures", arch);
    json_object_set_new(r, "model_type", json_string("bert"));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(r, "hidden_size", json_integer(c->hidden));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->layers));
    json_object_set_new(r, "num_attention_heads", json_integer(c->heads));
    json_object_set_new(r, "intermediate_size", json_integer(c->ffn));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(r, "type_vocab_size", json_integer(c->type_vocab));
    json_object_set_new(r, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(r, "layer_norm_eps", json_real(c->ln_eps));
    json_object_set_new(r, "hidden_act", json_string(c->act_name[0] ? c->act_name : kn_act_name((enum kn_act)c->act)));
    json_object_set_new(r, "tie_word_embeddings", c->untied ? json_false() : json_true());
    json_object_set_new(r, "hidden_dropout_prob", json_real(0.1));
    json_object_set_new(r, "attention_probs_dropout_prob", json_real(0.1));
    json_object_set_new(r, "initializer_range", json_real(0.02));
    json_object_set_new(r, "position_embedding_type", json_string("absolute"));
    json_object_set_new(r, "torch_dtype", json_string("float32"));
    int rc = json_dump_file(r, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(r);
    return rc == 0 ? 0 : kn_fail(err, "%s: cannot write: %s", path, strerror(errno));
}

/* ---------------------------------------------------------------- parameter table */

enum { SLOT_PLAIN, SLOT_LN_W, SLOT_LN_B };

/* Sizes in checked 64-bit arithmetic: with the config bounds they cannot overflow, but a
 * bound changed later must not turn into a wrapped allocation. */
static int add_param(kn_model *m, const char *name, int64_t d0, int64_t d1) {
    kn_param *p = &m->params[m->nparams++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    if (kn_mul_i64(d0, d1 ? d1 : 1, &p->numel) != 0) return -1;
    p->offset = m->nweights;
    return kn_add_i64(m->nweights, p->numel, &m->nweights);
}

static int param_count(const bert_config *c) { return 5 + 16 * c->layers + 5 + (c->untied ? 1 : 0); }

/* Fills the parameter table in a fixed order and remembers, per entry, which struct field
 * receives its data pointer. NULL when out of memory or a size overflows (err says which). */
static float ***build_params(kn_model *m, kn_err *err) {
    const bert_config *c = &m->cfg;
    int n = param_count(c), bad = 0;
    m->params = kn_calloc((size_t)n, sizeof *m->params);
    m->w.layer = kn_calloc((size_t)c->layers, sizeof *m->w.layer);
    float ***slots = kn_calloc((size_t)n, sizeof *slots);
    if (!m->params || !m->w.layer || !slots) {
        free(slots);
        kn_fail(err, "out of memory for the parameter table (%d tensors)", n);
        return NULL;
    }
    m->nparams = 0;
    m->nweights = 0;
#define P(field, name, d0, d1) do { slots[m->nparams] = &(field); bad |= add_param(m, name, d0, d1); } while (0)
    int C = c->hidden, F = c->ffn;
    P(m->w.word_emb, "bert.embeddings.word_embeddings.weight", c->vocab_size, C);
    P(m->w.pos_emb, "bert.embeddings.position_embeddings.weight", c->max_pos, C);
    P(m->w.type_emb, "bert.embeddings.token_type_embeddings.weight", c->type_vocab, C);
    P(m->w.emb_ln_w, "bert.embeddings.LayerNorm.weight", C, 0);
    P(m->w.emb_ln_b, "bert.embeddings.LayerNorm.bias", C, 0);
    char nm[96];
    for (int l = 0; l < c->layers; l++) {
        bert_layer_weights *L = &m->w.layer[l];
#define LP(field, suffix, d0, d1) do { snprintf(nm, sizeof nm, "bert.encoder.layer.%d.%s", l, suffix); P(L->field, nm, d0, d1); } while (0)
        LP(q_w, "attention.self.query.weight", C, C);
        LP(q_b, "attention.self.query.bias", C, 0);
        LP(k_w, "attention.self.key.weight", C, C);
        LP(k_b, "attention.self.key.bias", C, 0);
        LP(v_w, "attention.self.value.weight", C, C);
        LP(v_b, "attention.self.value.bias", C, 0);
        LP(ao_w, "attention.output.dense.weight", C, C);
        LP(ao_b, "attention.output.dense.bias", C, 0);
        LP(ln1_w, "attention.output.LayerNorm.weight", C, 0);
        LP(ln1_b, "attention.output.LayerNorm.bias", C, 0);
        LP(ffn_in_w, "intermediate.dense.weight", F, C);
        LP(ffn_in_b, "intermediate.dense.bias", F, 0);
        LP(ffn_out_w, "output.dense.weight", C, F);
        LP(ffn_out_b, "output.dense.bias", C, 0);
        LP(ln2_w, "output.LayerNorm.weight", C, 0);
        LP(ln2_b, "output.LayerNorm.bias", C, 0);
#undef LP
    }
    P(m->w.head_w, "cls.predictions.transform.dense.weight", C, C);
    P(m->w.head_b, "cls.predictions.transform.dense.bias", C, 0);
    P(m->w.head_ln_w, "cls.predictions.transform.LayerNorm.weight", C, 0);
    P(m->w.head_ln_b, "cls.predictions.transform.LayerNorm.bias", C, 0);
    if (c->untied) P(m->w.decoder_w, "cls.predictions.decoder.weight", c->vocab_size, C);
    P(m->w.decoder_b, "cls.predictions.bias", c->vocab_size, 0);
#undef P
    size_t bytes;
    if (bad || kn_mul_size((size_t)m->nweights, sizeof(float), &bytes) != 0) {
        free(slots);
        kn_fail(err, "config: the weight count overflows (hidden_size %d, num_hidden_layers %d, intermediate_size %d, vocab_size %d)",
                c->hidden, c->layers, c->ffn, c->vocab_size);
        return NULL;
    }
    return slots;
}

/* The tied decoder is the word-embedding matrix itself (no parameter of its own). */
static void tie_decoder(kn_model *m) {
    if (!m->cfg.untied) m->w.decoder_w = m->w.word_emb;
}

static void bind(kn_model *m, float ***slots, int i, float *data) {
    m->params[i].data = data;
    *slots[i] = data;
}

const kn_param *kn_model_param(const kn_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

void kn_model_free(kn_model *m) {
    if (!m) return;
    kn_edits_free(m);
    for (int i = 0; i < m->nst; i++) st_close(m->st[i]);
    free(m->st);
    free(m->owned);
    free(m->params);
    free(m->w.layer);
    kn_vocab_free(m->vocab);
    free(m->path);
    free(m);
}

/* ---------------------------------------------------------------- create */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float normal01(uint64_t *s) {
    double u1 = ((splitmix(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (splitmix(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
}

kn_model *kn_model_create(const bert_config *cfg, uint64_t seed, kn_vocab *vocab, kn_err *err) {
    if (bert_config_check(cfg, err) != 0) return NULL;
    if (vocab && kn_vocab_size(vocab) != cfg->vocab_size) {
        kn_fail(err, "vocabulary has %d tokens but config vocab_size is %d", kn_vocab_size(vocab), cfg->vocab_size);
        return NULL;
    }
    kn_model *m = kn_calloc(1, sizeof *m);
    if (!m) { kn_fail(err, "out of memory for a model"); return NULL; }
    m->cfg = *cfg;
    float ***slots = build_params(m, err);
    if (!slots) { kn_model_free(m); return NULL; }
    m->owned = kn_malloc(sizeof(float) * (size_t)m->nweights);
    if (!m->owned) {
        free(slots);
        kn_model_free(m);
        kn_fail(err, "out of memory for %lld weights (%.1f MB)", (long long)m->nweights, m->nweights * 4.0 / 1e6);
        return NULL;
    }
    m->owned_len = m->nweights;
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 1;
    for (int i = 0; i < m->nparams; i++) {
        kn_param *p = &m->params[i];
        float *d = m->owned + p->offset;
        bind(m, slots, i, d);
        int is_ln_w = strstr(p->name, "LayerNorm.weight") != NULL;
        for (int64_t j = 0; j < p->numel; j++)
            d[j] = p->ndim == 2 ? 0.02f * normal01(&s) : (is_ln_w ? 1.0f : 0.0f);
    }
    tie_decoder(m);
    free(slots);
    m->vocab = vocab;
    return m;
}

/* ---------------------------------------------------------------- load */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = kn_malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static int is_file(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---------------------------------------------------------------- weight files */

static int add_shard(kn_model *m, st_file *f, kn_err *err) {
    void **st = kn_realloc(m->st, sizeof *st * (size_t)(m->nst + 1));
    if (!st) {
        kn_fail(err, "%s: out of memory", f->path);
        st_close(f);
        return -1;
    }
    m->st = st;
    m->st[m->nst++] = f;
    return 0;
}

static const st_tensor *find_any(const kn_model *m, const char *name, const st_file **in) {
    for (int i = 0; i < m->nst; i++) {
        const st_tensor *t = st_find(m->st[i], name);
        if (t) { if (in) *in = m->st[i]; return t; }
    }
    return NULL;
}

/* model.safetensors.index.json: {"weight_map": {tensor: shard file}}. Every shard it names must
 * exist and hold the tensors the index places there; a tensor in two shards is refused. */
static int open_sharded(kn_model *m, const char *dir, const char *index, kn_err *err) {
    json_error_t jerr;
    json_t *root = json_load_file(index, 0, &jerr);
    if (!root) return kn_fail(err, "%s:%d:%d: invalid JSON: %s", index, jerr.line, jerr.column, jerr.text);
    int rc = -1;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        kn_fail(err, "%s: key \"weight_map\" must be a non-empty object {tensor name: shard file}", index);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *shard = json_string_value(val);
        if (!shard || !shard[0] || strchr(shard, '/') || strcmp(shard, "..") == 0 || strcmp(shard, ".") == 0) {
            kn_fail(err, "%s: weight_map[\"%s\"] must name a file in the model folder", index, key);
            goto done;
        }
        int have = 0;
        for (int i = 0; i < m->nst && !have; i++) {
            const char *p = ((st_file *)m->st[i])->path, *base = strrchr(p, '/');
            have = strcmp(base ? base + 1 : p, shard) == 0;
        }
        if (have) continue;
        char *path = join(dir, shard);
        if (!path) { kn_fail(err, "out of memory"); goto done; }
        if (!is_file(path)) {
            kn_fail(err, "%s: shard \"%s\" (holding tensor '%s') is missing: %s does not exist", index, shard, key, path);
            free(path);
            goto done;
        }
        st_file *f = st_open(path, err);
        free(path);
        if (!f || add_shard(m, f, err) != 0) goto done;
    }
    /* each tensor where the index says, and in one shard only */
    json_object_foreach(map, key, val) {
        const char *shard = json_string_value(val);
        int where = 0;
        for (int i = 0; i < m->nst; i++) {
            st_file *f = m->st[i];
            const char *base = strrchr(f->path, '/');
            if (st_find(f, key) && strcmp(base ? base + 1 : f->path, shard) == 0) where = 1;
        }
        if (!where) { kn_fail(err, "%s: tensor '%s' is not in shard \"%s\", where the index places it", index, key, shard); goto done; }
    }
    for (int i = 0; i < m->nst; i++) {
        st_file *f = m->st[i];
        for (int k = 0; k < f->n; k++)
            for (int j = i + 1; j < m->nst; j++)
                if (st_find(m->st[j], f->tensors[k].name)) {
                    kn_fail(err, "%s: tensor '%s' is in two shards, %s and %s", index, f->tensors[k].name, f->path,
                            ((st_file *)m->st[j])->path);
                    goto done;
                }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static int open_weights(kn_model *m, const char *dir, kn_err *err) {
    char *single = join(dir, "model.safetensors"), *index = join(dir, "model.safetensors.index.json"),
         *bin = join(dir, "pytorch_model.bin");
    int rc = -1;
    if (!single || !index || !bin) { kn_fail(err, "out of memory"); goto done; }
    if (is_file(single)) {
        st_file *f = st_open(single, err);
        if (!f || add_shard(m, f, err) != 0) goto done;
        snprintf(m->weights_file, sizeof m->weights_file, "%s", single);
    } else if (is_file(index)) {
        if (open_sharded(m, dir, index, err) != 0) goto done;
        snprintf(m->weights_file, sizeof m->weights_file, "%s", index);
    } else if (is_file(bin)) {
        kn_fail(err, "%s: knwb reads safetensors weights, and this folder has only pytorch_model.bin; convert it once with "
                "Python (state = torch.load(\"pytorch_model.bin\"); safetensors.torch.save_file(state, \"model.safetensors\"))", dir);
        goto done;
    } else {
        kn_fail(err, "%s: no weights: expected model.safetensors (or model.safetensors.index.json and its shards)", dir);
        goto done;
    }
    rc = 0;
done:
    free(single);
    free(index);
    free(bin);
    return rc;
}

/* ---------------------------------------------------------------- tensor names */

/* The spellings under which HF's loader accepts a BertForMaskedLM parameter: its own name; the
 * old TF-converted LayerNorm gamma/beta; the base model's names without the `bert.` prefix; and
 * the output bias as cls.predictions.decoder.bias (HF ties decoder.bias to cls.predictions.bias). */
static int spellings(const char *name, char out[][128]) {
    int n = 0;
    const char *bases[2] = { name, strncmp(name, "bert.", 5) == 0 ? name + 5 : NULL };
    for (int b = 0; b < 2; b++) {
        if (!bases[b]) continue;
        snprintf(out[n++], 128, "%s", bases[b]);
        const char *ln = strstr(bases[b], "LayerNorm.");
        if (ln) {
            const char *rest = ln + strlen("LayerNorm.");
            const char *sub = strcmp(rest, "weight") == 0 ? "gamma" : strcmp(rest, "bias") == 0 ? "beta" : NULL;
            if (sub) snprintf(out[n++], 128, "%.*s%s", (int)(rest - bases[b]), bases[b], sub);
        }
    }
    if (strcmp(name, "cls.predictions.bias") == 0) snprintf(out[n++], 128, "cls.predictions.decoder.bias");
    return n;
}

static int same_tensor(const st_tensor *a, const st_tensor *b) {
    return a->dtype == b->dtype && a->ndim == b->ndim && a->numel == b->numel &&
           memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0 &&
           memcmp(a->data, b->data, (size_t)a->numel * (size_t)st_dtype_size(a->dtype)) == 0;
}

/* The stored tensor of a parameter. Two spellings present with different contents are refused:
 * which one HF would use depends on its version, so any choice could be a silent wrong number. */
static int lookup(const kn_model *m, const char *name, const st_tensor **out, kn_err *err) {
    char sp[6][128];
    int n = spellings(name, sp);
    *out = NULL;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = find_any(m, sp[i], NULL);
        if (!t) continue;
        if (*out && !same_tensor(*out, t))
            return kn_fail(err, "%s: tensors '%s' and '%s' are both present and differ; they name the same parameter %s",
                           m->weights_file, (*out)->name, t->name, name);
        if (!*out) *out = t;
    }
    return 0;
}

static int first_nonfinite(const float *x, int64_t n, int64_t *at) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) { *at = i; return 1; }
    return 0;
}

static int read_lower_case(const char *dir, int *lower, kn_err *err) {
    char *p = join(dir, "tokenizer_config.json");
    struct stat sb;
    *lower = 0; /* knwb's models and bert-base-cased are cased; an uncased folder says so here */
    if (!p) return kn_fail(err, "out of memory");
    if (stat(p, &sb) != 0) { free(p); return 0; }
    json_error_t jerr;
    json_t *root = json_load_file(p, 0, &jerr);
    if (!root) {
        kn_fail(err, "%s:%d:%d: invalid JSON: %s", p, jerr.line, jerr.column, jerr.text);
        free(p);
        return -1;
    }
    json_t *v = json_object_get(root, "do_lower_case");
    if (v && json_is_boolean(v)) *lower = json_is_true(v);
    json_decref(root);
    free(p);
    return 0;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    buf[0] = '\0';
    for (int d = 0; d < ndim; d++) snprintf(buf + strlen(buf), n - strlen(buf), "%s%lld", d ? ", " : "", (long long)shape[d]);
}

kn_model *kn_model_load(const char *dir, kn_err *err) {
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        kn_fail(err, "%s: not a model folder. knwb does not download models: give the path of a folder holding config.json, "
                "vocab.txt and model.safetensors (or model.safetensors.index.json with its shards), as Hugging Face's "
                "save_pretrained writes them", dir);
        return NULL;
    }
    kn_model *m = kn_calloc(1, sizeof *m);
    if (!m) { kn_fail(err, "out of memory"); return NULL; }
    float ***slots = NULL, *dec_tmp = NULL;
    char *cfg_path = join(dir, "config.json"), *vocab_path = join(dir, "vocab.txt");
    m->path = kn_strdup(dir);
    int lower;
    if (!cfg_path || !vocab_path || !m->path) { kn_fail(err, "out of memory"); goto fail; }
    if (bert_config_load(cfg_path, &m->cfg, err) != 0) goto fail;
    if (read_lower_case(dir, &lower, err) != 0) goto fail;
    m->cfg.do_lower_case = lower;
    m->vocab = kn_vocab_load(vocab_path, lower, err);
    if (!m->vocab) goto fail;
    if (kn_vocab_size(m->vocab) != m->cfg.vocab_size) {
        kn_fail(err, "%s: %d tokens, but config.json says vocab_size %d", vocab_path, kn_vocab_size(m->vocab), m->cfg.vocab_size);
        goto fail;
    }
    if (open_weights(m, dir, err) != 0) goto fail;
    const char *wf = m->weights_file;
    /* the config against the file before anything of its size is allocated: the last layer
     * must exist, and the word embeddings and its FFN output must have the config's shapes */
    {
        char last[96];
        snprintf(last, sizeof last, "bert.encoder.layer.%d.output.dense.weight", m->cfg.layers - 1);
        const char *names[2] = { last, "bert.embeddings.word_embeddings.weight" };
        int64_t want[2][2] = { { m->cfg.hidden, m->cfg.ffn }, { m->cfg.vocab_size, m->cfg.hidden } };
        for (int k = 0; k < 2; k++) {
            const st_tensor *t;
            if (lookup(m, names[k], &t, err) != 0) goto fail;
            if (!t) {
                kn_fail(err, "%s: tensor '%s' is missing (config.json: num_hidden_layers %d)", wf, names[k], m->cfg.layers);
                goto fail;
            }
            if (t->ndim != 2 || t->shape[0] != want[k][0] || t->shape[1] != want[k][1]) {
                char got[128];
                shape_str(got, sizeof got, t->ndim, t->shape);
                kn_fail(err, "%s: tensor '%s' has shape [%s], but config.json implies [%lld, %lld]", wf, t->name, got,
                        (long long)want[k][0], (long long)want[k][1]);
                goto fail;
            }
        }
    }
    slots = build_params(m, err);
    if (!slots) goto fail;
    /* first pass: presence, shape and dtype; count floats that need a converted copy */
    int64_t need = 0;
    for (int i = 0; i < m->nparams; i++) {
        kn_param *p = &m->params[i];
        const st_tensor *t;
        if (lookup(m, p->name, &t, err) != 0) goto fail;
        if (!t) {
            kn_fail(err, "%s: tensor '%s' is missing%s", wf, p->name,
                    strcmp(p->name, "cls.predictions.decoder.weight") == 0 ? " (config.json says tie_word_embeddings false)" : "");
            goto fail;
        }
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            char got[128], want[64];
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(want, sizeof want, p->ndim, p->shape);
            kn_fail(err, "%s: tensor '%s' has shape [%s], but config.json implies [%s]", wf, t->name, got, want);
            goto fail;
        }
        if (!st_is_float(t->dtype)) {
            kn_fail(err, "%s: tensor '%s' has dtype %s; knwb computes with F32, F16 or BF16 weights", wf, t->name,
                    st_dtype_name(t->dtype));
            goto fail;
        }
        if (t->dtype != ST_F32 || ((uintptr_t)t->data % sizeof(float)) != 0) need += p->numel;
    }
    const st_tensor *dec = find_any(m, "cls.predictions.decoder.weight", NULL);
    if (dec && (dec->ndim != 2 || dec->shape[0] != m->cfg.vocab_size || dec->shape[1] != m->cfg.hidden || !st_is_float(dec->dtype))) {
        kn_fail(err, "%s: tensor 'cls.predictions.decoder.weight' must be F32/F16/BF16 [%d, %d], the word embeddings' shape", wf,
                m->cfg.vocab_size, m->cfg.hidden);
        goto fail;
    }
    if (need) {
        m->owned = kn_malloc(sizeof(float) * (size_t)need);
        if (!m->owned) { kn_fail(err, "out of memory converting %lld weights to F32 (%.1f MB)", (long long)need, need * 4.0 / 1e6); goto fail; }
        m->owned_len = need;
    }
    int64_t used = 0;
    for (int i = 0; i < m->nparams; i++) {
        const st_tensor *t;
        lookup(m, m->params[i].name, &t, NULL);
        float *d;
        if (t->dtype == ST_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
            d = (float *)t->data;
        } else {
            d = m->owned + used;
            used += t->numel;
            st_to_f32(t, d);
        }
        bind(m, slots, i, d);
        int64_t at;
        if (first_nonfinite(d, t->numel, &at)) {
            kn_fail(err, "%s: tensor '%s' holds a non-finite value (%g) at flat index %lld; knwb refuses non-finite weights",
                    wf, t->name, (double)d[at], (long long)at);
            goto fail;
        }
    }
    tie_decoder(m);
    /* a tied model with a stored decoder: HF discards the stored matrix for the embeddings, so
     * one that differs would silently change the numbers; it is refused, not ignored */
    if (dec && !m->cfg.untied) {
        int64_t n = (int64_t)m->cfg.vocab_size * m->cfg.hidden;
        const float *dv = (const float *)dec->data;
        if (dec->dtype != ST_F32 || ((uintptr_t)dec->data % sizeof(float)) != 0) {
            dec_tmp = kn_malloc(sizeof(float) * (size_t)n);
            if (!dec_tmp) { kn_fail(err, "out of memory comparing the decoder with the word embeddings"); goto fail; }
            st_to_f32(dec, dec_tmp);
            dv = dec_tmp;
        }
        if (memcmp(dv, m->w.word_emb, sizeof(float) * (size_t)n) != 0) {
            kn_fail(err, "%s: tensor 'cls.predictions.decoder.weight' differs from the word embeddings, but config.json ties them "
                    "(tie_word_embeddings is true or absent, so Hugging Face would discard the stored decoder); set "
                    "\"tie_word_embeddings\": false to use it", wf);
            goto fail;
        }
        free(dec_tmp);
        dec_tmp = NULL;
    }
    free(slots);
    free(cfg_path);
    free(vocab_path);
    return m;
fail:
    free(dec_tmp);
    free(slots);
    free(cfg_path);
    free(vocab_path);
    kn_model_free(m);
    return NULL;
}

/* ---------------------------------------------------------------- save */

static int write_vocab(const kn_vocab *v, const char *path, kn_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return kn_fail(err, "%s: cannot write: %s", path, strerror(errno));
    for (int i = 0; i < kn_vocab_size(v); i++) fprintf(f, "%s\n", kn_vocab_token(v, i));
    return fclose(f) == 0 ? 0 : kn_fail(err, "%s: write failed: %s", path, strerror(errno));
}

int kn_model_save(const kn_model *m, const char *dir, kn_err *err) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return kn_fail(err, "%s: cannot create folder: %s", dir, strerror(errno));
    char *p = join(dir, "config.json");
    int rc = bert_config_write(p, &m->cfg, err);
    free(p);
    if (rc) return rc;
    const char **names = kn_calloc(m->nparams, sizeof *names);
    int *ndim = kn_calloc(m->nparams, sizeof *ndim);
    int64_t (*shapes)[8] = kn_calloc(m->nparams, sizeof *shapes);
    const float **data = kn_calloc(m->nparams, sizeof *data);
    if (!names || !ndim || !shapes || !data) {
        free(names); free(ndim); free(shapes); free(data);
        return kn_fail(err, "%s: out of memory saving %d tensors", dir, m->nparams);
    }
    for (int i = 0; i < m->nparams; i++) {
        names[i] = m->params[i].name;
        ndim[i] = m->params[i].ndim;
        shapes[i][0] = m->params[i].shape[0];
        shapes[i][1] = m->params[i].shape[1];
        data[i] = m->params[i].data;
    }
    p = join(dir, "model.safetensors");
    rc = st_write(p, m->nparams, names, ndim, (const int64_t(*)[8])shapes, data, err);
    free(p);
    free(names);
    free(ndim);
    free(shapes);
    free(data);
    if (rc) return rc;
    if (m->vocab) {
        p = join(dir, "vocab.txt");
        rc = write_vocab(m->vocab, p, err);
        free(p);
        if (rc) return rc;
    }
    p = join(dir, "tokenizer_config.json");
    FILE *f = fopen(p, "w");
    if (!f) { rc = kn_fail(err, "%s: cannot write: %s", p, strerror(errno)); free(p); return rc; }
    fprintf(f, "{\n  \"do_lower_case\": %s,\n  \"tokenizer_class\": \"BertTokenizer\",\n  \"model_max_length\": %d\n}\n",
            m->cfg.do_lower_case ? "true" : "false", m->cfg.max_pos);
    rc = fclose(f) == 0 ? 0 : kn_fail(err, "%s: write failed", p);
    free(p);
    return rc;
}
