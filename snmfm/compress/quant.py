"""ANN -> QANN: calibration on real inputs and integer quantisation.

`calibrate(model, data)` records what every `Quantizer` sees on real inputs.
`quantize(model, w_bits, a_bits, overrides=...)` returns the QANN: a deep copy in float64 whose
quantizers are in ``int`` mode with an integer window fitted to the calibrated range and scales
from a percentile or MSE search, and whose weights are per-output-channel symmetric integers.  The
QANN is a runnable torch module and is *the* reference the SNN must reproduce exactly.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from snmfm.nn import (QuantConv2d, QuantFeatureEmbed, QuantLinear, QuantMatMul, Quantizer, qrange,
                      quantizers)

CALIB_METHODS = ("mse", "percentile", "max")
WEIGHT_LAYERS = (QuantLinear, QuantConv2d, QuantFeatureEmbed)


def _as_args(batch) -> tuple:
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, Mapping):
        raise TypeError("calibration batches must be tensors or tuples of tensors (positional inputs)")
    return tuple(batch)


@torch.no_grad()
def calibrate(model: nn.Module, data: Iterable) -> nn.Module:
    """Run `data` (an iterable of input tensors or tuples of model inputs) through `model` with every
    quantizer recording its inputs.  Returns `model` (modified in place: samples stored)."""
    qs = quantizers(model)
    if not qs:
        raise ValueError("model has no Quantizer sites; build it from snmfm.nn layers "
                         "(snmfm.models.build_model, or converters.from_hf for HF models)")
    was_training = model.training
    model.eval()
    for _, q in qs:
        q.samples = []
        q.mode = "calib"
    n = 0
    try:
        for batch in data:
            args = _as_args(batch)
            for a in args:
                if torch.is_floating_point(a) and not torch.isfinite(a).all():
                    raise ValueError("calibration input contains NaN or Inf")
            model(*args)
            n += 1
    finally:
        for _, q in qs:
            q.mode = "off"
        model.train(was_training)
    if n == 0:
        raise ValueError("calibration data is empty")
    return model


WINDOWS = ("fit", "symmetric")
_MSE_SAMPLES = 65536   # the MSE search runs on a seeded subsample of this many recorded values
_MSE_RATIOS = 128      # clipping ranges tried, from 2% to 100% of the no-clipping range
_MSE_CHUNK = 4         # candidates per vectorised step: a [4, 65536] float64 buffer fits in cache


def fit_window(samples: torch.Tensor, bits: int, signed: bool = True) -> tuple[int, int]:
    """Integer window [qmin, qmax] of 2^bits codes (0 included) placed over the observed range.

    A signed site whose values span [lo, hi] (lo <= 0 <= hi) gets about -lo / (hi - lo) * (2^b - 1)
    negative codes instead of the fixed two's-complement half.  GELU outputs (>= -0.17, a positive
    tail to ~25 in all-MiniLM-L6-v2) then get [-2, 253] instead of [-128, 127]: twice the
    resolution for the same 256 codes, i.e. asymmetric (zero-point) 8-bit quantisation with the
    zero point folded into the codes, so integer accumulation and the IF neuron (count kept inside
    [qmin, qmax]) stay exact.  Unsigned sites keep [0, 2^b - 1]."""
    qmin, qmax = qrange(bits, signed)
    if not signed or samples.numel() == 0:
        return qmin, qmax
    lo, hi = min(float(samples.min()), 0.0), max(float(samples.max()), 0.0)
    if hi - lo <= 0:
        return qmin, qmax
    top = 2 ** int(bits) - 1

    def no_clip_scale(k: int) -> float:  # the smallest scale at which [-k, top - k] covers [lo, hi]
        pos = hi / (top - k) if k < top else (math.inf if hi > 0 else 0.0)
        neg = -lo / k if k > 0 else (math.inf if lo < 0 else 0.0)
        return max(pos, neg)
    p = -lo / (hi - lo) * top  # negative codes in proportion to the range: its floor or its ceiling
    k = min(sorted({min(top, math.floor(p)), min(top, math.ceil(p))}), key=no_clip_scale)
    return -k, top - k


def _range_limit(x: torch.Tensor, qmin: int, qmax: int) -> tuple[torch.Tensor, float]:
    """(m, lim): per-value magnitudes m and a code limit such that the no-clipping scale is
    max(m) / lim.  The two's-complement range [-2^(b-1), 2^(b-1)-1] and unsigned ranges map max|x|
    (unsigned: max x) to qmax, as always; a shifted window (fit_window) scales each side to its own
    edge, so m = x * qmax / qmin on the negative side."""
    if qmin >= 0:
        return x.clamp_min(0), float(qmax)
    if qmin == -(qmax + 1):
        return x.abs(), float(qmax)
    if qmax <= 0:  # an all-negative window
        return (-x).clamp_min(0), float(-qmin)
    return torch.where(x >= 0, x, x * (qmax / qmin)), float(qmax)


def search_scale(samples: torch.Tensor, qmin: int, qmax: int, method: str = "mse",
                 percentile: float = 99.99) -> float:
    """Scale for codes in [qmin, qmax] from recorded activations.

    mse: minimise E[(x - q(x))^2] over 128 clipping ranges between 2% and 100% of the range
    (the clipping search of e.g. Banner et al., NeurIPS 2019), on a seeded subsample of 65536
    values; percentile: clip at the given percentile of |x|; max: no clipping.  The range is
    max|x| / qmax for the two's-complement and unsigned windows, and each side to its own edge for
    a shifted window from `fit_window`.

    The candidates are evaluated 4 at a time, in place (same arithmetic per value, so the result is
    bit-identical to evaluating all 128 at once, and about 20x faster on one core)."""
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIB_METHODS)}")
    x = samples.to(torch.float64)
    mag, lim = _range_limit(x, qmin, qmax)
    top = float(mag.max()) if mag.numel() else 0.0
    if top <= 0:
        return 1.0 / max(qmax, 1)  # constant-zero site: any scale is exact
    if method == "max":
        return top / lim
    if method == "percentile":
        k = max(1, int(round(mag.numel() * percentile / 100.0)))
        clip = float(mag.kthvalue(min(k, mag.numel())).values)
        return max(clip, top * 1e-6) / lim
    if x.numel() > _MSE_SAMPLES:
        x = x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:_MSE_SAMPLES]]
    xs = x[None, :]
    scales = torch.linspace(0.02, 1.0, _MSE_RATIOS, dtype=torch.float64) * top / lim
    err = torch.empty(_MSE_RATIOS, dtype=torch.float64)
    buf = torch.empty(_MSE_CHUNK, x.numel(), dtype=torch.float64)
    for i in range(0, _MSE_RATIOS, _MSE_CHUNK):
        s = scales[i:i + _MSE_CHUNK, None]
        q = buf[:s.shape[0]]
        torch.div(xs, s, out=q)
        q.add_(0.5).floor_().clamp_(qmin, qmax).mul_(s).sub_(xs)  # q(x) - x
        err[i:i + _MSE_CHUNK] = (q ** 2).mean(1)
    return float(scales[int(err.argmin())])


def activation_range(samples: torch.Tensor, bits: int, signed: bool, method: str = "mse",
                     percentile: float = 99.99, window: str = "fit") -> tuple[float, int, int]:
    """(scale, qmin, qmax) of a `bits`-bit activation site from its calibration samples: the integer
    window (`fit_window`, or two's-complement for "symmetric") and the scale searched for it."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; allowed: {', '.join(WINDOWS)}")
    qmin, qmax = fit_window(samples, bits, signed) if window == "fit" else qrange(bits, signed)
    return search_scale(samples, qmin, qmax, method, percentile), qmin, qmax


def quantize_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric integers: w ~ w_int * s_w[c], w_int in [-(2^(b-1)-1), 2^(b-1)-1]."""
    if bits < 2:
        raise ValueError(f"weight bits must be >= 2, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    w = w.detach().to(torch.float64)
    flat = w.reshape(w.shape[0], -1)
    s = flat.abs().amax(1).clamp_min(1e-12) / qmax
    w_int = torch.clamp(torch.round(flat / s[:, None]), -qmax, qmax).reshape(w.shape)
    return w_int, s


def _weight_of(layer) -> torch.Tensor:
    if isinstance(layer, QuantLinear):
        return layer.linear.weight
    if isinstance(layer, QuantConv2d):
        return layer.conv.weight
    return layer.weight  # QuantFeatureEmbed: [F, d], one scale per feature row


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose bits can be set: weight layers and activation products, by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (*WEIGHT_LAYERS, QuantMatMul))}


@torch.no_grad()
def quantize(model: nn.Module, w_bits: int = 8, a_bits: int = 8, *, method: str = "mse",
             percentile: float = 99.99, overrides: Mapping[str, Mapping[str, int]] | None = None,
             embed_bits: int | None = None, window: str = "fit") -> nn.Module:
    """Return the QANN of a calibrated model.

    overrides: {layer path: {"w_bits": b, "a_bits": b}} for mixed precision (a plan from
    `plan_bits`); a_bits of a layer sets the quantizer(s) on its input(s).  Unknown layer names
    or keys are errors.
    window: "fit" places each signed site's 2^a_bits codes over its calibrated range
    (`fit_window`); "symmetric" keeps the two's-complement range [-2^(b-1), 2^(b-1)-1].  On
    all-MiniLM-L6-v2 at W8A8 the mean sentence-embedding cosine to FP32 on 540 held-out sentences
    is 0.9932 with "fit", 0.9866 with "symmetric" (eval/benchmarks/bench_minilm.py)."""
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIB_METHODS)}")
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; allowed: {', '.join(WINDOWS)}")
    layers = quant_layers(model)
    overrides = dict(overrides or {})
    for name, o in overrides.items():
        if name not in layers:
            raise ValueError(f"bit override for unknown layer {name!r}; layers: {', '.join(layers)}")
        bad = set(o) - {"w_bits", "a_bits"}
        if bad:
            raise ValueError(f"override for {name!r} has unknown key(s) {sorted(bad)}; allowed: a_bits, w_bits")
    for name, q in quantizers(model):
        if not q.samples:
            raise ValueError(f"uncalibrated model: quantizer {name!r} saw no data; "
                             "call snmfm.compress.calibrate(model, data) first")
    qann = copy.deepcopy(model).double().eval()
    for name, layer in quant_layers(qann).items():
        o = overrides.get(name, {})
        ab = int(o.get("a_bits", a_bits))
        qs = [layer.quant_a, layer.quant_b] if isinstance(layer, QuantMatMul) else [layer.quant]
        for q in qs:
            q.set_bits(ab)
            s, q.qmin, q.qmax = activation_range(torch.cat(q.samples), ab, q.signed, method, percentile, window)
            q.scale = torch.tensor(s, dtype=torch.float64)
            q.samples = []
            q.mode = "int"
        if isinstance(layer, WEIGHT_LAYERS):
            wb = int(o.get("w_bits", w_bits))
            w_int, s = quantize_weight(_weight_of(layer), wb)
            layer.set_int_weight(w_int, s, wb)
    eb = embed_bits if embed_bits is not None else w_bits
    for m in qann.modules():
        if isinstance(m, nn.Embedding):
            w_int, s = quantize_weight(m.weight, eb)
            m.weight.copy_(w_int * s[:, None])
    for _, q in quantizers(qann):  # quantizers outside quant layers (none in snmfm models)
        if q.mode != "int":
            raise ValueError("a Quantizer outside a QuantLinear/QuantConv2d/QuantMatMul/QuantFeatureEmbed "
                             "cannot be paired with integer weights")
    qann.snmfm_quant = {"w_bits": w_bits, "a_bits": a_bits, "method": method,
                        "percentile": percentile, "window": window, "overrides": {k: dict(v) for k, v in overrides.items()},
                        "embed_bits": eb}
    return qann


def is_qann(model: nn.Module) -> bool:
    qs = quantizers(model)
    return bool(qs) and all(q.mode == "int" for _, q in qs)
