/* lua_values.c: values and helpers shared by knwb.yaml and knwb.json (see lua_values.h).
 * The null sentinel and the object marker live in the registry, so both modules see the same
 * values whichever is opened first. */
#include "lua_values.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

const char *knwb_push_file(lua_State *L, int arg, size_t cap, const char *what, size_t *len) {
    size_t n;
    const char *path = luaL_checklstring(L, arg, &n);
    if (strlen(path) != n) luaL_argerror(L, arg, lua_pushfstring(L, "path has a NUL byte at offset %d", (int)strlen(path)));
    kn_err err;
    char *buf = kn_read_file(path, cap, what, &n, &err);
    if (!buf) {
        lua_pushstring(L, err.msg);
        lua_error(L);
    }
    lua_pushlstring(L, buf, n);
    free(buf);
    if (len) *len = n;
    return lua_tostring(L, -1);
}

/* ---------------------------------------------------------------------------------------------
 * The null sentinel and the object marker. */

static int null_tostring(lua_State *L) {
    lua_pushliteral(L, "null");
    return 1;
}

static int null_newindex(lua_State *L) {
    return luaL_error(L, "knwb.null is a constant and cannot hold fields");
}

void knwb_push_null(lua_State *L) {
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

int knwb_is_null(lua_State *L, int idx) {
    int yes;
    idx = lua_absindex(L, idx);
    knwb_push_null(L);
    yes = lua_rawequal(L, idx, -1);
    lua_pop(L, 1);
    return yes;
}

void knwb_push_object_mt(lua_State *L) {
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, "knwb.object")) return;
    lua_pushliteral(L, "knwb.object");
    lua_setfield(L, -2, "__name");
}

int knwb_is_object_marked(lua_State *L, int idx) {
    int yes;
    if (!lua_getmetatable(L, idx)) return 0;
    knwb_push_object_mt(L);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

/* ---------------------------------------------------------------------------------------------
 * The output buffer. Its __gc is a closure over the metatable name so that it checks its
 * argument against the module's own buffer type. */

static int buffer_gc(lua_State *L) {
    knwb_Buffer *b = luaL_checkudata(L, 1, lua_tostring(L, lua_upvalueindex(1)));
    free(b->p);
    b->p = NULL;
    return 0;
}

void knwb_buffer_register(lua_State *L, const char *tname) {
    luaL_newmetatable(L, tname);
    lua_pushstring(L, tname);
    lua_pushcclosure(L, buffer_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

knwb_Buffer *knwb_buffer_new(lua_State *L, const char *tname, const char *who) {
    knwb_Buffer *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->who = who;
    luaL_setmetatable(L, tname);
    return b;
}

void knwb_buffer_add(lua_State *L, knwb_Buffer *b, const char *s, size_t n) {
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap - b->n < n) cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL) luaL_error(L, "%s: not enough memory", b->who);
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

void knwb_buffer_adds(lua_State *L, knwb_Buffer *b, const char *s) { knwb_buffer_add(L, b, s, strlen(s)); }

void knwb_buffer_push_result(lua_State *L, knwb_Buffer *b) {
    lua_pushlstring(L, b->p, b->n);
    free(b->p);
    b->p = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Key paths and numbers. */

void knwb_path_string(lua_State *L, const knwb_Frame *f) {
    const knwb_Frame *chain[MAX_DEPTH + 2];
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

void knwb_format_double(char *out, size_t size, double d) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, d);
        if (strtod(out, NULL) == d) break;
    }
    if (strspn(out, "-0123456789") == strlen(out)) strncat(out, ".0", size - strlen(out) - 1);
}
