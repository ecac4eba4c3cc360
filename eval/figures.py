"""Shared pieces of the report's PNG plots (matplotlib's Agg canvas; no pyplot, no global state):
figure grids sized for a 1400 px page, PNG bytes, energy units, one colour per accelerator.

Sizes: figures are drawn at 100 dpi and shown at most 1200 px wide in the HTML report, so a font
of 10 pt (about 14 px) stays above 9 px on screen even when a 14-inch-wide figure is scaled down."""
from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Smallest font of any plot text, in points; at 100 dpi 1 pt = 1.39 px before the page scales the
# figure down (to at most 1200 / (100 * width_in) of its size).
FONT_PT = 10
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# The two accelerator names of version-2 reports and the studies (kept colours across reports).
COLORS = {"neuromorphic": PALETTE[0], "conventional": PALETTE[1]}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def accel_color(name: str, order: list[str]) -> str:
    """A stable colour per accelerator of a run (by its position in the run's list)."""
    if name in COLORS and len(order) <= 2:
        return COLORS[name]
    return PALETTE[order.index(name) % len(PALETTE)] if name in order else "#555555"


def accel_marker(name: str, order: list[str]) -> str:
    return MARKERS[order.index(name) % len(MARKERS)] if name in order else "o"


def grid(n: int, width: float = 4.2, height: float = 3.4, max_cols: int = 3):
    """A constrained-layout figure of n axes, at most max_cols per row."""
    cols = max(1, min(n, max_cols))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), dpi=100, layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def energy_scale(values_pj: list[float]) -> tuple[float, str]:
    top = max([abs(v) for v in values_pj] + [1e-30])
    for f, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if top >= f:
            return f, unit
    return 1.0, "pJ"


def fmt_pj(pj: float) -> str:
    f, unit = energy_scale([pj])
    return f"{pj / f:.3g} {unit}"
