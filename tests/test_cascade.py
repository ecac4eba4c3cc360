"""Cascades: threshold calibration meets its tolerance, bad input fails clearly, the call log is
what eval charges, and the real run equals the offline replay."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snmfm.cascade import (NEVER, CalibrationError, CallLog, Cascade, CascadeError, Member, Readout,
                           model_member, record_members, self_test_ops)
from snmfm.cascade.risk import binom_ucb, min_queries
from snmfm.tasks import Batch


def table_member(name, logits, size="", placement="conventional", form="qann"):
    """A member that looks its answer up by query id (inputs: ids [B, 1])."""
    table = torch.as_tensor(logits, dtype=torch.float64)
    return Member(name, lambda ids: table[ids[:, 0]], form=form, size=size, placement=placement,
                  features=lambda ids: table[ids[:, 0]])


def synthetic(n=400, K=4, seed=0, small_acc=0.8, large_acc=0.95):
    """Targets, a small member whose confidence tracks its correctness, a large one."""
    g = np.random.default_rng(seed)
    y = g.integers(0, K, n)

    def logits(acc, sharp):
        right = g.random(n) < acc
        pred = np.where(right, y, (y + 1 + g.integers(0, K - 1, n)) % K)
        z = g.normal(0, 0.3, (n, K))
        conf = np.where(right, sharp * (1 + g.random(n)), sharp * g.random(n))
        z[np.arange(n), pred] += conf
        return z
    return y, logits(small_acc, 4.0), logits(large_acc, 6.0)


def batches(y, bs=64):
    ids = torch.arange(len(y))[:, None]
    t = torch.as_tensor(y)
    return [Batch((ids[i:i + bs],), t[i:i + bs]) for i in range(0, len(y), bs)]


def make(y, zs, zl, test="max_prob"):
    return Cascade([table_member("small", zs, "small"), table_member("large", zl, "large")], self_test=test)


@pytest.mark.parametrize("method,tol", [("empirical", 0.005), ("crc", 0.02), ("ltt", 0.03)])
def test_calibrated_thresholds_meet_tolerance_on_calib(method, tol):
    y, zs, zl = synthetic()
    c = make(y, zs, zl)
    rec = c.record(batches(y))
    cal = c.calibrate(rec, tolerance=tol, method=method, delta=0.1)
    preds, exit_, _ = c.simulate(rec)
    acc = float((preds == rec.targets).all(-1).double().mean())
    ref = float(rec.correct("large").double().mean())
    assert ref - acc <= tol + 1e-12
    assert cal.accuracy == pytest.approx(acc) and cal.reference_accuracy == pytest.approx(ref)
    assert 0 < cal.escalation_rate < 1 and (exit_ == 0).any()   # some queries stop early
    assert cal.expected_cost < cal.reference_cost + 1.0          # cheaper than running both always


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), tol=st.floats(0.0, 0.1), acc=st.floats(0.3, 0.99))
def test_empirical_calibration_meets_tolerance_or_says_best(seed, tol, acc):
    y, zs, zl = synthetic(n=120, seed=seed, small_acc=acc)
    c = make(y, zs, zl)
    rec = c.record(batches(y))
    try:
        c.calibrate(rec, tolerance=tol, method="empirical")
    except CalibrationError as e:
        assert e.best > tol and "best achievable" in str(e)
        return
    preds, _, _ = c.simulate(rec)
    drop = float(rec.correct("large").double().mean() - (preds == rec.targets).all(-1).double().mean())
    assert drop <= tol + 1e-12


def test_unreachable_tolerance_raises_with_the_best_achievable():
    y, zs, zl = synthetic(n=180)
    c = make(y, zs, zl)
    rec = c.record(batches(y))
    with pytest.raises(CalibrationError, match="best achievable") as e:
        c.calibrate(rec, tolerance=-0.2, method="empirical")
    assert math.isfinite(e.value.best) and e.value.best > -0.2
    # half a point cannot be certified on 180 queries: ltt says how many it would need
    with pytest.raises(CalibrationError, match=f"at least {min_queries(0.005, 'ltt', 0.1)}"):
        c.calibrate(rec, tolerance=0.005, method="ltt", delta=0.1)
    cal = c.calibrate(rec, tolerance=0.005, method="ltt", on_infeasible="escalate")
    assert cal.thresholds == [NEVER] and cal.escalation_rate == 1.0
    assert min_queries(0.005, "ltt", 0.1) == 460 and min_queries(0.005, "crc") == 199
    assert binom_ucb(0, 460, 0.1) <= 0.005 < binom_ucb(0, 459, 0.1)


def test_members_that_disagree_on_the_task_raise():
    y, zs, zl = synthetic()
    two = table_member("two", np.zeros((len(y), 2)))
    c = Cascade([table_member("small", zs), two], self_test="max_prob")
    with pytest.raises(CascadeError, match="disagree on the task"):
        c.record(batches(y))
    with pytest.raises(CascadeError, match="agreement"):
        Cascade([table_member("a", zs), table_member("b", zl)], self_test="agreement")
    with pytest.raises(CascadeError, match="spike-driven chip 'loihi2'"):   # names are data
        Member("x", lambda x: x, form="fp32", placement="loihi2", spiking=True)
    assert Member("y", lambda x: x, form="snn", placement="my-chip").placement == "my-chip"


def test_online_run_equals_offline_replay_and_logs_every_call():
    y, zs, zl = synthetic(n=300, K=5)
    c = Cascade([table_member("s", zs), (table_member("m", zs + 0.1 * zl), table_member("m2", zl)),
                 table_member("l", zl)], self_test=["entropy", "agreement"])
    rec = c.record(batches(y[:200]))
    c.calibrate(rec, tolerance=0.05, method="empirical", search="grid")
    test = batches(y)[3:]           # queries 192.. (overlap is fine: a replay check)
    trec = record_members(c.members, test, c.readout)
    preds, exit_, log = c.simulate(trec)
    r = c.evaluate(test)
    assert r["log"].merged().to_dict() == log.to_dict()
    assert r["accuracy"] == pytest.approx(float((preds == trec.targets).all(-1).double().mean()))
    per = log.calls_per_member()
    assert per["s"] == trec.n and per.get("m", 0) == per.get("m2", 0) == int((exit_ >= 1).sum())
    assert per.get("l", 0) == int((exit_ == 2).sum())
    assert CallLog.from_dict(log.to_dict()).to_dict() == log.to_dict()
    assert sum(log.exit_fractions()) == pytest.approx(1.0)


def test_escalating_everything_is_the_reference():
    y, zs, zl = synthetic()
    c = make(y, zs, zl)
    rec = c.record(batches(y))
    preds, exit_, log = c.simulate(rec, [NEVER])
    assert torch.equal(preds, rec.members["large"].preds) and (exit_ == 1).all()
    assert log.escalation_rate == 1.0


def test_probe_and_generation_self_tests():
    y, zs, zl = synthetic(n=300)
    c = make(y, zs, zl, test="probe")
    rec = c.record(batches(y))
    cal = c.calibrate(rec, tolerance=0.02, method="empirical", probe_fit="split")
    assert cal.probe["n_fit"] == 150 and cal.n == 150 and c.stages[0].probe is not None
    cal = c.calibrate(rec, tolerance=0.02, method="empirical")          # cross-fitted: every query
    assert cal.probe["folds"] == 5 and cal.n == 300
    preds, _, _ = c.simulate(rec)                                        # the refit probe deployed
    assert float((preds == rec.targets).all(-1).double().mean()) > 0.9
    assert self_test_ops("probe", 4, 1, feature_dim=4)["fp_mul"] >= 7
    always = make(y, zl, zl, test="probe")
    truth = always.record(batches(y)).members["small"].preds[:, 0].numpy()  # never wrong: nothing to learn
    with pytest.raises(CalibrationError, match="right and wrong"):
        always.calibrate(always.record(batches(truth)), tolerance=0.02, method="empirical")
    # generation: greedy answers of two tokens, confidence = sequence probability
    V, P = 6, 3
    def lm(images, tokens):
        out = torch.full((tokens.shape[0], tokens.shape[1], V), -3.0, dtype=torch.float64)
        out[..., (tokens.shape[1] + 1) % V] = 3.0           # deterministic next token
        return out
    ro = Readout("generate", prompt_len=P, answer_len=2, eos=None, token_arg=1)
    preds, logits = ro.answer(lm, (torch.zeros(4, 1), torch.zeros(4, P + 2, dtype=torch.long)))
    assert preds.tolist() == [[4, 5]] * 4 and logits.shape == (4, 2, V)


def test_call_log_charging_sums_its_parts():
    from eval.cascade import charge_log, self_test_cost, transfer_cost
    y, zs, zl = synthetic(n=200)
    c = Cascade([table_member("small", zs, placement="neuromorphic", form="snn"),
                 table_member("large", zl)], self_test="max_prob", thresholds=[0.9])
    r = c.run(torch.arange(200)[:, None])
    log = r.log
    hw = {"small": {"neuromorphic": {"energy_pj": 100.0, "latency_s": 1e-3, "static_power_w": 0.0},
                    "conventional": {"energy_pj": 10.0, "latency_s": 1e-6, "static_power_w": 0.0}},
          "large": {"conventional": {"energy_pj": 1000.0, "latency_s": 1e-5, "static_power_w": 0.0},
                    "neuromorphic": {"energy_pj": 5000.0, "latency_s": 1e-2, "static_power_w": 0.0}}}
    n_esc = int((r.exit_stage == 1).sum())
    assert 0 < n_esc < 200
    st_n = self_test_cost(log.self_tests[0].ops, "neuromorphic")
    for placement, e_small, e_large, test_cost in ((None, 100.0, 1000.0, st_n),
                                            ("conventional", 10.0, 1000.0, self_test_cost(log.self_tests[0].ops, "conventional"))):
        ch = charge_log(log, hw, placement)
        moved = transfer_cost(log.input_bits)["energy_pj"] * n_esc if placement is None else 0.0
        total = 200 * e_small + n_esc * e_large + 200 * test_cost["energy_pj"] + moved
        assert ch["total_pj"] == pytest.approx(total)
        assert ch["energy_pj"] == pytest.approx(total / 200)
        assert ch["wasted_pj"] == pytest.approx(n_esc * e_small)
        assert ch["members_pj"] == pytest.approx({"small": 200 * e_small, "large": n_esc * e_large})
        assert ch["self_tests_pj"] == pytest.approx(200 * test_cost["energy_pj"]) and test_cost["energy_pj"] > 0
        assert ch["transfer_pj"] == pytest.approx(moved)
    assert charge_log(log, hw, None)["transfer_pj"] > 0 and log.input_bits == 8  # int64 ids as bytes


def test_snn_member_answers_like_its_qann():
    from converters import convert
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task
    torch.manual_seed(0)
    task = get_task("vision-digits")
    m = task.build_model("tiny")
    calibrate(m, task.batches("calib", 32, limit=32))
    q = quantize(m, 4, 4)
    snn = model_member("tiny-snn", convert(q), size="tiny")
    qm = model_member("tiny-qann", q, size="tiny")
    assert (snn.form, snn.placement, qm.form, qm.placement) == ("snn", "neuromorphic", "qann", "conventional")
    batch = next(iter(task.batches("test", 8)))
    rec = record_members([snn, qm], [batch], Readout("classify"))
    assert torch.equal(rec.members["tiny-snn"].preds, rec.members["tiny-qann"].preds)
    assert torch.allclose(rec.members["tiny-snn"].features, rec.members["tiny-qann"].features)
