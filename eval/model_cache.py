"""Trained models for the operation-optimisation studies (cascade ladders, input co-optimisation),
trained once and cached outside the repository.

Cache: ``$SNMFM_OPT_CACHE`` or ``<snmfm cache>/optimisation`` (``~/.cache/snmfm/optimisation``).
A model is keyed by task, size, ModelConfig overrides, training steps, seed and an input-transform
tag, so a changed recipe trains a new model instead of reusing a stale one.  The task's default
size with no overrides and default steps is the task's own default checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def cache_root() -> Path:
    from snmfm.checkpoint import cache_dir
    return Path(os.environ.get("SNMFM_OPT_CACHE") or cache_dir() / "optimisation")


def model_key(task: str, size: str, overrides: dict | None = None, steps: int | None = None,
              seed: int = 0, tag: str = "") -> str:
    ov = json.dumps(overrides or {}, sort_keys=True)
    h = hashlib.sha256(f"{ov}|{tag}".encode()).hexdigest()[:10]
    return f"{task}-{size}-steps{steps if steps is not None else 'default'}-seed{seed}-{h}"


def trained_model(task_name: str, size: str | None = None, *, overrides: dict | None = None,
                  steps: int | None = None, seed: int = 0, wrap: Callable[[nn.Module], nn.Module] | None = None,
                  tag: str = "", progress: bool = False, cache: Path | str | None = None,
                  train: bool = True, device: str | None = None) -> tuple[nn.Module, dict]:
    """(fp32 model, meta): the cached model, or train it now (task.train) and cache it.

    overrides: ModelConfig fields on top of the task's (e.g. image_size/patch_size; for the
    multimodal model ``{"vision": {...}}``).  wrap: the module trained and evaluated around the
    model (an input transform); the cache holds the inner model, tagged with `tag`.
    train=False raises FileNotFoundError instead of training.  device: train there (e.g. "cuda";
    the model comes back to the CPU, evaluated there); default the task's own CPU loop."""
    from snmfm.checkpoint import load_checkpoint, save_checkpoint
    from snmfm.models import build_model
    from snmfm.tasks import get_task
    task = get_task(task_name)
    size = size or task.default_size
    if size == task.default_size and not overrides and steps is None and wrap is None and seed == 0:
        if device not in (None, "cpu"):
            ensure_default_checkpoint(task.name, device, progress)
        model, meta = task.load()
        return model.float().eval(), {**meta, "key": "default", "size": size}
    root = Path(cache) if cache is not None else cache_root()
    key = model_key(task.name, size, overrides, steps, seed, tag)
    path = root / "models" / key
    if path.with_suffix(".json").is_file() and path.with_suffix(".safetensors").is_file():
        model, meta = load_checkpoint(path, task=task.name)
        return model.float().eval(), {**meta, "key": key}
    if not train:
        raise FileNotFoundError(f"no cached model {key} under {root / 'models'}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(task.model_name, size, **{**task.model_overrides(), **(overrides or {})})
    outer = wrap(model) if wrap is not None else model
    cfg = task.train_config if steps is None else task.train_config.replace(
        steps=int(steps), warmup=min(task.train_config.warmup, max(1, int(steps) // 10)))
    if device is None or device == "cpu":
        _, metrics = task.train(model=outer, seed=seed, steps=steps, progress=progress)
    else:
        metrics = _train_on(task, outer, cfg, seed, device, progress)
    meta = {"task": task.name, "model_name": task.model_name, "size": size, "seed": seed,
            "overrides": overrides or {}, "tag": tag, "metrics": metrics, "train": cfg.to_dict(),
            "train_device": device or "cpu"}
    save_checkpoint(model, path, meta)
    return model.float().eval(), {**meta, "key": key, "path": str(path)}


def ensure_default_checkpoint(task_name: str, device: str | None = None, progress: bool = False) -> Path:
    """The task's default checkpoint (snmfm.checkpoint.default_checkpoint), trained on `device`
    when neither shipped nor cached: the task's recipe, seed 0, saved where the CPU path would."""
    from snmfm.checkpoint import cache_dir, checkpoint_files, default_checkpoint, save_checkpoint, shipped_checkpoint
    from snmfm.tasks import get_task
    task = get_task(task_name)
    cached = cache_dir() / "checkpoints" / task.name
    have = any(all(f.is_file() for f in checkpoint_files(p)) for p in (shipped_checkpoint(task.name), cached))
    if have or device in (None, "cpu") or task.kind == "embed":
        return default_checkpoint(task.name, progress=progress)
    with torch.random.fork_rng(devices=[]):
        model = task.build_model(task.default_size, seed=0)
    metrics = _train_on(task, model, task.train_config, 0, device, progress)
    meta = {"task": task.name, "model_name": task.model_name, "size": task.default_size, "seed": 0,
            "metrics": metrics, "train": task.train_config.to_dict(), "task_info": task.info(),
            "train_device": device}
    return save_checkpoint(model, cached, meta)


def _train_on(task, model: nn.Module, cfg, seed: int, device: str, progress: bool) -> dict:
    """Task.train's loop (snmfm.train.fit, same batches) with the model and batches on `device`."""
    from snmfm.train import fit
    model.float().to(device)

    def sample(gen, step):
        return tuple(x.to(device) for x in task.sample(gen, cfg.batch_size, step))
    stats = fit(model, sample, task._loss, cfg, seed=seed, progress=progress, desc=task.name)
    model.cpu().eval()
    metrics = task.evaluate(model)
    metrics.update(stats)
    return metrics
