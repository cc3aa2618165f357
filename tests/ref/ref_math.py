"""ref_math.py: small pieces of math shared by the BERT and decoder references.

Activation functions by their Hugging Face config names, the differentiable "replace one
position's activation vector" used by integrated gradients, and the float32 rounding used
when writing expected values. Model code lives in ref_bert.py and ref_decoder.py.
"""

import math

import torch
import torch.nn.functional as F


def gelu_new(x):
    # HF NewGELUActivation ("gelu_new", GPT-2's activation): the tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACT = {
    "gelu": F.gelu,      # exact erf form: 0.5 x (1 + erf(x / sqrt 2))
    "gelu_new": gelu_new,
    "relu": F.relu,
    "silu": F.silu,      # x * sigmoid(x)
}


def activation(name):
    if name not in ACT:
        raise ValueError("no reference for hidden_act %r" % name)
    return ACT[name]


def replace_at(act, pos, z):
    """act [B,T,F] with act[b, pos[b], :] replaced by z[b] (differentiable in z)."""
    B, T, _ = act.shape
    sel = torch.zeros(B, T, 1, dtype=act.dtype)
    sel[torch.arange(B), torch.as_tensor(pos)] = 1.0
    return act * (1.0 - sel) + sel * z[:, None, :]


def f32(t):
    return t.detach().to(torch.float32).contiguous()
