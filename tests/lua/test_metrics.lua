-- test_metrics.lua: knwb.metrics on hand-worked numbers: ratio of means, mean over relations,
-- unchanged cases (empty neuron sets) count as 0, perplexity. (The random controls: test_random.)
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

-- The bootstrap interval over facts. One relation, facts a (two prompts: change -0.25 on base 1.0)
-- and b (change 0 on base 0.4): resamples aa, ab, ba, bb give -0.25, -0.25/1.4, -0.25/1.4, 0, so
-- with 4000 resamples the 2.5% and 97.5% points are exactly aa's and bb's values.
local random = require "knwb.random"
local boot_rows = {
  { relation = "R1", fact = "a", p0 = 0.5, p = 0.25 }, { relation = "R1", fact = "a", p0 = 0.5, p = 0.5 },
  { relation = "R1", fact = "b", p0 = 0.4, p = 0.4 },
}
local lo, hi = M.bootstrap_ratio(boot_rows, random.rng(1), { resamples = 4000 })
check.near(lo, -0.25, 1e-15, "bootstrap: the low end is the all-a resample (-0.25)")
check.near(hi, 0, 1e-15, "bootstrap: the high end is the all-b resample (0)")
-- A second relation with one fact has no spread and shifts the mean over relations: (x + 0.5) / 2.
local two = { table.unpack(boot_rows) }
two[#two + 1] = { relation = "R2", fact = "c", p0 = 0.2, p = 0.3 }
lo, hi = M.bootstrap_ratio(two, random.rng(1), { resamples = 4000 })
check.near(lo, 0.125, 1e-15, "bootstrap: means over relations, per resample (low end)")
check.near(hi, 0.25, 1e-15, "bootstrap: means over relations, per resample (high end)")
-- Identical facts: no spread at all.
local same = {}
for k = 1, 6 do same[k] = { relation = "R", fact = k, p0 = 0.5, p = 0.4 } end
lo, hi = M.bootstrap_ratio(same, random.rng(2))
check.ok(math.abs(lo + 0.2) < 1e-12 and math.abs(hi + 0.2) < 1e-12, "bootstrap: identical facts give a zero-width interval at -0.2")
-- Many facts: the interval holds the point estimate, narrows with more facts, is fixed by the seed.
local function many(n, seed)
  local g, out = random.rng(seed), {}
  for k = 1, n do
    local p0 = 0.2 + 0.6 * g:float()
    out[#out + 1] = { relation = k % 3 == 0 and "A" or "B", fact = k, p0 = p0, p = p0 * (0.5 + g:float()) }
  end
  return out
end
local m200, m2000 = many(200, 5), many(2000, 5)
local point = M.change_summary(m200).ratio
local l1, h1 = M.bootstrap_ratio(m200, random.rng(3))
local l2, h2 = M.bootstrap_ratio(m2000, random.rng(3))
check.ok(l1 < point and point < h1, "bootstrap: the interval [%.4f, %.4f] holds the estimate %.4f", l1, h1, point)
check.ok(h2 - l2 < 0.5 * (h1 - l1), "bootstrap: 10 times the facts, a narrower interval (%.4f vs %.4f)", h2 - l2, h1 - l1)
check.eq({ M.bootstrap_ratio(m200, random.rng(3)) }, { l1, h1 }, "bootstrap: the same seed, the same interval")
check.eq({ M.bootstrap_ratio({}, random.rng(3)) }, {}, "bootstrap of no rows: nil, nil")
check.err(function() M.bootstrap_ratio({ { relation = "R", p0 = 1, p = 1 } }, random.rng(1)) end, "row 1 of R has no fact",
  "bootstrap: a row without its fact is refused")
check.err(function() M.bootstrap_ratio(same, random.rng(1), { resamples = 0 }) end, "resamples must be an integer >= 1",
  "bootstrap: zero resamples refused")

check.done()
