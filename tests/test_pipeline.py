"""The main job end to end on tiny models: report written, SNN == QANN, numbers consistent."""
from __future__ import annotations

import math

import pytest

from eval import load_results, run_main
from eval.pipeline import bit_variants, default_tasks


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from snmfm.checkpoint import save_checkpoint
    from snmfm.tasks import get_task
    root = tmp_path_factory.mktemp("main")
    ckpts = {}
    for name in ("medical-wdbc", "code-stdlib"):
        model = get_task(name).build_model("tiny", seed=0)  # untrained: SNN == QANN holds for any weights
        ckpts[name] = save_checkpoint(model, root / name, {"task": name, "size": "tiny", "seed": 0})
    out = root / "report"
    results = run_main(tasks=["medical-wdbc", "code-stdlib"], w_bits=8, a_bits=4, variants=[(4, 4)],
                       hw="neuromorphic,conventional",
                       checkpoints=ckpts, out_dir=out, limit=32, calib_limit=16,
                       snn_examples={"medical-wdbc": 8, "code-stdlib": 1}, progress=False)
    return results, out, ckpts


def test_main_job_writes_a_report_that_round_trips(tiny_run):
    results, out, _ = tiny_run
    assert {"report.json", "report.md", "report.html"} <= {p.name for p in out.iterdir()}
    assert load_results(out / "report.json") == results


def test_snn_reproduces_the_qann_on_every_example_it_ran(tiny_run):
    results, _, _ = tiny_run
    for t in results.tasks:
        for v in t.variants:
            s = v.snn
            assert s["settled"] and s["agreement"] == 1.0 and s["max_abs_err"] == 0.0
            assert s["accuracy"] == s["qann_accuracy_subset"]
            assert len(s["acc_per_step"]) == s["steps"] and s["acc_per_step"][-1] == s["accuracy"]


def test_sample_counts_and_normalisation_are_recorded(tiny_run):
    results, _, ckpts = tiny_run
    wdbc, code = results.task("medical-wdbc"), results.task("code-stdlib")
    assert wdbc.fp32["n_examples"] == 32 and wdbc.variant().snn["n_examples"] == 8
    assert wdbc.normalisation["unit"] == "inference" and wdbc.normalisation["tokens_per_inference"] == 1
    assert code.normalisation["unit"] == "token" and code.normalisation["tokens_per_inference"] == 128
    assert code.variant().snn["n"] == 128  # one window of 128 next-byte predictions
    assert [v.label for v in wdbc.variants] == ["W8A4", "W4A4"]
    assert len(wdbc.checkpoint["sha256"]) == 64 and str(ckpts["medical-wdbc"]) in wdbc.checkpoint["path"]


def test_energy_per_token_divides_one_forward_by_the_predicted_tokens(tiny_run):
    from eval import compare
    results, _, _ = tiny_run
    c = compare(results).task("code-stdlib")
    hw = results.task("code-stdlib").variant().hw
    for accel in ("neuromorphic", "conventional"):
        assert math.isclose(c["accelerators"][accel]["energy_per_unit_pj"], hw[accel].energy_pj / 128)
        assert c["accelerators"][accel]["latency_s"] == hw[accel].latency_s


def test_provenance_names_versions_seed_and_stage_times(tiny_run):
    results, _, _ = tiny_run
    p = results.provenance
    assert {"torch", "numpy", "snmfm"} <= set(p["packages"])
    assert p["seed"] == 0 and p["started_utc"] <= p["finished_utc"]
    assert set(p["stage_wall_s"]) >= {"medical-wdbc", "code-stdlib"}
    assert results.options["hardware"]["neuromorphic"]["config"]
    for t in results.tasks:
        assert {"load", "fp32_eval", "calibrate", f"{t.main}.snn_run"} <= set(t.wall_s)


def test_bad_options_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        run_main(tasks=["no-such-task"], out_dir=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="T must be"):
        run_main(tasks=["medical-wdbc"], T=0, out_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_bit_variants_and_default_tasks():
    assert bit_variants(8, 8, True) == [(8, 8), (8, 4), (4, 4)]
    assert bit_variants(8, 8, False) == [(8, 8)]
    assert bit_variants(4, 4, True) == [(4, 4)]
    assert default_tasks()[:4] == ["vision-digits", "medical-wdbc", "code-stdlib", "vqa-digits"]


def test_an_optional_default_task_without_its_extra_is_left_out_with_the_fix(monkeypatch):
    import importlib.util

    from eval import pipeline
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "transformers" else real(m, *a))
    assert "text-minilm" not in default_tasks()
    why = pipeline.left_out_tasks()["text-minilm"]
    assert "transformers" in why and "snmfm[transformers]" in why
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert set(pipeline.left_out_tasks()) == set(pipeline.OPTIONAL_TASKS) - set(default_tasks())
