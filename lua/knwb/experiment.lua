-- knwb.experiment: the inputs every experiment script opens the same way: refusing bad input
-- with a message and exit status 2 (no traceback, as for config errors), finding relative paths
-- from the working directory and then from the repository, loading the model and the fact set.
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

return X
