"""ref_tokenizers.py: an independent pure-Python reference of Hugging Face tokenization.

Written from the documented behaviour of the `tokenizers` library (the "fast" tokenizers
that AutoTokenizer returns) and of transformers' tokenizer classes; no HF code is used or
copied, and neither package is needed (Debian's python3-regex gives the \\p{L} classes).
It loads a tokenizer folder as HF would and encodes bytes to ids:

  tokenizer.json      normalizers   BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase,
                                    StripAccents, Prepend, Replace (String), Sequence
                      pre-tokenizers BertPreTokenizer, ByteLevel, Split (Regex/String, all
                                    five behaviours, invert), Metaspace, Sequence
                      models        WordPiece, BPE (byte_fallback, fuse_unk, unk_token,
                                    ignore_merges; merges as "a b" strings or [a, b] pairs)
                      processors    TemplateProcessing, BertProcessing, ByteLevel, Sequence
                      added_tokens  split out before normalization (normalized: false) or
                                    after it (normalized: true), leftmost-longest, lstrip /
                                    rstrip honoured
  vocab.txt           BertTokenizer(Fast) with tokenizer_config.json's do_lower_case
                      (default true), strip_accents (default: follows lower case),
                      tokenize_chinese_chars (default true), as HF's BERT converter builds it
  vocab.json + merges.txt   GPT2Tokenizer(Fast): ByteLevel BPE, GPT-2's regex, no BOS
  tokenizer_config.json     add_bos_token / add_eos_token override the template when
                      tokenizer_class is LlamaTokenizer(Fast), as LlamaTokenizerFast does

Anything else (an unknown component type, a BPE continuing_subword_prefix, single_word
added tokens) raises Unsupported rather than guess.

Input is bytes. Valid UTF-8 is decoded and tokenized as HF does. HF cannot take bytes that
are not valid UTF-8 (Python str cannot hold them); this reference extends the two
pipelines that can represent every byte, by a documented convention (README): each byte
that is not part of a valid UTF-8 sequence becomes one pseudo-character (Python's
surrogateescape, U+DC80 + byte) that is not a letter, number or space for any regex, and
that maps back to its own byte in ByteLevel and in BPE byte fallback. Every other pipeline
raises CannotEncode on such input.
"""

import json
import os
import unicodedata

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Unsupported(Exception):
    pass


class CannotEncode(Exception):
    pass


def is_pseudo(c):
    """A byte of invalid UTF-8, held as a lone low surrogate (surrogateescape)."""
    return 0xDC80 <= ord(c) <= 0xDCFF


def char_bytes(c):
    return bytes([ord(c) - 0xDC00]) if is_pseudo(c) else c.encode("utf-8")


def str_bytes(s):
    return s.encode("utf-8", "surrogateescape")


# ----------------------------------------------------------------------------------------
# GPT-2's byte <-> printable character map
# ----------------------------------------------------------------------------------------

def byte_chars():
    """bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
    U+0100.. in byte order. Returns a list: byte -> character."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(0x100 + extra))
            extra += 1
    return out


BYTE_CHARS = byte_chars()
CHAR_BYTE = {c: b for b, c in enumerate(BYTE_CHARS)}


def bytelevel_id_order():
    """The order GPT-2's vocab.json lists the 256 byte tokens in: the printable ranges first
    (! .. ~, ¡ .. ¬, ® .. ÿ), then the remapped ones (U+0100 ..)."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    rest = [b for b in range(256) if b not in set(keep)]
    return [BYTE_CHARS[b] for b in keep + rest]


# ----------------------------------------------------------------------------------------
# character classes (as the tokenizers crate defines them)
# ----------------------------------------------------------------------------------------

_WS = regex.compile(r"\p{White_Space}")


def is_whitespace(c):
    # tokenizers' BERT helpers: \t \n \r, or Rust's char::is_whitespace (White_Space)
    return c in "\t\n\r" or bool(_WS.match(c))


def is_control(c):
    # \t \n \r are not control; otherwise any category C* (Cc, Cf, Cs, Co, Cn)
    if c in "\t\n\r":
        return False
    if is_pseudo(c):
        return True
    return unicodedata.category(c).startswith("C")


def is_punctuation(c):
    o = ord(c)
    if 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126:
        return True
    return not is_pseudo(c) and unicodedata.category(c).startswith("P")


CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(c):
    o = ord(c)
    return any(a <= o <= b for a, b in CJK_RANGES)


def lowercase(s):
    # tokenizers lowercases char by char (Rust char::to_lowercase): no final-sigma context,
    # so "Σ" is always "σ" (Python's str.lower() on a word would give "ς" at its end).
    return "".join(c.lower() for c in s)


def strip_accents(s):
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


# ----------------------------------------------------------------------------------------
# normalizers: str -> str
# ----------------------------------------------------------------------------------------

def make_normalizer(cfg):
    if cfg is None:
        return lambda s: s
    t = cfg["type"]
    if t == "Sequence":
        parts = [make_normalizer(c) for c in cfg["normalizers"]]

        def seq(s):
            for p in parts:
                s = p(s)
            return s
        return seq
    if t == "BertNormalizer":
        return bert_normalizer(cfg.get("clean_text", True), cfg.get("handle_chinese_chars", True),
                               cfg.get("strip_accents"), cfg.get("lowercase", True))
    if t in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda s: unicodedata.normalize(t, s)
    if t == "Lowercase":
        return lowercase
    if t == "StripAccents":
        return lambda s: "".join(c for c in s if is_pseudo(c) or unicodedata.category(c) != "Mn")
    if t == "Prepend":
        p = cfg["prepend"]
        return lambda s: p + s if s else s  # an empty string stays empty
    if t == "Replace":
        pat = cfg["pattern"]
        if "String" not in pat:
            raise Unsupported("Replace normalizer with a Regex pattern")
        a, b = pat["String"], cfg["content"]
        return lambda s: s.replace(a, b)
    raise Unsupported("normalizer type %r" % t)


def bert_normalizer(clean_text, chinese, strip, lower):
    if strip is None:
        strip = lower

    def norm(s):
        if clean_text:
            s = "".join(" " if is_whitespace(c) else c for c in s
                        if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c)))
        if chinese:
            s = "".join(" %s " % c if is_cjk(c) else c for c in s)
        if strip:
            s = strip_accents(s)
        if lower:
            s = lowercase(s)
        return s
    return norm


# ----------------------------------------------------------------------------------------
# pre-tokenizers: list of (str, at_start) -> list of (str, at_start)
# at_start: the piece begins at offset 0 of the original text (Metaspace "first" needs it)
# ----------------------------------------------------------------------------------------

def split_by_matches(s, spans, behavior):
    """spans: sorted non-overlapping (a, b) delimiter matches in s. Returns [(piece, start)]
    for the five SplitDelimiterBehavior values."""
    pieces = []  # (a, b, is_match)
    pos = 0
    for a, b in spans:
        if a == b:
            continue
        if a > pos:
            pieces.append((pos, a, False))
        pieces.append((a, b, True))
        pos = b
    if pos < len(s):
        pieces.append((pos, len(s), False))
    out = []
    if behavior == "Isolated":
        out = [(a, b) for a, b, _ in pieces]
    elif behavior == "Removed":
        out = [(a, b) for a, b, m in pieces if not m]
    elif behavior == "MergedWithPrevious":
        for a, b, m in pieces:
            if m and out and not prev_match:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
            prev_match = m
    elif behavior == "MergedWithNext":
        pend = None
        for a, b, m in pieces:
            if m:
                if pend is not None:
                    out.append(pend)
                pend = (a, b)
            else:
                out.append((pend[0], b) if pend is not None else (a, b))
                pend = None
        if pend is not None:
            out.append(pend)
    elif behavior == "Contiguous":
        for a, b, m in pieces:
            if out and m and prev_match:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
            prev_match = m
    else:
        raise Unsupported("split behavior %r" % behavior)
    return [(s[a:b], a) for a, b in out if b > a]


def make_pretokenizer(cfg):
    if cfg is None:
        return lambda splits: splits
    t = cfg["type"]
    if t == "Sequence":
        parts = [make_pretokenizer(c) for c in cfg["pretokenizers"]]

        def seq(splits):
            for p in parts:
                splits = p(splits)
            return splits
        return seq
    if t == "BertPreTokenizer":
        def bert(splits):
            out = []
            for s, st in splits:
                cur, cur_start = "", 0
                for i, c in enumerate(s):
                    if is_whitespace(c) or is_punctuation(c):
                        if cur:
                            out.append((cur, st and cur_start == 0))
                        cur = ""
                        if not is_whitespace(c):
                            out.append((c, st and i == 0))
                    else:
                        if not cur:
                            cur_start = i
                        cur += c
                if cur:
                    out.append((cur, st and cur_start == 0))
            return out
        return bert
    if t == "ByteLevel":
        add_prefix = cfg.get("add_prefix_space", True)
        use_regex = cfg.get("use_regex", True)
        rx = regex.compile(GPT2_PATTERN)

        def bl(splits):
            out = []
            for s, st in splits:
                if add_prefix and not s.startswith(" "):
                    s = " " + s
                pieces = split_by_matches(s, [m.span() for m in rx.finditer(s)], "Isolated") if use_regex else [(s, 0)]
                for p, a in pieces:
                    out.append(("".join(BYTE_CHARS[b] for b in str_bytes(p)), st and a == 0))
            return out
        return bl
    if t == "Split":
        pat = cfg["pattern"]
        if "Regex" in pat:
            rx = regex.compile(pat["Regex"])
        else:
            rx = regex.compile(regex.escape(pat["String"]))
        behavior, invert = cfg["behavior"], cfg.get("invert", False)

        def split(splits):
            out = []
            for s, st in splits:
                spans = [m.span() for m in rx.finditer(s)]
                if invert:
                    gaps, pos = [], 0
                    for a, b in spans:
                        if a > pos:
                            gaps.append((pos, a))
                        pos = max(pos, b)
                    if pos < len(s):
                        gaps.append((pos, len(s)))
                    spans = gaps
                out += [(p, st and a == 0) for p, a in split_by_matches(s, spans, behavior)]
            return out
        return split
    if t == "Metaspace":
        rep = cfg.get("replacement", "\u2581")
        if "prepend_scheme" in cfg:
            scheme = cfg["prepend_scheme"]
        else:  # files before tokenizers 0.14: add_prefix_space
            scheme = "always" if cfg.get("add_prefix_space", True) else "never"
        do_split = cfg.get("split", True)

        def ms(splits):
            out = []
            for s, st in splits:
                s = s.replace(" ", rep)
                if not s.startswith(rep) and (scheme == "always" or (scheme == "first" and st)):
                    s = rep + s
                if do_split:
                    spans = [(i, i + 1) for i, c in enumerate(s) if c == rep]
                    out += [(p, st and a == 0) for p, a in split_by_matches(s, spans, "MergedWithNext")]
                else:
                    out.append((s, st))
            return out
        return ms
    raise Unsupported("pre_tokenizer type %r" % t)


# ----------------------------------------------------------------------------------------
# models: str -> [ids]
# ----------------------------------------------------------------------------------------

class WordPiece:
    def __init__(self, vocab, unk_token="[UNK]", prefix="##", max_chars=100):
        self.vocab, self.unk, self.prefix, self.max_chars = vocab, unk_token, prefix, max_chars
        if unk_token not in vocab:
            raise Unsupported("WordPiece unk_token %r not in the vocabulary" % unk_token)

    def tokenize(self, word):
        if len(word) > self.max_chars:
            return [self.vocab[self.unk]]
        out, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while end > start:  # longest match first
                piece = word[start:end]
                if start > 0:
                    piece = self.prefix + piece
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.vocab[self.unk]]  # one unknown piece makes the whole word [UNK]
            out.append(found)
            start = end
        return out


class BPE:
    def __init__(self, vocab, merges, unk_token=None, byte_fallback=False, fuse_unk=False,
                 ignore_merges=False):
        self.vocab = vocab
        self.rank = {}
        for i, m in enumerate(merges):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            if a not in vocab or b not in vocab or a + b not in vocab:
                raise Unsupported("merge %r: a part or the result is not in the vocabulary" % (m,))
            self.rank.setdefault((a, b), i)
        self.unk = unk_token
        if unk_token is not None and unk_token not in vocab:
            raise Unsupported("BPE unk_token %r not in the vocabulary" % unk_token)
        self.byte_fallback, self.fuse_unk, self.ignore_merges = byte_fallback, fuse_unk, ignore_merges

    def tokenize(self, word):
        if not word:
            return []
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        # initial symbols, tracking unk runs for fuse_unk
        syms, prev_unk = [], False
        unk_id = self.vocab.get(self.unk) if self.unk is not None else None
        for c in word:
            if c in self.vocab:
                syms.append(c)
                prev_unk = False
                continue
            if self.byte_fallback:
                toks = ["<0x%02X>" % b for b in char_bytes(c)]
                if all(t in self.vocab for t in toks):
                    syms += [("id", self.vocab[t]) for t in toks]
                    prev_unk = False
                    continue
            if unk_id is None:
                raise CannotEncode("character %r is not in the vocabulary and there is no unk_token" % c)
            if not (self.fuse_unk and prev_unk):
                syms.append(("id", unk_id))
            prev_unk = True
        # merges: always the lowest-ranked adjacent pair, leftmost among equals
        while True:
            best = None
            for i in range(len(syms) - 1):
                a, b = syms[i], syms[i + 1]
                if isinstance(a, tuple) or isinstance(b, tuple):
                    continue
                r = self.rank.get((a, b))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        return [s[1] if isinstance(s, tuple) else self.vocab[s] for s in syms]


def make_model(cfg):
    t = cfg.get("type")
    if t == "WordPiece":
        return WordPiece(cfg["vocab"], cfg.get("unk_token", "[UNK]"), cfg.get("continuing_subword_prefix", "##"),
                         cfg.get("max_input_chars_per_word", 100))
    if t == "BPE" or (t is None and "merges" in cfg):
        for k in ("continuing_subword_prefix", "end_of_word_suffix"):
            if cfg.get(k):
                raise Unsupported("BPE %s %r" % (k, cfg[k]))
        if cfg.get("dropout"):
            raise Unsupported("BPE dropout")
        return BPE(cfg["vocab"], cfg["merges"], cfg.get("unk_token"), cfg.get("byte_fallback", False),
                   cfg.get("fuse_unk", False), cfg.get("ignore_merges", False))
    raise Unsupported("model type %r" % t)


# ----------------------------------------------------------------------------------------
# post-processors: ids -> ids (single sequence)
# ----------------------------------------------------------------------------------------

def make_post(cfg, vocab):
    if cfg is None:
        return lambda ids: ids
    t = cfg["type"]
    if t == "Sequence":
        parts = [make_post(c, vocab) for c in cfg["processors"]]

        def seq(ids):
            for p in parts:
                ids = p(ids)
            return ids
        return seq
    if t == "ByteLevel":
        return lambda ids: ids  # offsets only
    if t == "BertProcessing" or t == "RobertaProcessing":
        cls_id, sep_id = cfg["cls"][1], cfg["sep"][1]
        return lambda ids: [cls_id] + ids + [sep_id]
    if t == "TemplateProcessing":
        special = cfg.get("special_tokens", {})

        def tmpl(ids):
            out = []
            for item in cfg["single"]:
                if "Sequence" in item:
                    if item["Sequence"]["id"] != "A":
                        raise Unsupported("TemplateProcessing single with sequence %r" % item["Sequence"]["id"])
                    out += ids
                else:
                    out += special[item["SpecialToken"]["id"]]["ids"]
            return out
        return tmpl
    raise Unsupported("post_processor type %r" % t)


def llama_template(bos_id, eos_id, add_bos, add_eos):
    return lambda ids: ([bos_id] if add_bos else []) + ids + ([eos_id] if add_eos else [])


# ----------------------------------------------------------------------------------------
# added tokens
# ----------------------------------------------------------------------------------------

def split_added(segments, tokens):
    """segments: list of (str or int id, at_start). Splits every str segment on the added
    tokens `tokens` (dicts with content/id/lstrip/rstrip), leftmost-longest; matched
    tokens become their int id."""
    if not tokens:
        return segments
    out = []
    for seg, st in segments:
        if not isinstance(seg, str):
            out.append((seg, st))
            continue
        i, last, base = 0, 0, []
        while i < len(seg):
            best = None
            for t in tokens:
                c = t["content"]
                if c and seg.startswith(c, i) and (best is None or len(c) > len(best["content"])):
                    best = t
            if best is None:
                i += 1
                continue
            a, b = i, i + len(best["content"])
            if best.get("lstrip"):
                while a > last and is_whitespace(seg[a - 1]):
                    a -= 1
            if best.get("rstrip"):
                while b < len(seg) and is_whitespace(seg[b]):
                    b += 1
            if a > last:
                base.append((seg[last:a], last))
            base.append((best["id"], a))
            last = i = b
        if last < len(seg):
            base.append((seg[last:], last))
        out += [(p, st and a == 0) for p, a in base]
    return out


# ----------------------------------------------------------------------------------------
# the tokenizer
# ----------------------------------------------------------------------------------------

def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Tokenizer:
    """Tokenizer(folder): encode(bytes, add_special) -> ids; decode(ids) -> bytes (the
    decoders this reference writes; None for lossy ones)."""

    def __init__(self, folder):
        cfg_path = os.path.join(folder, "tokenizer_config.json")
        tc = _read_json(cfg_path) if os.path.exists(cfg_path) else {}
        tj = os.path.join(folder, "tokenizer.json")
        if os.path.exists(tj):
            self._from_json(_read_json(tj), tc)
        elif os.path.exists(os.path.join(folder, "vocab.txt")):
            self._from_vocab_txt(os.path.join(folder, "vocab.txt"), tc)
        elif os.path.exists(os.path.join(folder, "vocab.json")) and os.path.exists(os.path.join(folder, "merges.txt")):
            self._from_gpt2_files(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), tc)
        else:
            raise Unsupported("%s: no tokenizer.json, vocab.txt or vocab.json + merges.txt" % folder)
        self.inv = {i: t for t, i in self.vocab.items()}
        for t in self.added:
            self.inv[t["id"]] = t["content"]

    def _from_json(self, j, tc):
        m = j["model"]
        self.model = make_model(m)
        self.vocab = dict(m["vocab"])
        self.added = []
        for t in j.get("added_tokens", []):
            if t.get("single_word"):
                raise Unsupported("added token %r with single_word" % t["content"])
            self.added.append(t)
            self.vocab.setdefault(t["content"], t["id"])
        self.normalize = make_normalizer(j.get("normalizer"))
        self.pretok = make_pretokenizer(j.get("pre_tokenizer"))
        self.post = make_post(j.get("post_processor"), self.vocab)
        if tc.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast"):
            # LlamaTokenizerFast rebuilds its template from add_bos_token / add_eos_token
            bos, eos = tc.get("bos_token", "<s>"), tc.get("eos_token", "</s>")
            bos = bos["content"] if isinstance(bos, dict) else bos
            eos = eos["content"] if isinstance(eos, dict) else eos
            self.post = llama_template(self.vocab.get(bos), self.vocab.get(eos),
                                       tc.get("add_bos_token", True), tc.get("add_eos_token", False))
        self.byte_capable = self._mentions(j.get("pre_tokenizer"), "ByteLevel") or bool(m.get("byte_fallback"))
        self.decoder = j.get("decoder")

    @staticmethod
    def _mentions(cfg, typ):
        if cfg is None:
            return False
        if cfg.get("type") == typ:
            return True
        return any(Tokenizer._mentions(c, typ) for c in cfg.get("pretokenizers", []))

    def _from_vocab_txt(self, path, tc):
        with open(path, encoding="utf-8") as f:
            toks = [line.rstrip("\n") for line in f]
        self.vocab = {}
        for i, t in enumerate(toks):
            self.vocab.setdefault(t, i)
        lower = tc.get("do_lower_case", True)
        self.normalize = bert_normalizer(True, tc.get("tokenize_chinese_chars", True), tc.get("strip_accents"), lower)
        self.pretok = make_pretokenizer({"type": "BertPreTokenizer"})
        unk = tc.get("unk_token", "[UNK]")
        self.model = WordPiece(self.vocab, unk)
        names = [tc.get(k, d) for k, d in (("unk_token", "[UNK]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                                            ("cls_token", "[CLS]"), ("mask_token", "[MASK]"))]
        self.added = [{"content": n, "id": self.vocab[n], "special": True, "normalized": False} for n in names]
        cls_id, sep_id = self.vocab[names[3]], self.vocab[names[1]]
        self.post = lambda ids: [cls_id] + ids + [sep_id]
        self.byte_capable = False
        self.decoder = {"type": "WordPiece"}

    def _from_gpt2_files(self, vpath, mpath, tc):
        self.vocab = _read_json(vpath)
        with open(mpath, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        merges = [ln for ln in lines if ln]
        self.model = BPE(self.vocab, merges)
        self.normalize = lambda s: s
        self.pretok = make_pretokenizer({"type": "ByteLevel", "add_prefix_space": tc.get("add_prefix_space", False),
                                         "use_regex": True})
        names = {tc.get(k, "<|endoftext|>") for k in ("unk_token", "bos_token", "eos_token")} - {None}
        self.added = [{"content": n, "id": self.vocab[n], "special": True, "normalized": True}
                      for n in sorted(names) if n in self.vocab]
        self.post = lambda ids: ids  # GPT2Tokenizer: add_bos_token false
        self.byte_capable = True
        self.decoder = {"type": "ByteLevel"}

    # ------------------------------------------------------------------------------------

    def text_of(self, data):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            if not self.byte_capable:
                raise CannotEncode("input is not valid UTF-8 and this tokenizer has no byte representation")
            return data.decode("utf-8", "surrogateescape")

    def encode(self, data, add_special=False):
        text = self.text_of(data)
        raw = [t for t in self.added if not t.get("normalized", not t.get("special", False))]
        norm = [t for t in self.added if t.get("normalized", not t.get("special", False))]
        segs = split_added([(text, True)], raw)
        segs = [(self.normalize(s), st) if isinstance(s, str) else (s, st) for s, st in segs]
        segs = split_added(segs, norm)
        ids = []
        for s, st in segs:
            if not isinstance(s, str):
                ids.append(s)
                continue
            if not s:
                continue
            for piece, _ in self.pretok([(s, st)]):
                ids += self.model.tokenize(piece)
        if add_special:
            ids = self.post(ids)
        return ids

    def decode(self, ids):
        """Bytes for the lossless decoders (ByteLevel; the Llama Replace/ByteFallback/Fuse/
        Strip sequence); None when the pipeline is lossy (WordPiece)."""
        toks = [self.inv[i] for i in ids]
        d = self.decoder or {}
        if d.get("type") == "ByteLevel":
            return b"".join(bytes([CHAR_BYTE[c] for c in t]) if t in self.vocab and i not in
                            {a["id"] for a in self.added} else t.encode() for t, i in zip(toks, ids))
        if d.get("type") == "Sequence":
            kinds = [x["type"] for x in d["decoders"]]
            if kinds == ["Replace", "ByteFallback", "Fuse", "Strip"]:
                out = b""
                for t in toks:
                    if regex.fullmatch(r"<0x[0-9A-F]{2}>", t):
                        out += bytes([int(t[3:5], 16)])
                    else:
                        out += t.replace("\u2581", " ").encode()
                strip = d["decoders"][3]
                return out[strip.get("start", 0):] if out.startswith(b" " * strip.get("start", 0)) else out
        return None
