-- knwb.metrics: the numbers the experiments report, defined once (PAPER.md sections 4.3 to 4.6).
--
--   local M = require "knwb.metrics"
--   M.ratio_of_means({-0.1, -0.2}, {0.5, 0.5})          --> -0.3   (sum of changes / sum of bases)
--   local s = M.change_summary(rows)                     -- rows: {relation=, p0=, p=, logp0=, logp=}
--   s.ratio, s.dlog, s.groups                           -- mean over relations of per-relation values
--   M.perplexity({math.log(0.5), math.log(0.125)})       --> 4      exp(-mean ln p)
--   local rng = M.rng(42, "random", "P36", 7)            -- a seeded stream, keyed by strings/integers
--   M.random_matched({{11, 5}, {11, 9}}, 3072, rng)      -- same layers, distinct random indices
--   M.effects(model, items, neurons, {factor = 2})       -- p0, p after suppressing, after amplifying
--
-- Aggregation follows the official code: a change is averaged over all prompts of a relation and
-- divided by the mean base probability of those prompts (a ratio of means, not a mean of
-- ratios); the headline is the unweighted mean of the per-relation values. Perplexity is
-- exp(mean of -ln p) over the prompts it is given (natural log). Random draws use their own
-- generator (splitmix64), never math.random, so a draw depends only on its seed and keys and is
-- the same whatever else the script does or in which order it visits facts.
-- It is not a statistics package: no confidence intervals, no tests of significance.
local M = {}

---------------------------------------------------------------------------------------------------
-- Means and ratios.

--- M.sum(xs) -> the sum of a list of numbers (0 for an empty list).
function M.sum(xs)
  local s = 0.0
  for i = 1, #xs do s = s + xs[i] end
  return s
end

--- M.mean(xs) -> the mean of a list of numbers, or nil for an empty list.
function M.mean(xs)
  if #xs == 0 then return nil end
  return M.sum(xs) / #xs
end

--- M.ratio_of_means(changes, bases) -> sum(changes) / sum(bases): mean change over mean base,
--- with both means over the same list of cases. nil when there are no cases or the bases sum to 0.
function M.ratio_of_means(changes, bases)
  if #changes ~= #bases then
    error(("ratio_of_means: %d changes but %d bases (one of each per case)"):format(#changes, #bases), 2)
  end
  local b = M.sum(bases)
  if #bases == 0 or b == 0 then return nil end
  return M.sum(changes) / b
end

--- M.mean_over(groups, field) -> the unweighted mean of groups[k][field] over the groups where
--- it is a number (nil values, e.g. an undefined ratio, are left out), and how many counted.
--- Returns nil, 0 when none has a value.
function M.mean_over(groups, field)
  local s, n = 0.0, 0
  for _, g in ipairs(groups) do
    local v = g[field]
    if type(v) == "number" and v == v then
      s, n = s + v, n + 1
    end
  end
  if n == 0 then return nil, 0 end
  return s / n, n
end

--- M.group_by(rows, key) -> groups, order: rows split by row[key] (a string or function of the
--- row), and the keys in order of first appearance.
function M.group_by(rows, key)
  local get = type(key) == "function" and key or function(r) return r[key] end
  local by, order = {}, {}
  for _, r in ipairs(rows) do
    local k = get(r)
    if k == nil then error(("group_by: a row has no %s"):format(tostring(key)), 2) end
    if not by[k] then by[k] = {}; order[#order + 1] = k end
    table.insert(by[k], r)
  end
  return by, order
end

--- M.change_summary(rows [, o]) -> { ratio=, dlog=, relations=, prompts=, mean_p0=, groups= }
--- rows: one per prompt, { relation=, p0=, p=, logp0=, logp= } (names settable in o: group,
--- before, after, log_before, log_after; the log fields may be absent). Per group (relation):
---   n           prompts
---   mean_p0     mean base probability
---   mean_delta  mean of (p - p0)
---   ratio       mean_delta / mean_p0 (ratio of means; nil when mean_p0 is 0)
---   mean_dlog   mean of (logp - logp0)  (when the rows carry log-probabilities)
--- Over groups: ratio = unweighted mean of the per-group ratios, dlog = the same for mean_dlog,
--- mean_p0 = unweighted mean of the per-group mean_p0. A case left unchanged (an empty neuron set)
--- is simply a row with p = p0: it adds 0 to the changes and its p0 to the bases.
function M.change_summary(rows, o)
  o = o or {}
  local gk, bk, ak = o.group or "relation", o.before or "p0", o.after or "p"
  local lbk, lak = o.log_before or "logp0", o.log_after or "logp"
  local by, order = M.group_by(rows, gk)
  local groups = {}
  for _, k in ipairs(order) do
    local rs = by[k]
    local deltas, bases, dlogs = {}, {}, {}
    for i, r in ipairs(rs) do
      local b, a = r[bk], r[ak]
      if type(b) ~= "number" or type(a) ~= "number" then
        error(("change_summary: row %d of %s lacks %s or %s"):format(i, tostring(k), bk, ak), 2)
      end
      deltas[i], bases[i] = a - b, b
      if r[lbk] ~= nil and r[lak] ~= nil then dlogs[#dlogs + 1] = r[lak] - r[lbk] end
    end
    local g = { [gk] = k, n = #rs, mean_p0 = M.mean(bases), mean_delta = M.mean(deltas),
      ratio = M.ratio_of_means(deltas, bases) }
    if #dlogs == #rs then g.mean_dlog = M.mean(dlogs) end
    groups[#groups + 1] = g
  end
  local ratio = M.mean_over(groups, "ratio")
  local dlog = M.mean_over(groups, "mean_dlog")
  return { ratio = ratio, dlog = dlog, mean_p0 = (M.mean_over(groups, "mean_p0")), relations = #groups,
    prompts = #rows, groups = groups }
end

--- M.perplexity(logps) -> exp(-mean(logps)): the perplexity of the gold tokens given their
--- natural-log probabilities. nil for an empty list.
function M.perplexity(logps)
  local m = M.mean(logps)
  if m == nil then return nil end
  return math.exp(-m)
end

--- M.percent(x) -> 100 * x, or nil for nil.
function M.percent(x)
  if x == nil then return nil end
  return 100 * x
end

---------------------------------------------------------------------------------------------------
-- Seeded random draws.

local function mix64(z)
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

local function key_hash(h, v)
  local s = math.type(v) == "integer" and ("i" .. v) or type(v) == "string" and ("s" .. v) or nil
  if not s then error(("rng: keys must be strings or integers, got %s"):format(type(v)), 3) end
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001B3 end
  return mix64(h ~ #s)
end

local Rng = {}
Rng.__index = Rng

--- M.rng(seed, key...) -> a random stream (splitmix64) fixed by the seed and the keys (strings
--- or integers): M.rng(42, "random", "P36", 3) gives the same draws wherever it is made.
function M.rng(seed, ...)
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

---------------------------------------------------------------------------------------------------
-- Random neurons for controls. A neuron is {layer, index}, both from 0.

local function nkey(l, i) return l * 1000003 + i end

local function neuron_of(n)
  local l, i = n[1] or n.layer, n[2] or n.neuron
  if math.type(l) ~= "integer" or math.type(i) ~= "integer" then
    error("a neuron must be {layer, index} with integers", 3)
  end
  return l, i
end

--- M.random_matched(neurons, width, rng [, {exclude = neurons}]) -> a list of random neurons,
--- one per given neuron and in the same layer: the k-th output is in the layer of the k-th input,
--- at a uniformly random index in [0, width), distinct from every other output and from the
--- excluded neurons. Errors when a layer has fewer free indices than neurons to draw.
function M.random_matched(neurons, width, rng, o)
  if math.type(width) ~= "integer" or width < 1 then error("random_matched: width must be an integer >= 1", 2) end
  local taken, need, excluded = {}, {}, {}
  for _, n in ipairs(o and o.exclude or {}) do
    local l, i = neuron_of(n)
    if not taken[nkey(l, i)] and i >= 0 and i < width then
      taken[nkey(l, i)] = true
      excluded[l] = (excluded[l] or 0) + 1
    end
  end
  for _, n in ipairs(neurons) do
    local l = neuron_of(n)
    need[l] = (need[l] or 0) + 1
  end
  for l, k in pairs(need) do
    if k + (excluded[l] or 0) > width then
      error(("random_matched: layer %d needs %d distinct random neurons but has only %d free of %d"):format(
        l, k, width - (excluded[l] or 0), width), 2)
    end
  end
  local out = {}
  for _, n in ipairs(neurons) do
    local l = neuron_of(n)
    local i
    repeat i = rng:int(0, width - 1) until not taken[nkey(l, i)]
    taken[nkey(l, i)] = true
    out[#out + 1] = { l, i }
  end
  return out
end

--- M.random_neurons(count, layers, width, rng) -> count distinct neurons drawn uniformly from
--- all layers x width pairs (the random control of the editing experiments, PAPER.md 6.13).
function M.random_neurons(count, layers, width, rng)
  if count > layers * width then
    error(("random_neurons: %d neurons asked of %d x %d"):format(count, layers, width), 2)
  end
  local taken, out = {}, {}
  while #out < count do
    local l, i = rng:int(0, layers - 1), rng:int(0, width - 1)
    if not taken[nkey(l, i)] then
      taken[nkey(l, i)] = true
      out[#out + 1] = { l, i }
    end
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- Interventions on the knowledge neurons of a fact (PAPER.md 4.3).

--- M.effects(model, items, neurons [, {factor = 2, batch = rows, base = {p=, logp=}}]) ->
---   { p0, logp0, p_suppress, logp_suppress, p_amplify, logp_amplify }, lists over the items.
--- p0 from the unmodified model (or o.base, a result of an earlier call for the same items);
--- suppress sets every listed neuron to 0 at each item's [MASK] position (all layers in one
--- forward pass); amplify multiplies them by factor. One model:score call per condition, so the
--- items are batched together. With no neurons both conditions equal p0 exactly, without a
--- forward pass. Value-slot edits in force apply to all three conditions; do not call it inside
--- model:with (its interventions would reach p0 but be replaced in the other two).
function M.effects(model, items, neurons, o)
  o = o or {}
  local knwb = require "knwb"
  local batch = o.batch and o.batch > 0 and o.batch or nil
  local p0, logp0 = o.base and o.base.p, o.base and o.base.logp
  if not p0 then
    p0, logp0 = {}, {}
    for j, r in ipairs(model:score(items, { batch = batch })) do p0[j], logp0[j] = r.p, r.logp end
  end
  local out = { p0 = p0, logp0 = logp0 }
  if #neurons == 0 then
    out.p_suppress, out.logp_suppress, out.p_amplify, out.logp_amplify = p0, logp0, p0, logp0
    return out
  end
  local function run(ivs)
    local p, lp = {}, {}
    for j, r in ipairs(model:score(items, { batch = batch, interventions = ivs })) do p[j], lp[j] = r.p, r.logp end
    return p, lp
  end
  out.p_suppress, out.logp_suppress = run(knwb.neuron_interventions(neurons, "set", 0))
  out.p_amplify, out.logp_amplify = run(knwb.neuron_interventions(neurons, "scale", o.factor or 2))
  return out
end

return M
