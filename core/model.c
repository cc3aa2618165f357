/* model.c: a BERT model's life cycle: config.json, the parameter table with Hugging Face
 * names, loading a checkpoint folder, random initialisation, and saving.
 * The math lives in bert.c; this file only decides where every tensor's floats are. */
#include "bert.h"
#include "alloc.h"
#include "edit.h"
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- config.json */

static int get_int(json_t *root, const char *path, const char *key, int required, int def, int *out, kn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) return kn_fail(err, "%s: missing key \"%s\" (a BERT config needs it)", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return kn_fail(err, "%s: key \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < 0 || x > (1 << 30)) return kn_fail(err, "%s: key \"%s\" = %lld is out of range [0, 2^30]", path, key, (long long)x);
    *out = (int)x;
    return 0;
}

int bert_config_check(const bert_config *c, kn_err *err) {
    if (c->vocab_size < 5) return kn_fail(err, "config: vocab_size %d must be at least 5 (the special tokens)", c->vocab_size);
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
    if (get_int(root, path, "vocab_size", 1, 0, &c->vocab_size, err) ||
        get_int(root, path, "hidden_size", 1, 0, &c->hidden, err) ||
        get_int(root, path, "num_hidden_layers", 1, 0, &c->layers, err) ||
        get_int(root, path, "num_attention_heads", 1, 0, &c->heads, err) ||
        get_int(root, path, "intermediate_size", 1, 0, &c->ffn, err) ||
        get_int(root, path, "max_position_embeddings", 1, 0, &c->max_pos, err) ||
        get_int(root, path, "type_vocab_size", 0, 2, &c->type_vocab, err) ||
        get_int(root, path, "pad_token_id", 0, 0, &c->pad_token_id, err))
        goto done;
    json_t *eps = json_object_get(root, "layer_norm_eps");
    if (eps && !json_is_number(eps)) { kn_fail(err, "%s: key \"layer_norm_eps\" must be a number", path); goto done; }
    c->ln_eps = eps ? (float)json_number_value(eps) : 1e-12f;
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu") != 0)) {
        kn_fail(err, "%s: hidden_act \"%s\" is not supported (knwb implements the exact erf \"gelu\")", path,
                json_is_string(act) ? json_string_value(act) : "?");
        goto done;
    }
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
    json_object_set_new(r, "hidden_act", json_string("gelu"));
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

static kn_param *add_param(kn_model *m, float **slot, const char *name, int64_t d0, int64_t d1) {
    kn_param *p = &m->params[m->nparams++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = d1 ? d0 * d1 : d0;
    p->offset = m->nweights;
    m->nweights += p->numel;
    p->data = (float *)slot; /* temporarily: where to store the pointer, fixed by bind_params */
    return p;
}

/* Fills the parameter table in a fixed order and remembers, per entry, which struct field
 * receives its data pointer. */
static float ***build_params(kn_model *m) {
    const bert_config *c = &m->cfg;
    int n = 5 + 16 * c->layers + 5;
    m->params = kn_calloc(n, sizeof *m->params);
    m->w.layer = kn_calloc(c->layers, sizeof *m->w.layer);
    float ***slots = kn_calloc(n, sizeof *slots);
    if (!m->params || !m->w.layer || !slots) { free(slots); return NULL; } /* kn_model_free frees the rest */
    m->nparams = 0;
    m->nweights = 0;
#define P(field, name, d0, d1) do { slots[m->nparams] = &(field); add_param(m, NULL, name, d0, d1); } while (0)
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
    P(m->w.decoder_b, "cls.predictions.bias", c->vocab_size, 0);
#undef P
    for (int i = 0; i < m->nparams; i++) m->params[i].data = NULL;
    return slots;
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
    st_close(m->st);
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
    float ***slots = build_params(m);
    m->owned = slots ? kn_calloc((size_t)m->nweights, sizeof(float)) : NULL;
    if (!m->owned) {
        free(slots);
        kn_model_free(m);
        kn_fail(err, "out of memory for %lld weights", (long long)m->nweights);
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

/* The old TF-converted checkpoints name LayerNorm parameters gamma/beta. */
static const st_tensor *find_tensor(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (t) return t;
    char alt[128];
    const char *ln = strstr(name, "LayerNorm.");
    if (!ln) return NULL;
    const char *rest = ln + strlen("LayerNorm.");
    const char *sub = strcmp(rest, "weight") == 0 ? "gamma" : strcmp(rest, "bias") == 0 ? "beta" : NULL;
    if (!sub) return NULL;
    snprintf(alt, sizeof alt, "%.*s%s", (int)(rest - name), name, sub);
    return st_find(f, alt);
}

static int read_lower_case(const char *dir, int *lower, kn_err *err) {
    char *p = join(dir, "tokenizer_config.json");
    struct stat sb;
    *lower = 0; /* knwb's models and bert-base-cased are cased; an uncased folder says so here */
    if (!p) return kn_fail(err, "%s: out of memory", dir);
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

kn_model *kn_model_load(const char *dir, kn_err *err) {
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        kn_fail(err, "%s: not a model folder (expected a directory holding config.json, model.safetensors and vocab.txt)", dir);
        return NULL;
    }
    kn_model *m = kn_calloc(1, sizeof *m);
    if (!m) { kn_fail(err, "%s: out of memory", dir); return NULL; }
    float ***slots = NULL;
    char *cfg_path = join(dir, "config.json"), *st_path = join(dir, "model.safetensors"), *vocab_path = join(dir, "vocab.txt");
    int lower;
    if (!(m->path = kn_strdup(dir)) || !cfg_path || !st_path || !vocab_path) { kn_fail(err, "%s: out of memory", dir); goto fail; }
    if (bert_config_load(cfg_path, &m->cfg, err) != 0) goto fail;
    if (read_lower_case(dir, &lower, err) != 0) goto fail;
    m->cfg.do_lower_case = lower;
    m->vocab = kn_vocab_load(vocab_path, lower, err);
    if (!m->vocab) goto fail;
    if (kn_vocab_size(m->vocab) != m->cfg.vocab_size) {
        kn_fail(err, "%s: %d tokens, but config.json says vocab_size %d", vocab_path, kn_vocab_size(m->vocab), m->cfg.vocab_size);
        goto fail;
    }
    st_file *st = st_open(st_path, err);
    if (!st) goto fail;
    m->st = st;
    snprintf(m->weights_file, sizeof m->weights_file, "%s", st_path);
    if (!(slots = build_params(m))) { kn_fail(err, "%s: out of memory for the parameter table", dir); goto fail; }
    /* first pass: check presence and shape, and count floats that need a converted copy */
    int64_t need = 0;
    for (int i = 0; i < m->nparams; i++) {
        kn_param *p = &m->params[i];
        const st_tensor *t = find_tensor(st, p->name);
        if (!t) {
            kn_fail(err, "%s: tensor '%s' is missing", st_path, p->name);
            goto fail;
        }
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            char got[128] = "";
            for (int d = 0; d < t->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            if (p->ndim == 2)
                kn_fail(err, "%s: tensor '%s' has shape [%s], but config.json implies [%lld, %lld]", st_path, t->name, got,
                        (long long)p->shape[0], (long long)p->shape[1]);
            else
                kn_fail(err, "%s: tensor '%s' has shape [%s], but config.json implies [%lld]", st_path, t->name, got,
                        (long long)p->shape[0]);
            goto fail;
        }
        if (t->dtype != ST_F32 || ((uintptr_t)t->data % sizeof(float)) != 0) need += p->numel;
    }
    const st_tensor *dec = st_find(st, "cls.predictions.decoder.weight");
    if (dec && (dec->ndim != 2 || dec->shape[0] != m->cfg.vocab_size || dec->shape[1] != m->cfg.hidden)) {
        kn_fail(err, "%s: tensor 'cls.predictions.decoder.weight' does not match the word embeddings' shape", st_path);
        goto fail;
    }
    if (need) {
        m->owned = kn_calloc((size_t)need, sizeof(float));
        if (!m->owned) { kn_fail(err, "out of memory converting %lld weights to F32", (long long)need); goto fail; }
        m->owned_len = need;
    }
    int64_t used = 0;
    for (int i = 0; i < m->nparams; i++) {
        const st_tensor *t = find_tensor(st, m->params[i].name);
        if (t->dtype == ST_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
            bind(m, slots, i, (float *)t->data);
        } else {
            float *d = m->owned + used;
            used += t->numel;
            st_to_f32(t, d);
            bind(m, slots, i, d);
        }
    }
    free(slots);
    free(cfg_path);
    free(st_path);
    free(vocab_path);
    return m;
fail:
    free(slots);
    free(cfg_path);
    free(st_path);
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
