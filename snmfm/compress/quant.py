"""ANN -> QANN: calibration on real inputs and integer quantisation.

`calibrate(model, data)` records what every `Quantizer` sees on real inputs.
`quantize(model, w_bits, a_bits, overrides=...)` returns the QANN: a deep copy in float64 whose
quantizers are in ``int`` mode with scales from a percentile or MSE search, and whose weights are
per-output-channel symmetric integers.  The QANN is a runnable torch module and is *the*
reference the SNN must reproduce exactly.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from snmfm.nn import QuantConv2d, QuantFeatureEmbed, QuantLinear, QuantMatMul, Quantizer, quantizers

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


def search_scale(samples: torch.Tensor, qmin: int, qmax: int, method: str = "mse",
                 percentile: float = 99.99) -> float:
    """Scale for codes in [qmin, qmax] from recorded activations.

    mse: minimise E[(x - q(x))^2] over 128 clipping ranges between 2% and 100% of max|x|
    (the clipping search of e.g. Banner et al., NeurIPS 2019); percentile: clip at the given
    percentile of |x|; max: no clipping."""
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIB_METHODS)}")
    x = samples.to(torch.float64)
    signed = qmin < 0
    mag = x.abs() if signed else x.clamp_min(0)
    top = float(mag.max()) if mag.numel() else 0.0
    if top <= 0:
        return 1.0 / max(qmax, 1)  # constant-zero site: any scale is exact
    if method == "max":
        return top / qmax
    if method == "percentile":
        k = max(1, int(round(mag.numel() * percentile / 100.0)))
        clip = float(mag.kthvalue(min(k, mag.numel())).values)
        return max(clip, top * 1e-6) / qmax
    xs = x if x.numel() <= 65536 else x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:65536]]
    ratios = torch.linspace(0.02, 1.0, 128, dtype=torch.float64)
    scales = ratios * top / qmax
    q = torch.clamp(torch.floor(xs[None, :] / scales[:, None] + 0.5), qmin, qmax) * scales[:, None]
    err = ((q - xs[None, :]) ** 2).mean(1)
    return float(scales[int(err.argmin())])


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
             embed_bits: int | None = None) -> nn.Module:
    """Return the QANN of a calibrated model.

    overrides: {layer path: {"w_bits": b, "a_bits": b}} for mixed precision (a plan from
    `plan_bits`); a_bits of a layer sets the quantizer(s) on its input(s).  Unknown layer names
    or keys are errors."""
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIB_METHODS)}")
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
            q.scale = torch.tensor(search_scale(torch.cat(q.samples), q.qmin, q.qmax, method, percentile),
                                   dtype=torch.float64)
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
                        "percentile": percentile, "overrides": {k: dict(v) for k, v in overrides.items()},
                        "embed_bits": eb}
    return qann


def is_qann(model: nn.Module) -> bool:
    qs = quantizers(model)
    return bool(qs) and all(q.mode == "int" for _, q in qs)
