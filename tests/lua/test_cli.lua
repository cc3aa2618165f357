-- test_cli.lua: the knwb command itself: --help, --version, usage errors, a script's arguments,
-- errors with a traceback and a non-zero exit, and an experiment's --help.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local out, code = run("./knwb --help")
check.ok(code == 0 and out:find("usage: knwb SCRIPT.lua", 1, true), "--help prints the usage and exits 0")
check.ok(out:find("experiments/erase.lua", 1, true), "--help lists the experiments")
out, code = run("./knwb --version")
check.ok(code == 0 and out:match("^knwb %d+%.%d+%.%d+ %(Lua 5%.4"), "--version names knwb and Lua (%s)", (out:gsub("\n", "")))
out, code = run("./knwb")
check.ok(code == 2 and out:find("usage:", 1, true), "no arguments: usage on stderr, exit 2")
out, code = run("./knwb --frobnicate")
check.ok(code == 2 and out:find("unknown option '--frobnicate'", 1, true), "an unknown option is named")
out, code = run("./knwb tests/no-such-script.lua")
check.ok(code == 1 and out:find("cannot open tests/no-such-script.lua", 1, true), "a missing script is named")
out, code = run("./knwb -e 'print(arg[0], arg[1], ...)' a b")
check.ok(code == 0 and out:find("a\tb", 1, true), "arguments reach the chunk as arg and ... (%s)", (out:gsub("\n", " ")))
out, code = run("./knwb -e 'local knwb = require \"knwb\"; knwb.load(\"tests/fixtures/nowhere\")'")
check.ok(code == 1 and out:find("not a model folder", 1, true) and out:find("stack traceback", 1, true),
  "an error gives its message, a traceback and exit 1")
-- A bad argument to model:score is reported at the script's line, and knwb's own files appear
-- relative to the repository, not under the absolute path they were loaded from.
local script = os.tmpname()
local f = assert(io.open(script, "w"))
f:write('local knwb = require "knwb"\nlocal m = knwb.load("tests/fixtures/ref/odd")\n',
  'local it = m:item("w1 w2 w20 w3 [MASK]", "w40")\nm:score({ it }, { interventions = { { layer = 99 } } })\n')
f:close()
out, code = run("./knwb " .. script)
check.ok(code == 1 and out:find("knwb: " .. script .. ":4: intervention 1: layer 99 out of range [0, 3)", 1, true),
  "a core error in model:score names the caller's line (%s)", (out:gsub("\n.*", "")))
f = assert(io.open(script, "w"))
f:write('local knwb = require "knwb"\nlocal m = knwb.load("tests/fixtures/ref/odd")\n\nm:prob("w1 w2 w3", "w40")\n')
f:close()
local out2 = run("./knwb " .. script)
os.remove(script)
check.ok(out2:find("knwb: " .. script .. ":4: prompt has no [MASK] token", 1, true) ~= nil,
  "a bad prompt to model:prob names the caller's line (%s)", (out2:gsub("\n.*", "")))
local root = io.popen("pwd"):read("l")
check.ok(out:find("lua/knwb/init.lua:", 1, true) and not out:find(root .. "/lua/", 1, true),
  "the traceback names knwb's files relative to the repository")
-- Also an error a script catches with pcall, and from another working directory: knwb's modules
-- are loaded under repository-relative chunk names, so no message carries the checkout's path.
out, code = run("cd tests && ../knwb -e 'local svg = require \"knwb.svg\"; "
  .. "print(debug.getinfo(svg.bars, \"S\").source); print(select(2, pcall(svg.bars, {})))'")
check.ok(code == 0 and out:find("@lua/knwb/svg.lua\n", 1, true) and not out:find(root, 1, true),
  "modules load from any directory under relative chunk names; a caught error has no absolute path (%s)",
  (out:gsub("\n", " ")))
out, code = run("./knwb experiments/erase.lua --help")
check.ok(code == 0 and out:find("erase.neurons", 1, true), "an experiment's --help documents its config keys")
out, code = run("./knwb experiments/erase.lua --set erase.neuronz=3")
check.ok(code == 2 and out:find("erase.neuronz", 1, true), "an unknown --set key is refused, naming it")
check.done()
