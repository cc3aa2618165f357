-- test_api_doc.lua: doc/api.md documents every public function. The functions are enumerated at
-- run time: the knwb table, knwb.core, every module of lua/knwb/ and every knwb.* module the
-- host preloads (knwb.json, knwb.yaml, ...), and the methods of the model, scores, edit and
-- trainer classes. Each must have a "### name(" (or "name{") heading (knwb.refine.coarse(, model:prob(, ...)
-- followed by a lua example before the next heading; and every heading must name a function
-- that exists, so the reference cannot go stale. (tests/lua/test_readme.lua runs the examples.)
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"

local f = assert(io.open("doc/api.md", "r"))
local doc = f:read("a")
f:close()

-- headings and whether each is followed by a lua block before the next heading
local headings, order = {}, {}
local current
for line in (doc .. "\n"):gmatch("(.-)\n") do
  local name = line:match("^### ([%w_.:]+)[%({]") or line:match("^### ([%w_.:]+)$") or line:match("^### ([%w_.:]+)%s")
  if line:match("^##") then current = nil end
  if name then
    headings[name] = { example = false }
    order[#order + 1] = name
    current = name
  elseif current and line:match("^```lua%s*$") then
    headings[current].example = true
  end
end
check.ok(#order > 100, "doc/api.md has %d function headings", #order)

-- the public functions, enumerated
local public = {}
local function functions_of(t, prefix, sep)
  local n = 0
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") then
      public[prefix .. sep .. k] = true
      n = n + 1
    end
  end
  return n
end
functions_of(knwb, "knwb", ".")
functions_of(knwb.core, "knwb.core", ".")
local modules = {}
local p = io.popen("ls lua/knwb")
for name in p:lines() do
  local m = name:match("^([%w_]+)%.lua$")
  if m and m ~= "init" then modules[#modules + 1] = m end
end
p:close()
for name in pairs(package.preload) do
  local m = name:match("^knwb%.([%w_]+)$")
  if m and m ~= "core" then modules[#modules + 1] = m end
end
check.ok(#modules >= 15, "%d modules found", #modules)
for _, m in ipairs(modules) do
  local mod = require("knwb." .. m)
  if type(mod) == "function" then
    public["knwb." .. m] = true
  elseif type(mod) == "table" then
    functions_of(mod, "knwb." .. m, ".")
    local mt = getmetatable(mod)
    if mt and type(mt.__call) == "function" then public["knwb." .. m] = true end
  end
end
local reg = debug.getregistry()
for class, var in pairs { ["knwb.Model"] = "model", ["knwb.Scores"] = "scores", ["knwb.Edit"] = "edit", ["knwb.Trainer"] = "trainer" } do
  local mt = reg[class]
  check.ok(type(mt) == "table" and type(mt.__index) == "table", "class %s is registered", class)
  local n = functions_of(mt.__index, var, ":")
  check.ok(n > 0, "%s has %d methods", class, n)
end

local names = {}
for name in pairs(public) do names[#names + 1] = name end
table.sort(names)
local missing, no_example = {}, {}
for _, name in ipairs(names) do
  if not headings[name] then missing[#missing + 1] = name
  elseif not headings[name].example then no_example[#no_example + 1] = name end
end
check.ok(#missing == 0, "every public function (%d) has a heading in doc/api.md%s", #names,
  #missing > 0 and "; missing: " .. table.concat(missing, ", ") or "")
check.ok(#no_example == 0, "every documented function has a lua example%s",
  #no_example > 0 and "; none for: " .. table.concat(no_example, ", ") or "")
local stale = {}
for _, name in ipairs(order) do if not public[name] then stale[#stale + 1] = name end end
check.ok(#stale == 0, "every heading names a public function%s", #stale > 0 and "; unknown: " .. table.concat(stale, ", ") or "")

-- the issue's examples of functions users reach for
for _, name in ipairs { "model:save", "model:config", "model:edits", "model:update_fact", "model:erase", "knwb.neurons.read", "model:neurons" } do
  check.ok(headings[name] ~= nil, "doc/api.md documents %s", name)
end

check.done()
