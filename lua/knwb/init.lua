-- knwb: the script-facing library of the knowledge-neuron workbench.
-- It wraps the C engine (knwb.core) with string-level conveniences (prompts, targets, top-k),
-- interventions scoped to a function (model:with), and loads the submodules lazily:
-- knwb.config, knwb.facts, knwb.refine, knwb.metrics, knwb.edit, knwb.run, knwb.svg, ...
-- Layers, neurons and token positions count from 0, as in the paper and Hugging Face.
local core = require "knwb.core"

local knwb = { core = core, version = KNWB_VERSION }

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
  if not ok then error(m, 2) end
  return m
end

--- knwb.create(config_table, seed, vocab_path) -> a randomly initialised model.
function knwb.create(cfg, seed, vocab)
  local ok, m = pcall(core.create, cfg, seed or 0, vocab)
  if not ok then error(m, 2) end
  return m
end

-- Methods written in Lua are added to the C class's method table.
local Model = debug.getregistry()["knwb.Model"].__index

-- interventions in force for a model inside model:with(...)
local active = setmetatable({}, { __mode = "k" })

-- level: the error level of the user's code as seen from neuron_interventions.
local function neuron_interventions(neurons, op, value, level)
  if type(neurons) ~= "table" then
    error(("neurons must be a list of {layer, neuron}, got a %s"):format(type(neurons)), level)
  end
  local by_layer, order = {}, {}
  for k, n in ipairs(neurons) do
    local l, i
    if type(n) == "table" then l, i = n[1] or n.layer, n[2] or n.neuron end
    if math.type(l) ~= "integer" or math.type(i) ~= "integer" then
      error(("neuron %d must be {layer, neuron} with integers"):format(k), level)
    end
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
  local out = neuron_interventions(neurons, op, value, 3)
  return out
end

local function spec_interventions(spec)
  local out = {}
  for _, iv in ipairs(spec.interventions or {}) do out[#out + 1] = iv end
  if spec.suppress then
    for _, iv in ipairs(neuron_interventions(spec.suppress, "set", 0, 4)) do out[#out + 1] = iv end
  end
  if spec.amplify then
    for _, iv in ipairs(neuron_interventions(spec.amplify, "scale", spec.factor or 2, 4)) do out[#out + 1] = iv end
  end
  return out
end

--- model:with({suppress = neurons, amplify = neurons, factor = 2, interventions = {...}}, fn, ...)
--- runs fn with those interventions applied to every score/capture/prob/topk call on the model.
function Model:with(spec, fn, ...)
  local previous = active[self]
  active[self] = spec_interventions(spec)
  local res = table.pack(pcall(fn, ...))
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
-- again at the caller's, which is where the bad argument came from.
local at_caller = require "knwb.caller"

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
  error(string.format("target %q is not a single token of the vocabulary (it tokenizes to %s)",
    word, #names > 0 and table.concat(names, " | ") or "nothing"), 2)
end

--- model:item(prompt, target) -> {ids=, mask=, target=, prompt=}
function Model:item(prompt, target)
  local ok, ids, mask = pcall(self.encode, self, prompt)
  if not ok then error(ids, 2) end
  local item = { ids = ids, mask = mask, prompt = prompt }
  if target ~= nil then
    local ok2, tid = pcall(self.target_id, self, target)
    if not ok2 then error(tid, 2) end
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
  return require("knwb.edit").update(self, neurons, old, new, opts or {})
end

--- model:erase(neurons [, {value = "zero"|"unk"}]) -> Edit: sets the value slots to zero (or
--- the [UNK] embedding), as relation erasing does (knwb.edit.erase).
function Model:erase(neurons, opts)
  return require("knwb.edit").erase(self, neurons, opts or {})
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
