"""What fault protection costs, charged on a HwReport as data; and what dead cores take away.

A mitigation of `snmfm.faults.Mitigation` adds work and storage to an accelerator.  `charge`
returns the report with one more breakdown part, ``protection``, whose pieces are in
``meta["protection"]`` (energy per inference in pJ, and the extra storage in bytes as the area
proxy), computed from the report's own per-op counts and the technology table both sides share:

* ecc: SECDED (72, 64) (Hamming 1950, extended; the ECC of server DRAM and of on-chip SRAM
  macros): 8 check bits per 64 data bits, so every protected memory read moves 72/64 of the bits:
  +12.5% of the energy of the memories that hold the protected words and +12.5% of their capacity.
  Neuromorphic chip: its synapse memory (the weights).  Conventional accelerator: its SRAM and DRAM
  (weights and activations share them, so both are protected).  The encoder/decoder XOR trees are
  not charged (a few hundred gates per port).
* guard (bound-and-protect, Putra et al., "SoftSNN", DAC 2022): two `acc_bits` comparisons per
  accumulator value written (conventional: every output element of a synaptic op; chip: every
  neuron update) and, on the chip, two count-width comparisons per received event; storage: one
  `acc_bits` bound per output channel.
* tmr (triple modular redundancy of the named ops, the output layer): two more copies of each op's
  energy plus a 3-input majority (two comparisons) per output element; storage: two more copies of
  its weights.
* remap (dead cores): no extra work is charged here; the chip is re-simulated on the mapping that
  avoids the dead cores (`map_workload(..., dead_cores=...)`), whose longer routes and any spill it
  reports.
"""
from __future__ import annotations

import copy

import numpy as np

from neuro_hw.tech import get_tech
from neuro_hw.workload import Workload

ECC_CHECK_FRACTION = 8 / 64  # SECDED (72, 64)

# report breakdown parts that hold memory reads, per accelerator kind (see the module docstring).
# loihi: its per-event "synapse" energy (SANA-FE's energy_process_spike) is the synapse-memory read
# together with the weight's accumulation, which the published figure does not split: 12.5% of
# all of it is charged, an upper bound on ECC's share.
ECC_PARTS = {"neuromorphic": ("synaptic_sram", "offchip"), "conventional": ("sram", "dram"),
             "loihi": ("synapse", "offchip")}
SYNAPTIC = ("linear", "conv", "feature_embed", "matmul_act")


def _kind(report) -> str:
    """The accelerator kind of a report: its `kind` (registry, C2) or, before that, its name;
    an event-driven kind without its own ECC_PARTS entry counts as "neuromorphic"."""
    k = getattr(report, "kind", None) or report.accelerator
    return k if k in ECC_PARTS else "neuromorphic"


def protection_cost(report, workload: Workload, mitigation) -> dict:
    """{"energy_pj": {part: pJ}, "storage_bytes": {part: bytes}} of `mitigation` on `report`."""
    kind = _kind(report)
    tech = get_tech(report.config.get("tech", "45nm") if isinstance(report.config, dict) else "45nm")
    acc_bits = int((report.config or {}).get("acc_bits", 32)) if isinstance(report.config, dict) else 32
    cmp_acc = tech.cmp_pj(min(acc_bits, 32))
    ops = {o.name: o for o in workload.ops}
    rows = {r["name"]: r for r in report.per_op}
    energy, storage = {}, {}
    weight_bytes = sum(o.params * max(o.w_bits, 1) / 8 for o in workload.ops if o.params)
    if mitigation.ecc:
        parts = ECC_PARTS[kind]
        have = [p for p in parts if p in report.breakdown_pj]
        if not have:
            raise ValueError(f"cannot charge ECC on {report.accelerator!r}: none of its memory parts "
                             f"{parts} is in the report's breakdown {sorted(report.breakdown_pj)}")
        energy["ecc"] = ECC_CHECK_FRACTION * sum(report.breakdown_pj[p] for p in have)
        storage["ecc"] = ECC_CHECK_FRACTION * weight_bytes
    if mitigation.guard:
        if kind != "conventional":
            updates = sum(float(r.get("neuron_updates", 0.0)) for r in report.per_op)
            events = sum(float(r.get("spikes", 0.0)) for r in report.per_op)
            energy["guard"] = 2 * updates * cmp_acc + 2 * events * tech.cmp_pj(8)
        else:
            outs = sum(o.out_elems for o in workload.ops if o.kind in SYNAPTIC)
            energy["guard"] = 2 * outs * cmp_acc
        channels = sum(o.gemm[3] for o in workload.ops if o.kind in SYNAPTIC and o.gemm)
        storage["guard"] = channels * acc_bits / 8
    if mitigation.tmr:
        e = s = 0.0
        for name in mitigation.tmr:
            if name not in ops:
                raise ValueError(f"TMR names op {name!r}, which the workload does not have")
            op = ops[name]
            e += 2 * float(rows.get(name, {}).get("energy_pj", 0.0)) + 2 * op.out_elems * cmp_acc
            s += 2 * op.params * max(op.w_bits, 1) / 8
        energy["tmr"], storage["tmr"] = e, s
    return {"energy_pj": energy, "storage_bytes": storage,
            "storage_fraction_of_weights": {k: v / weight_bytes for k, v in storage.items()} if weight_bytes else {}}


def charge(report, workload: Workload, mitigation):
    """A copy of `report` with the protection's energy added as the breakdown part "protection"
    (the pieces in meta["protection"]); the report itself is unchanged."""
    cost = protection_cost(report, workload, mitigation)
    out = copy.deepcopy(report)
    extra = float(sum(cost["energy_pj"].values()))
    out.breakdown_pj["protection"] = out.breakdown_pj.get("protection", 0.0) + extra
    out.energy_pj = report.energy_pj + extra
    out.meta["protection"] = {"mitigations": mitigation.names(), **cost,
                              "energy_overhead": extra / report.energy_pj if report.energy_pj else None}
    out.check()
    return out


def lost_outputs(mapping, workload: Workload, dead_cores) -> dict:
    """Per synaptic op with a dead core (mapping made without knowing they are dead): the flat
    per-sample output elements whose accumulators and neurons lived there.  linear / conv /
    feature_embed ops are split over their cores along the output channels N (mapping.py), a
    matmul_act by head, then by rows of A within a head."""
    from neuro_hw.neuromorphic.mapping import matmul_cores_per_head
    dead = {int(c) for c in dead_cores}
    out = {}
    for op in workload.ops:
        if op.kind not in SYNAPTIC or op.name not in mapping.groups:
            continue
        cores = np.asarray(mapping.groups[op.name].cores)
        hit = np.isin(cores, list(dead))
        if not hit.any():
            continue
        n, E = len(cores), int(op.out_elems)
        idx = np.arange(E)
        b, M, K, N = op.gemm
        if op.kind == "matmul_act":
            cph = matmul_cores_per_head(op, n)
            h = idx // (M * N)
            core = (h * n // b) if cph == 1 else (h * cph + ((idx // N) % M) * cph // M)
        else:
            if op.kind == "conv":
                ch = idx // (E // N)          # [C, H, W]: channel-major
            else:
                ch = idx % N                  # [..., N]
            core = ch * n // N
        out[op.name] = idx[hit[np.minimum(core, n - 1)]]
    return out
