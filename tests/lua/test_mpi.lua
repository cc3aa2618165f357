-- test_mpi.lua: knwb.mpi: one rank without a launcher (MPI never initialised), messages between
-- two ranks under mpirun, and a failing rank ending the whole job instead of leaving the other
-- blocked in a receive.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local runs = require "runs"
local mpi = require "knwb.mpi"

local host = arg[-1] or "./knwb"  -- the knwb running this test (plain or ASan build)

print("# without a launcher: one rank")
do
  local r, s = mpi.init()
  check.eq(r, 0, "rank 0")
  check.eq(s, 1, "one rank")
  check.eq(mpi.size(), 1, "size stays 1")
  check.ok(type(mpi.host()) == "string" and #mpi.host() > 0, "host name")
  check.err(function() mpi.send(0, 1, "x") end, "mpi.send:", "send without MPI names the call")
  check.err(function() mpi.recv() end, "mpi.recv:", "recv without MPI names the call")
  mpi.barrier() -- a no-op for one rank
  check.ok(true, "barrier on one rank returns")
end

local mpirun = os.execute("command -v mpirun >/dev/null 2>&1")
check.ok(mpi.available(), "this knwb is built with MPI (scripts/deps.sh installs libopenmpi-dev)")
check.ok(mpirun == true, "mpirun is installed (openmpi-bin)")

-- root (CI) needs OpenMPI's consent; two ranks may exceed the cores a container reports.
local function launch(np, code)
  local tmp = runs.tmpdir()
  local out, err = tmp .. "/out", tmp .. "/err"
  local cmd = ("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none "
    .. "ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --oversubscribe -np %d %s -e %q >%s 2>%s")
    :format(np, host, code, out, err)
  local ok, _, rc = os.execute(cmd)
  return ok == true, rc, runs.slurp(out) or "", runs.slurp(err) or ""
end

print("# two ranks under mpirun")
do
  local ok, rc, out, err = launch(2, [[
    local mpi = require "knwb.mpi"
    local r, s = mpi.init()
    if r == 1 then
      mpi.send(0, 7, ("x"):rep(100000) .. "|from 1")
      local back = mpi.recv(0, 8)
      mpi.send(0, 9, "echo:" .. back)
    else
      local msg, src, tag = mpi.recv()
      print(("got %d bytes from %d tag %d, tail %s"):format(#msg, src, tag, msg:sub(-7)))
      mpi.send(1, 8, "a\0b")
      local e = mpi.recv(1, 9)
      print(("echo %q size %d"):format(e, s))
    end
    mpi.barrier()
  ]])
  check.ok(ok, "the job succeeds (exit " .. tostring(rc) .. "): " .. err:sub(1, 300))
  check.ok(out:find("got 100007 bytes from 1 tag 7, tail |from 1", 1, true) ~= nil, "a 100 kB message arrives whole with its source and tag")
  check.ok(out:find('echo "echo:a\\0b" size 2', 1, true) ~= nil, "NUL bytes travel; both ranks see size 2")
end

print("# a failing rank ends the job")
do
  local t0 = os.time()
  local ok, rc, _, err = launch(2, [[
    local mpi = require "knwb.mpi"
    local r = mpi.init()
    if r == 1 then error("rank 1 gives up") end
    mpi.recv(1, 3) -- would wait forever if rank 1's failure did not end the job
  ]])
  check.ok(not ok and rc ~= 124, "the job fails, and not by the 120 s timeout (exit " .. tostring(rc) .. ")")
  check.ok(os.time() - t0 < 60, "it ends promptly")
  check.ok(err:find("rank 1 gives up", 1, true) ~= nil, "the failing rank's message is shown")
end

print("# argument checks")
do
  local ok, _, _, err = launch(2, [[
    local mpi = require "knwb.mpi"
    mpi.init()
    local ok, e = pcall(mpi.send, 5, 1, "x")
    io.stderr:write("E1:", e, "\n")
    ok, e = pcall(mpi.send, 0, 40000, "x")
    io.stderr:write("E2:", e, "\n")
    mpi.barrier()
  ]])
  check.ok(ok, "the job runs")
  check.ok(err:find("E1:mpi.send: rank 5 out of range 0..1", 1, true) ~= nil, "a rank out of range is named with the range")
  check.ok(err:find("E2:mpi.send: tag 40000 out of range 0..32767", 1, true) ~= nil, "a tag out of range is named with the range")
end

check.done()
