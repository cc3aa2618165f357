-- bench/knwb_quadrature.lua: how many integrated-gradients steps Gauss-Legendre quadrature needs to
-- reach the completeness error of the paper's 20-step left Riemann sum, and the time that saves.
--   OPENBLAS_NUM_THREADS=T knwb bench/knwb_quadrature.lua OUT [steps=2-20] [prompts=8] [default=DIR]
-- Completeness: for every layer l, sum_i Attr_l[i] should equal P(w) - P(0 at layer l); knwb
-- reports the difference per layer as info.delta. For each model and prompt this measures the mean
-- over layers of |delta| for quadrature = "left" with m = 20 and for quadrature = "gauss" with every
-- m in `steps` (a range a-b or a comma list), averaged over the prompts, plus the seconds per
-- attribution. "steps needed" is the smallest Gauss m whose mean |delta| is at most left-20's;
-- "time saved" is 1 - time(gauss, m) / time(left, 20).
-- Models: OUT/bert-base-random with the benchmark prompt, and models/default when it holds a
-- trained model (config.json + model.safetensors), with the first single-token fact of each
-- relation through its first template (up to `prompts` prompts); default=DIR studies another
-- trained model folder in its place.
-- Prints one JSON line on stdout; progress goes to stderr.
local knwb = require "knwb"
local json = require "knwb.json"
local now = knwb.core.now

local out = arg[1] or "bench/out"
local steps_spec, max_prompts, default_dir = "2-20", 8, knwb.default_model
for i = 2, #arg do
  local k, v = arg[i]:match("^(%w+)=(.+)$")
  if k == "steps" then steps_spec = v
  elseif k == "prompts" then max_prompts = assert(tonumber(v), "prompts=N")
  elseif k == "default" then default_dir = v
  else error("unknown option " .. arg[i] .. " (expected steps=a-b|a,b,c prompts=N default=DIR)", 0) end
end
local steps = {}
local a, b = steps_spec:match("^(%d+)%-(%d+)$")
if a then for m = tonumber(a), tonumber(b) do steps[#steps + 1] = m end
else for m in steps_spec:gmatch("%d+") do steps[#steps + 1] = tonumber(m) end end

local function log(fmt, ...) io.stderr:write(string.format("knwb_quadrature: " .. fmt .. "\n", ...)) end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- mean over layers of |delta|, and the seconds, of one attribution
local function run(model, item, quad, m)
  local t0 = now()
  local _, _, info = model:attribute(item, { steps = m, quadrature = quad })
  local dt = now() - t0
  local s = 0
  for l = 1, #info.delta do s = s + math.abs(info.delta[l]) end
  return s / #info.delta, dt, info.p_full
end

local function study(name, model, items)
  local r = { model = name, prompts = #items, left20 = { mean_abs_delta = 0, seconds = 0 }, gauss = {} }
  local p_full = 0
  for _, it in ipairs(items) do
    local d, t, p = run(model, it, "left", 20)
    r.left20.mean_abs_delta = r.left20.mean_abs_delta + d / #items
    r.left20.seconds = r.left20.seconds + t / #items
    p_full = p_full + p / #items
  end
  r.mean_p_full = p_full
  for _, m in ipairs(steps) do
    local g = { steps = m, mean_abs_delta = 0, seconds = 0 }
    for _, it in ipairs(items) do
      local d, t = run(model, it, "gauss", m)
      g.mean_abs_delta = g.mean_abs_delta + d / #items
      g.seconds = g.seconds + t / #items
    end
    r.gauss[#r.gauss + 1] = g
    log("%s: gauss m=%d mean |delta| %.3e (left-20 %.3e), %.3f s", name, m, g.mean_abs_delta, r.left20.mean_abs_delta, g.seconds)
  end
  for _, g in ipairs(r.gauss) do
    if g.mean_abs_delta <= r.left20.mean_abs_delta then
      r.steps_needed = g.steps
      r.seconds_needed = g.seconds
      r.time_saved = 1 - g.seconds / r.left20.seconds
      break
    end
  end
  return r
end

local res = { engine = "knwb", threads = knwb.core.threads(), steps = steps, models = {} }

local inputs = json.decode(read_file(out .. "/inputs.json"))
do
  local m = knwb.load(out .. "/" .. inputs.models.bert_base)
  local P = inputs.prompt
  res.models[#res.models + 1] = study("bert-base-random", m, { { ids = P.ids, mask = P.mask, target = P.target } })
  m:free()
end

if exists(default_dir .. "/config.json") and exists(default_dir .. "/model.safetensors") then
  local ok, err = pcall(function()
    local m = knwb.load(default_dir)
    local set = knwb.facts.load { facts = knwb.root .. "/data/facts.tsv", templates = knwb.root .. "/data/templates.yaml" }
    knwb.facts.filter_single_token(set, m)
    local items = {}
    for _, rel in ipairs(set.relations) do
      if #items >= max_prompts then break end
      local fact = rel.facts[1]
      local prompt = knwb.facts.prompts(rel, fact, "all")[1]
      local okp, it = pcall(m.item, m, prompt.text, fact.object)
      if okp then items[#items + 1] = it end
    end
    if #items == 0 then error("no usable prompt") end
    res.models[#res.models + 1] = study("default", m, items)
    m:free()
  end)
  if not ok then
    log("models/default skipped: %s", tostring(err))
    res.models[#res.models + 1] = { model = "default", skipped = tostring(err) }
  end
else
  res.models[#res.models + 1] = { model = "default", skipped = default_dir .. " holds no trained model (make model)" }
end

-- paths in the results are written relative to the repository (no machine-absolute paths)
for _, r in ipairs(res.models) do
  if r.skipped and knwb.root then r.skipped = r.skipped:gsub(knwb.root:gsub("%p", "%%%0") .. "/", "") end
end
print(json.encode(res))
