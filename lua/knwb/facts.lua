-- knwb.facts: relation / fact / template sets.
-- Two layouts are read: the project's own (a facts TSV "relation<TAB>subject<TAB>object" plus a
-- templates YAML: relation -> {label, templates = {{text, held_out}}}), and PARAREL's (a folder
-- of P*.jsonl pattern files {"pattern": "[X] was born in [Y] ."} and a folder of P*.jsonl fact
-- files {"sub_label", "obj_label", "uuid"}). Both give the same structure:
--   set.relations = { {id=, label=, templates={ {text=, held_out=} }, facts={ {subject=, object=, uuid=} } } }
-- A prompt puts the subject in [X] and [MASK] in [Y]; the answer is the object.
local facts = {}

local kio = require "knwb.io"

-- Caps on what a fact-set reader accepts (the whole file is read at once).
facts.MAX_FACTS_BYTES = 256 * 1024 * 1024
facts.MAX_TEMPLATES_BYTES = 16 * 1024 * 1024

local function read_lines(path)
  local text = kio.read_file(path, facts.MAX_FACTS_BYTES, "a fact file")
  local lines = {}
  for line in text:gmatch("([^\n]*)\n?") do lines[#lines + 1] = (line:gsub("\r$", "")) end
  -- gmatch yields one empty match past a final newline
  if lines[#lines] == "" then lines[#lines] = nil end
  return lines
end

-- What a value is, for messages: "null", "a number (5)", "a string", "a list", "a mapping".
local function what(v)
  local yaml = require "knwb.yaml"
  if v == nil or v == yaml.null then return "null" end
  if type(v) == "number" then return ("a number (%s)"):format(tostring(v)) end
  if type(v) == "boolean" then return ("a boolean (%s)"):format(tostring(v)) end
  if type(v) == "string" then return "a string" end
  if type(v) == "table" then return (next(v) == nil or v[1] ~= nil) and "a list" or "a mapping" end
  return type(v)
end

local function wanted(opts, id)
  if not opts.relations or #opts.relations == 0 then return true end
  for _, r in ipairs(opts.relations) do if r == id then return true end end
  return false
end

-- where: "file:line:col: key" (or "file:line") naming the template in messages.
local function check_template(where, text)
  local nx = select(2, text:gsub("%[X%]", ""))
  local ny = select(2, text:gsub("%[Y%]", ""))
  if nx ~= 1 or ny ~= 1 then
    error(string.format("%s: template %q must hold [X] and [Y] exactly once each", where, text), 0)
  end
end

-- The templates of relation rel from the templates YAML (tpl, with yaml.loads' marks): a list of
-- strings or {text = string, held_out = boolean} mappings. Errors name file:line:col and key.
local function relation_templates(path, tpl, marks, rel)
  local function at(key) return ("%s:%s: %s"):format(path, marks[key] or marks[rel] or "1:1", key) end
  local t = tpl[rel]
  if type(t) ~= "table" or t[1] ~= nil then
    error(("%s: expected a mapping {label, templates}, got %s"):format(at(rel), what(t)), 0)
  end
  if t.label ~= nil and type(t.label) ~= "string" then
    error(("%s: expected a string, got %s"):format(at(rel .. ".label"), what(t.label)), 0)
  end
  local list = t.templates
  if type(list) ~= "table" or (next(list) ~= nil and list[1] == nil) then
    error(("%s: expected a list of templates, got %s"):format(at(rel .. ".templates"), what(list)), 0)
  end
  local out = {}
  for i = 1, #list do
    local e, key = list[i], ("%s.templates[%d]"):format(rel, i)
    local text, held = e, false
    if type(e) == "table" and e[1] == nil and next(e) ~= nil then
      text, held = e.text, e.held_out
      if type(text) ~= "string" then
        error(("%s: expected a template string, got %s"):format(at(key .. ".text"), what(text)), 0)
      end
      if held == nil then held = false end
      if type(held) ~= "boolean" then
        error(("%s: expected true or false, got %s"):format(at(key .. ".held_out"), what(held)), 0)
      end
      for k in pairs(e) do
        if k ~= "text" and k ~= "held_out" then error(("%s: unknown key (known: held_out, text)"):format(at(key .. "." .. tostring(k))), 0) end
      end
    elseif type(e) ~= "string" then
      error(("%s: expected a template string or {text: ..., held_out: ...}, got %s"):format(at(key), what(e)), 0)
    end
    check_template(at(key), text)
    out[#out + 1] = { text = text, held_out = held }
  end
  return out, t.label or rel
end

--- facts.load{facts = "data/facts.tsv", templates = "data/templates.yaml", relations = {ids}}
function facts.load(opts)
  local yaml = require "knwb.yaml"
  local text = kio.read_file(opts.templates, facts.MAX_TEMPLATES_BYTES, "a templates file")
  local tpl, marks = yaml.loads(text, opts.templates)
  if type(tpl) ~= "table" or (next(tpl) ~= nil and tpl[1] ~= nil) then
    error(("%s:1:1: expected a mapping of relation ids to {label, templates}, got %s"):format(opts.templates, what(tpl)), 0)
  end
  local set = { relations = {}, source = opts.facts }
  local by_id = {}
  local lines = read_lines(opts.facts)
  if not lines[1] or not lines[1]:match("^relation\tsubject\tobject") then
    error(string.format("%s:1: expected the header \"relation<TAB>subject<TAB>object\"", opts.facts), 0)
  end
  for n = 2, #lines do
    local line = lines[n]
    if line ~= "" then
      local rel, subj, obj = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
      if not rel then error(string.format("%s:%d: expected 3 tab-separated fields", opts.facts, n), 0) end
      if wanted(opts, rel) then
        local r = by_id[rel]
        if not r then
          if tpl[rel] == nil then
            error(string.format("%s:%d: relation %s has no templates in %s", opts.facts, n, rel, opts.templates), 0)
          end
          local templates, label = relation_templates(opts.templates, tpl, marks, rel)
          r = { id = rel, label = label, templates = templates, facts = {} }
          by_id[rel] = r
          set.relations[#set.relations + 1] = r
        end
        r.facts[#r.facts + 1] = { subject = subj, object = obj, relation = rel }
      end
    end
  end
  if opts.relations then
    for _, id in ipairs(opts.relations) do
      if not by_id[id] then
        local known = {}
        for k in pairs(tpl) do known[#known + 1] = k end
        table.sort(known)
        error(string.format("unknown relation %q (known: %s)", id, table.concat(known, ", ")), 0)
      end
    end
  end
  table.sort(set.relations, function(a, b) return a.id < b.id end)
  return set
end

local function list_jsonl(dir)
  local out = {}
  if kio.stat(dir) ~= "directory" then return out end
  for _, name in ipairs(kio.list(dir)) do
    if name:match("^P%d+%.jsonl$") then out[#out + 1] = name end
  end
  return out
end

-- The JSON objects of a JSON Lines file; an error names path:line.
local function read_jsonl(path, kind)
  local json = require "knwb.json"
  local out = {}
  for n, line in ipairs(read_lines(path)) do
    if line:match("%S") then
      local where = path .. ":" .. n
      local ok, v = pcall(json.decode, line, where)
      if not ok then
        v = tostring(v)
        if v:sub(1, #where) ~= where then v = where .. ": " .. v end
        error(v, 0)
      end
      if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) or next(v) == nil then
        error(("%s: expected a JSON object (%s), got %s"):format(where, kind, what(v)), 0)
      end
      out[#out + 1] = { value = v, line = n }
    end
  end
  return out
end

--- facts.load_pararel{patterns = dir, facts = dir, relations = {ids}, min_templates = 4}
--- Relations with fewer than min_templates patterns are dropped, as the paper does (<= 3).
function facts.load_pararel(opts)
  local min_t = opts.min_templates or 4
  local set = { relations = {}, source = opts.facts, dropped = {} }
  local files = list_jsonl(opts.patterns)
  if #files == 0 then error(opts.patterns .. ": no P*.jsonl pattern files", 0) end
  for _, name in ipairs(files) do
    local id = name:gsub("%.jsonl$", "")
    if wanted(opts, id) then
      local ppath = opts.patterns .. "/" .. name
      local pats = read_jsonl(ppath, "{\"pattern\": ...}")
      local r = { id = id, label = id, templates = {}, facts = {} }
      for _, p in ipairs(pats) do
        local where = ppath .. ":" .. p.line
        if type(p.value.pattern) ~= "string" then
          error(("%s: key \"pattern\": expected a string, got %s"):format(where, what(p.value.pattern)), 0)
        end
        check_template(where .. ": pattern", p.value.pattern)
        r.templates[#r.templates + 1] = { text = p.value.pattern, held_out = false }
      end
      if #r.templates < min_t then
        set.dropped[#set.dropped + 1] = { id = id, reason = string.format("%d templates (< %d)", #r.templates, min_t) }
      else
        local fpath = opts.facts .. "/" .. name
        for _, e in ipairs(read_jsonl(fpath, "{\"sub_label\": ..., \"obj_label\": ...}")) do
          local f = e.value
          for _, k in ipairs { "sub_label", "obj_label" } do
            if type(f[k]) ~= "string" then
              error(("%s:%d: key \"%s\": expected a string, got %s"):format(fpath, e.line, k, what(f[k])), 0)
            end
          end
          r.facts[#r.facts + 1] = { subject = f.sub_label, object = f.obj_label, uuid = f.uuid, relation = id }
        end
        set.relations[#set.relations + 1] = r
      end
    end
  end
  return set
end

--- The prompts of a fact: { {text=, held_out=} }; split is "all", "train" or "held_out".
function facts.prompts(rel, fact, split)
  split = split or "all"
  local out = {}
  for _, t in ipairs(rel.templates) do
    if split == "all" or (split == "held_out") == t.held_out then
      local text = t.text:gsub("%[X%]", function() return fact.subject end):gsub("%[Y%]", "[MASK]")
      out[#out + 1] = { text = text, held_out = t.held_out }
    end
  end
  return out
end

--- The sentence stating a fact through a template (object written in).
function facts.sentence(template, fact)
  return (template:gsub("%[X%]", function() return fact.subject end):gsub("%[Y%]", function() return fact.object end))
end

--- Keeps the facts whose object is one token of the model's vocabulary (the paper's filter) and
--- drops relations left empty. Returns the number of facts dropped per relation. Dropped facts
--- are announced on stderr (how many, and the first few with their pieces), unless opts.quiet;
--- the list of all of them is the second result.
function facts.filter_single_token(set, model, opts)
  local dropped, all = {}, {}
  local kept = {}
  for _, r in ipairs(set.relations) do
    local keep = {}
    for _, f in ipairs(r.facts) do
      local id = model:id(f.object)
      if id then
        f.object_id = id; keep[#keep + 1] = f
      else
        all[#all + 1] = { relation = r.id, subject = f.subject, object = f.object }
      end
    end
    dropped[r.id] = #r.facts - #keep
    r.facts = keep
    if #keep > 0 then kept[#kept + 1] = r end
  end
  set.relations = kept
  if #all > 0 and not (opts and opts.quiet) then
    local shown = {}
    for i = 1, math.min(5, #all) do
      local d, pieces = all[i], {}
      local ok, ids = pcall(model.tokenize, model, d.object)
      for j, t in ipairs(ok and ids or {}) do pieces[j] = model:token(t) end
      shown[i] = ("%s %q (%s)"):format(d.relation, d.object,
        #pieces == 0 and "no tokens" or table.concat(pieces, " | "))
    end
    io.stderr:write(("facts: dropped %d fact%s of %s whose object is not one token of the model's vocabulary: %s%s\n")
      :format(#all, #all == 1 and "" or "s", set.source or "the set", table.concat(shown, ", "),
        #all > #shown and (", and %d more"):format(#all - #shown) or ""))
  end
  return dropped, all
end

--- Majority baseline of a relation: the share of facts whose object is the most common one.
function facts.majority(rel)
  local count, best, arg = {}, 0, nil
  for _, f in ipairs(rel.facts) do
    count[f.object] = (count[f.object] or 0) + 1
    if count[f.object] > best or (count[f.object] == best and f.object < arg) then best, arg = count[f.object], f.object end
  end
  return #rel.facts > 0 and best / #rel.facts or 0, arg
end

--- Total number of facts in a set.
function facts.count(set)
  local n = 0
  for _, r in ipairs(set.relations) do n = n + #r.facts end
  return n
end

function facts.relation(set, id)
  for _, r in ipairs(set.relations) do if r.id == id then return r end end
  local known = {}
  for _, r in ipairs(set.relations) do known[#known + 1] = r.id end
  error(string.format("unknown relation %q (known: %s)", id, table.concat(known, ", ")), 2)
end

return facts
