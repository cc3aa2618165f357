/* knwb_core.c: the Lua bindings of the C engine (module knwb.core).
 * Userdata: knwb.Model (a loaded or created BERT), knwb.Scores (a dense [L,F] float matrix that
 * stays in C: attributions, activations), knwb.Edit (a value-slot edit transaction) and
 * knwb.Trainer (masked-LM training state). All are checked with luaL_checkudata; a freed model
 * raises an error instead of crashing, and handles keep their model alive through a user value.
 * Indices follow the paper and Hugging Face: layers, neurons and token positions count from 0. */
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bert.h"
#include "kn.h"
#include "edit.h"
#include "ig.h"
#include "kernels.h"
#include "objective.h"
#include "train.h"
#include "wordpiece.h"

#define MODEL_MT "knwb.Model"
#define SCORES_MT "knwb.Scores"
#define EDIT_MT "knwb.Edit"
#define TRAINER_MT "knwb.Trainer"
#define POOL_MT "knwb.pool"
#define MAX_BATCH_ROWS 64

typedef struct lmodel {
    kn_model *m;
    bert_acts *acts;   /* reused across calls; grown on demand */
    kn_ig_ws *ig_ws;   /* model:attribute's scratch, reused across calls (see kn_ig_ws) */
} lmodel;

typedef struct lscores { int L, F; float v[]; } lscores;
typedef struct ledit { kn_edit *e; } ledit;
typedef struct ltrainer { kn_trainer *t; } ltrainer;

/* ------------------------------------------------------------------ helpers */

static int raise_err(lua_State *L, const kn_err *err) { return luaL_error(L, "%s", err->msg); }

/* The one range check of every integer a binding reads (an argument, a table field, a list
 * item): v outside [lo, hi) is an error naming what it is and the range, never a silent
 * wrap-around (token 2^32 + 5 would otherwise be token 5, layer 2^32 + 1 layer 1). arg > 0 names
 * the argument; 0 raises a plain error (what then says where the value came from). */
#define INT_END ((lua_Integer)INT_MAX + 1)
static lua_Integer int_check(lua_State *L, int arg, lua_Integer v, lua_Integer lo, lua_Integer hi, const char *what) {
    if (v >= lo && v < hi) return v;
    const char *msg = lua_pushfstring(L, "%s %I out of range [%I, %I)", what, (LUAI_UACINT)v, (LUAI_UACINT)lo, (LUAI_UACINT)hi);
    if (arg > 0) luaL_argerror(L, arg, msg);
    lua_error(L);
    return 0;
}

/* An integer argument in [lo, hi). */
static lua_Integer arg_int(lua_State *L, int arg, lua_Integer lo, lua_Integer hi, const char *what) {
    return int_check(L, arg, luaL_checkinteger(L, arg), lo, hi, what);
}

/* An integer argument that must fit an int (the caller checks the narrower range). */
static int check_int(lua_State *L, int arg) { return (int)arg_int(L, arg, INT_MIN, INT_END, "integer"); }

/* A string argument that goes to C as a NUL-terminated string (a path, a prompt): a NUL inside
 * would silently cut it ("models/default\0/x" would load models/default), so it is refused. */
static const char *check_cstr(lua_State *L, int arg, const char *what) {
    size_t n;
    const char *s = luaL_checklstring(L, arg, &n);
    size_t k = strlen(s);
    if (k != n) luaL_argerror(L, arg, lua_pushfstring(L, "%s has a NUL byte at offset %d; knwb does not cut it there", what, (int)k));
    return s;
}

/* The same for a string at the top of the stack read from a table (nil: def). */
static const char *opt_cstr_top(lua_State *L, const char *def, const char *what) {
    if (lua_isnoneornil(L, -1)) return def;
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (!s) { luaL_error(L, "%s must be a string, got %s", what, luaL_typename(L, -1)); return NULL; }
    if (strlen(s) != n) luaL_error(L, "%s has a NUL byte at offset %d", what, (int)strlen(s));
    return s;
}

static lmodel *check_lmodel(lua_State *L, int idx) {
    lmodel *lm = luaL_checkudata(L, idx, MODEL_MT);
    if (!lm->m) luaL_error(L, "bad argument #%d: the model was freed", idx);
    return lm;
}
static kn_model *check_model(lua_State *L, int idx) { return check_lmodel(L, idx)->m; }

static lscores *new_scores(lua_State *L, int rows, int F) {
    lscores *s = lua_newuserdatauv(L, sizeof(lscores) + sizeof(float) * (size_t)rows * F, 0);
    s->L = rows;
    s->F = F;
    memset(s->v, 0, sizeof(float) * (size_t)rows * F);
    luaL_setmetatable(L, SCORES_MT);
    return s;
}

static int field_int(lua_State *L, int t, const char *k, int def, int required) {
    int ty = lua_getfield(L, t, k);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        if (required) return luaL_error(L, "missing field '%s'", k);
        return def;
    }
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) return luaL_error(L, "field '%s' must be an integer, got %s", k, luaL_typename(L, -1));
    lua_pop(L, 1);
    char what[96];
    snprintf(what, sizeof what, "field '%s'", k);
    return (int)int_check(L, 0, v, INT_MIN, INT_END, what);
}

/* An integer field in [lo, hi) (def when absent), for values wider than an int (seeds). */
static lua_Integer field_integer(lua_State *L, int t, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi) {
    if (lua_getfield(L, t, k) == LUA_TNIL) { lua_pop(L, 1); return def; }
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) return luaL_error(L, "field '%s' must be an integer, got %s", k, luaL_typename(L, -1));
    lua_pop(L, 1);
    char what[96];
    snprintf(what, sizeof what, "field '%s'", k);
    return int_check(L, 0, v, lo, hi, what);
}

/* A number field (def when absent); NaN and infinities are refused, as every setting is. */
static double field_num(lua_State *L, int t, const char *k, double def) {
    if (lua_getfield(L, t, k) == LUA_TNIL) { lua_pop(L, 1); return def; }
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok) return luaL_error(L, "field '%s' must be a number, got %s", k, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (!isfinite(v)) return luaL_error(L, "field '%s' must be a finite number, got %f", k, v);
    return v;
}

/* The number at stack index idx as a float: a non-number, NaN, an infinity or a value beyond
 * float range is an error naming `what` (it would otherwise become 0 or inf in the weights). */
static float check_float(lua_State *L, int idx, const char *what) {
    int ok;
    double v = lua_tonumberx(L, idx, &ok);
    if (!ok) return (float)luaL_error(L, "%s must be a number, got %s", what, luaL_typename(L, idx));
    if (!isfinite(v) || fabs(v) > FLT_MAX) return (float)luaL_error(L, "%s must be a finite float32, got %f", what, v);
    return (float)v;
}

/* Scratch memory of one binding call, freed however the call ends: a to-be-closed userdata,
 * pushed once at the start of the call, owns every block, so an error raised half-way through
 * reading the arguments (a longjmp past any free) loses nothing. */
typedef struct pool { void **blk; int n, cap; } pool;

static int pool_close(lua_State *L) {
    pool *p = luaL_checkudata(L, 1, POOL_MT);
    for (int i = 0; i < p->n; i++) free(p->blk[i]);
    free(p->blk);
    p->blk = NULL;
    p->n = p->cap = 0;
    return 0;
}

static pool *pool_new(lua_State *L) {
    pool *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    luaL_setmetatable(L, POOL_MT);
    lua_toclose(L, -1);
    return p;
}

/* bytes of zeroed memory owned by the pool */
static void *pool_alloc(lua_State *L, pool *p, size_t bytes) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        void **blk = realloc(p->blk, sizeof *blk * cap);
        if (!blk) luaL_error(L, "out of memory");
        p->blk = blk;
        p->cap = cap;
    }
    void *b = calloc(1, bytes ? bytes : 1);
    if (!b) luaL_error(L, "out of memory (%zu bytes)", bytes);
    p->blk[p->n++] = b;
    return b;
}

/* Reads the array at stack index t into an int buffer from the pool. */
static int *read_ints(lua_State *L, pool *P, int t, const char *what, int *n_out) {
    t = lua_absindex(L, t);
    if (!lua_istable(L, t)) { luaL_error(L, "%s must be an array of integers, got %s", what, luaL_typename(L, t)); return NULL; }
    int n = (int)lua_rawlen(L, t);
    int *out = pool_alloc(L, P, sizeof(int) * (n + 1));
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, t, i);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) { luaL_error(L, "%s[%d] must be an integer", what, i); return NULL; }
        char item[96];
        snprintf(item, sizeof item, "%s[%d]", what, i);
        out[i - 1] = (int)int_check(L, 0, v, INT_MIN, INT_END, item);
    }
    *n_out = n;
    return out;
}

/* The model's sizes through core/kn.h (the bindings never read a family's structs). */
static kn_dims DIMS(const kn_model *m) {
    kn_dims d;
    kn_model_dims(m, &d);
    return d;
}

static void push_config(lua_State *L, const kn_model *m) {
    kn_dims d = DIMS(m);
    lua_createtable(L, 0, 12);
#define SETI(k, v) (lua_pushinteger(L, (v)), lua_setfield(L, -2, k))
    SETI("vocab_size", d.vocab); SETI("hidden_size", d.hidden); SETI("num_hidden_layers", d.layers);
    SETI("num_attention_heads", d.heads); SETI("intermediate_size", d.neurons);
    SETI("max_position_embeddings", d.max_pos); SETI("type_vocab_size", d.type_vocab);
#undef SETI
    lua_pushnumber(L, d.norm_eps);
    lua_setfield(L, -2, "layer_norm_eps");
    lua_pushboolean(L, d.do_lower_case);
    lua_setfield(L, -2, "do_lower_case");
    lua_pushstring(L, d.act);
    lua_setfield(L, -2, "hidden_act");
    lua_pushboolean(L, d.tied);
    lua_setfield(L, -2, "tie_word_embeddings");
}

/* model:dims(): the sizes a script needs on any family */
static void push_dims(lua_State *L, const kn_model *m) {
    kn_dims d = DIMS(m);
    lua_createtable(L, 0, 8);
#define SETI(k, v) (lua_pushinteger(L, (v)), lua_setfield(L, -2, k))
    SETI("layers", d.layers); SETI("neurons", d.neurons); SETI("hidden", d.hidden); SETI("vocab", d.vocab);
    SETI("max_positions", d.max_pos);
#undef SETI
    lua_pushstring(L, d.family);
    lua_setfield(L, -2, "family");
    lua_pushboolean(L, d.causal);
    lua_setfield(L, -2, "causal");
    lua_createtable(L, d.layers, 0); /* neurons per layer, layer 0 first */
    for (int l = 0; l < d.layers; l++) { lua_pushinteger(L, kn_model_neurons(m, l)); lua_rawseti(L, -2, l + 1); }
    lua_setfield(L, -2, "neurons_per_layer");
}

static bert_acts *arena(lua_State *L, lmodel *lm, int B, int T, int P) {
    bert_acts *a = lm->acts;
    /* an arena serves any batch up to its capacity (shorter sequences are packed densely) */
    int cb = 0, ct = 0, cp = 0;
    if (a) kn_acts_capacity(a, &cb, &ct, &cp);
    if (a && cb >= B && ct >= T && cp >= P) return a;
    int nb = B, np = P, nt = T;
    if (a) {
        nb = cb > B ? cb : B;
        np = cp > P ? cp : P;
        nt = ct > T ? ct : T;
    }
    bert_acts_free(a);
    kn_err err;
    lm->acts = kn_acts_new(lm->m, nb, nt, np, &err);
    if (!lm->acts) raise_err(L, &err);
    return lm->acts;
}

/* ------------------------------------------------------------------ model life cycle */

static int l_load(lua_State *L) {
    const char *dir = check_cstr(L, 1, "model folder");
    lmodel *lm = lua_newuserdatauv(L, sizeof *lm, 0);
    lm->m = NULL;
    lm->acts = NULL;
    lm->ig_ws = NULL;
    luaL_setmetatable(L, MODEL_MT);
    kn_err err;
    lm->m = kn_model_load(dir, &err);
    if (!lm->m) return raise_err(L, &err);
    return 1;
}

static int l_create(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bert_config c = { 0 };
    c.vocab_size = field_int(L, 1, "vocab_size", 0, 0);
    c.hidden = field_int(L, 1, "hidden_size", 0, 1);
    c.layers = field_int(L, 1, "num_hidden_layers", 0, 1);
    c.heads = field_int(L, 1, "num_attention_heads", 0, 1);
    c.ffn = field_int(L, 1, "intermediate_size", 0, 1);
    c.max_pos = field_int(L, 1, "max_position_embeddings", 512, 0);
    c.type_vocab = field_int(L, 1, "type_vocab_size", 2, 0);
    c.ln_eps = (float)field_num(L, 1, "layer_norm_eps", 1e-12);
    lua_Integer seed = lua_isnoneornil(L, 2) ? 0 : arg_int(L, 2, 0, LUA_MAXINTEGER, "seed");
    const char *vocab_path = lua_isnoneornil(L, 3) ? NULL : check_cstr(L, 3, "vocabulary path");
    kn_err err;
    kn_vocab *v = NULL;
    if (lua_getfield(L, 1, "do_lower_case") != LUA_TNIL) c.do_lower_case = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (vocab_path) {
        v = kn_vocab_load(vocab_path, c.do_lower_case, &err);
        if (!v) return raise_err(L, &err);
        if (c.vocab_size == 0) c.vocab_size = kn_vocab_size(v);
    }
    lmodel *lm = lua_newuserdatauv(L, sizeof *lm, 0);
    lm->m = NULL;
    lm->acts = NULL;
    lm->ig_ws = NULL;
    luaL_setmetatable(L, MODEL_MT);
    lm->m = kn_model_create(&c, (uint64_t)seed, v, &err);
    if (!lm->m) { kn_vocab_free(v); return raise_err(L, &err); }
    return 1;
}

static int m_free(lua_State *L) {
    lmodel *lm = luaL_checkudata(L, 1, MODEL_MT);
    bert_acts_free(lm->acts);
    lm->acts = NULL;
    kn_ig_ws_free(lm->ig_ws);
    lm->ig_ws = NULL;
    kn_model_free(lm->m);
    lm->m = NULL;
    return 0;
}

static int m_tostring(lua_State *L) {
    lmodel *lm = luaL_checkudata(L, 1, MODEL_MT);
    if (!lm->m) { lua_pushliteral(L, "knwb.Model (freed)"); return 1; }
    kn_dims d = DIMS(lm->m);
    const char *path = kn_model_path(lm->m);
    lua_pushfstring(L, "knwb.Model (%s: %s, %d layers, hidden %d, %d heads, FFN %d, vocab %d)",
                    path ? path : "created", d.family, d.layers, d.hidden, d.heads, d.neurons, d.vocab);
    return 1;
}

static int m_save(lua_State *L) {
    kn_model *m = check_model(L, 1);
    const char *dir = check_cstr(L, 2, "model folder");
    kn_err err;
    if (kn_model_save(m, dir, &err) != 0) return raise_err(L, &err);
    return 0;
}

static int m_config(lua_State *L) { push_config(L, check_model(L, 1)); return 1; }
static int m_dims(lua_State *L) { push_dims(L, check_model(L, 1)); return 1; }

static int m_info(lua_State *L) {
    kn_model *m = check_model(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kn_model_path(m) ? kn_model_path(m) : "");
    lua_setfield(L, -2, "path");
    lua_pushstring(L, kn_model_weights_file(m));
    lua_setfield(L, -2, "weights_file");
    lua_pushinteger(L, kn_model_nweights(m));
    lua_setfield(L, -2, "parameters");
    lua_pushinteger(L, (lua_Integer)kn_model_generation(m));
    lua_setfield(L, -2, "generation");
    return 1;
}

/* ------------------------------------------------------------------ tokenizer */

static kn_vocab *check_vocab(lua_State *L, kn_model *m) {
    if (!kn_model_vocab(m)) luaL_error(L, "the model has no vocabulary (create it with a vocab.txt)");
    return kn_model_vocab(m);
}

static int *tokenize(lua_State *L, pool *P, kn_model *m, const char *text, int *n) {
    kn_vocab *v = check_vocab(L, m);
    kn_err err;
    int cap = 64;
    int *ids = pool_alloc(L, P, sizeof(int) * cap);
    int got = kn_tokenize(v, text, ids, cap, &err);
    if (got > cap) {
        ids = pool_alloc(L, P, sizeof(int) * got);
        got = kn_tokenize(v, text, ids, got, &err);
    }
    if (got < 0) { raise_err(L, &err); return NULL; }
    *n = got;
    return ids;
}

static int m_tokenize(lua_State *L) {
    kn_model *m = check_model(L, 1);
    const char *text = check_cstr(L, 2, "text");
    int n;
    int *ids = tokenize(L, pool_new(L), m, text, &n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) { lua_pushinteger(L, ids[i]); lua_rawseti(L, -2, i + 1); }
    return 1;
}

/* encode(text [, need_mask=true]) -> ids with [CLS] .. [SEP], mask position (0-based) */
static int m_encode(lua_State *L) {
    kn_model *m = check_model(L, 1);
    const char *text = check_cstr(L, 2, "prompt");
    int need_mask = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    int n;
    int *ids = tokenize(L, pool_new(L), m, text, &n);
    kn_vocab *v = kn_model_vocab(m);
    int mask_id = kn_vocab_special(v, KN_TOK_MASK), mask = -1, masks = 0;
    for (int i = 0; i < n; i++) if (ids[i] == mask_id) { masks++; if (mask < 0) mask = i + 1; }
    if (n + 2 > DIMS(m).max_pos) {
        return luaL_error(L, "prompt is %d tokens with [CLS]/[SEP], over max_position_embeddings %d: \"%s\"", n + 2, DIMS(m).max_pos, text);
    }
    if (need_mask && masks != 1) {
        if (masks == 0) return luaL_error(L, "prompt has no [MASK] token: \"%s\"", text);
        return luaL_error(L, "prompt has %d [MASK] tokens, knwb needs exactly one: \"%s\"", masks, text);
    }
    lua_createtable(L, n + 2, 0);
    lua_pushinteger(L, kn_vocab_special(v, KN_TOK_CLS));
    lua_rawseti(L, -2, 1);
    for (int i = 0; i < n; i++) { lua_pushinteger(L, ids[i]); lua_rawseti(L, -2, i + 2); }
    lua_pushinteger(L, kn_vocab_special(v, KN_TOK_SEP));
    lua_rawseti(L, -2, n + 2);
    if (mask >= 0) lua_pushinteger(L, mask); else lua_pushnil(L);
    return 2;
}

/* model:id(word) -> the id of word's single token: the vocabulary entry itself, or else the one
 * token the model's tokenizer makes of it ("Paris" -> paris on an uncased model); nil when it
 * tokenizes to several pieces, to nothing, or to [UNK] (an unknown word is not a token). */
static int m_id(lua_State *L) {
    kn_model *m = check_model(L, 1);
    kn_vocab *v = check_vocab(L, m);
    const char *word = check_cstr(L, 2, "word");
    int id = kn_vocab_id(v, word);
    if (id < 0) {
        int n, *ids = tokenize(L, pool_new(L), m, word, &n);
        if (n == 1 && ids[0] != kn_vocab_special(v, KN_TOK_UNK)) id = ids[0];
    }
    if (id < 0) lua_pushnil(L); else lua_pushinteger(L, id);
    return 1;
}

static int m_token(lua_State *L) {
    kn_vocab *v = check_vocab(L, check_model(L, 1));
    lua_Integer id = arg_int(L, 2, 0, kn_vocab_size(v), "token id");
    const char *t = kn_vocab_token(v, (int)id);
    if (!t) return luaL_error(L, "bad argument #1 to 'token' (token id %d out of range [0, %d))", (int)id, kn_vocab_size(v));
    lua_pushstring(L, t);
    return 1;
}

/* ------------------------------------------------------------------ batched scoring */

typedef struct item { int *ids; int T; int mask; int target; } item;

/* Reads items {ids=, mask=, target=} from the array at index t. */
static item *read_items(lua_State *L, pool *P, int t, kn_model *m, int *n_out, int need_target) {
    luaL_checktype(L, t, LUA_TTABLE);
    int n = (int)lua_rawlen(L, t);
    item *it = pool_alloc(L, P, sizeof *it * (n + 1));
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, t, i + 1);
        if (!lua_istable(L, -1)) { luaL_error(L, "item %d must be a table {ids=, mask=, target=}", i + 1); }
        int top = lua_gettop(L);
        lua_getfield(L, top, "ids");
        char what[48];
        snprintf(what, sizeof what, "item %d ids", i + 1);
        it[i].ids = read_ints(L, P, -1, what, &it[i].T);
        lua_pop(L, 1);
        it[i].mask = field_int(L, top, "mask", -1, 1);
        it[i].target = field_int(L, top, "target", -1, need_target);
        lua_pop(L, 1);
        const char *bad = NULL;
        if (it[i].T < 1 || it[i].T > DIMS(m).max_pos) bad = "length";
        else if (it[i].mask < 0 || it[i].mask >= it[i].T) bad = "mask";
        else if (need_target && (it[i].target < 0 || it[i].target >= DIMS(m).vocab)) bad = "target";
        if (bad) {
            int T = it[i].T, mk = it[i].mask, tg = it[i].target;
            if (bad[0] == 'l') luaL_error(L, "item %d: %d tokens, allowed 1..%d", i + 1, T, DIMS(m).max_pos);
            if (bad[0] == 'm') luaL_error(L, "item %d: mask position %d out of range [0, %d)", i + 1, mk, T);
            luaL_error(L, "item %d: target id %d out of range [0, %d)", i + 1, tg, DIMS(m).vocab);
        }
    }
    *n_out = n;
    return it;
}

/* Reads the single item at stack index idx (the same table form as one entry of an item list). */
static item *read_one_item(lua_State *L, pool *P, int idx, kn_model *m, int need_target) {
    int n;
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, 1);
    item *it = read_items(L, P, lua_gettop(L), m, &n, need_target);
    lua_pop(L, 1);
    if (n != 1) {
        luaL_error(L, "bad argument #1 (an item {ids=, mask=, target=} expected)");
    }
    return it;
}

/* Interventions from Lua: { {layer=, neurons={...}|nil (all), op="set"|"scale"|"add",
 * value=number | values={...}, pos="mask"|"all"|integer}, ... }. "mask" (the default) expands
 * to one intervention per row at that row's mask position. */
typedef struct ivspec { int layer, n, pos_kind, pos; enum kn_iop op; int *idx; float *val; float scalar; } ivspec;

static ivspec *read_ivspecs(lua_State *L, pool *P, int t, kn_model *m, int *n_out) {
    *n_out = 0;
    if (lua_isnoneornil(L, t)) return NULL;
    luaL_checktype(L, t, LUA_TTABLE);
    int n = (int)lua_rawlen(L, t);
    ivspec *s = pool_alloc(L, P, sizeof *s * (n + 1));
    for (int j = 0; j < n; j++) {
        lua_rawgeti(L, t, j + 1);
        int top = lua_gettop(L);
        if (!lua_istable(L, top)) luaL_error(L, "intervention %d must be a table", j + 1);
        s[j].layer = field_int(L, top, "layer", 0, 1);
        if (s[j].layer < 0 || s[j].layer >= DIMS(m).layers)
            luaL_error(L, "intervention %d: layer %d out of range [0, %d)", j + 1, s[j].layer, DIMS(m).layers);
        lua_getfield(L, top, "op");
        char what[64];
        snprintf(what, sizeof what, "intervention %d: op", j + 1);
        const char *op = opt_cstr_top(L, "set", what);
        if (strcmp(op, "set") == 0) s[j].op = KN_SET;
        else if (strcmp(op, "scale") == 0) s[j].op = KN_SCALE;
        else if (strcmp(op, "add") == 0) s[j].op = KN_ADD;
        else luaL_error(L, "intervention %d: op \"%s\" is not one of set, scale, add", j + 1, op);
        lua_pop(L, 1);
        if (lua_getfield(L, top, "neurons") != LUA_TNIL) {
            char what[48];
            snprintf(what, sizeof what, "intervention %d neurons", j + 1);
            s[j].idx = read_ints(L, P, -1, what, &s[j].n);
            for (int k = 0; k < s[j].n; k++)
                if (s[j].idx[k] < 0 || s[j].idx[k] >= DIMS(m).neurons)
                    luaL_error(L, "intervention %d: neuron %d out of range [0, %d)", j + 1, s[j].idx[k], DIMS(m).neurons);
        }
        lua_pop(L, 1);
        int width = s[j].n ? s[j].n : DIMS(m).neurons;
        if (lua_getfield(L, top, "values") != LUA_TNIL) {
            int nv = (int)lua_rawlen(L, -1);
            if (nv != width) luaL_error(L, "intervention %d: %d values for %d neurons", j + 1, nv, width);
            s[j].val = pool_alloc(L, P, sizeof(float) * width);
            for (int k = 0; k < width; k++) {
                lua_rawgeti(L, -1, k + 1);
                snprintf(what, sizeof what, "intervention %d: values[%d]", j + 1, k + 1);
                s[j].val[k] = check_float(L, -1, what);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
        lua_getfield(L, top, "value");
        snprintf(what, sizeof what, "intervention %d: value", j + 1);
        s[j].scalar = lua_isnil(L, -1) ? (s[j].op == KN_SCALE ? 1.0f : 0.0f) : check_float(L, -1, what);
        lua_pop(L, 1);
        lua_getfield(L, top, "pos");
        if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "mask") == 0)) s[j].pos_kind = 0;
        else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "all") == 0) s[j].pos_kind = 1;
        else if (lua_isinteger(L, -1)) {
            s[j].pos_kind = 2;
            snprintf(what, sizeof what, "intervention %d: position", j + 1);
            s[j].pos = (int)int_check(L, 0, lua_tointeger(L, -1), 0, DIMS(m).max_pos, what);
        }
        else luaL_error(L, "intervention %d: pos must be \"mask\", \"all\" or a position", j + 1);
        lua_pop(L, 2);
    }
    *n_out = n;
    return s;
}

/* Expands specs for a chunk of B rows into engine interventions. */
static int expand_iv(const ivspec *s, int ns, const item *rows, int B, kn_intervention *out) {
    int k = 0;
    for (int j = 0; j < ns; j++) {
        kn_intervention base = { .layer = s[j].layer, .row = -1, .pos = -1, .op = s[j].op, .n = s[j].n,
                                 .idx = s[j].idx, .val = s[j].val, .scalar = s[j].scalar };
        if (s[j].pos_kind == 0) {
            for (int b = 0; b < B; b++) { out[k] = base; out[k].row = b; out[k].pos = rows[b].mask; k++; }
        } else {
            out[k] = base;
            if (s[j].pos_kind == 2) out[k].pos = s[j].pos;
            k++;
        }
    }
    return k;
}

/* Runs items in chunks; for each chunk calls back with the arena filled (logits at mask rows). */
typedef void (*chunk_fn)(lua_State *L, kn_model *m, bert_acts *a, const item *it, int first, int B, int Tmax, void *ud);

static void run_chunks(lua_State *L, pool *P, lmodel *lm, item *it, int n, const ivspec *iv, int niv, int batch, chunk_fn fn, void *ud) {
    kn_model *m = lm->m;
    if (batch < 1 || batch > MAX_BATCH_ROWS) batch = MAX_BATCH_ROWS;
    int pad = kn_model_vocab(m) ? kn_vocab_special(kn_model_vocab(m), KN_TOK_PAD) : 0;
    int *ids = pool_alloc(L, P, sizeof(int) * batch * DIMS(m).max_pos), *attn = pool_alloc(L, P, sizeof(int) * batch * DIMS(m).max_pos);
    int *head = pool_alloc(L, P, sizeof(int) * batch);
    kn_intervention *kiv = pool_alloc(L, P, sizeof *kiv * (niv * batch + 1));
    for (int first = 0; first < n; first += batch) {
        int B = n - first < batch ? n - first : batch, T = 0;
        for (int b = 0; b < B; b++) if (it[first + b].T > T) T = it[first + b].T;
        for (int b = 0; b < B; b++) {
            const item *x = &it[first + b];
            for (int t = 0; t < T; t++) {
                ids[b * T + t] = t < x->T ? x->ids[t] : pad;
                attn[b * T + t] = t < x->T;
            }
            head[b] = b * T + x->mask;
        }
        for (int j = 0; j < niv; j++)
            if (iv[j].pos_kind == 2 && iv[j].pos >= T)
                luaL_error(L, "intervention %d: position %d out of range [0, %d)", j + 1, iv[j].pos, T);
        int nk = expand_iv(iv, niv, it + first, B, kiv);
        int cap = n < batch ? n : batch;
        bert_acts *a = arena(L, lm, cap, T, cap);
        kn_err err;
        if (bert_forward(m, a, ids, NULL, attn, B, T, head, B, kiv, nk, &err) != 0) raise_err(L, &err);
        fn(L, m, a, it, first, B, T, ud);
    }
}

typedef struct score_ud { int topk, table; float *probs; char *taken; } score_ud;

static void score_chunk(lua_State *L, kn_model *m, bert_acts *a, const item *it, int first, int B, int T, void *vud) {
    (void)T;
    score_ud *ud = vud;
    int V = DIMS(m).vocab;
    float *probs = ud->probs;
    for (int b = 0; b < B; b++) {
        const item *x = &it[first + b];
        const float *row = kn_acts_logits(a) + (int64_t)b * V;
        softmax_row(probs, row, V);
        lua_createtable(L, 0, 6);
        int best = 0;
        for (int i = 1; i < V; i++) if (probs[i] > probs[best]) best = i;
        lua_pushinteger(L, best);
        lua_setfield(L, -2, "top1");
        lua_pushnumber(L, probs[best]);
        lua_setfield(L, -2, "top1_p");
        if (x->target >= 0) {
            double lv;
            kn_target_objective(row, 1, V, &x->target, 1, NULL, &lv, NULL);
            lua_pushnumber(L, exp(lv));
            lua_setfield(L, -2, "p");
            lua_pushnumber(L, lv);
            lua_setfield(L, -2, "logp");
            int rank = 1;
            for (int i = 0; i < V; i++) rank += probs[i] > probs[x->target];
            lua_pushinteger(L, rank);
            lua_setfield(L, -2, "rank");
        }
        if (ud->topk > 0) {
            int k = ud->topk < V ? ud->topk : V;
            lua_createtable(L, k, 0);
            lua_createtable(L, k, 0);
            char *taken = ud->taken;
            memset(taken, 0, V);
            for (int r = 0; r < k; r++) {
                int arg = -1;
                for (int i = 0; i < V; i++) if (!taken[i] && (arg < 0 || probs[i] > probs[arg])) arg = i;
                taken[arg] = 1;
                lua_pushinteger(L, arg);
                lua_rawseti(L, -3, r + 1);
                lua_pushnumber(L, probs[arg]);
                lua_rawseti(L, -2, r + 1);
            }
            lua_setfield(L, -3, "top_p");
            lua_setfield(L, -2, "top");
        }
        lua_rawseti(L, ud->table, first + b + 1);
    }
}

/* model:score(items [, {interventions=, topk=, batch=}]) -> { {p=, logp=, rank=, top1=, top1_p=, top=, top_p=}, ... } */
static int m_score(lua_State *L) {
    lmodel *lm = check_lmodel(L, 1);
    int n, niv = 0;
    pool *P = pool_new(L);
    item *it = read_items(L, P, 2, lm->m, &n, 0);
    score_ud ud = { 0, 0, pool_alloc(L, P, sizeof(float) * DIMS(lm->m).vocab), pool_alloc(L, P, DIMS(lm->m).vocab) };
    ivspec *iv = NULL;
    int batch = MAX_BATCH_ROWS;
    if (lua_istable(L, 3)) {
        ud.topk = field_int(L, 3, "topk", 0, 0);
        batch = field_int(L, 3, "batch", MAX_BATCH_ROWS, 0);
        lua_getfield(L, 3, "interventions");
        iv = read_ivspecs(L, P, lua_gettop(L), lm->m, &niv);
        lua_pop(L, 1);
    }
    lua_createtable(L, n, 0);
    ud.table = lua_gettop(L);
    run_chunks(L, P, lm, it, n, iv, niv, batch, score_chunk, &ud);
    return 1;
}

typedef struct capture_ud { lscores **out; } capture_ud;

static void capture_chunk(lua_State *L, kn_model *m, bert_acts *a, const item *it, int first, int B, int T, void *vud) {
    (void)L; (void)it;
    capture_ud *ud = vud;
    int F = DIMS(m).neurons, Lyr = DIMS(m).layers;
    for (int b = 0; b < B; b++) {
        lscores *s = ud->out[first + b];
        for (int l = 0; l < Lyr; l++)
            memcpy(s->v + (int64_t)l * F, kn_acts_neurons(a, l) + ((int64_t)b * T + it[first + b].mask) * F, sizeof(float) * F);
    }
}

/* model:capture(items [, {interventions=}]) -> { Scores[L,F] of ffn.act at each item's mask } */
static int m_capture(lua_State *L) {
    lmodel *lm = check_lmodel(L, 1);
    int n, niv = 0;
    pool *P = pool_new(L);
    item *it = read_items(L, P, 2, lm->m, &n, 0);
    ivspec *iv = NULL;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "interventions");
        iv = read_ivspecs(L, P, lua_gettop(L), lm->m, &niv);
        lua_pop(L, 1);
    }
    lua_createtable(L, n, 0);
    int tbl = lua_gettop(L);
    lscores **out = pool_alloc(L, P, sizeof *out * (n + 1));
    for (int i = 0; i < n; i++) {
        out[i] = new_scores(L, DIMS(lm->m).layers, DIMS(lm->m).neurons);
        lua_rawseti(L, tbl, i + 1);
    }
    capture_ud ud = { out };
    run_chunks(L, P, lm, it, n, iv, niv, MAX_BATCH_ROWS, capture_chunk, &ud);
    return 1;
}

/* model:gradient(item, layer [, {log=bool, interventions=}]) -> grad table [F] (d P or d log P
 * w.r.t. ffn.act of that layer at the mask position), value */
static int m_gradient(lua_State *L) {
    lmodel *lm = check_lmodel(L, 1);
    kn_model *m = lm->m;
    int niv = 0;
    pool *P = pool_new(L);
    item *it = read_one_item(L, P, 2, m, 1);
    int layer = check_int(L, 3);
    if (layer < 0 || layer >= DIMS(m).layers) {
        return luaL_error(L, "bad argument #2 to 'gradient' (layer %d out of range [0, %d))", layer, DIMS(m).layers);
    }
    int use_log = 0;
    ivspec *iv = NULL;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "log");
        use_log = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, 4, "interventions");
        iv = read_ivspecs(L, P, lua_gettop(L), m, &niv);
        lua_pop(L, 1);
    }
    int T = it[0].T, F = DIMS(m).neurons, V = DIMS(m).vocab;
    bert_acts *a = arena(L, lm, 1, T, 1);
    kn_intervention *kiv = pool_alloc(L, P, sizeof *kiv * (niv + 1));
    int nk = expand_iv(iv, niv, it, 1, kiv);
    int head = it[0].mask;
    kn_err err;
    float *dlogits = pool_alloc(L, P, sizeof(float) * V), *dffn = pool_alloc(L, P, sizeof(float) * (size_t)T * F);
    float **dl = pool_alloc(L, P, sizeof(float *) * DIMS(m).layers);
    dl[layer] = dffn;
    double val = 0;
    int rc = bert_forward(m, a, it[0].ids, NULL, NULL, 1, T, &head, 1, kiv, nk, &err);
    if (rc == 0) {
        kn_target_objective(kn_acts_logits(a), 1, V, &it[0].target, use_log, NULL, &val, dlogits);
        rc = bert_backward(m, a, dlogits, layer, dl, NULL, &err);
    }
    if (rc == 0) {
        lua_createtable(L, F, 0);
        for (int i = 0; i < F; i++) { lua_pushnumber(L, dffn[(int64_t)head * F + i]); lua_rawseti(L, -2, i + 1); }
        lua_pushnumber(L, val);
    }
    if (rc != 0) return raise_err(L, &err);
    return 2;
}

/* model:attribute(item [, {steps=20, quadrature="left", batch=0, log=false, layers={...}}])
 *   -> scores Scores[L,F], acts Scores[L,F], info {p_full, p_zero={}, sum={}, delta={}} */
static int m_attribute(lua_State *L) {
    lmodel *lm = check_lmodel(L, 1);
    kn_model *m = lm->m;
    pool *P = pool_new(L);
    item *it = read_one_item(L, P, 2, m, 1);
    if (!lm->ig_ws && !(lm->ig_ws = kn_ig_ws_new())) return luaL_error(L, "out of memory");
    kn_ig_opts o = { 20, KN_QUAD_LEFT, 0, 0, lm->ig_ws };
    int nl = DIMS(m).layers, *layers = NULL;
    if (lua_istable(L, 3)) {
        o.steps = field_int(L, 3, "steps", 20, 0);
        o.batch = field_int(L, 3, "batch", 0, 0);
        lua_getfield(L, 3, "quadrature");
        const char *q = opt_cstr_top(L, "left", "quadrature");
        int qi = kn_quadrature_parse(q);
        if (qi < 0) { return luaL_error(L, "quadrature \"%s\" is not one of left, right, midpoint, trapezoid, gauss", q); }
        o.quad = qi;
        lua_pop(L, 1);
        lua_getfield(L, 3, "log");
        o.use_log = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "layers") != LUA_TNIL) layers = read_ints(L, P, -1, "layers", &nl);
        lua_pop(L, 1);
    }
    if (!layers) {
        layers = pool_alloc(L, P, sizeof(int) * nl);
        for (int l = 0; l < nl; l++) layers[l] = l;
    }
    if (o.steps < 1 || o.steps > 10000) { return luaL_error(L, "steps %d out of range [1, 10000]", o.steps); }
    int F = DIMS(m).neurons;
    lscores *sc = new_scores(L, nl, F);
    lscores *ac = new_scores(L, nl, F);
    double *pz = pool_alloc(L, P, sizeof(double) * nl), *sum = pool_alloc(L, P, sizeof(double) * nl);
    kn_ig_out out = { sc->v, ac->v, 0, pz, sum };
    kn_err err;
    int rc = kn_ig(m, it[0].ids, NULL, it[0].T, it[0].mask, it[0].target, layers, nl, &o, &out, &err);
    if (rc == 0) {
        lua_createtable(L, 0, 4);
        lua_pushnumber(L, out.p_full);
        lua_setfield(L, -2, "p_full");
        const char *keys[] = { "p_zero", "sum", "delta" };
        for (int k = 0; k < 3; k++) {
            lua_createtable(L, nl, 0);
            for (int l = 0; l < nl; l++) {
                double v = k == 0 ? pz[l] : k == 1 ? sum[l] : sum[l] - (out.p_full - pz[l]);
                lua_pushnumber(L, v);
                lua_rawseti(L, -2, l + 1);
            }
            lua_setfield(L, -2, keys[k]);
        }
    }
    if (rc != 0) return raise_err(L, &err);
    return 3;
}

/* ------------------------------------------------------------------ value slots and edits */

static int m_slot(lua_State *L) {
    kn_model *m = check_model(L, 1);
    int l = check_int(L, 2), i = check_int(L, 3), C = DIMS(m).hidden;
    float *col = pool_alloc(L, pool_new(L), sizeof(float) * C);
    kn_err err;
    if (kn_slot_get(m, l, i, col, &err) != 0) return raise_err(L, &err);
    lua_createtable(L, C, 0);
    for (int r = 0; r < C; r++) { lua_pushnumber(L, col[r]); lua_rawseti(L, -2, r + 1); }
    return 1;
}

/* The scores of value slot (layer, i) against every word embedding (kn_slot_project), in a
 * scratch buffer of the call's pool. */
static float *slot_scores(lua_State *L, kn_model *m, int layer, int i) {
    float *scores = pool_alloc(L, pool_new(L), sizeof(float) * DIMS(m).vocab);
    kn_err err;
    if (kn_slot_project(m, layer, i, scores, &err) != 0) raise_err(L, &err);
    return scores;
}

/* a ranks above b: higher score, ties to the lower id, so the order is total and reproducible */
static int ranks_above(const float *s, int a, int b) { return s[a] > s[b] || (s[a] == s[b] && a < b); }

/* model:slot_top(layer, i [, k = 10]) -> { {id=, token=, score=}, ... }: the k tokens value slot
 * (layer, i) promotes most, by kn_slot_project's score, best first. */
static int m_slot_top(lua_State *L) {
    kn_model *m = check_model(L, 1);
    int l = check_int(L, 2), i = check_int(L, 3);
    int V = DIMS(m).vocab;
    lua_Integer k = luaL_optinteger(L, 4, 10);
    if (k < 1 || k > V) return luaL_argerror(L, 4, lua_pushfstring(L, "k must be in [1, %d]", V));
    float *s = slot_scores(L, m, l, i);
    int *top = pool_alloc(L, pool_new(L), sizeof(int) * (size_t)k), n = 0;
    for (int t = 0; t < V; t++) {   /* insertion into the sorted top-k: V * k at worst, k is small */
        if (n == k && !ranks_above(s, t, top[n - 1])) continue;
        int j = n < k ? n++ : n - 1;
        while (j > 0 && ranks_above(s, t, top[j - 1])) { top[j] = top[j - 1]; j--; }
        top[j] = t;
    }
    lua_createtable(L, n, 0);
    for (int j = 0; j < n; j++) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, top[j]);
        lua_setfield(L, -2, "id");
        const char *tok = kn_model_vocab(m) ? kn_vocab_token(kn_model_vocab(m), top[j]) : NULL;
        if (tok) { lua_pushstring(L, tok); lua_setfield(L, -2, "token"); }
        lua_pushnumber(L, s[top[j]]);
        lua_setfield(L, -2, "score");
        lua_rawseti(L, -2, j + 1);
    }
    return 1;
}

/* model:slot_rank(layer, i, id) -> rank, score: where token id stands among the tokens value slot
 * (layer, i) promotes (1 = promoted most), and its score. */
static int m_slot_rank(lua_State *L) {
    kn_model *m = check_model(L, 1);
    int l = check_int(L, 2), i = check_int(L, 3);
    int V = DIMS(m).vocab;
    lua_Integer id = arg_int(L, 4, 0, V, "token id");
    float *s = slot_scores(L, m, l, i);
    lua_Integer rank = 1;
    for (int t = 0; t < V; t++) if (ranks_above(s, t, (int)id)) rank++;
    lua_pushinteger(L, rank);
    lua_pushnumber(L, s[id]);
    return 2;
}

static int m_embedding(lua_State *L) {
    kn_model *m = check_model(L, 1);
    lua_Integer id = arg_int(L, 2, 0, DIMS(m).vocab, "token id");
    int C = DIMS(m).hidden;
    lua_createtable(L, C, 0);
    const float *emb = kn_model_embedding(m, (int)id);
    for (int r = 0; r < C; r++) { lua_pushnumber(L, emb[r]); lua_rawseti(L, -2, r + 1); }
    return 1;
}

static void push_edit_info(lua_State *L, const kn_edit *e) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, e->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, e->label);
    lua_setfield(L, -2, "label");
    lua_pushboolean(L, e->active);
    lua_setfield(L, -2, "active");
    lua_createtable(L, e->n, 0);
    for (int j = 0; j < e->n; j++) {
        lua_createtable(L, 2, 0);
        lua_pushinteger(L, e->layer[j]);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, e->slot[j]);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, j + 1);
    }
    lua_setfield(L, -2, "neurons");
}

/* model:edit({ {layer=, neuron=, vector={C floats}}, ... } [, label]) -> Edit */
static int m_edit(lua_State *L) {
    kn_model *m = check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *label = lua_isnoneornil(L, 3) ? "" : check_cstr(L, 3, "label");
    int n = (int)lua_rawlen(L, 2), C = DIMS(m).hidden;
    if (n < 1) return luaL_error(L, "bad argument #1 to 'edit' (an edit needs at least one value slot, got 0 neurons)");
    pool *P = pool_new(L);
    int *layers = pool_alloc(L, P, sizeof(int) * n), *slots = pool_alloc(L, P, sizeof(int) * n);
    float *cols = pool_alloc(L, P, sizeof(float) * (size_t)n * C);
    for (int j = 0; j < n; j++) {
        lua_rawgeti(L, 2, j + 1);
        int top = lua_gettop(L);
        if (!lua_istable(L, top)) { return luaL_error(L, "edit entry %d must be a table {layer=, neuron=, vector=}", j + 1); }
        layers[j] = field_int(L, top, "layer", -1, 1);
        slots[j] = field_int(L, top, "neuron", -1, 1);
        lua_getfield(L, top, "vector");
        if (!lua_istable(L, -1) || (int)lua_rawlen(L, -1) != C) {
            return luaL_error(L, "edit entry %d: vector must be an array of %d numbers (the hidden size)", j + 1, C);
        }
        for (int r = 0; r < C; r++) {
            lua_rawgeti(L, -1, r + 1);
            char what[64];
            snprintf(what, sizeof what, "edit entry %d: vector[%d]", j + 1, r + 1);
            cols[(int64_t)j * C + r] = check_float(L, -1, what);
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    kn_err err;
    kn_edit *e = kn_edit_slots(m, n, layers, slots, cols, label, &err);
    if (!e) return raise_err(L, &err);
    ledit *le = lua_newuserdatauv(L, sizeof *le, 1);
    le->e = e;
    luaL_setmetatable(L, EDIT_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int m_edits(lua_State *L) {
    kn_model *m = check_model(L, 1);
    int all = lua_toboolean(L, 2);
    lua_newtable(L);
    int k = 0;
    for (kn_edit *e = kn_edits(m); e; e = e->next) {
        if (!e->active && !all) continue;
        push_edit_info(L, e);
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

static kn_edit *check_edit(lua_State *L, int idx, kn_model **mp) {
    ledit *le = luaL_checkudata(L, idx, EDIT_MT);
    lua_getiuservalue(L, idx, 1);
    lmodel *lm = luaL_checkudata(L, -1, MODEL_MT);
    if (!lm->m) luaL_error(L, "edit handle used after its model was freed");
    lua_pop(L, 1);
    *mp = lm->m;
    return le->e;
}

static int e_undo(lua_State *L) {
    kn_model *m;
    kn_edit *e = check_edit(L, 1, &m);
    kn_err err;
    if (kn_edit_undo(m, e, &err) != 0) return raise_err(L, &err);
    return 0;
}

static int e_info(lua_State *L) {
    kn_model *m;
    push_edit_info(L, check_edit(L, 1, &m));
    return 1;
}

/* new and old value-slot columns: { {layer, neuron, old={}, new={}} ... } for the journal */
static int e_columns(lua_State *L) {
    kn_model *m;
    kn_edit *e = check_edit(L, 1, &m);
    int C = DIMS(m).hidden;
    lua_createtable(L, e->n, 0);
    for (int j = 0; j < e->n; j++) {
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, e->layer[j]);
        lua_setfield(L, -2, "layer");
        lua_pushinteger(L, e->slot[j]);
        lua_setfield(L, -2, "neuron");
        for (int w = 0; w < 2; w++) {
            const float *col = (w ? e->new_cols : e->old_cols) + (int64_t)j * C;
            lua_createtable(L, C, 0);
            for (int r = 0; r < C; r++) { lua_pushnumber(L, col[r]); lua_rawseti(L, -2, r + 1); }
            lua_setfield(L, -2, w ? "new" : "old");
        }
        lua_rawseti(L, -2, j + 1);
    }
    return 1;
}

static int e_tostring(lua_State *L) {
    ledit *le = luaL_checkudata(L, 1, EDIT_MT);
    lua_getiuservalue(L, 1, 1);
    lmodel *lm = lua_touserdata(L, -1);
    if (!lm || !lm->m) { lua_pushliteral(L, "knwb.Edit (model freed)"); return 1; }
    lua_pushfstring(L, "knwb.Edit %d (%s, %d slots, %s)", le->e->id, le->e->label, le->e->n, le->e->active ? "active" : "undone");
    return 1;
}

/* ------------------------------------------------------------------ scores */

static lscores *check_scores(lua_State *L, int i) { return luaL_checkudata(L, i, SCORES_MT); }

static int l_scores(lua_State *L) {
    int rows = check_int(L, 1), F = check_int(L, 2);
    if (rows < 1 || F < 1 || (int64_t)rows * F > (1 << 28)) return luaL_error(L, "scores: bad shape [%d, %d]", rows, F);
    lscores *s = new_scores(L, rows, F);
    if (lua_isstring(L, 3)) {
        size_t len;
        const char *b = lua_tolstring(L, 3, &len);
        if (len != sizeof(float) * (size_t)rows * F)
            return luaL_error(L, "scores: %d bytes do not hold a [%d, %d] float matrix (%d bytes)", (int)len, rows, F,
                              (int)(sizeof(float) * rows * F));
        memcpy(s->v, b, len);
    }
    return 1;
}

static int s_shape(lua_State *L) {
    lscores *s = check_scores(L, 1);
    lua_pushinteger(L, s->L);
    lua_pushinteger(L, s->F);
    return 2;
}

static int s_get(lua_State *L) {
    lscores *s = check_scores(L, 1);
    lua_Integer l = arg_int(L, 2, 0, s->L, "layer"), i = arg_int(L, 3, 0, s->F, "neuron");
    lua_pushnumber(L, s->v[(int64_t)l * s->F + i]);
    return 1;
}

static int s_max(lua_State *L) {
    lscores *s = check_scores(L, 1);
    int64_t n = (int64_t)s->L * s->F, best = 0;
    for (int64_t j = 1; j < n; j++) if (s->v[j] > s->v[best]) best = j;
    lua_pushnumber(L, s->v[best]);
    lua_pushinteger(L, best / s->F);
    lua_pushinteger(L, best % s->F);
    return 3;
}

/* s:above(threshold) -> { {layer, neuron, score}, ... } for every entry >= threshold, in
 * layer-major order (the official code's order) */
static int s_above(lua_State *L) {
    lscores *s = check_scores(L, 1);
    double t = luaL_checknumber(L, 2);
    lua_newtable(L);
    int k = 0;
    for (int l = 0; l < s->L; l++)
        for (int i = 0; i < s->F; i++) {
            float v = s->v[(int64_t)l * s->F + i];
            if (v >= t) {
                lua_createtable(L, 3, 0);
                lua_pushinteger(L, l); lua_rawseti(L, -2, 1);
                lua_pushinteger(L, i); lua_rawseti(L, -2, 2);
                lua_pushnumber(L, v); lua_rawseti(L, -2, 3);
                lua_rawseti(L, -2, ++k);
            }
        }
    return 1;
}

static int s_row(lua_State *L) {
    lscores *s = check_scores(L, 1);
    lua_Integer l = arg_int(L, 2, 0, s->L, "layer");
    lua_createtable(L, s->F, 0);
    for (int i = 0; i < s->F; i++) { lua_pushnumber(L, s->v[(int64_t)l * s->F + i]); lua_rawseti(L, -2, i + 1); }
    return 1;
}

static int s_tobytes(lua_State *L) {
    lscores *s = check_scores(L, 1);
    lua_pushlstring(L, (const char *)s->v, sizeof(float) * (size_t)s->L * s->F);
    return 1;
}

static int s_tostring(lua_State *L) {
    lscores *s = check_scores(L, 1);
    lua_pushfstring(L, "knwb.Scores [%d, %d]", s->L, s->F);
    return 1;
}

/* ------------------------------------------------------------------ training */

/* knwb.core.trainer(model, {batch=, seq=, rows=, weight_decay=, hidden_dropout=, neuron_dropout=, seed=}) */
static int l_trainer(lua_State *L) {
    kn_model *m = check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int B = field_int(L, 2, "batch", 0, 1), T = field_int(L, 2, "seq", 0, 1), P = field_int(L, 2, "rows", 0, 1);
    double wd = field_num(L, 2, "weight_decay", 0.01);
    if (B < 1 || T < 2 || T > DIMS(m).max_pos || P < 1 || P > B * T)
        return luaL_error(L, "trainer: batch %d, seq %d, rows %d out of range (seq <= %d, rows <= batch*seq)", B, T, P, DIMS(m).max_pos);
    ltrainer *lt = lua_newuserdatauv(L, sizeof *lt, 1);
    lt->t = NULL;
    luaL_setmetatable(L, TRAINER_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    kn_err err;
    lt->t = kn_trainer_new(m, B, T, P, (float)wd, &err);
    if (!lt->t) return raise_err(L, &err);
    double hd = field_num(L, 2, "hidden_dropout", 0), nd = field_num(L, 2, "neuron_dropout", 0);
    lua_Integer seed = field_integer(L, 2, "seed", 0, 0, LUA_MAXINTEGER);
    if (kn_trainer_set_dropout(lt->t, (float)hd, (float)nd, (uint64_t)seed, &err) != 0) return raise_err(L, &err);
    return 1;
}

static kn_trainer *check_trainer(lua_State *L, int idx) {
    ltrainer *lt = luaL_checkudata(L, idx, TRAINER_MT);
    if (!lt->t) luaL_error(L, "the trainer was freed");
    lua_getiuservalue(L, idx, 1);
    lmodel *lm = luaL_checkudata(L, -1, MODEL_MT);
    if (!lm->m) luaL_error(L, "trainer used after its model was freed");
    lua_pop(L, 1);
    return lt->t;
}

/* trainer:step{ids=flat[B*T], attn=flat (optional), B=, T=, rows=flat (0-based b*T+t), labels=, lr=, clip=, smoothing=}
 *   -> loss, correct, labelled, grad_norm */
static int t_step(lua_State *L) {
    kn_trainer *t = check_trainer(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int B = field_int(L, 2, "B", 0, 1), T = field_int(L, 2, "T", 0, 1);
    if (B < 1 || T < 1 || B > t->acts->B || T > t->acts->T)
        return luaL_error(L, "batch %d x %d exceeds the trainer's %d x %d", B, T, t->acts->B, t->acts->T);
    int n_ids, n_attn = 0, n_rows, n_labels;
    pool *P = pool_new(L);
    lua_getfield(L, 2, "ids");
    int *ids = read_ints(L, P, -1, "ids", &n_ids);
    lua_pop(L, 1);
    int *attn = NULL;
    if (lua_getfield(L, 2, "attn") != LUA_TNIL) attn = read_ints(L, P, -1, "attn", &n_attn);
    lua_pop(L, 1);
    lua_getfield(L, 2, "rows");
    int *rows = read_ints(L, P, -1, "rows", &n_rows);
    lua_pop(L, 1);
    lua_getfield(L, 2, "labels");
    int *labels = read_ints(L, P, -1, "labels", &n_labels);
    lua_pop(L, 1);
    float lr = (float)field_num(L, 2, "lr", 1e-3), clip = (float)field_num(L, 2, "clip", 1.0), sm = (float)field_num(L, 2, "smoothing", 0);
    const char *bad = NULL;
    if (n_ids != B * T) bad = "ids must hold B*T entries";
    else if (attn && n_attn != B * T) bad = "attn must hold B*T entries";
    else if (n_rows != n_labels) bad = "rows and labels differ in length";
    else if (n_rows > t->acts->P) bad = "more labelled rows than the trainer was made for";
    kn_err err;
    kn_step_stats st;
    int rc = bad ? -1 : kn_train_step(t, ids, NULL, attn, B, T, rows, labels, n_rows, lr, clip, sm, &st, &err);
    if (bad) return luaL_error(L, "trainer:step: %s", bad);
    if (rc != 0) return raise_err(L, &err);
    lua_pushnumber(L, st.loss);
    lua_pushinteger(L, st.correct);
    lua_pushinteger(L, st.labelled);
    lua_pushnumber(L, st.grad_norm);
    return 4;
}

static int t_save_state(lua_State *L) {
    kn_trainer *t = check_trainer(L, 1);
    kn_err err;
    if (kn_trainer_save_state(t, check_cstr(L, 2, "state path"), &err) != 0) return raise_err(L, &err);
    return 0;
}

static int t_load_state(lua_State *L) {
    kn_trainer *t = check_trainer(L, 1);
    kn_err err;
    if (kn_trainer_load_state(t, check_cstr(L, 2, "state path"), &err) != 0) return raise_err(L, &err);
    lua_pushinteger(L, t->step);
    return 1;
}

static int t_steps(lua_State *L) { lua_pushinteger(L, check_trainer(L, 1)->step); return 1; }

static int t_free(lua_State *L) {
    ltrainer *lt = luaL_checkudata(L, 1, TRAINER_MT);
    kn_trainer_free(lt->t);
    lt->t = NULL;
    return 0;
}

/* ------------------------------------------------------------------ clock and threads */

/* now() -> monotonic seconds as a float (Lua has no sub-second wall clock of its own) */
static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}

/* threads() -> the number of threads OpenBLAS uses for GEMMs */
static int l_threads(lua_State *L) {
    lua_pushinteger(L, openblas_get_num_threads());
    return 1;
}

/* ------------------------------------------------------------------ registration */

static const luaL_Reg model_methods[] = {
    { "save", m_save }, { "config", m_config }, { "dims", m_dims }, { "info", m_info },
    { "tokenize", m_tokenize }, { "encode", m_encode }, { "id", m_id }, { "token", m_token },
    { "score", m_score }, { "capture", m_capture }, { "gradient", m_gradient }, { "attribute", m_attribute },
    { "slot", m_slot }, { "slot_top", m_slot_top }, { "slot_rank", m_slot_rank },
    { "embedding", m_embedding }, { "edit", m_edit }, { "edits", m_edits },
    { "free", m_free }, { NULL, NULL } };
static const luaL_Reg model_meta[] = { { "__gc", m_free }, { "__close", m_free }, { "__tostring", m_tostring }, { NULL, NULL } };
static const luaL_Reg scores_methods[] = {
    { "shape", s_shape }, { "get", s_get }, { "max", s_max }, { "above", s_above }, { "row", s_row },
    { "tobytes", s_tobytes }, { NULL, NULL } };
static const luaL_Reg scores_meta[] = { { "__tostring", s_tostring }, { NULL, NULL } };
static const luaL_Reg edit_methods[] = { { "undo", e_undo }, { "info", e_info }, { "columns", e_columns }, { NULL, NULL } };
static const luaL_Reg edit_meta[] = { { "__tostring", e_tostring }, { NULL, NULL } };
static const luaL_Reg trainer_methods[] = {
    { "step", t_step }, { "save_state", t_save_state }, { "load_state", t_load_state }, { "steps", t_steps },
    { "free", t_free }, { NULL, NULL } };
static const luaL_Reg trainer_meta[] = { { "__gc", t_free }, { "__close", t_free }, { NULL, NULL } };
static const luaL_Reg pool_meta[] = { { "__gc", pool_close }, { "__close", pool_close }, { NULL, NULL } };
static const luaL_Reg funcs[] = {
    { "load", l_load }, { "create", l_create }, { "scores", l_scores }, { "trainer", l_trainer },
    { "now", l_now }, { "threads", l_threads }, { NULL, NULL } };

static void make_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}

int luaopen_knwb_core(lua_State *L) {
    make_class(L, MODEL_MT, model_methods, model_meta);
    make_class(L, SCORES_MT, scores_methods, scores_meta);
    make_class(L, EDIT_MT, edit_methods, edit_meta);
    make_class(L, TRAINER_MT, trainer_methods, trainer_meta);
    luaL_newmetatable(L, POOL_MT);
    luaL_setfuncs(L, pool_meta, 0);
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
