/* fuzz_common.h: what the libFuzzer harnesses in tests/fuzz/ share.
 * - A private scratch folder per process (under $TMPDIR or /tmp), where each input's files are
 *   written before the reader under test opens them by path, as knwb does.
 * - Splitting one input into several files at a separator line, so one mutated input can hold a
 *   whole model folder or a fact set (and the seeds stay readable text).
 * - A Lua state with the C modules preloaded and the repository's lua/ on package.path (the
 *   harnesses run from the repository root, as `make fuzz` and tests/fuzz/smoke.sh do).
 * A harness aborts (which libFuzzer reports with the input) when a property it checks fails. */
#ifndef KNWB_FUZZ_COMMON_H
#define KNWB_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_SEP "\n--8<--\n"

/* The scratch folder (made once; its files are overwritten by every input). */
static const char *fuzz_dir(void) {
    static char dir[512];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/knwb-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}

/* The path of a file named `name` in the scratch folder (a static buffer per slot 0..7). */
static const char *fuzz_path(int slot, const char *name) {
    static char paths[8][640];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_dir(), name);
    return paths[slot];
}

static void fuzz_write(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) { perror(path); abort(); }
}

/* Splits data at FUZZ_SEP into at most max parts (the last part keeps any further separators);
 * returns the number of parts (>= 1). */
static int fuzz_split(const uint8_t *data, size_t size, int max, const uint8_t **part, size_t *len) {
    size_t sl = strlen(FUZZ_SEP);
    int n = 0;
    const uint8_t *p = data, *end = data + size;
    while (n < max - 1) {
        const uint8_t *q = (size_t)(end - p) >= sl ? memmem(p, (size_t)(end - p), FUZZ_SEP, sl) : NULL;
        if (!q) break;
        part[n] = p; len[n] = (size_t)(q - p); n++;
        p = q + sl;
    }
    part[n] = p; len[n] = (size_t)(end - p); n++;
    return n;
}

#define FUZZ_CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz property failed: " __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

#ifdef FUZZ_LUA
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_knwb_core(lua_State *L);
int luaopen_knwb_yaml(lua_State *L);
int luaopen_knwb_json(lua_State *L);
/* Modules other branches add (knwb.io): preloaded when linked in. */
int luaopen_knwb_io(lua_State *L) __attribute__((weak));

static void fuzz_preload(lua_State *L, const char *name, lua_CFunction f) {
    if (!f) return;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

/* One state for the whole run, with `script` (Lua source defining global functions) loaded. */
static lua_State *fuzz_lua(const char *script) {
    lua_State *L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    fuzz_preload(L, "knwb.core", luaopen_knwb_core);
    fuzz_preload(L, "knwb.yaml", luaopen_knwb_yaml);
    fuzz_preload(L, "knwb.json", luaopen_knwb_json);
    fuzz_preload(L, "knwb.io", luaopen_knwb_io);
    lua_getglobal(L, "package");
    lua_pushstring(L, "lua/?.lua;lua/?/init.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    if (luaL_dostring(L, script) != LUA_OK) {
        fprintf(stderr, "fuzz harness script: %s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

/* Calls the global function `fn` with the given string arguments; a Lua error from it is a
 * failed property (the scripts catch the errors a reader may legitimately raise). */
static void fuzz_call(lua_State *L, const char *fn, int nargs, const char *const *args, const size_t *lens) {
    lua_getglobal(L, fn);
    for (int i = 0; i < nargs; i++) lua_pushlstring(L, args[i], lens[i]);
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz property failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_gc(L, LUA_GCCOLLECT, 0);
}
#endif

#endif
