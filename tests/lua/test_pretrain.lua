-- test_pretrain.lua: the trainer learns (loss falls, accuracy rises) on a slice of the real fact
-- set with a tiny model in a few seconds; a saved checkpoint reloads with identical logits; the
-- trainer refuses a vocabulary that cannot hold an object as one token; the fact builder
-- refuses a missing or malformed source file, naming it.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local facts = require "knwb.facts"
local pretrain = require "knwb.pretrain"

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local set = facts.load { facts = "data/facts.tsv", templates = "data/templates.yaml", relations = { "P36", "P30" } }
for _, r in ipairs(set.relations) do while #r.facts > 12 do table.remove(r.facts) end end

local cfg = { hidden_size = 64, num_hidden_layers = 2, num_attention_heads = 2, intermediate_size = 128,
  max_position_embeddings = 32 }
local opts = { model_config = cfg, vocab = "models/default/vocab.txt", set = set, seed = 3, steps = 300,
  batch = 32, lr = 2e-3, warmup = 20, weight_decay = 0.01, clip = 1.0, label_smoothing = 0, mask_prob = 0,
  log_every = 25, quiet = true }
local model, history = pretrain.run(opts)
local first, last = history[1], history[#history]
check.ok(last.loss < 0.5 * first.loss, "loss falls: %.3f -> %.3f", first.loss, last.loss)
check.ok(last.acc > first.acc + 0.2, "object accuracy rises: %.2f -> %.2f", first.acc, last.acc)
local acc, mean = pretrain.accuracy(model, pretrain.corpus(model, set, "train"))
check.ok(mean > 0.5, "training-template accuracy after 300 steps: %.2f", mean)

-- the same seed gives the same model (reproducible training)
local model2 = pretrain.run(opts)
local items = pretrain.corpus(model, set, "held_out")
local a, b = model:score(items), model2:score(items)
local same = true
for i = 1, #items do if a[i].logp ~= b[i].logp then same = false end end
check.ok(same, "two runs with the same seed give bit-identical scores on %d prompts", #items)

-- save and reload: identical logits
model:save(tmp .. "/m")
local back = knwb.load(tmp .. "/m")
local c = back:score(items, { topk = 3 })
local identical = true
for i = 1, #items do
  if a[i].logp ~= c[i].logp or a[i].top1 ~= c[i].top1 or a[i].top_p ~= nil then identical = identical and a[i].logp == c[i].logp end
end
check.ok(identical, "a saved and reloaded checkpoint scores %d prompts identically", #items)

-- resume: a run interrupted after a checkpoint continues to the same weights as an uninterrupted run
local function with(over)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  for k, v in pairs(over) do o[k] = v end
  return o
end
local full = pretrain.run(with { steps = 60, checkpoint_every = 20, out = tmp .. "/full" })
pretrain.run(with { steps = 60, checkpoint_every = 20, out = tmp .. "/cut", stop_after = 45 })
local resumed = pretrain.run(with { steps = 60, checkpoint_every = 20, out = tmp .. "/cut" })
local r1, r2 = full:score(items), resumed:score(items)
local eq = true
for i = 1, #items do if r1[i].logp ~= r2[i].logp then eq = false end end
check.ok(eq, "a run interrupted at step 45 and resumed from its step-40 checkpoint ends bit-identical to an uninterrupted run")

-- with dropout the masks of a step depend on (seed, step) only, so a resumed run still ends
-- bit-identical; and dropout does change the training
local drop = { steps = 60, checkpoint_every = 20, hidden_dropout = 0.1, neuron_dropout = 0.2 }
local function run_drop(over)
  local o = with(drop)
  for k, v in pairs(over) do o[k] = v end
  return pretrain.run(o)
end
local dfull = run_drop { out = tmp .. "/dfull" }
run_drop { out = tmp .. "/dcut", stop_after = 45 }
local dres = run_drop { out = tmp .. "/dcut" }
local d1, d2 = dfull:score(items), dres:score(items)
local deq, differs = true, false
for i = 1, #items do
  if d1[i].logp ~= d2[i].logp then deq = false end
  if d1[i].logp ~= r1[i].logp then differs = true end
end
check.ok(deq, "with dropout, a run interrupted at step 45 and resumed ends bit-identical to an uninterrupted run")
check.ok(differs, "hidden dropout 0.1 and neuron dropout 0.2 change the trained model")
check.err(function() run_drop { neuron_dropout = 1 } end, "neuron dropout 1 out of range [0, 1)", "a neuron dropout of 1 is refused")

-- packing: two sentences share a row as [CLS] a [SEP] b [SEP], both objects kept for masking
do
  local sa, sb = items[1], items[2]
  local row = pretrain.pack_row({ sa, sb })
  local want = {}
  for t = 1, #sa.ids do want[#want + 1] = sa.ids[t] end
  for t = 2, #sb.ids do want[#want + 1] = sb.ids[t] end
  check.eq(row.ids, want, ("pack_row: [CLS] a [SEP] b [SEP], the second [CLS] dropped (%d tokens)"):format(#want))
  check.eq(row.objects, { [sa.mask] = sa.target, [#sa.ids + sb.mask - 1] = sb.target },
    "pack_row: both object positions, the second shifted by the first sentence less its [CLS]")
  check.eq(pretrain.pack_row({ sa }).ids, sa.ids, "pack_row of one sentence is the sentence")
  local p1 = pretrain.run(with { steps = 60, pack = 1 })
  local same1 = true
  for i, r in ipairs(p1:score(items)) do if r.logp ~= r1[i].logp then same1 = false end end
  check.ok(same1, "pack = 1 trains exactly as without the option")
  local p2 = pretrain.run(with { steps = 60, pack = 2 })
  local differs2 = false
  for i, r in ipairs(p2:score(items)) do if r.logp ~= r1[i].logp then differs2 = true end end
  check.ok(differs2, "pack = 2 trains another model")
  check.err(function() pretrain.run(with { pack = 4 }) end, "more than the model's 32 positions (model.max_position_embeddings)",
    "a pack whose rows outgrow the positions is refused, naming the setting")
  check.err(function() pretrain.run(with { pack = 0 }) end, "pack must be an integer >= 1", "pack 0 is refused")
end

-- a vocabulary that cannot hold an object as one token is refused
local f = assert(io.open(tmp .. "/vocab.txt", "w"))
for _, t in ipairs { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "The", "capital", "of", "is", "." } do f:write(t, "\n") end
f:close()
local bad = {}
for k, v in pairs(opts) do bad[k] = v end
bad.vocab = tmp .. "/vocab.txt"
check.err(function() pretrain.run(bad) end, "is not one token of the vocabulary", "training refuses objects that are not one token")

-- the fact builder refuses a missing or malformed source, naming it
local function build(root)
  local cmd = string.format("KNWB_DATA_ROOT=%s ./knwb data/build_facts.lua %s 2>&1", knwb.run.shell_quote(root),
    knwb.run.shell_quote(tmp .. "/out"))
  os.execute("mkdir -p " .. tmp .. "/out")
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end
local ok, out = build(tmp .. "/empty-root")
check.ok(not ok and out:find("/usr/share/", 1, true) ~= nil, "builder names the missing source file: %s", (out:gsub("\n.*", "")))
os.execute("mkdir -p " .. tmp .. "/bad-root/usr/share/unicode/cldr/common/main")
local g = assert(io.open(tmp .. "/bad-root/usr/share/unicode/cldr/common/main/en.xml", "w"))
g:write("<ldml><this is not the CLDR file")
g:close()
ok, out = build(tmp .. "/bad-root")
check.ok(not ok and out:find("en.xml", 1, true) ~= nil, "builder names the malformed source file: %s", (out:gsub("\n.*", "")))
local leftover = io.open(tmp .. "/out/facts.tsv")
check.ok(leftover == nil, "a failed build writes no output")
if leftover then leftover:close() end

os.execute("rm -rf " .. knwb.run.shell_quote(tmp))
check.done()
