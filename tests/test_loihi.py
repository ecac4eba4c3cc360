"""Silicon-calibrated Loihi chips: configs with a source per constant, per-event charging, payloads."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from converters.trace import ActivityTrace, SiteActivity
from neuro_hw import MemoryPolicy, load_hw_config, simulate
from neuro_hw.loihi import LoihiConfig
from neuro_hw.registry import CONFIG_DIR, read_config_file
from neuro_hw.tech import get_tech
from tests.test_registry import mlp


def trace_for(w, spikes_in, spikes_hidden, steps=4, payload_bits=0, coding="binary"):
    """A hand-made trace: `spikes_*` events per step at fc1's / fc2's input site."""
    def site(shape, ev):
        n = np.full(steps, ev, dtype=np.int64)
        return SiteActivity(kind="neuron", shape=shape, pos=n, neg=np.zeros(steps, np.int64),
                            active_rows=(n > 0).astype(np.int64), updates=n.copy(), payload_bits=payload_bits,
                            payload_abs=n * max(1, payload_bits))
    sites = {"fc1.quant": site((w.ops[0].in_elems,), spikes_in), "fc2.quant": site((w.ops[1].in_elems,), spikes_hidden)}
    return ActivityTrace(n_samples=1, steps=steps, t_settle=steps - 1, sites=sites,
                         t_settle_per_sample=[steps - 1], coding=coding)


def test_shipped_chips_carry_a_source_for_every_constant():
    for name in ("loihi1", "loihi2"):
        cfg = load_hw_config(name)
        assert isinstance(cfg, LoihiConfig) and set(cfg.sources) == set(cfg.c)
        assert all(len(s) > 10 for s in cfg.sources.values())
    assert load_hw_config("loihi1").node == "14nm" and load_hw_config("loihi2").c["chip.graded_spikes"]
    assert LoihiConfig.from_dict(load_hw_config("loihi2").to_dict()) == load_hw_config("loihi2")   # round trip


def test_a_missing_constant_or_a_constant_without_source_is_a_clear_error():
    d = read_config_file(CONFIG_DIR / "loihi1.toml")
    bad = copy.deepcopy(d)
    del bad["core"]["synapse"]["energy_process_spike"]
    with pytest.raises(ValueError, match=r"required constant \[core.synapse\] energy_process_spike is missing"):
        LoihiConfig.from_dict(bad)
    bad = copy.deepcopy(d)
    bad["core"]["soma"]["energy_spike_out"] = {"value": 69.3e-12}
    with pytest.raises(ValueError, match=r"\[core.soma\] energy_spike_out has no source"):
        LoihiConfig.from_dict(bad)
    bad = copy.deepcopy(d)
    bad["core"]["soma"]["energy_spike_out"] = 69.3e-12
    with pytest.raises(ValueError, match="must be a table"):
        LoihiConfig.from_dict(bad)


def test_binary_events_are_charged_the_published_per_event_energies():
    w = mlp(64, 48, 10)
    tr = trace_for(w, spikes_in=5, spikes_hidden=3, steps=4)
    r = simulate(w, tr, "loihi1")
    assert r.node == "14nm" and r.kind == "loihi"
    # 4 steps: fc1 5 spikes x 48 fan-out, fc2 3 spikes x 10, at 35.5 pJ per synaptic op
    assert r.breakdown_pj["synapse"] == pytest.approx(4 * (5 * 48 + 3 * 10) * 35.5, rel=1e-9)
    # every compartment (64 + 48 inputs + 10 outputs) visited at every step at 51.2 pJ
    assert r.breakdown_pj["soma_access"] == pytest.approx(4 * (64 + 48 + 10) * 51.2, rel=1e-9)
    assert r.breakdown_pj["spike_out"] == pytest.approx(4 * 8 * 69.3, rel=1e-9)
    assert sum(r.breakdown_pj.values()) == pytest.approx(r.energy_pj)
    # two layers: the chip needs 4 + 2 - 1 ticks, each with a barrier
    assert r.meta["barriers"] == 5


def test_evaluating_at_another_node_scales_every_energy_alike():
    w = mlp()
    tr = trace_for(w, 5, 3)
    own, at45 = simulate(w, tr, "loihi1"), simulate(w, tr, "loihi1", node="45nm")
    f = get_tech("45nm").scale / get_tech("14nm").scale
    assert at45.node == "45nm"
    for k in ("synapse", "soma_access", "spike_out", "message"):
        assert at45.breakdown_pj[k] == pytest.approx(own.breakdown_pj[k] * f, rel=1e-9)
    assert at45.latency_s == pytest.approx(own.latency_s)


def test_graded_payloads_need_a_chip_with_graded_spikes_wide_enough():
    w = mlp()
    tr = trace_for(w, 5, 3, payload_bits=9, coding="graded")
    with pytest.raises(ValueError, match=r"site 'fc1.quant' sends 9-bit graded payloads .* 'loihi1' has no graded spikes"):
        simulate(w, tr, "loihi1")
    wide = trace_for(w, 5, 3, payload_bits=30, coding="graded")
    with pytest.raises(ValueError, match="at most 24 payload bits"):
        simulate(w, wide, "loihi2")
    from neuro_hw import trace_problem
    assert "no graded spikes" in trace_problem("loihi1", tr) and trace_problem("loihi2", tr) is None
    g = simulate(w, tr, "loihi2")
    b = simulate(w, trace_for(w, 5, 3), "loihi2")
    # a graded event costs more than a binary one: payload x weight multiply, payload bits on the wire
    assert g.breakdown_pj["synapse"] > b.breakdown_pj["synapse"]
    assert g.breakdown_pj["message"] > b.breakdown_pj["message"]


def test_power_gating_and_streaming_apply_to_the_loihi_chips_too():
    w = mlp()
    tr = trace_for(w, 5, 3)
    on = simulate(w, tr, "loihi1")
    off = simulate(w, tr, "loihi1", policy=MemoryPolicy(power_gating=False))
    assert off.breakdown_pj["static"] / on.breakdown_pj["static"] == pytest.approx(128 / on.meta["powered_cores"])
    st = simulate(w, tr, "loihi1", policy="streamed")
    weight_bits = sum(o.params * 8 for o in w.ops)
    assert st.breakdown_pj["offchip"] == pytest.approx(weight_bits * 1300 / 64, rel=1e-9)
    assert math.isclose(st.energy_pj - on.energy_pj, st.breakdown_pj["offchip"] + st.breakdown_pj["static"]
                        - on.breakdown_pj["static"], rel_tol=1e-9)


def test_a_graded_run_skips_chips_without_graded_spikes_and_says_why():
    """eval.measure: an accelerator that cannot run the trace gets no report, and the reason."""
    import torch
    from eval.measure import measure
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task
    from neuro_hw import coding_problem
    assert "binary spikes only" in coding_problem("loihi1", "graded")
    assert coding_problem("loihi2", "graded") is None and coding_problem("loihi1", "binary") is None
    task = get_task("medical-wdbc")
    torch.manual_seed(0)
    model = task.build_model("tiny", seed=0)
    x = next(iter(task.batches("test", 8, 0, limit=8)))[0]
    calibrate(model, [(x,)] if not isinstance(x, tuple) else [x])
    q = quantize(model, w_bits=8, a_bits=4)
    m = measure(task, q, ["loihi1", "loihi2"], coding="graded", snn_examples=4)
    assert list(m.hw) == ["loihi2"] and "no graded spikes" in m.skipped["loihi1"]
