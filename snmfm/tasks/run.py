"""Task workflows the CLI (and research code) call: train-and-save, evaluate a checkpoint."""
from __future__ import annotations

from snmfm.tasks import get_task


def train_and_save(task_name: str, out=None, size: str | None = None, seed: int = 0,
                   steps: int | None = None, progress: bool = True) -> dict:
    """Train a task's model from scratch and save it; returns a summary with the checkpoint path.

    out: checkpoint base path (default: <cache>/checkpoints/<task>-<size>-seed<seed>)."""
    from snmfm.checkpoint import cache_dir, save_checkpoint
    task = get_task(task_name)
    size = size or task.default_size
    model, metrics = task.train(seed=seed, steps=steps, progress=progress, size=size)
    if out is None:
        out = cache_dir() / "checkpoints" / f"{task.name}-{size}-seed{seed}"
    cfg = task.train_config if steps is None else task.train_config.replace(steps=int(steps))
    meta = {"task": task.name, "model_name": task.model_name, "size": size, "seed": seed,
            "metrics": metrics, "train": cfg.to_dict(), "task_info": task.info()}
    path = save_checkpoint(model, out, meta)
    return {"task": task.name, "size": size, "seed": seed, "checkpoint": str(path), **metrics}


def evaluate_checkpoint(task_name: str, checkpoint=None, seed: int = 0, limit: int | None = None,
                        split: str = "test") -> dict:
    """Load a checkpoint (default: the task's default checkpoint) and evaluate it on a split."""
    task = get_task(task_name)
    model, meta = task.load(checkpoint)
    result = task.evaluate(model, split=split, limit=limit, seed=seed)
    source = meta.get("path") or meta.get("source")
    return {**result, "checkpoint": source, "size": meta.get("size"), "seed": seed}
