"""PNG plots of a report over the accelerators the run was given (eval.figures for the shared
pieces: grids, fonts, one colour per accelerator).

energy_absolute.png     energy per unit of every accelerator per task, log scale (absolute)
energy_breakdown.png    each accelerator's energy as shares of its own total, by named component
accuracy_vs_T.png       SNN accuracy at every time step, with QANN and FP32 levels and T_settle
energy_vs_accuracy.png  every measured configuration on every accelerator: energy (log) against accuracy
study_*.png             the plots of the studies added to the report (eval.plots_studies)
"""
from __future__ import annotations

from pathlib import Path

from eval.compare import Report
from eval.figures import FONT_PT, accel_color, accel_marker, fmt_pj, grid, png

PLOTS = ("energy_absolute", "energy_breakdown", "accuracy_vs_T", "energy_vs_accuracy")
SMALL = FONT_PT - 1  # legends and point labels: 9 pt, about 12 px on a 1400 px page


def _accels(report: Report) -> list[str]:
    return list(report.comparison.get("accelerators") or report.results.accelerators)


def energy_absolute(report: Report) -> bytes:
    """Energy per unit of each accelerator, one panel per task, on a log axis (values printed)."""
    import math
    tasks = report.comparison["tasks"]
    order = _accels(report)
    fig, axes = grid(len(tasks), width=4.4, height=3.4)
    for ax, t in zip(axes, tasks):
        names = [a for a in order if a in t["accelerators"]]
        vals = [t["accelerators"][a]["energy_per_unit_pj"] for a in names]
        x = list(range(len(names)))
        ax.bar(x, vals, color=[accel_color(a, order) for a in names], width=0.6)
        ax.set_yscale("log")
        lo, hi = min(v for v in vals if v > 0), max(vals)
        decades = max(1.0, math.log10(hi / lo))
        ax.set_ylim(lo / 10 ** (0.25 * decades), hi * 10 ** (0.25 * decades))  # room for the value labels
        for i, v in enumerate(vals):
            ax.text(i, v * 1.15, fmt_pj(v), ha="center", va="bottom", fontsize=SMALL)
        ax.set_xticks(x, names, fontsize=SMALL, rotation=20 if len(names) > 3 else 0,
                      ha="right" if len(names) > 3 else "center")
        ax.tick_params(axis="y", labelsize=SMALL)
        ax.set_ylabel(f"pJ per {t['unit']} (log)", fontsize=FONT_PT)
        ax.set_title(f"{t['task']} ({t['main']})", fontsize=FONT_PT)
    fig.suptitle("Energy per unit, absolute (log scale)", fontsize=FONT_PT + 1)
    return png(fig)


def energy_breakdown(report: Report) -> bytes:
    """Each accelerator's energy as shares of its own total (100% stacked): the totals differ by
    orders of magnitude (energy_absolute shows them), so absolute stacks would hide the smaller."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch
    tasks = report.comparison["tasks"]
    order = _accels(report)
    fig, axes = grid(len(tasks), width=4.4, height=3.6)
    names = sorted({k for t in tasks for a in t["accelerators"].values() for k in a["breakdown_per_unit_pj"]})
    palette = colormaps["tab20"]
    color = {n: palette(i % 20) for i, n in enumerate(names)}
    used = []
    for ax, t in zip(axes, tasks):
        accs = [a for a in order if a in t["accelerators"]]
        totals = [t["accelerators"][a]["energy_per_unit_pj"] for a in accs]
        x = list(range(len(accs)))
        bottoms = [0.0] * len(accs)
        for n in names:
            vals = [100 * t["accelerators"][a]["breakdown_per_unit_pj"].get(n, 0.0) / tot if tot else 0.0
                    for a, tot in zip(accs, totals)]
            if not any(v > 0 for v in vals):
                continue
            if n not in used:
                used.append(n)
            ax.bar(x, vals, bottom=bottoms, color=color[n], width=0.6)
            bottoms = [b + v for b, v in zip(bottoms, vals)]
        ax.set_xticks(x, accs, fontsize=SMALL, rotation=20 if len(accs) > 3 else 0,
                      ha="right" if len(accs) > 3 else "center")
        ax.tick_params(axis="y", labelsize=SMALL)
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"% of energy per {t['unit']}", fontsize=FONT_PT)
        ax.set_title(f"{t['task']} ({t['main']})", fontsize=FONT_PT)
    fig.legend(handles=[Patch(color=color[n], label=n) for n in used], loc="outside lower center",
               ncol=min(5, max(1, len(used))), fontsize=SMALL, frameon=False)
    fig.suptitle("Energy breakdown: share of each accelerator's own total", fontsize=FONT_PT + 1)
    return png(fig)


def accuracy_vs_T(report: Report) -> bytes:
    tasks = report.results.tasks
    fig, axes = grid(len(tasks), width=4.4, height=4.6)
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
        ax.set_xlabel("time step", fontsize=FONT_PT)
        ax.set_ylabel("accuracy" if t.kind != "embed" else "mean cosine to FP32", fontsize=FONT_PT)
        ax.tick_params(labelsize=SMALL)
        ax.set_ylim(-0.02, 1.02)
        n = v.snn['n_examples']
        ax.set_title(f"{t.task} (SNN on {n} example{'' if n == 1 else 's'})", fontsize=FONT_PT)
        # below the axes: the curves fill the panel, a legend inside would hide them
        ax.legend(fontsize=SMALL, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.suptitle("SNN accuracy versus time step", fontsize=FONT_PT + 1)
    return png(fig)


def energy_vs_accuracy(report: Report) -> bytes:
    """Every configuration on every accelerator: energy per unit (log) against the accuracy that
    accelerator is credited with (eval.compare's iso-accuracy rule)."""
    tasks = report.comparison["tasks"]
    order = _accels(report)
    fig, axes = grid(len(tasks), width=4.4, height=3.8)
    for ax, t in zip(axes, tasks):
        iso = t["iso_accuracy"]
        for accel in order:
            if accel not in t["accelerators"]:
                continue
            dense = not t["accelerators"][accel]["needs_trace"]
            pts = []
            for v in t["variants"]:
                if accel not in v["energy_per_unit_pj"]:
                    continue
                acc = v["qann_accuracy"] if (dense or v["exact"]) else v["snn_accuracy"]
                pts.append((v["energy_per_unit_pj"][accel], acc, v["label"]))
            fp32 = report.results.task(t["task"]).fp32_hw.get(accel)
            if fp32 is not None:
                pts.append((fp32.energy_pj / t["tokens_per_inference"],
                            report.results.task(t["task"]).fp32["accuracy"], "FP32"))
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=accel_marker(accel, order),
                       color=accel_color(accel, order), label=accel, s=30)
        ax.axhline(iso["threshold"], color="gray", ls=":", lw=0.8, label=f"FP32 − {iso['tolerance']:g}")
        ax.set_xscale("log")
        ax.set_xlabel(f"energy per {t['unit']} (pJ, log)", fontsize=FONT_PT)
        ax.set_ylabel("accuracy", fontsize=FONT_PT)
        ax.tick_params(labelsize=SMALL)
        ax.set_title(t["task"], fontsize=FONT_PT)
        ax.legend(fontsize=SMALL, loc="best", frameon=True, framealpha=0.85)
    fig.suptitle("Energy versus accuracy (every measured configuration; the table lists their bits and coding)",
                 fontsize=FONT_PT + 1)
    return png(fig)


def render_plots(report: Report) -> dict[str, bytes]:
    """{plot name: PNG bytes} for every plot in PLOTS and every plot of the report's studies."""
    from eval.plots_studies import study_plots
    return {"energy_absolute": energy_absolute(report), "energy_breakdown": energy_breakdown(report),
            "accuracy_vs_T": accuracy_vs_T(report), "energy_vs_accuracy": energy_vs_accuracy(report),
            **study_plots(report.studies)}


def write_plots(report: Report, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {}
    for name, data in render_plots(report).items():
        p = out / f"{name}.png"
        p.write_bytes(data)
        paths[name] = p
    return paths
