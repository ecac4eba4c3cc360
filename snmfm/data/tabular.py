"""scikit-learn's bundled tables: UCI optical digits (8x8 images) and Wisconsin breast cancer (WDBC).

Both ship inside scikit-learn, so nothing is downloaded."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from snmfm.data.splits import TensorData, check_split, order, split_indices

DIGITS_SPLIT = (0.7, 0.1, 0.2)   # 1797 images -> 1258 / 180 / 359 (stratified by digit)
WDBC_SPLIT = (0.7, 0.1, 0.2)     # 569 rows -> 398 / 57 / 114 (stratified by diagnosis)
DIGIT_MAX = 16.0                 # pixel values of load_digits are 0..16


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


@lru_cache(maxsize=1)
def _wdbc() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    return d.data.astype(np.float64), d.target.astype(np.int64), tuple(d.feature_names)


@lru_cache(maxsize=16)
def digit_indices(split: str, split_seed: int = 0) -> np.ndarray:
    """Indices into load_digits() of one split (disjoint across splits, stratified by digit)."""
    _, y = _digits()
    idx = split_indices(len(y), DIGITS_SPLIT, split_seed, stratify=y)[check_split(split)]
    idx.setflags(write=False)  # cached: callers share it
    return idx


def digit_images(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 8, 8] scaled to [0, 1] and labels [N] of the given load_digits indices."""
    x, y = _digits()
    return torch.from_numpy(x[index] / DIGIT_MAX)[:, None], torch.from_numpy(y[index])


def digits(split: str, seed: int = 0, split_seed: int = 0) -> TensorData:
    """One split of the digits: inputs (images [N,1,8,8] in [0,1],), targets digit [N]; `seed`
    orders the examples."""
    idx = digit_indices(split, split_seed)
    idx = idx[order(len(idx), seed).numpy()]
    images, labels = digit_images(idx)
    return TensorData((images,), labels, tuple(int(i) for i in idx))


def shift_images(images: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Training augmentation: translate each image by up to `max_shift` pixels (zero fill)."""
    n, c, h, w = images.shape
    pad = torch.nn.functional.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])[:, :, None].expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, :].expand(n, h, w)
    batch = torch.arange(n)[:, None, None].expand(n, h, w)
    return pad[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()


@lru_cache(maxsize=16)
def wdbc_indices(split: str, split_seed: int = 0) -> np.ndarray:
    _, y, _ = _wdbc()
    idx = split_indices(len(y), WDBC_SPLIT, split_seed, stratify=y)[check_split(split)]
    idx.setflags(write=False)
    return idx


@lru_cache(maxsize=4)
def wdbc_stats(split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each feature over the *train* split only (no test leak)."""
    x, _, _ = _wdbc()
    tr = x[wdbc_indices("train", split_seed)]
    return tr.mean(0), tr.std(0) + 1e-8


def wdbc(split: str, seed: int = 0, split_seed: int = 0) -> TensorData:
    """One split of WDBC: inputs (standardised features [N, 30] float32,), targets [N]
    (sklearn's coding: 0 = malignant, 1 = benign); `seed` orders the rows."""
    x, y, _ = _wdbc()
    idx = wdbc_indices(split, split_seed)
    idx = idx[order(len(idx), seed).numpy()]
    mean, std = wdbc_stats(split_seed)
    feats = torch.from_numpy(((x[idx] - mean) / std).astype(np.float32))
    return TensorData((feats,), torch.from_numpy(y[idx]), tuple(int(i) for i in idx))


def wdbc_feature_names() -> tuple[str, ...]:
    return _wdbc()[2]
