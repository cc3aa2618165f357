-- evaluate.lua: how well a model knows its facts: top-1 accuracy and mean P(gold) per relation,
-- on training templates and on held-out templates, beside each relation's majority baseline.
--   knwb experiments/evaluate.lua [configs/evaluate.yaml] [--set model=DIR] [--out DIR]
local knwb = require "knwb"
local cli = require "knwb.cli"
local S = require "knwb.schemas"
local facts = require "knwb.facts"
local pretrain = require "knwb.pretrain"

local schema = S.record { model = S.model, facts = S.facts }
local opts = cli.parse(arg, {
  name = "evaluate", description = "Per-relation accuracy of a model on its facts, training vs held-out templates.",
  config = "configs/evaluate.yaml", schema = schema,
})
local cfg = opts.cfg
local X = require "knwb.experiment"
local model = X.load_model("evaluate", cfg.model)
local set = X.load_facts("evaluate", cfg.facts, model)
-- the run directory is made once the inputs are known to be good
local run = knwb.run.new { experiment = "evaluate", out = opts.out }
run:write_config(cfg)

local train = pretrain.corpus(model, set, "train")
local held = pretrain.corpus(model, set, "held_out")
local tr, tr_mean = pretrain.accuracy(model, train)
local ho, ho_mean = pretrain.accuracy(model, held)
local rows, per = {}, {}
local maj_mean = 0
for _, r in ipairs(set.relations) do
  local maj = facts.majority(r)
  maj_mean = maj_mean + maj / #set.relations
  local h = ho[r.id]
  per[#per + 1] = { relation = r.id, label = r.label, facts = #r.facts, majority = maj, train_acc = tr[r.id] and tr[r.id].acc,
    train_p = tr[r.id] and tr[r.id].p, held_out_acc = h and h.acc, held_out_p = h and h.p }
  rows[#rows + 1] = { r.id, r.label, #r.facts, string.format("%.1f", 100 * maj),
    tr[r.id] and string.format("%.1f", 100 * tr[r.id].acc) or "-", h and string.format("%.1f", 100 * h.acc) or "-",
    tr[r.id] and string.format("%.3f", tr[r.id].p) or "-", h and string.format("%.3f", h.p) or "-" }
end
rows[#rows + 1] = { "mean", "", facts.count(set), string.format("%.1f", 100 * maj_mean), string.format("%.1f", 100 * tr_mean),
  string.format("%.1f", 100 * ho_mean), "", "" }
run:table("accuracy", { "relation", "label", "facts", "majority %", "train top-1 %", "held-out top-1 %",
  "train mean P", "held-out mean P" }, rows)
run:write_json("summary.json", { train_acc = tr_mean, held_out_acc = ho_mean, majority = maj_mean, relations = per })
run:provenance { model = cfg.model, model_sha256 = knwb.attribution.model_hash(model) }
local f = io.open(run:path("accuracy.md"))
io.write(f:read("a"))
f:close()
print(string.format("mean top-1 accuracy: %.1f%% on training templates, %.1f%% held out (majority baseline %.1f%%)",
  100 * tr_mean, 100 * ho_mean, 100 * maj_mean))
print("run directory: " .. run.dir)
