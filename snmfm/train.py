"""Seeded, deterministic CPU training: AdamW with linear warm-up and a cosine schedule.

The loop knows nothing about tasks: a task passes `sample(gen, step)` (a training batch drawn
with the loop's generator) and `loss(model, batch)`.  Same seed -> same batches, same
initialisation, same weights: the data order comes from one `torch.Generator`, parameters are
initialised under `torch.manual_seed(seed)` by the caller, and deterministic algorithms are
switched on for the duration of the loop (cheap on CPU).  Results are reproducible on one machine
and thread count; BLAS may round differently on another.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule.  lr follows warm-up then cosine decay to `min_lr_frac * lr`."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    min_lr_frac: float = 0.05
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)

    def replace(self, **kw) -> "TrainConfig":
        return TrainConfig(**{**asdict(self), **kw})

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at `step` (0-based): linear warm-up, then cosine to min_lr_frac * lr."""
    warm = min(cfg.warmup, max(cfg.steps - 1, 0))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    floor = cfg.min_lr_frac * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch's global RNG and use deterministic kernels; restores the previous setting."""
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only (not biases, LayerNorm gains, class/position vectors) -- nanoGPT's rule."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.dim() >= 2 and not name.endswith(("cls", "pos")) and ".pos." not in name
        (decay if is_matrix else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def fit(model: nn.Module, sample: Callable[[torch.Generator, int], tuple],
        loss: Callable[[nn.Module, tuple], torch.Tensor], cfg: TrainConfig, seed: int = 0,
        progress: bool = True, desc: str = "train") -> dict:
    """Train `model` in place for cfg.steps steps; returns {"train_loss", "train_time_s", "steps"}.

    sample(gen, step) -> batch (any object `loss` understands); loss(model, batch) -> scalar."""
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    model.train()
    bar = _progress(cfg.steps, desc) if progress else None
    t0, ema = time.perf_counter(), None
    with deterministic(seed):
        for step in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = sample(gen, step)
            value = loss(model, batch)
            if not torch.isfinite(value):
                raise FloatingPointError(f"training loss became {float(value)} at step {step}; "
                                         "lower the learning rate")
            opt.zero_grad(set_to_none=True)
            value.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            v = float(value.detach())
            ema = v if ema is None else 0.98 * ema + 0.02 * v
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == cfg.steps - 1:
                    bar.set_postfix(loss=f"{ema:.4f}")
    if bar is not None:
        bar.close()
    model.eval()
    return {"train_loss": ema, "train_time_s": time.perf_counter() - t0, "steps": cfg.steps}


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)
