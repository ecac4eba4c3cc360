"""Injecting faults where the arithmetic happens: hooks on the integer layers of a QANN or SNN.

Both the QANN and the spiking model compute every layer with the same modules of `snmfm.nn`
(`QuantLinear`, `QuantConv2d`, `QuantFeatureEmbed`, `QuantMatMul`): the QANN once on the final
codes, the SNN at every time step on the accumulated spike counts (time-batched: a chunk of
`steps` steps is one batch of steps * B rows, time-major).  So one `Injector`, installed as
forward hooks on those modules, injects the same physical faults into both:

* acc-bitflip: a layer's output is `acc * scale + bias` with `acc` the exact integer accumulator
  (snmfm.nn.int_matmul).  The hook recovers `acc`, flips bits of it in a `acc_bits`-wide
  two's-complement word (each bit of each output element, per inference, with the rate) and
  writes `acc' * scale + bias` back.  In the SNN the flip happens at a uniformly drawn step of the
  fault-free run (`n_steps`) and, the accumulator being integrated further, its offset persists
  for every later step; in the QANN (one step) it hits the final value.
* stuck-neuron: a persistent set of a site's units (per-sample elements of a consumer's input,
  drawn once per seed) whose code is 0 or the site's maximum, on every step.
* dead outputs: output elements whose hardware is gone (dead cores, `dead_outputs`) read 0.

Mitigations (`Mitigation`): the guard resets an accumulator that a flip took beyond the analytic
bound max|code| * sum_k |w_int[c, k]| (no fault-free input can reach it: the guard changes nothing
without faults) to 0 (SoftSNN's bound-and-protect, Putra et al., DAC 2022); TMR computes the named
modules (the output layer) and their input units three times with independent faults and takes the
median (majority) of the three.  All draws come from `seed`, the module name and the batch index,
so a run is reproducible and rate 0 (or no flip drawn) leaves every output bit-for-bit unchanged.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from snmfm.faults.kinds import FaultError, FaultSpec, Mitigation
from snmfm.faults.sample import flip_bits, rng_for, sample_positions
from snmfm.nn import QuantConv2d, QuantFeatureEmbed, QuantLinear, QuantMatMul

CONSUMERS = (QuantLinear, QuantConv2d, QuantFeatureEmbed, QuantMatMul)
HOOK_KINDS = ("acc-bitflip", "stuck-neuron", "dead-core")


def consumers(model: torch.nn.Module) -> list:
    """(name, module) of the integer layers of `model` (a QANN or a SpikingModel's net)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CONSUMERS)]


def _sites(m) -> list:
    return [("quant_a", m.quant_a), ("quant_b", m.quant_b)] if isinstance(m, QuantMatMul) else [("quant", m.quant)]


def _maxcode(q) -> int:
    return max(abs(int(q.qmin)), abs(int(q.qmax)))


def _affine(m, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, bias) of a layer's output y = acc * scale + bias, float64, broadcast to the
    per-sample output `shape` and flattened."""
    f64 = torch.float64
    with torch.no_grad():
        return _affine_nograd(m, shape, f64)


def _affine_nograd(m, shape, f64):
    if isinstance(m, QuantLinear):
        s = (m.quant.scale * m.w_scale).to(f64)
        b = m.linear.bias.detach().to(f64) if m.linear.bias is not None else torch.zeros_like(s)
    elif isinstance(m, QuantConv2d):
        s = (m.quant.scale * m.w_scale).to(f64)[:, None, None]
        b = (m.conv.bias.detach().to(f64) if m.conv.bias is not None else torch.zeros(s.shape[0], dtype=f64))[:, None, None]
    elif isinstance(m, QuantFeatureEmbed):
        s = (m.quant.scale * m.w_scale[:, None]).to(f64)
        b = m.bias.detach().to(f64)
    else:
        s = (m.quant_a.scale * m.quant_b.scale * m.out_scale).to(f64).reshape(())
        b = torch.zeros((), dtype=f64)
    return s.expand(shape).reshape(-1).cpu(), b.expand(shape).reshape(-1).cpu()


def _bound(m, shape, k: int) -> np.ndarray:
    """Analytic bound on |acc| per output element (any input within the codes' range), flat over
    the per-sample output `shape`; `k` = reduction length of a QuantMatMul."""
    if isinstance(m, QuantMatMul):
        b = torch.tensor(float(_maxcode(m.quant_a) * _maxcode(m.quant_b) * k), dtype=torch.float64)
    elif isinstance(m, QuantLinear):
        b = m.w_int.abs().sum(1) * _maxcode(m.quant)
    elif isinstance(m, QuantConv2d):
        b = (m.w_int.abs().flatten(1).sum(1) * _maxcode(m.quant))[:, None, None]
    else:
        b = m.w_int.abs() * _maxcode(m.quant)
    return b.to(torch.float64).expand(shape).reshape(-1).cpu().numpy()


class Injector:
    """Installs the hooks of one `FaultSpec` on `model` (QANN or SpikingModel.net) for a `with`
    block; call `batch(B, n_steps)` before each batch (B inputs; n_steps: the steps of the
    fault-free run of this batch on an SNN, 1 for the QANN).  `log` counts what was injected:
    trials (bits, units) and faults drawn."""

    def __init__(self, model: torch.nn.Module, spec: FaultSpec, *, mitigation: Mitigation = Mitigation(),
                 acc_bits: int = 32, dead_outputs: dict | None = None):
        if spec.kind not in HOOK_KINDS:
            raise FaultError(f"fault kind {spec.kind!r} is not injected by layer hooks "
                             f"(they do: {', '.join(HOOK_KINDS)})")
        if spec.kind == "dead-core" and dead_outputs is None:
            raise FaultError("dead-core faults need dead_outputs (layer -> lost output elements), "
                             "computed from the chip's mapping (eval.faults)")
        self.model, self.spec, self.mit = model, spec, mitigation
        self.acc_bits = int(acc_bits)
        self.dead = dead_outputs or {}
        self.layers = consumers(model)
        names = {n for n, _ in self.layers}
        for t in mitigation.tmr:
            if t not in names:
                raise FaultError(f"TMR names layer {t!r}, which the model does not have; layers: "
                                 f"{', '.join(sorted(names))}")
        for t in self.dead:
            if t not in names:
                raise FaultError(f"dead outputs name layer {t!r}, which the model does not have")
        self.B, self.n_steps, self.batch_index = None, 1, -1
        self._stuck: dict = {}
        self._state: dict = {}
        self._const: dict = {}
        self.log = {"trials": 0, "faults": 0, "calls": 0}
        self._handles = []

    # -- driving -------------------------------------------------------------------------------
    def batch(self, B: int, n_steps: int = 1, index: int | None = None) -> None:
        """Start a batch of B inputs (n_steps: steps of its fault-free run); `index` (default:
        the next one) keys its draws, so a study may skip batches and keep the others' draws."""
        if B < 1 or n_steps < 1:
            raise ValueError(f"batch size and steps must be >= 1, got {B}, {n_steps}")
        self.B, self.n_steps = int(B), int(n_steps)
        self.batch_index = self.batch_index + 1 if index is None else int(index)
        self._state = {}

    def predict(self, B: int, index: int, shapes: dict) -> dict:
        """{"trials", "faults"} of batch `index` (B inputs) without running it; `shapes` from
        `layer_shapes`.  faults == 0 means the hooks leave every output of the batch bit for bit
        unchanged (no flip drawn, no unit stuck, no output dead), so a study may reuse the
        fault-free outputs.  acc-bitflip: the same seeded Binomial draws as the run (its flip
        positions and steps come after them from the same generator); stuck-neuron: the stuck
        units (the masks are drawn here once, the run reuses them; with TMR after the vote);
        dead-core: the dead output elements."""
        k = self.spec.kind
        missing = [n for n, _ in self.layers if n not in shapes]
        if missing:
            raise FaultError(f"shapes lack layers {missing[:3]}: compute them with layer_shapes(model, ...)")
        if k == "dead-core":
            n = sum(int(np.asarray(v).size) for v in self.dead.values())
            return {"trials": 0, "faults": n}
        trials = faults = 0
        for name, m in self.layers:
            copies = 3 if name in self.mit.tmr else 1
            if k == "acc-bitflip":
                n = int(B) * int(shapes[name]["out"]) * self.acc_bits
                for c in range(copies):
                    trials += n
                    if n > 0 and self.spec.rate > 0:
                        faults += int(rng_for(self.spec.seed, "acc", name, index, c).binomial(n, self.spec.rate))
            else:
                for attr, _ in _sites(m):
                    E = int(shapes[name]["in"][attr])
                    trials += E
                    faults += int(self._stuck_mask(f"{name}.{attr}", E, copies).size)
        return {"trials": trials, "faults": faults}

    def __enter__(self):
        for name, m in self.layers:
            if self.spec.kind == "stuck-neuron":
                self._handles.append(m.register_forward_pre_hook(self._stuck_hook(name, m)))
            elif self.spec.kind == "acc-bitflip":
                self._handles.append(m.register_forward_hook(self._acc_hook(name, m)))
            elif name in self.dead:
                self._handles.append(m.register_forward_hook(self._dead_hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def _rows(self, R: int) -> int:
        if self.B is None:
            raise RuntimeError("call Injector.batch(B, n_steps) before running a batch")
        if R % self.B:
            raise RuntimeError(f"a layer saw {R} rows, not a multiple of the batch size {self.B}")
        return R // self.B

    # -- dead outputs ----------------------------------------------------------------------------
    def _dead_hook(self, name):
        idx = torch.as_tensor(np.asarray(self.dead[name], dtype=np.int64))

        @torch.no_grad()
        def hook(m, args, y):
            self.log["calls"] += 1
            if idx.numel() == 0:
                return None
            out = y.clone(memory_format=torch.contiguous_format)
            out.view(y.shape[0], -1)[:, idx] = 0.0
            return out
        return hook

    # -- stuck units ---------------------------------------------------------------------------
    def _stuck_mask(self, site: str, E: int, copies: int) -> np.ndarray:
        key = (site, E)
        if key not in self._stuck:
            votes = np.zeros(E, np.int64)
            for c in range(copies):
                pos = sample_positions(E, self.spec.rate, rng_for(self.spec.seed, "stuck", site, c))
                votes[pos] += 1
                self.log["trials"] += E
                self.log["faults"] += int(pos.size)
            self._stuck[key] = np.flatnonzero(votes * 2 > copies)  # majority of the copies
        return self._stuck[key]

    def _stuck_hook(self, name, m):
        copies = 3 if name in self.mit.tmr else 1

        @torch.no_grad()
        def hook(mod, args):
            self.log["calls"] += 1
            new = list(args)
            for j, (attr, q) in enumerate(_sites(mod)):
                x = args[j]
                R = x.shape[0]
                self._rows(R)
                idx = self._stuck_mask(f"{name}.{attr}", x[0].numel(), copies)
                if idx.size == 0:
                    continue
                v = 0.0 if self.spec.stuck == "zero" else float((q.qmax + 1) * float(q.scale))
                x = x.clone(memory_format=torch.contiguous_format)
                x.view(R, -1)[:, torch.as_tensor(idx)] = v
                new[j] = x
            return tuple(new)
        return hook

    # -- accumulator bit flips -----------------------------------------------------------------
    def _acc_hook(self, name, m):
        copies = 3 if name in self.mit.tmr else 1

        @torch.no_grad()
        def hook(mod, args, y):
            self.log["calls"] += 1
            y = y.detach()
            steps = self._rows(y.shape[0])
            B, E, W = self.B, y[0].numel(), self.acc_bits
            st = self._state.get(name)
            if st is None:  # first call of this batch: draw this inference's flips
                st = self._draw(name, B * E, copies)
                st["step0"] = 0
                self._state[name] = st
            step0 = st["step0"]
            st["step0"] = step0 + steps
            if st["elem"].size == 0:
                return None
            key = (name, tuple(y.shape[1:]))
            if key not in self._const:
                k = args[0].shape[-1] if isinstance(mod, QuantMatMul) else 0
                self._const[key] = (*_affine(mod, y.shape[1:]), _bound(mod, y.shape[1:], k))
            scale, bias, bound = self._const[key]
            U = st["elem"]                       # touched (sample, element) pairs, flat b * E + e
            e_of = torch.as_tensor(U % E)
            yv = y.reshape(steps, B * E)
            cols = torch.as_tensor(U)
            clean = torch.round((yv[:, cols] - bias[e_of]) / scale[e_of]).numpy().astype(np.int64)  # [steps, U]
            deltas = np.zeros((copies, steps, U.size), np.int64)
            for c, flips in enumerate(st["flips"]):
                off = st["off"][c]                # offset of each touched element before this chunk
                u, bit, t = flips
                live = (t > step0) & (t <= step0 + steps)
                for r in np.unique(st["rank"][c][live]):  # r-th flip of each element, in time order
                    sel = live & (st["rank"][c] == r)
                    uu, row = u[sel], t[sel] - step0 - 1
                    cur = clean[row, uu] + off[uu]
                    new = flip_bits(_wrap(cur, W), np.arange(uu.size), bit[sel], W)
                    if self.mit.guard:
                        new = np.where(np.abs(new) > bound[U[uu] % E], 0, new)
                    d = new - cur
                    off[uu] += d
                    np.add.at(deltas[c], (row, uu), d)
                deltas[c] = np.cumsum(deltas[c], axis=0) + (off - deltas[c].sum(0))[None, :]
            total = np.median(deltas, axis=0) if copies > 1 else deltas[0]
            if not total.any():
                return None
            acc = torch.from_numpy((clean + total).astype(np.float64))
            out = y.clone(memory_format=torch.contiguous_format)
            ov = out.view(steps, B * E)
            ov[:, cols] = acc * scale[e_of] + bias[e_of]
            return out
        return hook

    def _draw(self, name: str, n_elems: int, copies: int) -> dict:
        W = self.acc_bits
        flips, elems = [], []
        for c in range(copies):
            rng = rng_for(self.spec.seed, "acc", name, self.batch_index, c)
            pos = sample_positions(n_elems * W, self.spec.rate, rng)
            self.log["trials"] += n_elems * W
            self.log["faults"] += int(pos.size)
            t = rng.integers(1, self.n_steps + 1, size=pos.size)
            flips.append((pos // W, pos % W, t))
            elems.append(pos // W)
        U = np.unique(np.concatenate(elems)) if elems else np.zeros(0, np.int64)
        st = {"elem": U, "flips": [], "rank": [], "off": []}
        for e, bit, t in flips:
            u = np.searchsorted(U, e)
            order = np.lexsort((t, u))          # by element, then time
            u, bit, t = u[order], bit[order], t[order]
            first = np.r_[0, np.flatnonzero(np.diff(u)) + 1] if u.size else np.zeros(0, np.int64)
            rank = np.arange(u.size) - np.repeat(first, np.diff(np.r_[first, u.size])) if u.size else u
            st["flips"].append((u, bit, t))
            st["rank"].append(rank)
            st["off"].append(np.zeros(U.size, np.int64))
        return st


@torch.no_grad()
def layer_shapes(model: torch.nn.Module, *inputs) -> dict:
    """{layer name: {"out": per-sample output elements, "in": {site attr: per-sample input
    elements}}} of the integer layers of `model` (a QANN), from one forward of the first input."""
    shapes, handles = {}, []
    for name, m in consumers(model):
        def hook(mod, args, y, name=name):
            shapes[name] = {"out": int(y[0].numel()),
                            "in": {attr: int(a[0].numel()) for (attr, _), a in zip(_sites(mod), args)}}
        handles.append(m.register_forward_hook(hook))
    try:
        model(*[x[:1] if isinstance(x, torch.Tensor) else x for x in inputs])
    finally:
        for h in handles:
            h.remove()
    return shapes


def _wrap(v: np.ndarray, width: int) -> np.ndarray:
    """Integers wrapped into a `width`-bit two's-complement word (what the register holds)."""
    m = 1 << width
    return ((v + (m >> 1)) % m) - (m >> 1)


@contextlib.contextmanager
def injected(model, spec: FaultSpec, **kw):
    """`with injected(model, spec, ...) as inj:` the Injector, its hooks removed on exit."""
    inj = Injector(model, spec, **kw)
    with inj:
        yield inj
