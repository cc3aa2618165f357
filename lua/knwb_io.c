/* knwb_io.c: the knwb.io module, the file I/O of knwb's Lua library over core/fileio.h.
 * Lua's own io library would block on a FIFO, read /dev/zero until memory runs out, leave a
 * half-written file when killed, and cut a path at a NUL byte; every reader and writer of
 * lua/knwb/ goes through these functions instead:
 *   read_file(path, cap [, what])     whole regular file, at most cap bytes (else an error)
 *   read_at(path, offset, n)          n bytes at offset of a regular file (checked seek and read)
 *   write_file_atomic(path, data)     unique temporary name, checked writes, fsync, rename
 *   append(path, data [, sync])       -> offset: all-or-nothing append (cut back on failure)
 *   mkdirs(path)                      mkdir -p without a shell
 *   list(dir)                         sorted names in a folder (no "." / "..")
 *   stat(path)                        -> "file" | "directory" | "other", size; or nil
 *   checksum(s)                       64-bit FNV-1a of s, 16 hex digits (record integrity)
 *   first_nonfinite(bytes)            index (0-based) of the first non-finite float32, or nil
 *   fail_after(n), ops()              fault injection (kn_io_fail_after / kn_io_ops) for tests
 * Paths with a NUL byte are refused, naming the argument and the byte's offset. */
#include <lauxlib.h>
#include <lua.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

/* A string argument that goes to C as a NUL-terminated path: a NUL inside would silently cut it. */
static const char *check_path(lua_State *L, int arg) {
    size_t n;
    const char *s = luaL_checklstring(L, arg, &n);
    size_t k = strlen(s);
    if (k != n) luaL_argerror(L, arg, lua_pushfstring(L, "path has a NUL byte at offset %d", (int)k));
    if (n == 0) luaL_argerror(L, arg, "empty path");
    return s;
}

/* A non-negative integer argument that fits a size_t and a lua_Integer. */
static lua_Integer check_count(lua_State *L, int arg, const char *what) {
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < 0) luaL_argerror(L, arg, lua_pushfstring(L, "%s %I out of range [0, %I]", what, (LUAI_UACINT)v, (LUAI_UACINT)LUA_MAXINTEGER));
    return v;
}

static int raise_err(lua_State *L, const kn_err *err) {
    lua_pushstring(L, err->msg);
    return lua_error(L);
}

static int l_read_file(lua_State *L) {
    const char *path = check_path(L, 1);
    lua_Integer cap = check_count(L, 2, "cap");
    const char *what = luaL_optstring(L, 3, NULL);
    kn_err err;
    size_t n;
    char *buf = kn_read_file(path, (size_t)cap, what, &n, &err);
    if (!buf) return raise_err(L, &err);
    lua_pushlstring(L, buf, n);
    free(buf);
    return 1;
}

static int l_read_at(lua_State *L) {
    const char *path = check_path(L, 1);
    lua_Integer off = check_count(L, 2, "offset"), n = check_count(L, 3, "length");
    if (n > (1 << 30)) return luaL_argerror(L, 3, "length over 1 GiB");
    kn_err err;
    int fd = kn_open_regular(path, &err);
    if (fd < 0) return raise_err(L, &err);
    struct stat sb;
    /* bounds without overflow: off <= size and n <= size - off */
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return luaL_error(L, "%s: cannot read: %s", path, strerror(e));
    }
    if ((unsigned long long)off > (unsigned long long)sb.st_size ||
        (unsigned long long)n > (unsigned long long)sb.st_size - (unsigned long long)off) {
        long long size = (long long)sb.st_size;
        close(fd);
        return luaL_error(L, "%s: %I bytes at offset %I are past the end of the file (%I bytes)", path, (LUAI_UACINT)n,
                          (LUAI_UACINT)off, (LUAI_UACINT)size);
    }
    luaL_Buffer b;
    char *dst = luaL_buffinitsize(L, &b, (size_t)n);
    size_t got = 0;
    while (got < (size_t)n) {
        ssize_t r = pread(fd, dst + got, (size_t)n - got, (off_t)off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            return luaL_error(L, "%s: read of %I bytes at offset %I failed: %s", path, (LUAI_UACINT)n, (LUAI_UACINT)off,
                              e ? strerror(e) : "the file ended early");
        }
        got += (size_t)r;
    }
    close(fd);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int l_write_file_atomic(lua_State *L) {
    const char *path = check_path(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    kn_err err;
    if (kn_write_file_atomic(path, data, n, &err) != 0) return raise_err(L, &err);
    lua_pushstring(L, path);
    return 1;
}

static int l_append(lua_State *L) {
    const char *path = check_path(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    int sync = lua_toboolean(L, 3);
    kn_err err;
    long long off;
    if (kn_append_file(path, data, n, sync, &off, &err) != 0) return raise_err(L, &err);
    lua_pushinteger(L, (lua_Integer)off);
    return 1;
}

static int l_mkdirs(lua_State *L) {
    const char *path = check_path(L, 1);
    kn_err err;
    if (kn_mkdirs(path, &err) != 0) return raise_err(L, &err);
    return 0;
}

static int l_list(lua_State *L) {
    const char *dir = check_path(L, 1);
    struct stat sb;
    if (stat(dir, &sb) != 0) return luaL_error(L, "%s: cannot list: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return luaL_error(L, "%s: not a folder", dir);
    DIR *d = opendir(dir);
    if (!d) return luaL_error(L, "%s: cannot list: %s", dir, strerror(errno));
    /* names go into a Lua table first (an error then leaks nothing), sorted at the end */
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(d);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

static int l_stat(lua_State *L) {
    const char *path = check_path(L, 1);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, S_ISREG(sb.st_mode) ? "file" : S_ISDIR(sb.st_mode) ? "directory" : "other");
    lua_pushinteger(L, (lua_Integer)sb.st_size);
    return 2;
}

static int l_checksum(lua_State *L) {
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    char hex[17];
    for (int i = 15; i >= 0; i--) { hex[i] = "0123456789abcdef"[h & 15]; h >>= 4; }
    lua_pushlstring(L, hex, 16);
    return 1;
}

static int l_first_nonfinite(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n % 4) return luaL_argerror(L, 1, lua_pushfstring(L, "%d bytes are not whole float32 values", (int)n));
    for (size_t i = 0; i < n / 4; i++) {
        float v;
        memcpy(&v, s + 4 * i, 4);
        if (!isfinite(v)) { lua_pushinteger(L, (lua_Integer)i); return 1; }
    }
    lua_pushnil(L);
    return 1;
}

static int l_fail_after(lua_State *L) {
    kn_io_fail_after((long)check_count(L, 1, "n"));
    return 0;
}

static int l_ops(lua_State *L) {
    lua_pushinteger(L, kn_io_ops());
    return 1;
}

static const luaL_Reg funcs[] = {
    { "read_file", l_read_file }, { "read_at", l_read_at }, { "write_file_atomic", l_write_file_atomic },
    { "append", l_append }, { "mkdirs", l_mkdirs }, { "list", l_list }, { "stat", l_stat },
    { "checksum", l_checksum }, { "first_nonfinite", l_first_nonfinite },
    { "fail_after", l_fail_after }, { "ops", l_ops }, { NULL, NULL } };

int luaopen_knwb_io(lua_State *L) {
    luaL_newlib(L, funcs);
    return 1;
}
