-- test_harden.lua: the Lua library against bad input and interrupted writes (issue 13 items 3-9
-- and 11, issue 12 items 6, 7 and 13): special files refused by every reader, capped reads,
-- unbounded and non-finite settings refused with file:line:col, fact-set errors naming the file,
-- line and key, a store that recomputes what it cannot verify, NUL bytes refused at the C
-- boundary, folders made without a shell, and kill tests (the n-th write-side operation fails,
-- for every n) showing that every writer leaves the old file or the new one.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local runs = require "runs"
local knwb = require "knwb"
local kio = require "knwb.io"
local json = require "knwb.json"
local config = require "knwb.config"
local facts = require "knwb.facts"
local schemas = require "knwb.schemas"

local tmp = runs.tmpdir()
local q = knwb.run.shell_quote
local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end
local fifo = tmp .. "/fifo"
assert(os.execute("mkfifo " .. q(fifo)), "mkfifo")

print("# knwb.io")
do
  check.err(function() kio.read_file(fifo, 1000) end, "fifo: not a regular file (a FIFO)", "read_file refuses a FIFO without blocking")
  check.err(function() kio.read_file("/dev/zero", 1000) end, "/dev/zero: not a regular file (a device)", "read_file refuses /dev/zero")
  check.err(function() kio.read_file(tmp, 1000) end, "not a regular file (a directory)", "read_file refuses a directory")
  write(tmp .. "/big", ("x"):rep(2000))
  check.err(function() kio.read_file(tmp .. "/big", 1000, "a test file") end, "2.0 kB is more than a test file may hold (1.0 kB)",
    "read_file states its cap")
  check.eq(#kio.read_file(tmp .. "/big", 2000), 2000, "a file at the cap is read whole")
  check.err(function() kio.read_file(tmp .. "/big\0/x", 1000) end, "path has a NUL byte at offset " .. #(tmp .. "/big"),
    "a path with a NUL byte is refused, not cut")
  check.err(function() kio.read_file(tmp .. "/big", -1) end, "cap -1 out of range", "a negative cap is refused")
  check.eq(kio.read_at(tmp .. "/big", 1990, 10), ("x"):rep(10), "read_at reads inside the file")
  check.err(function() kio.read_at(tmp .. "/big", 1995, 10) end, "past the end of the file (2000 bytes)", "read_at checks bounds")
  check.err(function() kio.read_at(tmp .. "/big", math.maxinteger - 3, 10) end, "past the end", "read_at: no overflow near 2^63")
  kio.write_file_atomic(tmp .. "/a.txt", "hello")
  check.eq(kio.read_file(tmp .. "/a.txt", 100), "hello", "write_file_atomic writes the file")
  kio.mkdirs(tmp .. "/--version/x/y")
  check.eq(kio.stat(tmp .. "/--version/x/y"), "directory", "mkdirs makes a folder named like an option (no shell)")
  check.err(function() kio.mkdirs(tmp .. "/a.txt/sub") end, "exists and is not a folder", "mkdirs under a file is refused")
  check.eq(kio.append(tmp .. "/log", "abc"), 0, "append returns the offset of its bytes")
  check.eq(kio.append(tmp .. "/log", "de", true), 3, "... at the true end of the file")
  check.err(function() kio.append(fifo, "x") end, "not a regular file", "append refuses a FIFO")
  local names = kio.list(tmp)
  check.ok(names[1] == "--version" and names[#names] == "log", "list gives sorted names (%s)", table.concat(names, " "))
  check.err(function() kio.list(tmp .. "/a.txt") end, "not a folder", "list of a file is refused")
  check.eq(kio.checksum(""), "cbf29ce484222325", "checksum is 64-bit FNV-1a")
  check.eq(kio.first_nonfinite(string.pack("<fff", 1, 0 / 0, 1 / 0)), 1, "first_nonfinite finds a NaN")
  check.eq(kio.first_nonfinite(string.pack("<ff", 1, 2)), nil, "... and nothing in finite data")
  kio.fail_after(2)
  local ok, err = pcall(kio.write_file_atomic, tmp .. "/a.txt", "changed")
  kio.fail_after(0)
  check.ok(not ok and tostring(err):find("Input/output error", 1, true), "fault injection fails the 2nd operation (%s)", tostring(err))
  check.eq(kio.read_file(tmp .. "/a.txt", 100), "hello", "... and the file is the old one")
end

print("# readers refuse special files (issue 13.3)")
do
  check.err(function() config.load(fifo) end, "fifo: not a regular file (a FIFO)", "config.load refuses a FIFO")
  check.err(function() config.load("/dev/zero") end, "not a regular file (a device)", "config.load refuses /dev/zero")
  write(tmp .. "/huge.yaml", "a: " .. ("x"):rep(config.MAX_BYTES) .. "\n")
  check.err(function() config.load(tmp .. "/huge.yaml") end, "is more than a config file may hold", "a config has a size cap")
  check.err(function() facts.load { facts = fifo, templates = "data/templates.yaml" } end, "not a regular file (a FIFO)",
    "facts.load refuses a FIFO facts file")
  check.err(function() facts.load { facts = "data/facts.tsv", templates = fifo } end, "not a regular file (a FIFO)",
    "facts.load refuses a FIFO templates file")
  check.err(function() knwb.neurons.read(fifo) end, "not a regular file (a FIFO)", "neurons.read refuses a FIFO")
  local yaml = require "knwb.yaml"
  check.err(function() yaml.load(fifo) end, "not a regular file (a FIFO)", "yaml.load refuses a FIFO")
  check.err(function() json.load("/dev/zero") end, "not a regular file (a device)", "json.load refuses /dev/zero")
  check.err(function() yaml.load("data/templates.yaml\0.x") end, "path has a NUL byte at offset 19", "yaml.load: a path with a NUL byte")
  check.err(function() json.load("models/default/config.json\0x") end, "path has a NUL byte at offset 26", "json.load: a path with a NUL byte")
  check.eq(type(json.load("models/default/config.json")), "table", "json.load still reads a file")
  local r = knwb.run.new { out = tmp .. "/run-fifo" }
  assert(os.execute("mkfifo " .. q(r:path("x.jsonl"))))
  check.err(function() r:read_jsonl("x.jsonl") end, "not a regular file (a FIFO)", "run:read_jsonl refuses a FIFO")
end

print("# settings: bounded, finite (issue 13.4)")
do
  local schema = { type = "record", fields = { refine = schemas.refine, attribution = schemas.attribution,
    facts = schemas.facts, seed = schemas.seed } }
  -- every numeric setting of the shared schemas has both bounds
  local function walk(node, path)
    if node.type == "integer" or node.type == "number" then
      check.ok((node.min or node.gt) and (node.max or node.lt), "%s has a documented range", path)
    elseif node.type == "record" then
      for k, v in pairs(node.fields) do walk(v, path == "" and k or path .. "." .. k) end
    end
  end
  walk(schema, "")
  write(tmp .. "/inf.yaml", "refine:\n  target_min: .inf\n  p: .nan\n")
  check.err(function() config.load(tmp .. "/inf.yaml", schema) end,
    "inf.yaml:2:15: refine.target_min: expected a number in [0, 100000], got inf (infinities and NaN are never a setting)",
    "target_min: .inf is refused with file:line:col")
  check.err(function() config.load(tmp .. "/inf.yaml", schema) end, "inf.yaml:3:6: refine.p: expected a number", "p: .nan is refused")
  write(tmp .. "/rounds.yaml", "refine:\n  rounds: 1000000000\n")
  check.err(function() config.load(tmp .. "/rounds.yaml", schema) end,
    "rounds.yaml:2:11: refine.rounds: expected an integer in [1, 100], got 1000000000", "refine.rounds has a maximum")
  check.err(function() config.load(nil, schema, { "refine.target_min=-.inf" }) end, "--set refine.target_min=-.inf: refine.target_min",
    "an infinite override is refused, naming the override")
  check.err(function() config.load(nil, schema, { "refine.target_min=9", "refine.target_max=3" }) end,
    "target_min 9.0 is above target_max 3.0", "target_min above target_max is refused")
  write(tmp .. "/nul.yaml", 'facts:\n  facts: "data/facts.tsv\\0/x"\n')
  check.err(function() config.load(tmp .. "/nul.yaml", schema) end, "nul.yaml:2:10: facts.facts: \"data/facts.tsv\\x00/x\" has a NUL byte at offset 14",
    "a string setting with a NUL byte is refused")
end

print("# fact-set errors name the file, line and key (issue 13.6)")
do
  local tsv = tmp .. "/f.tsv"
  write(tsv, "relation\tsubject\tobject\nP1\tw1\tw2\n")
  local cases = {
    { "P1:\n  templates: [~]\n", "t.yaml:2:15: P1.templates[1]: expected a template string or {text: ..., held_out: ...}, got null", "templates: [~]" },
    { "P1:\n  templates: [5]\n", "t.yaml:2:15: P1.templates[1]: expected a template string or {text: ..., held_out: ...}, got a number (5)", "templates: [5]" },
    { "P1:\n  templates:\n    - {text: 7}\n", "t.yaml:3:14: P1.templates[1].text: expected a template string, got a number (7)", "{text: 7}" },
    { "P1:\n  templates:\n    - {text: \"[X] is [Y]\", held_out: 1}\n", "P1.templates[1].held_out: expected true or false, got a number (1)", "held_out: 1" },
    { "P1: 5\n", "t.yaml:1:5: P1: expected a mapping {label, templates}, got a number (5)", "a relation that is a number" },
    { "P1:\n  templates: 5\n", "t.yaml:2:14: P1.templates: expected a list of templates, got a number (5)", "templates: 5" },
    { "- a\n", "t.yaml:1:1: expected a mapping of relation ids", "a templates file that is a list" },
  }
  for _, c in ipairs(cases) do
    write(tmp .. "/t.yaml", c[1])
    check.err(function() facts.load { facts = tsv, templates = tmp .. "/t.yaml" } end, c[2], c[3])
  end
  check.err(function() facts.load { facts = tmp, templates = "data/templates.yaml" } end, "not a regular file (a directory)",
    "facts.tsv that is a directory")
  local pp, pf = tmp .. "/pararel/patterns", tmp .. "/pararel/facts"
  kio.mkdirs(pp); kio.mkdirs(pf)
  write(pp .. "/P1.jsonl", '{"pattern": "[X] is in [Y] ."}\n7\n')
  check.err(function() facts.load_pararel { patterns = pp, facts = pf, min_templates = 1 } end,
    "P1.jsonl:2: expected a JSON object ({\"pattern\": ...}), got a number (7)", "a PARAREL line that is a number")
  write(pp .. "/P1.jsonl", '{"pattern": 3}\n')
  check.err(function() facts.load_pararel { patterns = pp, facts = pf, min_templates = 1 } end,
    "P1.jsonl:1: key \"pattern\": expected a string, got a number (3)", "a PARAREL pattern that is a number")
  write(pp .. "/P1.jsonl", '{"pattern": "[X] is in [Y] ."}\n')
  write(pf .. "/P1.jsonl", ("["):rep(300) .. ("]"):rep(300) .. "\n")
  check.err(function() facts.load_pararel { patterns = pp, facts = pf, min_templates = 1 } end,
    "facts/P1.jsonl:1: JSON nesting deeper than 200 levels", "a PARAREL facts line nested 300 deep")
  write(pf .. "/P1.jsonl", '{"sub_label": "a", "obj_label": 5}\n')
  check.err(function() facts.load_pararel { patterns = pp, facts = pf, min_templates = 1 } end,
    "facts/P1.jsonl:1: key \"obj_label\": expected a string, got a number (5)", "a PARAREL object that is a number")
  write(pp .. "/P1.jsonl", "{\"pattern\": \"[X] is in [Y] .\"}\n{\"pattern\"\n")
  check.err(function() facts.load_pararel { patterns = pp, facts = pf, min_templates = 1 } end, "patterns/P1.jsonl:2:",
    "a torn PARAREL line names file:line")
end

print("# dropped facts are announced (issue 12.13)")
do
  local code = [[local knwb = require "knwb"; local facts = require "knwb.facts"
    local m = knwb.load("tests/fixtures/ref/odd")
    local set = facts.load_pararel { patterns = "tests/fixtures/pararel/patterns", facts = "tests/fixtures/pararel/facts" }
    facts.filter_single_token(set, m)]]
  write(tmp .. "/drop.lua", code)
  local ok, _, err = runs.knwb(tmp, tmp .. "/drop.lua")
  check.ok(ok, "the filter runs")
  check.ok(err:find("facts: dropped 2 facts of tests/fixtures/pararel/facts whose object is not one token of the model's vocabulary: "
    .. "P19 \"w22 w23\" (w22 | w23), P19 \"zebra\" ([UNK])", 1, true), "stderr names how many and which (%s)", (err:gsub("%s+$", "")))
end

print("# the attribution store verifies what it reads (issue 13.5)")
local m = knwb.load("tests/fixtures/ref/odd")
do
  local attribution = knwb.attribution
  local o = { steps = 4, quadrature = "left", target = "prob" }
  local it1, it2 = m:item("w1 [MASK]", "w5"), m:item("w2 w3 [MASK]", "w6")
  local dir = tmp .. "/store"
  local s = attribution.open(dir, m)
  local ig1 = s:attribute(m, it1, o)
  local ig2 = s:attribute(m, it2, o)
  local index = kio.read_file(s.index_path, 1 << 20)
  local entries = {}
  for line in index:gmatch("[^\n]+") do entries[#entries + 1] = json.decode(line) end
  check.eq(#entries, 4, "two prompts stored (ig and activation each)")
  check.ok(entries[1].sum and #entries[1].sum == 16, "an index entry carries a checksum")
  local function reindex(fn)
    local lines = {}
    for i, e in ipairs(entries) do
      local c2 = {}
      for k, v in pairs(e) do c2[k] = v end
      fn(i, c2)
      lines[i] = json.encode_line(c2)
    end
    write(s.index_path, table.concat(lines, "\n") .. "\n")
  end
  local function fresh(ig, it, what, field, want)
    local st = attribution.open(dir, m)
    local got = st:attribute(m, it, o)
    check.eq(got:tobytes(), ig:tobytes(), what .. ": the scores are the true ones")
    check.eq(st[field], want, ("%s: counted in store.%s"):format(what, field))
    return st
  end
  local ig2_key = entries[4].key
  -- an offset near 2^63: the bounds check does not wrap
  reindex(function(_, e) if e.key == ig2_key then e.offset = math.maxinteger - 100 end end)
  fresh(ig2, it2, "an offset near 2^63", "dropped", 1)
  -- an aliased record: the second prompt's entry points at the first prompt's bytes
  reindex(function(_, e) if e.key == ig2_key then e.offset = entries[2].offset end end)
  fresh(ig2, it2, "an entry aliasing another prompt's record", "recomputed", 1)
  -- a corrupt byte in the record
  reindex(function() end)
  local bin = kio.read_file(s.bin_path, 1 << 24)
  local off = entries[4].offset + 17
  write(s.bin_path, bin:sub(1, off) .. string.char((bin:byte(off + 1) + 1) % 256) .. bin:sub(off + 2))
  fresh(ig2, it2, "a flipped byte", "recomputed", 1)
  -- a record of NaNs with a valid checksum (written by something else, or a bad engine)
  reindex(function() end)
  write(s.bin_path, bin)
  local nan = string.pack("<f", 0 / 0):rep(#ig2:tobytes() // 4)
  local noff = kio.append(s.bin_path, nan)
  reindex(function(_, e) if e.key == ig2_key then e.offset = noff; e.sum = kio.checksum(e.key .. "\0" .. nan) end end)
  fresh(ig2, it2, "a record of NaN scores", "recomputed", 1)
  -- a non-finite number beside the record
  reindex(function(_, e) if e.key == ig2_key then e.p_full = 12345.5 end end)
  write(s.index_path, (kio.read_file(s.index_path, 1 << 20):gsub("12345%.5", "1e400")))
  fresh(ig2, it2, "an index line with p_full 1e400", "dropped", 1)
  reindex(function(_, e) if e.key == ig2_key then e.delta = { 0, 12345.5, 0 } end end)
  fresh(ig2, it2, "a finite delta list", "recomputed", 0)
  reindex(function(_, e) if e.key == ig2_key then e.delta = { 0, 0 } end end)
  fresh(ig2, it2, "a delta list of the wrong length", "recomputed", 1)
  -- an entry of an older store, without a checksum
  reindex(function(_, e) if e.key == ig2_key then e.sum = nil end end)
  fresh(ig2, it2, "an entry without a checksum", "dropped", 1)
  -- the first prompt was reused throughout
  local again = attribution.open(dir, m)
  again:attribute(m, it1, o)
  check.eq(again.hits, 1, "intact records are reused")
  check.err(function() attribution.open(fifo, m) end, "fifo", "a store folder that is a FIFO is refused")
  -- kill test: the n-th write-side operation of an append fails, for every n
  local scores = ig1
  local done, n, good = false, 0, {}
  local dropped0 = attribution.open(dir, m).dropped
  while not done and n < 50 do
    n = n + 1
    local store = attribution.open(dir, m)
    local key = "kill-" .. n
    kio.fail_after(n)
    local ok = pcall(store.put, store, key, scores)
    local ops = kio.ops()
    kio.fail_after(0)
    done = ok and ops < n
    local back = attribution.open(dir, m)
    local got = back:get(key)
    local bad = back.dropped ~= dropped0 or (ok and not got) or (got and got:tobytes() ~= scores:tobytes())
    for _, k in ipairs(good) do if not back:get(k) then bad = true end end
    if not check.ok(not bad, "store append killed at operation %d: old store or new record (stored: %s)", n, tostring(got ~= nil)) then break end
    if got then good[#good + 1] = key end
  end
  check.ok(done, "the append completes once no operation fails (%d operations)", n - 1)
end

print("# writers: old file or new file, never a mix (issue 13.9)")
do
  -- neurons.write
  local N = knwb.neurons
  local path = tmp .. "/neurons.jsonl"
  local old = { { relation = "R1", subject = "w1", object = "w2", kn = { { 0, 1 } }, baseline = {} } }
  local new = { { relation = "R1", subject = "w1", object = "w2", kn = { { 2, 3 }, { 1, 4 } }, baseline = { { 0, 0 } } },
    { relation = "R1", subject = "w3", object = "w4", kn = {}, baseline = {} } }
  N.write(path, old, m)
  local old_text, old_meta = kio.read_file(path, 1 << 20), kio.read_file(path .. ".meta.json", 1 << 20)
  N.write(tmp .. "/new.jsonl", new, m)
  local new_text = kio.read_file(tmp .. "/new.jsonl", 1 << 20)
  check.eq(json.decode(old_meta).neurons_checksum, kio.checksum(old_text), "the .meta.json holds the checksum of the neurons")
  local n, done = 0, false
  while not done and n < 50 do
    n = n + 1
    N.write(path, old, m)
    kio.fail_after(n)
    local ok = pcall(N.write, path, new, m)
    local ops = kio.ops()
    kio.fail_after(0)
    done = ok and ops < n
    local text, meta = kio.read_file(path, 1 << 20), json.decode(kio.read_file(path .. ".meta.json", 1 << 20))
    local consistent = meta.neurons_checksum == kio.checksum(text)
    local good = (text == old_text or text == new_text) and (consistent or (text == new_text and meta.facts == 1))
    local leftovers = false
    for _, name in ipairs(kio.list(tmp)) do if name:find(".knwb-tmp-", 1, true) then leftovers = true end end
    if not check.ok(good and not leftovers, "neurons.write killed at operation %d: %s, meta %s", n,
      text == old_text and "old neurons" or text == new_text and "new neurons" or "a MIX", consistent and "matching" or "old (checksum mismatch)") then break end
    local back = N.read(path)
    check.eq(#back, text == old_text and 1 or 2, ("... and neurons.read reads it (%d records)"):format(#back))
  end
  check.ok(done, "neurons.write completes once no operation fails (%d operations)", n - 1)

  -- run files: r:write, r:write_json, r:table
  local r = knwb.run.new { out = tmp .. "/run-kill" }
  n, done = 0, false
  while not done and n < 50 do
    n = n + 1
    r:write_json("summary.json", { version = 1 })
    kio.fail_after(n)
    local ok = pcall(r.write_json, r, "summary.json", { version = 2, rows = { 1, 2, 3 } })
    local ops = kio.ops()
    kio.fail_after(0)
    done = ok and ops < n
    local v = json.decode(kio.read_file(r:path("summary.json"), 1 << 20)).version
    local leftovers = false
    for _, name in ipairs(kio.list(r.dir)) do if name:find(".knwb-tmp-", 1, true) then leftovers = true end end
    -- failing the folder's fsync after the rename reports an error with the new file in place
    if not check.ok((v == 1 and not ok) or v == 2, "run:write killed at operation %d: version %s, no leftovers", n, tostring(v)) then break end
    check.ok(not leftovers, "... no temporary file left")
  end
  check.ok(done, "run:write completes once no operation fails (%d operations)", n - 1)
  -- a leftover temporary file of a killed process is not read
  write(r:path(".summary.json.knwb-tmp-ABCDEF"), "garbage")
  check.eq(json.decode(kio.read_file(r:path("summary.json"), 1 << 20)).version, 2, "a leftover temporary file is ignored")
  -- run:jsonl appends: the file holds every line written before, and the new line whole or not at all
  local lines <close> = r:jsonl("items.jsonl", "w")
  lines:write { i = 1 }
  n, done = 0, false
  local want = 1
  while not done and n < 20 do
    n = n + 1
    kio.fail_after(n)
    local ok = pcall(lines.write, lines, { i = want + 1, pad = ("x"):rep(100) })
    local ops = kio.ops()
    kio.fail_after(0)
    done = ok and ops < n
    if ok then want = want + 1 end
    local back = r:read_jsonl("items.jsonl")
    local text = kio.read_file(r:path("items.jsonl"), 1 << 20)
    if not check.ok(#back == want and back[#back].i == want and text:sub(-1) == "\n",
      "run:jsonl write killed at operation %d: %d whole lines", n, #back) then break end
  end
  check.ok(done, "a JSON line is appended once no operation fails")
  -- a directory made without a shell, whatever its name
  local odd = knwb.run.new { out = tmp .. "/--version" }
  check.eq(kio.stat(odd.dir), "directory", "run.new makes a folder named --version (no shell)")
  local st = knwb.attribution.open(tmp .. "/-rf --version", m)
  check.eq(kio.stat(st.dir), "directory", "the attribution store makes its folder without a shell (issue 13.8)")
end

print("# integers are range-checked in one helper (issue 13.11)")
do
  check.err(function() m:token(2 ^ 32 + 5) end, "bad argument #1 to 'token' (token id 4294967301 out of range [0, 97))",
    "model:token(2^32 + 5) names the argument and the range")
  check.err(function() m:token(1.5) end, "number has no integer representation", "a fractional token id is refused")
  check.err(function() m:embedding(-1) end, "token id -1 out of range [0, 97)", "model:embedding(-1)")
  check.err(function() m:slot_rank(0, 0, (1 << 32) + 1) end, "token id 4294967297 out of range [0, 97)", "model:slot_rank with 2^32 + 1")
  local it = m:item("w1 [MASK]", "w5")
  check.err(function() m:score({ { ids = it.ids, mask = (1 << 32) + 1, target = 5 } }) end,
    "field 'mask' 4294967297 out of range [-2147483648, 2147483648)", "an item's mask beyond int range")
  check.err(function() m:score({ { ids = { 2, (1 << 32) + 6, 3 }, mask = 1 } }) end, "item 1 ids[2] 4294967302 out of range",
    "an id beyond int range in a list")
  check.err(function() m:score({ it }, { interventions = { { layer = 0, pos = (1 << 32) + 1 } } }) end,
    "intervention 1: position 4294967297 out of range [0, 16)", "an intervention position beyond int range")
  check.err(function() m:score({ it }, { topk = 1 << 40 }) end, "field 'topk' 1099511627776 out of range", "topk beyond int range")
  local s = m:capture({ it })[1]
  check.err(function() s:get((1 << 32), 0) end, "layer 4294967296 out of range [0, 3)", "scores:get with 2^32")
  check.err(function() s:row(-(1 << 40)) end, "layer -1099511627776 out of range [0, 3)", "scores:row with -2^40")
  check.err(function() knwb.create({ hidden_size = 8, num_hidden_layers = (1 << 32) + 1, num_attention_heads = 2, intermediate_size = 8 }) end,
    "field 'num_hidden_layers' 4294967297 out of range", "a config size beyond int range is refused, not wrapped to 1")
  check.err(function() knwb.create({ hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 8 }, -1) end,
    "seed -1 out of range", "a negative seed")
end

print("# NUL bytes are refused at the C boundary (issues 13.7, 12.7)")
do
  check.err(function() knwb.load("tests/fixtures/ref/odd\0/x") end, "model folder has a NUL byte at offset 22", "a model path with a NUL byte")
  check.err(function() m:tokenize("w1\0w2") end, "bad argument #1 to 'tokenize' (text has a NUL byte at offset 2", "tokenize: text with a NUL")
  check.err(function() m:item("w1 [MASK]\0 w2", "w5") end, "prompt has a NUL byte at offset 9", "a prompt with a NUL is refused, not cut")
  check.err(function() m:prob("w1 [MASK]", "w5\0w6") end, "word has a NUL byte at offset 2", "a target with a NUL")
  check.err(function() m:save(tmp .. "/saved\0x") end, "model folder has a NUL byte", "model:save to a path with a NUL")
  local it = m:item("w1 [MASK]", "w5")
  check.err(function() m:score({ it }, { interventions = { { layer = 0, op = "set\0x" } } }) end, "intervention 1: op has a NUL byte at offset 3",
    "an intervention op with a NUL")
  check.err(function() m:attribute(m:item("w1 [MASK]", "w5"), { quadrature = "left\0x" }) end, "quadrature has a NUL byte at offset 4",
    "a quadrature name with a NUL")
end

print("# a target that tokenizes to one token is accepted (issue 12.6)")
do
  local vocab = tmp .. "/vocab.txt"
  write(vocab, table.concat({ "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "is", "here", "l", "##yon", "the" }, "\n") .. "\n")
  local u = knwb.create({ hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 8, max_position_embeddings = 16,
    do_lower_case = true }, 7, vocab)
  check.eq(u:id("Paris"), u:id("paris"), "model:id of \"Paris\" on an uncased model is paris")
  local p1 = u:prob("[MASK] is here", "Paris")
  check.eq(p1, (u:prob("[MASK] is here", "paris")), "model:prob accepts \"Paris\" (one token after normalisation)")
  check.err(function() u:prob("[MASK] is here", "Lyon") end, "target \"Lyon\" is not a single token of the vocabulary (it tokenizes to l | ##yon)",
    "a target of two pieces names them")
  check.err(function() u:prob("[MASK] is here", "Rome") end, "(it tokenizes to [UNK])", "an unknown target names [UNK]")
  check.eq(u:id("##yon"), 9, "a vocabulary entry is found as written")
end

os.execute("rm -rf -- " .. q(tmp))
check.done()
