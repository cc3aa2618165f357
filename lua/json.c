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

#include "lua_values.h"

#define DOC "knwb.json.doc"
#define BUFFER "knwb.json.buffer"

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
            knwb_push_object_mt(L);
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
    default: knwb_push_null(L);
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

/* json.load(path) -> value. The file is read through kn_read_file (regular files only, at most
 * JSON_MAX_BYTES), then decoded as json.decode does. */
#define JSON_MAX_BYTES ((size_t)1 << 30)
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *s = knwb_push_file(L, 1, JSON_MAX_BYTES, "a JSON file", &n);
    json_error_t err;
    Doc *d = new_doc(L);
    d->root = json_loadb(s, n, decode_flags, &err);
    return finish_decode(L, d, path, &err);
}

/* ---------------------------------------------------------------------------------------------
 * Encoding into a knwb_Buffer (lua_values.h); key paths for error messages are knwb_Frame chains. */

typedef struct Options { int indent, sort_keys; } Options;

static int encode_fail(lua_State *L, const knwb_Frame *f, const char *what) {
    knwb_path_string(L, f);
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

static void encode_string(lua_State *L, knwb_Buffer *b, const char *s, size_t n, const knwb_Frame *f) {
    knwb_buffer_add(L, b, "\"", 1);
    for (size_t k = 0; k < n;) {
        unsigned char c = (unsigned char)s[k];
        size_t len;
        char esc[8];
        if (c >= 0x20 && c != '"' && c != '\\') {
            len = utf8_len((const unsigned char *)s + k, n - k);
            if (len == 0) encode_fail(L, f, "string is not valid UTF-8");
            knwb_buffer_add(L, b, s + k, len);
            k += len;
            continue;
        }
        switch (c) {
        case '"': knwb_buffer_adds(L, b, "\\\""); break;
        case '\\': knwb_buffer_adds(L, b, "\\\\"); break;
        case '\n': knwb_buffer_adds(L, b, "\\n"); break;
        case '\t': knwb_buffer_adds(L, b, "\\t"); break;
        case '\r': knwb_buffer_adds(L, b, "\\r"); break;
        case '\b': knwb_buffer_adds(L, b, "\\b"); break;
        case '\f': knwb_buffer_adds(L, b, "\\f"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c), knwb_buffer_adds(L, b, esc);
        }
        k++;
    }
    knwb_buffer_add(L, b, "\"", 1);
}

static void newline(lua_State *L, knwb_Buffer *b, const Options *o, int level) {
    if (o->indent <= 0) return;
    knwb_buffer_add(L, b, "\n", 1);
    for (int k = 0; k < o->indent * level; k++) knwb_buffer_add(L, b, " ", 1);
}

enum shape { S_EMPTY, S_ARRAY, S_OBJECT };

static enum shape table_shape(lua_State *L, int t, lua_Integer *len, const knwb_Frame *f) {
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
    if (knwb_is_object_marked(L, t)) {
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

static void encode_value(lua_State *L, knwb_Buffer *b, int idx, const Options *o, const knwb_Frame *f, int depth);

static void encode_table(lua_State *L, knwb_Buffer *b, int t, const Options *o, const knwb_Frame *f, int depth) {
    lua_Integer n;
    enum shape shape = table_shape(L, t, &n, f);
    if (depth > MAX_DEPTH) encode_fail(L, f, "nesting too deep (is there a cycle?)");
    luaL_checkstack(L, 8, "json.encode nesting");
    if (shape == S_EMPTY) {
        knwb_buffer_adds(L, b, knwb_is_object_marked(L, t) ? "{}" : "[]");
        return;
    }
    if (shape == S_ARRAY) {
        knwb_buffer_add(L, b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            knwb_Frame fr = {f, NULL, 0, i};
            if (i > 1) knwb_buffer_add(L, b, ",", 1);
            newline(L, b, o, depth + 1);
            lua_rawgeti(L, t, i);
            encode_value(L, b, -1, o, &fr, depth + 1);
            lua_pop(L, 1);
        }
        newline(L, b, o, depth);
        knwb_buffer_add(L, b, "]", 1);
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
        knwb_buffer_add(L, b, "{", 1);
        for (i = 0; i < n; i++) {
            knwb_Frame fr = {f, keys[i].s, keys[i].n, 0};
            if (i > 0) knwb_buffer_add(L, b, ",", 1);
            newline(L, b, o, depth + 1);
            encode_string(L, b, keys[i].s, keys[i].n, &fr);
            knwb_buffer_adds(L, b, o->indent > 0 ? ": " : ":");
            lua_pushlstring(L, keys[i].s, keys[i].n);
            lua_rawget(L, t);
            encode_value(L, b, -1, o, &fr, depth + 1);
            lua_pop(L, 1);
        }
        newline(L, b, o, depth);
        knwb_buffer_add(L, b, "}", 1);
        lua_pop(L, 1);
    }
}

static void encode_value(lua_State *L, knwb_Buffer *b, int idx, const Options *o, const knwb_Frame *f, int depth) {
    char num[64];
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: knwb_buffer_adds(L, b, "null"); break;
    case LUA_TBOOLEAN: knwb_buffer_adds(L, b, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (isnan(d)) encode_fail(L, f, "cannot encode NaN (JSON has no NaN or infinity)");
            if (isinf(d)) encode_fail(L, f, "cannot encode infinity (JSON has no NaN or infinity)");
            knwb_format_double(num, sizeof num, d);
        }
        knwb_buffer_adds(L, b, num);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        encode_string(L, b, s, n, f);
        break;
    }
    case LUA_TTABLE:
        if (knwb_is_null(L, idx)) knwb_buffer_adds(L, b, "null");
        else encode_table(L, b, idx, o, f, depth);
        break;
    default:
        lua_pushfstring(L, "cannot encode a %s value", luaL_typename(L, idx));
        encode_fail(L, f, lua_tostring(L, -1));
    }
}

static int encode(lua_State *L, const Options *o) {
    knwb_Buffer *b = knwb_buffer_new(L, BUFFER, "json.encode");
    encode_value(L, b, 1, o, NULL, 0);
    knwb_buffer_push_result(L, b);
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
    knwb_push_object_mt(L);
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
    knwb_buffer_register(L, BUFFER);
    luaL_newlib(L, funcs);
    knwb_push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}
