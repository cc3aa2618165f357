/* main.c: the `knwb` command, a Lua 5.4 host in the manner of Lua's own lua.c.
 * It opens the standard libraries, preloads the C modules (knwb.core, knwb.yaml, knwb.json, knwb.io), puts the
 * repository's lua/ folder on package.path (and a searcher that loads it under repository-relative
 * chunk names), and runs a script in protected mode with a traceback
 * handler. Errors go to stderr and give a non-zero exit status. It is not an interactive REPL. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "version.h"

int luaopen_knwb_core(lua_State *L);
int luaopen_knwb_yaml(lua_State *L);
int luaopen_knwb_json(lua_State *L);
int luaopen_knwb_mpi(lua_State *L);
void knwb_mpi_exit(int status);
int luaopen_knwb_io(lua_State *L);

static const char *progname = "knwb";

static void print_usage(FILE *f) {
    fprintf(f,
        "usage: knwb SCRIPT.lua [ARGS...]     run a Lua script with `require \"knwb\"` available\n"
        "       knwb -e CODE [ARGS...]        run a chunk of Lua code\n"
        "       knwb --help | --version\n"
        "\n"
        "Experiments (each takes an optional YAML config, `--set key.path=value` overrides,\n"
        "`--out DIR` for the run directory, and `--help` for its own options):\n"
        "  knwb experiments/erase.lua        erase a relation by zeroing its knowledge neurons' value slots\n"
        "  knwb experiments/update.lua       update single facts by rewriting value slots\n"
        "  knwb experiments/attribute.lua    integrated-gradients attribution and refining\n"
        "  knwb experiments/suppress.lua     suppress and amplify knowledge neurons\n"
        "  knwb experiments/pretrain.lua     pretrain the small default BERT\n"
        "  knwb experiments/evaluate.lua     per-relation accuracy of a model on its facts\n"
        "\n"
        "The script sees its arguments in the global table `arg` (arg[0] is the script).\n"
        "Environment: OPENBLAS_NUM_THREADS sets the GEMM thread count.\n");
}

/* Message handler: adds a traceback to string errors, as lua.c does, and writes the files of
 * knwb's own lua/ folder relative to the repository ("lua/knwb/init.lua:95"), not as the
 * absolute paths package.path found them under. */
static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    int tb = lua_gettop(L);
    lua_getglobal(L, "package");
    if (lua_istable(L, -1) && lua_getfield(L, -1, "knwb_root") == LUA_TSTRING) {
        const char *root = lua_pushfstring(L, "%s/", lua_tostring(L, -1));
        luaL_gsub(L, lua_tostring(L, tb), root, "");
        return 1;
    }
    lua_settop(L, tb);
    return 1;
}

static int report(lua_State *L, int status) {
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(no message)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* Puts <dir of the executable>/lua on package.path so `require "knwb"` finds lua/knwb/init.lua
 * wherever the repository is checked out. */
static void set_package_path(lua_State *L) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = '\0';
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", exe, exe, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_pushstring(L, exe);
    lua_setfield(L, -2, "knwb_root");
    lua_pop(L, 1);
}

/* Searcher for the modules of knwb's own lua/ folder, ahead of Lua's file searcher: it loads
 * <root>/lua/NAME.lua (or NAME/init.lua) under the chunk name "@lua/NAME.lua", so error
 * positions, also those a script catches with pcall, and tracebacks name knwb's files relative to
 * the repository rather than where it happens to be checked out. Upvalue 1: the root. */
static int knwb_searcher(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const char *root = lua_tostring(L, lua_upvalueindex(1));
    const char *rel = luaL_gsub(L, name, ".", "/");
    static const char *const forms[] = { "%s.lua", "%s/init.lua" };
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        const char *relfile = lua_pushfstring(L, forms[k], rel);
        const char *chunk = lua_pushfstring(L, "@lua/%s", relfile);
        const char *file = lua_pushfstring(L, "%s/lua/%s", root, relfile);
        FILE *f = fopen(file, "rb");
        if (!f) { lua_pop(L, 3); continue; }
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        size_t n;
        do {
            char *dst = luaL_prepbuffer(&b);
            n = fread(dst, 1, LUAL_BUFFERSIZE, f);
            luaL_addsize(&b, n);
        } while (n == LUAL_BUFFERSIZE);
        int read_error = ferror(f);
        fclose(f);
        luaL_pushresult(&b);
        if (read_error) return luaL_error(L, "error loading module '%s': cannot read %s", name, chunk + 1);
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        if (luaL_loadbufferx(L, text, len, chunk, "t") != LUA_OK)
            return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, chunk + 1, lua_tostring(L, -1));
        lua_pushstring(L, chunk + 1);
        return 2;
    }
    return 0;
}

/* Puts knwb_searcher second in package.searchers, after the preload searcher. */
static void add_searcher(lua_State *L) {
    lua_getglobal(L, "package");
    if (lua_getfield(L, -1, "knwb_root") != LUA_TSTRING) { lua_pop(L, 2); return; }
    lua_pushcclosure(L, knwb_searcher, 1);
    lua_getfield(L, -2, "searchers");
    lua_Integer n = (lua_Integer)luaL_len(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 3);
}

static void preload(lua_State *L, const char *name, lua_CFunction f) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* arg table: arg[0] = script, arg[1..] = its arguments (negative indices for the host's own). */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
    lua_createtable(L, argc - script, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

struct job { int argc; char **argv; int status; };

static int pmain(lua_State *L) {
    struct job *job = lua_touserdata(L, 1);
    int argc = job->argc;
    char **argv = job->argv;
    luaL_checkversion(L);
    luaL_openlibs(L);
    set_package_path(L);
    add_searcher(L);
    preload(L, "knwb.core", luaopen_knwb_core);
    preload(L, "knwb.yaml", luaopen_knwb_yaml);
    preload(L, "knwb.json", luaopen_knwb_json);
    preload(L, "knwb.mpi", luaopen_knwb_mpi);
    preload(L, "knwb.io", luaopen_knwb_io);
    lua_pushstring(L, KNWB_VERSION);
    lua_setglobal(L, "KNWB_VERSION");

    int script = 1, status;
    lua_pushcfunction(L, msghandler);
    int base = lua_gettop(L);
    if (strcmp(argv[1], "-e") == 0) {
        if (argc < 3) {
            fprintf(stderr, "%s: '-e' needs a chunk of Lua code\n", progname);
            job->status = 2;
            return 0;
        }
        script = 2;
        create_arg_table(L, argv, argc, script);
        status = luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(command line)");
    } else {
        create_arg_table(L, argv, argc, script);
        status = luaL_loadfile(L, argv[script]);
    }
    if (status == LUA_OK) {
        int nargs = 0;
        for (int i = script + 1; i < argc; i++, nargs++) lua_pushstring(L, argv[i]);
        status = lua_pcall(L, nargs, 0, base);
    }
    job->status = report(L, status) == LUA_OK ? 0 : 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 0 && argv[0] && argv[0][0]) progname = "knwb";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0) {
        printf("knwb %s (%s)\n", KNWB_VERSION, LUA_RELEASE);
        return 0;
    }
    if (argv[1][0] == '-' && strcmp(argv[1], "-e") != 0) {
        fprintf(stderr, "%s: unknown option '%s' (try 'knwb --help')\n", progname, argv[1]);
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "%s: cannot create Lua state: not enough memory\n", progname);
        return 1;
    }
    struct job job = { argc, argv, 1 };
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &job);
    int status = lua_pcall(L, 1, 0, 0);
    report(L, status);
    lua_close(L);
    int rc = status == LUA_OK ? job.status : 1;
    knwb_mpi_exit(rc);  /* under mpirun a failed rank ends the job rather than leaving others waiting */
    return rc;
}
