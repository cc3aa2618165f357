-- test_random.lua: knwb.random, the seeded streams and the random neuron sets of the controls:
-- reproducible by seed and keys, different across them, in range, distinct, matched per layer,
-- exclusions hard and avoidances where a layer has room, and errors that say what is short.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local random = require "knwb.random"

local function draws(rng, k, n)
  local t = {}
  for i = 1, k do t[i] = rng:int(n) end
  return t
end

print("# streams")
check.eq(draws(random.rng(42, "a", 1), 20, 1000), draws(random.rng(42, "a", 1), 20, 1000), "same seed and keys, same draws")
check.ok(not check.equal(draws(random.rng(42, "a", 1), 20, 1000), draws(random.rng(43, "a", 1), 20, 1000)), "another seed, other draws")
check.ok(not check.equal(draws(random.rng(42, "a", 1), 20, 1000), draws(random.rng(42, "a", 2), 20, 1000)), "another key, other draws")
check.ok(not check.equal(draws(random.rng(42, "a1"), 20, 1000), draws(random.rng(42, "a", 1), 20, 1000)), "keys are not concatenated")
-- The suppress experiment's controls (and so the model card's numbers) were drawn from these
-- streams before the generator moved here from knwb.metrics; the first draws must not change.
do
  local r = random.rng(42, "random", "P36", 1)
  check.eq({ r:next(), r:next(), r:int(0, 3071) }, { 2393403281728316969, 8299917075096127044, 1571 },
    "the stream of (42, random, P36, 1) is the one the published controls used")
end
local r, lo_ok, seen = random.rng(7), true, {}
for _ = 1, 2000 do
  local v = r:int(0, 4)
  if v < 0 or v > 4 then lo_ok = false end
  seen[v] = (seen[v] or 0) + 1
end
check.ok(lo_ok and seen[0] and seen[4], "int(0, 4) stays in range and reaches both ends")
check.ok(seen[0] > 300 and seen[0] < 500, "int is roughly uniform (%d of 2000 draws are 0)", seen[0])
local f = r:float()
check.ok(f >= 0 and f < 1, "float in [0, 1)")
check.err(function() random.rng(1.5) end, "seed must be an integer", "a float seed is refused")
check.err(function() random.rng(1, {}) end, "keys must be strings or integers", "a table key is refused")
check.err(function() r:int(5, 4) end, "empty or too wide range [5, 4]", "an empty range is refused")
check.err(function() r:choice({}) end, "the list is empty", "choice of nothing is refused")

print("# sample")
do
  local list = { 1, 2, 3, 4, 5, 6 }
  local s = random.rng(3):sample(list, 4)
  local got, distinct = {}, true
  for _, x in ipairs(s) do distinct = distinct and not got[x]; got[x] = true end
  check.ok(#s == 4 and distinct, "sample draws distinct elements")
  check.eq(list, { 1, 2, 3, 4, 5, 6 }, "sample leaves the list as it was")
  check.eq(#random.rng(3):sample({ 1, 2 }, 5), 2, "a sample of more than the list is the whole list")
  local counts = {}
  local g = random.rng(11)
  for _ = 1, 3000 do local x = g:sample(list, 1)[1]; counts[x] = (counts[x] or 0) + 1 end
  local even = true
  for k = 1, 6 do even = even and counts[k] and counts[k] > 400 and counts[k] < 600 end
  check.ok(even, "sample(list, 1) is roughly uniform over 6 elements (3000 draws)")
end

print("# neurons matched per layer")
local kn = { { 11, 5 }, { 11, 9 }, { 10, 3 }, { 2, 0 } }
local rm = random.matched(kn, 3072, random.rng(42, "random", "P36", 1))
check.eq(#rm, 4, "one per neuron")
local same_layers, distinct, in_range, set = true, true, true, {}
for k, n in ipairs(rm) do
  if n[1] ~= kn[k][1] then same_layers = false end
  if n[2] < 0 or n[2] >= 3072 then in_range = false end
  local key = n[1] .. ":" .. n[2]
  if set[key] then distinct = false end
  set[key] = true
end
check.ok(same_layers, "the k-th neuron is in the k-th input's layer")
check.ok(in_range, "indices in [0, width)")
check.ok(distinct, "distinct neurons")
check.eq(random.matched(kn, 3072, random.rng(42, "random", "P36", 1)), rm, "reproducible by seed")
check.ok(not check.equal(random.matched(kn, 3072, random.rng(43, "random", "P36", 1)), rm), "another seed, other neurons")
check.eq(random.matched({}, 3072, random.rng(1)), {}, "an empty set gives an empty set")

local function indices(list)
  local idx = {}
  for _, n in ipairs(list) do idx[#idx + 1] = n[2] end
  table.sort(idx)
  return idx
end
check.eq(indices(random.matched({ { 0, 0 }, { 0, 1 }, { 0, 2 }, { 0, 3 } }, 4, random.rng(5))), { 0, 1, 2, 3 },
  "a full layer is filled with distinct indices")
check.eq(indices(random.matched({ { 1, 0 }, { 1, 1 } }, 4, random.rng(5), { exclude = { { 1, 0 }, { 1, 1 } } })), { 2, 3 },
  "excluded neurons are never drawn")
check.err(function() random.matched({ { 1, 0 }, { 1, 1 }, { 1, 2 } }, 4, random.rng(5), { exclude = { { 1, 0 }, { 1, 1 } } }) end,
  "layer 1 needs 3 distinct random neurons but has only 2 free of 4", "too many for a layer")
check.err(function() random.matched({ { 1, "x" } }, 4, random.rng(5)) end,
  "random_matched: a neuron must be {layer, index} with integers", "a malformed neuron is named")

-- avoid: honoured in a layer with room (layer 0: 2 drawn, 2 avoided, 1 excluded, width 6 leaves 3),
-- given up in a layer without (layer 1: 3 drawn, 2 excluded, 2 avoided, width 6 leaves 2 < 3).
do
  local want = { { 0, 0 }, { 0, 1 }, { 1, 0 }, { 1, 1 }, { 1, 2 } }
  local o = { exclude = { { 0, 0 }, { 1, 0 }, { 1, 1 } }, avoid = { { 0, 2 }, { 0, 3 }, { 1, 3 }, { 1, 4 } } }
  local ok0, ok1, used_avoided = true, true, false
  for seed = 1, 200 do
    local got = random.matched(want, 6, random.rng(seed), o)
    for _, n in ipairs(got) do
      if n[1] == 0 and (n[2] == 0 or n[2] == 2 or n[2] == 3) then ok0 = false end
      if n[1] == 1 and (n[2] == 0 or n[2] == 1) then ok1 = false end
      if n[1] == 1 and (n[2] == 3 or n[2] == 4) then used_avoided = true end
    end
  end
  check.ok(ok0, "a layer with room avoids both the excluded and the avoided neurons (200 seeds)")
  check.ok(ok1, "a layer without room still never draws an excluded neuron")
  check.ok(used_avoided, "a layer without room draws avoided neurons when it must")
end

print("# neurons over all layers")
local rn = random.neurons(30, 2, 16, random.rng(9))
local ok, keys = true, {}
for _, n in ipairs(rn) do
  if n[1] < 0 or n[1] > 1 or n[2] < 0 or n[2] > 15 or keys[n[1] * 100 + n[2]] then ok = false end
  keys[n[1] * 100 + n[2]] = true
end
check.ok(#rn == 30 and ok, "30 distinct neurons in range")
check.eq(random.neurons(30, 2, 16, random.rng(9)), rn, "reproducible")
check.err(function() random.neurons(33, 2, 16, random.rng(9)) end, "33 neurons asked, 32 free of 2 x 16", "too many")
do
  local ex = {}
  for i = 0, 15 do ex[#ex + 1] = { 0, i } end
  local only1 = random.neurons(16, 2, 16, random.rng(2), ex)
  local all1 = true
  for _, n in ipairs(only1) do all1 = all1 and n[1] == 1 end
  check.ok(all1 and #only1 == 16, "with layer 0 excluded, all 16 come from layer 1")
  check.err(function() random.neurons(17, 2, 16, random.rng(2), ex) end, "17 neurons asked, 16 free of 2 x 16",
    "exclusions count against what is free")
end

check.done()
