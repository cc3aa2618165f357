-- attribute.lua: find the knowledge neurons of every fact (Dai et al. sections 3 and 4.2).
--   knwb experiments/attribute.lua [configs/attribute.yaml] [--set facts.max_facts=20] [--out DIR]
-- For every prompt: integrated gradients of P(gold) on ffn.act at the [MASK] position, layer by
-- layer (raw scores are stored and reused); per relation: refining with the adaptive p. Writes
-- neurons.jsonl (one fact a line, with its knowledge neurons and the activation baseline's), the
-- paper's statistics for both methods in summary.json and summary.md, the layer distribution as
-- layers.svg, and where each fact's object stands among the tokens its neurons' value slots
-- promote (value_slots.tsv/.md; summary.json value_slots), against random neurons.
local knwb = require "knwb"
local cli = require "knwb.cli"
local S = require "knwb.schemas"
local neurons = require "knwb.neurons"

local schema = S.record {
  model = S.model, facts = S.facts, attribution = S.attribution, refine = S.refine, seed = S.seed,
}

local opts = cli.parse(arg, {
  name = "attribute", description = "Attribute and refine the knowledge neurons of every fact (paper sections 3, 4.2).",
  config = "configs/attribute.yaml", schema = schema,
})
local cfg = opts.cfg

local X = require "knwb.experiment"
local model = X.load_model("attribute", cfg.model)
local set = X.load_facts("attribute", cfg.facts, model)
-- the run directory is made once the inputs are known to be good
local run = knwb.run.new { experiment = "attribute", out = opts.out }
run:write_config(cfg)
local dropped = set.dropped_multi_token or {}
local t0 = knwb.core.now()
local records, st = neurons.compute(model, set, cfg)
local seconds = knwb.core.now() - t0

neurons.write(run:path("neurons.jsonl"), records, model, { config = cfg })

local L = model:config().num_hidden_layers
local kn = neurons.statistics(records, "kn", L, cfg.seed)
local base = neurons.statistics(records, "baseline", L, cfg.seed)
-- What the neurons' value slots promote, read directly against the word embeddings, against as
-- many random neurons in the same layers (model:slot_rank; a weak guide in a model with an MLM
-- head transform, which is why the control is beside it).
local slots = { kn = neurons.slot_alignment(model, records, "kn"),
  baseline = neurons.slot_alignment(model, records, "baseline"),
  random = neurons.slot_alignment(model, records, "kn", require("knwb.random").rng(cfg.seed, "slot-alignment")) }
local relations = {}
for _, r in ipairs(set.relations) do
  relations[#relations + 1] = { relation = r.id, label = r.label, facts = #r.facts, p = r.refine_info.p,
    avg_kn = r.refine_info.avg, rounds = r.refine_info.rounds, baseline_p = r.baseline_info.p,
    baseline_avg = r.baseline_info.avg, dropped_multi_token = dropped[r.id] or 0 }
end
local summary = {
  facts = kn.facts, avg_kn_per_fact = kn.avg_kn_per_fact, intra_relation_shared = kn.intra_relation_shared,
  inter_relation_shared = kn.inter_relation_shared, layer_share = kn.layer_share,
  baseline = { avg_kn_per_fact = base.avg_kn_per_fact, intra_relation_shared = base.intra_relation_shared,
    inter_relation_shared = base.inter_relation_shared, layer_share = base.layer_share },
  prompts = st.prompts, seconds = seconds, prompts_per_second = st.computed > 0 and st.computed / seconds or nil,
  computed = st.computed, reused = st.cache_hits, recomputed = st.cache_recomputed, completeness_mean_abs_delta = st.mean_abs_delta,
  degenerate_prompts = st.degenerate_prompts, relations = relations, value_slots = slots,
}
run:write_json("summary.json", summary)
local f3 = function(x) return string.format("%.2f", x) end
run:table("summary", { "method", "facts", "KN per fact", "shared within relation", "shared across relations" }, {
  { "knowledge neurons (IG)", kn.facts, f3(kn.avg_kn_per_fact), f3(kn.intra_relation_shared), f3(kn.inter_relation_shared) },
  { "activation baseline", base.facts, f3(base.avg_kn_per_fact), f3(base.intra_relation_shared), f3(base.inter_relation_shared) },
})
local pc = function(x) return x and string.format("%.1f%%", 100 * x) or "n/a" end
run:table("value_slots", { "neurons", "(fact, neuron) pairs", "object's mean percentile", "object in the top 10" }, {
  { "knowledge neurons (IG)", slots.kn.neurons, pc(slots.kn.mean_percentile), pc(slots.kn.top10_share) },
  { "activation baseline", slots.baseline.neurons, pc(slots.baseline.mean_percentile), pc(slots.baseline.top10_share) },
  { "random, same layers as the knowledge neurons", slots.random.neurons, pc(slots.random.mean_percentile), pc(slots.random.top10_share) },
})
local rrows = {}
for _, r in ipairs(relations) do
  rrows[#rrows + 1] = { r.relation, r.label, r.facts, f3(r.p), f3(r.avg_kn), f3(r.baseline_p), f3(r.baseline_avg) }
end
run:table("relations", { "relation", "label", "facts", "p", "KN per fact", "baseline p", "baseline per fact" }, rrows)
local labels, ks, bs = {}, {}, {}
for l = 1, L do labels[l] = tostring(l - 1); ks[l] = kn.layer_share[l]; bs[l] = base.layer_share[l] end
run:write("layers.svg", knwb.svg.bars {
  title = "Where knowledge neurons sit: share per layer", categories = labels, xlabel = "layer (0 = lowest, as in the API and the JSON)",
  ylabel = "share of neurons", percent = true,
  series = { { name = "knowledge neurons (IG)", values = ks }, { name = "activation baseline", values = bs } } })
run:provenance { model = cfg.model, model_sha256 = knwb.attribution.model_hash(model), seed = cfg.seed,
  threads = knwb.core.threads() }

io.stderr:write(string.format("attribute: %d facts, %d prompts (%d computed, %d reused) in %.0f s\n", kn.facts,
  st.prompts, st.computed, st.cache_hits, seconds))
print(string.format("knowledge neurons per fact: %.2f (baseline %.2f); shared within a relation %.2f, across %.2f",
  kn.avg_kn_per_fact, base.avg_kn_per_fact, kn.intra_relation_shared, kn.inter_relation_shared))
print("run directory: " .. run.dir)
