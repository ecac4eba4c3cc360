"""A CPU run split into shards of samples on threads, and quiet samples leaving a run, give exactly
the result of one run over the whole batch: outputs, steps, T_settle and the ActivityTrace."""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import converters.snn as snn_mod
from converters import convert
from snmfm.compress import calibrate, quantize
from snmfm.models import build_model


def _inputs(name: str, B: int, g: torch.Generator) -> tuple:
    return {"vit": lambda: (torch.rand(B, 1, 8, 8, generator=g) * 16,),
            "features": lambda: (torch.randn(B, 30, generator=g),),
            "text": lambda: (torch.randint(0, 256, (B, 7), generator=g), torch.ones(B, 7, dtype=torch.bool)),
            "decoder": lambda: (torch.randint(0, 256, (B, 9), generator=g),),
            "multimodal": lambda: (torch.rand(B, 1, 8, 8, generator=g) * 16,
                                   torch.randint(0, 64, (B, 4), generator=g))}[name]()


def _qann(name: str, a_bits: int, seed: int = 0):
    torch.manual_seed(seed)
    m = build_model(name, "tiny").eval()
    g = torch.Generator().manual_seed(100 + seed)
    calibrate(m, [_inputs(name, 4, g)])
    return quantize(m, 8, a_bits)


def _same(a, b) -> None:
    assert torch.equal(a.output, b.output)
    assert (a.steps, a.t_settle) == (b.steps, b.t_settle)
    assert (a.trace is None) == (b.trace is None)
    if a.trace is not None:
        assert a.trace.to_dict() == b.trace.to_dict()
    if a.per_step is not None:
        assert torch.equal(a.per_step, b.per_step)


@pytest.fixture
def modes(monkeypatch):
    """Set sharding and compaction for a run: modes(shard, compact)."""
    def set_modes(shard: bool, compact: bool) -> None:
        monkeypatch.setattr(snn_mod, "SHARDING", shard)
        monkeypatch.setattr(snn_mod, "COMPACTING", compact)
    return set_modes


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["vit", "features", "text", "decoder", "multimodal"]), st.integers(2, 7),
       st.integers(2, 3), st.sampled_from(["binary", "graded", "sigma-delta"]), st.booleans(),
       st.sampled_from([4, 6]), st.integers(0, 2**31 - 1))
@example("decoder", 7, 2, "binary", True, 4, 0)  # shards end at different steps; shared position lookups
def test_sharded_and_compacted_runs_equal_one_run_over_the_batch(name, B, threads, coding, record, a_bits, seed):
    q = _qann(name, a_bits)
    x = _inputs(name, B, torch.Generator().manual_seed(seed))
    snn = convert(q, coding)
    old = snn_mod.SHARDING, snn_mod.COMPACTING
    try:
        snn_mod.SHARDING, snn_mod.COMPACTING = False, False
        whole = snn.run(*x, record=record)
        snn_mod.SHARDING, snn_mod.COMPACTING = True, True
        split = snn.run(*x, record=record, threads=threads)
        one = snn.run(*x, record=record, threads=1)  # compaction alone
    finally:
        snn_mod.SHARDING, snn_mod.COMPACTING = old
    with torch.no_grad():
        assert torch.equal(whole.output, q(*x))
    _same(whole, split)
    _same(whole, one)


def test_compaction_happens_and_keeps_the_trace_of_quiet_samples(modes, monkeypatch):
    """Samples that settle early leave the batch (the calls see fewer samples), and the run's
    trace, per-sample settling steps included, is the whole run's."""
    q = _qann("vit", 8)
    x = torch.rand(6, 1, 8, 8) * 16
    x[:3] *= 0.05  # small codes: these samples settle long before the others
    snn = convert(q)
    modes(False, False)
    whole = snn.run(x)
    counts = [n.count.clone() for _, n in snn.neurons()]
    seen = []
    real = snn_mod._compact

    def spy(net, neurons, recorder, keep, active, held):
        seen.append((len(active), len(keep)))
        return real(net, neurons, recorder, keep, active, held)
    monkeypatch.setattr(snn_mod, "_compact", spy)
    modes(False, True)
    compact = snn.run(x)
    assert seen and seen[0][0] == 6 and all(k < b for b, k in seen)
    _same(whole, compact)
    # every sample's final counts and units' last inputs, as one run over the batch leaves them
    for c, (_, n) in zip(counts, snn.neurons()):
        assert torch.equal(c, n.count.to(c.dtype))
    units = whole.extra["unit_inputs"]
    assert units.keys() == compact.extra["unit_inputs"].keys() and units
    for k, v in units.items():
        assert torch.equal(v, compact.extra["unit_inputs"][k])
    assert min(whole.trace.t_settle_per_sample) < max(whole.trace.t_settle_per_sample)


def test_sharded_run_keeps_steps_and_leaves_the_neurons_and_threads_as_one_run(modes):
    q = _qann("decoder", 6)
    x = _inputs("decoder", 5, torch.Generator().manual_seed(1))
    snn = convert(q)
    modes(False, False)
    whole = snn.run(*x, keep_steps=True)
    counts = [n.count.clone() for _, n in snn.neurons()]
    modes(True, True)
    before = torch.get_num_threads()
    split = snn.run(*x, keep_steps=True, threads=3)
    assert torch.get_num_threads() == before
    _same(whole, split)
    for c, (_, n) in zip(counts, snn.neurons()):
        assert torch.equal(c, n.count.to(c.dtype))


def test_runs_that_cannot_be_split_are_not(modes):
    """Hooks, fault hooks, step functions and bad thread counts: no shards (or a clear error)."""
    q = _qann("vit", 4)
    x = torch.rand(4, 1, 8, 8) * 16
    snn = convert(q)
    modes(True, True)
    plan = lambda **kw: snn._shard_plan((x,), 4, x.device, kw.pop("threads", 2), None,  # noqa: E731
                                        **{"step_fn": None, "caches": None, "carry": False,
                                           "prev_units": None, **kw})
    assert plan() == 2 and plan(threads=8) == 4 and plan(threads=1) == 1
    assert plan(step_fn=lambda t, y: None) == 1
    h = snn.net.register_forward_hook(lambda m, a, o: None)
    assert plan() == 1
    h.remove()
    neuron = snn.neurons()[0][1]
    neuron.fault = lambda unit, counts: counts
    assert plan() == 1
    neuron.fault = None
    with pytest.raises(ValueError, match="threads must be >= 1"):
        snn.run(x, threads=0)


def test_a_torch_thread_count_of_one_is_kept_by_the_kernels():
    """Starting numba's pool used to reset torch's OpenMP thread count to every core."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        q = _qann("vit", 4)
        convert(q).run(torch.rand(3, 1, 8, 8) * 16)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_forked_child_runs_sharded_after_its_parent(modes):
    """The shards' thread pool of the parent does not exist in a forked child: it makes its own."""
    import multiprocessing as mp
    q = _qann("vit", 4)
    x = torch.rand(4, 1, 8, 8) * 16
    snn = convert(q)
    modes(True, True)
    ref = snn.run(x, threads=2).output  # the parent's pool now exists
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        out = pool.apply_async(_run_in_child, (snn, x)).get(timeout=120)
    assert torch.equal(out, ref)


def _run_in_child(snn, x):
    return snn.run(x, threads=2).output
