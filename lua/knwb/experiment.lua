-- knwb.experiment: the inputs every experiment script opens the same way: refusing bad input
-- with a message and exit status 2 (no traceback, as for config errors), finding relative paths
-- from the working directory and then from the repository, loading the model and the fact set;
-- and what the editing experiments share: the key of a fact, the guard that lets an interrupted
-- run resume only with its own config, the facts matched to their knowledge-neuron records, and
-- the random control drawn from a fact's own stream.
local knwb = require "knwb"
local facts = require "knwb.facts"

local X = {}

--- X.refuse(name, msg): print "name: msg" on stderr and exit with status 2.
function X.refuse(name, msg)
  io.stderr:write(name, ": ", tostring(msg):gsub("^.-:%d+: ", ""), "\n")
  os.exit(2)
end

function X.exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

--- A relative path is looked up from the working directory, then from the repository, so the
--- experiments run from anywhere.
function X.in_repo(path)
  if path and path ~= "" and path:sub(1, 1) ~= "/" and not X.exists(path) and X.exists(knwb.root .. "/" .. path) then
    return knwb.root .. "/" .. path
  end
  return path
end

--- The `neurons` setting of a config: nil when empty, else the path found by X.in_repo.
function X.neurons_path(path)
  if path == nil or path == "" then return nil end
  --- X.record_key(r) -> "relation\tsubject\tobject": the key of a fact in neurons.jsonl records
--- ({relation =, subject =, object =}).
function X.record_key(r) return r.relation .. "\t" .. r.subject .. "\t" .. r.object end

--- X.line_key(line) -> "relation\tfact\tsubject\tobject": the key of a fact in a results file
--- ({relation =, fact = its index in the relation, subject =, object =}).
function X.line_key(l) return table.concat({ l.relation, l.fact, l.subject, l.object }, "\t") end

--- X.resume(name, run, cfg, file) -> lines: the lines already in the run's `file` (JSON Lines),
--- after checking that the run's config.yaml is this config (else refuse: the results would mix
--- two configs); then writes the config. An empty or new run directory gives {}.
function X.resume(name, run, cfg, file)
  local lines = run:read_jsonl(file)
  if #lines > 0 then
    local f = io.open(run:path("config.yaml"), "r")
    local old = f and f:read("a") or ""
    if f then f:close() end
    if old:gsub("^#[^\n]*\n", "") ~= require("knwb.config").dump(cfg) then
      X.refuse(name, ("%s holds results of a run with another config (see its config.yaml); use another --out"):format(run.dir))
    end
  end
  run:write_config(cfg)
  return lines
end

--- X.fact_entries(name, set, records) -> list, by_relation: one entry per fact of the set, in
--- relation and fact order, { rel =, b = index in the relation, fact =, rec = its neurons record,
--- key = X.line_key's }, and the entries per relation id. A fact without a record is refused.
function X.fact_entries(name, set, records)
  local record_of = {}
  for _, r in ipairs(records) do record_of[X.record_key(r)] = r end
  local list, by = {}, {}
  for _, rel in ipairs(set.relations) do
    by[rel.id] = {}
    for b, f in ipairs(rel.facts) do
      local rec = record_of[X.record_key { relation = rel.id, subject = f.subject, object = f.object }]
      if not rec then X.refuse(name, ("no neurons for fact %s (%s, %s)"):format(rel.id, f.subject, f.object)) end
      local e = { rel = rel, b = b, fact = f, rec = rec,
        key = X.line_key { relation = rel.id, fact = b, subject = f.subject, object = f.object } }
      list[#list + 1] = e
      table.insert(by[rel.id], e)
    end
  end
  return list, by
end

--- X.random_control(e, neurons, width, seed [, exclude]) -> as many random neurons as `neurons`,
--- in the same layers (knwb.random.matched), from the stream of fact entry e: the same fact
--- draws the same control wherever it is computed.
function X.random_control(e, neurons, width, seed, exclude)
  local random = require "knwb.random"
  return random.matched(neurons, width, random.rng(seed, "random", e.rel.id, e.b, e.fact.subject, e.fact.object),
    { exclude = exclude })
end

return X.in_repo(path)
end

--- X.load_model(name, path) -> model, or refuse with a message that says how to get the default model.
function X.load_model(name, path)
  local ok, model = pcall(knwb.load, path)
  if not ok then
    X.refuse(name, string.format("cannot load the model %s: %s%s", path, tostring(model):gsub("^.-:%d+: ", ""),
      (path == "default" or path == "") and " (the default model is built by `make model`)" or ""))
  end
  return model
end

--- X.load_facts(name, fcfg, model) -> the fact set of a config's `facts` record, prepared for the
--- model (single-token objects, enough templates, max_facts). An unknown relation, a missing
--- file or an empty result is refused.
function X.load_facts(name, fc, model)
  local ok, set = pcall(function()
    local fpath, tpath = X.in_repo(fc.facts), X.in_repo(fc.templates)
    local s = fc.format == "pararel"
      and facts.load_pararel { patterns = tpath, facts = fpath, relations = fc.relations, min_templates = fc.min_templates }
      or facts.load { facts = fpath, templates = tpath, relations = fc.relations }
    for _, id in ipairs(fc.relations or {}) do
      local found = false
      for _, r in ipairs(s.relations) do found = found or r.id == id end
      for _, d in ipairs(s.dropped or {}) do found = found or d.id == id end
      if not found then error(string.format("unknown relation %q (not in %s)", id, fc.facts), 0) end
    end
    if model then require("knwb.neurons").prepare(s, model, fc) end
    return s
  end)
  if not ok then X.refuse(name, set) end
  return set
end

--- X.record_key(r) -> "relation\tsubject\tobject": the key of a fact in neurons.jsonl records
--- ({relation =, subject =, object =}).
function X.record_key(r) return r.relation .. "\t" .. r.subject .. "\t" .. r.object end

--- X.line_key(line) -> "relation\tfact\tsubject\tobject": the key of a fact in a results file
--- ({relation =, fact = its index in the relation, subject =, object =}).
function X.line_key(l) return table.concat({ l.relation, l.fact, l.subject, l.object }, "\t") end

--- X.resume(name, run, cfg, file) -> lines: the lines already in the run's `file` (JSON Lines),
--- after checking that the run's config.yaml is this config (else refuse: the results would mix
--- two configs); then writes the config. An empty or new run directory gives {}.
function X.resume(name, run, cfg, file)
  local lines = run:read_jsonl(file)
  if #lines > 0 then
    local f = io.open(run:path("config.yaml"), "r")
    local old = f and f:read("a") or ""
    if f then f:close() end
    if old:gsub("^#[^\n]*\n", "") ~= require("knwb.config").dump(cfg) then
      X.refuse(name, ("%s holds results of a run with another config (see its config.yaml); use another --out"):format(run.dir))
    end
  end
  run:write_config(cfg)
  return lines
end

--- X.fact_entries(name, set, records) -> list, by_relation: one entry per fact of the set, in
--- relation and fact order, { rel =, b = index in the relation, fact =, rec = its neurons record,
--- key = X.line_key's }, and the entries per relation id. A fact without a record is refused.
function X.fact_entries(name, set, records)
  local record_of = {}
  for _, r in ipairs(records) do record_of[X.record_key(r)] = r end
  local list, by = {}, {}
  for _, rel in ipairs(set.relations) do
    by[rel.id] = {}
    for b, f in ipairs(rel.facts) do
      local rec = record_of[X.record_key { relation = rel.id, subject = f.subject, object = f.object }]
      if not rec then X.refuse(name, ("no neurons for fact %s (%s, %s)"):format(rel.id, f.subject, f.object)) end
      local e = { rel = rel, b = b, fact = f, rec = rec,
        key = X.line_key { relation = rel.id, fact = b, subject = f.subject, object = f.object } }
      list[#list + 1] = e
      table.insert(by[rel.id], e)
    end
  end
  return list, by
end

--- X.random_control(e, neurons, width, seed [, exclude]) -> as many random neurons as `neurons`,
--- in the same layers (knwb.random.matched), from the stream of fact entry e: the same fact
--- draws the same control wherever it is computed.
function X.random_control(e, neurons, width, seed, exclude)
  local random = require "knwb.random"
  return random.matched(neurons, width, random.rng(seed, "random", e.rel.id, e.b, e.fact.subject, e.fact.object),
    { exclude = exclude })
end

return X
