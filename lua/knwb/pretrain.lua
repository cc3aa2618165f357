-- knwb.pretrain: masked-LM pretraining of a small BERT on sentences that state facts.
-- Each training sentence is a fact rendered through one of its relation's training templates.
-- The object is always masked (that is what the model must learn to recall); with
-- `mask_prob` > 0 the usual BERT masking (80% [MASK], 10% random token, 10% unchanged) is added
-- on the other tokens, which keeps a general language-model objective beside fact recall.
-- Progress goes to stderr; checkpoints (weights + AdamW state) allow an exact resume.
local knwb = require "knwb"
local facts = require "knwb.facts"
local json = require "knwb.json"

local M = {}

local function file_exists(p)
  local f = io.open(p, "r")
  if f then f:close() return true end
  return false
end

--- Renders every fact through its templates of the given split into encoded sentences.
--- Errors when an object is not one token of the model's vocabulary.
function M.corpus(model, set, split)
  local out = {}
  for _, r in ipairs(set.relations) do
    for _, f in ipairs(r.facts) do
      local oid = model:id(f.object)
      if not oid then
        error(string.format("relation %s: object %q of subject %q is not one token of the vocabulary; "
          .. "rebuild the vocabulary (make data) or drop the fact", r.id, f.object, f.subject), 0)
      end
      for _, p in ipairs(facts.prompts(r, f, split)) do
        local ids, mask = model:encode(p.text)
        out[#out + 1] = { ids = ids, mask = mask, target = oid, relation = r.id }
      end
    end
  end
  return out
end

--- Per-relation top-1 accuracy and mean P(gold) of a list of encoded items.
function M.accuracy(model, items)
  local res = model:score(items)
  local by = {}
  for i, it in ipairs(items) do
    local r = by[it.relation] or { n = 0, correct = 0, p = 0 }
    by[it.relation] = r
    r.n = r.n + 1
    r.p = r.p + res[i].p
    if res[i].top1 == it.target then r.correct = r.correct + 1 end
  end
  local mean, k = 0, 0
  for _, r in pairs(by) do
    r.acc = r.correct / r.n
    r.p = r.p / r.n
    mean = mean + r.acc
    k = k + 1
  end
  return by, k > 0 and mean / k or 0
end

--- M.pack_row(sentences) -> {ids =, objects = {[position from 0] = target id}}: encoded sentences
--- ({ids =, mask =, target =}, each [CLS] ... [SEP]) joined into one row as [CLS] a [SEP] b [SEP]
--- ..., every later sentence without its [CLS], with every object position kept for masking.
function M.pack_row(sentences)
  local ids, objects = {}, {}
  for j, s in ipairs(sentences) do
    for t = j == 1 and 1 or 2, #s.ids do
      if t - 1 == s.mask then objects[#ids] = s.target end
      ids[#ids + 1] = s.ids[t]
    end
  end
  return { ids = ids, objects = objects }
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end

--- M.run(opts) trains and returns the model and a history. opts:
---   model_config (table for knwb.create), vocab (path), set (fact set), out (dir or nil),
---   steps, batch, lr, warmup, weight_decay, clip, label_smoothing, mask_prob, seed,
---   hidden_dropout, neuron_dropout (0: off; see kn_trainer_set_dropout), pack (sentences per
---   row, 1 by default: with 2 or more each fact sentence is seen beside random others, as BERT
---   sees text in multi-sentence segments, and never alone as it is probed),
---   log_every, checkpoint_every, eval_every, quiet, stop_after (end early, as if interrupted)
function M.run(o)
  local ckpt = o.out and (o.out .. "/checkpoint")
  local model, start = nil, 0
  if ckpt and file_exists(ckpt .. "/state.json") then
    local f = io.open(ckpt .. "/state.json")
    local state = json.decode(f:read("a"), ckpt .. "/state.json")
    f:close()
    model = knwb.load(ckpt)
    start = state.step
    if not o.quiet then io.stderr:write(string.format("pretrain: resuming from %s at step %d\n", ckpt, start)) end
  else
    model = knwb.create(o.model_config, o.seed, o.vocab)
  end
  local train = M.corpus(model, o.set, "train")
  if #train == 0 then error("pretrain: the fact set renders no training sentences", 0) end
  local P = o.pack or 1
  if math.type(P) ~= "integer" or P < 1 then error("pretrain: pack must be an integer >= 1", 0) end
  local maxT = 0
  for _, s in ipairs(train) do if #s.ids > maxT then maxT = #s.ids end end
  -- P sentences share a row as [CLS] a [SEP] b [SEP] ...: each later one drops its [CLS]
  maxT = P * maxT - (P - 1)
  local max_pos = model:config().max_position_embeddings
  if maxT > max_pos then
    error(string.format("pretrain: pack %d makes rows of up to %d tokens, more than the model's %d positions "
      .. "(model.max_position_embeddings)", P, maxT, max_pos), 0)
  end
  local B = o.batch
  local trainer = knwb.core.trainer(model, { batch = B, seq = maxT, rows = B * maxT, weight_decay = o.weight_decay,
    hidden_dropout = o.hidden_dropout or 0, neuron_dropout = o.neuron_dropout or 0, seed = o.seed or 0 })
  if start > 0 and file_exists(ckpt .. "/optimizer.safetensors") then trainer:load_state(ckpt .. "/optimizer.safetensors") end

  local mask_id, vocab_n = model:id("[MASK]"), model:config().vocab_size
  local special = {}
  for _, t in ipairs({ "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }) do special[model:id(t)] = true end
  -- one random stream per run, advanced identically on resume by replaying the order draws
  local rng_seed = o.seed or 0
  math.randomseed(rng_seed)
  local order, pos = {}, #train + 1
  local function next_index()
    if pos > #train then
      for i = 1, #train do order[i] = i end
      for i = #train, 2, -1 do local j = math.random(i); order[i], order[j] = order[j], order[i] end
      pos = 1
    end
    pos = pos + 1
    return order[pos - 1]
  end
  -- A row of the batch: ids and, per masked object position (from 0), its target.
  local function next_row()
    local group = {}
    for j = 1, P do group[j] = train[next_index()] end
    return M.pack_row(group)
  end
  -- replay the random draws of the steps already done so that a resumed run continues the same stream
  local function make_batch()
    local rows, T = {}, 0
    for b = 1, B do rows[b] = next_row(); if #rows[b].ids > T then T = #rows[b].ids end end
    local ids, attn, hrows, labels = {}, {}, {}, {}
    for b, s in ipairs(rows) do
      for t = 1, T do
        local k = (b - 1) * T + t
        local id = s.ids[t]
        if id == nil then ids[k], attn[k] = 0, 0
        else
          attn[k] = 1
          if s.objects[t - 1] then
            ids[k] = mask_id
            hrows[#hrows + 1] = k - 1; labels[#labels + 1] = s.objects[t - 1]
          elseif o.mask_prob > 0 and not special[id] and math.random() < o.mask_prob then
            hrows[#hrows + 1] = k - 1; labels[#labels + 1] = id
            local u = math.random()
            ids[k] = u < 0.8 and mask_id or (u < 0.9 and math.random(5, vocab_n - 1) or id)
          else
            ids[k] = id
          end
        end
      end
    end
    return { ids = ids, attn = attn, B = B, T = T, rows = hrows, labels = labels }, B * T
  end
  for _ = 1, start do make_batch() end

  local function lr_at(step)
    if step <= o.warmup then return o.lr * step / math.max(1, o.warmup) end
    local frac = (step - o.warmup) / math.max(1, o.steps - o.warmup)
    return o.lr * math.max(0.0, 0.5 * (1 + math.cos(math.pi * math.min(1, frac))))
  end

  local history = {}
  local now = knwb.core.now
  local t0, tokens, win_loss, win_acc, win_n = os.clock(), 0, 0, 0, 0
  local wall0 = now()
  local first_loss
  for step = start + 1, o.steps do
    local batch, ntok = make_batch()
    batch.lr = lr_at(step)
    batch.clip = o.clip
    batch.smoothing = o.label_smoothing
    local loss, correct, labelled = trainer:step(batch)
    first_loss = first_loss or loss
    tokens = tokens + ntok
    win_loss, win_acc, win_n = win_loss + loss, win_acc + correct / labelled, win_n + 1
    if step % o.log_every == 0 or step == o.steps then
      local el = os.clock() - t0
      local rec = { step = step, loss = win_loss / win_n, acc = win_acc / win_n, lr = batch.lr }
      history[#history + 1] = rec
      if not o.quiet then
        -- os.clock counts CPU time of all threads; wall time gives tokens/s and the ETA
        local wall = math.max(1e-6, now() - wall0)
        local rate = tokens / wall
        io.stderr:write(string.format("pretrain step %6d/%d  loss %.4f  acc %5.1f%%  lr %.2e  %7.0f tok/s  cpu %s  ETA %s\n",
          step, o.steps, rec.loss, 100 * rec.acc, batch.lr, rate, fmt_time(el),
          fmt_time((o.steps - step) * wall / (step - start))))
      end
      win_loss, win_acc, win_n = 0, 0, 0
    end
    if ckpt and o.checkpoint_every and o.checkpoint_every > 0 and step % o.checkpoint_every == 0 and step < o.steps then
      os.execute("mkdir -p '" .. ckpt:gsub("'", "'\\''") .. "'")
      model:save(ckpt)
      trainer:save_state(ckpt .. "/optimizer.safetensors")
      local f = assert(io.open(ckpt .. "/state.json", "w"))
      f:write(json.encode({ step = step }))
      f:close()
    end
    if o.eval_every and o.eval_every > 0 and step % o.eval_every == 0 and o.on_eval then o.on_eval(model, step) end
    if o.stop_after and step >= o.stop_after then break end -- tests simulate an interruption here
  end
  trainer:free()
  return model, history, first_loss
end

return M
