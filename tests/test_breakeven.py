"""The break-even study: crossings found by the sweep, exact reuse credited to the dense baseline,
one SNN stream run charged on every accelerator, and the report pieces."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eval import breakeven as be
from eval import reuse
from eval.breakeven_report import console_tables, plots, section
from snmfm.tasks import get_task


# ---- crossings ----------------------------------------------------------------------------------
def test_crossing_is_interpolated_in_log_ratio_between_the_bracketing_rates():
    xs, ratios = [0.0, 0.1, 0.2, 0.5], [4.0, 1.5, 0.5, 0.25]
    (c,) = be.crossings(xs, ratios)
    expected = 0.1 + 0.1 * math.log(1.5) / (math.log(1.5) - math.log(0.5))
    assert c["x"] == pytest.approx(expected) and c["between"] == [0.1, 0.2]
    assert c["spiking_wins_below"] is True
    assert be.crossings(xs, [2, 3, 4, 5]) == []            # never flips: no crossing
    (up,) = be.crossings([0.3, 0.1], [2.0, 0.5])            # unsorted input, spiking wins above
    assert up["x"] == pytest.approx(0.2) and up["spiking_wins_below"] is False


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(1e-3, 1e3)), min_size=2, max_size=8, unique_by=lambda p: p[0]))
@settings(max_examples=100, deadline=None)
def test_every_crossing_lies_between_points_on_either_side_of_one(pts):
    xs, rs = zip(*pts)
    for c in be.crossings(xs, rs):
        lo, hi = c["between"]
        assert lo <= c["x"] <= hi
        r_lo, r_hi = dict(pts)[lo], dict(pts)[hi]
        assert (r_lo - 1) * (r_hi - 1) <= 0


# ---- the conventional side's exact reuse ---------------------------------------------------------
@pytest.fixture(scope="module")
def stream_qann():
    from eval.measure import quantized
    task = get_task("vision-digits-stream")
    model, _ = task.load()
    return task, quantized(task, model, 8, 4, calib_limit=64)


def test_changed_patches_counts_blocks_with_any_changed_pixel():
    grey = torch.zeros(1, 3, 1, 4, 4, dtype=torch.uint8)
    grey[0, 1, 0, 0, 0] = 1          # frame 1: one pixel in patch (0, 0)
    grey[0, 2] = grey[0, 1]
    grey[0, 2, 0, 3, 3] = 5          # frame 2: patch (1, 1) changes, patch (0, 0) stays
    grey[0, 2, 0, 2, 2] = 5
    assert reuse.changed_patches(grey, 2).tolist() == [1, 1]
    assert reuse.changed_patches(grey, 1).tolist() == [1, 2]


def test_reused_rows_are_bitwise_unchanged_in_the_qann(stream_qann):
    """What the baseline is credited with is exact: the reusable prefix's output rows of patches
    that did not change are bitwise equal to the previous frame's."""
    from neuro_hw import extract_workload
    task, qann = stream_qann
    clips = task.clips("test", limit=3, change_rate=0.05)
    wl = extract_workload(qann, clips.frames[0, :1])
    prefix = reuse.reusable_prefix(wl)
    assert prefix == ["patch", "trunk.blocks.0.ln1", "trunk.blocks.0.attn.qkv"]
    outs = {}
    hooks = [qann.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o))
             for n in prefix]
    try:
        per_frame = []
        for f in range(clips.n_frames):
            qann(clips.frames[:, f])
            per_frame.append({n: o.clone() for n, o in outs.items()})
    finally:
        for h in hooks:
            h.remove()
    changed = reuse.changed_patches(clips.grey, 2).reshape(3, -1)
    checked = 0
    for f in range(1, clips.n_frames):
        d = (clips.grey[:, f] != clips.grey[:, f - 1]).reshape(3, 4, 2, 4, 2).any(4).any(2).reshape(3, 16)
        assert torch.equal(d.sum(1), torch.from_numpy(changed[:, f - 1]))
        for n in prefix:
            a, b = per_frame[f][n], per_frame[f - 1][n]
            rows_a = a.flatten(2).transpose(1, 2) if n == "patch" else a[:, 1:]   # token rows of patches
            rows_b = b.flatten(2).transpose(1, 2) if n == "patch" else b[:, 1:]
            same = ~d
            assert torch.equal(rows_a[same], rows_b[same])
            if n != "patch":
                assert torch.equal(a[:, 0], b[:, 0])      # the class token's row never changes
            checked += int(same.sum())
    assert checked > 0


def test_reduced_workload_costs_grow_with_changed_rows_and_full_rows_cost_the_full_frame(stream_qann):
    from eval.measure import simulate_hw
    from neuro_hw import extract_workload
    task, qann = stream_qann
    wl = extract_workload(qann, task.clips("test", limit=1).frames[0, :1])
    full = simulate_hw(wl, None, "conventional", None).energy_pj
    e = [simulate_hw(reuse.reduced_workload(wl, k, 16), None, "conventional", None).energy_pj for k in (1, 4, 8, 16)]
    assert e == sorted(e) and e[0] < e[-1] < full      # all 16 patches changed: the class row is still reused
    everything = reuse.reduced_workload(wl, 16, 16, reuse_cls=False)
    assert [o.to_dict() for o in everything.ops] == [o.to_dict() for o in wl.ops]
    assert simulate_hw(everything, None, "conventional", None).energy_pj == pytest.approx(full, rel=1e-12)
    red = reuse.reduced_workload(wl, 3, 16)
    assert red.op("patch").gemm[1] == 3 and red.op("trunk.blocks.0.attn.qkv").gemm[1] == 3
    assert red.op("trunk.blocks.0.attn.qk").gemm == wl.op("trunk.blocks.0.attn.qk").gemm   # mixing: full


def test_still_stream_baseline_costs_only_change_detection(stream_qann):
    from neuro_hw import extract_workload
    task, qann = stream_qann
    c = task.clips("test", limit=2, change_rate=0.0)
    wl = extract_workload(qann, c.frames[0, :1])
    b = reuse.stream_baseline(wl, c.grey, 2, "conventional", None)
    assert b["skipped_frames"] == 1.0 and b["mean_rows_recomputed"] == 0
    assert b["energy_pj"] == pytest.approx(b["detect_pj"]) and 0 < b["detect_pj"] < 1e3
    moving = reuse.stream_baseline(wl, task.clips("test", limit=2, change_rate=0.5).grey, 2, "conventional", None)
    assert b["energy_pj"] < moving["energy_pj"] < moving["full_energy_pj"] + moving["detect_pj"]


# ---- the SNN on a stream ------------------------------------------------------------------------
def test_sigma_delta_stream_is_exact_and_its_events_grow_with_the_change_rate(stream_qann):
    from converters import convert
    task, qann = stream_qann
    snn = convert(qann, coding="sigma-delta")
    events = []
    for rate in (0.0, 0.02, 0.2):
        m = be.measure_stream(task, qann, snn, task.clips("test", limit=2, change_rate=rate), ["neuromorphic"])
        assert m.snn["frames_equal"] == 1.0 and m.snn["agreement"] == 1.0
        assert m.snn["steady_frames"] == 2 * 15 and m.trace.n_samples == 30
        events.append(m.snn["events_per_frame"])
        assert m.hw["neuromorphic"].energy_pj > 0
    assert events[0] == 0 and events[0] < events[1] < events[2]


def test_decoder_stream_is_exact_step_by_step_and_sigma_delta_sends_no_more_than_graded():
    from converters import convert
    from eval.measure import quantized
    task = get_task("code-stdlib")
    model, _ = task.load()
    qann = quantized(task, model, 8, 4, calib_limit=16)
    ids = next(iter(task.batches("test", 2, limit=2)))[0]
    events = {}
    for coding in ("graded", "sigma-delta"):
        dm = be.measure_decode(qann, convert(qann, coding=coding), ids, prompt_len=8, n_steps=3)
        assert dm["steps_equal"] == 1.0 and dm["n"] == 6 and len(dm["traces"]) == 3
        events[coding] = sum(t.total_events() for t in dm["traces"])
    assert 0 < events["sigma-delta"] <= events["graded"]
    wl = dm["workloads"][2]
    assert wl.meta["decoder_call"]["kind"] == "decode" and wl.meta["kv_cache"]["cached_positions"] == 10
    with pytest.raises(ValueError, match="needs 140 tokens"):
        be.measure_decode(qann, convert(qann, coding="graded"), ids, prompt_len=130, n_steps=10)


# ---- the sweep end to end -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sweep():
    return be.run_breakeven(["vision-digits-stream"], hw="neuromorphic,conventional", a_bits=(4,),
                            rates=(0.0, 0.02, 0.5), n_clips=2, snn_examples=4, eval_limit=96)


@pytest.mark.slow
def test_sweep_covers_every_coding_accelerator_rate_and_names_iso_accuracy_configs(tiny_sweep):
    t = tiny_sweep["tasks"]["vision-digits-stream"]
    assert t["spiking"] == ["neuromorphic"] and t["baselines_accelerators"] == ["conventional"]
    got = {(p["coding"], p["rate"]) for p in t["points"]}
    assert got == {(c, r) for c in be.CODINGS for r in (0.0, 0.02, 0.5)}
    # one SNN run per (coding, bits[, rate]): stateless codings once, sigma-delta per rate
    assert sorted((r["coding"], r["rate"]) for r in t["runs"]) == sorted(
        [("binary", 0.05), ("graded", 0.05)] + [("sigma-delta", r) for r in (0.0, 0.02, 0.5)])
    assert all(r["agreement"] == 1.0 for r in t["runs"])
    for p in t["points"]:
        base = next(b for b in t["baselines"] if b["rate"] == p["rate"] and b["policy"] == p["policy"]
                    and b["a_bits"] == p["a_bits"])
        assert p["ratio"]["conventional"] == pytest.approx(base["energy_pj"] / p["energy_pj"])
    assert len(t["iso_accuracy"]) == 2 * 3 and all(i["best"] is not None for i in t["iso_accuracy"])
    assert t["verdicts"] and len(t["verdicts"][0]["per_rate"]) == 3


@pytest.mark.slow
def test_report_pieces_render_every_task_and_plot(tiny_sweep):
    from eval.report_md import render_markdown
    names = plots(tiny_sweep)
    assert set(names) == {"breakeven_vision-digits-stream_ratio", "breakeven_vision-digits-stream_stream"}
    for _, draw in names.values():
        assert draw()[:8] == b"\x89PNG\r\n\x1a\n"
    md = render_markdown(section(tiny_sweep), {n: n + ".png" for n in names})
    assert "Break-even" in md and "vision-digits-stream" in md and "sigma-delta" in md
    assert all(rows for _, _, rows in console_tables(tiny_sweep))


def test_cli_rejects_bad_sweep_arguments_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from cli import main
    r = CliRunner().invoke(main, ["breakeven", "vision-digits-stream", "--rates", "0,x"])
    assert r.exit_code == 2 and "--rates" in r.output
    r = CliRunner().invoke(main, ["breakeven", "nope"])
    assert r.exit_code == 2 and "unknown task 'nope'" in r.output
    (tmp_path / "breakeven.json").write_text("{}")
    r = CliRunner().invoke(main, ["breakeven", "vision-digits-stream", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--force" in r.output
    r = CliRunner().invoke(main, ["breakeven", "vision-digits-stream", "--rates", "0.99", "--a-bits", "4",
                                  "--hw", "conventional"])
    assert r.exit_code == 2 and "change_rate must be in" in r.output
