"""Charging a cascade's call log on the accelerators, and the cascade study (`run_cascade`).

Energy of a cascade = sum over its calls, from the same HwReports as everything else:

* member call: the member's energy (and latency) per inference on *its placement* -- the QANN's
  Workload on the conventional accelerator, the SNN's ActivityTrace (run until quiet) on the
  neuromorphic chip -- times the queries it answered; a query escalated past a member has paid
  that member's pass for nothing: reported as `wasted_pj`;
* self-test: its operation counts (snmfm.cascade.selftests.self_test_ops) on the digital unit of
  the placement -- the conventional accelerator's fp vector unit, or a neuromorphic core's unit --
  from the shared technology table, plus the values read from the output buffer and the chip's
  static power over the extra cycles;
* a query that moves between accelerators (mixed placement) carries its inputs off chip: DRAM
  energy per bit of the technology table (and the host link's bandwidth for latency).

Latency per query is the sum over the stages it went through (stages run one after another).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from neuro_hw.recipes import LANE_CYCLES as _RC

ACCELERATORS = ("conventional", "neuromorphic")   # eval.cascade_study's default accelerators
SCENARIOS = ("conventional", "neuromorphic", "mixed")  # ... and its scenarios with those
# a vector-unit lane-cycle count per operation (exp, log, div are multi-op sequences; see
# neuro_hw.conventional.vector: EXP_OPS, DIV_OPS) -- log is charged as an exp
_LANE_CYCLES = {"fp_add": _RC["add"], "fp_mul": _RC["mul"], "cmp": _RC["cmp"], "exp": _RC["exp"],
                "log": _RC["exp"], "div": _RC["div"]}


# ---- self-test cost on a digital unit ---------------------------------------------------------
def self_test_cost(ops: Mapping, accelerator: str, static_power_w: float = 0.0, hw=None) -> dict:
    """{"energy_pj", "latency_s"} of one query's self-test with operation counts `ops` on the
    digital unit of accelerator `accelerator` (a registered name; `hw`: its config, name or path
    when given): the conventional accelerator's vector unit, the idealised chip's core unit, a
    Loihi-family core's embedded unit (as neuro_hw.loihi charges non-spiking ops: 16-bit ops of the
    tech table, one per ns per core).  Dispatch is on the config's kind, so any registered name of
    those kinds works; another kind raises ValueError.  static_power_w: the chip's leakage,
    charged over the test's cycles."""
    from neuro_hw import kind_of, load_hw_config
    from neuro_hw.tech import get_tech
    cfg = load_hw_config(hw or accelerator)
    t = get_tech(cfg.tech)
    kind = kind_of(cfg)
    clock_hz = getattr(cfg, "clock_hz", None)
    if kind == "conventional":
        bits, lanes, acc_bits = cfg.vector_bits, cfg.vector_lanes, cfg.acc_bits
        buf = int(cfg.output_sram_kib * 1024)
    elif kind == "neuromorphic":
        bits, lanes, acc_bits = cfg.units.fp_bits, cfg.units.lanes, cfg.cores.acc_bits
        buf = cfg.cores.neuron_mem_bytes
    elif kind == "loihi":
        bits, lanes, acc_bits, clock_hz = 16, 1, 16, 1e9
        buf = cfg.c["chip.neurons_per_core"] * 2   # 16-bit state per compartment, read from the core's memory
    else:
        raise ValueError(f"self-test cost: accelerator {accelerator!r} is of kind {kind!r}, whose config "
                         "describes no digital unit; place the self-test on a conventional, neuromorphic "
                         "or loihi accelerator")
    unit = {"fp_add": t.fp_add_pj(bits), "fp_mul": t.fp_mul_pj(bits), "cmp": t.cmp_pj(bits),
            "exp": t.exp_pj(bits), "log": t.exp_pj(bits), "div": t.div_pj(bits)}
    e = sum(unit[k] * float(ops.get(k, 0)) for k in unit)
    e += float(ops.get("reads", 0)) * t.sram_read_pj(buf, acc_bits)
    cycles = math.ceil(sum(_LANE_CYCLES[k] * float(ops.get(k, 0)) for k in _LANE_CYCLES) / lanes)
    latency = cycles / clock_hz
    return {"energy_pj": e + static_power_w * latency * 1e12, "latency_s": latency}


def transfer_cost(bits: int, hw_neuromorphic="neuromorphic") -> dict:
    """Moving one query's inputs between the accelerators: off-chip traffic."""
    from neuro_hw import load_hw_config
    from neuro_hw.link import link_cost
    link = link_cost(bits, tech=load_hw_config(hw_neuromorphic).tech)
    return {"energy_pj": link["energy_pj"], "latency_s": link["latency_s"]}


# ---- charging ---------------------------------------------------------------------------------
def charge_log(log, member_hw: Mapping[str, Mapping[str, Mapping]], placement: str | None = None,
               hw: Mapping | None = None) -> dict:
    """Energy and latency of a call log.

    member_hw: {member: {accelerator: {"energy_pj", "latency_s", "static_power_w"}}} per inference.
    placement: charge every call on this accelerator (None: each call on its own label).
    Returns per-query means and totals: energy_pj (per query), latency_s (mean per query),
    members_pj {member: total}, self_tests_pj, wasted_pj, transfer_pj, total_pj."""
    hw = dict(hw or {})
    n = max(log.n_queries, 1)
    exit_ = np.asarray(log.exit_stage, dtype=np.int64)
    lat = np.zeros(log.n_queries)
    members_pj: dict[str, float] = {}
    wasted = tests = transfer = 0.0
    where_q: dict[int, list] = {}  # query -> placements along its path (stage order)
    for c in log.members:
        acc = placement or c.placement
        if acc not in member_hw.get(c.member, {}):
            raise ValueError(f"member {c.member!r} has no measurement on the {acc} accelerator "
                             f"(have: {sorted(member_hw.get(c.member, {}))})")
        r = member_hw[c.member][acc]
        q = np.asarray(c.queries, dtype=np.int64)
        members_pj[c.member] = members_pj.get(c.member, 0.0) + r["energy_pj"] * len(q)
        wasted += r["energy_pj"] * int((exit_[q] > c.stage).sum()) if len(q) else 0.0
        lat[q] += r["latency_s"]
        for qi in c.queries:
            where_q.setdefault(qi, []).append((c.stage, acc))
    for c in log.self_tests:
        acc = placement or c.placement
        answerer = log.stages[c.stage][-1]
        static = member_hw[answerer][acc].get("static_power_w", 0.0)
        st = self_test_cost(c.ops, acc, static, hw.get(acc))
        tests += st["energy_pj"] * len(c.queries)
        lat[np.asarray(c.queries, dtype=np.int64)] += st["latency_s"]
    if placement is None and log.input_bits:
        # the link's technology: that of an SNN-driven placement of the log (the chip-to-chip link
        # of neuro_hw.link), else of the first placement
        from neuro_hw import needs_trace
        placed = list(dict.fromkeys(c.placement for c in log.members))
        chip = next((p for p in placed if needs_trace(hw.get(p, p))), placed[0] if placed else "neuromorphic")
        tc = transfer_cost(log.input_bits, hw.get(chip, chip))
        for qi, path in where_q.items():
            stages = sorted(set(path))
            moves = sum(1 for a, b in zip(stages, stages[1:]) if a[1] != b[1])
            transfer += moves * tc["energy_pj"]
            lat[qi] += moves * tc["latency_s"]
    total = sum(members_pj.values()) + tests + transfer
    return {"energy_pj": total / n, "latency_s": float(lat.mean()) if len(lat) else 0.0,
            "total_pj": total, "members_pj": members_pj, "self_tests_pj": tests,
            "wasted_pj": wasted, "transfer_pj": transfer, "n_queries": log.n_queries,
            "escalation_rate": log.escalation_rate, "exit_fractions": log.exit_fractions(),
            "self_test_share": tests / total if total else 0.0}


def stage_energy(cascade, member_hw, scenario: str, n_outputs: int, hw=None) -> tuple[dict, list]:
    """Per-query costs for threshold search on one scenario: ({member: energy}, [self-test energy
    per non-final stage])."""
    costs = {m.name: member_hw[m.name][_acc(m, scenario)]["energy_pj"] for m in cascade.members}
    tests = []
    for i, s in enumerate(cascade.stages[:-1]):
        acc = _acc(s.answerer, scenario)
        tests.append(self_test_cost(cascade.self_test_ops(i, n_outputs), acc,
                                    member_hw[s.answerer.name][acc].get("static_power_w", 0.0),
                                    (hw or {}).get(acc))["energy_pj"])
    return costs, tests


def _acc(member, scenario: str) -> str:
    return member.placement if scenario == "mixed" else scenario


def curve(cascade, rec, member_hw, scenario: str, hw=None) -> list[dict]:
    """Accuracy versus energy per query over the shared-threshold path (one point per threshold)."""
    n_out = int(next(iter(rec.members.values())).logits.shape[-1])
    costs, tests = stage_energy(cascade, member_hw, scenario, n_out, hw)
    rows = cascade.sweep(rec, costs, tests, "shared")
    return [{"threshold": r["thresholds"][0], "accuracy": r["accuracy"],
             "escalation_rate": r["escalation_rate"], "energy_pj": r["cost"]} for r in rows]


def within(acc: float, ref: float, tolerance: float) -> bool:
    return acc >= ref - tolerance - 1e-12


def summarise_points(points: Sequence[dict]) -> list[dict]:
    """Distinct (accuracy, energy) points of a curve, sorted by energy."""
    seen, out = set(), []
    for p in sorted(points, key=lambda p: (p["energy_pj"], -p["accuracy"])):
        k = (round(p["accuracy"], 9), round(p["energy_pj"], 3))
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out

