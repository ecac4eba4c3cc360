"""Quantisation sensitivity at every level: model -> block -> layer -> head / channel group.

`sensitivity(model, data)` measures, on real batches, how much the model's output moves when *only
one unit* is quantised to b bits and everything else stays float:

* unit levels: ``model`` (every layer), ``block`` (every layer under ``...blocks.i``), ``layer``
  (each QuantLinear / QuantConv2d / QuantFeatureEmbed / QuantMatMul, by module path), ``head``
  (one attention head of a block: its q/k/v rows of the fused qkv weights and its proj columns for
  weights; its slice of Q, K, the attention probabilities, V and the context for activations) and
  ``channel`` (a group of MLP hidden channels: fc1 rows and fc2 columns / fc2's input slice);
* kinds: ``w`` (weights, per-output-channel symmetric integers as `quantize` makes them) and ``a``
  (the unit's input quantizer(s), scales from the same MSE search `quantize` uses);
* metric: ``kl`` -- mean KL(p_float || p_quantised) of the softmax over the output's last dim (the
  default: needs no labels, is >= 0 and is what a classifier or LM loses); ``mse`` -- output mean
  squared error relative to the output's mean square (for embedding models); or a callable
  ``metric(output, reference_output, batch) -> float`` (e.g. a task loss increase).

`hessian_sensitivity(model, data)` is the cheap estimate of HAWQ-v2 (Dong et al., NeurIPS 2020):
the Hutchinson estimate of each weight layer's Hessian trace, times the squared weight
quantisation error, Tr(H)/n * ||Q_b(W) - W||^2.  Weights only.

Both return a `SensitivityTable` (rows of {unit, level, kind, bits, value}, JSON round-trip);
`table.layer_table("w")` is the {layer: {bits: value}} that `plan_bits` reads.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.compress.quant import (WEIGHT_LAYERS, _as_args, _weight_of, activation_range, calibrate,
                                  quant_layers, quantize_weight)
from snmfm.models.blocks import Attention, MLP
from snmfm.nn import QuantMatMul, quantizers

LEVELS = ("model", "block", "layer", "head", "channel")
KINDS = ("w", "a")
METRICS = ("kl", "mse")


@dataclass
class SensitivityTable:
    """Rows {"unit", "level", "kind", "bits", "value"}: output change when only `unit` is quantised
    (`kind` w or a) to `bits`; `metric` says what `value` measures (kl, mse, a callable's name, or
    hessian); `meta` records data size and method."""

    metric: str
    rows: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    SCHEMA = "snmfm.sensitivity/1"

    def value(self, unit: str, kind: str, bits: int) -> float:
        for r in self.rows:
            if r["unit"] == unit and r["kind"] == kind and r["bits"] == bits:
                return r["value"]
        raise KeyError(f"no sensitivity for unit {unit!r}, kind {kind!r}, {bits} bits")

    def units(self, level: str) -> list[str]:
        return list(dict.fromkeys(r["unit"] for r in self.rows if r["level"] == level))

    def layer_table(self, kind: str) -> dict[str, dict[int, float]]:
        """{layer path: {bits: value}} for one kind (what `plan_bits` reads)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
        out: dict[str, dict[int, float]] = {}
        for r in self.rows:
            if r["level"] == "layer" and r["kind"] == kind:
                out.setdefault(r["unit"], {})[int(r["bits"])] = float(r["value"])
        return out

    def to_dict(self) -> dict:
        return {"schema": self.SCHEMA, "metric": self.metric, "meta": self.meta, "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> "SensitivityTable":
        if d.get("schema") != cls.SCHEMA:
            raise ValueError(f"not an snmfm sensitivity table (schema {d.get('schema')!r}, expected {cls.SCHEMA!r})")
        return cls(metric=d["metric"], rows=[dict(r) for r in d["rows"]], meta=d.get("meta", {}))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "SensitivityTable":
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"sensitivity table {p} not found")
        return cls.from_dict(json.loads(p.read_text()))


# ---- units: which weight rows/cols and which activation slices belong to each --------------------
@dataclass
class _Unit:
    name: str
    level: str
    # weights: layer path -> None (whole tensor) or ("rows"|"cols", LongTensor of indices)
    weights: dict = field(default_factory=dict)
    # activations: quantizer path -> None (whole tensor) or fn(x) -> bool mask broadcastable to x
    acts: dict = field(default_factory=dict)


def _layer_quantizers(path: str, layer) -> list[str]:
    return [f"{path}.quant_a", f"{path}.quant_b"] if isinstance(layer, QuantMatMul) else [f"{path}.quant"]


def _head_mask(dim: int, h: int, hd: int | None):
    """Mask selecting head h along `dim` (hd None: the dim indexes heads; else head-major columns)."""
    def fn(x):
        m = torch.zeros(x.shape[dim], dtype=torch.bool, device=x.device)
        if hd is None:
            m[h] = True
        else:
            m[h * hd:(h + 1) * hd] = True
        shape = [1] * x.dim()
        shape[dim] = -1
        return m.reshape(shape)
    return fn


def _last_dim_mask(idx: torch.Tensor):
    def fn(x):
        m = torch.zeros(x.shape[-1], dtype=torch.bool, device=x.device)
        m[idx] = True
        return m
    return fn


def units_of(model: nn.Module, levels=LEVELS, channel_groups: int = 4) -> list[_Unit]:
    """Every unit of the requested levels, coarse to fine."""
    bad = set(levels) - set(LEVELS)
    if bad:
        raise ValueError(f"unknown level(s) {sorted(bad)}; allowed: {', '.join(LEVELS)}")
    layers = quant_layers(model)

    def whole(paths):
        u = _Unit("", "")
        for p in paths:
            if isinstance(layers[p], WEIGHT_LAYERS):
                u.weights[p] = None
            for q in _layer_quantizers(p, layers[p]):
                u.acts[q] = None
        return u

    out: list[_Unit] = []
    if "model" in levels:
        u = whole(layers)
        u.name, u.level = "model", "model"
        out.append(u)
    attns = {n: m for n, m in model.named_modules() if isinstance(m, Attention)}
    mlps = {n: m for n, m in model.named_modules() if isinstance(m, MLP)}
    if "block" in levels:
        blocks = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in (*attns, *mlps)))
        for b in blocks:
            u = whole([p for p in layers if p.startswith(b + ".")])
            u.name, u.level = b, "block"
            out.append(u)
    if "layer" in levels:
        for p in layers:
            u = whole([p])
            u.name, u.level = p, "layer"
            out.append(u)
    if "head" in levels:
        for n, a in attns.items():
            H, hd = a.n_heads, a.head_dim
            inner = H * hd
            for h in range(H):
                cols = torch.arange(h * hd, (h + 1) * hd)
                u = _Unit(f"{n}.head{h}", "head")
                u.weights[f"{n}.qkv"] = ("rows", torch.cat([cols + k * inner for k in range(3)]))
                u.weights[f"{n}.proj"] = ("cols", cols)
                u.acts[f"{n}.qk.quant_a"] = _head_mask(1, h, None)
                u.acts[f"{n}.qk.quant_b"] = _head_mask(1, h, None)
                u.acts[f"{n}.av.quant_a"] = _head_mask(1, h, None)
                u.acts[f"{n}.av.quant_b"] = _head_mask(1, h, None)
                u.acts[f"{n}.proj.quant"] = _head_mask(-1, h, hd)
                out.append(u)
    if "channel" in levels:
        for n, m in mlps.items():
            d_ff = m.fc1.out_features
            for g, idx in enumerate(torch.arange(d_ff).chunk(min(channel_groups, d_ff))):
                u = _Unit(f"{n}.channels{g}", "channel")
                u.weights[f"{n}.fc1"] = ("rows", idx)
                u.weights[f"{n}.fc2"] = ("cols", idx)
                u.acts[f"{n}.fc2.quant"] = _last_dim_mask(idx)
                out.append(u)
    return out


# ---- applying one unit's quantisation ----------------------------------------------------------
class _Quantiser:
    """Caches scales and quantised weights per (site, bits) for one calibrated model."""

    def __init__(self, model: nn.Module, scales: dict | None = None):
        self.model = model
        self.layers = quant_layers(model)
        self.qs = dict(quantizers(model))
        # {(quantizer, bits, method, percentile, window): (step, qmin, qmax)}, the cache `prepare_qat` shares
        self._scales: dict = {} if scales is None else scales
        self._weights: dict = {}

    def scale(self, qname: str, bits: int) -> tuple[float, int, int]:
        key = (qname, bits, "mse", 99.99, "fit")  # quantize's defaults
        q = self.qs[qname]
        if key not in self._scales:
            if not q.samples:
                raise ValueError(f"quantizer {qname!r} saw no calibration data")
            self._scales[key] = activation_range(torch.cat(q.samples), bits, q.signed)
        return self._scales[key]

    def weight(self, lname: str, bits: int) -> torch.Tensor:
        key = (lname, bits)
        if key not in self._weights:
            w = _weight_of(self.layers[lname])
            w_int, s = quantize_weight(w, bits)
            self._weights[key] = (w_int * s.reshape(-1, *([1] * (w.dim() - 1)))).to(w.dtype)
        return self._weights[key]

    @contextlib.contextmanager
    def applied(self, unit: _Unit, kind: str, bits: int):
        saved, hooks = [], []
        try:
            if kind == "w":
                for lname, sel in unit.weights.items():
                    w = _weight_of(self.layers[lname])
                    saved.append((w, w.detach().clone()))
                    wq = self.weight(lname, bits)
                    with torch.no_grad():
                        if sel is None:
                            w.copy_(wq)
                        elif sel[0] == "rows":
                            w[sel[1]] = wq[sel[1]]
                        else:
                            w[:, sel[1]] = wq[:, sel[1]]
            else:
                for qname, sel in unit.acts.items():
                    s, qmin, qmax = self.scale(qname, bits)

                    def hook(mod, args, out, s=s, qmin=qmin, qmax=qmax, sel=sel):
                        xq = torch.clamp(torch.floor(out / s + 0.5), qmin, qmax) * s
                        return xq if sel is None else torch.where(sel(out), xq, out)
                    hooks.append(self.qs[qname].register_forward_hook(hook))
            yield
        finally:
            for h in hooks:
                h.remove()
            with torch.no_grad():
                for w, old in saved:
                    w.copy_(old)


def _metric_fn(metric):
    if callable(metric):
        return metric
    if metric == "kl":
        def kl(out, ref, batch):
            lp = F.log_softmax(out.double(), -1)
            lr = F.log_softmax(ref.double(), -1)
            return float((lr.exp() * (lr - lp)).sum(-1).mean())
        return kl
    if metric == "mse":
        def mse(out, ref, batch):
            return float((out.double() - ref.double()).pow(2).mean() / ref.double().pow(2).mean().clamp_min(1e-30))
        return mse
    raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)} or a callable")


@torch.no_grad()
def sensitivity(model: nn.Module, data: Iterable, *, bits=(2, 4, 8), levels=LEVELS, kinds=KINDS,
                metric="kl", channel_groups: int = 4, inputs_of: Callable = _as_args,
                calibrated: bool = False, scales: dict | None = None) -> SensitivityTable:
    """Measured sensitivity of every unit at every level (see the module docstring).

    data: batches of model inputs (as for `calibrate`; `inputs_of(batch)` picks the inputs out of a
    batch that also holds labels).  The model is calibrated on `data` first unless `calibrated`.
    scales: a cache of activation steps shared with `prepare_qat` (same keys), so a later QANN
    does not search them again.
    Returns a SensitivityTable; the model is left unchanged (float, quantizers off)."""
    bad = set(kinds) - set(KINDS)
    if bad:
        raise ValueError(f"unknown kind(s) {sorted(bad)}; allowed: {', '.join(KINDS)}")
    data = list(data)
    if not data:
        raise ValueError("sensitivity needs at least one batch of data")
    fn = _metric_fn(metric)
    if not calibrated:
        calibrate(model, [inputs_of(b) for b in data])
    was_training = model.training
    model.eval()
    refs = [model(*inputs_of(b)) for b in data]
    qz = _Quantiser(model, scales)
    rows = []
    try:
        for u in units_of(model, levels, channel_groups):
            for kind in kinds:
                if (kind == "w" and not u.weights) or (kind == "a" and not u.acts):
                    continue
                for b in bits:
                    with qz.applied(u, kind, int(b)):
                        vals = [fn(model(*inputs_of(batch)), r, batch) for batch, r in zip(data, refs)]
                    rows.append({"unit": u.name, "level": u.level, "kind": kind, "bits": int(b),
                                 "value": float(sum(vals) / len(vals))})
    finally:
        model.train(was_training)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    return SensitivityTable(metric=name, rows=rows,
                            meta={"method": "measured", "n_batches": len(data), "bits": [int(b) for b in bits],
                                  "levels": list(levels), "kinds": list(kinds), "channel_groups": channel_groups})


def _pseudo_label_loss(output: torch.Tensor, batch) -> torch.Tensor:
    logits = output.reshape(-1, output.shape[-1])
    return F.cross_entropy(logits, logits.detach().argmax(-1))


def hutchinson_trace(model: nn.Module, data: Iterable, *, loss_fn: Callable | None = None,
                     n_probes: int = 16, inputs_of: Callable = _as_args, seed: int = 0) -> dict[str, float]:
    """Hutchinson estimate E_v[v^T H v] (Rademacher v) of the Hessian trace of the loss with
    respect to each weight layer's weights, averaged over `data`.  {layer path: trace}."""
    loss_fn = loss_fn or _pseudo_label_loss
    layers = {n: m for n, m in quant_layers(model).items() if isinstance(m, WEIGHT_LAYERS)}
    params = {n: _weight_of(m) for n, m in layers.items()}
    gen = torch.Generator().manual_seed(seed)
    traces = {n: 0.0 for n in layers}
    data = list(data)
    if not data:
        raise ValueError("hutchinson_trace needs at least one batch of data")
    was_training = model.training
    model.eval()
    try:
        for batch in data:
            loss = loss_fn(model(*inputs_of(batch)), batch)
            ps = list(params.values())
            grads = torch.autograd.grad(loss, ps, create_graph=True)
            for _ in range(n_probes):
                vs = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p.dtype) for p in ps]
                hv = torch.autograd.grad(grads, ps, grad_outputs=vs, retain_graph=True)
                for n, v, h in zip(params, vs, hv):
                    traces[n] += float((v * h).sum()) / (n_probes * len(data))
    finally:
        model.train(was_training)
    return traces


def hessian_sensitivity(model: nn.Module, data: Iterable, *, bits=(2, 4, 8), loss_fn: Callable | None = None,
                        n_probes: int = 16, inputs_of: Callable = _as_args) -> SensitivityTable:
    """HAWQ-v2 weight sensitivity per layer: Tr(H)/n * ||Q_b(W) - W||^2 (weights only)."""
    traces = hutchinson_trace(model, data, loss_fn=loss_fn, n_probes=n_probes, inputs_of=inputs_of)
    layers = quant_layers(model)
    rows = []
    for n, tr in traces.items():
        w = _weight_of(layers[n]).detach().double()
        for b in bits:
            w_int, s = quantize_weight(w, int(b))
            err = float((w_int * s.reshape(-1, *([1] * (w.dim() - 1))) - w).pow(2).sum())
            rows.append({"unit": n, "level": "layer", "kind": "w", "bits": int(b),
                         "value": max(tr, 0.0) / w.numel() * err, "trace": tr})
    return SensitivityTable(metric="hessian", rows=rows,
                            meta={"method": "hutchinson", "n_probes": n_probes, "bits": [int(b) for b in bits]})


def monotone(values: dict[int, float]) -> dict[int, float]:
    """Make sensitivity non-increasing in bits and >= 0 (measurement noise can invert tiny values:
    more bits never hurt, so the plan must not be rewarded for choosing fewer)."""
    out, acc = {}, 0.0
    for b in sorted(values, reverse=True):
        acc = max(acc, max(0.0, values[b]))
        out[b] = acc
    return out
