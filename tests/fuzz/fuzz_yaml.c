/* fuzz_yaml.c: the YAML loader (lua/yaml.c, knwb.yaml) on arbitrary text, with the round trip.
 * Property: yaml.loads either raises an error that is a message string (never a crash, never a
 * Lua value of another type), or returns a value v; then yaml.dump(v) succeeds and
 * yaml.loads(yaml.dump(v)) is the same value (integers stay integers, floats floats, NaN NaN). */
#define FUZZ_LUA
#include "fuzz_common.h"
#include "fuzz_lua.h"

static const char *script = FUZZ_LUA_SAME
    "yaml = require 'knwb.yaml'\n"
    "function check(text)\n"
    "  local ok, v = pcall(yaml.loads, text, 'fuzz.yaml')\n"
    "  if ok and v == nil then return end -- an empty document: nothing to round-trip (yaml.dump(nil) is 'null', yaml.null)\n"
    "  if not ok then\n"
    "    assert(type(v) == 'string', 'yaml.loads raised a ' .. type(v))\n"
    "    return\n"
    "  end\n"
    "  local dumped = yaml.dump(v)\n"
    "  local ok2, back = pcall(yaml.loads, dumped, 'dumped.yaml')\n"
    "  assert(ok2, 'the dump of a loaded value does not load: ' .. tostring(back) .. '\\n' .. dumped)\n"
    "  local same_, why = same(v, back)\n"
    "  assert(same_, 'round trip changed ' .. tostring(why) .. '\\n' .. dumped)\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lua_State *L;
    if (!L) L = fuzz_lua(script);
    const char *args[1] = { (const char *)data };
    fuzz_call(L, "check", 1, args, &size);
    return 0;
}
