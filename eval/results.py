"""What the main job measured: plain dataclasses that round-trip through JSON.

`Results` holds, per task, the quality of every model form (FP32, QANN, SNN) and the `HwReport`s of
both accelerators for every bit-width variant.  Nothing here is derived: ratios, the iso-accuracy
view and the tables live in `eval.compare`, computed from these numbers every time a report is
rendered, so a saved report.json can be re-rendered without re-running anything.

Every value is a JSON-native type (dict, list, str, int, float, bool, None) so that
``Results.from_dict(json.loads(json.dumps(r.to_dict()))) == r`` holds exactly.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from neuro_hw.report import HwReport

REPORT_SCHEMA = "snmfm.report/2"
# Versions this reader accepts: version 1 is version 2 without the `studies` part (read as empty).
READABLE_SCHEMAS = ("snmfm.report/1", REPORT_SCHEMA)
ACCELERATORS = ("neuromorphic", "conventional")


def jsonable(x):
    """A JSON-native copy of x: tuples -> lists, numpy/torch scalars -> Python numbers,
    non-finite floats -> None (JSON has no NaN; None reads as "not measured")."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x) if math.isfinite(x) else None
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:  # numpy / torch scalar
        return jsonable(x.item())
    if hasattr(x, "tolist"):
        return jsonable(x.tolist())
    if hasattr(x, "__fspath__"):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in a report: {x!r}")


def normalise_hw(report: HwReport) -> HwReport:
    """The same HwReport with JSON-native fields (so that equality survives a JSON round trip)."""
    return HwReport.from_dict(jsonable(report.to_dict()))


@dataclass
class VariantResult:
    """One bit-width configuration of one task: QANN and SNN quality and both accelerators.

    qann: {"accuracy", "n", "n_examples", "split", ...task metrics} on the held-out set.
    snn: {"accuracy", "n", "n_examples", "steps", "t_settle", "t_settle_mean", "t_settle_max",
          "T", "settled", "acc_per_step" (list, one value per time step), "qann_accuracy_subset",
          "agreement", "max_abs_err", "max_rel_err", "spikes_per_inference"} on the SNN subset.
    workload: {"name", "n_ops", "macs", "params", "weight_bits", "example_batch"}.
    hw: accelerator name -> HwReport (per inference, i.e. per example)."""

    label: str
    w_bits: int
    a_bits: int
    qann: dict
    snn: dict
    workload: dict
    hw: dict[str, HwReport]
    wall_s: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["hw"] = {k: v.to_dict() for k, v in self.hw.items()}
        return jsonable(d)

    @classmethod
    def from_dict(cls, d: dict) -> VariantResult:
        d = dict(d)
        d["hw"] = {k: HwReport.from_dict(v) for k, v in d["hw"].items()}
        return cls(**d)


@dataclass
class TaskResult:
    """One task: its model, checkpoint, FP32 quality, normalisation and variants.

    normalisation: {"unit": "inference" | "token", "tokens_per_inference": int, "text": str}: energy
    per unit = HwReport.energy_pj / tokens_per_inference.
    fp32_hw: {"conventional": HwReport} of the FP32 model (32-bit weights and activations) on the
    conventional accelerator, a reference point for the iso-accuracy view (absent if not modelled)."""

    task: str
    kind: str
    model_name: str
    size: str
    description: str
    checkpoint: dict
    fp32: dict
    normalisation: dict
    variants: list[VariantResult]
    main: str
    fp32_hw: dict[str, HwReport] = field(default_factory=dict)
    wall_s: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def variant(self, label: str | None = None) -> VariantResult:
        label = label or self.main
        for v in self.variants:
            if v.label == label:
                return v
        raise KeyError(f"task {self.task!r} has no variant {label!r}; "
                       f"variants: {', '.join(v.label for v in self.variants)}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["variants"] = [v.to_dict() for v in self.variants]
        d["fp32_hw"] = {k: v.to_dict() for k, v in self.fp32_hw.items()}
        return jsonable(d)

    @classmethod
    def from_dict(cls, d: dict) -> TaskResult:
        d = dict(d)
        d["variants"] = [VariantResult.from_dict(v) for v in d["variants"]]
        d["fp32_hw"] = {k: HwReport.from_dict(v) for k, v in d.get("fp32_hw", {}).items()}
        return cls(**d)


@dataclass
class Results:
    """Everything one run of the main job measured, with its provenance."""

    tasks: list[TaskResult]
    options: dict
    provenance: dict
    wall_s: float = 0.0

    def task(self, name: str) -> TaskResult:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(f"no task {name!r} in these results; tasks: {', '.join(t.task for t in self.tasks)}")

    def to_dict(self) -> dict:
        return jsonable({"tasks": [t.to_dict() for t in self.tasks], "options": self.options,
                         "provenance": self.provenance, "wall_s": self.wall_s})

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        return cls(tasks=[TaskResult.from_dict(t) for t in d["tasks"]], options=d["options"],
                   provenance=d["provenance"], wall_s=d.get("wall_s", 0.0))


def read_report_json(path) -> dict:
    """The parsed report.json at `path` (a file, or a report folder holding one), schema-checked,
    as the current version (a version 1 report gets an empty `studies` part).

    Errors: FileNotFoundError naming the file; ValueError naming the found and expected schema
    versions, or what is malformed."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.exists():
        raise FileNotFoundError(f"results file {p} not found (expected a report.json written by "
                                "`snmfm run` / eval.write_report, or the folder holding it)")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"results file {p} is not valid JSON: {e}") from e
    found = d.get("schema") if isinstance(d, dict) else None
    if found not in READABLE_SCHEMAS:
        raise ValueError(f"results file {p} has schema version {found!r}, expected {REPORT_SCHEMA!r} "
                         f"(readable: {', '.join(repr(s) for s in READABLE_SCHEMAS)}); re-run the main job with "
                         "this version of snmfm to regenerate it")
    if found != REPORT_SCHEMA:  # version 1: no studies yet
        from eval.studies import empty_studies
        d = {**d, "schema": REPORT_SCHEMA, "studies": empty_studies()}
    from eval.validate import validate_report
    validate_report(d, source=str(p))
    return d


def load_results(path) -> Results:
    """The `Results` saved in a report.json (or a report folder)."""
    return Results.from_dict(read_report_json(path)["results"])
