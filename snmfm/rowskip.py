"""Skip unchanged rows in the dense per-step work of a time-batched SNN chunk (CPU).

A spiking model (converters.snn) runs a chunk of `steps` time steps as one batch of steps * B
inputs, time-major, and re-applies every non-spiking op and every GEMM to the accumulated counts
of each step.  Once a token's counts have settled its row (the vector along the last axis) stops
changing from one step to the next, and a row-wise op f (a linear layer's integer GEMM and
epilogue, softmax, LayerNorm: each output row depends only on its own input row) then gives the
same output row again.  `rowwise(module, x, f, chunk)` evaluates f only on the rows whose input
changed since the step before (compared bit for bit) and copies the previous step's output row
for the others; across chunks of one run the last step's input and output rows are kept on the
module.  On bench_snn's `text` model (W8A8) 21-66% of a unit's input rows are unchanged at a step.

Exact, not approximate: f is evaluated by the very same torch/numba code on a subset of rows, and
these ops give every row the same bits whatever the other rows are (integer GEMMs are exact in
float32 below 2^24 and in float64 below 2^53 in any order; torch's softmax and layer_norm
kernels reduce each row by itself; tests/test_rowskip.py checks skipped == dense bitwise on random
shapes and the SNN == QANN tests run through it).  Element-wise units whose torch kernel treats
a tensor's tail with scalar code (GELU's erf) are left dense: there the bits of an element can
depend on where the tensor ends.

Who decides: `converters.snn.SpikingModel.run` puts `time_chunk = (step0, steps)` on its neurons
and non-spiking units for each chunk (None outside a run); a module's forward asks
`chunk_of(module)`.  The QANN never has it, so it always runs the dense path.
`SNMFM_ROW_SKIP=0` (or `rowskip.ENABLED = False`) turns skipping off (an A/B switch).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from snmfm import _kernels

ENABLED = os.environ.get("SNMFM_ROW_SKIP", "1") != "0"

_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32}


def chunk_of(module) -> tuple[int, int] | None:
    """(first step, steps) of the chunk a module is running in a spiking model, or None."""
    return module.__dict__.get("time_chunk")


def _continues(state, step0: int, rows: int, D: int, N: int, dtype) -> bool:
    """Does this chunk continue the run whose last step `state` holds (same shapes)?  A run's
    first chunk (step0 == 0) never does."""
    return (state is not None and step0 > 0 and state["next"] == step0 and state["in"].dtype == dtype
            and tuple(state["in"].shape) == (rows, D) and tuple(state["out"].shape) == (rows, N))


def rowwise(module, x: torch.Tensor, fn, chunk: tuple[int, int] | None, n_out: int | None = None):
    """fn applied to every row (last axis) of x [steps * B, ..., D], time-major, evaluated only on
    rows that changed since the previous step; the result [steps * B, ..., N].  fn maps a
    contiguous [n, D] tensor to [n, N] (N = n_out, default D) and must be row-wise (module
    docstring).  Returns None where skipping does not apply (no chunk, autograd, not a CPU float
    tensor, forward hooks on the module that might edit its output, numba missing): the caller
    then runs its dense code."""
    if chunk is None or not ENABLED or not _kernels.available():
        return None
    if x.device.type != "cpu" or x.dtype not in _INT_VIEW or x.dim() < 2 or x.numel() == 0:
        return None
    if torch.is_grad_enabled():  # the gather and the copies are not differentiable
        return None
    if module._forward_hooks:
        return None
    step0, steps = chunk
    D = x.shape[-1]
    N = D if n_out is None else int(n_out)
    if x.shape[0] % steps:
        return None
    rows = x.numel() // (steps * D)
    xs = x.detach().contiguous().view(steps, rows, D)
    d = module.__dict__
    state = d.get("_rowskip")
    fresh = not _continues(state, step0, rows, D, N, x.dtype)
    ints = _INT_VIEW[x.dtype]
    mask = np.empty((steps, rows), np.uint8)
    prev_in = xs[0] if fresh else state["in"]
    n_changed = _kernels.row_changes(xs.view(ints).numpy(), prev_in.view(ints).numpy(), not fresh, mask)
    y = None
    if n_changed < steps * rows:  # (a fresh state has every row of step 0 changed: n_changed > 0)
        src = fn(_gather(xs, mask, n_changed)) if n_changed else state["out"][:0]
        if not fresh and src.dtype != state["out"].dtype:
            fresh = True  # f's output type changed (cannot in practice): evaluate densely
        else:
            _check_width(src, N)
            y = torch.empty((steps, rows, N), dtype=src.dtype)
            prev_out = y[0] if fresh else state["out"]  # (fresh: step 0 is all computed rows)
            _kernels.fill_rows(mask, src.contiguous().numpy(), prev_out.numpy(), y.numpy())
    if y is None:  # every row changed: the dense evaluation, no gather
        y = fn(xs.view(steps * rows, D))
        _check_width(y, N)
        y = y.reshape(steps, rows, N)
    if fresh:
        state = d["_rowskip"] = {"in": xs[-1].clone(), "out": y[-1].clone(), "next": 0}
    else:
        state["in"].copy_(xs[-1])  # in place: no new long-lived allocation per chunk
        state["out"].copy_(y[-1])
    state["next"] = step0 + steps
    return y.view(*x.shape[:-1], N)


def _check_width(y: torch.Tensor, N: int) -> None:
    if y.dim() != 2 or y.shape[1] != N:
        raise ValueError(f"rowwise: fn must map [n, D] rows to [n, {N}], it gave {list(y.shape)}")


def _gather(xs: torch.Tensor, mask: np.ndarray, n: int) -> torch.Tensor:
    """The changed rows of xs [steps, rows, D], in (step, row) order, as one [n, D] tensor."""
    out = torch.empty((n, xs.shape[-1]), dtype=xs.dtype)
    _kernels.gather_rows(mask, xs.numpy(), out.numpy())
    return out
