"""QAT: starts where PTQ is, learns, and ends as a QANN that converts exactly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from converters import convert
from snmfm.compress import calibrate, quantize
from snmfm.compress.qat import distill_loss, finetune, freeze, prepare_qat, qat
from snmfm.compress.quant import quant_layers
from snmfm.nn import QuantMatMul, quantizers
from snmfm.models import build_model


def _model():
    torch.manual_seed(0)
    m = build_model("features", "tiny", n_features=6, n_classes=3).eval()
    return m


def _teacher_data(m, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g)


def test_freeze_of_untrained_student_equals_quantize():
    m = _model()
    x = _teacher_data(m)
    calibrate(m, [(x,)])
    over = {"head": {"w_bits": 8, "a_bits": 6}, "trunk.blocks.0.attn.qk": {"a_bits": 4}}
    ref = quantize(m, 4, 5, overrides=over)
    got = freeze(prepare_qat(m, 4, 5, overrides=over))
    for (n, a), (_, b) in zip(quantizers(ref), quantizers(got)):
        assert (a.bits, a.qmin, a.qmax, a.mode) == (b.bits, b.qmin, b.qmax, b.mode), n
        assert float(b.scale) == pytest.approx(float(a.scale), rel=1e-14), n
    for n, layer in quant_layers(ref).items():
        if not isinstance(layer, QuantMatMul):
            assert torch.equal(layer.w_int, got.get_submodule(n).w_int) and layer.w_bits == got.get_submodule(n).w_bits
    assert torch.allclose(ref(x), got(x), atol=1e-9)
    assert got.snmfm_quant["overrides"] == over


def _sample_fn(n=32):
    def sample(gen, step):
        return (torch.randn(n, 6, generator=gen),)
    return sample


def test_qat_reduces_the_distillation_gap_at_low_bits():
    m = _model()
    x = _teacher_data(m, 128, seed=3)
    calibrate(m, [(x,)])
    ptq = quantize(m, 3, 3)
    with torch.no_grad():
        gap_ptq = float(distill_loss(ptq(x).float(), m(x)))
    tuned = qat(m, _sample_fn(), 3, 3, steps=40, lr=3e-3)
    with torch.no_grad():
        gap_qat = float(distill_loss(tuned(x).float(), m(x)))
    assert gap_qat < 0.7 * gap_ptq


def test_qat_learns_weights_and_steps_and_keeps_bits():
    m = _model()
    calibrate(m, [(_teacher_data(m),)])
    student = prepare_qat(m, 4, 4)
    steps0 = {n: p.detach().clone() for n, p in student.named_parameters() if n.endswith("log_scale")}
    assert len(steps0) == len(quantizers(m)) + sum(not isinstance(q, QuantMatMul) for q in quant_layers(m).values())
    stats = finetune(student, m, _sample_fn(), steps=5, lr=1e-2)
    moved = [n for n, p in student.named_parameters() if n in steps0 and not torch.equal(p, steps0[n])]
    assert moved and stats["steps"] == 5
    q = freeze(student)
    assert all(qq.bits == 4 and qq.mode == "int" for _, qq in quantizers(q))
    for layer in quant_layers(q).values():
        if not isinstance(layer, QuantMatMul):
            assert layer.w_int.abs().max() <= 7 and torch.equal(layer.w_int, layer.w_int.round())


def test_qat_qann_converts_exactly():
    m = _model()
    x = _teacher_data(m, 16)
    calibrate(m, [(x,)])
    q = qat(m, _sample_fn(), 4, 4, steps=10, lr=3e-3)
    r = convert(q).run(x)
    assert torch.equal(r.output, q(x))
    assert torch.equal(r.output.argmax(-1), q(x).argmax(-1))


def test_task_loss_and_distillation_mix():
    m = _model()
    calibrate(m, [(_teacher_data(m),)])
    student = prepare_qat(m, 8, 8)

    def sample(gen, step):
        x = torch.randn(16, 6, generator=gen)
        return x, (x[:, 0] > 0).long()
    stats = finetune(student, m, sample, steps=3, task_loss=lambda out, b: F.cross_entropy(out, b[1]),
                     inputs_of=lambda b: (b[0],))
    assert stats["alpha"] == 0.5
    with pytest.raises(ValueError, match="task_loss"):
        finetune(student, m, sample, steps=1, alpha=0.3, inputs_of=lambda b: (b[0],))


def test_prepare_needs_calibration():
    with pytest.raises(ValueError, match="calibrate"):
        prepare_qat(_model(), 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_qat_runs_on_gpu():
    m = _model()
    calibrate(m, [(_teacher_data(m),)])
    q = qat(m, _sample_fn(), 4, 4, steps=3, device="cuda")
    assert next(q.parameters()).device.type == "cpu"


def test_compress_checkpoint_prunes_plans_finetunes_and_saves(tmp_path):
    """The one call behind `snmfm compress`: a tiny medical-wdbc checkpoint to a W4A4 size budget."""
    from converters import load_qann, save_qann
    from snmfm.checkpoint import load_checkpoint, save_checkpoint
    from snmfm.compress.pipeline import compress_checkpoint
    from snmfm.compress.plan import BitPlan
    from snmfm.tasks import get_task
    task = get_task("medical-wdbc")
    torch.manual_seed(0)
    m = build_model("features", "tiny", n_features=30, n_classes=2)
    src = save_checkpoint(m, tmp_path / "src", {"task": task.name})
    res = compress_checkpoint(src, budget="w4a4", target="size", out=tmp_path / "out", heads=1,
                              mlp_channels=0.25, finetune_steps=5, calib_samples=16, batch_size=16,
                              choices=(4, 8), save_qann=save_qann)
    assert [b.attn.n_heads for b in res.model.trunk.blocks] == [1]
    plan = BitPlan.load(res.paths["plan"])
    assert plan.cost <= plan.budget and plan.meta["prune"]["heads"]
    back, meta = load_checkpoint(res.paths["checkpoint"], task=task.name)
    assert meta["compress"]["finetune"]["steps"] == 5
    qann = load_qann(res.paths["qann"])
    x = task.example_inputs(8)
    assert torch.equal(qann(*x), res.qann(*x))
    r = convert(qann).run(*x)
    assert torch.equal(r.output, qann(*x))
    with pytest.raises(ValueError, match="eval.hw_costs"):
        compress_checkpoint(src, budget=1.0, target="neuromorphic")


def test_wide_window_keeps_the_step_of_fewer_bits_and_stays_exact():
    """step_bits: the step of A4 with the window of A6 -- no clipping where A4 clipped, same step."""
    from snmfm.compress.qat import wide_range
    m = _model()
    x = _teacher_data(m)
    calibrate(m, [(x,)])
    a4, wide = freeze(prepare_qat(m, 8, 4)), freeze(prepare_qat(m, 8, 6, step_bits=4))
    for (n, q4), (_, qw) in zip(quantizers(a4), quantizers(wide)):
        assert float(qw.scale) == pytest.approx(float(q4.scale), rel=1e-12), n
        assert qw.qmin <= q4.qmin and qw.qmax >= q4.qmax and qw.qmax - qw.qmin + 1 <= 2 ** 6, n
        assert qw.bits == 6
    with torch.no_grad():
        err4 = float((a4(x) - m(x)).abs().mean())
        errw = float((wide(x) - m(x)).abs().mean())
        assert errw <= err4 and torch.equal(convert(wide, coding="graded").run(x).output, wide(x))
    over = {"trunk.blocks.0.mlp.fc1": {"a_bits": 6, "step_bits": 3}}
    mixed = freeze(prepare_qat(m, 8, 4, overrides=over))
    q = mixed.trunk.blocks[0].mlp.fc1.quant
    assert q.bits == 6 and float(q.scale) == pytest.approx(float(freeze(prepare_qat(m, 8, 3)).trunk.blocks[0].mlp.fc1.quant.scale))
    with pytest.raises(ValueError, match="step_bits 5 > a_bits 4"):
        prepare_qat(m, 8, 4, step_bits=5)
    s = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 3
    step, lo, hi = wide_range(s, 2, 5, True)
    assert hi - lo + 1 == 32 and lo < 0 < hi


def test_activity_penalty_counts_the_nonzero_codes_of_the_frozen_qann():
    """Hard count of the penalty on an untrained student == events of the graded SNN of its QANN."""
    from snmfm.compress.qat import ActivityPenalty
    m = _model()
    x = _teacher_data(m)
    calibrate(m, [(x,)])
    st = prepare_qat(m, 8, 3).eval()
    names = [n for n, _ in quantizers(st)]
    costs = {n: float(i + 1) for i, n in enumerate(names)}
    pen = ActivityPenalty(st, m, costs)
    with torch.no_grad():
        m(x)
        st(x)
        pen.ratio()
    hard = float(pen._last[1])
    pen.remove()
    trace = convert(freeze(st), coding="graded").run(x).trace   # graded: one event per nonzero code
    want = sum(costs[n] * int(trace.sites[n].events.sum()) for n in names)
    assert hard == pytest.approx(want, rel=2e-3)
    with pytest.raises(ValueError, match="unknown quantizer"):
        ActivityPenalty(st, m, {"nope.quant": 1.0})


def test_activity_penalty_holds_the_student_to_its_budget():
    from snmfm.compress.qat import ActivityPenalty
    m = _model()
    x = _teacher_data(m, 128, seed=3)
    calibrate(m, [(x,)])
    costs = {n: 1.0 for n, _ in quantizers(m)}

    def ratio(st):
        pen = ActivityPenalty(st, m, costs)
        with torch.no_grad():
            m(x)
            st(x)
            pen.ratio()
        pen.remove()
        return pen.hard_ratio()
    free, held = prepare_qat(m, 8, 6, step_bits=3), prepare_qat(m, 8, 6, step_bits=3)
    r0 = ratio(held)
    finetune(free, m, _sample_fn(), steps=40, lr=3e-3)
    stats = finetune(held, m, _sample_fn(), steps=40, lr=3e-3, activity=costs, activity_budget=0.8 * r0,
                     activity_weight=5.0, log_every=10, log=lambda s: None)
    assert stats["history"] and "activity" in stats["history"][-1]
    assert ratio(held) < 0.85 * r0 and ratio(held) < ratio(free)


def test_finetune_warmup_and_time_limit_end_annealed():
    m = _model()
    calibrate(m, [(_teacher_data(m),)])
    st = prepare_qat(m, 4, 4)
    stats = finetune(st, m, _sample_fn(), steps=10_000, lr=1e-2, warmup=3, time_limit_s=0.5)
    assert stats["stopped_at"] is not None and 3 < stats["stopped_at"] < 10_000


def _two_trained(m, x):
    a = qat(m, _sample_fn(), 8, 4, steps=8, lr=3e-3, seed=0)
    b = qat(m, _sample_fn(), 8, 4, steps=8, lr=1e-2, seed=1)
    return a, b


def test_average_of_one_qann_is_itself_and_of_two_lies_between():
    from snmfm.compress.qat import average_qanns
    m = _model()
    x = _teacher_data(m)
    calibrate(m, [(x,)])
    a, b = _two_trained(m, x)
    same = average_qanns([a], [1.0])
    assert torch.equal(same(x), a(x))
    assert torch.equal(average_qanns([a, b], [1.0, 0.0])(x), a(x))
    mid = average_qanns([a, b])
    for (n, qa), (_, qb), (_, qm) in zip(quantizers(a), quantizers(b), quantizers(mid)):
        assert float(qm.scale) == pytest.approx((float(qa.scale) * float(qb.scale)) ** 0.5, rel=1e-12), n
        assert (qm.qmin, qm.qmax) == (qa.qmin, qa.qmax)
    for n, la in quant_layers(a).items():
        if isinstance(la, QuantMatMul):
            continue
        lb, lm = b.get_submodule(n), mid.get_submodule(n)
        wa, wb = la.w_int * la.w_scale[:, None], lb.w_int * lb.w_scale[:, None]
        wm = lm.w_int * lm.w_scale[:, None]
        assert torch.equal(lm.w_int, lm.w_int.round()) and float(lm.w_int.abs().max()) <= 127
        assert torch.allclose(wm, (wa + wb) / 2, atol=float(lm.w_scale.max()) / 2 + 1e-12), n
    assert torch.equal(convert(mid).run(x).output, mid(x))   # still an exact integer-code QANN
    assert torch.equal(convert(mid, coding="graded").run(x).output, mid(x))
    assert mid.snmfm_quant["average"] == {"weights": [0.5, 0.5], "n": 2}


def test_average_refuses_mismatched_qanns_and_bad_weights():
    from snmfm.compress.qat import average_qanns
    m = _model()
    x = _teacher_data(m)
    calibrate(m, [(x,)])
    a4, a6 = freeze(prepare_qat(m, 8, 4)), freeze(prepare_qat(m, 8, 6))
    with pytest.raises(ValueError, match="window"):
        average_qanns([a4, a6])
    with pytest.raises(ValueError, match="sum to 1"):
        average_qanns([a4, a4], [0.7, 0.7])
    with pytest.raises(ValueError, match="one weight per QANN"):
        average_qanns([a4, a4], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        average_qanns([])


def test_scale_steps_spends_events_for_accuracy_and_stays_exact():
    from snmfm.compress.qat import scale_steps
    m = _model()
    x = _teacher_data(m)
    calibrate(m, [(x,)])
    q = freeze(prepare_qat(m, 8, 6, step_bits=4))   # wide windows: room for finer steps
    fine = scale_steps(q, 0.5)
    for (_, a), (_, b) in zip(quantizers(q), quantizers(fine)):
        assert float(b.scale) == pytest.approx(float(a.scale) * 0.5) and (a.qmin, a.qmax) == (b.qmin, b.qmax)
    ev = [int(convert(z, coding="graded").run(x).trace.total_events()) for z in (q, fine)]
    assert ev[1] > ev[0]
    with torch.no_grad():
        assert float((fine(x) - m(x)).abs().mean()) < float((q(x) - m(x)).abs().mean())
    assert torch.equal(convert(fine, coding="graded").run(x).output, fine(x))
    assert fine.snmfm_quant["step_scale"] == 0.5 and torch.equal(scale_steps(q, 1.0)(x), q(x))
    with pytest.raises(ValueError, match="> 0"):
        scale_steps(q, 0)
