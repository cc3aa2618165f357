-- update.lua: update facts by editing their knowledge neurons' value slots (Dai et al. section
-- 4.5, as the official 6_edit_knowledge_sampled.py does it, run with lambda1 = 1, lambda2 = 8).
--   knwb experiments/update.lua [configs/update.yaml] [--set update.lambda2=4] [--out DIR]
-- Per relation, facts are sampled until update.facts_per_relation valid edits are made (at most
-- update.max_tries draws): fact b uniformly; the new object t' = the object of a random other
-- fact of the relation with a different object; b's knowledge neurons minus the relation's hubs
-- (cnt = 1 + facts holding the neuron > hub_share x facts); one random prompt of b, which the
-- model must answer correctly (top-1 = gold = t). Each selected value slot becomes
-- v - (|v|/|e_t|) l1 e_t + (|v|/|e_t'|) l2 e_t'. On that prompt: change rate (top-1 != t),
-- success rate (top-1 = t'), top-5 success. Side effects, before and after: log-perplexity
-- (mean -ln P(gold) over all prompts) of side_facts random other facts of the relation (intra)
-- and of side_facts facts each drawn from a random other relation (inter); the reported
-- increase is exp(mean log-PPL after) - exp(mean log-PPL before) over the edits. Every edit is
-- undone before the next one. Control: the same edit (same fact, prompt, t', side facts) on as
-- many uniformly random (layer, neuron) pairs, from an independent random stream.
-- Writes config.yaml, provenance.json, edits.jsonl (journal), results.jsonl (one edit a line; its
-- kn and random parts carry the journal's edit ids), summary.json, summary.md/.tsv and
-- update.svg; progress on stderr, a verdict on stdout. Relations with a single object cannot be
-- updated and are reported as such.
local knwb = require "knwb"
local cli = require "knwb.cli"
local S = require "knwb.schemas"
local neurons = require "knwb.neurons"
local facts = require "knwb.facts"
local edit = require "knwb.edit"
local random = require "knwb.random"
local json = require "knwb.json"
local progress = require "knwb.progress"

local schema = S.record {
  model = S.model, facts = S.facts, attribution = S.attribution, refine = S.refine, seed = S.seed,
  neurons = S.neurons,
  update = S.record({
    facts_per_relation = { type = "integer", min = 1, default = 10, doc = "valid edits to make per relation (paper: 10)" },
    max_tries = { type = "integer", min = 1, default = 10000, doc = "fact draws per relation at most (the code: 10000)" },
    lambda1 = { type = "number", default = 1, doc = "weight of the removed old-object embedding, x |v| / |e_t| (paper: 1)" },
    lambda2 = { type = "number", default = 8, doc = "weight of the added new-object embedding, x |v| / |e_t'| (paper: 8)" },
    hub_share = { type = "number", gt = 0, max = 1, default = 0.1,
      doc = "drop a neuron when 1 + the relation's facts holding it > hub_share x facts (the code: 0.1)" },
    side_facts = { type = "integer", min = 0, default = 5, doc = "facts per side-effect set, intra and inter (paper: 5)" },
  }, "the fact-updating procedure"),
}

local opts = cli.parse(arg, {
  name = "update", description = "Update facts by editing knowledge-neuron value slots (paper section 4.5), with a random-neuron control.",
  config = "configs/update.yaml", schema = schema,
})
local cfg = opts.cfg
local U = cfg.update

local X = require "knwb.experiment"
local function refuse(msg) X.refuse("update", msg) end
local neurons_path = X.neurons_path

local model = X.load_model("update", cfg.model)
local model_sha = knwb.attribution.model_hash(model)
local set = X.load_facts("update", cfg.facts, model)
-- the run directory is made once the inputs are known to be good
local run = knwb.run.new { experiment = "update", out = opts.out }
run:write_config(cfg)
local records, source = neurons.load_or_compute(model, set, cfg, neurons_path(cfg.neurons))
if source == "computed" then neurons.write(run:path("neurons.jsonl"), records, model, { config = cfg }) end

local rec_of = {}
for _, r in ipairs(records) do rec_of[X.record_key(r)] = r end

-- Per relation: records in fact order, the prompts of each fact (items), and hub-filtered sets.
local rels = {}
for _, r in ipairs(set.relations) do
  local R = { rel = r, records = {}, items = {}, kn = {}, by_object = {} }
  for b, f in ipairs(r.facts) do
    R.records[b] = assert(rec_of[X.record_key { relation = r.id, subject = f.subject, object = f.object }], "neurons record missing")
    R.by_object[f.object] = (R.by_object[f.object] or 0) + 1
  end
  rels[#rels + 1] = R
end

local function items_of(R, b)
  if not R.items[b] then R.items[b] = neurons.items_of(model, R.rel, R.rel.facts[b], cfg.facts.split) end
  return R.items[b]
end

local function kn_of(R, b)
  if not R.kn[b] then R.kn[b] = edit.hub_filter(R.records[b].kn, R.records, U.hub_share) end
  return R.kn[b]
end

local function concat_items(list)
  local out = {}
  for _, e in ipairs(list) do
    for _, it in ipairs(items_of(e[1], e[2])) do out[#out + 1] = it end
  end
  return out
end

local function nll(items)
  if #items == 0 then return nil end
  return edit.evaluate(model, items).nll
end

-- The single prompt's read-out: top-1, top-5, P(t), P(t'), rank of t'.
local function readout(it_old, it_new)
  local rs = model:score({ it_old, it_new }, { topk = 5 })
  local in5 = false
  for _, id in ipairs(rs[1].top) do in5 = in5 or id == it_new.target end
  return { top1 = rs[1].top1, top1_token = model:token(rs[1].top1), p_old = rs[1].p, p_new = rs[2].p,
    rank_new = rs[2].rank, new_in_top5 = in5 }
end

local rng = random.rng(cfg.seed, "update")
local rng_ctrl = random.rng(cfg.seed, "update/random-neurons")
local mcfg = model:config()
local edits_w <close> = run:jsonl("edits.jsonl", "w")
local results_w <close> = run:jsonl("results.jsonl", "w")
local journal = edit.journal(edits_w)

local function measure(h, it_old, it_new, intra, inter, before)
  local a = readout(it_old, it_new)
  a.intra_nll = nll(intra)
  a.inter_nll = nll(inter)
  journal:undo(h)
  a.changed = a.top1 ~= it_old.target
  a.success = a.top1 == it_new.target
  a.success_top5 = a.new_in_top5
  a.new_in_top5 = nil
  a.p_new_gain = a.p_new - before.p_new
  a.intra_nll_before, a.inter_nll_before = before.intra_nll, before.inter_nll
  return a
end

local bar = progress.new("update", #rels * U.facts_per_relation, { unit = "edits" })
local all, per_relation = {}, {}
local done_before = 0
for ri, R in ipairs(rels) do
  local r = R.rel
  local made, tries = 0, 0
  local skipped = { no_neurons_after_hub_filter = 0, wrong_prediction = 0 }
  local distinct = 0
  for _ in pairs(R.by_object) do distinct = distinct + 1 end
  -- cnt >= 2 always, so a relation with fewer than 2 / hub_share facts loses every neuron.
  local hopeless = 2 > U.hub_share * #r.facts
  if distinct < 2 then
    io.stderr:write(string.format("update: %s (%s) has a single object; no fact of it can be changed\n", r.id, r.label))
  elseif hopeless then
    io.stderr:write(string.format("update: %s (%s) has %d facts: at hub_share %g every neuron (cnt >= 2 > %g) is a hub; skipped\n",
      r.id, r.label, #r.facts, U.hub_share, U.hub_share * #r.facts))
  end
  while distinct >= 2 and not hopeless and made < U.facts_per_relation and tries < U.max_tries do
    tries = tries + 1
    local b = rng:int(#r.facts)
    local f = r.facts[b]
    local others = {}
    for k, g in ipairs(r.facts) do if g.object ~= f.object then others[#others + 1] = k end end
    local new_obj = r.facts[rng:choice(others)].object
    local kn = kn_of(R, b)
    if #kn == 0 then
      skipped.no_neurons_after_hub_filter = skipped.no_neurons_after_hub_filter + 1
    else
      local it_old = rng:choice(items_of(R, b))
      local it_new = model:item(it_old.prompt, new_obj)
      local before = readout(it_old, it_new)
      if before.top1 ~= it_old.target then
        skipped.wrong_prediction = skipped.wrong_prediction + 1
      else
        -- side-effect facts: intra from r (not b), inter each from a random other relation
        local pool = {}
        for k = 1, #r.facts do if k ~= b then pool[#pool + 1] = k end end
        local intra_f, inter_f = {}, {}
        for _, k in ipairs(rng:sample(pool, U.side_facts)) do intra_f[#intra_f + 1] = { R, k } end
        if #rels > 1 then
          for _ = 1, U.side_facts do
            local o = rng:int(#rels - 1)
            if o >= ri then o = o + 1 end
            inter_f[#inter_f + 1] = { rels[o], rng:int(#rels[o].rel.facts) }
          end
        end
        local intra, inter = concat_items(intra_f), concat_items(inter_f)
        before.intra_nll, before.inter_nll = nll(intra), nll(inter)
        made = made + 1
        local n = #all + 1
        local params = { relation = r.id, fact = b, subject = f.subject, prompt = it_old.prompt, edit_index = n }
        params.neurons = "knowledge"
        local h = edit.update(model, kn, it_old.target, it_new.target,
          { lambda1 = U.lambda1, lambda2 = U.lambda2, journal = journal, params = params })
        local kid = h:info().id
        local kres = measure(h, it_old, it_new, intra, inter, before)
        local rn = random.neurons(#kn, mcfg.num_hidden_layers, mcfg.intermediate_size, rng_ctrl)
        params.neurons = "random"
        h = edit.update(model, rn, it_old.target, it_new.target,
          { lambda1 = U.lambda1, lambda2 = U.lambda2, journal = journal, params = params })
        local rid = h:info().id
        local rres = measure(h, it_old, it_new, intra, inter, before)
        local side_names = function(list)
          local out = {}
          for k, e in ipairs(list) do out[k] = e[1].rel.id .. ":" .. e[1].rel.facts[e[2]].subject end
          return out
        end
        local row = { index = n, relation = r.id, label = r.label, fact = b, subject = f.subject, object = f.object,
          new_object = new_obj, prompt = it_old.prompt, held_out = it_old.held_out, tries = tries,
          p_old_before = before.p_old, p_new_before = before.p_new, rank_new_before = before.rank_new,
          intra_facts = side_names(intra_f), inter_facts = side_names(inter_f),
          kn = { edit_id = kid, neurons = kn, result = kres }, random = { edit_id = rid, neurons = rn, result = rres } }
        results_w:write(row)
        all[n] = row
        bar:step()
      end
    end
  end
  done_before = done_before + U.facts_per_relation
  bar:set(math.min(done_before, #rels * U.facts_per_relation))
  per_relation[#per_relation + 1] = { relation = r.id, label = r.label, facts = #r.facts, edits = made, tries = tries,
    skipped = skipped, not_editable = distinct < 2 and "single object" or hopeless and "every neuron is a hub" or nil }
  if made < U.facts_per_relation and distinct >= 2 and not hopeless then
    io.stderr:write(string.format("update: %s (%s): %d of %d edits after %d tries (skipped: %d without neurons after the hub filter, %d predicted wrongly)\n",
      r.id, r.label, made, U.facts_per_relation, tries, skipped.no_neurons_after_hub_filter, skipped.wrong_prediction))
  end
end
bar:done()
if #model:edits() ~= 0 then error("update: edits left in force (a bug)") end

local function mean(xs)
  if #xs == 0 then return nil end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

local function aggregate(which)
  local ch, su, t5, gain, ib, ia, eb, ea, nn = {}, {}, {}, {}, {}, {}, {}, {}, {}
  for _, row in ipairs(all) do
    local a = row[which].result
    ch[#ch + 1] = a.changed and 1 or 0
    su[#su + 1] = a.success and 1 or 0
    t5[#t5 + 1] = a.success_top5 and 1 or 0
    gain[#gain + 1] = a.p_new_gain
    nn[#nn + 1] = #row[which].neurons
    if a.intra_nll then ib[#ib + 1] = a.intra_nll_before; ia[#ia + 1] = a.intra_nll end
    if a.inter_nll then eb[#eb + 1] = a.inter_nll_before; ea[#ea + 1] = a.inter_nll end
  end
  local function ppl(xs) local m = mean(xs); return m and math.exp(m) end
  local pib, pia, peb, pea = ppl(ib), ppl(ia), ppl(eb), ppl(ea)
  local null = json.null
  return { edits = #all, change_rate = mean(ch) or null, success_rate = mean(su) or null, success_top5 = mean(t5) or null,
    delta_ppl_intra = pib and pia - pib or null, delta_ppl_inter = peb and pea - peb or null,
    ppl_intra_before = pib or null, ppl_intra_after = pia or null, ppl_inter_before = peb or null,
    ppl_inter_after = pea or null, mean_p_new_gain = mean(gain) or null, mean_neurons = mean(nn) or null }
end

local summary = aggregate("kn")
summary.random = aggregate("random")
summary.relations = per_relation
summary.lambda1, summary.lambda2, summary.hub_share = U.lambda1, U.lambda2, U.hub_share
summary.neurons_source = source == "computed" and "computed" or "file"
run:write_json("summary.json", summary)

local function pct(x) return x ~= json.null and x and string.format("%.1f%%", 100 * x) or "–" end
local function num(x) return x ~= json.null and x and string.format("%+.3g", x) or "–" end
local rows = {
  { "knowledge neurons", summary.edits, pct(summary.change_rate), pct(summary.success_rate), pct(summary.success_top5),
    num(summary.delta_ppl_intra), num(summary.delta_ppl_inter) },
  { "random neurons", summary.random.edits, pct(summary.random.change_rate), pct(summary.random.success_rate),
    pct(summary.random.success_top5), num(summary.random.delta_ppl_intra), num(summary.random.delta_ppl_inter) },
  { "paper, knowledge neurons (BERT-base)", 340, "48.5%", "34.4%", "–", "+8.4", "+7.2" },
  { "paper, random neurons (BERT-base)", 340, "4.7%", "0.0%", "–", "–", "+4.3" },
}
run:table("summary", { "neurons", "edits", "change rate", "success rate", "top-5 success", "Δ PPL intra", "Δ PPL inter" }, rows)
local md = assert(io.open(run:path("summary.md"), "r")):read("a")
run:write("summary.md", "# Updating facts (paper section 4.5)\n\n" .. md .. string.format(
  "\nλ1 = %g, λ2 = %g (each scaled by |value slot| / |embedding|), hub share %g, %d side facts. Change rate: top-1 is no longer the old object; success: top-1 is the new object. Δ PPL = exp(mean log-PPL after) − exp(mean log-PPL before) over the edits, on other facts of the edited relation (intra) and of other relations (inter). Random neurons: the same edits on as many uniformly random (layer, neuron) pairs. The paper rows are BERT-base-cased on PARAREL (PAPER.md §5, partly unverified).\n",
  U.lambda1, U.lambda2, U.hub_share, U.side_facts))

local function val(x) return x ~= json.null and x or nil end
run:write("update.svg", knwb.svg.bars {
  title = "Updating facts: knowledge neurons vs random neurons", width = 640, categories = { "change rate", "success rate", "top-5 success" },
  ylabel = "share of edits", percent = true,
  series = {
    { name = "knowledge neurons", values = { val(summary.change_rate), val(summary.success_rate), val(summary.success_top5) } },
    { name = "random neurons", values = { val(summary.random.change_rate), val(summary.random.success_rate), val(summary.random.success_top5) } },
  } })
run:provenance { model = cfg.model, model_sha256 = model_sha or json.null, seed = cfg.seed, threads = knwb.core.threads(),
  neurons = source }

if summary.edits == 0 then
  print("No fact could be updated: no sampled fact had knowledge neurons left after the hub filter and a correct prediction (see stderr).")
else
  print(string.format("Updating %d facts through their knowledge neurons (%.1f neurons each) changed the prediction in %s (random neurons: %s) and made the new object top-1 in %s (random: %s); perplexity of other facts moved %s within the relation and %s across relations (random: %s, %s).",
    summary.edits, summary.mean_neurons, pct(summary.change_rate), pct(summary.random.change_rate), pct(summary.success_rate),
    pct(summary.random.success_rate), num(summary.delta_ppl_intra), num(summary.delta_ppl_inter),
    num(summary.random.delta_ppl_intra), num(summary.random.delta_ppl_inter)))
end
print("run directory: " .. run.dir)
