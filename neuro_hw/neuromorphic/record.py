"""Full spike tensors of an SNN run, for the event-exact path (small models only).

The ActivityTrace keeps counts; the event-exact chip model needs every spike with its neuron
index.  `record_spikes` runs a `SpikingModel` with each IF neuron's `codes` wrapped (an instance
attribute, removed afterwards; the converters are not modified): after each chunk it keeps the
spikes o_t = n_t - n_{t-1} and, to count neuron updates independently of the trace, the
neurons whose target (the QANN code of the accumulated input) changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class SpikeRecord:
    """spikes[site]: int8 [steps, n_samples, *site shape] in {-1, 0, 1};
    updates[site]: int64 [steps], neurons updated per step (input changed or spiked), summed
    over the samples."""

    n_samples: int
    steps: int
    spikes: dict = field(default_factory=dict)
    updates: dict = field(default_factory=dict)

    def total_spikes(self) -> int:
        return int(sum(np.abs(s).sum() for s in self.spikes.values()))


def record_spikes(snn, *inputs, max_elements: int = 50_000_000, **run_kw):
    """Run `snn` (a converters.SpikingModel) on `inputs` and return (SNNResult, SpikeRecord).

    run_kw go to SpikingModel.run (T, max_T, chunk).  The result's trace comes from the same run,
    so analytical and event-exact counts describe the same spikes.  Refuses runs whose recorded
    tensors would exceed `max_elements` per site and step (this path is for small models)."""
    chunks: dict[str, list] = {}
    upd: dict[str, list] = {}
    prev_r: dict[str, torch.Tensor] = {}
    wrapped = []
    neurons = snn.neurons()
    for name, neuron in neurons:
        orig = neuron.codes

        def codes(x, _n=neuron, _orig=orig, _name=name):
            n0 = _n.count
            out = _orig(x)
            T = _n.steps
            n = out.reshape(T, -1, *out.shape[1:])
            if n[0].numel() > max_elements:
                raise ValueError(f"site {_name!r} has {n[0].numel()} neurons per step: too large "
                                 "for the event-exact path")
            # before the first chunk: 0, or the settled count of cached K/V positions
            first = (_n.initial_count(n[0]) if n0 is None else n0).to(n.dtype)
            o = torch.diff(n, dim=0, prepend=first[None])
            chunks.setdefault(_name, []).append(o.to(torch.int8).numpy())
            r = _n.targets(x)
            r = r.reshape(T, -1, *r.shape[1:])
            r0 = prev_r.get(_name)
            r0 = torch.zeros_like(r[0]) if r0 is None else r0
            changed = torch.diff(r, dim=0, prepend=r0[None]).ne(0) | o.ne(0)
            prev_r[_name] = r[-1].clone()
            upd.setdefault(_name, []).append(changed.reshape(T, -1).sum(1).numpy().astype(np.int64))
            return out

        neuron.codes = codes  # instance attribute shadows the method for this run only
        wrapped.append(neuron)
    try:
        result = snn.run(*inputs, **run_kw)
    finally:
        for neuron in wrapped:
            if "codes" in neuron.__dict__:
                del neuron.__dict__["codes"]
    B = result.trace.n_samples if result.trace is not None else inputs[0].shape[0]
    rec = SpikeRecord(n_samples=B, steps=result.steps,
                      spikes={k: np.concatenate(v, 0) for k, v in chunks.items()},
                      updates={k: np.concatenate(v) for k, v in upd.items()})
    return result, rec
