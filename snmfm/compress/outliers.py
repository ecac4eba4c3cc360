"""Outlier-aware quantisation that keeps the QANN an integer-code model.

Pretrained transformers (BERT, all-MiniLM-L6-v2) carry a few activation channels 10-100x larger
than the rest (LayerNorm outputs) and long positive GELU tails (FFN intermediates).  With one
scale per site those channels set the step and the others round to a handful of codes: at 4-bit
activations MiniLM's embedding cosine to FP32 falls to ~0.75.  What this module does about it,
each step exact by construction (the SNN reproduces the QANN integer for integer):

* `smooth(model, data, alpha)`: per-input-channel activation scales for every `QuantLinear`,
  chosen as in SmoothQuant (Xiao et al., ICML 2023): m_c = max|x_c|^alpha / max|W[:, c]|^(1-alpha).
  The quantizer reads x / m and the weight columns are multiplied by m *before* the
  per-output-channel weight quantisation, so W x = (W diag m)(x / m) and the accumulation
  W'_int @ codes(x / m) is an integer sum like any other.  SmoothQuant folds 1/m into the
  preceding LayerNorm; in a post-LN model (BERT) that LayerNorm also feeds the residual stream, so
  here the division stays inside the linear (`QuantLinear.in_div`): on a neuromorphic chip it is
  each input neuron's own threshold s * m_c, no extra operation.  What is NOT exact and therefore
  not offered: a per-channel scale applied *after* weight quantisation (it would multiply integer
  weights by non-integers), and per-channel scales of either operand of Q K^T along the
  contracted head dimension (they do not factor out of the sum).
Per-head scales for Q, K and V would be exact as well (the contraction of Q K^T and attn V runs
inside one head, so a per-head factor leaves the integer product and joins the output scale); they
are not implemented: measured at 4-bit activations, the attention products cost the least.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from snmfm.compress.quant import _as_args
from snmfm.nn import QuantLinear, QuantMatMul


@torch.no_grad()
def _input_stats(model: nn.Module, data: Iterable, kinds=(QuantLinear,)) -> dict[str, dict]:
    """Per-layer input statistics over `data`: for a QuantLinear, the per-channel max |x| of the
    (pre-division) input; for a QuantMatMul, per-head max |a| and |b|."""
    stats: dict[str, dict] = {}
    hooks = []

    def lin_hook(name):
        def hook(mod, args):
            x = args[0].detach()
            a = x.reshape(-1, x.shape[-1]).abs().amax(0).to(torch.float64)
            if mod.in_div is not None:
                a = a / mod.in_div.to(a.device)  # statistics of the original input
            st = stats.setdefault(name, {})
            st["absmax"] = a if "absmax" not in st else torch.maximum(st["absmax"], a)
        return hook

    def mm_hook(name):
        def hook(mod, args):
            st = stats.setdefault(name, {})
            for key, t in (("a", args[0]), ("b", args[1])):
                if t.dim() != 4:
                    raise ValueError(f"per-head scales need [B, H, L, d] operands at {name!r}")
                h = t.detach().abs().amax(dim=(0, 2, 3)).to(torch.float64)
                st[key] = h if key not in st else torch.maximum(st[key], h)
        return hook

    for name, m in model.named_modules():
        if isinstance(m, QuantLinear) and QuantLinear in kinds:
            hooks.append(m.register_forward_pre_hook(lin_hook(name)))
        elif isinstance(m, QuantMatMul) and QuantMatMul in kinds:
            hooks.append(m.register_forward_pre_hook(mm_hook(name)))
    was = model.training
    model.eval()
    n = 0
    try:
        for batch in data:
            model(*_as_args(batch))
            n += 1
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    if n == 0:
        raise ValueError("smoothing data is empty")
    return stats


def _select(model: nn.Module, cls, layers) -> dict[str, nn.Module]:
    found = {n: m for n, m in model.named_modules() if isinstance(m, cls)}
    if layers is None:
        return found
    if isinstance(layers, str):
        layers = (layers,)
    chosen = {n: m for n, m in found.items() if any(n == s or n.rpartition(".")[2] == s for s in layers)}
    if not chosen:
        raise ValueError(f"no {cls.__name__} matches {list(layers)}; layers: {', '.join(found)}")
    return chosen


@torch.no_grad()
def smooth(model: nn.Module, data: Iterable, alpha: float = 0.5, layers=None,
           max_ratio: float | None = None) -> nn.Module:
    """A copy of float `model` with SmoothQuant per-input-channel scales on its QuantLinear layers
    (all of them, or those named in `layers`: full paths or last names such as "fc1").

    m_c = max|x_c|^alpha / max|W[:, c]|^(1 - alpha), normalised to geometric mean 1 and, if
    `max_ratio` is given, clamped to [1/max_ratio, max_ratio].  The copy computes the same function
    in float (up to rounding); calibrate and quantize it as usual."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = copy.deepcopy(model)
    targets = _select(out, QuantLinear, layers)
    stats = _input_stats(out, data)
    for name, layer in targets.items():
        if name not in stats:
            continue  # not reached by the data (e.g. an unused head)
        w = layer.linear.weight
        old = layer.in_div if layer.in_div is not None else torch.ones(layer.in_features, dtype=torch.float64)
        x_max = stats[name]["absmax"].clamp_min(1e-5)
        w_max = (w.detach().to(torch.float64) / old.to(w.device)[None, :]).abs().amax(0).clamp_min(1e-5)
        m = x_max.pow(alpha) / w_max.pow(1.0 - alpha)
        m = m / m.log().mean().exp()
        if max_ratio is not None:
            m = m.clamp(1.0 / max_ratio, max_ratio)
        # the weight columns carry m (already multiplied by the old divisor, if smoothed before)
        w.mul_((m / old).to(w.dtype).to(w.device)[None, :])
        layer.set_in_div(m)
    out.snmfm_smooth = {"alpha": alpha, "layers": sorted(targets), "max_ratio": max_ratio}
    return out
