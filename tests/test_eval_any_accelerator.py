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


@pytest.mark.slow
def test_cascade_study_runs_on_the_accelerators_it_is_given(tmp_path):
    """One scenario per accelerator plus mixed (cheap members on the first SNN-driven chip, the
    reference on the first dense one); the study output validates and renders its columns."""
    from eval.cascade_study import run_cascade
    from eval.report_studies import study_sections
    from eval.studies import make_entry
    accs = ["conventional", "loihi2"]
    r = run_cascade("medical-wdbc", ["tiny", "small"], steps={"tiny": 100}, snn_examples=4, cache=tmp_path,
                    self_tests=["max_prob"], accelerators=",".join(accs))
    assert r["accelerators"] == accs and r["spiking"] == ["loihi2"]
    assert list(r["scenarios"]) == accs + ["mixed"]
    assert all(list(m["hw"]) == accs for m in r["members"])
    assert r["scenarios"]["mixed"]["placements"] == {"tiny": "loihi2", "small": "conventional"}
    assert r["scenarios"]["loihi2"]["reference"] == {**r["scenarios"]["loihi2"]["reference"], "placement": "loihi2"}
    small = next(m for m in r["members"] if m["name"] == "small")
    assert r["scenarios"]["loihi2"]["reference"]["energy_pj"] == small["hw"]["loihi2"]["energy_pj"]
    entry = make_entry("cascade", r, {"origin": "run", "file": None, "sha256": None, "added_utc": "now",
                                      "invocation": "pytest"})
    heads = next(b[1] for b in study_sections([entry]) if b[0] == "table")
    assert [h for h in heads if h.startswith("E/query")] == [f"E/query {a}" for a in accs]
    with pytest.raises(ValueError, match="allowed conventional, loihi2, mixed"):
        run_cascade("medical-wdbc", ["tiny", "small"], accelerators=accs, scenarios=["neuromorphic"], cache=tmp_path)


def test_speculative_study_names_any_registered_accelerator(tmp_path):
    """Placements carry the registered name (loihi2, not a 'neuromorphic' role), and a study output
    whose chips are loihi2 / conventional validates, plots and renders."""
    import json

    from study_fixtures import speculative_output

    from eval.plots_studies import entry_plots
    from eval.report_md import render_markdown
    from eval.report_studies import study_sections
    from eval.speculative import Placement
    from eval.studies import make_entry
    from snmfm.models import build_model
    lm = build_model("decoder", "tiny")
    p = Placement(lm, "loihi2")
    assert p.accelerator == "loihi2" and p.traced
    assert Placement(lm, "conventional").traced is False
    data = json.loads(json.dumps(speculative_output()).replace('"neuromorphic"', '"loihi2"'))
    entry = make_entry("speculative", data, {"origin": "run", "file": None, "sha256": None, "added_utc": "now",
                                             "invocation": "pytest"})
    plots = dict(entry_plots(entry).values())
    for draw in plots.values():
        assert draw()[:8] == b"\x89PNG\r\n\x1a\n"
    md = render_markdown(study_sections([entry]), {n: n + ".png" for n in plots})
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert any("| loihi2 |" in r for r in rows) and not any("| neuromorphic |" in r for r in rows)
