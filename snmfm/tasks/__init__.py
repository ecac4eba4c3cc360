"""Built-in tasks: real data, no downloads.  ``get_task(name)`` returns a `Task`.

vision-digits  ViT on 8x8 digit images                         classify
medical-wdbc   FeatureTransformer on breast-cancer features    classify
code-stdlib    byte-level decoder on Python's stdlib source    lm
vqa-digits     image + question -> generated one-word answer   vqa
text-minilm    pretrained all-MiniLM-L6-v2 sentence embeddings embed
vision-digits-stream  clips of digit frames, ViT per frame     classify (get_task(name, change_rate=0.05))
"""
from __future__ import annotations

from snmfm.tasks.base import KINDS, Batch, Task, TaskError
from snmfm.tasks.classify import MedicalWDBC, VisionDigits
from snmfm.tasks.code import CodeStdlib
from snmfm.tasks.stream import VisionDigitsStream
from snmfm.tasks.text import TextMiniLM
from snmfm.tasks.vqa import VQADigits

_REGISTRY: dict[str, type[Task]] = {t.name: t for t in
                                    (VisionDigits, MedicalWDBC, CodeStdlib, VQADigits, TextMiniLM,
                                     VisionDigitsStream)}
TASKS: tuple[str, ...] = tuple(_REGISTRY)
_INSTANCES: dict[tuple, Task] = {}


class UnknownTaskError(TaskError):
    pass


def get_task(name: str, **params) -> Task:
    """The task called `name` (one shared instance per name and parameters, so its data caches are
    reused).  `params`: a parameterised task's settings, e.g.
    ``get_task("vision-digits-stream", change_rate=0.02)``."""
    if name not in _REGISTRY:
        raise UnknownTaskError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    cls = _REGISTRY[name]
    allowed = getattr(cls, "params", ())
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise TaskError(f"task {name!r} has no parameter(s) {', '.join(bad)}"
                        + (f"; its parameters: {', '.join(allowed)}" if allowed else "; it takes none"))
    key = (name, tuple(sorted(params.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = cls(**params)
    return _INSTANCES[key]


__all__ = ["Batch", "KINDS", "TASKS", "Task", "TaskError", "UnknownTaskError", "get_task"]
