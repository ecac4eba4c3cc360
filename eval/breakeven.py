"""The break-even study: where does spiking win?

Sweep coding (binary, graded, sigma-delta) x accelerator (every one given) x activation bits x
memory policy x input change rate (stream tasks), and for every point measure accuracy, events per
synapse per inference, energy and latency per inference (per frame on streams).  Then, per task:
the energy ratio baseline / spiking accelerator against events per synapse (break-even at 1), the
cheapest configuration within `tolerance` of FP32 accuracy on each accelerator (iso-accuracy), and
the change rates at which the verdict flips (interpolated between the two measured rates that
bracket it, from the sweep).

    from eval.breakeven import run_breakeven
    data = run_breakeven(["vision-digits-stream"], hw="loihi2,conventional")

**One SNN run per (task, coding, bits, change rate).**  Every accelerator and memory policy is
charged from that run's trace (`neuro_hw.simulate` is analytical).  The SNN is measured with
eval.measure (`measure` for single inputs; on streams `SpikingModel.stream` over the clips, each
frame's own trace, the Measurement built the same way).  Codings that keep no state between inputs
(binary, graded) spend the same per frame whatever the change rate, so on a stream they run once
per bit width (on the default-rate clips) and that per-frame cost stands at every rate
(`rate_independent` in the data); sigma-delta runs once per rate.

**Definitions.**
* change rate: the fraction of pixels that differ from the previous frame (snmfm.data.stream); the
  x axis uses the rate *measured* on the clips that ran.
* events per synapse per inference: the synaptic operations the chip performs (each event fetches
  its weight row: events x fan-out, activation products included; neuro_hw.synops
  .synops_from_trace) divided by the stored synapses (weights of the linear / conv / feature-embed
  ops).  Dense execution uses every weight once per token (17 on vision-digits).
* stream energy: per frame in steady state, i.e. averaged over frames 1..F-1 of each clip (frame 0
  starts the stream from nothing; over a long stream its share vanishes).
* accuracy: the SNN equals the QANN integer for integer (checked on every frame/example the SNN
  ran: `agreement`), so a configuration's accuracy is its QANN's on the whole held-out split (per
  change rate on streams).  Iso-accuracy: within `tolerance` (default 1 point) of FP32.

**What the conventional side is credited on streams (exact reuse).**  A frame identical to the
previous one is not recomputed (same integers in, same out): it costs only change detection (one
8-bit compare per pixel).  Otherwise the ops before the first token-mixing op (the patch embedding,
block 0's LayerNorm and QKV projection on the ViT) are computed only for the token rows whose input
patch changed; the class token's row never changes and is reused too.  Everything from the first
attention product on is recomputed in full (a changed key changes every softmax row).  The reduced
Workload of k recomputed rows is simulated like any other.

**Decoder streams** (code-stdlib): a prompt is prefilled into the KV caches (not charged), then
decode steps run one after another with the caches (`SpikingModel.stream`; sigma-delta keeps its
neurons' state from step to step), each charged on its own decode Workload (context = prompt +
earlier steps, KV-cache reads and writes in the ops) on every accelerator: the dense baseline's
exact reuse is the KV cache.  Energy per generated token = mean over the steps.  vqa-digits
generation is not streamed here (one teacher-forced forward per example).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from eval.reuse import stream_baseline

CODINGS = ("binary", "graded", "sigma-delta")
A_BITS = (8, 6, 4)
W_BITS = 8
POLICIES = ("resident", "streamed")
RATES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
TOLERANCE = 0.01
# `snmfm run`'s reduced sweep (2 cores, < 10 min for the whole run): see QUICK in CONTRACTS/README
QUICK = {"a_bits": (8, 4), "rates": (0.0, 0.01, 0.05, 0.2, 0.5), "n_clips": 4, "snn_examples": 8,
         "eval_limit": 320, "decode_prompts": 4}


@dataclass
class Prepared:
    """What the main job (eval.pipeline.run_task) already measured for a task, reused by its sweep
    instead of recomputed: the same FP32 model, the same QANNs (same calibration, same integers),
    their held-out accuracies and the SNN Measurements of each (coding, w_bits, a_bits).  A sweep
    point whose SNN run is here is charged from that run's trace and workload (every accelerator
    and memory policy again: simulate is analytical); anything missing is measured as usual.

    n_eval: the held-out examples the accuracies are over (the main job's split or limit)."""

    model: object
    fp32_accuracy: float
    n_eval: int
    qanns: dict = field(default_factory=dict)          # (w_bits, a_bits) -> QANN
    qann_accuracy: dict = field(default_factory=dict)  # (w_bits, a_bits) -> accuracy
    measurements: dict = field(default_factory=dict)   # (coding, w_bits, a_bits) -> eval.measure.Measurement

    @classmethod
    def from_dict(cls, d: dict) -> Prepared:
        return cls(**{k: d[k] for k in ("model", "fp32_accuracy", "n_eval", "qanns", "qann_accuracy",
                                         "measurements") if k in d})


# ---- accelerators and policies ----------------------------------------------------------------
def _policies(names: Sequence[str]) -> list:
    """(label, policy object) per memory policy name; before neuro_hw had MemoryPolicy, the
    simulators' one built-in policy as "default"."""
    import neuro_hw
    if not hasattr(neuro_hw, "MemoryPolicy"):
        return [("default", None)]
    return [(n, neuro_hw.MemoryPolicy(weights=n)) for n in names]


def _synapses(workload) -> int:
    """Stored synapses: the weights of the synaptic ops (activation products store none)."""
    from neuro_hw.workload import SYNAPTIC_KINDS
    return int(sum(op.params for op in workload.ops if op.kind in SYNAPTIC_KINDS))


def _hw_point(rep) -> dict:
    return {"energy_pj": float(rep.energy_pj), "latency_s": float(rep.latency_s),
            "static_pj": float(sum(v for k, v in rep.breakdown_pj.items() if "static" in k or "leak" in k))}


# ---- the SNN on a stream ----------------------------------------------------------------------
@torch.no_grad()
def measure_stream(task, qann, snn, clips, accelerators: Sequence, *, policy=None):
    """eval.measure.Measurement of `snn` streamed over `clips` (snmfm.data.stream.Clips): frames
    run one after another per clip (a batch of clips), each frame's trace kept; the chips are
    charged for the steady-state frames 1..F-1 (per frame).  snn metrics: accuracy and bitwise /
    argmax agreement with the QANN on every frame that ran."""
    from converters.trace import merge_traces, trim_trace
    from eval.accelerators import label, needs_trace
    from eval.measure import Measurement, agreement, simulate_hw
    from neuro_hw import extract_workload
    xs = clips.frames.transpose(0, 1).contiguous()          # [F, B, C, H, W]
    r = snn.stream(xs)
    n = correct = agree = equal = 0
    for i, out in enumerate(r.outputs):
        ref = qann(xs[i])
        a, k = agreement(task.kind, out, ref)
        agree += a
        equal += int(torch.equal(out, ref))
        correct += int((out.argmax(-1) == clips.labels[:, i]).sum())
        n += k
    trace = merge_traces(r.traces[1:])
    hw_trace = trim_trace(trace, trace.t_settle) if trace.t_settle else trim_trace(trace, 1)
    example = (xs[0][:1],)
    wl = extract_workload(qann, *example, name=f"{task.name}-stream")
    hws = {label(h): h for h in accelerators}
    reports = {k: simulate_hw(wl, hw_trace if needs_trace(h) else None, h, policy) for k, h in hws.items()}
    metrics = {"accuracy": correct / n, "n": n, "agreement": agree / n, "frames_equal": equal / len(r.outputs),
               "frames": len(r.outputs), "clips": clips.n_clips, "steady_frames": trace.n_samples,
               "events_per_frame": trace.total_events() / trace.n_samples,
               "first_frame_events": r.traces[0].total_events() / r.traces[0].n_samples}
    return Measurement(coding=snn.coding, workload=wl, example=example, hw=reports, snn=metrics, trace=trace,
                       hw_trace=hw_trace, accelerators=hws, policy=policy)


@torch.no_grad()
def measure_decode(qann, snn, ids: torch.Tensor, prompt_len: int, n_steps: int) -> dict:
    """A decoder stream: the SNN runs the prompt ids[:, :prompt_len] into its KV caches (prefill,
    not charged), then `n_steps` decode steps one after another (`SpikingModel.stream` with the
    caches: neuron state kept between steps under sigma-delta), each fed the next real token
    (teacher forcing).  Returns per step its trace and decode Workload (context = prompt + earlier
    steps, KV-cache traffic in the ops) and whether every step's output equals the QANN's bitwise."""
    from neuro_hw.workload import extract_decoder_call
    if ids.shape[1] < prompt_len + n_steps:
        raise ValueError(f"decode stream needs {prompt_len + n_steps} tokens per example, got {ids.shape[1]}")
    caches = qann.new_caches()
    snn.run(ids[:, :prompt_len], caches=caches, record=False)
    steps = [ids[:, prompt_len + i:prompt_len + i + 1] for i in range(n_steps)]
    r = snn.stream(steps, caches=caches, forward_kw=[{"start_pos": prompt_len + i} for i in range(n_steps)])
    ref_caches = qann.new_caches()
    qann(ids[:, :prompt_len], caches=ref_caches)
    equal = [torch.equal(o, qann(x, caches=ref_caches, start_pos=prompt_len + i))
             for i, (o, x) in enumerate(zip(r.outputs, steps))]
    wls = [extract_decoder_call(qann, 1, prompt_len + i, name=f"decode@{prompt_len + i}") for i in range(n_steps)]
    return {"traces": r.traces, "workloads": wls, "steps_equal": sum(equal) / len(equal),
            "n": int(ids.shape[0]) * n_steps}


# ---- crossings and iso-accuracy ---------------------------------------------------------------
def crossings(xs: Sequence[float], ratios: Sequence[float]) -> list[dict]:
    """Where ratio (baseline / spiking energy) crosses 1 between consecutive x (sorted by x):
    x interpolated linearly in log(ratio) between the bracketing measured points."""
    pts = sorted((float(x), float(r)) for x, r in zip(xs, ratios) if r > 0 and math.isfinite(r))
    out = []
    for (x1, r1), (x2, r2) in zip(pts, pts[1:]):
        l1, l2 = math.log(r1), math.log(r2)
        if l1 == 0:
            out.append({"x": x1, "between": [x1, x2], "spiking_wins_below": l2 < 0})
        elif l1 * l2 < 0:
            x = x1 + (x2 - x1) * (0 - l1) / (l2 - l1)
            out.append({"x": x, "between": [x1, x2], "spiking_wins_below": l1 > 0})
    return out


def _config(p: dict) -> str:
    c = f"{p['coding']}, " if p.get("coding") else ""
    return f"{c}W{p['w_bits']}A{p['a_bits']}, {p['policy']}"


def cheapest(points: list[dict], floor: float) -> dict | None:
    """The cheapest point with accuracy >= floor (ties: fewer bits first)."""
    ok = [p for p in points if p["accuracy"] >= floor - 1e-12]
    if not ok:
        return None
    best = min(ok, key=lambda p: (p["energy_pj"], p["a_bits"]))
    return {**{k: best[k] for k in ("energy_pj", "latency_s", "accuracy", "a_bits", "w_bits", "policy")},
            "coding": best.get("coding"), "config": _config(best)}


# ---- the sweep --------------------------------------------------------------------------------
def _say(status: Callable[[str], None] | None, msg: str) -> None:
    if status is not None:
        status(msg)


def _accuracy(task_name: str, fn, rate, limit, seed) -> float:
    from snmfm.tasks import get_task
    t = get_task(task_name) if rate is None else get_task(task_name, change_rate=rate)
    return float(t.evaluate(fn, limit=limit, seed=seed)["accuracy"])


def _patch_size(model) -> int:
    cfg = getattr(model, "config", None)
    p = getattr(cfg, "patch_size", 0)
    if not p:
        raise ValueError("stream tasks need a patch model (ViT): its config has no patch_size")
    return int(p)


@torch.no_grad()
def sweep_task(task_name: str, accelerators: Sequence, *, codings: Sequence[str] = CODINGS,
               a_bits: Sequence[int] = A_BITS, w_bits: int = W_BITS, policies: Sequence[str] = POLICIES,
               rates: Sequence[float] = RATES, n_clips: int = 16, snn_examples: int = 16,
               eval_limit: int | None = None, tolerance: float = TOLERANCE, seed: int = 0,
               decode_steps: int = 8, prompt_len: int = 16, decode_prompts: int = 8,
               status: Callable[[str], None] | None = None, prepared: Prepared | None = None) -> dict:
    """The break-even sweep of one task (module docstring); returns plain JSON-able data.
    Decoder LMs (kind "lm") run as decode streams: `decode_prompts` test windows, a
    `prompt_len`-token prefill, then `decode_steps` KV-cached decode steps, charged per generated
    token (decode_steps=0: one teacher-forced forward per example, as the main job).
    prepared: the main job's model, QANNs, accuracies and SNN runs of this task (`Prepared`),
    reused where they match (not for stream tasks); the output's "accuracy_source" and each run's
    "reused" say what came from there."""
    from converters import convert
    from eval.accelerators import label, needs_trace
    from eval.measure import calibrated_copy, measure, simulate_hw
    from snmfm.compress import quantize
    from neuro_hw import extract_workload
    from neuro_hw.synops import synops_from_trace
    from snmfm.tasks import Batch, get_task
    t0 = time.perf_counter()
    task = get_task(task_name)
    stream = hasattr(task, "clips")
    if prepared is not None and stream:
        raise ValueError(f"{task_name}: a stream task's sweep measures its own clips; prepared runs "
                         "of the main job do not apply")
    model = prepared.model if prepared is not None else task.load()[0]
    labels = {label(h): h for h in accelerators}
    spiking = [k for k, h in labels.items() if needs_trace(h)]
    dense = [k for k in labels if k not in spiking]
    pols = _policies(policies)
    rate_list = [float(r) for r in rates] if stream else [None]
    if stream and not rate_list:
        raise ValueError("a stream task needs at least one change rate")
    if prepared is not None:
        fp32 = {None: float(prepared.fp32_accuracy)}
        accuracy_source = (f"the main job's FP32 and QANN accuracies over {prepared.n_eval} held-out "
                           "examples (its QANNs and SNN runs reused where they match)")
    else:
        fp32 = {r: _accuracy(task_name, model, r, eval_limit, seed) for r in rate_list}
        accuracy_source = ("FP32 and QANN accuracies over " + ("the whole held-out split" if eval_limit is None
                                                               else f"at most {eval_limit} held-out examples")
                           + (" (per change rate)" if stream else ""))
    clips = {r: task.clips("test", seed, limit=n_clips, change_rate=r) for r in rate_list} if stream else {}
    measured = {r: (clips[r].measured_change_rate if stream else None) for r in rate_list}
    default_rate = getattr(task, "change_rate", None)
    decode = task.kind == "lm" and decode_steps > 0
    if decode:
        ids = next(iter(task.batches("test", decode_prompts, seed, limit=decode_prompts)))[0]
    points, baselines, runs, skipped = [], [], [], []
    calibrated = None
    for bits in a_bits:
        key = (int(w_bits), int(bits))
        if prepared is not None and key in prepared.qanns:
            qann = prepared.qanns[key]
        else:
            if calibrated is None:   # calibration does not depend on the bits: once per task
                _say(status, f"{task_name}: calibrate")
                calibrated = calibrated_copy(task, model, seed=seed)
            _say(status, f"{task_name}: W{w_bits}A{bits} quantize")
            qann = quantize(calibrated, w_bits, bits)
        if prepared is not None and key in prepared.qann_accuracy:
            qacc = {None: float(prepared.qann_accuracy[key])}
        else:
            qacc = {r: _accuracy(task_name, qann, r, eval_limit, seed) for r in rate_list}
        # the main job's Workload when its runs are reused (its first SNN example), so both agree
        reused_wl = next((m.workload for (c, *wa), m in (prepared.measurements.items() if prepared else [])
                          if tuple(wa) == key), None)
        if reused_wl is not None and not decode:
            wl = reused_wl
        else:
            example = (clips[rate_list[0]].frames[0, :1],) if stream else task.example_inputs(1)
            wl = extract_workload(qann, *example, name=f"{task_name}-W{w_bits}A{bits}")
        synapses = _synapses(wl)
        if decode:
            from neuro_hw.workload import extract_decoder_call
            dwls = [extract_decoder_call(qann, 1, prompt_len + i) for i in range(decode_steps)]
        base = {}
        for d in dense:
            for pname, pol in pols:
                for r in rate_list:
                    if decode:
                        reps = [simulate_hw(w, None, labels[d], pol) for w in dwls]
                        b = {"energy_pj": float(np.mean([x.energy_pj for x in reps])),
                             "latency_s": float(np.mean([x.latency_s for x in reps]))}
                        reuse = {"kv_cache": True, "context": [prompt_len, prompt_len + decode_steps - 1]}
                    elif stream:
                        b = stream_baseline(wl, clips[r].grey, _patch_size(model), labels[d], pol)
                        reuse = {k: b[k] for k in ("full_energy_pj", "full_latency_s", "skipped_frames",
                                                   "mean_rows_recomputed", "n_patches", "detect_pj")}
                    else:
                        b, reuse = _hw_point(simulate_hw(wl, None, labels[d], pol)), None
                    base[(d, pname, r)] = b["energy_pj"]
                    baselines.append({"accelerator": d, "a_bits": bits, "w_bits": w_bits, "policy": pname,
                                      "rate": r, "measured_rate": measured[r], "energy_pj": b["energy_pj"],
                                      "latency_s": b["latency_s"], "accuracy": qacc[r], "reuse": reuse})
        if not spiking:
            continue
        for coding in codings:
            from neuro_hw import coding_problem   # chips without graded spikes sit this coding out
            ok = [k for k in spiking if coding_problem(labels[k], coding) is None]
            skipped += [{"accelerator": k, "coding": coding, "reason": coding_problem(labels[k], coding)}
                        for k in spiking if k not in ok and bits == a_bits[0]]
            if not ok:
                continue
            given = None if (prepared is None or decode) else prepared.measurements.get((coding, *key))
            if given is not None and not all(k in given.hw or k in given.skipped for k in ok):
                given = None   # the main job ran other accelerators: measure here
            snn = None if given is not None else convert(qann, coding=coding)
            stateful = (given is None and bool(snn.coding_spec.keeps_state)) and stream
            # one SNN run per (coding, bits[, rate]); stateless codings cost the same at any rate
            run_rates = rate_list if stateful else [default_rate if stream else None]
            for rr in run_rates:
                _say(status, f"{task_name}: {coding} W{w_bits}A{bits}" + (f" rate {rr:g}" if stream else ""))
                ts = time.perf_counter()
                if decode:
                    dm = measure_decode(qann, snn, ids, prompt_len, decode_steps)
                    runs.append({"coding": coding, "a_bits": bits, "rate": None, "reused": False,
                                 "wall_s": time.perf_counter() - ts, "snn_n": dm["n"], "agreement": dm["steps_equal"],
                                 "events_per_inference": float(np.mean([t.total_events() / t.n_samples
                                                                        for t in dm["traces"]]))})
                    points += _decode_points(dm, labels, ok, dense, pols, base, bits, w_bits, coding,
                                             qacc[None], synapses)
                    continue
                if stateful:
                    c = clips[rr] if rr in clips else task.clips("test", seed, limit=n_clips, change_rate=rr)
                    m = measure_stream(task, qann, snn, c, [labels[k] for k in ok], policy=pols[0][1])
                elif stream:
                    c = clips[rr] if rr in clips else task.clips("test", seed, limit=n_clips, change_rate=rr)
                    frames, lab = c.frames.flatten(0, 1)[:snn_examples], c.labels.flatten()[:snn_examples]
                    m = measure(task, qann, [labels[k] for k in ok], coding=coding, snn=snn,
                                batches=[Batch((frames,), lab)], policy=pols[0][1])
                elif given is not None:
                    m = given
                else:
                    m = measure(task, qann, [labels[k] for k in ok], coding=coding, snn=snn,
                                snn_examples=snn_examples, seed=seed, policy=pols[0][1])
                wall = time.perf_counter() - ts
                events = m.trace.total_events() / m.trace.n_samples
                syn = synops_from_trace(m.workload, m.hw_trace)
                runs.append({"coding": coding, "a_bits": bits, "rate": rr, "wall_s": wall,
                             "snn_n": m.snn["n"], "agreement": m.snn["agreement"], "events_per_inference": events,
                             "reused": given is not None})
                for k in ok:
                    if k in m.skipped:   # this run's payloads are wider than the chip's messages
                        skipped.append({"accelerator": k, "coding": coding, "a_bits": bits, "reason": m.skipped[k]})
                        continue
                    for i, (pname, pol) in enumerate(pols):
                        # a reused run was charged under the main job's policy: charge every policy here
                        rep = (m.hw[k] if i == 0 and given is None else
                               simulate_hw(m.workload, m.hw_trace, labels[k], pol))
                        hp = _hw_point(rep)
                        for r in (rate_list if not stateful else [rr]):
                            ratio = {d: base[(d, pname, r)] / hp["energy_pj"] for d in dense}
                            points.append({"accelerator": k, "coding": coding, "a_bits": bits, "w_bits": w_bits,
                                           "policy": pname, "rate": r, "measured_rate": measured[r],
                                           "run_rate": rr, "rate_independent": stream and not stateful,
                                           "energy_pj": hp["energy_pj"], "latency_s": hp["latency_s"],
                                           "static_pj": hp["static_pj"], "accuracy": qacc[r],
                                           "snn_n": m.snn["n"], "agreement": m.snn["agreement"],
                                           "events_per_inference": events, "synops_per_inference": syn,
                                           "events_per_synapse": syn / synapses, "ratio": ratio})
    out = {"task": task_name, "stream": stream, "accelerators": list(labels), "spiking": spiking,
           "skipped": skipped,
           "baselines_accelerators": dense, "policies": [p for p, _ in pols],
           "rates": rate_list if stream else [], "measured_rates": [measured[r] for r in rate_list] if stream else [],
           "fp32": [{"rate": r, "accuracy": fp32[r]} for r in rate_list], "points": points,
           "accuracy_source": accuracy_source, "a_bits": [int(b) for b in a_bits],
           "baselines": baselines, "runs": runs, "unit": ("per frame (steady state)" if stream else
                    f"per generated token ({decode_steps} KV-cached decode steps after a {prompt_len}-token prompt)"
                    if decode else "per inference"),
           "decode": {"steps": decode_steps, "prompt_len": prompt_len, "prompts": decode_prompts} if decode else None}
    out.update(analyse(out, tolerance))
    out["wall_s"] = time.perf_counter() - t0
    return out


def _decode_points(dm: dict, labels, spiking, dense, pols, base, bits, w_bits, coding, accuracy, synapses):
    """Points of one decode-stream run: every spiking accelerator and policy, per generated token
    (the mean over the decode steps of each step's trace charged on its own decode Workload)."""
    from converters.trace import trim_trace
    from eval.measure import simulate_hw
    from neuro_hw.synops import synops_from_trace
    traces = [trim_trace(t, t.t_settle) if t.t_settle else t for t in dm["traces"]]
    events = float(np.mean([t.total_events() / t.n_samples for t in traces]))
    syn = float(np.mean([synops_from_trace(w, t) for w, t in zip(dm["workloads"], traces)]))
    out = []
    for k in spiking:
        for pname, pol in pols:
            reps = [simulate_hw(w, t, labels[k], pol) for w, t in zip(dm["workloads"], traces)]
            e = float(np.mean([r.energy_pj for r in reps]))
            out.append({"accelerator": k, "coding": coding, "a_bits": bits, "w_bits": w_bits, "policy": pname,
                        "rate": None, "measured_rate": None, "run_rate": None, "rate_independent": False,
                        "energy_pj": e, "latency_s": float(np.mean([r.latency_s for r in reps])),
                        "static_pj": float(np.mean([_hw_point(r)["static_pj"] for r in reps])),
                        "accuracy": accuracy, "snn_n": dm["n"], "agreement": dm["steps_equal"],
                        "events_per_inference": events, "synops_per_inference": syn,
                        "events_per_synapse": syn / synapses,
                        "ratio": {d: base[(d, pname, None)] / e for d in dense}})
    return out


def analyse(d: dict, tolerance: float = TOLERANCE) -> dict:
    """Iso-accuracy cheapest configurations, break-even crossings and verdict flips of one task's
    sweep data (`sweep_task`'s points and baselines)."""
    fp32 = {f["rate"]: f["accuracy"] for f in d["fp32"]}
    rates = list(fp32)
    mrate = dict(zip(d["rates"], d["measured_rates"])) if d["stream"] else {None: None}
    iso = []
    for acc in d["accelerators"]:
        rows = [p for p in d["points"] if p["accelerator"] == acc] + \
               [b for b in d["baselines"] if b["accelerator"] == acc]
        for r in rates:
            best = cheapest([p for p in rows if p["rate"] == r], fp32[r] - tolerance)
            iso.append({"accelerator": acc, "rate": r, "fp32": fp32[r], "best": best})
    cross = []
    if d["stream"] and len(rates) > 1:
        for p0 in {(p["accelerator"], p["policy"], p["coding"], p["a_bits"]) for p in d["points"]}:
            a, pol, c, b = p0
            pts = sorted((p for p in d["points"] if (p["accelerator"], p["policy"], p["coding"], p["a_bits"]) == p0),
                         key=lambda p: p["rate"])
            for base in d["baselines_accelerators"]:
                xs = [mrate[p["rate"]] for p in pts]
                for x in crossings(xs, [p["ratio"][base] for p in pts]):
                    cross.append({"accelerator": a, "baseline": base, "policy": pol, "coding": c, "a_bits": b, **x})
    flips = []
    for a in d["spiking"]:
        for base in d["baselines_accelerators"]:
            for pol in d["policies"]:
                xs, ratios, per_rate = [], [], []
                for r in rates:
                    s = cheapest([p for p in d["points"] if p["accelerator"] == a and p["policy"] == pol
                                  and p["rate"] == r], fp32[r] - tolerance)
                    b = cheapest([p for p in d["baselines"] if p["accelerator"] == base and p["policy"] == pol
                                  and p["rate"] == r], fp32[r] - tolerance)
                    ratio = b["energy_pj"] / s["energy_pj"] if s and b else None
                    per_rate.append({"rate": r, "measured_rate": mrate[r], "spiking": s, "baseline": b, "ratio": ratio})
                    if ratio is not None:
                        xs.append(mrate[r] if d["stream"] else 0.0)
                        ratios.append(ratio)
                flips.append({"accelerator": a, "baseline": base, "policy": pol, "per_rate": per_rate,
                              "flips": crossings(xs, ratios) if d["stream"] else []})
    return {"tolerance": tolerance, "iso_accuracy": iso, "crossings": cross, "verdicts": flips}


def run_breakeven(tasks: Sequence[str] | str = ("vision-digits-stream",), hw=None, *, quick: bool = False,
                  status: Callable[[str], None] | None = None, prepared: dict | None = None,
                  task_settings: dict | None = None, **settings) -> dict:
    """The break-even study over `tasks` on the accelerators `hw` ("a,b", a list, or None: every
    registered one); settings: sweep_task's keyword arguments (quick: the reduced sweep QUICK that
    `snmfm run` uses, overridden by explicit settings).  prepared: {task: Prepared} of runs to
    reuse (the main job's); task_settings: {task: settings} that replace `settings` for that task
    (recorded under settings["per_task"]).  Returns plain JSON-able data with a "breakeven" schema
    tag; `eval.breakeven_report` plots and renders it."""
    from eval.accelerators import parse_hw
    t0 = time.perf_counter()
    names = [s.strip() for s in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    if not names or any(not n for n in names):
        raise ValueError(f"breakeven needs task names, got {tasks!r}")
    accelerators = parse_hw(hw)
    kw = {**(QUICK if quick else {}), **settings}
    out = {"breakeven": SCHEMA, "settings": {"quick": quick, "codings": list(kw.get("codings", CODINGS)),
                                             "a_bits": list(kw.get("a_bits", A_BITS)),
                                             "w_bits": kw.get("w_bits", W_BITS),
                                             "policies": list(kw.get("policies", POLICIES)),
                                             "rates": list(kw.get("rates", RATES)),
                                             "n_clips": kw.get("n_clips", 16), "snn_examples": kw.get("snn_examples", 16),
                                             "eval_limit": kw.get("eval_limit"),
                                             "tolerance": kw.get("tolerance", TOLERANCE), "seed": kw.get("seed", 0),
                                             "decode_prompts": kw.get("decode_prompts", 8)},
           "tasks": {}}
    per_task = {n: dict(v) for n, v in (task_settings or {}).items() if n in names}
    if per_task:
        out["settings"]["per_task"] = per_task
    cpu = {}
    for n in names:
        c0 = time.process_time()
        p = (prepared or {}).get(n)
        out["tasks"][n] = sweep_task(n, accelerators, status=status, prepared=p, **{**kw, **per_task.get(n, {})})
        cpu[n] = time.process_time() - c0
        out["tasks"][n]["cpu_s"] = cpu[n]
    out["wall_s"] = time.perf_counter() - t0
    out["cpu_s"] = sum(cpu.values())
    return out


SCHEMA = "snmfm.breakeven/1"
