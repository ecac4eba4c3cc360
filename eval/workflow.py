"""`snmfm simulate`: one model on one hardware configuration, as a library function."""
from __future__ import annotations

import torch


def simulate_model(ref, hw="neuromorphic", *, task: str | None = None, w_bits: int = 8, a_bits: int = 8,
                   samples: int = 16, T: int | None = None, calib: int = 64, seed: int = 0,
                   coding: str = "binary", policy=None):
    """HwReport of `ref` (task name, FP32 checkpoint or QANN file) on `hw` (registered name or file).

    The QANN is built as `snmfm convert` builds it; an accelerator that needs the SNN's activity is
    driven by the SNN (of `coding`) on `samples` held-out inputs (run until quiet unless T is
    given), one that runs the QANN densely gets no SNN run at all; the Workload comes from the
    first held-out input (eval.measure.measure)."""
    from converters.workflow import build_qann, resolve_model
    from eval.measure import measure
    from neuro_hw import load_hw_config

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    cfg = load_hw_config(hw)  # fail on a bad config before any model work
    torch.manual_seed(seed)
    t, model, qann, info = resolve_model(ref, task)
    if qann is None:
        qann = build_qann(t, model, w_bits=w_bits, a_bits=a_bits, calib=calib, seed=seed)
    from converters.memory import check_run_memory  # refuse (ModelTooLarge, exit 2) before running
    from eval.measure import SNN_BATCH
    check_run_memory(qann, next(iter(t.batches("test", min(samples, SNN_BATCH), seed, limit=samples))).inputs, T=T)
    m = measure(t, qann, [cfg], coding=coding, snn_examples=samples, T=T, seed=seed, policy=policy,
                name=t.name)
    report = next(iter(m.hw.values()))
    snn_info = {} if m.snn is None else {
        k: m.snn[k] for k in ("accuracy", "n_examples", "t_settle", "agreement", "max_rel_err",
                              "spikes_per_inference")}
    report.meta.update({"task": t.name, "model": info, "w_bits": qann.snmfm_quant.get("w_bits"),
                        "a_bits": qann.snmfm_quant.get("a_bits"), "samples": samples, "seed": seed,
                        "coding": m.coding, "snn": snn_info, "workload_ops": len(m.workload.ops),
                        "workload_macs": int(m.workload.total_macs)})
    return report
