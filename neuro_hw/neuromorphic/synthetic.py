"""A synthetic ActivityTrace for a Workload: sweeps and speed tests of large models whose SNN is
too slow to run on a laptop.  Not a substitute for a real trace in any reported result.

Every neuron site spikes with probability `rate * decay**t` per neuron at step t (t = 0..settle-1),
half +1 and half -1 for signed sites; a row (vector over the last dim) is active when at least one
of its neurons spiked; a neuron is updated when it spiked or (with the same probability again)
its input changed.  Units re-evaluate the same fraction of rows as active; embeddings are looked
up at step 1.  Counts are expectations (rounded), summed over `n_samples`.
"""
from __future__ import annotations

import numpy as np

from converters.trace import ActivityTrace, SiteActivity
from neuro_hw.workload import NONSPIKING_KINDS, Workload


def _site_shapes(workload: Workload) -> dict:
    shapes = {}
    for op in workload.ops:
        if op.kind == "matmul_act":
            shapes[op.spike_inputs[0]] = ("neuron", tuple(op.in_shape))
            shapes[op.spike_inputs[1]] = ("neuron", tuple(op.extra.get("b_shape") or op.in_shape))
        elif op.spike_inputs:
            shapes[op.spike_inputs[0]] = ("neuron", tuple(op.in_shape))
        elif op.kind in NONSPIKING_KINDS:
            shapes[op.name] = ("nonspiking", tuple(op.in_shape))
        elif op.kind == "embed":
            shapes[op.name] = ("embed", tuple(op.in_shape))
    return shapes


def synthetic_trace(workload: Workload, steps: int = 32, settle: int = 16, rate: float = 0.3,
                    decay: float = 0.8, n_samples: int = 1) -> ActivityTrace:
    if not 0 <= rate <= 1 or not 0 < decay <= 1 or steps < 1 or not 0 <= settle <= steps:
        raise ValueError("synthetic_trace needs 0 <= rate <= 1, 0 < decay <= 1, 0 <= settle <= steps")
    t = np.arange(steps)
    p = np.where(t < settle, rate * decay ** t, 0.0)
    sites = {}
    for name, (kind, shape) in _site_shapes(workload).items():
        n = int(np.prod(shape)) if shape else 1
        width = shape[-1] if shape else 1
        rows = max(1, n // width)
        row_p = 1 - (1 - p) ** width
        active = np.rint(n_samples * rows * row_p).astype(np.int64)
        z = np.zeros(steps, dtype=np.int64)
        if kind == "neuron":
            spikes = np.rint(n_samples * n * p).astype(np.int64)
            pos = spikes - spikes // 2
            upd = np.minimum(np.rint(n_samples * n * (1 - (1 - p) ** 2)).astype(np.int64), n_samples * n)
            sites[name] = SiteActivity(kind="neuron", shape=shape, pos=pos, neg=spikes - pos,
                                       active_rows=active, updates=upd)
        elif kind == "nonspiking":
            active[0] = n_samples * rows  # the first evaluation sees every row
            sites[name] = SiteActivity(kind=kind, shape=shape, pos=z, neg=z.copy(), active_rows=active,
                                       updates=active * width)
        else:
            look = z.copy()
            look[0] = n_samples * n
            sites[name] = SiteActivity(kind="embed", shape=shape, pos=z, neg=z.copy(), active_rows=look,
                                       updates=look.copy())
    return ActivityTrace(n_samples=n_samples, steps=steps, t_settle=settle if settle < steps else None,
                         sites=sites, t_settle_per_sample=[settle] * n_samples)
