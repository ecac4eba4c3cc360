"""converters.trace.merge_traces / trim_trace: traces of disjoint batches become one, and a trace is
cut to the steps a chip would run."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.trace import ActivityTrace, SiteActivity, merge_traces, trim_trace


def _trace(steps: int, n: int, rng, settle: int | None) -> ActivityTrace:
    sites = {}
    for name, kind in (("a.quant", "neuron"), ("b.ln", "nonspiking")):
        c = {k: rng.integers(0, 50, steps).astype(np.int64) for k in ("pos", "neg", "active_rows", "updates")}
        if kind == "nonspiking":
            c["pos"][:] = 0
            c["neg"][:] = 0
        sites[name] = SiteActivity(kind=kind, shape=(4, 8), extra={"tag": name}, **c)
    return ActivityTrace(n_samples=n, steps=steps, t_settle=settle, sites=sites,
                         t_settle_per_sample=[settle or steps] * n)


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_merge_sums_counts_per_step_and_pads_shorter_runs(lengths, seed):
    rng = np.random.default_rng(seed)
    traces = [_trace(s, i + 1, rng, s - 1 if s > 1 else None) for i, s in enumerate(lengths)]
    m = merge_traces(traces)
    assert m.steps == max(lengths) and m.n_samples == sum(t.n_samples for t in traces)
    assert m.t_settle_per_sample == [v for t in traces for v in t.t_settle_per_sample]
    settles = [t.t_settle for t in traces]
    assert m.t_settle == (None if None in settles else max(settles))
    for name in ("a.quant", "b.ln"):
        for k in ("pos", "neg", "active_rows", "updates"):
            want = np.zeros(m.steps, dtype=np.int64)
            for t in traces:
                want[:t.steps] += getattr(t.sites[name], k)
            assert np.array_equal(getattr(m.sites[name], k), want)
        assert m.sites[name].kind == traces[0].sites[name].kind and m.sites[name].shape == (4, 8)
    assert m.total_spikes() == sum(t.total_spikes() for t in traces)
    # the inputs are not modified
    assert all(t.steps == s for t, s in zip(traces, lengths))


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 40), cut=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_trim_keeps_exactly_the_first_steps(steps, cut, seed):
    t = _trace(steps, 3, np.random.default_rng(seed), None)
    r = trim_trace(t, cut)
    assert r.steps == min(steps, cut) and r.n_samples == 3
    for name, s in t.sites.items():
        for k in ("pos", "neg", "active_rows", "updates"):
            assert np.array_equal(getattr(r.sites[name], k), getattr(s, k)[:cut])
    assert np.array_equal(r.spikes_per_step(), t.spikes_per_step()[:cut])


def test_merge_of_nothing_and_trim_to_zero_are_errors():
    with pytest.raises(ValueError, match="at least one trace"):
        merge_traces([])
    with pytest.raises(ValueError, match="at least 1"):
        trim_trace(_trace(5, 1, np.random.default_rng(0), None), 0)


def test_merged_trace_round_trips_through_json():
    rng = np.random.default_rng(1)
    m = merge_traces([_trace(4, 1, rng, 3), _trace(7, 2, rng, 6)])
    back = ActivityTrace.from_dict(m.to_dict())
    assert back.steps == 7 and np.array_equal(back.sites["a.quant"].pos, m.sites["a.quant"].pos)


def test_payload_counts_merge_and_codings_must_agree():
    rng = np.random.default_rng(2)
    a, b = _trace(3, 1, rng, 2), _trace(5, 1, rng, 4)
    for t in (a, b):
        t.coding = "graded"
        for s in t.sites.values():
            s.payload_abs = 3 * (s.pos + s.neg)
            s.payload_bits = 5
    m = merge_traces([a, b])
    assert m.coding == "graded" and m.sites["a.quant"].payload_bits == 5
    want = np.zeros(5, dtype=np.int64)
    want[:3] += a.sites["a.quant"].payload_abs
    want += b.sites["a.quant"].payload_abs
    assert np.array_equal(m.sites["a.quant"].payload_abs, want)
    assert np.array_equal(trim_trace(m, 2).sites["a.quant"].payload_abs, want[:2])
    b.coding = "binary"
    with pytest.raises(ValueError, match="different codings"):
        merge_traces([a, b])
