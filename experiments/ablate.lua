-- ablate.lua: the script to copy for a custom ablation. Suppresses the knowledge neurons of every
-- fact in chosen layers and reports the change of P(gold) beside its control (as many random
-- neurons in the same layers), in a run directory.
--   knwb experiments/ablate.lua [configs/ablate.yaml] [--set layers=[4,5]] [--out DIR]
local knwb = require "knwb"
local S = require "knwb.schemas"
local X = require "knwb.experiment"
local M = require "knwb.metrics"

local opts = knwb.cli.parse(arg, { name = "ablate", config = "configs/ablate.yaml",
  description = "Suppress the knowledge neurons of chosen layers; compare with random neurons in the same layers.",
  schema = S.record { model = S.model, facts = S.facts, attribution = S.attribution, refine = S.refine,
    neurons = S.neurons, seed = S.seed,
    layers = { type = "list", of = { type = "integer", min = 0 }, default = {}, doc = "layers whose knowledge neurons are suppressed (empty: all)" } } })
local cfg = opts.cfg
local model = X.load_model("ablate", cfg.model)
local set = X.load_facts("ablate", cfg.facts, model)
local run = knwb.run.new { experiment = "ablate", out = opts.out }
run:write_config(cfg)
local records = knwb.neurons.load_or_compute(model, set, cfg, X.neurons_path(cfg.neurons))

local keep = {}
for _, l in ipairs(cfg.layers) do keep[l] = true end
local rows = { kn = {}, random = {} }
local out <close> = run:jsonl("results.jsonl", "w")
for _, e in ipairs((X.fact_entries("ablate", set, records))) do
  local chosen = {}
  for _, n in ipairs(e.rec.kn) do if #cfg.layers == 0 or keep[n[1]] then chosen[#chosen + 1] = n end end
  local items = knwb.neurons.items_of(model, e.rel, e.fact, cfg.facts.split)
  local base
  for _, set in ipairs { { "kn", chosen }, { "random", X.random_control(e, chosen, model:config().intermediate_size, cfg.seed) } } do
    local name, ns = set[1], set[2]
    local r = M.effects(model, items, ns, { base = base })
    base = { p = r.p0, logp = r.logp0 } -- the unmodified model's P(gold), scored once per fact
    for j = 1, #items do rows[name][#rows[name] + 1] = { relation = e.rel.id, p0 = r.p0[j], p = r.p_suppress[j] } end
    out:write { relation = e.rel.id, subject = e.fact.subject, object = e.fact.object, set = name, neurons = ns, p0 = r.p0, p = r.p_suppress }
  end
end
local kn, rnd = M.change_summary(rows.kn), M.change_summary(rows.random)
run:write_json("summary.json", { layers = cfg.layers, kn = kn.ratio or knwb.json.null, random = rnd.ratio or knwb.json.null, prompts = kn.prompts })
print(("suppressing the knowledge neurons of %s changes P(gold) by %+.1f%% (random neurons in the same layers: %+.1f%%)")
  :format(#cfg.layers == 0 and "every layer" or "layers " .. table.concat(cfg.layers, ", "), 100 * (kn.ratio or 0), 100 * (rnd.ratio or 0)))
print("run directory: " .. run.dir)
