"""A user's plain torch MLP / conv network -> the same network built from snmfm.nn layers.

`from_sequential(model)` walks an `nn.Sequential` (nested ones are flattened) or a module whose
forward is a plain chain (read with torch.fx), and rebuilds it from `QuantLinear` / `QuantConv2d`
with the weights copied.  Each weight layer gets a quantizer on its *input*:

* after a ReLU the quantizer is unsigned (codes in [0, 2^b - 1]); clamping at 0 *is* the ReLU, so the
  ReLU is absorbed by the IF neuron that replaces the quantizer (the `nn.ReLU` module stays in the
  sequence so the float model is unchanged; on accumulated values it is a no-op before an unsigned
  neuron);
* the first layer's quantizer is signed unless `input_signed=False` (or, with `input_signed=None`,
  the `example_input` has no negative value).

The result is an ordinary snmfm model: `calibrate -> quantize -> convert` work on it, and the SNN
reproduces the QANN exactly.

AvgPool2d is kept exact by folding it into the adjacent weight layer (both are linear, so the
composition is one Conv2d / Linear whose integer weights the QANN then uses):
* Conv2d -> AvgPool2d(k): one Conv2d with kernel K + S(k-1) and stride S*k, the kernel box-filtered;
* AvgPool2d(k) -> Conv2d (padding 0), or AvgPool2d(k) -> Flatten -> Linear: the next layer reads the
  un-pooled map with each weight repeated over its k x k window and divided by k^2 (so the integer
  weights are those of the un-pooled layer; the 1/k^2 goes into the per-channel weight scale).
Pools elsewhere (with padding, stride != kernel, between a ReLU and another ReLU ...) are rejected:
they would put a non-linear unit or a rounding the SNN cannot reproduce between two neurons.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from converters.snn import ConversionError
from snmfm.nn import QuantConv2d, QuantLinear

SUPPORTED_LAYERS = ("torch.nn: Linear, Conv2d (groups=1, dilation=1, zero padding), ReLU, Flatten, "
                    "AvgPool2d (stride == kernel, no padding, next to a Conv2d/Linear), Dropout, Identity, "
                    "Sequential; functions in a traced forward: relu, flatten")


@dataclass
class _Leaf:
    path: str            # module path in the user's model (or fx node name)
    kind: str            # linear | conv | relu | flatten | pool | skip
    module: nn.Module | None = None
    start_dim: int = 1   # flatten


def _unsupported(path: str, m) -> ConversionError:
    what = f"{type(m).__module__}.{type(m).__name__}" if isinstance(m, nn.Module) else str(m)
    return ConversionError(f"unsupported layer {path!r} of type {what}. from_sequential supports {SUPPORTED_LAYERS}")


def _classify(path: str, m: nn.Module) -> _Leaf:
    if isinstance(m, nn.Linear):
        return _Leaf(path, "linear", m)
    if isinstance(m, nn.Conv2d):
        if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
            raise ConversionError(f"unsupported Conv2d {path!r}: groups={m.groups}, dilation={m.dilation}, "
                                  f"padding_mode={m.padding_mode!r}; only groups=1, dilation=1, zero padding. "
                                  f"Supported: {SUPPORTED_LAYERS}")
        if isinstance(m.padding, str) and m.padding != "valid":
            k = m.kernel_size
            if tuple(m.stride) != (1, 1) or any(v % 2 == 0 for v in k):
                raise ConversionError(f"unsupported Conv2d {path!r}: padding='same' needs stride 1 and odd kernels")
        return _Leaf(path, "conv", m)
    if isinstance(m, nn.ReLU):
        return _Leaf(path, "relu", m)
    if isinstance(m, nn.Flatten):
        if m.end_dim != -1 or m.start_dim != 1:
            raise ConversionError(f"unsupported Flatten {path!r}: only start_dim=1, end_dim=-1 (per sample)")
        return _Leaf(path, "flatten", m, start_dim=m.start_dim)
    if isinstance(m, nn.AvgPool2d):
        return _Leaf(path, "pool", m)
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return _Leaf(path, "skip", m)
    raise _unsupported(path, m)


def _leaves_sequential(seq: nn.Module, prefix: str) -> list[_Leaf]:
    out = []
    for name, child in seq.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            out += _leaves_sequential(child, path)
        else:
            out.append(_classify(path, child))
    return out


_RELU_FNS = {torch.relu, F.relu, torch.nn.functional.relu}
_FLATTEN_FNS = {torch.flatten}


def _leaves_traced(model: nn.Module) -> list[_Leaf]:
    """Leaves of a module whose forward is a chain x -> f1 -> f2 -> ... (read with torch.fx)."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 -- any tracing failure means "not a plain chain"
        raise ConversionError(f"cannot read {type(model).__name__}.forward as a chain of layers ({e}); "
                              f"pass an nn.Sequential. Supported: {SUPPORTED_LAYERS}") from e
    out, prev = [], None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise ConversionError("from_sequential supports models with one input tensor")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise ConversionError("the model's output is not the end of its layer chain")
            break
        tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if tensor_args != [prev] or any(isinstance(v, torch.fx.Node) for v in node.kwargs.values()):
            raise ConversionError(f"{type(model).__name__}.forward is not a chain: node {node.name!r} "
                                  f"({node.op} {node.target}) does not take just the previous layer's output")
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, nn.Sequential):
                out += _leaves_sequential(m, node.target)
            else:
                out.append(_classify(node.target, m))
        elif node.op == "call_function" and node.target in _RELU_FNS:
            out.append(_Leaf(node.name, "relu"))
        elif node.op == "call_function" and node.target in _FLATTEN_FNS:
            out.append(_flatten_leaf(node))
        elif node.op == "call_method" and node.target == "relu":
            out.append(_Leaf(node.name, "relu"))
        elif node.op == "call_method" and node.target == "flatten":
            out.append(_flatten_leaf(node))
        else:
            raise _unsupported(node.name, f"{node.op} {getattr(node.target, '__name__', node.target)}")
        prev = node
    return out


def _flatten_leaf(node) -> _Leaf:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    if start != 1 or end != -1:
        raise ConversionError(f"unsupported flatten {node.name!r}: only flatten(x, 1) (per sample)")
    return _Leaf(node.name, "flatten")


def _pool_k(leaf: _Leaf) -> int:
    p: nn.AvgPool2d = leaf.module
    k = p.kernel_size if isinstance(p.kernel_size, int) else tuple(p.kernel_size)
    s = p.stride if p.stride is not None else k
    s = s if isinstance(s, int) else tuple(s)
    kk = (k, k) if isinstance(k, int) else k
    ss = (s, s) if isinstance(s, int) else s
    pad = p.padding if isinstance(p.padding, int) else max(p.padding)
    if kk != ss or kk[0] != kk[1] or pad != 0 or p.ceil_mode or p.divisor_override is not None:
        raise ConversionError(f"AvgPool2d {leaf.path!r} cannot be kept exact: it needs a square kernel, "
                              f"stride == kernel, no padding, ceil_mode=False and no divisor_override")
    return kk[0]


# ---- folding AvgPool2d into the adjacent weight layer ---------------------------------------------
def _conv_then_pool(conv: nn.Conv2d, k: int) -> nn.Conv2d:
    """Conv2d(K, S, p) followed by AvgPool2d(k) as one Conv2d(K + S(k-1), S*k, p)."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    pad = _num_padding(conv)
    w = conv.weight.detach().to(torch.float64)
    big = torch.zeros(w.shape[0], w.shape[1], kh + sh * (k - 1), kw + sw * (k - 1), dtype=torch.float64)
    for a in range(k):
        for b in range(k):
            big[:, :, a * sh:a * sh + kh, b * sw:b * sw + kw] += w / (k * k)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(big.shape[2:]), stride=(sh * k, sw * k),
                    padding=pad, bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(big.to(out.weight.dtype))
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def _pool_then_conv(k: int, conv: nn.Conv2d, in_hw: tuple[int, int] | None, path: str) -> nn.Conv2d:
    """AvgPool2d(k) followed by Conv2d(K, S, p) as one Conv2d(K*k, S*k, p*k) on the un-pooled map."""
    sh, sw = conv.stride
    pad = _num_padding(conv)
    if pad != (0, 0) and (in_hw is None or in_hw[0] % k or in_hw[1] % k):
        raise ConversionError(f"AvgPool2d before the padded Conv2d {path!r} is exact only when the map size "
                              f"divides by the pool size; pass example_input (got map {in_hw}, pool {k})")
    w = conv.weight.detach().to(torch.float64)
    big = w.repeat_interleave(k, 2).repeat_interleave(k, 3) / (k * k)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(big.shape[2:]), stride=(sh * k, sw * k),
                    padding=(pad[0] * k, pad[1] * k), bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(big.to(out.weight.dtype))
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def _pool_then_linear(k: int, lin: nn.Linear, chw: tuple[int, int, int] | None, path: str) -> nn.Linear:
    """AvgPool2d(k) -> Flatten -> Linear as one Linear on the flattened un-pooled map."""
    if chw is None:
        raise ConversionError(f"folding the AvgPool2d before Linear {path!r} needs the map shape; pass example_input")
    c, h, w = chw
    hp, wp = h // k, w // k
    if c * hp * wp != lin.in_features:
        raise ConversionError(f"Linear {path!r} expects {lin.in_features} inputs, the pooled map has {c * hp * wp}")
    wt = lin.weight.detach().to(torch.float64).reshape(lin.out_features, c, hp, wp)
    big = torch.zeros(lin.out_features, c, h, w, dtype=torch.float64)
    big[:, :, :hp * k, :wp * k] = wt.repeat_interleave(k, 2).repeat_interleave(k, 3) / (k * k)
    out = nn.Linear(c * h * w, lin.out_features, bias=lin.bias is not None)
    with torch.no_grad():
        out.weight.copy_(big.reshape(lin.out_features, -1).to(out.weight.dtype))
        if lin.bias is not None:
            out.bias.copy_(lin.bias)
    return out


def _num_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if isinstance(conv.padding, str):
        return (0, 0) if conv.padding == "valid" else (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
    return tuple(conv.padding)


def _shapes(leaves: list[_Leaf], example: torch.Tensor | None) -> list[tuple | None]:
    """Per-sample shape of the tensor *entering* each leaf (None without an example input)."""
    if example is None:
        return [None] * len(leaves)
    out, x = [], example[:1].detach()
    with torch.no_grad():
        for leaf in leaves:
            out.append(tuple(x.shape[1:]))
            if leaf.kind == "relu":
                x = torch.relu(x)
            elif leaf.kind == "flatten":
                x = torch.flatten(x, leaf.start_dim)
            elif leaf.kind != "skip":
                x = leaf.module(x)
    return out


def _fold_pools(leaves: list[_Leaf], shapes: list) -> list[_Leaf]:
    """Replace every AvgPool2d by a weight layer that contains it (see module docstring)."""
    leaves = list(leaves)
    i = 0
    while i < len(leaves):
        leaf = leaves[i]
        if leaf.kind != "pool":
            i += 1
            continue
        k = _pool_k(leaf)
        j = i - 1
        while j >= 0 and leaves[j].kind == "skip":
            j -= 1
        if j >= 0 and leaves[j].kind == "conv":  # conv -> pool: one conv
            prev = leaves[j]
            leaves[j] = _Leaf(prev.path, "conv", _conv_then_pool(prev.module, k))
            del leaves[i]
            continue
        n = i + 1
        while n < len(leaves) and leaves[n].kind == "skip":
            n += 1
        if n < len(leaves) and leaves[n].kind == "conv":
            nxt = leaves[n]
            hw = shapes[i][1:] if shapes[i] is not None else None
            leaves[n] = _Leaf(nxt.path, "conv", _pool_then_conv(k, nxt.module, hw, nxt.path))
            del leaves[i]
            shapes = shapes[:i] + shapes[i + 1:]
            continue
        if (n + 1 < len(leaves) and leaves[n].kind == "flatten" and leaves[n].start_dim == 1
                and leaves[n + 1].kind == "linear"):
            nxt = leaves[n + 1]
            leaves[n + 1] = _Leaf(nxt.path, "linear", _pool_then_linear(k, nxt.module, shapes[i], nxt.path))
            del leaves[i]
            shapes = shapes[:i] + shapes[i + 1:]
            continue
        raise ConversionError(f"AvgPool2d {leaf.path!r} cannot be kept exact here: it must follow a Conv2d "
                              f"directly, or come right before a Conv2d or a Flatten -> Linear")
    return leaves


def _quant_layer(leaf: _Leaf, signed: bool) -> nn.Module:
    m = leaf.module
    if leaf.kind == "linear":
        q = QuantLinear(m.in_features, m.out_features, bias=m.bias is not None, signed=signed)
        src, dst = m, q.linear
    else:
        q = QuantConv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), stride=tuple(m.stride),
                        padding=_num_padding(m), bias=m.bias is not None, signed=signed)
        src, dst = m, q.conv
    with torch.no_grad():
        dst.weight.copy_(src.weight.detach().to(dst.weight.dtype))
        if src.bias is not None:
            dst.bias.copy_(src.bias.detach().to(dst.bias.dtype))
    return q


def from_sequential(model: nn.Module, *, input_signed: bool | None = None,
                    example_input: torch.Tensor | None = None) -> nn.Sequential:
    """Rebuild a plain MLP / conv network from snmfm.nn layers (weights copied; see module docstring).

    input_signed: whether the first quantizer is signed.  None: signed unless `example_input` is given
    and has no negative value (images in [0, 1]: unsigned, one more bit of resolution).
    example_input: a batch of inputs; needed only to fold an AvgPool2d into a following Linear (or
    padded Conv2d), and to infer `input_signed`.

    Returns an nn.Sequential whose children are named after the user's module paths ('.' -> '_');
    `calibrate`, `quantize` and `convert` apply to it directly."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"from_sequential needs an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Sequential):
        leaves = _leaves_sequential(model, "")
    elif not list(model.children()):
        leaves = [_classify(type(model).__name__, model)]
    else:
        leaves = _leaves_traced(model)
    leaves = _fold_pools(leaves, _shapes(leaves, example_input))
    if not any(leaf.kind in ("linear", "conv") for leaf in leaves):
        raise ConversionError("the model has no Linear or Conv2d layer: nothing to quantize")
    if input_signed is None:
        input_signed = True if example_input is None else bool((example_input < 0).any())
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    after_relu = not input_signed  # unsigned first quantizer == a ReLU on the input
    for leaf in leaves:
        name = leaf.path.replace(".", "_")
        while name in mods:
            name += "_"
        if leaf.kind in ("linear", "conv"):
            mods[name] = _quant_layer(leaf, signed=not after_relu)
            after_relu = False
        elif leaf.kind == "relu":
            mods[name] = nn.ReLU()
            after_relu = True
        elif leaf.kind == "flatten":
            mods[name] = nn.Flatten(leaf.start_dim)
        # skip: Dropout / Identity are the identity at inference
    out = nn.Sequential(mods)
    out.snmfm_source = {"type": type(model).__name__, "input_signed": bool(input_signed)}
    return out


__all__ = ["SUPPORTED_LAYERS", "from_sequential"]
