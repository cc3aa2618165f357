#!/usr/bin/env python3
"""gen_tokenizers.py: tokenizer fixtures from the independent reference (issues 12 and 14).

A development tool, never a runtime dependency. For each case it builds a small vocabulary
deterministically (a tiny BPE / WordPiece trainer on the fixed multilingual CORPUS below),
writes the folder in Hugging Face's own file formats, loads that folder back with
ref_tokenizers.Tokenizer (written from HF's documented behaviour), and writes cases.json:
the ids of ~35 inputs without and with the folder's special tokens, and the ids of
continuations (a target appended after a prompt). Output: tests/fixtures/ref/tokenizers/<case>/.

    /usr/bin/python3 tests/ref/gen_tokenizers.py

Offline, no torch, deterministic (byte-identical files on every run). It stops at the first
failing self-check: ids inside the vocabulary, decode(encode(x)) == x where the pipeline is
lossless, the same vocabulary giving the same ids through two file formats (vocab.json +
merges.txt vs tokenizer.json; vocab.txt + tokenizer_config.json vs tokenizer.json with
BertNormalizer), hand-derived pre-tokenizations (Llama-3 digit triples, Qwen2 single digits,
the Llama-2 "▁" rules) and hand-derived ids for a few inputs.
"""

import json
import os
import shutil
import sys
import unicodedata
from collections import Counter

sys.dont_write_bytecode = True  # keep tests/ref free of __pycache__
import regex  # noqa: E402

import ref_tokenizers as rt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "..", "fixtures", "ref", "tokenizers")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Paris is in France, and Rome is in Italy. Berlin is the capital of Germany.",
    "The language of France is French; the language of Germany is German.",
    "The Eiffel Tower was built in 1889 and is 330 metres tall.",
    "In 2024, about 2100000 people lived in Paris.",
    "Le café est très bon à Paris, dit-elle. Où est la gare ?",
    "Die Hauptstadt von Deutschland ist Berlin. Die Straße ist größer als über München.",
    "¿Dónde está la estación? La capital de España es Madrid.",
    "Москва — столица России. Париж — столица Франции.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας. Ο δρόμος της πόλης είναι μεγάλος.",
    "北京是中国的首都。巴黎是法国的首都。",
    "東京は日本の首都です。パリはフランスの首都です。",
    "서울은 한국의 수도입니다.",
    "I love 🍕 and 🎉! It's a test, isn't it? We'll see what they've done.",
    "x = y + 42;\n\tif (x > 10) { return x * 2; }\n",
    "Hello, world! Hello again, world.\n\nNew paragraph here.",
    "The capital of Japan is Tokyo. The capital of China is Beijing.",
    "Knowledge neurons store facts: the capital of a country is a fact.",
]

# inputs common to every case (bytes); each family adds its special tokens
NFC_CAFE = "caf\u00e9 na\u00efve \u00c9cole"
NFD_CAFE = unicodedata.normalize("NFD", NFC_CAFE)
COMMON_INPUTS = [
    "The capital of France is Paris.",
    "Hello world",
    "hello  world",
    "   leading spaces",
    " Paris",
    "Paris",
    "trailing space ",
    "12345",
    "In 2024, 1234567 people!",
    "3.14159 and 1,000,000",
    "Hello, world! (Really?) ...yes; #1 @home $5 50% a&b",
    "It's IT'S we'll they've I'd",
    NFC_CAFE,
    NFD_CAFE,
    "Die Straße ist größer.",
    "ΟΔΟΣ Αθήνα",
    "Москва — столица",
    "北京是中国的首都。",
    "東京は日本の首都です",
    "서울은 한국",
    "I love 🍕 and 🎉!",
    "🤖🦙",
    "Paris北京Москва42x",
    "line one\nline two\n\nend",
    "tab\tseparated\r\nwindows",
    "  \n  ",
    "zqxjkvb",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "",
    " ",
    "a\x00b",
    "Knowledge is a fact",
]
INVALID_INPUTS = [b"\xff", b"abc\xe4\xb8", b"Caf\xe9 ok", b"\xc0\x80 \xed\xa0\x80x"]

CONTINUATIONS = [
    ("The capital of France is", " Paris"),
    ("The capital of France is", "Paris"),
    ("The capital of France is ", "Paris"),
    ("北京是中国的", "首都"),
    ("In", " 2024"),
    ("The price is 12", "34"),
    ("Berlin is the capital of", " Germany."),
]


# ----------------------------------------------------------------------------------------
# a tiny deterministic BPE trainer
# ----------------------------------------------------------------------------------------

def train_bpe(words, n_merges, join=lambda a, b: a + b):
    """words: Counter of tuples of symbols. Repeatedly merges the most frequent adjacent
    pair (ties: the smallest pair in code-point order) whose result is new, n_merges times
    or until no pair is left. join(a, b) spells the merged symbol. Returns the merges."""
    words = dict(words)
    seen = {s for w in words for s in w}
    merges = []
    while len(merges) < n_merges:
        pairs = Counter()
        for w, f in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += f
        cands = [p for p in pairs if join(*p) not in seen]
        if not cands:
            break
        a, b = min(cands, key=lambda p: (-pairs[p], p))
        ab = join(a, b)
        merges.append((a, b))
        seen.add(ab)
        nw = {}
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(ab)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + f
        words = nw
    return merges


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def added_token(i, content, special=True, normalized=False):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}


# ----------------------------------------------------------------------------------------
# BERT (WordPiece)
# ----------------------------------------------------------------------------------------

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def bert_vocab(lower, strip, chinese, n_merges=260):
    """WordPiece vocabulary from CORPUS as normalized and pre-tokenized by these settings:
    every character seen (alone and as ##c), then n_merges BPE-style merges of "##" pieces."""
    norm = rt.bert_normalizer(True, chinese, strip, lower)
    pre = rt.make_pretokenizer({"type": "BertPreTokenizer"})
    words = Counter()
    for s in CORPUS:
        for w, _ in pre([(norm(s), True)]):
            words[tuple([w[0]] + ["##" + c for c in w[1:]])] += 1
    chars = sorted({s for w in words for s in w})
    merges = train_bpe(words, n_merges, join=lambda a, b: a + b[2:])
    toks = BERT_SPECIALS + chars + [a + b[2:] for a, b in merges]
    assert len(set(toks)) == len(toks)
    return toks


def write_vocab_txt(d, toks):
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in toks))


def bert_tokenizer_json(toks, lower, strip, chinese):
    vocab = {t: i for i, t in enumerate(toks)}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added_token(vocab[t], t) for t in BERT_SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": chinese,
                       "strip_accents": strip, "lowercase": lower},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [vocab["[CLS]"]], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [vocab["[SEP]"]], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


def bert_config(extra):
    tc = {"clean_up_tokenization_spaces": True, "cls_token": "[CLS]", "mask_token": "[MASK]",
          "model_max_length": 512, "pad_token": "[PAD]", "sep_token": "[SEP]", "tokenizer_class": "BertTokenizer",
          "unk_token": "[UNK]"}
    tc.update(extra)
    return tc


def make_bert(d, name):
    settings = {"bert_uncased_noconfig": (True, None, True, None),
                "bert_cased": (False, None, True, {"do_lower_case": False}),
                "bert_lower_keep_accents": (True, False, True, {"do_lower_case": True, "strip_accents": False}),
                "bert_no_chinese_split": (True, None, False, {"do_lower_case": True, "tokenize_chinese_chars": False}),
                "bert_tokenizer_json_only": (False, None, True, None)}
    lower, strip, chinese, tc = settings[name]
    toks = bert_vocab(lower, strip, chinese)
    if name == "bert_tokenizer_json_only":
        write_json(os.path.join(d, "tokenizer.json"), bert_tokenizer_json(toks, lower, strip, chinese))
    else:
        write_vocab_txt(d, toks)
        if tc is not None:
            write_json(os.path.join(d, "tokenizer_config.json"), bert_config(tc))
    # the same vocabulary and settings through the other file format must give the same ids
    twin = os.path.join(d, "..", ".twin")
    os.makedirs(twin, exist_ok=True)
    if name == "bert_tokenizer_json_only":
        write_vocab_txt(twin, toks)
        write_json(os.path.join(twin, "tokenizer_config.json"), bert_config({"do_lower_case": lower}))
    else:
        write_json(os.path.join(twin, "tokenizer.json"), bert_tokenizer_json(toks, lower, strip, chinese))
    return {"specials": ["[MASK]", "[CLS]", "[SEP]"], "twin": twin}


# ----------------------------------------------------------------------------------------
# byte-level BPE (GPT-2, Llama-3, Qwen2)
# ----------------------------------------------------------------------------------------

def bytelevel_merges(pattern, n_merges, nfc=False):
    rx = regex.compile(pattern)
    words = Counter()
    for s in CORPUS:
        if nfc:
            s = unicodedata.normalize("NFC", s)
        for w in rx.findall(s):
            words[tuple(rt.BYTE_CHARS[b] for b in w.encode("utf-8"))] += 1
    return train_bpe(words, n_merges)


def bytelevel_vocab(merges, extra_words=()):
    vocab = {c: i for i, c in enumerate(rt.bytelevel_id_order())}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    for w in extra_words:  # whole-word tokens without a merge path (tiktoken-style vocabularies)
        vocab.setdefault(w, len(vocab))
    return vocab


def bytelevel_tokenizer_json(vocab, merges, added, pre, normalizer=None, post=None, merges_as_pairs=False,
                             ignore_merges=None):
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False}
    if ignore_merges is not None:
        model["ignore_merges"] = ignore_merges
    model["vocab"] = vocab
    model["merges"] = [[a, b] for a, b in merges] if merges_as_pairs else ["%s %s" % m for m in merges]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": normalizer, "pre_tokenizer": pre,
            "post_processor": post or {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                       "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": model}


def make_gpt2(d, name):
    merges = bytelevel_merges(rt.GPT2_PATTERN, 330)
    vocab = bytelevel_vocab(merges)
    eot = len(vocab)
    vocab["<|endoftext|>"] = eot
    twin = os.path.join(d, "..", ".twin")
    os.makedirs(twin, exist_ok=True)

    def files(dd):
        write_json(os.path.join(dd, "vocab.json"), vocab, indent=None)
        with open(os.path.join(dd, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join("%s %s\n" % m for m in merges))

    def tj(dd):
        # GPT-2's own tokenizer.json marks <|endoftext|> normalized: true (no normalizer, so
        # it makes no difference here)
        write_json(os.path.join(dd, "tokenizer.json"), bytelevel_tokenizer_json(
            vocab, merges, [added_token(eot, "<|endoftext|>", normalized=True)],
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}))
    if name == "gpt2":
        files(d)
        tj(twin)
    else:
        tj(d)
        files(twin)
    return {"specials": ["<|endoftext|>"], "twin": twin}


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|reserved_special_token_2|>", "<|eot_id|>"]
# whole-word vocabulary entries with no merge that makes them: with ignore_merges they are
# one token, by the merges they would be several (the case ignore_merges exists for)
LLAMA3_WHOLE_WORDS = ["Ġknowledge", "Knowledge", "Ġfact"]


def make_llama3(d, name):
    merges = bytelevel_merges(LLAMA3_PATTERN, 380)
    ww = ["".join(rt.BYTE_CHARS[b] for b in w.replace("Ġ", " ").encode()) for w in LLAMA3_WHOLE_WORDS]
    vocab = bytelevel_vocab(merges, ww)
    base = len(vocab)
    added = []
    for k, s in enumerate(LLAMA3_SPECIALS):
        vocab[s] = base + k
        added.append(added_token(base + k, s))
    bot = vocab["<|begin_of_text|>"]
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    post = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bot],
                                                  "tokens": ["<|begin_of_text|>"]}}}]}
    j = bytelevel_tokenizer_json(vocab, merges, added, pre, post=post, ignore_merges=True)
    write_json(os.path.join(d, "tokenizer.json"), j)
    write_json(os.path.join(d, "tokenizer_config.json"), {
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                  "single_word", "special")} for t in added},
        "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True, "eos_token": "<|end_of_text|>",
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast"})
    # a twin without ignore_merges shows the flag matters on some input
    twin = os.path.join(d, "..", ".twin")
    os.makedirs(twin, exist_ok=True)
    j["model"]["ignore_merges"] = False
    write_json(os.path.join(twin, "tokenizer.json"), j)
    return {"specials": ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>"], "twin": twin, "twin_differs": True}


QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_qwen2(d, name):
    merges = bytelevel_merges(QWEN2_PATTERN, 360, nfc=True)
    vocab = bytelevel_vocab(merges)
    base = len(vocab)
    added = []
    for k, s in enumerate(QWEN2_SPECIALS):
        vocab[s] = base + k
        added.append(added_token(base + k, s))
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    # tokenizers >= 0.20 writes merges as [a, b] pairs; Qwen2's folder uses that form here
    j = bytelevel_tokenizer_json(vocab, merges, added, pre, normalizer={"type": "NFC"}, post=post,
                                 merges_as_pairs=True, ignore_merges=False)
    write_json(os.path.join(d, "tokenizer.json"), j)
    write_json(os.path.join(d, "tokenizer_config.json"), {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                  "single_word", "special")} for t in added},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None})
    return {"specials": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]}


# ----------------------------------------------------------------------------------------
# SentencePiece-style BPE with byte fallback (Llama 2)
# ----------------------------------------------------------------------------------------

def make_llama2(d, name):
    text = " ".join(CORPUS)
    words = Counter()
    for w in text.replace("\n", " ").replace("\t", " ").split(" "):
        if w:
            words[tuple("\u2581" + w)] += 1
    words[("\u2581", "\u2581")] += 3      # runs of spaces, as SentencePiece keeps them
    words[("\u2581",) * 4] += 2
    freq = Counter()
    for w, f in words.items():
        for c in w:
            freq[c] += f
    # characters seen at least twice become pieces; the rest go through the byte fallback
    chars = sorted(c for c in freq if freq[c] >= 2)
    keep = set(chars)
    # train on the covered runs only (a rare character splits a word)
    tw = Counter()
    for w, f in words.items():
        run = []
        for c in w + ("\0",):
            if c in keep:
                run.append(c)
            else:
                if len(run) > 1:
                    tw[tuple(run)] += f
                run = []
    merges = train_bpe(tw, 420)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in chars:
        vocab[c] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = [added_token(0, "<unk>"), added_token(1, "<s>"), added_token(2, "</s>")]
    metaspace = name == "llama2_metaspace"
    # llama2_metaspace: the layout transformers writes for Llama with legacy=false (no
    # normalizer, a Metaspace pre-tokenizer with prepend_scheme "first"), and add_eos_token
    bos = [{"SpecialToken": {"id": "<s>", "type_id": 0}}]
    eos = [{"SpecialToken": {"id": "</s>", "type_id": 0}}] if metaspace else []
    eos1 = [{"SpecialToken": {"id": "</s>", "type_id": 1}}] if metaspace else []
    single = bos + [{"Sequence": {"id": "A", "type_id": 0}}] + eos
    pair = single + [{"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}] + eos1
    special = {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
    if metaspace:
        special["</s>"] = {"id": "</s>", "ids": [2], "tokens": ["</s>"]}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }
    if metaspace:
        tok["normalizer"] = None
        tok["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                "split": False}
    write_json(os.path.join(d, "tokenizer.json"), tok)
    write_json(os.path.join(d, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": metaspace,
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                  "single_word", "special")} for t in added},
        "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": not metaspace,
        "model_max_length": 4096, "pad_token": None, "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>", "use_default_system_prompt": False})
    return {"specials": ["<s>", "</s>", "<unk>"]}


CASES = [
    ("bert_uncased_noconfig", make_bert), ("bert_cased", make_bert), ("bert_lower_keep_accents", make_bert),
    ("bert_no_chinese_split", make_bert), ("bert_tokenizer_json_only", make_bert),
    ("gpt2", make_gpt2), ("gpt2_json", make_gpt2),
    ("llama2_sp", make_llama2), ("llama2_metaspace", make_llama2), ("llama3", make_llama3), ("qwen2", make_qwen2),
]


# ----------------------------------------------------------------------------------------
# cases.json
# ----------------------------------------------------------------------------------------

def inputs_for(specials):
    extra = []
    s0 = specials[0]
    extra.append("The capital of France is %s." % s0)
    extra.append("%sHello" % s0)
    s1, s2 = specials[1 % len(specials)], specials[2 % len(specials)]
    extra.append("Hello %s world" % s1)
    extra.append("%s%s" % (s1, s2))
    extra.append(s0.lower() if s0.lower() != s0 else s0[:-1])  # near miss: not the token
    return [s.encode("utf-8") for s in COMMON_INPUTS + extra] + INVALID_INPUTS


def lossless(name):
    return name in ("gpt2", "gpt2_json", "llama3", "llama2_sp", "llama2_metaspace")


def build(name, tok, info):
    cases = []
    n_vocab = max(tok.inv) + 1
    for data in inputs_for(info["specials"]):
        c = {"text_hex": data.hex()}
        try:
            if b"\0" not in data:  # jansson refuses \u0000 unless asked; text_hex carries it
                c["text"] = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        try:
            ids = tok.encode(data)
            ids_sp = tok.encode(data, add_special=True)
        except rt.CannotEncode:
            c["error"] = True
            cases.append(c)
            continue
        for i in ids + ids_sp:
            assert 0 <= i < n_vocab and i in tok.inv, (name, data, i)
        has_special = any(s.encode() in data for s in info["specials"])
        if not has_special:
            dec = tok.decode(ids)
            if name == "llama2_metaspace" and data.startswith(b" "):
                assert dec == data[1:], (name, data, dec)  # one leading space is not recoverable
            elif lossless(name):
                assert dec == data, (name, data, dec)
            elif name == "qwen2":
                assert dec == unicodedata.normalize("NFC", data.decode("utf-8", "surrogateescape")).encode(
                    "utf-8", "surrogateescape"), (name, data, dec)
        c["ids"] = ids
        c["ids_special"] = ids_sp
        cases.append(c)
    conts = []
    for p, t in CONTINUATIONS:
        pb, tb = p.encode(), t.encode()
        a, b = tok.encode(pb), tok.encode(pb + tb)
        e = {"prompt_hex": pb.hex(), "cont_hex": tb.hex()}
        if b[:len(a)] == a and len(b) > len(a):
            e["ids"] = b[len(a):]
        else:
            e["error"] = True
        conts.append(e)
    return {"cases": cases, "continuations": conts}


def tokens_of(tok, data):
    return [tok.inv[i] for i in tok.encode(data)]


def hand_checks(name, tok):
    """A few results derived by hand from the documented rules, independent of the trainer."""
    T = lambda s: tokens_of(tok, s.encode())  # noqa: E731
    if name.startswith("bert"):
        assert T("") == [] and tok.encode(b"", True) == [tok.vocab["[CLS]"], tok.vocab["[SEP]"]]
        assert T("x" * 101) == ["[UNK]"]
        assert T("[MASK]") == ["[MASK]"]
        assert T("🤖") == ["[UNK]"] and T("x🤖y") == ["[UNK]"]  # one unknown piece: the whole word
        assert T("a\x00b") == T("ab")  # clean_text drops NUL
    if name == "bert_uncased_noconfig":
        assert T("PARIS") == T("paris") and T("Paris") != ["[UNK]"]
        # char-by-char lowercase: no final sigma (BertTokenizer, the slow one, would give ς)
        assert T("ΟΔΟΣ") == T("οδοσ") == ["ο", "##δ", "##ο", "##σ"] and T("οδος") != T("οδοσ")
        assert T("caf\u00e9") == T("cafe")
    if name == "bert_cased":
        assert T("Paris") == ["Paris"] and T("paris") != ["Paris"]
    if name == "bert_lower_keep_accents":
        assert T("caf\u00e9") != T("cafe") and T("CAF\u00c9") == T("caf\u00e9")
    if name == "bert_no_chinese_split":
        assert T("北京")[0] == "北" and T("北京")[1].startswith("##")
    if name == "bert_uncased_noconfig":
        assert T("北京") == ["北", "京"]
    if name in ("gpt2", "gpt2_json"):
        assert T("<|endoftext|>") == ["<|endoftext|>"] and tok.encode(b"Hi", True) == tok.encode(b"Hi")
        rx = regex.compile(rt.GPT2_PATTERN)
        assert rx.findall("Hello  world 123 's") == ["Hello", " ", " world", " 123", " '", "s"]
        assert rx.findall("IT'S") == ["IT", "'", "S"]
        assert tok.encode(b"\xff") == [tok.vocab["\u00ff"]]
    if name == "llama3":
        rx = regex.compile(LLAMA3_PATTERN)
        assert rx.findall("1234567") == ["123", "456", "7"]
        assert rx.findall("IT'S a\n\nb") == ["IT", "'S", " a", "\n\n", "b"]
        assert T(" knowledge") == ["Ġknowledge"]
        assert tok.encode(b"x", True)[0] == tok.vocab["<|begin_of_text|>"]
    if name == "qwen2":
        rx = regex.compile(QWEN2_PATTERN)
        assert rx.findall("2024") == ["2", "0", "2", "4"]
        assert T(NFD_CAFE) == T(NFC_CAFE)  # the NFC normalizer
        assert tok.encode(b"x", True) == tok.encode(b"x")
    if name == "llama2_sp":
        assert T("") == [] and tok.encode(b"", True) == [1]
        assert T("<s>Hello")[0] == "<s>" and T("<s>Hello")[1].startswith("\u2581")  # Prepend per segment
        assert T("🤖") == ["\u2581", "<0xF0>", "<0x9F>", "<0xA4>", "<0x96>"]
        assert T("  x")[0].startswith("\u2581\u2581") or T("  x")[:2] == ["\u2581", "\u2581"]
        assert tok.encode(b"\xff") == [tok.vocab["\u2581"], tok.vocab["<0xFF>"]]
        assert T(" Paris") == ["\u2581\u2581", "Paris"]  # Prepend, then every space is another ▁
        assert T("Hello </s> world")[1:4] == ["\u2581", "</s>", "\u2581\u2581"]
    if name == "llama2_metaspace":
        assert T("") == [] and tok.encode(b"", True) == [1, 2] and tok.encode(b"x", True)[-1] == 2
        assert T(" Paris") == T("Paris") == ["\u2581Paris"]  # the space becomes the ▁; none prepended
        assert T("<s>Hello")[:2] == ["<s>", "H"]  # "first": no ▁ after an added token
        t = T("Hello </s> world")
        assert t[2] == "</s>" and t[3].startswith("\u2581") and not t[3].startswith("\u2581\u2581")


def crosscheck_decoder_fixtures():
    """The decoder fixtures' tokenizer folders (written by ref_tokenizer.py, another
    encoder) must tokenize their own vocabulary's sentences the same way here."""
    import ref_tokenizer as old
    root = os.path.join(HERE, "..", "fixtures", "ref")
    for case in ("gpt2", "qwen2", "llama"):
        d = os.path.join(root, case)
        if not os.path.isdir(d):
            continue
        tok = rt.Tokenizer(d)
        text = "the capital of italy is rome. berlin is in germany"
        if case == "llama":
            merges = [tuple(m.split(" ")) for m in json.load(open(os.path.join(d, "tokenizer.json"),
                                                                  encoding="utf-8"))["model"]["merges"]]
            want = []
            for w in text.split(" "):
                for p in old.bpe_encode(list("\u2581" + w), merges):
                    want += [tok.vocab[p]] if p in tok.vocab else [tok.vocab["<0x%02X>" % b] for b in p.encode()]
        else:
            with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
                merges = [tuple(ln.split(" ")) for ln in f.read().split("\n")[1:] if ln]
            want = []
            for w in regex.findall(rt.GPT2_PATTERN, text):
                want += [tok.vocab[p] for p in old.bpe_encode([rt.BYTE_CHARS[b] for b in w.encode()], merges)]
        assert tok.encode(text.encode()) == want, case


def main():
    crosscheck_decoder_fixtures()
    if os.path.exists(OUT_ROOT):
        shutil.rmtree(OUT_ROOT)
    os.makedirs(OUT_ROOT)
    total = 0
    for name, fn in CASES:
        d = os.path.join(OUT_ROOT, name)
        os.makedirs(d)
        info = fn(d, name)
        tok = rt.Tokenizer(d)
        hand_checks(name, tok)
        out = build(name, tok, info)
        if "twin" in info:
            twin_tok = rt.Tokenizer(info["twin"])
            same = [twin_tok.encode(bytes.fromhex(c["text_hex"])) == c["ids"] for c in out["cases"] if "ids" in c]
            if info.get("twin_differs"):
                assert not all(same), "%s: ignore_merges made no difference on any input" % name
            else:
                assert all(same), "%s: the two file formats disagree" % name
            shutil.rmtree(info["twin"])
        with open(os.path.join(d, "cases.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")).replace('},{"', '},\n{"') + "\n")
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        total += size
        n_err = sum(1 for c in out["cases"] if c.get("error"))
        n_cerr = sum(1 for c in out["continuations"] if c.get("error"))
        print("%-26s vocab %4d  %2d cases (%d error)  %d continuations (%d not a clean split)  %6d bytes"
              % (name, len(tok.inv), len(out["cases"]), n_err, len(out["continuations"]), n_cerr, size))
    print("total %d bytes" % total)
    assert total < 600 * 1024


if __name__ == "__main__":
    main()
