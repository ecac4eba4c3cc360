"""The `Task` interface: data, model, training and evaluation of one built-in task.

A task is the unit every later stage works on: `snmfm.compress` calibrates on
`task.batches("calib", ...)`, the converter's SNN is scored per time step with `task.score`, and
`task.evaluate(fn)` accepts any callable with the model's positional inputs (the FP32 model, the
QANN, or a SpikingModel), so every model form is measured by the same code.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from snmfm.checkpoint import (CheckpointError, cache_dir, checkpoint_files, load_checkpoint, save_checkpoint,
                              shipped_checkpoint)
from snmfm.data.splits import TensorData, check_split
from snmfm.train import TrainConfig, fit

KINDS = ("classify", "lm", "vqa", "embed")


class TaskError(ValueError):
    """A task was asked for something it cannot do; the message says what to do instead."""


class Batch(tuple):
    """Positional model inputs (a tuple: call ``fn(*batch)``) carrying the targets beside them.

    `targets` are what `Task.score` compares the outputs with; `ids` name the source of each
    example (image index, module name)."""

    targets: torch.Tensor
    ids: tuple

    def __new__(cls, inputs, targets: torch.Tensor, ids: tuple = ()):
        obj = super().__new__(cls, tuple(inputs))
        obj.targets = targets
        obj.ids = tuple(ids)
        return obj

    @property
    def inputs(self) -> tuple:
        return tuple(self)


class Task:
    """Base class; subclasses set the class attributes and implement `_loss`, `sample`, `score`."""

    name: str = ""
    model_name: str = ""
    default_size: str = "small"
    kind: str = ""
    description: str = ""
    train_config: TrainConfig = TrainConfig()
    # Changes to train_config for other sizes, e.g. {"medium": {"lr": 5e-4}}: a wider, deeper member
    # may need a gentler schedule than the default size it was tuned on (see VQADigits).
    size_train_overrides: dict[str, dict] = {}
    eval_batch_size: int = 256

    # -- model ----------------------------------------------------------------------------------
    def model_overrides(self) -> dict:
        """ModelConfig fields this task sets on top of build_model's defaults (classes, lengths)."""
        return {}

    def build_model(self, size: str | None = None, seed: int = 0) -> nn.Module:
        """The task's model, untrained, initialised from `seed` (global RNG state is restored)."""
        from snmfm.models import build_model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(self.model_name, size or self.default_size, **self.model_overrides())

    def train_config_for(self, size: str | None = None, steps: int | None = None) -> TrainConfig:
        """The training recipe at `size` (None: the default size): `train_config` with that size's
        entry of `size_train_overrides`; `steps` shortens or lengthens it (warm-up at most a tenth)."""
        cfg = self.train_config.replace(**self.size_train_overrides.get(size or self.default_size, {}))
        if steps is not None:
            cfg = cfg.replace(steps=int(steps), warmup=min(cfg.warmup, max(1, int(steps) // 10)))
        return cfg

    # -- data -----------------------------------------------------------------------------------
    def data(self, split: str, seed: int = 0) -> TensorData:
        """One split (train / calib / test) as tensors; `seed` orders the examples.  The splits
        themselves do not depend on `seed`, so no seed trains on a test example."""
        raise NotImplementedError

    def batches(self, split: str, batch_size: int, seed: int = 0,
                limit: int | None = None) -> Iterator[Batch]:
        """Batches of the split in a seed-fixed order: each a `Batch` (a tuple of the model's
        positional inputs, with `.targets`).  `limit` caps the number of *examples*."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        d = self.data(check_split(split), seed)
        n = len(d) if limit is None else min(len(d), int(limit))
        for i in range(0, n, batch_size):
            part = d.take(slice(i, min(n, i + batch_size)))
            yield Batch(part.inputs, part.targets, part.ids)

    def example_inputs(self, n: int = 1) -> tuple[torch.Tensor, ...]:
        """A small batch of real calibration inputs (for workload extraction and smoke tests)."""
        return next(iter(self.batches("calib", n))).inputs

    def info(self) -> dict:
        """What the task's data was made of (saved in checkpoints and shown in reports)."""
        return {}

    def check_available(self) -> None:
        """Raise TaskError naming what to install when the task's optional packages are missing
        (cheap: nothing is loaded).  Built-in tasks need nothing beyond the core install."""

    # -- training -------------------------------------------------------------------------------
    def sample(self, gen: torch.Generator, batch_size: int, step: int) -> tuple:
        """One training batch drawn with `gen` (augmentation included)."""
        raise NotImplementedError

    def _loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        raise NotImplementedError

    def train(self, model: nn.Module | None = None, seed: int = 0, steps: int | None = None,
              progress: bool = True, size: str | None = None, config: TrainConfig | None = None,
              eval_limit: int | None = None) -> tuple[nn.Module, dict]:
        """Train (a fresh model of `size` from `seed`, or `model` in place); returns
        (model, metrics) with the test metrics of `evaluate` (on at most `eval_limit` examples)
        plus train_loss / train_time_s / steps."""
        cfg = config or self.train_config_for(size)
        if steps is not None:
            cfg = cfg.replace(steps=int(steps), warmup=min(cfg.warmup, max(1, int(steps) // 10)))
        if model is None:
            model = self.build_model(size, seed=seed)
        model = model.float()
        stats = fit(model, lambda g, step: self.sample(g, cfg.batch_size, step), self._loss, cfg,
                    seed=seed, progress=progress, desc=self.name)
        metrics = self.evaluate(model, limit=eval_limit)
        metrics.update(stats)
        return model, metrics

    # -- evaluation -----------------------------------------------------------------------------
    def score(self, outputs: torch.Tensor, batch: Batch) -> tuple[float, int]:
        """(n_correct, n) of one batch's outputs: the pieces of accuracy, summed over batches and
        available at every SNN time step."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, fn: Callable, split: str = "test", limit: int | None = None,
                 batch_size: int | None = None, seed: int = 0) -> dict:
        """Accuracy of `fn` (any callable taking the model's positional inputs) on a split:
        {"accuracy" in [0, 1], "n": the count accuracy is over, ...task-specific metrics}."""
        correct, total, extra = 0.0, 0, {}
        if isinstance(fn, nn.Module):
            fn.eval()
        for batch in self.batches(split, batch_size or self.eval_batch_size, seed, limit):
            outputs = fn(*batch)
            c, n = self.score(outputs, batch)
            correct, total = correct + c, total + n
            self._accumulate(extra, outputs, batch)
        if total == 0:
            raise TaskError(f"no examples to evaluate in split {split!r} (limit={limit})")
        return {"task": self.name, "split": split, "accuracy": correct / total, "n": total,
                **self._finish(extra)}

    def _accumulate(self, extra: dict, outputs: torch.Tensor, batch: Batch) -> None:
        """Hook for task-specific sums (e.g. log-likelihood for perplexity)."""

    def _finish(self, extra: dict) -> dict:
        return {}

    # -- trained models -------------------------------------------------------------------------
    def load(self, checkpoint=None) -> tuple[nn.Module, dict]:
        """(model, meta) from `checkpoint` (a path), or the task's default checkpoint, trained and
        cached on first use when the package ships none."""
        path = checkpoint if checkpoint is not None else self.default_checkpoint()
        return load_checkpoint(path, task=self.name)

    def train_and_save(self, out=None, size: str | None = None, seed: int = 0, steps: int | None = None,
                       progress: bool = True) -> dict:
        """Train this task's model from scratch and save it; a summary with the checkpoint path.

        out: checkpoint base path (default: <cache>/checkpoints/<task>-<size>-seed<seed>)."""
        size = size or self.default_size
        model, metrics = self.train(seed=seed, steps=steps, progress=progress, size=size)
        if out is None:
            out = cache_dir() / "checkpoints" / f"{self.name}-{size}-seed{seed}"
        cfg = self.train_config_for(size, steps)
        meta = {"task": self.name, "model_name": self.model_name, "size": size, "seed": seed,
                "metrics": metrics, "train": cfg.to_dict(), "task_info": self.info()}
        path = save_checkpoint(model, out, meta)
        return {"task": self.name, "size": size, "seed": seed, "checkpoint": str(path), **metrics}

    def default_checkpoint(self, progress: bool = True) -> Path:
        """Path of this task's trained default model: the shipped one, else the cached one, else
        train it now (default size and seed 0) and cache it, saying so on stderr."""
        if self.kind == "embed":
            raise CheckpointError(f"task {self.name!r} uses a pretrained model and has no snmfm "
                                  "checkpoint; use get_task(name).load()")
        shipped = shipped_checkpoint(self.name)
        if all(f.is_file() for f in checkpoint_files(shipped)):
            return shipped
        cached = cache_dir() / "checkpoints" / self.name
        if all(f.is_file() for f in checkpoint_files(cached)):
            return cached
        print(f"snmfm: no trained checkpoint for {self.name!r} yet; training it now (seed 0, size "
              f"{self.default_size}) and caching it in {cached.parent}", file=sys.stderr)
        self.train_and_save(cached, seed=0, progress=progress)
        return cached

    def __repr__(self) -> str:
        return f"<Task {self.name} ({self.kind}, model {self.model_name}/{self.default_size})>"


def argmax_correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    pred = logits.argmax(-1)
    return int((pred == targets.to(pred.device)).sum()), int(targets.numel())
