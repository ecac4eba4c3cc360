"""A fused CPU epilogue for the integer GEMMs of `snmfm.nn.int_matmul` (numba).

Why: after the exact float32 GEMM, torch needs three passes over the output to turn the integer
accumulator into the layer's float64 value (``.to(float64)``, ``.mul_(scale)``, ``.add_(bias)``),
12 + 16 + 16 bytes per element of memory traffic; this loop does it in one (4 + 8).  It matters
most on the SNN's time-batched tensors, which are larger than the caches, but the QANN calls the
same function, so both get the same numbers and the same speed-up.

The arithmetic is torch's, operation for operation: ``float64(acc) * scale`` rounded, then
``+ bias`` rounded (no fused multiply-add: numba does not contract without fastmath), so the
result is bitwise what the torch path gives; tests/test_quant_calib.py checks it on odd shapes.
`available()` is False without numba (the torch path is then used) and in tests that flip
`_DISABLED` to compare both.
"""
from __future__ import annotations

import numpy as np

try:  # numba is a core dependency
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

_DISABLED = False


def available() -> bool:
    return numba is not None and not _DISABLED


def _njit(fn):
    if numba is None:
        return fn
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)


def _inline(fn):
    """A helper inlined into the kernels by numba (a call would keep LLVM from vectorising)."""
    if numba is None:
        return fn
    return numba.njit(inline="always", cache=True, nogil=True, boundscheck=False)(fn)


@_inline
def _dequant_row(a, o, scale, bias, per_col, has_bias, s0):
    """o[j] = float64(a[j]) * scale[j or 0] (+ bias[j]): one row of `dequant`."""
    N = o.shape[0]
    if per_col and has_bias:
        for j in range(N):
            o[j] = np.float64(a[j]) * scale[j] + bias[j]
    elif per_col:
        for j in range(N):
            o[j] = np.float64(a[j]) * scale[j]
    elif has_bias:
        for j in range(N):
            o[j] = np.float64(a[j]) * s0 + bias[j]
    else:
        for j in range(N):
            o[j] = np.float64(a[j]) * s0


@_inline
def _keep_last(out, prev):
    """prev [R, N] = the last step's rows of out [T, R, N] (the next chunk's previous rows)."""
    T, R, N = out.shape
    for r in range(R):
        p = prev[r]
        a = out[T - 1, r]
        for e in range(N):
            p[e] = a[e]


@_njit
def dequant(acc, scale, bias, out):
    """out[i, j] = float64(acc[i, j]) * scale[j or 0] + bias[j] (no bias if len(bias) == 0).

    acc float32 [R, N]; scale float64 [N] or [1]; bias float64 [N] or [0]; out float64 [R, N]."""
    R, N = acc.shape
    per_col = scale.shape[0] == N and N != 1
    has_bias = bias.shape[0] > 0
    s0 = scale[0]
    for i in range(R):
        _dequant_row(acc[i], out[i], scale, bias, per_col, has_bias, s0)


# ---- skipping unchanged rows (snmfm.rowskip) ----------------------------------------------------
# Each kernel also keeps the run's last step in its state buffer (`prev`), in place, so the state
# costs no torch copy per chunk.
@_njit
def row_changes(x, prev, has_prev, mask):
    """mask[t, r] = 1 where row r of step t differs from row r of step t - 1 (of `prev` [R, D]
    for t = 0 when `has_prev`, else every row of step 0 counts as changed); returns the number of
    changed rows, and leaves the last step's rows in `prev`.  x [T, R, D] holds the bit patterns
    (an integer view of the floats), so a row is unchanged only when it is the same bits: -0.0
    and 0.0 differ, NaN equals the same NaN.  (An OR of XORs over the row, no early exit: LLVM
    vectorises it.)"""
    T, R, D = x.shape
    n = 0
    for r in range(R):
        p = prev[r]
        for t in range(T):
            a = x[t, r]
            ch = 1
            if t > 0 or has_prev:
                acc = a[0] ^ p[0]
                for e in range(1, D):
                    acc |= a[e] ^ p[e]
                ch = 1 if acc != 0 else 0
            mask[t, r] = ch
            n += ch
            p = a
        last = prev[r]
        a = x[T - 1, r]
        for e in range(D):
            last[e] = a[e]
    return n


@_njit
def gather_rows(mask, x, out):
    """out [n, D] = the rows x[t, r] (x [T, R, D]) with mask[t, r] != 0, in (t, r) order."""
    T, R, D = x.shape
    k = 0
    for t in range(T):
        for r in range(R):
            if mask[t, r]:
                o = out[k]
                a = x[t, r]
                for e in range(D):
                    o[e] = a[e]
                k += 1


@_njit
def fill_rows(mask, src, prev, out):
    """out [T, R, N]: row r of step t is the next row of src [n, N] where mask[t, r] != 0 (rows
    in (t, r) order), else the same row of the step before (of prev [R, N] at t = 0); then the
    last step's rows are copied into `prev`."""
    T, R = mask.shape
    N = out.shape[2]
    k = 0
    for t in range(T):
        for r in range(R):
            o = out[t, r]
            if mask[t, r]:
                a = src[k]
                k += 1
            elif t > 0:
                a = out[t - 1, r]
            else:
                a = prev[r]
            for e in range(N):
                o[e] = a[e]
    _keep_last(out, prev)


@_njit
def fill_rows_dequant(mask, acc, scale, bias, prev, out):
    """`fill_rows` whose changed rows come as float32 integer accumulators acc [n, N] and are
    written as float64(acc) * scale[j or 0] + bias[j] (no bias if len(bias) == 0): `dequant`'s
    arithmetic, operation for operation, so the same bits, without a float64 copy in between."""
    T, R = mask.shape
    N = out.shape[2]
    per_col = scale.shape[0] == N and N != 1
    has_bias = bias.shape[0] > 0
    s0 = scale[0]
    k = 0
    for t in range(T):
        for r in range(R):
            o = out[t, r]
            if mask[t, r]:
                _dequant_row(acc[k], o, scale, bias, per_col, has_bias, s0)
                k += 1
            else:
                b = out[t - 1, r] if t > 0 else prev[r]
                for j in range(N):
                    o[j] = b[j]
    _keep_last(out, prev)
