"""Running a `Chain` over time steps: the loop every backend export shares, and the literal reference.

`simulate(chain, x, T)` runs the literal membrane dynamics in integer units (the `if_neuron_reference`
of a whole network); with ``two_sided=False, bounded=False`` it is the plain IF neuron with reset by
subtraction that snnTorch and Norse provide, which is what their exports are checked against.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from converters.backends.chain import Chain


@dataclass
class ChainRun:
    """What a backend run returns: the summed output, and per neuron layer (keyed by snmfm site name)
    the +1 and -1 spikes per step (summed over neurons and samples) and each neuron's final count."""

    output: torch.Tensor
    pos: dict[str, np.ndarray]
    neg: dict[str, np.ndarray]
    counts: dict[str, torch.Tensor]            # [B, ...] net spike count (+1 minus -1) per neuron
    spikes: dict[str, torch.Tensor] | None = None  # [T, B, ...] when keep_spikes
    extra: dict = field(default_factory=dict)

    def total_spikes(self) -> int:
        return int(sum(int(p.sum() + n.sum()) for p, n in zip(self.pos.values(), self.neg.values())))


class _Recorder:
    def __init__(self, names, keep):
        self.names, self.keep = names, keep
        self.pos = {n: [] for n in names}
        self.neg = {n: [] for n in names}
        self.counts = {}
        self.spikes = {n: [] for n in names} if keep else None

    def add(self, name, s):
        self.pos[name].append(int((s > 0).sum()))
        self.neg[name].append(int((s < 0).sum()))
        self.counts[name] = self.counts.get(name, 0) + s.to(torch.float64)
        if self.keep:
            self.spikes[name].append(s.to(torch.float64))

    def finish(self, output) -> ChainRun:
        return ChainRun(output=output,
                        pos={n: np.asarray(v, dtype=np.int64) for n, v in self.pos.items()},
                        neg={n: np.asarray(v, dtype=np.int64) for n, v in self.neg.items()},
                        counts={n: c.reshape(c.shape[0], -1) for n, c in self.counts.items()},
                        spikes={n: torch.stack(v) for n, v in self.spikes.items()} if self.keep else None)


class ChainSNN(nn.Module):
    """The time loop every backend export shares; subclasses supply the framework's neurons.

    Per step t: the input neurons get x / s_0 (+ 1/2 initial membrane) at t = 1 and nothing after;
    each op turns the spikes of its neuron layer into integer currents for the next layer, which also
    receives its initial membrane v0 (threshold/2 + bias) at t = 1 -- delivering v0 as a step-1
    current is the same as starting the membrane at v0, and works with neurons whose state starts at 0.
    The last op's currents are scaled to float units and summed over steps: that is the output.

    `units="float"` (for neurons with one scalar threshold per layer, e.g. SpikingJelly's STBIFNode):
    currents are k * acc (+ bias at t=1), thresholds are the quantizer scales, and the neuron is
    expected to start its own membrane at threshold/2."""

    units = "integer"

    def __init__(self, chain: Chain, description: str = ""):
        super().__init__()
        self.chain = chain
        self.description = description
        self.site_names = [n.name for n in chain.neurons]

    # subclasses: one step of neuron layer l on input current -> spikes in {-1, 0, 1} (float64)
    def neuron_step(self, l: int, current: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset_neurons(self) -> None:
        raise NotImplementedError

    def op(self, l: int, spikes: torch.Tensor) -> torch.Tensor:
        return self.chain.ops[l].apply(spikes)

    def _current(self, l: int, acc: torch.Tensor | None, x: torch.Tensor, first: bool) -> torch.Tensor:
        c = self.chain
        if l == 0:
            if self.units == "float":
                return x if first else torch.zeros_like(x)
            return x / c.neurons[0].scale + 0.5 if first else torch.zeros_like(x)
        op = c.ops[l - 1]
        if self.units == "float":
            cur = acc * op.channel_view(c.k(l - 1))
            if first and op.bias is not None:
                cur = cur + op.channel_view(op.bias)
            return cur
        return acc + op.channel_view(c.v0(l)) if first else acc

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int, keep_spikes: bool = False) -> ChainRun:
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an integer >= 1, got {T!r}")
        x = x.to(torch.float64)
        self.reset_neurons()
        rec = _Recorder(self.site_names, keep_spikes)
        L = self.chain.depth
        out_acc = None
        for t in range(T):
            first = t == 0
            acc = None
            for l in range(L):
                s = self.neuron_step(l, self._current(l, acc, x, first))
                rec.add(self.site_names[l], s)
                acc = self.op(l, s)
            out_acc = acc if out_acc is None else out_acc + acc
        return rec.finish(self.chain.output(out_acc))

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.run(x, T).output


class ReferenceSNN(ChainSNN):
    """Literal membrane dynamics in integer units (no framework): ST-BIF when two_sided and bounded,
    the plain IF neuron with reset by subtraction when neither."""

    def __init__(self, chain: Chain, two_sided: bool = True, bounded: bool = True):
        super().__init__(chain, "literal IF dynamics (reference)")
        self.two_sided, self.bounded = two_sided, bounded
        self.v: list = []
        self.n: list = []

    def reset_neurons(self) -> None:
        self.v = [None] * self.chain.depth
        self.n = [None] * self.chain.depth

    def neuron_step(self, l, current):
        site = self.chain.neurons[l]
        theta = self.chain.threshold(l) if l == 0 else self.chain.ops[l - 1].channel_view(self.chain.threshold(l))
        v = current if self.v[l] is None else self.v[l] + current
        n = torch.zeros_like(v) if self.n[l] is None else self.n[l]
        up = v >= theta
        if self.bounded:
            up &= n < site.qmax
        if self.two_sided:
            down = (v < 0) & ~up
            if self.bounded:
                down &= n > site.qmin
        else:
            down = torch.zeros_like(up)
        s = up.to(torch.float64) - down.to(torch.float64)
        self.v[l] = v - s * theta
        self.n[l] = n + s
        return s


def simulate(chain: Chain, x: torch.Tensor, T: int, *, two_sided: bool = True, bounded: bool = True,
             keep_spikes: bool = False) -> ChainRun:
    """Literal dynamics of the whole chain for T steps (see ReferenceSNN)."""
    return ReferenceSNN(chain, two_sided, bounded).run(x, T, keep_spikes=keep_spikes)


def site_counts(spiking_model) -> dict[str, torch.Tensor]:
    """Final spike count of every neuron of a SpikingModel after its last run, [B, n] per site."""
    return {name: n.count.reshape(n.count.shape[0], -1).to(torch.float64) for name, n in spiking_model.neurons()
            if n.count is not None}


__all__ = ["ChainRun", "ChainSNN", "ReferenceSNN", "simulate", "site_counts"]
