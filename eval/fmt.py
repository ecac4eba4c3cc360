"""Numbers as the report and the console print them (human units, never raw pJ)."""
from __future__ import annotations


def fmt_energy(pj: float | None) -> str:
    if pj is None:
        return "—"
    for f, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    for f, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(s) >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_acc(a: float | None) -> str:
    return "—" if a is None else f"{100 * a:.2f}%"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3g}×"


def fmt_edp(x: float | None) -> str:
    return "—" if x is None else f"{x:.2e} pJ·s"
