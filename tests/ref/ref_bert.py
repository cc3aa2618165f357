"""ref_bert.py: the Hugging Face BertForMaskedLM math in plain torch, and one fixture case.

Used by gen_fixtures.py (the original three cases) and gen_bert_variants.py (the folder
variants found in the wild). A case is a dict (see run_case); everything it writes is
computed here in float64 from the weights exactly as stored. No `transformers`.

What is *not* here: the file formats (ref_io.py, ref_torchbin.py) and the decoders
(ref_decoder.py).
"""

import math
import os

import torch
import torch.nn.functional as F

from ref_io import read_safetensors, write_config, write_json, write_safetensors
from ref_math import activation, f32, gelu_new, replace_at

MASK_NEG = -10000.0  # additive attention-mask constant for keys with attention_mask 0 (HF BERT)
IG_STEPS = 20
IG_EXTRA_STEPS = (5, 50)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)


# ----------------------------------------------------------------------------------------
# parameters (canonical names use LayerNorm.weight/.bias and the `bert.` prefix)
# ----------------------------------------------------------------------------------------

def tied(cfg):
    return cfg.get("tie_word_embeddings", True)


def param_shapes(cfg):
    V, C, F_, L = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    P, TV = cfg["max_position_embeddings"], cfg["type_vocab_size"]
    s = [("bert.embeddings.word_embeddings.weight", (V, C)),
         ("bert.embeddings.position_embeddings.weight", (P, C)),
         ("bert.embeddings.token_type_embeddings.weight", (TV, C)),
         ("bert.embeddings.LayerNorm.weight", (C,)),
         ("bert.embeddings.LayerNorm.bias", (C,))]
    for i in range(L):
        p = "bert.encoder.layer.%d." % i
        for m in ("query", "key", "value"):
            s += [(p + "attention.self.%s.weight" % m, (C, C)), (p + "attention.self.%s.bias" % m, (C,))]
        s += [(p + "attention.output.dense.weight", (C, C)), (p + "attention.output.dense.bias", (C,)),
              (p + "attention.output.LayerNorm.weight", (C,)), (p + "attention.output.LayerNorm.bias", (C,)),
              (p + "intermediate.dense.weight", (F_, C)), (p + "intermediate.dense.bias", (F_,)),
              (p + "output.dense.weight", (C, F_)), (p + "output.dense.bias", (C,)),
              (p + "output.LayerNorm.weight", (C,)), (p + "output.LayerNorm.bias", (C,))]
    s += [("cls.predictions.transform.dense.weight", (C, C)),
          ("cls.predictions.transform.dense.bias", (C,)),
          ("cls.predictions.transform.LayerNorm.weight", (C,)),
          ("cls.predictions.transform.LayerNorm.bias", (C,)),
          ("cls.predictions.bias", (V,))]
    if not tied(cfg):
        s.append(("cls.predictions.decoder.weight", (V, C)))  # last, so tied cases draw the same numbers
    return s


def init_params(cfg, seed):
    """float32 weights: matrices/embeddings N(0, 0.2^2), LayerNorm weights 1 + 0.1 N,
    every bias (LayerNorm biases included) 0.1 N. Drawn in param_shapes order from one
    seeded generator."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(cfg):
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if name.endswith("LayerNorm.weight"):
            t = 1.0 + 0.1 * z
        elif name.endswith(".bias"):
            t = 0.1 * z
        else:
            t = 0.2 * z
        out[name] = t.float()
    return out


def file_name(name, old_ln):
    if old_ln:
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return name


# ----------------------------------------------------------------------------------------
# BertForMaskedLM forward (Hugging Face math)
# ----------------------------------------------------------------------------------------

def linear(x, p, name):
    return x @ p[name + ".weight"].t() + p[name + ".bias"]


def layer_norm(x, p, name, eps):
    # biased variance over the last dim, like torch.nn.LayerNorm
    return F.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"], eps)


def forward(p, cfg, ids, tt, am, act_hook=None):
    """ids, tt, am: [B,T] int64. Returns logits [B,T,V], hidden [B,T,C], acts: list of the
    post-activation FFN activations [B,T,F] per layer (as used downstream, i.e. after
    act_hook). act_hook(l, act) may return a replacement activation for layer l.
    config.hidden_act is used both in the FFN and in the MLM head transform
    (BertPredictionHeadTransform takes ACT2FN[config.hidden_act] too)."""
    B, T = ids.shape
    C, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    D = C // H
    eps = cfg["layer_norm_eps"]
    act_fn = activation(cfg["hidden_act"])
    pos = torch.arange(T).unsqueeze(0).expand(B, T)  # position ids 0..T-1 for every row, pads included
    x = (p["bert.embeddings.word_embeddings.weight"][ids]
         + p["bert.embeddings.position_embeddings.weight"][pos]
         + p["bert.embeddings.token_type_embeddings.weight"][tt])
    x = layer_norm(x, p, "bert.embeddings.LayerNorm", eps)
    # additive mask over keys: (1 - mask) * -10000, broadcast over heads and queries
    ext = (1.0 - am.to(x.dtype))[:, None, None, :] * MASK_NEG
    acts = []
    for l in range(L):
        pre = "bert.encoder.layer.%d." % l

        def heads(t):
            return t.view(B, T, H, D).permute(0, 2, 1, 3)  # [B,H,T,D]

        q = heads(linear(x, p, pre + "attention.self.query"))
        k = heads(linear(x, p, pre + "attention.self.key"))
        v = heads(linear(x, p, pre + "attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D) + ext
        probs = torch.softmax(scores, dim=-1)
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        a = layer_norm(linear(ctx, p, pre + "attention.output.dense") + x, p, pre + "attention.output.LayerNorm", eps)
        act = act_fn(linear(a, p, pre + "intermediate.dense"))
        if act_hook is not None:
            r = act_hook(l, act)
            if r is not None:
                act = r
        acts.append(act)
        x = layer_norm(linear(act, p, pre + "output.dense") + a, p, pre + "output.LayerNorm", eps)
    hidden = x
    t = act_fn(linear(hidden, p, "cls.predictions.transform.dense"))
    t = layer_norm(t, p, "cls.predictions.transform.LayerNorm", eps)
    # tied: the decoder is the word-embedding matrix; untied: the stored decoder weight
    dec = p.get("cls.predictions.decoder.weight", p["bert.embeddings.word_embeddings.weight"])
    logits = t @ dec.t() + p["cls.predictions.bias"]
    return logits, hidden, acts


def crosscheck_encoder(p, cfg, ids, tt, am, hidden_ref):
    """Independent check of the encoder stack: rebuild each layer as a
    torch.nn.TransformerEncoderLayer (post-LN, packed q/k/v, the case's activation) in
    float64 and run the same embeddings through it; padded keys are masked via
    src_key_padding_mask (-inf instead of -10000, which gives the same result since
    exp(-10000) underflows to 0). Returns the max |difference| of the final hidden states at
    real tokens."""
    C, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps = cfg["layer_norm_eps"]
    act = {"gelu": "gelu", "relu": "relu", "gelu_new": gelu_new}[cfg["hidden_act"]]
    B, T = ids.shape
    with torch.no_grad():
        pos = torch.arange(T).unsqueeze(0).expand(B, T)
        x = (p["bert.embeddings.word_embeddings.weight"][ids]
             + p["bert.embeddings.position_embeddings.weight"][pos]
             + p["bert.embeddings.token_type_embeddings.weight"][tt])
        x = F.layer_norm(x, (C,), p["bert.embeddings.LayerNorm.weight"], p["bert.embeddings.LayerNorm.bias"], eps)
        for l in range(L):
            pre = "bert.encoder.layer.%d." % l
            m = torch.nn.TransformerEncoderLayer(C, H, cfg["intermediate_size"], dropout=0.0, activation=act,
                                                 layer_norm_eps=eps, batch_first=True, norm_first=False).double()
            m.train()  # avoid the inference fast path; dropout is 0 anyway
            sa = m.self_attn
            sa.in_proj_weight.copy_(torch.cat([p[pre + "attention.self.%s.weight" % n] for n in ("query", "key", "value")]))
            sa.in_proj_bias.copy_(torch.cat([p[pre + "attention.self.%s.bias" % n] for n in ("query", "key", "value")]))
            sa.out_proj.weight.copy_(p[pre + "attention.output.dense.weight"])
            sa.out_proj.bias.copy_(p[pre + "attention.output.dense.bias"])
            m.norm1.weight.copy_(p[pre + "attention.output.LayerNorm.weight"])
            m.norm1.bias.copy_(p[pre + "attention.output.LayerNorm.bias"])
            m.linear1.weight.copy_(p[pre + "intermediate.dense.weight"])
            m.linear1.bias.copy_(p[pre + "intermediate.dense.bias"])
            m.linear2.weight.copy_(p[pre + "output.dense.weight"])
            m.linear2.bias.copy_(p[pre + "output.dense.bias"])
            m.norm2.weight.copy_(p[pre + "output.LayerNorm.weight"])
            m.norm2.bias.copy_(p[pre + "output.LayerNorm.bias"])
            x = m(x, src_key_padding_mask=(am == 0))
        real = am.bool()
        return (x[real] - hidden_ref.detach()[real]).abs().max().item()


# ----------------------------------------------------------------------------------------
# one case
# ----------------------------------------------------------------------------------------

def make_config(c):
    cfg = {
        "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": c.get("hidden_act", "gelu"),
        "hidden_dropout_prob": 0.1,
        "hidden_size": c["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": c["ffn"],
        "layer_norm_eps": c["eps"],
        "max_position_embeddings": c["max_pos"],
        "model_type": "bert",
        "num_attention_heads": c["heads"],
        "num_hidden_layers": c["layers"],
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": c.get("torch_dtype", "float32"),
        "type_vocab_size": c["type_vocab"],
        "use_cache": True,
        "vocab_size": c["vocab"],
    }
    cfg.update(c.get("config_extra", {}))
    return cfg


def save_safetensors(out_dir, file_tensors, case):
    """Default weight writer: one model.safetensors, read back bit-exact."""
    path = os.path.join(out_dir, "model.safetensors")
    write_safetensors(path, file_tensors)
    back = read_safetensors(path)
    for n, t in file_tensors:
        assert torch.equal(back[n], t.float() if t.is_floating_point() else t), n


def write_vocab(path, V):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(V):
            f.write((SPECIALS[i] if i < len(SPECIALS) else "w%d" % (i - len(SPECIALS))) + "\n")


def run_case(c, out_root):
    """One BERT fixture folder. Keys of c beyond the sizes and inputs:
    old_ln       LayerNorm.gamma/.beta spelling in the file
    decoder      also store cls.predictions.decoder.weight as a copy of the word embeddings
    hidden_act   config.hidden_act (default "gelu")
    config_extra extra config.json keys (e.g. tie_word_embeddings: false = a separate decoder)
    rename       canonical name -> name in the file (after old_ln), e.g. drop `bert.`
    extra        fn(cfg) -> [(file name, tensor)] stored but not part of the model
    save         fn(out_dir, file_tensors, c) writing the weights (default model.safetensors)
    dtype_of     canonical name -> stored dtype; poke_values; upcast_params (see gen_fixtures)
    intervene    (layer, [zeroed neurons], [doubled neurons]) at the mask position
    pick_targets [rank per row]: choose each row's target from the model (see above)"""
    name = c["name"]
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    cfg = make_config(c)
    V, L = cfg["vocab_size"], cfg["num_hidden_layers"]
    rename = c.get("rename", lambda n: n)

    def fname(n):
        return rename(file_name(n, c["old_ln"]))

    # ---- weights as stored in the file, and their exact float32 upcast
    w32 = init_params(cfg, c["seed"])
    stored = {}  # canonical name -> tensor in the file's dtype
    for n, t in w32.items():
        dt = c.get("dtype_of", lambda _n: torch.float32)(n)
        stored[n] = t.to(dt)
    for (n, idx), val in c.get("poke_values", {}).items():  # (name, flat index) -> value
        flat = stored[n].view(-1)
        flat[idx] = torch.tensor(val, dtype=torch.float32).to(stored[n].dtype)
    upcast = {n: t.float() for n, t in stored.items()}

    file_tensors = [(fname(n), stored[n]) for n, _ in param_shapes(cfg)]
    if c["decoder"]:
        file_tensors.append(("cls.predictions.decoder.weight",
                             stored["bert.embeddings.word_embeddings.weight"].clone()))
    if "extra" in c:
        file_tensors += c["extra"](cfg)
    c.get("save", save_safetensors)(out_dir, file_tensors, c)
    write_config(os.path.join(out_dir, "config.json"), cfg)
    write_vocab(os.path.join(out_dir, "vocab.txt"), V)

    inp = c["inputs"]
    ids = torch.tensor(inp["input_ids"], dtype=torch.long)
    tt = torch.tensor(inp["token_type_ids"], dtype=torch.long)
    am = torch.tensor(inp["attention_mask"], dtype=torch.long)
    if "pick_targets" in c:
        # target[b] = the token of rank pick_targets[b] (0 = most likely) at row b's mask
        # position under the float64 model, and mlm_labels there = target
        with torch.no_grad():
            lg0 = forward({n: t.double() for n, t in upcast.items()}, cfg, ids, tt, am)[0]
        inp["target"] = [int(torch.argsort(lg0[b, inp["mask_pos"][b]], descending=True)[k])
                         for b, k in enumerate(c["pick_targets"])]
        for b, mp_b in enumerate(inp["mask_pos"]):
            inp["mlm_labels"][b][mp_b] = inp["target"][b]
    write_json(os.path.join(out_dir, "inputs.json"), inp)
    labels = torch.tensor(inp["mlm_labels"], dtype=torch.long)
    mask_pos, target = inp["mask_pos"], inp["target"]
    B, T = ids.shape
    rows = torch.arange(B)

    # ---- float64 model, leaves for parameter gradients
    p64 = {n: t.double().requires_grad_(True) for n, t in upcast.items()}
    exp = []  # (name, float32 tensor)

    # forward/backward 1: activations, prob/logprob and their gradients w.r.t. ffn_act
    def keep(l, a):
        a.retain_grad()
        return None

    logits, hidden, acts = forward(p64, cfg, ids, tt, am, keep)
    lm = logits[rows, torch.as_tensor(mask_pos)]  # [B,V]
    logprob = torch.log_softmax(lm, dim=-1)[rows, torch.as_tensor(target)]
    prob = torch.softmax(lm, dim=-1)[rows, torch.as_tensor(target)]
    g_prob = torch.autograd.grad(prob.sum(), acts, retain_graph=True)
    g_logprob = torch.autograd.grad(logprob.sum(), acts, retain_graph=True)

    # mlm loss over every labelled position (mean, like HF CrossEntropyLoss(ignore_index=-100))
    assert torch.all((labels == -100) | (am == 1)), "label on padding"
    loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="mean")
    names = [n for n, _ in param_shapes(cfg)]
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
    exp.append(("mlm_loss", f32(loss.reshape(1))))
    for n, g in zip(names, g_params):
        exp.append(("grad." + fname(n), f32(g)))

    # finite-difference spot check of a few parameter gradients (float64, central)
    with torch.no_grad():
        pc = {n: t.detach().clone() for n, t in p64.items()}
        gfd = torch.Generator().manual_seed(1234)
        worst = 0.0
        for n in (names[0], names[7], names[-1], "cls.predictions.transform.LayerNorm.weight"):
            flat = pc[n].view(-1)
            for _ in range(3):
                i = int(torch.randint(flat.numel(), (1,), generator=gfd))
                h = 1e-6
                old = flat[i].item()
                flat[i] = old + h
                lp = F.cross_entropy(forward(pc, cfg, ids, tt, am)[0].reshape(-1, V), labels.reshape(-1))
                flat[i] = old - h
                lmn = F.cross_entropy(forward(pc, cfg, ids, tt, am)[0].reshape(-1, V), labels.reshape(-1))
                flat[i] = old
                fd = (lp - lmn).item() / (2 * h)
                an = g_params[names.index(n)].view(-1)[i].item()
                worst = max(worst, abs(fd - an) / max(1e-6, abs(an)))
        assert worst < 1e-4, "finite-difference check failed: %g" % worst

    xdev = crosscheck_encoder(p64, cfg, ids, tt, am, hidden)
    assert xdev < 1e-10, "encoder differs from torch.nn.TransformerEncoderLayer: %g" % xdev

    # float32 forward, to report how far a float32 engine lands from the float64 reference
    with torch.no_grad():
        l32 = forward(upcast, cfg, ids, tt, am)[0]
        f32dev = (l32.double() - logits.detach()).abs().max().item()

    # ---- intervention: layer il, mask position of each row
    if "intervene" in c:
        il, zero, dbl = c["intervene"]

        def hook(l, a):
            if l != il:
                return None
            a = a.clone()
            for b in range(B):
                a[b, mask_pos[b], zero] = 0.0
                a[b, mask_pos[b], dbl] = a[b, mask_pos[b], dbl] * 2.0
            return a

        with torch.no_grad():
            li = forward(p64, cfg, ids, tt, am, hook)[0]
        exp.append(("intervened.logits_mask", f32(li[rows, torch.as_tensor(mask_pos)])))

    # ---- integrated gradients, row ig_row alone (unpadded, batch 1), float64
    r = inp["ig_row"]
    n_real = int(am[r].sum())
    assert torch.all(am[r, :n_real] == 1) and torch.all(am[r, n_real:] == 0)
    ids1, tt1, am1 = ids[r:r + 1, :n_real], tt[r:r + 1, :n_real], am[r:r + 1, :n_real]
    mp, tg = mask_pos[r], target[r]
    pd = {n: t.detach() for n, t in p64.items()}
    with torch.no_grad():
        lg1, _, acts1 = forward(pd, cfg, ids1, tt1, am1)
        p_full = torch.softmax(lg1[0, mp], -1)[tg]

    def P_and_grad(l, zs):
        """zs [m,F]: gold probability with layer l's activation at mp replaced by each z,
        and dP/dz for each z."""
        m = zs.shape[0]
        z = zs.clone().requires_grad_(True)
        hook = (lambda ll, a: replace_at(a, [mp] * m, z) if ll == l else None)
        lg, _, _ = forward(pd, cfg, ids1.expand(m, -1), tt1.expand(m, -1), am1.expand(m, -1), hook)
        P = torch.softmax(lg[:, mp], -1)[:, tg]
        (gz,) = torch.autograd.grad(P.sum(), z)
        return P.detach(), gz

    exp.append(("ig_p_full", f32(p_full.reshape(1))))
    deltas = {}
    for l in range(L):
        w = acts1[l][0, mp]  # [F]
        assert torch.allclose(w, acts[l][r, mp].detach(), atol=1e-12)
        Pw, _ = P_and_grad(l, w[None])
        assert abs(Pw.item() - p_full.item()) < 1e-12
        P0, _ = P_and_grad(l, torch.zeros_like(w)[None])
        exp.append(("ig_p_zero.%d" % l, f32(P0.reshape(1))))
        res = {}
        for m in (IG_STEPS,) + IG_EXTRA_STEPS:
            alphas = torch.arange(m, dtype=torch.float64) / m  # k/m, k = 0..m-1
            _, gz = P_and_grad(l, alphas[:, None] * w[None])
            res[m] = w / m * gz.sum(0)
            if m == IG_STEPS:
                alphas_r = torch.arange(1, m + 1, dtype=torch.float64) / m  # k/m, k = 1..m
                _, gzr = P_and_grad(l, alphas_r[:, None] * w[None])
                res["right"] = w / m * gzr.sum(0)
        exp.append(("ig_left.%d" % l, f32(res[IG_STEPS])))
        exp.append(("ig_right.%d" % l, f32(res["right"])))
        for m in IG_EXTRA_STEPS:
            exp.append(("ig_left_m%d.%d" % (m, l), f32(res[m])))
        target_sum = (p_full - P0).item()
        d = {m: res[m].sum().item() - target_sum for m in (5, 20, 50)}
        d["trap20"] = 0.5 * (res[20] + res["right"]).sum().item() - target_sum
        deltas[l] = (target_sum, d)
        # completeness, loosely: left Riemann with 50 steps lands near P(w) - P(0)
        assert abs(d[50]) <= 0.1 * abs(target_sum) + 2e-3, (name, l, target_sum, d)

    if c.get("upcast_params"):
        for n, _ in param_shapes(cfg):
            exp.append(("upcast." + fname(n), upcast[n]))

    exp_path = os.path.join(out_dir, "expected.safetensors")
    write_safetensors(exp_path, exp)
    back = read_safetensors(exp_path)
    for n, t in exp:
        assert torch.equal(back[n], t), n

    for l in range(L):
        ts, d = deltas[l]
        print("  %s layer %d: P(w)-P(0) = %+.6f; IG sum - that: m=5 %+.2e, m=20 %+.2e, m=50 %+.2e, "
              "trapezoid m=20 %+.2e" % (name, l, ts, d[5], d[20], d[50], d["trap20"]))
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print("%s: L=%d C=%d H=%d F=%d V=%d B=%d T=%d | prob=%s mlm_loss=%.6f ig_p_full=%.6f | "
          "grad FD check rel %.1e | vs nn.TransformerEncoderLayer %.0e | f32-vs-f64 logits max %.1e | %d expected tensors | %d bytes"
          % (name, L, cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], V, B, T,
             ",".join("%.6f" % v for v in prob.tolist()), loss.item(), p_full.item(), worst, xdev, f32dev,
             len(exp), size))
    return size
