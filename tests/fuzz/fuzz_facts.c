/* fuzz_facts.c: the fact-set readers (lua/knwb/facts.lua) on fuzzed files. The input's first
 * byte picks the layout: even, the project's facts.tsv + templates.yaml; odd, PARAREL's pattern
 * and fact files (P1.jsonl in a patterns and a facts folder). The rest is the two files split at
 * FUZZ_SEP.
 * Property: a reader either returns a set of the documented shape (relations with string ids,
 * templates holding [X] and [Y] once, facts with string subject and object, whose prompts can be
 * made) or raises a message string naming one of the input files: never a Lua runtime error such
 * as "attempt to index a number value", which names no file. */
#define FUZZ_LUA
#include "fuzz_common.h"

#include <sys/stat.h>

static const char *script =
    "facts = require 'knwb.facts'\n"
    "local function count(s, pat) return select(2, s:gsub(pat, '')) end\n"
    "function check(pararel, a, b)\n"
    "  local ok, set\n"
    "  if pararel == '1' then\n"
    "    ok, set = pcall(facts.load_pararel, { patterns = a, facts = b, min_templates = 1 })\n"
    "  else\n"
    "    ok, set = pcall(facts.load, { facts = a, templates = b })\n"
    "  end\n"
    "  if not ok then\n"
    "    assert(type(set) == 'string', 'a reader raised a ' .. type(set))\n"
    "    assert(set:find(a, 1, true) or set:find(b, 1, true), 'the error names no input file: ' .. set)\n"
    "    return\n"
    "  end\n"
    "  assert(type(set) == 'table' and type(set.relations) == 'table', 'no relations')\n"
    "  for _, r in ipairs(set.relations) do\n"
    "    assert(type(r.id) == 'string', 'a relation id is not a string')\n"
    "    for _, t in ipairs(r.templates) do\n"
    "      assert(type(t.text) == 'string', 'relation ' .. r.id .. ': a template text is a ' .. type(t.text))\n"
    "      assert(count(t.text, '%[X%]') == 1 and count(t.text, '%[Y%]') == 1, 'a template without [X] and [Y] once: ' .. t.text)\n"
    "      assert(type(t.held_out) == 'boolean', 'held_out is not a boolean')\n"
    "    end\n"
    "    for _, f in ipairs(r.facts) do\n"
    "      assert(type(f.subject) == 'string' and type(f.object) == 'string', 'a fact without string subject and object')\n"
    "      for _, p in ipairs(facts.prompts(r, f)) do\n"
    "        assert(type(p.text) == 'string' and p.text:find('[MASK]', 1, true), 'a prompt without [MASK]')\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lua_State *L;
    static char pat_dir[700], fact_dir[700], own[2][700], par[2][800];
    if (!L) {
        L = fuzz_lua(script);
        snprintf(pat_dir, sizeof pat_dir, "%s/patterns", fuzz_dir());
        snprintf(fact_dir, sizeof fact_dir, "%s/facts", fuzz_dir());
        if (mkdir(pat_dir, 0777) != 0 || mkdir(fact_dir, 0777) != 0) { perror(pat_dir); abort(); }
        snprintf(own[0], sizeof own[0], "%s/facts.tsv", fuzz_dir());
        snprintf(own[1], sizeof own[1], "%s/templates.yaml", fuzz_dir());
        snprintf(par[0], sizeof par[0], "%s/P1.jsonl", pat_dir);
        snprintf(par[1], sizeof par[1], "%s/P1.jsonl", fact_dir);
    }
    if (size < 1) return 0;
    int pararel = data[0] & 1;
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data + 1, size - 1, 2, part, len);
    if (n < 2) { part[1] = (const uint8_t *)""; len[1] = 0; }
    char (*files)[800] = pararel ? par : (char (*)[800])NULL;
    const char *f0 = pararel ? files[0] : own[0], *f1 = pararel ? files[1] : own[1];
    fuzz_write(f0, part[0], len[0]);
    fuzz_write(f1, part[1], len[1]);
    const char *args[3] = { pararel ? "1" : "0", pararel ? pat_dir : own[0], pararel ? fact_dir : own[1] };
    size_t lens[3] = { 1, strlen(args[1]), strlen(args[2]) };
    fuzz_call(L, "check", 3, args, lens);
    return 0;
}
