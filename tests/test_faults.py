"""Fault models and injection (issue 17): rate 0 changes nothing, injected counts follow the rate,
the same physical fault gives the same integers on the QANN and on the SNN, mitigations act, and
bad requests are clear errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from converters import convert
from converters.faults import EventFaults, FaultyRun
from snmfm.compress import calibrate, quantize
from snmfm.faults import (KINDS, FaultError, FaultSpec, Injector, Mitigation, check_fault, flip_bits,
                          flip_bitstream, flip_weights, rng_for, sample_positions)
from snmfm.models import build_model

FAST = settings(max_examples=25, deadline=None, derandomize=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("features", "tiny", n_features=30, n_classes=3).eval()
    x = torch.randn(6, 30)
    calibrate(m, [(x,)])
    return quantize(m, 8, 6), x


def _snn_out(snn, x, spec, mit=Mitigation(), n_steps=None):
    clean = snn.run(x, record=False)
    return FaultyRun(snn, spec, mitigation=mit).run(x, n_steps=n_steps or clean.steps, record=False).output


def _qann_out(qann, x, spec, mit=Mitigation()):
    inj = Injector(qann, spec, mitigation=mit)
    inj.batch(x.shape[0])
    with inj, torch.no_grad():
        return qann(x)


MITS = [Mitigation(), Mitigation(ecc=True, guard=True, tmr=("head",))]


# ---- rate 0 is the fault-free run, bit for bit -------------------------------------------------
@pytest.mark.parametrize("mit", MITS, ids=["plain", "mitigated"])
def test_rate_zero_leaves_every_fault_path_bitwise_equal(model, mit):
    qann, x = model
    with torch.no_grad():
        ref = qann(x)
    for kind in ("acc-bitflip", "stuck-neuron"):
        assert torch.equal(_qann_out(qann, x, FaultSpec(kind, 0.0, seed=3), mit), ref), kind
    q2 = copy.deepcopy(qann)
    flip_weights(q2, 0.0, seed=3, ecc=mit.ecc)
    with torch.no_grad():
        assert torch.equal(q2(x), ref)
    for coding in ("binary", "graded", "sigma-delta"):
        snn = convert(qann, coding=coding)
        for kind in ("acc-bitflip", "stuck-neuron", "spike-drop", "spike-duplicate", "payload-bitflip"):
            if coding == "binary" and kind == "payload-bitflip":
                continue
            out = _snn_out(snn, x, FaultSpec(kind, 0.0, seed=3), mit)
            assert torch.equal(out, ref), (coding, kind)
        assert all(u.fault is None for _, u in snn.neurons())  # hooks removed after the run
        dead = Injector(snn.net, FaultSpec("dead-core", 0.0), dead_outputs={"head": np.zeros(0, np.int64)})
        dead.batch(x.shape[0], 1)
        with dead:
            assert torch.equal(snn.run(x, record=False).output, ref)


# ---- counts follow the rate --------------------------------------------------------------------
@FAST
@given(n=st.integers(1, 200_000), rate=st.sampled_from([1e-4, 1e-3, 1e-2, 0.1, 0.5]),
       seed=st.integers(0, 2**31 - 1))
def test_sampled_fault_counts_match_the_rate_within_binomial_confidence(n, rate, seed):
    pos = sample_positions(n, rate, rng_for(seed, "t"))
    assert np.all(np.diff(pos) > 0) and (pos.size == 0 or (pos[0] >= 0 and pos[-1] < n))
    assert binomtest(pos.size, n, rate).pvalue > 1e-3


@FAST
@given(n=st.integers(1, 5000), width=st.sampled_from([4, 8, 16]), rate=st.sampled_from([1e-3, 1e-2, 0.2]),
       seed=st.integers(0, 2**31 - 1))
def test_flipped_bits_are_the_drawn_bits(n, width, rate, seed):
    rng = np.random.default_rng(seed)
    lo = -(1 << (width - 1))
    v = rng.integers(lo, -lo, size=n)
    out, log = flip_bitstream(v, width, rate, rng_for(seed, "w"))
    mask = (1 << width) - 1
    changed = sum(bin(int(a) & mask ^ int(b) & mask).count("1") for a, b in zip(v, out))
    assert changed == log["flipped"] == log["effective"]
    assert out.min() >= lo and out.max() < -lo
    assert binomtest(log["flipped"], n * width, rate).pvalue > 1e-3


def test_injected_accumulator_and_event_faults_match_the_rate(model):
    qann, x = model
    snn = convert(qann, coding="graded")
    for kind, rate in (("acc-bitflip", 1e-3), ("spike-drop", 0.05), ("payload-bitflip", 0.02)):
        fr = FaultyRun(snn, FaultSpec(kind, rate, seed=11))
        fr.run(x, n_steps=1, record=False)
        lg = fr.log
        assert lg["faults"] > 0 and binomtest(lg["faults"], lg["trials"], rate).pvalue > 1e-3, (kind, lg)


def test_two_complement_flips():
    assert flip_bits(np.array([3]), np.array([0]), np.array([7]), 8)[0] == 3 - 128   # sign bit
    assert flip_bits(np.array([-1]), np.array([0]), np.array([0]), 8)[0] == -2
    assert flip_bits(np.array([5]), np.array([0, 0]), np.array([1, 1]), 8)[0] == 5    # twice = none
    with pytest.raises(FaultError, match="8-bit"):
        flip_bits(np.array([300]), np.array([0]), np.array([0]), 8)


# ---- the same fault, the same integers on both sides --------------------------------------------
@pytest.mark.parametrize("coding", ["binary", "graded"])
def test_snn_of_faulty_weights_equals_faulty_qann(model, coding):
    qann, x = model
    q2 = copy.deepcopy(qann)
    log = flip_weights(q2, 5e-3, seed=5)
    assert log["effective"] > 0
    with torch.no_grad():
        ref, faulty = qann(x), q2(x)
    assert not torch.equal(ref, faulty)
    assert torch.equal(convert(q2, coding=coding).run(x, record=False).output, faulty)


@pytest.mark.parametrize("kind,rate", [("acc-bitflip", 2e-3), ("stuck-neuron", 0.05)])
def test_graded_snn_with_layer_faults_equals_qann_with_the_same_faults(model, kind, rate):
    """One step, the same draws (seed, layer, batch): the graded SNN and the QANN see the same
    flipped accumulators / stuck units and compute the same integers."""
    qann, x = model
    spec = FaultSpec(kind, rate, seed=2)
    q = _qann_out(qann, x, spec)
    with torch.no_grad():
        assert not torch.equal(q, qann(x))
    assert torch.equal(_snn_out(convert(qann, coding="graded"), x, spec, n_steps=1), q)


def test_binary_snn_settles_to_the_qann_with_the_same_stuck_units(model):
    qann, x = model
    spec = FaultSpec("stuck-neuron", 0.05, seed=4, stuck="max")
    assert torch.equal(_snn_out(convert(qann), x, spec), _qann_out(qann, x, spec))


# ---- mitigations ---------------------------------------------------------------------------------
def test_ecc_corrects_isolated_flips_and_keeps_double_ones():
    v = np.arange(-64, 64)
    out, log = flip_bitstream(v, 8, 1e-4, rng_for(1, "e"), ecc=True)
    assert log["bits"] == 16 * 72 and log["effective"] == 0 and np.array_equal(out, v)
    out, log = flip_bitstream(v, 8, 0.2, rng_for(1, "e"), ecc=True)   # most words hit twice or more
    assert 0 < log["effective"] <= log["flipped"]


def test_guard_and_tmr_restore_the_output_layer(model):
    qann, x = model
    with torch.no_grad():
        ref = qann(x)
    spec = FaultSpec("acc-bitflip", 0.05, seed=9)
    inj = Injector(qann, spec, mitigation=Mitigation(tmr=("head",)))
    # only the head is faulted here: TMR's vote removes every fault that hits one copy
    inj.layers = [(n, m) for n, m in inj.layers if n == "head"]
    inj.batch(x.shape[0])
    with inj, torch.no_grad():
        voted = qann(x)
    assert inj.log["faults"] > 0
    plain = Injector(qann, spec)
    plain.layers = [(n, m) for n, m in plain.layers if n == "head"]
    plain.batch(x.shape[0])
    with plain, torch.no_grad():
        hit = qann(x)
    assert not torch.equal(hit, ref)
    assert (voted - ref).abs().max() < (hit - ref).abs().max()


def test_guard_resets_accumulators_beyond_their_bound(model):
    qann, x = model
    with torch.no_grad():
        ref = qann(x)
    spec = FaultSpec("acc-bitflip", 1e-3, seed=1)
    hit = _qann_out(qann, x, spec)
    guarded = _qann_out(qann, x, spec, Mitigation(guard=True))
    assert (guarded - ref).abs().max() < (hit - ref).abs().max()


def test_receive_guard_keeps_counts_in_range(model):
    qann, x = model
    snn = convert(qann, coding="graded")
    seen = []
    spec = FaultSpec("payload-bitflip", 0.2, seed=3)
    ev = EventFaults(snn, spec, mitigation=Mitigation(guard=True))
    ev.batch(x.shape[0])
    with ev:
        for _, u in snn.neurons():
            inner = u.fault
            u.fault = (lambda f: (lambda unit, c: seen.append((unit, f(unit, c))) or seen[-1][1]))(inner)
        snn.run(x, record=False)
    assert ev.log["faults"] > 0
    for unit, c in seen:
        assert c.min() >= unit.qmin and c.max() <= unit.qmax


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "x"])
def test_rate_outside_unit_interval_is_an_error(rate):
    with pytest.raises(FaultError, match=r"\[0, 1\]"):
        FaultSpec("acc-bitflip", rate)


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(FaultError) as e:
        FaultSpec("cosmic-ray", 1e-3)
    assert all(k in str(e.value) for k in KINDS)


def test_kind_missing_on_a_side_or_coding_is_an_error(model):
    with pytest.raises(FaultError, match="conventional"):
        check_fault("spike-drop", 1e-3, "conventional")
    with pytest.raises(FaultError, match="payload"):
        check_fault("payload-bitflip", 1e-3, "neuromorphic", "binary")
    qann, _ = model
    with pytest.raises(FaultError, match="payload"):
        FaultyRun(convert(qann), FaultSpec("payload-bitflip", 1e-3))
    with pytest.raises(FaultError, match="flip_weights"):
        FaultyRun(convert(qann), FaultSpec("weight-bitflip", 1e-3))
    with pytest.raises(FaultError, match="TMR"):
        Injector(qann, FaultSpec("acc-bitflip", 1e-3), mitigation=Mitigation(tmr=("nope",)))


# ---- the study's shortcuts are exact: an empty draw is the fault-free run ----------------------
def _changed_acc_bits(qann, x, spec, mit=Mitigation()):
    """Bits flipped in the accumulators, counted from what the hooks wrote: popcount of the XOR of
    each layer's fault-free and written accumulator (32-bit words), independent of the log."""
    from snmfm.faults.inject import _affine
    handles, seen = [], {}
    inj = Injector(qann, spec, mitigation=mit)
    inj.batch(x.shape[0], 1)
    with inj, torch.no_grad():
        for name, m in inj.layers:  # runs after the injector's hook: compare with a clean recompute
            def hook(mod, args, y, name=name):
                with torch.no_grad():
                    saved = mod._forward_hooks.copy()
                    mod._forward_hooks.clear()
                    try:
                        ref = mod(*args)
                    finally:
                        mod._forward_hooks.update(saved)
                s, b = _affine(mod, y.shape[1:])
                a0 = torch.round((ref.reshape(y.shape[0], -1).double() - b) / s).long().numpy()
                a1 = torch.round((y.reshape(y.shape[0], -1).double() - b) / s).long().numpy()
                x_ = (a0 ^ a1) & 0xFFFFFFFF
                seen[name] = int(sum(bin(int(v)).count("1") for v in x_[x_ != 0]))
            handles.append(m.register_forward_hook(hook))
        try:
            qann(x)
        finally:
            for h in handles:
                h.remove()
    return sum(seen.values()), inj


@FAST
@given(rate=st.sampled_from([1e-4, 1e-3, 1e-2]), seed=st.integers(0, 2**31 - 1))
def test_flipped_accumulator_bits_match_the_rate_within_binomial_confidence(model, rate, seed):
    """Counted from the integers the layers hand on (not from the injector's log): the number of
    accumulator bits flipped is Binomial(accumulators x 32, rate)."""
    from snmfm.faults import layer_shapes
    qann, x = model
    spec = FaultSpec("acc-bitflip", rate, seed=seed)
    flips, inj = _changed_acc_bits(qann, x, spec)
    shapes = layer_shapes(qann, x)
    n_bits = x.shape[0] * sum(s["out"] for s in shapes.values()) * 32   # from the shapes alone
    assert flips == inj.log["faults"]
    assert binomtest(flips, n_bits, rate).pvalue > 1e-3, (flips, n_bits)


@FAST
@given(rate=st.sampled_from([1e-3, 1e-2, 0.1]), seed=st.integers(0, 2**31 - 1))
def test_dropped_events_match_the_rate_within_binomial_confidence(model, rate, seed):
    """Graded (one step, one event per nonzero code): every dropped event is a received count of 0
    where the site sent a nonzero code; counted against the events of the fault-free run."""
    qann, x = model
    snn = convert(qann, coding="graded")
    sent, got = {}, {}
    ev = EventFaults(snn, FaultSpec("spike-drop", rate, seed=seed))
    ev.batch(x.shape[0])
    with ev:
        for name, u in snn.neurons():
            inner = u.fault

            def wrap(unit, c, inner=inner, name=name):
                sent[name] = c.clone()
                got[name] = inner(unit, c)
                return got[name]
            u.fault = wrap
        snn.run(x, record=False)
    events = sum(int((c != 0).sum()) for c in sent.values())
    dropped = sum(int(((sent[n] != 0) & (got[n] == 0)).sum()) for n in sent)
    assert int(((torch.cat([g.reshape(-1) for g in got.values()]) != 0)
                & (torch.cat([s.reshape(-1) for s in sent.values()]) == 0)).sum()) == 0
    assert dropped == ev.log["faults"] and events == ev.log["events"]
    assert binomtest(dropped, events, rate).pvalue > 1e-3, (dropped, events)


@pytest.mark.parametrize("coding", ["binary", "graded", "sigma-delta"])
def test_predicted_empty_event_draws_are_the_fault_free_run(model, coding):
    from converters.faults import events_of_run, predict_event_faults
    qann, x = model
    x = x[:3] if coding == "binary" else x   # binary runs ~100 steps: fewer inputs and draws
    snn = convert(qann, coding=coding)
    clean, chunks = events_of_run(snn, x, index=2, record=False)
    pbits = {n: u.payload_bits for n, u in snn.neurons()}
    kinds = ("spike-drop", "spike-duplicate") + (() if coding == "binary" else ("payload-bitflip",))
    rates = (1e-7, 1e-4) if coding == "binary" else (1e-6, 1e-5, 1e-4, 1e-3)
    seen = set()
    for kind in kinds:
        for rate in rates:
            for seed in range(4 if coding == "binary" else 6):
                spec = FaultSpec(kind, rate, seed=seed)
                pred = predict_event_faults(chunks, spec, 2, pbits)
                fr = FaultyRun(snn, spec)
                out = fr.run(x, index=2, record=False)
                assert (pred["faults"] == 0) == (fr.log["faults"] == 0), (kind, rate, seed, pred, fr.log)
                if pred["faults"] == 0:
                    assert pred["trials"] == fr.log["trials"]
                    assert torch.equal(out.output, clean.output) and out.steps == clean.steps
                seen.add(pred["faults"] == 0)
    assert seen == {True, False}  # both cases occurred


@pytest.mark.parametrize("kind", ["acc-bitflip", "stuck-neuron"])
def test_predicted_empty_layer_draws_are_the_fault_free_run(model, kind):
    from snmfm.faults import layer_shapes
    qann, x = model
    shapes = layer_shapes(qann, x)
    with torch.no_grad():
        ref = qann(x)
    seen = set()
    for mit in (Mitigation(), Mitigation(guard=True, tmr=("head",))):
        for rate in (1e-6, 1e-4, 1e-3, 1e-2, 0.05):
            for seed in range(5):
                spec = FaultSpec(kind, rate, seed=seed)
                inj = Injector(qann, spec, mitigation=mit)
                pred = inj.predict(x.shape[0], 4, shapes)
                inj.batch(x.shape[0], 1, 4)
                with inj, torch.no_grad():
                    out = qann(x)
                if kind == "acc-bitflip":
                    assert pred["faults"] == inj.log["faults"] and pred["trials"] == inj.log["trials"]
                if pred["faults"] == 0:
                    assert torch.equal(out, ref)
                seen.add(pred["faults"] == 0)
    assert seen == {True, False}


def _numpy_event_hook(ev, name, unit):
    """The first (numpy) implementation of EventFaults' hook: the reference the torch one must
    equal bit for bit."""
    pb = unit.payload_bits

    def fault(unit, c):
        steps = c.shape[0] // ev.B
        cv = c.detach().reshape(steps, -1).cpu().numpy().astype(np.int64)
        st_ = ev._state.get(name)
        if st_ is None:
            z = np.zeros(cv.shape[1], np.int64)
            st_ = ev._state[name] = {"prev": z, "recv": z.copy(), "chunk": 0}
        prev = np.vstack([st_["prev"][None, :], cv[:-1]])
        e = cv - prev
        nz = np.flatnonzero(e)
        st_["prev"] = cv[-1].copy()
        st_["chunk"] += 1
        trials = nz.size * (pb if ev.spec.kind == "payload-bitflip" else 1)
        pos = sample_positions(trials, ev.spec.rate, rng_for(ev.spec.seed, "events", name, ev.batch_index,
                                                                st_["chunk"]))
        ev.log["faults"] += int(pos.size)
        d = np.zeros(e.size, np.int64)
        ef = e.reshape(-1)
        if pos.size and ev.spec.kind == "spike-drop":
            d[nz[pos]] = -ef[nz[pos]]
        elif pos.size and ev.spec.kind == "spike-duplicate":
            d[nz[pos]] = ef[nz[pos]]
        elif pos.size:
            evs, inv = np.unique(pos // pb, return_inverse=True)
            old = ef[nz[evs]]
            d[nz[evs]] = flip_bits(old, inv, pos % pb, pb) - old
        d = d.reshape(e.shape)
        if not d.any() and np.array_equal(st_["recv"], prev[0]):
            st_["recv"] = cv[-1].copy()
            return c
        if ev.mit.guard:
            recv = np.empty_like(cv)
            r = st_["recv"]
            for t in range(steps):
                r = np.clip(r + e[t] + d[t], unit.qmin, unit.qmax)
                recv[t] = r
        else:
            recv = st_["recv"][None, :] + np.cumsum(e + d, axis=0)
        st_["recv"] = recv[-1].copy()
        return torch.from_numpy(recv.astype(np.float64)).to(c.dtype).view(c.shape)
    return fault


@pytest.mark.parametrize("coding", ["binary", "graded", "sigma-delta"])
def test_event_hook_equals_the_numpy_reference(model, coding):
    qann, x = model
    x = x[:3] if coding == "binary" else x
    snn = convert(qann, coding=coding)
    clean = snn.run(x, record=False).output
    kinds = ("spike-drop", "spike-duplicate") + (() if coding == "binary" else ("payload-bitflip",))
    changed = 0
    for kind in kinds:
        for mit in (Mitigation(), Mitigation(guard=True)):
            for rate, seed in ((1e-2, 1), (0.1, 2)) if coding == "binary" else ((1e-3, 0), (1e-2, 1), (0.1, 2)):
                spec = FaultSpec(kind, rate, seed=seed)
                fr = FaultyRun(snn, spec, mitigation=mit)
                a = fr.run(x, record=False)
                ref = EventFaults(snn, spec, mitigation=mit)
                ref.batch(x.shape[0])
                with ref:
                    for name, u in snn.neurons():
                        u.fault = _numpy_event_hook(ref, name, u)
                    b = snn.run(x, record=False)
                assert torch.equal(a.output, b.output) and a.steps == b.steps, (kind, mit, rate)
                assert fr.log["faults"] == ref.log["faults"]
                changed += not torch.equal(a.output, clean)
    assert changed > 0
