-- run.lua: run directories, where an experiment leaves everything it produced.
--
--   local r = run.new { experiment = "erase", out = opts.out }   -- runs/erase-20250101-120000/
--   r:write_config(cfg)                                           -- config.yaml (resolved)
--   r:provenance { model_sha256 = run.sha256_file(path), seed = cfg.seed, threads = 4 }
--   local items <close> = r:jsonl("items.jsonl")                   -- one JSON object per line
--   items:write { relation = "P36", p_before = 0.42, p_after = 0.07 }
--   r:table("summary", { "relation", "change" }, rows)             -- summary.tsv + summary.md
--   r:write("plots/layers.svg", svg_text)
--
-- Files are written whole to a unique temporary name (".NAME.knwb-tmp-XXXXXX": fsync'ed, checked,
-- renamed over NAME; knwb.io), so a run killed half way leaves the old file or the new one, never
-- a truncated result, and a leftover temporary file is never read; JSON Lines are appended line
-- by line (each line all or nothing) so a resumed run can read what is done (r:read_jsonl). Reusing an existing --out directory is allowed: that is how a run resumes.
-- It is not a database and does not lock: one process per run directory.
local json = require "knwb.json"
local config = require "knwb.config"
local kio = require "knwb.io"

local run = {}

-- Quotes a string for /bin/sh: 'it'\''s' style, which is safe for any byte string.
function run.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = run.shell_quote

-- The largest run file read back (r:read_jsonl).
run.MAX_READ_BYTES = 1024 * 1024 * 1024

local function exists(path)
  return kio.stat(path) ~= nil
end

local function mkdir_p(dir)
  local ok, err = pcall(kio.mkdirs, dir)
  if not ok then error(("run: cannot create directory %s: %s"):format(dir, tostring(err)), 3) end
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$")
end

local Run = {}
Run.__index = Run

-- run.new{ experiment = NAME, out = DIR?, root = "runs"? } -> run
-- Without out, the directory is ROOT/NAME-YYYYmmdd-HHMMSS (with -2, -3... if taken).
function run.new(opts)
  opts = opts or {}
  -- An MPI worker rank writes no run directory (rank 0 writes the one run directory): it gets a
  -- scratch folder that knwb.shard removes when the worker leaves.
  local shard = require "knwb.shard"
  if shard.worker() then
    return setmetatable({ dir = shard.scratch_dir(), experiment = opts.experiment }, Run)
  end
  local dir = opts.out
  if not dir then
    local name = opts.experiment or (arg and arg[0] and arg[0]:match("([^/]+)%.lua$")) or "run"
    local base = ("%s/%s-%s"):format(opts.root or "runs", name, os.date("%Y%m%d-%H%M%S"))
    dir = base
    local k = 2
    while exists(dir) do
      dir = ("%s-%d"):format(base, k)
      k = k + 1
    end
  end
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  mkdir_p(dir)
  return setmetatable({ dir = dir, experiment = opts.experiment }, Run)
end

-- r:path(name) -> DIR/name
function Run:path(name)
  if type(name) ~= "string" or name == "" or name:sub(1, 1) == "/" or ("/" .. name .. "/"):find("/../", 1, true) then
    error(("run: file name %s must be a relative path inside the run directory"):format(tostring(name)), 2)
  end
  return self.dir .. "/" .. name
end

-- r:exists(name) -> boolean
function Run:exists(name)
  return exists(self:path(name))
end

-- r:write(name, text) -> path; replaces the file atomically.
function Run:write(name, text)
  local path = self:path(name)
  local parent = dirname(path)
  if parent and not exists(parent) then mkdir_p(parent) end
  if type(text) ~= "string" then error(("run: %s: expected the file's text, got %s"):format(path, type(text)), 2) end
  local ok, err = pcall(kio.write_file_atomic, path, text)
  if not ok then error(("run: cannot write %s: %s"):format(path, tostring(err)), 2) end
  return path
end

-- r:write_json(name, value) -> path (indented, keys sorted)
function Run:write_json(name, value)
  return self:write(name, json.encode(value, { indent = 2 }) .. "\n")
end

-- r:write_config(cfg) -> path of config.yaml, which `knwb SCRIPT config.yaml` reads back.
function Run:write_config(cfg)
  local header = ("# Resolved config of this run (defaults and --set overrides applied), knwb %s.\n")
    :format(KNWB_VERSION or "?")
  return self:write("config.yaml", header .. config.dump(cfg))
end

local Lines = {}
Lines.__index = Lines

-- A last line without its newline (a run killed while writing it) is cut off, so that lines
-- appended after it stay whole.
local function drop_partial_line(path)
  if not exists(path) then return end
  local text = kio.read_file(path, run.MAX_READ_BYTES, "a run file")
  if #text == 0 or text:sub(-1) == "\n" then return end
  local keep = text:match("^(.*\n)") or ""
  local ok, err = pcall(kio.write_file_atomic, path, keep)
  if not ok then error(("run: cannot rewrite %s: %s"):format(path, tostring(err)), 3) end
end

-- r:jsonl(name [, mode]) -> writer with :write(value) and :close(); mode "a" (default, appends:
-- resuming keeps earlier lines, and drops a cut-off last line) or "w" (starts empty). Each line
-- is appended whole as written (a failed append leaves the file as it was).
function Run:jsonl(name, mode)
  local path = self:path(name)
  mode = mode or "a"
  if mode ~= "a" and mode ~= "w" then error(("run: jsonl mode must be \"a\" or \"w\", got %s"):format(tostring(mode)), 2) end
  local parent = dirname(path)
  if parent and not exists(parent) then mkdir_p(parent) end
  if mode == "a" then
    drop_partial_line(path)
  else
    local ok, err = pcall(kio.write_file_atomic, path, "")
    if not ok then error(("run: cannot open %s: %s"):format(path, tostring(err)), 2) end
  end
  return setmetatable({ open = true, path = path, count = 0 }, Lines)
end

function Lines:write(value)
  if not self.open then error(("run: %s is closed"):format(self.path), 2) end
  local ok, err = pcall(kio.append, self.path, json.encode_line(value) .. "\n")
  if not ok then error(("run: cannot write %s: %s"):format(self.path, tostring(err)), 2) end
  self.count = self.count + 1
end

function Lines:close()
  self.open = false
end

Lines.__close = Lines.close
Lines.__gc = Lines.close

-- r:read_jsonl(name) -> list of values (empty if the file does not exist). A last line without
-- its newline was cut off by an interrupted run and is dropped.
function Run:read_jsonl(name)
  local path = self:path(name)
  if not exists(path) then return {} end
  local text = kio.read_file(path, run.MAX_READ_BYTES, "a run file")
  local out, lineno = {}, 0
  for line, nl in text:gmatch("([^\n]*)(\n?)") do
    if nl == "" and line == "" then break end
    lineno = lineno + 1
    if nl == "" then break end
    if line:find("%S") then out[#out + 1] = json.decode(line, ("%s:%d"):format(path, lineno)) end
  end
  return out
end

local function cell_text(v)
  if v == nil or v == json.null then return "" end
  if math.type(v) == "float" then
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    return (("%.4g"):format(v))
  end
  return tostring(v)
end

-- r:table(basename, columns, rows) writes basename.tsv and basename.md. columns: list of names;
-- rows: list of tables keyed by column name (or lists in column order). Floats get 4 digits.
function Run:table(basename, columns, rows)
  local tsv, md = { table.concat(columns, "\t") }, {}
  local cells = {}
  for i, row in ipairs(rows) do
    cells[i] = {}
    for j, c in ipairs(columns) do
      local v = row[c]
      if v == nil then v = row[j] end
      cells[i][j] = cell_text(v)
    end
    tsv[#tsv + 1] = table.concat(cells[i], "\t"):gsub("[\r\n]", " ")
  end
  local function md_cell(s) return (s:gsub("|", "\\|"):gsub("[\r\n]", " ")) end
  local head, rule = {}, {}
  for j, c in ipairs(columns) do
    head[j] = md_cell(c)
    local numeric = true
    for i = 1, #cells do
      if cells[i][j] ~= "" and not tonumber(cells[i][j]) then numeric = false end
    end
    rule[j] = numeric and "---:" or "---"
  end
  md[1] = "| " .. table.concat(head, " | ") .. " |"
  md[2] = "|" .. table.concat(rule, "|") .. "|"
  for i = 1, #cells do
    local r = {}
    for j = 1, #columns do r[j] = md_cell(cells[i][j]) end
    md[#md + 1] = "| " .. table.concat(r, " | ") .. " |"
  end
  self:write(basename .. ".tsv", table.concat(tsv, "\n") .. "\n")
  return self:write(basename .. ".md", table.concat(md, "\n") .. "\n")
end

local function capture(cmd)
  local p = io.popen(cmd, "r")
  if not p then return nil end
  local out = p:read("a")
  local ok = p:close()
  return ok and out or nil
end

-- git commit and dirtiness of the knwb checkout (not of the working directory).
local function git_state()
  local root = package.knwb_root or "."
  local head = capture("git -C " .. q(root) .. " rev-parse HEAD 2>/dev/null")
  head = head and head:match("^(%x+)%s*$")
  if not head then return "unknown", nil end
  local status = capture("git -C " .. q(root) .. " status --porcelain --untracked-files=no 2>/dev/null")
  return head, status ~= nil and status:find("%S") ~= nil
end

local ENV_KEYS = { "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_CORETYPE", "KNWB_THREADS" }

-- r:provenance(info) -> path of provenance.json. Records what produced the run: knwb version, git
-- commit (and whether the tree had uncommitted changes), UTC date, the command line, thread
-- settings from the environment, and the caller's fields (model hash, seed, threads, ...), which
-- win on a name clash. No host name or user name is recorded.
function Run:provenance(info)
  local commit, dirty = git_state()
  local command = {}
  if arg then
    local lo = 0
    while arg[lo - 1] ~= nil do lo = lo - 1 end
    for i = lo, #arg do command[#command + 1] = arg[i] end
    if lo < 0 then command[1] = command[1]:match("([^/]+)$") end
  end
  local env = json.object()
  for _, k in ipairs(ENV_KEYS) do env[k] = os.getenv(k) end
  local p = {
    knwb_version = KNWB_VERSION or "unknown",
    git_commit = commit,
    git_dirty = dirty == nil and json.null or dirty,
    date_utc = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    command = command,
    environment = env,
    lua = _VERSION,
    experiment = self.experiment,
    -- MPI ranks that shared the work (the run directory is otherwise the same for any number)
    ranks = select(2, require("knwb.shard").start()),
    host = require("knwb.mpi").host(),
  }
  for k, v in pairs(info or {}) do p[k] = v end
  return self:write_json("provenance.json", p)
end

-- run.sha256_file(path) -> hex digest
function run.sha256_file(path)
  local kind, err = kio.stat(path)
  if kind ~= "file" then
    error(("sha256: cannot read %s: %s"):format(path, kind and "not a regular file" or err), 2)
  end
  local out = capture("sha256sum -b -- " .. q(path) .. " 2>&1")
  local digest = out and out:match("^(%x+) ")
  if not digest or #digest ~= 64 then
    error(("sha256: cannot hash %s: %s"):format(path, out and out:gsub("%s+$", "") or "sha256sum failed"), 2)
  end
  return digest
end

return run
