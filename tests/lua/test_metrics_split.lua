-- test_metrics_split.lua: knwb.metrics.by_prompts and by_confidence (moved out of suppress.lua):
-- each part's summary is change_summary of exactly its rows, with the keys suppress.lua names
-- its bootstrap streams by; bins are [lo, hi) with the last one closed.
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local M = require "knwb.metrics"

local rows = {
  { relation = "P1", p0 = 0.5, p = 0.4, held_out = false }, { relation = "P1", p0 = 0.05, p = 0.2, held_out = true },
  { relation = "P2", p0 = 1.0, p = 0.3, held_out = false }, { relation = "P2", p0 = 0.4, p = 0.5, held_out = true },
}
local amp = {}
for k, r in ipairs(rows) do amp[k] = { relation = r.relation, p0 = r.p0, p = r.p * 2, held_out = r.held_out } end
local by = { kn = { suppress = rows, amplify = amp }, random = { suppress = { rows[1] }, amplify = { amp[1] } } }
local keys = {}
local function summarize(rs, ...) keys[#keys + 1] = table.concat({ ... }, "/"); return M.change_summary(rs) end

local bp = M.by_prompts(by, { "kn", "random" }, summarize)
check.eq(bp.seen.prompts, 2, "by_prompts: seen prompts counted on the first set")
check.near(bp.unseen.kn.suppress.ratio, M.change_summary({ rows[2], rows[4] }).ratio, 1e-15, "by_prompts: unseen = its rows' change_summary")
check.near(bp.seen.kn.amplify.ratio, M.change_summary({ amp[1], amp[3] }).ratio, 1e-15, "by_prompts: seen amplify")
check.ok(bp.seen.random and not bp.unseen.random, "by_prompts: a set without unseen rows is left out there")
check.ok(table.concat(keys, " "):find("unseen/kn/suppress", 1, true), "by_prompts: summarize gets (kind, set, op)")
check.eq(M.by_prompts({ kn = { suppress = { rows[1] }, amplify = { amp[1] } } }, { "kn" }, summarize), nil, "by_prompts: nil without both kinds")

keys = {}
local bins = M.by_confidence(by, { "kn", "random" }, { 0, 0.1, 0.5, 1 }, summarize)
check.eq(#bins, 3, "by_confidence: one bin per pair of edges")
check.eq({ bins[1].prompts, bins[2].prompts, bins[3].prompts }, { 1, 1, 2 }, "by_confidence: [lo, hi), the last closed (p0 = 1 is in it)")
check.near(bins[3].kn.suppress.ratio, M.change_summary({ rows[1], rows[3] }).ratio, 1e-15, "by_confidence: a bin's summary is its rows'")
check.ok(bins[3].random and not bins[1].random, "by_confidence: a set with no prompt in a bin is left out of it")
check.eq(keys[1], "confidence/1/kn/suppress", "by_confidence: summarize gets (\"confidence\", k, set, op)")
check.done()
