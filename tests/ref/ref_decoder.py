"""ref_decoder.py: the Hugging Face causal-LM math of GPT-2 and the Llama family, plain torch.

Families (the `family` argument): "gpt2" (GPT2LMHeadModel) and "llama" (LlamaForCausalLM,
also MistralForCausalLM and Qwen2ForCausalLM, which differ only in config: q/k/v biases,
sliding window). Parameters use canonical Hugging Face names (GPT-2 with the
`transformer.` prefix); the generator maps them to each file's spelling. Every value is
computed in whatever dtype the parameters come in (the generator passes float64).

What is *not* here: file formats (ref_io.py), tokenizers and the cases (gen_decoders.py).

GPT-2, per layer (pre-LN):  h = LN1(x); q,k,v = split(h @ c_attn.W + b) (Conv1D: W is
[in, out]); causal softmax(q k^T / sqrt(D)); x += ctx @ c_proj.W + b; h = LN2(x);
act = gelu_new(h @ c_fc.W + b) (the neuron); x += act @ mlp.c_proj.W + b. Then ln_f and
the tied head wte^T. Learned positions wpe[0..T-1].
Llama, per layer (pre-RMSNorm): h = rms(x) * w; q = h Wq^T (+bq), k, v with NKV heads;
RoPE (rotate_half form) on q and k; key/value head h // (NH/NKV) for query head h;
causal softmax(q k^T / sqrt(D)); x += ctx Wo^T; h = rms(x) * w';
act = silu(h Wg^T) * (h Wu^T) (the neuron); x += act Wd^T. Then norm and lm_head
(or the embedding matrix when tied).
"""

import math

import torch
import torch.nn.functional as F

from ref_math import activation


# ----------------------------------------------------------------------------------------
# config access (the two families spell the same things differently)
# ----------------------------------------------------------------------------------------

def dims(cfg, family):
    """(L, C, NH, NKV, D, F, V, P, eps)"""
    if family == "gpt2":
        C, NH = cfg["n_embd"], cfg["n_head"]
        Fw = cfg.get("n_inner") or 4 * C  # n_inner null (or absent) means 4 * n_embd
        return cfg["n_layer"], C, NH, NH, C // NH, Fw, cfg["vocab_size"], cfg["n_positions"], cfg["layer_norm_epsilon"]
    C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads") or NH
    D = cfg.get("head_dim") or C // NH
    return (cfg["num_hidden_layers"], C, NH, NKV, D, cfg["intermediate_size"], cfg["vocab_size"],
            cfg["max_position_embeddings"], cfg["rms_norm_eps"])


def qkv_bias(cfg):
    if cfg["model_type"] == "qwen2":
        return True  # Qwen2Attention: q/k/v Linear with bias=True, o_proj without
    return bool(cfg.get("attention_bias", False))


def tied(cfg):
    return cfg.get("tie_word_embeddings", cfg["model_type"] == "gpt2")


# ----------------------------------------------------------------------------------------
# parameters, in the order HF's state_dict lists them
# ----------------------------------------------------------------------------------------

def param_shapes(cfg, family):
    L, C, NH, NKV, D, Fw, V, P, _ = dims(cfg, family)
    s = []
    if family == "gpt2":
        s += [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (P, C))]
        for l in range(L):
            p = "transformer.h.%d." % l
            s += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                  (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
                  (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                  (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                  (p + "mlp.c_fc.weight", (C, Fw)), (p + "mlp.c_fc.bias", (Fw,)),
                  (p + "mlp.c_proj.weight", (Fw, C)), (p + "mlp.c_proj.bias", (C,))]
        s += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
        return s
    bias = qkv_bias(cfg)
    s.append(("model.embed_tokens.weight", (V, C)))
    for l in range(L):
        p = "model.layers.%d." % l
        for m, rows in (("q_proj", NH * D), ("k_proj", NKV * D), ("v_proj", NKV * D)):
            s.append((p + "self_attn.%s.weight" % m, (rows, C)))
            if bias:
                s.append((p + "self_attn.%s.bias" % m, (rows,)))
        s.append((p + "self_attn.o_proj.weight", (C, NH * D)))
        s += [(p + "mlp.gate_proj.weight", (Fw, C)), (p + "mlp.up_proj.weight", (Fw, C)),
              (p + "mlp.down_proj.weight", (C, Fw)),
              (p + "input_layernorm.weight", (C,)), (p + "post_attention_layernorm.weight", (C,))]
    s.append(("model.norm.weight", (C,)))
    if not tied(cfg):
        s.append(("lm_head.weight", (V, C)))
    return s


def init_params(cfg, family, seed):
    """float32 weights from one seeded generator, in param_shapes order: embeddings and
    lm_head N(0, 0.4^2) (a peakier next-token distribution than 0.2 gives), other matrices
    N(0, 0.2^2), norm weights 1 + 0.1 N, biases 0.1 N."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(cfg, family):
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if "norm" in name or "ln_" in name:
            t = (1.0 + 0.1 * z) if name.endswith(".weight") else 0.1 * z
        elif name.endswith(".bias"):
            t = 0.1 * z
        elif "wte" in name or "embed_tokens" in name or name == "lm_head.weight":
            t = 0.4 * z
        else:
            t = 0.2 * z
        out[name] = t.float()
    return out


def down_weight_name(family, l):
    return ("transformer.h.%d.mlp.c_proj.weight" if family == "gpt2" else "model.layers.%d.mlp.down_proj.weight") % l


def zero_value_slot(p, family, l, i):
    """A copy of p with neuron i's value slot in layer l zeroed: GPT-2's Conv1D c_proj is
    [F, C], so the slot is row i; Llama's down_proj is [C, F], so it is column i."""
    q = dict(p)
    w = p[down_weight_name(family, l)].clone()
    if family == "gpt2":
        w[i, :] = 0.0
    else:
        w[:, i] = 0.0
    q[down_weight_name(family, l)] = w
    return q


# ----------------------------------------------------------------------------------------
# RoPE
# ----------------------------------------------------------------------------------------

def rope_inv_freq(cfg, D, dtype=torch.float64):
    """inverse frequencies per pair j = 0..D/2-1, after rope_scaling (HF
    modeling_rope_utils: default, linear, llama3; `rope_type` or the older `type`)."""
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=dtype) / D))
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > lo_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wl < hi_wl) & ~(wl > lo_wl)
        return torch.where(medium, smoothed, scaled)
    raise ValueError("no reference for rope_scaling type %r" % kind)


def llama3_regimes(cfg, D):
    """Which of the three llama3 wavelength regimes each frequency falls in, computed per
    element with Python floats (a second formulation of rope_inv_freq's branches), and the
    resulting inverse frequencies."""
    rs = cfg["rope_scaling"]
    theta = cfg["rope_theta"]
    out = []
    for j in range(D // 2):
        f = 1.0 / theta ** (2 * j / D)
        wl = 2 * math.pi / f
        if wl < rs["original_max_position_embeddings"] / rs["high_freq_factor"]:
            out.append(("high (kept)", f))
        elif wl > rs["original_max_position_embeddings"] / rs["low_freq_factor"]:
            out.append(("low (/factor)", f / rs["factor"]))
        else:
            s = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / (
                rs["high_freq_factor"] - rs["low_freq_factor"])
            out.append(("medium (smoothed, s=%.4f)" % s, (1 - s) * f / rs["factor"] + s * f))
    return out


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(cfg, D, T, dtype):
    inv = rope_inv_freq(cfg, D).to(dtype)
    freqs = torch.arange(T, dtype=dtype)[:, None] * inv[None, :]  # [T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)                          # [T, D]
    return emb.cos(), emb.sin()


# ----------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------

def allowed_keys(cfg, am):
    """[B, T, T] bool: query i may attend key j iff j <= i, key j is not padding, and (with
    a sliding window, Mistral/Qwen2) i - j < sliding_window."""
    B, T = am.shape
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    ok = (j <= i)[None] & (am[:, None, :] == 1)
    win = cfg.get("sliding_window") if cfg["model_type"] == "mistral" or cfg.get("use_sliding_window") else None
    if win is not None:
        ok = ok & ((i - j) < win)[None]
    return ok


def forward(p, cfg, family, ids, am, act_hook=None, probe=None):
    """ids, am: [B,T] int64. Returns logits [B,T,V], hidden [B,T,C] (after the final norm),
    acts: per layer the neuron activations [B,T,F] (the down projection's input, as used
    downstream, i.e. after act_hook). act_hook(l, act) may return a replacement.
    probe, if a dict, receives per layer the attention internals for the cross-checks."""
    L, C, NH, NKV, D, Fw, V, P, eps = dims(cfg, family)
    B, T = ids.shape
    dt = next(iter(p.values())).dtype
    ok = allowed_keys(cfg, am)[:, None]  # [B,1,T,T]
    neg = torch.tensor(float("-inf"), dtype=dt)  # HF adds finfo.min; exp() gives exactly 0 either way
    acts = []
    if family == "gpt2":
        assert T <= P
        x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][torch.arange(T)][None]
        act_fn = activation(cfg["activation_function"])
        for l in range(L):
            pre = "transformer.h.%d." % l
            h = F.layer_norm(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
            qkv = h @ p[pre + "attn.c_attn.weight"] + p[pre + "attn.c_attn.bias"]  # Conv1D: [in, out]
            q, k, v = (t.view(B, T, NH, D).permute(0, 2, 1, 3) for t in qkv.split(C, dim=-1))
            scores = torch.where(ok, q @ k.transpose(-1, -2) / math.sqrt(D), neg)
            ctx = (torch.softmax(scores, -1) @ v).permute(0, 2, 1, 3).reshape(B, T, C)
            if probe is not None:
                probe[l] = {"ln1": h, "ctx": ctx}
            x = x + ctx @ p[pre + "attn.c_proj.weight"] + p[pre + "attn.c_proj.bias"]
            h = F.layer_norm(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
            act = act_fn(h @ p[pre + "mlp.c_fc.weight"] + p[pre + "mlp.c_fc.bias"])
            if act_hook is not None:
                r = act_hook(l, act)
                act = act if r is None else r
            acts.append(act)
            x = x + act @ p[pre + "mlp.c_proj.weight"] + p[pre + "mlp.c_proj.bias"]
        hidden = F.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
        return hidden @ p["transformer.wte.weight"].t(), hidden, acts

    def rms(t, w):
        return w * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps))

    def lin(t, name):
        y = t @ p[name + ".weight"].t()
        return y + p[name + ".bias"] if name + ".bias" in p else y

    cos, sin = rope_cos_sin(cfg, D, T, dt)
    act_fn = activation(cfg["hidden_act"])
    group = NH // NKV
    x = p["model.embed_tokens.weight"][ids]
    for l in range(L):
        pre = "model.layers.%d." % l
        h = rms(x, p[pre + "input_layernorm.weight"])
        q = lin(h, pre + "self_attn.q_proj").view(B, T, NH, D).permute(0, 2, 1, 3)
        k = lin(h, pre + "self_attn.k_proj").view(B, T, NKV, D).permute(0, 2, 1, 3)
        v = lin(h, pre + "self_attn.v_proj").view(B, T, NKV, D).permute(0, 2, 1, 3)
        q_r = q * cos + rotate_half(q) * sin
        k_r = k * cos + rotate_half(k) * sin
        k_rep = k_r.repeat_interleave(group, dim=1)  # = HF repeat_kv: query head h uses kv head h // group
        v_rep = v.repeat_interleave(group, dim=1)
        scores = torch.where(ok, q_r @ k_rep.transpose(-1, -2) / math.sqrt(D), neg)
        ctx = (torch.softmax(scores, -1) @ v_rep).permute(0, 2, 1, 3).reshape(B, T, NH * D)
        if probe is not None:
            probe[l] = {"q": q, "k": k, "v": v, "q_rot": q_r, "k_rot": k_r, "ctx": ctx}
        x = x + lin(ctx, pre + "self_attn.o_proj")
        h = rms(x, p[pre + "post_attention_layernorm.weight"])
        act = act_fn(lin(h, pre + "mlp.gate_proj")) * lin(h, pre + "mlp.up_proj")
        if act_hook is not None:
            r = act_hook(l, act)
            act = act if r is None else r
        acts.append(act)
        x = x + lin(act, pre + "mlp.down_proj")
    hidden = rms(x, p["model.norm.weight"])
    head = p["model.embed_tokens.weight"] if tied(cfg) else p["lm_head.weight"]
    return hidden @ head.t(), hidden, acts


def causal_lm_loss(logits, labels):
    """HF's causal-LM loss: logits at t predict labels at t+1 (shift inside the loss), mean
    cross-entropy over labels != -100."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


# ----------------------------------------------------------------------------------------
# independent cross-checks
# ----------------------------------------------------------------------------------------

def crosscheck_llama_attention(cfg, probe, am):
    """Recomputes every layer's attention from the probed q, k, v a second way: RoPE as
    complex multiplication of the pairs (x_j, x_{j+D/2}) by e^{i t theta_j}, and attention
    by explicit loops over batch, query head (its key/value head picked as h // group),
    query position and allowed keys, with a hand-written softmax. Returns the max |diff| of
    the rotated q/k and of the context vectors."""
    L, C, NH, NKV, D, *_ = dims(cfg, "llama")
    group = NH // NKV
    worst_rope = worst_ctx = 0.0
    inv = rope_inv_freq(cfg, D)
    win = cfg.get("sliding_window") if cfg["model_type"] == "mistral" or cfg.get("use_sliding_window") else None
    for l, pr in probe.items():
        B, _, T, _ = pr["q"].shape
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        rot = torch.polar(torch.ones_like(ang), ang)  # e^{i t theta_j}, [T, D/2]
        for name in ("q", "k"):
            x = pr[name].detach()
            z = torch.complex(x[..., :D // 2], x[..., D // 2:]) * rot
            again = torch.cat((z.real, z.imag), dim=-1)
            worst_rope = max(worst_rope, (again - pr[name + "_rot"].detach()).abs().max().item())
        q, k, v = pr["q_rot"].detach(), pr["k_rot"].detach(), pr["v"].detach()
        ctx = torch.zeros(B, T, NH * D, dtype=torch.float64)
        for b in range(B):
            for h in range(NH):
                kv = h // group
                for i in range(T):
                    js = [j for j in range(i + 1) if am[b, j] == 1 and (win is None or i - j < win)]
                    s = [float(q[b, h, i] @ k[b, kv, j]) / math.sqrt(D) for j in js]
                    m = max(s)
                    e = [math.exp(t - m) for t in s]
                    z = sum(e)
                    for w, j in zip(e, js):
                        ctx[b, i, h * D:(h + 1) * D] += (w / z) * v[b, kv, j]
        worst_ctx = max(worst_ctx, (ctx - pr["ctx"].detach()).abs().max().item())
    return worst_rope, worst_ctx


def crosscheck_gpt2(p, cfg, ids, am, logits_ref):
    """GPT-2 rebuilt from torch.nn modules (LayerNorm, MultiheadAttention with the packed
    in-projection = c_attn.W^T, Linear layers holding the Conv1D weights transposed) in
    float64. Returns the max |diff| of the logits at real positions."""
    L, C, NH, _, D, Fw, V, P, eps = dims(cfg, "gpt2")
    B, T = ids.shape
    act_fn = activation(cfg["activation_function"])
    with torch.no_grad():
        x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][:T][None]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = may not attend
        for l in range(L):
            pre = "transformer.h.%d." % l
            ln1 = torch.nn.LayerNorm(C, eps=eps).double()
            ln2 = torch.nn.LayerNorm(C, eps=eps).double()
            mha = torch.nn.MultiheadAttention(C, NH, dropout=0.0, batch_first=True).double()
            fc = torch.nn.Linear(C, Fw).double()
            proj = torch.nn.Linear(Fw, C).double()
            ln1.weight.copy_(p[pre + "ln_1.weight"])
            ln1.bias.copy_(p[pre + "ln_1.bias"])
            ln2.weight.copy_(p[pre + "ln_2.weight"])
            ln2.bias.copy_(p[pre + "ln_2.bias"])
            mha.in_proj_weight.copy_(p[pre + "attn.c_attn.weight"].t())
            mha.in_proj_bias.copy_(p[pre + "attn.c_attn.bias"])
            mha.out_proj.weight.copy_(p[pre + "attn.c_proj.weight"].t())
            mha.out_proj.bias.copy_(p[pre + "attn.c_proj.bias"])
            fc.weight.copy_(p[pre + "mlp.c_fc.weight"].t())
            fc.bias.copy_(p[pre + "mlp.c_fc.bias"])
            proj.weight.copy_(p[pre + "mlp.c_proj.weight"].t())
            proj.bias.copy_(p[pre + "mlp.c_proj.bias"])
            h = ln1(x)
            a, _ = mha(h, h, h, attn_mask=causal, key_padding_mask=(am == 0), need_weights=False)
            x = x + a
            x = x + proj(act_fn(fc(ln2(x))))
        lnf = torch.nn.LayerNorm(C, eps=eps).double()
        lnf.weight.copy_(p["transformer.ln_f.weight"])
        lnf.bias.copy_(p["transformer.ln_f.bias"])
        lg = lnf(x) @ p["transformer.wte.weight"].t()
        real = am.bool()
        return (lg[real] - logits_ref.detach()[real]).abs().max().item()
