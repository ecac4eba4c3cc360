"""Fused GPU kernels (Triton) of the SNN simulation, with the counters the ActivityTrace needs: the
CUDA counterparts of the numba kernels in converters/_kernels.py.

Why: on the GPU the torch path of a neuron layer is about fifteen full passes over a chunk's
[T, B, ...] tensors (float64 targets, a Python loop of four kernels per step for the walk, a
float64 copy of the counts for the consumers, then diff / compare / reduce passes for the trace),
and a non-spiking unit's trace is a concatenation and three more passes.  Profiled on GPT-2-small
(32 x 128, A8, binary, H200), those passes were about 60% of the GPU's time and the layers' GEMMs 8%.
One kernel per layer and chunk reads each step's input once (float64), keeps the counts in
registers across the chunk's steps and writes the counts once (float32: every count is an integer
below 2^24, exact, and what the consumers' exact GEMMs read).

Arithmetic.  The targets are the QANN quantizer's, operation for operation in float64
(x / s, + 1/2, floor, clamp): Triton lowers a float64 division to the IEEE-754 correctly rounded
`div.rn.f64`, so the integers are the ones torch computes; tests/test_gpu.py checks the counts and
every trace counter against the torch path bit for bit, and tests/test_triton.py runs the same
kernels in Triton's interpreter on the CPU (no GPU needed).

Layout.  A program owns BLOCK_R rows (vectors over the last dim, `row_len` neurons each, never
split across samples) and walks all T steps of them.  The per-step counters of a program go to a
[programs, T, 5] buffer summed afterwards (no atomics on five hot addresses, and the sums do not
depend on scheduling); the last step with an event per sample is one atomic max per row.
"""
from __future__ import annotations

import os

import torch

try:  # Triton ships with CUDA builds of torch; the CPU wheel runs without it (the torch path)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

_DISABLED = os.environ.get("SNMFM_TRITON", "1") == "0"  # A/B switch: the torch path on the GPU
# Rows longer than this fall back to the torch path (one program holds a whole row in registers).
MAX_ROW = 16384
_ELEMS = 4096  # neurons per program: 16 per thread at 8 warps


def interpreting() -> bool:
    """Triton's CPU interpreter is on (TRITON_INTERPRET=1 when triton was imported): the kernels
    then run on CPU tensors too (tests)."""
    return triton is not None and os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(x: torch.Tensor) -> bool:
    """Can the fused kernels run on x's device?"""
    if triton is None or _DISABLED:
        return False
    return x.device.type == "cuda" or (interpreting() and x.device.type == "cpu")


def _blocks(row_len: int) -> tuple[int, int, int]:
    block_d = triton.next_power_of_2(max(1, row_len))
    block_r = max(1, _ELEMS // block_d)
    warps = 4 if block_r * block_d <= 2048 else (8 if block_r * block_d <= 8192 else 16)
    return block_r, block_d, warps


if triton is not None:
    # Sizes are not specialised (Triton would compile a variant per divisibility by 16 of each:
    # seconds of JIT per model); the block shapes and the rule are.  The threshold and the range
    # come from a float64 tensor: a Python float argument would be passed as float32.
    @triton.jit(do_not_specialize=["T", "M", "row_len", "rows_per_sample", "n_rows"])
    def _neuron_kernel(x_ptr, n_ptr, rprev_ptr, out_ptr, part_ptr, last_ptr, par_ptr,
                       T, M, row_len, rows_per_sample, n_rows,
                       BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, JUMP: tl.constexpr, TRACE: tl.constexpr):
        pid = tl.program_id(0)
        rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.arange(0, BLOCK_D)
        rmask = rows < n_rows
        mask = rmask[:, None] & (cols[None, :] < row_len)
        offs = rows.to(tl.int64)[:, None] * row_len + cols[None, :]
        s = tl.load(par_ptr)
        qmin = tl.load(par_ptr + 1)
        qmax = tl.load(par_ptr + 2)
        n = tl.load(n_ptr + offs, mask=mask, other=0)
        if TRACE:
            rp = tl.load(rprev_ptr + offs, mask=mask, other=0)
        row_last = tl.full([BLOCK_R], -1, tl.int32)
        xp = x_ptr + offs  # pointers advance by a step (M elements) per iteration: 64-bit offsets
        op = out_ptr + offs
        for t in range(T):
            xt = tl.load(xp, mask=mask, other=0.0).to(tl.float64)
            v = tl.floor(xt / s + 0.5)
            v = tl.minimum(tl.maximum(v, qmin), qmax)
            r = tl.where(mask, v.to(tl.int32), 0)
            if JUMP:
                d = r - n
                n = r
            else:
                d = tl.minimum(tl.maximum(r - n, -1), 1)
                n = n + d
            tl.store(op, n.to(tl.float32), mask=mask)
            xp += M
            op += M
            ev = (d != 0).to(tl.int32)
            row_any = tl.max(ev, axis=1)
            row_last = tl.where(row_any > 0, t, row_last)
            if TRACE:
                base = part_ptr + (pid * T + t) * 5
                tl.store(base + 0, tl.sum(tl.sum((d > 0).to(tl.int64), axis=1), axis=0))
                tl.store(base + 1, tl.sum(tl.sum((d < 0).to(tl.int64), axis=1), axis=0))
                tl.store(base + 2, tl.sum(row_any.to(tl.int64), axis=0))
                upd = (ev | (r != rp).to(tl.int32)).to(tl.int64)
                tl.store(base + 3, tl.sum(tl.sum(upd, axis=1), axis=0))
                tl.store(base + 4, tl.sum(tl.sum(tl.abs(d).to(tl.int64), axis=1), axis=0))
                rp = r
        tl.store(n_ptr + offs, n, mask=mask)
        if TRACE:
            tl.store(rprev_ptr + offs, rp, mask=mask)
        sample = rows // rows_per_sample
        tl.atomic_max(last_ptr + sample, row_last, mask=rmask & (row_last >= 0))

    @triton.jit(do_not_specialize=["T", "M", "row_len", "n_rows"])
    def _changed_kernel(x_ptr, prev_ptr, part_ptr, T, M, row_len, n_rows,
                        BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
        pid = tl.program_id(0)
        rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.arange(0, BLOCK_D)
        rmask = rows < n_rows
        mask = rmask[:, None] & (cols[None, :] < row_len)
        offs = rows.to(tl.int64)[:, None] * row_len + cols[None, :]
        p = tl.load(prev_ptr + offs, mask=mask, other=0.0)
        xp = x_ptr + offs
        for t in range(T):
            a = tl.load(xp, mask=mask, other=0.0)
            xp += M
            diff = (a != p) & ((a == a) | (p == p))  # NaN equals NaN
            row_changed = tl.max(diff.to(tl.int32), axis=1)
            tl.store(part_ptr + pid * T + t, tl.sum(row_changed, axis=0))
            p = a


def params(scale: torch.Tensor | float, qmin: int, qmax: int, device) -> torch.Tensor:
    """The kernels' float64 [threshold, qmin, qmax] on `device`, made there by fills and a
    device-to-device copy: a host-to-device copy of pageable memory would wait for the GPU's queue."""
    par = torch.empty(3, dtype=torch.float64, device=device)
    if torch.is_tensor(scale):
        par[0].copy_(scale.detach().reshape(()))
    else:
        par[0].fill_(float(scale))
    par[1].fill_(float(qmin))
    par[2].fill_(float(qmax))
    return par


def neuron_chunk(x: torch.Tensor, par: torch.Tensor, n: torch.Tensor, rprev: torch.Tensor | None,
                 row_len: int, per_sample: int, out: torch.Tensor, last: torch.Tensor, trace: bool,
                 jump: bool) -> torch.Tensor | None:
    """Advance one spiking layer by a chunk of T steps on the GPU.

    x      float64 or float32 [T, M], contiguous: the accumulated input of each step
    par    float64 [3] on x's device: threshold, qmin, qmax (`params`)
    n      int32 [M]     count before the chunk; updated in place to the count after it
    rprev  int32 [M]     target of the step before the chunk (read and updated when `trace`)
    out    float32 [T, M] count after each step
    last   int32 [B]     per sample the last step of this chunk with an event; must hold -1 on entry
    jump   the graded / sigma-delta rule n_t = r_t; else the binary walk n_t = n_{t-1} + sign(r_t - n_{t-1})
    Returns the trace's counters int64 [T, 5] (events > 0, events < 0, active rows, neuron updates,
    sum |payload|) as a device tensor when `trace`, else None.  No host synchronisation."""
    T, M = x.shape
    if row_len > MAX_ROW or M % row_len or per_sample % row_len:
        raise ValueError(f"rows of {row_len} neurons do not fit the fused kernel (at most {MAX_ROW}, "
                         f"dividing the {per_sample} neurons of a sample)")
    n_rows = M // row_len
    br, bd, warps = _blocks(row_len)
    grid = (triton.cdiv(n_rows, br),)
    part = torch.empty((grid[0], T, 5) if trace else (1,), dtype=torch.int64, device=x.device)
    _neuron_kernel[grid](x, n, rprev if trace else n, out, part, last, par, T, M, row_len, per_sample // row_len, n_rows,
                         BLOCK_R=br, BLOCK_D=bd, JUMP=bool(jump), TRACE=bool(trace), num_warps=warps)
    return part.sum(0) if trace else None


def changed_rows(x: torch.Tensor, prev: torch.Tensor, row_len: int) -> torch.Tensor:
    """Rows (of `row_len` elements) of x [T, M] that differ from the step before (prev [M] before
    the first; NaN equals NaN): int64 [T] on x's device, no host synchronisation."""
    T, M = x.shape
    if row_len > MAX_ROW or M % row_len:
        raise ValueError(f"rows of {row_len} elements do not fit the fused kernel (at most {MAX_ROW})")
    n_rows = M // row_len
    br, bd, warps = _blocks(row_len)
    grid = (triton.cdiv(n_rows, br),)
    part = torch.empty((grid[0], T), dtype=torch.int32, device=x.device)
    _changed_kernel[grid](x, prev, part, T, M, row_len, n_rows, BLOCK_R=br, BLOCK_D=bd, num_warps=warps)
    return part.sum(0, dtype=torch.int64)
