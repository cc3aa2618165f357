-- test_facts.lua: fact sets in the project's format and in the PARAREL layout, with the paper's
-- filters (single-token objects under the model's tokenizer, relations with more than 3
-- templates), prompts, majority baselines, and the errors of malformed inputs.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local facts = require "knwb.facts"

local m = knwb.load("tests/fixtures/ref/odd")

-- PARAREL: P17 has 3 patterns and is dropped (the paper keeps relations with more than 3)
local set = facts.load_pararel { patterns = "tests/fixtures/pararel/patterns", facts = "tests/fixtures/pararel/facts" }
check.eq(#set.relations, 1, "one relation kept")
check.eq(set.relations[1].id, "P19", "P19 kept")
check.eq(set.dropped[1] and set.dropped[1].id, "P17", "P17 dropped for having 3 templates")
check.eq(#set.relations[1].facts, 4, "P19 has 4 facts before filtering")
local dropped = facts.filter_single_token(set, m)
check.eq(dropped.P19, 2, "two facts dropped: a two-token object and an unknown word")
check.eq(#set.relations[1].facts, 2, "two single-token facts remain")
check.eq(set.relations[1].facts[2].subject, "w11 w12", "multi-word subjects are kept")
local prompts = facts.prompts(set.relations[1], set.relations[1].facts[1])
check.eq(#prompts, 4, "a prompt per pattern")
check.eq(prompts[1].text, "w10 w1 w2 [MASK] .", "[X] is the subject, [Y] the mask")
local item = m:item(prompts[4].text, set.relations[1].facts[1].object)
check.eq(item.mask, 1, "[Y] at the start: mask right after [CLS]")
local only = facts.load_pararel { patterns = "tests/fixtures/pararel/patterns", facts = "tests/fixtures/pararel/facts",
  relations = { "P19" }, min_templates = 1 }
check.eq(#only.relations, 1, "relations filter")
check.err(function() facts.load_pararel { patterns = "tests/fixtures/no-such-dir", facts = "x" } end, "no P*.jsonl pattern files",
  "a missing pattern folder")

-- the project's format (the default model's fact set)
local own = facts.load { facts = "data/facts.tsv", templates = "data/templates.yaml", relations = { "P36" } }
check.eq(#own.relations, 1, "one relation selected")
local r = own.relations[1]
check.ok(#r.facts > 100, "P36 has its facts (%d)", #r.facts)
local held = facts.prompts(r, r.facts[1], "held_out")
local train = facts.prompts(r, r.facts[1], "train")
check.ok(#held >= 2 and #train >= 6, "held-out (%d) and training (%d) templates", #held, #train)
local maj = facts.majority(r)
check.ok(maj < 0.5, "majority baseline under one half (%.3f)", maj)
check.err(function() facts.load { facts = "data/facts.tsv", templates = "data/templates.yaml", relations = { "P999" } } end,
  "unknown relation \"P999\"", "an unknown relation")
check.err(function() facts.load { facts = "tests/fixtures/no-such.tsv", templates = "data/templates.yaml" } end,
  "tests/fixtures/no-such.tsv: cannot open", "a missing fact file")

-- a malformed template
local tmp = os.tmpname()
local f = io.open(tmp .. ".yaml", "w")
f:write("P1:\n  label: x\n  templates:\n    - {text: \"[X] has no object slot .\"}\n")
f:close()
local g = io.open(tmp .. ".tsv", "w")
g:write("relation\tsubject\tobject\nP1\tw1\tw2\n")
g:close()
check.err(function() facts.load { facts = tmp .. ".tsv", templates = tmp .. ".yaml" } end, "must hold [X] and [Y] exactly once",
  "a template without [Y]")
os.remove(tmp); os.remove(tmp .. ".yaml"); os.remove(tmp .. ".tsv")
check.done()
