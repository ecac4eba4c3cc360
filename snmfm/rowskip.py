"""Skip unchanged rows in the dense per-step work of a time-batched SNN chunk (CPU; opt-in).

A spiking model (converters.snn) runs a chunk of `steps` time steps as one batch of steps * B
inputs, time-major, and re-applies every GEMM and non-spiking op to the accumulated counts of each
step.  Once a token's counts have settled its row (the vector along the last axis) stops changing
from one step to the next, and a row-wise op f (a linear layer's integer GEMM and epilogue; also
softmax or LayerNorm, each row reduced by itself) gives the same output row again.
`rowwise(module, x, f, chunk)` evaluates f only on the rows whose input changed since the step
before (compared bit for bit) and copies the previous step's output row for the others; across
chunks of one run the last step's input and output rows are kept on the module.

Exact, not approximate: f is evaluated by the very same torch/numba code on a subset of rows, and
these ops give every row the same bits whatever the other rows are (integer GEMMs are exact in
float32 below 2^24 and in float64 below 2^53 in any order; the epilogue is snmfm._kernels.dequant's
arithmetic); tests/test_rowskip.py checks skipped == dense bitwise on random shapes and chunkings
and every step of whole spiking models.  Element-wise units whose torch kernel treats a tensor's
tail with scalar code (GELU's erf) must stay dense: there an element's bits depend on where the
tensor ends.

Why it is off by default (`SNMFM_ROW_SKIP=1` or `rowskip.ENABLED = True` turns it on): on
bench_snn's small models at W8A8 a row keeps changing while any of its 64-256 neurons still walks,
so 34-79% of the rows change at an average step (text), and copying an unchanged float64 row
forward costs about as much memory traffic as recomputing it.  Measured per call, both paths on
the same inputs back to back (shared 2-core host, noisy): QuantLinear 0.78x the dense time on
text, 0.86x on vit, 1.17x on decoder (its 256-wide LM head); softmax 0.98-1.5x and LayerNorm
1.05x, so those stay dense.  Only `QuantLinear` calls it.  Whole runs on two threads (bench_snn,
one off/on pair per model, same host, +-20%) moved synaptic events/s with the trace by -3% to
+24% (README): not conclusive on a shared host, hence opt-in until measured on an idle one.

Who decides: `converters.snn.SpikingModel.run` puts `time_chunk = (step0, steps)` on its neurons
for each chunk (None outside a run); a consumer's forward asks `chunk_of(its quantizer)`.  The
QANN's quantizers never have it, so the QANN always runs the dense path.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from snmfm import _kernels

ENABLED = os.environ.get("SNMFM_ROW_SKIP", "0") == "1"

_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32}


def chunk_of(module) -> tuple[int, int] | None:
    """(first step, steps) of the chunk a module is running in a spiking model, or None."""
    return module.__dict__.get("time_chunk")


def _continues(state, step0: int, rows: int, D: int, N: int, dtype) -> bool:
    """Does this chunk continue the run whose last step `state` holds (same shapes)?  A run's
    first chunk (step0 == 0) never does."""
    return (state is not None and step0 > 0 and state["next"] == step0 and state["in"].dtype == dtype
            and state["out"] is not None and tuple(state["in"].shape) == (rows, D)
            and tuple(state["out"].shape) == (rows, N))


def rowwise(module, x: torch.Tensor, fn, chunk: tuple[int, int] | None, n_out: int | None = None,
            epilogue: tuple[np.ndarray, np.ndarray] | None = None):
    """fn applied to every row (last axis) of x [steps * B, ..., D], time-major, evaluated only on
    rows that changed since the previous step; the result [steps * B, ..., N].  fn maps a
    contiguous [n, D] tensor to [n, N] (N = n_out, default D) and must be row-wise (module
    docstring).  Returns None where skipping does not apply (no chunk, autograd, not a CPU float
    tensor, forward hooks on the module that might edit its output, numba missing): the caller
    then runs its dense code.
    epilogue: (scale float64 [N] or [1], bias float64 [N] or [0]): fn gives float32 integer
    accumulators and the rows are written as float64(acc) * scale + bias (snmfm._kernels.dequant's
    arithmetic) while they are copied into place."""
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
    if fresh:
        state = d["_rowskip"] = {"in": torch.empty((rows, D), dtype=x.dtype), "out": None, "next": -1}
    mask = np.empty((steps, rows), np.uint8)
    # compares each step with the one before and leaves the last step's rows in state["in"]
    n_changed = _kernels.row_changes(xs.view(ints).numpy(), state["in"].view(ints).numpy(), not fresh, mask)
    if n_changed < steps * rows:  # (a fresh state has every row of step 0 changed: n_changed > 0)
        src = fn(_gather(xs, mask, n_changed)) if n_changed else None
        dtype = torch.float64 if epilogue is not None else (src.dtype if src is not None else state["out"].dtype)
        if src is None:
            src = torch.empty((0, N), dtype=torch.float32 if epilogue is not None else dtype)
        _check_width(src, N)
        if state["out"] is None:
            state["out"] = torch.empty((rows, N), dtype=dtype)
        if dtype != state["out"].dtype:
            raise TypeError(f"rowwise: fn gave {dtype} rows after {state['out'].dtype} ones")
        y = torch.empty((steps, rows, N), dtype=dtype)
        # copies unchanged rows forward and leaves the last step's rows in state["out"]
        if epilogue is not None:
            _kernels.fill_rows_dequant(mask, src.contiguous().numpy(), epilogue[0], epilogue[1],
                                       state["out"].numpy(), y.numpy())
        else:
            _kernels.fill_rows(mask, src.contiguous().numpy(), state["out"].numpy(), y.numpy())
    else:  # every row changed: the dense evaluation, no gather
        y = fn(xs.view(steps * rows, D))
        _check_width(y, N)
        if epilogue is not None:
            out = torch.empty((steps * rows, N), dtype=torch.float64)
            _kernels.dequant(y.contiguous().numpy(), epilogue[0], epilogue[1], out.numpy())
            y = out
        y = y.reshape(steps, rows, N)
        if state["out"] is None or state["out"].dtype != y.dtype:
            state["out"] = y[-1].clone()
        else:
            state["out"].numpy()[...] = y[-1].numpy()
    state["next"] = step0 + steps
    return y.reshape(*x.shape[:-1], N)


def _check_width(y: torch.Tensor, N: int) -> None:
    if y.dim() != 2 or y.shape[1] != N:
        raise ValueError(f"rowwise: fn must map [n, D] rows to [n, {N}], it gave {list(y.shape)}")


def _gather(xs: torch.Tensor, mask: np.ndarray, n: int) -> torch.Tensor:
    """The changed rows of xs [steps, rows, D], in (step, row) order, as one [n, D] tensor."""
    out = torch.empty((n, xs.shape[-1]), dtype=xs.dtype)
    _kernels.gather_rows(mask, xs.numpy(), out.numpy())
    return out
