/* lua_values.h: values and helpers shared by knwb.yaml and knwb.json.
 *
 * The null sentinel (yaml.null == json.null, kept in the registry as "knwb.null"), the marker
 * metatable of tables that must be written as objects even when empty ("knwb.object"), the
 * growable output buffer of the writers, the key-path frames used in their error messages, and
 * the shortest round-tripping form of a double. */
#ifndef KNWB_LUA_VALUES_H
#define KNWB_LUA_VALUES_H

#include <lua.h>
#include <stddef.h>

/* Deepest nesting the readers and writers accept. */
#define MAX_DEPTH 200

/* Pushes the shared null sentinel, creating it on first use. */
void knwb_push_null(lua_State *L);
/* Whether the value at idx is the null sentinel. */
int knwb_is_null(lua_State *L, int idx);

/* Pushes the metatable that marks a table as an object, creating it on first use. */
void knwb_push_object_mt(lua_State *L);
/* Whether the value at idx carries the object marker as its metatable. */
int knwb_is_object_marked(lua_State *L, int idx);

/* Output grows in a malloc'd buffer owned by a userdata (a luaL_Buffer cannot be used across the
 * unbalanced stack of a recursive walk); its __gc frees the memory if a Lua error intervenes.
 * `who` ("json.encode", "yaml.dump") starts the out-of-memory message. */
typedef struct knwb_Buffer {
    char *p;
    size_t n, cap;
    const char *who;
} knwb_Buffer;

/* Creates the metatable `tname` for buffers (call once when opening the module). */
void knwb_buffer_register(lua_State *L, const char *tname);
/* Pushes a new empty buffer whose metatable is `tname`. */
knwb_Buffer *knwb_buffer_new(lua_State *L, const char *tname, const char *who);
void knwb_buffer_add(lua_State *L, knwb_Buffer *b, const char *s, size_t n);
void knwb_buffer_adds(lua_State *L, knwb_Buffer *b, const char *s);
/* Pushes the contents as a string and frees the memory (the userdata stays on the stack). */
void knwb_buffer_push_result(lua_State *L, knwb_Buffer *b);

/* A key path as a chain of frames on the C stack, rendered only when something is wrong. */
typedef struct knwb_Frame {
    const struct knwb_Frame *up;
    const char *key; /* NULL: index */
    size_t key_len;
    lua_Integer index;
} knwb_Frame;

/* Pushes the path of f as "a.b[3].c", or "(top)" when f is NULL. */
void knwb_path_string(lua_State *L, const knwb_Frame *f);

/* The path argument at arg (a NUL byte inside is refused with its offset), read whole through
 * kn_read_file (a regular file only, at most cap bytes; `what` names it in the size message);
 * pushes the contents as a string. For yaml.load and json.load. */
const char *knwb_push_file(lua_State *L, int arg, size_t cap, const char *what, size_t *len);

/* The shortest of %.15g..%.17g that reads back to the same double, always with a '.' or an
 * exponent so that it reads back as a float again. */
void knwb_format_double(char *out, size_t size, double d);

#endif
