-- test_metrics.lua: knwb.metrics on hand-worked numbers: ratio of means, mean over relations,
-- unchanged cases (empty neuron sets) count as 0, perplexity, the seeded generator, and random
-- neurons matched per layer.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local M = require "knwb.metrics"

local log = math.log

-- Ratio of means: (-0.1 - 0.2 + 0) / (0.5 + 0.3 + 0.2) = -0.3, not the mean of ratios (-0.3556).
check.near(M.ratio_of_means({ -0.1, -0.2, 0 }, { 0.5, 0.3, 0.2 }), -0.3, 1e-15, "ratio of means = sum of changes / sum of bases")
check.eq(M.ratio_of_means({}, {}), nil, "ratio of means of no cases is nil")
check.eq(M.ratio_of_means({ 0.1 }, { 0 }), nil, "ratio of means with zero bases is nil")
check.err(function() M.ratio_of_means({ 1, 2 }, { 1 }) end, "2 changes but 1 bases", "ratio of means refuses lists of different lengths")
check.eq(M.mean({}), nil, "mean of an empty list is nil")
check.near(M.mean({ 1, 2, 6 }), 3, 0, "mean")

-- Two relations. R1: p0 = {0.5, 0.3}, p = {0.25, 0.3} -> changes {-0.25, 0}, mean -0.125, mean p0 0.4,
-- ratio -0.3125; dlog = {ln 0.5, 0}, mean ln(0.5)/2. R2: p0 = {0.2}, p = {0.3} -> ratio 0.5,
-- dlog ln 1.5. Over relations: ratio (-0.3125 + 0.5) / 2 = 0.09375 (unweighted: R1 has twice
-- the prompts but the same weight), dlog (ln(0.5)/2 + ln 1.5) / 2.
local rows = {
  { relation = "R1", p0 = 0.5, p = 0.25, logp0 = log(0.5), logp = log(0.25) },
  { relation = "R2", p0 = 0.2, p = 0.3, logp0 = log(0.2), logp = log(0.3) },
  { relation = "R1", p0 = 0.3, p = 0.3, logp0 = log(0.3), logp = log(0.3) },
}
local s = M.change_summary(rows)
check.eq(s.relations, 2, "change_summary: two relations")
check.eq(s.prompts, 3, "change_summary: three prompts")
check.eq(s.groups[1].relation, "R1", "groups keep first-appearance order")
check.eq(s.groups[1].n, 2, "R1 has two prompts")
check.near(s.groups[1].mean_p0, 0.4, 1e-15, "R1 mean p0")
check.near(s.groups[1].mean_delta, -0.125, 1e-15, "R1 mean change")
check.near(s.groups[1].ratio, -0.3125, 1e-15, "R1 ratio of means")
check.near(s.groups[2].ratio, 0.5, 1e-15, "R2 ratio of means")
check.near(s.ratio, 0.09375, 1e-15, "headline = unweighted mean of per-relation ratios")
check.near(s.groups[1].mean_dlog, log(0.5) / 2, 1e-15, "R1 mean change of log p")
check.near(s.dlog, (log(0.5) / 2 + log(1.5)) / 2, 1e-15, "mean over relations of the mean change of log p")
check.near(s.mean_p0, (0.4 + 0.2) / 2, 1e-15, "mean over relations of mean p0")
check.near(M.percent(s.ratio), 9.375, 1e-12, "percent")

-- An unchanged case (a fact with no neurons: p = p0) adds 0 to the changes and p0 to the bases:
-- R1 gains a prompt with p0 = 0.2 -> ratio -0.25 / 1.0 = -0.25.
rows[#rows + 1] = { relation = "R1", p0 = 0.2, p = 0.2, logp0 = log(0.2), logp = log(0.2) }
s = M.change_summary(rows)
check.near(s.groups[1].ratio, -0.25, 1e-15, "an empty set counts as change 0 and dilutes the ratio")
check.near(s.groups[1].mean_dlog, log(0.5) / 3, 1e-15, "and as 0 change of log p")

-- Without log fields there is no dlog; other field names can be used.
local s2 = M.change_summary({ { rel = "A", before = 0.5, after = 0.4 } }, { group = "rel", before = "before", after = "after" })
check.near(s2.ratio, -0.2, 1e-15, "change_summary with other field names")
check.eq(s2.dlog, nil, "no log fields: dlog is nil")
check.err(function() M.change_summary({ { relation = "A", p0 = 0.5 } }) end, "lacks p0 or p", "a row without p is refused")

-- mean_over skips undefined values.
local m, n = M.mean_over({ { r = 1 }, { r = nil }, { r = 3 } }, "r")
check.eq(m, 2.0, "mean_over skips nil")
check.eq(n, 2, "mean_over counts the values used")
check.eq((M.mean_over({}, "r")), nil, "mean_over of nothing is nil")

-- Perplexity: exp(-(ln 0.5 + ln 0.125) / 2) = exp(ln 4) = 4.
check.near(M.perplexity({ log(0.5), log(0.125) }), 4, 1e-12, "perplexity = exp(mean -ln p)")
check.near(M.perplexity({ log(0.01) }), 100, 1e-9, "perplexity of one token with p = 0.01")
check.eq(M.perplexity({}), nil, "perplexity of nothing is nil")

-- The generator: fixed by seed and keys, different across seeds and keys, in range.
local function draws(rng, k, n)
  local t = {}
  for i = 1, k do t[i] = rng:int(n) end
  return t
end
check.eq(draws(M.rng(42, "a", 1), 20, 1000), draws(M.rng(42, "a", 1), 20, 1000), "rng: same seed and keys, same draws")
check.ok(not check.equal(draws(M.rng(42, "a", 1), 20, 1000), draws(M.rng(43, "a", 1), 20, 1000)), "rng: another seed, other draws")
check.ok(not check.equal(draws(M.rng(42, "a", 1), 20, 1000), draws(M.rng(42, "a", 2), 20, 1000)), "rng: another key, other draws")
check.ok(not check.equal(draws(M.rng(42, "a1"), 20, 1000), draws(M.rng(42, "a", 1), 20, 1000)), "rng: keys are not concatenated")
local r, lo_ok, seen = M.rng(7), true, {}
for _ = 1, 2000 do
  local v = r:int(0, 4)
  if v < 0 or v > 4 then lo_ok = false end
  seen[v] = (seen[v] or 0) + 1
end
check.ok(lo_ok and seen[0] and seen[4], "rng:int(0, 4) stays in range and reaches both ends")
check.ok(seen[0] > 300 and seen[0] < 500, "rng:int is roughly uniform (%d of 2000 draws are 0)", seen[0])
local f = r:float()
check.ok(f >= 0 and f < 1, "rng:float in [0, 1)")
check.err(function() M.rng(1.5) end, "seed must be an integer", "rng refuses a float seed")
check.err(function() M.rng(1, {}) end, "keys must be strings or integers", "rng refuses a table key")

-- Random neurons matched per layer.
local kn = { { 11, 5 }, { 11, 9 }, { 10, 3 }, { 2, 0 } }
local rm = M.random_matched(kn, 3072, M.rng(42, "random", "P36", 1))
check.eq(#rm, 4, "random_matched: one per neuron")
local same_layers, distinct, in_range = true, true, true
local set = {}
for k, n in ipairs(rm) do
  if n[1] ~= kn[k][1] then same_layers = false end
  if n[2] < 0 or n[2] >= 3072 then in_range = false end
  local key = n[1] .. ":" .. n[2]
  if set[key] then distinct = false end
  set[key] = true
end
check.ok(same_layers, "random_matched: the k-th neuron is in the k-th input's layer")
check.ok(in_range, "random_matched: indices in [0, width)")
check.ok(distinct, "random_matched: distinct neurons")
check.eq(M.random_matched(kn, 3072, M.rng(42, "random", "P36", 1)), rm, "random_matched: reproducible by seed")
check.ok(not check.equal(M.random_matched(kn, 3072, M.rng(43, "random", "P36", 1)), rm), "random_matched: another seed, other neurons")
check.eq(M.random_matched({}, 3072, M.rng(1)), {}, "random_matched of an empty set is empty")

-- A full layer: 4 neurons in a layer of width 4 must be a permutation; with exclusion, the rest.
local full = M.random_matched({ { 0, 0 }, { 0, 1 }, { 0, 2 }, { 0, 3 } }, 4, M.rng(5))
local idx = {}
for _, n in ipairs(full) do idx[#idx + 1] = n[2] end
table.sort(idx)
check.eq(idx, { 0, 1, 2, 3 }, "random_matched fills a layer with distinct indices")
local ex = M.random_matched({ { 1, 0 }, { 1, 1 } }, 4, M.rng(5), { exclude = { { 1, 0 }, { 1, 1 } } })
idx = { ex[1][2], ex[2][2] }
table.sort(idx)
check.eq(idx, { 2, 3 }, "random_matched avoids the excluded neurons")
check.err(function() M.random_matched({ { 1, 0 }, { 1, 1 }, { 1, 2 } }, 4, M.rng(5), { exclude = { { 1, 0 }, { 1, 1 } } }) end,
  "layer 1 needs 3 distinct random neurons but has only 2 free of 4", "random_matched: too many for a layer")

-- Uniform random neurons over all layers.
local rn = M.random_neurons(30, 2, 16, M.rng(9))
local ok, keys = true, {}
for _, n in ipairs(rn) do
  if n[1] < 0 or n[1] > 1 or n[2] < 0 or n[2] > 15 or keys[n[1] * 100 + n[2]] then ok = false end
  keys[n[1] * 100 + n[2]] = true
end
check.ok(#rn == 30 and ok, "random_neurons: 30 distinct neurons in range")
check.eq(M.random_neurons(30, 2, 16, M.rng(9)), rn, "random_neurons: reproducible")
check.err(function() M.random_neurons(33, 2, 16, M.rng(9)) end, "33 neurons asked of 2 x 16", "random_neurons: too many")

check.done()
