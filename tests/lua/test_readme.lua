-- test_readme.lua: the documentation runs as printed. Every ```lua block of README.md and of
-- doc/api.md runs on the default model, the blocks of one file in order in one environment (as
-- a reader following along would run them), with errors reported at the document's own line.
-- Every command of a ```sh block is either run here (the cheap ones) or listed below as not run,
-- with the reason; a command that is neither fails the test, so a new one cannot slip in unseen.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local runs = require "runs"

local function slurp(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

-- blocks(text, lang) -> list of {first = line number of the block's first line, code = text}
local function blocks(text, lang)
  local out, cur, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        out[#out + 1] = cur
        cur = nil
      else
        cur.code[#cur.code + 1] = line
      end
    elseif line:match("^```" .. lang .. "%s*$") then
      cur = { first = n + 1, code = {} }
    end
  end
  assert(not cur, "an unclosed ``` block")
  for _, b in ipairs(out) do b.code = table.concat(b.code, "\n") end
  return out
end
check.eq(#blocks("a\n```lua\nx = 1\ny = 2\n```\n```sh\nls\n```\n", "lua"), 1, "the block reader finds one lua block")
check.eq(blocks("a\n```lua\nx = 1\n```\n", "lua")[1].first, 3, "... and the line it starts on")

-- Runs the lua blocks of one document in one environment; output goes to a list, not stdout.
local function run_lua(path, min_blocks)
  local list = blocks(slurp(path), "lua")
  check.ok(#list >= min_blocks, "%s has at least %d lua blocks (%d)", path, min_blocks, #list)
  local printed = {}
  local env = setmetatable({}, { __index = _G })
  env.print = function(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    printed[#printed + 1] = table.concat(t, "\t", 1, t.n)
  end
  for _, b in ipairs(list) do
    -- leading newlines make the chunk's line numbers the document's
    local chunk, err = load(("\n"):rep(b.first - 1) .. b.code, "@" .. path, "t", env)
    local ok, msg = chunk ~= nil, err
    if chunk then ok, msg = pcall(chunk) end
    check.ok(ok, "%s: the lua block at line %d runs as printed%s", path, b.first, ok and "" or ": " .. tostring(msg))
  end
  return printed
end

local printed = run_lua("README.md", 1)
local all = table.concat(printed, "\n")
check.ok(all:find("Paris", 1, true), "the README example prints the model's answer Paris")
local nkn = select(2, all:gsub("knowledge neuron\t%d+\t%d+", ""))
check.ok(nkn >= 1, "the README example finds knowledge neurons of its fact (%d)", nkn)
local p0, p1 = all:match("P%(Paris%)\t([%d.e-]+)\t%->\t([%d.e-]+)")
check.ok(p0 and tonumber(p1) < tonumber(p0), "... and suppressing them lowers P(Paris) (%s -> %s)", p0, p1)

if io.open("doc/api.md", "r") then run_lua("doc/api.md", 5) else check.ok(false, "doc/api.md exists") end

-- Commands run here on the tiny fixture model instead of the default one (the same script, a
-- fraction of the work), with the file the run directory must hold.
local FIXTURE = ("--set model=tests/fixtures/ref/odd --set facts.facts=tests/fixtures/facts/odd3.tsv "
  .. "--set facts.templates=tests/fixtures/facts/odd3_templates.yaml")
local ON_FIXTURE = {
  ["./knwb experiments/evaluate.lua"] = "summary.json",
}

-- Shell commands: each line of a ```sh block (comments stripped).
local NOT_RUN = {
  ["make"] = "the build itself; this test runs inside a finished build",
  ["make test"] = "runs this test: it would recurse",
  ["./knwb experiments/erase.lua"] = "minutes of CPU on the default model; tests/lua/test_update_erase.lua runs it end to end on a fixture model",
  ["./knwb experiments/erase.lua --set erase.relations=[]"] = "the full sweep, minutes of CPU; tests/lua/test_update_erase.lua erases every relation of a fixture",
  ["./knwb experiments/ablate.lua"] = "scores P36's prompts three times (about 10 s of CPU); tests/lua/test_ablate.lua runs it on a fixture model",
  ["./knwb experiments/attribute.lua"] = "attributes every prompt of the fact set (minutes); tests/lua/test_attribute.lua runs it on a fixture model",
  ["./knwb experiments/suppress.lua"] = "minutes of CPU; tests/lua/test_suppress.lua runs it on a fixture model",
  ["./knwb experiments/update.lua"] = "minutes of CPU; tests/lua/test_update_erase.lua runs it on a fixture model",
  ["./knwb experiments/pretrain.lua"] = "a training run of minutes; tests/lua/test_pretrain.lua trains a tiny model",
  ["OPENBLAS_NUM_THREADS=1 ./knwb experiments/pretrain.lua configs/pretrain.yaml --save models/default"] =
    "rebuilds the shipped model (7 minutes)",
}

local function commands(path)
  local out = {}
  for _, b in ipairs(blocks(slurp(path), "sh")) do
    local n = b.first - 1
    for line in (b.code .. "\n"):gmatch("(.-)\n") do
      n = n + 1
      local cmd = line:gsub("%s+#.*$", ""):gsub("^#.*$", ""):gsub("^%s+", ""):gsub("%s+$", "")
      if cmd ~= "" then
        -- "make && ./knwb x" is two commands
        for part in (cmd .. " && "):gmatch("(.-)%s*&&%s*") do out[#out + 1] = { cmd = part, line = n } end
      end
    end
  end
  return out
end

local tmp = runs.tmpdir()
local ran = 0
for _, doc in ipairs { "README.md", "doc/api.md", "models/default/README.md" } do
  if io.open(doc, "r") then
    for _, c in ipairs(commands(doc)) do
      local script, rest = c.cmd:match("^%./knwb (%S+)%s*(.*)$")
      if NOT_RUN[c.cmd] then
        print(("not run %s:%d %s (%s)"):format(doc, c.line, c.cmd, NOT_RUN[c.cmd]))
      elseif ON_FIXTURE[c.cmd] then
        local dir = tmp .. "/run" .. c.line
        local ok, _, err = runs.knwb(tmp, script, FIXTURE .. " --out '" .. dir .. "'")
        check.ok(ok and runs.slurp(dir .. "/" .. ON_FIXTURE[c.cmd]) ~= nil, "%s:%d `%s` runs on the fixture model and writes %s%s",
          doc, c.line, c.cmd, ON_FIXTURE[c.cmd], ok and "" or ": " .. err)
        ran = ran + 1
      elseif script and rest == "--help" then
        local ok, out = runs.knwb(tmp, script, "--help")
        check.ok(ok and out:find("usage: knwb " .. script, 1, true), "%s:%d `%s` runs and prints its usage", doc, c.line, c.cmd)
        ran = ran + 1
      else
        check.ok(false, "%s:%d `%s` is run by this test or listed in NOT_RUN with a reason", doc, c.line, c.cmd)
      end
    end
  end
end
check.ok(ran >= 1, "at least one documented command ran (%d)", ran)
os.execute("rm -rf '" .. tmp .. "'")

check.done()
