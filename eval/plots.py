"""PNG plots of a report (matplotlib's Agg canvas; no pyplot, no display, no global state).

energy_breakdown.png    stacked energy per unit by named component, both accelerators per task
accuracy_vs_T.png       SNN accuracy at every time step, with QANN and FP32 levels and T_settle
energy_vs_accuracy.png  every measured configuration: energy per unit (log) against accuracy
study_*.png             the plots of the studies added to the report (eval.plots_studies)
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.compare import Report
from eval.results import ACCELERATORS

PLOTS = ("energy_breakdown", "accuracy_vs_T", "energy_vs_accuracy")
ACCEL_SHORT = {"neuromorphic": "neuro", "conventional": "conv"}
MARKERS = {"neuromorphic": "o", "conventional": "s"}
COLORS = {"neuromorphic": "#1f77b4", "conventional": "#d62728"}


def _grid(n: int, width: float = 4.2, height: float = 3.4, max_cols: int = 3):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), dpi=100, layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _scale(values_pj: list[float]) -> tuple[float, str]:
    top = max([abs(v) for v in values_pj] + [1e-30])
    for f, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if top >= f:
            return f, unit
    return 1.0, "pJ"


def energy_breakdown(report: Report) -> bytes:
    """Each accelerator's energy as shares of its own total (100% stacked), the total above the bar:
    the two totals often differ by orders of magnitude, so absolute stacks would hide the smaller."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch
    tasks = report.comparison["tasks"]
    fig, axes = _grid(len(tasks))
    names = sorted({k for t in tasks for a in ACCELERATORS for k in t["accelerators"][a]["breakdown_per_unit_pj"]})
    palette = colormaps["tab20"]
    color = {n: palette(i % 20) for i, n in enumerate(names)}
    used = []
    for ax, t in zip(axes, tasks):
        totals = [t["accelerators"][a]["energy_per_unit_pj"] for a in ACCELERATORS]
        x = list(range(len(ACCELERATORS)))
        bottoms = [0.0] * len(ACCELERATORS)
        for n in names:
            vals = [100 * t["accelerators"][a]["breakdown_per_unit_pj"].get(n, 0.0) / tot if tot else 0.0
                    for a, tot in zip(ACCELERATORS, totals)]
            if not any(v > 0 for v in vals):
                continue
            if n not in used:
                used.append(n)
            ax.bar(x, vals, bottom=bottoms, color=color[n], width=0.6)
            bottoms = [b + v for b, v in zip(bottoms, vals)]
        for i, tot in enumerate(totals):
            ax.text(i, 101, f"{_fmt_pj(tot)}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [ACCEL_SHORT[a] for a in ACCELERATORS])
        ax.set_ylim(0, 112)
        ax.set_ylabel(f"% of energy per {t['unit']}")
        ax.set_title(f"{t['task']} ({t['main']})", fontsize=10)
    fig.legend(handles=[Patch(color=color[n], label=n) for n in used], loc="outside lower center",
               ncol=min(6, max(1, len(used))), fontsize=7, frameon=False)
    fig.suptitle("Energy breakdown: share of each accelerator's total (total per unit above the bar)",
                 fontsize=11)
    return _png(fig)


def _fmt_pj(pj: float) -> str:
    f, unit = _scale([pj])
    return f"{pj / f:.3g} {unit}"


def accuracy_vs_T(report: Report) -> bytes:
    tasks = report.results.tasks
    fig, axes = _grid(len(tasks))
    for ax, t in zip(axes, tasks):
        for v in t.variants:
            curve = v.snn["acc_per_step"]
            ax.plot(range(1, len(curve) + 1), curve, label=f"SNN {v.label}", lw=1.3)
        v = t.variant()
        ax.axhline(v.snn["qann_accuracy_subset"], color="k", ls="--", lw=0.8, label=f"QANN {v.label} (subset)")
        ax.axhline(t.fp32["accuracy"], color="gray", ls=":", lw=0.8, label="FP32 (held-out)")
        if v.snn["t_settle"]:
            ax.axvline(v.snn["t_settle"], color="green", lw=0.6, alpha=0.6, label=f"T_settle {v.snn['t_settle']}")
        ax.set_xscale("log")
        ax.set_xlabel("time step")
        ax.set_ylabel("accuracy" if t.kind != "embed" else "mean cosine to FP32")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{t.task} (SNN on {v.snn['n_examples']} examples)", fontsize=10)
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    fig.suptitle("SNN accuracy versus time step", fontsize=11)
    return _png(fig)


def energy_vs_accuracy(report: Report) -> bytes:
    tasks = report.comparison["tasks"]
    fig, axes = _grid(len(tasks))
    for ax, t in zip(axes, tasks):
        iso = t["iso_accuracy"]
        for accel in ACCELERATORS:
            pts = []
            for v in t["variants"]:
                acc = v["qann_accuracy"] if (accel == "conventional" or v["exact"]) else v["snn_accuracy"]
                pts.append((v["energy_per_unit_pj"][accel], acc, v["label"]))
            if accel == "conventional":
                res = report.results.task(t["task"])
                if "conventional" in res.fp32_hw:
                    pts.append((res.fp32_hw["conventional"].energy_pj / t["tokens_per_inference"],
                                res.fp32["accuracy"], "FP32"))
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[accel], color=COLORS[accel],
                       label=accel, s=28)
            for e, a, lab in pts:
                ax.annotate(lab, (e, a), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(iso["threshold"], color="gray", ls=":", lw=0.8, label=f"FP32 - {iso['tolerance']:g}")
        ax.set_xscale("log")
        ax.set_xlabel(f"energy per {t['unit']} (pJ)")
        ax.set_ylabel("accuracy")
        ax.set_title(t["task"], fontsize=10)
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    fig.suptitle("Energy versus accuracy (every measured configuration)", fontsize=11)
    return _png(fig)


def render_plots(report: Report) -> dict[str, bytes]:
    """{plot name: PNG bytes} for every plot in PLOTS and every plot of the report's studies."""
    from eval.plots_studies import study_plots
    return {"energy_breakdown": energy_breakdown(report), "accuracy_vs_T": accuracy_vs_T(report),
            "energy_vs_accuracy": energy_vs_accuracy(report), **study_plots(report.studies)}


def write_plots(report: Report, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {}
    for name, png in render_plots(report).items():
        p = out / f"{name}.png"
        p.write_bytes(png)
        paths[name] = p
    return paths
