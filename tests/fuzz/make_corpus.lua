-- make_corpus.lua: writes the seeds of the binary harnesses, which are better made than
-- committed: build/fuzz/corpus/{model,safetensors,store}/. Run by `make` (./knwb
-- tests/fuzz/make_corpus.lua OUT) before the fuzz smoke. The model seeds are a tiny random BERT
-- (8 tokens, hidden 4, 1 layer) saved by knwb itself; the store seeds are records written by the
-- attribution store's own put(), for a stand-in model, so they pass its checks whatever they are.
local core = require "knwb.core"
local out = assert(arg[1], "usage: knwb tests/fuzz/make_corpus.lua OUTDIR")
local SEP = "\n--8<--\n"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  assert(f:close())
end

local function sh(cmd) assert(os.execute(cmd), cmd) end

for _, d in ipairs { "model", "safetensors", "store", "tmp" } do sh("mkdir -p '" .. out .. "/" .. d .. "'") end
local tmp = out .. "/tmp"

-- a tiny model, cased and uncased
write(tmp .. "/vocab.txt", table.concat({ "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "is", "##s" }, "\n") .. "\n")
for i, lower in ipairs { false, true } do
  local m = core.create({ hidden_size = 4, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 6,
    max_position_embeddings = 8, type_vocab_size = 1, do_lower_case = lower }, i, tmp .. "/vocab.txt")
  local dir = tmp .. "/model" .. i
  m:save(dir)
  local parts = { read(dir .. "/config.json"), read(dir .. "/vocab.txt"), read(dir .. "/model.safetensors") }
  write(out .. "/model/tiny" .. i, table.concat(parts, SEP))
  write(out .. "/model/tiny" .. i .. "_tokcfg", table.concat(parts, SEP) .. SEP .. read(dir .. "/tokenizer_config.json"))
  write(out .. "/safetensors/tiny" .. i, parts[3])
end

-- the attribution store: two records of a stand-in model (L = 2, F = 3)
local A = require "knwb.attribution"
local hash = string.rep("5eed", 16)
A._hashes = { ["fuzz-weights"] = hash }
local model = {
  config = function() return { num_hidden_layers = 2, intermediate_size = 3 } end,
  info = function() return { generation = 0, weights_file = "fuzz-weights" } end,
}
local sdir = tmp .. "/store"
sh("rm -rf '" .. sdir .. "'")
local s = A.open(sdir, model)
local function rec(base)
  local b = {}
  for i = 1, 6 do b[i] = string.pack("<f", base + i / 8) end
  return core.scores(2, 3, table.concat(b))
end
s:put(s:key({ prompt = "a [MASK]", target = 5 }, "ig", { steps = 4 }), rec(1), { p_full = 0.5, delta = { 0.1, 0.2 } })
s:put(s:key({ prompt = "a [MASK]", target = 5 }, "activation", {}), rec(2))
local d = sdir .. "/" .. hash:sub(1, 16)
write(out .. "/store/two", read(d .. "/index.jsonl") .. SEP .. read(d .. "/scores.bin"))
print("fuzz corpus written to " .. out)
