"""ref_io.py: the file formats the reference generators write, written out by hand.

safetensors (single file and Hugging Face's sharded layout with model.safetensors.index.json)
and the JSON style of the fixture folders. No `safetensors` package exists here, so the format
is produced with struct + json exactly as the reference library lays it out. This module
holds no model math; see ref_bert.py and ref_decoder.py for that.
"""

import json
import struct

import numpy as np
import torch

# safetensors dtype names for every torch dtype the fixtures store
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
            torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
ST_NUMPY = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "u1"}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.float32:
        return t.numpy().astype("<f4").tobytes()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.float64:
        return t.numpy().astype("<f8").tobytes()
    if t.dtype == torch.int64:
        return t.numpy().astype("<i8").tobytes()
    if t.dtype == torch.int32:
        return t.numpy().astype("<i4").tobytes()
    if t.dtype in (torch.uint8, torch.bool):
        return t.to(torch.uint8).numpy().tobytes()  # BOOL: one byte per element, 0 or 1
    raise ValueError("unsupported dtype %s" % t.dtype)


def safetensors_bytes(tensors, metadata=None):
    """tensors: list of (name, tensor). Header keys are written sorted by name (json
    sort_keys, so "__metadata__" comes first, as the reference library writes it); the data
    is laid out like the reference library: by element size descending, then by name, so
    every tensor's data is aligned to its element size. Offsets are relative to the first
    byte after the header; the header is space-padded to a multiple of 8 bytes."""
    names = [n for n, _ in tensors]
    assert len(set(names)) == len(names), "duplicate tensor name"
    order = sorted(tensors, key=lambda nt: (-nt[1].element_size(), nt[0]))
    header = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    blobs = []
    off = 0
    for name, t in order:
        b = tensor_bytes(t)
        assert len(b) == t.numel() * t.element_size()
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_safetensors(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors, metadata))


def read_safetensors_raw(path):
    """Returns (header dict, {name: tensor in the file's own dtype}); checks that the data
    section is exactly covered by the offsets."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    ends = [0]
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a: base + b]
        dt = info["dtype"]
        if dt == "BF16":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<i2").copy()).view(torch.bfloat16)
        elif dt == "BOOL":
            t = torch.from_numpy(np.frombuffer(buf, dtype="u1").copy()).to(torch.bool)
        elif dt in ST_NUMPY:
            t = torch.from_numpy(np.frombuffer(buf, dtype=ST_NUMPY[dt]).copy())
        else:
            raise ValueError(dt)
        out[name] = t.reshape(info["shape"])
        ends.append(b)
    assert base + max(ends) == len(raw)
    return header, out


def read_safetensors(path):
    """Reader used for the self-check round trip; returns {name: float32 tensor} (integer
    and bool tensors keep their dtype)."""
    _, raw = read_safetensors_raw(path)
    return {n: (t.float() if t.is_floating_point() else t) for n, t in raw.items()}


def shard_names(n):
    return ["model-%05d-of-%05d.safetensors" % (i + 1, n) for i in range(n)]


def write_sharded(out_dir, tensors, n_shards=2, extra_metadata=None):
    """Hugging Face's sharded layout: the tensors, in their state-dict order, cut into
    n_shards contiguous runs of about equal byte size, each written as its own safetensors
    file, plus model.safetensors.index.json = {"metadata": {"total_size": bytes of tensor
    data}, "weight_map": {name: shard file}} (json indent 2, keys sorted, newline at the
    end, as save_pretrained writes it). Returns the shard files' names."""
    import os
    sizes = [t.numel() * t.element_size() for _, t in tensors]
    total = sum(sizes)
    files = shard_names(n_shards)
    shards = [[] for _ in range(n_shards)]
    acc = 0
    for (name, t), s in zip(tensors, sizes):
        k = min(n_shards - 1, acc * n_shards // total)
        shards[k].append((name, t))
        acc += s
    assert all(shards), "a shard came out empty"
    weight_map = {}
    for fn, sh in zip(files, shards):
        write_safetensors(os.path.join(out_dir, fn), sh)
        for name, _ in sh:
            weight_map[name] = fn
    meta = {"total_size": total}
    meta.update(extra_metadata or {})
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({"metadata": meta, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")
    return files


def write_json(path, obj, compact_keys=()):
    """Pretty JSON, one key a line; lists of lists stay on one line per row."""
    lines = []
    keys = list(obj.keys())
    for i, k in enumerate(keys):
        v = obj[k]
        if isinstance(v, list) and v and isinstance(v[0], list):
            inner = ",\n    ".join(json.dumps(r, separators=(", ", ": ")) for r in v)
            s = "[\n    " + inner + "\n  ]"
        else:
            s = json.dumps(v)
        lines.append("  %s: %s%s" % (json.dumps(k), s, "," if i + 1 < len(keys) else ""))
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + "\n".join(lines) + "\n}\n")


def write_config(path, cfg):
    """config.json as save_pretrained writes it: indent 2, keys sorted, newline at the end."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
