-- test_edit_rules.lua: knwb.edit on the fixture model tests/fixtures/ref/odd (hidden 36, FFN 50,
-- 3 layers): the norm-scaled update rule against a hand computation, the hub filter on a
-- hand-worked example, erase vectors, the journal, exact undo, evaluation,
-- and the error messages of bad edits.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local edit = require "knwb.edit"
local json = require "knwb.json"

local MODEL = "tests/fixtures/ref/odd"
local model = knwb.load(MODEL)
local C = model:config().hidden_size

local function f32(x) return (string.unpack("f", string.pack("f", x))) end

local function same_bits(a, b)
  if #a ~= #b then return false end
  for r = 1, #a do if string.pack("f", a[r]) ~= string.pack("f", b[r]) then return false end end
  return true
end

local probe = {
  model:item("w30 w10 w11 [MASK]", "w83"), model:item("[MASK] w14 w31 w15", "w4"),
  model:item("w20 w32 w21 [MASK] w22", "w83"),
}
local function probe_scores()
  local out = {}
  for k, r in ipairs(model:score(probe)) do out[k] = string.pack("ddi", r.p, r.logp, r.top1) end
  return table.concat(out)
end
local pristine = probe_scores()

---------------------------------------------------------------------------------------------------
print("# update rule = hand computation")
do
  local neurons = { { 2, 5 }, { 0, 49 }, { 1, 21 } }
  local t, tn = model:id("w83"), model:id("w4")
  local et, en = model:embedding(t), model:embedding(tn)
  local function hand_norm(v)            -- written out again, on purpose, not edit.norm
    local acc = 0.0
    for r = #v, 1, -1 do acc = acc + v[r] ^ 2 end
    return acc ^ 0.5
  end
  local before, want = {}, {}
  for k, ne in ipairs(neurons) do
    local v = model:slot(ne[1], ne[2])
    before[k] = v
    local a = hand_norm(v) / hand_norm(et) * 1
    local b = hand_norm(v) / hand_norm(en) * 8
    want[k] = {}
    for r = 1, C do want[k][r] = v[r] - a * et[r] + b * en[r] end
  end
  local vecs = edit.update_vectors(model, neurons, "w83", "w4", 1, 8)
  check.eq(#vecs, 3, "one vector per neuron")
  local worst = 0
  for k, v in ipairs(vecs) do
    check.eq({ v.layer, v.neuron, #v.vector }, { neurons[k][1], neurons[k][2], C }, "vector " .. k .. ": layer, neuron, hidden size")
    for r = 1, C do worst = math.max(worst, math.abs(v.vector[r] - want[k][r])) end
  end
  check.ok(worst < 1e-12, "new columns equal the hand computation element-wise (max |diff| %.3g)", worst)
  local v1 = vecs[1]
  check.near(v1.lambda1 * edit.norm(et), edit.norm(before[1]), 1e-9, "lambda1 * |e_t| = |v| (l1 = 1)")
  check.near(v1.lambda2 * edit.norm(en), 8 * edit.norm(before[1]), 1e-9, "lambda2 * |e_t'| = 8 |v| (l2 = 8)")
  local ids = edit.update_vectors(model, neurons, t, tn, 1, 8)
  check.eq(ids[2].vector, vecs[2].vector, "token ids and words give the same vectors")
  local other = edit.update_vectors(model, neurons, "w83", "w4", 2, 3)
  check.near(other[1].lambda1, 2 * v1.lambda1, 1e-12, "lambda1 scales with l1")
  check.near(other[1].lambda2, 3 / 8 * v1.lambda2, 1e-12, "lambda2 scales with l2")
  check.ok(same_bits(model:slot(2, 5), before[1]), "update_vectors writes nothing")

  local h = model:edit(vecs, "test update")
  local wf = 0
  for k, ne in ipairs(neurons) do
    local now = model:slot(ne[1], ne[2])
    for r = 1, C do wf = math.max(wf, math.abs(now[r] - f32(want[k][r])) / math.max(1, math.abs(want[k][r]))) end
  end
  check.ok(wf <= 2 ^ -23, "after model:edit each slot holds the hand-computed column in float32 (max rel. diff %.3g)", wf)
  check.ok(probe_scores() ~= pristine, "the edit changes the model's predictions")
  h:undo()
  local all = true
  for k, ne in ipairs(neurons) do all = all and same_bits(model:slot(ne[1], ne[2]), before[k]) end
  check.ok(all, "after undo every touched slot is bit-identical to before")
  check.ok(probe_scores() == pristine, "after undo P(gold), log P and top-1 are bit-identical")
  check.eq(#model:edits(), 0, "no edit in force after undo")

  local h1 = edit.update(model, neurons, "w83", "w4")
  local h2 = edit.erase(model, { { 2, 5 }, { 1, 7 } })
  h1:undo()
  check.ok(probe_scores() ~= pristine, "overlapping edits: undoing the first leaves the second in force")
  h2:undo()
  check.ok(same_bits(model:slot(2, 5), before[1]) and probe_scores() == pristine,
    "overlapping edits undone out of order: bit-identical again")
end

---------------------------------------------------------------------------------------------------
print("# hub filter (select_kn)")
do
  -- 20 facts; fact 1 is b. (0,1) only in b: cnt = 1 + 1 = 2, not > 0.1 * 20 = 2 -> kept.
  -- (0,2) in b and one other fact: cnt = 3 > 2 -> dropped. (0,3) in b and 4 others: cnt 6 -> dropped.
  local kn_b = { { 0, 1 }, { 0, 2 }, { 0, 3 } }
  local rel = { { kn = kn_b } }
  for f = 2, 20 do rel[f] = { kn = {} } end
  rel[2].kn = { { 0, 2 }, { 0, 3 } }
  for f = 3, 5 do rel[f].kn = { { 0, 3 } } end
  local kept, info = edit.hub_filter(kn_b, rel, 0.1)
  check.eq(kept, { { 0, 1 } }, "20 facts, share 0.1: only the neuron b alone has survives")
  check.eq({ info[1].cnt, info[2].cnt, info[3].cnt }, { 2, 3, 6 }, "cnt = 1 + facts holding it (b included)")
  check.eq({ info[1].kept, info[2].kept, info[3].kept }, { true, false, false }, "cnt > share x facts is dropped")
  local lists = {}
  for f, r in ipairs(rel) do lists[f] = r.kn end
  check.eq((edit.hub_filter(kn_b, lists, 0.1)), kept, "plain neuron lists work like records")
  -- 19 facts: the limit 1.9 is below the minimum cnt 2: everything goes (the code's behaviour on
  -- small relations).
  local small = {}
  for f = 1, 19 do small[f] = rel[f] end
  check.eq(#edit.hub_filter(kn_b, small, 0.1), 0, "fewer than 20 facts at share 0.1: every neuron is dropped")
  check.eq(edit.hub_filter(kn_b, rel, 0.3), { { 0, 1 }, { 0, 2 }, { 0, 3 } }, "share 0.3 (limit 6): cnt 6 is kept (not > 6)")
  check.eq(edit.hub_filter(kn_b, rel, 0.25), { { 0, 1 }, { 0, 2 } }, "share 0.25 (limit 5): cnt 6 is dropped")
  check.eq(edit.hub_filter({ { 0, 1 } }, { { kn = { { 0, 1 }, { 0, 1 } } } }, 1)[1], nil,
    "a neuron listed twice in one fact counts once (cnt 2 > 1)")
end

---------------------------------------------------------------------------------------------------
print("# erase vectors")
do
  local z = edit.erase_vectors(model, { { 0, 3 }, { 2, 49 } })
  check.eq(#z, 2, "one vector per neuron")
  local zeros = true
  for _, v in ipairs(z) do
    check.eq(#v.vector, C, "vector of the hidden size")
    for r = 1, C do zeros = zeros and v.vector[r] == 0 end
  end
  check.ok(zeros, "value zero: all zeros (the official code)")
  check.eq(z[2].layer * 100 + z[2].neuron, 249, "layer and neuron carried")
  local u = edit.erase_vectors(model, { { 1, 0 } }, "unk")
  check.eq(u[1].vector, model:embedding(model:id("[UNK]")), "value unk: the [UNK] word embedding (id 1 here)")
  check.err(function() edit.erase_vectors(model, { { 1, 0 } }, "ones") end, 'value must be "zero" or "unk"', "an unknown erase value is refused")
  local h = edit.erase(model, { { 1, 4 } })
  local col = model:slot(1, 4)
  check.eq(edit.norm(col), 0.0, "edit.erase zeroes the slot")
  h:undo()
end

---------------------------------------------------------------------------------------------------
print("# journal")
do
  local dir = os.tmpname()
  os.remove(dir)
  local run = knwb.run.new { out = dir }
  local w = run:jsonl("edits.jsonl", "w")
  local j = edit.journal(w)
  local neurons = { { 2, 0 }, { 1, 21 } }
  local old = { edit.norm(model:slot(2, 0)), edit.norm(model:slot(1, 21)) }
  local h = edit.update(model, neurons, "w83", "w4", { lambda1 = 1, lambda2 = 8, journal = j, params = { relation = "P1" } })
  local new = { edit.norm(model:slot(2, 0)), edit.norm(model:slot(1, 21)) }
  local e = j.entries[1]
  check.eq(e.event, "apply", "entry event")
  check.eq(e.edit, h:info().id, "entry edit id = the handle's id")
  check.eq(e.rule, "update", "entry rule")
  check.eq({ e.params.lambda1, e.params.lambda2, e.params.t, e.params.t_new, e.params.relation }, { 1, 8, "w83", "w4", "P1" }, "entry params")
  check.eq(#e.neurons, 2, "one neuron entry per slot")
  check.eq({ e.neurons[2].layer, e.neurons[2].neuron }, { 1, 21 }, "neuron entry layer and index")
  check.near(e.neurons[1].old_norm, old[1], 1e-12, "old_norm = |slot| before")
  check.near(e.neurons[2].new_norm, new[2], 1e-12, "new_norm = |slot| after")
  check.ok(e.label:find("update w83 -> w4", 1, true) ~= nil, "label names the rule and objects: %s", e.label)
  j:undo(h)
  check.eq(j.entries[2], { event = "undo", edit = e.edit }, "undo entry")
  local h2 = edit.erase(model, { { 0, 0 } }, { journal = j, value = "zero" })
  check.eq(j.entries[3].neurons[1].new_norm, 0.0, "erase entry: new_norm 0")
  check.eq(j.entries[3].rule, "erase", "erase entry rule")
  j:undo(h2)
  w:close()
  local lines = run:read_jsonl("edits.jsonl")
  check.eq(#lines, 4, "four JSON lines written")
  check.eq({ lines[1].edit, lines[1].rule, lines[1].params.lambda2, lines[1].neurons[1].layer },
    { e.edit, "update", 8, 2 }, "the file holds the fields")
  check.ok(math.type(lines[1].neurons[1].old_norm) == "float", "norms are numbers in the file")
  os.execute("rm -rf -- " .. knwb.run.shell_quote(dir))
  check.ok(probe_scores() == pristine, "model back to pristine after the journalled edits")
end

---------------------------------------------------------------------------------------------------
print("# evaluate")
do
  local ev, res = edit.evaluate(model, probe)
  local nll, correct = 0, 0
  for k, r in ipairs(res) do
    nll = nll - math.log(r.p)
    if r.top1 == probe[k].target then correct = correct + 1 end
  end
  check.eq(ev.n, 3, "n prompts")
  check.near(ev.nll, nll / 3, 1e-9, "nll = mean -ln P(gold)")
  check.near(ev.ppl, math.exp(nll / 3), 1e-9, "ppl = exp(mean -ln P(gold))")
  check.near(ev.acc, correct / 3, 0, "acc = share of top-1 == gold")
  local part = edit.summarize(probe, res, function(k) return k ~= 2 end)
  check.eq(part.n, 2, "summarize over a subset")
  check.eq(edit.summarize(probe, res, function() return false end), { n = 0, correct = 0 }, "an empty subset has no ppl")
end

---------------------------------------------------------------------------------------------------
print("# bad edits")
do
  check.err(function() edit.erase(model, {}) end, "no neurons to erase", "an erase of zero neurons is refused")
  check.ok(probe_scores() == pristine, "... and the logits are unchanged")
  check.err(function() model:edit({}) end, "at least one value slot", "model:edit of zero neurons is refused")
  check.err(function() edit.update(model, {}, "w83", "w4") end, "no neurons to edit", "an update of zero neurons is refused")
  check.err(function() model:item("w30 w10 w11 [MASK]", "w1 w2") end, 'target "w1 w2" is not a single token',
    "a new object of two tokens: model:item names it")
  check.err(function() edit.update_vectors(model, { { 0, 1 } }, "w83", "Lyon") end, "is not a single token",
    "update_vectors refuses a new object that is not one token")
  check.err(function() edit.update_vectors(model, { { 3, 1 } }, "w83", "w4") end, "layer 3 out of range", "a layer out of range")
  check.err(function() edit.erase(model, { { 0, 50 } }) end, "neuron 50 out of range", "a neuron out of range")
  check.err(function() edit.erase(model, { { 0, 1 }, { 0, 1 } }) end, "twice", "a slot named twice")
  -- A bad argument is reported at the line that passed it (this file's), with its place in the
  -- list and the allowed range; never at a line of knwb's own files.
  local function where(f)
    local ok, msg = pcall(f)
    return not ok and tostring(msg) or "no error"
  end
  local here = "^tests/lua/test_edit_rules%.lua:%d+: "
  local cases = {
    { function() edit.update(model, { { 0, 1 }, { 3, 1 } }, "w83", "w4") end, "update: neuron 2 {3, 1}: layer 3 out of range [0, 3)" },
    { function() edit.erase(model, { { 0, -1 } }) end, "erase: neuron 1 {0, -1}: neuron -1 out of range [0, 50)" },
    { function() edit.update(model, { { 0, 1 } }, "w83", "Lyon") end, "update: the new object: " },
    { function() edit.erase(model, { { 0, 1 } }, { value = "ones" }) end, 'erase: value must be "zero" or "unk"' },
    { function() edit.update_vectors(model, { { 0, 1.5 } }, "w83", "w4") end, "update: neuron 1 must be {layer, neuron} with integers" },
    { function() model:update_fact({ { 5, 1 } }, "w83", "w4") end, "update: neuron 1 {5, 1}: layer 5 out of range [0, 3)" },
    { function() model:erase("all") end, "erase: neurons must be a list of {layer, neuron}, got a string" },
  }
  for k, c in ipairs(cases) do
    local msg = where(c[1])
    check.ok(msg:find(here) and msg:find(c[2], 1, true), "bad edit %d is reported at the caller's line: %s", k, msg)
  end
  check.ok(probe_scores() == pristine and #model:edits() == 0, "refused edits leave the model unchanged")
  local m2 = knwb.load(MODEL)
  local h = edit.erase(m2, { { 0, 1 } })
  m2:free()
  check.err(function() h:undo() end, "freed", "an edit handle used after its model was freed")
  check.err(function() h:info() end, "freed", "... info() too")
end

model:free()
check.done()
