"""Python's own standard library as a byte-level code corpus (nothing downloaded).

Sources are the top-level ``*.py`` modules of the running interpreter's stdlib directory, in sorted
order.  Each module belongs to one split by a hash of its name (`split_of_name`), so evaluation is
on held-out *modules*, and a module keeps its split across Python versions.  The bytes per split
are capped (whole modules in sorted order, each at most `MAX_MODULE_BYTES`) to keep training quick.
The stdlib differs a little between Python versions, so `corpus_info` records what was read: count,
bytes, and a sha256 over names and contents, which checkpoints and reports carry.
"""
from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from snmfm.data.splits import TensorData, check_split, order, split_of_name

# this.py is ROT13 text, not Python; _sysconfigdata* are generated build tables, not code.
EXCLUDE = frozenset({"this.py"})
EXCLUDE_PREFIX = ("_sysconfigdata",)
MAX_MODULE_BYTES = 24_000
SPLIT_BYTES = {"train": 2_000_000, "calib": 150_000, "test": 300_000}
SPLIT_FRACTIONS = (0.8, 0.05, 0.15)


def stdlib_dir() -> Path:
    """The running interpreter's stdlib directory, or $SNMFM_STDLIB_DIR (to read another Python's
    sources, e.g. to reproduce a corpus recorded in a checkpoint)."""
    return Path(os.environ.get("SNMFM_STDLIB_DIR") or sysconfig.get_paths()["stdlib"])


def module_files(split: str, root: Path | None = None) -> list[Path]:
    """The module files of one split, sorted by name, within the split's byte cap."""
    check_split(split)
    root = root or stdlib_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"Python standard-library directory not found: {root}")
    chosen, total = [], 0
    for path in sorted(root.glob("*.py")):
        if path.name in EXCLUDE or path.name.startswith(EXCLUDE_PREFIX):
            continue
        if split_of_name(path.name, SPLIT_FRACTIONS) != split:
            continue
        size = min(path.stat().st_size, MAX_MODULE_BYTES)
        if total + size > SPLIT_BYTES[split]:
            break
        chosen.append(path)
        total += size
    if not chosen:
        raise FileNotFoundError(f"no standard-library modules for split {split!r} under {root}")
    return chosen


@dataclass(frozen=True)
class Module:
    name: str
    data: bytes


@lru_cache(maxsize=8)
def modules(split: str) -> tuple[Module, ...]:
    return tuple(Module(p.name, p.read_bytes()[:MAX_MODULE_BYTES]) for p in module_files(split))


def corpus_info() -> dict:
    """What the corpus was made of on this interpreter, per split: modules, bytes, sha256."""
    import sys
    info = {"python": sys.version.split()[0], "stdlib_dir": str(stdlib_dir()),
            "max_module_bytes": MAX_MODULE_BYTES}
    for split in ("train", "calib", "test"):
        h = hashlib.sha256()
        mods = modules(split)
        for m in mods:
            h.update(m.name.encode() + b"\0" + hashlib.sha256(m.data).digest())
        info[split] = {"modules": len(mods), "bytes": sum(len(m.data) for m in mods),
                       "sha256": h.hexdigest(), "first": mods[0].name, "last": mods[-1].name}
    return info


def as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def windows(split: str, length: int, seed: int = 0) -> TensorData:
    """Non-overlapping windows of `length + 1` bytes cut from each module of the split (no window
    crosses modules): inputs (bytes [N, length],), targets the next bytes [N, length]."""
    rows, ids = [], []
    for m in modules(split):
        t = as_tensor(m.data)
        for i in range(len(t) // (length + 1)):
            rows.append(t[i * (length + 1):(i + 1) * (length + 1)])
            ids.append(m.name)
    w = torch.stack(rows)[order(len(rows), seed)]
    ids = tuple(ids[int(i)] for i in order(len(rows), seed))
    return TensorData((w[:, :-1],), w[:, 1:], ids)


def train_stream(split: str = "train") -> torch.Tensor:
    """The split's modules concatenated (a newline between modules), for random crops in training."""
    return as_tensor(b"\n".join(m.data for m in modules(split)))


def random_crops(stream: torch.Tensor, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """n random windows of `length + 1` bytes from the stream."""
    start = torch.randint(0, len(stream) - length - 1, (n,), generator=gen)
    return stream[start[:, None] + torch.arange(length + 1)[None]]
