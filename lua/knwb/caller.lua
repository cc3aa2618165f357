-- knwb.caller: raise an error again at the line of the code that called a knwb function.
--
--   local at_caller = require "knwb.caller"
--   local ok, res = pcall(helper, ...)      -- inside a public function
--   if not ok then at_caller(res) end       -- reported at that function's caller's line
--
-- A bad argument to a public function often fails deeper down (in the core, or in a helper of
-- another knwb file), and the message then names that inner line, which tells the user nothing.
-- at_caller drops a leading position inside knwb's own lua/ folder and raises the message at
-- the line that called the public function. Messages are otherwise unchanged.
local function at_caller(msg)
  if type(msg) == "string" then
    msg = msg:gsub("^lua/knwb/[%w_/]+%.lua:%d+: ", "", 1)
  end
  error(msg, 3)
end

return at_caller
