"""eval.measure.measure: one SNN run shared by every accelerator that needs its trace, none when
no accelerator does; the HwReports equal direct neuro_hw.simulate calls."""
from __future__ import annotations

import math

import pytest

import eval.measure as measure_mod
from converters.trace import trim_trace
from eval.measure import measure, measure_model
from neuro_hw import extract_workload, simulate


@pytest.fixture(scope="module")
def wdbc():
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task
    task = get_task("medical-wdbc")
    model = task.build_model("tiny", seed=0).float().eval()  # untrained: SNN == QANN for any weights
    calibrate(model, list(task.batches("calib", 32, 0, limit=32)))
    return task, model, quantize(model, 8, 4)


def test_one_snn_run_drives_the_traced_accelerators_and_matches_direct_simulation(wdbc):
    task, _, qann = wdbc
    m = measure(task, qann, ["neuromorphic", "conventional"], snn_examples=8, name="wdbc")
    assert list(m.hw) == ["neuromorphic", "conventional"] and m.coding == "binary"
    assert m.snn["n_examples"] == 8 and m.snn["agreement"] == 1.0 and m.snn["settled"]
    assert m.hw_trace.steps == m.trace.t_settle <= m.trace.steps
    wl = extract_workload(qann, *m.example, name="wdbc")
    assert math.isclose(m.hw["neuromorphic"].energy_pj, simulate(wl, m.hw_trace, "neuromorphic").energy_pj)
    assert math.isclose(m.hw["conventional"].energy_pj, simulate(wl, None, "conventional").energy_pj)
    # the same run charged as a chip stopped after 2 steps: the trace cut to 2 steps
    assert math.isclose(m.charge("neuromorphic", 2).energy_pj,
                        simulate(wl, trim_trace(m.trace, 2), "neuromorphic").energy_pj)
    assert m.workload_info()["trace_steps_simulated"] == m.hw_trace.steps


def test_dense_accelerators_alone_run_no_snn(wdbc, monkeypatch):
    task, _, qann = wdbc

    def no_snn(*a, **k):
        raise AssertionError("the SNN ran although no accelerator needs its trace")

    monkeypatch.setattr(measure_mod, "measure_snn", no_snn)
    m = measure(task, qann, ["conventional"])
    assert m.snn is None and m.trace is None and list(m.hw) == ["conventional"]
    with pytest.raises(ValueError, match="no SNN ran"):
        m.charge("conventional", 4)


def test_measure_needs_an_accelerator(wdbc):
    task, _, qann = wdbc
    with pytest.raises(ValueError, match="at least one accelerator"):
        measure(task, qann, [])


def test_measure_model_keeps_the_studies_view(wdbc):
    task, model, qann = wdbc
    d = measure_model(task, model, w_bits=8, a_bits=4, snn_examples=8, T_values=(1, 2, 10_000), qann=qann)
    assert set(d["hw"]) == {"conventional", "neuromorphic"} and d["coding"] == "binary"
    assert set(d["hw_T"]) == {1, 2}  # 10,000 >= T_settle: the settle point itself
    assert set(d["hw_T"][1]) == {"neuromorphic"}  # only SNN-driven accelerators are charged per T
    e = [d["hw_T"][1]["neuromorphic"]["energy_pj"], d["hw_T"][2]["neuromorphic"]["energy_pj"],
         d["hw"]["neuromorphic"]["energy_pj"]]
    assert e == sorted(e)
    assert d["snn"]["agreement"] == 1.0
    # any list of accelerators, filed by name
    d3 = measure_model(task, model, w_bits=8, a_bits=4, snn_examples=4, T_values=(1,), qann=qann,
                       accelerators=["conventional", "neuromorphic-ideal", "neuromorphic"])
    assert list(d3["hw"]) == ["conventional", "neuromorphic-ideal", "neuromorphic"]
    assert set(d3["hw_T"][1]) == {"neuromorphic-ideal", "neuromorphic"}
    assert d3["accelerators"]["conventional"] == {"needs_trace": False}
