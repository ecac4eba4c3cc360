"""Task workflows the CLI (and research code) call: train-and-save, evaluate a checkpoint."""
from __future__ import annotations

from snmfm.tasks import get_task


def train_and_save(task_name: str, out=None, size: str | None = None, seed: int = 0,
                   steps: int | None = None, progress: bool = True) -> dict:
    """Train a task's model from scratch and save it (`Task.train_and_save`); a summary with the
    checkpoint path.  out: checkpoint base path (default: <cache>/checkpoints/<task>-<size>-seed<seed>)."""
    return get_task(task_name).train_and_save(out, size=size, seed=seed, steps=steps, progress=progress)


def default_checkpoint(task_name: str, progress: bool = True):
    """Path of a built-in task's trained default model (`Task.default_checkpoint`): shipped, else
    cached, else trained now and cached."""
    return get_task(task_name).default_checkpoint(progress=progress)


def evaluate_checkpoint(task_name: str, checkpoint=None, seed: int = 0, limit: int | None = None,
                        split: str = "test") -> dict:
    """Load a checkpoint (default: the task's default checkpoint) and evaluate it on a split."""
    task = get_task(task_name)
    model, meta = task.load(checkpoint)
    result = task.evaluate(model, split=split, limit=limit, seed=seed)
    source = meta.get("path") or meta.get("source")
    return {**result, "checkpoint": source, "size": meta.get("size"), "seed": seed}
