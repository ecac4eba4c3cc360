"""The vqa-digits recipe benchmark measures what it says: the image-prefix variance fraction is 0
for a model that ignores the image and clearly positive at initialisation; a short run reports its
probes and per-question accuracy."""
import torch

from eval.benchmarks import bench_vqa_recipe as bench
from snmfm.tasks import get_task


def test_prefix_variance_fraction_is_zero_when_the_prefix_ignores_the_image():
    task = get_task("vqa-digits")
    model = task.build_model("tiny").eval()
    images, _ = task.sample(torch.Generator().manual_seed(0), 64, 0)
    assert 0.01 < bench.prefix_variance_fraction(model, images) <= 1.0
    torch.nn.init.zeros_(model.projector.linear.weight)   # every image -> the projector's bias
    assert bench.prefix_variance_fraction(model, images) == 0.0


def test_short_run_reports_probes_recipe_and_accuracy_per_question():
    r = bench.run("tiny", 1e-3, steps=4, every=2, eval_limit=40)
    assert [p["step"] for p in r["probes"]] == [0, 2, 4]
    assert all(p["prefix_var"] >= 0 and p["what_loss"] > 0 for p in r["probes"])
    assert r["train"]["lr"] == 1e-3 and r["train"]["steps"] == 4 and r["n"] == 40
    assert set(r["by_question"]) <= {"what", "even", "odd", "greater", "less"} and 0 <= r["accuracy"] <= 1


def test_runs_must_be_size_lr_pairs(capsys):
    import pytest
    with pytest.raises(SystemExit) as e:
        bench.main(["--runs", "medium"])
    assert e.value.code == 2 and "size:lr" in capsys.readouterr().err
