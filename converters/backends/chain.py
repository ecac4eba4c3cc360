"""A converted MLP / conv network as plain data, the form every backend exports from.

`chain_of(model)` reads a SpikingModel (or its QANN) made of `QuantLinear` / `QuantConv2d` layers with
ReLU / Flatten between them (what `converters.from_sequential` builds) into a `Chain`:

    x -> N_0 -> op_0 -> N_1 -> op_1 -> ... -> N_{L-1} -> op_{L-1} -> tail -> y

N_l is the IF neuron layer that replaced the quantizer on op_l's input (threshold s_l, count range
[qmin, qmax]); op_l multiplies spikes by integer weights W_l; its output in float units is
acc * k_l + b_l with k_l[c] = s_l * w_scale_l[c].

**Integer units.**  Backends keep the weights integer and measure the membrane of N_{l+1} in units
of k_l[c] (the value of one integer accumulate), so every synaptic event adds an exact integer:

    threshold  theta[c] = s_{l+1} / k_l[c]
    initial    v0[c]    = theta[c] / 2 + b_l[c] / k_l[c]     (s/2, plus the bias, which acts once)

The input neurons N_0 are in units of s_0: input current x / s_0 at step 1, threshold 1, v0 = 1/2.
In exact arithmetic "V >= theta" is then the QANN's floor(y / s + 1/2) > n; in float64 the two differ
only when y lands within rounding error of a rounding boundary.

`converters.backends.run` runs a chain over time steps (the loop every backend shares, and the
literal reference dynamics).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from converters.snn import ConversionError
from snmfm.nn import QuantConv2d, Quantizer, QuantLinear

CHAIN_LAYERS = ("QuantLinear, QuantConv2d, with nn.ReLU (before an unsigned quantizer, or at the end), "
                "nn.Flatten(1), nn.Identity, nn.Dropout and nested nn.Sequential between them "
                "(what converters.from_sequential builds)")


@dataclass(frozen=True)
class NeuronSite:
    """One IF neuron layer: the quantizer it replaced (threshold = scale, count range [qmin, qmax])."""

    name: str
    scale: float
    qmin: int
    qmax: int
    signed: bool


@dataclass(frozen=True)
class WeightOp:
    """A linear or conv layer with integer weights; `flatten_input` flattens its input spikes."""

    name: str
    kind: str                      # "linear" | "conv2d"
    w_int: torch.Tensor            # float64 integers, [out, in] or [out, in, kh, kw]
    w_scale: torch.Tensor          # [out], float64
    bias: torch.Tensor | None      # [out], float64
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    flatten_input: bool = False

    def apply(self, s: torch.Tensor) -> torch.Tensor:
        """Integer accumulate of spikes (or counts) `s` [B, ...] -> [B, out, ...], float64."""
        s = s.to(torch.float64)
        if self.flatten_input:
            s = s.flatten(1)
        if self.kind == "linear":
            return s @ self.w_int.t()
        return F.conv2d(s, self.w_int, None, self.stride, self.padding)

    def channel_view(self, v: torch.Tensor) -> torch.Tensor:
        """Per-output-channel vector shaped to broadcast over this op's output [B, out, ...]."""
        return v if self.kind == "linear" else v[:, None, None]


@dataclass(frozen=True)
class Chain:
    neurons: tuple[NeuronSite, ...]
    ops: tuple[WeightOp, ...]
    tail: tuple[str, ...] = ()     # "relu" / "flatten", applied to the accumulated output

    @property
    def depth(self) -> int:
        return len(self.ops)

    def k(self, l: int) -> torch.Tensor:
        """Value of one integer accumulate of op l, per output channel: s_l * w_scale_l."""
        return self.neurons[l].scale * self.ops[l].w_scale

    def threshold(self, l: int) -> torch.Tensor:
        """Threshold of neuron layer l in integer units (per channel; layer 0: the scalar 1)."""
        if l == 0:
            return torch.ones((), dtype=torch.float64)
        return self.neurons[l].scale / self.k(l - 1)

    def v0(self, l: int) -> torch.Tensor:
        """Initial membrane of neuron layer l in integer units: threshold/2 + bias (layer 0: 1/2)."""
        if l == 0:
            return torch.full((), 0.5, dtype=torch.float64)
        op = self.ops[l - 1]
        v = self.threshold(l) / 2
        if op.bias is not None:
            v = v + op.bias / self.k(l - 1)
        return v

    def output(self, acc: torch.Tensor) -> torch.Tensor:
        """Float output of the last op from its integer accumulator, then the tail."""
        op = self.ops[-1]
        y = acc * op.channel_view(self.k(self.depth - 1))
        if op.bias is not None:
            y = y + op.channel_view(op.bias)
        return apply_tail(self.tail, y)


def apply_tail(tail, y):
    for t in tail:
        y = torch.relu(y) if t == "relu" else y.flatten(1)
    return y


def _leaves(m: nn.Module, prefix: str = ""):
    for name, child in m.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, path)
        else:
            yield path, child


def chain_of(model: nn.Module) -> Chain:
    """Read a SpikingModel or QANN built from QuantLinear / QuantConv2d into a `Chain`."""
    net = getattr(model, "net", model)  # SpikingModel wraps the converted QANN as .net
    if not isinstance(net, nn.Sequential):
        raise ConversionError(f"export supports sequential networks of {CHAIN_LAYERS}; "
                              f"got a {type(net).__name__}")
    neurons, ops, pending_flatten, after_relu, tail = [], [], False, False, []
    for path, m in _leaves(net):
        if isinstance(m, (QuantLinear, QuantConv2d)):
            q = m.quant
            if getattr(q, "mode", "int") != "int" or (isinstance(q, Quantizer) and q.bits is None):
                raise ConversionError(f"layer {path!r} is not quantized; export a QANN or SpikingModel")
            if after_relu and q.qmin != 0:
                raise ConversionError(f"the ReLU before {path!r} is not absorbed: its quantizer is signed")
            if not m.is_int:
                raise ConversionError(f"layer {path!r} has no integer weights; run snmfm.compress.quantize")
            if getattr(m, "in_div", None) is not None:
                raise ConversionError(f"layer {path!r} has per-channel activation scales (snmfm.compress.smooth), "
                                      "which the export backends do not carry; export an unsmoothed QANN")
            neurons.append(NeuronSite(name=getattr(q, "name", "") or f"{path}.quant", scale=float(q.scale),
                                      qmin=int(q.qmin), qmax=int(q.qmax), signed=bool(q.signed)))
            lin = m.linear if isinstance(m, QuantLinear) else m.conv
            bias = lin.bias.detach().to(torch.float64).clone() if lin.bias is not None else None
            if isinstance(m, QuantLinear):
                ops.append(WeightOp(path, "linear", m.w_int.detach().clone(), m.w_scale.detach().clone(), bias,
                                    flatten_input=pending_flatten))
            else:
                if isinstance(lin.padding, str):
                    raise ConversionError(f"layer {path!r}: string padding {lin.padding!r} is not supported")
                ops.append(WeightOp(path, "conv2d", m.w_int.detach().clone(), m.w_scale.detach().clone(), bias,
                                    stride=tuple(lin.stride), padding=tuple(lin.padding),
                                    flatten_input=pending_flatten))
            pending_flatten, after_relu = False, False
        elif isinstance(m, nn.ReLU):
            if ops:
                tail.append("relu")
            after_relu = True
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ConversionError(f"layer {path!r}: only Flatten(start_dim=1) is supported")
            if ops:
                tail.append("flatten")
            pending_flatten = True
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        else:
            raise ConversionError(f"unsupported layer {path!r} of type {type(m).__name__} for export; "
                                  f"supported: {CHAIN_LAYERS}")
        if isinstance(m, (QuantLinear, QuantConv2d)):
            tail = []  # ReLU / Flatten seen so far sat between layers; only those after the last op remain
    if not ops:
        raise ConversionError(f"no QuantLinear / QuantConv2d layer found; supported: {CHAIN_LAYERS}")
    return Chain(tuple(neurons), tuple(ops), tuple(tail))


def qann_from_chain(chain: Chain) -> nn.Sequential:
    """The snmfm QANN a chain describes (QuantLinear / QuantConv2d in int mode, ReLU before unsigned
    quantizers, Flatten where the chain flattens, the tail at the end); `convert` turns it into the SNN."""
    mods: list[tuple[str, nn.Module]] = []
    for l, (site, op) in enumerate(zip(chain.neurons, chain.ops)):
        if l > 0 and site.qmin >= 0:
            mods.append((f"relu{l}", nn.ReLU()))
        if op.flatten_input:
            mods.append((f"flatten{l}", nn.Flatten(1)))
        has_bias = op.bias is not None
        if op.kind == "linear":
            layer = QuantLinear(op.w_int.shape[1], op.w_int.shape[0], bias=has_bias, signed=site.signed)
            lin = layer.linear
        else:
            layer = QuantConv2d(op.w_int.shape[1], op.w_int.shape[0], tuple(op.w_int.shape[2:]),
                                stride=op.stride, padding=op.padding, bias=has_bias, signed=site.signed)
            lin = layer.conv
        layer = layer.double()
        with torch.no_grad():
            w = op.w_int * op.w_scale.reshape(-1, *([1] * (op.w_int.dim() - 1)))
            lin.weight.copy_(w)
            if has_bias:
                lin.bias.copy_(op.bias)
        q = layer.quant
        bits = max(1, int(np.ceil(np.log2(max(site.qmax - site.qmin + 1, 2)))))
        q.set_bits(max(bits, 2) if site.signed else bits)
        q.qmin, q.qmax = site.qmin, site.qmax  # keep the exact range (it may not be a power of two)
        q.scale = torch.tensor(site.scale, dtype=torch.float64)
        q.mode = "int"
        layer.set_int_weight(op.w_int, op.w_scale, bits=_weight_bits(op.w_int))
        mods.append((op.name.replace(".", "_") or f"layer{l}", layer))
    for i, t in enumerate(chain.tail):
        mods.append((f"tail{i}", nn.ReLU() if t == "relu" else nn.Flatten(1)))
    names, seen = [], set()
    for n, _ in mods:
        while n in seen:
            n += "_"
        seen.add(n)
        names.append(n)
    out = nn.Sequential(OrderedDict(zip(names, (m for _, m in mods)))).eval()
    out.snmfm_quant = {"source": "chain"}
    return out


def _weight_bits(w_int: torch.Tensor) -> int:
    top = int(w_int.abs().max()) if w_int.numel() else 0
    return max(2, int(np.ceil(np.log2(top + 1))) + 1)


def torch_ops(chain: Chain, linear_cls=nn.Linear, conv_cls=nn.Conv2d) -> nn.ModuleList:
    """The chain's ops as torch modules (bias-free, integer weights, float64), a Flatten in front where
    the op flattens its input.  `linear_cls` / `conv_cls`: a framework's subclasses of nn.Linear / nn.Conv2d."""
    mods = nn.ModuleList()
    for op in chain.ops:
        if op.kind == "linear":
            m = linear_cls(op.w_int.shape[1], op.w_int.shape[0], bias=False)
        else:
            m = conv_cls(op.w_int.shape[1], op.w_int.shape[0], tuple(op.w_int.shape[2:]), stride=op.stride,
                         padding=op.padding, bias=False)
        m = m.to(torch.float64)
        with torch.no_grad():
            m.weight.copy_(op.w_int)
        mods.append(nn.Sequential(nn.Flatten(1), m) if op.flatten_input else m)
    return mods



def strict_threshold(theta: torch.Tensor) -> torch.Tensor:
    """The largest float64 below `theta`: a strict `V > theta'` then equals ST-BIF's `V >= theta`
    for every float64 membrane V (snnTorch and Norse fire on `V - theta > 0`)."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    return torch.nextafter(theta, torch.full_like(theta, -float("inf")))


__all__ = ["CHAIN_LAYERS", "Chain", "NeuronSite", "WeightOp", "apply_tail", "chain_of", "qann_from_chain",
           "strict_threshold", "torch_ops"]
