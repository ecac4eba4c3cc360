"""What bit widths a QANN actually has, read from its layers (not from the model-level defaults,
which a mixed plan or a fine-tuned model overrides layer by layer)."""
from __future__ import annotations

from collections import Counter

from torch import nn

from snmfm.compress.quant import WEIGHT_LAYERS, quant_layers
from snmfm.nn import QuantMatMul


# Bit widths a plan may use: 2 (the smallest signed code with a zero, -1..1) to 16 (integer
# products of two 16-bit codes still sum exactly in float64 for any layer we build; 32 overflows).
MIN_BITS, MAX_BITS = 2, 16
VALID_BITS = f"bit widths are {MIN_BITS} to {MAX_BITS}"


def check_bit_widths(choices, what: str = "choices") -> tuple[int, ...]:
    """The choices as sorted ints; ValueError naming the valid range when one is outside it."""
    bits = tuple(sorted({int(b) for b in choices}))
    bad = [b for b in bits if not MIN_BITS <= b <= MAX_BITS]
    if bad or not bits:
        raise ValueError(f"{what} {','.join(str(b) for b in choices) or '(none)'}: "
                         f"{', '.join(str(b) for b in bad) or 'nothing'} given; {VALID_BITS}")
    return bits


def _span(bits: Counter) -> str:
    lo, hi = min(bits), max(bits)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _label(w: Counter, a: Counter) -> str:
    uniform = len(w) <= 1 and len(a) <= 1
    parts = ([f"W{_span(w)}"] if w else []) + ([f"A{_span(a)}"] if a else [])
    return "".join(parts) if uniform else "mixed " + " ".join(parts)


def plan_label(layers: dict) -> str:
    """The label of a BitPlan's {layer: {"w_bits"?, "a_bits"}} ("W4A4", "mixed W2-8 A4-8")."""
    w = Counter(o["w_bits"] for o in layers.values() if o.get("w_bits") is not None)
    a = Counter(o["a_bits"] for o in layers.values() if o.get("a_bits") is not None)
    return _label(w, a)


def bit_plan_summary(model: nn.Module) -> dict:
    """{"label": "W4A4" | "mixed W4-8 A4-8", "w_bits": {bits: weight layers}, "a_bits": {bits: quant
    layers}, "uniform": bool}.  a_bits of a layer: its quantizer's bits (an activation product's two
    quantizers, the larger); layers whose bits were never set are left out."""
    w, a = Counter(), Counter()
    for layer in quant_layers(model).values():
        qs = [layer.quant_a, layer.quant_b] if isinstance(layer, QuantMatMul) else [layer.quant]
        ab = [q.bits for q in qs if q.bits is not None]
        if ab:
            a[max(ab)] += 1
        if isinstance(layer, WEIGHT_LAYERS) and getattr(layer, "w_bits", None) is not None:
            w[int(layer.w_bits)] += 1
    if not w and not a:
        raise ValueError("model has no quantized layers (not a QANN): no bit plan to summarise")
    return {"label": _label(w, a), "uniform": len(w) <= 1 and len(a) <= 1,
            "w_bits": {str(b): n for b, n in sorted(w.items())},
            "a_bits": {str(b): n for b, n in sorted(a.items())}}
