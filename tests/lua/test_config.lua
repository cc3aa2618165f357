-- test_config.lua: knwb.yaml (typing, marks, refusals, dump round-trip), knwb.config (schema,
-- defaults, errors with file:line:col, overrides, describe) and knwb.cli.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local yaml = require "knwb.yaml"
local json = require "knwb.json"
local config = require "knwb.config"
local cli = require "knwb.cli"

local FIX = "tests/fixtures/yaml/"

local schema = {
  type = "record",
  fields = {
    model = { type = "string", doc = "Hugging Face model folder" },
    seed = { type = "integer", min = 0, default = 42, doc = "random seed" },
    attribution = {
      type = "record",
      doc = "integrated gradients",
      fields = {
        steps = { type = "integer", min = 1, default = 20, doc = "Riemann steps m" },
        quadrature = { type = "enum", values = { "riemann", "trapezoid" }, default = "riemann" },
        batch = { type = "integer", min = 1, max = 64, default = 8 },
      },
    },
    refine = {
      type = "record",
      fields = {
        threshold = { type = "number", gt = 0, max = 1, default = 0.2, doc = "fraction of the top score" },
        share = { type = "number", min = 0, max = 1, default = 0.7 },
      },
    },
    relations = { type = "list", of = { type = "string" }, default = {} },
    thresholds = { type = "map", of = { type = "number", min = 0 }, default = {} },
    verbose = { type = "boolean", default = false },
    save = { type = "string", optional = true, doc = "where to write the edited model" },
    even = { type = "integer", default = 2, check = function(v) if v % 2 ~= 0 then return "must be even" end end },
  },
}

---------------------------------------------------------------------------------------------------
print("# yaml: core-schema typing")
do
  local d = yaml.load(FIX .. "scalars.yaml")
  check.eq(d.ints, { 0, -17, 5, 31, 15, 7 }, "integers: decimal, signed, 0x, 0o, leading zeros")
  check.eq(math.type(d.floats[1]), "float", "1.5 is a float")
  check.eq(d.floats[3], 1e-5, "1e-5 is a float")
  check.eq(d.floats[4], 2000.0, "2E3 is the float 2000.0")
  check.eq(d.floats[5], 0.5, ".5 is a float")
  check.eq(d.floats[6], 6.0, "6. is a float")
  check.eq(d.floats[7], math.huge, ".inf")
  check.eq(d.floats[8], -math.huge, "-.inf")
  check.ok(d.floats[9] ~= d.floats[9], ".nan is NaN")
  for i = 1, 4 do check.ok(d.nulls[i] == yaml.null, "nulls[%d] is yaml.null", i) end
  check.eq(d.nulls[5], "", 'a quoted "" is the empty string, not null')
  check.ok(d.empty_value == yaml.null, "a key with no value keeps its key, as yaml.null")
  check.eq(d.bools, { true, true, true, false, false, false }, "booleans in the three spellings")
  check.eq(d.strings, { "yes", "no", "on", "off", "12", "3.5", "1.2.3", "0x", "a-b", "abc", "true", "42" },
    "yes/no/on/off are strings (YAML 1.2), quoted scalars and !!str are always strings")
  check.eq(d.block, "line one\nline two\n", "a block scalar is a string")
  check.eq(math.type(d.big), "float", "an integer beyond 64 bits reads as a float, as in Lua")
  check.eq(tostring(yaml.null), "null", "tostring(yaml.null)")
  check.ok(yaml.null == json.null, "yaml.null and json.null are the same value")
  check.err(function() yaml.null.x = 1 end, "constant", "yaml.null cannot be written to")
end

print("# yaml: marks")
do
  local d, marks, keymarks = yaml.load(FIX .. "good.yaml")
  check.eq(d.attribution.steps, 20, "nested value")
  check.eq(marks["attribution.steps"], "5:10", "marks give the value's line:col")
  check.eq(keymarks["attribution.steps"], "5:3", "keymarks give the key's line:col")
  check.eq(marks["relations[2]"], "11:18", "list items are path[i], 1-based")
  check.eq(marks["thresholds.P36"], "14:8", "map entries")
  check.eq(marks[""], "2:1", "the root has the path \"\"")
  local e, m = yaml.loads("", "empty")
  check.eq(e, nil, "an empty text is no document: nil")
  check.eq(next(m), nil, "... and no marks")
  local t = yaml.loads("a: {}\nb: []\n")
  check.eq(yaml.dump(t), "a: {}\nb: []\n", "empty mapping and empty list stay distinct through dump")
end

print("# yaml: refusals name file:line:col")
do
  check.err(function() yaml.load(FIX .. "syntax_error.yaml") end,
    FIX .. "syntax_error.yaml:4:14: mapping values are not allowed in this context", "syntax error with position")
  check.err(function() yaml.load(FIX .. "duplicate.yaml") end,
    FIX .. "duplicate.yaml:3:1: duplicate key 'seed' (first defined at 2:1)", "duplicate key")
  check.err(function() yaml.load(FIX .. "alias.yaml") end,
    FIX .. "alias.yaml:1:7: anchors (&base) and aliases are not supported", "anchors refused")
  check.err(function() yaml.loads("a: 1\nb: *x\n", "s.yaml") end, "s.yaml:2:4: aliases (*x) are not supported",
    "aliases refused")
  check.err(function() yaml.load(FIX .. "python_tag.yaml") end,
    FIX .. "python_tag.yaml:1:8: tag '!!python/object/apply:os.system' is not allowed", "python tags refused")
  check.err(function() yaml.loads("x: !lua print(1)\n", "s.yaml") end, "s.yaml:1:4: tag '!lua' is not allowed",
    "local tags refused")
  check.err(function() yaml.loads("1: one\n", "s.yaml") end,
    "s.yaml:1:1: mapping key '1' is an integer, not a string (quote it: \"1\")", "non-string keys refused")
  check.err(function() yaml.loads("? [a, b]\n: c\n", "s.yaml") end, "s.yaml:1:3: mapping keys must be strings",
    "complex keys refused")
  check.err(function() yaml.loads("a: 1\n---\nb: 2\n", "s.yaml") end, "s.yaml:2:1: a second document",
    "several documents refused")
  check.err(function() yaml.loads("a:\n\tb: 1\n", "s.yaml") end, "s.yaml:2:1: found character that cannot start any token: a tab",
    "tabs are explained")
  check.err(function() yaml.loads("a: !!int abc\n", "s.yaml") end, "s.yaml:1:4: !!int: 'abc' is not an integer",
    "a core tag must match its scalar")
  check.err(function() yaml.loads("a: 0x1FFFFFFFFFFFFFFFF\n", "s.yaml") end, "does not fit in 64 bits", "hex overflow")
  check.err(function() yaml.loads("a: \xff\n", "s.yaml") end, "s.yaml:1:4: invalid leading UTF-8 octet (byte 0xFF)",
    "invalid UTF-8 with its position")
  check.err(function() yaml.load("tests/fixtures/yaml/no-such-file.yaml") end,
    "tests/fixtures/yaml/no-such-file.yaml: cannot open: No such file or directory", "missing file")
  local deep = ("[" ):rep(300) .. ("]"):rep(300)
  check.err(function() yaml.loads(deep, "deep") end, "nesting deeper than", "nesting is bounded")
end

print("# yaml: code-like text stays data")
do
  os.remove("/tmp/knwb-pwned")
  local d = yaml.load(FIX .. "code_like.yaml")
  check.eq(d.model, "os.execute('touch /tmp/knwb-pwned')", "Lua-looking text is a string")
  check.eq(d.note, "$(touch /tmp/knwb-pwned)", "shell-looking text is a string")
  check.eq(d.lua, "function() return 1 end", "a function-looking value is a string")
  check.eq(type(d.backticks), "string", "backticks are a string")
  check.ok(io.open("/tmp/knwb-pwned") == nil, "nothing was executed")
end

print("# yaml: dump round-trips")
do
  local value = {
    s = "plain", n = 3, f = 0.1, neg = -2.5e-7, big = 1e300, whole = 2.0, t = true, nul = yaml.null,
    tricky = { "", " lead", "trail ", "a: b", "a #b", "#c", "- x", "[MASK]", "The capital of [MASK] is",
      "123", "1e5", ".inf", "null", "~", "true", "yes", "No", "0x10", "line\nbreak", "tab\there", 'q"uote',
      "back\\slash", "ünïcödé", "\u{2028}", "ctrl\1", "...", "---", "key:", "@at", "%p", "`b`", "'s'", "*a", "&a",
      "!t", "|", ">", "?", ",", "{x}", "./models/tiny" },
    nested = { { a = 1, b = { 1, 2, { c = "d" } } }, { { 1, 2 }, {} }, json.object() },
    ["weird key"] = 1, ["1"] = "one", ["true"] = false, [""] = "empty key",
  }
  local text = yaml.dump(value)
  local back = yaml.loads(text, "dump")
  check.ok(check.equal(back, value), "load(dump(v)) equals v, across tricky strings and nesting")
  for i, s in ipairs(value.tricky) do
    if back.tricky[i] ~= s then check.ok(false, "tricky string %d %q survives", i, s) end
  end
  check.eq(math.type(back.whole), "float", "a whole float stays a float (2.0)")
  check.ok(text:find("\nf: 0.1\n", 1, true) ~= nil, "floats are written in their shortest form")
  check.ok(text:find("s: plain\n", 1, true) ~= nil, "plain strings are not quoted")
  check.eq(yaml.dump({ b = 1, a = { d = 1, c = 2 } }), "a:\n  c: 2\n  d: 1\nb: 1\n", "keys sorted, two-space blocks")
  check.eq(yaml.dump({ { x = 1, y = 2 }, { 3 } }), "- x: 1\n  y: 2\n- - 3\n", "sequences of mappings and sequences")
  check.eq(yaml.dump(0 / 0 ~= 0 / 0 and { v = 0 / 0 } or {}), "v: .nan\n", "NaN dumps as .nan")
  check.err(function() yaml.dump({ a = { 1, x = 2 } }) end, "yaml.dump: table at a mixes keys", "mixed tables refused")
  check.err(function() yaml.dump({ a = { print } }) end, "yaml.dump: cannot write a function value at a[1]",
    "functions refused with their path")
  check.err(function() yaml.dump({ s = "\xff" }) end, "yaml.dump: string is not valid UTF-8 at s", "invalid UTF-8 refused")
  local cyc = {}
  cyc.self = cyc
  check.err(function() yaml.dump(cyc) end, "nesting too deep (is there a cycle?)", "cycles refused")
end

---------------------------------------------------------------------------------------------------
print("# config: valid files and defaults")
do
  local cfg = config.load(FIX .. "good.yaml", schema)
  check.eq(cfg.attribution.quadrature, "trapezoid", "value from the file")
  check.eq(cfg.attribution.batch, 4, "integer from the file")
  check.eq(math.type(cfg.refine.threshold), "float", "number fields are floats")
  check.eq(cfg.relations, { "P17", "P36" }, "list of strings")
  check.eq(cfg.thresholds.P36, 0.5, "map of numbers")
  check.eq(cfg.even, 2, "default filled")
  check.eq(cfg.save, nil, "optional key absent -> nil")
  local d = config.load(FIX .. "empty.yaml", schema, { "model=m" })
  check.eq(d.attribution, { steps = 20, quadrature = "riemann", batch = 8 }, "a record absent from the file is built from defaults")
  check.eq(d.relations, {}, "list default is a fresh copy")
  check.ok(d.relations ~= schema.fields.relations.default, "defaults are copied, not shared")
  local n = config.load(nil, schema, { "model=m" })
  check.eq(n.seed, 42, "no file: all defaults")
  local nulls = config.validate(yaml.loads("model: m\nseed:\nsave: ~\n"), schema, {}, "n.yaml")
  check.eq(nulls.seed, 42, "null for a key with a default takes the default")
  check.eq(nulls.save, nil, "null for an optional key is no value")
  local plain = config.load(FIX .. "good.yaml")
  check.eq(plain.attribution.steps, 20, "without a schema, load only parses")
end

print("# config: errors name file:line:col and the key path")
do
  local f = FIX .. "bad_values.yaml"
  local msg = check.err(function() config.load(f, schema) end,
    f .. ':3:10: attribution.steps: expected an integer >= 1, got "twenty"', "wrong type")
  if msg then
    check.ok(msg:find(f .. ":4:15: attribution.quadrature: expected one of riemann, trapezoid, got \"simpson\"", 1, true),
      "bad enum value is reported in the same error")
    check.ok(msg:find(f .. ":6:14: refine.threshold: expected a number > 0 and <= 1, got 1.5", 1, true),
      "out of range")
    check.ok(msg:find(f .. ':8:18: relations[2]: expected a string, got 36 (quote it to make it a string: "36")', 1, true),
      "list item of the wrong type, with a hint")
    local lines = {}
    for l in msg:gmatch("[^\n]+") do lines[#lines + 1] = l end
    check.eq(#lines, 4, "every error is reported, one per line")
    check.ok(lines[1]:find(":3:10:", 1, true) and lines[4]:find(":8:18:", 1, true), "errors in file order")
  end
  local u = FIX .. "unknown_key.yaml"
  check.err(function() config.load(u, schema) end,
    u .. ":3:3: attribution.stepz: unknown key (known: batch, quadrature, steps; did you mean steps?)",
    "unknown key at the key's position, with the known keys and a suggestion")
  check.err(function() config.load(FIX .. "empty.yaml", schema) end,
    FIX .. "empty.yaml: model: missing (required: a string)", "missing required key")
  check.err(function() config.load(FIX .. "syntax_error.yaml", schema) end,
    FIX .. "syntax_error.yaml:4:14: mapping values are not allowed in this context", "YAML syntax errors pass through")
  check.err(function() config.validate(yaml.loads("model: m\neven: 3\n", "c.yaml"), schema, select(2, yaml.loads("model: m\neven: 3\n")), "c.yaml") end,
    "c.yaml:2:7: even: must be even", "check functions report with position")
  check.err(function() config.validate({ model = "m", seed = 1.5 }, schema) end,
    "(config): seed: expected an integer >= 0, got 1.5", "tables from Lua: no marks, still the key path")
  check.eq(config.validate({ model = "m", seed = 3.0 }, schema).seed, 3, "an integral float is accepted as an integer")
  check.err(function() config.validate({ model = "m", relations = { a = 1 } }, schema) end,
    "relations: expected a list, got a mapping", "mapping where a list belongs")
  check.err(function() config.validate({ model = "m", attribution = { 1, 2 } }, schema) end,
    "attribution: expected a mapping, got a list", "list where a mapping belongs")
  check.err(function() config.load("tests/fixtures/yaml/none.yaml", schema) end, "none.yaml: cannot open", "missing file")
  check.err(function() config.validate(yaml.loads("- a\n"), schema, {}, "l.yaml") end,
    "l.yaml: expected a mapping, got a list", "a config must be a mapping")
end

print("# config: overrides")
do
  local f = FIX .. "good.yaml"
  local cfg = config.load(f, schema, { "attribution.steps=50", "model=other/path", "refine.threshold=0.3",
    "relations=[P19, P20]", "save=", "verbose=false", "relations[2]=P21", "thresholds.P99=1" })
  check.eq(cfg.attribution.steps, 50, "--set attribution.steps=50 gives the integer 50")
  check.eq(cfg.model, "other/path", "--set model=path gives a string")
  check.eq(cfg.refine.threshold, 0.3, "float override")
  check.eq(cfg.relations, { "P19", "P21" }, "list override, then an item override")
  check.eq(cfg.verbose, false, "boolean override")
  check.eq(cfg.save, nil, "an empty value is null")
  check.eq(cfg.thresholds.P99, 1.0, "a new key in a map")
  check.eq(config.load(f, schema, { "model=2021" }).model, "2021", "a value for a string key stays text")
  check.eq(config.load(f, schema, { ["attribution.steps"] = 7 }).attribution.steps, 7, "Lua-valued overrides")
  check.err(function() config.load(f, schema, { "attribution.stepz=5" }) end,
    "--set attribution.stepz=5: unknown key attribution.stepz (known: batch, quadrature, steps; did you mean steps?)",
    "unknown override key names the override")
  check.err(function() config.load(f, schema, { "attribution.steps=0" }) end,
    "--set attribution.steps=0: attribution.steps: expected an integer >= 1, got 0", "an overridden bad value names the override")
  check.err(function() config.load(f, schema, { "relations=[P1, 2]" }) end,
    "--set relations=[P1, 2]: relations[2]: expected a string, got 2", "errors inside an overridden list point at the override")
  check.err(function() config.load(f, schema, { "attribution.steps" }) end,
    "--set attribution.steps: expected KEY=VALUE", "missing =")
  check.err(function() config.load(f, schema, { "a..b=1" }) end, "'a..b' is not a key path", "malformed path")
  check.err(function() config.load(f, schema, { "seed.x=1" }) end, "--set seed.x=1: seed is integer >= 0; it has no key x",
    "a key below a scalar")
  check.err(function() config.load(f, schema, { "relations[5]=x" }) end, "relations has 2 items; [5] is past its end",
    "index past the end")
  check.err(function() config.load(f, schema, { "model=[1" }) end, "--set model=[1: cannot read the value as YAML",
    "unreadable value")
end

print("# config: schema mistakes are caught")
do
  check.err(function() config.validate({}, { type = "record", fields = { a = { type = "integer", defualt = 1 } } }) end,
    "config schema: a: attribute 'defualt' does not apply to type integer", "typo in a schema attribute")
  check.err(function() config.validate({}, { type = "record", fields = { a = { type = "int" } } }) end,
    "config schema: a: unknown type int", "unknown type")
  check.err(function() config.validate({}, { type = "record", fields = { a = { type = "list" } } }) end,
    "config schema: a: a list needs `of`", "list without of")
end

print("# config: dump and describe")
do
  local cfg = config.load(FIX .. "good.yaml", schema, { "save=out/model" })
  local text = config.dump(cfg)
  local tmp = os.tmpname()
  local fh = assert(io.open(tmp, "w"))
  fh:write(text)
  fh:close()
  check.ok(check.equal(config.load(tmp, schema), cfg), "the dumped config loads back to the same config")
  os.remove(tmp)
  local d = config.describe(schema)
  check.ok(d:find("attribution.steps%s+integer >= 1, default 20\n%s+Riemann steps m") ~= nil, "describe: type, default and doc")
  check.ok(d:find("model%s+string, required") ~= nil, "describe: required keys")
  check.ok(d:find("save%s+string, optional") ~= nil, "describe: optional keys")
  check.ok(d:find("attribution.quadrature%s+one of riemann, trapezoid, default riemann") ~= nil, "describe: enums")
  check.ok(d:find("relations%s+list of string, default %[%]") ~= nil, "describe: lists")
end

---------------------------------------------------------------------------------------------------
print("# cli")
do
  local spec = {
    name = "erase", description = "Erase a relation.", schema = schema,
    flags = { { name = "save", arg = "DIR", doc = "write the edited model" }, { name = "quick", doc = "smoke test" },
      { name = "dry-run", doc = "plan only" } },
  }
  local opts = assert(cli.try({ [0] = "experiments/erase.lua", FIX .. "good.yaml", "--set", "attribution.steps=5",
    "--set=seed=3", "--out", "runs/x", "--save=models/e", "--quick" }, spec))
  check.eq(opts.config, FIX .. "good.yaml", "positional config path")
  check.eq(opts.set, { "attribution.steps=5", "seed=3" }, "--set is repeatable, with or without =")
  check.eq(opts.cfg.attribution.steps, 5, "the config is loaded with the overrides")
  check.eq(opts.out, "runs/x", "--out DIR")
  check.eq(opts.save, "models/e", "--save=DIR")
  check.eq(opts.quick, true, "boolean flag")
  check.eq(opts.dry_run, false, "absent flag is false, dashes read as _")
  local _, err = cli.try({ [0] = "erase.lua", "--frobnicate" }, spec)
  check.eq(err, "unknown option --frobnicate (known: --dry-run, --help, --merge, --out DIR, --quick, --save DIR, --set KEY=VALUE, --shard K/N)",
    "unknown flag named, known ones listed")
  _, err = cli.try({ [0] = "erase.lua", "--out" }, spec)
  check.eq(err, "option --out needs a value (DIR)", "missing value")
  _, err = cli.try({ [0] = "erase.lua", "--quick=yes" }, spec)
  check.eq(err, "option --quick takes no value (got --quick=yes)", "value for a boolean flag")
  _, err = cli.try({ [0] = "erase.lua", "a.yaml", "b.yaml" }, spec)
  check.eq(err, "unexpected argument 'b.yaml' (a config file was already given: a.yaml)", "two config files")
  _, err = cli.try({ [0] = "erase.lua", FIX .. "good.yaml", "--set", "attribution.stepz=1" }, spec)
  check.ok(err and err:find("--set attribution.stepz=1: unknown key", 1, true), "config errors come back as messages")
  local h = assert(cli.try({ [0] = "erase.lua", "--help" }, spec))
  check.eq(h.help, true, "--help is recognised")
  local usage = cli.usage(spec, { [0] = "experiments/erase.lua" })
  check.ok(usage:find("usage: knwb experiments/erase.lua [CONFIG.yaml]", 1, true), "usage names the script")
  check.ok(usage:find("Erase a relation.", 1, true), "usage has the description")
  check.ok(usage:find("--save DIR%s+write the edited model") ~= nil, "usage lists script flags")
  check.ok(usage:find("attribution.steps%s+integer >= 1, default 20") ~= nil, "usage describes the config keys")

  -- cli.parse exits: 0 after --help (usage on stdout), 2 on a usage error (message, no traceback).
  local function run(args)
    local code = "require('knwb.cli').parse({[0]='x.lua', " .. args .. "}, {description='Probe.'})"
    local pipe = io.popen("./knwb -e \"" .. code .. "\" 2>&1; echo \"exit=$?\"")
    local out = pipe:read("a")
    pipe:close()
    return out
  end
  local out = run("'--help'")
  check.ok(out:find("usage: knwb x.lua", 1, true) and out:find("exit=0", 1, true), "cli.parse --help prints usage, exits 0")
  out = run("'--nope'")
  check.ok(out:find("x.lua: unknown option --nope", 1, true) and out:find("exit=2", 1, true)
    and not out:find("traceback", 1, true), "cli.parse: usage error on stderr, exit 2, no traceback")
end

check.done()
