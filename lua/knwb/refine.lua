-- knwb.refine: from raw attribution scores to knowledge neurons (Dai et al. section 3, exactly
-- as the official code 2_get_kn.py does it):
--   coarse set of a prompt:  {(l,i) : score[l,i] >= t * max over all layers}   (t = 0.2; >=)
--   knowledge neurons of a fact: neurons in at least max(n * p, min_prompts) of its n prompts'
--     coarse sets (min_prompts = 3 is the code's hidden minimum)
--   p is tuned per relation: start at 0.7; after each evaluation, p -= 0.05 if the mean number of
--     neurons per fact is below 2, p += 0.05 if above 5, stop when inside [2, 5]; at most 6
--     evaluations, and the sets of the LAST evaluation are kept even if still outside the range.
-- p is accumulated in double precision and compared as count >= n * p, as in the code.
-- A neuron is {layer, neuron} with both counted from 0; set order is first appearance.
local refine = {}

refine.defaults = { threshold = 0.2, p = 0.7, p_step = 0.05, target_min = 2, target_max = 5,
                    rounds = 6, min_prompts = 3 }

local function opt(o, k) if o and o[k] ~= nil then return o[k] end return refine.defaults[k] end

local function key(l, i) return l * 1000003 + i end

--- Coarse set of one prompt from a Scores userdata (or any object with :max() and :above(t)).
--- Returns the list of {layer, neuron} and the global max. A prompt whose maximum score is not
--- positive gives an empty set (the official code leaves that case undefined).
function refine.coarse(scores, threshold)
  threshold = threshold or refine.defaults.threshold
  local mx = scores:max()
  if not (mx > 0) then return {}, mx end
  local out = {}
  for k, e in ipairs(scores:above(threshold * mx)) do out[k] = { e[1], e[2] } end
  return out, mx
end

--- Knowledge neurons of one fact from its prompts' coarse sets at share p.
function refine.fact(coarse_sets, p, min_prompts)
  min_prompts = min_prompts or refine.defaults.min_prompts
  local n = #coarse_sets
  local count, order = {}, {}
  for _, set in ipairs(coarse_sets) do
    for _, ne in ipairs(set) do
      local k = key(ne[1], ne[2])
      if not count[k] then count[k] = 0; order[#order + 1] = ne end
      count[k] = count[k] + 1
    end
  end
  local need = math.max(n * p, min_prompts)
  local out = {}
  for _, ne in ipairs(order) do
    if count[key(ne[1], ne[2])] >= need then out[#out + 1] = { ne[1], ne[2] } end
  end
  return out
end

--- Refines every fact of one relation. facts_coarse[b] = list of coarse sets (one per prompt).
--- Returns kn[b] (lists of neurons), and info {p = the p of the last evaluation, rounds, avg,
--- history = {{p, avg}}}.
function refine.relation(facts_coarse, o)
  local p = opt(o, "p")
  local step, lo, hi = opt(o, "p_step"), opt(o, "target_min"), opt(o, "target_max")
  local rounds, min_prompts = opt(o, "rounds"), opt(o, "min_prompts")
  local kn, avg, history = {}, 0, {}
  local used_p = p
  for round = 1, rounds do
    used_p = p
    local total = 0
    for b, sets in ipairs(facts_coarse) do
      kn[b] = refine.fact(sets, p, min_prompts)
      total = total + #kn[b]
    end
    avg = #facts_coarse > 0 and total / #facts_coarse or 0
    history[round] = { p = p, avg = avg }
    if avg < lo then p = p - step
    elseif avg > hi then p = p + step
    else break end
  end
  return kn, { p = used_p, rounds = #history, avg = avg, history = history }
end

--- Counts neurons over a list of neuron sets: returns a list of {layer, neuron, count} sorted by
--- count (descending), ties in first-appearance order (Counter.most_common).
function refine.most_common(sets, n)
  local count, order = {}, {}
  for _, set in ipairs(sets) do
    for _, ne in ipairs(set) do
      local k = key(ne[1], ne[2])
      if not count[k] then count[k] = 0; order[#order + 1] = { ne[1], ne[2], rank = #order + 1 } end
      count[k] = count[k] + 1
    end
  end
  for _, e in ipairs(order) do e[3] = count[key(e[1], e[2])] end
  table.sort(order, function(a, b) if a[3] ~= b[3] then return a[3] > b[3] end return a.rank < b.rank end)
  local out = {}
  for k = 1, math.min(n or #order, #order) do out[k] = { order[k][1], order[k][2], order[k][3] } end
  return out
end

--- |a ∩ b| for two neuron lists.
function refine.shared(a, b)
  local seen, n = {}, 0
  for _, ne in ipairs(a) do seen[key(ne[1], ne[2])] = true end
  for _, ne in ipairs(b) do if seen[key(ne[1], ne[2])] then n = n + 1 end end
  return n
end

return refine
