"""ref_torchbin.py: pytorch_model.bin files for the loader's restricted torch-pickle reader.

Writes what Hugging Face's save_pretrained wrote before safetensors: torch.save(state_dict)
of a real nn.Module tree (so the OrderedDict carries `_metadata`, the tied decoder shares
the word embeddings' storage, a buffer such as `position_ids` is saved, and views of one
storage keep their storage offsets), in torch 1.13's zip format or, for a refusal test, the
legacy (pre-1.6) format. Also builds, by hand with pickle opcodes, a zip whose data.pkl
calls `os.system`: it is never unpickled by anything here (only disassembled with
pickletools, which does not execute; and handed to torch's weights_only reader, which
refuses the global before any call).

`summarize_pickle` lists the opcodes, globals and persistent ids a pickle uses; the
generator asserts them against the lists documented in tests/ref/README.md.
"""

import io
import os
import pickle
import pickletools
import struct
import zipfile
from collections import Counter, OrderedDict

import torch


# ----------------------------------------------------------------------------------------
# a module tree from dotted names, so that state_dict() is what HF's would be
# ----------------------------------------------------------------------------------------

def module_tree(entries):
    """entries: list of (dotted name, tensor, "param" | "buffer"). The same tensor object
    given under two names is registered as one shared Parameter (HF's tied weights).
    Returns the root nn.Module; its state_dict() lists, per module, its own parameters,
    then its buffers, then its children in creation order (PyTorch's rule)."""
    root = torch.nn.Module()
    made = {}  # id(tensor) -> Parameter, so shared tensors stay shared
    for name, t, kind in entries:
        parts = name.split(".")
        m = root
        for p in parts[:-1]:
            if p not in m._modules:
                m.add_module(p, torch.nn.Module())
            m = m._modules[p]
        if kind == "param":
            if id(t) not in made:
                made[id(t)] = torch.nn.Parameter(t, requires_grad=False)
            m.register_parameter(parts[-1], made[id(t)])
        else:
            m.register_buffer(parts[-1], t)
    return root


def zip_records(path):
    """{record name: bytes} of a torch zip checkpoint, via Python's zipfile (stored, no
    compression: torch's writer never compresses)."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, info.filename
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def data_pkl(path):
    recs = zip_records(path)
    (name,) = [n for n in recs if n.endswith("/data.pkl")]
    return name, recs[name]


# ----------------------------------------------------------------------------------------
# pickle inspection (never executes anything)
# ----------------------------------------------------------------------------------------

def pickles_in(raw):
    """Splits a byte string that holds several pickles back to back (the legacy format) and
    returns [(start, end)] of each, stopping at the first byte that does not start one."""
    out = []
    pos = 0
    while pos < len(raw) and raw[pos] == 0x80:  # PROTO
        end = None
        for op, arg, p in pickletools.genops(raw[pos:]):
            if op.name == "STOP":
                end = pos + p + 1
                break
        out.append((pos, end))
        pos = end
    return out


def summarize_pickle(raw):
    """Opcodes used (name -> count), GLOBAL (module, name) pairs, and the shapes of the
    persistent ids (the tuple a BINPERSID pops: ('storage', <storage class GLOBAL>, key,
    location, numel[, view]))."""
    ops = Counter()
    globals_ = set()
    for op, arg, _ in pickletools.genops(raw):
        ops[op.name] += 1
        if op.name == "GLOBAL":
            globals_.add(tuple(arg.split(" ", 1)))
    return ops, globals_


def disassemble(raw, max_lines=None):
    s = io.StringIO()
    pickletools.dis(raw, out=s, annotate=0)
    lines = s.getvalue().splitlines()
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines] + ["    ... (%d more lines)" % (len(lines) - max_lines)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------

def save_zip(path, state_dict):
    """torch 1.13's default: a zip (stored) named after the file, with <stem>/data.pkl
    (pickle protocol 2), <stem>/data/<key> per storage, <stem>/version."""
    torch.save(state_dict, path)


def save_legacy(path, state_dict):
    """torch.save(..., _use_new_zipfile_serialization=False). That format names each storage
    by its memory address (str(storage._cdata)) and writes the storages in sorted-key
    order, both of which change from run to run. To keep the fixture deterministic the keys
    are renamed, in the object pickle, to "0", "1", ... in order of first appearance (as the
    zip format names them; BINUNICODE is length-prefixed and protocol 2 has no frames or
    offsets, so the pickle stays valid), and the key-list
    pickle and the storage records after it are rewritten in the sorted order of the new
    keys, exactly as torch would have written them. The result is read back by torch.load
    and compared."""
    buf = io.BytesIO()
    torch.save(state_dict, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    spans = pickles_in(raw)
    assert len(spans) == 5, "legacy file: magic, protocol, sys_info, object, storage keys"
    obj_a, obj_b = spans[3]
    keys = pickle.loads(raw[spans[4][0]:spans[4][1]])  # a plain list of str, safe to load
    # each tensor's persistent id names its storage key once, in state-dict order (a fresh
    # string every time, so never memoized); that gives each storage's element size
    kset = set(keys)
    seen = [arg for op, arg, _ in pickletools.genops(raw[obj_a:obj_b]) if op.name == "BINUNICODE" and arg in kset]
    assert len(seen) == len(state_dict)
    elem, order = {}, []
    for k, t in zip(seen, state_dict.values()):
        assert elem.setdefault(k, t.element_size()) == t.element_size()
        if k not in order:
            order.append(k)
    assert sorted(order) == sorted(keys)
    # the storage records: int64 little-endian element count, then the bytes
    blocks, pos = {}, spans[4][1]
    for k in keys:
        (n,) = struct.unpack("<q", raw[pos:pos + 8])
        blocks[k] = raw[pos:pos + 8 + n * elem[k]]
        pos += 8 + n * elem[k]
    assert pos == len(raw)
    rename = {k: str(i) for i, k in enumerate(order)}
    obj = bytearray(raw[obj_a:obj_b])
    for k, new in rename.items():
        old_op = b"X" + struct.pack("<I", len(k)) + k.encode()
        new_op = b"X" + struct.pack("<I", len(new)) + new.encode()
        assert obj.count(old_op) >= 1, k
        obj = obj.replace(old_op, new_op)
    new_keys = sorted(rename.values())
    back_name = {v: k for k, v in rename.items()}
    out = (raw[:obj_a] + bytes(obj) + pickle.dumps(new_keys, protocol=2)
           + b"".join(blocks[back_name[k]] for k in new_keys))
    with open(path, "wb") as f:
        f.write(out)
    back = torch.load(path)
    for n, t in state_dict.items():
        assert back[n].dtype == t.dtype and torch.equal(back[n], t), n


EVIL_COMMAND = "echo knwb-fixture-bert_torchbin_evil-was-executed >&2"


def evil_pickle(numel):
    """A state-dict pickle written opcode by opcode: one genuine tensor entry
    (`bert.embeddings.word_embeddings.weight`, storage key "0"), then an entry whose value
    is os.system(EVIL_COMMAND) via GLOBAL 'os system' + REDUCE."""
    def uni(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b

    def glob(mod, name):
        return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"

    def int2(v):
        return b"M" + struct.pack("<H", v)

    V, C = numel
    return b"".join([
        b"\x80\x02",                                   # PROTO 2
        glob("collections", "OrderedDict"), b")R",     # OrderedDict()  (EMPTY_TUPLE, REDUCE)
        b"(",                                          # MARK
        uni("bert.embeddings.word_embeddings.weight"),
        glob("torch._utils", "_rebuild_tensor_v2"),
        b"(",                                          # MARK: the rebuild arguments
        b"(", uni("storage"), glob("torch", "FloatStorage"), uni("0"), uni("cpu"), int2(V * C), b"tQ",
        b"K\x00",                                      # storage offset 0
        int2(V), int2(C), b"\x86",                     # size (V, C)
        int2(C), b"K\x01", b"\x86",                    # stride (C, 1)
        b"\x89",                                       # NEWFALSE: requires_grad
        glob("collections", "OrderedDict"), b")R",     # backward hooks
        b"tR",                                         # TUPLE, REDUCE
        uni("cls.predictions.bias"),
        glob("os", "system"), uni(EVIL_COMMAND), b"\x85R",  # os.system((cmd,)): TUPLE1, REDUCE
        b"u",                                          # SETITEMS
        b".",                                          # STOP
    ])


def save_evil(path, V, C):
    """A zip laid out exactly like torch.save's (torch's own PyTorchFileWriter writes the
    records, with its 64-byte alignment and the `version` record), holding the hand-built
    data.pkl and the one genuine storage it refers to."""
    raw = evil_pickle((V, C))
    ops, globals_ = summarize_pickle(raw)  # parses without executing
    assert ("os", "system") in globals_
    w = torch._C.PyTorchFileWriter(path)
    w.write_record("data.pkl", raw, len(raw))
    data = torch.zeros(V * C, dtype=torch.float32).numpy().tobytes()
    w.write_record("data/0", data, len(data))
    del w  # writes the version record and the central directory
    return raw
