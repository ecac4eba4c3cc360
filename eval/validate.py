"""Validation of report.json against the versioned JSON Schemas in eval/schema/ (the current
version in report.schema.json; the version 2 schema kept to check older reports before reading)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_PATH = SCHEMA_DIR / "report.schema.json"
SCHEMA_FILES = {"snmfm.report/3": SCHEMA_PATH, "snmfm.report/2": SCHEMA_DIR / "report.v2.schema.json"}


@lru_cache(maxsize=4)
def report_schema(version: str = "snmfm.report/3") -> dict:
    """The JSON Schema of report version `version` (default: the current one)."""
    if version not in SCHEMA_FILES:
        raise ValueError(f"no schema for report version {version!r}; known: {', '.join(SCHEMA_FILES)}")
    return json.loads(SCHEMA_FILES[version].read_text())


def validate_report(d: dict, source: str = "report") -> None:
    """Raise ValueError naming the first offending field when `d` does not match the schema of the
    version it declares (current or version 2)."""
    import jsonschema
    version = d.get("schema") if isinstance(d, dict) else None
    path = SCHEMA_FILES.get(version, SCHEMA_PATH)
    validator = jsonschema.Draft202012Validator(report_schema(version if version in SCHEMA_FILES
                                                              else "snmfm.report/3"))
    errors = sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"{source} does not match the report schema {path.name} at {where}: "
                         f"{e.message}{more}")
