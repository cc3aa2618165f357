#!/usr/bin/env python3
"""gen_bert_variants.py: BERT checkpoint folders as they are found in the wild (issue 12).

A development tool, never a runtime dependency, beside gen_fixtures.py and sharing its
math (ref_bert.py). Each case is a Hugging Face BertForMaskedLM folder under
tests/fixtures/ref/<case>/ that the C loader must read exactly (with the same inputs.json
and expected.safetensors contents as gen_fixtures.py's cases) or, for the last three,
refuse with a clear message:

    bert_untied     separate cls.predictions.decoder.weight (tie_word_embeddings: false)
    bert_i64pos     + I64 position_ids / token_type_ids buffers, pooler, NSP head (to ignore)
    bert_noprefix   names without `bert.` (embeddings.*, encoder.*), cls.* present
    bert_decbias    output bias stored only as cls.predictions.decoder.bias
    bert_gelu_new   hidden_act gelu_new (tanh form), FFN and MLM head transform
    bert_relu       hidden_act relu
    bert_f16        every tensor F16
    bert_sharded    model.safetensors.index.json + 2 shards
    bert_torchbin   pytorch_model.bin only (torch.save zip format), realistic sharing/offsets
    bert_torchbin_legacy  the same saved in torch's legacy format: to refuse (how to convert)
    bert_torchbin_evil    a zip whose data.pkl calls os.system: to refuse by name

Run from anywhere, offline, with Debian's torch:

    /usr/bin/python3 tests/ref/gen_bert_variants.py

Deterministic (fixed seeds, one thread); checks itself (see tests/ref/README.md) and fails
loudly when a check does not hold. `--dis <file.bin>` prints the pickletools disassembly of
a torch checkpoint's data.pkl (never unpickling it).
"""

import os
import shutil
import sys

sys.dont_write_bytecode = True  # keep tests/ref free of __pycache__
import torch  # noqa: E402

from ref_bert import MASK, CLS, SEP, PAD, IG_STEPS, make_config, run_case, write_vocab  # noqa: E402
from ref_io import read_safetensors, write_config, write_sharded  # noqa: E402
from ref_torchbin import (EVIL_COMMAND, data_pkl, disassemble, module_tree, pickles_in,  # noqa: E402
                          save_evil, save_legacy, save_zip, summarize_pickle, zip_records)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "..", "fixtures", "ref")

# What torch 1.13's torch.save emitted for bert_torchbin (zip format, data.pkl) and for
# bert_torchbin_legacy (the five pickles of the legacy format): asserted here, documented in
# tests/ref/README.md, the list the restricted reader is written from.
ZIP_OPCODES = {"PROTO", "GLOBAL", "BINPUT", "BINGET", "LONG_BINPUT", "LONG_BINGET", "EMPTY_TUPLE", "REDUCE", "MARK", "BINUNICODE",
               "BINPERSID", "TUPLE", "TUPLE1", "TUPLE2", "BININT1", "BININT2", "NEWFALSE",
               "SETITEMS", "EMPTY_DICT", "SETITEM", "BUILD", "STOP"}
ZIP_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
               ("torch", "FloatStorage"), ("torch", "HalfStorage"), ("torch", "LongStorage")}
LEGACY_EXTRA_OPCODES = {"LONG1", "NEWTRUE", "NONE", "EMPTY_LIST", "APPENDS"}  # magic, sys_info, view None, key list


def make_inputs(seed, V):
    """B = 2, T = 8: row 0 two segments, all real; row 1 five real tokens + 3 [PAD]. The
    targets are chosen from the model (pick_targets) and written into mlm_labels at the
    mask positions; each row also labels one other real position."""
    g = torch.Generator().manual_seed(seed)
    w = [int(v) for v in torch.randint(5, V, (10,), generator=g)]
    return {
        "input_ids": [[CLS, w[0], w[1], MASK, w[2], SEP, w[3], SEP],
                      [CLS, w[4], MASK, w[5], SEP, PAD, PAD, PAD]],
        "token_type_ids": [[0, 0, 0, 0, 0, 0, 1, 1],
                           [0, 0, 0, 0, 0, 0, 0, 0]],
        "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 1, 0, 0, 0]],
        "mask_pos": [3, 2],
        "target": [None, None],
        "mlm_labels": [[-100, w[0], -100, None, -100, -100, w[3], -100],
                       [-100, -100, None, w[5], -100, -100, -100, -100]],
        "ig_row": 0,
        "ig_steps": IG_STEPS,
    }


def base(name, seed, **kw):
    c = {"name": name, "seed": seed,
         "layers": 2, "hidden": 16, "heads": 4, "ffn": 28, "vocab": 37, "max_pos": 12, "type_vocab": 2,
         "eps": 1e-12, "old_ln": False, "decoder": False,
         "pick_targets": [0, 2], "intervene": (1, [3, 7], [11])}
    c.update(kw)
    c["inputs"] = make_inputs(seed, c["vocab"])
    return c


# ----------------------------------------------------------------------------------------
# case-specific extras and writers
# ----------------------------------------------------------------------------------------

def i64pos_extra(cfg):
    """Tensors HF checkpoints carry that knwb must skip, whatever their dtype: the I64
    buffers older transformers saved, the pooler and the next-sentence head."""
    P, C = cfg["max_position_embeddings"], cfg["hidden_size"]
    g = torch.Generator().manual_seed(4242)
    return [("bert.embeddings.position_ids", torch.arange(P, dtype=torch.int64)[None]),
            ("bert.embeddings.token_type_ids", torch.zeros(1, P, dtype=torch.int64)),
            ("bert.pooler.dense.weight", (0.2 * torch.randn(C, C, generator=g)).to(torch.bfloat16)),
            ("bert.pooler.dense.bias", 0.1 * torch.randn(C, generator=g)),
            ("cls.seq_relationship.weight", (0.2 * torch.randn(2, C, generator=g)).half()),
            ("cls.seq_relationship.bias", (0.1 * torch.randn(2, generator=g)).double())]


def drop_bert_prefix(n):
    return n[len("bert."):] if n.startswith("bert.") else n


def decoder_bias_name(n):
    return "cls.predictions.decoder.bias" if n == "cls.predictions.bias" else n


def save_sharded(out_dir, file_tensors, c):
    files = write_sharded(out_dir, file_tensors, 2)
    seen = {}
    for fn in files:
        seen.update(read_safetensors(os.path.join(out_dir, fn)))
    assert set(seen) == {n for n, _ in file_tensors}
    for n, t in file_tensors:
        assert torch.equal(seen[n], t.float()), n


TORCHBIN_STATE = {}  # the state dict bert_torchbin saved, reused for the legacy file


def save_bert_torchbin(out_dir, file_tensors, c):
    """pytorch_model.bin as save_pretrained wrote it with torch.save(model.state_dict()):
    module-tree order (bert.embeddings.position_ids first), `_metadata` on the OrderedDict,
    cls.predictions.decoder.weight / .bias the same storages as the word embeddings /
    cls.predictions.bias (tied), layer 0's query/key/value weights three views of one fused
    storage (offsets 0, C*C, 2*C*C), token_type_embeddings F16, position_ids I64."""
    C = c["hidden"]
    byname = dict(file_tensors)
    pre = "bert.encoder.layer.0.attention.self."
    fused = torch.cat([byname[pre + m + ".weight"].reshape(-1) for m in ("query", "key", "value")])
    views = {pre + m + ".weight": fused[i * C * C:(i + 1) * C * C].view(C, C)
             for i, m in enumerate(("query", "key", "value"))}
    entries = []
    for n, t in file_tensors:
        kind = "buffer" if n.endswith("position_ids") else "param"
        entries.append((n, views.get(n, t), kind))
    entries.append(("cls.predictions.decoder.weight", byname["bert.embeddings.word_embeddings.weight"], "param"))
    entries.append(("cls.predictions.decoder.bias", byname["cls.predictions.bias"], "param"))
    sd = module_tree(entries).state_dict()
    assert list(sd)[0] == "bert.embeddings.position_ids" and hasattr(sd, "_metadata")
    path = os.path.join(out_dir, "pytorch_model.bin")
    save_zip(path, sd)
    TORCHBIN_STATE.update(sd=sd)

    # read back with torch's restricted (weights_only) reader and check the details landed
    back = torch.load(path, weights_only=True)
    assert list(back) == list(sd)
    for n, t in sd.items():
        assert back[n].dtype == t.dtype and torch.equal(back[n], t), n
    wte = back["bert.embeddings.word_embeddings.weight"]
    assert back["cls.predictions.decoder.weight"].data_ptr() == wte.data_ptr()
    assert back["cls.predictions.decoder.bias"].data_ptr() == back["cls.predictions.bias"].data_ptr()
    assert [back[pre + m + ".weight"].storage_offset() for m in ("query", "key", "value")] == [0, C * C, 2 * C * C]
    assert back["bert.embeddings.token_type_embeddings.weight"].dtype == torch.float16
    assert back["bert.embeddings.position_ids"].dtype == torch.int64
    _, raw = data_pkl(path)
    ops, globals_ = summarize_pickle(raw)
    assert set(ops) == ZIP_OPCODES, sorted(set(ops) ^ ZIP_OPCODES)
    assert globals_ == ZIP_GLOBALS, globals_
    recs = zip_records(path)
    print("  bert_torchbin: zip records %s; data.pkl %d bytes, opcodes %s; globals %s"
          % (sorted(recs), len(raw), dict(sorted(ops.items())),
             sorted("%s.%s" % g for g in globals_)))


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------

CASES = [
    base("bert_untied", 1201, config_extra={"tie_word_embeddings": False}),
    base("bert_i64pos", 1202, extra=i64pos_extra),
    base("bert_noprefix", 1203, rename=drop_bert_prefix),
    base("bert_decbias", 1204, rename=decoder_bias_name),
    base("bert_gelu_new", 1205, hidden_act="gelu_new", hidden=18, heads=3, ffn=30),
    base("bert_relu", 1206, hidden_act="relu", eps=1e-5),
    base("bert_f16", 1207, torch_dtype="float16", dtype_of=lambda n: torch.float16),
    base("bert_sharded", 1208, save=save_sharded),
    base("bert_torchbin", 1209, save=save_bert_torchbin,
         dtype_of=lambda n: torch.float16 if n == "bert.embeddings.token_type_embeddings.weight" else torch.float32,
         extra=lambda cfg: [("bert.embeddings.position_ids",
                             torch.arange(cfg["max_position_embeddings"], dtype=torch.int64)[None])]),
]


def check_untied_gradients():
    """bert_untied's word-embedding gradient must come from the input lookup only: rows of
    ids absent from the batch are exactly zero (in a tied model the decoder makes them
    nonzero), and the stored decoder differs from the embeddings."""
    d = os.path.join(OUT_ROOT, "bert_untied")
    exp = read_safetensors(os.path.join(d, "expected.safetensors"))
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    import json
    with open(os.path.join(d, "inputs.json")) as f:
        ids = {i for row in json.load(f)["input_ids"] for i in row}
    g = exp["grad.bert.embeddings.word_embeddings.weight"]
    absent = [i for i in range(g.shape[0]) if i not in ids]
    assert absent and float(g[absent].abs().max()) == 0.0
    assert float(exp["grad.cls.predictions.decoder.weight"][absent].abs().max()) > 0.0
    assert not torch.equal(w["cls.predictions.decoder.weight"], w["bert.embeddings.word_embeddings.weight"])
    print("  bert_untied: word-embedding gradient zero on the %d ids absent from the batch; decoder gradient "
          "nonzero there" % len(absent))


def refusal_folder(name, c):
    """config.json + vocab.txt of case c, in a fresh folder (the .bin is added after)."""
    out_dir = os.path.join(OUT_ROOT, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    cfg = make_config(c)
    write_config(os.path.join(out_dir, "config.json"), cfg)
    write_vocab(os.path.join(out_dir, "vocab.txt"), cfg["vocab_size"])
    return out_dir, cfg


def make_legacy(c):
    out_dir, _ = refusal_folder("bert_torchbin_legacy", c)
    path = os.path.join(out_dir, "pytorch_model.bin")
    save_legacy(path, TORCHBIN_STATE["sd"])
    with open(path, "rb") as f:
        raw = f.read()
    spans = pickles_in(raw)
    ops = set()
    globals_ = set()
    for a, b in spans:
        o, g = summarize_pickle(raw[a:b])
        ops |= set(o)
        globals_ |= g
    want = (ZIP_OPCODES | LEGACY_EXTRA_OPCODES)
    assert ops <= want, sorted(ops - want)
    assert globals_ == ZIP_GLOBALS, globals_
    assert raw[:2] == b"\x80\x02" and not raw.startswith(b"PK")
    print("  bert_torchbin_legacy: %d pickles then raw storages (%d bytes); first bytes %s; opcodes beyond the "
          "zip file's: %s" % (len(spans), len(raw), raw[:12].hex(), sorted(ops - ZIP_OPCODES)))
    return os.path.getsize(path) + sum(os.path.getsize(os.path.join(out_dir, f)) for f in ("config.json", "vocab.txt"))


def make_evil():
    c = base("bert_torchbin_evil", 1210, layers=1, hidden=8, heads=2, ffn=12, vocab=11, max_pos=8)
    out_dir, cfg = refusal_folder("bert_torchbin_evil", c)
    path = os.path.join(out_dir, "pytorch_model.bin")
    raw = save_evil(path, cfg["vocab_size"], cfg["hidden_size"])
    name, back = data_pkl(path)
    assert back == raw
    ops, globals_ = summarize_pickle(raw)
    assert ("os", "system") in globals_
    # torch's own restricted reader must refuse it at the GLOBAL, before any call
    try:
        torch.load(path, weights_only=True)
        raise AssertionError("weights_only load accepted the evil pickle")
    except Exception as e:  # UnpicklingError wrapping "Unsupported class os.system"
        assert "os.system" in str(e), str(e)
    print("  bert_torchbin_evil: %s = %d bytes, globals %s, refused by torch weights_only: yes"
          % (name, len(raw), sorted("%s.%s" % g for g in globals_)))
    print("    command inside (never run): %r" % EVIL_COMMAND)
    return sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dis":
        _, raw = data_pkl(sys.argv[2])
        print(disassemble(raw))
        return 0
    total = 0
    for c in CASES:
        d = os.path.join(OUT_ROOT, c["name"])
        if os.path.isdir(d):
            shutil.rmtree(d)  # a case's folder holds exactly what this run writes
        total += run_case(c, OUT_ROOT)
    check_untied_gradients()
    total += make_legacy(CASES[-1])
    total += make_evil()
    print("total BERT variant fixture size: %d bytes" % total)
    assert total < 1024 * 1024
    return 0


if __name__ == "__main__":
    sys.exit(main())
