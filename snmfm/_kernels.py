"""A fused CPU epilogue for the integer GEMMs of `snmfm.nn.int_matmul` (numba).

Why: after the exact float32 GEMM, torch needs three passes over the output to turn the integer
accumulator into the layer's float64 value (``.to(float64)``, ``.mul_(scale)``, ``.add_(bias)``),
12 + 16 + 16 bytes per element of memory traffic; this loop does it in one (4 + 8).  It matters
most on the SNN's time-batched tensors, which are larger than the caches, but the QANN calls the
same function, so both get the same numbers and the same speed-up.

The arithmetic is torch's, operation for operation: ``float64(acc) * scale`` rounded, then
``+ bias`` rounded (no fused multiply-add: numba does not contract without fastmath), so the
result is bitwise what the torch path gives; tests/test_nn_ops.py checks it on odd shapes.
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


@_njit
def dequant(acc, scale, bias, out):
    """out[i, j] = float64(acc[i, j]) * scale[j or 0] + bias[j] (no bias if len(bias) == 0).

    acc float32 [R, N]; scale float64 [N] or [1]; bias float64 [N] or [0]; out float64 [R, N]."""
    R, N = acc.shape
    per_col = scale.shape[0] == N and N != 1
    has_bias = bias.shape[0] > 0
    s0 = scale[0]
    for i in range(R):
        a = acc[i]
        o = out[i]
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
