"""ref_tokenizer.py: minimal but valid Hugging Face tokenizer files for the decoder fixtures.

The decoder tests feed token ids directly, so these only need to be well-formed files of
each family's format, consistent with config.vocab_size:

  byte-level BPE (GPT-2, Qwen2): vocab.json (the 256 byte tokens in GPT-2's
      bytes_to_unicode order, then one token per merge, then <|endoftext|>), merges.txt
      ("#version: 0.2" then one "a b" line per merge), tokenizer_config.json;
  SentencePiece-style BPE with byte fallback (Llama, Mistral): tokenizer.json (<unk> <s>
      </s>, <0x00>..<0xFF>, the ▁-marked characters and merged pieces; normalizer Prepend ▁
      + Replace " " -> ▁, decoder Replace/ByteFallback/Fuse/Strip, TemplateProcessing adding
      <s>), tokenizer_config.json with add_bos_token.

The merges are learned by a tiny deterministic BPE trainer from a fixed sentence list.
Each writer checks its files for internal consistency (every merge's halves and result in
the vocabulary, ids contiguous, special tokens where the config says) and round-trips a
sentence through its own encoder and decoder. Tokenizer correctness against HF is another
module's job (lua/ and core/ tests); this is only what makes the folders complete.
"""

import json
import os
import re
from collections import Counter

CORPUS = ("the capital of france is paris. the capital of italy is rome. paris is in france. "
          "rome is in italy. the language of france is french. the language of italy is italian. "
          "berlin is the capital of germany. the language of germany is german.")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map, in its id order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


def learn_merges(words, base_vocab, n_new):
    """words: Counter of tuples of symbols. Greedy BPE: repeatedly merge the most frequent
    adjacent pair (ties: the lexicographically smallest), skipping merges whose result is
    already a token, until n_new tokens were added. Returns the merges in rank order."""
    vocab = set(base_vocab)
    words = dict(words)
    merges = []
    while len(merges) < n_new:
        pairs = Counter()
        for w, f in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += f
        cands = sorted((p for p in pairs if p[0] + p[1] not in vocab), key=lambda p: (-pairs[p], p))
        if not cands:
            raise ValueError("corpus too small for %d merges" % n_new)
        a, b = cands[0]
        merges.append((a, b))
        vocab.add(a + b)
        nw = {}
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + f
        words = nw
    return merges


def bpe_encode(symbols, merges):
    rank = {m: i for i, m in enumerate(merges)}
    s = list(symbols)
    while len(s) > 1:
        best = min(((rank.get((s[i], s[i + 1]), 1 << 30), i) for i in range(len(s) - 1)))
        if best[0] == 1 << 30:
            break
        i = best[1]
        s[i:i + 2] = [s[i] + s[i + 1]]
    return s


# ----------------------------------------------------------------------------------------
# byte-level BPE (GPT-2, Qwen2)
# ----------------------------------------------------------------------------------------

def write_bytelevel(out_dir, vocab_size, tokenizer_class, max_len, bos=True):
    """vocab.json + merges.txt + tokenizer_config.json; <|endoftext|> is the last id.
    Returns the id of <|endoftext|>."""
    b2u = bytes_to_unicode()
    byte_chr = dict(b2u)
    words = Counter()
    for w in re.findall(r" ?[a-z]+| ?[^a-z\s]+", CORPUS):
        words[tuple(byte_chr[b] for b in w.encode("utf-8"))] += 1
    merges = learn_merges(words, [c for _, c in b2u], vocab_size - 257)
    vocab = {c: i for i, (_, c) in enumerate(b2u)}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    eot = len(vocab)
    vocab["<|endoftext|>"] = eot
    assert len(vocab) == vocab_size and sorted(vocab.values()) == list(range(vocab_size))
    for a, b in merges:
        assert a in vocab and b in vocab and a + b in vocab
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(vocab, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join("%s %s\n" % m for m in merges))
    tc = {"add_prefix_space": False, "eos_token": "<|endoftext|>", "model_max_length": max_len,
          "tokenizer_class": tokenizer_class, "unk_token": "<|endoftext|>",
          "bos_token": "<|endoftext|>" if bos else None}
    if tokenizer_class == "Qwen2Tokenizer":
        tc.update({"pad_token": "<|endoftext|>", "errors": "replace", "clean_up_tokenization_spaces": False,
                   "unk_token": None})
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tc, indent=2, sort_keys=True) + "\n")
    # round trip through our own encoder and the inverse byte map
    u2b = {c: b for b, c in b2u}
    text = " the capital of italy is rome."
    ids = []
    for w in re.findall(r" ?[a-z]+| ?[^a-z\s]+", text):
        ids += [vocab[t] for t in bpe_encode([byte_chr[b] for b in w.encode()], merges)]
    inv = {i: t for t, i in vocab.items()}
    assert bytes(u2b[ch] for i in ids for ch in inv[i]).decode() == text
    assert len(ids) < len(text.encode())  # the merges do merge
    return eot


# ----------------------------------------------------------------------------------------
# SentencePiece-style BPE with byte fallback (Llama, Mistral)
# ----------------------------------------------------------------------------------------

def write_llama(out_dir, vocab_size, max_len, tokenizer_class="LlamaTokenizerFast"):
    """tokenizer.json + tokenizer_config.json. Ids: <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF>
    3..258, then the corpus characters (▁ included), then merged pieces. Returns
    (unk, bos, eos)."""
    words = Counter(tuple("▁" + w) for w in CORPUS.split(" "))
    chars = sorted({ch for w in words for ch in w})
    n_fixed = 3 + 256 + len(chars)
    merges = learn_merges(words, chars, vocab_size - n_fixed)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for ch in chars:
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    assert len(vocab) == vocab_size and sorted(vocab.values()) == list(range(vocab_size))
    for a, b in merges:
        assert a in vocab and b in vocab and a + b in vocab

    def special(i, s):
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}

    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tok, indent=2, ensure_ascii=False) + "\n")
    tc = {"add_bos_token": True, "add_eos_token": False,
          "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                      "single_word", "special")}
                                   for t in tok["added_tokens"]},
          "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
          "model_max_length": max_len, "pad_token": None, "tokenizer_class": tokenizer_class, "unk_token": "<unk>"}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tc, indent=2, sort_keys=True) + "\n")
    # round trip, with a character outside the pieces going through the byte fallback
    text = "rome is the capital of italy é"
    ids = [1]
    for w in ("▁" + text.replace(" ", "▁")).split("▁")[1:]:
        for piece in bpe_encode(list("▁" + w), merges):
            if piece in vocab:
                ids.append(vocab[piece])
            else:
                ids += [vocab["<0x%02X>" % b] for b in piece.encode()]
    inv = {i: t for t, i in vocab.items()}
    out, pend = "", b""
    for i in ids[1:]:
        t = inv[i]
        if re.fullmatch(r"<0x[0-9A-F]{2}>", t):
            pend += bytes([int(t[3:5], 16)])
            continue
        out += pend.decode() + t
        pend = b""
    out = (out + pend.decode()).replace("▁", " ")[1:]
    assert out == text, (out, text)
    assert vocab["<0xC3>"] in ids  # é went through the byte fallback
    return 0, 1, 2
