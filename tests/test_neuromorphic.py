"""The neuromorphic chip model: energy accounting, event counts, mapping, configs, speed."""
import copy
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters import ActivityTrace, convert
from neuro_hw.neuromorphic import (PARTS, NeuromorphicConfig, map_workload, simulate_neuromorphic,
                                   synthetic_trace)
from neuro_hw.neuromorphic.simulate import _Costs
from neuro_hw.report import HwReport
from neuro_hw.workload import extract_workload
from neuromorphic_helpers import tiny_vit_run

CONFIGS = Path(__file__).resolve().parents[1] / "neuro_hw" / "configs"
SYNAPTIC_PARTS = ("synaptic_sram", "accumulate", "neuron_update", "noc", "residual_add", "offchip")


def scaled(trace: ActivityTrace, factor: int) -> ActivityTrace:
    """The same trace with every neuron site's spikes and updates multiplied by `factor`."""
    t = copy.deepcopy(trace)
    for s in t.sites.values():
        if s.kind == "neuron":
            s.pos, s.neg, s.updates = s.pos * factor, s.neg * factor, s.updates * factor
    return t


def silent(trace: ActivityTrace) -> ActivityTrace:
    """No spike anywhere; every non-spiking unit evaluated once (step 1), then quiet."""
    t = copy.deepcopy(trace)
    for s in t.sites.values():
        if s.kind == "neuron":
            for k in ("pos", "neg", "active_rows", "updates"):
                setattr(s, k, np.zeros_like(getattr(s, k)))
        elif s.kind == "nonspiking":
            s.active_rows[1:] = 0
            s.updates[1:] = 0
    t.t_settle, t.t_settle_per_sample = 0, [0] * t.n_samples
    return t


def test_energy_breakdown_sums_to_total_and_names_every_part():
    _, _, w, _, res, _ = tiny_vit_run()
    r = simulate_neuromorphic(w, res.trace)
    assert set(r.breakdown_pj) == set(PARTS)
    assert sum(r.breakdown_pj.values()) == pytest.approx(r.energy_pj, rel=1e-12)
    assert r.latency_s == pytest.approx(r.cycles / 1e9)
    assert all(v >= 0 for v in r.breakdown_pj.values())
    assert {row["name"] for row in r.per_op} == {o.name for o in w.ops}
    assert 0 < r.spike_driven_fraction["ops"] <= 1 and 0 < r.spike_driven_fraction["energy"] < 1
    # every spike of every site becomes at least one packet
    assert r.meta["events"]["packets"] >= res.trace.total_spikes() / res.trace.n_samples


def test_zero_spikes_leave_only_static_sync_host_io_and_nonspiking_energy():
    _, _, w, _, res, _ = tiny_vit_run()
    r = simulate_neuromorphic(w, silent(res.trace))
    for p in SYNAPTIC_PARTS:
        assert r.breakdown_pj[p] == 0, p
    for p in ("static", "sync", "host_io", "nonspiking_units"):
        assert r.breakdown_pj[p] > 0, p
    assert r.spike_driven_fraction == {"ops": 0.0, "energy": 0.0}


def test_all_zero_input_into_unsigned_site_costs_only_fixed_energy():
    from test_synops import hand_mlp
    import torch
    net = hand_mlp()
    x = torch.zeros(2, 3, dtype=torch.float64)
    res = convert(net).run(x)
    assert res.trace.total_spikes() == 0
    r = simulate_neuromorphic(extract_workload(net, x), res.trace)
    assert {p for p, v in r.breakdown_pj.items() if v > 0} == {"static", "sync", "host_io"}


def test_doubling_the_spikes_doubles_the_synaptic_energy():
    _, _, w, _, res, _ = tiny_vit_run()
    cfg = NeuromorphicConfig.default()
    r1 = simulate_neuromorphic(w, res.trace, cfg)
    r2 = simulate_neuromorphic(w, scaled(res.trace, 2), cfg)
    for p in ("synaptic_sram", "accumulate", "neuron_update", "noc"):
        assert r2.breakdown_pj[p] == pytest.approx(2 * r1.breakdown_pj[p], rel=1e-12), p
    assert r2.breakdown_pj["nonspiking_units"] == pytest.approx(r1.breakdown_pj["nonspiking_units"])


def test_event_exact_totals_equal_the_analytical_path():
    _, _, w, _, res, rec = tiny_vit_run()
    cfg = NeuromorphicConfig.default().replace(**{"mode.event_exact": True, "cores.pack_ops": False})
    r = simulate_neuromorphic(w, res.trace, cfg, record=rec)
    chk = r.meta["event_exact_check"]
    assert chk["hops"]["exact"] > 0
    for k, v in chk.items():
        assert v["exact"] == pytest.approx(v["analytical"], rel=1e-12), k
    # the event-exact report equals the analytical one when the counts agree
    r0 = simulate_neuromorphic(w, res.trace, cfg.replace(**{"mode.event_exact": False}))
    assert r.energy_pj == pytest.approx(r0.energy_pj, rel=1e-12)


@pytest.mark.parametrize("change", [{"cores.neuron_mem_bytes": 512}, {"cores.split": "balanced"}])
def test_event_exact_routes_spikes_of_sites_split_over_cores(change):
    # Sites and attention heads split over several cores: the analytical path spreads a site's
    # spikes evenly over its cores, the event-exact path routes each spike from its neuron's core
    # to the core of its row / head.  Counts agree exactly, hops to a few percent.
    _, _, w, _, res, rec = tiny_vit_run()
    cfg = NeuromorphicConfig.default().replace(**{"mode.event_exact": True, "cores.pack_ops": False,
                                                  **change})
    m = map_workload(w, cfg)
    assert len(m.cores_of("trunk.blocks.0.attn.qk")) > 2  # more cores than heads
    chk = simulate_neuromorphic(w, res.trace, cfg, record=rec, mapping=m).meta["event_exact_check"]
    for k in ("synops", "packets", "neuron_updates", "spikes"):
        assert chk[k]["exact"] == pytest.approx(chk[k]["analytical"], rel=1e-12), k
    assert chk["hops"]["exact"] == pytest.approx(chk["hops"]["analytical"], rel=0.05)
    with pytest.raises(ValueError, match="record="):
        simulate_neuromorphic(w, res.trace, cfg)


def test_memory_overflow_is_charged_off_chip_and_flagged():
    _, _, w, _, res, _ = tiny_vit_run()
    cfg = NeuromorphicConfig.default().replace(**{"cores.count": 4, "cores.mesh": [1, 1],
                                                  "cores.synapse_mem_bytes": 1024})
    r = simulate_neuromorphic(w, res.trace, cfg)
    assert r.breakdown_pj["offchip"] > 0
    assert any(n.startswith("OFF-CHIP") for n in r.notes)
    flagged = {row["name"]: row["offchip_fraction"] for row in r.per_op if row["offchip"]}
    assert flagged["trunk.blocks.0.mlp.fc1"] == 1.0  # no core left: all of it off chip
    assert "patch" not in flagged
    fits = simulate_neuromorphic(w, res.trace)
    assert not any(row["offchip"] for row in fits.per_op) and fits.breakdown_pj["offchip"] == 0
    assert fits.meta["utilisation"]["cores_used"] >= 1


def test_switches_dense_dataflow_and_pipelining_change_energy_and_latency():
    _, _, w, _, res, _ = tiny_vit_run()
    base = NeuromorphicConfig.default()
    r = simulate_neuromorphic(w, res.trace, base)
    dense = simulate_neuromorphic(w, res.trace, base.replace(**{"mode.spike_aware": False}))
    seq = simulate_neuromorphic(w, res.trace, base.replace(**{"mode.pipeline": False}))
    assert dense.breakdown_pj["synaptic_sram"] > r.breakdown_pj["synaptic_sram"]
    assert dense.breakdown_pj["accumulate"] > r.breakdown_pj["accumulate"]
    assert seq.latency_s != r.latency_s
    balanced = simulate_neuromorphic(w, res.trace, base.replace(**{"cores.split": "balanced"}))
    assert balanced.meta["utilisation"]["cores_used"] > r.meta["utilisation"]["cores_used"]


def test_hw_report_and_config_round_trip_through_json(tmp_path):
    _, _, w, _, res, _ = tiny_vit_run()
    r = simulate_neuromorphic(w, res.trace)
    r.save(tmp_path / "r.json")
    back = HwReport.load(tmp_path / "r.json")
    assert back.energy_pj == r.energy_pj and back.breakdown_pj == r.breakdown_pj
    cfg = NeuromorphicConfig.default().replace(**{"cores.split": "balanced", "noc.hop_ns_x": 3.0})
    assert NeuromorphicConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert NeuromorphicConfig.from_dict(back.config) == NeuromorphicConfig.default()


def test_bundled_toml_equals_the_default():
    d = tomllib.loads((CONFIGS / "neuromorphic.toml").read_text())
    assert NeuromorphicConfig.from_dict(d) == NeuromorphicConfig.default()
    assert NeuromorphicConfig.default().to_dict() == d


def test_loihi_calibrated_config_reproduces_davies_per_event_energies_at_14nm():
    cfg = NeuromorphicConfig.from_dict(tomllib.loads((CONFIGS / "neuromorphic_loihi.toml").read_text()))
    c = _Costs(cfg.replace(tech="14nm"))
    synop = c.syn_word / 8 + c.neu_word_rw / 2 + c.add_acc + c.synop_overhead  # 8-bit weights
    assert synop == pytest.approx(23.6, rel=0.01)             # Davies 2018 Table 1
    assert c.hop == pytest.approx(3.6, rel=0.01)               # mean of 3.0 / 4.2 pJ per hop
    assert c.update == pytest.approx(72.8, rel=0.01)           # SANA-FE fitted active update
    assert c.idle_neuron == pytest.approx(51.2, rel=0.01)


@pytest.mark.parametrize("change, match", [
    ({"cores": {"count": 128, "bogus": 1}}, r"unknown key\(s\) \['bogus'\] in \[cores\]; allowed"),
    ({"bogus": 1}, r"unknown neuromorphic config key\(s\) \['bogus'\]; allowed"),
    ({"cores": {"synapse_mem_bytes": 0}}, "cores.synapse_mem_bytes must be an integer >= 1"),
    ({"cores": {"neuron_mem_bytes": -5}}, "cores.neuron_mem_bytes must be an integer >= 1"),
    ({"cores": {"count": 64}}, r"cores.count = 64 but cores.mesh 8 x 4 tiles"),
    ({"cores": {"mesh": [8]}}, "cores.mesh must be two integers"),
    ({"noc": {"hop_pj_per_bit": -1.0}}, "noc.hop_pj_per_bit must be a number >= 0"),
    ({"mode": {"steps": "forever"}}, "mode.steps 'forever' unknown"),
    ({"mode": {"pipeline": 1}}, "mode.pipeline must be true or false"),
    ({"cores": {"weight_bits": [8, 4]}}, "cores.weight_bits must be increasing"),
    ({"tech": "3nm"}, "tech '3nm' unknown"),
    ({"cores": 5}, r"section \[cores\] must be a table"),
    ({"accelerator": "conventional"}, "accelerator"),
])
def test_config_validation_names_the_problem(change, match):
    with pytest.raises(ValueError, match=match):
        NeuromorphicConfig.from_dict(change)


def test_load_hw_config_finds_the_bundled_neuromorphic_configs():
    pytest.importorskip("neuro_hw.conventional")
    from neuro_hw import load_hw_config, simulate
    assert load_hw_config("neuromorphic") == NeuromorphicConfig.default()
    assert load_hw_config("neuromorphic_loihi").name == "loihi-calibrated"
    _, _, w, _, res, _ = tiny_vit_run()
    # neuro_hw.simulate applies the default MemoryPolicy (resident weights, power gating)
    from neuro_hw import MemoryPolicy
    assert (simulate(w, res.trace, "neuromorphic").energy_pj
            == simulate_neuromorphic(w, res.trace, policy=MemoryPolicy()).energy_pj)
    ungated = simulate(w, res.trace, "neuromorphic", policy=MemoryPolicy(power_gating=False))
    assert ungated.energy_pj == simulate_neuromorphic(w, res.trace).energy_pj   # config: all cores leak


@settings(max_examples=15, deadline=None)
@given(mx=st.integers(1, 6), my=st.integers(1, 6), cpt=st.integers(1, 4),
       rate=st.floats(0.0, 1.0), pipeline=st.booleans(), spike_aware=st.booleans())
def test_any_valid_chip_gives_a_consistent_report(mx, my, cpt, rate, pipeline, spike_aware):
    _, _, w, _, _, _ = tiny_vit_run()
    cfg = NeuromorphicConfig.default().replace(**{
        "cores.mesh": [mx, my], "cores.cores_per_tile": cpt, "cores.count": mx * my * cpt,
        "mode.pipeline": pipeline, "mode.spike_aware": spike_aware})
    r = simulate_neuromorphic(w, synthetic_trace(w, steps=8, settle=6, rate=rate), cfg)
    r.check()
    assert r.latency_s > 0 and r.breakdown_pj["static"] > 0


def test_minilm_size_report_is_fast():
    import torch
    from snmfm.models import build_model
    m = build_model("text", "tiny", d_model=384, n_layers=6, n_heads=12, d_ff=1536, vocab_size=30522,
                    max_len=128, pool="none")
    w = extract_workload(m, torch.randint(0, 30522, (1, 128)))
    trace = synthetic_trace(w, steps=32, settle=16, rate=0.2)
    cfg = NeuromorphicConfig.default()
    simulate_neuromorphic(w, trace, cfg)  # warm-up (imports)
    t0 = time.perf_counter()
    r = simulate_neuromorphic(w, trace, cfg)
    assert time.perf_counter() - t0 < 1.0
    assert any(n.startswith("OFF-CHIP") for n in r.notes)  # MiniLM does not fit one Loihi-class chip
