"""JSON-native copies of measured values (a report stores nothing else)."""
from __future__ import annotations

import math


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
