-- test_suppress.lua: the suppress/amplify experiment (experiments/suppress.lua) and the scoring
-- behind it (knwb.metrics.effects) on the tiny fixture model tests/fixtures/ref/odd and the fact
-- set tests/fixtures/facts/odd3.*: interventions agree with model:with, a factor of 1 changes
-- nothing, mask-position suppression is not value-slot erasure (which equals suppression at every
-- position), and end-to-end runs write the documented files, reuse neurons, resume, and refuse
-- bad input with clear messages.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local M = require "knwb.metrics"
local json = require "knwb.json"
local q = knwb.run.shell_quote

local MODEL = "tests/fixtures/ref/odd"
local FACTS = "tests/fixtures/facts/odd3.tsv"
local TEMPLATES = "tests/fixtures/facts/odd3_templates.yaml"

---------------------------------------------------------------------------------------------------
-- The scoring, against the model's own API.

local model = knwb.load(MODEL)
local prompts = { { "w1 w2 w20 w3 [MASK]", "w40" }, { "[MASK] w4 w5 w21", "w41" }, { "w6 w22 w7 w8 [MASK] w9", "w42" },
  { "w13 w30 w14 [MASK]", "w50" } }
local items = {}
for k, p in ipairs(prompts) do items[k] = model:item(p[1], p[2]) end
local kn = { { 0, 10 }, { 1, 3 }, { 2, 7 }, { 2, 41 } }

local function ps(results, field)
  local out = {}
  for k, r in ipairs(results) do out[k] = r[field or "p"] end
  return out
end

local r = M.effects(model, items, kn, { factor = 2 })
check.eq(#r.p0, #items, "effects: one p0 per item")
check.eq(r.p0, ps(model:score(items)), "effects: p0 is the unmodified model's P(gold)")
check.eq(r.p_suppress, ps(model:with({ suppress = kn }, function() return model:score(items) end)),
  "effects: suppress equals model:with({suppress = neurons}) exactly")
check.eq(r.p_amplify, ps(model:with({ amplify = kn, factor = 2 }, function() return model:score(items) end)),
  "effects: amplify equals model:with({amplify = neurons, factor = 2}) exactly")
check.eq(r.logp_suppress, ps(model:with({ suppress = kn }, function() return model:score(items) end), "logp"),
  "effects: log p of suppress equals model:with's")
local changed = 0
for k = 1, #items do if r.p_suppress[k] ~= r.p0[k] then changed = changed + 1 end end
check.eq(changed, #items, "effects: suppressing 4 neurons changes P(gold) of every item")

local r1 = M.effects(model, items, kn, { factor = 1 })
check.eq(r1.p_amplify, r1.p0, "effects: amplify with factor 1 changes nothing (p exactly p0)")
check.eq(r1.logp_amplify, r1.logp0, "effects: amplify with factor 1 changes nothing (log p exactly)")
local r0 = M.effects(model, items, kn, { factor = 0 })
check.eq(r0.p_amplify, r.p_suppress, "effects: amplify with factor 0 is suppress")

-- Bad neurons are reported at this file's line, however deep they fail; a neuron without its
-- index is refused, not skipped.
do
  local function msg(f) local ok, e = pcall(f); return ok and "no error" or tostring(e) end
  local here = "^tests/lua/test_suppress%.lua:%d+: "
  local m1 = msg(function() M.effects(model, items, { { 9, 1 } }) end)
  check.ok(m1:find(here) and m1:find("layer 9 out of range [0, 3)", 1, true), "effects: a layer out of range (%s)", m1)
  local m2 = msg(function() M.effects(model, items, { { 1, 2 }, { 1 } }) end)
  check.ok(m2:find(here) and m2:find("neuron 2 must be {layer, neuron} with integers", 1, true), "effects: a neuron without index (%s)", m2)
  local m3 = msg(function() model:with({ amplify = { { 1.5, 2 } } }, function() end) end)
  check.ok(m3:find(here) and m3:find("neuron 1 must be {layer, neuron}", 1, true), "model:with: a bad neuron (%s)", m3)
  local m4 = msg(function() knwb.neuron_interventions("all", "set", 0) end)
  check.ok(m4:find(here) and m4:find("neurons must be a list", 1, true), "neuron_interventions: not a list (%s)", m4)
end

local re = M.effects(model, items, {}, { factor = 2 })
check.ok(re.p_suppress == re.p0 and re.p_amplify == re.p0, "effects: an empty set gives p = p0 without scoring")
local rb = M.effects(model, items, kn, { factor = 2, base = { p = r.p0, logp = r.logp0 } })
check.eq(rb.p_suppress, r.p_suppress, "effects: a given base is used as p0")
local r_b1 = M.effects(model, items, kn, { factor = 2, batch = 1 })
local maxd = 0
for k = 1, #items do maxd = math.max(maxd, math.abs(r_b1.p_suppress[k] - r.p_suppress[k]) / r.p_suppress[k]) end
check.ok(maxd < 1e-5, "effects: one prompt per forward pass agrees with one batch (max rel. diff %.2g)", maxd)

-- Zeroing value slots (W2 columns) = setting the neurons to 0 at every position, not only at [MASK].
local all_pos = {}
for _, iv in ipairs(knwb.neuron_interventions(kn, "set", 0)) do iv.pos = "all"; all_pos[#all_pos + 1] = iv end
local p_all = ps(model:score(items, { interventions = all_pos }))
local C = model:config().hidden_size
local zero = {}
for c = 1, C do zero[c] = 0 end
local cols = {}
for k, n in ipairs(kn) do cols[k] = { layer = n[1], neuron = n[2], vector = zero } end
local edit = model:edit(cols, "zero the test neurons")
local p_edit = ps(model:score(items))
edit:undo()
local worst, differs = 0, false
for k = 1, #items do
  worst = math.max(worst, math.abs(p_edit[k] - p_all[k]) / p_all[k])
  if math.abs(p_edit[k] - r.p_suppress[k]) > 1e-6 * r.p_suppress[k] then differs = true end
end
check.ok(worst <= 1e-6, "zeroed value slots = neurons set to 0 at every position (max rel. diff %.2g)", worst)
check.ok(differs, "suppressing at [MASK] only differs from zeroing the value slots")
check.eq(ps(model:score(items)), r.p0, "after undoing the edit the model scores as before, exactly")

---------------------------------------------------------------------------------------------------
-- End-to-end runs of experiments/suppress.lua.

local runs = require "runs"
local slurp = runs.slurp
local tmp = runs.tmpdir()
local BASE = ("--set model=%s --set facts.facts=%s --set facts.templates=%s --set attribution.cache=%s")
  :format(MODEL, FACTS, TEMPLATES, q(tmp .. "/cache"))

-- Runs the script; returns success, stdout, stderr.
local function script(args) return runs.knwb(tmp, "experiments/suppress.lua", args) end

local function lines_of(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = json.decode(line) end
  return out
end

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

local SETS = { "kn", "baseline", "random", "off_target" }
local KEYS = { "amplify_dlogp", "amplify_pct", "suppress_dlogp", "suppress_pct" }

local ok, out, err = script(BASE .. " --out " .. q(tmp .. "/run"))
if not check.ok(ok, "suppress.lua runs on the fixture") then print(err) end
local dir = tmp .. "/run/"
for _, name in ipairs { "config.yaml", "provenance.json", "results.jsonl", "relations.tsv", "relations.md", "summary.json",
  "summary.md", "suppress.svg", "amplify.svg", "neurons.jsonl", "neurons.jsonl.meta.json" } do
  check.ok(slurp(dir .. name) ~= nil, "the run directory holds %s", name)
end
check.ok(out:find("suppressing knowledge neurons changes P(gold) by", 1, true) ~= nil, "stdout gives the result in words")
local summary = json.decode(slurp(dir .. "summary.json"))
for _, set in ipairs(SETS) do
  local s = summary[set]
  local keys = {}
  for k in pairs(s or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  check.eq(keys, KEYS, "summary.json: " .. set .. " has exactly the four keys")
  local all_finite = true
  for _, k in ipairs(KEYS) do all_finite = all_finite and finite(s[k]) end
  check.ok(all_finite, "summary.json: %s values are finite numbers", set)
end
check.eq(summary.relations, 3, "summary.json: 3 relations")
check.eq(summary.facts, 10, "summary.json: 10 facts")
check.eq(summary.prompts, 43, "summary.json: 43 prompts")

local prov = json.decode(slurp(dir .. "provenance.json"))
check.ok(type(prov.model_sha256) == "string" and #prov.model_sha256 == 64, "provenance: model sha256")
check.eq(prov.seed, 42, "provenance: seed")
check.ok(math.type(prov.threads) == "integer", "provenance: threads")
check.ok(slurp(dir .. "relations.tsv"):find("relation\tlabel\tset\tsuppress %\tamplify %\tsuppress dlogp\tamplify dlogp\tmean p0\tfacts\tprompts", 1, true) == 1,
  "relations.tsv has the documented columns")
check.ok(slurp(dir .. "suppress.svg"):find("<svg", 1, true) and slurp(dir .. "suppress.svg"):find("off-target", 1, true),
  "suppress.svg is an SVG with the off-target series")

local results = lines_of(dir .. "results.jsonl")
check.eq(#results, 40, "results.jsonl: one line per fact and set (10 x 4)")
local by = {}
for _, l in ipairs(results) do by[l.relation .. "#" .. l.fact .. "#" .. l.set] = l end

-- The headline, recomputed from results.jsonl with the metrics.
local rows = {}
for _, l in ipairs(results) do
  if l.set == "kn" then
    for j = 1, #l.p0 do rows[#rows + 1] = { relation = l.relation, p0 = l.p0[j], p = l.p_suppress[j], logp0 = l.logp0[j], logp = l.logp_suppress[j] } end
  end
end
local again = M.change_summary(rows)
check.near(100 * again.ratio, summary.kn.suppress_pct, 1e-9, "summary kn.suppress_pct = mean over relations of ratio of means, from results.jsonl")
check.near(again.dlog, summary.kn.suppress_dlogp, 1e-12, "summary kn.suppress_dlogp from results.jsonl")

-- The bootstrap interval, recomputed from results.jsonl: facts resampled within relations, from the
-- stream (seed 42, "bootstrap", "kn", "suppress").
do
  local random = require "knwb.random"
  local keyed = {}
  for _, l in ipairs(results) do
    if l.set == "kn" then
      for j = 1, #l.p0 do keyed[#keyed + 1] = { relation = l.relation, fact = l.fact, p0 = l.p0[j], p = l.p_suppress[j] } end
    end
  end
  -- the run keys facts by relation, index, subject and object; within a relation the index alone is
  -- as unique, and results.jsonl lists facts in the run's order
  local lo, hi = M.bootstrap_ratio(keyed, random.rng(42, "bootstrap", "kn", "suppress"))
  local ci = summary.ci and summary.ci.kn.suppress or {}
  check.ok(ci[1] and math.abs(ci[1] - 100 * lo) < 1e-9 and math.abs(ci[2] - 100 * hi) < 1e-9,
    "summary ci.kn.suppress = the bootstrap over results.jsonl's facts ([%s, %s])", tostring(ci[1]), tostring(ci[2]))
  local all_ci = true
  for _, name in ipairs { "kn", "baseline", "random", "off_target" } do
    for _, op in ipairs { "suppress", "amplify" } do
      local c = summary.ci and summary.ci[name][op]
      all_ci = all_ci and type(c) == "table" and c[1] <= c[2]
    end
  end
  check.ok(all_ci, "every set and operation has an interval lo <= hi")
  check.eq(summary.bootstrap, { resamples = 1000, level = 0.95 }, "summary.json names the bootstrap settings")
  check.ok(slurp(dir .. "summary.md"):find("In brackets: the 95% percentile bootstrap interval", 1, true) ~= nil,
    "summary.md explains the brackets")
end

-- By confidence: the bins partition the prompts, and a bin's numbers are the metric over the
-- prompts whose p0 falls in it, recomputed from results.jsonl.
local function confidence_checks(sm, label)
  local bc = sm.by_confidence or { bins = {} }
  local n = 0
  for _, b in ipairs(bc.bins) do n = n + b.prompts end
  check.eq(n, 43, ("by_confidence (%s): the bins hold all 43 prompts once"):format(label))
  local same, tried = true, 0
  for _, b in ipairs(bc.bins) do
    if b.prompts > 0 then
      local sub = {}
      for _, l in ipairs(results) do
        if l.set == "kn" then
          for j = 1, #l.p0 do
            local p0 = l.p0[j]
            if p0 >= b.lo and (p0 < b.hi or (b.hi == bc.edges[#bc.edges] and p0 <= b.hi)) then
              sub[#sub + 1] = { relation = l.relation, p0 = p0, p = l.p_amplify[j] }
            end
          end
        end
      end
      tried = tried + 1
      same = same and #sub == b.prompts and math.abs(100 * M.change_summary(sub).ratio - b.kn.amplify_pct) < 1e-9
    end
  end
  check.ok(tried > 0 and same, "by_confidence (%s): every non-empty bin's kn amplify_pct recomputed from results.jsonl (%d bins)",
    label, tried)
end
check.eq((summary.by_confidence or {}).edges, { 0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0 }, "by_confidence: the default edges")
confidence_checks(summary, "default edges")
check.ok(slurp(dir .. "confidence.svg") ~= nil and slurp(dir .. "summary.md"):find("within bins of p0", 1, true) ~= nil,
  "by_confidence: confidence.svg and a summary.md table")

-- Per-line properties.
local same_base, empty_ok, random_ok, other_ok = true, true, true, true
for _, l in ipairs(results) do
  local k = by[l.relation .. "#" .. l.fact .. "#kn"]
  if l.set == "baseline" or l.set == "random" then same_base = same_base and check.equal(l.p0, k.p0) end
  if #l.neurons == 0 then empty_ok = empty_ok and check.equal(l.p_suppress, l.p0) and check.equal(l.p_amplify, l.p0) end
  if l.set == "random" then
    local seen = {}
    random_ok = random_ok and #l.neurons == #k.neurons
    for j, n in ipairs(l.neurons) do
      random_ok = random_ok and n[1] == k.neurons[j][1] and not seen[n[1] * 1000 + n[2]]
      seen[n[1] * 1000 + n[2]] = true
    end
  end
  if l.set == "off_target" then
    other_ok = other_ok and l.other and l.other.relation ~= l.relation and check.equal(l.neurons, k.neurons)
      and check.equal(l.p0, by[l.other.relation .. "#" .. l.other.fact .. "#kn"].p0)
  end
end
check.ok(same_base, "kn, baseline and random lines of a fact share p0")
check.ok(empty_ok, "a set without neurons leaves p unchanged")
check.ok(random_ok, "random neurons are distinct and in the layers of the fact's knowledge neurons")
check.ok(other_ok, "off-target: the fact's neurons on the prompts of a fact of another relation")

-- The first fact's kn line against the API: its prompts and neurons, scored by model:with.
local set = knwb.facts.load { facts = FACTS, templates = TEMPLATES }
local rel = knwb.facts.relation(set, "R1")
local line = by["R1#1#kn"]
local its = {}
for j, p in ipairs(knwb.facts.prompts(rel, rel.facts[1], "all")) do its[j] = model:item(p.text, rel.facts[1].object) end
check.eq(line.p_suppress, ps(model:with({ suppress = line.neurons }, function() return model:score(its) end)),
  "results.jsonl p_suppress of a fact = model:with({suppress = its neurons}) on its prompts")

-- Seen (training-template) and unseen (held-out-template) prompts apart, recomputed from
-- results.jsonl and the templates' held_out flags; the off-target lines score the other fact's prompts.
local bp = summary.by_prompts or {}
check.ok(bp.seen and bp.unseen, "summary.json: by_prompts has seen and unseen")
local flags = {}
for _, r in ipairs(set.relations) do
  flags[r.id] = {}
  for j, t in ipairs(r.templates) do flags[r.id][j] = t.held_out end
end
local sub = { seen = {}, unseen = {} }
for _, kind in ipairs { "seen", "unseen" } do for _, name in ipairs(SETS) do sub[kind][name] = { suppress = {}, amplify = {} } end end
for _, l in ipairs(results) do
  local src = l.set == "off_target" and l.other.relation or l.relation
  for j = 1, #l.p0 do
    local kind = flags[src][j] and "unseen" or "seen"
    table.insert(sub[kind][l.set].suppress, { relation = l.relation, p0 = l.p0[j], p = l.p_suppress[j], logp0 = l.logp0[j], logp = l.logp_suppress[j] })
    table.insert(sub[kind][l.set].amplify, { relation = l.relation, p0 = l.p0[j], p = l.p_amplify[j], logp0 = l.logp0[j], logp = l.logp_amplify[j] })
  end
end
local bp_ok, bp_n = true, 0
for _, kind in ipairs { "seen", "unseen" } do
  for _, name in ipairs(SETS) do
    local want_s, want_a = M.change_summary(sub[kind][name].suppress), M.change_summary(sub[kind][name].amplify)
    local got = bp[kind] and bp[kind][name] or {}
    bp_n = bp_n + 1
    bp_ok = bp_ok and math.abs(100 * want_s.ratio - (got.suppress_pct or 1e9)) < 1e-9
      and math.abs(100 * want_a.ratio - (got.amplify_pct or 1e9)) < 1e-9
      and math.abs(want_a.dlog - (got.amplify_dlogp or 1e9)) < 1e-12
  end
end
check.ok(bp_ok, "by_prompts: all %d (kind, set) results equal the recomputation from results.jsonl and held_out flags", bp_n)
check.eq((bp.seen and bp.seen.prompts or 0) + (bp.unseen and bp.unseen.prompts or 0), 43, "by_prompts: seen + unseen prompts = all 43")
check.eq(bp.unseen and bp.unseen.prompts, #sub.unseen.kn.suppress, "by_prompts: unseen = the prompts of held-out templates")
check.ok(out:find("unseen prompts (held-out templates)", 1, true) ~= nil, "stdout gives the unseen-prompt result")
do
  local chart = slurp(dir .. "prompts.svg") or ""
  local want = ("x2, unseen (%d)"):format(bp.unseen and bp.unseen.prompts or -1)
  check.ok(chart:find("<svg", 1, true) and chart:find(want, 1, true) and chart:find("x0, seen", 1, true)
    and chart:find("knowledge neurons", 1, true) and chart:find("off-target", 1, true),
    "prompts.svg charts seen against unseen prompts for both operations and every set (%s)", want)
end

-- The dose-response sweep (default factors 0, 0.5, 1.5, 2, 3, 4): x0 is suppression and x2 the
-- amplification of the main pass, for every set, though computed in a separate pass.
check.ok(slurp(dir .. "sweep.tsv") and slurp(dir .. "sweep.svg"), "the run directory holds sweep.tsv and sweep.svg")
local fs = summary.sweep and summary.sweep.factors or {}
local same_factors = #fs == 6
for k, a in ipairs { 0, 0.5, 1.5, 2, 3, 4 } do same_factors = same_factors and fs[k] == a end
check.ok(same_factors, "summary.json: sweep.factors are the defaults (0, 0.5, 1.5, 2, 3, 4)")
local curve = {}
for _, c in ipairs(summary.sweep and summary.sweep.curves or {}) do curve[c.set] = c end
for _, name in ipairs { "kn", "baseline", "random" } do
  local c = curve[name]
  check.ok(c and math.abs(c.pct[1] - summary[name].suppress_pct) <= 1e-9 and math.abs(c.pct[4] - summary[name].amplify_pct) <= 1e-9
    and math.abs(c.dlogp[1] - summary[name].suppress_dlogp) <= 1e-12,
    "sweep: %s at x0 = its suppress_pct and at x2 = its amplify_pct", name)
end
local layers_kn, layer_curves = {}, {}
for _, l in ipairs(results) do
  if l.set == "kn" then for _, n in ipairs(l.neurons) do layers_kn["kn_layer_" .. n[1]] = true end end
end
for k in pairs(curve) do if k:find("^kn_layer_") then layer_curves[k] = true end end
check.ok(next(layers_kn) ~= nil and check.equal(layer_curves, layers_kn),
  "sweep.by_layer: one curve per layer holding knowledge neurons, and no other")
check.ok(slurp(dir .. "summary.md"):find("Dose-response", 1, true) ~= nil, "summary.md has the dose-response table")

-- Reusing the neurons: the same numbers, no attribution.
ok, out, err = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --out " .. q(tmp .. "/reuse"))
check.ok(ok, "a run reusing neurons.jsonl succeeds")
local s2 = json.decode(slurp(tmp .. "/reuse/summary.json"))
local same = true
for _, set_name in ipairs(SETS) do same = same and check.equal(s2[set_name], summary[set_name]) end
check.ok(same, "reusing the neurons (and the same seed) reproduces the summary exactly")
check.eq(json.decode(slurp(tmp .. "/reuse/provenance.json")).neurons, dir .. "neurons.jsonl", "provenance names the neurons file used")

-- Another control seed: other random neurons, the same knowledge neurons.
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set controls.random_seed=7 --out " .. q(tmp .. "/seed7"))
local r7 = lines_of(tmp .. "/seed7/results.jsonl")
local kn_same, random_differs = true, false
for _, l in ipairs(r7) do
  local o = by[l.relation .. "#" .. l.fact .. "#" .. l.set]
  if l.set == "kn" then kn_same = kn_same and check.equal(l.neurons, o.neurons) end
  if l.set == "random" and not check.equal(l.neurons, o.neurons) then random_differs = true end
end
check.ok(ok and kn_same and random_differs, "controls.random_seed changes the random neurons, not the knowledge neurons")

-- One relation: no other relation, so the off-target control is empty (changes 0).
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set 'facts.relations=[R2]' --out " .. q(tmp .. "/one"))
local so = json.decode(slurp(tmp .. "/one/summary.json"))
check.ok(ok and so.off_target_mode == "none" and so.off_target.suppress_pct == 0 and so.relations == 1,
  "one relation: off-target control reported as none, with changes 0")
local row = summary.per_relation.R2.kn
check.eq(so.kn, { suppress_pct = row.suppress_pct, amplify_pct = row.amplify_pct, suppress_dlogp = row.suppress_dlogp,
  amplify_dlogp = row.amplify_dlogp }, "a one-relation run reproduces that relation's values in the full run")

-- The other off-target control: another relation's fact's neurons on this fact's prompts.
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set controls.off_target=other_neurons --out "
  .. q(tmp .. "/on"))
local on_ok = ok
for _, l in ipairs(lines_of(tmp .. "/on/results.jsonl")) do
  if l.set == "off_target" then
    on_ok = on_ok and l.other.relation ~= l.relation and check.equal(l.p0, by[l.relation .. "#" .. l.fact .. "#kn"].p0)
      and check.equal(l.neurons, by[l.other.relation .. "#" .. l.other.fact .. "#kn"].neurons)
  end
end
check.ok(on_ok, "off_target = other_neurons: another relation's fact's neurons on the fact's own prompts")

-- Amplifying by 1 changes nothing, in every set.
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set factor=1 --out " .. q(tmp .. "/f1"))
local s1 = json.decode(slurp(tmp .. "/f1/summary.json"))
local zero_all = true
for _, set_name in ipairs(SETS) do
  zero_all = zero_all and s1[set_name].amplify_pct == 0 and s1[set_name].amplify_dlogp == 0
end
check.ok(ok and zero_all, "factor 1: amplify_pct and amplify_dlogp are exactly 0 for every set")

-- A sweep at x1 changes nothing; an empty sweep writes no sweep; a negative factor is refused.
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set 'sweep.factors=[1, 0]' --set sweep.by_layer=false --out "
  .. q(tmp .. "/sw1"))
local ss = json.decode(slurp(tmp .. "/sw1/summary.json"))
local at1 = ok and #ss.sweep.curves == 3
for _, c in ipairs(ss.sweep.curves) do at1 = at1 and c.pct[1] == 0 and c.dlogp[1] == 0 end
check.ok(at1, "sweep: factor 1 gives exactly 0 for every set; by_layer=false leaves out the layer curves")
check.near(ss.sweep.curves[1].pct[2], summary.kn.suppress_pct, 1e-9, "sweep: the factors are measured in the order given")
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set 'sweep.factors=[]' --set bootstrap.resamples=0 --out "
  .. q(tmp .. "/sw0"))
local s0 = ok and json.decode(slurp(tmp .. "/sw0/summary.json")) or {}
check.ok(ok and s0.sweep == nil and slurp(tmp .. "/sw0/sweep.svg") == nil, "sweep.factors = [] turns the sweep off")
check.ok(ok and s0.bootstrap == nil and s0.ci == nil and s0.kn.suppress_pct == summary.kn.suppress_pct,
  "bootstrap.resamples = 0 turns the intervals off and changes no number")
-- edges at the quartiles of this run's p0, so that every bin holds prompts
do
  local p0s = {}
  for _, l in ipairs(results) do if l.set == "kn" then for _, p in ipairs(l.p0) do p0s[#p0s + 1] = p end end end
  table.sort(p0s)
  local e = { 0, p0s[11], p0s[22], p0s[33], 1 }
  local edges = ("[%s]"):format(table.concat({ "0", ("%.17g"):format(e[2]), ("%.17g"):format(e[3]), ("%.17g"):format(e[4]), "1" }, ", "))
  ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set 'sweep.factors=[]' --set 'by_confidence="
    .. edges .. "' --out " .. q(tmp .. "/bcq"))
  local sq = ok and json.decode(slurp(tmp .. "/bcq/summary.json")) or {}
  local full = 0
  for _, b in ipairs((sq.by_confidence or { bins = {} }).bins) do if b.prompts > 0 then full = full + 1 end end
  check.eq(full, 4, "by_confidence at the quartiles of p0: 4 bins with prompts")
  confidence_checks(sq, "quartile edges")
end
ok = script(BASE .. " --set neurons=" .. q(dir .. "neurons.jsonl") .. " --set 'sweep.factors=[]' --set 'by_confidence=[]' --out "
  .. q(tmp .. "/bc0"))
check.ok(ok and json.decode(slurp(tmp .. "/bc0/summary.json")).by_confidence == nil and slurp(tmp .. "/bc0/confidence.svg") == nil,
  "by_confidence = [] turns the bins off")
ok, out, err = script(BASE .. " --set 'by_confidence=[0, 0.5, 0.3, 1]' --out " .. q(tmp .. "/bc1"))
check.ok(not ok and err:find("by_confidence: the bin edges must increase, but item 3 (0.3) is not above item 2 (0.5)", 1, true),
  "bin edges that do not increase are refused, naming the items (%s)", (err:gsub("\n.*", "")))
ok, out, err = script(BASE .. " --set 'by_confidence=[0, 1.5]' --out " .. q(tmp .. "/bc2"))
check.ok(not ok and err:find("by_confidence", 1, true), "an edge above 1 is refused by name (%s)", (err:gsub("\n.*", "")))
ok, out, err = script(BASE .. " --set 'sweep.factors=[2, -1]' --out " .. q(tmp .. "/sw2"))
check.ok(not ok and err:find("sweep.factors", 1, true), "a negative sweep factor is refused by name")

-- Resuming: the same config and directory scores nothing again.
ok, out, err = script(BASE .. " --out " .. q(tmp .. "/run"))
check.ok(ok and err:find("43 of 43 prompts already scored", 1, true), "a second run in the same directory resumes")
check.eq(json.decode(slurp(dir .. "summary.json")).kn, summary.kn, "the resumed run reports the same numbers")
check.eq(#lines_of(dir .. "results.jsonl"), 40, "the resumed run adds no lines")
check.ok(err:find("resuming the sweep: 43 of 43 prompts already scored", 1, true), "the sweep resumes too, scoring nothing again")
check.eq(json.decode(slurp(dir .. "summary.json")).sweep, summary.sweep, "the resumed sweep reports the same numbers")
-- a sweep cut off after 4 facts, in the middle of the 5th line, is finished from there, bit-identical
local sweep_lines = {}
for line in io.lines(dir .. "sweep.jsonl") do sweep_lines[#sweep_lines + 1] = line end
check.eq(#sweep_lines, 10, "sweep.jsonl: one line per fact")
local f = assert(io.open(dir .. "sweep.jsonl", "w"))
f:write(table.concat(sweep_lines, "\n", 1, 4) .. "\n" .. sweep_lines[5]:sub(1, 30))
f:close()
ok, out, err = script(BASE .. " --out " .. q(tmp .. "/run"))
local n_first4 = 0
for k = 1, 4 do n_first4 = n_first4 + json.decode(sweep_lines[k]).sums.kn[1][4] end
check.ok(ok and err:find(("resuming the sweep: %d of 43 prompts"):format(n_first4), 1, true) ~= nil,
  "an interrupted sweep resumes from the %d prompts of the 4 facts it finished", n_first4)
check.eq(json.decode(slurp(dir .. "summary.json")).sweep, summary.sweep, "the finished sweep equals the uninterrupted one exactly")
local after = {}
for line in io.lines(dir .. "sweep.jsonl") do after[#after + 1] = line end
check.eq(#after, 10, "sweep.jsonl holds 10 whole lines again")
ok, out, err = script(BASE .. " --set factor=3 --out " .. q(tmp .. "/run"))
check.ok(not ok and err:find("holds results of a run with another config", 1, true), "resuming with another config is refused")

-- Bad input.
local missing = tmp .. "/no/such/neurons.jsonl"
ok, out, err = script(BASE .. " --set neurons=" .. q(missing) .. " --out " .. q(tmp .. "/bad1"))
check.ok(not ok, "a missing neurons file fails the run")
check.ok(err:find("neurons file " .. missing .. " does not exist", 1, true), "the error names the missing neurons file")
check.eq(slurp(tmp .. "/bad1/config.yaml"), nil, "a run refused for bad input leaves no run directory behind")
ok, out, err = script(BASE .. " --set 'facts.relations=[R1, R9]' --out " .. q(tmp .. "/bad2"))
check.ok(not ok and err:find('unknown relation "R9"', 1, true), "an unknown relation is refused by name")
ok, out, err = script(BASE .. " --set factor=-1 --out " .. q(tmp .. "/bad3"))
check.ok(not ok and err:find("factor", 1, true), "a negative factor is refused")
ok, out = script("--help")
check.ok(ok and out:find("controls.off_target", 1, true) and out:find("factor", 1, true) and out:find("neurons", 1, true),
  "--help lists the experiment's settings")

os.execute("rm -rf " .. q(tmp))
check.done()
