-- knwb.edit: the editing rules of Dai et al. sections 4.5 and 4.6, exactly as the official code
-- (6_edit_knowledge_sampled.py, 7_erase_knowledge.py) applies them, and the journal of edits.
--
--   local vecs = edit.update_vectors(model, neurons, "Paris", "Lyon", 1, 8)   -- the norm-scaled rule
--   local kept = edit.hub_filter(record.kn, relation_records, 0.1)           -- select_kn
--   local h = edit.update(model, kept, t, t_new, { lambda1 = 1, lambda2 = 8, journal = j })
--   local h = edit.erase(model, neurons, { value = "zero", journal = j })    -- or value = "unk"
--   j:undo(h)                                                                  -- undo, journalled
--   local ev = edit.evaluate(model, items)          -- accuracy and perplexity exp(mean -ln P(gold))
--
-- The rules compute new value-slot columns; model:edit (knwb.core) writes them as one transaction
-- that undoes bit-exactly. A neuron is {layer, neuron} (or {layer=, neuron=}), both from 0.
-- The random neuron sets of the controls are knwb.random's.
-- It is not a metrics library (knwb.metrics) and keeps no state of its own.
local json = require "knwb.json"

local edit = {}

local function lc(ne) return ne[1] or ne.layer, ne[2] or ne.neuron end
local function key(l, i) return l * 1000003 + i end

--- Euclidean norm of a list of numbers (in double precision).
function edit.norm(v)
  local s = 0.0
  for r = 1, #v do s = s + v[r] * v[r] end
  return math.sqrt(s)
end
local norm = edit.norm

-- Every neuron is checked before anything is read or written, so a bad one is reported at the
-- caller's line with its place in the list and the allowed range, and the model is unchanged.
local function check_neurons(model, neurons, what)
  if type(neurons) ~= "table" then
    error(("%s: neurons must be a list of {layer, neuron}, got a %s"):format(what, type(neurons)), 3)
  end
  local c = model:config()
  local L, F = c.num_hidden_layers, c.intermediate_size
  for k, ne in ipairs(neurons) do
    local l, i
    if type(ne) == "table" then l, i = lc(ne) end
    if math.type(l) ~= "integer" or math.type(i) ~= "integer" then
      error(("%s: neuron %d must be {layer, neuron} with integers"):format(what, k), 3)
    end
    if l < 0 or l >= L then
      error(("%s: neuron %d {%d, %d}: layer %d out of range [0, %d)"):format(what, k, l, i, l, L), 3)
    end
    if i < 0 or i >= F then
      error(("%s: neuron %d {%d, %d}: neuron %d out of range [0, %d)"):format(what, k, l, i, i, F), 3)
    end
  end
end

-- An error from a helper inside a public function is raised again at that function's caller.
local at_caller = require "knwb.caller"

local function token_id(model, t, what)
  local ok, id = pcall(model.target_id, model, t)
  if not ok then error(string.format("%s: %s", what, tostring(id):gsub("^[^:]*:%d+: ", "")), 3) end
  return id
end

---------------------------------------------------------------------------------------------------
-- Update (paper 4.5, official code): for each neuron (l, i), with v = value slot, e = rows of the
-- input word-embedding matrix,
--   lambda1 = (|v| / |e_t|) * l1,  lambda2 = (|v| / |e_t'|) * l2,  v' = v - lambda1 e_t + lambda2 e_t'
-- Every lambda is computed from the slots as they are before any write (the vectors are returned,
-- not written). The arithmetic is in double precision; model:edit rounds the result to float.

--- edit.update_vectors(model, neurons, t, t_new, l1, l2) -> { {layer=, neuron=, vector=, lambda1=,
--- lambda2=}, ... }, the list model:edit takes. t and t_new are token ids or single-token words.
function edit.update_vectors(model, neurons, t, t_new, l1, l2)
  l1, l2 = l1 or 1, l2 or 8
  check_neurons(model, neurons, "update")
  local tid = token_id(model, t, "update: the old object")
  local nid = token_id(model, t_new, "update: the new object")
  local et, en = model:embedding(tid), model:embedding(nid)
  local nt, nn = norm(et), norm(en)
  if not (nt > 0) then error(string.format("update: the embedding of token %d has norm 0", tid), 2) end
  if not (nn > 0) then error(string.format("update: the embedding of token %d has norm 0", nid), 2) end
  local slots, lambdas = {}, {}
  for k, ne in ipairs(neurons) do
    local l, i = lc(ne)
    local v = model:slot(l, i)
    local nv = norm(v)
    slots[k], lambdas[k] = v, { nv / nt * l1, nv / nn * l2 }
  end
  local out = {}
  for k, ne in ipairs(neurons) do
    local l, i = lc(ne)
    local v, a, b = slots[k], lambdas[k][1], lambdas[k][2]
    local w = {}
    for r = 1, #v do w[r] = v[r] - a * et[r] + b * en[r] end
    out[k] = { layer = l, neuron = i, vector = w, lambda1 = a, lambda2 = b }
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- Hub filter (official select_kn): a neuron of fact b's set is dropped when it is a "hub" of the
-- relation. cnt = 1 + the number of the relation's facts (b included) whose set holds it, so a
-- neuron of b alone has cnt 2; drop when cnt > share * #facts.

local function kn_of(rec) return rec.kn or rec end

--- edit.hub_filter(kn_b, relation_records, share) -> kept neurons (in kn_b's order), and for
--- every neuron of kn_b its {layer, neuron, cnt, kept}. relation_records: the relation's records
--- (with .kn) or plain neuron lists, fact b included.
function edit.hub_filter(kn_b, relation_records, share)
  share = share or 0.1
  local count = {}
  for _, rec in ipairs(relation_records) do
    local seen = {}
    for _, ne in ipairs(kn_of(rec)) do
      local k = key(lc(ne))
      if not seen[k] then seen[k] = true; count[k] = (count[k] or 0) + 1 end
    end
  end
  local limit = share * #relation_records
  local kept, info = {}, {}
  for _, ne in ipairs(kn_b) do
    local l, i = lc(ne)
    local cnt = 1 + (count[key(l, i)] or 0)
    local keep = not (cnt > limit)
    if keep then kept[#kept + 1] = { l, i } end
    info[#info + 1] = { l, i, cnt = cnt, kept = keep }
  end
  return kept, info
end

---------------------------------------------------------------------------------------------------
-- Erase (paper 4.6): value slots set to zero vectors (the code and the ACL text), or to the [UNK]
-- word embedding (a commented-out variant of the code).

--- edit.erase_vectors(model, neurons, value) -> model:edit list; value "zero" (default) or "unk".
function edit.erase_vectors(model, neurons, value)
  value = value or "zero"
  check_neurons(model, neurons, "erase")
  local C = model:config().hidden_size
  local fill
  if value == "zero" then
    fill = {}
    for r = 1, C do fill[r] = 0.0 end
  elseif value == "unk" then
    local id = model:id("[UNK]")
    if not id then error("erase: the vocabulary has no [UNK] token (value = \"unk\")", 2) end
    fill = model:embedding(id)
  else
    error(string.format("erase: value must be \"zero\" or \"unk\", got %s", tostring(value)), 2)
  end
  local out = {}
  for k, ne in ipairs(neurons) do
    local l, i = lc(ne)
    local v = {}
    for r = 1, C do v[r] = fill[r] end
    out[k] = { layer = l, neuron = i, vector = v }
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- Journal: one JSON line per event. An applied edit:
--   {"event": "apply", "edit": ID, "rule": "update"|"erase", "label": ..., "params": {...},
--    "neurons": [{"layer", "neuron", "old_norm", "new_norm"}]}
-- and its undo: {"event": "undo", "edit": ID}. Norms are of the value-slot columns before and after.

--- edit.journal_entry(handle, rule, params) -> the "apply" line of an edit handle.
function edit.journal_entry(handle, rule, params)
  local info = handle:info()
  local ns = {}
  for k, c in ipairs(handle:columns()) do
    ns[k] = { layer = c.layer, neuron = c.neuron, old_norm = norm(c.old), new_norm = norm(c.new) }
  end
  local p = json.object()
  for k, v in pairs(params or {}) do p[k] = v end
  return { event = "apply", edit = info.id, rule = rule, label = info.label, params = p, neurons = ns }
end

local Journal = {}
Journal.__index = Journal

--- edit.journal(writer) -> journal. writer has :write(value) (a run:jsonl writer); nil keeps the
--- entries in journal.entries only.
function edit.journal(writer)
  return setmetatable({ writer = writer, entries = {} }, Journal)
end

function Journal:add(entry)
  self.entries[#self.entries + 1] = entry
  if self.writer then self.writer:write(entry) end
  return entry
end

--- journal:apply(handle, rule, params) records an applied edit and returns its entry.
function Journal:apply(handle, rule, params)
  return self:add(edit.journal_entry(handle, rule, params))
end

--- journal:undo(handle) undoes the edit and records it.
function Journal:undo(handle)
  local id = handle:info().id
  handle:undo()
  return self:add({ event = "undo", edit = id })
end

local function label_of(s) return #s > 120 and s:sub(1, 117) .. "..." or s end

--- edit.update(model, neurons, t, t_new, {lambda1 = 1, lambda2 = 8, journal =, params =}) -> handle
function edit.update(model, neurons, t, t_new, opts)
  opts = opts or {}
  if #neurons == 0 then error("update: no neurons to edit (the set is empty); the model is unchanged", 2) end
  local l1, l2 = opts.lambda1 or 1, opts.lambda2 or 8
  local ok, vecs = pcall(edit.update_vectors, model, neurons, t, t_new, l1, l2)
  if not ok then at_caller(vecs) end
  local tid, nid = model:target_id(t), model:target_id(t_new)
  local h = model:edit(vecs, label_of(string.format("update %s -> %s (lambda1 %g, lambda2 %g)",
    model:token(tid), model:token(nid), l1, l2)))
  if opts.journal then
    local p = { lambda1 = l1, lambda2 = l2, t = model:token(tid), t_new = model:token(nid), t_id = tid, t_new_id = nid }
    for k, v in pairs(opts.params or {}) do p[k] = v end
    opts.journal:apply(h, "update", p)
  end
  return h
end

--- edit.erase(model, neurons, {value = "zero"|"unk", journal =, params =}) -> handle. An empty
--- neuron list is an error and leaves the model unchanged.
function edit.erase(model, neurons, opts)
  opts = opts or {}
  if #neurons == 0 then error("erase: no neurons to erase (the set is empty); the model is unchanged", 2) end
  local value = opts.value or "zero"
  local ok, vecs = pcall(edit.erase_vectors, model, neurons, value)
  if not ok then at_caller(vecs) end
  local h = model:edit(vecs,
    label_of(string.format("erase %d slots (%s)%s", #neurons, value, opts.what and " " .. opts.what or "")))
  if opts.journal then
    local p = { value = value }
    for k, v in pairs(opts.params or {}) do p[k] = v end
    opts.journal:apply(h, "erase", p)
  end
  return h
end

---------------------------------------------------------------------------------------------------
-- Evaluation of prompts with gold targets.

--- edit.score(model, items [, opts [, bar]]) -> model:score's rows, in the items' order. The
--- prompts are scored shortest first (ties in list order), so a batch wastes little padding, in
--- calls of at most 1024 prompts; bar (a knwb.progress bar) steps after each call.
function edit.score(model, items, opts, bar)
  local order = {}
  for k = 1, #items do order[k] = k end
  table.sort(order, function(a, b)
    local la, lb = #items[a].ids, #items[b].ids
    if la ~= lb then return la < lb end
    return a < b
  end)
  local out = {}
  for s = 1, #order, 1024 do
    local part = {}
    for k = s, math.min(s + 1023, #order) do part[#part + 1] = items[order[k]] end
    for k, r in ipairs(model:score(part, opts)) do out[order[s + k - 1]] = r end
    if bar then bar:step(#part) end
  end
  return out
end

--- edit.evaluate(model, items [, opts [, bar]]) -> {n, correct, acc, nll, ppl}, results: accuracy
--- (top-1 == gold), nll = mean over prompts of -ln P(gold), ppl = exp(nll); results are
--- model:score's rows in the items' order.
function edit.evaluate(model, items, opts, bar)
  local res = edit.score(model, items, opts, bar)
  return edit.summarize(items, res), res
end

--- edit.summarize(items, results [, pick]) -> {n, correct, acc, nll, ppl} over the items for which
--- pick(k) is true (all by default). Empty: n = 0 and the rest nil.
function edit.summarize(items, results, pick)
  local n, correct, nll = 0, 0, 0.0
  for k, it in ipairs(items) do
    if not pick or pick(k) then
      local r = results[k]
      n = n + 1
      if r.top1 == it.target then correct = correct + 1 end
      nll = nll - r.logp
    end
  end
  if n == 0 then return { n = 0, correct = 0 } end
  return { n = n, correct = correct, acc = correct / n, nll = nll / n, ppl = math.exp(nll / n) }
end

return edit
