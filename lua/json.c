/* json.c: the knwb.json module. JSON text -> Lua values over jansson, and Lua values -> JSON text.
 *
 * Decoding: objects become tables, arrays become sequences, null becomes the sentinel json.null
 * (the same value as yaml.null), integers stay Lua integers and reals Lua floats. Duplicate keys
 * are refused. An empty object comes back marked with json.object() so it encodes as {} again.
 *
 * Encoding is done here rather than by jansson so that floats are written in the shortest form
 * that reads back to the same double (0.1, not 0.10000000000000001), keys come out sorted, and a
 * refusal (NaN, a function, mixed keys) names the key path where it happened. Table rule: a table
 * marked by json.object() is an object; otherwise an empty table is [], keys exactly 1..n make an
 * array, only string keys make an object, and anything else is an error.
 * It is not a streaming parser and keeps no key order. */
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOC "knwb.json.doc"
#define BUFFER "knwb.json.buffer"
#define MAX_DEPTH 200

/* ---------------------------------------------------------------------------------------------
 * Values shared with knwb.yaml through the registry (see yaml.c). */

static int null_tostring(lua_State *L) {
    lua_pushliteral(L, "null");
    return 1;
}

static int null_newindex(lua_State *L) {
    return luaL_error(L, "knwb.null is a constant and cannot hold fields");
}

static void push_null(lua_State *L) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "knwb.null") == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "knwb.null");
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, null_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "knwb.null");
}

static int is_null(lua_State *L, int idx) {
    int yes;
    idx = lua_absindex(L, idx);
    push_null(L);
    yes = lua_rawequal(L, idx, -1);
    lua_pop(L, 1);
    return yes;
}

static void push_object_mt(lua_State *L) {
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, "knwb.object")) return;
    lua_pushliteral(L, "knwb.object");
    lua_setfield(L, -2, "__name");
}

static int is_object_marked(lua_State *L, int idx) {
    int yes;
    if (!lua_getmetatable(L, idx)) return 0;
    push_object_mt(L);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding. The jansson document is held by a userdata until converted, so a memory error in
 * the middle of the conversion cannot leak it. */

typedef struct Doc { json_t *root; } Doc;

static int doc_gc(lua_State *L) {
    Doc *d = luaL_checkudata(L, 1, DOC);
    json_decref(d->root);
    d->root = NULL;
    return 0;
}

static Doc *new_doc(lua_State *L) {
    Doc *d = lua_newuserdatauv(L, sizeof *d, 0);
    d->root = NULL;
    luaL_setmetatable(L, DOC);
    return d;
}

static void push_json(lua_State *L, json_t *v, int depth) {
    luaL_checkstack(L, 6, "JSON nesting");
    if (depth > MAX_DEPTH) luaL_error(L, "JSON nesting deeper than %d levels", MAX_DEPTH);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *item;
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_keylen_foreach(v, key, key_len, item) {
            lua_pushlstring(L, key, key_len);
            push_json(L, item, depth + 1);
            lua_rawset(L, -3);
        }
        if (json_object_size(v) == 0) {
            push_object_mt(L);
            lua_setmetatable(L, -2);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(v, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: push_null(L);
    }
}

static const size_t decode_flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;

static int finish_decode(lua_State *L, Doc *d, const char *name, const json_error_t *err) {
    /* A data error starts with the data's position, not the caller's (as in knwb.yaml). */
    if (d->root == NULL) {
        lua_pushfstring(L, "%s:%d:%d: %s", name, err->line, err->column, err->text);
        return lua_error(L);
    }
    push_json(L, d->root, 0);
    json_decref(d->root);
    d->root = NULL;
    return 1;
}

/* json.decode(text [, name]) -> value */
static int l_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *name = luaL_optstring(L, 2, "(string)");
    json_error_t err;
    Doc *d = new_doc(L);
    d->root = json_loadb(s, n, decode_flags, &err);
    return finish_decode(L, d, name, &err);
}

/* json.load(path) -> value */
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    json_error_t err;
    Doc *d = new_doc(L);
    d->root = json_load_file(path, decode_flags, &err);
    if (d->root == NULL && err.line < 0) {
        lua_pushfstring(L, "%s: %s", path, err.text);
        return lua_error(L);
    }
    return finish_decode(L, d, path, &err);
}

/* ---------------------------------------------------------------------------------------------
 * Encoding into a malloc'd buffer owned by a userdata (see yaml.c for why not luaL_Buffer). */

typedef struct Buffer { char *p; size_t n, cap; } Buffer;

static int buffer_gc(lua_State *L) {
    Buffer *b = luaL_checkudata(L, 1, BUFFER);
    free(b->p);
    b->p = NULL;
    return 0;
}

static void add(lua_State *L, Buffer *b, const char *s, size_t n) {
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap - b->n < n) cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL) luaL_error(L, "json.encode: not enough memory");
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void adds(lua_State *L, Buffer *b, const char *s) { add(L, b, s, strlen(s)); }

typedef struct Frame {
    const struct Frame *up;
    const char *key; /* NULL: index */
    size_t key_len;
    lua_Integer index;
} Frame;

typedef struct Options { int indent, sort_keys; } Options;

static void path_string(lua_State *L, const Frame *f) {
    const Frame *chain[MAX_DEPTH + 2];
    int n = 0, parts = 0;
    if (f == NULL) {
        lua_pushliteral(L, "(top)");
        return;
    }
    for (; f && n < MAX_DEPTH + 2; f = f->up) chain[n++] = f;
    luaL_checkstack(L, 2 * n + 1, "path");
    for (int k = n - 1; k >= 0; k--, parts++) {
        if (chain[k]->key == NULL) {
            lua_pushfstring(L, "[%I]", chain[k]->index);
            continue;
        }
        if (k != n - 1) lua_pushliteral(L, "."), parts++;
        lua_pushlstring(L, chain[k]->key, chain[k]->key_len);
    }
    lua_concat(L, parts);
}

static int encode_fail(lua_State *L, const Frame *f, const char *what) {
    path_string(L, f);
    return luaL_error(L, "json.encode: %s at %s", what, lua_tostring(L, -1));
}

static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned long c = s[0];
    size_t len, k;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    c &= 0x3F >> (len - 1);
    for (k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return len;
}

static void encode_string(lua_State *L, Buffer *b, const char *s, size_t n, const Frame *f) {
    add(L, b, "\"", 1);
    for (size_t k = 0; k < n;) {
        unsigned char c = (unsigned char)s[k];
        size_t len;
        char esc[8];
        if (c >= 0x20 && c != '"' && c != '\\') {
            len = utf8_len((const unsigned char *)s + k, n - k);
            if (len == 0) encode_fail(L, f, "string is not valid UTF-8");
            add(L, b, s + k, len);
            k += len;
            continue;
        }
        switch (c) {
        case '"': adds(L, b, "\\\""); break;
        case '\\': adds(L, b, "\\\\"); break;
        case '\n': adds(L, b, "\\n"); break;
        case '\t': adds(L, b, "\\t"); break;
        case '\r': adds(L, b, "\\r"); break;
        case '\b': adds(L, b, "\\b"); break;
        case '\f': adds(L, b, "\\f"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c), adds(L, b, esc);
        }
        k++;
    }
    add(L, b, "\"", 1);
}

/* The shortest of %.15g..%.17g that reads back to the same double, always with a '.' or an
 * exponent so that it decodes as a real again. */
static void format_double(char *out, size_t size, double d) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, d);
        if (strtod(out, NULL) == d) break;
    }
    if (strspn(out, "-0123456789") == strlen(out)) strncat(out, ".0", size - strlen(out) - 1);
}

static void newline(lua_State *L, Buffer *b, const Options *o, int level) {
    if (o->indent <= 0) return;
    add(L, b, "\n", 1);
    for (int k = 0; k < o->indent * level; k++) add(L, b, " ", 1);
}

enum shape { S_EMPTY, S_ARRAY, S_OBJECT };

static enum shape table_shape(lua_State *L, int t, lua_Integer *len, const Frame *f) {
    lua_Integer count = 0, max = 0;
    int strings = 0, others = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) strings++;
        else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
        } else others++;
    }
    *len = count;
    if (is_object_marked(L, t)) {
        if (strings != count) encode_fail(L, f, "object (json.object) with a non-string key");
        return count ? S_OBJECT : S_EMPTY;
    }
    if (count == 0) return S_EMPTY;
    if (strings == count) return S_OBJECT;
    if (strings == 0 && others == 0 && max == count) return S_ARRAY;
    return (enum shape)encode_fail(L, f,
        "table mixes keys (an array needs keys exactly 1..n, an object only string keys)");
}

typedef struct Key { const char *s; size_t n; } Key;

static int key_cmp(const void *a, const void *b) {
    const Key *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static void encode_value(lua_State *L, Buffer *b, int idx, const Options *o, const Frame *f, int depth);

static void encode_table(lua_State *L, Buffer *b, int t, const Options *o, const Frame *f, int depth) {
    lua_Integer n;
    enum shape shape = table_shape(L, t, &n, f);
    if (depth > MAX_DEPTH) encode_fail(L, f, "nesting too deep (is there a cycle?)");
    luaL_checkstack(L, 8, "json.encode nesting");
    if (shape == S_EMPTY) {
        adds(L, b, is_object_marked(L, t) ? "{}" : "[]");
        return;
    }
    if (shape == S_ARRAY) {
        add(L, b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            Frame fr = {f, NULL, 0, i};
            if (i > 1) add(L, b, ",", 1);
            newline(L, b, o, depth + 1);
            lua_rawgeti(L, t, i);
            encode_value(L, b, -1, o, &fr, depth + 1);
            lua_pop(L, 1);
        }
        newline(L, b, o, depth);
        add(L, b, "]", 1);
        return;
    }
    {
        Key *keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys, 0);
        lua_Integer i = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            lua_pop(L, 1);
            keys[i].s = lua_tolstring(L, -1, &keys[i].n); /* kept alive by the table */
            i++;
        }
        if (o->sort_keys) qsort(keys, (size_t)n, sizeof *keys, key_cmp);
        add(L, b, "{", 1);
        for (i = 0; i < n; i++) {
            Frame fr = {f, keys[i].s, keys[i].n, 0};
            if (i > 0) add(L, b, ",", 1);
            newline(L, b, o, depth + 1);
            encode_string(L, b, keys[i].s, keys[i].n, &fr);
            adds(L, b, o->indent > 0 ? ": " : ":");
            lua_pushlstring(L, keys[i].s, keys[i].n);
            lua_rawget(L, t);
            encode_value(L, b, -1, o, &fr, depth + 1);
            lua_pop(L, 1);
        }
        newline(L, b, o, depth);
        add(L, b, "}", 1);
        lua_pop(L, 1);
    }
}

static void encode_value(lua_State *L, Buffer *b, int idx, const Options *o, const Frame *f, int depth) {
    char num[64];
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: adds(L, b, "null"); break;
    case LUA_TBOOLEAN: adds(L, b, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (isnan(d)) encode_fail(L, f, "cannot encode NaN (JSON has no NaN or infinity)");
            if (isinf(d)) encode_fail(L, f, "cannot encode infinity (JSON has no NaN or infinity)");
            format_double(num, sizeof num, d);
        }
        adds(L, b, num);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        encode_string(L, b, s, n, f);
        break;
    }
    case LUA_TTABLE:
        if (is_null(L, idx)) adds(L, b, "null");
        else encode_table(L, b, idx, o, f, depth);
        break;
    default:
        lua_pushfstring(L, "cannot encode a %s value", luaL_typename(L, idx));
        encode_fail(L, f, lua_tostring(L, -1));
    }
}

static int encode(lua_State *L, const Options *o) {
    Buffer *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BUFFER);
    encode_value(L, b, 1, o, NULL, 0);
    lua_pushlstring(L, b->p, b->n);
    free(b->p);
    b->p = NULL;
    return 1;
}

/* json.encode(value [, {indent = 0, sort_keys = true}]) -> string */
static int l_encode(lua_State *L) {
    Options o = {0, 1};
    luaL_checkany(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "indent") != LUA_TNIL) {
            lua_Integer ind = lua_tointeger(L, -1);
            if (!lua_isinteger(L, -1) || ind < 0 || ind > 16)
                return luaL_argerror(L, 2, "indent must be an integer in [0, 16]");
            o.indent = (int)ind;
        }
        if (lua_getfield(L, 2, "sort_keys") != LUA_TNIL) o.sort_keys = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    lua_settop(L, 1);
    return encode(L, &o);
}

/* json.encode_line(value) -> one line of compact JSON with sorted keys, no trailing newline */
static int l_encode_line(lua_State *L) {
    Options o = {0, 1};
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    return encode(L, &o);
}

/* json.object([t]) -> t, marked to encode as an object even when empty */
static int l_object(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    push_object_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"decode", l_decode},
    {"load", l_load},
    {"encode", l_encode},
    {"encode_line", l_encode_line},
    {"object", l_object},
    {"null", NULL},
    {NULL, NULL},
};

int luaopen_knwb_json(lua_State *L) {
    luaL_newmetatable(L, DOC);
    lua_pushcfunction(L, doc_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, BUFFER);
    lua_pushcfunction(L, buffer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}
