"""SNN == QANN over a whole held-out split, sharded across Ray tasks (`snmfm bench exact`).

The QANN is built once (seeded calibration, as `snmfm convert` builds it) and shipped to every
task through Ray's object store; each task converts it and runs a contiguous range of the split's
batches (`batch_size` examples each, the split in its seed-fixed order).  A batch is the unit of
work, so a run gives the same per-batch records however it is sharded: `workers=1` (one process,
no Ray) and any number of Ray workers merge to the same result (tests/test_engine.py checks it).

Per batch: examples whose SNN output equals the QANN's bitwise, the largest |SNN - QANN| and
|QANN|, and T_settle (the step after which the batch was quiet; `steps` when a fixed T ran out).
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

import numpy as np
import torch

DEFAULT_BATCH = 16


def _shard(shared: dict, shard: dict) -> list[dict]:
    """Records of batches [shard.start, shard.stop) of the split (runs in a Ray worker)."""
    from converters import convert
    from snmfm.tasks import get_task
    task = get_task(shared["task"])
    dev = torch.device(shared.get("device") or "cpu")
    qann = shared["qann"].to(dev)
    snn = convert(qann, coding=shared.get("coding", "binary")).to(dev)
    out = []
    batches = task.batches(shared["split"], shared["batch_size"], seed=shared["seed"], limit=shared["limit"])
    with torch.no_grad():
        for i, batch in enumerate(itertools.islice(batches, shard["start"], shard["stop"]), shard["start"]):
            inputs = tuple(x.to(dev) if isinstance(x, torch.Tensor) else x for x in batch.inputs)
            ref = qann(*inputs)
            t0 = time.perf_counter()
            r = snn.run(*inputs, T=shared["T"], record=False)
            wall = time.perf_counter() - t0
            y = r.output
            same = (y == ref).reshape(y.shape[0], -1).all(1)
            out.append({"batch": i, "n": int(y.shape[0]), "identical": int(same.sum()),
                        "max_abs_diff": float((y - ref).abs().max()), "max_abs_ref": float(ref.abs().max()),
                        "t_settle": int(r.steps if r.t_settle is None else r.t_settle),
                        "settled": r.t_settle is not None, "steps": int(r.steps), "snn_s": wall})
    return out


def shards_of(n_batches: int, workers: int, per_worker: int = 4) -> list[dict]:
    """Contiguous batch ranges: about `per_worker` shards per worker (load balance), >= 1 batch each."""
    n_shards = max(1, min(n_batches, workers * per_worker))
    size = math.ceil(n_batches / n_shards)
    return [{"start": s, "stop": min(n_batches, s + size)} for s in range(0, n_batches, size)]


def merge(records: list[dict]) -> dict:
    """One summary of per-batch records (order-independent except for the per-batch list)."""
    n = sum(r["n"] for r in records)
    same = sum(r["identical"] for r in records)
    max_abs = max((r["max_abs_diff"] for r in records), default=0.0)
    max_ref = max((r["max_abs_ref"] for r in records), default=0.0)
    settle = np.array([r["t_settle"] for r in records], dtype=float)
    return {"n": n, "identical": same, "identical_fraction": same / n if n else 0.0,
            "all_identical": same == n, "max_abs_diff": max_abs,
            "max_rel_diff": max_abs / max_ref if max_ref > 0 else max_abs,
            "t_settle_max": int(settle.max()) if len(settle) else None,
            "t_settle_mean": float(settle.mean()) if len(settle) else None,
            "t_settle_median": float(np.median(settle)) if len(settle) else None,
            "unsettled_batches": sum(not r["settled"] for r in records), "batches": len(records)}


def exact_split(model: str, *, task: str | None = None, w_bits: int = 8, a_bits: int = 8,
                split: str = "test", limit: int | None = None, T: int | None = None, calib: int = 64,
                method: str = "mse", batch_size: int = DEFAULT_BATCH, seed: int = 0, workers: int = 1,
                ray_address: str | None = None, status: Callable[[str], None] | None = None,
                coding: str = "binary", device: str = "cpu") -> dict:
    """SNN == QANN on every example of `split` (or its first `limit`), fanned out over `workers`
    Ray tasks (or the cluster at `ray_address`); a JSON-able summary with per-batch records.
    coding: the SNN's coding (converters.codings); device: where each shard runs ("cuda": the QANN
    and the SNN both on the GPU, compared there; workers=1 keeps one process on one GPU)."""
    from converters import codings
    from snmfm.device import resolve_device
    codings.get(coding)  # an unknown coding fails now, naming the registered ones
    device = str(resolve_device(device))
    from converters.memory import check_run_memory
    from converters.workflow import build_qann, resolve_model
    from eval.engine import ensure_ray, map_tasks
    from snmfm.data.splits import check_split
    check_split(split)
    if ray_address:  # an unreachable cluster fails now, not after the QANN is built
        ensure_ray(ray_address=ray_address)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if T is not None and T < 1:
        raise ValueError(f"--timesteps must be >= 1 (or omitted to run until quiet), got {T}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    t, fp32, qann, info = resolve_model(model, task)
    if qann is None:
        qann = build_qann(t, fp32, w_bits=w_bits, a_bits=a_bits, calib=calib, method=method, seed=seed)
    n_total = len(t.data(split, seed))
    n = n_total if limit is None else min(n_total, limit)
    first = next(iter(t.batches(split, batch_size, seed=seed, limit=n)))
    memory = check_run_memory(qann, first.inputs, T=T)  # refuses (ValueError) before any worker starts
    n_batches = math.ceil(n / batch_size)
    shards = shards_of(n_batches, workers or 1)
    shared = {"task": t.name, "qann": qann, "split": split, "batch_size": batch_size, "seed": seed,
              "limit": n, "T": T, "coding": coding, "device": device}
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    parts = map_tasks(_shard, shards, workers=workers, ray_address=ray_address, shared=shared,
                      status=status, label="shard")
    records = [r for p in parts for r in p]
    run_s = time.perf_counter() - t1
    return {"task": t.name, **info, "split": split, "w_bits": qann.snmfm_quant.get("w_bits", w_bits),
            "a_bits": qann.snmfm_quant.get("a_bits", a_bits), "timesteps": T, "seed": seed,
            "coding": coding, "device": device,
            "batch_size": batch_size, "workers": workers, "ray_address": ray_address, "shards": len(shards),
            **merge(records), "memory_estimate_bytes": memory["estimate_bytes"],
            "build_s": build_s, "run_s": run_s, "snn_cpu_s": sum(r["snn_s"] for r in records),
            "per_batch": records}
