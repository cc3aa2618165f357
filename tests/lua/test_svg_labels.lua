-- test_svg_labels.lua: the charts' value labels never overlap one another and stay inside the
-- plot (below the legend), in the shapes the experiments draw: the layer chart (2 series x 6 or
-- 12 layers), the confidence chart (6 series x 7 bins at a given width), many narrow bars; and a
-- log axis labels ticks at 1-2-5 over a few decades, every decade over many. Label boxes are
-- estimated with the same character width the chart lays them out with (0.58 em).
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local svg = require "knwb.svg"

local function width(s, size) return select(2, s:gsub("[^\128-\191]", "")) * size * 0.58 end

-- boxes of the value labels, and the plot's top and bottom (from the y axis line)
local function inspect(text)
  local group = text:match('<g class="values" data%-mode="[%a]+">(.-)</g>') or ""
  local mode = text:match('data%-mode="(%a+)"')
  local boxes = {}
  for attrs, label in group:gmatch("<text ([^>]*)>([^<]*)</text>") do
    local x, y = tonumber(attrs:match('x="([-%d.]+)"')), tonumber(attrs:match('y="([-%d.]+)"'))
    local size, anchor = tonumber(attrs:match('font%-size="([%d.]+)"')), attrs:match('text%-anchor="(%a+)"')
    local w = width(label, size)
    if attrs:find("rotate", 1, true) then
      local y0 = anchor == "start" and y - w or y
      boxes[#boxes + 1] = { x0 = x - size, x1 = x, y0 = y0, y1 = y0 + w, text = label }
    else
      boxes[#boxes + 1] = { x0 = x - w / 2, x1 = x + w / 2, y0 = y - size, y1 = y, text = label }
    end
  end
  local top, bottom
  for a, b in text:gmatch('<line x1="([-%d.]+)" x2="%1" y1="([-%d.]+)" y2="([-%d.]+)" stroke="#222222"/>') do top = tonumber(b) end
  for _, _, c in text:gmatch('<line x1="([-%d.]+)" x2="%1" y1="([-%d.]+)" y2="([-%d.]+)" stroke="#222222"/>') do bottom = tonumber(c) end
  return boxes, mode, top, bottom
end

local function no_overlap(text, what, want_labels)
  local boxes, mode, top, bottom = inspect(text)
  if want_labels then check.ok(#boxes >= want_labels, "%s: %d value labels (%s)", what, #boxes, tostring(mode)) end
  local bad
  for i = 1, #boxes do
    for j = i + 1, #boxes do
      local a, b = boxes[i], boxes[j]
      if a.x0 < b.x1 - 0.01 and b.x0 < a.x1 - 0.01 and a.y0 < b.y1 - 0.01 and b.y0 < a.y1 - 0.01 then
        bad = bad or ("%s and %s"):format(a.text, b.text)
      end
    end
  end
  check.ok(not bad, "%s: no two value labels overlap%s", what, bad and " (" .. bad .. ")" or "")
  local out
  for _, b in ipairs(boxes) do
    if b.y0 < top - 0.5 or b.y1 > bottom + 0.5 then out = out or b.text end
  end
  check.ok(top and not out, "%s: every value label is inside the plot [%s, %s]%s", what, tostring(top), tostring(bottom),
    out and " (" .. out .. " is not)" or "")
  return mode
end

-- the layer chart of attribute.lua
for _, L in ipairs { 6, 12 } do
  local labels, ks, bs = {}, {}, {}
  for l = 1, L do
    labels[l] = tostring(l - 1)
    ks[l] = (l / L) ^ 3 * 0.6 + 0.0123
    bs[l] = 1 / L + 0.0111 * (l % 3)
  end
  local text = svg.bars { title = "share per layer", categories = labels, percent = true, xlabel = "layer", ylabel = "share",
    series = { { name = "knowledge neurons (IG)", values = ks }, { name = "activation baseline", values = bs } } }
  no_overlap(text, ("layer chart, %d layers"):format(L), 2 * L)
  check.ok(text:find('>0</text>', 1, true) and not text:find(('>%d</text>'):format(L), 1, true),
    "layer chart, %d layers: categories count from 0 to %d", L, L - 1)
end

-- the confidence chart of suppress.lua: 6 series x 7 bins, width given
local cats = { "0-0.05", "0.05-0.1", "0.1-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1" }
local series = {}
for i = 1, 6 do
  local v = {}
  for j = 1, 7 do v[j] = (i % 2 == 0 and 0.853 or -0.312) * (j / 7) * (i / 3) - 0.0521 end
  series[i] = { name = "set " .. i, values = v }
end
local mode = no_overlap(svg.bars { title = "by confidence", categories = cats, series = series, percent = true,
  xlabel = "p0", ylabel = "change", width = 1210 }, "confidence chart", 42)
check.eq(mode, "upright", "confidence chart: labels too wide for their bars are written upright")
no_overlap(svg.bars { title = "by confidence, narrow", categories = cats, series = series, percent = true, width = 480 },
  "confidence chart at 480 px")
-- many bars: labels left out rather than overlapping
local many = {}
for j = 1, 60 do many[j] = j * 1.234 end
local names = {}
for j = 1, 60 do names[j] = tostring(j) end
no_overlap(svg.bars { categories = names, series = { { name = "a", values = many }, { name = "b", values = many } } }, "120 bars")

-- erase.svg: before/after perplexity on a log axis
local items = {}
for _, r in ipairs { "P36", "P17", "P30" } do
  items[#items + 1] = { label = r .. " erased · KN", before = 1.82, after = 6.22 }
  items[#items + 1] = { label = r .. " others · KN", before = 2.1, after = 2.31 }
  items[#items + 1] = { label = r .. " erased · random", before = 1.82, after = 1.83 }
end
local text = svg.before_after { title = "erase", items = items, ylabel = "perplexity (log scale)", log = true }
no_overlap(text, "erase chart (log)", 12)
local ticks = {}
for t in text:gmatch('text%-anchor="end" font%-size="11" fill="#555555">([^<]*)<') do ticks[#ticks + 1] = t end
check.eq(table.concat(ticks, " "), "1 2 5 10", "log axis over one decade: ticks labelled at 1, 2, 5, 10")
local wide = svg.bars { categories = { "a", "b" }, series = { { name = "x", values = { 0.003, 4e4 } } }, log = true }
ticks = {}
for t in wide:gmatch('text%-anchor="end" font%-size="11" fill="#555555">([^<]*)<') do ticks[#ticks + 1] = t end
check.eq(table.concat(ticks, " "), "0.001 0.01 0.1 1 10 100 1000 10000 100000", "log axis over many decades: every decade labelled")
no_overlap(wide, "wide log chart", 2)

check.done()
