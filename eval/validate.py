"""Validation of report.json against the versioned JSON Schema in eval/schema/."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "report.schema.json"


@lru_cache(maxsize=1)
def report_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_report(d: dict, source: str = "report") -> None:
    """Raise ValueError naming the first offending field when `d` does not match the schema."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(report_schema())
    errors = sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"{source} does not match the report schema {SCHEMA_PATH.name} at {where}: "
                         f"{e.message}{more}")
