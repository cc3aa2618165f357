-- test_shard.lua: attribution spread over MPI ranks and over Slurm-array style --shard tasks
-- gives the run directory of one process; a rank lost mid-run loses nothing already stored and a
-- rerun computes only what is missing; several writers share one store; bad requests are refused.
-- The experiment runs use ./knwb (the sharding is Lua; test_mpi covers knwb.mpi under ASan).
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local runs = require "runs"
local json = require "knwb.json"

local tmp = runs.tmpdir()
local FACTS = "--set 'facts.relations=[P36,P17]' --set facts.max_facts=3"
local ENV = "KNWB_PROGRESS=off OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
  .. "OMPI_MCA_btl_vader_single_copy_mechanism=none"

local function sh(cmd)
  local out, err = tmp .. "/sh.out", tmp .. "/sh.err"
  local ok, _, rc = os.execute(("export %s; %s >%s 2>%s"):format(ENV, cmd, out, err))
  return ok == true, rc, runs.slurp(out) or "", runs.slurp(err) or ""
end

local function attribute(launch, cache, out, extra)
  return sh(("timeout 300 %s ./knwb experiments/attribute.lua %s --set attribution.cache=%s %s %s"):format(launch, FACTS,
    cache, out and ("--out " .. out) or "", extra or ""))
end

local MPI2 = "mpirun --oversubscribe -np 2"

-- summary.json without the wall-clock fields (and, where asked, the computed/reused split)
local function summary(dir, drop_counts)
  local s = json.decode(runs.slurp(dir .. "/summary.json"))
  s.seconds, s.prompts_per_second = nil, nil
  if drop_counts then s.computed, s.reused = nil, nil end
  return s
end

local function index_lines(cache)
  local p = io.popen("cat " .. cache .. "/*/index*.jsonl 2>/dev/null | grep -c . ")
  local n = tonumber(p:read("a")) or 0
  p:close()
  return n
end

print("# one process, the reference")
local ok, _, _, err = attribute("", tmp .. "/c1", tmp .. "/one")
check.ok(ok, "one-process run: " .. err:sub(-300))
local ref_neurons = runs.slurp(tmp .. "/one/neurons.jsonl")
local ref = summary(tmp .. "/one")
check.ok(ref_neurons and #ref_neurons > 0, "neurons.jsonl written")
local total = ref.prompts
check.ok(total and total >= 40, "the subset has prompts to share (" .. tostring(total) .. ")")

print("# mpirun -np 2 equals one process")
do
  local ok2, _, _, err2 = attribute(MPI2, tmp .. "/c2", tmp .. "/mpi")
  check.ok(ok2, "two-rank run: " .. err2:sub(-300))
  check.ok(runs.slurp(tmp .. "/mpi/neurons.jsonl") == ref_neurons, "neurons.jsonl byte for byte")
  check.eq(summary(tmp .. "/mpi"), ref, "summary.json numbers (computed/reused included; wall time aside)")
  local p = json.decode(runs.slurp(tmp .. "/mpi/provenance.json") or "{}")
  check.eq(p.ranks, 2, "provenance records the ranks")
  local p1 = json.decode(runs.slurp(tmp .. "/one/provenance.json") or "{}")
  check.eq(p1.ranks, 1, "and one for one process")
end

print("# --shard 1/2 + --shard 2/2 + --merge equal one process")
do
  local c = tmp .. "/c3"
  local ok1, _, _, e1 = attribute("", c, nil, "--shard 1/2")
  check.ok(ok1, "slice 1/2 runs")
  check.ok(e1:find("slice 1/2", 1, true) ~= nil, "it says which slice it did")
  local okm, rcm, _, em = attribute("", c, tmp .. "/m0", "--merge")
  check.ok(not okm and rcm == 2, "--merge with a slice missing is refused")
  check.ok(em:find("--merge: ", 1, true) and em:find("prompts have no scores", 1, true), "naming what is missing: " .. em:sub(1, 200))
  local ok2 = attribute("", c, nil, "--shard 2/2")
  check.ok(ok2, "slice 2/2 runs")
  check.eq(index_lines(c), 2 * total, "the two writers stored every prompt once (IG + activation records)")
  local ok3, _, _, e3 = attribute("", c, tmp .. "/merged", "--merge")
  check.ok(ok3, "merge: " .. e3:sub(-200))
  check.ok(runs.slurp(tmp .. "/merged/neurons.jsonl") == ref_neurons, "merged neurons.jsonl byte for byte")
  local m = summary(tmp .. "/merged")
  check.eq(m.computed, 0, "the merge computes nothing")
  check.eq(m.reused, total, "and reads every prompt from the store")
  check.eq(summary(tmp .. "/merged", true), summary(tmp .. "/one", true), "summary.json numbers (apart from computed/reused)")
end

print("# concurrent writers share one store")
do
  local c = tmp .. "/c4"
  local ok1 = sh(("(for k in 1 2 3; do timeout 300 ./knwb experiments/attribute.lua %s --set attribution.cache=%s --shard $k/3 & done; wait)")
    :format(FACTS, c))
  check.ok(ok1, "three writers at once")
  check.eq(index_lines(c), 2 * total, "every record of the three writers is indexed")
  local ok2, _, _, e2 = attribute("", c, tmp .. "/conc", "--merge")
  check.ok(ok2, "merge reads them: " .. e2:sub(-200))
  check.ok(runs.slurp(tmp .. "/conc/neurons.jsonl") == ref_neurons, "and gives the same neurons")
  check.eq(summary(tmp .. "/conc").recomputed, 0, "no record failed its checksum")
  check.eq(summary(tmp .. "/conc").computed, 0, "nothing was recomputed")
  -- a writer killed mid-record: the last record of one writer's file is cut short
  local bin = io.popen("ls " .. c .. "/*/scores.shard-2-of-3.bin"):read("l")
  local size = #runs.slurp(bin)
  os.execute(("truncate -s %d %s"):format(size - 100, bin))
  local ok3, _, _, e3 = attribute("", c, tmp .. "/trunc")
  check.ok(ok3, "a rerun after the torn record: " .. e3:sub(-200))
  local t = summary(tmp .. "/trunc")
  check.eq(t.computed, 1, "exactly the torn prompt is recomputed")
  check.ok(runs.slurp(tmp .. "/trunc/neurons.jsonl") == ref_neurons, "and the neurons are the same")
end

print("# a rank lost mid-run")
do
  local c = tmp .. "/c5"
  local ok1, rc1 = sh(("KNWB_TEST_DIE_AFTER_UNITS=2 timeout 300 %s ./knwb experiments/attribute.lua %s --set attribution.cache=%s --out %s")
    :format(MPI2, FACTS, c, tmp .. "/killed"))
  check.ok(not ok1 and rc1 ~= 124, "the job fails when rank 1 is killed (exit " .. tostring(rc1) .. "), without hanging")
  local stored = index_lines(c) // 2
  check.ok(stored > 0 and stored < total, ("the store kept what was done before the kill (%d of %d prompts)"):format(stored, total))
  local ok2, _, _, e2 = attribute(MPI2, c, tmp .. "/rerun")
  check.ok(ok2, "rerunning the same command: " .. e2:sub(-200))
  local s = summary(tmp .. "/rerun")
  check.eq(s.reused, stored, "every stored prompt is reused")
  check.eq(s.computed, total - stored, "only the missing ones are computed")
  check.ok(runs.slurp(tmp .. "/rerun/neurons.jsonl") == ref_neurons, "the result equals the uninterrupted run")
end

print("# bad requests")
do
  local ok1, rc1, _, e1 = attribute("", tmp .. "/c6", nil, "--shard 3/2")
  check.ok(not ok1 and rc1 == 2, "--shard 3/2 refused")
  check.ok(e1:find("--shard 3/2: K must be in 1..2", 1, true) ~= nil, "naming the range: " .. e1:sub(1, 120))
  local _, _, _, e2 = attribute("", tmp .. "/c6", nil, "--shard 0/2")
  check.ok(e2:find("--shard 0/2: K must be in 1..2", 1, true) ~= nil, "--shard 0/2 refused")
  local _, _, _, e3 = attribute("", tmp .. "/c6", nil, "--shard two")
  check.ok(e3:find("expected K/N", 1, true) ~= nil, "--shard two refused")
  local _, _, _, e5 = attribute("", tmp .. "/c6", nil, "--shard 1/2 --merge")
  check.ok(e5:find("choose one", 1, true) ~= nil, "--shard with --merge refused")
  local ok6, _, _, e6 = sh(("timeout 300 mpirun --oversubscribe -np 3 ./knwb experiments/attribute.lua --set 'facts.relations=[P36]' --set facts.max_facts=2 --set attribution.cache=%s --out %s")
    :format(tmp .. "/c7", tmp .. "/toomany"))
  check.ok(not ok6, "more ranks than facts fails")
  check.ok(e6:find("3 MPI ranks for 2 facts", 1, true) ~= nil, "with a message saying so: " .. e6:sub(1, 120))
  local _, _, _, e7 = sh(("SLURM_ARRAY_TASK_ID=4 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=1 ./knwb experiments/attribute.lua %s --set attribution.cache=%s")
    :format(FACTS, tmp .. "/c6"))
  check.ok(e7:find("SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT 4/3: K must be in 1..3", 1, true) ~= nil,
    "a Slurm task id beyond the array is refused: " .. e7:sub(1, 160))
  -- another model's or other settings' store: nothing to reuse, and --merge says so
  local _, _, _, e8 = attribute("", tmp .. "/c3", tmp .. "/other", "--merge --set attribution.steps=7")
  check.ok(e8:find("prompts have no scores", 1, true) ~= nil, "a store of other settings is not used by --merge")
end

os.execute("rm -rf -- '" .. tmp .. "'")
check.done()
