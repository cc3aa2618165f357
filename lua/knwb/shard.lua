-- knwb.shard: the attribution of a fact set spread over MPI ranks (mpirun, srun).
-- Every rank loads the same model and facts and builds the same list of work units (one fact's
-- prompts each, in the set's order). Rank 0 hands units out on request, so a rank that finishes
-- early takes more (facts differ in prompt count and length), and attributes units itself between
-- serving requests; each worker keeps two requests outstanding so it never waits for rank 0 to
-- look up. Workers send their raw scores back whole; rank 0 puts them into its attribution store
-- and the experiment then runs exactly as in one process, reading every score from the store: the
-- run directory is the same whatever the number of ranks (provenance records it). Workers never
-- write anything and leave when the work is done.
--
--   local store = shard.distribute(model, set, cfg, store, items_of)  -- rank 0: the store to use
local json = require "knwb.json"
local mpi = require "knwb.mpi"
local attribution = require "knwb.attribution"
local progress = require "knwb.progress"

local M = {}

local REQ, ASSIGN, RESULT, DONE = 1, 2, 3, 4

-- A refusal of the command line's request: the message (from rank 0 only) and exit status 2,
-- no traceback, as for config errors.
local function refuse(msg)
  local script = arg and arg[0] and arg[0]:match("([^/]+)%.lua$") or "knwb"
  if (M.rank or 0) == 0 then io.stderr:write(script, ": ", msg, "\n") end
  os.exit(2)
end

--- shard.start() -> rank, size: starts MPI when launched by mpirun/srun and gives each rank its
--- share of the cores for OpenBLAS (OPENBLAS_NUM_THREADS, when set, is left as it is).
function M.start()
  if M.rank then return M.rank, M.size end
  M.rank, M.size = mpi.init()
  if M.rank ~= 0 then progress.silent = true end
  if M.size > 1 and not os.getenv("OPENBLAS_NUM_THREADS") then
    mpi.blas_threads(math.max(1, mpi.cores() // mpi.local_size()))
  end
  return M.rank, M.size
end

--- shard.configure{shard = "K/N" | nil, merge = bool, cache = store folder}: the command line's
--- --shard and --merge (cli.lua calls it). Without --shard, SLURM_ARRAY_TASK_ID and
--- SLURM_ARRAY_TASK_COUNT (a Slurm job array) give the slice.
function M.configure(o)
  M.slice, M.merge = nil, o.merge and true or false
  local spec, from = o.shard, "--shard"
  local id, count = os.getenv("SLURM_ARRAY_TASK_ID"), os.getenv("SLURM_ARRAY_TASK_COUNT")
  if not spec and id and count and not M.merge then
    local min, step = tonumber(os.getenv("SLURM_ARRAY_TASK_MIN") or "0"), tonumber(os.getenv("SLURM_ARRAY_TASK_STEP") or "1")
    local i = tonumber(id)
    if not (i and min and step and step > 0) then
      error(("SLURM_ARRAY_TASK_ID=%s: not a task number"):format(id), 0)
    end
    spec, from = ("%d/%s"):format((i - min) // step + 1, count), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
  end
  if not spec then return end
  local k, n = spec:match("^(%d+)/(%d+)$")
  k, n = math.tointeger(tonumber(k)), math.tointeger(tonumber(n))
  if not k or not n then error(("%s %s: expected K/N, two whole numbers, e.g. --shard 1/4"):format(from, spec), 0) end
  if n < 1 or n > 100000 then error(("%s %s: N must be in 1..100000"):format(from, spec), 0) end
  if k < 1 or k > n then error(("%s %s: K must be in 1..%d (the slices are numbered from 1)"):format(from, spec, n), 0) end
  if M.merge then error("--shard and --merge: choose one (the shards attribute, the merge reads them)", 0) end
  if not o.cache or o.cache == "" then
    error(("%s %s needs attribution.cache, a folder all the tasks share"):format(from, spec), 0)
  end
  M.slice = { k = k, n = n, from = from }
end

--- shard.worker() -> whether this process writes no run directory: an MPI rank other than 0, or
--- a --shard K/N task (its scores go to the shared store only).
function M.worker()
  local rank = M.start()
  return rank ~= 0 or M.slice ~= nil
end

--- shard.scratch_dir() -> a folder for a worker's would-be run files, removed when it leaves.
function M.scratch_dir()
  if not M.scratch then
    local p = assert(io.popen("mktemp -d -t knwb-worker.XXXXXX"))
    M.scratch = p:read("l")
    p:close()
  end
  return M.scratch
end

local function remove_scratch()
  if M.scratch and M.scratch:match("knwb%-worker%.%w+$") then os.execute("rm -rf -- '" .. M.scratch .. "'") end
end

--- shard.active() -> whether this run has more than one rank.
function M.active()
  local _, size = M.start()
  return size > 1
end

-- units: { {relation = r, fact = f, items = {...}} } in the set's order
local function units_of(model, set, cfg, items_of)
  local units = {}
  for _, r in ipairs(set.relations) do
    for _, f in ipairs(r.facts) do
      units[#units + 1] = { relation = r, fact = f, items = items_of(model, r, f, cfg.facts.split) }
    end
  end
  return units
end

-- A unit's result on the wire: a JSON line (per item: keys and the info numbers), then the raw
-- float32 bytes of each item's IG and activation scores, in order.
local function encode_result(u, results)
  local head, blobs = { unit = u, items = {} }, {}
  for i, res in ipairs(results) do
    head.items[i] = { j = res.j, p_full = res.info.p_full, delta = res.info.delta, p_zero = res.info.p_zero }
    blobs[#blobs + 1] = res.ig:tobytes()
    blobs[#blobs + 1] = res.act:tobytes()
  end
  return json.encode_line(head) .. "\n" .. table.concat(blobs)
end

local function decode_result(msg, L, F)
  local nl = msg:find("\n", 1, true)
  local head = json.decode(msg:sub(1, nl - 1), "mpi result")
  local rec, pos, out = 4 * L * F, nl + 1, {}
  local core = require "knwb.core"
  for i, info in ipairs(head.items) do
    local ig = core.scores(L, F, msg:sub(pos, pos + rec - 1))
    local act = core.scores(L, F, msg:sub(pos + rec, pos + 2 * rec - 1))
    pos = pos + 2 * rec
    out[i] = { j = info.j, ig = ig, act = act, info = { p_full = info.p_full, delta = info.delta, p_zero = info.p_zero } }
  end
  assert(pos == #msg + 1, "mpi result: length does not match its items")
  return head.unit, out
end

-- A worker: attribute the units rank 0 assigns, send the scores back, leave when told to.
local function work(model, units, a)
  local scratch = attribution.open(nil, model)  -- computes exactly as the store does, keeps nothing
  local sends, outstanding, stopped, computed = {}, 0, false, 0
  for _ = 1, 2 do mpi.send(0, REQ, ""); outstanding = outstanding + 1 end
  while outstanding > 0 do
    local msg = mpi.recv(0, ASSIGN)
    outstanding = outstanding - 1
    if msg == "stop" then
      stopped = true
    else
      -- "u j1,j2,...": the unit and the prompts of it that the store lacks
      local us, js = msg:match("^(%d+) ([%d,]+)$")
      local u = math.tointeger(tonumber(us))
      local results = {}
      for jt in js:gmatch("%d+") do
        local j = math.tointeger(tonumber(jt))
        local ig, act, info = scratch:attribute(model, units[u].items[j], a)
        results[#results + 1] = { j = j, ig = ig, act = act, info = info }
        computed = computed + 1
      end
      sends[#sends + 1] = mpi.isend(0, RESULT, encode_result(u, results))
      M.units_done = (M.units_done or 0) + 1
      -- tests: a rank lost mid-run (SIGKILL, no goodbye)
      local die = math.tointeger(tonumber(os.getenv("KNWB_TEST_DIE_AFTER_UNITS") or ""))
      if die and M.units_done >= die then
        for _, r in ipairs(sends) do r:wait() end
        mpi.die()
      end
      if not stopped then mpi.send(0, REQ, ""); outstanding = outstanding + 1 end
    end
    for i = #sends, 1, -1 do if sends[i]:test() then table.remove(sends, i) end end
  end
  for _, s in ipairs(sends) do s:wait() end
  mpi.send(0, DONE, tostring(computed))
  remove_scratch()
  mpi.finalize()
  os.exit(0, true)
end

--- shard.distribute(model, set, cfg, store, items_of) -> store. On rank 0: attributes every
--- prompt the store lacks across all ranks and returns a store that serves them (scores computed
--- elsewhere count as computed, not reused). On the other ranks it works, then ends the process.
function M.distribute(model, set, cfg, store, items_of)
  local rank, size = M.start()
  local a = cfg.attribution
  local units = units_of(model, set, cfg, items_of)
  if size > #units then
    refuse(("%d MPI ranks for %d facts: start at most %d ranks (mpirun -np %d)"):format(size, #units,
      math.max(#units, 1), math.max(#units, 1)))
  end
  if rank ~= 0 then work(model, units, a) end

  local L, F = store.L, store.F
  -- ig key -> where this run's score is: true (in the store's files) or {ig, act, info} (a store
  -- without a folder keeps nothing, so the scores stay in memory until the experiment reads them)
  local remote = {}
  local function keep(kig, ig, act, info)
    remote[kig] = store.dir and true or { ig = ig, act = act, info = info }
  end
  -- the units with prompts the store lacks, and which (a unit half done by a lost rank is finished,
  -- not redone)
  local todo, need, total = {}, {}, 0
  for u, unit in ipairs(units) do
    for j, it in ipairs(unit.items) do
      if not (store:get(store:key(it, "ig", a)) and store:get(store:key(it, "activation", {}))) then
        if not need[u] then need[u] = {}; todo[#todo + 1] = u end
        table.insert(need[u], j)
        total = total + 1
      end
    end
  end
  local bar = progress.new(("attribute (%d ranks)"):format(size), total, { unit = "prompts" })
  local next_u, waiting, done, remote_computed = 1, 0, 0, 0

  local function handle(msg, src, tag)
    if tag == REQ then
      if next_u <= #todo then
        local u = todo[next_u]
        mpi.send(src, ASSIGN, u .. " " .. table.concat(need[u], ","))
        next_u = next_u + 1
        waiting = waiting + 1
      else
        mpi.send(src, ASSIGN, "stop")
      end
    elseif tag == RESULT then
      local u, results = decode_result(msg, L, F)
      for _, res in ipairs(results) do
        local it = units[u].items[res.j]
        local kig = store:key(it, "ig", a)
        store:put(store:key(it, "activation", {}), res.act)
        store:put(kig, res.ig, res.info)
        keep(kig, res.ig, res.act, res.info)
        bar:step()
      end
      waiting = waiting - 1
    elseif tag == DONE then
      done = done + 1
      remote_computed = remote_computed + (math.tointeger(tonumber(msg)) or 0)
    end
  end
  local function serve()
    while true do
      local msg, src, tag = mpi.poll()
      if not msg then return end
      handle(msg, src, tag)
    end
  end

  while next_u <= #todo do
    local u = todo[next_u]
    next_u = next_u + 1
    for _, j in ipairs(need[u]) do
      local it = units[u].items[j]
      local ig, act, info = store:attribute(model, it, a)
      store.misses = store.misses - 1  -- counted once below, with the remote ones, when read back
      keep(store:key(it, "ig", a), ig, act, info)
      bar:step()
      serve()
    end
  end
  while done < size - 1 or waiting > 0 do handle(mpi.recv()) end
  bar:done()

  -- The experiment reads every score back through this store; those computed in this run (here or
  -- on another rank) count as computed, as in a one-process run.
  local served = setmetatable({}, { __index = store })
  function served.attribute(self, m, it, o)
    local key = store:key(it, "ig", o)
    local kept = remote[key]
    if type(kept) == "table" then
      remote[key] = nil
      store.misses = store.misses + 1
      return kept.ig, kept.act, kept.info
    elseif kept then
      remote[key] = nil
      local ig, e = store:get(key)
      local act = store:get(store:key(it, "activation", {}))
      if ig and act then
        store.misses = store.misses + 1
        return ig, act, { p_full = e.p_full, delta = e.delta, p_zero = e.p_zero }
      end
    end
    return store.attribute(store, m, it, o)
  end
  M.last = { ranks = size, remote_prompts = remote_computed }
  return served
end

--- shard.run_slice(model, set, cfg, items_of): a --shard K/N task: attributes facts K, K+N,
--- K+2N... (in the set's order) into the shared store, as writer "shard-K-of-N", and ends the
--- process. Facts already in the store are skipped, so a lost task is simply run again.
function M.run_slice(model, set, cfg, items_of)
  local sl, a = M.slice, cfg.attribution
  if M.active() then refuse("--shard under mpirun: use one or the other (mpirun shares the work by itself)") end
  local store = attribution.open(a.cache, model, { writer = ("shard-%d-of-%d"):format(sl.k, sl.n) })
  if not store.dir then refuse("--shard: the model has edits in force, so its scores cannot be stored") end
  local units = units_of(model, set, cfg, items_of)
  local mine, total = {}, 0
  for u = sl.k, #units, sl.n do mine[#mine + 1] = u; total = total + #units[u].items end
  local bar = progress.new(("attribute (slice %d/%d)"):format(sl.k, sl.n), total, { unit = "prompts" })
  for _, u in ipairs(mine) do
    for _, it in ipairs(units[u].items) do
      store:attribute(model, it, a)
      bar:step()
    end
  end
  bar:done()
  io.stderr:write(("attribute: slice %d/%d: %d facts, %d prompts (%d computed, %d already stored) in %s\n"):format(sl.k, sl.n,
    #mine, total, store.misses, store.hits, store.dir))
  io.stderr:write("attribute: when every slice is done, run the same command without --shard (or with --merge) for the run directory\n")
  remove_scratch()
  os.exit(0, true)
end

--- shard.check_merge(store, set, cfg, items_of): with --merge, every prompt's scores must be in
--- the store already; otherwise an error naming how many are missing and the first facts.
function M.check_merge(model, store, set, cfg, items_of)
  if not M.merge then return end
  local a = cfg.attribution
  local missing, total, first = 0, 0, {}
  for _, unit in ipairs(units_of(model, set, cfg, items_of)) do
    local named = false
    for _, it in ipairs(unit.items) do
      total = total + 1
      if not (store.entries[store:key(it, "ig", a)] and store.entries[store:key(it, "activation", {})]) then
        missing = missing + 1
        if not named and #first < 3 then first[#first + 1] = ("%s %s"):format(unit.relation.id, unit.fact.subject) end
        named = true
      end
    end
  end
  if missing > 0 then
    refuse(("--merge: %d of %d prompts have no scores in %s (facts such as %s): run the missing --shard tasks, or run without --merge to compute them")
      :format(missing, total, store.dir or "the store (attribution.cache is not set)", table.concat(first, "; ")))
  end
end

return M
