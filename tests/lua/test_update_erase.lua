-- test_update_erase.lua: experiments/update.lua and experiments/erase.lua end to end on the
-- fixture model tests/fixtures/ref/odd and the fact set of tests/fixtures/edit/ (run as
-- subprocesses into a temporary directory): run-directory files, summary.json shapes and
-- finiteness, reproducibility from the written config, the saved erased model, the erase numbers
-- recomputed in process, and refusals of bad input with their messages.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local knwb = require "knwb"
local edit = require "knwb.edit"
local json = require "knwb.json"
local q = knwb.run.shell_quote

local MODEL = "tests/fixtures/ref/odd"
local FIX = "tests/fixtures/edit/"

local runs = require "runs"
local TMP = runs.tmpdir()
local read = runs.slurp

-- Runs ./knwb SCRIPT ARGS... (the label only names the call); returns ok, stdout, stderr.
local function knwb_run(_label, script, ...)
  local args = {}
  for i, a in ipairs { ... } do args[i] = q(a) end
  return runs.knwb(TMP, script, table.concat(args, " "))
end

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

local function lines(path)
  local out = {}
  for line in (read(path) or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(line, path) end
  return out
end

---------------------------------------------------------------------------------------------------
print("# update.lua end to end")
local UPD = TMP .. "/update"
do
  local ok, out, err = knwb_run("update", "experiments/update.lua", FIX .. "update.yaml", "--out", UPD)
  check.ok(ok, "update.lua exits 0%s", ok and "" or (": " .. err))
  for _, f in ipairs { "config.yaml", "provenance.json", "edits.jsonl", "results.jsonl", "summary.json", "summary.md", "update.svg" } do
    check.ok(read(UPD .. "/" .. f) ~= nil, "run dir has %s", f)
  end
  local s = json.decode(read(UPD .. "/summary.json") or "{}")
  local keys = { "edits", "change_rate", "success_rate", "success_top5", "delta_ppl_intra", "delta_ppl_inter" }
  for _, which in ipairs { { "kn", s }, { "random", s.random or {} } } do
    local good = true
    for _, k in ipairs(keys) do good = good and finite(which[2][k]) end
    check.ok(good, "summary.json (%s): %s present and finite", which[1], table.concat(keys, ", "))
    local rates = true
    for _, k in ipairs { "change_rate", "success_rate", "success_top5" } do rates = rates and which[2][k] >= 0 and which[2][k] <= 1 end
    check.ok(rates, "summary.json (%s): rates in [0, 1]", which[1])
  end
  check.eq(s.edits, 9, "3 relations x facts_per_relation 3 = 9 edits")
  check.eq(s.random and s.random.edits, 9, "as many random-neuron edits")
  local results = lines(UPD .. "/results.jsonl")
  check.eq(#results, s.edits, "one results line per edit")
  local r1 = results[1] or {}
  check.ok(r1.object ~= r1.new_object and r1.kn and #r1.kn.neurons == #r1.random.neurons,
    "an edit: new object differs, the control has as many neurons")
  local journal = lines(UPD .. "/edits.jsonl")
  check.eq(#journal, 4 * s.edits, "journal: apply + undo for the KN edit and for the control")
  local j1 = journal[1] or {}
  check.ok(j1.event == "apply" and j1.rule == "update" and j1.edit == r1.kn.edit_id and j1.params.lambda2 == 8
    and j1.neurons and finite(j1.neurons[1].old_norm) and finite(j1.neurons[1].new_norm),
    "journal entry: edit id, rule, params, neurons with old/new norms")
  check.eq(journal[2], { event = "undo", edit = j1.edit }, "each edit is undone before the next")
  local md = read(UPD .. "/summary.md") or ""
  check.ok(md:find("| knowledge neurons | 9 |", 1, true) and md:find("| random neurons | 9 |", 1, true), "summary.md table rows")
  check.ok((read(UPD .. "/update.svg") or ""):sub(1, 4) == "<svg", "update.svg is an SVG")
  check.ok(out:find("Updating 9 facts", 1, true) ~= nil, "verdict on stdout: %s", (out:match("[^\n]*")))
  check.ok(not out:find("update  ", 1, true), "no progress on stdout")
  local prov = json.decode(read(UPD .. "/provenance.json") or "{}")
  check.eq(prov.model_sha256, "3c09f7156318aa876d2f127d560bf4173c98d84fefbc0fd342566ad7332b3b85", "provenance names the model hash")
  check.eq(s.neurons_source, "file", "the fixture's neurons.jsonl was reused (its .meta.json names this model)")

  local ok2 = knwb_run("update2", "experiments/update.lua", UPD .. "/config.yaml", "--out", TMP .. "/update2")
  check.ok(ok2 and read(TMP .. "/update2/results.jsonl") == read(UPD .. "/results.jsonl"),
    "rerun from the written config.yaml: identical results.jsonl (seeded)")
  local ok4 = knwb_run("update4", "experiments/update.lua", FIX .. "update.yaml", "--set", 'neurons=""',
    "--set", "update.facts_per_relation=1", "--out", TMP .. "/update4")
  local s4 = json.decode(read(TMP .. "/update4/summary.json") or "{}")
  local computed, stored = lines(TMP .. "/update4/neurons.jsonl"), lines(FIX .. "neurons.jsonl")
  -- (a tolerance: another BLAS thread count may move a score across the 0.2 x max threshold)
  local jac = 0
  for k = 1, #stored do
    local a, inter, union = {}, 0, 0
    for _, ne in ipairs(stored[k].kn) do a[ne[1] * 1000 + ne[2]] = true; union = union + 1 end
    for _, ne in ipairs(computed[k] and computed[k].kn or {}) do
      if a[ne[1] * 1000 + ne[2]] then inter = inter + 1 else union = union + 1 end
    end
    jac = jac + (union > 0 and inter / union or 1)
  end
  jac = #stored > 0 and jac / #stored or 0
  check.ok(ok4 and s4.neurons_source == "computed" and read(TMP .. "/update4/neurons.jsonl.meta.json") ~= nil,
    "neurons = \"\": computed, and written to the run dir with its .meta.json")
  check.ok(#computed == #stored and jac >= 0.9, "the computed knowledge neurons match the fixture's neurons.jsonl (%d facts, mean Jaccard %.3f)", #stored, jac)
  local ok3 = knwb_run("update3", "experiments/update.lua", FIX .. "update.yaml", "--set", "seed=8", "--out", TMP .. "/update3")
  check.ok(ok3 and read(TMP .. "/update3/results.jsonl") ~= read(UPD .. "/results.jsonl"), "another seed samples other edits")
end

---------------------------------------------------------------------------------------------------
print("# erase.lua end to end")
local ERA, SAVED = TMP .. "/erase", TMP .. "/saved"
local es
do
  local ok, out, err = knwb_run("erase", "experiments/erase.lua", FIX .. "erase.yaml", "--out", ERA, "--save", SAVED)
  check.ok(ok, "erase.lua exits 0%s", ok and "" or (": " .. err))
  for _, f in ipairs { "config.yaml", "provenance.json", "edits.jsonl", "summary.json", "summary.md", "erase.svg" } do
    check.ok(read(ERA .. "/" .. f) ~= nil, "run dir has %s", f)
  end
  es = json.decode(read(ERA .. "/summary.json") or "{}")
  local rel = es.relations or {}
  check.eq(#rel, 3, "erase.relations = [] erases every relation of the fact set, one at a time")
  local metric = { "acc_before", "acc_after", "ppl_before", "ppl_after", "other_ppl_before", "other_ppl_after" }
  local good, rgood = true, true
  for _, r in ipairs(rel) do
    good = good and type(r.relation) == "string" and r.neurons == 6
    for _, k in ipairs(metric) do good = good and finite(r[k]); rgood = rgood and r.random and finite(r.random[k]) end
    good = good and finite(r.held_out_ppl_before) and finite(r.held_out_ppl_after) and finite(r.other_acc_after)
  end
  check.ok(good, "summary.json relations: relation, neurons = 6, %s, held_out_*, other_acc_* finite", table.concat(metric, ", "))
  check.ok(rgood, "summary.json relations[].random: the same metric keys, finite")
  check.eq({ rel[1] and rel[1].relation, rel[2] and rel[2].relation, rel[3] and rel[3].relation }, { "P1", "P2", "P3" }, "relations in set order")
  local rose = true
  for _, r in ipairs(rel) do rose = rose and r.ppl_after > r.ppl_before end
  check.ok(rose, "erasing knowledge neurons raises the erased relation's perplexity (all 3)")
  check.eq(rel[1] and rel[1].random.acc_before, rel[1] and rel[1].acc_before, "the control shares the before numbers")
  check.eq(es.model_unchanged, true, "summary: model unchanged after the run (logits of 64 prompts bit-identical)")
  check.eq(es.edits_in_force_after, 0, "summary: model:edits() empty after the run")
  local journal = lines(ERA .. "/edits.jsonl")
  check.eq(#journal, 12, "journal: 3 relations x (erase KN + undo + erase random + undo)")
  local zero = true
  for _, e in ipairs(journal) do
    if e.event == "apply" then
      zero = zero and e.rule == "erase" and e.params.value == "zero"
      for _, n in ipairs(e.neurons) do zero = zero and n.new_norm == 0 end
    end
  end
  check.ok(zero, "journal: erase entries with new_norm 0")
  local svg = read(ERA .. "/erase.svg") or ""
  check.ok(svg:sub(1, 4) == "<svg" and svg:find("P1 erased · KN", 1, true) ~= nil, "erase.svg: before/after bars per relation")
  check.ok((read(ERA .. "/summary.md") or ""):find("| P1 | alpha | knowledge | 6 |", 1, true) ~= nil, "summary.md table")
  check.ok(out:find("Erasing 6 knowledge neurons of P1 (alpha) raised its perplexity", 1, true) ~= nil,
    "verdict on stdout: %s", (out:match("[^\n]*")))
  check.ok(out:find("On held-out paraphrases", 1, true) ~= nil, "the verdict reports held-out paraphrases")

  -- The numbers recomputed in process: erase P1's set, evaluate P1's prompts, undo.
  local model = knwb.load(MODEL)
  local set = knwb.facts.load { facts = FIX .. "facts.tsv", templates = FIX .. "templates.yaml" }
  knwb.neurons.prepare(set, model, { min_templates = 4 })
  local items = {}
  for _, f in ipairs(set.relations[1].facts) do
    for _, it in ipairs(knwb.neurons.items_of(model, set.relations[1], f, "all")) do items[#items + 1] = it end
  end
  local before = edit.evaluate(model, items)
  local list = {}
  for k, n in ipairs(rel[1] and rel[1].erased or {}) do list[k] = { n.layer, n.neuron } end
  local h = edit.erase(model, list)
  local after = edit.evaluate(model, items)
  h:undo()
  -- (batches padded to other lengths round differently: float32 tolerance)
  check.near(before.ppl, rel[1] and rel[1].ppl_before or 0, 1e-6 * before.ppl, "P1 perplexity before, recomputed")
  check.near(after.ppl, rel[1] and rel[1].ppl_after or 0, 1e-6 * after.ppl, "P1 perplexity after, recomputed")
  check.eq(after.acc, rel[1] and rel[1].acc_after, "P1 accuracy after, recomputed")
  check.eq(#model:edits(), 0, "in-process erase undone: model:edits() empty")
  check.ok(edit.evaluate(model, items).nll == before.nll, "... and the perplexity is bit-identical again")

  -- --save DIR: the first relation's erasure in force, nothing else changed.
  local saved = knwb.load(SAVED)
  local erased = {}
  for _, k in ipairs(list) do erased[k[1] * 1000 + k[2]] = true end
  local zeros, same = true, true
  for l = 0, 2 do
    for i = 0, 49 do
      local a, b = model:slot(l, i), saved:slot(l, i)
      if erased[l * 1000 + i] then
        zeros = zeros and edit.norm(b) == 0
      else
        for r = 1, #a do same = same and a[r] == b[r] end
      end
    end
  end
  check.ok(zeros, "--save: P1's %d erased value slots are zero in the saved model", #list)
  check.ok(same, "--save: every other value slot is unchanged")
  check.eq(knwb.run.sha256_file(MODEL .. "/model.safetensors"), "3c09f7156318aa876d2f127d560bf4173c98d84fefbc0fd342566ad7332b3b85",
    "the fixture model file itself is untouched")
  saved:free()

  local ok2 = knwb_run("erase_unk", "experiments/erase.lua", FIX .. "erase.yaml", "--set", "erase.relations=[P2]",
    "--set", "erase.value=unk", "--out", TMP .. "/erase_unk", "--save", TMP .. "/saved_unk")
  local s2 = json.decode(read(TMP .. "/erase_unk/summary.json") or '{"relations":[]}')
  check.ok(ok2 and #s2.relations == 1 and s2.relations[1].relation == "P2", "erase.relations = [P2] erases P2 only")
  local unk_ok = ok2
  if ok2 then
    local su = knwb.load(TMP .. "/saved_unk")
    local n1 = s2.relations[1].erased[1]
    unk_ok = check.equal(su:slot(n1.layer, n1.neuron), model:embedding(model:id("[UNK]")))
    su:free()
  end
  check.ok(unk_ok, "erase.value = unk writes the [UNK] word embedding into the slots")
  model:free()
end

---------------------------------------------------------------------------------------------------
print("# refused input")
do
  local ok, _, err = knwb_run("bad_rel", "experiments/erase.lua", FIX .. "erase.yaml", "--set", "erase.relations=[P1, P9]",
    "--out", TMP .. "/bad_rel")
  check.ok(not ok and err:find('erase.relations: unknown relation "P9" (known: P1, P2, P3)', 1, true) ~= nil,
    "unknown relation: refused, named, known ones listed: %s", (err:match("[^\n]*")))
  check.ok(read(TMP .. "/bad_rel/summary.json") == nil and not err:find("traceback", 1, true), "... before any run directory, no traceback")
  local ok2, _, err2 = knwb_run("no_kn", "experiments/erase.lua", FIX .. "erase.yaml", "--set", 'neurons=""',
    "--set", "refine.min_prompts=100", "--set", "erase.relations=[P2]", "--out", TMP .. "/no_kn")
  check.ok(not ok2 and err2:find("relation P2 (beta): none of its 15 facts has knowledge neurons", 1, true) ~= nil
    and err2:find("the model is unchanged", 1, true) ~= nil, "a relation without knowledge neurons: refused: %s", (err2:match("[^\n]*")))
  local ok3, _, err3 = knwb_run("zero", "experiments/erase.lua", FIX .. "erase.yaml", "--set", "erase.neurons=0")
  check.ok(not ok3 and err3:find("erase.neurons: expected an integer >= 1, got 0", 1, true) ~= nil, "erase.neurons = 0: refused by the schema")
  local ok4, _, err4 = knwb_run("bad_value", "experiments/erase.lua", FIX .. "erase.yaml", "--set", "erase.value=ones")
  check.ok(not ok4 and err4:find("erase.value", 1, true) ~= nil, "erase.value = ones: refused by the schema")
  local ok5, _, err5 = knwb_run("bad_model", "experiments/update.lua", FIX .. "update.yaml", "--set", "model=" .. TMP .. "/nowhere")
  check.ok(not ok5 and err5:find("update: cannot load the model", 1, true) ~= nil, "a missing model folder: refused: %s", (err5:match("[^\n]*")))

  local model = knwb.load(MODEL)
  local probe = { model:item("w30 w10 w11 [MASK]", "w83"), model:item("[MASK] w14 w31 w15", "w4") }
  local function snap()
    local t = {}
    for k, r in ipairs(model:score(probe)) do t[k] = string.pack("dd", r.p, r.logp) end
    return table.concat(t)
  end
  local pristine = snap()
  check.err(function() model:item("w30 w10 w11 [MASK]", "w1 w2") end, 'target "w1 w2" is not a single token of the vocabulary (it tokenizes to w1 | w2)',
    "a new object that is not one token: model:item's message")
  check.err(function() edit.update(model, { { 2, 0 } }, "w83", "w1 w2") end, "update: the new object", "edit.update names the new object")
  check.err(function() edit.erase(model, {}) end, "erase: no neurons to erase", "an erase of zero neurons is refused")
  check.ok(snap() == pristine and #model:edits() == 0, "... and the model's logits are unchanged")
  local h = edit.erase(model, { { 2, 0 } })
  model:free()
  check.err(function() h:undo() end, "freed", "edit:undo() after model:free(): an error naming the freed model")
end

os.execute("rm -rf -- " .. q(TMP))
check.done()
