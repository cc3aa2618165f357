-- svg.lua: small bar and line charts as SVG text, with no dependencies.
--
--   svg.bars{ title=, categories={...}, series={ {name=, values={...}}, ... }, ylabel=, xlabel=,
--             percent=bool, log=bool, width=, height=, value_labels=bool, colors={...} }
--   svg.histogram{ title=, labels={...}, values={...} | series=..., xlabel=, ylabel=, percent= }
--   svg.before_after{ title=, items={ {label=, before=, after=}, ... }, ylabel=, log=bool,
--                     names={ "before", "after" } }
--   svg.lines{ title=, x={...numbers}, series={ {name=, values={...}}, ... }, xlabel=, ylabel=,
--              percent=bool, vline=x }
--
-- Grouped bars share one y axis; negative values hang below the zero line. With percent = true
-- values are fractions (-0.29) shown as percentages (-29%). A missing value (nil or NaN) leaves a
-- gap. Each bar carries a <title>, so a browser shows its exact value on hover. The charts are
-- what a run directory needs (layer histograms, per-relation changes, before/after perplexity,
-- dose-response curves); this is not a plotting library: no scatter, no interactivity beyond
-- tooltips.
local svg = {}

local PALETTE = { "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac" }
local FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
local INK, MUTED, GRID = "#222222", "#555555", "#e6e6e6"

-- Text for XML content and attribute values; control characters XML cannot hold are dropped.
function svg.escape(s)
  s = tostring(s):gsub("[%z\1-\8\11\12\14-\31]", "")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end
local esc = svg.escape

local function num(x)
  local s = ("%.2f"):format(x):gsub("0+$", ""):gsub("%.$", "")
  return s == "-0" and "0" or s
end

-- Rough width of a string in pixels: enough to lay out labels without a font engine.
local function text_width(s, size)
  local chars = select(2, tostring(s):gsub("[^\128-\191]", ""))
  return chars * size * 0.58
end

local function shorten(s, max_chars)
  s = tostring(s)
  if utf8.len(s) and utf8.len(s) > max_chars then
    return s:sub(1, utf8.offset(s, max_chars) - 1) .. "…"
  end
  return s
end

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

---------------------------------------------------------------------------------------------------
-- Axes.

local function nice_step(span, count)
  local raw = span / count
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local f = raw / mag
  local nice = f <= 1 and 1 or f <= 2 and 2 or f <= 2.5 and 2.5 or f <= 5 and 5 or 10
  return nice * mag
end

local function decimals(step)
  local d = 0
  while d < 10 and math.abs(step * 10 ^ d - math.floor(step * 10 ^ d + 0.5)) > 1e-9 * 10 ^ d do d = d + 1 end
  return d
end

-- A linear axis from lo to hi (which include 0, since bars grow from it). pad: the share of the
-- range added beyond the bar ends as headroom for value labels (default 0.08).
local function linear_axis(lo, hi, percent, pad_share)
  lo, hi = math.min(lo, 0), math.max(hi, 0)
  if lo == hi then hi = 1 end
  -- Headroom for the value labels at the bar ends.
  local pad = (hi - lo) * (pad_share or 0.08)
  if hi > 0 then hi = hi + pad end
  if lo < 0 then lo = lo - pad end
  local step = nice_step(hi - lo, 5)
  local a, b = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
  local d = decimals(step * (percent and 100 or 1))
  local ticks = {}
  for k = a, b do
    local v = k * step
    local label = percent and ("%." .. d .. "f%%"):format(v * 100) or ("%." .. d .. "f"):format(v)
    ticks[#ticks + 1] = { value = v, label = (label:gsub("^%-(0%.?0*%%?)$", "%1")) }
  end
  return { lo = a * step, hi = b * step, ticks = ticks, map = function(v) return v end, base = 0 }
end

-- The text of m x 10^k (m = 1, 2 or 5) as a tick label: 0.02, 5, 200, 1e7.
local function log_label(m, k)
  if k >= 0 and k <= 6 then return ("%d"):format(math.floor(m * 10 ^ k + 0.5)) end
  if k < 0 and k >= -4 then return ("%." .. -k .. "f"):format(m * 10 ^ k) end
  return ("%de%d"):format(m, k)
end

-- A log axis over whole decades around [lo, hi], with pad_share of the span (in decades) added
-- above hi as headroom for value labels. Over at most 3 decades the ticks at 1, 2 and 5 of each
-- decade are labelled (so a range like 1.8-6.2 shows 1, 2, 5, 10), beyond that every decade;
-- minor lines at 2..9 of each decade.
local function log_axis(lo, hi, pad_share)
  local llo, lhi = math.log(lo, 10), math.log(hi, 10)
  lhi = lhi + (pad_share or 0) * math.max(lhi - llo, 0.3)
  local a, b = math.floor(llo), math.ceil(lhi - 1e-9)
  if a == b then b = a + 1 end
  local ticks, minor = {}, {}
  local fine = b - a <= 3
  for k = a, b do
    ticks[#ticks + 1] = { value = k, label = log_label(1, k) }
    if k < b then
      for m = 2, 9 do
        if fine and (m == 2 or m == 5) then
          ticks[#ticks + 1] = { value = k + math.log(m, 10), label = log_label(m, k) }
        else
          minor[#minor + 1] = k + math.log(m, 10)
        end
      end
    end
  end
  table.sort(ticks, function(x, y) return x.value < y.value end)
  return { lo = a, hi = b, ticks = ticks, minor = minor, map = function(v) return math.log(v, 10) end, base = a }
end

local function format_value(v, percent)
  if percent then
    local p = v * 100
    return (math.abs(p) >= 99.95 and "%.0f%%" or "%.1f%%"):format(p)
  end
  if math.type(v) == "integer" then return tostring(v) end
  local a = math.abs(v)
  if a >= 1e6 or (a > 0 and a < 1e-3) then return ("%.2e"):format(v) end
  if a >= 100 then return ("%.0f"):format(v) end
  return (("%.3g"):format(v))
end

---------------------------------------------------------------------------------------------------
-- Pieces shared by the charts.

-- The root element, a white background and the title (as a tooltip and as text on top).
local function open_svg(add, W, H, title)
  add(('<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="%s" font-size="12">')
    :format(num(W), num(H), num(W), num(H), FONT))
  if title then add(("<title>%s</title>"):format(esc(title))) end
  add(('<rect x="0" y="0" width="%s" height="%s" fill="#ffffff"/>'):format(num(W), num(H)))
  if title then
    add(('<text x="%s" y="26" text-anchor="middle" font-size="16" font-weight="bold" fill="%s">%s</text>')
      :format(num(W / 2), INK, esc(title)))
  end
end

-- The x label centred under the plot at cx, the end of the root; returns the whole text.
local function close_svg(add, out, xlabel, cx, H)
  if xlabel then
    add(('<text x="%s" y="%s" text-anchor="middle" fill="%s">%s</text>'):format(num(cx), num(H - 12), INK, esc(xlabel)))
  end
  add("</svg>")
  return table.concat(out, "\n") .. "\n"
end

-- The series names with their colours, in rows as wide as the chart allows, each row centred.
local function legend_rows(series, W)
  local rows, row = {}, { w = 0 }
  for i, s in ipairs(series) do
    local name = shorten(s.name or ("series " .. i), 32)
    local it = { i = i, name = name, w = 18 + text_width(name, 12) + 16 }
    if #row > 0 and row.w + it.w > W - 28 then rows[#rows + 1], row = row, { w = 0 } end
    row[#row + 1], row.w = it, row.w + it.w
  end
  rows[#rows + 1] = row
  return rows
end

-- Draws the rows of legend_rows above the plot area, whose top is `top`.
local function legend(add, rows, colors, W, top)
  add('<g class="legend">')
  for r, row in ipairs(rows) do
    local x = math.max(14, (W - row.w) / 2)
    local ly = top - 16 - (#rows - r) * 22
    for _, it in ipairs(row) do
      add(('<rect x="%s" y="%s" width="12" height="12" rx="2" fill="%s"/>'):format(num(x), num(ly - 10), colors[(it.i - 1) % #colors + 1]))
      add(('<text x="%s" y="%s" fill="%s">%s</text>'):format(num(x + 17), num(ly), INK, esc(it.name)))
      x = x + it.w
    end
  end
  add("</g>")
end

-- Horizontal grid lines with the y tick labels, and the rotated y label.
local function y_grid(add, axis, y_axis, left, x_end, tick_w, top, plot_h, ylabel)
  add('<g class="grid">')
  for _, m in ipairs(axis.minor or {}) do
    add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s" stroke-width="0.5"/>'):format(num(left), num(x_end), num(y_axis(m)), num(y_axis(m)), GRID))
  end
  for _, t in ipairs(axis.ticks) do
    local ty = y_axis(t.value)
    add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s"/>'):format(num(left), num(x_end), num(ty), num(ty), GRID))
    add(('<text x="%s" y="%s" text-anchor="end" font-size="11" fill="%s">%s</text>'):format(num(left - 6), num(ty + 4), MUTED, esc(t.label)))
  end
  add("</g>")
  if ylabel then
    local cx, cy = math.max(18, left - tick_w - 22), top + plot_h / 2
    add(('<text x="%s" y="%s" text-anchor="middle" transform="rotate(-90 %s %s)" fill="%s">%s</text>')
      :format(num(cx), num(cy), num(cx), num(cy), INK, esc(ylabel)))
  end
end

---------------------------------------------------------------------------------------------------
-- The bar chart.

local function check_spec(spec, who)
  if type(spec) ~= "table" then error(who .. ": expected a table of options", 3) end
  if type(spec.categories) ~= "table" or #spec.categories == 0 then
    error(who .. ": categories must be a non-empty list", 3)
  end
  if type(spec.series) ~= "table" or #spec.series == 0 then error(who .. ": series must be a non-empty list", 3) end
  for i, s in ipairs(spec.series) do
    if type(s) ~= "table" or type(s.values) ~= "table" then
      error(("%s: series[%d] needs a values list"):format(who, i), 3)
    end
    for j in pairs(s.values) do
      if math.type(j) ~= "integer" or j < 1 or j > #spec.categories then
        error(("%s: series[%d].values has key %s; expected 1..%d, one per category"):format(who, i, tostring(j), #spec.categories), 3)
      end
    end
    for j = 1, #spec.categories do
      local v = s.values[j]
      if v ~= nil and type(v) ~= "number" then
        error(("%s: series[%d].values[%d] is a %s, expected a number"):format(who, i, j, type(v)), 3)
      end
      if spec.log and finite(v) and v <= 0 then
        error(("%s: a log scale needs values > 0; %s of %s is %s"):format(who, s.name or ("series " .. i), tostring(spec.categories[j]), tostring(v)), 3)
      end
    end
  end
end

local function chart(spec, who, style)
  check_spec(spec, who)
  local cats, series = spec.categories, spec.series
  local ncat, nser = #cats, #series
  local colors = spec.colors or PALETTE

  -- Value range and axis.
  local lo, hi
  for _, s in ipairs(series) do
    for j = 1, ncat do
      local v = s.values[j]
      if finite(v) then lo, hi = math.min(lo or v, v), math.max(hi or v, v) end
    end
  end
  local function make_axis(pad)
    if spec.log then return log_axis(lo or 1, hi or 10, pad) end
    return linear_axis(lo or 0, hi or 1, spec.percent, pad)
  end

  -- The value labels' texts, and the widest at a font size.
  local texts = {}
  for _, s in ipairs(series) do
    for j = 1, ncat do
      if finite(s.values[j]) then texts[#texts + 1] = format_value(s.values[j], spec.percent) end
    end
  end
  local function widest(size)
    local w = 0
    for _, t in ipairs(texts) do w = math.max(w, text_width(t, size)) end
    return w
  end
  local fill = style.fill or 0.8

  -- Layout for an axis: the plot's box and the category labels.
  local function layout(axis, W)
    local g = { W = W, H = spec.height or 380 }
    local tick_w = 0
    for _, t in ipairs(axis.ticks) do tick_w = math.max(tick_w, text_width(t.label, 11)) end
    g.tick_w = tick_w
    g.left = 14 + (spec.ylabel and 22 or 0) + tick_w + 8
    g.right = 16
    g.rows = nser > 1 and legend_rows(series, W) or {}
    g.top = 14 + (spec.title and 26 or 0) + 22 * #g.rows
    g.band = (W - g.left - g.right) / ncat
    local labels, label_w = {}, 0
    for j, c in ipairs(cats) do
      labels[j] = shorten(c, 28)
      label_w = math.max(label_w, text_width(labels[j], 11))
    end
    g.labels = labels
    g.rotate = label_w > g.band - 6
    if g.rotate then
      -- A slanted label reaches left of its bar by about cos(40°) of its length.
      local reach = label_w * 0.77 - g.band / 2 + 6
      if reach > g.left then
        g.left = reach
        g.band = (W - g.left - g.right) / ncat
      end
    end
    g.bottom = 14 + (spec.xlabel and 22 or 0) + (g.rotate and label_w * 0.64 + 14 or 20)
    g.plot_h = g.H - g.top - g.bottom
    if g.plot_h < 80 then
      g.H = g.H + (80 - g.plot_h)
      g.plot_h = 80
    end
    g.bar_w = g.band * fill / nser
    return g
  end

  -- Value labels never overlap: each is as wide as its bar at most, written across (font 11 down
  -- to 8), else upright along the bar; a bar too narrow even for that has its value only in its
  -- tooltip. Without a given width the chart first grows (up to 1200 px) so labels fit across.
  -- The axis gets headroom for the labels beyond the bar ends.
  local group_px = math.max(style.min_group or 36, nser * 20 + 14)
  local W = spec.width or math.max(480, math.min(1200, 130 + ncat * group_px))
  local axis = make_axis(nil)
  local g = layout(axis, W)
  local want = spec.value_labels ~= false and #texts > 0
  if want and not spec.width then
    local need = g.left + g.right + ncat * nser * (widest(9) + 3) / fill
    if need > W and need <= 1200 then
      W = math.ceil(need)
      g = layout(axis, W)
    end
  end
  local mode, size = nil, nil
  if want then
    for sz = 11, 8, -1 do
      if widest(sz) <= g.bar_w - 2 then mode, size = "across", sz; break end
    end
    if not mode and (g.bar_w >= 9 or spec.value_labels) then mode, size = "upright", math.max(8, math.min(11, g.bar_w - 1)) end
  end
  if mode then
    local room = (mode == "across" and size or widest(size)) + 6
    local f = math.min(0.45, room / g.plot_h)
    local pad = spec.log and f / (1 - f) or f / (1 - 2 * f)
    if spec.log or pad > 0.08 then
      axis = make_axis(pad)
      g = layout(axis, W)
    end
  end
  local left, right, top, band, plot_h, H, rows, labels, rotate, tick_w =
    g.left, g.right, g.top, g.band, g.plot_h, g.H, g.rows, g.labels, g.rotate, g.tick_w
  local function y(v)
    return top + plot_h * (axis.hi - axis.map(v)) / (axis.hi - axis.lo)
  end
  local function y_axis(a) return top + plot_h * (axis.hi - a) / (axis.hi - axis.lo) end

  local out = {}
  local function add(s) out[#out + 1] = s end
  open_svg(add, W, H, spec.title)

  if nser > 1 then legend(add, rows, colors, W, top) end
  y_grid(add, axis, y_axis, left, W - right, tick_w, top, plot_h, spec.ylabel)

  -- Bars.
  local group_w = band * fill
  local bar_w = group_w / nser
  local base_y = spec.log and y_axis(axis.lo) or y(0)
  add('<g class="bars">')
  local vlabels = {}
  for i, s in ipairs(series) do
    local color = colors[(i - 1) % #colors + 1]
    for j = 1, ncat do
      local v = s.values[j]
      if finite(v) then
        local x = left + band * (j - 1) + (band - group_w) / 2 + bar_w * (i - 1)
        local vy = y(v)
        local y0, y1 = math.min(vy, base_y), math.max(vy, base_y)
        local text = format_value(v, spec.percent)
        local inset = bar_w > 6 and 1 or 0
        add(('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s%s: %s</title></rect>')
          :format(num(x + inset / 2), num(y0), num(bar_w - inset), num(math.max(y1 - y0, 0.5)), color,
            nser > 1 and esc(s.name or ("series " .. i)) .. " — " or "", esc(cats[j]), esc(text)))
        local below = v < 0 and not spec.log
        if mode == "across" then
          local ly = below and y1 + size + 2 or y0 - 3
          vlabels[#vlabels + 1] = ('<text x="%s" y="%s" text-anchor="middle" font-size="%s" fill="%s">%s</text>')
            :format(num(x + bar_w / 2), num(ly), num(size), MUTED, esc(text))
        elseif mode == "upright" then
          -- rotated -90°: the text runs upwards from its anchor; glyphs sit left of the x given
          local lx, ly = x + bar_w / 2 + size * 0.35, below and y1 + 3 or y0 - 3
          vlabels[#vlabels + 1] = ('<text x="%s" y="%s" text-anchor="%s" font-size="%s" fill="%s" transform="rotate(-90 %s %s)">%s</text>')
            :format(num(lx), num(ly), below and "end" or "start", num(size), MUTED, num(lx), num(ly), esc(text))
        end
      end
    end
  end
  add("</g>")
  if #vlabels > 0 then
    add(('<g class="values" data-mode="%s">'):format(mode))
    for _, t in ipairs(vlabels) do add(t) end
    add("</g>")
  end

  -- Axes on top of the bars: the baseline, and the y axis.
  add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s" stroke-width="1.2"/>'):format(num(left), num(W - right), num(base_y), num(base_y), INK))
  add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s"/>'):format(num(left), num(left), num(top), num(top + plot_h), INK))

  -- Category labels.
  add('<g class="categories">')
  local label_y = top + plot_h + 16
  for j = 1, ncat do
    local cx = left + band * (j - 1) + band / 2
    if rotate then
      add(('<text x="%s" y="%s" text-anchor="end" font-size="11" fill="%s" transform="rotate(-40 %s %s)">%s</text>')
        :format(num(cx), num(label_y - 4), INK, num(cx), num(label_y - 4), esc(labels[j])))
    else
      add(('<text x="%s" y="%s" text-anchor="middle" font-size="11" fill="%s">%s</text>'):format(num(cx), num(label_y), INK, esc(labels[j])))
    end
  end
  add("</g>")
  return close_svg(add, out, spec.xlabel, (left + W - right) / 2, H)
end

-- svg.bars(spec) -> SVG text
function svg.bars(spec)
  return chart(spec, "svg.bars", {})
end

-- svg.histogram(spec) -> SVG text: bars that nearly touch, one per bin (labels), for example
-- the share of knowledge neurons per layer.
function svg.histogram(spec)
  if type(spec) ~= "table" then error("svg.histogram: expected a table of options", 2) end
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  s.categories = spec.labels or spec.categories
  s.series = spec.series or { { name = spec.name, values = spec.values } }
  if s.value_labels == nil and s.categories and #s.categories > 24 then s.value_labels = false end
  return chart(s, "svg.histogram", { fill = 0.92, min_group = 28 })
end

-- svg.before_after(spec) -> SVG text: a pair of bars per item, before (grey) and after (colour).
function svg.before_after(spec)
  if type(spec) ~= "table" or type(spec.items) ~= "table" or #spec.items == 0 then
    error("svg.before_after: expected { items = { {label=, before=, after=}, ... } }", 2)
  end
  local names = spec.names or { "before", "after" }
  local cats, before, after = {}, {}, {}
  for i, it in ipairs(spec.items) do
    cats[i] = it.label or tostring(i)
    before[i], after[i] = it.before, it.after
  end
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  s.items, s.names = nil, nil
  s.categories = cats
  s.series = { { name = names[1], values = before }, { name = names[2], values = after } }
  s.colors = spec.colors or { "#a0a8b3", "#e15759" }
  return chart(s, "svg.before_after", {})
end

---------------------------------------------------------------------------------------------------
-- The line chart.

-- svg.lines(spec) -> SVG text: one line with point markers per series over a numeric x axis, for
-- example a dose-response curve (x = the factor a neuron set is scaled by). spec: title=, x={...}
-- (numbers, increasing), series={ {name=, values={...}} } (one value per x; nil or NaN breaks the
-- line), xlabel=, ylabel=, percent=bool, vline=x (a dashed reference line), width=, height=.
function svg.lines(spec)
  local who = "svg.lines"
  if type(spec) ~= "table" then error(who .. ": expected a table of options", 2) end
  if type(spec.x) ~= "table" or #spec.x == 0 then error(who .. ": x must be a non-empty list of numbers", 2) end
  for j, v in ipairs(spec.x) do
    if not finite(v) then error(("%s: x[%d] is %s, expected a finite number"):format(who, j, tostring(v)), 2) end
    if j > 1 and v <= spec.x[j - 1] then error(("%s: x must increase; x[%d] = %s follows %s"):format(who, j, num(v), num(spec.x[j - 1])), 2) end
  end
  local cats = {}
  for j, v in ipairs(spec.x) do cats[j] = num(v) end
  check_spec({ categories = cats, series = spec.series }, who)
  local xs, series = spec.x, spec.series
  local colors = spec.colors or PALETTE
  local lo, hi
  for _, s in ipairs(series) do
    for j = 1, #xs do
      local v = s.values[j]
      if finite(v) then lo, hi = math.min(lo or v, v), math.max(hi or v, v) end
    end
  end
  local axis = linear_axis(lo or 0, hi or 1, spec.percent)
  local x_lo, x_hi = xs[1], xs[#xs]
  if spec.vline then x_lo, x_hi = math.min(x_lo, spec.vline), math.max(x_hi, spec.vline) end
  if x_hi == x_lo then x_lo, x_hi = x_lo - 1, x_hi + 1 end
  local xstep = nice_step(x_hi - x_lo, 8)

  local W, H = spec.width or 640, spec.height or 400
  local tick_w = 0
  for _, t in ipairs(axis.ticks) do tick_w = math.max(tick_w, text_width(t.label, 11)) end
  local left = 14 + (spec.ylabel and 22 or 0) + tick_w + 8
  local right = 24
  local rows = #series > 1 and legend_rows(series, W) or {}
  local top = 14 + (spec.title and 26 or 0) + 22 * #rows
  local bottom = 14 + (spec.xlabel and 22 or 0) + 20
  local plot_h = H - top - bottom
  local function px(v) return left + (W - left - right) * (v - x_lo) / (x_hi - x_lo) end
  local function y_axis(a) return top + plot_h * (axis.hi - a) / (axis.hi - axis.lo) end

  local out = {}
  local function add(s) out[#out + 1] = s end
  open_svg(add, W, H, spec.title)
  if #series > 1 then legend(add, rows, colors, W, top) end
  y_grid(add, axis, y_axis, left, W - right, tick_w, top, plot_h, spec.ylabel)
  -- x ticks at multiples of a round step
  add('<g class="xticks">')
  for k = math.ceil(x_lo / xstep - 1e-9), math.floor(x_hi / xstep + 1e-9) do
    local v = k * xstep
    add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s"/>'):format(num(px(v)), num(px(v)), num(top + plot_h), num(top + plot_h + 4), INK))
    add(('<text x="%s" y="%s" text-anchor="middle" font-size="11" fill="%s">%s</text>'):format(num(px(v)), num(top + plot_h + 17), MUTED, num(v)))
  end
  add("</g>")
  if spec.vline and spec.vline >= x_lo and spec.vline <= x_hi then
    add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s" stroke-dasharray="4 3"/>'):format(num(px(spec.vline)),
      num(px(spec.vline)), num(top), num(top + plot_h), MUTED))
  end
  local zero_y = y_axis(0)
  add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s" stroke-width="1.2"/>'):format(num(left), num(W - right), num(zero_y), num(zero_y), INK))
  add(('<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s"/>'):format(num(left), num(left), num(top), num(top + plot_h), INK))

  add('<g class="lines">')
  for i, s in ipairs(series) do
    local color = colors[(i - 1) % #colors + 1]
    local name = esc(s.name or ("series " .. i))
    local run_pts = {}
    local function flush()
      if #run_pts > 1 then
        add(('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'):format(color, table.concat(run_pts, " ")))
      end
      run_pts = {}
    end
    for j = 1, #xs do
      local v = s.values[j]
      if finite(v) then run_pts[#run_pts + 1] = num(px(xs[j])) .. "," .. num(y_axis(v)) else flush() end
    end
    flush()
    for j = 1, #xs do
      local v = s.values[j]
      if finite(v) then
        add(('<circle cx="%s" cy="%s" r="3.5" fill="%s"><title>%s — %s: %s</title></circle>'):format(num(px(xs[j])),
          num(y_axis(v)), color, name, cats[j], esc(format_value(v, spec.percent))))
      end
    end
  end
  add("</g>")
  return close_svg(add, out, spec.xlabel, (left + W - right) / 2, H)
end

return svg
