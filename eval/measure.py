"""One model, quantized and measured on both accelerators: the unit of the optimisation studies.

`measure_model` is the main job's per-variant measurement (eval.pipeline.run_task) cut down to
what a schedule needs: QANN accuracy, the SNN run on held-out examples (accuracy at every step,
T_settle, SNN == QANN agreement), one Workload, and HwReports on both accelerators -- at the
settle point and, for the neuromorphic chip, at fixed T values below it (the trace cut to T steps:
a chip that stops after T steps, or earlier when quiet).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def hw_summary(rep) -> dict:
    """The JSON-able part of an HwReport a schedule needs."""
    d = {"energy_pj": float(rep.energy_pj), "latency_s": float(rep.latency_s),
         "breakdown_pj": {k: float(v) for k, v in rep.breakdown_pj.items()},
         "static_power_w": float(rep.meta.get("static_power_w", 0.0))}
    if rep.spike_driven_fraction is not None:
        d["spike_driven_fraction"] = dict(rep.spike_driven_fraction)
    return d


def quantized(task, model, w_bits: int, a_bits: int, calib_limit: int | None = 256, seed: int = 0):
    """Calibrate (a copy of) `model` on the calib split and return its QANN."""
    import copy

    from snmfm.compress import calibrate, quantize
    m = copy.deepcopy(model).float().eval()
    calibrate(m, task.batches("calib", 64, seed, limit=calib_limit))
    return quantize(m, w_bits, a_bits)


@torch.no_grad()
def measure_model(task, model, *, w_bits: int = 8, a_bits: int = 8, snn_examples: int = 32,
                  T_values: Sequence[int] = (), T_max: int | None = None, qann=None,
                  calib_limit: int | None = 256, eval_limit: int | None = None, seed: int = 0,
                  hw_neuromorphic="neuromorphic", hw_conventional="conventional",
                  fp32: bool = False) -> dict:
    """Measure `model` (an FP32 module taking the task's inputs) at W{w}A{a}.

    snn_examples: test examples the SNN runs on (until quiet, or T_max steps when given).
    T_values: fixed time steps at which the neuromorphic chip is also charged (those < the run's
    length).  Returns {"qann": accuracy dict, "snn": step metrics, "hw": {"conventional",
    "neuromorphic"}, "hw_T": {T: neuromorphic}, "workload": {...}} (JSON-able)."""
    from converters import convert
    from eval.pipeline import measure_snn, trim_trace
    from neuro_hw import extract_workload, simulate
    if qann is None:
        qann = quantized(task, model, w_bits, a_bits, calib_limit, seed)
    q = task.evaluate(qann, "test", limit=eval_limit, seed=seed)
    snn = convert(qann)
    s, trace, first = measure_snn(task, qann, snn, snn_examples, T=T_max, seed=seed)
    example = tuple(x[:1] for x in first)
    wl = extract_workload(qann, *example, name=f"{task.name}-W{w_bits}A{a_bits}")
    settle = trace.t_settle
    hw_trace = trim_trace(trace, settle) if T_max is None and settle else trace
    out = {"qann": {k: v for k, v in q.items() if isinstance(v, (int, float, str))},
           "snn": {k: s[k] for k in ("accuracy", "n", "steps", "t_settle", "t_settle_mean",
                                     "t_settle_max", "acc_per_step", "agreement",
                                     "qann_accuracy_subset", "spikes_per_inference")},
           "workload": {"macs": int(wl.total_macs), "params": int(wl.total_params),
                        "weight_bits": int(wl.weight_bits_total()), "n_ops": len(wl.ops)},
           "w_bits": w_bits, "a_bits": a_bits,
           "hw": {"conventional": hw_summary(simulate(wl, None, hw_conventional)),
                  "neuromorphic": hw_summary(simulate(wl, hw_trace, hw_neuromorphic))},
           "hw_T": {}}
    last = min(trace.steps, settle) if settle else trace.steps
    for T in sorted(set(int(t) for t in T_values)):
        if 1 <= T < last:  # at T >= T_settle the chip stops when quiet: the settle point
            rep = simulate(wl, trim_trace(trace, T), hw_neuromorphic)
            out["hw_T"][T] = {**hw_summary(rep), "accuracy": s["acc_per_step"][T - 1]}
    if fp32:
        try:
            wl32 = extract_workload(model, *example, name=f"{task.name}-FP32")
            out["hw_fp32"] = {"conventional": hw_summary(simulate(wl32, None, hw_conventional))}
        except (ValueError, KeyError, TypeError, NotImplementedError) as e:
            out["hw_fp32"] = {"error": str(e)}
    return out
