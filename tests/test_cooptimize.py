"""Input co-optimisation: Pareto fronts are right, input transforms keep the SNN exact, and a tiny
configuration sweep runs end to end on both accelerators."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snmfm.cooptimize import (InputConfig, ResizedInput, TokenPruned, TruncatedContext, dominated_by,
                              keep_indices, pareto_front, resize_images, vision_grid)

points_st = st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.floats(0, 1, allow_nan=False)),
                     min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(points_st)
def test_pareto_front_is_exactly_the_non_dominated_points(raw):
    pts = [{"energy_pj": e, "accuracy": a} for e, a in raw]
    front = pareto_front(pts)
    assert [pts[i]["energy_pj"] for i in front] == sorted(pts[i]["energy_pj"] for i in front)
    for i in front:
        assert not dominated_by(pts, i)
    on_front = {(pts[i]["energy_pj"], pts[i]["accuracy"]) for i in front}
    for i, p in enumerate(pts):
        if i not in front and (p["energy_pj"], p["accuracy"]) not in on_front:
            assert dominated_by(pts, i)
    # accuracy strictly increases along the front (a cheaper point never has a better accuracy)
    accs = [pts[i]["accuracy"] for i in front]
    assert all(a < b for a, b in zip(accs, accs[1:]))


def test_pareto_front_on_a_known_set():
    pts = [{"energy_pj": e, "accuracy": a} for e, a in
           [(10, 0.9), (5, 0.8), (5, 0.85), (20, 0.9), (1, 0.1), (30, 0.95), (2, 0.05)]]
    assert pareto_front(pts) == [4, 2, 0, 5]


def test_input_transforms():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    assert resize_images(x, 4).shape == (1, 1, 4, 4)
    assert resize_images(x, 4)[0, 0, 0, 0] == pytest.approx(float(x[0, 0, :2, :2].mean()))
    up = resize_images(x, 16)
    assert torch.equal(up[..., ::2, ::2], x)            # pixel replication: no new information
    img = torch.zeros(2, 1, 4, 4)
    img[0, 0, 2:, 2:] = 1.0                              # patch 3 has the energy
    img[1, 0, :2, 2:] = 2.0                              # patch 1
    assert keep_indices(img, 2, 2).tolist() == [[0, 3], [0, 1]]   # ties: the earlier patch
    assert len(vision_grid()) >= 14 and InputConfig(4, 2).trains and not InputConfig(keep_tokens=8).trains
    tokens = torch.arange(20).reshape(2, 10)
    assert torch.equal(TruncatedContext(torch.nn.Identity(), 3)(tokens), tokens[:, :3])


def test_pruned_and_resized_models_stay_exact_as_snns():
    from converters import convert
    from snmfm.compress import calibrate, quantize
    from snmfm.models import build_model
    from snmfm.tasks import get_task
    torch.manual_seed(0)
    task = get_task("vision-digits")
    vit = task.build_model("tiny")
    batch = next(iter(task.batches("test", 4)))
    vqa = get_task("vqa-digits")
    mm = vqa.build_model("tiny")
    images, tokens = next(iter(vqa.batches("test", 4)))
    with torch.no_grad():
        assert torch.equal(TokenPruned(vit, 16)(batch[0]), vit(batch[0]))  # keeping all = the model
        assert torch.equal(TokenPruned(mm, 16)(images, tokens), mm(images, tokens))
        assert TokenPruned(mm, 12)(images, tokens).shape == mm(images, tokens).shape
    for m in (TokenPruned(vit, 10, "merge"),
              ResizedInput(build_model("vit", "tiny", image_size=4, patch_size=2, n_classes=10), 4)):
        calibrate(m, task.batches("calib", 16, limit=16))
        q = quantize(m, 4, 4)
        r = convert(q).run(*batch)
        assert torch.equal(r.output, q(*batch))


def test_tiny_configuration_sweep_runs_on_both_accelerators(tmp_path):
    from eval.cooptimize import run_cooptimize
    configs = [InputConfig(), InputConfig(keep_tokens=12), InputConfig(4, 2)]
    r = run_cooptimize("vision-digits", configs, bits=((4, 4),), T_values=(2, 4), size="tiny", steps=3,
                       snn_examples=4, eval_limit=16, calib_limit=16, cache=tmp_path, out_dir=tmp_path)
    assert len(r["points"]["conventional"]) == 3
    assert len(r["points"]["neuromorphic"]) >= 3        # settle points plus T below T_settle
    for acc in ("conventional", "neuromorphic"):
        f = r["fronts"][acc]
        assert f["front"] and f["default"]["config"] == "default"
        assert f["best_accuracy"]["accuracy"] >= f["default"]["accuracy"] - 1e-12
    assert all(p["energy_pj"] > 0 for p in r["points"]["neuromorphic"])
    assert (tmp_path / "cooptimize-vision-digits.png").stat().st_size > 0
    # cached: a second run measures nothing again
    r2 = run_cooptimize("vision-digits", configs, bits=((4, 4),), T_values=(2, 4), size="tiny", steps=3,
                        snn_examples=4, eval_limit=16, calib_limit=16, cache=tmp_path)
    assert r2["points"] == r["points"]


def test_points_per_accelerator_from_any_list_of_accelerators():
    """A measurement on three accelerators gives three fronts' points: dense ones at the QANN's
    accuracy, SNN-driven ones at the settle point and at every fixed T."""
    from eval.cooptimize import front_summary, points_of
    h = lambda e: {"energy_pj": e, "latency_s": 1e-6}  # noqa: E731
    m = {"label": "native", "w_bits": 8, "a_bits": 8, "qann": {"accuracy": 0.9}, "workload": {"macs": 10},
         "snn": {"accuracy": 0.9, "t_settle": 20},
         "accelerators": {"conv": {"needs_trace": False}, "chip-a": {"needs_trace": True},
                          "chip-b": {"needs_trace": True}},
         "hw": {"conv": h(5.0), "chip-a": h(50.0), "chip-b": h(30.0)},
         "hw_T": {4: {"chip-a": {**h(10.0), "accuracy": 0.5}, "chip-b": {**h(7.0), "accuracy": 0.5}}}}
    pts = points_of([m])
    assert list(pts) == ["conv", "chip-a", "chip-b"]
    assert [(p["T"], p["energy_pj"]) for p in pts["conv"]] == [(None, 5.0)]
    assert [(p["T"], p["energy_pj"], p["accuracy"]) for p in pts["chip-b"]] == [("settle", 30.0, 0.9), (4, 7.0, 0.5)]
    f = front_summary(pts["chip-a"], pts["chip-a"][0])
    assert f["iso_accuracy"]["T"] == "settle" and f["n_points"] == 2
