"""Checkpoints: `<path>.safetensors` (the tensors) + `<path>.json` (everything needed to rebuild).

The JSON holds the model's `ModelConfig.to_dict()`, the task, seed, metrics, library versions and
the sha256 of the tensors file, so a checkpoint is checked before it is trusted: a missing file,
bad JSON, a hash mismatch, a missing / extra / misshapen tensor or a config that does not build
each raise `CheckpointError` naming the file or key and the fix.

A built-in task's trained model (`Task.default_checkpoint()`, `snmfm.tasks.run.default_checkpoint`)
is shipped inside the package (`shipped_checkpoint`, snmfm/checkpoints/) or trained on first use and
cached under `cache_dir()` ($SNMFM_CACHE, default ~/.cache/snmfm).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

FORMAT = "snmfm-checkpoint/1"
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
SUFFIXES = (".safetensors", ".json")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit its config / task."""


def _base(path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in SUFFIXES else p


def checkpoint_files(path) -> tuple[Path, Path]:
    """(tensors file, JSON file) of a checkpoint path given with or without a suffix."""
    b = _base(path)
    return b.with_name(b.name + ".safetensors"), b.with_name(b.name + ".json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    import numpy
    import snmfm
    v = {"snmfm": snmfm.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
         "python": sys.version.split()[0]}
    try:
        import sklearn
        v["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return v


def _tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict with shared tensors stored once: (tensors, {alias: stored key})."""
    tensors, aliases, seen = {}, {}, {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape), v.dtype) if v.numel() else None
        if key is not None and key in seen:
            aliases[k] = seen[key]
            continue
        if key is not None:
            seen[key] = k
        tensors[k] = v.detach().cpu().contiguous()
    return tensors, aliases


def save_checkpoint(model: nn.Module, path, meta: dict | None = None) -> Path:
    """Write `<path>.safetensors` and `<path>.json`; returns the base path.

    meta: task, seed, metrics, train settings... (JSON-serialisable); config, versions and hashes
    are added here.  Only float models: a QANN's integer state lives outside the state dict."""
    from safetensors.torch import save_file

    from snmfm.nn import quantizers
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        raise CheckpointError("save_checkpoint needs an snmfm model with a `config` (ModelConfig); "
                              "got " + type(model).__name__)
    modes = {q.mode for _, q in quantizers(model)} - {"off"}
    if modes:
        raise CheckpointError(f"the model has quantizers in mode(s) {sorted(modes)}; checkpoints "
                              "hold float models (save the FP32 model and re-run quantize)")
    tensor_path, json_path = checkpoint_files(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors, aliases = _tensors(model)
    save_file(tensors, str(tensor_path), metadata={"format": FORMAT})
    record = {"format": FORMAT, **(meta or {}), "config": cfg.to_dict(), "aliases": aliases,
              "versions": versions(), "tensors_file": tensor_path.name,
              "tensors_sha256": sha256_file(tensor_path)}
    json_path.write_text(json.dumps(record, indent=1, sort_keys=True, default=_jsonable) + "\n")
    return _base(path)


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    raise TypeError(f"cannot store {type(x).__name__} in checkpoint metadata")


def read_meta(path) -> dict:
    """The JSON record of a checkpoint (checked to be present and valid JSON)."""
    tensor_path, json_path = checkpoint_files(path)
    for f in (json_path, tensor_path):
        if not f.is_file():
            raise CheckpointError(f"checkpoint file not found: {f} (a checkpoint is <path>.json + "
                                  f"<path>.safetensors, written by save_checkpoint or `snmfm train`)")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint metadata {json_path}: not valid JSON ({e}); "
                              "re-create it with `snmfm train`") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{json_path} is not an snmfm checkpoint record (expected format "
                              f"{FORMAT!r} with a 'config'); re-create it with `snmfm train`")
    return meta


def load_checkpoint(path, task: str | None = None, verify: bool = True) -> tuple[nn.Module, dict]:
    """(model in eval mode, meta) from a checkpoint; meta is the JSON record plus "path" (the base
    path).  `task`: refuse a checkpoint made for another task.  `verify`: check the tensors file
    against the sha256 in the JSON."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from snmfm.models import model_from_config
    tensor_path, json_path = checkpoint_files(path)
    meta = read_meta(path)
    if task is not None and meta.get("task") not in (None, task):
        raise CheckpointError(f"checkpoint {json_path} was made for task {meta.get('task')!r}, "
                              f"not {task!r}; pass a checkpoint of {task!r}")
    if verify and meta.get("tensors_sha256") and sha256_file(tensor_path) != meta["tensors_sha256"]:
        raise CheckpointError(f"corrupt checkpoint: {tensor_path} does not match the sha256 in "
                              f"{json_path.name}; the file was changed or truncated, re-create it")
    try:
        model = model_from_config(meta["config"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {json_path} has a config that does not build a model: "
                              f"{e}") from None
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint tensors {tensor_path}: {e}") from None
    for alias, key in meta.get("aliases", {}).items():
        if key in tensors:
            tensors[alias] = tensors[key]
    for k, v in tensors.items():  # per-input-channel activation scales (snmfm.compress.smooth)
        if k.endswith(".in_div"):
            try:
                model.get_submodule(k[:-len(".in_div")]).set_in_div(v)
            except (AttributeError, ValueError) as e:
                raise CheckpointError(f"checkpoint {tensor_path}: tensor {k!r} does not fit its layer: {e}") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise CheckpointError(f"checkpoint {tensor_path} does not match its config: "
                              + (f"missing tensor(s) {missing[:5]}" if missing else "")
                              + ("; " if missing and extra else "")
                              + (f"unexpected tensor(s) {extra[:5]}" if extra else ""))
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"checkpoint {tensor_path} does not match its config: tensor {k!r} "
                                  f"has shape {tuple(tensors[k].shape)}, the config needs {tuple(v.shape)}")
    model.load_state_dict(tensors, strict=True)
    return model.eval(), {**meta, "path": str(_base(path))}


# ---- default checkpoints of the built-in tasks ------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("SNMFM_CACHE") or Path.home() / ".cache" / "snmfm")


def shipped_checkpoint(task_name: str) -> Path:
    return SHIPPED_DIR / task_name
