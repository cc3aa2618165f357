-- config.lua: YAML configs checked against a schema, with defaults and command-line overrides.
--
-- A schema is a tree of plain Lua tables (a node per key), so an experiment declares its settings
-- as data and gets validation, defaults, `--set` overrides and `--help` text from one place:
--
--   local schema = { type = "record", fields = {
--     model = { type = "string", doc = "Hugging Face model folder" },            -- required
--     attribution = { type = "record", doc = "Integrated gradients", fields = {
--       steps = { type = "integer", min = 1, default = 20, doc = "Riemann steps m" },
--       quadrature = { type = "enum", values = { "riemann", "trapezoid" }, default = "riemann" },
--     } },
--     relations = { type = "list", of = { type = "string" }, default = {} },
--   } }
--
-- Node attributes (anything else is refused as a typo in the schema):
--   type      "integer" | "number" | "string" | "boolean" | "enum" | "list" | "map" | "record" | "any"
--   doc       one-line description, shown by describe()
--   default   value used when the key is absent or null; copied, then checked like file data
--   optional  true: the key may be absent (or null) and then has no value (nil)
--             A key with neither default nor optional is required, except a record, which is built
--             from its fields' defaults.
--   min, max  inclusive bounds (integer, number);  gt, lt  exclusive bounds
--   values    allowed values (enum)
--   of        node for every item (list) or every value (map; keys are free strings)
--   min_items, max_items   bounds on a list's length
--   fields    { name = node } (record; other keys are errors)
--   check     function(value, path) -> nil, or a message saying what is wrong
--
-- A null value (`key:`, `key: ~`, `--set key=`) takes the default where there is one, means "no
-- value" (nil) for an optional key, and is an error otherwise. All problems of a file are
-- reported at once, one "file:line:col: key.path: message" per line, in file order.
--
-- Validated configs are plain tables: integers are Lua integers, numbers Lua floats, absent
-- optional keys nil. It is not a general JSON-Schema: no unions, no references.
local yaml = require "knwb.yaml"
local json = require "knwb.json"

local kio = require "knwb.io"

local config = {}

-- The largest config file read (configs are a few kB; this refuses a wrong file quickly).
config.MAX_BYTES = 4 * 1024 * 1024

local null = yaml.null

local TYPES = {
  integer = { min = true, max = true, gt = true, lt = true },
  number = { min = true, max = true, gt = true, lt = true },
  string = {},
  boolean = {},
  enum = { values = true },
  list = { of = true, min_items = true, max_items = true },
  map = { of = true },
  record = { fields = true },
  any = {},
}
local COMMON = { type = true, doc = true, default = true, optional = true, check = true }

---------------------------------------------------------------------------------------------------
-- Schema checking: a schema is code written by a person, so its mistakes are raised at once.

local checked = setmetatable({}, { __mode = "k" })

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function join_path(path, key)
  if type(key) == "number" then return ("%s[%d]"):format(path, key) end
  return path == "" and key or path .. "." .. key
end

local function check_schema(node, path)
  local function bad(msg) error(("config schema: %s: %s"):format(path == "" and "(top)" or path, msg), 0) end
  if type(node) ~= "table" then bad("a schema node must be a table, got " .. type(node)) end
  local extra = TYPES[node.type]
  if not extra then bad(("unknown type %s (types: %s)"):format(tostring(node.type), table.concat(sorted_keys(TYPES), ", "))) end
  for k in pairs(node) do
    if not COMMON[k] and not extra[k] then bad(("attribute '%s' does not apply to type %s"):format(tostring(k), node.type)) end
  end
  if node.doc ~= nil and type(node.doc) ~= "string" then bad("doc must be a string") end
  if node.check ~= nil and type(node.check) ~= "function" then bad("check must be a function") end
  for _, b in ipairs { "min", "max", "gt", "lt" } do
    if node[b] ~= nil and type(node[b]) ~= "number" then bad(b .. " must be a number") end
  end
  if node.type == "enum" and (type(node.values) ~= "table" or #node.values == 0) then
    bad("an enum needs a non-empty list of values")
  end
  if node.type == "list" or node.type == "map" then
    if node.of == nil then bad("a " .. node.type .. " needs `of`, the node of its items") end
    check_schema(node.of, path .. (node.type == "list" and "[]" or ".*"))
  end
  if node.type == "record" then
    if type(node.fields) ~= "table" then bad("a record needs `fields`") end
    for _, name in ipairs(sorted_keys(node.fields)) do
      if type(name) ~= "string" then bad("field names must be strings") end
      check_schema(node.fields[name], join_path(path, name))
    end
  end
end

local function ensure_schema(schema)
  if not checked[schema] then
    check_schema(schema, "")
    checked[schema] = true
  end
end

---------------------------------------------------------------------------------------------------
-- Describing values and expectations in messages.

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

local function is_object_marked(t)
  return getmetatable(t) == getmetatable(json.object())
end

local function quote(s)
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or ("\\x%02X"):format(c:byte())
  end) .. '"'
end

local function show(v)
  if v == null or v == nil then return "null" end
  if type(v) == "string" then return quote(v) end
  if type(v) == "table" then
    if next(v) == nil then return is_object_marked(v) and "an empty mapping" or "an empty list" end
    return is_array(v) and "a list" or "a mapping"
  end
  return tostring(v)
end

local function inline(v)
  if type(v) == "table" then return json.encode_line(v) end
  return (yaml.dump(v):gsub("\n$", ""))
end

local function bounds(node)
  if node.min and node.max and not node.gt and not node.lt then
    return (" in [%s, %s]"):format(inline(node.min), inline(node.max))
  end
  local parts = {}
  if node.min then parts[#parts + 1] = ">= " .. inline(node.min) end
  if node.gt then parts[#parts + 1] = "> " .. inline(node.gt) end
  if node.max then parts[#parts + 1] = "<= " .. inline(node.max) end
  if node.lt then parts[#parts + 1] = "< " .. inline(node.lt) end
  return #parts > 0 and " " .. table.concat(parts, " and ") or ""
end

local function enum_values(node)
  local vs = {}
  for i, v in ipairs(node.values) do vs[i] = inline(v) end
  return table.concat(vs, ", ")
end

-- "an integer >= 1", "one of riemann, trapezoid", ...: what a value of this node must be.
local function expectation(node)
  local t = node.type
  if t == "integer" then return "an integer" .. bounds(node) end
  if t == "number" then return "a number" .. bounds(node) end
  if t == "string" then return "a string" end
  if t == "boolean" then return "true or false" end
  if t == "enum" then return "one of " .. enum_values(node) end
  if t == "list" then return "a list" end
  return "a mapping"
end

-- The short type column of describe(): "integer >= 1", "list of string", ...
local function type_text(node)
  local t = node.type
  if t == "integer" or t == "number" then return t .. bounds(node) end
  if t == "enum" then return "one of " .. enum_values(node) end
  if t == "list" then
    local n = ""
    if node.min_items or node.max_items then
      n = (" (%s..%s items)"):format(node.min_items or 0, node.max_items or "")
    end
    return "list of " .. type_text(node.of) .. n
  end
  if t == "map" then return "map of " .. type_text(node.of) end
  return t
end

local function edit_distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- "(known: a, b, c; did you mean b?)"
local function known_keys(fields, key)
  local names = sorted_keys(fields)
  local best, best_d
  for _, name in ipairs(names) do
    local d = edit_distance(key, name)
    if d <= math.max(1, #key // 3) and (not best_d or d < best_d) then best, best_d = name, d end
  end
  local text = "(known: " .. table.concat(names, ", ")
  if best then text = text .. "; did you mean " .. best .. "?" end
  return text .. ")"
end

---------------------------------------------------------------------------------------------------
-- Validation.

local function parent_path(path)
  return path:match("^(.*)%[%d+%]$") or path:match("^(.*)%.[^.]*$") or ""
end

-- "file:line:col", or the override that set the value, for the nearest path that has a mark.
local function locate(ctx, path, use_key)
  local p = path
  while true do
    local m = (use_key and p == path and ctx.keymarks[p]) or ctx.marks[p]
    if m then
      local line, col = m:match("^(%d+):(%d+)$")
      if line then return ctx.file .. ":" .. m, tonumber(line), tonumber(col) end
      return m
    end
    if p == "" then return ctx.file end
    p = parent_path(p)
  end
end

local function report(ctx, path, msg, use_key)
  local where, line, col = locate(ctx, path, use_key)
  local text = path == "" and ("%s: %s"):format(where, msg) or ("%s: %s: %s"):format(where, path, msg)
  ctx.errors[#ctx.errors + 1] = { text = text, line = line or math.huge, col = col or 0, seq = #ctx.errors }
end

local function deep_copy(v)
  if type(v) ~= "table" or v == null then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deep_copy(x) end
  return setmetatable(t, getmetatable(v))
end

local validate_node

local function check_range(node, v)
  return not ((node.min and v < node.min) or (node.max and v > node.max) or (node.gt and v <= node.gt)
    or (node.lt and v >= node.lt))
end

local KINDS = {}

function KINDS.integer(ctx, node, v, path)
  local i = math.type(v) == "integer" and v or (math.type(v) == "float" and math.tointeger(v))
  if not i or not check_range(node, i) then
    return report(ctx, path, ("expected %s, got %s"):format(expectation(node), show(v)))
  end
  return i
end

function KINDS.number(ctx, node, v, path)
  if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then
    return report(ctx, path, ("expected %s, got %s (infinities and NaN are never a setting)"):format(expectation(node), show(v)))
  end
  if type(v) ~= "number" or not check_range(node, v) then
    return report(ctx, path, ("expected %s, got %s"):format(expectation(node), show(v)))
  end
  return v + 0.0
end

function KINDS.string(ctx, node, v, path)
  if type(v) ~= "string" then
    local hint = (type(v) == "number" or type(v) == "boolean") and (" (quote it to make it a string: \"%s\")"):format(inline(v)) or ""
    return report(ctx, path, ("expected %s, got %s%s"):format(expectation(node), show(v), hint))
  end
  local nul = v:find("\0", 1, true)
  if nul then
    -- a string goes on to C (a path, a prompt) where a NUL would silently cut it
    return report(ctx, path, ("%s has a NUL byte at offset %d; strings may not hold NUL"):format(show(v), nul - 1))
  end
  return v
end

function KINDS.boolean(ctx, node, v, path)
  if type(v) ~= "boolean" then
    return report(ctx, path, ("expected %s, got %s"):format(expectation(node), show(v)))
  end
  return v
end

function KINDS.enum(ctx, node, v, path)
  for _, allowed in ipairs(node.values) do
    if v == allowed then return v end
  end
  return report(ctx, path, ("expected %s, got %s"):format(expectation(node), show(v)))
end

function KINDS.any(_, _, v)
  return deep_copy(v)
end

function KINDS.list(ctx, node, v, path)
  if type(v) ~= "table" or v == null or (next(v) ~= nil and not is_array(v)) or (next(v) == nil and is_object_marked(v)) then
    return report(ctx, path, ("expected a list, got %s"):format(show(v)))
  end
  if (node.min_items and #v < node.min_items) or (node.max_items and #v > node.max_items) then
    local want = node.max_items and node.min_items and ("%d to %d"):format(node.min_items, node.max_items)
      or node.min_items and ("at least %d"):format(node.min_items) or ("at most %d"):format(node.max_items)
    report(ctx, path, ("expected a list of %s items, got %d"):format(want, #v))
  end
  local out = {}
  for i = 1, #v do out[i] = validate_node(ctx, node.of, v[i], join_path(path, i)) end
  return out
end

local function mapping(ctx, v, path)
  if type(v) ~= "table" or v == null or (next(v) ~= nil and is_array(v)) then
    report(ctx, path, ("expected a mapping, got %s"):format(show(v)))
    return false
  end
  for k in pairs(v) do
    if type(k) ~= "string" then
      report(ctx, path, ("mapping keys must be strings, got %s"):format(show(k)))
      return false
    end
  end
  return true
end

function KINDS.map(ctx, node, v, path)
  if not mapping(ctx, v, path) then return nil end
  local out = json.object()
  for _, k in ipairs(sorted_keys(v)) do out[k] = validate_node(ctx, node.of, v[k], join_path(path, k)) end
  return out
end

function KINDS.record(ctx, node, v, path)
  if not mapping(ctx, v, path) then return nil end
  local out = {}
  for _, k in ipairs(sorted_keys(v)) do
    if node.fields[k] == nil then
      local child = join_path(path, k)
      report(ctx, child, "unknown key " .. known_keys(node.fields, k), true)
    end
  end
  for _, k in ipairs(sorted_keys(node.fields)) do
    out[k] = validate_node(ctx, node.fields[k], v[k], join_path(path, k))
  end
  return out
end

function validate_node(ctx, node, v, path)
  if v == null then
    if node.optional then return nil end
    if node.default ~= nil then v = nil end
  end
  if v == nil then
    if node.default ~= nil then
      v = deep_copy(node.default)
    elseif node.optional then
      return nil
    elseif node.type == "record" then
      v = {}
    else
      report(ctx, path, ("missing (required: %s)"):format(expectation(node)))
      return nil
    end
  end
  local before = #ctx.errors
  local out = KINDS[node.type](ctx, node, v, path)
  if node.check and #ctx.errors == before and out ~= nil then
    local complaint = node.check(out, path)
    if complaint then report(ctx, path, tostring(complaint)) end
  end
  return out
end

local function raise(ctx)
  table.sort(ctx.errors, function(a, b)
    if a.line ~= b.line then return a.line < b.line end
    if a.col ~= b.col then return a.col < b.col end
    return a.seq < b.seq
  end)
  local lines = {}
  for i, e in ipairs(ctx.errors) do lines[i] = e.text end
  error(table.concat(lines, "\n"), 0)
end

-- config.validate(data, schema [, marks [, filename [, keymarks]]]) -> validated copy of data.
-- marks/keymarks map key paths to "line:col" (as yaml.load returns them) or to a whole location
-- such as "--set a.b=1". Every problem found is reported, one per line, in file order.
function config.validate(data, schema, marks, filename, keymarks)
  ensure_schema(schema)
  local ctx = { marks = marks or {}, keymarks = keymarks or {}, file = filename or "(config)", errors = {} }
  local out = validate_node(ctx, schema, data, "")
  if #ctx.errors > 0 then raise(ctx) end
  return out
end

---------------------------------------------------------------------------------------------------
-- Overrides: "key.path=value" with the value read as YAML ("50" -> 50, "[P17, P36]" -> a list,
-- "" -> null). A value meant for a string key stays the text as written ("--set tag=007").

-- "a.b[2].c" -> { "a", "b", 2, "c" }; nil if malformed.
local function split_path(text)
  local segs, pos = {}, 1
  while pos <= #text do
    local name, after = text:match("^([%w_%-]+)()", pos)
    if name then
      segs[#segs + 1] = name
    else
      local index
      index, after = text:match("^%[(%d+)%]()", pos)
      if not index then return nil end
      segs[#segs + 1] = tonumber(index)
    end
    pos = after
    if pos <= #text then
      local c = text:sub(pos, pos)
      if c == "." then
        pos = pos + 1
        if pos > #text then return nil end
      elseif c ~= "[" then
        return nil
      end
    end
  end
  return #segs > 0 and segs or nil
end

-- The schema node at a path, or nil and a message.
local function node_at(schema, segs)
  local node, path = schema, ""
  for _, seg in ipairs(segs) do
    local here = join_path(path, seg)
    if node.type == "any" then return node end
    if type(seg) == "number" then
      if node.type ~= "list" then return nil, ("%s is %s, not a list"):format(path == "" and "the config" or path, type_text(node)) end
      node = node.of
    elseif node.type == "record" then
      if not node.fields[seg] then return nil, ("unknown key %s %s"):format(here, known_keys(node.fields, seg)) end
      node = node.fields[seg]
    elseif node.type == "map" then
      node = node.of
    else
      return nil, ("%s is %s; it has no key %s"):format(path, type_text(node), seg)
    end
    path = here
  end
  return node
end

local function forget_marks(marks, path)
  for p in pairs(marks) do
    if p == path or p:sub(1, #path + 1) == path .. "." or p:sub(1, #path + 1) == path .. "[" then marks[p] = nil end
  end
end

local function apply_override(data, marks, keymarks, segs, value, origin)
  local t, path = data, ""
  for i, seg in ipairs(segs) do
    if type(seg) == "number" and seg > #t + 1 then
      error(("%s: %s has %d items; [%d] is past its end"):format(origin, path, #t, seg), 0)
    end
    path = join_path(path, seg)
    if i == #segs then
      t[seg] = value
    else
      if type(t[seg]) ~= "table" or t[seg] == null then t[seg] = {} end
      t = t[seg]
    end
  end
  forget_marks(marks, path)
  forget_marks(keymarks, path)
  marks[path], keymarks[path] = origin, origin
end

local function parse_override(text, schema)
  local origin = "--set " .. text
  local key, raw = text:match("^([^=]*)=(.*)$")
  if not key then error(origin .. ": expected KEY=VALUE, e.g. --set attribution.steps=50", 0) end
  local segs = split_path(key)
  if not segs then error(origin .. ": '" .. key .. "' is not a key path like attribution.steps or relations[2]", 0) end
  local node
  if schema then
    local why
    node, why = node_at(schema, segs)
    if not node then error(origin .. ": " .. why, 0) end
  end
  local ok, value = pcall(yaml.loads, raw, "value")
  if not ok then
    error(("%s: cannot read the value as YAML: %s"):format(origin, tostring(value):gsub("^value:%d+:%d+: ", "")), 0)
  end
  if value == nil then value = null end
  local wants_text = node and (node.type == "string" or (node.type == "enum" and type(node.values[1]) == "string"))
  if wants_text and type(value) ~= "string" and type(value) ~= "table" and value ~= null then value = raw end
  return segs, value, origin
end

-- config.apply_overrides(data, overrides [, schema [, marks [, keymarks]]]) -> data (changed in place).
-- overrides: a list of "key.path=value" strings, and/or string keys mapping key paths to Lua values.
function config.apply_overrides(data, overrides, schema, marks, keymarks)
  marks, keymarks = marks or {}, keymarks or {}
  if schema then ensure_schema(schema) end
  for i, text in ipairs(overrides or {}) do
    if type(text) ~= "string" then error(("override #%d: expected a \"key.path=value\" string, got %s"):format(i, type(text)), 2) end
    local segs, value, origin = parse_override(text, schema)
    apply_override(data, marks, keymarks, segs, value, origin)
  end
  for key, value in pairs(overrides or {}) do
    if type(key) == "string" then
      local origin = "override " .. key
      local segs = split_path(key)
      if not segs then error(origin .. ": not a key path like attribution.steps", 2) end
      if schema then
        local node, why = node_at(schema, segs)
        if not node then error(origin .. ": " .. why, 0) end
      end
      apply_override(data, marks, keymarks, segs, value, origin)
    end
  end
  return data
end

-- config.load(path, schema [, overrides]) -> cfg
-- path nil: start from an empty config (all defaults). schema nil: only parse and override.
function config.load(path, schema, overrides)
  local data, marks, keymarks = {}, {}, {}
  local file = path or "(defaults)"
  if path then
    local text = kio.read_file(path, config.MAX_BYTES, "a config file")
    data, marks, keymarks = yaml.loads(text, path)
    if data == nil or data == null then
      data = {}
    elseif type(data) ~= "table" or (next(data) ~= nil and is_array(data)) then
      error(("%s:%s: a config must be a mapping of keys to values, got %s"):format(path, marks[""] or "1:1", show(data)), 0)
    end
  end
  config.apply_overrides(data, overrides, schema, marks, keymarks)
  if not schema then return data end
  return config.validate(data, schema, marks, file, keymarks)
end

-- config.dump(cfg) -> YAML text that config.load reads back to the same cfg.
function config.dump(cfg)
  return yaml.dump(cfg)
end

---------------------------------------------------------------------------------------------------
-- describe(schema): every key with its type, default and doc, for an experiment's --help.

local function wrap(text, width, prefix)
  local lines, line = {}, ""
  for word in text:gmatch("%S+") do
    if #line > 0 and #line + 1 + #word > width then
      lines[#lines + 1] = prefix .. line
      line = word
    else
      line = #line > 0 and line .. " " .. word or word
    end
  end
  if #line > 0 then lines[#lines + 1] = prefix .. line end
  return lines
end

function config.describe(schema)
  ensure_schema(schema)
  local rows = {}
  local function walk(node, path)
    if path ~= "" then
      local t = type_text(node)
      if node.default ~= nil then
        t = t .. ", default " .. inline(node.default)
      elseif node.optional then
        t = t .. ", optional"
      elseif node.type ~= "record" then
        t = t .. ", required"
      end
      rows[#rows + 1] = { key = path, type = t, doc = node.doc }
    end
    if node.type == "record" then
      for _, k in ipairs(sorted_keys(node.fields)) do walk(node.fields[k], join_path(path, k)) end
    end
  end
  walk(schema, "")
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #r.key) end
  width = math.min(width, 30)
  local out = {}
  for _, r in ipairs(rows) do
    if #r.key > width then
      out[#out + 1] = "  " .. r.key
      out[#out + 1] = "  " .. (" "):rep(width) .. "  " .. r.type
    else
      out[#out + 1] = ("  %-" .. width .. "s  %s"):format(r.key, r.type)
    end
    if r.doc then
      for _, l in ipairs(wrap(r.doc, 74 - width, "  " .. (" "):rep(width) .. "    ")) do out[#out + 1] = l end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return config
