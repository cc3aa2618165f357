/* knwb_core.c: Lua bindings of the C engine (module knwb.core). Being written. */
#include <lauxlib.h>
#include <lua.h>

int luaopen_knwb_core(lua_State *L) {
    lua_newtable(L);
    return 1;
}
