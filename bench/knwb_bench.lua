-- bench/knwb_bench.lua: knwb's side of the benchmark, for one thread count.
--   OPENBLAS_NUM_THREADS=T knwb bench/knwb_bench.lua OUT [load=5] [fwd=20] [attr=3] [train=10]
-- Needs OUT/inputs.json and the models made by bench/prepare.lua. Measures, in this order:
--   load     knwb.load of the BERT-base checkpoint (mmap), and load + first forward
--   forward  model:score({item}) on the 12-token prompt (median of `fwd` calls after 3 warm-ups)
--   attr     model:attribute(item, {steps = 20}) on a freshly loaded model (12 layers x 20
--            steps; median of `attr` calls after a first call, which is timed separately and
--            writes the scores that torch_bench.py checks against)
--   train    trainer:step on the default model's config, 64 x 16 tokens (median of `train` steps
--            after the first; the first 3 losses are kept so torch can check it trains the same)
-- and the peak resident memory of each phase (VmHWM, reset through /proc/self/clear_refs before
-- each phase, so a phase's peak includes what was already resident, e.g. the model).
-- Writes OUT/knwb-scores-T<threads>.f32 (float32 [12,3072]) and OUT/knwb-ref-T<threads>.json,
-- and prints one JSON line with every measurement on stdout; progress goes to stderr.
local knwb = require "knwb"
local json = require "knwb.json"
local core = knwb.core
local now = core.now

local out = arg[1] or "bench/out"
local opt = { load = 5, fwd = 20, attr = 3, train = 10 }
for i = 2, #arg do
  local k, v = arg[i]:match("^(%w+)=(%d+)$")
  if not k or opt[k] == nil then error("unknown option " .. arg[i] .. " (expected load=N fwd=N attr=N train=N)", 0) end
  opt[k] = tonumber(v)
end

local function log(fmt, ...) io.stderr:write(string.format("knwb_bench: " .. fmt .. "\n", ...)) end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- memory: VmHWM / VmRSS in MB; reset_peak() makes VmHWM = current RSS (Linux >= 4.0)
local function status_mb(key)
  local s = read_file("/proc/self/status")
  local kb = s:match(key .. ":%s*(%d+) kB")
  return kb and tonumber(kb) / 1024 or nil
end
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  f:close()
  return ok and true or false
end

local function stats(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  local med = n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
  return { median = med, min = s[1], max = s[n], n = n, all = xs }
end

local function blas_libs()
  local seen, list = {}, {}
  for line in io.lines("/proc/self/maps") do
    local path = line:match("(/%S*blas%S*)$")
    if path and not seen[path] then seen[path] = true; list[#list + 1] = path end
  end
  return list
end

local inputs = json.decode(read_file(out .. "/inputs.json"))
local bert_dir = out .. "/" .. inputs.models.bert_base
local P = inputs.prompt
local item = { ids = P.ids, mask = P.mask, target = P.target }
local threads = core.threads()
local res = { engine = "knwb", threads = threads, env_openblas_threads = os.getenv("OPENBLAS_NUM_THREADS"),
  openblas_coretype = os.getenv("OPENBLAS_CORETYPE"), options = opt, mem = {}, version = knwb.version }
local peak_resets = reset_peak()
res.mem.peak_reset_supported = peak_resets
res.mem.baseline_rss_mb = status_mb("VmRSS")

-- ---------------------------------------------------------------- load
local loads, firsts = {}, {}
for i = 1, opt.load do
  local t0 = now()
  local m = knwb.load(bert_dir)
  local t1 = now()
  m:score({ item })
  local t2 = now()
  loads[i], firsts[i] = t1 - t0, t2 - t0
  m:free()
end
res.load = stats(loads)
res.load_first_forward = stats(firsts)
res.mem.load_peak_mb = status_mb("VmHWM")
log("load %.4f s (median of %d), load + first forward %.3f s", res.load.median, opt.load, res.load_first_forward.median)

-- ---------------------------------------------------------------- forward
reset_peak()
local model = knwb.load(bert_dir)
res.checkpoint_bytes = (function()
  local f = assert(io.open(bert_dir .. "/model.safetensors", "rb"))
  local n = f:seek("end")
  f:close()
  return n
end)()
for _ = 1, 3 do model:score({ item }) end
local fw = {}
for i = 1, opt.fwd do
  local t0 = now()
  model:score({ item })
  fw[i] = now() - t0
end
res.forward = stats(fw)
res.mem.forward_peak_mb = status_mb("VmHWM")
log("forward %.2f ms (median of %d)", res.forward.median * 1e3, opt.fwd)
model:free() -- a fresh model for attribution: its peak is the model plus attribution's own buffers

-- ---------------------------------------------------------------- attribution
reset_peak()
model = knwb.load(bert_dir)
local t0 = now()
local scores, _, info = model:attribute(item, { steps = 20 })
local first = now() - t0
local L, F = scores:shape()
local tag = "T" .. threads
write_file(out .. "/knwb-scores-" .. tag .. ".f32", scores:tobytes())
write_file(out .. "/knwb-ref-" .. tag .. ".json", json.encode({
  threads = threads, scores_file = "knwb-scores-" .. tag .. ".f32", layers = L, ffn = F, steps = 20,
  quadrature = "left", p_full = info.p_full, p_zero = info.p_zero, delta = info.delta,
}) .. "\n")
local at = {}
for i = 1, opt.attr do
  local t1 = now()
  model:attribute(item, { steps = 20 })
  at[i] = now() - t1
end
res.attribution = stats(at)
res.attribution.first = first
res.mem.attribution_peak_mb = status_mb("VmHWM")
local absd = 0
for l = 1, L do absd = absd + math.abs(info.delta[l]) end
res.attribution.p_full = info.p_full
res.attribution.mean_abs_delta = absd / L
log("attribution %.3f s per prompt (median of %d; first call %.3f s)", res.attribution.median, opt.attr, first)
res.blas_libs = blas_libs()
model:free()

-- ---------------------------------------------------------------- training step
reset_peak()
local tr = inputs.train
local small = knwb.load(out .. "/" .. inputs.models.train_small)
local trainer = core.trainer(small, { batch = tr.B, seq = tr.T, rows = #tr.rows, weight_decay = tr.weight_decay })
local batch = { ids = tr.ids, B = tr.B, T = tr.T, rows = tr.rows, labels = tr.labels, lr = tr.lr, clip = tr.clip }
local losses, steps = {}, {}
for i = 1, opt.train + 1 do
  local t1 = now()
  local loss = trainer:step(batch)
  local dt = now() - t1
  if i <= 3 then losses[i] = loss end
  if i > 1 then steps[#steps + 1] = dt end
end
res.train = stats(steps)
res.train.losses = losses
res.train.rows = #tr.rows
res.mem.train_peak_mb = status_mb("VmHWM")
trainer:free()
small:free()
log("training step %.2f ms (median of %d), losses %s", res.train.median * 1e3, #steps,
  table.concat((function() local t = {} for i, x in ipairs(losses) do t[i] = string.format("%.5f", x) end return t end)(), " "))

-- append the training losses to the reference for torch_bench.py
local ref = json.decode(read_file(out .. "/knwb-ref-" .. tag .. ".json"))
ref.train_losses = losses
write_file(out .. "/knwb-ref-" .. tag .. ".json", json.encode(ref) .. "\n")

-- the whole process's peak: every phase's peak was read before the next reset
res.mem.process_peak_mb = math.max(res.mem.load_peak_mb, res.mem.forward_peak_mb, res.mem.attribution_peak_mb,
  res.mem.train_peak_mb)
print(json.encode(res))
