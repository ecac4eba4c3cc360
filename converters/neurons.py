"""Spiking units standing where QANN quantizers stood; the default coding's neuron, the signed
integrate-and-fire neuron (ST-BIF, as in SpikeZIP-TF, You et al., ICML 2024), in detail.

`IFNeuron` is the unit of every coding: it computes each step's target r_t (the QANN code of the
accumulated input) and delegates the count's update rule to its coding (converters.codings:
binary, graded, sigma-delta); what follows is the binary rule.

State of one neuron: membrane V, running spike count n.  Threshold s (the quantizer step),
range [qmin, qmax] (the quantizer's integer range).

    V_0 = s / 2,  n_0 = 0
    V  <- V + x_t                                   (integrate this step's input)
    if V >= s and n < qmax:  emit +1, V <- V - s, n <- n + 1      (reset by subtraction)
    elif V < 0 and n > qmin: emit -1, V <- V + s, n <- n - 1
    else:                    emit 0

Why it is exact.  Write S_t = x_1 + ... + x_t.  By induction V_t = s/2 + S_t - n_t s, so "+1"
fires exactly when floor(S_t/s + 1/2) > n_{t-1} and "-1" exactly when floor(S_t/s + 1/2) < n_{t-1}
(within the range).  Hence with r_t = clamp(floor(S_t/s + 1/2), qmin, qmax), the QANN quantizer
applied to the accumulated input,

    n_t = n_{t-1} + sign(r_t - n_{t-1})

the count walks one step per time step towards the quantizer's output.  Once the inputs stop
changing, n equals the QANN code: SNN == QANN.  `IFNeuron` computes this count form, in which the
accumulated input S_t is the QANN's own pre-activation evaluated on the accumulated integer spike
counts upstream, so no float is ever summed over time; `if_neuron_reference` is the literal
membrane form above, used to test that the two agree.

Cached positions (incremental decoding with a KV cache).  A neuron may be told that the leading
`n` positions along one axis of its input are *settled*: their input is the same as when an earlier
run ended, so their count starts this run at that run's final count (the QANN code) instead of 0,
and, the target being that count already, they never spike again.  `SpikingModel.run(...,
caches=...)` does this for the key and value neurons of each attention block.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from converters import _kernels, _triton, codings
from snmfm.nn import Quantizer


def if_neuron_reference(x_steps: torch.Tensor, s: float, qmin: int, qmax: int) -> torch.Tensor:
    """Literal ST-BIF dynamics: x_steps [T, ...] input per step -> spikes [T, ...] in {-1, 0, 1}."""
    v = torch.full_like(x_steps[0], s / 2, dtype=torch.float64)
    n = torch.zeros_like(v)
    out = []
    for x in x_steps.to(torch.float64):
        v = v + x
        up = (v >= s) & (n < qmax)
        down = (v < 0) & (n > qmin) & ~up
        o = up.to(v.dtype) - down.to(v.dtype)
        v = v - o * s
        n = n + o
        out.append(o)
    return torch.stack(out)


def track_counts(targets: torch.Tensor, n0: torch.Tensor) -> torch.Tensor:
    """Counts [T, ...] of a neuron that moves one step per time step towards `targets` [T, ...],
    starting from the count `n0` [...] it had before this chunk.  Integer tensors; the loop over
    steps is the only sequential part of the simulation, so it works in place on small integers."""
    out = torch.empty_like(targets)
    n = n0.to(targets.dtype).clone()
    d = torch.empty_like(n)
    for t in range(targets.shape[0]):
        torch.sub(targets[t], n, out=d)
        d.clamp_(-1, 1)
        n.add_(d)
        out[t] = n
    return out


_NO_INT = np.zeros(0, np.int32)        # rprev when there is no trace (the kernel does not read it)
_NO_STATS = np.zeros((0, 5), np.int64)  # stats when there is no trace (the kernel does not write)


def _count_dtype(qmin: int, qmax: int) -> torch.dtype:
    """Smallest integer type holding the spike count (int16 up to 15-bit codes)."""
    return torch.int16 if -(2**15) <= qmin and qmax < 2**15 else torch.int32


class IFNeuron(nn.Module):
    """A layer of spiking units standing where a QANN `Quantizer` stood (the name is historical:
    with the default binary coding they are signed IF neurons).

    The spiking model runs a chunk of `steps` time steps as one batch of size steps * B (time-major);
    the layer receives each step's accumulated pre-activation and returns each step's count (times
    s, like the quantizer), keeping its count between chunks.  How the count follows the target is
    the coding's rule (`self.coding`, converters.codings); the layer records its events into the
    ActivityTrace of the running model."""

    def __init__(self, q: Quantizer, name: str = "", coding=None):
        super().__init__()
        if q.mode != "int":
            raise ValueError(f"quantizer {name!r} is not quantized (mode {q.mode!r}); "
                             "convert a QANN made by snmfm.compress.quantize")
        self.name = name
        self.spec = q.spec()
        self.coding = codings.get(codings.DEFAULT if coding is None else coding)
        self.coding.check(self.spec, name)
        self.payload_bits = self.coding.payload_bits(self.spec)
        self.signed = q.signed
        self.bits = q.bits
        self.qmin, self.qmax = q.qmin, q.qmax
        self.register_buffer("scale", q.scale.clone())
        self.mode = "int"  # consumers check quant.mode == "int" and call codes()
        self.steps = 1
        self.recorder = None
        self.gate = None  # gated codings: the run's shared [steps, B] "earlier sites settled" mask
        self.carry: torch.Tensor | None = None  # counts kept from the previous input of a stream
        self.count: torch.Tensor | None = None  # [B, ...] count after the last step run
        # optional fault hook (converters.faults): fault(unit, counts [steps * B, ...]) -> the
        # counts the consumers receive (spike packets dropped, duplicated, corrupted on the way)
        self.fault = None
        self.reset()
        # (settled counts [B, ...] of the leading positions, axis) for a run with a KV cache
        self.settled: tuple[torch.Tensor, int] | None = None

    @property
    def threshold(self) -> float:
        return float(self.scale)

    def extra_repr(self) -> str:
        return f"coding={self.coding.name}, threshold={self.threshold:.4g}, range=[{self.qmin}, {self.qmax}]"

    def reset(self, carry: bool = False) -> None:
        """Forget the run's state.  carry: keep the final counts as the next run's starting
        counts (a stream under a coding that keeps state)."""
        self.carry = self.count if carry and self.count is not None else None
        self.count = None
        self.input_numel = 0
        self._kstate = None  # kernel path: threshold, range, counts, last targets, ...
        self.last_step_quiet = False
        self.last_spike_step = 0  # 1-based step of the last spike (tracked when no recorder)
        self.step0 = 0
        self.settled = None

    @property
    def starts_settled(self) -> bool:
        """Some counts start this run at a value the inputs already had (KV cache, stream)."""
        return self.settled is not None or self.carry is not None

    def initial_count(self, like: torch.Tensor) -> torch.Tensor:
        """Count [B, ...] before the first step of a run: 0, or the counts carried from the previous
        input of a stream when the shape is the same; then the settled leading positions
        (`self.settled`) at their final count of the run that computed them."""
        n0 = torch.zeros_like(like)
        if self.carry is not None and tuple(self.carry.shape) == tuple(like.shape):
            n0.copy_(self.carry.to(n0.dtype))
        if self.settled is not None:
            counts, axis = self.settled
            n0.narrow(axis, 0, counts.shape[axis]).copy_(counts)
        return n0

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The QANN code of the accumulated input: clamp(floor(x/s + 1/2)), as small integers.
        Same float64 operations as Quantizer.codes, so the same integers."""
        r = torch.div(x.to(torch.float64), self.scale)
        r.add_(0.5).floor_().clamp_(self.qmin, self.qmax)
        return r.to(_count_dtype(self.qmin, self.qmax))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Counts after each step of the chunk ([steps * B, ...], integers held in a float tensor
        like Quantizer.codes: float32 from the kernel, float64 from torch; every consumer in
        snmfm.nn accepts both) from the accumulated input of each step."""
        self.__dict__["input_numel"] = x.numel() // max(1, self.steps)  # per step: sizes the chunks
        if _kernels.available() and x.device.type == "cpu" and getattr(self.coding, "kernel", None) is not None \
                and not _triton.interpreting():
            out = self._codes_kernel(x)
        elif getattr(self.coding, "cuda_kernel", None) is not None and _triton.available(x) \
                and (x.shape[-1] if x.dim() >= 2 else 1) <= _triton.MAX_ROW:
            out = self._codes_cuda(x)
        else:
            out = self._codes_torch(x)
        return out if self.fault is None else self.fault(self, out)

    def _codes_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """One fused pass (converters._kernels.if_chunk): counts, and the trace's counters when
        recording.  Called once per layer and chunk, so the Python around the kernel is kept to a
        few calls: with small chunks it, not the kernel, was the cost (about 90 us per call, of
        which nn.Module.__setattr__ and numpy allocations were most)."""
        T = self.steps
        B = x.shape[0] // T
        x = x.detach()
        xs = (x if x.dtype == torch.float64 else x.to(torch.float64)).reshape(T, -1)
        if not xs.is_contiguous():  # e.g. q, k, v of attention: one copy into the neurons' order
            xs = xs.contiguous()
        M = xs.shape[1]
        rec = self.recorder
        st = self._kstate
        if st is None:  # first chunk of a run
            n = self.initial_count(torch.zeros((B, *x.shape[1:]), dtype=torch.int32)).reshape(-1).numpy()
            # settled positions' inputs have not changed: their previous target is their count
            st = {"s": float(self.scale), "qmin": float(self.qmin), "qmax": float(self.qmax),
                  "rprev": n.copy() if rec is not None else _NO_INT, "last": np.empty(B, np.int64),
                  "shape": (B, *x.shape[1:]), "row": x.shape[-1] if x.dim() >= 2 else 1}
            object.__setattr__(self, "_kstate", st)
        else:
            n = st["n"].copy()  # a new state array: a caller may hold the count of the last chunk
        # float32 holds every count exactly (|count| < 2^24) and is what the consumers' exact
        # GEMMs read (snmfm.nn.int_matmul), so no float64 copy is written and converted back
        out = torch.empty((T, M), dtype=torch.float32)
        stats = np.empty((T, 5), np.int64) if rec is not None else _NO_STATS
        gate = None if self.gate is None else self.gate.numpy()
        t_last = self.coding.kernel(xs.numpy(), st["s"], st["qmin"], st["qmax"], n, st["rprev"], st["row"],
                                    M // B, out.numpy(), stats, st["last"], rec is not None, gate)
        st["n"] = n
        d = self.__dict__  # plain attributes, set without nn.Module.__setattr__'s checks
        d["count"] = torch.from_numpy(n).view(st["shape"])
        d["last_step_quiet"] = t_last != T - 1
        if rec is not None:
            rec.neuron_counts(self.name, st["shape"][1:], stats, st["last"], payload_bits=self.payload_bits)
        elif t_last >= 0:
            d["last_spike_step"] = self.step0 + t_last + 1
        return out.view(x.shape)

    def compact(self, keep: np.ndarray, B: int) -> None:
        """Keep only the samples `keep` (sorted indices into the batch of B) of the kernel path's
        state, for the next chunk of a run whose other samples have gone quiet
        (converters.snn._compact)."""
        st = self._kstate
        if st is None or st["shape"][0] != B:
            raise RuntimeError(f"site {self.name!r}: compact needs the kernel state of a batch of {B}")
        st["n"] = st["n"].reshape(B, -1)[keep].reshape(-1)
        if st["rprev"].size:
            st["rprev"] = st["rprev"].reshape(B, -1)[keep].reshape(-1)
        st["last"] = np.empty(len(keep), np.int64)
        st["shape"] = (len(keep), *st["shape"][1:])
        self.__dict__["count"] = torch.from_numpy(st["n"]).view(st["shape"])

    def _codes_cuda(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel path on the GPU (converters._triton): one fused kernel per layer and chunk,
        counts as float32, the trace's counters and the quiet / last-event flags left on the device
        (no host synchronisation; the run reads them once per chunk for all sites)."""
        T = self.steps
        B = x.shape[0] // T
        x = x.detach()
        xs = x.reshape(T, -1)
        if xs.dtype not in (torch.float64, torch.float32):
            xs = xs.to(torch.float64)
        if not xs.is_contiguous():
            xs = xs.contiguous()
        M = xs.shape[1]
        rec = self.recorder
        st = self._kstate
        if st is None:  # first chunk of a run
            n = self.initial_count(torch.zeros((B, *x.shape[1:]), dtype=torch.int32, device=x.device)).reshape(-1)
            st = {"rprev": n.clone() if rec is not None else None, "shape": (B, *x.shape[1:]),
                  "par": _triton.params(self.scale, self.qmin, self.qmax, x.device),
                  "row": x.shape[-1] if x.dim() >= 2 else 1}
            object.__setattr__(self, "_kstate", st)
        else:
            n = st["n"].clone()  # a new state tensor: a caller may hold the count of the last chunk
        out = torch.empty((T, M), dtype=torch.float32, device=x.device)
        last = torch.full((B,), -1, dtype=torch.int32, device=x.device)
        stats = self.coding.cuda_kernel(xs, st["par"], n, st["rprev"], st["row"],
                                        M // B, out, last, rec is not None)
        st["n"] = n
        d = self.__dict__
        d["count"] = n.view(st["shape"])
        t_last = last.amax()
        d["last_step_quiet"] = t_last.ne(T - 1)
        if rec is not None:
            rec.neuron_device(self.name, st["shape"][1:], stats, last, payload_bits=self.payload_bits)
        else:
            step = torch.where(t_last >= 0, t_last + 1 + self.step0, 0)
            prev = self.last_spike_step
            d["last_spike_step"] = torch.maximum(step, prev) if torch.is_tensor(prev) else step
        return out.view(x.shape)

    def _codes_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The same in torch operations (any device; the reference the kernel is tested against)."""
        T = self.steps
        r = self.targets(x)
        r = r.reshape(T, r.shape[0] // T, *r.shape[1:])
        if self.count is not None:
            n0 = self.count.to(r.dtype)
        else:
            n0 = self.initial_count(r[0])
            if self.starts_settled and self.recorder is not None:
                # settled positions' inputs have not changed since their run: no neuron update
                self.recorder.prev_inputs[self.name] = n0.clone()
        n = self.coding.advance(r, n0, self.gate)
        if self.recorder is not None:
            self.recorder.neuron(self.name, n, n0, r, payload_bits=self.payload_bits)
        # No host synchronisation here (this runs once per site and chunk, on a GPU too): whether
        # the last step was quiet and the last step with an event stay device tensors, read by the
        # run once per chunk for all sites together (`SpikingModel.run`).
        before_last = n[-2] if T > 1 else n0
        self.last_step_quiet = torch.equal(n[-1], before_last) if n.device.type == "cpu" \
            else n[-1].eq(before_last).all()
        if self.recorder is None:  # the trace knows; without one, track the last step with a spike
            moved = torch.diff(n, dim=0, prepend=n0[None].to(n.dtype)).reshape(T, -1).ne(0).any(1)
            # 1-based step of the chunk's last event (0: none), + step0 where there was one
            step = torch.arange(1, T + 1, device=n.device).mul_(moved).amax()
            step = torch.where(step > 0, step + self.step0, step)
            if n.device.type == "cpu":
                self.last_spike_step = max(int(self.last_spike_step), int(step))
            else:  # stays on the device; the run reads it once at the end
                prev = self.last_spike_step
                self.last_spike_step = torch.maximum(step, prev) if torch.is_tensor(prev) else step
        self.count = n[-1].clone()
        return n.reshape(-1, *n.shape[2:]).to(torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.codes(x).to(torch.float64) * self.scale
