-- knwb.neurons: knowledge neurons of a fact set, computed (attribution + refining) or read back.
-- compute() attributes every prompt of every fact (raw scores go through the attribution store,
-- so a second run, or a run with other refining settings, reads them back), builds the coarse
-- sets of both methods (integrated gradients at refine.threshold, raw activation at
-- refine.baseline_threshold), and refines each relation with its own p. The result is one record
-- per fact, the same records that attribute.lua writes to neurons.jsonl and that the editing
-- experiments read back.
local attribution = require "knwb.attribution"
local facts = require "knwb.facts"
local progress = require "knwb.progress"
local refine = require "knwb.refine"
local json = require "knwb.json"
local kio = require "knwb.io"

local N = {}

-- The largest neurons.jsonl (and .meta.json) read.
N.MAX_BYTES = 1024 * 1024 * 1024

--- Prepares a fact set for a model: single-token objects only, relations with enough
--- templates, at most max_facts facts each. Errors on an empty result.
function N.prepare(set, model, fcfg)
  local dropped = facts.filter_single_token(set, model)
  local kept = {}
  for _, r in ipairs(set.relations) do
    if #r.templates >= (fcfg.min_templates or 1) then
      if fcfg.max_facts and fcfg.max_facts > 0 then
        while #r.facts > fcfg.max_facts do table.remove(r.facts) end
      end
      if #r.facts == 0 then error(string.format("relation %s has no facts left (objects must be one token)", r.id), 0) end
      kept[#kept + 1] = r
    end
  end
  set.relations = kept
  set.dropped_multi_token = dropped
  if #kept == 0 then error("the fact set is empty after filtering (single-token objects, enough templates)", 0) end
  return dropped
end

local function items_of(model, rel, fact, split)
  local out = {}
  for _, p in ipairs(facts.prompts(rel, fact, split)) do
    local it = model:item(p.text, fact.object)
    it.held_out = p.held_out
    out[#out + 1] = it
  end
  return out
end
N.items_of = items_of

--- N.compute(model, set, cfg) -> records, stats. cfg holds attribution, refine and facts.split.
function N.compute(model, set, cfg)
  local a, rf = cfg.attribution, cfg.refine
  local store = attribution.open(a.cache, model)
  -- under mpirun the prompts are attributed by every rank first (the other ranks end there)
  local shard = require "knwb.shard"
  if shard.slice then shard.run_slice(model, set, cfg, items_of) end  -- a --shard task ends there
  shard.check_merge(model, store, set, cfg, items_of)
  if shard.active() then store = shard.distribute(model, set, cfg, store, items_of) end
  local total = 0
  for _, r in ipairs(set.relations) do
    for _, f in ipairs(r.facts) do total = total + #facts.prompts(r, f, cfg.facts.split) end
  end
  local bar = progress.new("attribute", total, { unit = "prompts" })
  local records, deltas, nlayers = {}, {}, model:config().num_hidden_layers
  local degenerate = 0
  for l = 1, nlayers do deltas[l] = 0 end
  local nprompts = 0
  for _, r in ipairs(set.relations) do
    local ig_coarse, act_coarse = {}, {}
    for b, f in ipairs(r.facts) do
      local items = items_of(model, r, f, cfg.facts.split)
      ig_coarse[b], act_coarse[b] = {}, {}
      for j, it in ipairs(items) do
        local ig, act, info = store:attribute(model, it, a)
        local c, mx = refine.coarse(ig, rf.threshold)
        if not (mx > 0) then degenerate = degenerate + 1 end
        ig_coarse[b][j] = c
        act_coarse[b][j] = refine.coarse(act, rf.baseline_threshold)
        for l = 1, nlayers do deltas[l] = deltas[l] + math.abs(info.delta[l]) end
        nprompts = nprompts + 1
        bar:step()
      end
      f.prompts = items
    end
    local kn, info = refine.relation(ig_coarse, rf)
    local base, binfo = refine.relation(act_coarse, rf)
    for b, f in ipairs(r.facts) do
      local prompts, held = {}, {}
      for j, it in ipairs(f.prompts) do prompts[j], held[j] = it.prompt, it.held_out end
      records[#records + 1] = { relation = r.id, label = r.label, fact = b, subject = f.subject, object = f.object,
        object_id = f.object_id, prompts = prompts, held_out = held, kn = kn[b], baseline = base[b],
        p = info.p, baseline_p = binfo.p }
    end
    r.refine_info, r.baseline_info = info, binfo
  end
  bar:done()
  for l = 1, nlayers do deltas[l] = nprompts > 0 and deltas[l] / nprompts or 0 end
  return records, { prompts = nprompts, cache_hits = store.hits, computed = store.misses,
    cache_dropped = store.dropped, cache_recomputed = store.recomputed, mean_abs_delta = deltas,
    degenerate_prompts = degenerate }
end

--- N.read(path) -> records from a neurons.jsonl written by attribute.lua.
--- Every line must be a JSON object with relation, subject and object strings and kn and
--- baseline lists of {layer, neuron} integer pairs; an error names path:line and the key.
function N.read(path)
  local ok, text = pcall(kio.read_file, path, N.MAX_BYTES, "a neurons file")
  if not ok then error(("%s (cannot read knowledge neurons)"):format(tostring(text)), 0) end
  local out, n = {}, 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    if line:find("%S") then
      local where = path .. ":" .. n
      local okd, r = pcall(json.decode, line, where)
      if not okd then
        r = tostring(r)
        error(r:sub(1, #where) == where and r or where .. ": " .. r, 0)
      end
      if type(r) ~= "table" or r[1] ~= nil then error(where .. ": expected a JSON object (a fact's record)", 0) end
      for _, k in ipairs { "relation", "subject", "object" } do
        if type(r[k]) ~= "string" then error(("%s: key %q: expected a string, got %s"):format(where, k, type(r[k])), 0) end
      end
      for _, k in ipairs { "kn", "baseline" } do
        local list = r[k]
        if list ~= nil then
          if type(list) ~= "table" then error(("%s: key %q: expected a list of [layer, neuron], got %s"):format(where, k, type(list)), 0) end
          for i, ne in ipairs(list) do
            if type(ne) ~= "table" or math.type(ne[1]) ~= "integer" or math.type(ne[2]) ~= "integer" or ne[1] < 0 or ne[2] < 0 then
              error(("%s: key %q: item %d: expected [layer, neuron], two integers >= 0"):format(where, k, i), 0)
            end
          end
        end
      end
      out[#out + 1] = r
    end
  end
  return out
end

--- N.write(path, records, model) writes neurons.jsonl and, beside it, <path>.meta.json naming
--- the model's weights hash, so a later reader can tell whether the neurons belong to its model,
--- and the checksum of neurons.jsonl, so that a pair left by a killed write (new neurons, old
--- meta) is never taken for a match. Each file is written atomically (knwb.io).
function N.write(path, records, model, extra)
  local lines = {}
  for i, r in ipairs(records) do lines[i] = json.encode_line(r) .. "\n" end
  local text = table.concat(lines)
  local meta = { model_sha256 = attribution.model_hash(model), facts = #records }
  for k, v in pairs(extra or {}) do meta[k] = v end
  meta.neurons_checksum = kio.checksum(text)
  -- a .meta.json of an older knwb has no checksum to catch a cut-short pair: it goes first
  local mpath = path .. ".meta.json"
  if kio.stat(mpath) == "file" then
    local ok, old = pcall(json.decode, kio.read_file(mpath, N.MAX_BYTES, "a neurons .meta.json"), mpath)
    if not ok or type(old) ~= "table" or old.neurons_checksum == nil then os.remove(mpath) end
  end
  kio.write_file_atomic(path, text)
  kio.write_file_atomic(mpath, json.encode(meta, { indent = 2 }) .. "\n")
end

--- N.load_or_compute(model, set, cfg, path) -> records, source. Reads stored neurons from path
--- when the file exists and its .meta.json names this model's weights; otherwise (no path, no
--- file, another model) computes them with N.compute. Records are matched to the set's facts by
--- (relation, subject, object); facts missing from the file are computed.
function N.load_or_compute(model, set, cfg, path)
  if path and path ~= "" then
    local meta
    if kio.stat(path .. ".meta.json") ~= nil then
      local mpath = path .. ".meta.json"
      meta = json.decode(kio.read_file(mpath, N.MAX_BYTES, "a neurons .meta.json"), mpath)
      if type(meta) ~= "table" then error(mpath .. ": expected a JSON object", 0) end
    end
    local hash = attribution.model_hash(model)
    local text = meta and meta.model_sha256 == hash and kio.stat(path) ~= nil and kio.read_file(path, N.MAX_BYTES, "a neurons file")
    if text and meta.neurons_checksum ~= nil and meta.neurons_checksum ~= kio.checksum(text) then
      io.stderr:write(string.format("neurons: %s does not match the checksum in its .meta.json (a write cut short?); computing\n", path))
    elseif text then
      local stored = {}
      for _, r in ipairs(N.read(path)) do stored[r.relation .. "\t" .. r.subject .. "\t" .. r.object] = r end
      local out, missing = {}, false
      for _, rel in ipairs(set.relations) do
        for _, f in ipairs(rel.facts) do
          local r = stored[rel.id .. "\t" .. f.subject .. "\t" .. f.object]
          if not r then missing = true break end
          out[#out + 1] = r
        end
        if missing then break end
      end
      if not missing then return out, path end
      io.stderr:write(string.format("neurons: %s lacks some facts of this set; computing them\n", path))
    elseif meta or kio.stat(path) ~= nil then
      io.stderr:write(string.format("neurons: %s belongs to another model (or has no .meta.json); computing\n", path))
    end
  end
  local records = N.compute(model, set, cfg)
  return records, "computed"
end

--- Records grouped by relation id: { [id] = {records...} } and the ordered list of ids.
function N.by_relation(records)
  local by, order = {}, {}
  for _, r in ipairs(records) do
    if not by[r.relation] then by[r.relation] = {}; order[#order + 1] = r.relation end
    table.insert(by[r.relation], r)
  end
  return by, order
end

--- The paper's statistics of knowledge-neuron sets (key = "kn" or "baseline"):
--- mean neurons per fact (pooled), mean shared neurons over all unordered fact pairs within a
--- relation (pooled), mean shared with 100 random facts of random other relations per fact,
--- and the share of neurons in each layer.
function N.statistics(records, key, nlayers, seed)
  local by, order = N.by_relation(records)
  local total = 0
  local layer = {}
  for l = 1, nlayers do layer[l] = 0 end
  for _, r in ipairs(records) do
    total = total + #r[key]
    for _, ne in ipairs(r[key]) do layer[ne[1] + 1] = layer[ne[1] + 1] + 1 end
  end
  for l = 1, nlayers do layer[l] = total > 0 and layer[l] / total or 0 end
  local intra_sum, intra_n = 0, 0
  for _, id in ipairs(order) do
    local rs = by[id]
    for a = 1, #rs do
      for b = a + 1, #rs do
        intra_sum = intra_sum + refine.shared(rs[a][key], rs[b][key])
        intra_n = intra_n + 1
      end
    end
  end
  local inter_sum, inter_n = 0, 0
  if #order > 1 then
    math.randomseed(seed or 42)
    for _, r in ipairs(records) do
      for _ = 1, 100 do
        local other = order[math.random(#order)]
        while other == r.relation do other = order[math.random(#order)] end
        local pool = by[other]
        inter_sum = inter_sum + refine.shared(r[key], pool[math.random(#pool)][key])
        inter_n = inter_n + 1
      end
    end
  end
  return { facts = #records, avg_kn_per_fact = #records > 0 and total / #records or 0,
    intra_relation_shared = intra_n > 0 and intra_sum / intra_n or 0,
    inter_relation_shared = inter_n > 0 and inter_sum / inter_n or 0, layer_share = layer }
end

--- N.slot_alignment(model, records, key [, rng]) -> { neurons, mean_percentile, top10_share }:
--- how far up the fact's object stands among the tokens each of its neurons' value slots promotes
--- (model:slot_rank: slot against word embeddings, no MLM head transform). percentile 0 = the
--- object is promoted most, 1 = least; top10_share = share of (fact, neuron) pairs ranking it in
--- the top 10. With rng, each fact's neurons are replaced by as many random ones in the same
--- layers (knwb.random.matched), the control the numbers are to be read against.
function N.slot_alignment(model, records, key, rng)
  local c = model:config()
  local V, F = c.vocab_size, c.intermediate_size
  local random = rng and require "knwb.random"
  local n, pct, top10 = 0, 0.0, 0
  for _, r in ipairs(records) do
    local oid = model:id(r.object)
    local list = r[key] or {}
    if rng then list = random.matched(list, F, rng) end
    if oid then
      for _, ne in ipairs(list) do
        local rank = model:slot_rank(ne[1], ne[2], oid)
        n, pct = n + 1, pct + (rank - 1) / math.max(1, V - 1)
        if rank <= 10 then top10 = top10 + 1 end
      end
    end
  end
  return { neurons = n, mean_percentile = n > 0 and pct / n or nil, top10_share = n > 0 and top10 / n or nil }
end

return N
