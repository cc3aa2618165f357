#!/usr/bin/env python3
"""gen_kernels.py: independent PyTorch reference for the decoder-family kernels of core/kernels.h.

A development tool, never a runtime dependency (like gen_fixtures.py, whose safetensors writer
it reuses). It writes tests/fixtures/ref/kernels/:

    cases.json            the RoPE cases' settings, positions and sizes; the other blocks' sizes
    kernels.safetensors   inputs and reference outputs (float32), named <block>.<what>

The math is written out in plain torch the way Hugging Face transformers writes it (no
`transformers` package here):

- rope.*: LlamaRotaryEmbedding's float32 recipe: inv_freq = 1 / theta ** (arange(0, d, 2,
  int64).float() / d), `linear` divides inv_freq by factor (_compute_linear_scaling_rope_parameters),
  `llama3` is _compute_llama3_parameters; freqs = inv_freq @ positions.float(), emb =
  cat(freqs, freqs), cos/sin in float32; q' = q * cos + rotate_half(q) * sin. Also the same
  tables in float64 from exact math (`cos_exact`), to show how far exact math is from what HF
  (and so the checkpoints) use.
- act.*: gelu_new (NewGELUActivation's formula), gelu_pytorch_tanh (F.gelu approximate="tanh"),
  erf gelu, relu, silu in float32; their derivatives by float64 autograd; SwiGLU
  act = silu(gate) * up with float64 autograd gradients of sum(g * act).
- rmsnorm.*: LlamaRMSNorm in float32 (variance = x.pow(2).mean(-1); x * rsqrt(var + eps);
  weight * x); float64 autograd gradients.
- linear_io.*: Conv1D (out = addmm(b, x, W), W [in, out], here a fused [C, 3*4] weight) with
  float64 gradients.
- attn.*: Llama's eager attention (repeat_kv, q.k^T * head_dim**-0.5 + mask, softmax in float32,
  . v) with the 4D mask HF builds: finfo.min where a key is in the future, padding
  (attention_mask 0) or, for `attn_win`, outside the sliding window (key s <= t - window);
  float64 autograd gradients for an upstream gradient that is zero on fully masked query rows.

Run from anywhere, offline:  /usr/bin/python3 tests/ref/gen_kernels.py
Deterministic (fixed seed, one thread): two runs give byte-identical files.
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_fixtures import read_safetensors, write_safetensors  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
OUT = os.path.join(HERE, "..", "fixtures", "ref", "kernels")

POSITIONS = [0, 1, 2, 3, 6, 7, 100, 1000, 2047, 4095, 8191, 65535, 131071]
ROPE_HEADS = 3
ROPE_CASES = [
    {"name": "default", "type": "default", "theta": 10000.0, "d": 10},
    {"name": "default_1e6", "type": "default", "theta": 1000000.0, "d": 14},
    {"name": "linear3", "type": "linear", "theta": 10000.0, "d": 10, "factor": 3.0},
    # wavelengths 6.3 .. 4.9e5: one below 2048/4, one between, four above 2048/1
    {"name": "llama3", "type": "llama3", "theta": 500000.0, "d": 14, "factor": 8.0,
     "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 2048},
    # two wavelengths (87, 325) in the smoothed band [512/8, 512/1]
    {"name": "llama3_wide", "type": "llama3", "theta": 10000.0, "d": 14, "factor": 4.0,
     "low_freq_factor": 1.0, "high_freq_factor": 8.0, "original_max_position_embeddings": 512},
]


# ---------------------------------------------------------------------------------- RoPE

def hf_inv_freq(c):
    """HF's inv_freq, float32, op by op as modeling_rope_utils writes it."""
    d, base = c["d"], c["theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    if c["type"] == "linear":
        inv_freq = inv_freq / c["factor"]
    elif c["type"] == "llama3":
        factor = c["factor"]
        low_freq_factor, high_freq_factor = c["low_freq_factor"], c["high_freq_factor"]
        old_context_len = c["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    assert inv_freq.dtype == torch.float32
    return inv_freq


def exact_inv_freq(c):
    """The same definitions in float64 (exact math, for comparison only)."""
    d, base = c["d"], c["theta"]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    if c["type"] == "linear":
        inv = inv / c["factor"]
    elif c["type"] == "llama3":
        f, lo, hi, ocl = c["factor"], c["low_freq_factor"], c["high_freq_factor"], c["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > ocl / lo, inv / f, inv)
        s = (ocl / wl - lo) / (hi - lo)
        medium = ~(wl < ocl / hi) * ~(wl > ocl / lo)
        inv = torch.where(medium, (1 - s) * scaled / f + s * scaled, scaled)
    return inv


def hf_cos_sin(inv_freq, positions):
    """LlamaRotaryEmbedding.forward for one sequence: float32 throughout."""
    pos = torch.tensor(positions, dtype=torch.int64)[None, :]
    inv_freq_expanded = inv_freq[None, :, None].float().expand(1, -1, 1)
    freqs = (inv_freq_expanded.float() @ pos[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[0], emb.sin()[0]


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_block(out):
    cases = []
    for c in ROPE_CASES:
        n, d = len(POSITIONS), c["d"]
        inv = hf_inv_freq(c)
        cos, sin = hf_cos_sin(inv, POSITIONS)
        inv64 = exact_inv_freq(c)
        ang64 = torch.tensor(POSITIONS, dtype=torch.float64)[:, None] * inv64[None, :]
        cos64 = torch.cat((ang64, ang64), dim=-1).cos()
        q = torch.randn(n, ROPE_HEADS, d)  # rows x heads x d, stored as [n, H*d]
        q_rot = (q * cos[:, None, :]) + (rotate_half(q) * sin[:, None, :])
        name = "rope." + c["name"]
        out += [(name + ".inv_freq", inv), (name + ".cos", cos), (name + ".sin", sin),
                (name + ".cos_exact", cos64.float()),
                (name + ".q", q.reshape(n, -1)), (name + ".q_rot", q_rot.reshape(n, -1))]
        print("rope %-12s inv_freq %s; HF float32 cos vs exact float64: max |diff| %.2e (at position %d)"
              % (c["name"], ["%.4g" % v for v in inv.tolist()], (cos.double() - cos64).abs().max().item(),
                 POSITIONS[int((cos.double() - cos64).abs().max(dim=1).values.argmax())]))
        cases.append(dict(c))
    return cases


# ---------------------------------------------------------------------------------- activations

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def derivative(fn, x):
    x64 = x.double().requires_grad_(True)
    fn(x64).sum().backward()
    return x64.grad.float()


def act_block(out):
    special = torch.tensor([0.0, 1e-3, -1e-3, 0.5, -0.5, 3.0, -3.0, 6.0, -6.0, 10.0, -10.0, -20.0, 30.0])
    x = torch.cat((special, 3.0 * torch.randn(40)))
    fns = {"gelu_new": gelu_new, "gelu_pytorch_tanh": lambda t: F.gelu(t, approximate="tanh"),
           "gelu": F.gelu, "relu": F.relu, "silu": F.silu}
    out.append(("act.x", x))
    for name, fn in fns.items():
        out += [("act.%s" % name, fn(x)), ("act.%s.grad" % name, derivative(fn, x))]
    print("act: gelu_new vs gelu_pytorch_tanh (float32) max |diff| %.2e"
          % (gelu_new(x) - F.gelu(x, approximate="tanh")).abs().max().item())
    gate, up, g = 3.0 * torch.randn(5, 9), torch.randn(5, 9), torch.randn(5, 9)
    act = F.silu(gate) * up
    g64, u64 = gate.double().requires_grad_(True), up.double().requires_grad_(True)
    (g.double() * (F.silu(g64) * u64)).sum().backward()
    out += [("swiglu.gate", gate), ("swiglu.up", up), ("swiglu.g", g), ("swiglu.act", act),
            ("swiglu.dgate", g64.grad.float()), ("swiglu.dup", u64.grad.float())]
    return {"act_n": x.numel(), "swiglu_n": gate.numel()}


# ---------------------------------------------------------------------------------- RMSNorm, Conv1D

def llama_rmsnorm(x, w, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return w * x


def rmsnorm_block(out):
    N, C, eps = 5, 7, 1e-6
    x = torch.randn(N, C)
    x[1] *= 30.0   # a large row
    x[2] += 2.0    # a row with a mean far from 0 (RMSNorm must not centre it)
    x[3] *= 1e-3   # a small row, where eps matters
    w, g = 1.0 + 0.3 * torch.randn(C), torch.randn(N, C)
    y = llama_rmsnorm(x, w, eps)
    x64, w64 = x.double().requires_grad_(True), w.double().requires_grad_(True)
    (g.double() * llama_rmsnorm(x64, w64, eps)).sum().backward()
    out += [("rmsnorm.x", x), ("rmsnorm.w", w), ("rmsnorm.g", g), ("rmsnorm.y", y),
            ("rmsnorm.dx", x64.grad.float()), ("rmsnorm.dw", w64.grad.float())]
    return {"N": N, "C": C, "eps": eps}


def linear_io_block(out):
    N, IC, OC3 = 5, 6, 12   # W [6, 12] = three [6, 4] column blocks, as GPT-2's c_attn
    x, W, b, g = torch.randn(N, IC), torch.randn(IC, OC3), torch.randn(OC3), torch.randn(N, OC3)
    y = torch.addmm(b.double(), x.double(), W.double())
    out += [("linear_io.x", x), ("linear_io.w", W), ("linear_io.b", b), ("linear_io.g", g),
            ("linear_io.y", y.float()), ("linear_io.dx", (g.double() @ W.double().T).float()),
            ("linear_io.dw", (x.double().T @ g.double()).float()), ("linear_io.db", g.double().sum(0).float())]
    return {"N": N, "IC": IC, "OC": OC3 // 3, "blocks": 3}


# ---------------------------------------------------------------------------------- attention

def repeat_kv(h, n_rep):
    b, nkv, t, hd = h.shape
    return h[:, :, None, :, :].expand(b, nkv, n_rep, t, hd).reshape(b, nkv * n_rep, t, hd)


def eager_attention(q, k, v, am, NH, NKV, hd, window):
    """q [B,T,NH*hd], k, v [B,T,NKV*hd], am [B,T] -> ctx [B,T,NH*hd], att [B,NH,T,T]"""
    B, T = am.shape
    dt = q.dtype
    qh = q.view(B, T, NH, hd).transpose(1, 2)
    kh = repeat_kv(k.view(B, T, NKV, hd).transpose(1, 2), NH // NKV)
    vh = repeat_kv(v.view(B, T, NKV, hd).transpose(1, 2), NH // NKV)
    t_idx = torch.arange(T)[:, None]
    s_idx = torch.arange(T)[None, :]
    allowed = (s_idx <= t_idx)
    if window:
        allowed = allowed & (s_idx > t_idx - window)
    allowed = allowed[None, None] & (am[:, None, None, :] != 0)
    mask = torch.zeros(B, 1, T, T, dtype=dt).masked_fill(~allowed, torch.finfo(dt).min)
    scores = torch.matmul(qh, kh.transpose(2, 3)) * hd ** -0.5 + mask
    att = F.softmax(scores, dim=-1, dtype=torch.float32 if dt == torch.float32 else dt)
    ctx = torch.matmul(att, vh).transpose(1, 2).reshape(B, T, NH * hd)
    return ctx, att, allowed.any(-1)[:, 0, :]


def attn_block(out):
    B, T, NH, NKV, hd, window = 2, 7, 6, 2, 8, 3
    am = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]], dtype=torch.float32)  # row 1 left-padded
    q, k, v = torch.randn(B, T, NH * hd), torch.randn(B, T, NKV * hd), torch.randn(B, T, NKV * hd)
    out += [("attn.q", q), ("attn.k", k), ("attn.v", v), ("attn.keymask", am)]
    for tag, win in (("attn", 0), ("attn_win", window)):
        ctx, att, live = eager_attention(q, k, v, am, NH, NKV, hd, win)
        g = torch.randn(B, T, NH * hd) * live[:, :, None]  # no gradient from rows without keys
        q64, k64, v64 = (t.double().requires_grad_(True) for t in (q, k, v))
        ctx64, _, _ = eager_attention(q64, k64, v64, am, NH, NKV, hd, win)
        (g.double() * ctx64).sum().backward()
        out += [(tag + ".ctx", ctx), (tag + ".att", att), (tag + ".g", g), (tag + ".live", live.float()),
                (tag + ".dq", q64.grad.float()), (tag + ".dk", k64.grad.float()), (tag + ".dv", v64.grad.float())]
        print("%-8s ctx float32 vs float64 max |diff| %.2e; %d of %d query rows have keys"
              % (tag, (ctx.double() - ctx64.detach()).abs().max().item(), int(live.sum()), B * T))
    return {"B": B, "T": T, "NH": NH, "NKV": NKV, "hd": hd, "window": window}


def main():
    torch.manual_seed(20240614)
    os.makedirs(OUT, exist_ok=True)
    tensors = []
    cases = {"positions": POSITIONS, "rope_heads": ROPE_HEADS}
    cases["rope"] = rope_block(tensors)
    cases["act"] = act_block(tensors)
    cases["rmsnorm"] = rmsnorm_block(tensors)
    cases["linear_io"] = linear_io_block(tensors)
    cases["attn"] = attn_block(tensors)
    tensors = [(n, t.detach().float().contiguous()) for n, t in tensors]
    path = os.path.join(OUT, "kernels.safetensors")
    write_safetensors(path, tensors)
    back = read_safetensors(path)
    assert all(torch.equal(back[n].reshape(t.shape), t) for n, t in tensors), "safetensors round trip"
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1, sort_keys=True)
        f.write("\n")
    size = os.path.getsize(path)
    print("wrote %d tensors, %d bytes" % (len(tensors), size))
    assert size < 256 * 1024
    return 0


if __name__ == "__main__":
    sys.exit(main())
