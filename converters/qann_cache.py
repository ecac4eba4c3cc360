"""Calibrated QANNs cached on disk, so `snmfm simulate` / `convert` of the same model at the same bits
calibrate once (MiniLM: about a minute on 2 cores) instead of every run.

An entry is the QANN file `converters.io.save_qann` writes, under `$SNMFM_CACHE/qann/` (default
~/.cache/snmfm/qann/), named by the sha256 of its key:
- the model's weights (sha256 of every tensor of its state dict, so a retrained or edited checkpoint
  is a new entry whatever its path),
- the calibration inputs themselves (sha256 of the tensors `build_qann` calibrates on: task data,
  sample count and seed all included),
- w_bits, a_bits, scale method and per-layer overrides,
- the code version: sha256 of the source of `snmfm` (models, quantizers, calibration, task data)
  and of the converters modules that build and store the QANN; any edit there is a new entry.
A corrupt or half-written entry is rebuilt.  SNMFM_NO_CACHE=1 turns the cache off.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

FORMAT = "snmfm.qann-cache/1"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 over the source files whose behaviour decides a calibrated QANN."""
    import snmfm
    snmfm_root = Path(snmfm.__file__).parent
    here = Path(__file__).parent
    files = sorted(snmfm_root.rglob("*.py")) + [here / n for n in ("io.py", "workflow.py", "qann_cache.py")]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(f.parent.parent if f.parent == here else snmfm_root.parent).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _tensor_digest(tensors) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    return _tensor_digest(sorted(model.state_dict().items()))


def cache_enabled() -> bool:
    return os.environ.get("SNMFM_NO_CACHE", "").strip() not in ("1", "true", "yes")


def cache_path(key: dict) -> Path:
    from snmfm.checkpoint import cache_dir
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "qann" / digest


def cached_qann(task, model, info: dict | None = None, *, w_bits: int = 8, a_bits: int = 8, calib: int = 64,
                method: str = "mse", seed: int = 0, overrides=None, status=None):
    """`converters.workflow.build_qann(task, model, ...)`, from the cache when the same weights were
    calibrated on the same inputs at the same bits by the same code.  Returns the QANN; its
    ``snmfm_meta["calibration_cache"]`` says "hit" or "miss" (and the entry's path).  status: told
    when calibration runs (a miss)."""
    from converters.io import load_qann, save_qann
    from converters.workflow import build_qann
    if calib < 1:
        raise ValueError(f"--calib must be >= 1 sample, got {calib}")
    batches = list(task.batches("calib", min(32, calib), seed=seed, limit=calib))
    if not cache_enabled():
        return build_qann(task, model, w_bits=w_bits, a_bits=a_bits, calib=calib, method=method, seed=seed,
                          overrides=overrides, batches=batches)
    key = {"format": FORMAT, "code": code_version(), "task": task.name, "weights": weights_digest(model),
           "calib_inputs": _tensor_digest((f"{i}.{j}", x) for i, b in enumerate(batches) for j, x in enumerate(b)),
           "w_bits": int(w_bits), "a_bits": int(a_bits), "method": method,
           "overrides": {k: dict(v) for k, v in sorted((overrides or {}).items())}}
    path = cache_path(key)
    if path.with_suffix(".json").is_file():
        try:
            qann = load_qann(path)
            qann.snmfm_meta = {**qann.snmfm_meta, "calibration_cache": {"status": "hit", "path": str(path)}}
            return qann
        except (ValueError, FileNotFoundError, KeyError, RuntimeError):
            pass  # corrupt or half-written entry: rebuilt and replaced below
    if status is not None:
        status(f"{task.name}: calibrating on {sum(len(b[0]) for b in batches)} samples at "
               f"W{w_bits}A{a_bits} (cached in {path.parent} for the next run)")
    qann = build_qann(task, model, w_bits=w_bits, a_bits=a_bits, calib=calib, method=method, seed=seed,
                      overrides=overrides, batches=batches)
    try:
        save_qann(qann, path, meta={"task": task.name, "cache_key": key, "source": (info or {}).get("source")})
        status = {"status": "miss", "path": str(path)}
    except (TypeError, OSError) as e:  # a model save_qann cannot store, or an unwritable cache
        warnings.warn(f"calibration not cached ({e})", stacklevel=2)
        status = {"status": "not cached", "why": str(e)}
    qann.snmfm_meta = {**getattr(qann, "snmfm_meta", {}), "calibration_cache": status}
    return qann
