-- erase.lua: erase a relation by zeroing its knowledge neurons' value slots (Dai et al. section
-- 4.6, as the official 7_erase_knowledge.py does it).
--   knwb experiments/erase.lua [configs/erase.yaml] [--set erase.relations=[P36]] [--save DIR] [--out DIR]
-- For each erased relation r: the erase.neurons (20) most frequent knowledge neurons over r's
-- facts (Counter.most_common: ties in first-appearance order). Every prompt of r, and pooled all
-- prompts of every other relation, are evaluated before and after the erasure: accuracy (top-1 =
-- gold) and perplexity exp(mean over prompts of -ln P(gold)); relative change = (after - before) /
-- before. The erasure sets the value slots to zero vectors (erase.value = unk: the [UNK] word
-- embedding, the code's commented-out variant) and is undone afterwards, so the relations are
-- erased one at a time and the model ends unchanged. Control: as many random neurons per layer
-- as the erased set has, avoiding r's knowledge neurons. r's prompts are also split into
-- held-out and training templates: a fact the model still states through an unseen paraphrase
-- has not been erased.
-- Writes config.yaml, provenance.json, edits.jsonl (journal), prompts.jsonl (per relation and
-- split), summary.json, summary.md/.tsv and erase.svg; progress on stderr, a verdict on stdout.
-- --save DIR writes the model with the first relation's erasure in force (a Hugging Face folder).
local knwb = require "knwb"
local cli = require "knwb.cli"
local S = require "knwb.schemas"
local neurons = require "knwb.neurons"
local facts = require "knwb.facts"
local refine = require "knwb.refine"
local edit = require "knwb.edit"
local random = require "knwb.random"
local json = require "knwb.json"
local progress = require "knwb.progress"

local schema = S.record {
  model = S.model, facts = S.facts, attribution = S.attribution, refine = S.refine, seed = S.seed,
  neurons = S.neurons,
  erase = S.record({
    relations = { type = "list", of = { type = "string" }, default = {}, doc = "relations to erase, one at a time (empty: every relation of the fact set)" },
    neurons = { type = "integer", min = 1, default = 20, doc = "erase this many most frequent knowledge neurons of the relation (paper: 20)" },
    value = { type = "enum", values = { "zero", "unk" }, default = "zero",
      doc = "new value slots: zero vectors (paper, code) or the [UNK] word embedding (the code's commented-out variant)" },
  }, "the relation-erasing procedure"),
}

local opts = cli.parse(arg, {
  name = "erase", description = "Erase relations by zeroing their knowledge neurons (paper section 4.6), with a random-neuron control.",
  config = "configs/erase.yaml", schema = schema,
  flags = { { name = "save", arg = "DIR", doc = "write the model with the first erased relation's erasure in force to DIR (a Hugging Face folder)" } },
})
local cfg = opts.cfg
local E = cfg.erase

local X = require "knwb.experiment"
local function refuse(msg) X.refuse("erase", msg) end
local neurons_path = X.neurons_path

local model = X.load_model("erase", cfg.model)
local model_sha = knwb.attribution.model_hash(model)
local set = X.load_facts("erase", cfg.facts, model)

-- The relations to erase, checked before anything is computed.
local known, by_id = {}, {}
for _, r in ipairs(set.relations) do known[#known + 1] = r.id; by_id[r.id] = r end
local targets, explicit = {}, #E.relations > 0
if explicit and #E.relations < #known then
  io.stderr:write(("erase: erasing %s of the %d relations (every one in turn: --set erase.relations=[])\n")
    :format(table.concat(E.relations, ", "), #known))
end
for _, id in ipairs(explicit and E.relations or known) do
  if not by_id[id] then
    refuse(string.format("erase.relations: unknown relation %q (known: %s)", id, table.concat(known, ", ")))
  end
  targets[#targets + 1] = by_id[id]
end

local records, source = neurons.load_or_compute(model, set, cfg, neurons_path(cfg.neurons))
local recs = neurons.by_relation(records)

-- The erase sets: the most frequent knowledge neurons of each relation. An empty set is refused
-- for a relation named in erase.relations, and skipped with a warning when erasing every relation.
local plans = {}
for _, r in ipairs(targets) do
  local sets, union = {}, {}
  for _, rec in ipairs(recs[r.id] or {}) do
    sets[#sets + 1] = rec.kn
    for _, ne in ipairs(rec.kn) do union[#union + 1] = ne end
  end
  local top = refine.most_common(sets, E.neurons)
  if #top == 0 then
    local msg = string.format("relation %s (%s): none of its %d facts has knowledge neurons, so there is nothing to erase; the model is unchanged",
      r.id, r.label, #r.facts)
    if explicit then refuse(msg) end
    io.stderr:write("erase: skipping " .. msg .. "\n")
  else
    if #top < E.neurons then
      io.stderr:write(string.format("erase: %s (%s) has only %d distinct knowledge neurons (erase.neurons = %d)\n",
        r.id, r.label, #top, E.neurons))
    end
    plans[#plans + 1] = { rel = r, top = top, union = union }
  end
end
if #plans == 0 then refuse("no relation of the fact set has knowledge neurons to erase; the model is unchanged") end

-- the run directory is made once the inputs are known to be good
local run = knwb.run.new { experiment = "erase", out = opts.out }
run:write_config(cfg)

if source == "computed" then neurons.write(run:path("neurons.jsonl"), records, model, { config = cfg }) end

-- Every prompt of every relation, in one list; each relation owns a contiguous range.
local items, range = {}, {}
for _, r in ipairs(set.relations) do
  local first = #items + 1
  for b, f in ipairs(r.facts) do
    for _, it in ipairs(neurons.items_of(model, r, f, cfg.facts.split)) do
      it.fact = b
      items[#items + 1] = it
    end
  end
  range[r.id] = { first, #items }
end

local passes = 1 + 2 * #plans
local bar = progress.new("erase", passes * #items, { unit = "prompts" })
local function evaluate_all() return edit.score(model, items, nil, bar) end

local null = json.null
local function rel_change(a, b) if a and b and a ~= 0 then return (b - a) / a end return nil end
local function orn(x) if x == nil then return null end return x end

-- Facts of r stated (top-1 = gold) by at least one prompt, all or held-out only.
local function stated(res, lo, hi, held_only)
  local by_fact = {}
  for k = lo, hi do
    if (not held_only or items[k].held_out) and res[k].top1 == items[k].target then by_fact[items[k].fact] = true end
  end
  local n = 0
  for _ in pairs(by_fact) do n = n + 1 end
  return n
end

local function metrics(before, after, id)
  local lo, hi = range[id][1], range[id][2]
  local inr = function(k) return k >= lo and k <= hi end
  local sets = {
    [""] = inr,
    other_ = function(k) return not inr(k) end,
    held_out_ = function(k) return inr(k) and items[k].held_out end,
    train_ = function(k) return inr(k) and not items[k].held_out end,
  }
  local m = {}
  for prefix, pick in pairs(sets) do
    local b, a = edit.summarize(items, before, pick), edit.summarize(items, after, pick)
    m[prefix .. "prompts"] = b.n
    m[prefix .. "acc_before"], m[prefix .. "acc_after"] = orn(b.acc), orn(a.acc)
    m[prefix .. "ppl_before"], m[prefix .. "ppl_after"] = orn(b.ppl), orn(a.ppl)
    m[prefix .. "ppl_change"] = orn(rel_change(b.ppl, a.ppl))
    m[prefix .. "acc_change"] = orn(rel_change(b.acc, a.acc))
  end
  m.facts_stated_before, m.facts_stated_after = stated(before, lo, hi, false), stated(after, lo, hi, false)
  m.held_out_facts_stated_before, m.held_out_facts_stated_after = stated(before, lo, hi, true), stated(after, lo, hi, true)
  return m
end

local function neuron_list(list)
  local out = {}
  for k, ne in ipairs(list) do out[k] = { layer = ne[1], neuron = ne[2], facts = ne[3] } end
  return out
end

local edits_w <close> = run:jsonl("edits.jsonl", "w")
local prompts_w <close> = run:jsonl("prompts.jsonl", "w")
local journal = edit.journal(edits_w)

local before = evaluate_all()
-- The probe of "model unchanged": the shortest 64 prompts, which edit.score puts in its first batch
-- (the same batch gives bit-identical numbers on an unchanged model).
local probe_items, probe = {}, {}
do
  local idx = {}
  for k = 1, #items do idx[k] = k end
  table.sort(idx, function(a, b)
    local la, lb = #items[a].ids, #items[b].ids
    if la ~= lb then return la < lb end
    return a < b
  end)
  for k = 1, math.min(64, #idx) do
    probe_items[k] = items[idx[k]]
    probe[k] = string.pack("dd", before[idx[k]].p, before[idx[k]].logp)
  end
end

local rows = {}
for pi, plan in ipairs(plans) do
  local r = plan.rel
  local kn = plan.top
  local h = edit.erase(model, kn, { value = E.value, journal = journal, what = r.id,
    params = { relation = r.id, neurons = "knowledge", count = #kn } })
  local after = evaluate_all()
  if pi == 1 and opts.save then
    model:save(opts.save)
    io.stderr:write(string.format("erase: wrote the model with %s erased to %s\n", r.id, opts.save))
  end
  journal:undo(h)
  local rn = random.matched(kn, model:config().intermediate_size, random.rng(cfg.seed, "erase/random-neurons", r.id),
    { exclude = kn, avoid = plan.union })
  h = edit.erase(model, rn, { value = E.value, journal = journal, what = r.id .. " random",
    params = { relation = r.id, neurons = "random", count = #rn } })
  local after_rand = evaluate_all()
  journal:undo(h)

  local row = metrics(before, after, r.id)
  row.relation, row.label, row.facts = r.id, r.label, #r.facts
  row.neurons, row.erased = #kn, neuron_list(kn)
  row.random = metrics(before, after_rand, r.id)
  row.random.neurons, row.random.erased = #rn, neuron_list(rn)
  rows[#rows + 1] = row
  for _, which in ipairs { { "knowledge", row }, { "random", row.random } } do
    local m = which[2]
    for _, split in ipairs { { "all", "" }, { "held_out", "held_out_" }, { "train", "train_" }, { "other_relations", "other_" } } do
      local p = split[2]
      prompts_w:write { relation = r.id, neurons = which[1], prompts = split[1], n = m[p .. "prompts"],
        acc_before = m[p .. "acc_before"], acc_after = m[p .. "acc_after"],
        ppl_before = m[p .. "ppl_before"], ppl_after = m[p .. "ppl_after"] }
    end
  end
end
bar:done()

-- The model must be exactly as loaded.
local unchanged = #model:edits() == 0
if unchanged and #probe > 0 then
  for k, res in ipairs(model:score(probe_items)) do
    unchanged = unchanged and string.pack("dd", res.p, res.logp) == probe[k]
  end
end
if not unchanged then error("erase: the model is not back to its original weights after undo (a bug)") end

run:write_json("summary.json", { relations = rows, value = E.value, neurons_source = source == "computed" and "computed" or "file",
  model_unchanged = unchanged, edits_in_force_after = #model:edits(), prompts = #items })

local function g(x) return x ~= null and x and string.format("%.4g", x) or "–" end
local function pct(x) return x ~= null and x and string.format("%+.1f%%", 100 * x) or "–" end
local function acc(x) return x ~= null and x and string.format("%.1f%%", 100 * x) or "–" end
local trows = {}
for _, row in ipairs(rows) do
  for _, which in ipairs { { "knowledge", row }, { "random", row.random } } do
    local m = which[2]
    trows[#trows + 1] = { row.relation, row.label, which[1], m.neurons,
      g(m.ppl_before), g(m.ppl_after), pct(m.ppl_change), acc(m.acc_before), acc(m.acc_after),
      g(m.held_out_ppl_before), g(m.held_out_ppl_after), pct(m.held_out_ppl_change),
      g(m.other_ppl_before), g(m.other_ppl_after), pct(m.other_ppl_change) }
  end
end
run:table("summary", { "relation", "label", "neurons", "count", "PPL before", "PPL after", "PPL change", "acc before",
  "acc after", "held-out PPL before", "held-out PPL after", "held-out change", "other PPL before", "other PPL after",
  "other change" }, trows)
local md = assert(io.open(run:path("summary.md"), "r")):read("a")
run:write("summary.md", "# Erasing relations (paper section 4.6)\n\n" .. md .. string.format(
  "\nErased: the %d most frequent knowledge neurons of each relation, value slots set to %s, one relation at a time (undone after each). PPL = exp(mean over prompts of −ln P(gold)); change = (after − before) / before. Held-out: the relation's prompts from templates marked held_out (unseen in pretraining). Other: all prompts of every other relation, pooled. Random: as many random neurons in each layer, avoiding the relation's knowledge neurons. Paper (BERT-base-cased, PARAREL): P19 +106.6%%, P106 +128.2%%, other relations +1.1%% … +10.1%%.\n",
  E.neurons, E.value == "zero" and "zero vectors" or "the [UNK] embedding"))

local bars = {}
for _, row in ipairs(rows) do
  bars[#bars + 1] = { label = row.relation .. " erased · KN", before = row.ppl_before, after = row.ppl_after }
  bars[#bars + 1] = { label = row.relation .. " others · KN", before = row.other_ppl_before, after = row.other_ppl_after }
  bars[#bars + 1] = { label = row.relation .. " erased · random", before = row.random.ppl_before, after = row.random.ppl_after }
  bars[#bars + 1] = { label = row.relation .. " others · random", before = row.random.other_ppl_before, after = row.random.other_ppl_after }
end
for _, b in ipairs(bars) do
  if b.before == null then b.before = nil end
  if b.after == null then b.after = nil end
end
run:write("erase.svg", knwb.svg.before_after {
  title = "Erasing relations: perplexity before and after", items = bars, ylabel = "perplexity (log scale)", log = true })
run:provenance { model = cfg.model, model_sha256 = model_sha or null, seed = cfg.seed, threads = knwb.core.threads(),
  neurons = source, saved_model = opts.save or null }

local function ppl(x) return math.abs(x) >= 1000 and string.format("%.0f", x) or string.format("%.3g", x) end
for _, row in ipairs(rows) do
  local verb = row.ppl_after >= row.ppl_before and "raised" or "lowered"
  local other = row.other_ppl_change ~= null and string.format("while the other relations moved %s", pct(row.other_ppl_change))
    or "(no other relation to compare)"
  print(string.format("Erasing %d knowledge neurons of %s (%s) %s its perplexity %s -> %s (%s; accuracy %s -> %s), %s (%d random neurons: %s on %s).",
    row.neurons, row.relation, row.label, verb, ppl(row.ppl_before), ppl(row.ppl_after), pct(row.ppl_change), acc(row.acc_before),
    acc(row.acc_after), other, row.random.neurons, pct(row.random.ppl_change), row.relation))
  if row.held_out_prompts > 0 then
    print(string.format("  On held-out paraphrases: perplexity %s -> %s (%s); facts still stated by some held-out paraphrase: %d of %d (before: %d).",
      ppl(row.held_out_ppl_before), ppl(row.held_out_ppl_after), pct(row.held_out_ppl_change), row.held_out_facts_stated_after,
      row.facts, row.held_out_facts_stated_before))
  end
end
print("run directory: " .. run.dir)
