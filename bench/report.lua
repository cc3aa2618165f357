-- bench/report.lua: the side-by-side table of a benchmark run.
--   knwb bench/report.lua OUT THREADS...
-- Reads what bench/run.sh left in OUT (sgemm-T<n>.json, knwb-T<n>.json,
-- torch-T<n>-<policy>.json for policy "default" and "passive", quadrature.json, loadavg.txt),
-- prints the results as Markdown and writes them to OUT/results.md (the lead pastes that file into
-- bench/README.md). FLOPs are counted analytically with the formulas of bench/README.md
-- (GEMMs and attention products only, 2 FLOPs per multiply-add). For PyTorch at more than one
-- thread, each measurement takes the better of the two OpenMP wait policies and says which.
local json = require "knwb.json"

local out = arg[1] or "bench/out"
local threads = {}
for i = 2, #arg do threads[#threads + 1] = tonumber(arg[i]) end
if #threads == 0 then threads = { 1, 2 } end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local function read_json(path)
  local s = read_file(path)
  if not s then return nil end
  local ok, v = pcall(json.decode, s)
  if ok then return v end
  ok, v = pcall(json.decode, s:match("[^\n]*}%s*$") or "") -- the last line of a JSON Lines file
  return ok and v or nil
end
local function sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local s = p:read("a") or ""
  p:close()
  return (s:gsub("%s+$", ""))
end

-- ------------------------------------------------------------------------------ FLOP formulas
-- R sequences of T tokens, hidden C, FFN width F, vocabulary V, L layers, P head rows.
local function f_layer(R, T, C, F) return 2 * R * T * (4 * C * C + 2 * C * F) + 4 * R * T * T * C end -- forward
local function b_layer(R, T, C, F) return 2 * R * T * (4 * C * C + 2 * C * F) + 8 * R * T * T * C end -- input gradients
local function w_layer(R, T, C, F) return 2 * R * T * (4 * C * C + 2 * C * F) end                   -- weight gradients
local function head(P, C, V) return 2 * P * C * C + 2 * P * C * V end -- forward, input-gradient or weight-gradient pass

local function flops_forward(c, T, all_positions)
  return c.L * f_layer(1, T, c.C, c.F) + head(all_positions and T or 1, c.C, c.V)
end
-- knwb and PyTorch best (R = m rows: left Riemann includes alpha = 0, which gives P(0))
local function flops_attr_cached(c, T, R)
  local s = c.L * f_layer(1, T, c.C, c.F) + head(1, c.C, c.V)
  for l = 0, c.L - 1 do
    s = s + (c.L - l) * f_layer(R, T, c.C, c.F) + (c.L - l - 1) * b_layer(R, T, c.C, c.F) + 2 * R * T * c.C * c.F
      + 2 * head(R, c.C, c.V)
  end
  return s
end
-- knwb starts each layer l from a patched copy of the unmodified run: layer l itself is not
-- recomputed for the R rows, only W2 . act at the mask position (bert_layer_patch)
local function flops_attr_knwb(c, T, R)
  local s = c.L * f_layer(1, T, c.C, c.F) + head(1, c.C, c.V)
  for l = 0, c.L - 1 do
    s = s + (c.L - l - 1) * f_layer(R, T, c.C, c.F) + 2 * R * c.C * c.F
      + (c.L - l - 1) * b_layer(R, T, c.C, c.F) + 2 * R * T * c.C * c.F + 2 * head(R, c.C, c.V)
  end
  return s
end
local function flops_attr_peer(c, T, m)
  local s = 0
  for l = 0, c.L - 1 do
    s = s + flops_forward(c, T, true)                                      -- baseline forward
      + c.L * f_layer(m, T, c.C, c.F) + head(m * T, c.C, c.V)              -- whole model, m rows
      + head(m * T, c.C, c.V) + (c.L - l - 1) * b_layer(m, T, c.C, c.F)    -- backward to layer l
      + 2 * m * T * c.C * c.F
  end
  return s
end
local function flops_train(c, B, T, P)
  return c.L * (f_layer(B, T, c.C, c.F) + b_layer(B, T, c.C, c.F) + w_layer(B, T, c.C, c.F)) + 3 * head(P, c.C, c.V)
end

-- the attribution's GEMM mix, for the sgemm ceiling of its own shapes (FLOPs per sgemm_ceiling shape)
local function attr_mix(c, T, R)
  local fwd_layers, bwd_layers = 0, 0
  for l = 0, c.L - 1 do fwd_layers = fwd_layers + (c.L - l - 1); bwd_layers = bwd_layers + (c.L - l - 1) end
  local N = R * T
  return {
    fwd_qkvo = fwd_layers * 8 * N * c.C * c.C + c.L * 2 * R * c.C * c.C, -- + head dense (same kind)
    fwd_ffn_in = fwd_layers * 2 * N * c.C * c.F,
    fwd_ffn_out = fwd_layers * 2 * N * c.C * c.F + c.L * 2 * R * c.C * c.F, -- + the patched mask rows
    bwd_qkvo = bwd_layers * 8 * N * c.C * c.C + c.L * 2 * R * c.C * c.C,
    bwd_ffn_in = bwd_layers * 2 * N * c.C * c.F,
    bwd_ffn_out = (bwd_layers + c.L) * 2 * N * c.C * c.F,
    fwd_decoder = c.L * 2 * R * c.C * c.V,
    bwd_decoder = c.L * 2 * R * c.C * c.V,
  }
end

-- ------------------------------------------------------------------------------ inputs
local inputs = read_json(out .. "/inputs.json") or error(out .. "/inputs.json missing: run bench/run.sh", 0)
local function cfg_of(dir)
  local c = read_json(dir .. "/config.json") or error(dir .. "/config.json missing", 0)
  return { L = c.num_hidden_layers, C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size }
end
local big = cfg_of(out .. "/" .. inputs.models.bert_base)
local small = cfg_of(out .. "/" .. inputs.models.train_small)
local Tp, m = #inputs.prompt.ids, 20
local tr = inputs.train
local FL = {
  forward_knwb = flops_forward(big, Tp, false), forward_best = flops_forward(big, Tp, false),
  forward_peer = flops_forward(big, Tp, true),
  attr_knwb = flops_attr_knwb(big, Tp, m), attr_best = flops_attr_cached(big, Tp, m),
  attr_peer = flops_attr_peer(big, Tp, m),
  train_knwb = flops_train(small, tr.B, tr.T, #tr.rows), train_best = flops_train(small, tr.B, tr.T, #tr.rows),
  train_peer = flops_train(small, tr.B, tr.T, tr.B * tr.T),
}

-- ------------------------------------------------------------------------------ formatting
local lines = {}
local function emit(s) lines[#lines + 1] = s or "" end
local function row(cells) emit("| " .. table.concat(cells, " | ") .. " |") end
local function fmt(x, f) if x == nil then return "–" end return string.format(f or "%.3g", x) end
local function ratio(k, t, mem)
  if not k or not t then return "–" end
  local r = k / t
  local word = mem and (r <= 1 and "less" or "more") or (r <= 1 and "faster" or "slower")
  return string.format("%.2f (%.2f× %s)", r, r <= 1 and 1 / r or r, word)
end
local function med(x) return x and x.median or nil end

-- best-of-policies for PyTorch
local function torch_best(T)
  local runs = {}
  for _, pol in ipairs({ "default", "passive" }) do
    local r = read_json(string.format("%s/torch-T%d-%s.json", out, T, pol))
    if r and not r.refused then r.policy = pol; runs[#runs + 1] = r end
  end
  if #runs == 0 then return nil end
  local pick = { runs = runs, policy = {} }
  for _, key in ipairs({ "forward_peer", "forward_best", "attribution_peer", "attribution_best", "train_peer", "train_best",
    "load_copy", "load_mmap", "load_mmap_first_forward" }) do
    for _, r in ipairs(runs) do
      if r[key] and (not pick[key] or r[key].median < pick[key].median) then
        pick[key] = r[key]; pick.policy[key] = r.policy; pick["run_" .. key] = r
      end
    end
  end
  pick.first = runs[1]
  return pick
end

local mach = {
  cpu = sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1"),
  cores = sh("nproc"),
  lscpu_cores = sh("lscpu | sed -n 's/^Core(s) per socket:[[:space:]]*//p' | head -n 1"),
  openblas = sh("dpkg-query -W -f='${Package} ${Version}\\n' 'libopenblas0*' | grep ' [0-9]' | paste -sd, - | sed 's/,/, /g'"),
  family = sh("lscpu | sed -n 's/^CPU family:[[:space:]]*//p' | head -n 1"),
  model = sh("lscpu | sed -n 's/^Model:[[:space:]]*//p' | head -n 1"),
  avx512 = sh("grep -m1 -o -w avx512f /proc/cpuinfo"),
  date = sh("date -u '+%Y-%m-%d %H:%M UTC'"),
  kernel = sh("uname -r"),
  loadavg = (read_file(out .. "/loadavg.txt") or ""):gsub("%s+$", ""),
  coretype = os.getenv("OPENBLAS_CORETYPE"),
}

emit("## Results")
emit()
emit(string.format("Measured by `make bench` on %s.", mach.date))
emit()
local any_torch = torch_best(threads[#threads]) or torch_best(threads[1])
emit(string.format("- CPU: %s (family %s, model %s%s), %s cores available (lscpu: %s cores per socket); Linux %s", mach.cpu,
  mach.family, mach.model, mach.avx512 ~= "" and ", AVX-512" or "", mach.cores, mach.lscpu_cores, mach.kernel))
emit(string.format("- OpenBLAS: %s (`OPENBLAS_CORETYPE=%s` from the environment)", mach.openblas, mach.coretype or "unset"))
if any_torch then
  local t = any_torch.first
  local k1 = read_json(string.format("%s/knwb-T%d.json", out, threads[1]))
  local same = false
  for _, a in ipairs(t.blas_libs or {}) do
    for _, b in ipairs(k1 and k1.blas_libs or {}) do same = same or a == b end
  end
  emit(string.format("- PyTorch %s (Debian python3-torch, %s): its process maps %s (%s); %s", t.torch_version,
    table.concat(t.blas_info or {}, ", "), table.concat(t.blas_libs or {}, ", "), t.openblas_config or "?",
    same and "the same OpenBLAS library file that knwb links" or "**not** the OpenBLAS library file knwb links"))
end
emit(string.format("- Load average when the run started: %s", mach.loadavg ~= "" and mach.loadavg or "?"))
local la1 = tonumber(mach.loadavg:match("^(%S+)"))
if la1 and la1 > 0.5 then
  emit(string.format("- **Warning: the machine was busy (load %.2f) when the run started; the timings are not clean.**", la1))
end
emit("- knwb prompt: 12 tokens; attribution: 12 layers × 20 steps (left Riemann, the paper's setting); training: "
  .. string.format("%d × %d tokens, %d labelled rows, hidden %d, %d layers, FFN %d, vocabulary %d.", tr.B, tr.T, #tr.rows,
    small.C, small.L, small.F, small.V))
emit("- Times are medians over repetitions (see `bench/out/*.json` for every sample). Ratios are knwb time ÷ PyTorch time.")
emit()

local summary = {}
for _, T in ipairs(threads) do
  local k = read_json(string.format("%s/knwb-T%d.json", out, T))
  local s = read_json(string.format("%s/sgemm-T%d.json", out, T))
  local t = torch_best(T)
  emit(string.format("### %d thread%s", T, T > 1 and "s" or ""))
  emit()
  if not k then emit("knwb results missing.") emit() goto continue end
  do
    local policy_note = ""
    if t and #t.runs > 1 then
      local names = { forward_peer = "forward (peer)", forward_best = "forward (best)", attribution_peer = "attribution (peer)",
        attribution_best = "attribution (best)", train_peer = "training (peer)", train_best = "training (best)",
        load_copy = "load (read+copy)", load_mmap = "load (mmap)", load_mmap_first_forward = "load + first forward" }
      local by = {}
      for key, pol in pairs(t.policy) do by[pol] = by[pol] or {}; table.insert(by[pol], names[key] or key) end
      local parts = {}
      for pol, list in pairs(by) do
        table.sort(list)
        parts[#parts + 1] = string.format("`%s` gave %s", pol == "default" and "unset" or pol, table.concat(list, ", "))
      end
      table.sort(parts)
      policy_note = " PyTorch ran with `OMP_WAIT_POLICY` unset and `=passive`; each cell keeps the faster: "
        .. table.concat(parts, "; ") .. "."
    end
    emit(string.format("Threads: knwb OpenBLAS %d; PyTorch %s intra-op, OpenBLAS %s.%s", k.threads,
      t and t.first.torch_threads or "?", t and t.first.openblas_threads or "?", policy_note))
    emit()
    row({ "measurement", "knwb", "PyTorch peer-style", "PyTorch best", "knwb ÷ peer", "knwb ÷ best" })
    row({ "---", "---:", "---:", "---:", "---:", "---:" })
    local tf, tb = t and t.forward_peer, t and t.forward_best
    row({ "forward, 12-token prompt (ms)", fmt(med(k.forward) * 1e3, "%.2f"), fmt(tf and tf.median * 1e3, "%.2f"),
      fmt(tb and tb.median * 1e3, "%.2f"), ratio(med(k.forward), med(tf)), ratio(med(k.forward), med(tb)) })
    local ap, ab = t and t.attribution_peer, t and t.attribution_best
    row({ "attribution, 12 layers × 20 steps (s / prompt)", fmt(med(k.attribution), "%.3f"), fmt(med(ap), "%.3f"),
      fmt(med(ab), "%.3f"), ratio(med(k.attribution), med(ap)), ratio(med(k.attribution), med(ab)) })
    local trp, trb = t and t.train_peer, t and t.train_best
    row({ "training step, default config (ms)", fmt(med(k.train) * 1e3, "%.1f"), fmt(trp and trp.median * 1e3, "%.1f"),
      fmt(trb and trb.median * 1e3, "%.1f") .. (trb and string.format(" (foreach=%s)", tostring(trb.foreach)) or ""),
      ratio(med(k.train), med(trp)), ratio(med(k.train), med(trb)) })
    row({ "checkpoint load, 433 MB (s): knwb mmap; torch read+copy; torch mmap", fmt(med(k.load), "%.4f"),
      fmt(med(t and t.load_copy), "%.4f"), fmt(med(t and t.load_mmap), "%.4f"), ratio(med(k.load), med(t and t.load_copy)),
      ratio(med(k.load), med(t and t.load_mmap)) })
    row({ "load + first forward (s), mmap", fmt(med(k.load_first_forward), "%.3f"), "–",
      fmt(med(t and t.load_mmap_first_forward), "%.3f"), "–", ratio(med(k.load_first_forward), med(t and t.load_mmap_first_forward)) })
    local tm = t and t.run_attribution_peer and t.run_attribution_peer.mem or {}
    local tmb = t and t.run_attribution_best and t.run_attribution_best.mem or {}
    local tmf = t and t.run_forward_best and t.run_forward_best.mem or {}
    local tmt = t and t.run_train_best and t.run_train_best.mem or {}
    row({ "peak RSS, forward phase (MiB)", fmt(k.mem.forward_peak_mb, "%.0f"), "–", fmt(tmf.forward_peak_mb, "%.0f")
      .. " (both)", "–", ratio(k.mem.forward_peak_mb, tmf.forward_peak_mb, true) })
    row({ "peak RSS, attribution phase (MiB)", fmt(k.mem.attribution_peak_mb, "%.0f"), fmt(tm.attribution_peer_peak_mb, "%.0f"),
      fmt(tmb.attribution_best_peak_mb, "%.0f"), ratio(k.mem.attribution_peak_mb, tm.attribution_peer_peak_mb, true),
      ratio(k.mem.attribution_peak_mb, tmb.attribution_best_peak_mb, true) })
    row({ "peak RSS, training phase (MiB)", fmt(k.mem.train_peak_mb, "%.0f"), "–", fmt(tmt.train_peak_mb, "%.0f") .. " (both)", "–",
      ratio(k.mem.train_peak_mb, tmt.train_peak_mb, true) })
    local tpk = t and t.first.mem.process_peak_mb
    if t then for _, r in ipairs(t.runs) do tpk = math.max(tpk, r.mem.process_peak_mb or 0) end end
    row({ "peak RSS of the whole process (MiB)", fmt(k.mem.process_peak_mb, "%.0f"), fmt(tpk, "%.0f") .. " (both, one process)",
      "", "", ratio(k.mem.process_peak_mb, tpk, true) })
    row({ "RSS of the bare process: interpreter and libraries (MiB)", fmt(k.mem.baseline_rss_mb, "%.0f"),
      fmt(t and t.first.mem.baseline_rss_mb, "%.0f"), fmt(t and t.first.mem.baseline_rss_mb, "%.0f"), "", "" })
    row({ "GFLOP per forward / attribution / training step", string.format("%.2f / %.0f / %.2f", FL.forward_knwb / 1e9,
      FL.attr_knwb / 1e9, FL.train_knwb / 1e9), string.format("%.2f / %.0f / %.2f", FL.forward_peer / 1e9, FL.attr_peer / 1e9,
      FL.train_peer / 1e9), string.format("%.2f / %.0f / %.2f", FL.forward_best / 1e9, FL.attr_best / 1e9, FL.train_best / 1e9),
      "", "" })
    local function rate(fl, x) return x and fl / x / 1e9 or nil end
    row({ "effective GFLOP/s: forward / attribution / training", string.format("%s / %s / %s",
      fmt(rate(FL.forward_knwb, med(k.forward)), "%.0f"), fmt(rate(FL.attr_knwb, med(k.attribution)), "%.0f"),
      fmt(rate(FL.train_knwb, med(k.train)), "%.0f")), string.format("%s / %s / %s", fmt(rate(FL.forward_peer, med(tf)), "%.0f"),
      fmt(rate(FL.attr_peer, med(ap)), "%.0f"), fmt(rate(FL.train_peer, med(trp)), "%.0f")), string.format("%s / %s / %s",
      fmt(rate(FL.forward_best, med(tb)), "%.0f"), fmt(rate(FL.attr_best, med(ab)), "%.0f"), fmt(rate(FL.train_best, med(trb)), "%.0f")),
      "", "" })
    emit()
    -- sgemm ceiling
    local ceil_mix, ceil_ref
    if s then
      local mix = attr_mix(big, Tp, m)
      local tot, tim = 0, 0
      for name, fl in pairs(mix) do
        local sh_ = s.shapes[name]
        if sh_ then tot = tot + fl; tim = tim + fl / sh_.gflops end
      end
      ceil_mix = tot / tim
      ceil_ref = s.shapes.ref_240x3072x768 and s.shapes.ref_240x3072x768.gflops
      local parts = {}
      for _, name in ipairs({ "fwd_qkvo", "fwd_ffn_in", "fwd_ffn_out", "bwd_qkvo", "bwd_ffn_in", "bwd_ffn_out", "fwd_decoder", "bwd_decoder" }) do
        local x = s.shapes[name]
        if x then parts[#parts + 1] = string.format("%s %d×%d×%d: %.0f", name, x.M, x.N, x.K, x.gflops) end
      end
      local kr = rate(FL.attr_knwb, med(k.attribution))
      emit(string.format("sgemm ceiling (%s, %d thread%s): %.0f GFLOP/s at M=240, N=3072, K=768; %.0f GFLOP/s for the "
        .. "attribution's own GEMM mix (FLOP-weighted over: %s). knwb's attribution runs at %.0f GFLOP/s = **%.0f%%** of "
        .. "the mix ceiling (%.0f%% of the 240×3072×768 rate).", s.openblas_core or "?", s.openblas_threads, s.openblas_threads > 1 and "s" or "",
        ceil_ref or 0, ceil_mix, table.concat(parts, ", "), kr, 100 * kr / ceil_mix, 100 * kr / (ceil_ref or ceil_mix)))
      emit()
    end
    local chk = t and t.first.check
    if chk then
      emit(string.format("Agreement with knwb's scores before timing (max |difference| per layer ÷ the layer's max |score|): "
        .. "peer-style worst %.1e, best worst %.1e (tolerance %.0e). First three training losses: knwb %s; PyTorch %s.",
        chk.peer.worst, chk.best.worst, chk.peer.tolerance,
        table.concat((function() local o = {} for i, x in ipairs(k.train.losses) do o[i] = string.format("%.5f", x) end return o end)(), ", "),
        table.concat((function() local o = {} for i, x in ipairs((trb or trp or {}).losses or {}) do o[i] = string.format("%.5f", x) end return o end)(), ", ")))
      emit()
    end
    summary[T] = { k = k, t = t, ceil_mix = ceil_mix, ceil_ref = ceil_ref }
  end
  ::continue::
end

-- quadrature
local q = read_json(out .. "/quadrature.json")
emit("### Gauss-Legendre vs left Riemann (completeness)")
emit()
if q then
  emit(string.format("Mean over layers (and prompts) of |Σ_i Attr_l[i] − (P(w̄) − P(0))|, knwb at %d thread%s.", q.threads,
    q.threads > 1 and "s" or ""))
  emit()
  for _, r in ipairs(q.models) do
    if r.skipped then
      emit(string.format("- %s: skipped (%s)", r.model, r.skipped))
      emit()
    else
      emit(string.format("**%s** (%d prompt%s, mean P(gold) %.3g): left Riemann m = 20: mean |delta| %.3e in %.3f s per prompt.",
        r.model, r.prompts, r.prompts > 1 and "s" or "", r.mean_p_full, r.left20.mean_abs_delta, r.left20.seconds))
      emit()
      row({ "Gauss m", "mean abs delta", "÷ left-20 delta", "s / prompt" })
      row({ "---:", "---:", "---:", "---:" })
      for _, g in ipairs(r.gauss) do
        row({ tostring(g.steps), string.format("%.3e", g.mean_abs_delta), string.format("%.3g", g.mean_abs_delta / r.left20.mean_abs_delta),
          string.format("%.3f", g.seconds) })
      end
      emit()
      if r.steps_needed then
        emit(string.format("Gauss-Legendre reaches left-20's completeness error with **m = %d** steps: %.3f s instead of %.3f s "
          .. "per prompt (**%.0f%% less time**).", r.steps_needed, r.seconds_needed, r.left20.seconds, 100 * r.time_saved))
      else
        emit("Gauss-Legendre did not reach left-20's completeness error within the steps tried.")
      end
      emit()
    end
  end
else
  emit("quadrature.json missing.")
  emit()
end

-- targets, at the largest thread count measured
local Tmax = threads[#threads]
local S = summary[Tmax]
emit(string.format("### Targets (measured at %d thread%s)", Tmax, Tmax > 1 and "s" or ""))
emit()
local function check(name, ok, detail)
  emit(string.format("- %s %s: %s", ok == nil and "[ n/a ]" or (ok and "[PASS]" or "[FAIL]"), name, detail))
end
if S and S.t then
  local k, t = S.k, S.t
  local sp = med(t.attribution_peer) / med(k.attribution)
  local sb = med(t.attribution_best) / med(k.attribution)
  check("attribution ≥ 3.5× faster than peer-style PyTorch", sp >= 3.5, string.format("%.2f×", sp))
  check("attribution ≥ 1.5× faster than the best PyTorch", sb >= 1.5, string.format("%.2f×", sb))
  local fp = med(t.forward_peer) / med(k.forward)
  local fb = med(t.forward_best) / med(k.forward)
  check("forward ≥ 2× faster", fb >= 2, string.format("%.2f× vs best, %.2f× vs peer-style", fb, fp))
  check("load < 0.1 s", med(k.load) < 0.1, string.format("%.4f s (load + first forward %.3f s)", med(k.load), med(k.load_first_forward)))
  local kr = FL.attr_knwb / med(k.attribution) / 1e9
  if S.ceil_mix then
    check("attribution ≥ 75% of the sgemm ceiling", kr / S.ceil_mix >= 0.75, string.format("%.0f%% of the mix ceiling, %.0f%% of the "
      .. "240×3072×768 rate", 100 * kr / S.ceil_mix, 100 * kr / S.ceil_ref))
  end
  local ck = k.checkpoint_bytes / 1048576
  check("attribution peak memory ≤ 1.3× the checkpoint", k.mem.attribution_peak_mb <= 1.3 * ck,
    string.format("%.0f MiB = %.2f× the checkpoint (%.0f MB = %.0f MiB)", k.mem.attribution_peak_mb,
      k.mem.attribution_peak_mb / ck, k.checkpoint_bytes / 1e6, ck))
end
if q then
  for _, r in ipairs(q.models) do
    if not r.skipped then
      check(string.format("Gauss-Legendre reaches left-20's completeness with far fewer steps, ≤ 10 (%s)", r.model),
        r.steps_needed ~= nil and r.steps_needed <= 10,
        r.steps_needed and string.format("m = %d, %.0f%% less time", r.steps_needed, 100 * r.time_saved) or "not reached")
    end
  end
end
emit()

local text = table.concat(lines, "\n") .. "\n"
io.write(text)
local f = assert(io.open(out .. "/results.md", "w"))
f:write(text)
f:close()
io.stderr:write("report: wrote " .. out .. "/results.md\n")
