-- knwb.attribution: integrated-gradients attribution of prompts, with a store of raw scores.
-- Raw [L,F] score matrices are kept in a compact binary file (float32, little-endian, one record
-- after another) with a JSON Lines index. An index entry is keyed by (model file hash, prompt,
-- target, method, steps, quadrature, attributed quantity), so re-refining with other thresholds
-- reads the scores back instead of recomputing, and an interrupted run resumes where it stopped.
-- Nothing read is trusted: an entry is used only when it is this model's and shape, its offset
-- lies inside scores.bin (checked without overflow), the bytes read there (a checked read at that
-- offset) carry the entry's checksum, which covers the key too (so a record of another prompt, an
-- aliased offset, does not pass), and every score and stored number is finite. Anything else is
-- recomputed, never reused, and counted: store.dropped (index lines unusable when the store is
-- opened) and store.recomputed (entries that failed the checks when read).
-- Records and index lines are appended all or nothing (knwb.io.append, fsync'ed), scores first,
-- so a run killed at any point leaves the store as it was or with the new record.
local core = require "knwb.core"
local json = require "knwb.json"
local kio = require "knwb.io"
local runlib = require "knwb.run"

local A = {}

local Store = {}
Store.__index = Store

-- The largest index read (a line per stored record).
A.MAX_INDEX_BYTES = 1024 * 1024 * 1024

local function file_size(path)
  local kind, size = kio.stat(path)
  if kind == nil then return 0 end
  if kind ~= "file" then error(("%s: not a regular file; the attribution store needs one"):format(path), 0) end
  return size
end

-- The checksum of a record: its key and its bytes, so the bytes of another record fail it.
local function record_sum(key, bytes)
  return kio.checksum(key .. "\0" .. bytes)
end

local function finite(x)
  return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
end

-- The numbers stored beside a record (p_full, p_zero and delta per layer) are finite, or absent.
local function finite_info(e, L)
  if e.p_full ~= nil and not finite(e.p_full) then return false end
  for _, k in ipairs { "delta", "p_zero" } do
    local v = e[k]
    if v ~= nil then
      if type(v) ~= "table" or #v ~= L then return false end
      for l = 1, L do if not finite(v[l]) then return false end end
    end
  end
  return true
end

--- A.model_hash(model) -> sha256 of the weights file, "+edits" when edits are in force
--- (an edited model's scores are never stored: they would not match the file).
function A.model_hash(model)
  local info = model:info()
  if info.generation ~= 0 then return nil end
  A._hashes = A._hashes or {}
  local h = A._hashes[info.weights_file]
  if not h then
    h = runlib.sha256_file(info.weights_file)
    A._hashes[info.weights_file] = h
  end
  return h
end

-- Reads one index file into s.entries; its records are in bin_path. Returns the bin file's size.
local function read_index(s, index_path, bin_path)
  local size = file_size(bin_path)
  local rec = 4 * s.L * s.F
  local torn = false
  if kio.stat(index_path) ~= nil then
    local text = kio.read_file(index_path, A.MAX_INDEX_BYTES, "an attribution index")
    -- a line torn by a killed run is ended before the next one is appended
    torn = #text > 0 and text:sub(-1) ~= "\n"
    local n = 0
    for line in text:gmatch("([^\n]*)\n?") do
      n = n + 1
      if line:find("%S") then
        local ok, e = pcall(json.decode, line, index_path .. ":" .. n)
        -- a torn line, an entry of another model or shape, an offset outside its scores file
        -- (compared as offset <= size - rec, which cannot overflow), or no checksum: dropped
        if ok and type(e) == "table" and type(e.key) == "string" and e.model == s.hash and e.L == s.L and e.F == s.F
            and math.type(e.offset) == "integer" and e.offset >= 0 and size >= rec and e.offset <= size - rec
            and type(e.sum) == "string" and #e.sum == 16 then
          e.bin = bin_path
          -- one record per key: the first writer's (every copy holds the same numbers)
          if not s.entries[e.key] then s.entries[e.key] = e end
        else
          s.dropped = s.dropped + 1
        end
      end
    end
  end
  return size, torn
end

--- A.open(dir, model [, opts]) -> store (nil dir -> a store that keeps nothing). The files are
--- DIR/<first 16 hex digits of the model hash>/scores.bin and index.jsonl. Several processes can
--- share one store folder (Slurm array tasks on a shared file system): each writes only its own
--- pair, scores.WRITER.bin and index.WRITER.jsonl (opts.writer, letters, digits, '-' and '_'),
--- and every reader merges all pairs, so no record is torn by another writer and no lock is needed.
function A.open(dir, model, opts)
  opts = opts or {}
  local cfg = model:config()
  local s = setmetatable({ L = cfg.num_hidden_layers, F = cfg.intermediate_size, entries = {}, hits = 0,
    misses = 0, dropped = 0, recomputed = 0 }, Store)
  s.hash = A.model_hash(model)
  if not dir or dir == "" or not s.hash then return s end
  local writer = opts.writer
  if writer ~= nil and (type(writer) ~= "string" or not writer:match("^[%w_%-]+$")) then
    error(("attribution store: writer name %q must be letters, digits, '-' or '_'"):format(tostring(writer)), 2)
  end
  s.dir = dir .. "/" .. s.hash:sub(1, 16)
  kio.mkdirs(s.dir)
  local suffix = writer and "." .. writer or ""
  s.bin_path, s.index_path = s.dir .. "/scores" .. suffix .. ".bin", s.dir .. "/index" .. suffix .. ".jsonl"
  -- this writer's own pair first (its torn state matters for appending), then every other one
  s.size, s.torn = read_index(s, s.index_path, s.bin_path)
  for _, name in ipairs(kio.list(s.dir)) do
    local w = name:match("^index(.*)%.jsonl$")
    if w and (w == "" or w:match("^%.[%w_%-]+$")) and s.dir .. "/" .. name ~= s.index_path then
      read_index(s, s.dir .. "/" .. name, s.dir .. "/scores" .. w .. ".bin")
    end
  end
  return s
end

function Store:key(item, method, o)
  return table.concat({ self.hash or "?", item.prompt or table.concat(item.ids, " "), tostring(item.target), method,
    tostring(o.steps or 0), o.quadrature or "-", o.target or "prob" }, "|")
end

-- The stored scores of key and their index entry, or nil when there are none or they fail a
-- check (then counted in self.recomputed, and the entry forgotten).
function Store:get(key)
  local e = self.entries[key]
  if not e then return nil end
  local ok, bytes = pcall(kio.read_at, e.bin or self.bin_path, e.offset, 4 * self.L * self.F)
  if not ok or record_sum(key, bytes) ~= e.sum or kio.first_nonfinite(bytes) or not finite_info(e, self.L) then
    self.entries[key] = nil
    self.recomputed = self.recomputed + 1
    return nil
  end
  return core.scores(self.L, self.F, bytes), e
end

function Store:put(key, scores, extra)
  if not self.dir then return end
  local bytes = scores:tobytes()
  local e = { key = key, model = self.hash, L = self.L, F = self.F }
  for k, v in pairs(extra or {}) do e[k] = v end
  -- a non-finite score is not worth keeping (the engine refuses them; this is the store's own check)
  if kio.first_nonfinite(bytes) or not finite_info(e, self.L) then return end
  -- records are appended at the true end of the file, whatever the index says; the index line
  -- follows once the bytes are on disk
  e.offset = kio.append(self.bin_path, bytes, true)
  e.sum = record_sum(key, bytes)
  kio.append(self.index_path, (self.torn and "\n" or "") .. json.encode_line(e) .. "\n", true)
  self.torn = false
  e.bin = self.bin_path
  self.entries[key] = e
end

--- store:attribute(model, item, o) -> ig Scores, activation Scores, info {p_full, delta = {per layer}}
--- o: {steps, quadrature, batch, target = "prob"|"logprob"}. Cached under methods "ig" and "activation".
function Store:attribute(model, item, o)
  local kig, kact = self:key(item, "ig", o), self:key(item, "activation", {})
  local ig, e = self:get(kig)
  local act = self:get(kact)
  if ig and act then
    self.hits = self.hits + 1
    return ig, act, { p_full = e.p_full, delta = e.delta, p_zero = e.p_zero }
  end
  self.misses = self.misses + 1
  local info
  ig, act, info = model:attribute(item, { steps = o.steps, quadrature = o.quadrature, batch = o.batch,
    log = o.target == "logprob" })
  self:put(kact, act)
  self:put(kig, ig, { p_full = info.p_full, delta = info.delta, p_zero = info.p_zero })
  return ig, act, info
end

return A
