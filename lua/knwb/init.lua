-- knwb: the script-facing library of the knowledge-neuron workbench.
-- It wraps the C engine (knwb.core) with string-level conveniences (prompts, targets, top-k),
-- interventions scoped to a function (model:with), and loads the submodules lazily:
-- knwb.config, knwb.facts, knwb.refine, knwb.metrics, knwb.edit, knwb.run, knwb.svg, ...
-- Layers, neurons and token positions count from 0, as in the paper and Hugging Face.
local core = require "knwb.core"

local knwb = { core = core, version = KNWB_VERSION }

-- Errors of knwb's own functions are reported at the user's line (knwb.caller).
local at_caller = require "knwb.caller"

local root = package.knwb_root or "."
knwb.root = root

--- The default model shipped in the repository (models/default).
knwb.default_model = root .. "/models/default"

local function resolve(path)
  if path == nil or path == "" or path == "default" then return knwb.default_model end
  return path
end

--- knwb.load(path) -> model. A Hugging Face BERT folder; nil or "default" is the shipped model.
function knwb.load(path)
  local dir = resolve(path)
  local ok, m = pcall(core.load, dir)
  if not ok then at_caller(m) end
  return m
end

--- knwb.create(config_table, seed, vocab_path) -> a randomly initialised model.
function knwb.create(cfg, seed, vocab)
  local ok, m = pcall(core.create, cfg, seed or 0, vocab)
  if not ok then at_caller(m) end
  return m
end

-- Methods written in Lua are added to the C class's method table.
local Model = debug.getregistry()["knwb.Model"].__index

-- interventions in force for a model inside model:with(...)
local active = setmetatable({}, { __mode = "k" })

-- Every neuron of a list is checked (integers, layer and neuron in range when the model is
-- known), so a bad one is named by its place in the user's list, before anything runs.
local function check_neurons(neurons, what, model)
  if type(neurons) ~= "table" then
    error(("%sneurons must be a list of {layer, neuron}, got a %s"):format(what, type(neurons)), 0)
  end
  local L, F
  if model then
    local c = model:config()
    L, F = c.num_hidden_layers, c.intermediate_size
  end
  for k, n in ipairs(neurons) do
    local l, i
    if type(n) == "table" then l, i = n[1] or n.layer, n[2] or n.neuron end
    if math.type(l) ~= "integer" or math.type(i) ~= "integer" then
      error(("%sneuron %d must be {layer, neuron} with integers"):format(what, k), 0)
    end
    if L and (l < 0 or l >= L) then
      error(("%sneuron %d {%d, %d}: layer %d out of range [0, %d)"):format(what, k, l, i, l, L), 0)
    end
    if F and (i < 0 or i >= F) then
      error(("%sneuron %d {%d, %d}: neuron %d out of range [0, %d)"):format(what, k, l, i, i, F), 0)
    end
  end
end

local function neuron_interventions(neurons, op, value, what, model)
  check_neurons(neurons, what or "", model)
  local by_layer, order = {}, {}
  for _, n in ipairs(neurons) do
    local l, i = n[1] or n.layer, n[2] or n.neuron
    if not by_layer[l] then by_layer[l] = {}; order[#order + 1] = l end
    table.insert(by_layer[l], i)
  end
  table.sort(order)
  local out = {}
  for _, l in ipairs(order) do
    out[#out + 1] = { layer = l, neurons = by_layer[l], op = op, value = value, pos = "mask" }
  end
  return out
end

--- Turns a neuron list { {layer, neuron}, ... } into interventions that set each neuron to
--- `value` (op "set") or multiply it by `value` (op "scale") at the mask position.
function knwb.neuron_interventions(neurons, op, value)
  local ok, out = pcall(neuron_interventions, neurons, op, value)
  if not ok then at_caller(out) end
  return out
end

local function spec_interventions(spec, model)
  if type(spec) ~= "table" then
    error(("model:with: the first argument must be a table {suppress =, amplify =, factor =, interventions =}, got a %s")
      :format(type(spec)), 0)
  end
  for k in pairs(spec) do
    if k ~= "suppress" and k ~= "amplify" and k ~= "factor" and k ~= "interventions" then
      error(("model:with: unknown key %s (known: suppress, amplify, factor, interventions)"):format(tostring(k)), 0)
    end
  end
  if spec.factor ~= nil and type(spec.factor) ~= "number" then
    error(("model:with: factor must be a number, got a %s"):format(type(spec.factor)), 0)
  end
  local out = {}
  if spec.interventions ~= nil and type(spec.interventions) ~= "table" then
    error(("model:with: interventions must be a list, got a %s"):format(type(spec.interventions)), 0)
  end
  -- the user's own interventions come first, so the core's "intervention N" is their index
  for _, iv in ipairs(spec.interventions or {}) do out[#out + 1] = iv end
  if spec.suppress then
    for _, iv in ipairs(neuron_interventions(spec.suppress, "set", 0, "model:with: suppress ", model)) do out[#out + 1] = iv end
  end
  if spec.amplify then
    for _, iv in ipairs(neuron_interventions(spec.amplify, "scale", spec.factor or 2, "model:with: amplify ", model)) do
      out[#out + 1] = iv
    end
  end
  return out
end

--- model:with({suppress = neurons, amplify = neurons, factor = 2, interventions = {...}}, fn, ...)
--- runs fn with those interventions applied to every score/capture/prob/topk call on the model.
--- A bad neuron is refused before fn runs; an error inside fn is reported at fn's line.
function Model:with(spec, fn, ...)
  local ok, ivs = pcall(spec_interventions, spec, self)
  if not ok then at_caller(ivs) end
  if type(fn) ~= "function" then at_caller(("model:with: the second argument must be a function, got a %s"):format(type(fn))) end
  local previous = active[self]
  active[self] = ivs
  local res = table.pack(xpcall(fn, at_caller.handler, ...))
  active[self] = previous
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

local raw_score, raw_capture, raw_gradient = Model.score, Model.capture, Model.gradient

local function with_active(self, opts)
  if active[self] and not (opts and opts.interventions) then
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.interventions = active[self]
    return o
  end
  return opts
end

-- An error raised by the core inside these wrappers would name the wrapper's line; it is raised
-- again at the user's, which is where the bad argument came from.
function Model:score(items, opts)
  local ok, res = pcall(raw_score, self, items, with_active(self, opts))
  if not ok then at_caller(res) end
  return res
end
function Model:capture(items, opts)
  local ok, res = pcall(raw_capture, self, items, with_active(self, opts))
  if not ok then at_caller(res) end
  return res
end
function Model:gradient(item, layer, opts)
  local ok, grad, value = pcall(raw_gradient, self, item, layer, with_active(self, opts))
  if not ok then at_caller(grad) end
  return grad, value
end

--- model:target_id(word) -> id; errors when the word is not exactly one token.
function Model:target_id(word)
  if type(word) == "number" then return word end
  local id = self:id(word)
  if id then return id end
  local pieces = self:tokenize(word)
  local names = {}
  for i, t in ipairs(pieces) do names[i] = self:token(t) end
  at_caller(string.format("target %q is not a single token of the vocabulary (it tokenizes to %s)",
    word, #names > 0 and table.concat(names, " | ") or "nothing"))
end

--- model:item(prompt, target) -> {ids=, mask=, target=, prompt=}
function Model:item(prompt, target)
  local ok, ids, mask = pcall(self.encode, self, prompt)
  if not ok then at_caller(ids) end
  local item = { ids = ids, mask = mask, prompt = prompt }
  if target ~= nil then
    local ok2, tid = pcall(self.target_id, self, target)
    if not ok2 then at_caller(tid) end
    item.target = tid
  end
  return item
end

--- model:topk(prompt, k) -> { {token=, p=}, ... }
function Model:topk(prompt, k)
  local ok, item = pcall(self.item, self, prompt)
  if not ok then at_caller(item) end
  local r = self:score({ item }, { topk = k or 5 })[1]
  local out = {}
  for i, id in ipairs(r.top) do out[i] = { token = self:token(id), id = id, p = r.top_p[i] } end
  return out
end

--- model:prob(prompt, target) -> P(target at [MASK]), log P, rank
function Model:prob(prompt, target)
  local ok, item = pcall(self.item, self, prompt, target)
  if not ok then at_caller(item) end
  local r = self:score({ item })[1]
  return r.p, r.logp, r.rank
end

--- model:update_fact(neurons, old, new [, {lambda1 = 1, lambda2 = 8}]) -> Edit: the paper's
--- norm-scaled value-slot update (knwb.edit.update); edit:undo() restores the weights exactly.
function Model:update_fact(neurons, old, new, opts)
  local ok, h = pcall(require("knwb.edit").update, self, neurons, old, new, opts or {})
  if not ok then at_caller(h) end
  return h
end

--- model:erase(neurons [, {value = "zero"|"unk"}]) -> Edit: sets the value slots to zero (or
--- the [UNK] embedding), as relation erasing does (knwb.edit.erase).
function Model:erase(neurons, opts)
  local ok, h = pcall(require("knwb.edit").erase, self, neurons, opts or {})
  if not ok then at_caller(h) end
  return h
end

-- model:neurons: the paper's method for one fact, in one call (Dai et al. section 3, as
-- refine.lua does it for a relation): integrated gradients on every prompt, the coarse set of
-- each prompt (score >= threshold x the prompt's max), then the neurons in at least
-- max(n x p, min_prompts) of the n coarse sets, with p tuned as the official code tunes it per
-- relation (start 0.7, +-0.05 until 2-5 neurons, at most 6 evaluations), here on this one fact.
local NEURONS_OPTS = { steps = true, quadrature = true, batch = true, target = true, threshold = true,
  baseline_threshold = true, p = true, p_step = true, target_min = true, target_max = true, rounds = true,
  min_prompts = true, adapt = true, cache = true }

local function strip_position(msg) return (tostring(msg):gsub("^[^\n:]+:%d+: ", "", 1)) end

local function find_neurons(model, prompts, target, o)
  local refine = require "knwb.refine"
  if type(prompts) == "string" then prompts = { prompts } end
  if type(prompts) ~= "table" or #prompts == 0 then
    error(("model:neurons: prompts must be a non-empty list of prompts with [MASK], got %s"):format(
      type(prompts) == "table" and "an empty list" or "a " .. type(prompts)), 0)
  end
  if type(o) ~= "table" then error(("model:neurons: opts must be a table, got a %s"):format(type(o)), 0) end
  for k in pairs(o) do
    if not NEURONS_OPTS[k] then
      local names = {}
      for n in pairs(NEURONS_OPTS) do names[#names + 1] = n end
      table.sort(names)
      error(("model:neurons: unknown option %s (known: %s)"):format(tostring(k), table.concat(names, ", ")), 0)
    end
  end
  if o.target ~= nil and o.target ~= "prob" and o.target ~= "logprob" then
    error(("model:neurons: opts.target must be \"prob\" or \"logprob\", got %s"):format(tostring(o.target)), 0)
  end
  local ro = {}
  for k, v in pairs(refine.defaults) do ro[k] = o[k] == nil and v or o[k] end
  local min_prompts = ro.min_prompts
  if #prompts < min_prompts then
    error(("model:neurons: %d prompt%s, but a knowledge neuron must be in the coarse sets of at least min_prompts = %d "
      .. "(the official code's minimum; write more paraphrases or set opts.min_prompts)"):format(#prompts,
      #prompts == 1 and "" or "s", min_prompts), 0)
  end
  local items = {}
  for j, pr in ipairs(prompts) do
    local ok, it = pcall(model.item, model, pr, target)
    if not ok then error(("model:neurons: prompt %d: %s"):format(j, strip_position(it)), 0) end
    items[j] = it
  end
  local ao = { steps = o.steps or 20, quadrature = o.quadrature or "left", batch = o.batch, target = o.target or "prob" }
  local store = o.cache and require("knwb.attribution").open(o.cache, model)
  local coarse, acts_coarse, maxes, p_full = {}, {}, {}, {}
  local bth = o.baseline_threshold or 0.5
  for j, it in ipairs(items) do
    local ig, act, info
    if store then
      ig, act, info = store:attribute(model, it, ao)
    else
      ig, act, info = model:attribute(it, { steps = ao.steps, quadrature = ao.quadrature, batch = ao.batch,
        log = ao.target == "logprob" })
    end
    coarse[j], maxes[j] = refine.coarse(ig, ro.threshold)
    acts_coarse[j] = refine.coarse(act, bth)
    p_full[j] = info.p_full
  end
  if o.adapt == false then ro.rounds = 1 end
  local kn, rinfo = refine.relation({ coarse }, ro)
  local base, binfo = refine.relation({ acts_coarse }, ro)
  return kn[1], coarse, { p = rinfo.p, rounds = rinfo.rounds, history = rinfo.history,
    need = math.max(#items * rinfo.p, min_prompts), max = maxes, p_full = p_full,
    baseline = base[1], baseline_coarse = acts_coarse, baseline_p = binfo.p, prompts = #items }
end

--- model:neurons(prompts, target [, opts]) -> kn, coarse, info: the knowledge neurons of the fact
--- that the prompts state with target at [MASK] (a list of {layer, neuron}), the coarse set of
--- each prompt, and info {p, rounds, history, need, max, p_full, baseline, baseline_coarse,
--- baseline_p, prompts}. opts: steps (20), quadrature ("left"), batch, target ("prob" or
--- "logprob"), threshold (0.2), p (0.7), p_step, target_min, target_max, rounds, min_prompts (3),
--- adapt (true; false keeps p fixed), baseline_threshold (0.5), cache (a folder of stored scores).
function Model:neurons(prompts, target, opts)
  local ok, kn, coarse, info = pcall(find_neurons, self, prompts, target, opts or {})
  if not ok then at_caller(kn) end
  return kn, coarse, info
end

-- submodules, loaded on first use
setmetatable(knwb, {
  __index = function(t, k)
    local ok, mod = pcall(require, "knwb." .. k)
    if not ok then
      if tostring(mod):find("module 'knwb." .. k .. "' not found", 1, true) then return nil end
      error(mod, 2)
    end
    rawset(t, k, mod)
    return mod
  end,
})

return knwb
