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

--- shard.worker() -> whether this process is an MPI rank other than 0.
function M.worker()
  local rank = M.start()
  return rank ~= 0
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
local function encode_result(u, store, a, results)
  local head, blobs = { unit = u, items = {} }, {}
  for j, res in ipairs(results) do
    head.items[j] = { p_full = res.info.p_full, delta = res.info.delta, p_zero = res.info.p_zero }
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
  for j, info in ipairs(head.items) do
    local ig = core.scores(L, F, msg:sub(pos, pos + rec - 1))
    local act = core.scores(L, F, msg:sub(pos + rec, pos + 2 * rec - 1))
    pos = pos + 2 * rec
    out[j] = { ig = ig, act = act, info = info }
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
      local u = math.tointeger(tonumber(msg))
      local results = {}
      for j, it in ipairs(units[u].items) do
        local ig, act, info = scratch:attribute(model, it, a)
        results[j] = { ig = ig, act = act, info = info }
        computed = computed + 1
      end
      sends[#sends + 1] = mpi.isend(0, RESULT, encode_result(u, scratch, a, results))
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
    error(("attribute: %d MPI ranks for %d facts: start at most %d ranks (mpirun -np %d)"):format(size, #units,
      math.max(#units, 1), math.max(#units, 1)), 0)
  end
  if rank ~= 0 then work(model, units, a) end

  local L, F = store.L, store.F
  -- ig key -> where this run's score is: true (in the store's files) or {ig, act, info} (a store
  -- without a folder keeps nothing, so the scores stay in memory until the experiment reads them)
  local remote = {}
  local function keep(kig, ig, act, info)
    remote[kig] = store.dir and true or { ig = ig, act = act, info = info }
  end
  local todo = {}
  for u, unit in ipairs(units) do
    for _, it in ipairs(unit.items) do
      if not (store:get(store:key(it, "ig", a)) and store:get(store:key(it, "activation", {}))) then
        todo[#todo + 1] = u
        break
      end
    end
  end
  local total = 0
  for _, u in ipairs(todo) do total = total + #units[u].items end
  local bar = progress.new(("attribute (%d ranks)"):format(size), total, { unit = "prompts" })
  local next_u, waiting, done, remote_computed = 1, 0, 0, 0

  local function handle(msg, src, tag)
    if tag == REQ then
      if next_u <= #todo then
        mpi.send(src, ASSIGN, tostring(todo[next_u]))
        next_u = next_u + 1
        waiting = waiting + 1
      else
        mpi.send(src, ASSIGN, "stop")
      end
    elseif tag == RESULT then
      local u, results = decode_result(msg, L, F)
      for j, it in ipairs(units[u].items) do
        local res = results[j]
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
    for _, it in ipairs(units[u].items) do
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

return M
