"""Built-in tasks: real data, no downloads.  ``get_task(name)`` returns a `Task`.

vision-digits  ViT on 8x8 digit images                         classify
medical-wdbc   FeatureTransformer on breast-cancer features    classify
code-stdlib    byte-level decoder on Python's stdlib source    lm
vqa-digits     image + question -> generated one-word answer   vqa
text-minilm    pretrained all-MiniLM-L6-v2 sentence embeddings embed
"""
from __future__ import annotations

from snmfm.tasks.base import KINDS, Batch, Task, TaskError
from snmfm.tasks.classify import MedicalWDBC, VisionDigits
from snmfm.tasks.code import CodeStdlib
from snmfm.tasks.text import TextMiniLM
from snmfm.tasks.vqa import VQADigits

_REGISTRY: dict[str, type[Task]] = {t.name: t for t in
                                    (VisionDigits, MedicalWDBC, CodeStdlib, VQADigits, TextMiniLM)}
TASKS: tuple[str, ...] = tuple(_REGISTRY)
_INSTANCES: dict[str, Task] = {}


class UnknownTaskError(TaskError):
    pass


def get_task(name: str) -> Task:
    """The task called `name` (one shared instance per name, so its data caches are reused)."""
    if name not in _REGISTRY:
        raise UnknownTaskError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


__all__ = ["Batch", "KINDS", "TASKS", "Task", "TaskError", "UnknownTaskError", "get_task"]
