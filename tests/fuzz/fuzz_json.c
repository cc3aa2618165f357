/* fuzz_json.c: the JSON reader (lua/json.c, knwb.json) on arbitrary text, with the round trip.
 * Property: json.decode either raises a message string or returns a value v; json.encode(v)
 * then succeeds (decoded values are always encodable: no NaN, keys all strings or 1..n) and
 * decoding it again gives the same value, json.null and empty objects included. */
#define FUZZ_LUA
#include "fuzz_common.h"
#include "fuzz_lua.h"

static const char *script = FUZZ_LUA_SAME
    "json = require 'knwb.json'\n"
    "function check(text)\n"
    "  local ok, v = pcall(json.decode, text, 'fuzz.json')\n"
    "  if not ok then\n"
    "    assert(type(v) == 'string', 'json.decode raised a ' .. type(v))\n"
    "    return\n"
    "  end\n"
    "  for _, enc in ipairs { json.encode, json.encode_line } do\n"
    "    local text2 = enc(v)\n"
    "    local back = json.decode(text2, 'encoded.json')\n"
    "    local same_, why = same(v, back)\n"
    "    assert(same_, 'round trip changed ' .. tostring(why) .. '\\n' .. text2)\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lua_State *L;
    if (!L) L = fuzz_lua(script);
    const char *args[1] = { (const char *)data };
    fuzz_call(L, "check", 1, args, &size);
    return 0;
}
