"""One measurement path: a QANN, held-out inputs, a coding and a list of accelerators ->
accuracies, SNN == QANN agreement, the activity trace and one HwReport per accelerator.

`measure` serves the main job (eval.pipeline.run_task), the studies (`measure_model`, below), the
CLI workflows (eval.workflow) and sweeps such as the break-even study:

    from eval.measure import measure
    m = measure(task, qann, ["loihi2", "conventional"], coding="graded", snn_examples=32)
    m.snn["accuracy"], m.snn["agreement"], m.hw["loihi2"].energy_pj, m.trace
    m.charge("loihi2", T=16)        # the same run charged as a chip stopped after 16 steps

The SNN runs once, shared by every accelerator that needs its trace (`neuro_hw.needs_trace`);
accelerators that run the QANN densely get the same Workload without a trace.  When no given
accelerator needs a trace and `run_snn` is not asked for, the SNN does not run at all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

SNN_BATCH = 64


def agreement(kind: str, snn_out: torch.Tensor, ref: torch.Tensor) -> tuple[int, int]:
    """(agreeing, total) predictions: argmax at every output position, or for embeddings the whole
    vector equal to float64 round-off."""
    if kind == "embed":
        d = (snn_out - ref).abs().reshape(len(ref), -1).amax(1)
        tol = 1e-9 * float(ref.abs().max().clamp_min(1e-300))
        return int((d <= tol).sum()), len(ref)
    a, b = snn_out.argmax(-1), ref.argmax(-1)
    return int((a == b).sum()), int(a.numel())


@torch.no_grad()
def measure_snn(task, qann, snn, n_examples: int, T: int | None = None, seed: int = 0,
                batch_size: int = SNN_BATCH, on_step: Callable[[int], None] | None = None,
                batches: Iterable | None = None):
    """Run the SNN on the first `n_examples` test examples (or on `batches`, task batches):
    (metrics dict, merged trace, first batch).  Accuracy is computed at every time step with
    `task.score`; agreement compares the SNN's predictions with the QANN's on the same inputs."""
    from converters.trace import merge_traces
    per_batch, traces, first = [], [], None
    tot = {"n": 0, "examples": 0, "snn": 0.0, "qann": 0.0, "agree": 0, "agree_n": 0}
    max_abs, max_ref, steps_all = 0.0, 0.0, []
    if batches is None:
        batches = task.batches("test", batch_size, seed, limit=n_examples)
    for batch in batches:
        first = first if first is not None else batch
        ref = qann(*batch)
        correct_at: list[float] = []

        def step_fn(t0, y, batch=batch, correct_at=correct_at):
            for i in range(y.shape[0]):
                correct_at.append(float(task.score(y[i], batch)[0]))
            if on_step is not None:
                on_step(t0 + y.shape[0])

        r = snn.run(*batch, T=T, step_fn=step_fn)
        c_snn, n = task.score(r.output, batch)
        c_q, _ = task.score(ref, batch)
        a, an = agreement(task.kind, r.output, ref)
        tot["n"] += n
        tot["examples"] += len(batch.targets)
        tot["snn"] += c_snn
        tot["qann"] += c_q
        tot["agree"] += a
        tot["agree_n"] += an
        max_abs = max(max_abs, float((r.output - ref).abs().max()))
        max_ref = max(max_ref, float(ref.abs().max()))
        per_batch.append(correct_at)
        traces.append(r.trace)
        steps_all.append(r.steps)
    if first is None:
        raise ValueError(f"task {task.name}: no test examples for the SNN (n_examples={n_examples})")
    steps = max(steps_all)
    curve = np.zeros(steps)
    for c in per_batch:  # after a batch stops it is quiet: its last output stays
        curve += np.concatenate([c, np.full(steps - len(c), c[-1])])
    trace = merge_traces(traces)
    settles = trace.t_settle_per_sample
    metrics = {
        "accuracy": tot["snn"] / tot["n"], "n": tot["n"], "n_examples": tot["examples"],
        "split": "test", "T": T, "steps": steps, "t_settle": trace.t_settle,
        "settled": trace.t_settle is not None,
        "t_settle_mean": float(np.mean(settles)) if settles else None,
        "t_settle_max": int(max(settles)) if settles else None,
        "acc_per_step": (curve / tot["n"]).tolist(),
        "qann_accuracy_subset": tot["qann"] / tot["n"],
        "agreement": tot["agree"] / tot["agree_n"], "agreement_n": tot["agree_n"],
        "max_abs_err": max_abs, "max_rel_err": max_abs / max_ref if max_ref > 0 else max_abs,
        "spikes_per_inference": trace.total_spikes() / max(trace.n_samples, 1),
    }
    return metrics, trace, first


@dataclass
class Measurement:
    """What `measure` returns.

    snn: SNN metrics on its held-out subset (`measure_snn`), None when no SNN ran.
    trace: the merged ActivityTrace of that run (every simulated step); hw_trace: what the chips
    were charged for (cut at T_settle when the SNN ran until quiet).  workload: the Workload of one
    example (the first of the subset).  hw: accelerator label -> HwReport, in the order given.
    coding: the coding the SNN was converted with; example: that first example (a batch of one)."""

    coding: str
    workload: object
    example: tuple
    first_batch: object = None  # the first task batch (its targets say what one example scores)
    hw: dict = field(default_factory=dict)
    snn: dict | None = None
    trace: object = None
    hw_trace: object = None
    accelerators: dict = field(default_factory=dict)  # label -> what was asked for (name/path/config)
    policy: object = None
    skipped: dict = field(default_factory=dict)  # label -> why it could not run this trace (no report)

    def workload_info(self) -> dict:
        wl = self.workload
        info = {"name": wl.name, "n_ops": len(wl.ops), "macs": int(wl.total_macs),
                "params": int(wl.total_params), "weight_bits": int(wl.weight_bits_total()),
                "example": "first example of the SNN subset"}
        if self.hw_trace is not None:
            info["trace_steps_simulated"] = int(self.hw_trace.steps)
        return info

    def charge(self, accelerator: str, T: int):
        """The HwReport of `accelerator` (a label of this measurement needing the trace) when the
        chip stops after T steps (or earlier when quiet): the trace cut to min(T, its length)."""
        from converters.trace import trim_trace
        if self.trace is None:
            raise ValueError("no SNN ran in this measurement: nothing to charge at fixed T")
        return simulate_hw(self.workload, trim_trace(self.trace, int(T)), self.accelerators[accelerator],
                         self.policy)


def simulate_hw(workload, trace, hw, policy):
    from neuro_hw import simulate
    return simulate(workload, trace, hw) if policy is None else simulate(workload, trace, hw, policy=policy)


def _convert(qann, coding: str):
    from converters import convert
    return convert(qann, coding=coding)


@torch.no_grad()
def measure(task, qann, accelerators: Sequence, *, coding: str = "binary", snn_examples: int = 16,
            T: int | None = None, seed: int = 0, batch_size: int = SNN_BATCH, run_snn: bool | None = None,
            policy=None, snn=None, batches: Iterable | None = None, name: str | None = None,
            on_step: Callable[[int], None] | None = None, timer=None) -> Measurement:
    """Measure `qann` (a runnable QANN of `task`) on every accelerator in `accelerators`.

    accelerators: names, config files or config objects (`eval.accelerators.parse_hw`); the
    report files each under `eval.accelerators.label(hw)`.  coding: how the QANN becomes spikes
    (converters.codings).  snn_examples / T / batch_size / batches: the SNN's held-out inputs (the
    first `snn_examples` test examples, or the task batches given) and its time steps (None: until
    quiet).  run_snn: run the SNN even when no accelerator needs its trace (None: only then).
    policy: the memory policy (neuro_hw.MemoryPolicy) applied to every accelerator alike (None:
    each simulate's default).  snn: an already converted SpikingModel to reuse.  name: the
    Workload's name.  timer: an eval.provenance.Stopwatch that records each stage."""
    from converters.trace import trim_trace
    from eval.accelerators import label, needs_trace
    from neuro_hw import extract_workload
    stage = timer if timer is not None else (lambda s: nullcontext())
    hws = {label(h): h for h in accelerators}
    if not hws:
        raise ValueError("measure needs at least one accelerator")
    traced = [k for k, h in hws.items() if needs_trace(h)]
    trace = hw_trace = metrics = None
    first = None
    if traced or run_snn:
        with stage("convert"):
            snn = snn if snn is not None else _convert(qann, coding)
        with stage("snn_run"):
            metrics, trace, first = measure_snn(task, qann, snn, snn_examples, T=T, seed=seed,
                                                batch_size=batch_size, on_step=on_step, batches=batches)
        hw_trace = trim_trace(trace, trace.t_settle) if T is None and trace.t_settle else trace
    else:
        first = next(iter(batches if batches is not None else task.batches("test", 1, seed, limit=1)))
    example = tuple(x[:1] for x in first)
    with stage("workload"):
        wl = extract_workload(qann, *example, name=name or task.name)
    reports, skipped = {}, {}
    from neuro_hw import trace_problem
    for k, h in hws.items():
        why = trace_problem(h, hw_trace) if k in traced else None
        if why:   # e.g. graded payloads on a chip with binary spikes only: no report, the reason kept
            skipped[k] = why
            continue
        with stage(f"simulate.{k}"):
            reports[k] = simulate_hw(wl, hw_trace if k in traced else None, h, policy)
    return Measurement(coding=coding, workload=wl, example=example, first_batch=first, hw=reports, snn=metrics, trace=trace,
                       hw_trace=hw_trace, accelerators=hws, policy=policy, skipped=skipped)


# ---- the studies' view: one model at one bit width, as a JSON-able dict -------------------------
def hw_summary(rep) -> dict:
    """The JSON-able part of an HwReport a schedule needs."""
    d = {"energy_pj": float(rep.energy_pj), "latency_s": float(rep.latency_s),
         "breakdown_pj": {k: float(v) for k, v in rep.breakdown_pj.items()},
         "static_power_w": float(rep.meta.get("static_power_w", 0.0))}
    if rep.spike_driven_fraction is not None:
        d["spike_driven_fraction"] = dict(rep.spike_driven_fraction)
    return d


def calibrated_copy(task, model, calib_limit: int | None = 256, seed: int = 0):
    """A copy of `model` calibrated on the calib split (quantize it at any bits: `quantized`)."""
    import copy

    from snmfm.compress import calibrate
    m = copy.deepcopy(model).float().eval()
    calibrate(m, task.batches("calib", 64, seed, limit=calib_limit))
    return m


def quantized(task, model, w_bits: int, a_bits: int, calib_limit: int | None = 256, seed: int = 0):
    """Calibrate (a copy of) `model` on the calib split and return its QANN."""
    from snmfm.compress import quantize
    return quantize(calibrated_copy(task, model, calib_limit, seed), w_bits, a_bits)


@torch.no_grad()
def measure_model(task, model, *, w_bits: int = 8, a_bits: int = 8, snn_examples: int = 32,
                  T_values: Sequence[int] = (), T_max: int | None = None, qann=None,
                  calib_limit: int | None = 256, eval_limit: int | None = None, seed: int = 0,
                  accelerators: Sequence = ("conventional", "neuromorphic"), hw_neuromorphic=None,
                  hw_conventional=None, fp32: bool = False, coding: str = "binary") -> dict:
    """`measure` of `model` (an FP32 module taking the task's inputs) at W{w}A{a} on `accelerators`,
    as the studies (cascades, co-optimisation) store it: a JSON-able dict.

    snn_examples: test examples the SNN runs on (until quiet, or T_max steps when given).
    T_values: fixed time steps at which every SNN-driven accelerator is also charged (those < the
    run's length).  hw_neuromorphic/hw_conventional (older form): the two accelerators, filed
    under "neuromorphic" and "conventional".  Returns {"qann": accuracy dict, "snn": step metrics,
    "hw": {accelerator: summary}, "hw_T": {T: {SNN-driven accelerator: summary + accuracy}},
    "workload": {...}, "accelerators": {accelerator: {"needs_trace"}}}."""
    from eval.accelerators import label, needs_trace
    from neuro_hw import extract_workload
    if hw_neuromorphic is not None or hw_conventional is not None:
        named = {"conventional": hw_conventional or "conventional", "neuromorphic": hw_neuromorphic or "neuromorphic"}
    else:
        named = {label(h): h for h in accelerators}
    if qann is None:
        qann = quantized(task, model, w_bits, a_bits, calib_limit, seed)
    q = task.evaluate(qann, "test", limit=eval_limit, seed=seed)
    m = measure(task, qann, list(named.values()), coding=coding, snn_examples=snn_examples, T=T_max, seed=seed,
                run_snn=True, name=f"{task.name}-W{w_bits}A{a_bits}")
    by_label = {k: m.hw[label(h)] for k, h in named.items()}
    traced = {k: needs_trace(h) for k, h in named.items()}
    s, wl = m.snn, m.workload
    out = {"qann": {k: v for k, v in q.items() if isinstance(v, (int, float, str))},
           "snn": {k: s[k] for k in ("accuracy", "n", "steps", "t_settle", "t_settle_mean",
                                     "t_settle_max", "acc_per_step", "agreement",
                                     "qann_accuracy_subset", "spikes_per_inference")},
           "workload": {"macs": int(wl.total_macs), "params": int(wl.total_params),
                        "weight_bits": int(wl.weight_bits_total()), "n_ops": len(wl.ops)},
           "w_bits": w_bits, "a_bits": a_bits, "coding": coding,
           "accelerators": {k: {"needs_trace": v} for k, v in traced.items()},
           "hw": {k: hw_summary(r) for k, r in by_label.items()},
           "hw_T": {}}
    settle = m.trace.t_settle
    last = min(m.trace.steps, settle) if settle else m.trace.steps
    for T in sorted(set(int(t) for t in T_values)):
        if 1 <= T < last:  # at T >= T_settle the chip stops when quiet: the settle point
            out["hw_T"][T] = {k: {**hw_summary(m.charge(label(named[k]), T)), "accuracy": s["acc_per_step"][T - 1]}
                              for k, v in traced.items() if v}
    if fp32:
        try:
            wl32 = extract_workload(model, *m.example, name=f"{task.name}-FP32")
            out["hw_fp32"] = {k: hw_summary(simulate_hw(wl32, None, named[k], None))
                              for k, v in traced.items() if not v}
        except (ValueError, KeyError, TypeError, NotImplementedError) as e:
            out["hw_fp32"] = {"error": str(e)}
    return out
