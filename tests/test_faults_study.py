"""The fault study (eval.faults, `snmfm faults`) and the hardware side of faults (neuro_hw.protection,
dead cores in the chip's mapping)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

import cli
from eval.faults import loss_rate, loss_rate_ci, t_interval
from neuro_hw import extract_workload, load_hw_config, simulate
from neuro_hw.neuromorphic import map_workload
from neuro_hw.protection import ECC_CHECK_FRACTION, charge, lost_outputs
from snmfm.compress import calibrate, quantize
from snmfm.faults import Mitigation
from snmfm.models import build_model


def test_loss_rate_interpolates_in_log_rate_and_brackets_when_not_crossed():
    r = loss_rate([1e-6, 1e-5, 1e-4], [0.90, 0.895, 0.85], clean=0.90)
    f = (0.895 - 0.89) / (0.895 - 0.85)
    assert r["crossed"] and r["bracket"] == [1e-5, 1e-4]
    assert math.isclose(r["rate"], 10 ** (-5 + f), rel_tol=1e-12)
    assert loss_rate([1e-6, 1e-5], [0.9, 0.899], 0.9) == {
        "rate": None, "bracket": [1e-5, None], "crossed": False, "note": "not 1 point(s) down at the highest rate"}
    first = loss_rate([1e-6, 1e-5], [0.5, 0.4], 0.9)
    assert first["rate"] is None and first["bracket"] == [None, 1e-6]


def test_loss_rate_ci_bootstraps_seeds():
    rates = [1e-6, 1e-5, 1e-4]
    same = [[0.90] * 5, [0.895] * 5, [0.85] * 5]           # every seed alike: the point estimate
    lo, hi = loss_rate_ci(rates, same, 0.90)
    assert math.isclose(lo, loss_rate(rates, [0.90, 0.895, 0.85], 0.90)["rate"]) and lo == hi
    never = [[0.90] * 4, [0.90] * 4, [0.899] * 4]
    assert loss_rate_ci(rates, never, 0.90) == [">0.0001", ">0.0001"]
    spread = [[0.90, 0.90, 0.90, 0.90], [0.90, 0.87, 0.90, 0.88], [0.5, 0.6, 0.5, 0.4]]
    lo, hi = loss_rate_ci(rates, spread, 0.90)        # some resamples cross at 1e-5, some later
    assert isinstance(lo, float) and isinstance(hi, float) and 1e-6 < lo < hi < 1e-4
    assert loss_rate_ci(rates, [[0.5] * 3, [0.5] * 3, [0.5] * 3], 0.9) == ["<1e-06", "<1e-06"]


def test_t_interval_is_students():
    v = [0.9, 0.92, 0.88, 0.95, 0.91]
    m, lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert math.isclose(lo, ref[0]) and math.isclose(hi, ref[1]) and math.isclose(m, np.mean(v))
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("args,match", [
    (["--rates", "1e-3,1.5"], "[0, 1]"),
    (["--rates", "1e-3,abc"], "--rates"),
    (["--kinds", "cosmic-ray"], "acc-bitflip"),
    (["--kinds", "spike-drop", "--hw", "conventional"], "does not exist on the conventional"),
    (["--kinds", "payload-bitflip", "--coding", "binary"], "payload"),
    (["--coding", "morse"], "registered"),
    (["--seeds", "0"], "--seeds"),
    (["--merge", "/nonexistent/faults_x.json"], "--merge"),
])
def test_cli_bad_input_exits_2_with_the_reason(args, match, tmp_path):
    res = CliRunner().invoke(cli.main, ["faults", "medical-wdbc", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert match in res.output
    assert not (tmp_path / "o").exists()  # nothing written on a usage error


@pytest.mark.slow
def test_cli_study_writes_json_and_plot(tmp_path):
    res = CliRunner().invoke(cli.main, ["faults", "medical-wdbc", "--kinds", "acc-bitflip,spike-drop",
                                        "--rates", "1e-6,1e-2", "--seeds", "2", "--coding", "graded",
                                        "--limit", "24", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["schema"] == "snmfm.faults/1" and out["n_examples"] == 24
    got = {(c["accelerator"], c["coding"], c["kind"], tuple(c["mitigation"])) for c in out["configurations"]}
    assert ("conventional", None, "acc-bitflip", ()) in got
    # default: every registered accelerator; loihi1 has no graded payloads: skipped, with the reason
    assert ("neuromorphic-ideal", "graded", "spike-drop", ("guard",)) in got
    assert ("loihi2", "graded", "spike-drop", ("guard",)) in got
    assert ("conventional", None, "spike-drop", ()) not in got
    assert not any(a == "loihi1" for a, *_ in got)
    assert [(s["accelerator"], s["coding"]) for s in out["skipped"]] == [("loihi1", "graded")]
    assert "binary spikes only" in out["skipped"][0]["reason"]
    same = {c["accelerator"]: c["points"] for c in out["configurations"]
            if c["kind"] == "spike-drop" and not c["mitigation"]}
    assert same["loihi2"] == same["neuromorphic-ideal"]   # packets do not depend on the chip: shared
    assert out["work"]["reused"] > 0
    for c in out["configurations"]:
        assert [p["rate"] for p in c["points"]] == [1e-6, 1e-2]
        assert all(len(p["accuracies"]) == 2 and p["ci95"][0] <= p["mean"] <= p["ci95"][1] for p in c["points"])
    acc = {(c["accelerator"], tuple(c["mitigation"])): c for c in out["configurations"] if c["kind"] == "acc-bitflip"}
    plain = acc[("conventional", ())]
    assert plain["points"][-1]["mean"] < plain["clean_accuracy"] - 0.05 and plain["loss_1pt"]["crossed"]
    assert acc[("conventional", ("guard", "tmr:head"))]["overhead"]["energy_overhead"] > 0
    assert (tmp_path / "faults_medical-wdbc.png").stat().st_size > 1000
    md = (tmp_path / "faults_medical-wdbc.md").read_text()
    assert "| kind | accelerators |" in md and "loihi1 / graded: coding 'graded'" in md
    assert "| spike-drop | loihi2, neuromorphic-ideal | graded | guard |" in md   # identical curves: one row


# ---- hardware side -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workload():
    torch.manual_seed(0)
    m = build_model("features", "tiny", n_features=30, n_classes=3).eval()
    x = torch.randn(6, 30)
    calibrate(m, [(x,)])
    q = quantize(m, 8, 6, method="percentile")
    return q, x, extract_workload(q, x[:1], name="t")


def test_mapping_routes_around_dead_cores_or_says_it_cannot(workload):
    _, _, wl = workload
    cfg = load_hw_config("neuromorphic")
    clean = map_workload(wl, cfg)
    used = sorted({int(c) for g in clean.groups.values() for c in g.cores})
    m = map_workload(wl, cfg, dead_cores=used[:3])
    placed = {int(c) for g in m.groups.values() for c in g.cores}
    assert not placed & set(used[:3]) and m.dead_cores == tuple(used[:3])
    assert any("DEAD CORES" in n and "still fits" in n for n in m.notes)
    tight = map_workload(wl, cfg, dead_cores=range(cfg.cores.count - 1))
    assert any("no longer fits" in n for n in tight.notes)
    with pytest.raises(ValueError, match="all 128 cores are dead"):
        map_workload(wl, cfg, dead_cores=range(cfg.cores.count))
    with pytest.raises(ValueError, match="dead core ids"):
        map_workload(wl, cfg, dead_cores=[cfg.cores.count])


def test_lost_outputs_are_the_dead_cores_share_of_each_op(workload):
    _, _, wl = workload
    m = map_workload(wl, load_hw_config("neuromorphic"))
    for op in wl.ops:
        if op.name in m.groups and op.kind == "linear" and len(m.groups[op.name].cores) > 1:
            cores = m.groups[op.name].cores
            lost = lost_outputs(m, wl, [cores[0]])[op.name]
            N, n = op.gemm[3], len(cores)
            assert len(lost) == op.out_elems // N * len(range(0, -(-N // n)))
            assert np.all(lost % N < -(-N // n))


def test_protection_is_charged_as_one_more_breakdown_part(workload):
    q, x, wl = workload
    from converters import convert
    trace = convert(q, coding="graded").run(x).trace
    for hw, mem in (("conventional", ("sram", "dram")), ("neuromorphic", ("synaptic_sram", "offchip"))):
        rep = simulate(wl, trace, hw)
        ecc = charge(rep, wl, Mitigation(ecc=True))
        want = ECC_CHECK_FRACTION * sum(rep.breakdown_pj.get(p, 0.0) for p in mem)
        assert math.isclose(ecc.energy_pj - rep.energy_pj, want, rel_tol=1e-12) and want > 0
        assert math.isclose(sum(ecc.breakdown_pj.values()), ecc.energy_pj, rel_tol=1e-9)
        full = charge(rep, wl, Mitigation(ecc=True, guard=True, tmr=("head",)))
        p = full.meta["protection"]["energy_pj"]
        assert p["guard"] > 0 and p["tmr"] > 0 and full.energy_pj > ecc.energy_pj
        assert "protection" not in rep.breakdown_pj  # the report given is unchanged
    with pytest.raises(ValueError, match="TMR"):
        charge(rep, wl, Mitigation(tmr=("nope",)))


def _toy_study(confs, **kw):
    base = {"schema": "snmfm.faults/1", "task": "t", "w_bits": 8, "a_bits": 8, "rates": [1e-3], "seeds": 2,
            "n_examples": 10, "n_examples_snn": 4, "shortcuts": True, "clean_accuracy": {"qann": 0.9},
            "stored_weight_bits": {}, "acc_bits": {}, "configurations": confs, "skipped": [],
            "work": {"evaluated": 1, "reused": 0, "skipped_batches": 0, "run_batches": 1},
            "setup_s": 1.0, "wall_s": 5.0, "cpu_s": 4.0}
    base.update(kw)
    return base


def _conf(acc, coding, kind, mit=()):
    return {"accelerator": acc, "side": "conventional" if acc == "conventional" else "neuromorphic",
            "coding": coding, "kind": kind, "mitigation": list(mit)}


def test_merge_studies_concatenates_parts_and_refuses_mismatches():
    from eval.faults import merge_studies
    a = _toy_study([_conf("loihi2", "binary", "spike-drop"), _conf("conventional", None, "acc-bitflip")],
                   skipped=[{"accelerator": "loihi1", "coding": "graded", "reason": "r"}])
    b = _toy_study([_conf("loihi2", "binary", "acc-bitflip", ("guard",)), _conf("loihi2", "binary", "acc-bitflip")],
                   wall_s=7.0, clean_accuracy={"qann": 0.9, "snn:binary": 1.0})
    m = merge_studies([a, b])
    assert [(c["accelerator"], c["kind"], tuple(c["mitigation"])) for c in m["configurations"]] == [
        ("conventional", "acc-bitflip", ()), ("loihi2", "acc-bitflip", ()), ("loihi2", "acc-bitflip", ("guard",)),
        ("loihi2", "spike-drop", ())]
    assert m["wall_s"] == 7.0 and m["cpu_s"] == 8.0 and m["work"]["evaluated"] == 2
    assert m["skipped"] == a["skipped"] and m["clean_accuracy"]["snn:binary"] == 1.0
    with pytest.raises(ValueError, match="seeds"):
        merge_studies([a, _toy_study([], seeds=3)])
    with pytest.raises(ValueError, match="more than one"):
        merge_studies([a, a])
