-- pretrain.lua: pretrain a small BERT masked LM on sentences that state facts.
--   knwb experiments/pretrain.lua [configs/pretrain.yaml] [--set train.steps=2000] [--save models/default]
-- Writes a run directory (config, provenance, training log, per-relation accuracy on training and
-- held-out templates) and, with --save, the model as a Hugging Face folder. An interrupted run
-- resumes from its run directory's checkpoint when started again with the same --out.
local knwb = require "knwb"
local cli = require "knwb.cli"
local S = require "knwb.schemas"
local facts = require "knwb.facts"
local pretrain = require "knwb.pretrain"

local schema = S.record {
  model = S.record({
    hidden_size = { type = "integer", min = 8, default = 128, doc = "C" },
    num_hidden_layers = { type = "integer", min = 1, default = 6, doc = "L" },
    num_attention_heads = { type = "integer", min = 1, default = 4, doc = "NH (must divide hidden_size)" },
    intermediate_size = { type = "integer", min = 1, default = 512, doc = "F, the FFN width: neurons per layer" },
    max_position_embeddings = { type = "integer", min = 8, default = 64, doc = "longest sequence" },
    layer_norm_eps = { type = "number", gt = 0, default = 1e-12, doc = "LayerNorm epsilon" },
  }, "architecture of the new model"),
  data = S.record({
    facts = { type = "string", default = "data/facts.tsv", doc = "facts TSV" },
    templates = { type = "string", default = "data/templates.yaml", doc = "templates YAML (held_out marks evaluation-only templates)" },
    vocab = { type = "string", default = "models/default/vocab.txt", doc = "vocab.txt (every object must be one token)" },
    relations = { type = "list", of = { type = "string" }, default = {}, doc = "relations to train on (empty: all)" },
    max_facts = { type = "integer", min = 0, default = 0, doc = "at most this many facts per relation (0: all)" },
  }, "training data"),
  train = S.record({
    steps = { type = "integer", min = 1, default = 3000, doc = "optimizer steps" },
    batch = { type = "integer", min = 1, default = 64, doc = "sentences per step" },
    lr = { type = "number", gt = 0, default = 1e-3, doc = "peak learning rate (AdamW)" },
    warmup = { type = "integer", min = 0, default = 200, doc = "linear warm-up steps, then cosine decay to 0" },
    weight_decay = { type = "number", min = 0, default = 0.01, doc = "decoupled weight decay (not on biases and LayerNorm)" },
    clip = { type = "number", min = 0, default = 1.0, doc = "global gradient-norm clip (0: none)" },
    label_smoothing = { type = "number", min = 0, lt = 1, default = 0.0, doc = "label smoothing of the MLM loss" },
    mask_prob = { type = "number", min = 0, lt = 1, default = 0.15, doc = "random masking of the other tokens (BERT's 80/10/10)" },
    hidden_dropout = { type = "number", min = 0, lt = 1, default = 0.0, doc = "dropout on the attention and FFN sub-layer outputs (BERT uses 0.1)" },
    neuron_dropout = { type = "number", min = 0, lt = 1, default = 0.0, doc = "dropout on the FFN activations (the neurons attribution scores)" },
    pack = { type = "integer", min = 1, default = 1, doc = "fact sentences per training row ([CLS] a [SEP] b [SEP] ...); 1 = each alone" },
    log_every = { type = "integer", min = 1, default = 50, doc = "progress line every N steps" },
    checkpoint_every = { type = "integer", min = 0, default = 500, doc = "checkpoint every N steps (0: never)" },
    eval_every = { type = "integer", min = 0, default = 0, doc = "evaluate held-out accuracy every N steps (0: only at the end)" },
  }, "optimisation"),
  seed = S.seed,
}

local opts = cli.parse(arg, {
  name = "pretrain", description = "Pretrain a small BERT masked LM on fact sentences (knwb's default model).",
  config = "configs/pretrain.yaml", schema = schema,
  flags = { { name = "save", arg = "DIR", doc = "write the trained model to DIR (Hugging Face layout)" } },
})
local cfg = opts.cfg
local run = knwb.run.new { experiment = "pretrain", out = opts.out }
run:write_config(cfg)

local set = facts.load { facts = cfg.data.facts, templates = cfg.data.templates, relations = cfg.data.relations }
if cfg.data.max_facts > 0 then
  for _, r in ipairs(set.relations) do
    while #r.facts > cfg.data.max_facts do table.remove(r.facts) end
  end
end
local mc = {}
for k, v in pairs(cfg.model) do mc[k] = v end
io.stderr:write(string.format("pretrain: %d relations, %d facts; model L=%d C=%d F=%d heads=%d\n", #set.relations,
  facts.count(set), mc.num_hidden_layers, mc.hidden_size, mc.intermediate_size, mc.num_attention_heads))

local t0 = knwb.core.now()
local evals = run:jsonl("eval.jsonl", "a")
local held
local model, history = pretrain.run {
  model_config = mc, vocab = cfg.data.vocab, set = set, out = run.dir, seed = cfg.seed,
  steps = cfg.train.steps, batch = cfg.train.batch, lr = cfg.train.lr, warmup = cfg.train.warmup,
  weight_decay = cfg.train.weight_decay, clip = cfg.train.clip, label_smoothing = cfg.train.label_smoothing,
  mask_prob = cfg.train.mask_prob, hidden_dropout = cfg.train.hidden_dropout, neuron_dropout = cfg.train.neuron_dropout, pack = cfg.train.pack,
  log_every = cfg.train.log_every, checkpoint_every = cfg.train.checkpoint_every,
  eval_every = cfg.train.eval_every,
  on_eval = function(m, step)
    held = held or pretrain.corpus(m, set, "held_out")
    local _, mean = pretrain.accuracy(m, held)
    io.stderr:write(string.format("pretrain step %d: held-out mean accuracy %.1f%%\n", step, 100 * mean))
    evals:write { step = step, held_out_acc = mean }
  end,
}
evals:close()
local seconds = knwb.core.now() - t0
local log = run:jsonl("train.jsonl", "w")
for _, h in ipairs(history) do log:write(h) end
log:close()

-- per-relation accuracy on training and held-out templates, beside the majority baseline
local tr_acc, tr_mean = pretrain.accuracy(model, pretrain.corpus(model, set, "train"))
local ho_acc, ho_mean = pretrain.accuracy(model, pretrain.corpus(model, set, "held_out"))
local rows = {}
for _, r in ipairs(set.relations) do
  local maj = facts.majority(r)
  rows[#rows + 1] = { r.id, r.label, #r.facts, string.format("%.1f", 100 * maj),
    string.format("%.1f", 100 * tr_acc[r.id].acc), string.format("%.1f", 100 * (ho_acc[r.id] and ho_acc[r.id].acc or 0)),
    string.format("%.3f", tr_acc[r.id].p) }
end
rows[#rows + 1] = { "mean", "", facts.count(set), "", string.format("%.1f", 100 * tr_mean), string.format("%.1f", 100 * ho_mean), "" }
run:table("accuracy", { "relation", "label", "facts", "majority %", "train top-1 %", "held-out top-1 %", "train mean P(gold)" }, rows)
run:write_json("summary.json", { train_acc = tr_mean, held_out_acc = ho_mean, seconds = seconds, steps = cfg.train.steps })
run:provenance { seed = cfg.seed, threads = knwb.core.threads(), seconds = seconds }
if opts.save then
  os.execute("mkdir -p " .. knwb.run.shell_quote(opts.save))
  model:save(opts.save)
end
io.stderr:write(string.format("pretrain: done in %.0f s; mean top-1 accuracy %.1f%% on training templates, %.1f%% held out\n",
  seconds, 100 * tr_mean, 100 * ho_mean))
print(string.format("run directory: %s", run.dir))
