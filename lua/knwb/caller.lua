-- knwb.caller: report an error at the line of the user's code that called into knwb.
--
--   local at_caller = require "knwb.caller"
--   local ok, res = pcall(helper, ...)      -- inside a public function
--   if not ok then at_caller(res) end       -- reported at the user's line
--
--   xpcall(fn, at_caller.handler, ...)      -- an error deep inside fn: at fn's own line
--
-- A bad argument to a public function often fails deeper down (in the core, in a helper of
-- another knwb file, or in a public function that calls another one), and the message then
-- names that inner line, which tells the user nothing. at_caller drops a leading position inside
-- knwb's own lua/ folder and raises the message at the innermost frame on the stack that is
-- neither knwb's Lua code nor C: the user's script, or an experiment. Messages are otherwise
-- unchanged.
local M = {}

local function is_knwb(info)
  return info.what == "C" or info.source:find("^@lua/knwb/") ~= nil or info.source:find("/lua/knwb/[^/]+%.lua$") ~= nil
end

local function strip(msg)
  if type(msg) ~= "string" then return msg, false end
  local s, n = msg:gsub("^[^\n]-lua/knwb/[%w_/]+%.lua:%d+: ", "", 1)
  return s, n > 0
end

-- The stack level (counted from the function that asks, like error's) of the innermost user
-- frame, or nil when every frame is knwb's.
local function user_level(from)
  local level = from + 1
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return nil end
    if not is_knwb(info) then return level - 1 end
    level = level + 1
  end
end
M.user_level = user_level

-- A message that already starts with the position of a user's line (placed there by an inner
-- at_caller, or raised by the user's own code) is raised again as it is.
local function user_positioned(msg)
  return type(msg) == "string" and msg:match("^[^\n:]+:%d+: ") ~= nil
end

-- at_caller(msg): raise msg at the user's line.
local function at_caller(msg)
  local had
  msg, had = strip(msg)
  if not had and user_positioned(msg) then error(msg, 0) end
  local level = user_level(2)
  error(msg, level and level or 3)
end

-- at_caller.handler(msg): an xpcall message handler that moves a position inside knwb's files to
-- the user's line closest to where the error happened (the line inside the function given to
-- model:with, say). A message that names the user's own code is left as it is.
function M.handler(msg)
  local s, had = strip(msg)
  if not had then return msg end
  local level = user_level(2)
  if not level then return msg end
  local info = debug.getinfo(level, "Sl")
  return ("%s:%d: %s"):format(info.short_src, info.currentline, s)
end

return setmetatable(M, { __call = function(_, msg) return at_caller(msg) end })
