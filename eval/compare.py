"""`compare(results) -> Report`: the derived view of a run, computed only from `Results`.

The run was given a list of accelerators (`--hw a,b,c`).  Those that need no activity trace run
the QANN densely: they are the *baselines*.  Every ratio is baseline / accelerator, named by both
(`ratios["energy"][accelerator][baseline]`), so a ratio above 1 means that accelerator spends less
energy (or time, or energy x time) than that baseline on the same Workload.

Energy is per *unit*: per inference (one example) for classifiers and encoders, per predicted token
for decoders (lm, vqa), where the energy of one forward over the example's whole sequence is divided
by the number of tokens that forward predicts (`TaskResult.normalisation`).  Latency and the
energy-delay product are per forward (per inference), not per token.

The iso-accuracy view picks, per accelerator, the cheapest measured configuration whose accuracy is
within `tolerance` (absolute, in accuracy units) of the FP32 model.  A dense accelerator runs the
QANN (or the FP32 model), so its accuracy is the QANN's on the held-out set; an SNN-driven one runs
the SNN, whose accuracy is the QANN's when the SNN reproduced the QANN on every example of its
subset (agreement 1, settled), and otherwise the SNN's own on its subset.  The verdict
(eval.verdict) is one sentence per task computed from that view.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from eval.results import REPORT_SCHEMA, Results, TaskResult, VariantResult
from eval.verdict import verdict

DEFAULT_TOLERANCE = 0.01
RATIO_DEFINITION = ("baseline / accelerator, for each dense baseline (an accelerator that runs the QANN "
                    "without a trace): above 1 the accelerator needs less than that baseline, below 1 "
                    "the baseline needs less")
# Breakdown components that are fixed power over the run's latency, and those that are off-chip
# traffic (names as the hardware models report them).
STATIC_PARTS = ("static", "leakage")
OFFCHIP_PARTS = ("offchip", "dram")


@dataclass
class Report:
    """A run's results plus the comparison derived from them (never stored apart from them), and
    the studies added to the report (eval.studies entries: each study's own output)."""

    results: Results
    comparison: dict
    studies: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        from eval.studies import STUDIES_SCHEMA
        return {"schema": REPORT_SCHEMA, "results": self.results.to_dict(), "comparison": self.comparison,
                "studies": {"schema": STUDIES_SCHEMA, "entries": list(self.studies)}}

    def task(self, name: str) -> dict:
        for t in self.comparison["tasks"]:
            if t["task"] == name:
                return t
        raise KeyError(f"no task {name!r} in this report")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _ratios(values: dict, accelerators: list[str], baselines: list[str]) -> dict:
    """{accelerator: {baseline: values[baseline] / values[accelerator]}} for every accelerator
    that is not that baseline (missing values: None)."""
    return {a: {b: _ratio(values.get(b), values.get(a)) for b in baselines if b != a}
            for a in accelerators if any(b != a for b in baselines)}


def _share(breakdown: dict, names) -> float:
    total = sum(breakdown.values())
    return sum(v for k, v in breakdown.items() if k in names) / total if total else 0.0


def _accel_view(hw, per_unit: float, needs_trace: bool) -> dict:
    """Energy per unit with its named breakdown, latency, cycles and EDP of one HwReport, with
    what it is (kind, node, memory policy) and the shares the summary states (static, off-chip)."""
    return {
        "energy_per_unit_pj": hw.energy_pj / per_unit,
        "energy_per_inference_pj": hw.energy_pj,
        "breakdown_per_unit_pj": {k: v / per_unit for k, v in hw.breakdown_pj.items()},
        "latency_s": hw.latency_s,
        "cycles": hw.cycles,
        "edp_pj_s": hw.edp_pj_s,
        "spike_driven_fraction": hw.spike_driven_fraction,
        "notes": list(hw.notes),
        "needs_trace": needs_trace,
        "kind": getattr(hw, "kind", None) or hw.config.get("kind") or None,
        "node": getattr(hw, "node", None) or hw.meta.get("tech") or hw.config.get("tech") or None,
        "memory_policy": getattr(hw, "memory_policy", None) or None,
        "static_share": _share(hw.breakdown_pj, STATIC_PARTS),
        "offchip_share": _share(hw.breakdown_pj, OFFCHIP_PARTS),
        "spills": [n for n in hw.notes if "spill" in n.lower() or "off chip" in n.lower()
                   or "off-chip" in n.lower()],
    }


def snn_exact(v: VariantResult) -> bool:
    """The SNN reproduced the QANN on every example it was run on (and went quiet)."""
    s = v.snn
    return bool(s.get("settled")) and s.get("agreement") == 1.0


def _variant_row(v: VariantResult, per_unit: float, accels: list[str], baselines: list[str]) -> dict:
    e = {a: v.hw[a].energy_pj / per_unit for a in accels if a in v.hw}
    lat = {a: v.hw[a].latency_s for a in accels if a in v.hw}
    edp = {a: v.hw[a].edp_pj_s for a in accels if a in v.hw}
    return {
        "label": v.label, "w_bits": v.w_bits, "a_bits": v.a_bits, "coding": v.coding,
        "qann_accuracy": v.qann["accuracy"], "qann_n": v.qann["n"],
        "snn_accuracy": v.snn["accuracy"], "snn_n": v.snn["n"], "snn_examples": v.snn["n_examples"],
        "agreement": v.snn["agreement"], "max_rel_err": v.snn["max_rel_err"],
        "t_settle": v.snn["t_settle"], "steps": v.snn["steps"], "exact": snn_exact(v),
        "energy_per_unit_pj": e, "latency_s": lat, "edp_pj_s": edp,
        "energy_ratio": _ratios(e, accels, baselines),
    }


def _candidates(t: TaskResult, per_unit: float, results: Results) -> dict[str, list[dict]]:
    """Every measured configuration of each accelerator with the accuracy it reaches there."""
    out: dict[str, list[dict]] = {a: [] for a in results.accelerators}
    for v in t.variants:
        exact = snn_exact(v)
        for a in results.accelerators:
            if a not in v.hw:
                continue
            dense = not results.needs_trace(a)
            row = {"label": v.label, "coding": None if dense else v.coding,  # a dense accelerator runs no spikes
                   "energy_per_unit_pj": v.hw[a].energy_pj / per_unit}
            if dense:
                row.update(accuracy=v.qann["accuracy"], n=v.qann["n"], accuracy_source="QANN on the held-out set")
            elif exact:
                row.update(accuracy=v.qann["accuracy"], n=v.qann["n"],
                           accuracy_source=("QANN on the held-out set (the SNN reproduced the QANN on all "
                                            f"{v.snn['n_examples']} examples it ran)"))
            else:
                row.update(accuracy=v.snn["accuracy"], n=v.snn["n"],
                           accuracy_source=f"SNN on its subset of {v.snn['n_examples']} examples (not exact)")
            out[a].append(row)
    for a, hw in t.fp32_hw.items():
        if a in out:
            out[a].append({"label": "FP32", "coding": None, "accuracy": t.fp32["accuracy"], "n": t.fp32["n"],
                           "accuracy_source": "FP32 model on the held-out set",
                           "energy_per_unit_pj": hw.energy_pj / per_unit})
    return out


def iso_accuracy(t: TaskResult, tolerance: float = DEFAULT_TOLERANCE, results: Results | None = None) -> dict:
    """Cheapest configuration of each accelerator within `tolerance` of FP32 accuracy, and the
    ratios between those choices (baseline / accelerator)."""
    if results is None:
        raise TypeError("iso_accuracy needs the Results the task belongs to (its accelerators)")
    per_unit = float(t.normalisation["tokens_per_inference"])
    ref = t.fp32["accuracy"]
    threshold = ref - tolerance
    choices = {}
    for accel, cands in _candidates(t, per_unit, results).items():
        ok = [c for c in cands if c["accuracy"] >= threshold - 1e-12]
        if ok:
            best = min(ok, key=lambda c: c["energy_per_unit_pj"])
            choices[accel] = {**best, "within_tolerance": True, "candidates": len(cands)}
        elif cands:  # none good enough: show the most accurate and say so
            best = max(cands, key=lambda c: (c["accuracy"], -c["energy_per_unit_pj"]))
            choices[accel] = {**best, "within_tolerance": False, "candidates": len(cands)}
        else:
            choices[accel] = None
    within = {a: c["energy_per_unit_pj"] for a, c in choices.items() if c and c["within_tolerance"]}
    return {"reference_accuracy": ref, "tolerance": tolerance, "threshold": threshold, "choices": choices,
            "energy_ratio": _ratios(within, results.accelerators, results.baselines)}


def per_op_table(v: VariantResult, per_unit: float, accels: list[str], top: int = 12) -> list[dict]:
    """Where the energy goes: the ops with the largest share on any accelerator (per unit).

    Rows of the HwReports are matched by op name; energy the models charge outside any op
    (static power, synchronisation, host I/O) is in the breakdown, not here."""
    rows: dict[str, dict] = {}
    totals = {a: v.hw[a].energy_pj for a in accels if a in v.hw}
    for accel in totals:
        for r in v.hw[accel].per_op:
            row = rows.setdefault(r["name"], {"name": r["name"], "kind": r.get("kind", "?"),
                                              "energy_pj": {}, "share": {}})
            row["energy_pj"][accel] = row["energy_pj"].get(accel, 0.0) + float(r.get("energy_pj", 0.0)) / per_unit
    for row in rows.values():
        for accel, tot in totals.items():
            e = row["energy_pj"].setdefault(accel, 0.0)
            row["share"][accel] = (e * per_unit / tot) if tot else 0.0
    out = sorted(rows.values(), key=lambda r: -max(r["share"].values(), default=0.0))
    return out[:top]


def compare_task(t: TaskResult, results: Results, tolerance: float = DEFAULT_TOLERANCE, top_ops: int = 12) -> dict:
    per_unit = float(t.normalisation["tokens_per_inference"])
    v = t.variant()
    accels, base = results.accelerators, results.baselines
    acc = {a: _accel_view(v.hw[a], per_unit, results.needs_trace(a)) for a in accels if a in v.hw}
    pick = lambda k: {a: x[k] for a, x in acc.items()}  # noqa: E731
    ratios = {"energy": _ratios(pick("energy_per_unit_pj"), accels, base),
              "latency": _ratios(pick("latency_s"), accels, base),
              "edp": _ratios(pick("edp_pj_s"), accels, base)}
    iso = iso_accuracy(t, tolerance, results)
    row = {
        "task": t.task, "kind": t.kind, "model": f"{t.model_name}/{t.size}", "main": v.label,
        "coding": v.coding,
        "unit": t.normalisation["unit"], "tokens_per_inference": t.normalisation["tokens_per_inference"],
        "accuracy": {
            "fp32": {"accuracy": t.fp32["accuracy"], "n": t.fp32["n"], "n_examples": t.fp32.get("n_examples")},
            "qann": {"accuracy": v.qann["accuracy"], "n": v.qann["n"], "n_examples": v.qann.get("n_examples")},
            "snn": {"accuracy": v.snn["accuracy"], "n": v.snn["n"], "n_examples": v.snn["n_examples"],
                    "qann_accuracy_subset": v.snn["qann_accuracy_subset"]},
        },
        "exactness": {"agreement": v.snn["agreement"], "max_abs_err": v.snn["max_abs_err"],
                      "max_rel_err": v.snn["max_rel_err"], "t_settle": v.snn["t_settle"],
                      "steps": v.snn["steps"], "settled": v.snn["settled"], "exact": snn_exact(v)},
        "accelerators": acc,
        "baselines": [b for b in base if b in acc],
        "ratios": ratios,
        "variants": [_variant_row(x, per_unit, accels, base) for x in t.variants],
        "iso_accuracy": iso,
        "per_op": per_op_table(v, per_unit, accels, top_ops),
    }
    row["verdict"] = verdict(t.task, iso, results.needs_trace, t.normalisation["unit"])
    return row


def compare(results: Results, tolerance: float = DEFAULT_TOLERANCE, top_ops: int = 12,
            studies=()) -> Report:
    """The comparison of a run: per task accuracy, energy with breakdown, latency, EDP, ratios against
    each baseline, the iso-accuracy view, the verdict and the per-op table, over the accelerators
    the run was given.  Everything is computed from `results`; `studies` (eval.studies entries)
    ride along into the report unchanged."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 (accuracy units), got {tolerance}")
    if not results.tasks:
        raise ValueError("these results hold no task: nothing to compare")
    comparison = {"tolerance": tolerance, "ratio_definition": RATIO_DEFINITION,
                  "accelerators": results.accelerators, "baselines": results.baselines,
                  "tasks": [compare_task(t, results, tolerance, top_ops) for t in results.tasks]}
    from eval.jsonio import jsonable
    return Report(results=results, comparison=jsonable(comparison), studies=list(studies))
