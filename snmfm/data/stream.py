"""Clips of consecutive digit frames made deterministically from scikit-learn's digits.

Each clip starts from one image of a split and follows it for `n_frames` frames while it moves the
way a digit seen by a camera does, on the digits' own integer grid of grey levels 0..16:

* **sub-pixel drift**: the image is shifted by `(dx_t, dy_t) = A * sin(phase_t)` pixels, amplitude
  A ~ U(0.3, 0.9) px per axis and clip, so the digit stays inside the 8x8 frame;
* **small rotations**: by `theta_t = A_theta * sin(phase_t)` about the centre, A_theta ~ U(3, 10) deg;
* the phases advance by `motion * f` radians per frame (f ~ U(0.6, 1.4) per axis and clip, initial
  phases uniform), rendered by bilinear interpolation and rounded to the nearest grey level;
* **sensor noise**: each pixel of each frame independently gets +1 or -1 grey level (clipped to
  0..16) with probability `noise_prob = NOISE_PER_MOTION * motion`;
* **occasional digit changes**: from frame 1 on, with probability
  `change_prob = min(CHANGE_PER_MOTION * motion, MAX_CHANGE_PROB)` per frame the clip switches to
  another image of the same split showing a different digit (the pose carries on).

Every frame is an integer image, so an unchanged pixel is exactly unchanged (bit for bit), which is
what sigma-delta neurons and the conventional side's row reuse both rely on.

**change_rate** (what a stream is asked for) is the fraction of pixels whose grey level differs
from the previous frame of the same clip, averaged over all consecutive frame pairs of all clips of
the split: `mean(grey[:, 1:] != grey[:, :-1])` (`changed_fraction`).  The one knob `motion` drives
drift, rotation, noise and digit changes together; `motion_for_rate` finds, by bisection on the
split's own clips (same random draws for every trial value, so the measured rate is a smooth,
increasing function of the knob), the motion whose measured change rate equals the requested one.
The rate a set of clips has is then *measured* again and carried with it (`Clips.measured_change_rate`).
`change_rate = 0` means still clips: no motion, no noise, no digit change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from snmfm.data.splits import SPLITS, check_split
from snmfm.data.tabular import DIGIT_MAX, _digits, digit_indices

N_FRAMES = 16                  # frames per clip
SIDE = 8                       # load_digits images are 8x8
SHIFT_PX = (0.3, 0.9)          # drift amplitude range per axis (pixels)
ROTATE_DEG = (3.0, 10.0)       # rotation amplitude range (degrees)
FREQ = (0.6, 1.4)              # per-axis frequency multiplier of the motion knob
NOISE_PER_MOTION = 0.2         # noise_prob = 0.2 * motion   (motion in rad/frame)
CHANGE_PER_MOTION = 0.3        # change_prob = min(0.3 * motion, MAX_CHANGE_PROB)
MAX_CHANGE_PROB = 0.1          # "occasional": at most one digit change per 10 frames on average
MAX_MOTION = math.pi / 2       # a quarter period per frame: beyond it the sine path aliases
RATE_TOLERANCE = 0.002         # bisection stops when |measured - requested| <= this (absolute)


class StreamError(ValueError):
    """A stream was asked for something it cannot make; the message says what is possible."""


@dataclass(frozen=True)
class Clips:
    """Clips of consecutive frames and what they were made with.

    frames: [n_clips, n_frames, 1, 8, 8] float32, grey level / 16 (the digits tasks' input scale;
    exact in float32); labels: [n_clips, n_frames] the digit shown in each frame; sources:
    [n_clips, n_frames] the load_digits index each frame was rendered from; change_rate: the rate
    asked for; measured_change_rate: `changed_fraction` of these clips; levels: the motion knob and
    the noise / drift / rotation / digit-change levels it stands for."""

    frames: torch.Tensor
    labels: torch.Tensor
    sources: torch.Tensor
    change_rate: float
    measured_change_rate: float
    levels: dict
    split: str
    seed: int

    @property
    def grey(self) -> torch.Tensor:
        """The frames as integer grey levels 0..16 (uint8)."""
        return torch.round(self.frames * DIGIT_MAX).to(torch.uint8)

    @property
    def n_clips(self) -> int:
        return int(self.frames.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[1])

    def take(self, n_clips: int) -> "Clips":
        """The first `n_clips` clips (their change rate measured again)."""
        if n_clips < 1:
            raise StreamError(f"n_clips must be >= 1, got {n_clips}")
        f = self.frames[:n_clips]
        return Clips(f, self.labels[:n_clips], self.sources[:n_clips], self.change_rate,
                     changed_fraction(f), self.levels, self.split, self.seed)


def changed_fraction(frames) -> float:
    """Fraction of pixels that differ from the previous frame of their clip, over all consecutive
    frame pairs: frames [n_clips, n_frames, ...] (grey levels or grey/16; any array)."""
    f = torch.as_tensor(frames) if not isinstance(frames, np.ndarray) else torch.from_numpy(frames)
    if f.dim() < 2 or f.shape[1] < 2:
        raise StreamError(f"need clips of >= 2 frames [n_clips, n_frames, ...], got {tuple(f.shape)}")
    return float((f[:, 1:] != f[:, :-1]).double().mean())


def _render(images: np.ndarray, dx: np.ndarray, dy: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Bilinear rendering of images [N, 8, 8] (by clip) at poses dx, dy (pixels), theta (rad),
    each [N, F] -> [N, F, 8, 8] float (zero outside the image).  Frame t of clip n samples
    images[n] at the output pixel's position rotated by -theta about the centre and shifted back."""
    n = images.shape[0]
    c = (SIDE - 1) / 2
    yy, xx = np.meshgrid(np.arange(SIDE, dtype=np.float64), np.arange(SIDE, dtype=np.float64),
                         indexing="ij")
    cos, sin = np.cos(theta)[..., None, None], np.sin(theta)[..., None, None]
    u = xx - c - dx[..., None, None]
    v = yy - c - dy[..., None, None]
    sx = cos * u + sin * v + c
    sy = -sin * u + cos * v + c
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = sx - x0, sy - y0
    pad = np.zeros((n, SIDE + 2, SIDE + 2))
    pad[:, 1:-1, 1:-1] = images
    flat = pad.reshape(n, -1)
    x0 = np.clip(x0.astype(np.int64) + 1, 0, SIDE)   # x0 + 1 stays inside the padded image
    y0 = np.clip(y0.astype(np.int64) + 1, 0, SIDE)
    w = SIDE + 2
    base = (np.arange(n) * flat.shape[1])[:, None, None, None]
    at = lambda yi, xi: flat.reshape(-1)[base + yi * w + xi]  # noqa: E731
    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)


@dataclass(frozen=True)
class _Draws:
    """Every random number of a split's clips, drawn once per (split, seed, n_frames) so that all
    trial values of the motion knob see the same draws (common random numbers)."""

    start: np.ndarray       # [N] index into the split's images of each clip's first digit
    amp: np.ndarray         # [N, 3] dx, dy amplitude (px), theta amplitude (rad)
    freq: np.ndarray        # [N, 3]
    phase: np.ndarray       # [N, 3]
    noise_u: np.ndarray     # [N, F, 8, 8] uniform: a pixel is noisy when u < noise_prob
    noise_sign: np.ndarray  # [N, F, 8, 8] +1 / -1
    change_u: np.ndarray    # [N, F] uniform: a digit change at frame t >= 1 when u < change_prob
    change_pick: np.ndarray  # [N, F] uniform: which other-class image is switched to


_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}


@lru_cache(maxsize=8)
def _draws(split: str, seed: int, n_frames: int) -> _Draws:
    n = len(digit_indices(split))
    rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], n_frames, 0x5D1])
    amp = np.stack([rng.uniform(*SHIFT_PX, n), rng.uniform(*SHIFT_PX, n),
                    np.deg2rad(rng.uniform(*ROTATE_DEG, n))], 1)
    return _Draws(start=np.arange(n), amp=amp, freq=rng.uniform(*FREQ, (n, 3)),
                  phase=rng.uniform(0, 2 * math.pi, (n, 3)),
                  noise_u=rng.uniform(size=(n, n_frames, SIDE, SIDE)),
                  noise_sign=rng.integers(0, 2, (n, n_frames, SIDE, SIDE)) * 2 - 1,
                  change_u=rng.uniform(size=(n, n_frames)), change_pick=rng.uniform(size=(n, n_frames)))


def levels(motion: float) -> dict:
    """The stated levels the motion knob (rad/frame) stands for: noise probability (of a +-1 grey
    level error per pixel and frame) and digit-change probability per frame.  The drift and
    rotation speeds it gives are measured on the clips (`digit_clips` adds them)."""
    m = float(motion)
    return {"motion_rad_per_frame": m, "noise_prob": NOISE_PER_MOTION * m, "noise_grey_levels": 1,
            "digit_change_prob": min(CHANGE_PER_MOTION * m, MAX_CHANGE_PROB)}


def _speeds(pose: np.ndarray) -> dict:
    """Mean drift (px/frame, Euclidean) and rotation (deg/frame) between consecutive frames."""
    step = np.diff(pose, axis=1)
    return {"drift_px_per_frame": float(np.hypot(step[..., 0], step[..., 1]).mean()),
            "rotation_deg_per_frame": float(np.degrees(np.abs(step[..., 2])).mean())}


def render_clips(split: str, motion: float, seed: int = 0, n_frames: int = N_FRAMES
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All clips of a split at one motion value: (grey [N, F, 8, 8] uint8 in 0..16, labels [N, F],
    sources [N, F], pose [N, F, 3] as dx, dy (px), theta (rad)) with N = the split's size (clip n
    starts from the split's n-th image)."""
    check_split(split)
    if not (0 <= motion <= MAX_MOTION):
        raise StreamError(f"motion must be in [0, {MAX_MOTION:.4f}] rad/frame, got {motion}")
    if n_frames < 2:
        raise StreamError(f"a clip needs n_frames >= 2, got {n_frames}")
    d = _draws(split, int(seed), int(n_frames))
    x, y = _digits()
    idx = np.asarray(digit_indices(split))
    n = len(idx)
    lv = levels(motion)
    # which image each frame shows: a digit change switches to another class's image and stays
    cur = d.start.copy()
    which = np.empty((n, n_frames), dtype=np.int64)
    by_class = [np.flatnonzero(y[idx] == c) for c in range(10)]
    for t in range(n_frames):
        if t:
            switch = np.flatnonzero(d.change_u[:, t] < lv["digit_change_prob"])
            for i in switch:
                others = np.concatenate([by_class[c] for c in range(10) if c != y[idx[cur[i]]]])
                cur[i] = others[int(d.change_pick[i, t] * len(others))]
        which[:, t] = cur
    t = np.arange(n_frames, dtype=np.float64)
    pose = d.amp[:, None, :] * np.sin(motion * t[None, :, None] * d.freq[:, None, :] + d.phase[:, None, :])
    images = x[idx[which]].reshape(n * n_frames, SIDE, SIDE)
    flat = lambda a: a.reshape(n * n_frames, 1)  # noqa: E731
    grey = np.rint(_render(images, flat(pose[..., 0]), flat(pose[..., 1]), flat(pose[..., 2])))
    grey = grey.reshape(n, n_frames, SIDE, SIDE)
    noisy = d.noise_u < lv["noise_prob"]
    grey = np.clip(grey + np.where(noisy, d.noise_sign, 0), 0, DIGIT_MAX).astype(np.uint8)
    return grey, y[idx[which]], idx[which], pose


def _rate(split: str, motion: float, seed: int, n_frames: int) -> float:
    return changed_fraction(render_clips(split, motion, seed, n_frames)[0])


@lru_cache(maxsize=64)
def motion_for_rate(split: str, change_rate: float, seed: int = 0, n_frames: int = N_FRAMES) -> float:
    """The motion knob (rad/frame) at which the split's clips have the requested change rate,
    found by bisection on the measured rate (to within RATE_TOLERANCE, or the bracket's width
    below 1e-6 rad/frame)."""
    check_split(split)
    r = float(change_rate)
    if r == 0:
        return 0.0
    hi_rate = _rate(split, MAX_MOTION, seed, n_frames)
    if not (0 < r <= hi_rate):
        raise StreamError(f"change_rate must be in [0, {hi_rate:.3f}] (the fastest motion the "
                          f"stream makes changes {hi_rate:.1%} of pixels per frame), got {change_rate}")
    lo, hi = 0.0, MAX_MOTION
    best = (abs(hi_rate - r), MAX_MOTION)
    for _ in range(60):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 64   # geometric: rates span decades
        m = _rate(split, mid, seed, n_frames)
        best = min(best, (abs(m - r), mid))
        if abs(m - r) <= min(RATE_TOLERANCE, 0.05 * r) or hi - lo < 1e-6:
            break
        lo, hi = (mid, hi) if m < r else (lo, mid)
    return best[1]


def digit_clips(split: str, change_rate: float, seed: int = 0, n_frames: int = N_FRAMES,
                limit: int | None = None) -> Clips:
    """Clips of a split whose frames change at `change_rate` (see the module docstring); `limit`
    keeps the first clips (a prefix: the same clips whatever the limit)."""
    motion = motion_for_rate(check_split(split), float(change_rate), int(seed), int(n_frames))
    grey, labels, sources, pose = render_clips(split, motion, seed, n_frames)
    if limit is not None:
        if int(limit) < 1:
            raise StreamError(f"limit must be >= 1 clip, got {limit}")
        grey, labels, sources, pose = grey[:limit], labels[:limit], sources[:limit], pose[:limit]
    frames = torch.from_numpy(grey.astype(np.float32) / np.float32(DIGIT_MAX))[:, :, None]
    return Clips(frames=frames, labels=torch.from_numpy(labels), sources=torch.from_numpy(sources),
                 change_rate=float(change_rate), measured_change_rate=changed_fraction(grey),
                 levels={**levels(motion), **_speeds(pose)}, split=split, seed=int(seed))


def random_frames(index: np.ndarray, rng: np.random.Generator,
                  max_noise_prob: float = NOISE_PER_MOTION * 0.5) -> np.ndarray:
    """Training frames: the images `index` (load_digits indices) each at a random pose of the
    stream's motion ranges with noise at a random level in [0, max_noise_prob] -> grey [N, 8, 8]
    uint8.  These are the frames of a clip at any frame of any motion (a random phase), so a model
    trained on them sees what the stream shows."""
    x, _ = _digits()
    n = len(index)
    amp = np.stack([rng.uniform(*SHIFT_PX, n), rng.uniform(*SHIFT_PX, n),
                    np.deg2rad(rng.uniform(*ROTATE_DEG, n))], 1)
    pose = amp * np.sin(rng.uniform(0, 2 * math.pi, (n, 3)))
    grey = np.rint(_render(x[index], pose[:, :1], pose[:, 1:2], pose[:, 2:]))[:, 0]
    p = rng.uniform(0, max_noise_prob, (n, 1, 1))
    noise = np.where(rng.uniform(size=grey.shape) < p, rng.integers(0, 2, grey.shape) * 2 - 1, 0)
    return np.clip(grey + noise, 0, DIGIT_MAX).astype(np.uint8)
