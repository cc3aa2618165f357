-- knwb.schemas: the config schemas shared by the experiments (knwb.config's schema language).
-- Pieces used by several experiments (the model, the fact set, attribution, refining) are
-- defined once here; each experiment's schema assembles them. Every numeric setting has both
-- bounds (knwb.config prints them in --help and refuses values outside, and NaN/infinities always).
local S = {}

S.model = { type = "string", default = "default",
  doc = "model folder (Hugging Face layout: config.json, model.safetensors, vocab.txt); \"default\" is models/default" }

S.facts = { type = "record", doc = "the fact set", fields = {
  format = { type = "enum", values = { "knwb", "pararel" }, default = "knwb",
    doc = "knwb: a facts TSV + templates YAML; pararel: folders of P*.jsonl patterns and facts" },
  facts = { type = "string", default = "data/facts.tsv", doc = "facts TSV (knwb) or folder of fact files (pararel)" },
  templates = { type = "string", default = "data/templates.yaml", doc = "templates YAML (knwb) or folder of pattern files (pararel)" },
  relations = { type = "list", of = { type = "string" }, default = {}, doc = "relation ids to use (empty: all)" },
  max_facts = { type = "integer", min = 0, max = 10000000, default = 0, doc = "at most this many facts per relation (0: all), for quick runs" },
  min_templates = { type = "integer", min = 1, max = 10000, default = 4, doc = "drop relations with fewer templates (the paper drops <= 3)" },
  split = { type = "enum", values = { "all", "train", "held_out" }, default = "all",
    doc = "which templates make the prompts (knwb format marks held-out templates)" },
} }

S.attribution = { type = "record", doc = "integrated gradients on ffn.act at the [MASK] position", fields = {
  steps = { type = "integer", min = 1, max = 10000, default = 20, doc = "m, the number of quadrature points (paper: 20)" },
  quadrature = { type = "enum", values = { "left", "right", "midpoint", "trapezoid", "gauss" }, default = "left",
    doc = "left Riemann is the official code's (alpha = 0, 1/m, ..., (m-1)/m); gauss is Gauss-Legendre" },
  batch = { type = "integer", min = 0, max = 10000, default = 0, doc = "quadrature rows per forward pass (0: all m at once)" },
  target = { type = "enum", values = { "prob", "logprob" }, default = "prob",
    doc = "the attributed quantity: the gold token's probability (paper) or its log" },
  cache = { type = "string", default = "cache/attributions", doc = "folder of stored raw scores (reused and resumed)" },
} }

S.refine = { type = "record", doc = "knowledge-neuron refining (paper section 3; defaults = official code)",
  check = function(v) if v.target_min > v.target_max then
    return ("target_min %s is above target_max %s"):format(v.target_min, v.target_max) end end, fields = {
  threshold = { type = "number", gt = 0, max = 1, default = 0.2, doc = "coarse set: score >= threshold x the prompt's max score" },
  baseline_threshold = { type = "number", gt = 0, max = 1, default = 0.5, doc = "the same for the activation baseline" },
  p = { type = "number", gt = 0, max = 1, default = 0.7, doc = "initial share of prompts a neuron must appear in" },
  p_step = { type = "number", gt = 0, max = 0.5, default = 0.05, doc = "adjustment of p per round" },
  target_min = { type = "number", min = 0, max = 100000, default = 2, doc = "wanted mean neurons per fact, lower bound" },
  target_max = { type = "number", min = 0, max = 100000, default = 5, doc = "wanted mean neurons per fact, upper bound" },
  rounds = { type = "integer", min = 1, max = 100, default = 6,
    doc = "evaluations of p at most (the official code: 6)" },
  min_prompts = { type = "integer", min = 1, max = 100000, default = 3, doc = "a neuron must appear in at least this many prompts (code's hidden minimum)" },
} }

S.neurons = { type = "string", default = "models/default/neurons.jsonl",
  doc = "knowledge neurons written by attribute.lua, reused when their .meta.json names this model (else computed); \"\" computes" }

S.seed = { type = "integer", min = 0, max = math.maxinteger, default = 42, doc = "seed of every random choice (controls, sampling)" }

function S.record(fields, doc) return { type = "record", fields = fields, doc = doc } end

return S
