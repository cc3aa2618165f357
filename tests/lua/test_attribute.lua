-- test_attribute.lua: experiments/attribute.lua end to end on the tiny fixture model
-- tests/fixtures/ref/odd and the fact set tests/fixtures/facts/odd3.*: the documented files, the
-- summary.json keys of the issue, the statistics and the value-slot readout recomputed from
-- neurons.jsonl, a second run that reads every score back, and a clear refusal of bad input.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local neurons = require "knwb.neurons"
local json = require "knwb.json"
local q = knwb.run.shell_quote

local MODEL = "tests/fixtures/ref/odd"
local runs = require "runs"
local slurp = runs.slurp
local tmp = runs.tmpdir()
local BASE = ("--set model=%s --set facts.facts=tests/fixtures/facts/odd3.tsv "
  .. "--set facts.templates=tests/fixtures/facts/odd3_templates.yaml --set attribution.cache=%s")
  :format(MODEL, q(tmp .. "/cache"))
local function script(args) return runs.knwb(tmp, "experiments/attribute.lua", args) end

local ok, out, err = script(BASE .. " --out " .. q(tmp .. "/run"))
if not check.ok(ok, "attribute.lua runs on the fixture") then print(err) end
local dir = tmp .. "/run/"
for _, name in ipairs { "config.yaml", "provenance.json", "neurons.jsonl", "neurons.jsonl.meta.json", "summary.json",
  "summary.md", "relations.md", "layers.svg", "value_slots.md", "value_slots.tsv" } do
  check.ok(slurp(dir .. name) ~= nil, "the run directory holds %s", name)
end
check.ok(out:find("knowledge neurons per fact:", 1, true) ~= nil, "stdout gives the result in words")

local summary = json.decode(slurp(dir .. "summary.json"))
local keys_ok = true
for _, k in ipairs { "facts", "avg_kn_per_fact", "intra_relation_shared", "inter_relation_shared", "layer_share" } do
  keys_ok = keys_ok and summary[k] ~= nil and summary.baseline[k ~= "facts" and k or "avg_kn_per_fact"] ~= nil
end
check.ok(keys_ok, "summary.json has the issue's keys, each also under baseline")

-- The statistics and the slot readout, recomputed from neurons.jsonl.
local model = knwb.load(MODEL)
local records = neurons.read(dir .. "neurons.jsonl")
check.eq(summary.facts, #records, "summary facts = the lines of neurons.jsonl (%d)", #records)
local total, layers = 0, {}
for _, r in ipairs(records) do
  total = total + #r.kn
  for _, ne in ipairs(r.kn) do layers[ne[1] + 1] = (layers[ne[1] + 1] or 0) + 1 end
end
check.near(summary.avg_kn_per_fact, total / #records, 1e-12, "avg_kn_per_fact = neurons / facts")
local share_ok = true
for l = 1, model:config().num_hidden_layers do
  share_ok = share_ok and math.abs(summary.layer_share[l] - (layers[l] or 0) / total) < 1e-12
end
check.ok(share_ok, "layer_share = the share of knowledge neurons per layer")

local V = model:config().vocab_size
local pct, top10, n = 0, 0, 0
for _, r in ipairs(records) do
  local oid = model:id(r.object)
  for _, ne in ipairs(r.kn) do
    local rank = model:slot_rank(ne[1], ne[2], oid)
    n, pct = n + 1, pct + (rank - 1) / (V - 1)
    if rank <= 10 then top10 = top10 + 1 end
  end
end
local vs = summary.value_slots
check.eq(vs.kn.neurons, n, "value_slots: one (fact, neuron) pair per knowledge neuron (%d)", n)
check.near(vs.kn.mean_percentile, pct / n, 1e-12, "value_slots: the object's mean percentile, recomputed")
check.near(vs.kn.top10_share, top10 / n, 1e-12, "value_slots: the top-10 share, recomputed")
check.eq(vs.random.neurons, n, "value_slots: the random control has as many neurons")
check.ok(vs.random.mean_percentile >= 0 and vs.random.mean_percentile <= 1, "value_slots: a control percentile in [0, 1]")
check.ok(slurp(dir .. "value_slots.md"):find("random, same layers", 1, true) ~= nil, "value_slots.md has the control row")

-- A second run reads every score back and writes the same neurons.
ok, out, err = script(BASE .. " --out " .. q(tmp .. "/again"))
check.ok(ok and err:find("(0 computed", 1, true) ~= nil, "a second run computes nothing (%s)", (err:gsub("\n", " ")))
check.eq(slurp(tmp .. "/again/neurons.jsonl"), slurp(dir .. "neurons.jsonl"), "and writes the same neurons.jsonl")

-- Bad input: a fact set without any usable relation is named.
ok, out, err = script(BASE .. " --set 'facts.relations=[P999]' --out " .. q(tmp .. "/bad"))
check.ok(not ok and err:find("P999", 1, true) ~= nil, "an unknown relation is refused by name (%s)", (err:gsub("\n.*", "")))

os.execute("rm -rf " .. q(tmp))
check.done()
