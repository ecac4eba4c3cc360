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
               seed: int = 0, overrides=None, batches=None):
    """Calibrate `model` on `calib` samples of the task's calibration split (or on `batches`, those
    samples already loaded) and quantize it.  converters.qann_cache.cached_qann: the same, cached."""
    from snmfm.compress import calibrate, quantize
    if calib < 1:
        raise ValueError(f"--calib must be >= 1 sample, got {calib}")
    bs = min(32, calib)
    calibrate(model, batches if batches is not None else task.batches("calib", bs, seed=seed, limit=calib))
    return quantize(model, w_bits, a_bits, method=method, overrides=overrides)


@torch.no_grad()
def check_exact(task, qann, snn, n: int = 32, T: int | None = None, seed: int = 0,
                batch_size: int = 16) -> dict:
    """Run QANN and SNN on `n` held-out inputs: agreement, max relative difference, T_settle (None
    when some input had not gone quiet within a fixed T: then `settled` is False and the SNN's output
    is a truncated sum, not the QANN's)."""
    agree = total = unsettled = 0
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
        if r.t_settle is None:
            unsettled += out.shape[0]
        else:
            settle.append(r.t_settle)
    return {"n": total, "identical_fraction": agree / max(total, 1), "max_rel_diff": max_rel,
            "t_settle": max(settle) if settle and not unsettled else None, "settled": unsettled == 0,
            "unsettled_n": unsettled, "qann_s": t_qann, "snn_s": t_snn}


def _only(counts: dict):
    """The one bit width of a uniform plan ({"4": n} -> 4); None for a mixed one."""
    return int(next(iter(counts))) if len(counts) == 1 else None


def convert_checkpoint(ref, *, task: str | None = None, w_bits: int = 8, a_bits: int = 8,
                       T: int | None = None, calib: int = 64, n_check: int = 32, method: str = "mse",
                       out=None, seed: int = 0, coding: str = "binary") -> dict:
    """The whole `snmfm convert` job; returns a JSON-able summary (and writes the QANN to `out`).
    coding: the SNN's coding (converters.codings.names()); the check runs that SNN.

    The summary's `bits` is the plan the QANN really has (from its layers: "W4A4", or "mixed W4-8
    A4-8" for a mixed plan; `bit_plan` counts the layers per width), whatever w_bits/a_bits say when
    MODEL is a QANN file.  With a fixed T (`fixed_t`) below the network's settling time the check
    is of a truncated SNN: `warnings` says so."""
    from snmfm.compress.bits import bit_plan_summary
    if T is not None and T < 1:
        raise ValueError(f"--timesteps must be >= 1 (or omitted to run until quiet), got {T}")
    from converters import codings
    codings.get(coding)  # an unknown coding fails before any work
    torch.manual_seed(seed)
    t, model, qann, info = resolve_model(ref, task)
    from_file = qann is not None
    if qann is None:
        qann = build_qann(t, model, w_bits=w_bits, a_bits=a_bits, calib=calib, method=method, seed=seed)
    from converters.memory import check_run_memory  # refuse (ModelTooLarge, exit 2) before running
    check_run_memory(qann, next(iter(t.batches("test", 16, seed=seed, limit=n_check))).inputs, T=T)
    snn = convert(qann, coding)
    check = check_exact(t, qann, snn, n=n_check, T=T, seed=seed)
    plan = bit_plan_summary(qann)
    warnings = []
    if not check["settled"]:
        warnings.append(f"--timesteps {T} stops the SNN before it went quiet on {check['unsettled_n']} of "
                        f"{check['n']} inputs (T_settle > {T}): their outputs are truncated sums, not the "
                        f"QANN's ({100 * check['identical_fraction']:.0f}% identical); leave --timesteps out "
                        "to run until quiet")
    summary = {"task": t.name, **info, "bits": plan["label"], "w_bits": _only(plan["w_bits"]),
               "a_bits": _only(plan["a_bits"]), "bit_plan": plan,
               "calib_samples": None if from_file else calib,
               "method": qann.snmfm_quant.get("method") if from_file else method,
               "coding": snn.coding, "timesteps": T, "fixed_t": T is not None, "seed": seed,
               "neurons": len(snn.neurons()),
               "nonspiking_units": len(snn.units()), **{f"check_{k}": v for k, v in check.items()},
               "warnings": warnings}
    if out is not None:
        path = save_qann(qann, out, meta={"task": t.name, "summary": summary})
        summary["out"] = str(path)
    return summary
