"""The `snmfm convert` job as one function research code can call too.

model reference -> FP32 model (task default checkpoint or a checkpoint path) -> calibrate on the
task's calibration split -> quantize -> convert -> check SNN == QANN on held-out inputs -> save.
A saved QANN file (from this function) can be given instead of an FP32 checkpoint.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from converters.io import FORMAT as QANN_FORMAT
from converters.io import load_qann, save_qann
from converters.snn import convert


def _is_qann_file(ref) -> bool:
    p = Path(str(ref))
    js = p if p.suffix == ".json" else p.with_suffix(".json")
    if not js.is_file():
        return False
    try:
        return json.loads(js.read_text()).get("format") == QANN_FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def resolve_model(ref, task: str | None = None):
    """(task object, FP32 model or None, QANN or None, info) for a task name, an FP32 checkpoint
    path or a QANN file."""
    from snmfm.checkpoint import load_checkpoint, read_meta
    from snmfm.tasks import TASKS, get_task
    ref = str(ref)
    if ref in TASKS and not Path(ref).exists():
        t = get_task(ref)
        if task not in (None, ref):
            raise ValueError(f"model {ref!r} is a task name but --task says {task!r}")
        model, meta = t.load()
        return t, model, None, {"source": "task default checkpoint", "task": ref,
                                "checkpoint_sha256": meta.get("tensors_sha256")}
    if _is_qann_file(ref):
        qann = load_qann(ref)
        name = task or qann.snmfm_meta.get("task")
        if name is None:
            raise ValueError(f"QANN file {ref} does not say which task it belongs to; pass --task")
        return get_task(name), None, qann, {"source": "QANN file", "task": name, "path": ref}
    p = Path(ref)
    if not (p.exists() or p.with_suffix(".json").exists()):
        raise FileNotFoundError(f"{ref!r} is neither a task ({', '.join(TASKS)}) nor a checkpoint file")
    meta = read_meta(ref)
    name = task or meta.get("task")
    if name is None:
        raise ValueError(f"checkpoint {ref} does not say which task it belongs to; pass --task")
    model, meta = load_checkpoint(ref, task=name)
    return get_task(name), model, None, {"source": "checkpoint", "task": name, "path": ref,
                                         "checkpoint_sha256": meta.get("tensors_sha256")}


def build_qann(task, model, *, w_bits: int = 8, a_bits: int = 8, calib: int = 64, method: str = "mse",
               seed: int = 0, overrides=None):
    """Calibrate `model` on `calib` samples of the task's calibration split and quantize it."""
    from snmfm.compress import calibrate, quantize
    if calib < 1:
        raise ValueError(f"--calib must be >= 1 sample, got {calib}")
    bs = min(32, calib)
    calibrate(model, task.batches("calib", bs, seed=seed, limit=calib))
    return quantize(model, w_bits, a_bits, method=method, overrides=overrides)


@torch.no_grad()
def check_exact(task, qann, snn, n: int = 32, T: int | None = None, seed: int = 0,
                batch_size: int = 16) -> dict:
    """Run QANN and SNN on `n` held-out inputs: agreement, max relative difference, T_settle."""
    agree = total = 0
    max_rel = 0.0
    settle = []
    t_qann = t_snn = 0.0
    for batch in task.batches("test", batch_size, seed=seed, limit=n):
        inputs = batch.inputs if hasattr(batch, "inputs") else tuple(batch)
        t0 = time.perf_counter()
        ref = qann(*inputs)
        t_qann += time.perf_counter() - t0
        t0 = time.perf_counter()
        r = snn.run(*inputs, T=T, record=False)
        t_snn += time.perf_counter() - t0
        out = r.output
        denom = float(ref.abs().max()) or 1.0
        max_rel = max(max_rel, float((out - ref).abs().max()) / denom)
        same = (out == ref).reshape(out.shape[0], -1).all(1)
        agree += int(same.sum())
        total += out.shape[0]
        settle.append(r.steps if r.t_settle is None else r.t_settle)
    return {"n": total, "identical_fraction": agree / max(total, 1), "max_rel_diff": max_rel,
            "t_settle": max(settle) if settle else None, "qann_s": t_qann, "snn_s": t_snn}


def convert_checkpoint(ref, *, task: str | None = None, w_bits: int = 8, a_bits: int = 8,
                       T: int | None = None, calib: int = 64, n_check: int = 32, method: str = "mse",
                       out=None, seed: int = 0) -> dict:
    """The whole `snmfm convert` job; returns a JSON-able summary (and writes the QANN to `out`)."""
    if T is not None and T < 1:
        raise ValueError(f"--timesteps must be >= 1 (or omitted to run until quiet), got {T}")
    torch.manual_seed(seed)
    t, model, qann, info = resolve_model(ref, task)
    if qann is None:
        qann = build_qann(t, model, w_bits=w_bits, a_bits=a_bits, calib=calib, method=method, seed=seed)
    snn = convert(qann)
    check = check_exact(t, qann, snn, n=n_check, T=T, seed=seed)
    summary = {"task": t.name, **info, "w_bits": qann.snmfm_quant.get("w_bits", w_bits),
               "a_bits": qann.snmfm_quant.get("a_bits", a_bits), "calib_samples": calib,
               "method": method, "timesteps": T, "seed": seed, "neurons": len(snn.neurons()),
               "nonspiking_units": len(snn.units()), **{f"check_{k}": v for k, v in check.items()}}
    if out is not None:
        path = save_qann(qann, out, meta={"task": t.name, "summary": summary})
        summary["out"] = str(path)
    return summary
