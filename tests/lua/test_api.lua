-- test_api.lua: the Lua surface of the engine on a fixture model: prompts, targets, top-k,
-- probabilities, interventions (model:with), capture, gradients, attribution, userdata checks,
-- misuse after free, and the attribution store (reuse, a truncated score file, another model's
-- scores). Every refusal is checked by its message.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local attribution = require "knwb.attribution"

local m = knwb.load("tests/fixtures/ref/odd")
check.ok(tostring(m):find("3 layers", 1, true), "model prints its shape: %s", tostring(m))
local cfg = m:config()
check.eq(cfg.num_hidden_layers, 3, "config: layers")
check.eq(cfg.intermediate_size, 50, "config: FFN width")
local dims = m:dims()
check.eq(dims.layers, 3, "dims: layers")
check.eq(dims.neurons, 50, "dims: neurons per layer")
check.eq(dims.hidden, 36, "dims: hidden")
check.eq(dims.vocab, 97, "dims: vocabulary")
check.eq(dims.family, "bert", "dims: family")
check.eq(dims.causal, false, "dims: BERT is not causal")
check.eq(#dims.neurons_per_layer, 3, "dims: one neuron count per layer")
check.eq(dims.neurons_per_layer[3], 50, "dims: layer 2's neuron count")
local untied = knwb.load("tests/fixtures/ref/bert_untied"):config()
check.eq(untied.tie_word_embeddings, false, "config: an untied decoder is reported")
check.eq(knwb.load("tests/fixtures/ref/bert_gelu_new"):config().hidden_act, "gelu_new", "config: hidden_act as the file spells it")
check.err(function() knwb.load("bert-base-cased") end, "does not download", "a hub name is not a folder")

-- prompts and targets
local ids, mask = m:encode("w1 w2 [MASK] w3")
check.eq(#ids, 6, "encode adds [CLS] and [SEP]")
check.eq(mask, 3, "mask position counts from 0 with [CLS] at 0")
check.err(function() m:encode("w1 w2 w3") end, "prompt has no [MASK]", "a prompt without [MASK]")
check.err(function() m:encode("[MASK] w1 [MASK]") end, "2 [MASK] tokens", "a prompt with two [MASK]")
check.err(function() m:item("w1 [MASK]", "w1 w2") end, "is not a single token", "a target of two tokens")
check.err(function() m:item("w1 [MASK]", "zebra") end, "tokenizes to [UNK]", "a target outside the vocabulary")
check.err(function() m:token(97) end, "out of range [0, 97)", "token id out of range")
check.err(function() m:score({ { ids = { 2, 500, 3 }, mask = 1 } }) end, "token id 500", "an id outside the vocabulary")
check.err(function() m:score({ { ids = { 2, 5, 3 }, mask = 7 } }) end, "mask position 7 out of range", "mask outside the prompt")
check.err(function() m:gradient(m:item("w1 [MASK]", "w5"), 3) end, "layer 3 out of range [0, 3)", "gradient layer out of range")
check.err(function() m:score({ m:item("w1 [MASK]") }, { interventions = { { layer = 0, neurons = { 50 } } } }) end,
  "neuron 50 out of range [0, 50)", "intervention neuron out of range")
check.err(function() m:score({ m:item("w1 [MASK]") }, { interventions = { { layer = 0, op = "double" } } }) end,
  "op \"double\" is not one of set, scale, add", "unknown intervention op")

-- top-k and probabilities agree
local top = m:topk("w1 w2 [MASK] w3", 3)
check.eq(#top, 3, "top-3")
check.ok(top[1].p >= top[2].p and top[2].p >= top[3].p, "top-k is sorted")
local p, logp, rank = m:prob("w1 w2 [MASK] w3", top[1].token)
check.near(p, top[1].p, 1e-6, "prob of the top-1 token equals its top-k probability")
check.eq(rank, 1, "its rank is 1")
check.near(math.log(p), logp, 1e-6, "log-probability")

-- interventions: suppressing neurons = setting them to 0; amplify x1 changes nothing
local item = m:item("w1 w2 [MASK] w3", top[1].token)
local base = m:score({ item })[1]
local sup = m:with({ suppress = { { 2, 3 }, { 2, 7 } } }, function() return m:score({ item })[1] end)
local set0 = m:score({ item }, { interventions = { { layer = 2, neurons = { 3, 7 }, op = "set", value = 0 } } })[1]
check.eq(sup.p, set0.p, "model:with{suppress} is a set-to-0 intervention")
check.ok(sup.p ~= base.p, "suppressing two neurons changes P (%.6f -> %.6f)", base.p, sup.p)
local amp1 = m:with({ amplify = { { 2, 3 } }, factor = 1 }, function() return m:score({ item })[1] end)
check.eq(amp1.p, base.p, "amplifying by 1 leaves P bit-identical")
check.eq(m:score({ item })[1].p, base.p, "interventions end with model:with")
check.err(function() m:with({ suppress = { { 9, 1 } } }, function() return m:score({ item }) end) end,
  "layer 9 out of range", "model:with passes errors through")
check.eq(m:score({ item })[1].p, base.p, "... and removes its interventions after an error")

-- capture: ffn.act at the mask position; an intervention shows in the capture
local acts = m:capture({ item })[1]
local r, c = acts:shape()
check.eq(r * 100 + c, 3 * 100 + 50, "capture is [layers, FFN]")
local cap2 = m:capture({ item }, { interventions = { { layer = 1, neurons = { 4 }, op = "set", value = 0.5 } } })[1]
check.near(cap2:get(1, 4), 0.5, 1e-7, "capture sees the intervened value")

-- gradient of P w.r.t. ffn.act agrees with a finite difference
local g, val = m:gradient(item, 2)
check.near(val, base.p, 1e-6, "gradient returns the value P")
local h = 1e-2
local up = m:score({ item }, { interventions = { { layer = 2, neurons = { 5 }, op = "add", value = h } } })[1].p
local dn = m:score({ item }, { interventions = { { layer = 2, neurons = { 5 }, op = "add", value = -h } } })[1].p
check.near((up - dn) / (2 * h), g[6], 2e-2 * math.abs(g[6]) + 1e-5, "dP/d ffn.act[2][5] matches a finite difference")

-- attribution: scores in C, completeness delta per layer
local scores, a, info = m:attribute(item, { steps = 20 })
check.eq(#info.delta, 3, "a completeness delta per layer")
check.near(info.sum[3], info.p_full - info.p_zero[3] + info.delta[3], 1e-9, "delta = sum of scores - (P(full) - P(zero))")
check.near(a:get(2, 5), acts:get(2, 5), 1e-6, "attribution's activations equal the captured ones")
check.err(function() m:attribute(item, { quadrature = "simpson" }) end, "quadrature \"simpson\"", "unknown quadrature")
check.err(function() m:attribute(item, { steps = 0 }) end, "steps 0 out of range", "zero steps")

-- editing conveniences: an update and an erasure, each undone exactly (on a model of its own:
-- an edited model's attribution scores are never stored, even after undo)
do
  local m = knwb.load("tests/fixtures/ref/odd")
  local before = m:score({ item })[1]
  local upd = m:update_fact({ { 2, 3 }, { 2, 7 } }, item.target, "w40")
  check.ok(m:score({ item })[1].p ~= before.p, "model:update_fact changes P")
  check.eq(#m:edits(), 1, "the update is listed among the edits in force")
  upd:undo()
  check.eq(m:score({ item })[1].p, before.p, "undoing the update restores P bit for bit")
  local er = m:erase({ { 1, 4 } })
  check.ok(m:score({ item })[1].p ~= before.p, "model:erase changes P")
  er:undo()
  check.eq(#m:edits(), 0, "no edit in force after both undos")
  check.err(function() m:erase({}) end, "no neurons to erase", "an erasure of zero neurons is refused")
  check.err(function() m:update_fact({ { 2, 3 } }, item.target, "w40 w41") end, "is not a single token",
    "a new object of two tokens is refused")
  check.eq(m:score({ item })[1].p, before.p, "refused edits leave the model unchanged")
end

-- userdata are checked
check.err(function() m.score(scores, { item }) end, "knwb.Model expected", "a method called on the wrong userdata")
local scratch = knwb.load("tests/fixtures/ref/gamma")
scratch:free()
check.err(function() scratch:score({ item }) end, "the model was freed", "a freed model raises an error")
check.eq(tostring(scratch), "knwb.Model (freed)", "a freed model prints as freed")
do local closing <close> = knwb.load("tests/fixtures/ref/gamma") end
check.ok(true, "a model is closed by a to-be-closed variable")
check.err(function() knwb.load("tests/fixtures/no-such-model") end, "not a model folder", "a missing model folder")

-- the attribution store: reuse, truncation, another model
local tmp = os.tmpname()
os.remove(tmp)
local store = attribution.open(tmp, m)
local o = { steps = 20, quadrature = "left", target = "prob" }
local s1 = store:attribute(m, item, o)
check.eq(store.misses, 1, "first attribution is computed")
local again = attribution.open(tmp, m)
local s2 = again:attribute(m, item, o)
check.eq(again.hits, 1, "a new store reads the stored scores back")
check.eq(s2:tobytes(), s1:tobytes(), "stored scores are bit-identical")
-- truncate scores.bin: the entry no longer has its bytes and is recomputed
local bin = again.bin_path
local f = io.open(bin, "rb"); local bytes = f:read("a"); f:close()
f = io.open(bin, "wb"); f:write(bytes:sub(1, 100)); f:close()
local cut = attribution.open(tmp, m)
check.ok(cut.dropped >= 1, "a truncated score file drops its entries (%d dropped)", cut.dropped)
local s3 = cut:attribute(m, item, o)
check.eq(cut.misses, 1, "... and the prompt is recomputed")
check.eq(s3:tobytes(), s1:tobytes(), "... to the same scores")
-- another model's index: copy this model's folder under another model's hash
local other = knwb.load("tests/fixtures/ref/gamma")
local ostore = attribution.open(tmp, other)
os.execute(string.format("cp %s/index.jsonl %s/index.jsonl", knwb.run.shell_quote(cut.dir), knwb.run.shell_quote(ostore.dir)))
local reopened = attribution.open(tmp, other)
check.ok(reopened.dropped >= 1 and next(reopened.entries) == nil, "scores stored for another model are not used")
os.execute("rm -rf " .. knwb.run.shell_quote(tmp))

-- model:score reuses one activation arena, grown to the largest batch seen: a small batch after a
-- big one scores exactly as on a fresh model.
do
  local fresh = knwb.load("tests/fixtures/ref/odd")
  local big = {}
  for k = 1, 30 do big[k] = m:item("w1 w2 w20 w3 w4 w5 w6 w7 w8 w9 w10 w11 [MASK] w12", "w40") end
  m:score(big)
  local small = { m:item("w1 [MASK] w3", "w40"), m:item("[MASK] w4 w5 w21", "w41") }
  local a, b = m:score(small), fresh:score(small)
  check.ok(a[1].logp == b[1].logp and a[2].logp == b[2].logp and a[1].top1 == b[1].top1,
    "score after a bigger batch equals a fresh model's, bit for bit")
  fresh:free()
end

-- What a value slot promotes: slot_top and slot_rank against a projection computed here in double
-- precision from model:slot and model:embedding (the engine's is one float GEMV).
do
  local V = cfg.vocab_size
  local v = m:slot(2, 7)
  local scores, order = {}, {}
  for t = 0, V - 1 do
    local e, s = m:embedding(t), 0.0
    for r = 1, #v do s = s + e[r] * v[r] end
    scores[t], order[#order + 1] = s, t
  end
  table.sort(order, function(a, b) return scores[a] > scores[b] or (scores[a] == scores[b] and a < b) end)
  local top = m:slot_top(2, 7, 5)
  local ids_ok, close = #top == 5, true
  for j, x in ipairs(top) do
    ids_ok = ids_ok and x.id == order[j] and x.token == m:token(x.id)
    close = close and math.abs(x.score - scores[x.id]) <= 1e-5 * (1 + math.abs(scores[x.id]))
  end
  check.ok(ids_ok, "slot_top: the 5 tokens of highest projection, best first, with their tokens")
  check.ok(close, "slot_top: scores = word embedding . value slot (within 1e-5)")
  local ranks_ok = true
  for _, j in ipairs { 1, 2, 17, V } do
    local rank, score = m:slot_rank(2, 7, order[j])
    ranks_ok = ranks_ok and rank == j and math.abs(score - scores[order[j]]) <= 1e-5 * (1 + math.abs(score))
  end
  check.ok(ranks_ok, "slot_rank: the place of a token in that order (1, 2, 17 and last of %d)", V)
  check.eq(#m:slot_top(0, 0), 10, "slot_top: 10 tokens by default")
  local edited = m:edit({ { layer = 2, neuron = 7, vector = m:embedding(order[V]) } }, "probe")
  check.eq((m:slot_rank(2, 7, order[V])), 1, "slot_rank reads the slot as edited (set to the embedding of the token it ranked last, it ranks it first)")
  edited:undo()
  check.err(function() m:slot_top(3, 0) end, "layer 3 out of range [0, 3)", "slot_top: a layer out of range")
  check.err(function() m:slot_top(0, 50) end, "neuron 50 out of range [0, 50)", "slot_top: a neuron out of range")
  check.err(function() m:slot_top(0, 0, 0) end, "k must be in [1, " .. V .. "]", "slot_top: k out of range")
  check.err(function() m:slot_rank(0, 0, V) end, "token id " .. V .. " out of range", "slot_rank: a token id out of range")
  check.err(function() m:slot(4294967297, 0) end, "integer 4294967297 out of range [-2147483648, 2147483648)", "a layer beyond int range is refused, not wrapped to 1")
  check.err(function() m:slot_top(0, -4294967296) end, "integer -4294967296 out of range", "a neuron beyond int range is refused")
end
check.done()
