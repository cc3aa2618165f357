-- bench/prepare.lua: the inputs every benchmark process shares, made once and cached in OUT.
--   knwb bench/prepare.lua OUT
-- Writes into OUT (default bench/out, git-ignored):
--   vocab.txt             28996 tokens: [PAD] [UNK] [CLS] [SEP] [MASK] then w5 .. w28995
--   vocab-2581.txt        the same pattern, 2581 tokens (the default model's vocabulary size)
--   bert-base-random/     a BERT-base-shaped random model made by knwb.create (seed 1):
--                         12 layers, hidden 768, 12 heads, FFN 3072, 512 positions (~440 MB)
--   train-small/          a random model of the default model's config (seed 2): hidden 128,
--                         6 layers, 4 heads, FFN 128, 64 positions, vocab 2581
--   inputs.json           the 12-token prompt (ids, mask position, target id) and one masked-LM
--                         training batch (64 x 16 tokens, ~15% labelled rows), read by both
--                         knwb_bench.lua and torch_bench.py so that both sides see the same ids.
-- The models are only made when their folder lacks model.safetensors; inputs.json is rewritten
-- every time (it is cheap and deterministic).
local knwb = require "knwb"
local json = require "knwb.json"

local out = arg[1] or "bench/out"
os.execute("mkdir -p '" .. out .. "'")

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function write_vocab(path, n)
  local f = assert(io.open(path, "w"))
  f:write("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
  for i = 5, n - 1 do f:write("w", i, "\n") end
  f:close()
end

local BERT_BASE = { hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12, intermediate_size = 3072,
  max_position_embeddings = 512, vocab_size = 28996 }
local SMALL = { hidden_size = 128, num_hidden_layers = 6, num_attention_heads = 4, intermediate_size = 128,
  max_position_embeddings = 64, vocab_size = 2581 }

local function make_model(dir, cfg, seed, vocab)
  if exists(dir .. "/model.safetensors") and exists(dir .. "/config.json") then return false end
  local t0 = knwb.core.now()
  local m = knwb.create(cfg, seed, vocab)
  m:save(dir)
  m:free()
  io.stderr:write(string.format("prepare: made %s in %.1f s\n", dir, knwb.core.now() - t0))
  return true
end

if not exists(out .. "/vocab.txt") then write_vocab(out .. "/vocab.txt", BERT_BASE.vocab_size) end
if not exists(out .. "/vocab-2581.txt") then write_vocab(out .. "/vocab-2581.txt", SMALL.vocab_size) end
make_model(out .. "/bert-base-random", BERT_BASE, 1, out .. "/vocab.txt")
make_model(out .. "/train-small", SMALL, 2, out .. "/vocab-2581.txt")

-- the prompt: [CLS] + 10 words (the 6th is [MASK]) + [SEP] = 12 tokens
local m = knwb.load(out .. "/bert-base-random")
local item = m:item("w101 w102 w103 w104 w105 [MASK] w107 w108 w109 w110", "w2024")
assert(#item.ids == 12, "the benchmark prompt must be 12 tokens")
m:free()

-- one training batch: 64 sequences of 16 tokens, [CLS] 14 words [SEP]; each word position is
-- labelled with probability 0.15 (at least one per sequence) and then replaced by [MASK]
local B, T, V = 64, 16, SMALL.vocab_size
math.randomseed(20240611)
local ids, rows, labels = {}, {}, {}
for b = 0, B - 1 do
  local chosen = {}
  for t = 1, T - 2 do chosen[t] = math.random() < 0.15 end
  local any = false
  for t = 1, T - 2 do any = any or chosen[t] end
  if not any then chosen[math.random(1, T - 2)] = true end
  for t = 0, T - 1 do
    local id
    if t == 0 then id = 2 elseif t == T - 1 then id = 3 else id = math.random(5, V - 1) end
    if t > 0 and t < T - 1 and chosen[t] then
      rows[#rows + 1] = b * T + t
      labels[#labels + 1] = id
      id = 4 -- [MASK]
    end
    ids[#ids + 1] = id
  end
end

local inputs = {
  prompt = { ids = item.ids, mask = item.mask, target = item.target, text = item.prompt },
  train = { B = B, T = T, ids = ids, rows = rows, labels = labels, lr = 1e-3, clip = 1.0, weight_decay = 0.01 },
  models = { bert_base = "bert-base-random", train_small = "train-small" },
}
local f = assert(io.open(out .. "/inputs.json", "w"))
f:write(json.encode(inputs), "\n")
f:close()
io.stderr:write(string.format("prepare: inputs.json (prompt of %d tokens, training batch %dx%d with %d labelled rows)\n",
  #item.ids, B, T, #rows))
