-- test_json.lua: knwb.json (round-trips, floats, null, errors with line:col, NaN refusal,
-- encode_line), and what writes JSON into a run directory: knwb.run and knwb.progress.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local json = require "knwb.json"
local run = require "knwb.run"
local progress = require "knwb.progress"

print("# decode")
do
  local v = json.decode('{"i": 3, "f": 3.0, "e": 1e2, "neg": -7, "s": "a\\u00e9\\n", "t": true, "n": null, "a": [1, [2]], "o": {}}')
  check.eq(v.i, 3, "integers are Lua integers")
  check.eq(v.f, 3.0, "3.0 is a float")
  check.eq(v.e, 100.0, "1e2 is a float")
  check.eq(v.neg, -7, "negative integer")
  check.eq(v.s, "a\u{e9}\n", "escapes decode to UTF-8")
  check.eq(v.t, true, "true")
  check.ok(v.n == json.null, "null is json.null, so the key is kept")
  check.eq(v.a, { 1, { 2 } }, "nested arrays")
  check.eq(json.encode(v.o), "{}", "an empty object stays an object")
  check.eq(json.decode("42"), 42, "a bare scalar is a document")
  check.eq(json.decode('"x\\u0000y"'), "x\0y", "NUL inside strings")
  check.eq(json.decode("9223372036854775807"), math.maxinteger, "largest integer")
end

print("# decode errors name NAME:LINE:COL")
do
  check.err(function() json.decode('{"a": 1,\n "b": [1, 2,, 3]}', "f.json") end, "f.json:2:13: unexpected token near ','",
    "syntax error with line and column")
  check.err(function() json.decode('{"a": 1', "f.json") end, "f.json:1:7: '}' expected near end of file", "truncated text")
  check.err(function() json.decode('{"a": 1, "a": 2}', "f.json") end, "f.json:1:12: duplicate object key", "duplicate keys")
  local m = check.err(function() json.decode("[NaN]") end, "(string):1:4: invalid token near 'NaN'", "default name, NaN is not JSON")
  check.ok(m and m:sub(1, 9) == "(string):", "a data error starts with the data's position, not the caller's")
  check.err(function() json.decode("") end, "(string):1:0:", "empty text")
  check.err(function() json.load("tests/fixtures/none.json") end, "tests/fixtures/none.json: cannot open", "missing file")
end

print("# encode and round-trips")
do
  check.eq(json.encode({ 1, 2, 3 }), "[1,2,3]", "array")
  check.eq(json.encode({ b = 1, a = 2, c = { z = 1, y = 2 } }), '{"a":2,"b":1,"c":{"y":2,"z":1}}', "keys sorted")
  check.eq(json.encode({}), "[]", "an empty table is an array")
  check.eq(json.encode(json.object()), "{}", "json.object() marks an empty object")
  check.eq(json.encode({ x = json.null, y = json.object({}) }), '{"x":null,"y":{}}', "null and marked objects")
  check.eq(json.encode({ 0.1, 1 / 3, 1e300, -0.0, 2.0, 5e-324, 2 ^ 63 }),
    "[0.1,0.3333333333333333,1e+300,-0.0,2.0,4.94065645841247e-324,9.223372036854776e+18]",
    "floats: shortest form that reads back exactly, always marked as floats")
  for _, x in ipairs { 0.1, 1 / 3, math.pi, 1e-300, 123456.789, -2.5e-8, 2 ^ 53 + 0.0, 5e-324, 1.7976931348623157e308 } do
    local back = json.decode(json.encode(x))
    if back ~= x or math.type(back) ~= "float" then check.ok(false, "float %.17g round-trips", x) end
  end
  check.ok(true, "floats round-trip bit for bit")
  check.eq(json.encode(math.mininteger), "-9223372036854775808", "integers exactly")
  check.eq(json.encode("q\"b\\s/\n\t\1é"), '"q\\"b\\\\s/\\n\\t\\u0001é"', "string escapes; UTF-8 kept as is")
  local value = { name = "P36", scores = { 0.5, 0.25, { 1, 2 } }, nested = { deep = { deeper = { true, false, json.null } } },
    empty = {}, obj = json.object(), n = 12, f = 1.5, s = "ünï" }
  check.ok(check.equal(json.decode(json.encode(value)), value), "decode(encode(v)) == v")
  check.ok(check.equal(json.decode(json.encode(value, { indent = 2 })), value), "... also when indented")
  check.eq(json.encode({ a = { 1, 2 }, b = {} }, { indent = 2 }), '{\n  "a": [\n    1,\n    2\n  ],\n  "b": []\n}',
    "indent = 2")
  local unsorted = json.encode({ a = 1, b = 2, c = 3 }, { sort_keys = false })
  check.ok(check.equal(json.decode(unsorted), { a = 1, b = 2, c = 3 }), "sort_keys = false still valid JSON")
end

print("# encode refusals name the key path")
do
  check.err(function() json.encode({ results = { { p = 0 / 0 } } }) end,
    "json.encode: cannot encode NaN (JSON has no NaN or infinity) at results[1].p", "NaN refused, with its path")
  check.err(function() json.encode({ x = math.huge }) end, "cannot encode infinity (JSON has no NaN or infinity) at x", "inf refused")
  check.err(function() json.encode({ a = { 1, 2, nil, 4 } }) end, "table mixes keys", "sparse arrays refused")
  check.err(function() json.encode({ [1.5] = 1 }) end, "at (top)", "float keys refused")
  check.err(function() json.encode({ a = { [true] = 1 } }) end, "json.encode: table mixes keys (an array needs keys exactly 1..n, an object only string keys) at a",
    "non-string keys refused")
  check.err(function() json.encode({ f = print }) end, "cannot encode a function value at f", "functions refused")
  check.err(function() json.encode({ s = "\xc3\x28" }) end, "string is not valid UTF-8 at s", "invalid UTF-8 refused")
  check.err(function() json.encode(json.object({ 1 })) end, "object (json.object) with a non-string key", "marked object with array keys")
  check.err(function() json.encode({ 1 }, { indent = -1 }) end, "indent must be an integer in [0, 16]", "bad option")
  local cyc = {}
  cyc[1] = cyc
  check.err(function() json.encode(cyc) end, "nesting too deep (is there a cycle?)", "cycles refused")
end

print("# encode_line")
do
  local line = json.encode_line({ prompt = "The capital of France is [MASK].\nSecond line", p = 0.25, k = { 1, 2 } })
  check.eq(line, '{"k":[1,2],"p":0.25,"prompt":"The capital of France is [MASK].\\nSecond line"}', "compact, sorted")
  check.ok(not line:find("\n", 1, true), "one line, no trailing newline")
end

---------------------------------------------------------------------------------------------------
print("# run directories")
do
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "/it's a \"run\" $(x)"
  local r = run.new { experiment = "test", out = dir }
  check.ok(os.rename(dir, dir), "run.new creates the directory, quoting the shell-hostile name")
  r:write("notes.txt", "hello\n")
  local f = io.open(r:path("notes.txt"))
  check.eq(f and f:read("a"), "hello\n", "write + path")
  if f then f:close() end
  r:write("plots/layers.svg", "<svg/>")
  check.ok(r:exists("plots/layers.svg"), "write creates subdirectories")
  check.err(function() r:path("../escape") end, "must be a relative path inside the run directory", "no escaping the run")
  r:write_json("summary.json", { b = 1, a = { 0.5 } })
  f = io.open(r:path("summary.json"))
  check.eq(f:read("a"), '{\n  "a": [\n    0.5\n  ],\n  "b": 1\n}\n', "write_json: indented, sorted")
  f:close()

  local items = r:jsonl("items.jsonl")
  items:write({ i = 1, p = 0.5 })
  items:write({ i = 2, p = 0.25 })
  items:close()
  do
    local more <close> = r:jsonl("items.jsonl")
    more:write({ i = 3 })
  end
  f = io.open(r:path("items.jsonl"), "a")
  f:write('{"i": 4')
  f:close()
  local rows = r:read_jsonl("items.jsonl")
  check.eq(#rows, 3, "jsonl appends; read_jsonl drops a cut-off last line")
  check.eq(rows[3].i, 3, "... and keeps the complete ones")
  do
    local again <close> = r:jsonl("items.jsonl")
    again:write({ i = 5 })
  end
  rows = r:read_jsonl("items.jsonl")
  check.eq({ #rows, rows[4] and rows[4].i }, { 4, 5 }, "appending after a cut-off line drops it, and the new line stays whole")
  check.eq(r:read_jsonl("none.jsonl"), {}, "read_jsonl of a missing file is empty")

  r:write_config({ model = "m", attribution = { steps = 20 } })
  local yaml = require "knwb.yaml"
  check.eq(yaml.load(r:path("config.yaml")), { model = "m", attribution = { steps = 20 } }, "write_config writes loadable YAML")

  r:provenance({ seed = 7, threads = 2, model_sha256 = "abc" })
  local p = json.load(r:path("provenance.json"))
  check.eq(p.seed, 7, "provenance keeps the caller's fields")
  check.eq(p.knwb_version, KNWB_VERSION, "provenance: knwb version")
  check.ok(type(p.git_commit) == "string" and (p.git_commit == "unknown" or #p.git_commit >= 40), "provenance: git commit (%s)", p.git_commit)
  check.ok(p.date_utc:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$") ~= nil, "provenance: UTC ISO 8601 date")
  check.eq(p.command[1], "knwb", "provenance: command line, host name only")
  check.ok(p.command[2]:find("test_json.lua", 1, true) ~= nil, "provenance: the script")
  check.ok(type(p.environment) == "table", "provenance: thread settings from the environment")

  r:table("summary", { "relation", "change", "n" }, { { relation = "P36", change = -0.29123, n = 10 }, { "P|17", 0.5, 3 } })
  f = io.open(r:path("summary.tsv"))
  check.eq(f:read("a"), "relation\tchange\tn\nP36\t-0.2912\t10\nP|17\t0.5\t3\n", "table: TSV")
  f:close()
  f = io.open(r:path("summary.md"))
  check.eq(f:read("a"), "| relation | change | n |\n|---|---:|---:|\n| P36 | -0.2912 | 10 |\n| P\\|17 | 0.5 | 3 |\n", "table: Markdown")
  f:close()

  local digest = run.sha256_file(r:path("notes.txt"))
  check.eq(digest, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", "sha256_file of a quote-laden path")
  check.err(function() run.sha256_file(r:path("missing")) end, "sha256: cannot read", "sha256_file names a missing file")

  local auto = run.new { experiment = "exp", root = base .. "/runs" }
  local again = run.new { experiment = "exp", root = base .. "/runs" }
  check.ok(auto.dir:match("/runs/exp%-%d%d%d%d%d%d%d%d%-%d%d%d%d%d%d$") ~= nil, "default name runs/EXPERIMENT-YYYYmmdd-HHMMSS")
  check.ok(again.dir ~= auto.dir, "a second run in the same second gets its own directory")
  os.execute("rm -rf -- " .. run.shell_quote(base))
end

print("# progress")
do
  local lines = {}
  local out = { write = function(self, ...) lines[#lines + 1] = table.concat { ... } return self end,
    flush = function() end }
  local now = 0
  local clock = function() return now end
  local bar = progress.new("attribute", 1000, { unit = "prompts", mode = "plain", out = out, clock = clock })
  for _ = 1, 99 do
    now = now + 0.01
    bar:step()
  end
  check.eq(#lines, 0, "plain mode is quiet in its first second")
  now = 1.0
  bar:step()
  check.eq(lines[1], "attribute  100/1000  10.0%  100 prompts/s  ETA 9s\n", "plain mode: the first line, with an ETA, after 1 s")
  for _ = 1, 23 do bar:step() end
  check.eq(#lines, 1, "then quiet until its interval")
  now = 26.97
  bar:step(0)
  check.eq(lines[2], "attribute  123/1000  12.3%  4.56 prompts/s  ETA 3m12s\n", "progress line: count, percent, rate, ETA")
  bar:set(1000)
  now = 219.3
  check.near(bar:done(), 219.3, 1e-9, "done returns the elapsed seconds")
  check.eq(lines[3], "attribute  1000/1000  100.0%  4.56 prompts/s  took 3m39s\n", "final line")
  bar:done()
  check.eq(#lines, 3, "done prints once")
  lines = {}
  now = 0
  local staged = progress.new("suppress", 100, { unit = "prompts", mode = "plain", out = out, clock = clock, after = 300,
    after_label = "sweep" })
  now = 2
  staged:step(50)
  check.eq(lines[1], "suppress  50/100  50.0%  25 prompts/s  ETA 2s (+ sweep ~12s)\n", "a later stage's estimate follows the ETA")

  lines = {}
  now = 0
  local tty = progress.new("train", nil, { unit = "steps", mode = "tty", out = out, clock = clock })
  now = 0.1
  tty:step()
  check.eq(lines[1], "\rtrain  1 steps  10 steps/s  elapsed 0s\27[K", "tty mode redraws in place; no total: count, rate, elapsed")
  local n = #lines
  now = 0.2
  tty:step()
  check.eq(#lines, n, "tty mode waits half a second between redraws")
  lines = {}
  local off = progress.new("x", 5, { mode = "off", out = out, clock = clock })
  off:step()
  off:done()
  check.eq(#lines, 0, "off mode prints nothing")
end

check.done()
