-- knwb.facts: relation / fact / template sets.
-- Two layouts are read: the project's own (a facts TSV "relation<TAB>subject<TAB>object" plus a
-- templates YAML: relation -> {label, templates = {{text, held_out}}}), and PARAREL's (a folder
-- of P*.jsonl pattern files {"pattern": "[X] was born in [Y] ."} and a folder of P*.jsonl fact
-- files {"sub_label", "obj_label", "uuid"}). Both give the same structure:
--   set.relations = { {id=, label=, templates={ {text=, held_out=} }, facts={ {subject=, object=, uuid=} } } }
-- A prompt puts the subject in [X] and [MASK] in [Y]; the answer is the object.
local facts = {}

local function read_lines(path)
  local f, err = io.open(path, "r")
  if not f then error(string.format("%s: cannot read fact file (%s)", path, err), 0) end
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = (line:gsub("\r$", "")) end
  f:close()
  return lines
end

local function wanted(opts, id)
  if not opts.relations or #opts.relations == 0 then return true end
  for _, r in ipairs(opts.relations) do if r == id then return true end end
  return false
end

local function check_template(path, rel, text)
  local nx = select(2, text:gsub("%[X%]", ""))
  local ny = select(2, text:gsub("%[Y%]", ""))
  if nx ~= 1 or ny ~= 1 then
    error(string.format("%s: relation %s: template %q must hold [X] and [Y] exactly once each", path, rel, text), 0)
  end
end

--- facts.load{facts = "data/facts.tsv", templates = "data/templates.yaml", relations = {ids}}
function facts.load(opts)
  local yaml = require "knwb.yaml"
  local tpl = yaml.load(opts.templates)
  if type(tpl) ~= "table" then error(opts.templates .. ": expected a mapping of relation ids", 0) end
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
          local t = tpl[rel]
          if type(t) ~= "table" or type(t.templates) ~= "table" then
            error(string.format("%s:%d: relation %s has no templates in %s", opts.facts, n, rel, opts.templates), 0)
          end
          r = { id = rel, label = t.label or rel, templates = {}, facts = {} }
          for _, e in ipairs(t.templates) do
            local text = type(e) == "table" and e.text or e
            check_template(opts.templates, rel, text)
            r.templates[#r.templates + 1] = { text = text, held_out = type(e) == "table" and e.held_out == true }
          end
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
  local p = io.popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  local out = {}
  for name in p:lines() do
    if name:match("^P%d+%.jsonl$") then out[#out + 1] = name end
  end
  p:close()
  return out
end

local function read_jsonl(path)
  local json = require "knwb.json"
  local out = {}
  for n, line in ipairs(read_lines(path)) do
    if line:match("%S") then
      local ok, v = pcall(json.decode, line, path .. ":" .. n)
      if not ok then error(v, 0) end
      out[#out + 1] = v
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
      local pats = read_jsonl(opts.patterns .. "/" .. name)
      local r = { id = id, label = id, templates = {}, facts = {} }
      for _, p in ipairs(pats) do
        if type(p.pattern) ~= "string" then error(string.format("%s/%s: a line lacks \"pattern\"", opts.patterns, name), 0) end
        check_template(opts.patterns .. "/" .. name, id, p.pattern)
        r.templates[#r.templates + 1] = { text = p.pattern, held_out = false }
      end
      if #r.templates < min_t then
        set.dropped[#set.dropped + 1] = { id = id, reason = string.format("%d templates (< %d)", #r.templates, min_t) }
      else
        local fpath = opts.facts .. "/" .. name
        for n, f in ipairs(read_jsonl(fpath)) do
          if type(f.sub_label) ~= "string" or type(f.obj_label) ~= "string" then
            error(string.format("%s:%d: expected \"sub_label\" and \"obj_label\" strings", fpath, n), 0)
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
--- drops relations left empty. Returns the number of facts dropped per relation.
function facts.filter_single_token(set, model)
  local dropped = {}
  local kept = {}
  for _, r in ipairs(set.relations) do
    local keep = {}
    for _, f in ipairs(r.facts) do
      local id = model:id(f.object)
      if id then f.object_id = id; keep[#keep + 1] = f end
    end
    dropped[r.id] = #r.facts - #keep
    r.facts = keep
    if #keep > 0 then kept[#kept + 1] = r end
  end
  set.relations = kept
  return dropped
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
