"""`compare(results) -> Report`: the derived view of a run, computed only from `Results`.

Ratios are conventional / neuromorphic, so a ratio above 1 means the neuromorphic chip spends less
energy (or time, or energy x time) than the conventional accelerator on the same Workload.

Energy is per *unit*: per inference (one example) for classifiers and encoders, per predicted token
for decoders (lm, vqa), where the energy of one forward over the example's whole sequence is divided
by the number of tokens that forward predicts (`TaskResult.normalisation`).  Latency and the
energy-delay product are per forward (per inference), not per token.

The iso-accuracy view picks, per accelerator, the cheapest measured configuration whose accuracy is
within `tolerance` (absolute, in accuracy units) of the FP32 model.  The conventional accelerator
runs the QANN (or the FP32 model), so its accuracy is the QANN's on the held-out set; the
neuromorphic chip runs the SNN, whose accuracy is the QANN's when the SNN reproduced the QANN on
every example of its subset (agreement 1, settled), and otherwise the SNN's own on its subset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from eval.results import ACCELERATORS, REPORT_SCHEMA, Results, TaskResult, VariantResult

DEFAULT_TOLERANCE = 0.01
RATIO_DEFINITION = ("conventional / neuromorphic (above 1: the neuromorphic chip needs less; "
                    "below 1: the conventional accelerator needs less)")


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


def _accel_view(hw, per_unit: float) -> dict:
    """Energy per unit with its named breakdown, latency, cycles and EDP of one HwReport."""
    return {
        "energy_per_unit_pj": hw.energy_pj / per_unit,
        "energy_per_inference_pj": hw.energy_pj,
        "breakdown_per_unit_pj": {k: v / per_unit for k, v in hw.breakdown_pj.items()},
        "latency_s": hw.latency_s,
        "cycles": hw.cycles,
        "edp_pj_s": hw.edp_pj_s,
        "spike_driven_fraction": hw.spike_driven_fraction,
        "notes": list(hw.notes),
    }


def snn_exact(v: VariantResult) -> bool:
    """The SNN reproduced the QANN on every example it was run on (and went quiet)."""
    s = v.snn
    return bool(s.get("settled")) and s.get("agreement") == 1.0


def _variant_row(v: VariantResult, per_unit: float) -> dict:
    e = {a: v.hw[a].energy_pj / per_unit for a in ACCELERATORS if a in v.hw}
    lat = {a: v.hw[a].latency_s for a in ACCELERATORS if a in v.hw}
    edp = {a: v.hw[a].edp_pj_s for a in ACCELERATORS if a in v.hw}
    return {
        "label": v.label, "w_bits": v.w_bits, "a_bits": v.a_bits,
        "qann_accuracy": v.qann["accuracy"], "qann_n": v.qann["n"],
        "snn_accuracy": v.snn["accuracy"], "snn_n": v.snn["n"], "snn_examples": v.snn["n_examples"],
        "agreement": v.snn["agreement"], "max_rel_err": v.snn["max_rel_err"],
        "t_settle": v.snn["t_settle"], "steps": v.snn["steps"], "exact": snn_exact(v),
        "energy_per_unit_pj": e, "latency_s": lat, "edp_pj_s": edp,
        "energy_ratio": _ratio(e.get("conventional"), e.get("neuromorphic")),
    }


def _candidates(t: TaskResult, per_unit: float) -> dict[str, list[dict]]:
    """Every measured configuration of each accelerator with the accuracy it reaches there."""
    out: dict[str, list[dict]] = {a: [] for a in ACCELERATORS}
    for v in t.variants:
        if "conventional" in v.hw:
            out["conventional"].append({
                "label": v.label, "accuracy": v.qann["accuracy"], "n": v.qann["n"],
                "accuracy_source": "QANN on the held-out set",
                "energy_per_unit_pj": v.hw["conventional"].energy_pj / per_unit})
        if "neuromorphic" in v.hw:
            exact = snn_exact(v)
            out["neuromorphic"].append({
                "label": v.label,
                "accuracy": v.qann["accuracy"] if exact else v.snn["accuracy"],
                "n": v.qann["n"] if exact else v.snn["n"],
                "accuracy_source": ("QANN on the held-out set (the SNN reproduced the QANN on all "
                                    f"{v.snn['n_examples']} examples it ran)") if exact
                else f"SNN on its subset of {v.snn['n_examples']} examples (not exact)",
                "energy_per_unit_pj": v.hw["neuromorphic"].energy_pj / per_unit})
    if "conventional" in t.fp32_hw:
        out["conventional"].append({
            "label": "FP32", "accuracy": t.fp32["accuracy"], "n": t.fp32["n"],
            "accuracy_source": "FP32 model on the held-out set",
            "energy_per_unit_pj": t.fp32_hw["conventional"].energy_pj / per_unit})
    return out


def iso_accuracy(t: TaskResult, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Cheapest configuration of each accelerator within `tolerance` of FP32 accuracy."""
    per_unit = float(t.normalisation["tokens_per_inference"])
    ref = t.fp32["accuracy"]
    threshold = ref - tolerance
    view = {"reference_accuracy": ref, "tolerance": tolerance, "threshold": threshold}
    for accel, cands in _candidates(t, per_unit).items():
        ok = [c for c in cands if c["accuracy"] >= threshold - 1e-12]
        if ok:
            best = min(ok, key=lambda c: c["energy_per_unit_pj"])
            view[accel] = {**best, "within_tolerance": True, "candidates": len(cands)}
        elif cands:  # none good enough: show the most accurate and say so
            best = max(cands, key=lambda c: (c["accuracy"], -c["energy_per_unit_pj"]))
            view[accel] = {**best, "within_tolerance": False, "candidates": len(cands)}
        else:
            view[accel] = None
    both = all(view.get(a) and view[a]["within_tolerance"] for a in ACCELERATORS)
    view["energy_ratio"] = (_ratio(view["conventional"]["energy_per_unit_pj"],
                                   view["neuromorphic"]["energy_per_unit_pj"]) if both else None)
    return view


def per_op_table(v: VariantResult, per_unit: float, top: int = 12) -> list[dict]:
    """Where the energy goes: the ops with the largest share on either accelerator (per unit).

    Rows of both HwReports are matched by op name; energy the models charge outside any op
    (static power, synchronisation, host I/O) is in the breakdown, not here."""
    rows: dict[str, dict] = {}
    totals = {}
    for accel in ACCELERATORS:
        if accel not in v.hw:
            continue
        hw = v.hw[accel]
        totals[accel] = hw.energy_pj
        for r in hw.per_op:
            row = rows.setdefault(r["name"], {"name": r["name"], "kind": r.get("kind", "?")})
            row[f"{accel}_pj"] = row.get(f"{accel}_pj", 0.0) + float(r.get("energy_pj", 0.0)) / per_unit
    out = []
    for row in rows.values():
        for accel in ACCELERATORS:
            e = row.setdefault(f"{accel}_pj", 0.0)
            tot = totals.get(accel)
            row[f"{accel}_share"] = (e * per_unit / tot) if tot else 0.0
        out.append(row)
    out.sort(key=lambda r: -max(r["neuromorphic_share"], r["conventional_share"]))
    return out[:top]


def compare_task(t: TaskResult, tolerance: float = DEFAULT_TOLERANCE, top_ops: int = 12) -> dict:
    per_unit = float(t.normalisation["tokens_per_inference"])
    v = t.variant()
    acc = {a: _accel_view(v.hw[a], per_unit) for a in ACCELERATORS if a in v.hw}
    both = all(a in acc for a in ACCELERATORS)
    ratios = {
        "energy": _ratio(acc["conventional"]["energy_per_unit_pj"], acc["neuromorphic"]["energy_per_unit_pj"]),
        "latency": _ratio(acc["conventional"]["latency_s"], acc["neuromorphic"]["latency_s"]),
        "edp": _ratio(acc["conventional"]["edp_pj_s"], acc["neuromorphic"]["edp_pj_s"]),
    } if both else {"energy": None, "latency": None, "edp": None}
    return {
        "task": t.task, "kind": t.kind, "model": f"{t.model_name}/{t.size}", "main": v.label,
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
        "ratios": ratios,
        "variants": [_variant_row(x, per_unit) for x in t.variants],
        "iso_accuracy": iso_accuracy(t, tolerance),
        "per_op": per_op_table(v, per_unit, top_ops),
    }


def compare(results: Results, tolerance: float = DEFAULT_TOLERANCE, top_ops: int = 12,
            studies=()) -> Report:
    """The comparison of a run: per task accuracy, energy with breakdown, latency, EDP, ratios, the
    iso-accuracy view and the per-op table.  Everything is computed from `results`; `studies`
    (eval.studies entries) ride along into the report unchanged."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 (accuracy units), got {tolerance}")
    if not results.tasks:
        raise ValueError("these results hold no task: nothing to compare")
    comparison = {"tolerance": tolerance, "ratio_definition": RATIO_DEFINITION,
                  "tasks": [compare_task(t, tolerance, top_ops) for t in results.tasks]}
    from eval.results import jsonable
    return Report(results=results, comparison=jsonable(comparison), studies=list(studies))
