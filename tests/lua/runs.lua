-- runs.lua: what the end-to-end tests of the experiments share: a scratch folder, reading a file
-- back, and running ./knwb with its stdout and stderr captured.
--
--   local runs = require "runs"
--   local tmp = runs.tmpdir()
--   local ok, out, err = runs.knwb(tmp, "experiments/suppress.lua", "--set factor=3 --out " .. dir)
local R = {}

--- R.tmpdir() -> a new empty folder (mktemp -d).
function R.tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  return dir
end

--- R.slurp(path) -> the file's bytes, or nil when it cannot be opened.
function R.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- R.knwb(tmp, script, args) -> ok, stdout, stderr: runs `./knwb script args` (args: shell text,
--- quoted by the caller) with progress off, capturing both streams in files under tmp.
function R.knwb(tmp, script, args)
  local out, err = tmp .. "/last.stdout", tmp .. "/last.stderr"
  local q = function(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local ok = os.execute(("KNWB_PROGRESS=off ./knwb %s %s >%s 2>%s"):format(q(script), args or "", q(out), q(err)))
  return ok == true, R.slurp(out) or "", R.slurp(err) or ""
end

return R
