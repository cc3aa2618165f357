-- test_cli_help.lua: each experiment's --help shows only keys its config has, a list key takes a
-- bare value as a one-element list (--set facts.relations=P36), and a script without a config
-- does not offer --set.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local cli = require "knwb.cli"
local config = require "knwb.config"
local S = require "knwb.schemas"

local function help(script)
  local p = io.popen("./knwb " .. script .. " --help 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

for _, name in ipairs { "evaluate", "pretrain", "attribute", "suppress", "update", "erase" } do
  local out = help("experiments/" .. name .. ".lua")
  local keys = out:match("config keys.-\n(.*)$") or ""
  for key in out:gmatch("%-%-set ([%w_%.]+)=") do
    -- every example names a key listed under "config keys" (its last segment, indented)
    local last = key:match("([%w_]+)$")
    if key ~= "KEY" then check.ok(keys:find("%f[%w_]" .. last .. "%f[^%w_]") ~= nil, "%s --help: the example --set %s is a key it has", name, key) end
  end
end
check.ok(not help("experiments/evaluate.lua"):find("attribution.steps", 1, true), "evaluate --help does not show attribution.steps")
check.ok(not help("experiments/pretrain.lua"):find("attribution.steps", 1, true), "pretrain --help does not show attribution.steps")

local schema = S.record { facts = S.facts, attribution = S.attribution }
check.eq(cli.list_override(schema, "facts.relations=P36"), "facts.relations=[P36]", "a bare value for a list key becomes a list")
check.eq(cli.list_override(schema, "facts.relations=P36,P17"), "facts.relations=[P36,P17]", "... comma-separated values too")
check.eq(cli.list_override(schema, "facts.relations=[P36]"), "facts.relations=[P36]", "a YAML list is left as written")
check.eq(cli.list_override(schema, "facts.relations="), "facts.relations=", "an empty value is left as written")
check.eq(cli.list_override(schema, "attribution.steps=5"), "attribution.steps=5", "a scalar key is left as written")
local opts = assert(cli.try({ "--set", "facts.relations=P36" }, { name = "x", schema = schema }))
check.eq(opts.cfg.facts.relations, { "P36" }, "--set facts.relations=P36 gives the list {P36}")
local ok, err = cli.try({ "--set", "facts.max_facts=P36" }, { name = "x", schema = schema })
check.ok(not ok and err:find("max_facts", 1, true), "a bad scalar is still refused (%s)", tostring(err))
local nos, nerr = cli.try({ "--set", "a=1" }, { name = "noconf" })
check.ok(not nos and nerr:find("unknown option --set", 1, true), "a script without a config refuses --set (%s)", tostring(nerr))
check.ok(not cli.usage({ name = "noconf" }):find("--set", 1, true), "... and its --help does not offer it")
check.ok(config ~= nil, "config module loads")

check.done()
