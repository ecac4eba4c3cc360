"""`snmfm simulate`: one model on one hardware configuration, as a library function."""
from __future__ import annotations

import torch


def simulate_model(ref, hw="neuromorphic", *, task: str | None = None, w_bits: int = 8, a_bits: int = 8,
                   samples: int = 16, T: int | None = None, calib: int = 64, seed: int = 0):
    """HwReport of `ref` (task name, FP32 checkpoint or QANN file) on `hw` (bundled name or file).

    The QANN is built as `snmfm convert` builds it; the neuromorphic chip is driven by the SNN's
    activity on `samples` held-out inputs (run until quiet unless T is given); the Workload comes
    from the first of them."""
    from converters import convert
    from converters.workflow import build_qann, resolve_model
    from eval.pipeline import measure_snn, trim_trace
    from neuro_hw import extract_workload, load_hw_config, simulate
    from neuro_hw.neuromorphic import NeuromorphicConfig

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    cfg = load_hw_config(hw)  # fail on a bad config before any model work
    torch.manual_seed(seed)
    t, model, qann, info = resolve_model(ref, task)
    if qann is None:
        qann = build_qann(t, model, w_bits=w_bits, a_bits=a_bits, calib=calib, seed=seed)
    first = next(iter(t.batches("test", 1, seed=seed, limit=1)))
    workload = extract_workload(qann, *first, name=t.name)
    trace, snn_info = None, {}
    if isinstance(cfg, NeuromorphicConfig):
        metrics, trace, _ = measure_snn(t, qann, convert(qann), samples, T=T, seed=seed)
        if T is None and trace.t_settle:
            trace = trim_trace(trace, trace.t_settle)
        snn_info = {k: metrics[k] for k in ("accuracy", "n_examples", "t_settle", "agreement",
                                             "max_rel_err", "spikes_per_inference")}
    report = simulate(workload, trace, cfg)
    report.meta.update({"task": t.name, "model": info, "w_bits": qann.snmfm_quant.get("w_bits"),
                        "a_bits": qann.snmfm_quant.get("a_bits"), "samples": samples, "seed": seed,
                        "snn": snn_info, "workload_ops": len(workload.ops),
                        "workload_macs": int(workload.total_macs)})
    return report
