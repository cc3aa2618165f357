-- test_svg.lua: knwb.svg output is well-formed XML, carries its labels (escaped), and draws
-- negative bars below the zero line.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local svg = require "knwb.svg"

-- A small XML well-formedness check: balanced tags, quoted attributes, only the five entities
-- (or numeric ones) after '&', no '<' in text. Returns true, or false and what is wrong.
local function well_formed(text)
  local stack, pos = {}, 1
  local function entities_ok(s)
    for ent in s:gmatch("&([^;]*);?") do
      if not (ent == "amp" or ent == "lt" or ent == "gt" or ent == "quot" or ent == "apos" or ent:match("^#%d+$") or ent:match("^#x%x+$")) then
        return false
      end
    end
    return select(2, s:gsub("&", "")) == select(2, s:gsub("&[^;&]*;", ""))
  end
  while true do
    local lt = text:find("<", pos, true)
    local chunk = text:sub(pos, (lt or #text + 1) - 1)
    if chunk:find(">", 1, true) and #stack == 0 and chunk:find("%S") then return false, "text outside the root" end
    if not entities_ok(chunk) then return false, "bad entity in text: " .. chunk end
    if not lt then break end
    local gt = text:find(">", lt, true)
    if not gt then return false, "unclosed tag" end
    local tag = text:sub(lt + 1, gt - 1)
    if tag:sub(1, 1) == "/" then
      local name = tag:sub(2)
      if stack[#stack] ~= name then return false, ("</%s> closes <%s>"):format(name, tostring(stack[#stack])) end
      stack[#stack] = nil
    else
      local name, attrs = tag:match("^([%w:_-]+)(.-)/?$")
      if not name then return false, "bad tag <" .. tag .. ">" end
      local rest = attrs:gsub('%s+[%w:_-]+="[^"<]*"', "")
      if rest:find("%S") then return false, ("bad attributes in <%s>: %s"):format(name, rest) end
      for v in attrs:gmatch('"([^"]*)"') do
        if not entities_ok(v) then return false, "bad entity in attribute: " .. v end
      end
      if tag:sub(-1) ~= "/" then stack[#stack + 1] = name end
    end
    pos = gt + 1
    if #stack == 0 then
      if text:sub(pos):find("%S") then return false, "content after the root element" end
      return true
    end
  end
  return #stack == 0, "unclosed <" .. tostring(stack[#stack]) .. ">"
end

local function count(s, needle)
  return select(2, s:gsub(needle:gsub("%p", "%%%0"), ""))
end

-- Rectangles of the bars (they carry a <title>), as {x, y, w, h, fill}.
local function bars_of(text)
  local out = {}
  for x, y, w, h, fill in text:gmatch('<rect x="([%d.-]+)" y="([%d.-]+)" width="([%d.-]+)" height="([%d.-]+)" fill="([^"]+)"><title>') do
    out[#out + 1] = { x = tonumber(x), y = tonumber(y), w = tonumber(w), h = tonumber(h), fill = fill }
  end
  return out
end

local function zero_line(text)
  -- The baseline is the thicker horizontal line drawn after the bars.
  local y = text:match('<line x1="[%d.]+" x2="[%d.]+" y1="([%d.]+)" y2="[%d.]+" stroke="#222222" stroke%-width="1.2"/>')
  return tonumber(y)
end

print("# bars")
do
  local s = svg.bars {
    title = "Suppress & amplify <KN>",
    categories = { "P17 country", "P36 capital", "Tom & \"Jerry\"" },
    series = {
      { name = "suppress", values = { -0.29, -0.41, -0.1 } },
      { name = "amplify", values = { 0.31, 0.52, 0.2 } },
    },
    ylabel = "change of P(correct)",
    percent = true,
  }
  local ok, why = well_formed(s)
  check.ok(ok, "bars: well-formed XML%s", why and (" (" .. why .. ")") or "")
  check.ok(s:find('^<svg xmlns="http://www.w3.org/2000/svg"') ~= nil, "an <svg> root with the SVG namespace")
  check.ok(s:find("Suppress &amp; amplify &lt;KN&gt;", 1, true) ~= nil, "title escaped")
  check.ok(s:find("Tom &amp; &quot;Jerry&quot;", 1, true) ~= nil, "category escaped")
  check.ok(not s:find("<KN>", 1, true), "no raw markup from labels")
  for _, label in ipairs { "P17 country", "P36 capital", "suppress", "amplify", "change of P(correct)" } do
    check.ok(s:find(label, 1, true) ~= nil, "contains %q", label)
  end
  check.ok(s:find(">-29.0%<", 1, true) and s:find(">52.0%<", 1, true), "percent value labels")
  check.ok(s:find(">0%<", 1, true) ~= nil, "percent tick labels")
  local bars, zero = bars_of(s), zero_line(s)
  check.eq(#bars, 6, "one bar per value")
  check.ok(zero ~= nil, "a zero line")
  local below, above = 0, 0
  for i, b in ipairs(bars) do
    if i <= 3 then
      if math.abs(b.y - zero) < 0.02 then below = below + 1 end
    else
      if math.abs(b.y + b.h - zero) < 0.02 then above = above + 1 end
    end
  end
  check.eq(below, 3, "negative bars start at the zero line and go down")
  check.eq(above, 3, "positive bars end at the zero line and go up")
  check.ok(bars[2].h > bars[1].h and bars[1].h > bars[3].h, "bar heights follow |value|")
  check.ok(bars[1].fill ~= bars[4].fill, "series have different colours")
  check.eq(count(s, 'class="legend"'), 1, "a legend for several series")
end

print("# bars: edge cases")
do
  local s = svg.bars { categories = { "a", "b", "c" }, series = { { values = { 1, nil, 0 / 0 } } } }
  check.ok(well_formed(s), "missing values: still well-formed")
  check.eq(#bars_of(s), 1, "nil and NaN leave gaps")
  check.eq(count(s, 'class="legend"'), 0, "no legend for one series")
  local all_neg = svg.bars { categories = { "x", "y" }, series = { { values = { -3, -1 } } } }
  check.ok(well_formed(all_neg), "all negative: well-formed")
  local z = zero_line(all_neg)
  for _, b in ipairs(bars_of(all_neg)) do check.ok(math.abs(b.y - z) < 0.02, "all-negative bar hangs from zero") end
  local zeros = svg.bars { categories = { "x" }, series = { { values = { 0 } } } }
  check.ok(well_formed(zeros), "all zero: well-formed")
  local many = {}
  for i = 1, 40 do many[i] = "a rather long category name " .. i end
  local wide = svg.bars { categories = many, series = { { values = (function() local v = {} for i = 1, 40 do v[i] = i end return v end)() } } }
  check.ok(wide:find("rotate(-40", 1, true) ~= nil, "long labels are slanted")
  check.ok(wide:find("…", 1, true) ~= nil, "very long labels are shortened")
  check.ok(svg.bars { categories = { "ctl\1x" }, series = { { values = { 1 } } } }:find("ctlx", 1, true) ~= nil,
    "control characters are dropped from text")
  check.err(function() svg.bars { categories = {}, series = { { values = {} } } } end, "svg.bars: categories must be a non-empty list",
    "empty categories refused")
  check.err(function() svg.bars { categories = { "a" }, series = { { values = { "1" } } } } end,
    "svg.bars: series[1].values[1] is a string, expected a number", "non-numbers refused")
  check.err(function() svg.bars { categories = { "a" }, series = { { values = { 1, 2 } } } } end,
    "series[1].values has key 2; expected 1..1", "more values than categories refused")
end

print("# histogram")
do
  local labels, values = {}, {}
  for l = 1, 12 do labels[l], values[l] = tostring(l), l / 78 end
  local s = svg.histogram { title = "Knowledge neurons per layer", labels = labels, values = values, xlabel = "layer",
    ylabel = "share", percent = true }
  check.ok(well_formed(s), "histogram: well-formed")
  check.eq(#bars_of(s), 12, "one bar per bin")
  check.ok(s:find(">layer<", 1, true) and s:find(">12<", 1, true), "axis label and bin labels")
  local b = bars_of(s)
  check.ok(b[2].x - (b[1].x + b[1].w) < 0.15 * b[1].w, "histogram bars nearly touch")
end

print("# before_after")
do
  local s = svg.before_after { title = "Perplexity", ylabel = "perplexity", log = true,
    items = { { label = "P36", before = 12.3, after = 480.5 }, { label = "other", before = 20, after = 21 } } }
  check.ok(well_formed(s), "before_after: well-formed")
  local b = bars_of(s)
  check.eq(#b, 4, "two bars per item")
  check.ok(s:find(">before<", 1, true) and s:find(">after<", 1, true), "legend names before and after")
  check.ok(s:find(">10<", 1, true) and s:find(">100<", 1, true), "log axis has decade ticks")
  check.ok(b[3].h > b[1].h, "after (480) is taller than before (12) on the log scale")
  check.err(function() svg.before_after { log = true, items = { { label = "x", before = 0, after = 1 } } } end,
    "a log scale needs values > 0; before of x is 0", "log scale refuses zero")
  local lin = svg.before_after { items = { { label = "a", before = 1, after = 2 } }, names = { "base", "edited" } }
  check.ok(well_formed(lin) and lin:find(">edited<", 1, true), "names of the pair can be changed")
end

-- A legend wider than the chart wraps into centred rows that stay inside it.
do
  local series = {}
  for i = 1, 7 do series[i] = { name = ("knowledge neurons, layer %d only"):format(i), values = { i, -i } } end
  local out = svg.bars { categories = { "a", "b" }, series = series, width = 600 }
  local W = tonumber(out:match('<svg[^>]- width="([%d.]+)"'))
  local legend = out:match('<g class="legend">(.-)</g>')
  local ys, inside, n = {}, true, 0
  for x, y, name in legend:gmatch('<text x="([%d.]+)" y="([%d.]+)"[^>]*>([^<]*)</text>') do
    n = n + 1
    ys[y] = true
    inside = inside and tonumber(x) >= 0 and tonumber(x) + #name * 12 * 0.58 <= W
  end
  local rows = 0
  for _ in pairs(ys) do rows = rows + 1 end
  check.ok(well_formed(out) and n == 7 and rows >= 2, "svg.bars: a legend of 7 long names wraps (%d rows)", rows)
  check.ok(inside, "svg.bars: every wrapped legend entry lies inside the %s px chart", W)
end

-- Line charts: one polyline per unbroken run of values, a marker with its value per point, the
-- points placed in x order and by value (a larger value sits higher), and bad input refused.
do
  local out = svg.lines { title = "dose <response>", x = { 0, 0.5, 1, 2, 4 }, percent = true, vline = 1,
    xlabel = "factor", ylabel = "change",
    series = { { name = "kn", values = { -0.3, -0.1, 0, 0.05, -0.2 } }, { name = "gap", values = { 0.1, 0 / 0, 0, 0.2, 0.3 } } } }
  check.ok(well_formed(out), "svg.lines: well-formed XML")
  check.ok(out:find("dose &lt;response&gt;", 1, true) ~= nil, "svg.lines: the title is escaped")
  local _, polys = out:gsub("<polyline", "")
  check.eq(polys, 2, "svg.lines: one polyline for the unbroken series, the NaN drops the gap series' lone first point")
  local _, dots = out:gsub("<circle", "")
  check.eq(dots, 9, "svg.lines: a marker for each finite value (5 + 4)")
  check.ok(out:find("kn — 2: 5.0%", 1, true) ~= nil, "svg.lines: a marker's tooltip gives series, x and value")
  check.ok(out:find('stroke-dasharray', 1, true) ~= nil, "svg.lines: the reference line at vline is drawn")
  local ys, xs = {}, {}
  for cx, cy, what in out:gmatch('<circle cx="([%d.]+)" cy="([%d.]+)"[^>]*><title>kn — ([^<]*)</title>') do
    xs[#xs + 1], ys[what] = tonumber(cx), tonumber(cy)
  end
  local increasing = #xs == 5
  for j = 2, #xs do increasing = increasing and xs[j] > xs[j - 1] end
  check.ok(increasing, "svg.lines: the markers go left to right in x order")
  check.ok(ys["2: 5.0%"] < ys["1: 0.0%"] and ys["1: 0.0%"] < ys["0: -30.0%"], "svg.lines: a larger value sits higher")
  check.err(function() svg.lines { x = { 1, 1 }, series = { { values = { 1, 2 } } } } end, "svg.lines: x must increase",
    "svg.lines refuses an x that does not increase")
  check.err(function() svg.lines { x = { 1, 2 }, series = { { values = { 1, 2, 3 } } } } end, "expected 1..2",
    "svg.lines refuses more values than x")
  check.err(function() svg.lines { x = {}, series = {} } end, "svg.lines: x must be a non-empty list",
    "svg.lines refuses an empty x")
end

check.done()
