#!/usr/bin/env python3
"""gen_fixtures.py: independent PyTorch reference for knwb's BERT masked-LM engine.

A development tool, never a runtime dependency. It writes small fixtures under
tests/fixtures/ref/<case>/ which are committed and compared against by the C tests:

    config.json          Hugging Face BertConfig (BertForMaskedLM)
    model.safetensors    the random weights, with Hugging Face tensor names
    vocab.txt            [PAD] [UNK] [CLS] [SEP] [MASK] then w0 w1 ...
    inputs.json          input_ids, token_type_ids, attention_mask, mask_pos, target,
                         mlm_labels, ig_row, ig_steps
    expected.safetensors reference outputs (float32), see tests/ref/README.md

The BertForMaskedLM math is written out in plain torch in ref_bert.py (no `transformers`,
no `safetensors` package: ref_io.py writes the file format with struct + json). All reference
values are computed in float64 from the float32 (or bf16/f16) weights exactly as stored,
then rounded to float32 for storage.

Run from anywhere, offline, with Debian's torch:

    /usr/bin/python3 tests/ref/gen_fixtures.py

Deterministic: fixed seeds, one thread, deterministic algorithms; two runs give
byte-identical files.
"""

import os
import sys

sys.dont_write_bytecode = True  # keep tests/ref free of __pycache__
import torch  # noqa: E402

from ref_bert import IG_STEPS, run_case  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "..", "fixtures", "ref")


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------

CASES = [
    {
        "name": "odd", "seed": 20240101,
        "layers": 3, "hidden": 36, "heads": 3, "ffn": 50, "vocab": 97, "max_pos": 16, "type_vocab": 2,
        "eps": 1e-12, "old_ln": False, "decoder": True,
        "inputs": {
            "input_ids": [[2, 17, 43, 4, 88, 9, 61, 30, 3],
                          [2, 55, 12, 70, 4, 3, 0, 0, 0]],
            "token_type_ids": [[0, 0, 0, 0, 0, 1, 1, 1, 1],
                               [0, 0, 0, 0, 0, 0, 0, 0, 0]],
            "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1],
                               [1, 1, 1, 1, 1, 1, 0, 0, 0]],
            "mask_pos": [3, 4],
            "target": [9, 15],
            "mlm_labels": [[-100, -100, 43, 9, -100, -100, 61, -100, -100],
                           [-100, 55, -100, -100, 15, -100, -100, -100, -100]],
            "ig_row": 0,
            "ig_steps": IG_STEPS,
        },
        # targets were picked after a first run: row 0's is the top-1 token at its mask
        # (so the IG signal is not tiny), row 1's the third most likely
        "intervene": (1, [3, 7], [11]),
    },
    {
        "name": "gamma", "seed": 7,
        "layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "vocab": 60, "max_pos": 16, "type_vocab": 2,
        "eps": 1e-5, "old_ln": True, "decoder": False,
        "inputs": {
            "input_ids": [[2, 21, 4, 37, 9, 50, 3]],
            "token_type_ids": [[0, 0, 0, 0, 0, 0, 0]],
            "attention_mask": [[1, 1, 1, 1, 1, 1, 1]],
            "mask_pos": [2],
            "target": [33],
            "mlm_labels": [[-100, 21, 33, -100, -100, 50, -100]],
            "ig_row": 0,
            "ig_steps": IG_STEPS,
        },
    },
    {
        "name": "bf16", "seed": 99,
        "layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "vocab": 60, "max_pos": 16, "type_vocab": 2,
        "eps": 1e-5, "old_ln": False, "decoder": False, "torch_dtype": "bfloat16",
        "dtype_of": lambda n: (torch.float16 if n in ("bert.embeddings.position_embeddings.weight",
                                                       "bert.encoder.layer.1.intermediate.dense.weight")
                               else torch.bfloat16),
        # a float16 subnormal (2^-20) and a negative zero in a used F16 row, so the C
        # converter's subnormal and sign handling is exercised
        "poke_values": {("bert.encoder.layer.1.intermediate.dense.weight", 0): 2.0 ** -20,
                        ("bert.encoder.layer.1.intermediate.dense.weight", 1): -0.0,
                        ("bert.embeddings.position_embeddings.weight", 5): -3.0 * 2.0 ** -24},
        "upcast_params": True,
        "inputs": {
            "input_ids": [[2, 33, 8, 4, 19, 56, 3]],
            "token_type_ids": [[0, 0, 0, 0, 1, 1, 1]],
            "attention_mask": [[1, 1, 1, 1, 1, 1, 1]],
            "mask_pos": [3],
            "target": [39],
            "mlm_labels": [[-100, -100, 8, 39, -100, 56, -100]],
            "ig_row": 0,
            "ig_steps": IG_STEPS,
        },
    },
]


def main():
    total = 0
    for c in CASES:
        total += run_case(c, OUT_ROOT)
    print("total fixture size: %d bytes" % total)
    assert total < 2 * 1024 * 1024


if __name__ == "__main__":
    sys.exit(main())
