"""Event counts per op and per time step: what the chip does, before any energy is attached.

`activity(workload, trace, mapping, cfg)` is the fast analytical path: vectorised over steps from
the ActivityTrace's counts (summed over its samples, divided here by n_samples: everything is per
inference).  Per synaptic op it gives the row fetches (one per input spike; spike-aware dataflow),
the synaptic operations (fetches x fan-out), the stored-operand updates of matmul_act; per neuron
site the spikes, neuron updates, packets and hops; per non-spiking unit the re-evaluated elements;
per residual add the changed elements; per embedding the lookups.

With `cfg.mode.spike_aware = False` the same structure is filled densely: every input row is
fetched, every neuron updated, every unit row re-evaluated at every step the inference runs.

Hops: a spike leaves the core of its neuron and is sent to each core of the consuming op.  The
trace has per-site totals, not per-neuron counts, so the analytical path spreads a site's spikes
evenly over the cores its neurons live on (exact when the site sits on one core).  The
event-exact path (`exact_totals`, from a `SpikeRecord`) routes every recorded spike from its own
core and is the reference for the hop counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neuro_hw.neuromorphic.mapping import Mapping, matmul_cores_per_head, matmul_dest
from neuro_hw.workload import NONSPIKING_KINDS, SYNAPTIC_KINDS, Op, Workload


@dataclass
class Activity:
    """Per-inference event counts, arrays over the trace's time steps."""

    steps: int
    run_weight: np.ndarray        # [T] fraction of inferences still running at each step
    mean_steps: float             # time steps an inference runs (barriers per inference)
    ops: dict = field(default_factory=dict)    # op name -> {count name: [T]}
    sites: dict = field(default_factory=dict)  # site name -> {count name: [T]}


def fanout(op: Op) -> int:
    """Synaptic fan-out of one input spike of a linear / conv / feature_embed op."""
    if op.kind == "conv":
        return int(op.extra.get("fanout_per_input") or op.gemm[3])
    return int(op.gemm[3])


def run_weights(trace, mode_steps: str) -> tuple[np.ndarray, float]:
    """Fraction of inputs still running at each step, and the mean number of steps run.
    settle: an input runs until its own t_settle plus the one quiet step that shows the chip is
    quiet (at most trace.steps); trace: all trace.steps."""
    T = trace.steps
    if mode_steps == "trace":
        return np.ones(T), float(T)
    per = list(trace.t_settle_per_sample)
    if not per:
        per = [trace.t_settle if trace.t_settle is not None else T] * trace.n_samples
    per = np.clip(np.asarray(per, dtype=np.int64) + 1, 1, T)
    w = (np.arange(T)[:, None] < per[None, :]).mean(1)
    return w, float(per.mean())


def _site(trace, name: str, kind: str):
    s = trace.sites.get(name)
    if s is None:
        raise ValueError(f"the ActivityTrace has no site {name!r} ({kind}); were the Workload and the "
                         "trace made from the same model?")
    return s


def activity(workload: Workload, trace, mapping: Mapping, cfg) -> Activity:
    """Analytical event counts per op and per step (see the module docstring)."""
    T = trace.steps
    ns = float(trace.n_samples)
    w, mean_steps = run_weights(trace, cfg.mode.steps)
    dense = not cfg.mode.spike_aware
    act = Activity(steps=T, run_weight=w, mean_steps=mean_steps)
    by_name = {o.name: o for o in workload.ops}
    for op in workload.ops:
        if op.kind in SYNAPTIC_KINDS:
            sp = [_site(trace, s, "neuron").spikes / ns for s in op.spike_inputs]
            rec = {}
            if op.kind == "matmul_act":
                b, M, K, N = op.gemm
                a_rows, b_rows = (w * b * M * K, w * b * K * N) if dense else (sp[0], sp[1])
                rec["fetch_a"], rec["fetch_b"] = a_rows, b_rows  # A spike: row of B (N); B spike: col of A (M)
                rec["synops"] = a_rows * N + b_rows * M
                cph = matmul_cores_per_head(op, len(mapping.cores_of(op.name)))
                rec["cores_per_head"] = cph
                # stored A, B follow the spikes in any mode; B is kept on each of its head's cores
                rec["operand_updates"] = sp[0] + sp[1] * cph
            else:
                rows = w * op.in_elems if dense else sp[0]
                rec["fetch_a"] = rows
                rec["synops"] = rows * fanout(op)
            act.ops[op.name] = rec
            for j, s in enumerate(op.spike_inputs):
                site = trace.sites[s]
                n_neurons = int(np.prod(site.shape)) if site.shape else 1
                src = mapping.cores_of(s)
                dst = mapping.cores_of(op.name)
                if op.kind == "matmul_act":
                    n_dest = 1 if j == 0 else rec["cores_per_head"]
                else:
                    n_dest = len(dst)  # split along the outputs: every core needs every input spike
                mx, my = mapping.mean_hops(src, dst)
                act.sites[s] = {
                    "spikes": sp[j],
                    "updates": w * n_neurons if dense else site.updates / ns,
                    "packets": sp[j] * n_dest,
                    "hops_x": sp[j] * n_dest * mx,
                    "hops_y": sp[j] * n_dest * my,
                    "neurons": n_neurons,
                    "dests": n_dest,
                }
        elif op.kind in NONSPIKING_KINDS:
            u = _site(trace, op.name, "non-spiking unit")
            width = int(op.extra.get("width") or op.out_shape[-1])
            rows = int(op.extra.get("rows") or max(1, op.out_elems // width))
            r = w * rows if dense else u.active_rows / ns
            act.ops[op.name] = {"rows": r, "elems": r * width, "width": width}
        elif op.kind == "add":
            prod = by_name.get(op.producers[0]) if op.producers else None
            if dense or prod is None or not prod.spike_inputs:
                elems = w * op.out_elems
            else:  # a row of the producer's input with >= 1 spike changes that row's N outputs
                site = _site(trace, prod.spike_inputs[0], "neuron")
                elems = site.active_rows / ns * prod.gemm[3]
            act.ops[op.name] = {"elems": elems}
        elif op.kind == "embed":
            e = trace.sites.get(op.name)
            lookups = op.extra.get("lookups", op.in_elems)
            if e is not None and not dense:
                look = e.updates / ns
            else:  # tokens are presented once, at step 1
                look = np.zeros(T)
                look[0] = lookups
            act.ops[op.name] = {"lookups": look, "width": int(op.extra.get("width") or op.out_shape[-1])}
    return act


# ---- event-exact path ------------------------------------------------------------------------
def _conv_fanout_map(op: Op) -> np.ndarray:
    """Exact fan-out of every input element of a conv: out_channels x the number of output
    positions whose receptive field covers it (padding inferred from the shapes)."""
    C, H, W = op.in_shape
    N, Ho, Wo = op.out_shape
    kh, kw = op.extra.get("kernel", [1, 1])
    sh, sw = op.extra.get("stride", [1, 1])
    ph = max(0, ((Ho - 1) * sh + kh - H) // 2)
    pw = max(0, ((Wo - 1) * sw + kw - W) // 2)

    def cover(n_in, n_out, k, s, p):
        c = np.zeros(n_in, dtype=np.int64)
        for o in range(n_out):
            lo, hi = o * s - p, o * s - p + k
            c[max(lo, 0):min(hi, n_in)] += 1
        return c

    cov = cover(H, Ho, kh, sh, ph)[:, None] * cover(W, Wo, kw, sw, pw)[None, :]
    return np.broadcast_to(cov[None] * N, (C, H, W)).reshape(-1)


def exact_totals(workload: Workload, record, mapping: Mapping) -> dict:
    """Route every recorded spike individually; per-inference totals per op:
    {op: {"synops", "packets", "hops", "neuron_updates", "spikes"}} and an "_all" row.

    `record` is a `SpikeRecord` (spikes [steps, B, *site shape] per site)."""
    out = {}
    B = record.n_samples
    for op in workload.ops:
        if op.kind not in SYNAPTIC_KINDS:
            continue
        tot = {"synops": 0.0, "packets": 0.0, "hops": 0.0, "neuron_updates": 0.0, "spikes": 0.0}
        dst = mapping.cores_of(op.name)
        for j, s in enumerate(op.spike_inputs):
            spk = record.spikes[s]                     # [steps, B, ...] in {-1, 0, 1}
            n = int(np.prod(spk.shape[2:]))
            flat = spk.reshape(-1, n)
            idx = np.nonzero(flat)[1]                  # neuron index of every spike event
            src = mapping.cores_of(s)
            src_core = src[idx * len(src) // n]        # the core each spiking neuron lives on
            xy = mapping.core_xy
            if op.kind == "matmul_act":
                dests = matmul_dest(op, dst, j, idx)
            else:
                dests = [np.full(len(idx), d) for d in dst]
            for d in dests:                             # one packet per spike and destination core
                tot["hops"] += float(np.abs(xy[src_core] - xy[d]).sum())
                tot["packets"] += float(len(idx))
            tot["spikes"] += float(len(idx))
            tot["neuron_updates"] += float(record.updates[s].sum())
            if op.kind == "matmul_act":
                b, M, K, N = op.gemm
                tot["synops"] += float(len(idx) * (N if j == 0 else M))
            elif op.kind == "conv":
                tot["synops"] += float(_conv_fanout_map(op)[idx].sum())
            else:
                tot["synops"] += float(len(idx) * fanout(op))
        out[op.name] = {k: v / B for k, v in tot.items()}
    out["_all"] = {k: sum(r[k] for r in out.values()) for k in
                   ("synops", "packets", "hops", "neuron_updates", "spikes")}
    return out


def analytical_totals(workload: Workload, act: Activity) -> dict:
    """The same totals as `exact_totals`, from the analytical `Activity`."""
    out = {}
    for op in workload.ops:
        if op.kind not in SYNAPTIC_KINDS:
            continue
        r = act.ops[op.name]
        tot = {"synops": float(r["synops"].sum()), "packets": 0.0, "hops": 0.0,
               "neuron_updates": 0.0, "spikes": 0.0}
        for s in op.spike_inputs:
            a = act.sites[s]
            tot["packets"] += float(a["packets"].sum())
            tot["hops"] += float((a["hops_x"] + a["hops_y"]).sum())
            tot["neuron_updates"] += float(a["updates"].sum())
            tot["spikes"] += float(a["spikes"].sum())
        out[op.name] = tot
    out["_all"] = {k: sum(r[k] for r in out.values()) for k in
                   ("synops", "packets", "hops", "neuron_updates", "spikes")}
    return out
