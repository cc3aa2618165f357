-- knwb.random: seeded random draws for the experiments' samples and controls, defined once.
--
--   local random = require "knwb.random"
--   local rng = random.rng(42, "random", "P36", 7)   -- a stream fixed by the seed and the keys
--   rng:int(10), rng:int(0, 4), rng:float(), rng:choice(list), rng:sample(list, 3)
--   random.matched({{5, 11}, {5, 9}}, 3072, rng)     -- same layers, distinct random indices
--   random.neurons(20, 12, 3072, rng)                -- distinct neurons, uniform over all layers
--
-- The generator is splitmix64 in Lua integers, never math.random: a draw depends only on its seed
-- and keys, so it is the same on every platform, whatever else a script draws or in which order
-- it visits facts, and a control's draws never shift the main experiment's sample. A neuron is
-- {layer, index} (or {layer=, neuron=}), both from 0.
-- It is not a statistics package: no distributions beyond uniform.
local random = {}

local function mix64(z)
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

-- Each key is hashed with its type and length, so ("a1") and ("a", 1) are different streams.
local function key_hash(h, v)
  local s = math.type(v) == "integer" and ("i" .. v) or type(v) == "string" and ("s" .. v) or nil
  if not s then error(("rng: keys must be strings or integers, got %s"):format(type(v)), 3) end
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001B3 end
  return mix64(h ~ #s)
end

local Rng = {}
Rng.__index = Rng

--- random.rng(seed, key...) -> a random stream fixed by the integer seed and the keys (strings
--- or integers): random.rng(42, "random", "P36", 3) gives the same draws wherever it is made.
function random.rng(seed, ...)
  if math.type(seed) ~= "integer" then error("rng: the seed must be an integer", 2) end
  local h = mix64(seed ~ 0x6A09E667F3BCC909)
  for i = 1, select("#", ...) do h = key_hash(h, (select(i, ...))) end
  return setmetatable({ state = h }, Rng)
end

--- rng:next() -> 64 random bits as a Lua integer.
function Rng:next()
  self.state = self.state + 0x9E3779B97F4A7C15
  return mix64(self.state)
end

--- rng:float() -> uniform in [0, 1), 53 bits.
function Rng:float()
  return (self:next() >> 11) * 0x1p-53
end

--- rng:int(n) -> uniform in 1..n; rng:int(lo, hi) -> uniform in lo..hi. Unbiased (rejection).
function Rng:int(lo, hi)
  if hi == nil then lo, hi = 1, lo end
  local n = hi - lo + 1
  if math.type(n) ~= "integer" or n < 1 or n > (1 << 53) then
    error(("rng:int: empty or too wide range [%s, %s]"):format(tostring(lo), tostring(hi)), 2)
  end
  local limit = (1 << 53) - (1 << 53) % n
  while true do
    local r = self:next() >> 11
    if r < limit then return lo + r % n end
  end
end

--- rng:choice(list) -> a uniformly chosen element (error on an empty list).
function Rng:choice(list)
  if #list == 0 then error("rng:choice: the list is empty", 2) end
  return list[self:int(#list)]
end

--- rng:sample(list, k) -> min(k, #list) distinct elements in draw order (partial Fisher-Yates);
--- the list itself is not changed.
function Rng:sample(list, k)
  local idx = {}
  for j = 1, #list do idx[j] = j end
  local out = {}
  for j = 1, math.min(k, #list) do
    local r = self:int(j, #list)
    idx[j], idx[r] = idx[r], idx[j]
    out[j] = list[idx[j]]
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- Random neurons for the controls.

local function nkey(l, i) return l * 1000003 + i end

-- level: the stack level of the public function's caller, as seen from here.
local function neuron_of(n, what, level)
  local l, i = n[1] or n.layer, n[2] or n.neuron
  if math.type(l) ~= "integer" or math.type(i) ~= "integer" then
    error(("%s: a neuron must be {layer, index} with integers"):format(what), level or 3)
  end
  return l, i
end

-- Marks the listed neurons in `set` and counts the new ones per layer in `per_layer`.
local function mark(set, per_layer, list, width, what)
  for _, n in ipairs(list or {}) do
    local l, i = neuron_of(n, what, 4)
    local k = nkey(l, i)
    if not set[k] and i >= 0 and i < width then
      set[k] = true
      per_layer[l] = (per_layer[l] or 0) + 1
    end
  end
end

--- random.matched(neurons, width, rng [, {exclude = neurons, avoid = neurons}]) -> one random
--- neuron per given neuron, in the same layer: the k-th output is in the layer of the k-th
--- input, at a uniformly random index in [0, width), distinct from every other output. `exclude`
--- is never drawn; `avoid` is not drawn in a layer that has room enough without it (the erase
--- control avoids every knowledge neuron of its relation where it can). Errors when a layer has
--- fewer free indices than neurons to draw.
function random.matched(neurons, width, rng, o)
  if math.type(width) ~= "integer" or width < 1 then error("random_matched: width must be an integer >= 1", 2) end
  o = o or {}
  local taken, n_excluded, need = {}, {}, {}
  mark(taken, n_excluded, o.exclude, width, "random_matched")
  for _, n in ipairs(neurons) do
    local l = neuron_of(n, "random_matched")
    need[l] = (need[l] or 0) + 1
  end
  for l, k in pairs(need) do
    local free = width - (n_excluded[l] or 0)
    if k > free then
      error(("random_matched: layer %d needs %d distinct random neurons but has only %d free of %d"):format(
        l, k, free, width), 2)
    end
  end
  if o.avoid then
    local avoided, n_avoided = {}, {}
    for _, n in ipairs(o.avoid) do
      local l, i = neuron_of(n, "random_matched")
      local k = nkey(l, i)
      if not taken[k] and not avoided[k] and i >= 0 and i < width then
        avoided[k] = l
        n_avoided[l] = (n_avoided[l] or 0) + 1
      end
    end
    for k, l in pairs(avoided) do
      if need[l] and need[l] <= width - (n_excluded[l] or 0) - n_avoided[l] then taken[k] = true end
    end
  end
  local out = {}
  for _, n in ipairs(neurons) do
    local l = neuron_of(n, "random_matched")
    local i
    repeat i = rng:int(0, width - 1) until not taken[nkey(l, i)]
    taken[nkey(l, i)] = true
    out[#out + 1] = { l, i }
  end
  return out
end

--- random.neurons(count, layers, width, rng [, exclude]) -> count distinct neurons drawn
--- uniformly from all layers x width pairs, none of them in `exclude` (the random control of the
--- update experiment, PAPER.md 6.13).
function random.neurons(count, layers, width, rng, exclude)
  local taken, per = {}, {}
  mark(taken, per, exclude, width, "random_neurons")
  local free = layers * width
  for l, k in pairs(per) do if l >= 0 and l < layers then free = free - k end end
  if count > free then
    error(("random_neurons: %d neurons asked, %d free of %d x %d"):format(count, free, layers, width), 2)
  end
  local out = {}
  while #out < count do
    local l, i = rng:int(0, layers - 1), rng:int(0, width - 1)
    if not taken[nkey(l, i)] then
      taken[nkey(l, i)] = true
      out[#out + 1] = { l, i }
    end
  end
  return out
end

return random
