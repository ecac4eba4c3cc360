"""One GEMM (M x K) @ (K x N) on an R x C systolic array: cycles, SRAM accesses, DRAM tiling.

Cycles and SRAM access counts follow SCALE-Sim's analytical model (Samajdar et al., "A systematic
methodology for characterizing scalability of DNN accelerators using SCALE-Sim", ISPASS 2020),
with its operand matrices: ifmap = A (M x K), filter = B (K x N), ofmap = C (M x N):

  ws: B is pinned, R x C at a time; folds = ceil(K/R) * ceil(N/C); per fold R cycles to load
      the weights, M rows streamed, R + C - 2 to drain: cycles = folds * (2R + C + M - 2).
      A is read once per column fold, B once, partial sums written once per row fold.
  os: C is pinned; folds = ceil(M/R) * ceil(N/C); per fold K operand wavefronts skewed over the
      array, the drain overlapping the next fold: cycles = folds * (K + R + C - 2).  A is read
      once per column fold, B once per row fold, each output written once.

(These are SCALE-Sim v3.0.0's counts to within one cycle, including non-square arrays; see
neuro_hw.crosscheck.  SCALE-Sim writes every ws partial sum out; we read it back as well, c_reads.)

DRAM traffic comes from tiling the GEMM to the buffers (tiles sized to the usable half of each
double-buffered SRAM), minimised over a fixed candidate set of schedules, so a larger buffer can
only keep or shrink the traffic:
  - "A resident": a row panel of A (Mt x K) stays in the input SRAM while N is swept: A read once,
    B once per row panel;
  - "B resident": a column panel of B (K x Nt) stays in the weight SRAM while M is swept: B read
    once, A once per column panel;
  - "streamed": output tiles Mt x Nt stay in the accumulator SRAM while K streams in R-deep slabs:
    A read once per column tile, B once per row tile.
Outputs are accumulated on chip (32-bit accumulator SRAM) and written once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def compute_cycles(M: int, K: int, N: int, R: int, C: int, dataflow: str) -> int:
    """SCALE-Sim analytical compute cycles of one (M x K) @ (K x N) product."""
    if dataflow == "ws":
        return ceil_div(K, R) * ceil_div(N, C) * (2 * R + C + M - 2)
    if dataflow == "os":
        return ceil_div(M, R) * ceil_div(N, C) * (K + R + C - 2)
    raise ValueError(f"dataflow {dataflow!r}; allowed: ws, os")


@dataclass(frozen=True)
class SramCounts:
    """Element accesses of one product between the SRAMs and the array (SCALE-Sim's counts):
    a_reads (input SRAM), b_reads (weight SRAM), c_writes (accumulator SRAM, partial sums
    included) and c_reads (read-modify-write of partial sums: c_writes - M*N)."""

    a_reads: int
    b_reads: int
    c_writes: int
    c_reads: int


def sram_counts(M: int, K: int, N: int, R: int, C: int, dataflow: str, m_tiles: int = 1) -> SramCounts:
    """SRAM element accesses; `m_tiles`: row panels the DRAM tiling splits M into (ws reloads the
    pinned weights once per panel)."""
    if dataflow == "ws":
        c_writes = M * N * ceil_div(K, R)
        return SramCounts(a_reads=M * K * ceil_div(N, C), b_reads=K * N * m_tiles,
                          c_writes=c_writes, c_reads=c_writes - M * N)
    if dataflow == "os":
        return SramCounts(a_reads=M * K * ceil_div(N, C), b_reads=K * N * ceil_div(M, R),
                          c_writes=M * N, c_reads=0)
    raise ValueError(f"dataflow {dataflow!r}; allowed: ws, os")


def _candidates(n: int, base: int) -> np.ndarray:
    """Tile sizes: base * 2^i below n, and n itself."""
    c = [min(n, base)]
    t = base
    while t < n:
        t *= 2
        c.append(min(t, n))
    return np.unique(np.asarray(c, dtype=np.int64))


@lru_cache(maxsize=4096)
def dram_tiling(M: int, K: int, N: int, a_bits: int, b_bits: int, acc_bits: int,
                in_cap: int, w_cap: int, out_cap: int, R: int, C: int) -> tuple:
    """Minimum DRAM read traffic (bytes of A, bytes of B) of one product under the buffer
    capacities (bytes usable per tile), and the schedule: (a_bytes, b_bytes, m_tile, n_tile,
    schedule, a_rereads, b_rereads)."""
    a_size = M * K * a_bits / 8
    b_size = K * N * b_bits / 8
    kt = min(K, R)                       # K streams in R-deep slabs at least
    mt = _candidates(M, R)[:, None]      # (m, 1)
    nt = _candidates(N, C)[None, :]      # (1, n)
    acc_ok = mt * nt * acc_bits / 8 <= out_cap
    n_m = -(-M // mt)
    n_n = -(-N // nt)
    inf = np.inf
    # A resident: Mt x K panel of A in the input SRAM; B streamed in kt x Nt slabs.
    ok_a = acc_ok & (mt * K * a_bits / 8 <= in_cap) & (kt * nt * b_bits / 8 <= w_cap)
    t_a = np.where(ok_a, a_size + b_size * n_m, inf)
    # B resident: K x Nt panel of B in the weight SRAM; A streamed in Mt x kt slabs.
    ok_b = acc_ok & (K * nt * b_bits / 8 <= w_cap) & (mt * kt * a_bits / 8 <= in_cap)
    t_b = np.where(ok_b, b_size + a_size * n_n, inf)
    # Streamed: output tile stationary, both operands re-read.
    ok_s = acc_ok & (mt * kt * a_bits / 8 <= in_cap) & (kt * nt * b_bits / 8 <= w_cap)
    t_s = np.where(ok_s, a_size * n_n + b_size * n_m, inf)
    best = None
    for name, t, ra, rb in (("A resident", t_a, np.ones_like(n_n), n_m),
                            ("B resident", t_b, n_n, np.ones_like(n_m)),
                            ("streamed", t_s, n_n, n_m)):
        i, j = np.unravel_index(np.argmin(t), t.shape)
        if np.isfinite(t[i, j]) and (best is None or t[i, j] < best[0] - 1e-9):
            rr_a = int(np.broadcast_to(ra, t.shape)[i, j])
            rr_b = int(np.broadcast_to(rb, t.shape)[i, j])
            best = (float(t[i, j]), name, int(mt[i, 0]), int(nt[0, j]), rr_a, rr_b)
    if best is None:
        raise ValueError(f"GEMM {M}x{K}x{N} cannot be tiled into buffers of {in_cap}/{w_cap}/{out_cap} B")
    _, name, m_t, n_t, rr_a, rr_b = best
    return (a_size * rr_a, b_size * rr_b, m_t, n_t, name, rr_a, rr_b)


def array_utilization(M: int, K: int, N: int, R: int, C: int, dataflow: str) -> float:
    """MACs over (PEs x compute cycles) for one product."""
    return M * K * N / (R * C * compute_cycles(M, K, N, R, C, dataflow))


__all__ = ["compute_cycles", "sram_counts", "dram_tiling", "SramCounts", "array_utilization", "ceil_div"]
