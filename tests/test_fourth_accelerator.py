"""A fourth accelerator, registered in the test from one kind and one TOML, reaches the main job's
report with no other change: measured on the same SNN run, in every table, ratio and plot."""
from __future__ import annotations

import dataclasses
import json
import math
import textwrap

import pytest

import neuro_hw
from eval import load_results, run_main
from neuro_hw.report import HwReport


@dataclasses.dataclass(frozen=True)
class EventChipConfig:
    """A spiking kind driven by the trace: every event costs `pj_per_event`, nothing else."""

    name: str = "event-chip"
    tech: str = "45nm"
    pj_per_event: float = 1.0

    @classmethod
    def default(cls):
        return cls()

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k != "kind"})

    def to_dict(self):
        return {"kind": "event-chip-test", **dataclasses.asdict(self)}


def simulate_event_chip(workload, trace, cfg, policy=None):
    events = sum(int(s.events.sum()) for s in trace.sites.values() if s.kind == "neuron") / trace.n_samples
    e = events * cfg.pj_per_event
    return HwReport(accelerator=cfg.name, energy_pj=e, breakdown_pj={"events": e}, cycles=float(trace.steps),
                    latency_s=1e-9 * trace.steps, config=cfg.to_dict(), meta={"events": events})


@pytest.fixture
def event_chip(tmp_path, monkeypatch):
    from neuro_hw import registry
    registry.accelerators()  # builtins first, then keep the registry as it was after the test
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.setattr(registry, "_ACCELERATORS", dict(registry._ACCELERATORS))
    toml = tmp_path / "event-chip.toml"
    toml.write_text(textwrap.dedent('''
        kind = "event-chip-test"
        name = "event-chip"
        pj_per_event = 2.5
    '''))
    neuro_hw.register_kind("event-chip-test", config_cls=EventChipConfig, simulate_fn=simulate_event_chip,
                           needs_trace=True)
    neuro_hw.register_accelerator("event-chip", kind="event-chip-test", config_path=toml)
    return "event-chip"


@pytest.mark.slow
def test_a_registered_fourth_accelerator_appears_in_the_report(event_chip, tmp_path):
    from snmfm.checkpoint import save_checkpoint
    from snmfm.tasks import get_task
    assert event_chip in neuro_hw.accelerators() and neuro_hw.needs_trace(event_chip)
    model = get_task("medical-wdbc").build_model("tiny", seed=0)
    ckpt = save_checkpoint(model, tmp_path / "wdbc", {"task": "medical-wdbc", "size": "tiny", "seed": 0})
    hw = ["neuromorphic-ideal", "loihi2", "conventional", event_chip]
    hw = [h for h in hw if h in neuro_hw.accelerators() or h == event_chip]
    out = tmp_path / "report"
    results = run_main(tasks=["medical-wdbc"], hw=",".join(hw), checkpoints={"medical-wdbc": ckpt},
                       variants=False, limit=32, calib_limit=16, snn_examples=8, out_dir=out, progress=False,
                       breakeven=True)
    v = results.task("medical-wdbc").variant()
    assert list(v.hw) == hw == results.accelerators
    rep = v.hw[event_chip]
    # charged on the SNN run every traced accelerator shares: events per inference x 2.5 pJ
    assert rep.kind == "event-chip-test" and rep.meta["events"] > 0
    assert math.isclose(rep.energy_pj, 2.5 * rep.meta["events"])
    d = json.loads((out / "report.json").read_text())
    c = d["comparison"]["tasks"][0]
    assert list(c["accelerators"]) == hw and c["baselines"] == ["conventional"]
    assert math.isclose(c["ratios"]["energy"][event_chip]["conventional"],
                        v.hw["conventional"].energy_pj / rep.energy_pj)
    md = (out / "report.md").read_text()
    assert f"| medical-wdbc | {event_chip} | SNN |" in md  # the summary row
    assert f"{event_chip} (SNN-driven)" in md                # provenance
    # ... and in the break-even section: every coding charged on it, its cheapest iso-accuracy config
    (be,) = [e["data"]["tasks"]["medical-wdbc"] for e in d["studies"]["entries"] if e["kind"] == "breakeven"]
    assert event_chip in be["spiking"]
    assert {p["coding"] for p in be["points"] if p["accelerator"] == event_chip} == {"binary", "graded", "sigma-delta"}
    assert any(i["accelerator"] == event_chip and i["best"] for i in be["iso_accuracy"])
    assert f"| {event_chip} | graded |" in md
    assert load_results(out) == results
