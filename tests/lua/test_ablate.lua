-- test_ablate.lua: experiments/ablate.lua (the script users copy) end to end on the fixture model
-- and its stored neurons: the run directory, the headline recomputed from results.jsonl, the
-- chosen layers honoured, the control in the same layers; and the shared helpers of
-- knwb.experiment it is built from (fact keys, fact entries, the random control, the resume guard).
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local X = require "knwb.experiment"
local M = require "knwb.metrics"
local json = require "knwb.json"
local runs = require "runs"
local q = knwb.run.shell_quote

local tmp = runs.tmpdir()
local BASE = "--set model=tests/fixtures/ref/odd --set facts.facts=tests/fixtures/edit/facts.tsv "
  .. "--set facts.templates=tests/fixtures/edit/templates.yaml --set facts.relations=[] "
  .. "--set neurons=tests/fixtures/edit/neurons.jsonl --set attribution.cache="
local ok, out, err = runs.knwb(tmp, "experiments/ablate.lua", BASE .. " --set layers=2 --out " .. q(tmp .. "/run"))
check.ok(ok, "ablate.lua runs on the fixture (%s)", err)
check.ok(out:find("suppressing the knowledge neurons of layers 2 changes P(gold) by", 1, true), "it reports the change in words")
local summary = json.decode(runs.slurp(tmp .. "/run/summary.json") or "{}")
local lines = {}
for line in (runs.slurp(tmp .. "/run/results.jsonl") or ""):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(line) end
check.ok(#lines > 0 and #lines % 2 == 0, "results.jsonl: a kn and a random line per fact (%d)", #lines)
local rows, layers_ok, same_layers = { kn = {}, random = {} }, true, true
for k, l in ipairs(lines) do
  for j = 1, #l.p0 do table.insert(rows[l.set], { relation = l.relation, p0 = l.p0[j], p = l.p[j] }) end
  for _, n in ipairs(l.neurons) do layers_ok = layers_ok and n[1] == 2 end
  if l.set == "random" then
    local kn = lines[k - 1]
    same_layers = same_layers and kn.set == "kn" and #kn.neurons == #l.neurons and kn.subject == l.subject
  end
end
check.ok(layers_ok, "only layer 2's neurons are suppressed (layers = 2 read as the list [2])")
check.ok(same_layers, "the control has as many neurons as the knowledge set, fact by fact")
check.near(summary.kn, M.change_summary(rows.kn).ratio, 1e-12, "summary.json kn = change_summary of results.jsonl")
check.near(summary.random, M.change_summary(rows.random).ratio, 1e-12, "summary.json random = change_summary of results.jsonl")
check.ok(summary.kn < summary.random, "knowledge neurons suppress more than random ones (%.3f < %.3f)", summary.kn, summary.random)
ok, out, err = runs.knwb(tmp, "experiments/ablate.lua", BASE .. " --set layers=[-1] --out " .. q(tmp .. "/bad"))
check.ok(not ok and err:find("layers", 1, true) and runs.slurp(tmp .. "/bad/summary.json") == nil, "a negative layer is refused (%s)", (err:gsub("\n.*", "")))

-- the helpers
check.eq(X.record_key { relation = "P1", subject = "a", object = "b" }, "P1\ta\tb", "record_key")
check.eq(X.line_key { relation = "P1", fact = 3, subject = "a", object = "b" }, "P1\t3\ta\tb", "line_key")
local model = knwb.load("tests/fixtures/ref/odd")
local set = X.load_facts("t", { facts = "tests/fixtures/edit/facts.tsv", templates = "tests/fixtures/edit/templates.yaml", relations = {} }, model)
local records = knwb.neurons.read("tests/fixtures/edit/neurons.jsonl")
local list, by = X.fact_entries("t", set, records)
check.eq(#list, knwb.facts.count(set), "fact_entries: one entry per fact")
check.eq(#by[set.relations[1].id], #set.relations[1].facts, "... grouped by relation")
check.eq(list[1].rec.subject, list[1].fact.subject, "... each with its own record")
local a = X.random_control(list[1], list[1].rec.kn, 50, 7)
local b = X.random_control(list[1], list[1].rec.kn, 50, 7)
check.eq(a, b, "random_control: the same fact and seed draw the same neurons")
for k, n in ipairs(a) do check.ok(n[1] == list[1].rec.kn[k][1], "random_control: neuron %d in the layer of the knowledge neuron", k) end
local run = knwb.run.new { experiment = "t", out = tmp .. "/resume" }
check.eq(#X.resume("t", run, { seed = 1 }, "results.jsonl"), 0, "resume: a new run has no lines")
run:jsonl("results.jsonl", "w"):write({ x = 1 })
check.eq(#X.resume("t", run, { seed = 1 }, "results.jsonl"), 1, "resume: the same config gets its lines back")
os.execute("rm -rf " .. q(tmp))
check.done()
