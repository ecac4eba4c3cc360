"""`snmfm run`'s break-even section: every task, every coding on every accelerator the run was
given (chips that cannot take a coding listed as skipped, with the reason), the cheapest
iso-accuracy configuration per accelerator, the main job's runs reused instead of re-run, and the
verdict sentences first."""
from __future__ import annotations

import json

import pytest

from eval import breakeven as be
from eval.breakeven_report import coding_table, headline, skipped_notes, verdict_sentences
from eval.pipeline import STREAM_TASK, breakeven_tasks

HW = ["loihi1", "loihi2", "conventional"]


# ---- which tasks ------------------------------------------------------------------------------
def test_breakeven_tasks_add_the_stream_only_to_the_default_tasks():
    assert breakeven_tasks(True, ["vision-digits", "medical-wdbc"], default=True) == \
        ["vision-digits", "medical-wdbc", STREAM_TASK]
    assert breakeven_tasks(True, ["medical-wdbc"], default=False) == ["medical-wdbc"]
    assert breakeven_tasks(False, ["medical-wdbc"], default=True) == []
    assert breakeven_tasks("medical-wdbc, vision-digits-stream", ["x"], default=False) == \
        ["medical-wdbc", STREAM_TASK]
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        breakeven_tasks(["nope"], ["medical-wdbc"], default=False)


def test_prepared_runs_do_not_apply_to_a_stream_task():
    with pytest.raises(ValueError, match="stream task"):
        be.sweep_task(STREAM_TASK, ["conventional"], prepared=be.Prepared(model=None, fp32_accuracy=1.0, n_eval=1))


# ---- sentences and tables from sweep data -----------------------------------------------------
def _point(acc, coding, a_bits, energy, rate=None, accuracy=0.97, policy="resident", **kw):
    return {"accelerator": acc, "coding": coding, "a_bits": a_bits, "w_bits": 8, "policy": policy, "rate": rate,
            "measured_rate": rate, "energy_pj": energy, "latency_s": 1e-6, "accuracy": accuracy,
            "events_per_synapse": 0.1, "ratio": {}, **kw}


def _task(points, baselines, stream=False, rates=(None,), skipped=()):
    t = {"task": "t", "stream": stream, "accelerators": ["loihi1", "loihi2", "conventional"],
         "spiking": ["loihi1", "loihi2"], "baselines_accelerators": ["conventional"], "policies": ["resident"],
         "skipped": list(skipped), "rates": list(rates) if stream else [], "a_bits": [8, 4],
         "measured_rates": list(rates) if stream else [], "unit": "per frame (steady state)" if stream else "per inference",
         "fp32": [{"rate": r, "accuracy": 0.975} for r in rates], "points": points, "baselines": baselines,
         "runs": []}
    for p in points:
        p["ratio"] = {"conventional": next(b["energy_pj"] for b in baselines if b["rate"] == p["rate"]
                                           and b["a_bits"] == p["a_bits"]) / p["energy_pj"]}
    t.update(be.analyse(t, 0.01))
    return t


def test_headline_names_the_cheapest_configurations_and_the_winner():
    pts = [_point("loihi2", "graded", 4, 120e6), _point("loihi2", "graded", 8, 140e6),
           _point("loihi1", "binary", 8, 7900e6), _point("loihi2", "binary", 4, 50e6, accuracy=0.5)]
    base = [_point("conventional", None, 4, 4.68e6), _point("conventional", None, 8, 5.35e6)]
    t = _task(pts, base)
    h = headline("medical-wdbc", t)
    # the inaccurate 50 µJ point is not iso-accurate: graded A4 on loihi2 is the best spiking one
    assert "conventional accelerator (W8A4) needs 25.6× less energy than the best spiking configuration " \
           "(loihi2, graded, W8A4)" in h and "120 µJ against 4.68 µJ" in h
    (s,) = [x for x in verdict_sentences(t) if x.startswith("loihi2")]
    assert "conventional needs 25.6× less energy" in s   # ratio baseline/spiking < 1: the baseline wins


def test_headline_of_a_stream_states_the_rate_and_the_flip_found_by_the_sweep():
    rates = (0.0, 0.05, 0.2)
    sd = {0.0: 1e6, 0.05: 10e6, 0.2: 60e6}
    pts = [_point("loihi2", "sigma-delta", 4, sd[r], rate=r) for r in rates]
    pts += [_point("loihi2", "graded", 4, 80e6, rate=r, rate_independent=True, run_rate=0.05) for r in rates]
    base = [_point("conventional", None, 4, 20e6, rate=r) for r in rates]
    t = _task(pts, base, stream=True, rates=rates)
    h = headline("vision-digits-stream", t)
    assert h.startswith("On vision-digits-stream with 5% of pixels changing per frame")
    assert "best spiking configuration (loihi2, sigma-delta, W8A4) needs 2× less energy" in h
    (flip,) = t["verdicts"][0]["flips"] if t["verdicts"][0]["accelerator"] == "loihi2" else t["verdicts"][1]["flips"]
    assert 0.05 < flip["x"] < 0.2 and flip["spiking_wins_below"]
    assert f"flips at {100 * flip['x']:.3g}%" in h and "spiking wins below it" in h


def test_coding_table_lists_every_coding_on_every_accelerator_and_why_one_is_skipped():
    why = "coding 'graded' sends graded payloads but chip 'loihi1' has binary spikes only"
    pts = [_point(a, c, b, 1e6) for a in ("loihi1", "loihi2") for c in ("binary", "graded", "sigma-delta")
           for b in (8, 4) if not (a == "loihi1" and c != "binary")]
    base = [_point("conventional", None, b, 1e5) for b in (8, 4)]
    skipped = [{"accelerator": "loihi1", "coding": c, "reason": why.replace("graded", c, 1)}
               for c in ("graded", "sigma-delta")]
    h, rows = coding_table(_task(pts, base, skipped=skipped), "resident")
    assert h == ["Accelerator", "Coding", "W8A8", "W8A4"]
    got = {(r[0], r[1]): r[2:] for r in rows}
    assert set(got) == {(a, c) for a in ("loihi1", "loihi2") for c in ("binary", "graded", "sigma-delta")} | \
        {("conventional", "— (dense QANN)")}
    assert got[("loihi1", "graded")] == ["skipped", "skipped"]
    assert f"loihi1, graded: skipped, {why}" in skipped_notes(_task(pts, base, skipped=skipped))
    assert all(cell.endswith("(97.00%)") for cell in got[("loihi2", "sigma-delta")])


# ---- the main job with its break-even section -------------------------------------------------
@pytest.fixture(scope="module")
def run_with_breakeven(tmp_path_factory):
    from eval import run_main
    from snmfm.checkpoint import save_checkpoint
    from snmfm.tasks import get_task
    tmp = tmp_path_factory.mktemp("run")
    model = get_task("medical-wdbc").build_model("tiny", seed=0)
    ckpt = save_checkpoint(model, tmp / "wdbc", {"task": "medical-wdbc", "size": "tiny", "seed": 0})
    out = tmp / "report"
    results = run_main(tasks=["medical-wdbc"], hw=",".join(HW), checkpoints={"medical-wdbc": ckpt},
                       codings="binary,graded,sigma-delta", variants=False, limit=32, calib_limit=16,
                       snn_examples=4, out_dir=out, progress=False, breakeven=True)
    return results, out


@pytest.mark.slow
def test_run_reports_all_three_accelerators_and_a_breakeven_section_of_every_coding(run_with_breakeven):
    results, out = run_with_breakeven
    assert results.accelerators == HW
    d = json.loads((out / "report.json").read_text())
    c = d["comparison"]["tasks"][0]
    assert list(c["accelerators"]) == HW and c["baselines"] == ["conventional"]
    (entry,) = [e for e in d["studies"]["entries"] if e["kind"] == "breakeven"]
    t = entry["data"]["tasks"]["medical-wdbc"]
    assert t["accelerators"] == HW and t["spiking"] == ["loihi1", "loihi2"]
    # every coding on every spiking accelerator: measured points, or skipped with the reason
    for acc in t["spiking"]:
        for coding in be.CODINGS:
            pts = [p for p in t["points"] if p["accelerator"] == acc and p["coding"] == coding]
            why = [s for s in t["skipped"] if s["accelerator"] == acc and s["coding"] == coding]
            assert bool(pts) != bool(why), (acc, coding)
            assert {p["a_bits"] for p in pts} in (set(), {8})   # --no-variants: the main bits only
    assert {s["coding"] for s in t["skipped"] if s["accelerator"] == "loihi1"} == {"graded", "sigma-delta"}
    assert all("binary spikes only" in s["reason"] for s in t["skipped"])
    # the cheapest iso-accuracy configuration of every accelerator is named
    assert {i["accelerator"] for i in t["iso_accuracy"]} == set(HW)
    # the main job's QANNs and SNN runs are reused: no SNN ran twice
    assert t["runs"] and all(r["reused"] for r in t["runs"])
    assert sorted((r["coding"], r["a_bits"]) for r in t["runs"]) == [(c, 8) for c in be.CODINGS]
    assert entry["data"]["settings"]["per_task"] == {"medical-wdbc": {"a_bits": [8]}}
    assert t["fp32"][0]["accuracy"] == results.task("medical-wdbc").fp32["accuracy"]
    # Markdown: the verdict opens the report, then the summary, then the break-even section
    md = (out / "report.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["## Verdict", "## Summary", "## Break-even: where does spiking win?"]
    for acc in HW:
        assert f"| medical-wdbc | {acc} |" in md                     # the summary row
    assert "| loihi1 | graded | skipped |" in md                   # skipped, not dropped, and why:
    assert "loihi1, graded: skipped, coding 'graded' sends graded payloads but chip 'loihi1' has binary" in md
    assert "| loihi2 | sigma-delta |" in md and "| conventional | — (dense QANN) |" in md
    assert "loihi1 skipped for the graded coding" in md             # the main job says so too
    p = d["results"]["provenance"]
    assert p["stage_cpu_s"]["breakeven"] >= 0 and "W8A8.snn_run" in p["task_stage_cpu_s"]["medical-wdbc"]


@pytest.mark.slow
def test_a_saved_report_rerenders_its_breakeven_section_and_takes_a_breakeven_file(run_with_breakeven, tmp_path):
    from eval import report_from_results
    from eval.breakeven_report import write_outputs
    _, out = run_with_breakeven
    d = json.loads((out / "report.json").read_text())
    (entry,) = [e for e in d["studies"]["entries"] if e["kind"] == "breakeven"]
    # `snmfm breakeven --out DIR` output added with --study replaces the run's own (same tasks),
    # and the saved report re-renders the section from the stored data alone
    write_outputs(entry["data"], tmp_path / "be")
    rep = report_from_results(out / "report.json", tmp_path / "again", studies=[tmp_path / "be" / "breakeven.json"])
    (e2,) = [e for e in rep.studies if e["kind"] == "breakeven"]
    assert e2["source"]["origin"] == "file" and e2["key"] == "medical-wdbc" and e2["data"] == entry["data"]
    md = (tmp_path / "again" / "report.md").read_text()
    assert md.count("## Break-even") == 1 and "| loihi1 | graded | skipped |" in md


def test_cli_refuses_fixed_timesteps_with_the_breakeven_section(tmp_path):
    from click.testing import CliRunner

    from cli import main
    r = CliRunner().invoke(main, ["run", "--tasks", "medical-wdbc", "--timesteps", "8", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--no-breakeven" in r.output
    assert not (tmp_path / "r").exists()


def test_the_main_job_loads_the_shipped_default_checkpoint():
    """`snmfm run` without --checkpoints reads each task's default checkpoint (Task.default_checkpoint)."""
    from eval.pipeline import _load_model
    from snmfm.checkpoint import shipped_checkpoint
    from snmfm.tasks import get_task
    model, info = _load_model(get_task("medical-wdbc"), None, 0, False)
    assert info["path"].startswith(str(shipped_checkpoint("medical-wdbc"))) and len(info["sha256"]) == 64
    assert info["trained_now"] is False and not model.training
