"""`snmfm simulate`: one model on one hardware configuration, as a library function."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

# `simulate`'s default SNN inputs: the main job's per-task counts (eval.pipeline.SNN_EXAMPLES, sized
# for 2 cores: 1 sentence for MiniLM, whose SNN takes ~1.5 min per input there), at most this many.
SIMULATE_SAMPLES_MAX = 16


def simulate_model(ref, hw="neuromorphic", *, task: str | None = None, w_bits: int = 8, a_bits: int = 8,
                   samples: int | None = None, T: int | None = None, calib: int = 64, seed: int = 0,
                   coding: str = "binary", policy=None, status: Callable[[str], None] | None = None):
    """HwReport of `ref` (task name, FP32 checkpoint or QANN file) on `hw` (registered name or file).

    The QANN is built as `snmfm convert` builds it; an accelerator that needs the SNN's activity is
    driven by the SNN (of `coding`) on `samples` held-out inputs (run until quiet unless T is
    given), one that runs the QANN densely gets no SNN run at all and its QANN is calibrated on one
    example (it reads shapes and bit widths only); the Workload comes from the first held-out input
    (eval.measure.measure).  samples: default the main job's count for the task, at most 16.
    Calibration is cached (converters.qann_cache).  status: told what is slow before it starts
    (the SNN run, with a time estimate)."""
    from converters.qann_cache import cached_qann
    from converters.workflow import resolve_model
    from eval.accelerators import needs_trace
    from eval.measure import measure
    from neuro_hw import load_hw_config

    if samples is not None and samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    cfg = load_hw_config(hw)  # fail on a bad config before any model work
    traced = needs_trace(cfg)
    torch.manual_seed(seed)
    t, model, qann, info = resolve_model(ref, task)
    if samples is None:
        from eval.pipeline import SNN_EXAMPLES, SNN_EXAMPLES_DEFAULT
        samples = min(SIMULATE_SAMPLES_MAX, SNN_EXAMPLES.get(t.name, SNN_EXAMPLES_DEFAULT))
    if qann is None:
        qann = cached_qann(t, model, info, w_bits=w_bits, a_bits=a_bits, calib=calib if traced else 1, seed=seed,
                           status=status if traced else None)
    snn = None
    if traced:  # the SNN run is the memory-hungry part: refuse (ModelTooLarge, exit 2) before it
        from converters.memory import check_run_memory
        from eval.measure import SNN_BATCH
        check_run_memory(qann, next(iter(t.batches("test", min(samples, SNN_BATCH), seed, limit=samples))).inputs,
                         T=T)
        if status is not None:
            snn = _announce_snn_run(t, qann, coding, samples, T, seed, status)
    m = measure(t, qann, [cfg], coding=coding, snn_examples=samples, T=T, seed=seed, policy=policy,
                name=t.name, snn=snn)
    report = next(iter(m.hw.values()))
    snn_info = {} if m.snn is None else {
        k: m.snn[k] for k in ("accuracy", "n_examples", "t_settle", "agreement", "max_rel_err",
                              "spikes_per_inference")}
    from snmfm.compress.bits import bit_plan_summary
    report.meta.update({"task": t.name, "model": info, "bits": bit_plan_summary(qann)["label"],
                        "calibration": {"samples": None if info.get("source") == "QANN file" else
                                        (calib if traced else 1),
                                        **getattr(qann, "snmfm_meta", {}).get("calibration_cache", {})},
                        "w_bits": qann.snmfm_quant.get("w_bits"),
                        "a_bits": qann.snmfm_quant.get("a_bits"), "samples": samples, "seed": seed,
                        "coding": m.coding, "snn": snn_info, "workload_ops": len(m.workload.ops),
                        "workload_macs": int(m.workload.total_macs)})
    return report


def _announce_snn_run(task, qann, coding: str, samples: int, T: int | None, seed: int, status) -> object:
    """Say, before it starts, that the SNN run is the slow part and about how long it takes: a few
    time steps of the first batch are timed; a binary SNN goes quiet after about 2^a_bits + 16
    steps (measured: 257-350 at A8, 19 at A4).  Returns the converted SNN (reused by the run)."""
    from converters import convert
    from eval.fmt import fmt_time
    from eval.measure import SNN_BATCH
    from snmfm.compress.bits import bit_plan_summary
    snn = convert(qann, coding=coding)
    batch = next(iter(task.batches("test", SNN_BATCH, seed, limit=samples)))
    probe = 9  # one probe step and one chunk of 8
    t0 = time.perf_counter()
    snn.run(*batch, T=probe)
    per_step = (time.perf_counter() - t0) / probe
    n_batches = -(-samples // SNN_BATCH)
    a_bits = max(int(b) for b in bit_plan_summary(qann)["a_bits"])
    steps = T if T is not None else (2 ** a_bits + 16 if coding == "binary" else None)
    what = f"for T={T} steps" if T is not None else "until quiet"
    if steps is None:
        how_long = f"{fmt_time(per_step)} per time step"
    else:
        how_long = (f"about {steps} steps at A{a_bits}, about {fmt_time(per_step * steps * n_batches)} "
                    f"on {torch.get_num_threads()} threads")
    status(f"{task.name}: running the SNN ({coding}) on {samples} held-out input{'s' * (samples != 1)} "
           f"{what} ({how_long}); --samples sets how many")
    return snn
