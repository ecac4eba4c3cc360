"""eval code outside the main job takes any registered accelerator, not two fixed names: the
cascade's self-test cost dispatches on the config's kind, and the neuromorphic benchmark reads the
registered loihi1 chip (not the retired loihi-calibrated config)."""
from __future__ import annotations

import pytest

from eval.cascade import self_test_cost

OPS = {"fp_add": 100, "fp_mul": 50, "cmp": 10, "exp": 10, "log": 1, "div": 1, "reads": 10}


@pytest.mark.parametrize("name", ["conventional", "neuromorphic", "neuromorphic-ideal", "loihi1", "loihi2"])
def test_self_test_cost_works_on_every_registered_kind(name):
    c = self_test_cost(OPS, name)
    assert c["energy_pj"] > 0 and c["latency_s"] > 0
    # leakage over the test's cycles is added on top, linearly
    c2 = self_test_cost(OPS, name, static_power_w=1.0)
    assert c2["energy_pj"] == pytest.approx(c["energy_pj"] + c["latency_s"] * 1e12)


def test_self_test_on_loihi_uses_one_16_bit_op_per_ns_per_core():
    from neuro_hw import load_hw_config
    from neuro_hw.recipes import LANE_CYCLES
    from neuro_hw.tech import get_tech
    ops = {"fp_add": 1000}
    c = self_test_cost(ops, "loihi1")
    t = get_tech(load_hw_config("loihi1").tech)
    assert c["energy_pj"] == pytest.approx(1000 * t.fp_add_pj(16))
    assert c["latency_s"] == pytest.approx(1000 * LANE_CYCLES["add"] * 1e-9)


def test_self_test_on_a_kind_without_a_digital_unit_says_so(monkeypatch, tmp_path):
    import dataclasses

    import neuro_hw
    from neuro_hw import registry

    @dataclasses.dataclass(frozen=True)
    class Bare:
        name: str = "bare"
        tech: str = "45nm"

        @classmethod
        def default(cls):
            return cls()

        @classmethod
        def from_dict(cls, d):
            return cls(**{k: v for k, v in d.items() if k != "kind"})

        def to_dict(self):
            return {"kind": "bare-test", **dataclasses.asdict(self)}

    registry.accelerators()
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.setattr(registry, "_ACCELERATORS", dict(registry._ACCELERATORS))
    toml = tmp_path / "bare.toml"
    toml.write_text('kind = "bare-test"\nname = "bare"\n')
    neuro_hw.register_kind("bare-test", config_cls=Bare, simulate_fn=lambda *a, **k: None, needs_trace=True)
    neuro_hw.register_accelerator("bare", kind="bare-test", config_path=toml)
    with pytest.raises(ValueError, match="kind 'bare-test'.*no digital unit"):
        self_test_cost(OPS, "bare")


def test_bench_neuromorphic_compares_with_the_registered_loihi1_chip():
    from eval.benchmarks.bench_neuromorphic import per_event_energies
    rows = {r["model"]: r for r in per_event_energies()}
    lo = rows["loihi1 (registered, 14nm)"]
    # the constants of neuro_hw/configs/loihi1.toml (SANA-FE's Loihi model) at their own node
    assert lo["synop_pj"] == pytest.approx(35.5)
    assert lo["neuron_update_pj"] == pytest.approx(51.2 + 21.6) and lo["idle_neuron_pj"] == pytest.approx(51.2)
    assert lo["packet_sent_pj"] == pytest.approx(69.3 + 111.0)
    assert "Loihi published (14nm)" in rows and not any("calibrated" in k for k in rows)
