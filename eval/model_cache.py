"""Trained models for the operation-optimisation studies (cascade ladders, input co-optimisation),
trained once and cached outside the repository.

Cache: ``$SNMFM_OPT_CACHE`` or ``<snmfm cache>/optimisation`` (``~/.cache/snmfm/optimisation``).
A model is keyed by task, size, ModelConfig overrides, training steps, seed, an input-transform
tag and the version of the code that trains it (`code_version("train")`: a hash of the sources of
the models, tasks, data and training loop), so a changed recipe or changed code trains a new model
instead of reusing a stale one.  Measurements cached by the studies are keyed by the model's tensors
and `code_version("measure")` (conversion, hardware models, compression, eval.measure).

The task's default size with no overrides and default steps is the task's own default checkpoint;
other sizes of the recipe (seed 0, default steps, no overrides) ship as member checkpoints in
snmfm/checkpoints/<task>-<size> where they are small (`shipped_member`), so a study on a fresh
machine starts without training them.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


_REPO = Path(__file__).resolve().parent.parent
# the sources whose change invalidates a cached artefact, per kind (files or package folders)
CODE_PARTS = {
    "train": ("snmfm/train.py", "snmfm/nn.py", "snmfm/models", "snmfm/tasks", "snmfm/data"),
    "measure": ("snmfm/nn.py", "snmfm/models", "snmfm/compress", "snmfm/tasks", "converters", "neuro_hw",
                "eval/measure.py"),
}
_VERSIONS: dict[str, str] = {}


def code_version(kind: str = "measure") -> str:
    """12 hex digits of the sha256 of the Python sources (and bundled TOML configs) named in
    CODE_PARTS[kind], in path order: the same code gives the same key on any machine."""
    if kind not in CODE_PARTS:
        raise ValueError(f"unknown code part {kind!r}; known: {', '.join(CODE_PARTS)}")
    if kind not in _VERSIONS:
        h = hashlib.sha256()
        files = []
        for part in CODE_PARTS[kind]:
            p = _REPO / part
            files += [p] if p.is_file() else [f for f in p.rglob("*") if f.suffix in (".py", ".toml")]
        for f in sorted(set(files)):
            h.update(str(f.relative_to(_REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
        _VERSIONS[kind] = h.hexdigest()[:12]
    return _VERSIONS[kind]


def shipped_member(task: str, size: str) -> Path | None:
    """The shipped checkpoint of a recipe member (task's recipe at `size`, seed 0), if any."""
    from snmfm.checkpoint import SHIPPED_DIR, checkpoint_files
    base = SHIPPED_DIR / f"{task}-{size}"
    return base if all(f.is_file() for f in checkpoint_files(base)) else None


def cache_root() -> Path:
    from snmfm.checkpoint import cache_dir
    return Path(os.environ.get("SNMFM_OPT_CACHE") or cache_dir() / "optimisation")


def model_key(task: str, size: str, overrides: dict | None = None, steps: int | None = None,
              seed: int = 0, tag: str = "") -> str:
    ov = json.dumps(overrides or {}, sort_keys=True)
    h = hashlib.sha256(f"{ov}|{tag}|{code_version('train')}".encode()).hexdigest()[:10]
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
    shipped = shipped_member(task.name, size)
    if shipped is not None and not overrides and steps is None and wrap is None and seed == 0:
        model, meta = load_checkpoint(shipped, task=task.name)
        return model.float().eval(), {**meta, "key": f"shipped:{shipped.name}"}
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
    cfg = task.train_config_for(size, steps)
    if device is None or device == "cpu":
        _, metrics = task.train(model=outer, seed=seed, config=cfg, progress=progress)
    else:
        metrics = _train_on(task, outer, cfg, seed, device, progress)
    meta = {"task": task.name, "model_name": task.model_name, "size": size, "seed": seed,
            "overrides": overrides or {}, "tag": tag, "metrics": metrics, "train": cfg.to_dict(),
            "train_device": device or "cpu"}
    save_checkpoint(model, path, meta)
    return model.float().eval(), {**meta, "key": key, "path": str(path)}


def ensure_default_checkpoint(task_name: str, device: str | None = None, progress: bool = False) -> Path:
    """The task's default checkpoint (`Task.default_checkpoint`), trained on `device` when neither
    shipped nor cached: the task's recipe, seed 0, saved where the CPU path would."""
    from snmfm.checkpoint import cache_dir, checkpoint_files, save_checkpoint, shipped_checkpoint
    from snmfm.tasks import get_task
    task = get_task(task_name)
    cached = cache_dir() / "checkpoints" / task.name
    have = any(all(f.is_file() for f in checkpoint_files(p)) for p in (shipped_checkpoint(task.name), cached))
    if have or device in (None, "cpu") or task.kind == "embed":
        return task.default_checkpoint(progress=progress)
    with torch.random.fork_rng(devices=[]):
        model = task.build_model(task.default_size, seed=0)
    cfg = task.train_config_for(task.default_size)
    metrics = _train_on(task, model, cfg, 0, device, progress)
    meta = {"task": task.name, "model_name": task.model_name, "size": task.default_size, "seed": 0,
            "metrics": metrics, "train": cfg.to_dict(), "task_info": task.info(),
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


def ship_member(task_name: str, size: str, progress: bool = False, device: str | None = None,
                half: bool = False, out: Path | str | None = None) -> Path:
    """Train the recipe member (`trained_model` with defaults, in a temporary cache) and copy it to
    snmfm/checkpoints/<task>-<size>: how the shipped members were made
    (`python -m eval.model_cache vision-digits tiny`).  half: store the weights as float16 (half
    the bytes, for the medium members; the metrics are re-measured on the rounded weights, which
    load back into a float32 model).  out: write <out>/<task>-<size>.* instead (e.g. on a training
    machine; copy the two files into snmfm/checkpoints to ship them)."""
    import shutil
    import tempfile

    from snmfm.checkpoint import SHIPPED_DIR, checkpoint_files, load_checkpoint, save_checkpoint
    from snmfm.tasks import get_task
    if shipped_member(task_name, size) is not None:
        raise FileExistsError(f"{task_name}-{size} is already shipped in {SHIPPED_DIR}; delete it to re-make it")
    dest = (SHIPPED_DIR if out is None else Path(out)) / f"{task_name}-{size}"
    if any(f.exists() for f in checkpoint_files(dest)):
        raise FileExistsError(f"{dest} exists; delete it to re-make it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _, meta = trained_model(task_name, size, cache=tmp, progress=progress, device=device)
        if "path" not in meta:
            raise ValueError(f"{task_name} {size} is the task's default checkpoint, shipped already")
        if not half:
            for src, dst in zip(checkpoint_files(meta["path"]), checkpoint_files(dest)):
                shutil.copyfile(src, dst)
            return dest
        model, rec = load_checkpoint(meta["path"])
        model = model.half().float().eval()
        keep = {k: v for k, v in rec.items() if k not in ("config", "aliases", "versions", "tensors_file",
                                                          "tensors_sha256", "path", "format")}
        keep.update(metrics_float32=rec.get("metrics"), metrics=get_task(task_name).evaluate(model),
                    stored="float16")
        save_checkpoint(model.half(), dest, keep)
    return dest


if __name__ == "__main__":
    import sys
    import time
    t0, c0 = time.perf_counter(), time.process_time()
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opt = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--") and "=" in a}
    print(ship_member(args[0], args[1], progress=True, device=opt.get("--device"), half="--half" in sys.argv,
                      out=opt.get("--out")),
          f"{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")
