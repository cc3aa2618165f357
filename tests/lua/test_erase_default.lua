-- test_erase_default.lua: the README's main command erases one relation by default
-- (configs/erase.yaml), and a relation's numbers are the same whether it is erased alone or in the
-- full sweep (--set erase.relations=[]), on the editing tests' fixture model and facts.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local json = require "knwb.json"
local runs = require "runs"
local q = knwb.run.shell_quote

local cfg = knwb.config.load("configs/erase.yaml", nil)
check.eq(cfg.erase.relations, { "P36" }, "configs/erase.yaml erases P36 alone by default")

local tmp = runs.tmpdir()
local function erase(rel, dir)
  local ok, _, err = runs.knwb(tmp, "experiments/erase.lua",
    "tests/fixtures/edit/erase.yaml --set " .. q("erase.relations=" .. rel) .. " --out " .. q(dir))
  check.ok(ok, "erase.relations=%s runs (%s)", rel, (err:gsub("\n.*", "")))
  return json.decode(runs.slurp(dir .. "/summary.json") or "{}")
end
local alone = erase("P2", tmp .. "/alone")
local all = erase("[]", tmp .. "/all")
check.eq(#alone.relations, 1, "a bare relation id is a one-element list")
local row
for _, r in ipairs(all.relations or {}) do if r.relation == "P2" then row = r end end
check.ok(row ~= nil and #all.relations > 1, "the full sweep erases every relation (%d)", #(all.relations or {}))
check.eq(alone.relations[1], row, "P2's numbers (knowledge and random neurons) are the same alone and in the sweep")
os.execute("rm -rf " .. q(tmp))
check.done()
