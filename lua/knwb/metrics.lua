-- knwb.metrics: the numbers the experiments report, defined once (PAPER.md sections 4.3 to 4.6).
--
--   local M = require "knwb.metrics"
--   M.ratio_of_means({-0.1, -0.2}, {0.5, 0.5})          --> -0.3   (sum of changes / sum of bases)
--   local s = M.change_summary(rows)                     -- rows: {relation=, p0=, p=, logp0=, logp=}
--   s.ratio, s.dlog, s.groups                           -- mean over relations of per-relation values
--   M.perplexity({math.log(0.5), math.log(0.125)})       --> 4      exp(-mean ln p)
--   M.effects(model, items, neurons, {factor = 2})       -- p0, p after suppressing, after amplifying
--
-- Aggregation follows the official code: a change is averaged over all prompts of a relation and
-- divided by the mean base probability of those prompts (a ratio of means, not a mean of
-- ratios); the headline is the unweighted mean of the per-relation values. Perplexity is
-- exp(mean of -ln p) over the prompts it is given (natural log). Random draws for the controls
-- are knwb.random's.
-- It is not a statistics package: one bootstrap interval (over facts), no tests of significance.
local M = {}
local at_caller = require "knwb.caller"

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

--- M.bootstrap_ratio(rows, rng [, o]) -> lo, hi: a percentile bootstrap interval for
--- change_summary(rows).ratio. Each resample draws, within every group (relation), as many units
--- (facts) as it has, with replacement, keeping all the prompts of a drawn unit together; the
--- statistic is recomputed exactly as change_summary does (per group sum of changes over sum of
--- bases, then the unweighted mean over the groups where it is defined). o: resamples (1000),
--- level (0.95), unit (row field naming the unit, "fact"), group/before/after as in
--- change_summary. nil, nil when there are no rows or no resample has a defined value.
function M.bootstrap_ratio(rows, rng, o)
  o = o or {}
  local uk, gk, bk, ak = o.unit or "fact", o.group or "relation", o.before or "p0", o.after or "p"
  local B, level = o.resamples or 1000, o.level or 0.95
  if math.type(B) ~= "integer" or B < 1 then error("bootstrap_ratio: resamples must be an integer >= 1", 2) end
  if not (level > 0 and level < 1) then error("bootstrap_ratio: level must be in (0, 1)", 2) end
  -- per group, per unit: the sums of changes and of bases over the unit's prompts
  local by, order = M.group_by(rows, gk)
  local groups = {}
  for _, g in ipairs(order) do
    local units, index = {}, {}
    for i, r in ipairs(by[g]) do
      local u = r[uk]
      if u == nil then error(("bootstrap_ratio: row %d of %s has no %s"):format(i, tostring(g), uk), 2) end
      local k = index[u]
      if not k then
        k = #units + 1
        index[u], units[k] = k, { d = 0.0, b = 0.0 }
      end
      units[k].d = units[k].d + (r[ak] - r[bk])
      units[k].b = units[k].b + r[bk]
    end
    groups[#groups + 1] = units
  end
  local stats = {}
  for _ = 1, B do
    local s, n = 0.0, 0
    for _, units in ipairs(groups) do
      local d, b, m = 0.0, 0.0, #units
      for _ = 1, m do
        local u = units[rng:int(m)]
        d, b = d + u.d, b + u.b
      end
      if b ~= 0 then s, n = s + d / b, n + 1 end
    end
    if n > 0 then stats[#stats + 1] = s / n end
  end
  if #stats == 0 then return nil, nil end
  table.sort(stats)
  local tail = (1 - level) / 2
  local lo = stats[math.max(1, math.ceil(tail * #stats))]
  local hi = stats[math.min(#stats, math.floor((1 - tail) * #stats) + 1)]
  return lo, hi
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
-- Interventions on the knowledge neurons of a fact (PAPER.md 4.3).

--- M.effects(model, items, neurons [, {factor = 2, batch = rows, base = {p=, logp=}}]) ->
---   { p0, logp0, p_suppress, logp_suppress, p_amplify, logp_amplify }, lists over the items.
--- p0 from the unmodified model (or o.base, a result of an earlier call for the same items);
--- suppress sets every listed neuron to 0 at each item's [MASK] position (all layers in one
--- forward pass); amplify multiplies them by factor. One model:score call per condition, so the
--- items are batched together. With no neurons both conditions equal p0 exactly, without a
--- forward pass. Value-slot edits in force apply to all three conditions; do not call it inside
--- model:with (its interventions would reach p0 but be replaced in the other two).
local function effects(model, items, neurons, o)
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

function M.effects(model, items, neurons, o)
  local ok, out = pcall(effects, model, items, neurons, o or {})
  if not ok then at_caller(out) end
  return out
end

---------------------------------------------------------------------------------------------------
-- The same changes on parts of the prompts: seen against unseen, and bins of confidence.
-- rows_by_set[name] = {suppress = rows, amplify = rows} (change_summary's rows, each with held_out
-- for by_prompts); summarize(rows, key...) makes one summary (change_summary, with a bootstrap
-- interval drawn from a stream named by the keys, say); sets lists the names in order.

--- M.by_prompts(rows_by_set, sets, summarize) -> {seen = {prompts, [set] = {suppress, amplify}},
--- unseen = ...} | nil: the summaries over training-template prompts (held_out false) and
--- held-out ones apart; nil unless the first set has both kinds. The keys given to summarize
--- are (kind, set, op).
function M.by_prompts(rows_by_set, sets, summarize)
  local counts = { seen = 0, unseen = 0 }
  for _, r in ipairs(rows_by_set[sets[1]].suppress) do
    if r.held_out == true then counts.unseen = counts.unseen + 1 elseif r.held_out == false then counts.seen = counts.seen + 1 end
  end
  if counts.seen == 0 or counts.unseen == 0 then return nil end
  local out = {}
  for _, kind in ipairs { "seen", "unseen" } do
    local held = kind == "unseen"
    out[kind] = { prompts = counts[kind] }
    for _, name in ipairs(sets) do
      local sub = { suppress = {}, amplify = {} }
      for _, op in ipairs { "suppress", "amplify" } do
        for _, r in ipairs(rows_by_set[name][op]) do if r.held_out == held then sub[op][#sub[op] + 1] = r end end
      end
      if #sub.suppress > 0 then
        out[kind][name] = { suppress = summarize(sub.suppress, kind, name, "suppress"),
          amplify = summarize(sub.amplify, kind, name, "amplify") }
      end
    end
  end
  return out
end

--- M.by_confidence(rows_by_set, sets, edges, summarize) -> bins: the summaries within bins of
--- p0 (the unmodified model's P(gold)), [edges[k], edges[k+1]) with the last bin closed; each bin
--- {lo, hi, prompts (of the first set), [set] = {suppress, amplify}}, a set left out of a bin it
--- has no prompt in. The keys given to summarize are ("confidence", k, set, op).
function M.by_confidence(rows_by_set, sets, edges, summarize)
  local bins = {}
  for k = 1, #edges - 1 do
    local lo, hi, last = edges[k], edges[k + 1], k == #edges - 1
    local bin = { lo = lo, hi = hi, prompts = 0 }
    for i, name in ipairs(sets) do
      local sub = { suppress = {}, amplify = {} }
      for _, op in ipairs { "suppress", "amplify" } do
        for _, r in ipairs(rows_by_set[name][op]) do
          if r.p0 >= lo and (r.p0 < hi or (last and r.p0 <= hi)) then sub[op][#sub[op] + 1] = r end
        end
      end
      if i == 1 then bin.prompts = #sub.suppress end
      if #sub.suppress > 0 then
        bin[name] = { suppress = summarize(sub.suppress, "confidence", k, name, "suppress"),
          amplify = summarize(sub.amplify, "confidence", k, name, "amplify") }
      end
    end
    bins[k] = bin
  end
  return bins
end

return M
