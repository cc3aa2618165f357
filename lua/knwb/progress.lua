-- progress.lua: progress of a long loop, on stderr.
--
--   local bar = progress.new("attribute", #prompts, { unit = "prompts" })
--   for ... do ...; bar:step() end
--   bar:done()        -- final line: "attribute  1000/1000  100.0%  4.56 prompts/s  took 3m40s"
--
-- Lines look like "attribute  123/1000  12.3%  4.56 prompts/s  ETA 3m12s" (without a total:
-- "pretrain  1234 steps  45.6 steps/s  elapsed 1m02s"). The mode comes from KNWB_PROGRESS:
--   tty    redraw one line with \r, at most twice a second
--   plain  the first line after 1 s (so an ETA shows from the start), then a new line at most
--          every 5 s, plus the final one (logs, pipes, CI)
--   off    nothing
-- Unset, it is tty when stderr is a terminal and plain otherwise. Progress never goes to stdout,
-- which stays for a script's results. It is not a logger.
local progress = {}

local INTERVAL = { tty = 0.5, plain = 5 }

local detected
local function detect_mode()
  local env = os.getenv("KNWB_PROGRESS")
  if env == "tty" or env == "plain" or env == "off" then return env end
  if detected then return detected end
  if env and env ~= "" then
    io.stderr:write(("progress: ignoring KNWB_PROGRESS=%s (use tty, plain or off)\n"):format(env))
  end
  -- Plain Lua cannot ask isatty(); a child shell inherits our stderr and can.
  detected = os.execute("test -t 2") and "tty" or "plain"
  return detected
end

-- Wall-clock seconds with sub-second steps. knwb.core's now(), when it offers one, is exact;
-- otherwise os.time() gives whole seconds and os.clock() (CPU time, which advances with the wall
-- clock while a loop is busy) fills in the fraction.
local function default_clock()
  local ok, core = pcall(require, "knwb.core")
  if ok and type(core) == "table" and type(core.now) == "function" then return core.now end
  local sec, base = os.time(), os.clock()
  return function()
    local t = os.time()
    if t ~= sec then sec, base = t, os.clock() end
    return sec + math.min(0.999, os.clock() - base)
  end
end

local function duration(s)
  s = math.floor(s + 0.5)
  if s < 60 then return ("%ds"):format(s) end
  if s < 3600 then return ("%dm%02ds"):format(s // 60, s % 60) end
  return ("%dh%02dm"):format(s // 3600, s % 3600 // 60)
end

local function rate_text(r)
  if r >= 100 then return ("%.0f"):format(r) end
  return ("%.3g"):format(r)
end

local Progress = {}
Progress.__index = Progress

-- progress.new(label, total [, {unit=, mode=, interval=, out=, clock=, after=, after_label=}]) -> bar
-- total may be nil when the count is not known in advance. after: an estimate of the work that
-- follows this bar in the same run, in this bar's units (a later stage that gets its own bar);
-- the ETA then adds "(+ after_label ~T)", so the whole run's remaining time shows from the start.
function progress.new(label, total, opts)
  opts = opts or {}
  assert(type(label) == "string", "progress.new: label must be a string")
  assert(total == nil or (math.type(total) == "integer" and total >= 0), "progress.new: total must be an integer >= 0 or nil")
  -- progress.silent: set on MPI worker ranks, so that only rank 0 reports
  local mode = progress.silent and "off" or opts.mode or detect_mode()
  local clock = opts.clock or default_clock()
  local now = clock()
  local self = setmetatable({
    label = label, total = total, n = 0, unit = opts.unit or "items", mode = mode,
    interval = opts.interval or INTERVAL[mode] or 1, out = opts.out or io.stderr, clock = clock,
    t0 = now, finished = false, after = opts.after, after_label = opts.after_label or "then",
  }, Progress)
  -- A terminal shows the bar at once; a log gets its first line after a second (an ETA needs a
  -- rate), then one per interval.
  self.last = mode == "tty" and now - self.interval or now - self.interval + math.min(1, self.interval)
  return self
end

function Progress:line(now, final)
  local elapsed = now - self.t0
  local rate = elapsed > 0 and self.n / elapsed or 0
  local parts = { self.label }
  if self.total then
    parts[#parts + 1] = ("%d/%d"):format(self.n, self.total)
    parts[#parts + 1] = ("%.1f%%"):format(self.total > 0 and 100 * self.n / self.total or 100)
  else
    parts[#parts + 1] = ("%d %s"):format(self.n, self.unit)
  end
  if elapsed > 0 and self.n > 0 then parts[#parts + 1] = ("%s %s/s"):format(rate_text(rate), self.unit) end
  if final then
    parts[#parts + 1] = "took " .. duration(elapsed)
  elseif self.total and rate > 0 then
    parts[#parts + 1] = "ETA " .. duration(math.max(0, self.total - self.n) / rate)
    if self.after and self.after > 0 then
      parts[#parts] = parts[#parts] .. (" (+ %s ~%s)"):format(self.after_label, duration(self.after / rate))
    end
  elseif not self.total then
    parts[#parts + 1] = "elapsed " .. duration(elapsed)
  end
  return table.concat(parts, "  ")
end

function Progress:show(now, final)
  if self.mode == "off" then return end
  local text = self:line(now, final)
  if self.mode == "tty" then
    self.out:write("\r", text, "\27[K", final and "\n" or "")
  else
    self.out:write(text, "\n")
  end
  self.out:flush()
  self.last = now
end

-- bar:step([n]) counts n more (default 1) and redraws when the interval has passed.
function Progress:step(n)
  self.n = self.n + (n or 1)
  if self.mode == "off" then return end
  local now = self.clock()
  if now - self.last >= self.interval then self:show(now, false) end
end

-- bar:set(n) sets the count, for loops that resume part way.
function Progress:set(n)
  self.n = n
end

-- bar:done() prints the final line once and returns the elapsed seconds.
function Progress:done()
  local now = self.clock()
  if not self.finished then
    self.finished = true
    self:show(now, true)
  end
  return now - self.t0
end

Progress.__close = Progress.done

return progress
