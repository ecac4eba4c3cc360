"""`snmfm compress`: energy budgets use the hardware models' costs, budgets may be named as uniform
plans ('w4a4'), the outputs convert exactly, and bad input is a one-line error (exit 2)."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cli import main
from snmfm.compress.cost_table import check_budget

torch.set_num_threads(1)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny medical-wdbc model: the same code path as the shipped checkpoint, fast."""
    from snmfm.checkpoint import save_checkpoint
    from snmfm.models import build_model
    torch.manual_seed(0)
    m = build_model("features", "tiny", n_features=30, n_classes=2)
    return save_checkpoint(m, tmp_path_factory.mktemp("ck") / "tiny", {"task": "medical-wdbc"})


def test_energy_budget_named_as_uniform_plan_is_its_simulated_energy(tiny_checkpoint, tmp_path):
    """--target conventional --budget W4A4: costs from the conventional accelerator, the plan checked
    against its simulator, the QANN saved and converted exactly."""
    from converters import convert, load_qann
    from snmfm.compress.plan import BitPlan
    from snmfm.tasks import get_task
    out = tmp_path / "c"
    r = run("compress", tiny_checkpoint, "--target", "conventional", "--budget", "W4A4", "--choices", "4,8",
            "--calib", 16, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)  # stderr carries the progress lines
    plan = d["plan"]
    assert d["unit"] == "pJ" and plan["target"] == "conventional"
    assert plan["meta"]["budget_spec"] == "w4a4"
    assert "predicted_cost" in plan["meta"]  # measure=eval.hw_costs.measure_fn(...) was passed
    assert plan["cost"] <= plan["budget"] * (1 + 1e-9)
    assert plan["budget"] == pytest.approx(plan["meta"]["budget_rounds"][0]["budget_used"])
    assert BitPlan.load(d["paths"]["plan"]).layers == plan["layers"]
    qann = load_qann(d["paths"]["qann"])
    assert qann.snmfm_meta["task"] == "medical-wdbc"
    x = get_task("medical-wdbc").example_inputs(4)
    assert torch.equal(convert(qann).run(*x).output, qann(*x))


@pytest.mark.parametrize("target", ["conventional", "neuromorphic"])
def test_energy_targets_get_the_hardware_models_costs_measure_and_save_qann(target, tiny_checkpoint,
                                                                           tmp_path, monkeypatch):
    import converters.io
    import eval.hw_costs
    from snmfm.compress import BitPlan, CompressResult, pipeline
    seen = {}
    monkeypatch.setattr(eval.hw_costs, "cost_fn", lambda t, hw=None: ("costs", t, hw))
    monkeypatch.setattr(eval.hw_costs, "measure_fn", lambda t, hw=None: ("measure", t, hw))

    def fake(ref, **kw):
        seen.update(kw, ref=ref)
        return CompressResult(model=None, qann=None, plan=BitPlan({"head": {"w_bits": 8, "a_bits": 8}}, target,
                                                                  budget=1.0, cost=1.0))
    monkeypatch.setattr(pipeline, "compress_checkpoint", fake)
    from neuro_hw.registry import CONFIG_DIR   # --hw is checked before any work: a real file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.toml").write_text((CONFIG_DIR / f"{'conventional' if target == 'conventional' else 'neuromorphic'}.toml").read_text())
    r = run("compress", tiny_checkpoint, "--target", target, "--budget", "w8a8", "--hw", "cfg.toml",
            "--prune", "heads=1,mlp=0.25", "--finetune-steps", 3, "--out", tmp_path / "o", "--json")
    assert r.exit_code == 0, r.output
    assert seen["costs"] == ("costs", target, "cfg.toml") and seen["measure"] == ("measure", target, "cfg.toml")
    assert seen["save_qann"] is converters.io.save_qann
    assert seen["target"] == target and seen["budget"] == "w8a8" and seen["finetune_steps"] == 3
    assert seen["heads"] == 1 and seen["mlp_channels"] == 0.25


def test_infeasible_budget_names_the_smallest_feasible_budget(tiny_checkpoint):
    r = run("compress", tiny_checkpoint, "--budget", 1000, "--choices", "4,8", "--calib", 16)
    assert_user_error(r, "smallest feasible budget is", "bits")


@pytest.mark.parametrize("args,fragments", [
    (("--budget", "fast"), ("'fast'", "w4a4")),
    (("--budget", "w3a3"), ("w3a3", "choices")),
    (("--budget", "nan"), ("finite",)),
    (("--budget", "w4a4", "--target", "energy"), ("energy", "registered", "conventional", "neuromorphic")),
    (("--budget", "w4a4", "--hw", "neuromorphic"), ("--hw", "energy targets")),
    (("--budget", "w4a4", "--choices", "four"), ("--choices",)),
    (("--budget", "w4a4", "--prune", "heads"), ("prune spec", "heads=1")),
    (("--budget", "w4a4", "--prune", "mlp=1.5"), ("fraction",)),
    (("--budget", "w4a4", "--prune", "heads=1", "--prune-heads", "2"), ("given twice",)),
])
def test_bad_input_is_a_one_line_error(tiny_checkpoint, args, fragments):
    assert_user_error(run("compress", tiny_checkpoint, *args), *fragments)


def test_a_qann_file_is_not_compressed_again(tiny_checkpoint, tmp_path):
    from converters import save_qann
    from snmfm.checkpoint import load_checkpoint
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task
    m, _ = load_checkpoint(tiny_checkpoint, task="medical-wdbc")
    calibrate(m, [get_task("medical-wdbc").example_inputs(8)])
    path = save_qann(quantize(m, 8, 8), tmp_path / "q", meta={"task": "medical-wdbc"})
    assert_user_error(run("compress", path, "--budget", "w4a4"), "QANN file", "float checkpoint")


def test_budget_text_is_checked_before_any_work():
    assert check_budget("W8A8") == "w8a8" and check_budget(" 1e6 ") == 1e6 and check_budget(3) == 3.0
    with pytest.raises(ValueError, match="neither a number nor a uniform plan"):
        check_budget("lots")
    with pytest.raises(ValueError, match="not among the bit widths"):
        check_budget("w4a6", (2, 4, 8))
