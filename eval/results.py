"""What the main job measured: plain dataclasses that round-trip through JSON.

`Results` holds, per task, the quality of every model form (FP32, QANN, SNN) and the `HwReport` of
every accelerator the run was given, for every variant (bit widths x coding).  Nothing here is derived: ratios, the iso-accuracy
view and the tables live in `eval.compare`, computed from these numbers every time a report is
rendered, so a saved report.json can be re-rendered without re-running anything.

Every value is a JSON-native type (dict, list, str, int, float, bool, None) so that
``Results.from_dict(json.loads(json.dumps(r.to_dict()))) == r`` holds exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from eval.jsonio import jsonable
from neuro_hw.report import HwReport

REPORT_SCHEMA = "snmfm.report/3"
# Versions this reader accepts: version 1 is version 2 without the `studies` part (read as empty);
# version 2 had two fixed accelerators, "neuromorphic" (driven by the SNN's trace) and
# "conventional" (dense), and only the binary coding (`upgrade_results` reads it as version 3).
READABLE_SCHEMAS = ("snmfm.report/1", "snmfm.report/2", REPORT_SCHEMA)
V2_ACCELERATORS = {"neuromorphic": True, "conventional": False}  # name -> needs the SNN's trace


def normalise_hw(report: HwReport) -> HwReport:
    """The same HwReport with JSON-native fields (so that equality survives a JSON round trip)."""
    return HwReport.from_dict(jsonable(report.to_dict()))


@dataclass
class VariantResult:
    """One configuration (bit widths x coding) of one task: QANN and SNN quality and every
    accelerator of the run.

    qann: {"accuracy", "n", "n_examples", "split", ...task metrics} on the held-out set.
    snn: {"accuracy", "n", "n_examples", "steps", "t_settle", "t_settle_mean", "t_settle_max",
          "T", "settled", "acc_per_step" (list, one value per time step), "qann_accuracy_subset",
          "agreement", "max_abs_err", "max_rel_err", "spikes_per_inference"} on the SNN subset.
    workload: {"name", "n_ops", "macs", "params", "weight_bits", "example_batch"}.
    hw: accelerator name -> HwReport (per inference, i.e. per example), in the run's order.
    coding: the coding the SNN was converted with (converters.codings)."""

    label: str
    w_bits: int
    a_bits: int
    qann: dict
    snn: dict
    workload: dict
    hw: dict[str, HwReport]
    wall_s: dict = field(default_factory=dict)
    coding: str = "binary"

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
    fp32_hw: {accelerator: HwReport} of the FP32 model (32-bit weights and activations) on each dense
    accelerator (one that needs no trace), a reference point for the iso-accuracy view (absent if
    not modelled)."""

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

    @property
    def accelerators(self) -> list[str]:
        """The accelerators of this run, in the order it was given them."""
        return list(self.options.get("accelerators") or self.options["hardware"])

    def needs_trace(self, accelerator: str) -> bool:
        """Was `accelerator` driven by the SNN's activity (True) or did it run the QANN densely?"""
        return bool(self.options["hardware"][accelerator]["needs_trace"])

    @property
    def baselines(self) -> list[str]:
        """The dense accelerators (no trace): every ratio is taken against each of them."""
        return [a for a in self.accelerators if not self.needs_trace(a)]

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


def upgrade_results(d: dict, schema: str) -> dict:
    """The `results` part of a report of version `schema` as version 3 (a new dict).  Version 1/2:
    the two accelerators "neuromorphic" (SNN-driven) and "conventional" (dense), binary coding."""
    if schema == REPORT_SCHEMA:
        return d
    d = json.loads(json.dumps(d))
    opts = d["options"]
    for name, echo in opts["hardware"].items():
        echo.setdefault("needs_trace", V2_ACCELERATORS.get(name, False))
        echo.setdefault("kind", "")
    opts.setdefault("accelerators", [a for a in V2_ACCELERATORS if a in opts["hardware"]])
    opts.setdefault("codings", ["binary"])
    opts.setdefault("memory_policy", None)
    for t in d["tasks"]:
        for v in t["variants"]:
            v.setdefault("coding", "binary")
    return d


def read_report_json(path) -> dict:
    """The parsed report.json at `path` (a file, or a report folder holding one), checked against
    the schema of its own version and read as the current version: {"schema", "results" (version
    3), "tolerance" (of its comparison), "studies"}.  The comparison itself is not read: it is
    derived from the results every time (eval.compare).

    Errors: FileNotFoundError naming the file; ValueError naming the found and expected schema
    versions, or what is malformed."""
    from eval.validate import validate_report
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
    if found == "snmfm.report/1":  # version 2 without studies
        from eval.studies import empty_studies
        found = "snmfm.report/2"
        d = {**d, "schema": found, "studies": empty_studies()}
    validate_report(d, source=str(p))
    return {"schema": REPORT_SCHEMA, "read_from": found, "results": upgrade_results(d["results"], found),
            "tolerance": d["comparison"]["tolerance"], "studies": d["studies"]}


def load_results(path) -> Results:
    """The `Results` saved in a report.json (or a report folder), any readable version."""
    return Results.from_dict(read_report_json(path)["results"])
