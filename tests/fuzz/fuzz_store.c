/* fuzz_store.c: the attribution store's index (lua/knwb/attribution.lua) on a fuzzed
 * index.jsonl and scores.bin (the input's two parts, split at FUZZ_SEP), for a stand-in model
 * with L = 2 layers of F = 3 neurons.
 * Property: A.open never raises on a corrupt index (bad lines are dropped and recomputed), and
 * every record it hands back through store:get has the model's shape and is exactly the bytes of
 * scores.bin at its entry's offset: a corrupt or aliased entry may be refused, never misread. */
#define FUZZ_LUA
#include "fuzz_common.h"

#include <sys/stat.h>

static const char *script =
    "A = require 'knwb.attribution'\n"
    "local hash = string.rep('5eed', 16)\n"
    "model = { config = function() return { num_hidden_layers = 2, intermediate_size = 3 } end,\n"
    "          info = function() return { generation = 0, weights_file = 'fuzz-weights' } end }\n"
    "function check(dir, bin)\n"
    "  A._hashes = { ['fuzz-weights'] = hash }\n"
    "  local s = A.open(dir, model)\n"
    "  assert(math.type(s.dropped) == 'integer' and s.dropped >= 0, 'dropped is not a count')\n"
    "  local rec = 4 * 2 * 3\n"
    "  local keys = {}\n"
    "  for k in pairs(s.entries) do keys[#keys + 1] = k end\n"
    "  for _, k in ipairs(keys) do\n"
    "    local e = s.entries[k]\n"
    "    local off = e.offset\n"
    "    local sc = s:get(k)\n"
    "    if sc then\n"
    "      local L, F = sc:shape()\n"
    "      assert(L == 2 and F == 3, 'a record of the wrong shape')\n"
    "      assert(math.type(off) == 'integer' and off >= 0 and off + rec <= #bin, 'a record outside scores.bin was read: offset ' .. tostring(off))\n"
    "      assert(sc:tobytes() == bin:sub(off + 1, off + rec), 'the record at offset ' .. off .. ' is not the bytes there')\n"
    "    end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lua_State *L;
    static char sub[700];
    if (!L) {
        L = fuzz_lua(script);
        snprintf(sub, sizeof sub, "%s/5eed5eed5eed5eed", fuzz_dir());
        if (mkdir(sub, 0777) != 0) { perror(sub); abort(); }
    }
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data, size, 2, part, len);
    char path[800];
    snprintf(path, sizeof path, "%s/index.jsonl", sub);
    fuzz_write(path, part[0], len[0]);
    snprintf(path, sizeof path, "%s/scores.bin", sub);
    if (n == 2) fuzz_write(path, part[1], len[1]);
    else unlink(path);
    const char *args[2] = { fuzz_dir(), n == 2 ? (const char *)part[1] : "" };
    size_t lens[2] = { strlen(fuzz_dir()), n == 2 ? len[1] : 0 };
    fuzz_call(L, "check", 2, args, lens);
    return 0;
}
