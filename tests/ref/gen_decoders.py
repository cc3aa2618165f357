#!/usr/bin/env python3
"""gen_decoders.py: independent PyTorch reference for knwb's decoder families (issue 14).

A development tool, never a runtime dependency, beside gen_fixtures.py. Writes Hugging
Face causal-LM folders with random weights under tests/fixtures/ref/<case>/:

    config.json            the keys HF writes for the family (GPT2Config / LlamaConfig /
                           MistralConfig / Qwen2Config)
    model.safetensors      (or model.safetensors.index.json + 2 shards)
    tokenizer files        vocab.json + merges.txt (GPT-2, Qwen2) or tokenizer.json
                           (Llama, Mistral), and tokenizer_config.json
    inputs.json            input_ids, attention_mask, pred_pos, target, lm_labels, the
                           multi-token, generation, IG and intervention settings
    expected.safetensors   reference outputs (float32), see tests/ref/README.md

The math (ref_decoder.py) is written out in plain torch; every expected value is computed
in float64 from the weights exactly as stored. Cases: gpt2, gpt2_noprefix, llama,
llama_tied, llama3_rope, llama_linear_rope, qwen2, mistral, llama_bf16, llama_sharded.

Run from anywhere, offline, with Debian's torch:

    /usr/bin/python3 tests/ref/gen_decoders.py

Deterministic (fixed seeds, one thread, deterministic algorithms). It checks itself and
stops at the first check that fails: files read back bit-exact; float64 central differences
on parameter gradients; GPT-2 against a rebuild from torch.nn modules; Llama-family
attention and RoPE against explicit loops and complex rotation; zeroing neuron i equals
zeroing its value slot; IG completeness; greedy steps with a clear margin.
"""

import math
import os
import shutil
import sys

sys.dont_write_bytecode = True  # keep tests/ref free of __pycache__
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ref_decoder import (causal_lm_loss, crosscheck_gpt2, crosscheck_llama_attention, dims, down_weight_name,  # noqa: E402
                         forward, init_params, llama3_regimes, param_shapes, rope_inv_freq, tied, zero_value_slot)
from ref_io import read_safetensors, read_safetensors_raw, write_config, write_json, write_safetensors, write_sharded  # noqa: E402
from ref_math import f32, replace_at  # noqa: E402
from ref_tokenizer import write_bytelevel, write_llama  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "..", "fixtures", "ref")

IG_STEPS = 20
IG_EXTRA_STEPS = (5, 50)
B, T, T1 = 2, 8, 5          # batch, sequence length, real tokens of row 1 (right-padded)
MT_PROMPT, MT_TARGET = 5, 3  # multi-token: prompt length, target length
GEN_PROMPT, GEN_STEPS = 4, 6
GREEDY_MARGIN = 1e-3        # top-1 minus top-2 logit at every greedy step, at least
INTERVENE = {"layer": 1, "zero": [3, 7], "double": [11]}
ZERO_SLOT = {"layer": 0, "neuron": 5}


# ----------------------------------------------------------------------------------------
# configs as HF writes them
# ----------------------------------------------------------------------------------------

def gpt2_config(L, C, NH, n_inner, V, P, eps=1e-5, n_inner_key=True):
    cfg = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": V - 1, "embd_pdrop": 0.1, "eos_token_id": V - 1, "initializer_range": 0.02,
        "layer_norm_epsilon": eps, "model_type": "gpt2", "n_ctx": P, "n_embd": C, "n_head": NH,
        "n_layer": L, "n_positions": P, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": V,
    }
    if n_inner_key:
        cfg["n_inner"] = n_inner
    return cfg


def llama_config(model_type, L, C, NH, NKV, Fw, V, P, theta, eps, tie, rope_scaling=None, head_dim_key=True,
                 dtype="float32", **extra):
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]
    cfg = {
        "architectures": [arch], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": C, "initializer_range": 0.02, "intermediate_size": Fw,
        "max_position_embeddings": P, "model_type": model_type, "num_attention_heads": NH,
        "num_hidden_layers": L, "num_key_value_heads": NKV, "rms_norm_eps": eps, "rope_theta": theta,
        "tie_word_embeddings": tie, "torch_dtype": dtype, "use_cache": True, "vocab_size": V,
    }
    if model_type == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1, "rope_scaling": rope_scaling})
    if model_type == "mistral":
        cfg.update({"sliding_window": 16})
    if head_dim_key:
        cfg["head_dim"] = C // NH
    cfg.update(extra)
    return cfg


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------

def causal_mask_bool(P):
    return torch.tril(torch.ones(P, P, dtype=torch.bool)).view(1, 1, P, P)


def gpt2_buffers(dtype, masked_bias):
    """The per-layer causal-mask buffer GPT2Attention registered (persistent in
    transformers 4.x up to 4.3x: `attn.bias` [1,1,P,P], and `attn.masked_bias` = -1e4)."""
    def extra(cfg, fname):
        L, P = cfg["n_layer"], cfg["n_positions"]
        out = []
        for l in range(L):
            out.append((fname("transformer.h.%d.attn.bias" % l), causal_mask_bool(P).to(dtype)))
            if masked_bias:
                out.append((fname("transformer.h.%d.attn.masked_bias" % l), torch.tensor(-1e4)))
        return out
    return extra


def strip_transformer(n):
    return n[len("transformer."):] if n.startswith("transformer.") else n


CASES = [
    {"name": "gpt2", "family": "gpt2", "seed": 14001,
     "config": gpt2_config(3, 16, 4, None, 301, 32), "tokenizer": "gpt2",
     "extra": gpt2_buffers(torch.bool, True)},
    {"name": "gpt2_noprefix", "family": "gpt2", "seed": 14002,
     "config": gpt2_config(2, 20, 5, 52, 301, 32, eps=1e-6), "tokenizer": "gpt2",
     "rename": strip_transformer, "extra": gpt2_buffers(torch.uint8, False)},
    {"name": "llama", "family": "llama", "seed": 14003,
     "config": llama_config("llama", 3, 24, 6, 2, 40, 301, 32, 500000.0, 1e-5, False), "tokenizer": "llama"},
    {"name": "llama_tied", "family": "llama", "seed": 14004,
     "config": llama_config("llama", 2, 24, 6, 2, 36, 301, 32, 10000.0, 1e-6, True, head_dim_key=False),
     "tokenizer": "llama"},
    {"name": "llama3_rope", "family": "llama", "seed": 14005,
     "config": llama_config("llama", 2, 24, 4, 2, 40, 301, 8192, 500000.0, 1e-5, True,
                            rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                          "original_max_position_embeddings": 1024, "rope_type": "llama3"}),
     "tokenizer": "llama"},
    {"name": "llama_linear_rope", "family": "llama", "seed": 14006,
     "config": llama_config("llama", 2, 24, 6, 3, 40, 301, 32, 10000.0, 1e-5, True,
                            rope_scaling={"factor": 4.0, "type": "linear"}, head_dim_key=False),
     "tokenizer": "llama"},
    {"name": "qwen2", "family": "llama", "seed": 14007,
     "config": llama_config("qwen2", 2, 24, 6, 2, 44, 301, 32, 1000000.0, 1e-6, True, head_dim_key=False,
                            bos_token_id=300, eos_token_id=300, max_window_layers=2, sliding_window=32,
                            use_sliding_window=False),
     "tokenizer": "qwen2"},
    {"name": "mistral", "family": "llama", "seed": 14008,
     "config": llama_config("mistral", 2, 24, 6, 2, 40, 301, 32, 10000.0, 1e-5, False), "tokenizer": "llama"},
    {"name": "llama_bf16", "family": "llama", "seed": 14009,
     "config": llama_config("llama", 2, 24, 6, 2, 40, 301, 32, 10000.0, 1e-5, True, dtype="bfloat16"),
     "tokenizer": "llama", "dtype": torch.bfloat16},
    {"name": "llama_sharded", "family": "llama", "seed": 14010,
     "config": llama_config("llama", 2, 24, 6, 1, 40, 301, 32, 10000.0, 1e-5, False), "tokenizer": "llama",
     "sharded": True},
]


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------

def special_ids(c):
    cfg = c["config"]
    if c["tokenizer"] == "llama":
        return {"bos": 1, "eos": 2, "pad": 2, "first": 3}  # ids 0..2 are <unk> <s> </s>
    eot = cfg["vocab_size"] - 1
    return {"bos": None, "eos": eot, "pad": eot, "first": 0}


def random_ids(g, n, sp, V):
    """n ids from the non-special range; a Llama-style prompt starts with <s>."""
    hi = V - 1 if sp["bos"] is None else V
    ids = [int(v) for v in torch.randint(sp["first"], hi, (n,), generator=g)]
    if sp["bos"] is not None:
        ids[0] = sp["bos"]
    return ids


def ranked(logits_row, k):
    return int(torch.argsort(logits_row, descending=True)[k])


def build_inputs(c, p64, family, cfg):
    """input_ids/attention_mask (row 1 right-padded with pad = eos), pred_pos, targets picked
    from the float64 model (row 0: its most likely next token, row 1: its third), HF-style
    lm_labels, a multi-token prompt + target (target tokens teacher-forced: ranks 1, 0, 3),
    a greedy-generation prompt whose every step has a clear top-1, that never emits eos and
    continues with at least 3 distinct tokens (a stuck repetition would test little)."""
    V = cfg["vocab_size"]
    sp = special_ids(c)
    g = torch.Generator().manual_seed(c["seed"] + 7)
    row0 = random_ids(g, T, sp, V)
    row1 = random_ids(g, T1, sp, V) + [sp["pad"]] * (T - T1)
    ids = [row0, row1]
    am = [[1] * T, [1] * T1 + [0] * (T - T1)]
    pred_pos = [T - 1, T1 - 1]
    with torch.no_grad():
        lg = forward(p64, cfg, family, torch.tensor(ids), torch.tensor(am))[0]
    target = [ranked(lg[0, pred_pos[0]], 0), ranked(lg[1, pred_pos[1]], 2)]
    lm_labels = [[t if m else -100 for t, m in zip(r, mr)] for r, mr in zip(ids, am)]

    mt_prompt = random_ids(g, MT_PROMPT, sp, V)
    mt_target = []
    for k in (1, 0, 3):
        seq = torch.tensor([mt_prompt + mt_target])
        with torch.no_grad():
            lgm = forward(p64, cfg, family, seq, torch.ones_like(seq))[0]
        mt_target.append(ranked(lgm[0, -1], k))

    for attempt in range(100):
        gen_prompt = random_ids(g, GEN_PROMPT, sp, V)
        toks, margins = greedy(p64, cfg, family, gen_prompt, GEN_STEPS)
        if min(margins) >= GREEDY_MARGIN and sp["eos"] not in toks and len(set(toks)) >= 3:
            break
    else:
        raise AssertionError("no generation prompt with clear greedy steps")
    return {
        "input_ids": ids, "attention_mask": am, "pred_pos": pred_pos, "target": target, "lm_labels": lm_labels,
        "mt_prompt": mt_prompt, "mt_target": mt_target,
        "gen_prompt": gen_prompt, "gen_steps": GEN_STEPS,
        "ig_row": 0, "ig_steps": IG_STEPS,
        "intervene": INTERVENE, "zero_slot": ZERO_SLOT,
    }, toks, margins


def greedy(p, cfg, family, prompt, steps):
    """Greedy continuation, full recomputation each step (no cache), no stop at eos.
    Returns the tokens and each step's top-1 minus top-2 logit."""
    seq, toks, margins = list(prompt), [], []
    with torch.no_grad():
        for _ in range(steps):
            x = torch.tensor([seq])
            lg = forward(p, cfg, family, x, torch.ones_like(x))[0][0, -1]
            top = torch.topk(lg, 2).values
            margins.append((top[0] - top[1]).item())
            t = int(torch.argmax(lg))
            toks.append(t)
            seq.append(t)
    return toks, margins


# ----------------------------------------------------------------------------------------
# one case
# ----------------------------------------------------------------------------------------

def save_weights(out_dir, c, file_tensors):
    if c.get("sharded"):
        files = write_sharded(out_dir, file_tensors, 2)
        back = {}
        for fn in files:
            back.update(read_safetensors_raw(os.path.join(out_dir, fn))[1])
    else:
        path = os.path.join(out_dir, "model.safetensors")
        write_safetensors(path, file_tensors)
        back = read_safetensors_raw(path)[1]
    assert set(back) == {n for n, _ in file_tensors}
    for n, t in file_tensors:  # bit-exact, in the stored dtype
        assert back[n].dtype == t.dtype and torch.equal(back[n].view(torch.uint8) if t.dtype == torch.bool
                                                        else back[n], t.view(torch.uint8) if t.dtype == torch.bool
                                                        else t), n


def write_tokenizer(out_dir, c):
    cfg = c["config"]
    V = cfg["vocab_size"]
    maxlen = cfg.get("n_positions") or cfg["max_position_embeddings"]
    if c["tokenizer"] == "gpt2":
        eot = write_bytelevel(out_dir, V, "GPT2Tokenizer", maxlen)
        assert eot == cfg["eos_token_id"] == cfg["bos_token_id"]
    elif c["tokenizer"] == "qwen2":
        eot = write_bytelevel(out_dir, V, "Qwen2Tokenizer", maxlen, bos=False)
        assert eot == cfg["eos_token_id"]
    else:
        unk, bos, eos = write_llama(out_dir, V, maxlen)
        assert (bos, eos) == (cfg["bos_token_id"], cfg["eos_token_id"])


def run_case(c):
    name, family, cfg = c["name"], c["family"], c["config"]
    out_dir = os.path.join(OUT_ROOT, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)  # the folder holds exactly what this run writes
    os.makedirs(out_dir)
    L, C, NH, NKV, D, Fw, V, P, eps = dims(cfg, family)
    rename = c.get("rename", lambda n: n)

    # ---- weights as stored, and their exact upcast
    dtype = c.get("dtype", torch.float32)
    stored = {n: t.to(dtype) for n, t in init_params(cfg, family, c["seed"]).items()}
    names = [n for n, _ in param_shapes(cfg, family)]
    file_tensors = [(rename(n), stored[n]) for n in names]
    if "extra" in c:
        file_tensors += c["extra"](cfg, rename)
    save_weights(out_dir, c, file_tensors)
    write_config(os.path.join(out_dir, "config.json"), cfg)
    write_tokenizer(out_dir, c)

    p64 = {n: t.double().requires_grad_(True) for n, t in stored.items()}
    pd = {n: t.detach() for n, t in p64.items()}
    inp, gen_toks, gen_margins = build_inputs(c, pd, family, cfg)
    write_json(os.path.join(out_dir, "inputs.json"), inp)
    ids = torch.tensor(inp["input_ids"])
    am = torch.tensor(inp["attention_mask"])
    labels = torch.tensor(inp["lm_labels"])
    pred_pos, target = inp["pred_pos"], inp["target"]
    rows = torch.arange(B)
    exp = []

    # ---- forward 1: activations, prob/logprob at pred_pos and their gradients w.r.t. the neurons
    probe = {}
    logits, hidden, acts = forward(p64, cfg, family, ids, am, probe=probe)
    lp = logits[rows, torch.as_tensor(pred_pos)]
    logprob = torch.log_softmax(lp, -1)[rows, torch.as_tensor(target)]
    prob = torch.softmax(lp, -1)[rows, torch.as_tensor(target)]
    g_prob = torch.autograd.grad(prob.sum(), acts, retain_graph=True)
    g_logprob = torch.autograd.grad(logprob.sum(), acts, retain_graph=True)
    loss = causal_lm_loss(logits, labels)
    g_params = torch.autograd.grad(loss, [p64[n] for n in names])

    exp.append(("logits", f32(logits)))
    exp.append(("hidden", f32(hidden)))
    for l in range(L):
        exp.append(("ffn_act.%d" % l, f32(acts[l])))
    exp.append(("prob", f32(prob)))
    exp.append(("logprob", f32(logprob)))
    for l in range(L):
        exp.append(("grad_prob_ffn_act.%d" % l, f32(g_prob[l])))
        exp.append(("grad_logprob_ffn_act.%d" % l, f32(g_logprob[l])))
    exp.append(("lm_loss", f32(loss.reshape(1))))
    for n, g in zip(names, g_params):
        exp.append(("grad." + rename(n), f32(g)))
    if family == "llama":
        exp.append(("rope.inv_freq", f32(rope_inv_freq(cfg, D))))

    # ---- self-checks: finite differences, independent formulations, float32 distance
    fd = fd_check(pd, cfg, family, ids, labels, names, g_params)
    if family == "gpt2":
        xdev = crosscheck_gpt2(pd, cfg, ids, am, logits)
        assert xdev < 1e-10, "GPT-2 differs from the torch.nn rebuild: %g" % xdev
        xmsg = "vs torch.nn rebuild %.0e" % xdev
    else:
        dr, dc = crosscheck_llama_attention(cfg, probe, am)
        assert dr < 1e-12 and dc < 1e-12, (dr, dc)
        xmsg = "RoPE vs complex %.0e, attention vs loops %.0e" % (dr, dc)
        if (cfg.get("rope_scaling") or {}).get("rope_type") == "llama3":
            reg = llama3_regimes(cfg, D)
            kinds = {r.split(" ")[0] for r, _ in reg}
            assert kinds == {"high", "medium", "low"}, reg
            inv = rope_inv_freq(cfg, D)
            assert max(abs(a - b) for (_, a), b in zip(reg, inv.tolist())) < 1e-15
            print("  %s: llama3 regimes per frequency: %s" % (name, "; ".join("%s %.6g" % r for r in reg)))
    with torch.no_grad():
        p32 = {n: t.float() for n, t in stored.items()}
        l32 = forward(p32, cfg, family, ids, am)[0]
        f32dev = (l32.double() - logits.detach())[am.bool()].abs().max().item()

    # ---- intervention at pred_pos in layer INTERVENE["layer"]
    il = INTERVENE["layer"]

    def intervene(l, a):
        if l != il:
            return None
        a = a.clone()
        for b in range(B):
            a[b, pred_pos[b], INTERVENE["zero"]] = 0.0
            a[b, pred_pos[b], INTERVENE["double"]] = a[b, pred_pos[b], INTERVENE["double"]] * 2.0
        return a

    with torch.no_grad():
        li = forward(pd, cfg, family, ids, am, intervene)[0]
    exp.append(("intervened.logits_pred", f32(li[rows, torch.as_tensor(pred_pos)])))

    # ---- zeroing neuron i of layer l everywhere == zeroing its value slot
    zl, zi = ZERO_SLOT["layer"], ZERO_SLOT["neuron"]

    def zero_neuron(l, a):
        if l != zl:
            return None
        a = a.clone()
        a[:, :, zi] = 0.0
        return a

    with torch.no_grad():
        lz = forward(pd, cfg, family, ids, am, zero_neuron)[0]
        lz2 = forward(zero_value_slot(pd, family, zl, zi), cfg, family, ids, am)[0]
    zdev = (lz - lz2).abs().max().item()
    assert zdev < 1e-12, "zeroing neuron != zeroing its value slot: %g" % zdev
    assert (lz - logits.detach()).abs().max().item() > 1e-6, "zeroing the neuron changed nothing"
    exp.append(("zero_slot.logits", f32(lz)))

    # ---- integrated gradients at pred_pos of row ig_row run alone (unpadded, batch 1)
    r = inp["ig_row"]
    n_real = int(am[r].sum())
    ids1 = ids[r:r + 1, :n_real]
    mp, tg = pred_pos[r], target[r]
    assert mp == n_real - 1

    def P_single(zs, l, pos, seq):
        m = zs.shape[0]
        z = zs.clone().requires_grad_(True)
        hook = (lambda ll, a: replace_at(a, [pos] * m, z) if ll == l else None)
        x = seq.expand(m, -1)
        lg = forward(pd, cfg, family, x, torch.ones_like(x), hook)[0]
        return lg, z

    def P_and_grad(l, zs):
        lg, z = P_single(zs, l, mp, ids1)
        P = torch.softmax(lg[:, mp], -1)[:, tg]
        (gz,) = torch.autograd.grad(P.sum(), z)
        return P.detach(), gz

    with torch.no_grad():
        lg1, _, acts1 = forward(pd, cfg, family, ids1, torch.ones_like(ids1))
        p_full = torch.softmax(lg1[0, mp], -1)[tg]
    assert abs(p_full.item() - prob[r].item()) < 1e-12  # padding does not touch the real rows
    exp.append(("ig_p_full", f32(p_full.reshape(1))))
    deltas = {}
    for l in range(L):
        w = acts1[l][0, mp]
        res, P0 = ig_sums(P_and_grad, l, w, with_extra=True)
        exp.append(("ig_p_zero.%d" % l, f32(P0.reshape(1))))
        exp.append(("ig_left.%d" % l, f32(res[IG_STEPS])))
        exp.append(("ig_right.%d" % l, f32(res["right"])))
        for m in IG_EXTRA_STEPS:
            exp.append(("ig_left_m%d.%d" % (m, l), f32(res[m])))
        deltas[l] = completeness(name, l, p_full.item() - P0.item(), res)

    # ---- multi-token: teacher-forced P(target | prompt), neurons at the last prompt position
    mtp, mtt = inp["mt_prompt"], inp["mt_target"]
    seq = torch.tensor([mtp + mtt[:-1]])  # S = len(prompt) + len(target) - 1 positions
    S = seq.shape[1]
    tpos = list(range(len(mtp) - 1, S))  # the positions predicting target[0], [1], [2]

    def mt_logprob_of(lg):
        lsm = torch.log_softmax(lg[:, tpos], -1)  # [m, 3, V]
        return lsm[:, torch.arange(len(mtt)), torch.tensor(mtt)].sum(-1)

    lgm, _, actsm = forward(p64, cfg, family, seq, torch.ones_like(seq))
    mt_lp = mt_logprob_of(lgm)[0]
    g_mt = torch.autograd.grad(mt_lp, actsm)
    exp.append(("mt_prob", f32(mt_lp.exp().reshape(1))))
    exp.append(("mt_logprob", f32(mt_lp.reshape(1))))
    for l in range(L):
        exp.append(("grad_mt_logprob_ffn_act.%d" % l, f32(g_mt[l][0])))
    last = len(mtp) - 1

    def PMT_and_grad(l, zs):
        lg, z = P_single(zs, l, last, seq)
        P = mt_logprob_of(lg).exp()
        (gz,) = torch.autograd.grad(P.sum(), z)
        return P.detach(), gz

    mt_full = mt_lp.exp().item()
    mt_deltas = {}
    for l in range(L):
        w = actsm[l][0, last].detach()
        Pw, _ = PMT_and_grad(l, w[None])
        assert abs(Pw.item() - mt_full) < 1e-12
        res, P0 = ig_sums(PMT_and_grad, l, w, with_extra=False)
        exp.append(("ig_mt_p_zero.%d" % l, f32(P0.reshape(1))))
        exp.append(("ig_mt_left.%d" % l, f32(res[IG_STEPS])))
        exp.append(("ig_mt_right.%d" % l, f32(res["right"])))
        mt_deltas[l] = (mt_full - P0.item(), res[IG_STEPS].sum().item() - (mt_full - P0.item()),
                        0.5 * (res[IG_STEPS] + res["right"]).sum().item() - (mt_full - P0.item()))

    # ---- greedy generation
    again, _ = greedy({n: t.float() for n, t in stored.items()}, cfg, family, inp["gen_prompt"], GEN_STEPS)
    assert again == gen_toks, "float32 greedy differs from float64 greedy"
    exp.append(("gen_tokens", torch.tensor(gen_toks, dtype=torch.float32)))

    exp_path = os.path.join(out_dir, "expected.safetensors")
    write_safetensors(exp_path, exp)
    back = read_safetensors(exp_path)
    for n, t in exp:
        assert torch.equal(back[n], t), n

    for l in range(L):
        ts, d = deltas[l]
        print("  %s layer %d: P(w)-P(0) = %+.6f; IG sum - that: m=5 %+.2e, m=20 %+.2e, m=50 %+.2e, trapezoid m=20 %+.2e"
              % (name, l, ts, d[5], d[20], d[50], d["trap20"]))
    for l in range(L):
        ts, dl, dtz = mt_deltas[l]
        print("  %s layer %d multi-token: P(w)-P(0) = %+.3e; left m=20 sum - that %+.2e, trapezoid %+.2e"
              % (name, l, ts, dl, dtz))
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print("%s: L=%d C=%d NH=%d NKV=%d D=%d F=%d V=%d B=%d T=%d %s | prob=%s lm_loss=%.6f mt_prob=%.3e | "
          "grad FD rel %.1e | %s | zero-slot %.0e | f32-vs-f64 logits %.1e | greedy %s (min margin %.3f) | "
          "%d expected tensors | %d bytes"
          % (name, L, C, NH, NKV, D, Fw, V, B, T, str(dtype).replace("torch.", ""),
             ",".join("%.4f" % v for v in prob.tolist()), loss.item(), mt_full, fd, xmsg, zdev, f32dev,
             gen_toks, min(gen_margins), len(exp), size))
    return size


def ig_sums(P_and_grad, l, w, with_extra):
    """Left (k = 0..m-1) and right (k = 1..m) Riemann sums of w * dP/dz along z = (k/m) w,
    m = 20, plus left sums for m = 5, 50 when asked. Returns (sums, P(0))."""
    P0, _ = P_and_grad(l, torch.zeros_like(w)[None])
    res = {}
    for m in (IG_STEPS,) + (IG_EXTRA_STEPS if with_extra else ()):
        alphas = torch.arange(m, dtype=torch.float64) / m
        _, gz = P_and_grad(l, alphas[:, None] * w[None])
        res[m] = w / m * gz.sum(0)
    alphas_r = torch.arange(1, IG_STEPS + 1, dtype=torch.float64) / IG_STEPS
    _, gzr = P_and_grad(l, alphas_r[:, None] * w[None])
    res["right"] = w / IG_STEPS * gzr.sum(0)
    return res, P0[0]


def completeness(name, l, target_sum, res):
    d = {m: res[m].sum().item() - target_sum for m in (5, 20, 50)}
    d["trap20"] = 0.5 * (res[20] + res["right"]).sum().item() - target_sum
    # completeness: the left sums converge to P(w) - P(0) like 1/m (error ratios near 5/20
    # and 20/50), and the m = 20 trapezoid lands close to it
    assert abs(d[20]) <= 0.6 * abs(d[5]) + 1e-5 and abs(d[50]) <= 0.6 * abs(d[20]) + 1e-5, (name, l, d)
    assert abs(d["trap20"]) <= 0.05 * abs(target_sum) + 1e-3, (name, l, target_sum, d)
    return target_sum, d


def fd_check(pd, cfg, family, ids, labels, names, g_params):
    """float64 central differences (h = 1e-5) of lm_loss for three random entries of each of
    the embedding, a layer-0 attention weight (GPT-2 also wpe), the final norm, the last
    layer's down projection, and where present the q bias and lm_head; returns the worst relative error (relative to max(|g|, 1e-5): below that the
    difference quotient of a loss near 8 is rounding noise) and asserts it is below 1e-4."""
    pc = {n: t.clone() for n, t in pd.items()}
    am = torch.ones_like(ids)
    am[1, T1:] = 0
    L = dims(cfg, family)[0]
    if family == "gpt2":
        picks = [names[0], "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight", "transformer.ln_f.weight"]
    else:
        picks = [names[0], "model.layers.0.self_attn.k_proj.weight", "model.norm.weight"]
        picks += [n for n in ("model.layers.0.self_attn.q_proj.bias", "lm_head.weight") if n in names]
    picks.append(down_weight_name(family, L - 1))
    g = torch.Generator().manual_seed(1234)
    worst = 0.0
    with torch.no_grad():
        for n in picks:
            flat = pc[n].view(-1)
            for _ in range(3):
                i = int(torch.randint(flat.numel(), (1,), generator=g))
                h = 1e-5
                old = flat[i].item()
                flat[i] = old + h
                lp = causal_lm_loss(forward(pc, cfg, family, ids, am)[0], labels).item()
                flat[i] = old - h
                lm = causal_lm_loss(forward(pc, cfg, family, ids, am)[0], labels).item()
                flat[i] = old
                an = g_params[names.index(n)].view(-1)[i].item()
                worst = max(worst, abs((lp - lm) / (2 * h) - an) / max(1e-5, abs(an)))
    assert worst < 1e-4, "finite-difference check failed: %g" % worst
    return worst


def main():
    total = 0
    for c in CASES:
        total += run_case(c)
    print("total decoder fixture size: %d bytes" % total)
    assert total < 2_300_000
    return 0


if __name__ == "__main__":
    sys.exit(main())
