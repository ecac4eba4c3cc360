"""Deterministic, disjoint train / calib / test splits."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "calib", "test")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


@dataclass(frozen=True)
class TensorData:
    """One split of a task: positional model inputs, targets, and the source id of each example.

    inputs: tuple of tensors with the examples along dim 0 (what the model is called with);
    targets: tensor with the examples along dim 0 (class labels, next bytes, answer tokens);
    ids: one source identifier per example (image or row index, module name) for leak checks."""

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor
    ids: tuple

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def take(self, index: torch.Tensor | slice) -> "TensorData":
        if isinstance(index, slice):
            ids = self.ids[index]
        else:
            ids = tuple(self.ids[int(i)] for i in index)
        return TensorData(tuple(x[index] for x in self.inputs), self.targets[index], ids)


def split_indices(n: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  split_seed: int = 0, stratify: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Partition range(n) into train / calib / test index arrays (sorted) by a seeded permutation.

    With `stratify` (class labels) each class is split in the same proportions, so a small test
    set has the class balance of the whole."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(split_seed)
    groups = [np.arange(n)] if stratify is None else [np.flatnonzero(stratify == c)
                                                      for c in np.unique(stratify)]
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for g in groups:
        g = rng.permutation(g)
        n_train = int(round(len(g) * fractions[0]))
        n_calib = int(round(len(g) * fractions[1]))
        parts["train"].append(g[:n_train])
        parts["calib"].append(g[n_train:n_train + n_calib])
        parts["test"].append(g[n_train + n_calib:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def split_of_name(name: str, fractions: tuple[float, float, float] = (0.8, 0.05, 0.15)) -> str:
    """Split of a named source (a module) from a hash of its name alone, so a module keeps its split
    whatever other modules exist (the standard library differs a little between Python versions)."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "calib" if u < fractions[0] + fractions[1] else "test"


def order(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of range(n): the example order of a split for a given seed."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=g)
