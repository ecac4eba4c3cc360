"""Stream tasks: `vision-digits-stream`, digit clips classified frame by frame.

The clips come from `snmfm.data.stream` (drift, rotation, sensor noise, digit changes on the
digits' integer grey levels, at a requested `change_rate`).  As a `Task` the stream is a list of
frames in clip order (clip 0's frames, then clip 1's, ...): `data`, `batches` and `evaluate` score
each frame, so compression and conversion take it like vision-digits.  `clips(split)` gives the
frames as clips `[n_clips, n_frames, 1, 8, 8]` for `SpikingModel.stream` and the break-even study.

The model is vision-digits' ViT fine-tuned on stream frames (`train` starts from the vision-digits
default checkpoint unless given a model): frames are rotated and sub-pixel shifted, which the
integer-shift training of vision-digits never showed it.
"""
from __future__ import annotations

import numpy as np
import torch

from snmfm.data import stream
from snmfm.data.splits import TensorData, check_split
from snmfm.data.tabular import DIGIT_MAX, digit_indices, shift_images
from snmfm.tasks.base import TaskError
from snmfm.tasks.classify import VisionDigits
from snmfm.train import TrainConfig

DEFAULT_CHANGE_RATE = 0.05


class VisionDigitsStream(VisionDigits):
    name = "vision-digits-stream"
    description = ("clips of 16 consecutive 8x8 digit frames (scikit-learn load_digits: sub-pixel "
                   "drift, small rotations, sensor noise, digit changes), ViT classifier per frame")
    # fine-tuning from the vision-digits checkpoint (see `train`)
    train_config = TrainConfig(steps=1500, batch_size=64, lr=5e-4, warmup=50, weight_decay=0.05)
    params = ("change_rate", "n_frames")

    def __init__(self, change_rate: float = DEFAULT_CHANGE_RATE, n_frames: int = stream.N_FRAMES):
        try:
            rate = float(change_rate)
        except (TypeError, ValueError):
            raise TaskError(f"change_rate must be a number in [0, 1), got {change_rate!r}") from None
        if not 0 <= rate < 1:
            raise TaskError(f"change_rate is a fraction of pixels changing per frame, in [0, 1); "
                            f"got {change_rate}")
        if int(n_frames) != n_frames or n_frames < 2:
            raise TaskError(f"n_frames must be an integer >= 2, got {n_frames}")
        self.change_rate = rate
        self.n_frames = int(n_frames)

    # -- data -----------------------------------------------------------------------------------
    def clips(self, split: str, seed: int = 0, limit: int | None = None,
              change_rate: float | None = None) -> stream.Clips:
        """Clips of a split [n_clips, n_frames, 1, 8, 8] with per-frame labels; `limit` keeps the
        first clips; `change_rate` overrides the task's."""
        rate = self.change_rate if change_rate is None else float(change_rate)
        try:
            return stream.digit_clips(check_split(split), rate, seed, self.n_frames, limit)
        except stream.StreamError as e:
            raise TaskError(str(e)) from None

    def data(self, split: str, seed: int = 0) -> TensorData:
        """Every frame of the split's clips, in clip order (frames of one clip stay consecutive);
        `seed` draws the clips' motion and noise (the source images do not depend on it)."""
        c = self.clips(split, seed)
        return TensorData((c.frames.flatten(0, 1),), c.labels.flatten(),
                          tuple(int(i) for i in c.sources.flatten()))

    def sample(self, gen, batch_size, step):
        """Stream frames of training images at random poses and noise levels, with a quarter of
        the batch plain vision-digits images (integer shifts) so the model keeps both."""
        idx = digit_indices("train")
        pick = idx[torch.randint(0, len(idx), (batch_size,), generator=gen).numpy()]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        frames = torch.from_numpy(stream.random_frames(pick, rng).astype(np.float32) / DIGIT_MAX)
        from snmfm.data.tabular import digit_images
        images, labels = digit_images(pick)
        n_plain = batch_size // 4
        plain = shift_images(images[:n_plain], gen)
        return torch.cat([plain, frames[n_plain:, None]]), labels

    def info(self) -> dict:
        return {**super().info(), "stream": "snmfm.data.stream", "change_rate": self.change_rate,
                "n_frames": self.n_frames, "frame": "grey level (0..16 integer) / 16",
                "change_rate_definition": "mean fraction of pixels differing from the previous frame",
                "init": "vision-digits default checkpoint, fine-tuned on stream frames"}

    # -- training -------------------------------------------------------------------------------
    def train(self, model=None, seed: int = 0, steps=None, progress: bool = True, size=None,
              config=None, eval_limit=None):
        """Fine-tune (the vision-digits default checkpoint when `model` is None and `size` is the
        default) on stream frames; a non-default size trains from scratch."""
        if model is None and (size or self.default_size) == self.default_size:
            model, _ = VisionDigits().load()
        return super().train(model=model, seed=seed, steps=steps, progress=progress, size=size,
                             config=config, eval_limit=eval_limit)
