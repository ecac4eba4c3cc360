"""The accelerator registry (contract C2): names, kinds, dispatch, policy, errors."""
from __future__ import annotations

import dataclasses
import textwrap

import pytest

import neuro_hw
from neuro_hw import MemoryPolicy, accelerators, load_hw_config, needs_trace, simulate
from neuro_hw.conventional import ConventionalConfig
from neuro_hw.neuromorphic import NeuromorphicConfig, synthetic_trace
from neuro_hw.report import HwReport
from neuro_hw.workload import Op, Workload


def mlp(n_in=64, n_hidden=48, n_out=10):
    ops = [Op("fc1", "linear", (n_in,), (n_hidden,), gemm=(1, 1, n_in, n_hidden), w_bits=8, a_bits=8,
              macs=n_in * n_hidden, params=n_in * n_hidden, in_elems=n_in, out_elems=n_hidden,
              spike_inputs=("fc1.quant",)),
           Op("fc2", "linear", (n_hidden,), (n_out,), gemm=(1, 1, n_hidden, n_out), w_bits=8, a_bits=8,
              macs=n_hidden * n_out, params=n_hidden * n_out, in_elems=n_hidden, out_elems=n_out,
              producers=("fc1",), spike_inputs=("fc2.quant",))]
    return Workload("mlp", ops)


def test_the_shipped_accelerators_are_registered_and_old_names_still_work():
    names = accelerators()
    assert {"conventional", "neuromorphic-ideal"} <= set(names)
    assert "neuromorphic" not in names                      # an alias, not a second chip
    assert load_hw_config("neuromorphic") == load_hw_config("neuromorphic-ideal") == NeuromorphicConfig.default()
    assert load_hw_config("conventional") == ConventionalConfig.default()
    assert load_hw_config("neuromorphic_loihi").overhead.synop_pj > 0   # older bundled file by stem
    assert needs_trace("neuromorphic") and not needs_trace("conventional")


def test_a_report_is_filed_under_the_name_it_was_asked_for_even_on_first_use():
    from neuro_hw import registry
    registry._BUILTINS_LOADED = False        # as in a fresh process: nothing registered yet
    registry._ACCELERATORS.clear()
    registry._ALIASES.clear()
    assert registry.accelerator_name("neuromorphic") == "neuromorphic"
    assert registry.accelerator_name("loihi2") == "loihi2"


def test_unknown_accelerator_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown accelerator 'loihi9'; registered: .*conventional.*neuromorphic-ideal"):
        load_hw_config("loihi9")
    with pytest.raises(ValueError, match="registered"):
        simulate(mlp(), None, "nope")


def test_simulate_reports_name_kind_node_and_policy():
    w = mlp()
    r = simulate(w, None, "conventional")
    assert (r.accelerator, r.kind, r.node) == ("conventional", "conventional", "45nm")
    assert r.memory_policy == {"weights": "resident", "power_gating": True, "activations": "on-chip"}
    tr = synthetic_trace(w, steps=8, settle=6, rate=0.1)
    r = simulate(w, tr, "neuromorphic", node="14nm")
    assert (r.accelerator, r.kind, r.node) == ("neuromorphic", "neuromorphic", "14nm")
    assert HwReport.from_dict(r.to_dict()).node == "14nm"
    with pytest.raises(ValueError, match="ActivityTrace"):
        simulate(w, None, "neuromorphic-ideal")
    with pytest.raises(ValueError, match="weights 'cached' unknown"):
        simulate(w, None, "conventional", policy={"weights": "cached"})


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A fourth kind: every synaptic op costs `pj_per_mac` per MAC, nothing else."""

    name: str = "toy"
    tech: str = "45nm"
    pj_per_mac: float = 1.0

    @classmethod
    def default(cls):
        return cls()

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def to_dict(self):
        return {"kind": "toy", **dataclasses.asdict(self)}


def simulate_toy(workload, trace, cfg, policy=None):
    e = sum(o.macs for o in workload.ops) * cfg.pj_per_mac
    return HwReport(accelerator="toy", energy_pj=e, breakdown_pj={"mac": e}, cycles=1.0, latency_s=1e-9,
                    config=cfg.to_dict())


def test_a_fourth_accelerator_from_one_kind_and_one_toml_is_listed_and_simulates(tmp_path):
    toml = tmp_path / "toy.toml"
    toml.write_text(textwrap.dedent('''
        kind = "toy"
        name = "toy-chip"
        pj_per_mac = 2.5
    '''))
    neuro_hw.register_kind("toy", config_cls=ToyConfig, simulate_fn=simulate_toy, needs_trace=False)
    neuro_hw.register_accelerator("toy-chip", kind="toy", config_path=toml)
    try:
        assert "toy-chip" in accelerators()
        assert not needs_trace("toy-chip")
        w = mlp()
        r = simulate(w, None, "toy-chip")
        assert r.accelerator == "toy-chip" and r.kind == "toy"
        assert r.energy_pj == pytest.approx(2.5 * sum(o.macs for o in w.ops))
        assert simulate(w, None, str(toml)).energy_pj == r.energy_pj      # the file path works too
    finally:
        from neuro_hw import registry
        registry._ACCELERATORS.pop("toy-chip", None)
        registry._KINDS.pop("toy", None)


def test_resident_weights_that_fit_take_dram_out_of_the_conventional_figure():
    w = mlp()
    res = simulate(w, None, "conventional", policy="resident")
    streamed = simulate(w, None, "conventional", policy=MemoryPolicy("streamed", activations="dram"))
    weight_bits = sum(o.params * o.w_bits for o in w.ops)
    # streamed pays at least every weight bit from DRAM; resident pays only the network's in/out
    assert streamed.breakdown_pj["dram"] >= weight_bits * 1300 / 64
    io_bits = 8 * w.ops[0].in_elems + 8 * w.ops[-1].out_elems * 2
    assert res.breakdown_pj["dram"] <= io_bits * 1300 / 64
    assert res.energy_pj < streamed.energy_pj


def test_power_gating_charges_static_power_only_for_used_cores():
    w = mlp()
    tr = synthetic_trace(w, steps=8, settle=6, rate=0.2)
    on = simulate(w, tr, "neuromorphic", policy=MemoryPolicy(power_gating=True))
    off = simulate(w, tr, "neuromorphic", policy=MemoryPolicy(power_gating=False))
    used = on.meta["powered_cores"]
    assert off.meta["powered_cores"] == 128 and used < 128
    assert on.breakdown_pj["static"] == pytest.approx(off.breakdown_pj["static"] * used / 128, rel=1e-9)
    assert on.breakdown_pj["synaptic_sram"] == off.breakdown_pj["synaptic_sram"]
