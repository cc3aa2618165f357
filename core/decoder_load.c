/* decoder_load.c: the decoder families' weights from Hugging Face safetensors files (one file
 * or the shards of model.safetensors.index.json), mapped to dec_weights by name. F32 tensors are
 * used in place in the copy-on-write mapping (GPT-2's Conv1D [in, out] weights included, the
 * fused c_attn split by column offsets, no copy); F16/BF16 are converted into one owned buffer.
 * Every tensor of the files is either a parameter or a named buffer HF recomputes; anything
 * else, a missing parameter or a wrong shape is refused naming it. Also: random models for
 * tests. */
#include "decoder.h"
#include "alloc.h"
#include "fileio.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One parameter the family needs: canonical HF name (with prefix), shape, where its pointer goes. */
typedef struct spec {
    char name[96];
    int ndim;
    int64_t shape[2];
    float **dst;
} spec;

static int add(spec *s, int n, float **dst, int ndim, int64_t a, int64_t b, const char *fmt, int l) {
    snprintf(s[n].name, sizeof s[n].name, fmt, l);
    s[n].ndim = ndim;
    s[n].shape[0] = a;
    s[n].shape[1] = ndim == 2 ? b : 0;
    s[n].dst = dst;
    return n + 1;
}

/* The parameters in HF's state_dict order. GPT-2's c_attn goes into q_w / q_b (split later). */
static int build_specs(const dec_config *c, dec_weights *w, spec *s) {
    int n = 0;
    int64_t C = c->hidden, F = c->ffn, V = c->vocab_size, D = c->head_dim;
    int64_t QD = (int64_t)c->heads * D, KD = (int64_t)c->kv_heads * D;
    if (c->family == DEC_GPT2) {
        n = add(s, n, &w->tok_emb, 2, V, C, "transformer.wte.weight", 0);
        n = add(s, n, &w->pos_emb, 2, c->max_pos, C, "transformer.wpe.weight", 0);
        for (int l = 0; l < c->layers; l++) {
            dec_layer_weights *y = &w->layer[l];
            n = add(s, n, &y->ln1_w, 1, C, 0, "transformer.h.%d.ln_1.weight", l);
            n = add(s, n, &y->ln1_b, 1, C, 0, "transformer.h.%d.ln_1.bias", l);
            n = add(s, n, &y->q_w, 2, C, 3 * C, "transformer.h.%d.attn.c_attn.weight", l);
            n = add(s, n, &y->q_b, 1, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l);
            n = add(s, n, &y->o_w, 2, C, C, "transformer.h.%d.attn.c_proj.weight", l);
            n = add(s, n, &y->o_b, 1, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
            n = add(s, n, &y->ln2_w, 1, C, 0, "transformer.h.%d.ln_2.weight", l);
            n = add(s, n, &y->ln2_b, 1, C, 0, "transformer.h.%d.ln_2.bias", l);
            n = add(s, n, &y->fc_w, 2, C, F, "transformer.h.%d.mlp.c_fc.weight", l);
            n = add(s, n, &y->fc_b, 1, F, 0, "transformer.h.%d.mlp.c_fc.bias", l);
            n = add(s, n, &y->down_w, 2, F, C, "transformer.h.%d.mlp.c_proj.weight", l);
            n = add(s, n, &y->down_b, 1, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
        }
        n = add(s, n, &w->lnf_w, 1, C, 0, "transformer.ln_f.weight", 0);
        n = add(s, n, &w->lnf_b, 1, C, 0, "transformer.ln_f.bias", 0);
    } else {
        n = add(s, n, &w->tok_emb, 2, V, C, "model.embed_tokens.weight", 0);
        for (int l = 0; l < c->layers; l++) {
            dec_layer_weights *y = &w->layer[l];
            n = add(s, n, &y->q_w, 2, QD, C, "model.layers.%d.self_attn.q_proj.weight", l);
            if (c->qkv_bias) n = add(s, n, &y->q_b, 1, QD, 0, "model.layers.%d.self_attn.q_proj.bias", l);
            n = add(s, n, &y->k_w, 2, KD, C, "model.layers.%d.self_attn.k_proj.weight", l);
            if (c->qkv_bias) n = add(s, n, &y->k_b, 1, KD, 0, "model.layers.%d.self_attn.k_proj.bias", l);
            n = add(s, n, &y->v_w, 2, KD, C, "model.layers.%d.self_attn.v_proj.weight", l);
            if (c->qkv_bias) n = add(s, n, &y->v_b, 1, KD, 0, "model.layers.%d.self_attn.v_proj.bias", l);
            n = add(s, n, &y->o_w, 2, C, QD, "model.layers.%d.self_attn.o_proj.weight", l);
            if (c->out_bias) n = add(s, n, &y->o_b, 1, C, 0, "model.layers.%d.self_attn.o_proj.bias", l);
            n = add(s, n, &y->fc_w, 2, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
            n = add(s, n, &y->up_w, 2, F, C, "model.layers.%d.mlp.up_proj.weight", l);
            n = add(s, n, &y->down_w, 2, C, F, "model.layers.%d.mlp.down_proj.weight", l);
            n = add(s, n, &y->ln1_w, 1, C, 0, "model.layers.%d.input_layernorm.weight", l);
            n = add(s, n, &y->ln2_w, 1, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        }
        n = add(s, n, &w->lnf_w, 1, C, 0, "model.norm.weight", 0);
    }
    if (!c->tied) n = add(s, n, &w->head, 2, V, C, "lm_head.weight", 0);
    return n;
}

static int max_specs(const dec_config *c) { return 8 + 16 * c->layers; }

/* After the pointers are set: GPT-2's fused c_attn split into its q, k, v column blocks, the
 * tied head, the RoPE frequencies. */
static int finish(dec_model *m, kn_err *err) {
    const dec_config *c = &m->cfg;
    if (c->family == DEC_GPT2)
        for (int l = 0; l < c->layers; l++) {
            dec_layer_weights *y = &m->w.layer[l];
            y->k_w = y->q_w + c->hidden;
            y->v_w = y->q_w + 2 * c->hidden;
            y->k_b = y->q_b + c->hidden;
            y->v_b = y->q_b + 2 * c->hidden;
        }
    if (c->tied) m->w.head = m->w.tok_emb;
    if (!c->learned_pos) {
        m->inv_freq = kn_malloc(sizeof(float) * (c->head_dim / 2));
        if (!m->inv_freq) return kn_fail(err, "out of memory for the RoPE frequencies");
        if (rope_inv_freq(m->inv_freq, &c->rope, c->head_dim, err) != 0) return -1;
    }
    return 0;
}

static dec_model *model_alloc(const dec_config *cfg, kn_err *err) {
    if (dec_config_check(cfg, err) != 0) return NULL;
    dec_model *m = kn_calloc(1, sizeof *m);
    if (!m) { kn_fail(err, "out of memory"); return NULL; }
    m->cfg = *cfg;
    m->w.layer = kn_calloc(cfg->layers, sizeof *m->w.layer);
    m->params = kn_calloc(max_specs(cfg), sizeof *m->params);
    if (!m->w.layer || !m->params) {
        dec_model_free(m);
        kn_fail(err, "out of memory");
        return NULL;
    }
    return m;
}

static void set_param(dec_model *m, const spec *s, const char *name, float *data) {
    kn_param *p = &m->params[m->nparams++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = s->ndim;
    p->shape[0] = s->shape[0];
    p->shape[1] = s->shape[1];
    p->numel = s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0];
    p->offset = m->nweights;
    p->data = data;
    m->nweights += p->numel;
    *s->dst = data;
}

void dec_model_free(dec_model *m) {
    if (!m) return;
    for (int i = 0; i < m->nfiles; i++) st_close(m->files[i]);
    free(m->files);
    free(m->w.layer);
    free(m->params);
    free(m->inv_freq);
    free(m->owned);
    free(m);
}

const kn_param *dec_model_param(const dec_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

float *dec_value_slot(const dec_model *m, int l, int i, int *stride) {
    const dec_config *c = &m->cfg;
    if (l < 0 || l >= c->layers || i < 0 || i >= c->ffn) return NULL;
    float *w = m->w.layer[l].down_w;
    if (c->family == DEC_GPT2) {
        *stride = 1;
        return w + (int64_t)i * c->hidden;
    }
    *stride = c->ffn;
    return w + i;
}

/* ---------------------------------------------------------------- from files */

/* The prefix a family's names may lack in a file (GPT2Model / LlamaModel saved bare). */
static const char *strip_prefix(const char *name) {
    if (strncmp(name, "transformer.", 12) == 0) return name + 12;
    if (strncmp(name, "model.", 6) == 0) return name + 6;
    return NULL;
}

/* Buffers HF keeps in some checkpoints and recomputes itself: GPT-2's causal mask
 * (h.N.attn.bias [1,1,P,P], h.N.attn.masked_bias) and old Llama's rotary_emb.inv_freq. */
static int is_skipped_buffer(const dec_config *c, const char *name) {
    size_t n = strlen(name);
    if (c->family == DEC_GPT2)
        return (n > 10 && strcmp(name + n - 10, ".attn.bias") == 0 && !strstr(name, "c_attn")) ||
               (n > 17 && strcmp(name + n - 17, ".attn.masked_bias") == 0);
    return n > 21 && strcmp(name + n - 21, ".rotary_emb.inv_freq") == 0;
}

typedef struct found { const st_tensor *t; int file; } found;

static found find_tensor(st_file **files, int nfiles, const char *name) {
    for (int f = 0; f < nfiles; f++) {
        const st_tensor *t = st_find(files[f], name);
        if (t) return (found){ t, f };
    }
    return (found){ NULL, -1 };
}

static int is_inplace(const st_tensor *t) {
    return t->dtype == ST_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
}

dec_model *dec_model_from_files(const dec_config *cfg, st_file **files, int nfiles, kn_err *err) {
    dec_model *m = model_alloc(cfg, err);
    if (!m) {
        for (int i = 0; i < nfiles; i++) st_close(files[i]);
        free(files);
        return NULL;
    }
    m->files = files;
    m->nfiles = nfiles;
    spec *s = kn_calloc(max_specs(cfg), sizeof *s);
    found *fd = kn_calloc(max_specs(cfg) + 1, sizeof *fd);
    char **used = kn_calloc(nfiles, sizeof *used);
    int ok = s && fd && used;
    for (int f = 0; ok && f < nfiles; f++) ok = (used[f] = kn_calloc(files[f]->n + 1, 1)) != NULL;
    if (!ok) { kn_fail(err, "out of memory"); goto fail; }
    int ns = build_specs(cfg, &m->w, s);
    /* pass 1: find every tensor, check shapes, size the conversion buffer */
    int64_t convert = 0;
    for (int i = 0; i < ns; i++) {
        found x = find_tensor(files, nfiles, s[i].name);
        const char *bare = strip_prefix(s[i].name);
        if (!x.t && bare) x = find_tensor(files, nfiles, bare);
        if (!x.t) {
            kn_fail(err, "%s: missing tensor '%s'%s%s%s", files[0]->path, s[i].name, bare ? " (nor '" : "", bare ? bare : "",
                    bare ? "')" : "");
            goto fail;
        }
        int shape_ok = x.t->ndim == s[i].ndim && x.t->shape[0] == s[i].shape[0] && (s[i].ndim == 1 || x.t->shape[1] == s[i].shape[1]);
        if (!shape_ok) {
            char got[128] = "";
            for (int d = 0; d < x.t->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)x.t->shape[d]);
            if (s[i].ndim == 2)
                kn_fail(err, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]", files[x.file]->path, x.t->name, got,
                        (long long)s[i].shape[0], (long long)s[i].shape[1]);
            else
                kn_fail(err, "%s: tensor '%s' has shape [%s], expected [%lld]", files[x.file]->path, x.t->name, got,
                        (long long)s[i].shape[0]);
            goto fail;
        }
        if (x.t->dtype != ST_F32 && x.t->dtype != ST_F16 && x.t->dtype != ST_BF16) {
            kn_fail(err, "%s: tensor '%s' has dtype %s; parameters must be F32, F16 or BF16", files[x.file]->path, x.t->name,
                    st_dtype_name(x.t->dtype));
            goto fail;
        }
        used[x.file][x.t - files[x.file]->tensors] = 1;
        fd[i] = x;
        if (!is_inplace(x.t)) convert += x.t->numel;
    }
    /* a tied checkpoint that stores lm_head.weight anyway: it must be the embeddings */
    found head = { NULL, -1 };
    if (cfg->tied) {
        head = find_tensor(files, nfiles, "lm_head.weight");
        if (head.t) {
            used[head.file][head.t - files[head.file]->tensors] = 1;
            if (head.t->ndim != 2 || head.t->shape[0] != cfg->vocab_size || head.t->shape[1] != cfg->hidden) {
                kn_fail(err, "%s: tensor 'lm_head.weight' of a tied model has the wrong shape", files[head.file]->path);
                goto fail;
            }
            convert += head.t->numel;
        }
    }
    /* every other tensor must be a buffer HF recomputes */
    for (int f = 0; f < nfiles; f++)
        for (int j = 0; j < files[f]->n; j++)
            if (!used[f][j] && !is_skipped_buffer(cfg, files[f]->tensors[j].name)) {
                kn_fail(err, "%s: tensor '%s' is not a parameter of a %s model (tied head: %s)", files[f]->path,
                        files[f]->tensors[j].name, cfg->model_type, cfg->tied ? "yes" : "no");
                goto fail;
            }
    if (convert > 0) {
        size_t bytes;
        if (kn_mul_size((size_t)convert, sizeof(float), &bytes) != 0 || !(m->owned = kn_malloc(bytes))) {
            kn_fail(err, "out of memory converting %lld weights to float32", (long long)convert);
            goto fail;
        }
        m->owned_len = convert;
    }
    /* pass 2: pointers (in place) or conversions, under the files' own names */
    int64_t off = 0;
    for (int i = 0; i < ns; i++) {
        float *data;
        if (is_inplace(fd[i].t)) data = (float *)fd[i].t->data;
        else {
            data = m->owned + off;
            st_to_f32(fd[i].t, data);
            off += fd[i].t->numel;
        }
        set_param(m, &s[i], fd[i].t->name, data);
    }
    if (head.t) {
        float *h = m->owned + off;
        st_to_f32(head.t, h);
        if (memcmp(h, m->w.tok_emb, sizeof(float) * (size_t)head.t->numel) != 0) {
            kn_fail(err, "%s: tensor 'lm_head.weight' differs from the token embeddings, but config.json ties them "
                    "(tie_word_embeddings); set it to false to use lm_head", files[head.file]->path);
            goto fail;
        }
    }
    if (finish(m, err) != 0) goto fail;
    for (int f = 0; f < nfiles; f++) free(used[f]);
    free(used);
    free(s);
    free(fd);
    return m;
fail:
    if (used)
        for (int f = 0; f < nfiles; f++) free(used[f]);
    free(used);
    free(s);
    free(fd);
    dec_model_free(m);
    return NULL;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The shard names of model.safetensors.index.json, each opened once. */
static int open_shards(const char *dir, const char *index, st_file ***out, int *nout, kn_err *err) {
    size_t len;
    char *text = kn_read_file(index, (size_t)64 << 20, "safetensors index", &len, err);
    if (!text) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!root) return kn_fail(err, "%s: cannot parse JSON: %s (line %d)", index, jerr.text, jerr.line);
    int rc = -1, n = 0;
    st_file **files = NULL;
    char **names = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) { kn_fail(err, "%s: missing object key \"weight_map\"", index); goto done; }
    size_t cap = json_object_size(wm);
    files = kn_calloc(cap, sizeof *files);
    names = kn_calloc(cap, sizeof *names);
    if (!files || !names) { kn_fail(err, "out of memory"); goto done; }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) { kn_fail(err, "%s: weight_map entry '%s' must be a file name", index, key); goto done; }
        const char *fn = json_string_value(val);
        if (!*fn || strchr(fn, '/') || fn[0] == '.') {
            kn_fail(err, "%s: weight_map entry '%s' names '%s', not a file in the folder", index, key, fn);
            goto done;
        }
        int k = 0;
        while (k < n && strcmp(names[k], fn) != 0) k++;
        if (k == n) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, fn);
            if (!is_file(path)) { kn_fail(err, "%s: shard '%s' (holding '%s') is absent", index, fn, key); goto done; }
            if (!(files[n] = st_open(path, err))) goto done;
            names[n++] = (char *)fn;
        }
        if (!st_find(files[k], key)) {
            kn_fail(err, "%s: weight_map puts tensor '%s' in shard '%s', which does not hold it", index, key, names[k]);
            goto done;
        }
    }
    /* and every tensor of a shard is in the map */
    for (int k = 0; k < n; k++)
        for (int j = 0; j < files[k]->n; j++) {
            json_t *e = json_object_get(wm, files[k]->tensors[j].name);
            if (!e || strcmp(json_string_value(e), names[k]) != 0) {
                kn_fail(err, "%s: tensor '%s' of shard '%s' is not mapped to it in weight_map", index, files[k]->tensors[j].name, names[k]);
                goto done;
            }
        }
    rc = 0;
done:
    if (rc != 0 && files) {
        for (int k = 0; k < n; k++) st_close(files[k]);
        free(files);
        files = NULL;
    }
    free(names);
    json_decref(root);
    *out = files;
    *nout = rc == 0 ? n : 0;
    return rc;
}

dec_model *dec_model_load(const char *dir, kn_err *err) {
    char path[4096];
    dec_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (dec_config_load(path, &cfg, err) != 0) return NULL;
    st_file **files = NULL;
    int n = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (is_file(path)) {
        files = kn_calloc(1, sizeof *files);
        if (!files) { kn_fail(err, "out of memory"); return NULL; }
        if (!(files[0] = st_open(path, err))) { free(files); return NULL; }
        n = 1;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (!is_file(path)) {
            kn_fail(err, "%s: neither model.safetensors nor model.safetensors.index.json", dir);
            return NULL;
        }
        if (open_shards(dir, path, &files, &n, err) != 0) return NULL;
    }
    return dec_model_from_files(&cfg, files, n, err);
}

/* ---------------------------------------------------------------- random models */

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static double rng_normal(uint64_t *s) {
    double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

dec_model *dec_model_create(const dec_config *cfg, uint64_t seed, float std, kn_err *err) {
    dec_model *m = model_alloc(cfg, err);
    if (!m) return NULL;
    spec *s = kn_calloc(max_specs(cfg), sizeof *s);
    if (!s) { kn_fail(err, "out of memory"); dec_model_free(m); return NULL; }
    int ns = build_specs(cfg, &m->w, s);
    int64_t total = 0;
    for (int i = 0; i < ns; i++) total += s[i].ndim == 2 ? s[i].shape[0] * s[i].shape[1] : s[i].shape[0];
    m->owned = kn_malloc(sizeof(float) * (size_t)total);
    if (!m->owned) { free(s); dec_model_free(m); kn_fail(err, "out of memory for %lld weights", (long long)total); return NULL; }
    m->owned_len = total;
    uint64_t st = seed * 2654435761u + 88172645463325252ull;
    int64_t off = 0;
    for (int i = 0; i < ns; i++) {
        float *d = m->owned + off;
        int64_t n = s[i].ndim == 2 ? s[i].shape[0] * s[i].shape[1] : s[i].shape[0];
        int isnorm = strstr(s[i].name, "norm") || strstr(s[i].name, "ln_");
        int isbias = strstr(s[i].name, ".bias") != NULL;
        for (int64_t j = 0; j < n; j++) {
            double z = rng_normal(&st);
            d[j] = (float)(isnorm && !isbias ? 1.0 + 0.1 * z : isbias ? 0.1 * z : std * z);
        }
        set_param(m, &s[i], s[i].name, d);
        off += n;
    }
    free(s);
    if (finish(m, err) != 0) { dec_model_free(m); return NULL; }
    return m;
}
