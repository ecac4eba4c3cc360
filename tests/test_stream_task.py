"""vision-digits-stream: deterministic clips at a requested change rate, labels per frame, and the
shipped checkpoint's per-frame accuracy."""
import numpy as np
import pytest
import torch

from snmfm.data import stream
from snmfm.data.tabular import _digits, digit_indices
from snmfm.tasks import TaskError, get_task


def test_same_seed_gives_the_same_clips_and_another_seed_other_clips():
    a = stream.digit_clips("test", 0.05, seed=3)
    stream._draws.cache_clear()
    stream.motion_for_rate.cache_clear()
    b = stream.digit_clips("test", 0.05, seed=3)   # recomputed from scratch
    c = stream.digit_clips("test", 0.05, seed=4)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.labels, b.labels)
    assert a.levels == b.levels
    assert not torch.equal(a.frames, c.frames)
    # the source images of the clips do not depend on the seed, only motion and noise
    assert torch.equal(a.sources[:, 0], c.sources[:, 0])


def test_limit_keeps_a_prefix_of_the_same_clips():
    full = stream.digit_clips("calib", 0.1)
    part = stream.digit_clips("calib", 0.1, limit=7)
    assert part.frames.shape == (7, stream.N_FRAMES, 1, 8, 8)
    assert torch.equal(part.frames, full.frames[:7]) and torch.equal(part.labels, full.labels[:7])
    assert part.measured_change_rate == pytest.approx(stream.changed_fraction(full.grey[:7]))


@pytest.mark.parametrize("rate", [0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
def test_measured_change_rate_matches_the_requested_rate(rate):
    c = stream.digit_clips("test", rate)
    # the definition, measured independently on the integer frames
    g = c.grey.numpy().astype(np.int16)
    measured = float((g[:, 1:] != g[:, :-1]).mean())
    assert measured == pytest.approx(c.measured_change_rate, abs=1e-12)
    assert abs(measured - rate) <= max(stream.RATE_TOLERANCE, 0.05 * rate)
    # the knob grows with the rate (faster motion, more noise) and is stated in the levels
    assert c.levels["noise_prob"] == pytest.approx(stream.NOISE_PER_MOTION * c.levels["motion_rad_per_frame"])
    assert c.levels["drift_px_per_frame"] > 0 and c.levels["rotation_deg_per_frame"] > 0


def test_rates_order_the_motion_and_a_zero_rate_is_still_clips():
    motions = [stream.motion_for_rate("test", r) for r in (0.01, 0.05, 0.2, 0.5)]
    assert motions == sorted(motions) and motions[0] > 0
    still = stream.digit_clips("test", 0.0, limit=20)
    assert still.measured_change_rate == 0.0
    assert torch.equal(still.frames, still.frames[:, :1].expand_as(still.frames))
    assert (still.labels == still.labels[:, :1]).all()


def test_frames_are_integer_grey_levels_so_unchanged_pixels_are_bitwise_equal():
    c = stream.digit_clips("test", 0.2, limit=30)
    grey = c.frames * 16
    assert torch.equal(grey, grey.round()) and grey.min() >= 0 and grey.max() <= 16
    assert c.frames.dtype == torch.float32
    same_grey = c.grey[:, 1:] == c.grey[:, :-1]
    same_float = c.frames[:, 1:] == c.frames[:, :-1]
    assert torch.equal(same_grey, same_float)


def test_labels_are_the_digit_of_each_frames_source_and_changes_switch_class():
    _, y = _digits()
    c = stream.digit_clips("test", 0.5)
    assert torch.equal(c.labels, torch.from_numpy(y[c.sources.numpy()]))
    split = set(int(i) for i in digit_indices("test"))
    assert set(int(i) for i in c.sources.flatten()) <= split   # clips never leave their split
    switched = c.sources[:, 1:] != c.sources[:, :-1]
    assert switched.any()
    assert (c.labels[:, 1:][switched] != c.labels[:, :-1][switched]).all()
    assert (c.labels[:, 1:][~switched] == c.labels[:, :-1][~switched]).all()
    # changes happen at about the stated probability per frame (binomial, 5,400 trials)
    p = c.levels["digit_change_prob"]
    assert abs(float(switched.double().mean()) - p) < 4 * (p * (1 - p) / switched.numel()) ** 0.5


def test_task_frames_are_the_clips_in_order_and_params_select_the_rate():
    task = get_task("vision-digits-stream", change_rate=0.1)
    assert task is get_task("vision-digits-stream", change_rate=0.1)
    assert task.change_rate == 0.1 and get_task("vision-digits-stream").change_rate == 0.05
    d = task.data("test")
    c = task.clips("test")
    assert torch.equal(d.inputs[0], c.frames.flatten(0, 1)) and torch.equal(d.targets, c.labels.flatten())
    assert task.info()["change_rate"] == 0.1


def test_bad_stream_parameters_are_clear_errors():
    with pytest.raises(TaskError, match="in \\[0, 1\\)"):
        get_task("vision-digits-stream", change_rate=1.5)
    with pytest.raises(TaskError, match="no parameter.*frame_rate.*change_rate"):
        get_task("vision-digits-stream", frame_rate=3)
    with pytest.raises(TaskError, match="'vision-digits' has no parameter.*takes none"):
        get_task("vision-digits", change_rate=0.1)
    with pytest.raises(TaskError, match="change_rate must be in \\[0, 0\\.[0-9]+\\].*fastest motion"):
        get_task("vision-digits-stream", change_rate=0.95).clips("test")
    with pytest.raises(TaskError, match="n_frames"):
        get_task("vision-digits-stream", n_frames=1)


def test_shipped_checkpoint_is_within_one_point_of_vision_digits_per_frame():
    model, meta = get_task("vision-digits-stream").load()
    plain = get_task("vision-digits").load()[1]["metrics"]["accuracy"]
    r = get_task("vision-digits-stream").evaluate(model)
    assert r["n"] == 360 * stream.N_FRAMES
    assert r["accuracy"] >= plain - 0.01
    assert r["accuracy"] == pytest.approx(meta["metrics"]["accuracy"], abs=0.01)
    for rate in (0.0, 0.5):   # the extremes of the sweep too
        assert get_task("vision-digits-stream", change_rate=rate).evaluate(model)["accuracy"] >= plain - 0.01
    assert meta["task_info"]["init"].startswith("vision-digits")
