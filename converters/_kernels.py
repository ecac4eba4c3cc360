"""Fused CPU kernels of the SNN simulation (numba), with the statistics the ActivityTrace needs.

Why hand-written loops: a chunk of T time steps of one IF-neuron layer is, in torch, about fifteen
full passes over [T, B, ...] tensors (divide, round, clamp, cast, the step loop, cast back, then
diff / compare / reduce for the trace).  Those passes, not the layers' GEMMs, were what made the
SNN cost about twice T x the QANN (eval/benchmarks/bench_snn.py).  One numba loop does it all in a
single pass that reads the input once and writes the counts once, with the counters of the trace
kept in registers.  The arithmetic is the QANN quantizer's, operation for operation in float64
(x / s, + 1/2, floor, clamp: IEEE-754 operations give the same bits in numba as in torch), so the
counts are the same integers; tests/test_convert.py checks the kernels against the torch path.

Threads.  The samples of a batch are independent (each has its own neurons; the counters of a
step are sums over samples), so a chunk is walked sample by sample, all T steps of a sample in a
row (its counts stay in L1), and the samples are spread over threads with `prange`.  Every kernel
is compiled twice from one body: serial (`prange` is `range`) and parallel; `threads()` picks, from
torch's intra-op thread count, so `torch.set_num_threads(n)` sets the SNN's threads as it sets the
GEMMs'.  The parallel variant runs only where there are >= 2 samples and enough work per call
(`_PAR_MIN_WORK`): below that, waking the pool costs more than it saves.  Per-sample counters go to
a [B, T, 5] buffer summed after the loop, so the counts do not depend on the thread count.
`SNMFM_PARALLEL_KERNELS=0` keeps the kernels on one thread whatever torch's count (an A/B switch:
numba's OpenMP pool and torch's are two pools, and both spin a while after a parallel region).
A CPU run on several threads is usually split into shards of samples, one thread each
(converters.snn, `SpikingModel._run_sharded`): each shard's thread has one torch thread, so its
kernels run the serial variant and the parallel one serves runs that are not split.

`available()` is False without numba or for tensors off the CPU; the callers then use torch.
"""
from __future__ import annotations

import os

import numpy as np
import torch

# numba is a core dependency; the torch path stays as the fallback and as the reference.  The
# import and the jit settings are snmfm's (snmfm/_kernels.py); the switch below is this module's.
from snmfm._kernels import _njit, numba

_DISABLED = False  # tests flip this to compare the torch path with the kernels
# Neuron-steps (T x M) below which a chunk runs on one thread: measured on 2 cores, a parallel
# launch costs about as much as walking 2^15 neuron-steps (tens of microseconds).
_PAR_MIN_WORK = 1 << 15
_PARALLEL = os.environ.get("SNMFM_PARALLEL_KERNELS", "1") != "0"

prange = numba.prange if numba is not None else range

if numba is not None:
    # Start numba's thread pool now, and give torch back its thread count: with the OpenMP
    # threading layer the pool's start resets this thread's OpenMP thread count to numba's (every
    # core), which torch reads as its own, so the first SNN run after torch.set_num_threads(1)
    # silently went on with 2 threads.
    _n = torch.get_num_threads()
    numba.get_num_threads()
    torch.set_num_threads(_n)


def available() -> bool:
    return numba is not None and not _DISABLED


def threads() -> int:
    """Threads the kernels use: torch's intra-op thread count, at most numba's pool size."""
    if numba is None or not _PARALLEL:
        return 1
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _inline(fn):
    """A helper of the kernels, inlined into them by numba (a call would keep LLVM from
    vectorising the loops around it)."""
    if numba is None:
        return fn
    return numba.njit(inline="always", cache=True, nogil=True, boundscheck=False)(fn)


def _twice(fn):
    """(serial, parallel) compilations of one kernel body; `_run` picks one per call."""
    serial = _njit(fn)
    if numba is None:
        return serial, serial
    return serial, numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)(fn)


def _run(pair, work: int, parts: int, *args):
    """Call the serial or the parallel variant of a kernel: parallel when more than one thread is
    allowed, the chunk has `work` >= _PAR_MIN_WORK neuron-steps and >= 2 independent `parts`."""
    n = threads()
    if n < 2 or parts < 2 or work < _PAR_MIN_WORK:
        return pair[0](*args)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)  # thread-local in numba; cheap
    return pair[1](*args)


# ---- per-sample building blocks, shared by the kernels ---------------------------------------
@_inline
def _targets(xt, o, s, qmin, qmax, r):
    """r[e] = the QANN quantizer of xt[o + e]: clamp(floor(x / s + 1/2), qmin, qmax)."""
    for e in range(r.shape[0]):
        v = np.floor(xt[o + e] / s + 0.5)
        r[e] = np.int32(np.minimum(np.maximum(v, qmin), qmax))


@_inline
def _active_rows(spk, row_len):
    """Rows of `row_len` neurons with >= 1 event; spk uint8 [per_sample], 1 where a neuron sent
    one.  Kept out of the walk: counters per row inside it (a short inner loop with a reduction
    and a branch per row) kept the walk scalar, 3-4x slower.  Rows of a multiple of 8 neurons
    are OR-ed as 64-bit words, without a branch: scanning byte by byte to each row's first event
    cost 0.3 ns per neuron and step once most rows were quiet (a settling network), a third of
    the walk with the trace; as words, 0.6 against 0.9 ns per neuron and step in all
    (tail-like inputs, one core).  Other row lengths stop at each row's first event."""
    rows = 0
    if row_len % 8 == 0:
        words = spk.view(np.uint64)
        per = row_len // 8
        for q in range(0, words.shape[0], per):
            acc = np.uint64(0)
            for k in range(q, q + per):
                acc |= words[k]
            rows += np.int64(acc != 0)
        return rows
    for q in range(0, spk.shape[0], row_len):
        for k in range(q, q + row_len):
            if spk[k] != 0:
                rows += 1
                break
    return rows


@_njit
def _finish(ps, stats, last, trace):
    """Sum the per-sample counters ps [B, T, 5] into stats [T, 5] (when `trace`); return the last
    step of the chunk with an event in any sample (-1: none)."""
    B = last.shape[0]
    if trace:
        T = stats.shape[0]
        for t in range(T):
            for k in range(5):
                acc = 0
                for b in range(B):
                    acc += ps[b, t, k]
                stats[t, k] = acc
    t_last = -1
    for b in range(B):
        t_last = max(t_last, last[b])
    return t_last


# ---- the kernels ---------------------------------------------------------------------------------
def _if_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace):
    """Advance one IF-neuron layer by a chunk of T steps.

    x      float64 [T, M]  accumulated input of each step (M = B * per_sample neurons)
    s      float           threshold (the quantizer step); qmin, qmax: the count's range (floats)
    n      int32 [M]       spike count before the chunk; updated in place to the count after it
    rprev  int32 [M]       target (QANN code of the input) of the step before the chunk; updated
                           (read and written only when `trace`)
    out    float32 [T, M]  count after each step (what the consumer reads; exact below 2^24)
    stats  int64 [T, 5]    per step: +1 spikes, -1 spikes, active rows (rows of `row_len` neurons
                           with >= 1 spike), neuron updates (input changed or spiked), sum of
                           |payload| (= spikes); only when `trace`, else left as they are
    last   int64 [B]       per sample, the last step of this chunk with a spike (-1: none); set here
    trace  bool            count the trace's statistics

    Returns the last step of the chunk with any spike (-1: none), so the caller needs no numpy
    reduction (this is called once per neuron layer and chunk: per-call overhead counts).

    Per sample and step three loops that LLVM vectorises over the sample's neurons: the targets
    into a small buffer that stays in L1, the walk with its counters as int32 sums, then (trace
    only, and only for a sample that spiked) which rows spiked.  Measured (M = 133,120 neurons,
    8 steps, one core): 1.3 ns per neuron and step without the trace, 1.7 with it.
    """
    T, M = x.shape
    B = M // per_sample
    ps = np.zeros((B if trace else 0, T, 5), np.int64)
    one = np.int32(1)
    mone = np.int32(-1)
    for b in prange(B):
        o = b * per_sample
        r = np.empty(per_sample, np.int32)
        spk = np.empty(per_sample, np.uint8)
        lb = -1
        for t in range(T):
            _targets(x[t], o, s, qmin, qmax, r)
            ot = out[t]
            a = np.int32(0)
            if trace:
                net = np.int32(0)
                u = np.int32(0)
                for e in range(per_sample):
                    re = r[e]
                    c = n[o + e]
                    d = min(max(re - c, mone), one)
                    c = np.int32(c + d)
                    n[o + e] = c
                    ot[o + e] = np.float32(c)
                    ad = abs(d)
                    spk[e] = np.uint8(ad)
                    a += ad
                    net += d
                    u += ad | np.int32(re != rprev[o + e])
                    rprev[o + e] = re
                ps[b, t, 0] = (a + net) // 2
                ps[b, t, 1] = (a - net) // 2
                ps[b, t, 3] = u
                ps[b, t, 4] = a
                if a > 0:
                    ps[b, t, 2] = _active_rows(spk, row_len)
            else:
                for e in range(per_sample):
                    c = n[o + e]
                    d = min(max(r[e] - c, mone), one)
                    c = np.int32(c + d)
                    n[o + e] = c
                    ot[o + e] = np.float32(c)
                    a += abs(d)
            if a > 0:
                lb = t
        last[b] = lb
    return _finish(ps, stats, last, trace)


def _if_chunk_gated(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace, gate):
    """`if_chunk` for the binary coding with gate="settled" (converters/codings/binary.py).

    gate  uint8 [T, B]  on entry: every site before this one is settled for sample b at step t
                        (the neurons of b may move); on exit: ... and so is this one (count ==
                        target for every neuron of b after the step).
    Other arguments and the return value as in `if_chunk`."""
    T, M = x.shape
    B = M // per_sample
    ps = np.zeros((B if trace else 0, T, 5), np.int64)
    one = np.int32(1)
    mone = np.int32(-1)
    for b in prange(B):
        o = b * per_sample
        r = np.empty(per_sample, np.int32)
        spk = np.empty(per_sample, np.uint8)
        lb = -1
        for t in range(T):
            _targets(x[t], o, s, qmin, qmax, r)
            ot = out[t]
            g = np.int32(gate[t, b] != 0)
            a = np.int32(0)
            net = np.int32(0)
            u = np.int32(0)
            off = np.int32(0)  # neurons of the sample not at their target after the step
            for e in range(per_sample):
                re = r[e]
                c = n[o + e]
                d = min(max(re - c, mone), one) * g
                c = np.int32(c + d)
                n[o + e] = c
                ot[o + e] = np.float32(c)
                ad = abs(d)
                spk[e] = np.uint8(ad)
                a += ad
                net += d
                off += np.int32(re != c)
                if trace:
                    u += ad | np.int32(re != rprev[o + e])
                    rprev[o + e] = re
            gate[t, b] = np.uint8(g == 1 and off == 0)
            if trace:
                ps[b, t, 0] = (a + net) // 2
                ps[b, t, 1] = (a - net) // 2
                ps[b, t, 3] = u
                ps[b, t, 4] = a
                if a > 0:
                    ps[b, t, 2] = _active_rows(spk, row_len)
            if a > 0:
                lb = t
        last[b] = lb
    return _finish(ps, stats, last, trace)


def _graded_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace):
    """One graded / sigma-delta layer over a chunk (converters/codings/graded.py): n_t = r_t, one
    event of payload r_t - n_{t-1} where that is nonzero.  Arguments as in `if_chunk`; stats
    [T, 5]: events with positive payload, with negative payload, active rows, neuron updates, sum
    of |payload|."""
    T, M = x.shape
    B = M // per_sample
    ps = np.zeros((B if trace else 0, T, 5), np.int64)
    for b in prange(B):
        o = b * per_sample
        r = np.empty(per_sample, np.int32)
        spk = np.empty(per_sample, np.uint8)
        lb = -1
        for t in range(T):
            _targets(x[t], o, s, qmin, qmax, r)
            ot = out[t]
            a = np.int32(0)
            if trace:
                p = np.int32(0)
                m = np.int32(0)
                u = np.int32(0)
                pa = np.int64(0)
                for e in range(per_sample):
                    re = r[e]
                    d = re - n[o + e]
                    n[o + e] = re
                    ot[o + e] = np.float32(re)
                    nz = np.int32(d != 0)
                    spk[e] = np.uint8(nz)
                    a += nz
                    p += np.int32(d > 0)
                    m += np.int32(d < 0)
                    pa += abs(d)
                    u += nz | np.int32(re != rprev[o + e])
                    rprev[o + e] = re
                ps[b, t, 0] = p
                ps[b, t, 1] = m
                ps[b, t, 3] = u
                ps[b, t, 4] = pa
                if a > 0:
                    ps[b, t, 2] = _active_rows(spk, row_len)
            else:
                for e in range(per_sample):
                    re = r[e]
                    a += np.int32(re != n[o + e])
                    n[o + e] = re
                    ot[o + e] = np.float32(re)
            if a > 0:
                lb = t
        last[b] = lb
    return _finish(ps, stats, last, trace)


def _changed_rows(x, prev, row_len, counts):
    """Rows (of `row_len` elements) of x [T, M] that differ from the step before (prev [M] before
    the first); NaN equals NaN.  counts int64 [T] receives the number of changed rows per step."""
    T, M = x.shape
    for t in prange(T):
        c = 0
        for r0 in range(0, M, row_len):
            for e in range(r0, r0 + row_len):
                a = x[t, e]
                b = prev[e] if t == 0 else x[t - 1, e]
                if a != b and not (a != a and b != b):
                    c += 1
                    break
        counts[t] = c


_IF = _twice(_if_chunk)
_IF_GATED = _twice(_if_chunk_gated)
_GRADED = _twice(_graded_chunk)
_CHANGED = _twice(_changed_rows)


def if_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace):
    return _run(_IF, x.size, x.shape[1] // per_sample, x, s, qmin, qmax, n, rprev, row_len, per_sample,
                out, stats, last, trace)


def if_chunk_gated(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace, gate):
    return _run(_IF_GATED, x.size, x.shape[1] // per_sample, x, s, qmin, qmax, n, rprev, row_len, per_sample,
                out, stats, last, trace, gate)


def graded_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace):
    return _run(_GRADED, x.size, x.shape[1] // per_sample, x, s, qmin, qmax, n, rprev, row_len, per_sample,
                out, stats, last, trace)


def changed_rows(x, prev, row_len, counts):
    return _run(_CHANGED, x.size, x.shape[0], x, prev, row_len, counts)


if_chunk.__doc__ = _if_chunk.__doc__
if_chunk_gated.__doc__ = _if_chunk_gated.__doc__
graded_chunk.__doc__ = _graded_chunk.__doc__
changed_rows.__doc__ = _changed_rows.__doc__
