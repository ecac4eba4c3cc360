"""Fused CPU kernels of the SNN simulation (numba), with the statistics the ActivityTrace needs.

Why hand-written loops: a chunk of T time steps of one IF-neuron layer is, in torch, about fifteen
full passes over [T, B, ...] tensors (divide, round, clamp, cast, the step loop, cast back, then
diff / compare / reduce for the trace).  Those passes, not the layers' GEMMs, were what made the
SNN cost about twice T x the QANN (eval/benchmarks/bench_snn.py).  One numba loop does it all in a
single pass that reads the input once and writes the counts once, with the counters of the trace
kept in registers.  The arithmetic is the QANN quantizer's, operation for operation in float64
(x / s, + 1/2, floor, clamp: IEEE-754 operations give the same bits in numba as in torch), so the
counts are the same integers; tests/test_convert.py checks the kernels against the torch path.

`available()` is False without numba or for tensors off the CPU; the callers then use torch.
"""
from __future__ import annotations

import numpy as np

# numba is a core dependency; the torch path stays as the fallback and as the reference.  The
# import and the jit settings are snmfm's (snmfm/_kernels.py); the switch below is this module's.
from snmfm._kernels import _njit, numba

_DISABLED = False  # tests flip this to compare the torch path with the kernels


def available() -> bool:
    return numba is not None and not _DISABLED


@_njit
def if_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace):
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

    Per step and sample three loops that LLVM vectorises over the sample's neurons: the targets
    into a small buffer that stays in L1, the walk with its counters as int32 sums, then (trace
    only, and only for a sample that spiked) which rows spiked.  Keeping those apart matters: the
    counters per row inside the walk (a short inner loop with a reduction and a branch per row)
    kept the walk scalar, 3-4x slower.  Measured (M = 133,120 neurons, 8 steps, one core): 1.3 ns
    per neuron and step without the trace, 1.7 with it (was 4.6-5.6 for the per-row version).
    """
    T, M = x.shape
    B = M // per_sample
    last[:] = -1
    r = np.empty(per_sample, np.int32)
    spk = np.zeros(per_sample, np.int32)
    one = np.int32(1)
    mone = np.int32(-1)
    for t in range(T):
        xt = x[t]
        ot = out[t]
        pos = 0
        neg = 0
        rows = 0
        upd = 0
        for b in range(B):
            o = b * per_sample
            for e in range(per_sample):  # the QANN quantizer: clamp(floor(x / s + 1/2))
                v = np.floor(xt[o + e] / s + 0.5)
                r[e] = np.int32(np.minimum(np.maximum(v, qmin), qmax))
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
                    spk[e] = ad
                    a += ad
                    net += d
                    u += ad | np.int32(re != rprev[o + e])
                    rprev[o + e] = re
                pos += (a + net) // 2
                neg += (a - net) // 2
                upd += u
                if a > 0:
                    for q in range(0, per_sample, row_len):  # stop at a row's first spike
                        for k in range(q, q + row_len):
                            if spk[k] != 0:
                                rows += 1
                                break
            else:
                for e in range(per_sample):
                    c = n[o + e]
                    d = min(max(r[e] - c, mone), one)
                    c = np.int32(c + d)
                    n[o + e] = c
                    ot[o + e] = np.float32(c)
                    a += abs(d)
            if a > 0:
                last[b] = t
        if trace:
            stats[t, 0] = pos
            stats[t, 1] = neg
            stats[t, 2] = rows
            stats[t, 3] = upd
            stats[t, 4] = pos + neg
    t_last = -1
    for b in range(B):
        t_last = max(t_last, last[b])
    return t_last


@_njit
def if_chunk_gated(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace, gate):
    """`if_chunk` for the binary coding with gate="settled" (converters/codings/binary.py).

    gate  uint8 [T, B]  on entry: every site before this one is settled for sample b at step t
                        (the neurons of b may move); on exit: ... and so is this one (count ==
                        target for every neuron of b after the step).
    Other arguments and the return value as in `if_chunk`."""
    T, M = x.shape
    B = M // per_sample
    last[:] = -1
    r = np.empty(per_sample, np.int32)
    spk = np.zeros(per_sample, np.int32)
    one = np.int32(1)
    mone = np.int32(-1)
    for t in range(T):
        xt = x[t]
        ot = out[t]
        pos = 0
        neg = 0
        rows = 0
        upd = 0
        for b in range(B):
            o = b * per_sample
            for e in range(per_sample):
                v = np.floor(xt[o + e] / s + 0.5)
                r[e] = np.int32(np.minimum(np.maximum(v, qmin), qmax))
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
                spk[e] = ad
                a += ad
                net += d
                off += np.int32(re != c)
                if trace:
                    u += ad | np.int32(re != rprev[o + e])
                    rprev[o + e] = re
            gate[t, b] = np.uint8(g == 1 and off == 0)
            if trace:
                pos += (a + net) // 2
                neg += (a - net) // 2
                upd += u
                if a > 0:
                    for q in range(0, per_sample, row_len):
                        for k in range(q, q + row_len):
                            if spk[k] != 0:
                                rows += 1
                                break
            if a > 0:
                last[b] = t
        if trace:
            stats[t, 0] = pos
            stats[t, 1] = neg
            stats[t, 2] = rows
            stats[t, 3] = upd
            stats[t, 4] = pos + neg
    t_last = -1
    for b in range(B):
        t_last = max(t_last, last[b])
    return t_last


@_njit
def graded_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace):
    """One graded / sigma-delta layer over a chunk (converters/codings/graded.py): n_t = r_t, one
    event of payload r_t - n_{t-1} where that is nonzero.  Arguments as in `if_chunk`; stats
    [T, 5]: events with positive payload, with negative payload, active rows, neuron updates, sum
    of |payload|."""
    T, M = x.shape
    B = M // per_sample
    last[:] = -1
    r = np.empty(per_sample, np.int32)
    spk = np.zeros(per_sample, np.int32)
    for t in range(T):
        xt = x[t]
        ot = out[t]
        pos = 0
        neg = 0
        rows = 0
        upd = 0
        pabs = 0
        for b in range(B):
            o = b * per_sample
            for e in range(per_sample):
                v = np.floor(xt[o + e] / s + 0.5)
                r[e] = np.int32(np.minimum(np.maximum(v, qmin), qmax))
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
                    spk[e] = nz
                    a += nz
                    p += np.int32(d > 0)
                    m += np.int32(d < 0)
                    pa += abs(d)
                    u += nz | np.int32(re != rprev[o + e])
                    rprev[o + e] = re
                pos += p
                neg += m
                upd += u
                pabs += pa
                if a > 0:
                    for q in range(0, per_sample, row_len):
                        for k in range(q, q + row_len):
                            if spk[k] != 0:
                                rows += 1
                                break
            else:
                for e in range(per_sample):
                    re = r[e]
                    a += np.int32(re != n[o + e])
                    n[o + e] = re
                    ot[o + e] = np.float32(re)
            if a > 0:
                last[b] = t
        if trace:
            stats[t, 0] = pos
            stats[t, 1] = neg
            stats[t, 2] = rows
            stats[t, 3] = upd
            stats[t, 4] = pabs
    t_last = -1
    for b in range(B):
        t_last = max(t_last, last[b])
    return t_last


@_njit
def changed_rows(x, prev, row_len, counts):
    """Rows (of `row_len` elements) of x [T, M] that differ from the step before (prev [M] before
    the first); NaN equals NaN.  counts int64 [T] receives the number of changed rows per step."""
    T, M = x.shape
    for t in range(T):
        c = 0
        for r0 in range(0, M, row_len):
            for e in range(r0, r0 + row_len):
                a = x[t, e]
                b = prev[e] if t == 0 else x[t - 1, e]
                if a != b and not (a != a and b != b):
                    c += 1
                    break
        counts[t] = c
