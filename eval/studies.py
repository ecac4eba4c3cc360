"""Study sections of a report: speculative decoding, cascades, co-optimisation and compression.

Each study has its own command, whose JSON output is stored in report.json *unchanged* as one
entry of the versioned `studies` part, together with where it came from and the settings it ran
with, so that a saved report re-renders every study number from the study's own output:

    "studies": {"schema": "snmfm.studies/1",
                "entries": [{"kind": "cascade", "key": "medical-wdbc", "source": {...},
                             "settings": {...}, "data": <the producer's dict>}]}

kind    one of STUDIES, recognised from the data's shape (`detect_kind`);
key     what the entry covers (a task, or the tasks of a multi-task study): merging an entry of
        the same kind and key replaces the older one;
source  {"origin": "run" | "file", "file", "sha256", "added_utc", "invocation"};
settings the settings the study ran with, read from its own output (`study_settings`), plus the
        arguments `snmfm run --studies` passed where it ran the study.

Producers (and what `snmfm report --study FILE` accepts):
  speculative  `snmfm speculate --json FILE` (eval.benchmarks.bench_speculative)
  cascade      `snmfm cascade TASK --json > FILE`, its --out DIR/cascade-TASK.json, or the list in
               `snmfm bench cascade --out DIR`'s results.json (eval.cascade_study.run_cascade)
  cooptimize   `snmfm cooptimize TASK --json > FILE`, --out DIR/cooptimize-TASK.json, or the list
               in `snmfm bench cooptimize --out DIR`'s results.json (eval.cooptimize.run_cooptimize)
  compression  `snmfm bench compress --out DIR`'s DIR/results.json, or its --json FILE
               (eval.benchmarks.bench_compress)
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from eval.provenance import utc_now
from eval.jsonio import jsonable

STUDIES_SCHEMA = "snmfm.studies/1"
STUDIES = ("speculative", "cascade", "cooptimize", "compression")
# Every kind an entry may have: the studies above (which `snmfm run --studies` can run) and the
# break-even study, which `snmfm run` adds as its own section (and `snmfm breakeven --out` writes).
KINDS = ("breakeven",) + STUDIES
PRODUCERS = {
    "speculative": "`snmfm speculate --json FILE`",
    "cascade": "`snmfm cascade TASK --json > FILE` (or `--out DIR`: cascade-TASK.json; "
               "`snmfm bench cascade --out DIR`: results.json)",
    "cooptimize": "`snmfm cooptimize TASK --json > FILE` (or `--out DIR`: cooptimize-TASK.json; "
                  "`snmfm bench cooptimize --out DIR`: results.json)",
    "compression": "`snmfm bench compress --out DIR`: DIR/results.json (or its `--json FILE`)",
    "breakeven": "`snmfm breakeven TASKS --out DIR`: DIR/breakeven.json (or its `--json` output)",
}
# The keys that identify each producer's output (the renderers read more; the schema checks them).
SIGNATURES = {
    "speculative": ("args", "exactness", "speed", "energy"),
    "cascade": ("task", "members", "scenarios", "curves"),
    "cooptimize": ("task", "configs", "points", "fronts"),
    "compression": ("rows",),
    "breakeven": ("breakeven", "settings", "tasks"),
}


def empty_studies() -> dict:
    return {"schema": STUDIES_SCHEMA, "entries": []}


def parse_study_names(spec) -> list[str]:
    """Study names from "a,b", "all", "" / None (none) or a list; unknown names -> ValueError
    naming the name and the allowed ones."""
    if spec is None:
        return []
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    if "all" in items:
        if len(items) > 1:
            raise ValueError(f"studies: 'all' cannot be combined with other names (got {', '.join(items)})")
        return list(STUDIES)
    out = []
    for s in items:
        if s not in STUDIES:
            raise ValueError(f"unknown study {s!r}; studies: {', '.join(STUDIES)} (or all)")
        if s not in out:
            out.append(s)
    return out


def detect_kind(d) -> str | None:
    """The study kind whose output `d` is (a dict), or None."""
    if not isinstance(d, dict):
        return None
    for kind, keys in SIGNATURES.items():
        if all(k in d for k in keys):
            return kind
    return None


def study_key(kind: str, data: dict) -> str:
    if kind in ("cascade", "cooptimize"):
        return str(data["task"])
    if kind == "speculative":
        return ",".join(data["args"].get("tasks") or [])
    if kind == "breakeven":
        return ",".join(data["tasks"])
    tasks = list(dict.fromkeys(r["task"] for r in data["rows"]))
    return ",".join(tasks) + ("+prune" if data.get("prune") else "")


def study_settings(kind: str, data: dict) -> dict:
    """The settings a study ran with, as its own output records them."""
    if kind == "speculative":
        return {k: v for k, v in data["args"].items() if k != "json"}
    if kind == "cascade":
        c = data["calibration"]
        snn = sorted({m.get("snn_examples") for m in data["members"] if m.get("snn_examples") is not None})
        return {"task": data["task"], "sizes": data["sizes"], "bits": data["bits"],
                "snn_examples": snn[0] if len(snn) == 1 else snn, "method": c["method"],
                "tolerance": c["tolerance"], "certify_tolerance": c.get("certify_tolerance"),
                "delta": c.get("delta"), "n_calib": c["n_calib"], "n_test": c["n_test"],
                "scenarios": list(data["scenarios"])}
    if kind == "breakeven":
        return {"tasks": list(data["tasks"]), **data["settings"]}
    if kind == "cooptimize":
        return {"task": data["task"], "configs": [c["label"] for c in data["configs"]], "bits": data["bits"],
                "T_values": data.get("T_values"), "snn_examples": data.get("snn_examples"),
                "eval_limit": data.get("eval_limit"), "steps": data.get("steps")}
    out = {"tasks": list(dict.fromkeys(r["task"] for r in data["rows"])),
           "targets": list(dict.fromkeys(r["target"] for r in data["rows"]))}
    if isinstance(data.get("args"), dict):
        out.update(data["args"])
    p = data.get("prune")
    if p:
        out["prune"] = {k: p[k] for k in ("heads", "mlp_channels", "recovery_steps", "recovery_lr") if k in p}
    return out


def validate_study_data(kind: str, data, source: str) -> None:
    """Raise ValueError naming the first offending field when `data` is not a `kind` study output."""
    import jsonschema

    from eval.validate import report_schema
    schema = report_schema()
    validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/study_{kind}"})
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"{source} is not a valid {kind} study output at {where}: {e.message} "
                         f"(expected the output of {PRODUCERS[kind]})")


def make_entry(kind: str, data: dict, source: dict, settings: dict | None = None) -> dict:
    """One validated studies entry from a producer's output."""
    if kind not in KINDS:
        raise ValueError(f"unknown study {kind!r}; studies: {', '.join(KINDS)}")
    data = jsonable(data)
    validate_study_data(kind, data, source.get("file") or f"the {kind} study")
    return {"kind": kind, "key": study_key(kind, data), "source": jsonable(source),
            "settings": jsonable({**study_settings(kind, data), **(settings or {})}), "data": data}


def load_study_file(path) -> list[dict]:
    """The studies entries in a study JSON file (one study's output, or a list of them).

    Errors: FileNotFoundError naming the file; ValueError when it is not JSON, not a study output
    (naming the kinds and their producers), or malformed (naming the field)."""
    p = Path(path)
    if p.is_dir():
        raise FileNotFoundError(f"study file {p} is a folder, not a file; name the JSON file in it")
    if not p.is_file():
        raise FileNotFoundError(f"study file {p} not found")
    raw = p.read_bytes()
    try:
        d = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"study file {p} is not valid JSON: {e}") from e
    items = d if isinstance(d, list) else [d]
    if not items:
        raise ValueError(f"study file {p} holds an empty list: no study to add")
    source = {"origin": "file", "file": str(p), "sha256": hashlib.sha256(raw).hexdigest(),
              "added_utc": utc_now(), "invocation": None}
    out = []
    for i, item in enumerate(items):
        kind = detect_kind(item)
        if kind is None:
            what = "a report.json (pass it as RESULTS, not --study)" if isinstance(item, dict) and "schema" in item \
                and str(item.get("schema", "")).startswith("snmfm.report/") else (
                f"keys {', '.join(sorted(item)[:8])}" if isinstance(item, dict) else type(item).__name__)
            where = f"item {i} of " if isinstance(d, list) else ""
            raise ValueError(f"{where}study file {p} is not the output of a study ({what}); expected one of: "
                             + "; ".join(f"{k}: {v}" for k, v in PRODUCERS.items()))
        out.append(make_entry(kind, item, {**source, "file": str(p) if len(items) == 1 else f"{p}[{i}]"}))
    return out


def merge_entries(old: list[dict], new: list[dict]) -> list[dict]:
    """`old` with `new` added; an entry of the same kind and key replaces the older one.  Ordered
    by kind (KINDS order), then by when first added."""
    merged = {(e["kind"], e["key"]): e for e in old}
    for e in new:
        merged[(e["kind"], e["key"])] = e
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(merged.values(), key=lambda e: order[e["kind"]])


def plot_name(entry: dict, what: str = "") -> str:
    """A file-name-safe plot name of an entry (report folder: NAME.png)."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "_", entry["key"]).strip("_") or "all"
    return f"study_{entry['kind']}_{key}" + (f"_{what}" if what else "")
