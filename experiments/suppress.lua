-- suppress.lua: suppress and amplify the knowledge neurons of every fact (Dai et al. section 4.3).
--   knwb experiments/suppress.lua [configs/suppress.yaml] [--set neurons=runs/attribute-.../neurons.jsonl] [--out DIR]
-- For every fact and each of its prompts: P(gold) of the unmodified model (p0), then with the
-- fact's neurons set to 0 at the [MASK] position in all layers at once (suppress), then multiplied
-- by `factor` (amplify). Four neuron sets are measured the same way: the fact's knowledge neurons
-- (kn), the activation baseline's (baseline), as many random neurons in the same layers (random),
-- and an off-target control (off_target, see controls.off_target). Per relation the change is a
-- ratio of means, mean(p - p0) / mean(p0) over all its prompts (a fact without neurons counts
-- as change 0); the headline is the unweighted mean over relations, in percent, with the mean
-- change of ln P(gold) beside it.
--
-- The run directory holds:
--   config.yaml, provenance.json
--   neurons.jsonl     the neurons used, when computed here (reusable: --set neurons=...)
--   results.jsonl     one line per fact and neuron set: relation, fact (index in the relation),
--                     subject, object, set, neurons, and per prompt the lists p0, p_suppress,
--                     p_amplify, logp0, logp_suppress, logp_amplify (natural log). Off-target
--                     lines name the fact whose prompts (other_prompts) or neurons
--                     (other_neurons) were used under "other".
--   relations.tsv/.md per relation and set: suppress %, amplify %, suppress dlogp, amplify dlogp,
--                     mean p0, facts, prompts, neurons per fact; and the mean over relations
--   summary.json      {kn = {suppress_pct, amplify_pct, suppress_dlogp, amplify_dlogp},
--                     baseline = ..., random = ..., off_target = ...} and run totals; with split
--                     "all", by_prompts = {seen = {prompts, mean_p0, kn = ..., ...}, unseen = ...}:
--                     the same for training-template and held-out-template prompts apart;
--                     ci = {kn = {suppress = {lo, hi}, amplify = ...}, ...} (and in each
--                     by_prompts kind): percentile bootstrap intervals over facts (bootstrap.*)
--   summary.md, suppress.svg, amplify.svg (one bar group per relation, one bar per set),
--   prompts.svg       seen against unseen prompts, both operations, every set (split "all")
--   confidence.svg    the same changes within bins of p0 (by_confidence; summary.json
--                     by_confidence = {edges, bins = {{lo, hi, prompts, mean_p0, kn = ..., ci}, ...}})
--   sweep.jsonl       per fact and sweep curve, per factor: sums over its prompts of p - p0, p0,
--                     ln p - ln p0 and the prompt count (what the sweep's means are made of)
--   sweep.tsv/.md, sweep.svg  the dose-response curve (sweep.factors): the change with the knowledge,
--                     baseline and random neurons scaled by each factor, and (sweep.by_layer) with the
--                     knowledge neurons of one layer scaled alone; also in summary.json under sweep
-- An interrupted run resumes when started again with the same config and --out: facts already
-- in results.jsonl are not scored again.
local knwb = require "knwb"
local cli = require "knwb.cli"
local S = require "knwb.schemas"
local M = require "knwb.metrics"
local random = require "knwb.random"
local neurons = require "knwb.neurons"
local json = require "knwb.json"
local t_start = knwb.core.now()

local SETS = { "kn", "baseline", "random", "off_target" }
local SET_NAMES = { kn = "knowledge neurons", baseline = "activation baseline", random = "random (same layers)",
  off_target = "off-target" }

local schema = S.record {
  model = S.model, facts = S.facts, attribution = S.attribution, refine = S.refine, seed = S.seed,
  neurons = { type = "string", default = "",
    doc = "neurons.jsonl from attribute.lua to reuse (empty, or another model's: computed here, "
      .. "through the attribution cache)" },
  factor = { type = "number", min = 0, default = 2, doc = "amplify multiplies the neurons' activations by this (paper: 2)" },
  batch = { type = "integer", min = 0, default = 0, doc = "prompts per forward pass (0: the engine's maximum)" },
  sweep = { type = "record", doc = "the dose-response curve: the same change of P(gold) with the neurons scaled by each "
    .. "factor in turn (sweep.tsv/.md/.svg, summary.json under sweep)", fields = {
    factors = { type = "list", of = { type = "number", min = 0 }, max_items = 32, default = { 0, 0.5, 1.5, 2, 3, 4 },
      doc = "scales to apply to the knowledge, baseline and random neurons (empty: no sweep; 0 is suppression)" },
    by_layer = { type = "boolean", default = true,
      doc = "also scale the knowledge neurons of each layer alone (the others left as they are)" },
  } },
  by_confidence = { type = "list", of = { type = "number", min = 0, max = 1 }, max_items = 32,
    default = { 0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1 },
    doc = "increasing edges of bins of the unmodified model's P(gold): the same changes within each bin "
      .. "(summary.json by_confidence, confidence.svg); empty: none" },
  bootstrap = { type = "record", doc = "percentile bootstrap intervals for every change of P(gold), resampling "
    .. "facts within each relation (summary.json ci, summary.md, stdout)", fields = {
    resamples = { type = "integer", min = 0, default = 1000, doc = "resamples (0: no intervals)" },
    level = { type = "number", min = 0.5, lt = 1, default = 0.95, doc = "coverage of the interval" },
  } },
  controls = { type = "record", doc = "the control neuron sets", fields = {
    random_seed = { type = "integer", min = 0, optional = true,
      doc = "seed of the random and off-target draws (absent: seed)" },
    random_avoid_kn = { type = "boolean", default = false,
      doc = "random neurons never coincide with the fact's own knowledge neurons" },
    off_target = { type = "enum", values = { "other_prompts", "other_neurons" }, default = "other_prompts",
      doc = "other_prompts: the fact's neurons on the prompts of a random fact of a random other relation "
        .. "(the official code's 'oth'); other_neurons: that fact's neurons on this fact's prompts" },
  } },
}

local opts = cli.parse(arg, {
  name = "suppress", description = "Suppress and amplify the knowledge neurons of every fact and measure the "
    .. "change of P(gold), against activation-baseline, random and off-target neurons (paper section 4.3).",
  config = "configs/suppress.yaml", schema = schema,
})
local cfg = opts.cfg

local X = require "knwb.experiment"
local function fail(msg) X.refuse("suppress", msg) end

---------------------------------------------------------------------------------------------------
-- Inputs: model, facts, neurons.

for k = 2, #cfg.by_confidence do
  if not (cfg.by_confidence[k] > cfg.by_confidence[k - 1]) then
    fail(("by_confidence: the bin edges must increase, but item %d (%g) is not above item %d (%g)"):format(
      k, cfg.by_confidence[k], k - 1, cfg.by_confidence[k - 1]))
  end
end
if #cfg.by_confidence == 1 then fail("by_confidence: give at least two bin edges (or none)") end

if cfg.neurons ~= "" and not X.exists(cfg.neurons) then
  fail(("neurons file %s does not exist (the neurons setting names a neurons.jsonl written by "
    .. "experiments/attribute.lua; leave it empty to compute the neurons)"):format(cfg.neurons))
end

local model = X.load_model("suppress", cfg.model)
local set = X.load_facts("suppress", cfg.facts, model)
local ok, err

-- The run directory, made once the inputs are known to be good.
local run = knwb.run.new { experiment = "suppress", out = opts.out }

-- Resuming: results already in the directory must come from the same config.
local resumed = X.resume("suppress", run, cfg, "results.jsonl")

local neurons_path = cfg.neurons
if neurons_path == "" and run:exists("neurons.jsonl") then neurons_path = run:path("neurons.jsonl") end
local records, source
ok, err = pcall(function() records, source = neurons.load_or_compute(model, set, cfg, neurons_path) end)
if not ok then fail(err) end
if source == "computed" then
  neurons.write(run:path("neurons.jsonl"), records, model, { config = cfg })
end

local F = model:config().intermediate_size
local cseed = cfg.controls.random_seed or cfg.seed
local batch = cfg.batch > 0 and cfg.batch or nil

---------------------------------------------------------------------------------------------------
-- The facts, their records and prompts.

local facts_list, facts_of = X.fact_entries("suppress", set, records) -- { rel=, b=, fact=, rec=, key= } in order

-- Items and base probabilities, made once per fact (an off-target fact is used again later).
local function items(e)
  if not e.items then e.items = neurons.items_of(model, e.rel, e.fact, cfg.facts.split) end
  return e.items
end

local function base(e)
  if not e.base then
    local p, lp = {}, {}
    for j, r in ipairs(model:score(items(e), { batch = batch })) do p[j], lp[j] = r.p, r.logp end
    e.base = { p = p, logp = lp }
  end
  return e.base
end

-- A random fact of a random other relation, drawn from the fact's own stream.
local other_relations = #set.relations > 1
local function off_target_fact(e)
  if not other_relations then return nil end
  local rng = random.rng(cseed, "off_target", e.rel.id, e.b, e.fact.subject, e.fact.object)
  local others = {}
  for _, r in ipairs(set.relations) do
    if r.id ~= e.rel.id then others[#others + 1] = r end
  end
  local rel = rng:choice(others)
  return rng:choice(facts_of[rel.id])
end

-- The random control: as many neurons as the fact's knowledge neurons, in the same layers, drawn
-- from the fact's own stream (so the sweep below draws the same ones).
local function random_of(e)
  return X.random_control(e, e.rec.kn, F, cseed, cfg.controls.random_avoid_kn and e.rec.kn or nil)
end

local function plain(list)
  local out = {}
  for k, n in ipairs(list) do out[k] = { n[1], n[2] } end
  return out
end

---------------------------------------------------------------------------------------------------
-- Scoring.

local done = {}
for _, line in ipairs(resumed) do
  local k = X.line_key(line)
  done[k] = done[k] or {}
  done[k][line.set] = true
end

local total, pending = 0, 0
for _, e in ipairs(facts_list) do
  local n = #items(e)
  total = total + n
  local d = done[e.key]
  e.done = d and d.kn and d.baseline and d.random and d.off_target
  if not e.done then pending = pending + n end
end
if not other_relations then
  io.stderr:write("suppress: only one relation, so there is no off-target control (its changes are 0)\n")
end
if pending < total then
  io.stderr:write(("suppress: resuming in %s: %d of %d prompts already scored\n"):format(run.dir, total - pending, total))
end

local out <close> = run:jsonl("results.jsonl")
-- The sweep that follows has its own bar; its cost is estimated here in this bar's units (a
-- prompt here takes about 9 forward passes: p0, and suppress and amplify for 4 sets; one there
-- takes one per curve and factor other than 1), so the first ETA covers the whole run.
local sweep_estimate
if #cfg.sweep.factors > 0 then
  local nf, present, ncurves = 0, {}, 3
  for _, a in ipairs(cfg.sweep.factors) do if a ~= 1 then nf = nf + 1 end end
  if cfg.sweep.by_layer then
    for _, e in ipairs(facts_list) do for _, n in ipairs(e.rec.kn) do present[n[1]] = true end end
    for _ in pairs(present) do ncurves = ncurves + 1 end
  end
  sweep_estimate = total * ncurves * nf / 9
end
local bar = knwb.progress.new("suppress", pending, { unit = "prompts", after = sweep_estimate, after_label = "sweep" })
local t0 = knwb.core.now()
for _, e in ipairs(facts_list) do
  if not e.done then
    local sets = {
      kn = { neurons = e.rec.kn, on = e },
      baseline = { neurons = e.rec.baseline, on = e },
      random = { neurons = random_of(e), on = e },
    }
    local o = off_target_fact(e)
    if not o then
      sets.off_target = { neurons = {}, on = e }
    elseif cfg.controls.off_target == "other_prompts" then
      sets.off_target = { neurons = e.rec.kn, on = o, other = o }
    else
      sets.off_target = { neurons = o.rec.kn, on = e, other = o }
    end
    for _, name in ipairs(SETS) do
      local s = sets[name]
      local r = M.effects(model, items(s.on), s.neurons, { factor = cfg.factor, batch = batch, base = base(s.on) })
      local line = { relation = e.rel.id, label = e.rel.label, fact = e.b, subject = e.fact.subject,
        object = e.fact.object, set = name, neurons = plain(s.neurons), p0 = r.p0, p_suppress = r.p_suppress,
        p_amplify = r.p_amplify, logp0 = r.logp0, logp_suppress = r.logp_suppress, logp_amplify = r.logp_amplify }
      if s.other then
        line.other = { relation = s.other.rel.id, fact = s.other.b, subject = s.other.fact.subject,
          object = s.other.fact.object, use = cfg.controls.off_target }
      end
      out:write(line)
    end
    bar:step(#items(e))
  end
end
bar:done()
out:close()
local seconds = knwb.core.now() - t0

---------------------------------------------------------------------------------------------------
-- Aggregation, from results.jsonl (so a resumed run counts the earlier lines the same way).

local wanted = {}
for _, e in ipairs(facts_list) do wanted[e.key] = e end
local lines = {}
for _, line in ipairs(run:read_jsonl("results.jsonl")) do
  local k = X.line_key(line)
  if wanted[k] then lines[k .. "\t" .. line.set] = line end -- the last line of a fact and set wins
end

local rel_by_id = {}
for _, r in ipairs(set.relations) do rel_by_id[r.id] = r end
local function other_items(o)
  local r = rel_by_id[o.relation]
  local f = r and r.facts[o.fact]
  return f and neurons.items_of(model, r, f, cfg.facts.split) or {}
end

local rows = {}           -- set -> op -> prompt rows
local nfacts, nneurons, nprompts = {}, {}, {} -- set -> relation -> count
for _, name in ipairs(SETS) do
  rows[name] = { suppress = {}, amplify = {} }
  nfacts[name], nneurons[name], nprompts[name] = {}, {}, {}
end
for _, e in ipairs(facts_list) do
  for _, name in ipairs(SETS) do
    local line = lines[e.key .. "\t" .. name]
    if not line then fail(("results.jsonl lacks fact %s %d (%s) for set %s"):format(e.rel.id, e.b, e.fact.subject, name)) end
    local id = e.rel.id
    nfacts[name][id] = (nfacts[name][id] or 0) + 1
    nneurons[name][id] = (nneurons[name][id] or 0) + #line.neurons
    nprompts[name][id] = (nprompts[name][id] or 0) + #line.p0
    -- the off-target control with other_prompts scores another fact's prompts; the others, this fact's
    local its = items(e)
    if name == "off_target" and line.other and line.other.use == "other_prompts" then its = other_items(line.other) end
    for j = 1, #line.p0 do
      local held = its[j] and its[j].held_out
      table.insert(rows[name].suppress, { relation = id, fact = e.key, p0 = line.p0[j], p = line.p_suppress[j],
        logp0 = line.logp0[j], logp = line.logp_suppress[j], held_out = held })
      table.insert(rows[name].amplify, { relation = id, fact = e.key, p0 = line.p0[j], p = line.p_amplify[j],
        logp0 = line.logp0[j], logp = line.logp_amplify[j], held_out = held })
    end
  end
end

-- A change summary of prompt rows, with its bootstrap interval (facts resampled within relations,
-- each draw from its own stream named by what it measures).
local function summarize(op_rows, ...)
  local r = M.change_summary(op_rows)
  if cfg.bootstrap.resamples > 0 then
    local lo, hi = M.bootstrap_ratio(op_rows, random.rng(cseed, "bootstrap", ...),
      { resamples = cfg.bootstrap.resamples, level = cfg.bootstrap.level })
    if lo then r.ci = { lo, hi } end
  end
  return r
end

local res = {}
for _, name in ipairs(SETS) do
  res[name] = { suppress = summarize(rows[name].suppress, name, "suppress"),
    amplify = summarize(rows[name].amplify, name, "amplify") }
end

-- Seen and unseen prompts apart: a model trained on some templates (held_out: false) sits at the
-- optimum of its loss on those sentences, so scaling a neuron there moves it off the optimum;
-- the paper's BERT never saw its PARAREL prompts. With split "all" and both kinds present, the
-- same measures are also given for the training-template and the held-out-template prompts.
local by_prompts
if cfg.facts.split == "all" then
  local kinds = { seen = false, unseen = true }
  local counts = { seen = 0, unseen = 0 }
  for _, r in ipairs(rows.kn.suppress) do
    if r.held_out == true then counts.unseen = counts.unseen + 1 elseif r.held_out == false then counts.seen = counts.seen + 1 end
  end
  if counts.seen > 0 and counts.unseen > 0 then
    by_prompts = {}
    for kind, held in pairs(kinds) do
      by_prompts[kind] = { prompts = counts[kind] }
      for _, name in ipairs(SETS) do
        local sub = { suppress = {}, amplify = {} }
        for _, op in ipairs({ "suppress", "amplify" }) do
          for _, r in ipairs(rows[name][op]) do if r.held_out == held then sub[op][#sub[op] + 1] = r end end
        end
        if #sub.suppress > 0 then
          by_prompts[kind][name] = { suppress = summarize(sub.suppress, kind, name, "suppress"),
            amplify = summarize(sub.amplify, kind, name, "amplify") }
        end
      end
    end
  end
end

-- By confidence: the same changes within bins of p0, the unmodified model's P(gold). The paper's
-- BERT is unsure of most PARAREL prompts; a model trained on its templates is sure of those. The
-- bins are [lo, hi), the last one closed; a relation with no prompt in a bin is left out of that
-- bin's mean over relations.
local by_confidence
if #cfg.by_confidence >= 2 then
  by_confidence = {}
  local edges = cfg.by_confidence
  for k = 1, #edges - 1 do
    local lo, hi, last = edges[k], edges[k + 1], k == #edges - 1
    local bin = { lo = lo, hi = hi, prompts = 0 }
    for _, name in ipairs(SETS) do
      local sub = { suppress = {}, amplify = {} }
      for _, op in ipairs({ "suppress", "amplify" }) do
        for _, r in ipairs(rows[name][op]) do
          if r.p0 >= lo and (r.p0 < hi or (last and r.p0 <= hi)) then sub[op][#sub[op] + 1] = r end
        end
      end
      if name == "kn" then bin.prompts = #sub.suppress end
      if #sub.suppress > 0 then
        bin[name] = { suppress = summarize(sub.suppress, "confidence", k, name, "suppress"),
          amplify = summarize(sub.amplify, "confidence", k, name, "amplify") }
      end
    end
    by_confidence[k] = bin
  end
end

local function num(x) return x == nil and json.null or x end
local function pct(x) return x == nil and "n/a" or ("%+.2f%%"):format(x) end
local function f4(x) return x == nil and "n/a" or ("%+.4f"):format(x) end
-- The interval in percent for summary.json (ci.<set>.<op> = [lo, hi], beside the issue's four keys
-- per set), and beside a value in text.
local function ci_pct(r) return r.ci and { M.percent(r.ci[1]), M.percent(r.ci[2]) } or nil end
local function pct_ci(r)
  if not r.ci then return pct(M.percent(r.ratio)) end
  return ("%s [%+.1f, %+.1f]"):format(pct(M.percent(r.ratio)), M.percent(r.ci[1]), M.percent(r.ci[2]))
end

local summary = { per_relation = {}, factor = cfg.factor, off_target_mode = other_relations and cfg.controls.off_target or "none",
  relations = #set.relations, facts = #facts_list, prompts = total, neurons = source, seconds = seconds,
  prompts_per_second = pending > 0 and seconds > 0 and pending / seconds or nil, neurons_per_fact = {}, facts_with_neurons = {},
  mean_p0 = res.kn.suppress.mean_p0,
  bootstrap = cfg.bootstrap.resamples > 0 and { resamples = cfg.bootstrap.resamples, level = cfg.bootstrap.level } or nil }
-- The four measures of every set of b (set name -> {suppress =, amplify =} change summaries)
-- into o, and their intervals into o.ci.
local function put_sets(o, b)
  for _, name in ipairs(SETS) do
    local x = b[name]
    if x then
      o[name] = { suppress_pct = num(M.percent(x.suppress.ratio)), amplify_pct = num(M.percent(x.amplify.ratio)),
        suppress_dlogp = num(x.suppress.dlog), amplify_dlogp = num(x.amplify.dlog) }
      if x.suppress.ci then
        o.ci = o.ci or {}
        o.ci[name] = { suppress = ci_pct(x.suppress), amplify = ci_pct(x.amplify) }
      end
    end
  end
  return o
end
if by_prompts then
  summary.by_prompts = {}
  for kind, b in pairs(by_prompts) do
    summary.by_prompts[kind] = put_sets({ prompts = b.prompts, mean_p0 = b.kn.suppress.mean_p0 }, b)
  end
end
if by_confidence then
  summary.by_confidence = { edges = cfg.by_confidence, bins = {} }
  for k, b in ipairs(by_confidence) do
    summary.by_confidence.bins[k] = put_sets({ lo = b.lo, hi = b.hi, prompts = b.prompts,
      mean_p0 = b.kn and b.kn.suppress.mean_p0 or nil }, b)
  end
end
for _, name in ipairs(SETS) do
  local s, a = res[name].suppress, res[name].amplify
  summary[name] = { suppress_pct = num(M.percent(s.ratio)), amplify_pct = num(M.percent(a.ratio)),
    suppress_dlogp = num(s.dlog), amplify_dlogp = num(a.dlog) }
  if s.ci then
    summary.ci = summary.ci or {}
    summary.ci[name] = { suppress = ci_pct(s), amplify = ci_pct(a) }
  end
  local with, count = 0, 0
  for _, line in pairs(lines) do
    if line.set == name then
      count = count + #line.neurons
      if #line.neurons > 0 then with = with + 1 end
    end
  end
  summary.neurons_per_fact[name] = #facts_list > 0 and count / #facts_list or 0
  summary.facts_with_neurons[name] = with
end

-- Per relation: one table row per relation and set, then the means over relations.
local trows = {}
for k, rel in ipairs(set.relations) do
  local pr = {}
  for _, name in ipairs(SETS) do
    local s, a = res[name].suppress.groups[k], res[name].amplify.groups[k]
    assert(s.relation == rel.id and a.relation == rel.id)
    trows[#trows + 1] = { relation = rel.id, label = rel.label, set = name, ["suppress %"] = M.percent(s.ratio),
      ["amplify %"] = M.percent(a.ratio), ["suppress dlogp"] = s.mean_dlog, ["amplify dlogp"] = a.mean_dlog,
      ["mean p0"] = s.mean_p0, facts = nfacts[name][rel.id], prompts = nprompts[name][rel.id],
      ["neurons per fact"] = nneurons[name][rel.id] / nfacts[name][rel.id] }
    pr[name] = { suppress_pct = num(M.percent(s.ratio)), amplify_pct = num(M.percent(a.ratio)),
      suppress_dlogp = num(s.mean_dlog), amplify_dlogp = num(a.mean_dlog), mean_p0 = s.mean_p0,
      facts = nfacts[name][rel.id], prompts = nprompts[name][rel.id] }
  end
  summary.per_relation[rel.id] = pr
end
for _, name in ipairs(SETS) do
  local s, a = res[name].suppress, res[name].amplify
  trows[#trows + 1] = { relation = "mean", label = "(unweighted over relations)", set = name,
    ["suppress %"] = M.percent(s.ratio), ["amplify %"] = M.percent(a.ratio), ["suppress dlogp"] = s.dlog,
    ["amplify dlogp"] = a.dlog, ["mean p0"] = s.mean_p0, facts = #facts_list, prompts = s.prompts,
    ["neurons per fact"] = summary.neurons_per_fact[name] }
end
local columns = { "relation", "label", "set", "suppress %", "amplify %", "suppress dlogp", "amplify dlogp", "mean p0",
  "facts", "prompts", "neurons per fact" }
run:table("relations", columns, trows)
run:write_json("summary.json", summary)

local md = {
  "# Suppressing and amplifying knowledge neurons",
  "",
  ("Model `%s`, %d relations, %d facts, %d prompts; neurons: %s. Amplify multiplies by %s."):format(cfg.model,
    #set.relations, #facts_list, total,
    source == "computed" and "computed in this run (neurons.jsonl)" or "`" .. source .. "`",
    ("%g"):format(cfg.factor)),
  "",
  "Change of P(gold) per relation = mean(p - p0) / mean(p0) over its prompts (a fact without neurons counts as 0),",
  "then the unweighted mean over relations (Dai et al. 2022, section 4.3). dlogp = the same mean of ln p - ln p0,",
  "which a saturated softmax does not hide. Per-relation values: relations.md, suppress.svg, amplify.svg"
    .. (by_prompts and "; seen against unseen prompts: prompts.svg." or "."),
  cfg.bootstrap.resamples > 0 and ("In brackets: the %g%% percentile bootstrap interval (%d resamples of the facts "
    .. "within each relation)."):format(100 * cfg.bootstrap.level, cfg.bootstrap.resamples) or "",
  "",
  "| neurons | suppress | amplify | suppress dlogp | amplify dlogp | neurons per fact | facts with neurons |",
  "|---|---:|---:|---:|---:|---:|---:|",
}
for _, name in ipairs(SETS) do
  local s, a = res[name].suppress, res[name].amplify
  md[#md + 1] = ("| %s | %s | %s | %s | %s | %.2f | %d |"):format(SET_NAMES[name], pct_ci(s),
    pct_ci(a), f4(s.dlog), f4(a.dlog), summary.neurons_per_fact[name], summary.facts_with_neurons[name])
end
-- One table row per set of b (set name -> {suppress =, amplify =}), labelled.
local function md_sets(label, b)
  for _, name in ipairs(SETS) do
    local x = b[name]
    if x then
      md[#md + 1] = ("| %s | %s | %s | %s | %s | %s | %.3f |"):format(label, SET_NAMES[name],
        pct_ci(x.suppress), pct_ci(x.amplify), f4(x.suppress.dlog), f4(x.amplify.dlog), x.suppress.mean_p0)
    end
  end
end
-- A table of the four sets for each group: intro lines, the first column's name, {label, b} pairs.
local function md_groups(intro, first, groups)
  md[#md + 1] = ""
  for _, line in ipairs(intro) do md[#md + 1] = line end
  md[#md + 1] = ""
  md[#md + 1] = ("| %s | neurons | suppress | amplify | suppress dlogp | amplify dlogp | mean p0 |"):format(first)
  md[#md + 1] = "|---|---|---:|---:|---:|---:|---:|"
  for _, g in ipairs(groups) do md_sets(g[1], g[2]) end
end
if by_prompts then
  local groups = {}
  for _, kind in ipairs({ "seen", "unseen" }) do
    groups[#groups + 1] = { ("%s (%d)"):format(kind, by_prompts[kind].prompts), by_prompts[kind] }
  end
  md_groups({ "The same, apart for the prompts of the templates the model was trained on (seen) and of the held-out",
    "templates (unseen; the paper's BERT never saw its prompts either)." }, "prompts", groups)
end
if by_confidence then
  local groups = {}
  for _, b in ipairs(by_confidence) do
    if b.prompts > 0 then groups[#groups + 1] = { ("%.2f-%.2f (%d)"):format(b.lo, b.hi, b.prompts), b } end
  end
  md_groups({ "The same within bins of p0, the unmodified model's P(gold) (by_confidence; confidence.svg): a",
    "model is sure of the sentences it was trained on, the paper's BERT of few PARAREL prompts." }, "p0", groups)
end
md[#md + 1] = ""
md[#md + 1] = ("Controls: random = as many neurons as the fact's knowledge neurons, in the same layers (seed %d%s); "
  .. "off-target = %s."):format(cseed, cfg.controls.random_avoid_kn and ", never a knowledge neuron of the fact" or "",
  not other_relations and "none (one relation only)"
  or cfg.controls.off_target == "other_prompts"
    and "the fact's knowledge neurons on the prompts of a random fact of a random other relation"
  or "the knowledge neurons of a random fact of a random other relation on this fact's prompts")
run:write("summary.md", table.concat(md, "\n") .. "\n")

local cats = {}
for k, rel in ipairs(set.relations) do cats[k] = rel.id end
cats[#cats + 1] = "mean"
local width = math.min(1200, math.max(600, 130 + #cats * 94))
for _, op in ipairs { "suppress", "amplify" } do
  local series = {}
  for _, name in ipairs(SETS) do
    local vals = {}
    for k, g in ipairs(res[name][op].groups) do vals[k] = g.ratio end
    vals[#cats] = res[name][op].ratio
    series[#series + 1] = { name = SET_NAMES[name], values = vals }
  end
  run:write(op .. ".svg", knwb.svg.bars {
    title = op == "suppress" and "Suppressing neurons (set to 0): change of P(gold)"
      or ("Amplifying neurons (x%s): change of P(gold)"):format(("%g"):format(cfg.factor)),
    categories = cats, series = series, percent = true, xlabel = "relation", width = width,
    ylabel = "mean(p - p0) / mean(p0)" })
end

-- Seen against unseen prompts, both operations in one chart: the contrast the paper's protocol
-- (prompts the model never trained on) turns on.
if by_prompts then
  local cats, series = {}, {}
  for _, op in ipairs { "suppress", "amplify" } do
    for _, kind in ipairs { "seen", "unseen" } do
      cats[#cats + 1] = ("%s, %s (%d)"):format(op == "suppress" and "x0" or ("x%g"):format(cfg.factor), kind, by_prompts[kind].prompts)
    end
  end
  for _, name in ipairs(SETS) do
    local vals, any = {}, false
    for _, op in ipairs { "suppress", "amplify" } do
      for _, kind in ipairs { "seen", "unseen" } do
        local x = by_prompts[kind][name]
        vals[#vals + 1] = x and x[op].ratio or nil
        any = any or x ~= nil
      end
    end
    if any then series[#series + 1] = { name = SET_NAMES[name], values = vals } end
  end
  run:write("prompts.svg", knwb.svg.bars {
    title = "Training-template (seen) and held-out-template (unseen) prompts: change of P(gold)",
    categories = cats, series = series, percent = true, xlabel = "operation, prompts (count)", width = 900,
    ylabel = "mean(p - p0) / mean(p0)" })
end

-- Suppression and amplification per bin of p0, for the knowledge neurons and their controls.
if by_confidence then
  local cats, used = {}, {}
  for _, b in ipairs(by_confidence) do
    if b.prompts > 0 then
      cats[#cats + 1] = ("%.2f-%.2f (%d)"):format(b.lo, b.hi, b.prompts)
      used[#used + 1] = b
    end
  end
  local series = {}
  for _, name in ipairs { "kn", "baseline", "random" } do
    for _, op in ipairs { "suppress", "amplify" } do
      local vals = {}
      for k, b in ipairs(used) do vals[k] = b[name] and b[name][op].ratio or nil end
      series[#series + 1] = { name = ("%s, %s"):format(SET_NAMES[name], op == "suppress" and "x0"
        or ("x%g"):format(cfg.factor)), values = vals }
    end
  end
  if #cats > 0 then
    run:write("confidence.svg", knwb.svg.bars {
      title = "Change of P(gold) by the unmodified model's confidence (p0 bins)", categories = cats, series = series,
      percent = true, xlabel = "p0 = P(gold) before the change (prompts)", ylabel = "mean(p - p0) / mean(p0)",
      width = math.min(1400, math.max(700, 160 + #cats * 150)) })
  end
end

---------------------------------------------------------------------------------------------------
-- The dose-response sweep: each neuron set scaled by each factor in turn, measured with the same
-- metric. It shows where P(gold) peaks as the neurons are turned up, and (by_layer) which layer's
-- knowledge neurons move it which way. Computed after the main pass, one line of sums per fact in
-- sweep.jsonl, so an interrupted sweep resumes where it stopped.

local sweep_summary, sweep_seconds
if #cfg.sweep.factors > 0 then
  local factors = cfg.sweep.factors
  local curves = {
    { key = "kn", label = SET_NAMES.kn, neurons = function(e) return e.rec.kn end },
    { key = "baseline", label = SET_NAMES.baseline, neurons = function(e) return e.rec.baseline end },
    { key = "random", label = SET_NAMES.random, neurons = random_of },
  }
  if cfg.sweep.by_layer then
    local present = {}
    for _, e in ipairs(facts_list) do
      for _, n in ipairs(e.rec.kn) do present[n[1]] = true end
    end
    for l = 0, model:config().num_hidden_layers - 1 do
      if present[l] then
        curves[#curves + 1] = { key = "kn_layer_" .. l, label = ("knowledge neurons, layer %d only"):format(l),
          neurons = function(e)
            local out = {}
            for _, n in ipairs(e.rec.kn) do if n[1] == l then out[#out + 1] = n end end
            return out
          end }
      end
    end
  end

  -- acc[curve key][factor index][relation id] = { delta, p0, dlog, n } sums over prompts.
  local acc = {}
  for _, c in ipairs(curves) do
    acc[c.key] = {}
    for k = 1, #factors do
      acc[c.key][k] = {}
      for _, rel in ipairs(set.relations) do acc[c.key][k][rel.id] = { delta = 0, p0 = 0, dlog = 0, n = 0 } end
    end
  end
  -- Resuming: a fact's sums already in sweep.jsonl (same config, so the same factors; every curve
  -- present) are added back instead of scored again.
  local done, done_prompts = {}, 0
  for _, line in ipairs(run:read_jsonl("sweep.jsonl")) do
    local k = X.line_key(line)
    local whole = type(line.sums) == "table"
    for _, c in ipairs(curves) do whole = whole and type(line.sums[c.key]) == "table" and #line.sums[c.key] == #factors end
    if whole then done[k] = line end
  end
  for _, e in ipairs(facts_list) do if done[e.key] then done_prompts = done_prompts + #items(e) end end
  if done_prompts > 0 then
    io.stderr:write(("suppress: resuming the sweep: %d of %d prompts already scored\n"):format(done_prompts, total))
  end
  local sweep_out <close> = run:jsonl("sweep.jsonl")
  local function add_sums(e, sums)
    for _, c in ipairs(curves) do
      for k = 1, #factors do
        local t, s = acc[c.key][k][e.rel.id], sums[c.key][k]
        t.delta, t.p0, t.dlog, t.n = t.delta + s[1], t.p0 + s[2], t.dlog + s[3], t.n + s[4]
      end
    end
  end
  local t_sweep = knwb.core.now()
  local sbar = knwb.progress.new("sweep", total - done_prompts, { unit = "prompts" })
  for _, e in ipairs(facts_list) do
    if done[e.key] then
      add_sums(e, done[e.key].sums)
    else
      local its, b = items(e), base(e)
      local sums = {} -- curve key -> factor index -> { sum of p - p0, of p0, of ln p - ln p0, prompts }
      local scored = {} -- neuron list as text -> factor index -> { p, lp }: a fact whose knowledge
                        -- neurons sit in one layer gives that layer's curve the same set, scored once
      for _, c in ipairs(curves) do
        local ns = c.neurons(e)
        local id = json.encode(plain(ns))
        scored[id] = scored[id] or {}
        sums[c.key] = {}
        for k, a in ipairs(factors) do
          -- No neurons, or a factor of 1: P(gold) is p0 exactly, with no forward pass.
          local p, lp = b.p, b.logp
          if #ns > 0 and a ~= 1 then
            if not scored[id][k] then
              p, lp = {}, {}
              local res = model:score(its, { batch = batch, interventions = knwb.neuron_interventions(ns, "scale", a) })
              for j, r in ipairs(res) do p[j], lp[j] = r.p, r.logp end
              scored[id][k] = { p, lp }
            end
            p, lp = scored[id][k][1], scored[id][k][2]
          end
          local t = { 0, 0, 0, 0 }
          for j = 1, #its do
            t[1], t[2] = t[1] + (p[j] - b.p[j]), t[2] + b.p[j]
            t[3], t[4] = t[3] + (lp[j] - b.logp[j]), t[4] + 1
          end
          sums[c.key][k] = t
        end
      end
      sweep_out:write { relation = e.rel.id, fact = e.b, subject = e.fact.subject, object = e.fact.object, sums = sums }
      add_sums(e, sums)
      sbar:step(#its)
    end
  end
  sbar:done()
  sweep_out:close()
  sweep_seconds = knwb.core.now() - t_sweep

  -- Per relation: ratio of means and mean dlogp; then unweighted means over relations.
  sweep_summary = { factors = factors, curves = {} }
  local srows = {}
  for _, c in ipairs(curves) do
    local pcts, dlogps = {}, {}
    for k, a in ipairs(factors) do
      local groups = {}
      for _, rel in ipairs(set.relations) do
        local t = acc[c.key][k][rel.id]
        groups[#groups + 1] = { ratio = t.p0 > 0 and t.delta / t.p0 or nil, mean_dlog = t.n > 0 and t.dlog / t.n or nil }
      end
      local ratio, dlog = M.mean_over(groups, "ratio"), M.mean_over(groups, "mean_dlog")
      pcts[k], dlogps[k] = num(M.percent(ratio)), num(dlog)
      srows[#srows + 1] = { neurons = c.key, factor = a, ["change %"] = M.percent(ratio), dlogp = dlog }
    end
    sweep_summary.curves[#sweep_summary.curves + 1] = { set = c.key, label = c.label, pct = pcts, dlogp = dlogps }
  end
  run:table("sweep", { "neurons", "factor", "change %", "dlogp" }, srows)
  -- the curve through x1 = 0 (no change, by definition) reads as a line; x0 is suppression
  local xs, at = {}, {}
  for k, a in ipairs(factors) do xs[#xs + 1] = a; at[#xs] = k end
  local has_one = false
  for _, a in ipairs(factors) do has_one = has_one or a == 1 end
  if not has_one then xs[#xs + 1] = 1 end
  local order = {}
  for j = 1, #xs do order[j] = j end
  table.sort(order, function(p, q) return xs[p] < xs[q] end)
  local sorted_x = {}
  for j, o in ipairs(order) do sorted_x[j] = xs[o] end
  local series = {}
  for _, c in ipairs(sweep_summary.curves) do
    local vals = {}
    for j, o in ipairs(order) do
      local k = at[o]
      if k == nil then vals[j] = 0
      elseif c.pct[k] ~= json.null then vals[j] = c.pct[k] / 100 end
    end
    series[#series + 1] = { name = c.label, values = vals }
  end
  run:write("sweep.svg", knwb.svg.lines {
    title = "Scaling neurons at [MASK]: change of P(gold) by factor", x = sorted_x, series = series, vline = 1,
    percent = true, xlabel = "factor the neurons are multiplied by (0 = suppress, 1 = unchanged)",
    ylabel = "mean(p - p0) / mean(p0)", width = 820, height = 520 })
  local fcats = {}
  for k, a in ipairs(factors) do fcats[k] = ("x%g"):format(a) end
  summary.sweep = sweep_summary
  run:write_json("summary.json", summary)
  local head, rule = { "| neurons |" }, { "|---|" }
  for _, c in ipairs(fcats) do head[#head + 1] = " " .. c .. " |"; rule[#rule + 1] = "---:|" end
  md[#md + 1] = ""
  md[#md + 1] = "## Dose-response: the same change with the neurons scaled by each factor (sweep.tsv, sweep.svg)"
  md[#md + 1] = ""
  md[#md + 1] = table.concat(head)
  md[#md + 1] = table.concat(rule)
  for _, c in ipairs(sweep_summary.curves) do
    local cells = { "| " .. c.label .. " |" }
    for _, v in ipairs(c.pct) do cells[#cells + 1] = " " .. pct(v ~= json.null and v or nil) .. " |" end
    md[#md + 1] = table.concat(cells)
  end
  run:write("summary.md", table.concat(md, "\n") .. "\n")
end

local prov = { model = cfg.model, model_sha256 = knwb.attribution.model_hash(model), seed = cfg.seed,
  controls_seed = cseed, threads = knwb.core.threads(), neurons = source }
if source ~= "computed" then prov.neurons_sha256 = knwb.run.sha256_file(source) end
run:provenance(prov)

io.stderr:write(("suppress: %d relations, %d facts, %d prompts (%d scored now) in %.1f s (suppress/amplify %.1f s%s)\n")
  :format(#set.relations, #facts_list, total, pending, knwb.core.now() - t_start, seconds,
    sweep_seconds and (", dose-response sweep %.1f s"):format(sweep_seconds) or ""))
local function headline(op)
  local r = res
  return ("%s (baseline %s, random %s, off-target %s); mean change of ln P(gold) %s"):format(
    pct_ci(r.kn[op]), pct(M.percent(r.baseline[op].ratio)), pct(M.percent(r.random[op].ratio)),
    pct(M.percent(r.off_target[op].ratio)), f4(r.kn[op].dlog))
end
print("suppressing knowledge neurons changes P(gold) by " .. headline("suppress"))
print(("amplifying them x%s changes it by "):format(("%g"):format(cfg.factor)) .. headline("amplify"))
if by_prompts then
  for _, kind in ipairs({ "seen", "unseen" }) do
    local b = by_prompts[kind]
    print(("  on the %d %s prompts (%s templates): suppress %s (baseline %s), amplify %s (baseline %s)"):format(
      b.prompts, kind, kind == "seen" and "training" or "held-out", pct_ci(b.kn.suppress),
      pct(M.percent(b.baseline.suppress.ratio)), pct_ci(b.kn.amplify), pct(M.percent(b.baseline.amplify.ratio))))
  end
end
if by_confidence then
  local parts = {}
  for _, b in ipairs(by_confidence) do
    if b.kn then parts[#parts + 1] = ("p0 %.2f-%.2f %s"):format(b.lo, b.hi, pct(M.percent(b.kn.amplify.ratio))) end
  end
  print("amplifying by the unmodified model's confidence: " .. table.concat(parts, ", ") .. " (summary.md)")
end
if sweep_summary then
  for _, c in ipairs(sweep_summary.curves) do
    if c.set == "kn" then
      local parts = {}
      for k, a in ipairs(sweep_summary.factors) do
        parts[k] = ("x%g %s"):format(a, pct(c.pct[k] ~= json.null and c.pct[k] or nil))
      end
      print("scaling them changes it by " .. table.concat(parts, ", ") .. " (sweep.md)")
    end
  end
end
print("run directory: " .. run.dir)
