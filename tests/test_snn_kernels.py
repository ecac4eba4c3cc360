"""The neuron and trace kernels (converters._kernels) give the same integers on one thread and on
several: the samples of a chunk are walked in parallel, and the per-step counters are sums over
samples, so nothing may depend on the thread count."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from converters import _kernels

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba not installed")


def _chunk(kernel: str, variant: int, x, s, qmin, qmax, n0, row_len, per_sample, trace, gate=None):
    T, M = x.shape
    B = M // per_sample
    n = n0.copy()
    rprev = (n0 + 1).astype(np.int32) if trace else np.zeros(0, np.int32)
    out = np.full((T, M), np.nan, np.float32)
    stats = np.full((T, 5), -7, np.int64)
    last = np.full(B, -9, np.int64)
    pair = {"if": _kernels._IF, "gated": _kernels._IF_GATED, "graded": _kernels._GRADED}[kernel]
    args = [x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace]
    g = None
    if kernel == "gated":
        g = gate.copy()
        args.append(g)
    t_last = pair[variant](*args)
    return {"t_last": t_last, "n": n, "rprev": rprev, "out": out, "stats": stats if trace else None,
            "last": last, "gate": g}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["if", "gated", "graded"]), st.integers(1, 6), st.integers(1, 9), st.integers(1, 4),
       st.integers(1, 17), st.integers(2, 8), st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_parallel_kernels_equal_serial_kernels_on_random_chunks(kernel, T, B, rows, row_len, bits, signed,
                                                                trace, seed):
    rng = np.random.default_rng(seed)
    per_sample = rows * row_len
    qmax = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    qmin = -(2 ** (bits - 1)) if signed else 0
    x = np.cumsum(rng.normal(0, 2.0, (T, B * per_sample)), 0) * 2 ** bits * 0.05
    x[:, ::5] = x[0, ::5]  # some neurons with a constant input: quiet rows and samples occur
    n0 = rng.integers(qmin, qmax + 1, B * per_sample).astype(np.int32)
    gate = (rng.random((T, B)) < 0.7).astype(np.uint8)
    a = _chunk(kernel, 0, x, 0.37, float(qmin), float(qmax), n0, row_len, per_sample, trace, gate)
    b = _chunk(kernel, 1, x, 0.37, float(qmin), float(qmax), n0, row_len, per_sample, trace, gate)
    for k in a:
        if a[k] is None:
            assert b[k] is None
        else:
            assert np.array_equal(a[k], b[k]), k
    if trace:  # the counters add up: events of either sign, |payload| >= events
        assert (a["stats"][:, 4] >= a["stats"][:, 0] + a["stats"][:, 1]).all()
    assert a["t_last"] == a["last"].max()


def test_changed_rows_parallel_equals_serial_and_counts_nan_as_equal():
    rng = np.random.default_rng(0)
    T, rows, D = 6, 40, 8
    x = rng.normal(size=(T, rows * D))
    x[2] = x[1]
    x[3, :D] += 1.0  # one changed row at step 3
    x[3, D:] = x[2, D:]
    x[4:, 3 * D] = np.nan  # NaN where NaN was: row 3 unchanged at step 5
    x[5, 3 * D + 1:4 * D] = x[4, 3 * D + 1:4 * D]
    prev = x[0].copy()
    prev[D:2 * D] += 1
    counts = [np.full(T, -1, np.int64) for _ in range(2)]
    for v in (0, 1):
        _kernels._CHANGED[v](x, prev, D, counts[v])
    assert np.array_equal(counts[0], counts[1])
    assert counts[0].tolist()[:4] == [1, rows, 0, 1]
    assert counts[0][5] == rows - 1  # every row but the one whose NaN stayed NaN changed


def test_thread_count_follows_torch_and_picks_the_variant(monkeypatch):
    """`threads()` is torch's intra-op count (capped by numba's pool); the dispatcher runs the
    serial variant for one thread or tiny chunks, the parallel one otherwise."""
    called = []
    pair = (lambda *a: called.append("serial"), lambda *a: called.append("parallel"))
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert _kernels.threads() == 1
        _kernels._run(pair, 1 << 20, 8)
        monkeypatch.setattr(_kernels, "threads", lambda: 2)
        _kernels._run(pair, 1 << 20, 8)
        _kernels._run(pair, 10, 8)       # too little work
        _kernels._run(pair, 1 << 20, 1)  # one sample: nothing to split
    finally:
        torch.set_num_threads(prev)
    assert called == ["serial", "parallel", "serial", "serial"]


@pytest.mark.parametrize("name,coding", [("text", "binary"), ("vit", "graded"), ("decoder", "binary")])
def test_snn_run_on_two_threads_equals_one_thread_and_the_qann(monkeypatch, name, coding):
    """End to end, with the parallel kernels forced on every site (no minimum work): the same
    outputs at every step and the same trace on 1 and 2 threads, and the QANN's output."""
    from converters import convert
    from snmfm.compress import calibrate, quantize
    from snmfm.models import build_model
    monkeypatch.setattr(_kernels, "_PAR_MIN_WORK", 0)
    torch.manual_seed(0)
    m = build_model(name, "tiny").eval()
    g = torch.Generator().manual_seed(1)

    def batch():
        if name == "vit":
            return (torch.rand(4, 1, 8, 8, generator=g) * 16,)
        return (torch.randint(0, 64, (4, 7), generator=g),)
    calibrate(m, [batch(), batch()])
    q = quantize(m, 8, 4)
    x = batch()
    prev = torch.get_num_threads()
    runs = []
    try:
        for th in (1, 2):
            torch.set_num_threads(th)
            runs.append(convert(q, coding).run(*x, keep_steps=True))
    finally:
        torch.set_num_threads(prev)
    a, b = runs
    assert torch.equal(a.per_step, b.per_step) and torch.equal(a.output, q(*x))
    assert a.trace.to_dict() == b.trace.to_dict()
    assert a.trace.total_events() > 0
