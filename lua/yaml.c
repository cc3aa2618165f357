/* yaml.c: the knwb.yaml module. YAML text -> Lua values over libyaml, and Lua values -> YAML text.
 *
 * Loading types plain scalars by the YAML 1.2 core schema (null/~/empty, true/false, decimal, 0o
 * and 0x integers, floats with .inf/.nan); quoted and block scalars are always strings. A config is
 * data, so loading refuses what is not plain data: anchors and aliases, tags other than the core
 * ones (!!str, !!int, ...), non-string and complex keys, duplicate keys, several documents. It never
 * calls back into Lua. Beside the value it returns where each key path was written ("line:col").
 *
 * yaml.dump writes block-style YAML with sorted keys and quotes a string whenever a plain scalar
 * would load back as something else, so dump -> load gives the same value. It is not a general
 * YAML library: no streaming, no comments kept, no emitter options. */
#include <lauxlib.h>
#include <lua.h>
#include <yaml.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_values.h"

#define LOADER "knwb.yaml.loader"
#define BUFFER "knwb.yaml.buffer"

/* ---------------------------------------------------------------------------------------------
 * The core-schema resolver, shared by loading (what does this plain scalar mean?) and dumping
 * (would this string, written plain, load back as a string?). */

enum kind { K_STR, K_NULL, K_BOOL, K_INT, K_FLOAT };

struct scalar {
    enum kind kind;
    int b;
    lua_Integer i;
    double d;
    int out_of_range; /* a 0x/0o integer beyond 64 bits */
};

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static int eq3(const char *s, size_t n, const char *a, const char *b, const char *c) {
    return (n == strlen(a) && memcmp(s, a, n) == 0) || (n == strlen(b) && memcmp(s, b, n) == 0) ||
           (n == strlen(c) && memcmp(s, c, n) == 0);
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float_text(const char *s, size_t n) {
    size_t p = 0, d1 = 0, d2 = 0;
    int dot = 0;
    if (p < n && (s[p] == '+' || s[p] == '-')) p++;
    while (p < n && is_digit(s[p])) p++, d1++;
    if (p < n && s[p] == '.') {
        dot = 1;
        p++;
        while (p < n && is_digit(s[p])) p++, d2++;
    }
    if (d1 == 0 && !(dot && d2 > 0)) return 0;
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        size_t de = 0;
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        while (p < n && is_digit(s[p])) p++, de++;
        if (de == 0) return 0;
    }
    return p == n;
}

/* Integer of base 8 or 16 from digits s[0..n); 0 if it does not fit in 64 bits. */
static int parse_radix(const char *s, size_t n, int base, lua_Integer *out) {
    unsigned long long u = 0;
    for (size_t k = 0; k < n; k++) {
        int c = s[k], v = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        if (u > (~0ULL - (unsigned)v) / (unsigned)base) return 0;
        u = u * (unsigned)base + (unsigned)v;
    }
    if (u > (unsigned long long)LUA_MAXINTEGER) return 0;
    *out = (lua_Integer)u;
    return 1;
}

static void resolve(const char *s, size_t n, struct scalar *v) {
    memset(v, 0, sizeof *v);
    v->kind = K_STR;
    if (n == 0 || (n == 1 && s[0] == '~') || eq3(s, n, "null", "Null", "NULL")) {
        v->kind = K_NULL;
        return;
    }
    if (eq3(s, n, "true", "True", "TRUE") || eq3(s, n, "false", "False", "FALSE")) {
        v->kind = K_BOOL;
        v->b = s[0] == 't' || s[0] == 'T';
        return;
    }
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        int hex = s[1] == 'x';
        size_t k = 2;
        while (k < n && (hex ? is_hex(s[k]) : (s[k] >= '0' && s[k] <= '7'))) k++;
        if (k == n) {
            v->kind = K_INT;
            v->out_of_range = !parse_radix(s + 2, n - 2, hex ? 16 : 8, &v->i);
            return;
        }
    }
    {
        size_t k = (s[0] == '+' || s[0] == '-') ? 1 : 0, start = k;
        unsigned long long u = 0;
        int overflow = 0;
        while (k < n && is_digit(s[k])) {
            unsigned d = (unsigned)(s[k] - '0');
            if (u > (~0ULL - d) / 10) overflow = 1;
            else u = u * 10 + d;
            k++;
        }
        if (k == n && k > start) {
            int neg = s[0] == '-';
            unsigned long long lim = (unsigned long long)LUA_MAXINTEGER + (neg ? 1u : 0u);
            if (!overflow && u <= lim) {
                v->kind = K_INT;
                v->i = neg ? (lua_Integer)(0 - u) : (lua_Integer)u;
                return;
            }
            /* Too big for an integer: a float, as Lua itself reads such a numeral. */
            v->kind = K_FLOAT;
            v->d = strtod(s, NULL);
            return;
        }
    }
    {
        size_t k = (s[0] == '+' || s[0] == '-') ? 1 : 0;
        if (eq3(s + k, n - k, ".inf", ".Inf", ".INF")) {
            v->kind = K_FLOAT;
            v->d = s[0] == '-' ? -HUGE_VAL : HUGE_VAL;
            return;
        }
        if (eq3(s, n, ".nan", ".NaN", ".NAN")) {
            v->kind = K_FLOAT;
            v->d = NAN;
            return;
        }
    }
    if (is_float_text(s, n)) {
        v->kind = K_FLOAT;
        v->d = strtod(s, NULL); /* libyaml NUL-terminates scalar values; dump passes Lua strings */
    }
}

static const char *kind_name(enum kind k) {
    switch (k) {
    case K_NULL: return "null";
    case K_BOOL: return "a boolean";
    case K_INT: return "an integer";
    case K_FLOAT: return "a float";
    default: return "a string";
    }
}

/* ---------------------------------------------------------------------------------------------
 * Loading. The parser lives in a userdata so that a Lua error (a refused construct, or memory)
 * anywhere in the conversion cannot leak it; refusals also free it at once before raising. */

typedef struct Loader {
    yaml_parser_t parser;
    yaml_event_t event;
    int parser_live, event_live;
    const char *name;        /* the chunk name, anchored on the Lua stack */
    const char *input;       /* the text, anchored on the Lua stack */
    size_t input_len;
    int marks, keymarks;     /* stack indices of the two position tables */
} Loader;

static void loader_release(Loader *ld) {
    if (ld->event_live) yaml_event_delete(&ld->event);
    if (ld->parser_live) yaml_parser_delete(&ld->parser);
    ld->event_live = ld->parser_live = 0;
}

static int loader_gc(lua_State *L) {
    loader_release(luaL_checkudata(L, 1, LOADER));
    return 0;
}

static int fail_at(lua_State *L, Loader *ld, size_t line, size_t col, const char *fmt, ...) {
    va_list ap;
    lua_pushfstring(L, "%s:%d:%d: ", ld->name, (int)line + 1, (int)col + 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    loader_release(ld);
    return lua_error(L);
}

#define fail_mark(L, ld, m, ...) fail_at(L, ld, (m).line, (m).column, __VA_ARGS__)

static void parser_fail(lua_State *L, Loader *ld) {
    yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset only; turn it into a line and column. */
        size_t line = 0, col = 0, end = p->problem_offset < ld->input_len ? p->problem_offset : ld->input_len;
        for (size_t k = 0; k < end; k++) {
            if (ld->input[k] == '\n') line++, col = 0;
            else col++;
        }
        if (p->problem_value >= 0) {
            char byte[8];
            snprintf(byte, sizeof byte, "%02X", (unsigned)p->problem_value & 0xFFu);
            fail_at(L, ld, line, col, "%s (byte 0x%s)", problem, byte);
        }
        fail_at(L, ld, line, col, "%s", problem);
    }
    if (p->problem_mark.index < ld->input_len && ld->input[p->problem_mark.index] == '\t')
        fail_mark(L, ld, p->problem_mark, "%s: a tab (YAML indents with spaces only)", problem);
    if (p->context)
        fail_mark(L, ld, p->problem_mark, "%s (%s at %d:%d)", problem, p->context,
                  (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    fail_mark(L, ld, p->problem_mark, "%s", problem);
}

static yaml_event_t *next_event(lua_State *L, Loader *ld) {
    if (ld->event_live) {
        yaml_event_delete(&ld->event);
        ld->event_live = 0;
    }
    if (!yaml_parser_parse(&ld->parser, &ld->event)) parser_fail(L, ld);
    ld->event_live = 1;
    return &ld->event;
}

static void push_mark(lua_State *L, yaml_mark_t m) {
    lua_pushfstring(L, "%d:%d", (int)m.line + 1, (int)m.column + 1);
}

static const char *core_suffix(const char *tag) {
    static const char prefix[] = "tag:yaml.org,2002:";
    return strncmp(tag, prefix, sizeof prefix - 1) == 0 ? tag + sizeof prefix - 1 : NULL;
}

static void refuse_tag(lua_State *L, Loader *ld, const char *tag) {
    const char *core = core_suffix(tag);
    fail_mark(L, ld, ld->event.start_mark,
              "tag '%s%s' is not allowed (a config holds plain data: only the core tags !!str, "
              "!!int, !!float, !!bool, !!null, !!seq and !!map)",
              core ? "!!" : "", core ? core : tag);
}

static void refuse_anchor(lua_State *L, Loader *ld, const yaml_char_t *anchor) {
    if (anchor)
        fail_mark(L, ld, ld->event.start_mark,
                  "anchors (&%s) and aliases are not supported; write the value out", (const char *)anchor);
}

/* Types the current scalar event: plain scalars by the core schema, quoted ones as strings, and a
 * core tag only where the scalar really is of that type. */
static void scalar_value(lua_State *L, Loader *ld, struct scalar *v) {
    yaml_event_t *ev = &ld->event;
    const char *s = (const char *)ev->data.scalar.value, *tag = (const char *)ev->data.scalar.tag;
    size_t n = ev->data.scalar.length;
    const char *core;
    refuse_anchor(L, ld, ev->data.scalar.anchor);
    if (tag == NULL || strcmp(tag, "!") == 0) {
        if (tag == NULL && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) resolve(s, n, v);
        else memset(v, 0, sizeof *v), v->kind = K_STR;
    } else if ((core = core_suffix(tag)) != NULL && strcmp(core, "str") == 0) {
        memset(v, 0, sizeof *v);
        v->kind = K_STR;
    } else if (core && (strcmp(core, "int") == 0 || strcmp(core, "float") == 0 || strcmp(core, "bool") == 0 ||
                        strcmp(core, "null") == 0)) {
        enum kind want = core[0] == 'i' ? K_INT : core[0] == 'f' ? K_FLOAT : core[0] == 'b' ? K_BOOL : K_NULL;
        resolve(s, n, v);
        if (want == K_FLOAT && v->kind == K_INT && !v->out_of_range) {
            v->kind = K_FLOAT;
            v->d = (double)v->i;
        }
        if (v->kind != want)
            fail_mark(L, ld, ev->start_mark, "!!%s: '%s' is not %s", core, s, kind_name(want));
    } else {
        refuse_tag(L, ld, tag);
    }
    if (v->kind == K_INT && v->out_of_range)
        fail_mark(L, ld, ev->start_mark, "integer '%s' does not fit in 64 bits", s);
}

static void push_scalar(lua_State *L, const struct scalar *v, const yaml_event_t *ev) {
    switch (v->kind) {
    case K_NULL: knwb_push_null(L); break;
    case K_BOOL: lua_pushboolean(L, v->b); break;
    case K_INT: lua_pushinteger(L, v->i); break;
    case K_FLOAT: lua_pushnumber(L, v->d); break;
    default: lua_pushlstring(L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
    }
}

static void check_collection_tag(lua_State *L, Loader *ld, const yaml_char_t *tag, const char *want) {
    const char *core;
    if (tag == NULL || strcmp((const char *)tag, "!") == 0) return;
    core = core_suffix((const char *)tag);
    if (core == NULL || strcmp(core, want) != 0) refuse_tag(L, ld, (const char *)tag);
}

static void parse_node(lua_State *L, Loader *ld, int depth);

/* Path of a child, pushed: "a.b" under a mapping, "a[3]" under a sequence (1-based, as in Lua). */
static void push_child_path(lua_State *L, int parent, const char *key, lua_Integer index) {
    const char *p = lua_tostring(L, parent);
    if (key) lua_pushfstring(L, "%s%s%s", p, *p ? "." : "", key);
    else lua_pushfstring(L, "%s[%I]", p, index);
}

static void parse_mapping(lua_State *L, Loader *ld, int depth, int path) {
    int t;
    lua_newtable(L);
    t = lua_gettop(L);
    for (;;) {
        yaml_event_t *ev = next_event(L, ld);
        struct scalar key;
        const char *k;
        if (ev->type == YAML_MAPPING_END_EVENT) break;
        if (ev->type == YAML_ALIAS_EVENT)
            fail_mark(L, ld, ev->start_mark, "aliases (*%s) are not supported; write the value out",
                      (const char *)ev->data.alias.anchor);
        if (ev->type != YAML_SCALAR_EVENT)
            fail_mark(L, ld, ev->start_mark, "mapping keys must be strings, not %s",
                      ev->type == YAML_MAPPING_START_EVENT ? "mappings" : "sequences");
        scalar_value(L, ld, &key);
        k = (const char *)ev->data.scalar.value;
        if (key.kind != K_STR)
            fail_mark(L, ld, ev->start_mark, "mapping key '%s' is %s, not a string (quote it: \"%s\")", k,
                      kind_name(key.kind), k);
        push_child_path(L, path, k, 0);
        lua_pushlstring(L, k, ev->data.scalar.length);
        if (lua_rawget(L, t) != LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_rawget(L, ld->keymarks);
            fail_mark(L, ld, ev->start_mark, "duplicate key '%s' (first defined at %s)", k, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        push_mark(L, ev->start_mark);
        lua_rawset(L, ld->keymarks);
        lua_pushlstring(L, k, ev->data.scalar.length); /* path, key */
        next_event(L, ld);
        lua_pushvalue(L, -2);                          /* path, key, path */
        parse_node(L, ld, depth + 1);                  /* path, key, path, value */
        lua_remove(L, -2);
        lua_rawset(L, t);
        lua_pop(L, 1);
    }
    /* An empty mapping remembers that it was one, so it dumps back as {} rather than []. */
    lua_pushnil(L);
    if (lua_next(L, t)) {
        lua_pop(L, 2);
    } else {
        knwb_push_object_mt(L);
        lua_setmetatable(L, t);
    }
}

static void parse_sequence(lua_State *L, Loader *ld, int depth, int path) {
    lua_Integer i = 0;
    int t;
    lua_newtable(L);
    t = lua_gettop(L);
    for (;;) {
        if (next_event(L, ld)->type == YAML_SEQUENCE_END_EVENT) break;
        push_child_path(L, path, NULL, ++i);
        parse_node(L, ld, depth + 1);
        lua_rawseti(L, t, i);
        lua_pop(L, 1);
    }
}

/* The current event starts a node; the node's path is on top of the stack. Pushes the value. */
static void parse_node(lua_State *L, Loader *ld, int depth) {
    yaml_event_t *ev = &ld->event;
    int path = lua_gettop(L);
    luaL_checkstack(L, 8, "YAML nesting");
    if (depth > MAX_DEPTH) fail_mark(L, ld, ev->start_mark, "nesting deeper than %d levels", MAX_DEPTH);
    lua_pushvalue(L, path);
    push_mark(L, ev->start_mark);
    lua_rawset(L, ld->marks);
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        struct scalar v;
        scalar_value(L, ld, &v);
        push_scalar(L, &v, ev);
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
        refuse_anchor(L, ld, ev->data.sequence_start.anchor);
        check_collection_tag(L, ld, ev->data.sequence_start.tag, "seq");
        parse_sequence(L, ld, depth, path);
        break;
    case YAML_MAPPING_START_EVENT:
        refuse_anchor(L, ld, ev->data.mapping_start.anchor);
        check_collection_tag(L, ld, ev->data.mapping_start.tag, "map");
        parse_mapping(L, ld, depth, path);
        break;
    case YAML_ALIAS_EVENT:
        fail_mark(L, ld, ev->start_mark, "aliases (*%s) are not supported; write the value out",
                  (const char *)ev->data.alias.anchor);
        break;
    default:
        fail_mark(L, ld, ev->start_mark, "unexpected YAML event");
    }
}

/* Parses the text at stack index `text` named `name`; returns data, marks, keymarks. */
static int load_text(lua_State *L, Loader *ld, int text, const char *name) {
    yaml_event_t *ev;
    ld->name = name;
    ld->input = lua_tolstring(L, text, &ld->input_len);
    lua_newtable(L);
    ld->marks = lua_gettop(L);
    lua_newtable(L);
    ld->keymarks = lua_gettop(L);
    if (!yaml_parser_initialize(&ld->parser)) return luaL_error(L, "%s: cannot create a YAML parser", name);
    ld->parser_live = 1;
    yaml_parser_set_input_string(&ld->parser, (const unsigned char *)ld->input, ld->input_len);
    next_event(L, ld); /* stream start */
    ev = next_event(L, ld);
    if (ev->type == YAML_STREAM_END_EVENT) {
        lua_pushnil(L);
    } else {
        next_event(L, ld); /* past the document start to the root node */
        lua_pushliteral(L, "");
        parse_node(L, ld, 0);
        lua_remove(L, -2);
        next_event(L, ld); /* document end */
        ev = next_event(L, ld);
        if (ev->type != YAML_STREAM_END_EVENT)
            fail_mark(L, ld, ev->start_mark, "a second document; a file holds one YAML document");
    }
    loader_release(ld);
    lua_pushvalue(L, ld->marks);
    lua_pushvalue(L, ld->keymarks);
    return 3;
}

static Loader *new_loader(lua_State *L) {
    Loader *ld = lua_newuserdatauv(L, sizeof *ld, 0);
    memset(ld, 0, sizeof *ld);
    luaL_setmetatable(L, LOADER);
    return ld;
}

/* yaml.load(path) -> data, marks, keymarks. The file is read through kn_read_file: a FIFO or a
 * device is refused before anything blocks, and a file over YAML_MAX_BYTES is refused. */
#define YAML_MAX_BYTES ((size_t)64 << 20)
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    knwb_push_file(L, 1, YAML_MAX_BYTES, "a YAML file", NULL);
    int text = lua_gettop(L);
    return load_text(L, new_loader(L), text, path);
}

/* yaml.loads(text [, name]) -> data, marks, keymarks */
static int l_loads(lua_State *L) {
    const char *name;
    luaL_checkstring(L, 1);
    name = luaL_optstring(L, 2, "(string)");
    return load_text(L, new_loader(L), 1, name);
}

/* ---------------------------------------------------------------------------------------------
 * Dumping, into a knwb_Buffer (lua_values.h); key paths for error messages are knwb_Frame chains. */

static void indent(lua_State *L, knwb_Buffer *b, int n) {
    while (n-- > 0) knwb_buffer_add(L, b, " ", 1);
}

static int dump_fail(lua_State *L, const knwb_Frame *f, const char *what) {
    knwb_path_string(L, f);
    return luaL_error(L, "yaml.dump: %s at %s", what, lua_tostring(L, -1));
}

/* Decodes one UTF-8 sequence at s[0..n); returns its length, or 0 when malformed. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned long *cp) {
    unsigned long c = s[0];
    size_t len, k;
    if (c < 0x80) return *cp = c, 1;
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
    return *cp = c, len;
}

/* YAML's printable set minus the characters a reader may treat as line breaks or a BOM. */
static int plain_char(unsigned long c) {
    if (c < 0x80) return c >= 0x20 && c < 0x7F;
    return (c >= 0xA0 && c <= 0xD7FF && c != 0x2028 && c != 0x2029) || (c >= 0xE000 && c <= 0xFFFD && c != 0xFEFF) ||
           c >= 0x10000;
}

static int needs_quotes(const char *s, size_t n) {
    static const char *const yaml11[] = {"yes", "no", "on", "off", "Yes", "No", "On", "Off",
                                         "YES", "NO", "ON", "OFF", NULL};
    struct scalar v;
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ' || s[n - 1] == ':') return 1;
    if (strchr("-?:,[]{}#&*!|>'\"%@`.", s[0]) && !(s[0] == '.' && n > 1 && s[1] != '.')) return 1;
    resolve(s, n, &v);
    if (v.kind != K_STR) return 1;
    /* Readers of YAML 1.1 (PyYAML) take these as booleans; quoting keeps the file portable. */
    for (int k = 0; yaml11[k]; k++)
        if (strlen(yaml11[k]) == n && memcmp(s, yaml11[k], n) == 0) return 1;
    for (size_t k = 0; k < n;) {
        unsigned long c;
        size_t len = utf8_decode((const unsigned char *)s + k, n - k, &c);
        if (!plain_char(c)) return 1;
        if (c == ':' && k + 1 < n && s[k + 1] == ' ') return 1;
        if (c == '#' && k > 0 && s[k - 1] == ' ') return 1;
        k += len;
    }
    return 0;
}

static void dump_string(lua_State *L, knwb_Buffer *b, const char *s, size_t n, const knwb_Frame *f) {
    for (size_t k = 0; k < n;) {
        unsigned long c;
        size_t len = utf8_decode((const unsigned char *)s + k, n - k, &c);
        if (len == 0) dump_fail(L, f, "string is not valid UTF-8");
        k += len;
    }
    if (!needs_quotes(s, n)) {
        knwb_buffer_add(L, b, s, n);
        return;
    }
    knwb_buffer_add(L, b, "\"", 1);
    for (size_t k = 0; k < n;) {
        unsigned long c;
        size_t len = utf8_decode((const unsigned char *)s + k, n - k, &c);
        char esc[16];
        switch (c) {
        case '"': knwb_buffer_adds(L, b, "\\\""); break;
        case '\\': knwb_buffer_adds(L, b, "\\\\"); break;
        case '\n': knwb_buffer_adds(L, b, "\\n"); break;
        case '\t': knwb_buffer_adds(L, b, "\\t"); break;
        case '\r': knwb_buffer_adds(L, b, "\\r"); break;
        default:
            if (c == ' ' || plain_char(c)) {
                knwb_buffer_add(L, b, s + k, len);
            } else {
                snprintf(esc, sizeof esc, c < 0x100 ? "\\x%02lX" : c < 0x10000 ? "\\u%04lX" : "\\U%08lX", c);
                knwb_buffer_adds(L, b, esc);
            }
        }
        k += len;
    }
    knwb_buffer_add(L, b, "\"", 1);
}

enum shape { S_EMPTY, S_ARRAY, S_OBJECT };

/* Array if the keys are exactly 1..n, object if they are all strings; anything else is refused. */
static enum shape table_shape(lua_State *L, int t, lua_Integer *len, const knwb_Frame *f, const char *who) {
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
    if (count == 0) return knwb_is_object_marked(L, t) ? S_OBJECT : S_EMPTY;
    if (strings == count) return S_OBJECT;
    if (strings == 0 && others == 0 && max == count) return S_ARRAY;
    knwb_path_string(L, f);
    return (enum shape)luaL_error(L,
        "%s: table at %s mixes keys: a table must be an array (keys exactly 1..n) or have only string keys",
        who, lua_tostring(L, -1));
}

typedef struct Key { const char *s; size_t n; } Key;

static int key_cmp(const void *a, const void *b) {
    const Key *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Sorted string keys of the table at t, in a userdata left on the stack. */
static Key *sorted_keys(lua_State *L, int t, lua_Integer n) {
    Key *keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys, 0);
    lua_Integer i = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        keys[i].s = lua_tolstring(L, -1, &keys[i].n); /* kept alive by the table */
        i++;
    }
    qsort(keys, (size_t)n, sizeof *keys, key_cmp);
    return keys;
}

static void dump_node(lua_State *L, knwb_Buffer *b, int idx, int ind, int inline_first, const knwb_Frame *f, int depth);

static void dump_scalar(lua_State *L, knwb_Buffer *b, int idx, const knwb_Frame *f) {
    char num[64];
    switch (lua_type(L, idx)) {
    case LUA_TNIL: knwb_buffer_adds(L, b, "null"); break;
    case LUA_TBOOLEAN: knwb_buffer_adds(L, b, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (isnan(d)) strcpy(num, ".nan");
            else if (isinf(d)) strcpy(num, d > 0 ? ".inf" : "-.inf");
            else knwb_format_double(num, sizeof num, d);
        }
        knwb_buffer_adds(L, b, num);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        dump_string(L, b, s, n, f);
        break;
    }
    default:
        if (knwb_is_null(L, idx)) {
            knwb_buffer_adds(L, b, "null");
            break;
        }
        lua_pushfstring(L, "cannot write a %s value", luaL_typename(L, idx));
        dump_fail(L, f, lua_tostring(L, -1));
    }
}

/* Writes the value at idx as the rest of a line (scalars, empty tables) or as a block. */
static void dump_node(lua_State *L, knwb_Buffer *b, int idx, int ind, int inline_first, const knwb_Frame *f, int depth) {
    lua_Integer n;
    enum shape shape;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || knwb_is_null(L, idx)) {
        dump_scalar(L, b, idx, f);
        knwb_buffer_adds(L, b, "\n");
        return;
    }
    if (depth > MAX_DEPTH) dump_fail(L, f, "nesting too deep (is there a cycle?)");
    luaL_checkstack(L, 8, "yaml.dump nesting");
    shape = table_shape(L, idx, &n, f, "yaml.dump");
    if (n == 0) {
        knwb_buffer_adds(L, b, shape == S_OBJECT ? "{}\n" : "[]\n");
        return;
    }
    if (shape == S_ARRAY) {
        for (lua_Integer i = 1; i <= n; i++) {
            knwb_Frame fr = {f, NULL, 0, i};
            if (i > 1 || !inline_first) indent(L, b, ind);
            knwb_buffer_adds(L, b, "- ");
            lua_rawgeti(L, idx, i);
            dump_node(L, b, -1, ind + 2, 1, &fr, depth + 1);
            lua_pop(L, 1);
        }
        return;
    }
    {
        Key *keys = sorted_keys(L, idx, n);
        for (lua_Integer i = 0; i < n; i++) {
            knwb_Frame fr = {f, keys[i].s, keys[i].n, 0};
            lua_Integer m;
            if (i > 0 || !inline_first) indent(L, b, ind);
            dump_string(L, b, keys[i].s, keys[i].n, &fr);
            knwb_buffer_adds(L, b, ":");
            lua_pushlstring(L, keys[i].s, keys[i].n);
            lua_rawget(L, idx);
            /* A non-empty table opens a block on the next line; anything else follows the key. */
            m = 0;
            if (lua_type(L, -1) == LUA_TTABLE && !knwb_is_null(L, -1)) table_shape(L, lua_gettop(L), &m, &fr, "yaml.dump");
            knwb_buffer_adds(L, b, m > 0 ? "\n" : " ");
            dump_node(L, b, -1, ind + 2, m == 0, &fr, depth + 1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* yaml.dump(value) -> string */
static int l_dump(lua_State *L) {
    knwb_Buffer *b;
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    b = knwb_buffer_new(L, BUFFER, "yaml.dump");
    dump_node(L, b, 1, 0, 1, NULL, 0);
    knwb_buffer_push_result(L, b);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"load", l_load},
    {"loads", l_loads},
    {"dump", l_dump},
    {"null", NULL},
    {NULL, NULL},
};

int luaopen_knwb_yaml(lua_State *L) {
    luaL_newmetatable(L, LOADER);
    lua_pushcfunction(L, loader_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    knwb_buffer_register(L, BUFFER);
    luaL_newlib(L, funcs);
    knwb_push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}
