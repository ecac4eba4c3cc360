"""The coding interface: how a quantizer site becomes a spiking unit and what it emits.

Every coding is the same kind of object.  A site's unit sees, at each time step t, the QANN code
of its accumulated input

    r_t = clamp(floor(S_t / s + 1/2), qmin, qmax)        (S_t: accumulated input, s: the step)

and keeps an integer count n_t (what its consumers read, times s).  A coding is the update rule

    n_t = update(r_t, n_{t-1})

and the events it emits follow from it: at step t the unit sends one event with integer payload
p_t = n_t - n_{t-1} when p_t != 0 (binary: p_t in {-1, +1}; graded: any change of the code).
That one record per site and step (events by payload sign, sum of |payload|, payload bits per
event, neuron updates) is all the trace, the exporters and the hardware models read.

Exactness, for any coding.  The spiking model's forward over a step applies every layer to the
accumulated counts, so once every count equals its target (n = r at every site) the network
computes the QANN's integers.  Each coding's docstring proves that its rule gets there and stays
there while the input is constant.

To add a coding: one module in this package with a class satisfying `Coding` and a call to
`register(...)` at import, plus its tests; `converters.codings.__init__` imports the module.  The
fused CPU kernel is optional (`kernel`, below): without one the torch rule runs.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from snmfm.nn import QuantSpec


@runtime_checkable
class Coding(Protocol):
    """A spiking coding (one instance per configuration; instances are immutable)."""

    name: str
    #: stream() carries every count from one input to the next (sigma-delta); otherwise each
    #: input of a stream starts from zero, as run() does.
    keeps_state: bool
    #: every count reaches its target in the step the target appears (n_t = r_t): a run with
    #: T=None can stop after one step (the proof in graded.py).
    one_step: bool
    #: the count of a site may not move while earlier sites (forward order) are unsettled, so the
    #: run shares a per-step, per-sample "upstream settled" mask between the sites of one chunk.
    gated: bool

    def payload_bits(self, spec: QuantSpec) -> int:
        """Bits of one event's payload at a site of this spec (0: a bare ±1 spike)."""

    def check(self, spec: QuantSpec, site: str) -> None:
        """Raise ValueError naming `site` when this coding cannot represent it."""

    def advance(self, r: torch.Tensor, n0: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """Reference rule in torch: r [T, B, ...] targets, n0 [B, ...] counts before the chunk
        (integer tensors), gate [T, B] bool or None -> counts [T, B, ...] after each step; updates
        `gate` in place to "this site and every earlier one settled" when the coding is gated."""

    # Optional: a fused CPU path, kernel(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats,
    # last, trace, gate) -> int (converters._kernels): the same counts as `advance` from the
    # accumulated input x [T, M] (float64), n [M] int32 updated in place, out [T, M] float32 counts,
    # stats [T, 5] int64 (events > 0, events < 0, active rows, updates, sum |payload|) when `trace`;
    # returns the last step of the chunk with an event (-1: none).  A coding without `kernel` runs
    # `advance` on every device (tests/test_new_coding.py adds one that way).
    # Optional too: a fused GPU path, cuda_kernel(x, par, n, rprev, row_len, per_sample, out, last,
    # trace) -> stats int64 [T, 5] on the device or None (converters._triton: the arguments of
    # `kernel` as CUDA tensors, with par = float64 [s, qmin, qmax] (`_triton.params`), last int32 [B]
    # holding -1 on entry, and no return of the last step: it stays on the device); None or absent:
    # `advance` runs on the GPU.


def signed_payload_bits(spec: QuantSpec) -> int:
    """Bits of a signed integer holding any change of a code in [qmin, qmax]: the change lies in
    [-(qmax - qmin), qmax - qmin], so (qmax - qmin).bit_length() magnitude bits plus a sign."""
    return int(spec.qmax - spec.qmin).bit_length() + 1


def quiet_gate(n: torch.Tensor, r: torch.Tensor, gate: torch.Tensor) -> None:
    """gate [T, B] &= every count of sample b equals its target at step t (the site is settled)."""
    T, B = n.shape[:2]
    gate &= n.reshape(T, B, -1).eq(r.reshape(T, B, -1).to(n.dtype)).all(-1)
