"""The accelerators a run was given, as eval sees them: names in the order asked for, and for each
whether it is driven by the SNN's activity (needs the trace) or runs the QANN densely.

eval never names an accelerator kind: the registry in `neuro_hw` (contract C2) says what each name
is.  An accelerator that needs no trace runs the QANN (or FP32 model) densely; those are the
*baselines* every ratio is taken against.
"""
from __future__ import annotations

from collections.abc import Iterable

import neuro_hw


def registered() -> list[str]:
    """Every registered accelerator name (the default of `--hw`)."""
    return list(neuro_hw.accelerators())


def needs_trace(hw) -> bool:
    """Does accelerator `hw` (name, path or config) need the SNN's ActivityTrace?"""
    return bool(neuro_hw.needs_trace(hw))


def parse_hw(spec: str | Iterable | None) -> list:
    """Accelerators of a run from "a,b,c", a list (names, paths or config objects) or None (every
    registered one), each checked to load; duplicates and an empty list are errors naming the fix."""
    if spec is None:
        return registered()
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if isinstance(spec, str) and any(not s for s in items):
        raise ValueError(f"--hw {spec!r} has an empty name; give names separated by commas, "
                         f"e.g. --hw {','.join(registered()[:2])}")
    if not items:
        raise ValueError("no accelerator given; registered: " + ", ".join(registered()))
    names = [label(h) for h in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"accelerator(s) {', '.join(dup)} given twice in --hw")
    for h in items:
        neuro_hw.load_hw_config(h)  # unknown names fail here, listing the registered ones
    return items


def label(hw) -> str:
    """The name a run files an accelerator under: the registered name or alias as given, else the
    config's own name (neuro_hw's rule, so it equals HwReport.accelerator)."""
    from neuro_hw.registry import accelerator_name
    return accelerator_name(hw)


def hw_echo(hw) -> dict:
    """What the report records of an accelerator: what was asked for, its config, kind and whether
    it ran on the SNN's trace."""
    from eval.results import jsonable
    cfg = neuro_hw.load_hw_config(hw)
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
    return {"requested": hw if isinstance(hw, str) else label(hw), "config": jsonable(d),
            "kind": neuro_hw.kind_of(cfg), "needs_trace": needs_trace(hw)}
