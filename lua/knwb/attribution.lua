-- knwb.attribution: integrated-gradients attribution of prompts, with a store of raw scores.
-- Raw [L,F] score matrices are kept in a compact binary file (float32, little-endian, one record
-- after another) with a JSON Lines index. An index entry is keyed by (model file hash, prompt,
-- target, method, steps, quadrature, attributed quantity), so re-refining with other thresholds
-- reads the scores back instead of recomputing, and an interrupted run resumes where it stopped.
-- Every entry is checked against the file (its bytes must be there) and against the model (its
-- hash and shape must match); anything else is recomputed, never trusted.
local core = require "knwb.core"
local json = require "knwb.json"
local runlib = require "knwb.run"

local A = {}

local Store = {}
Store.__index = Store

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
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

--- A.open(dir, model) -> store (nil dir -> a store that keeps nothing). The files are
--- DIR/<first 16 hex digits of the model hash>/scores.bin and index.jsonl.
function A.open(dir, model)
  local cfg = model:config()
  local s = setmetatable({ L = cfg.num_hidden_layers, F = cfg.intermediate_size, entries = {}, hits = 0,
    misses = 0, dropped = 0 }, Store)
  s.hash = A.model_hash(model)
  if not dir or dir == "" or not s.hash then return s end
  s.dir = dir .. "/" .. s.hash:sub(1, 16)
  os.execute("mkdir -p " .. runlib.shell_quote(s.dir))
  s.bin_path, s.index_path = s.dir .. "/scores.bin", s.dir .. "/index.jsonl"
  local size = file_size(s.bin_path)
  local rec = 4 * s.L * s.F
  local f = io.open(s.index_path, "rb")
  if f then
    local n = 0
    for line in f:lines() do
      n = n + 1
      local ok, e = pcall(json.decode, line, s.index_path .. ":" .. n)
      -- a torn last line, an entry of another model or shape, or bytes missing from scores.bin
      -- (a truncated file) are dropped and recomputed
      if ok and type(e) == "table" and e.model == s.hash and e.L == s.L and e.F == s.F
          and math.type(e.offset) == "integer" and e.offset >= 0 and e.offset + rec <= size then
        s.entries[e.key] = e
      else
        s.dropped = s.dropped + 1
      end
    end
    f:close()
  end
  s.size = size
  return s
end

function Store:key(item, method, o)
  return table.concat({ self.hash or "?", item.prompt or table.concat(item.ids, " "), tostring(item.target), method,
    tostring(o.steps or 0), o.quadrature or "-", o.target or "prob" }, "|")
end

function Store:get(key)
  local e = self.entries[key]
  if not e then return nil end
  local f = io.open(self.bin_path, "rb")
  if not f then return nil end
  f:seek("set", e.offset)
  local bytes = f:read(4 * self.L * self.F)
  f:close()
  if not bytes or #bytes ~= 4 * self.L * self.F then return nil end
  return core.scores(self.L, self.F, bytes), e
end

function Store:put(key, scores, extra)
  if not self.dir then return end
  local bytes = scores:tobytes()
  local f = assert(io.open(self.bin_path, "ab"))
  -- records are appended at the true end of the file, whatever the index says
  local offset = f:seek("end")
  f:write(bytes)
  f:close()
  local e = { key = key, model = self.hash, L = self.L, F = self.F, offset = offset }
  for k, v in pairs(extra or {}) do e[k] = v end
  local idx = assert(io.open(self.index_path, "ab"))
  idx:write(json.encode_line(e), "\n")
  idx:close()
  self.entries[key] = e
end

--- store:attribute(model, item, o) -> ig Scores, activation Scores, info {p_full, delta = {per layer}}
--- o: {steps, quadrature, batch, target = "prob"|"logprob"}. Cached under methods "ig" and "activation".
function Store:attribute(model, item, o)
  local kig, kact = self:key(item, "ig", o), self:key(item, "activation", {})
  local ig, e = self:get(kig)
  local act = ig and self:get(kact)
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
