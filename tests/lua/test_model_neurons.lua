-- test_model_neurons.lua: model:neurons (the paper's refining of one fact in one call) equals
-- the pieces assembled by hand (model:attribute, refine.coarse, refine.relation), and errors of
-- library calls are reported at the user's line, inside model:with too, with "intervention N"
-- counting the user's own list.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local refine = require "knwb.refine"

local m = knwb.load("tests/fixtures/ref/odd")
local prompts = { "w1 w2 [MASK] w3", "w2 [MASK] w3 w4", "[MASK] w1 w2 w3", "w3 w1 [MASK]", "w4 w4 w2 [MASK] w1" }
local target = "w5"

local kn, coarse, info = m:neurons(prompts, target, { steps = 8 })
-- by hand
local sets, bsets = {}, {}
for j, pr in ipairs(prompts) do
  local ig, act = m:attribute(m:item(pr, target), { steps = 8 })
  sets[j] = refine.coarse(ig, 0.2)
  bsets[j] = refine.coarse(act, 0.5)
end
local want, winfo = refine.relation({ sets }, {})
check.eq(coarse, sets, "model:neurons: the coarse sets are refine.coarse's of each prompt's scores")
check.eq(kn, want[1], "model:neurons: the knowledge neurons are refine.relation's on this one fact", #kn)
check.eq(info.p, winfo.p, "model:neurons: the p of the last evaluation")
check.eq(info.baseline, refine.relation({ bsets }, {})[1], "model:neurons: the activation baseline's neurons")
check.eq(#info.max, #prompts, "model:neurons: one max score per prompt")
local fixed = m:neurons(prompts, target, { steps = 8, p = 0.2, adapt = false, min_prompts = 1 })
check.eq(fixed, refine.fact(sets, 0.2, 1), "model:neurons with adapt = false keeps p fixed")
check.ok(#fixed >= #kn, "a lower fixed p keeps at least as many neurons (%d >= %d)", #fixed, #kn)

-- refusals, at this file's line
local here = "^tests/lua/test_model_neurons%.lua:%d+: "
local function msg(f) local ok, e = pcall(f); return ok and "no error" or tostring(e) end
local e = msg(function() m:neurons({ "w1 [MASK]" }, target) end)
check.ok(e:find(here) and e:find("1 prompt, but a knowledge neuron must be in the coarse sets of at least min_prompts = 3", 1, true),
  "model:neurons: too few prompts for min_prompts (%s)", e)
e = msg(function() m:neurons(prompts, target, { stepz = 3 }) end)
check.ok(e:find(here) and e:find("unknown option stepz", 1, true), "model:neurons: an unknown option is refused (%s)", e)
e = msg(function() m:neurons({ "w1 [MASK]", "w2 w3", "w1 [MASK]" }, target) end)
check.ok(e:find(here) and e:find("prompt 2: prompt has no [MASK]", 1, true), "model:neurons: a bad prompt is named by its index (%s)", e)
e = msg(function() m:neurons({}, target) end)
check.ok(e:find(here) and e:find("non-empty list", 1, true), "model:neurons: no prompts (%s)", e)

-- errors inside model:with, at the line that made the bad call (not a tail call, so the line exists)
local item = m:item(prompts[1], target)
local line
e = msg(function()
  m:with({ suppress = { { 0, 1 } } }, function()
    line = debug.getinfo(1, "l").currentline + 1
    local p = m:prob("w1 w2 w3", target)
    return p
  end)
end)
check.ok(e:find("^tests/lua/test_model_neurons%.lua:" .. line .. ": ") and e:find("has no [MASK]", 1, true),
  "an error inside model:with is reported at the user's line %d (%s)", line, e)
e = msg(function() m:with({ suppress = { { 0, 1 }, { 7, 2 } } }, function() return m:score({ item }) end) end)
check.ok(e:find(here) and e:find("suppress neuron 2 {7, 2}: layer 7 out of range [0, 3)", 1, true),
  "model:with names the bad neuron by its place in the user's list (%s)", e)
e = msg(function()
  m:with({ interventions = { { layer = 0, neurons = { 1 } }, { layer = 1, neurons = { 99 } } }, suppress = { { 2, 3 } } },
    function() local r = m:score({ item }); return r end)
end)
check.ok(e:find(here) and e:find("intervention 2: neuron 99 out of range", 1, true),
  "intervention N counts the user's list (%s)", e)
e = msg(function() m:with({ supress = { { 0, 1 } } }, function() end) end)
check.ok(e:find(here) and e:find("unknown key supress", 1, true), "model:with refuses an unknown key (%s)", e)
e = msg(function() m:with({}, "not a function") end)
check.ok(e:find(here) and e:find("second argument must be a function", 1, true), "model:with needs a function (%s)", e)
e = msg(function() m:with({}, function() error("mine") end) end)
check.ok(e:find(here) and e:find("mine", 1, true) and not e:find("lua/knwb", 1, true),
  "the user's own error passes through model:with unchanged (%s)", e)
e = msg(function() m:erase({}) end)
check.ok(e:find(here) and e:find("no neurons to erase", 1, true), "model:erase reports at the user's line (%s)", e)
e = msg(function() m:update_fact({ { 0, 1 } }, target, "zebra") end)
check.ok(e:find(here) and e:find("new object", 1, true), "model:update_fact reports at the user's line (%s)", e)
e = msg(function() knwb.load("tests/fixtures/nowhere") end)
check.ok(e:find(here) and e:find("not a model folder", 1, true), "knwb.load reports at the user's line (%s)", e)
check.eq(m:score({ item })[1].p, m:score({ item })[1].p, "the model scores normally after the errors")
check.eq(#m:edits(), 0, "no edit was left in force")

check.done()
