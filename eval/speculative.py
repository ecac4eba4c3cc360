"""Energy and latency per generated token of a decoding schedule, on each accelerator.

`snmfm.speculative` returns a call log (which member ran, on how many new positions, over how many
cached positions).  Each call is one decoder Workload (`neuro_hw.workload.extract_decoder_call`: a
prefill when nothing is cached, else a decode or verification step whose Q.K^T and P.V read the
KV cache) simulated on the member's accelerator with the same `simulate` functions as everything
else, so a schedule's energy is the sum of the HwReports of its calls (DESIGN: "Operation
optimisation").  Rejected drafts and the verification positions after a rejection stay in the sum
(that work was done); `wasted_pj` says how much of it was thrown away.

Traces for the neuromorphic chip.  An SNN member's call is driven by that very call's spikes: the
ActivityTrace recorded while it ran (`speculative_decode(..., record=True)`), or, when the member
ran as an FP32/QANN module or unrecorded, by *replaying* its calls in order on its SpikingModel
(same tokens, same cache rollbacks; SNN == QANN, so the replay takes the same path and produces the
same trace the SNN member would have).  `retarget_trace` is the cheap alternative for sweeps: a
decode step's events are those of its new positions (cached ones are settled and silent), so a
trace measured at one context length drives the Workload of another, whose shapes carry the
KV-cache reads.

Between chips.  When draft and target sit on different accelerators, every round sends the draft
tokens (and, for speculative sampling, the draft's distributions q at those positions, fp16) to
the target's chip and the verdict (kept count + the new token) back; charged as off-chip traffic
(neuro_hw.link: the technology table's DRAM energy per bit, its link bandwidth for latency).  Members on the
same chip exchange nothing (each simulate assumes the chip to itself: a gap, see the report).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from neuro_hw import load_hw_config, needs_trace, simulate
from neuro_hw.workload import extract_decoder_call

FP16_BITS = 16


@dataclass
class Placement:
    """One member of a schedule on one accelerator.

    model: the member as it ran, or any form with the same outputs: a QANN (its Workloads), a
    SpikingModel (Workloads from its source_qann; traces from it), or an FP32 model (conventional
    only, charged at 32-bit activations).  hw: accelerator name, file or config.  snn: the
    SpikingModel to replay calls on when charging on the neuromorphic chip (default: `model` if it
    is one).  images: the image(s) of a multimodal member's calls."""

    model: object
    hw: object = "conventional"
    snn: object = None
    images: object = None
    _wl: dict = field(default_factory=dict, repr=False)
    _conv: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        from eval.accelerators import label
        self.config = load_hw_config(self.hw)
        self.accelerator = label(self.hw)          # the registered name (or the config's own name)
        self.traced = bool(needs_trace(self.config))  # driven by the member's spikes

    @property
    def spiking(self):
        if self.snn is not None:
            return self.snn
        return self.model if hasattr(self.model, "run") and hasattr(self.model, "net") else None

    def workload(self, call):
        key = (call.positions, call.context)
        if key not in self._wl:
            self._wl[key] = extract_decoder_call(self.model, call.positions, call.context,
                                                 images=None if self.images is None else self.images[:1])
        return self._wl[key]


def retarget_trace(trace, workload):
    """A copy of `trace` whose site shapes are those of `workload` (the same model at another
    context length), counts unchanged: the events of a call's new positions, the cached ones being
    settled and silent.  For sweeps over context length without re-running the SNN."""
    t = copy.deepcopy(trace)
    for op in workload.ops:
        shapes = []
        if op.kind == "matmul_act":
            shapes = [(op.spike_inputs[0], op.in_shape),
                      (op.spike_inputs[1], tuple(op.extra.get("b_shape") or op.in_shape))]
        elif op.spike_inputs:
            shapes = [(op.spike_inputs[0], op.in_shape)]
        else:
            shapes = [(op.name, op.in_shape)]
        for name, shape in shapes:
            if name in t.sites:
                t.sites[name].shape = tuple(shape)
    return t


def _replay_traces(placement: Placement, calls: list) -> list:
    """Traces of `calls` (one member's, in order) by re-running them on its SpikingModel."""
    from snmfm.speculative import Decoder
    snn = placement.spiking
    if snn is None:
        raise ValueError(f"a member on the SNN-driven accelerator {placement.accelerator!r} needs its SpikingModel "
                         "(Placement.snn): convert its QANN with converters.convert")
    out, decs = [], {}
    for c in calls:
        if c.batch != 1:
            raise ValueError("replaying calls for traces needs batch-1 call logs")
        if c.trace is not None:
            out.append(c.trace)
            continue
        dec = decs.setdefault(c.cached, Decoder(snn, member=c.member, images=placement.images,
                                                cached=c.cached, record=True))
        dec.rollback(c.context if c.cached else 0)
        dec.feed(torch.tensor([c.tokens]), c.purpose)
        out.append(dec.log[-1].trace)
    return out


def _call_reports(placement: Placement, calls: list) -> list:
    if placement.traced:
        traces = _replay_traces(placement, calls)
        return [simulate(placement.workload(c), t, placement.config) for c, t in zip(calls, traces)]
    reps = []
    for c in calls:
        key = (c.positions, c.context)
        if key not in placement._conv:
            placement._conv[key] = simulate(placement.workload(c), None, placement.config)
        reps.append(placement._conv[key])
    return reps


def link_costs(placements: dict, result, *, link_gbps: float | None = None) -> dict:
    """Off-chip traffic between the draft's and the target's chips for the rounds of `result`."""
    d, t = placements.get("draft"), placements.get("target")
    if d is None or t is None or d.accelerator == t.accelerator:
        return {"bits": 0.0, "energy_pj": 0.0, "latency_s": 0.0}
    from snmfm.speculative import decoder_parts
    V = decoder_parts(t.model)[1].config.vocab_size
    tok_bits = max(1, math.ceil(math.log2(V)))
    bits = 0.0
    for n_d, _ in result.rounds:
        bits += n_d * tok_bits + (n_d * V * FP16_BITS if result.mode == "sample" else 0)   # to target
        bits += max(1, math.ceil(math.log2(n_d + 1))) + tok_bits                             # verdict back
    B = len(result.sequences)
    bits *= B
    from neuro_hw.link import link_cost   # the one chip-to-chip link model (neuro_hw.link)
    return link_cost(bits, tech=t.config.tech, gbps=link_gbps)


def charge(result, placements: dict, *, link_gbps: float | None = None) -> dict:
    """Energy and latency of a decoding `result` (`snmfm.speculative.DecodeResult`) with its members
    placed as `placements` ({"target": Placement, "draft": Placement}; a plain decode needs only
    the target).  Calls run one after another (latency adds up); a batch of B sequences costs B
    inferences per call.  Returns per-token figures, totals by member and the wasted share."""
    by_member = {}
    wasted = 0.0
    rows = []
    for member in sorted({c.member for c in result.calls}):
        if member not in placements:
            raise ValueError(f"the call log has {member!r} calls but no placement for it")
        calls = [c for c in result.calls if c.member == member]
        reps = _call_reports(placements[member], calls)
        e = lat = 0.0
        for c, r in zip(calls, reps):
            ce = r.energy_pj * c.batch
            e += ce
            lat += r.latency_s * c.batch
            wasted += ce * c.wasted / max(1, c.positions)
            rows.append({"member": member, "purpose": c.purpose, "positions": c.positions,
                         "context": c.context, "energy_pj": ce, "latency_s": r.latency_s,
                         "kv_cache": r.meta.get("kv_cache")})
        by_member[member] = {"accelerator": placements[member].accelerator, "calls": len(calls),
                             "energy_pj": e, "latency_s": lat}
    link = link_costs(placements, result, link_gbps=link_gbps)
    n = max(1, sum(len(s) for s in result.sequences))
    energy = sum(m["energy_pj"] for m in by_member.values()) + link["energy_pj"]
    latency = sum(m["latency_s"] for m in by_member.values()) + link["latency_s"]
    return {"tokens": n, "energy_pj": energy, "latency_s": latency,
            "energy_pj_per_token": energy / n, "latency_s_per_token": latency / n,
            "wasted_pj": wasted, "wasted_fraction": wasted / energy if energy else 0.0,
            "link": link, "by_member": by_member, "calls": rows,
            "pairing": {m: p.accelerator for m, p in placements.items()}}


__all__ = ["Placement", "charge", "link_costs", "retarget_trace"]
