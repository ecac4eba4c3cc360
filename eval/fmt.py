"""Numbers as the report and the console print them (human units, never raw pJ)."""
from __future__ import annotations


ENERGY_UNITS = ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ"))
TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
BIT_UNITS = ((1e9, "Gbit"), (1e6, "Mbit"), (1e3, "kbit"), (1.0, "bit"))


def _scaled(x: float, units) -> str:
    """x in the largest unit it reaches, 3 significant digits (999.97 nJ -> 1 µJ, not 1e+03 nJ)."""
    if x == 0:
        return f"0 {next(u for f, u in units if f == 1.0)}"
    for i, (f, unit) in enumerate(units):
        if abs(x) >= f or i == len(units) - 1:
            if i > 0 and abs(float(f"{x / f:.3g}")) >= 1000:  # rounds up into the next unit
                f, unit = units[i - 1]
            return f"{x / f:,.0f} {unit}" if abs(x / f) >= 1000 else f"{x / f:.3g} {unit}"
    raise AssertionError("unreachable")


def fmt_energy(pj: float | None) -> str:
    """Energy given in pJ, in pJ / nJ / µJ / mJ / J."""
    return "—" if pj is None else _scaled(float(pj), ENERGY_UNITS)


def fmt_time(s: float | None) -> str:
    """Time given in seconds, in s / ms / µs / ns."""
    return "—" if s is None else _scaled(float(s), TIME_UNITS)


def fmt_bits(b: float | None) -> str:
    """A size in bits, in bit / kbit / Mbit / Gbit (decimal prefixes)."""
    return "—" if b is None else _scaled(float(b), BIT_UNITS)


def fmt_quantity(key: str, value, unit: str | None = None) -> str:
    """A value for a console table, in human units chosen by its unit (or its key's suffix:
    `*_pj` energy, `*_s` time, `*_bits_total` size); other floats with 4 significant digits,
    large numbers with thousands separators.  Full precision stays in the JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    k = str(key).lower()
    if unit == "pJ" or k.endswith("_pj"):
        return fmt_energy(value)
    if unit == "s" or k.endswith("_s"):
        return fmt_time(value)
    if unit == "bits":
        return fmt_bits(value)
    if isinstance(value, int) or abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def fmt_acc(a: float | None) -> str:
    return "—" if a is None else f"{100 * a:.2f}%"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.3g}×" if abs(r) < 1000 else f"{r:,.0f}×"   # 1,700× rather than 1.7e+03×


def fmt_edp(x: float | None) -> str:
    return "—" if x is None else f"{x:.2e} pJ·s"


def fmt_vs(r: float | None) -> str:
    """A ratio baseline / accelerator in words: "2.4× less" (the accelerator needs less than the
    baseline), "172× more", or "same"."""
    if r is None:
        return "—"
    if r <= 0:
        return "—"
    if abs(r - 1) < 5e-4:
        return "same"
    x = r if r > 1 else 1 / r
    return (f"{x:.3g}×" if x < 1000 else f"{x:,.0f}×") + (" less" if r > 1 else " more")
