-- cli.lua: the command line of an experiment script.
--
--   knwb experiments/erase.lua [CONFIG.yaml] [--set KEY=VALUE]... [--out DIR] [script flags] [--help]
--
-- A script declares its flags and config schema once:
--
--   local opts = cli.parse(arg, {
--     name = "erase", description = "Erase a relation by zeroing its knowledge neurons.",
--     config = "configs/erase.yaml",         -- used when no CONFIG is given (optional)
--     args = "[FILE]...",                     -- further positional arguments -> opts.args (optional)
--     schema = schema,                         -- opts.cfg = validated config (optional)
--     flags = { { name = "save", arg = "DIR", doc = "write the edited model to DIR" },
--               { name = "quick", doc = "a few facts only, for a smoke test" } },
--   })
--
-- opts holds: config (the path used, or nil), set (list of "k=v"), out, help, cfg, args, and each
-- declared flag under its name with '-' read as '_' (true/false, the argument, or with many = true
-- a list). cli.parse prints usage errors and config errors without a traceback and exits with
-- status 2; --help prints the usage and exits 0. cli.try does the same work but returns
-- nil, message instead of exiting, for tests and for scripts that want to handle it themselves.
local config = require "knwb.config"

local cli = {}

local BUILTIN = {
  { name = "set", arg = "KEY=VALUE", many = true, needs_schema = true,
    doc = "override a config key (repeatable); VALUE is read as YAML" },
  { name = "out", arg = "DIR", doc = "run directory (default: runs/NAME-YYYYmmdd-HHMMSS)" },
  { name = "help", doc = "show this help and exit" },
}

-- Scripts whose config has an attribution section can split it over Slurm array tasks.
local SHARDING = {
  { name = "shard", arg = "K/N",
    doc = "attribute only slice K of N of the facts into the shared attribution store and stop (Slurm job arrays; "
      .. "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT do the same); then run without --shard, or with --merge" },
  { name = "merge", doc = "use only scores already in the attribution store (after --shard runs): fail, naming what is missing, rather than compute" },
}

local function shardable(spec)
  return spec.schema and spec.schema.fields and spec.schema.fields.attribution ~= nil
end

local function all_flags(spec)
  local flags, by_name = {}, {}
  for _, list in ipairs { BUILTIN, shardable(spec) and SHARDING or {}, spec.flags or {} } do
    for _, f in ipairs(list) do
      if f.needs_schema and not spec.schema then goto continue end
      if by_name[f.name] then error(("cli: flag --%s is declared twice"):format(f.name), 3) end
      by_name[f.name] = f
      flags[#flags + 1] = f
      ::continue::
    end
  end
  table.sort(flags, function(a, b) return a.name < b.name end)
  return flags, by_name
end

local function flag_text(f)
  return "--" .. f.name .. (f.arg and " " .. f.arg or "")
end

local function script_name(args, spec)
  return (args and args[0]) or spec.script or spec.name or "script.lua"
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- The default config is found from the working directory first, then from the repository, so
-- `knwb experiments/erase.lua` works wherever it is started.
local function default_config(spec)
  if not spec.config then return nil end
  if exists(spec.config) or spec.config:sub(1, 1) == "/" then return spec.config end
  local root = package.knwb_root
  if root and exists(root .. "/" .. spec.config) then return root .. "/" .. spec.config end
  return spec.config
end

-- The schema node at a dotted key path of records, or nil.
local function node_at(schema, key)
  local node = schema
  for seg in key:gmatch("[^.]+") do
    if type(node) ~= "table" or node.type ~= "record" or type(node.fields) ~= "table" then return nil end
    node = node.fields[seg]
  end
  return node
end

-- An override that this script's schema has, for the help text: attribution.steps when there is
-- one, else the first number or integer key (sorted) with its default.
local function example_override(schema)
  if node_at(schema, "attribution.steps") then return "attribution.steps=50" end
  local best
  local function walk(node, path)
    if type(node) ~= "table" then return end
    if node.type == "record" and type(node.fields) == "table" then
      local names = {}
      for k in pairs(node.fields) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do walk(node.fields[k], path == "" and k or path .. "." .. k) end
    elseif (node.type == "integer" or node.type == "number") and node.default ~= nil and not best then
      best = ("%s=%s"):format(path, tostring(node.default))
    end
  end
  walk(schema, "")
  return best
end

-- A list key given one bare value (--set facts.relations=P36) means a list of that one value;
-- "P36,P17" a list of both. Other values are passed on as written.
local function list_override(schema, text)
  local key, raw = text:match("^([%w_%.%-]+)=(.*)$")
  if not key then return text end
  local node = node_at(schema, key)
  if not node or node.type ~= "list" then return text end
  local v = raw:match("^%s*(.-)%s*$")
  if v == "" or v:match("^[%[{]") or v == "null" or v == "~" then return text end
  return key .. "=[" .. v .. "]"
end
cli.list_override = list_override

-- cli.usage(spec [, args]) -> the --help text
function cli.usage(spec, args)
  local flags = all_flags(spec)
  local script = script_name(args, spec)
  local synopsis = { "usage: knwb " .. script }
  if spec.schema then synopsis[#synopsis + 1] = "[CONFIG.yaml]" end
  if spec.args then synopsis[#synopsis + 1] = spec.args end
  for _, f in ipairs(flags) do
    if f.name ~= "help" then synopsis[#synopsis + 1] = "[" .. flag_text(f) .. "]" .. (f.many and "..." or "") end
  end
  local rows = {}
  if spec.schema then
    rows[1] = { "CONFIG.yaml", "YAML config" .. (spec.config and " (default: " .. spec.config .. ")" or " (default: all defaults)") }
  end
  for _, f in ipairs(flags) do
    local doc = f.doc or ""
    if f.name == "out" and spec.name then doc = doc:gsub("NAME", spec.name) end
    if f.name == "set" then
      local ex = example_override(spec.schema)
      if ex then doc = doc .. ": --set " .. ex end
      if node_at(spec.schema, "facts.relations") then doc = doc .. "; a list takes one value too: --set facts.relations=P36" end
    end
    rows[#rows + 1] = { flag_text(f), doc }
  end
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #r[1]) end
  local out = { table.concat(synopsis, " "), "" }
  if spec.description then out[#out + 1] = spec.description; out[#out + 1] = "" end
  out[#out + 1] = "options:"
  for _, r in ipairs(rows) do out[#out + 1] = ("  %-" .. width .. "s  %s"):format(r[1], r[2]) end
  if spec.schema then
    out[#out + 1] = ""
    out[#out + 1] = "config keys (YAML file, or --set KEY=VALUE):"
    out[#out + 1] = (config.describe(spec.schema):gsub("\n$", ""))
  end
  return table.concat(out, "\n") .. "\n"
end

-- cli.try(args, spec) -> opts | nil, message
function cli.try(args, spec)
  spec = spec or {}
  local flags, by_name = all_flags(spec)
  local opts = { set = {}, help = false, args = {} }
  for _, f in pairs(by_name) do
    if f.name ~= "set" and f.name ~= "help" then
      local key = f.name:gsub("-", "_")
      if f.many then opts[key] = {} elseif not f.arg then opts[key] = false end
    end
  end
  local function known()
    local names = {}
    for _, f in ipairs(flags) do names[#names + 1] = flag_text(f) end
    return "(known: " .. table.concat(names, ", ") .. ")"
  end
  local i, positional_only = 1, false
  local n = args and #args or 0
  while i <= n do
    local a = args[i]
    if a == "--" and not positional_only then
      positional_only = true
    elseif not positional_only and a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local f = by_name[name]
      if not f then return nil, ("unknown option --%s %s"):format(name, known()) end
      local key = name:gsub("-", "_")
      if f.arg then
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then return nil, ("option --%s needs a value (%s)"):format(name, f.arg) end
        end
        if f.many then
          table.insert(opts[key], value)
        else
          opts[key] = value
        end
      else
        if value ~= nil then return nil, ("option --%s takes no value (got --%s)"):format(name, a:sub(3)) end
        opts[key] = true
      end
    elseif not positional_only and a == "-h" then
      opts.help = true
    elseif not positional_only and a:sub(1, 1) == "-" and #a > 1 then
      return nil, ("unknown option %s %s"):format(a, known())
    elseif spec.schema and not opts.config then
      opts.config = a
    elseif spec.args then
      table.insert(opts.args, a)
    else
      if not spec.schema then return nil, ("unexpected argument '%s' (this script takes no positional arguments)"):format(a) end
      return nil, ("unexpected argument '%s' (a config file was already given: %s)"):format(a, opts.config)
    end
    i = i + 1
  end
  if opts.help or not spec.schema then return opts end
  opts.config = opts.config or default_config(spec)
  for k, text in ipairs(opts.set) do opts.set[k] = list_override(spec.schema, text) end
  local ok, cfg = pcall(config.load, opts.config, spec.schema, opts.set)
  if not ok then return nil, tostring(cfg) end
  opts.cfg = cfg
  if shardable(spec) then
    local ok2, err = pcall(require("knwb.shard").configure, { shard = opts.shard, merge = opts.merge, cache = cfg.attribution.cache })
    if not ok2 then return nil, tostring(err) end
  end
  return opts
end

-- cli.parse(args, spec) -> opts; exits on --help (0) and on a usage or config error (2).
function cli.parse(args, spec)
  local opts, err = cli.try(args, spec)
  local script = script_name(args, spec or {})
  if not opts then
    io.stderr:write(("%s: %s\n(see: knwb %s --help)\n"):format(script, err, script))
    os.exit(2)
  end
  if opts.help then
    io.stdout:write(cli.usage(spec, args))
    os.exit(0)
  end
  return opts
end

return cli
