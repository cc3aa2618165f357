-- check.lua: the harness of the Lua tests. Each check prints "ok   what" or "FAIL what: why";
-- check.done() prints the tally line "N passed, N failed" that tests/run.sh adds up, and exits
-- non-zero when anything failed. Tests run from the repository root:
--
--   package.path = "tests/lua/?.lua;" .. package.path
--   local check = require "check"
--   check.eq(f(2), 4, "f doubles")
--   check.err(function() f("x") end, "expected a number", "f refuses strings")
--   check.done()
local check = {}

local passed, failed = 0, 0

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

local function pass(what)
  passed = passed + 1
  print("ok   " .. what)
  return true
end

local function fail(what, why)
  failed = failed + 1
  print("FAIL " .. what .. (why and ": " .. why or ""))
  return false
end

-- check.ok(cond, fmt, ...): cond is truthy; fmt and its arguments say what was checked.
function check.ok(cond, fmt, ...)
  local what = select("#", ...) > 0 and fmt:format(...) or fmt
  if cond then return pass(what) end
  return fail(what)
end

-- check.eq(a, b, what): a == b, with math types compared too (1 is not 1.0 here), and tables
-- compared deeply.
local function equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math.type(a) == math.type(b) and (a == b or (a ~= a and b ~= b)) end
  if type(a) ~= "table" or a == b then return a == b end
  for k, v in pairs(a) do
    if not equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
check.equal = equal

function check.eq(a, b, what)
  if equal(a, b) then return pass(what) end
  return fail(what, ("got %s (%s), expected %s (%s)"):format(show(a), math.type(a) or type(a), show(b), math.type(b) or type(b)))
end

-- check.near(a, b, tol, what): |a - b| <= tol.
function check.near(a, b, tol, what)
  if type(a) == "number" and type(b) == "number" and math.abs(a - b) <= tol then
    return pass(("%s (|%.6g - %.6g| <= %g)"):format(what, a, b, tol))
  end
  return fail(what, ("got %s, expected %s within %g"):format(show(a), show(b), tol))
end

-- check.err(fn, needle, what): fn raises an error whose message contains needle (plain text).
-- Returns the message, so a test can check more of it.
function check.err(fn, needle, what)
  local ok, msg = pcall(fn)
  if ok then
    fail(what, "no error raised (expected one containing " .. show(needle) .. ")")
    return nil
  end
  msg = tostring(msg)
  if msg:find(needle, 1, true) then
    pass(what)
  else
    fail(what, ("error %s does not contain %s"):format(show(msg), show(needle)))
  end
  return msg
end

-- check.done(): the tally line, and the exit status.
function check.done()
  print(("%d passed, %d failed"):format(passed, failed))
  os.exit(failed == 0 and 0 or 1)
end

return check
