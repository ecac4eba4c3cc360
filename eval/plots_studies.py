"""PNG plots of the study sections of a report (matplotlib's Agg canvas, as eval.plots).

Per entry of the report's `studies` (eval.studies), drawn only from the study's own output:
speculative   energy per generated token of every draft/target pairing, per target accelerator
              (and, when the study swept it, energy per token against k);
cascade       accuracy against energy per query on each scenario's accelerators: every self-test's
              threshold path over the full ladder, the members alone and the chosen operating point;
cooptimize    accuracy against energy per inference on both accelerators: every configuration, the
              Pareto front, the default configuration and the iso-accuracy point;
compression   accuracy against cost per target (simulated energy on each accelerator, weight bits
              for size): uniform and mixed-precision points and their Pareto front, one PNG per task.
"""
from __future__ import annotations

from collections.abc import Callable

from eval.figures import accel_color
from eval.figures import fmt_pj as _fmt_pj
from eval.figures import grid as _grid
from eval.figures import png as _png
from eval.studies import plot_name

ACCEL_LABEL = {"conventional": "conv", "neuromorphic": "neuro", None: "—"}
ZOOM_PT = 0.2  # compression plots show the points within 20 points of FP32 accuracy


def front_indices(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, accuracy) points no other point beats (cheaper-or-equal and at least as
    accurate, one strictly), cheapest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    out, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            out.append(i)
            best = points[i][1]
    return out


def _logx(ax) -> None:
    """Log x axis with legible labels: minor ticks labelled (2, 3, 4, 6) only when the axis holds
    no decade tick, otherwise decades only."""
    from matplotlib.ticker import LogFormatterSciNotation
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(0.5, 0.2)))
    ax.tick_params(axis="x", which="minor", labelsize=6)


def _step_front(ax, pts: list[tuple[float, float]], scale: float = 1.0, **kw) -> None:
    idx = front_indices(pts)
    ax.step([pts[i][0] for i in idx], [scale * pts[i][1] for i in idx], where="post", **kw)


# ---- speculative decoding ------------------------------------------------------------------------
def speculative_winners(data: dict) -> dict:
    """{target chip: the energy row with the least energy per token on it} (plain decoding included)."""
    out = {}
    for r in data["energy"]:
        c = r["target_chip"]
        if c not in out or r["energy_nj_per_token"] < out[c]["energy_nj_per_token"]:
            out[c] = r
    return out


def speculative_energy(entry: dict) -> bytes:
    from matplotlib.patches import Patch
    data = entry["data"]
    chips = list(dict.fromkeys(r["target_chip"] for r in data["energy"]))
    draft_chips = list(dict.fromkeys(r["draft_chip"] for r in data["energy"] if r["draft_chip"] is not None))
    win = speculative_winners(data)
    fig, axes = _grid(len(chips), width=5.6, height=3.6, max_cols=2)
    for ax, chip in zip(axes, chips):
        rows = [r for r in data["energy"] if r["target_chip"] == chip]
        labels = [r["draft"] if r["draft_chip"] is None else
                  f"{r['draft']} draft on {ACCEL_LABEL.get(r['draft_chip'], r['draft_chip'])}"
                  for r in rows]
        vals = [1e3 * r["energy_nj_per_token"] for r in rows]
        colors = ["#888888" if r["draft_chip"] is None else accel_color(r["draft_chip"], draft_chips) for r in rows]
        y = list(range(len(rows)))[::-1]
        bars = ax.barh(y, vals, color=colors, height=0.65)
        for b, r, v in zip(bars, rows, vals):
            if r is win[chip]:
                b.set_edgecolor("k")
                b.set_linewidth(1.6)
            ax.text(v, b.get_y() + b.get_height() / 2, " " + _fmt_pj(v) + (" ★" if r is win[chip] else ""),
                    va="center", fontsize=7)
        ax.set_yticks(y, labels, fontsize=7)
        _logx(ax)
        ax.set_xlim(min(vals) / 1.5, max(vals) * 5)  # room for the value labels
        ax.set_xlabel("energy per generated token (pJ, log)")
        ax.set_title(f"target on the {chip} accelerator", fontsize=9)
    fig.legend(handles=[Patch(color="#888888", label="plain decoding of the target"),
                        *[Patch(color=accel_color(c, draft_chips), label=f"draft on {c}") for c in draft_chips]],
               loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"Speculative decoding (k = {data['args']['k']}): energy per generated token; "
                 "★ = least on that target accelerator", fontsize=10)
    return _png(fig)


def speculative_k(entry: dict) -> bytes:
    data = entry["data"]
    fig, axes = _grid(1, width=5.4, height=3.4)
    ax = axes[0]
    for kind in dict.fromkeys(r["draft"] for r in data["k_sweep"]):
        rows = sorted((r for r in data["k_sweep"] if r["draft"] == kind), key=lambda r: r["k"])
        ax.plot([r["k"] for r in rows], [1e3 * r["energy_nj_per_token"] for r in rows], "o-", ms=3, label=kind)
    plain = data["k_sweep"][0]["plain_nj_per_token"]
    ax.axhline(1e3 * plain, color="gray", ls="--", lw=0.9, label="plain decoding")
    ax.set_xlabel("draft tokens per round (k)")
    ax.set_ylabel("energy per generated token (pJ)")
    ax.set_title("Energy per token against k (QANN members, conventional accelerator)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return _png(fig)


# ---- cascades ----------------------------------------------------------------------------------
def member_placement(data: dict, scenario: str, member: str) -> str:
    """Where a member runs in a scenario: as the study recorded it (`placements`); outputs from
    before it did: the scenario's accelerator, and in 'mixed' the reference where the scenario's
    reference sits and the cheaper members on the neuromorphic chip."""
    d = data["scenarios"][scenario]
    if member in d.get("placements", {}):
        return d["placements"][member]
    ref = d["reference"]
    if scenario != "mixed":
        return scenario
    return ref["placement"] if member == ref["member"] else "neuromorphic"


def cascade_curves(entry: dict) -> bytes:
    data = entry["data"]
    scs = list(data["scenarios"])
    fig, axes = _grid(len(scs), width=4.6, height=3.8)
    targets = data.get("targets") or {}
    for ax, sc in zip(axes, scs):
        d = data["scenarios"][sc]
        for test, pts in data["curves"].get(sc, {}).items():
            pts = sorted(pts, key=lambda p: p["energy_pj"])
            ax.plot([p["energy_pj"] for p in pts], [100 * p["accuracy"] for p in pts], ".-", lw=1, ms=3,
                    label=f"{'>'.join(data['sizes'])}, {test}")
        for m in data["members"]:
            e = m["hw"][member_placement(data, sc, m["name"])]["energy_pj"]
            ax.scatter(e, 100 * m["accuracy"]["test"], marker="s", s=30, color="k", zorder=3)
            ax.annotate(m["name"], (e, 100 * m["accuracy"]["test"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
        ref = d["reference"]
        if "accuracy_tolerance" in targets:
            ax.axhline(100 * (ref["accuracy"]["test"] - targets["accuracy_tolerance"]), color="gray", ls=":",
                       lw=0.9, label=f"reference - {100 * targets['accuracy_tolerance']:g} pt")
        if "energy_ratio" in targets:
            ax.axvline(targets["energy_ratio"] * ref["energy_pj"], color="gray", ls="--", lw=0.8,
                       label=f"{100 * targets['energy_ratio']:g}% of the reference's energy")
        ch = d["chosen"]
        if ch is not None:
            ax.scatter(ch["test"]["energy_pj"], 100 * ch["test"]["accuracy"], marker="*", s=170, color="tab:red",
                       edgecolor="k", zorder=4, label=f"chosen: {ch['ladder']}, {ch['self_test']}")
        _logx(ax)
        ax.set_xlabel("energy per query (pJ, test split)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{data['task']}: {sc}", fontsize=9)
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    fig.suptitle(f"Cascade {data['task']} ({data['bits']}): accuracy versus energy per query, operating point ★",
                 fontsize=10)
    return _png(fig)


# ---- co-optimisation ---------------------------------------------------------------------------
def cooptimize_fronts(entry: dict) -> bytes:
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    data = entry["data"]
    labels = [c["label"] for c in data["configs"]]
    palette = colormaps["tab20"]
    colour = {lb: palette(i % 20) for i, lb in enumerate(labels)}
    markers = dict(zip(data["bits"], "os^Dv<>"))
    accels = list(data["fronts"])
    fig, axes = _grid(len(accels), width=5.4, height=4.0, max_cols=2)
    for ax, acc in zip(axes, accels):
        pts = data["points"][acc]
        for p in pts:
            ax.scatter(p["energy_pj"], 100 * p["accuracy"], color=colour.get(p["config"], "gray"),
                       marker=markers.get(p["bits"], "o"), s=16, alpha=0.75, lw=0)
        fr = data["fronts"][acc]
        ax.step([p["energy_pj"] for p in fr["front"]], [100 * p["accuracy"] for p in fr["front"]], where="post",
                color="k", lw=1.2, label="Pareto front")
        dft, iso = fr["default"], fr["iso_accuracy"]
        same = iso is not None and (iso["energy_pj"], iso["accuracy"]) == (dft["energy_pj"], dft["accuracy"])
        if iso is not None and not same:
            ax.scatter(iso["energy_pj"], 100 * iso["accuracy"], marker="P", s=120, color="gold", edgecolor="k",
                       zorder=5, label=f"iso-accuracy: {point_label(iso)}")
        ax.scatter(dft["energy_pj"], 100 * dft["accuracy"], marker="*", s=190, color="tab:red", edgecolor="k",
                   zorder=6, label=f"default: {point_label(dft)}" + (" (also the iso-accuracy point)" if same else ""))
        _logx(ax)
        ax.set_xlabel("energy per inference (pJ)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{data['task']}: {acc} ({len(pts)} points)", fontsize=9)
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    handles = [Line2D([], [], color=colour[lb], marker="o", ls="", label=lb) for lb in labels]
    handles += [Line2D([], [], color="gray", marker=m, ls="", label=b) for b, m in markers.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(8, len(handles)), fontsize=6, frameon=False)
    fig.suptitle(f"Co-optimisation {data['task']}: input configuration x bits x T", fontsize=10)
    return _png(fig)


def point_label(p: dict) -> str:
    t = p.get("T")
    return f"{p['config']} {p['bits']}" + ("" if t is None else (" T_settle" if t == "settle" else f" T={t}"))


# ---- compression ------------------------------------------------------------------------------
def compression_x(row: dict) -> float:
    """A row's cost for plotting: the simulated energy where there is one, else the predicted cost."""
    return row["simulated"] if row.get("simulated") is not None else row["cost"]


def compression_fronts(entry: dict, task: str) -> bytes:
    rows = [r for r in entry["data"]["rows"] if r["task"] == task]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = _grid(len(targets), width=4.4, height=3.6)
    for ax, target in zip(axes, targets):
        rs = [r for r in rows if r["target"] == target]
        fp32 = rs[0]["fp32_accuracy"]
        # zoom on the useful range (within ZOOM_PT of FP32); the points below are named in a corner
        shown = [r for r in rs if r["accuracy"] >= fp32 - ZOOM_PT] or rs
        for kind, marker, style in (("uniform", "o", {"color": "#1f77b4", "s": 34}),
                                    ("mixed", "s", {"facecolors": "none", "edgecolors": "#d62728", "s": 60,
                                                    "linewidths": 1.3})):
            sel = [r for r in shown if r["kind"] == kind]
            ax.scatter([compression_x(r) for r in sel], [100 * r["accuracy"] for r in sel], marker=marker,
                       label=kind, zorder=3, **style)
            for r in sel:
                ax.annotate(r["point"].replace("mixed@", "m@"), (compression_x(r), 100 * r["accuracy"]),
                            fontsize=6, xytext=(3, 4 if kind == "uniform" else -9), textcoords="offset points")
        _step_front(ax, [(compression_x(r), r["accuracy"]) for r in shown], scale=100, color="k", lw=0.9,
                    label="Pareto front")
        ax.axhline(100 * fp32, color="gray", ls="--", lw=0.8, label="FP32")
        accs = [100 * r["accuracy"] for r in shown] + [100 * fp32]
        pad = max(0.3, 0.08 * (max(accs) - min(accs)))
        ax.set_ylim(min(accs) - pad, max(accs) + pad)
        _logx(ax)
        simulated = any(r.get("simulated") is not None for r in rs)
        below = [f"{r['point']} {100 * r['accuracy']:.1f}%" for r in rs if r not in shown]
        ax.set_xlabel(f"{target} cost ({rs[0]['unit']}{', simulated' if simulated else ', predicted'})"
                      + (f"\nbelow the axis: {', '.join(below)}" if below else ""))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: {target}", fontsize=9)
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    fig.suptitle(f"Compression {task}: accuracy versus cost, uniform and mixed precision", fontsize=10)
    return _png(fig)


# ---- all plots of a report's studies ------------------------------------------------------------
def entry_plots(entry: dict) -> dict[str, tuple[str, Callable[[], bytes]]]:
    """{what: (plot name, renderer)} of one studies entry (what: "energy", "k", "curves", "fronts" or a
    task name for compression)."""
    kind, data = entry["kind"], entry["data"]
    if kind == "breakeven":  # the section (eval.breakeven_report.section) names these plots
        from eval.breakeven_report import plots
        return {name: (name, draw) for name, (_, draw) in plots(data).items()}
    if kind == "speculative":
        out = {}
        if data["energy"]:
            out["energy"] = (plot_name(entry, "energy"), lambda: speculative_energy(entry))
        if data.get("k_sweep"):
            out["k"] = (plot_name(entry, "k"), lambda: speculative_k(entry))
        return out
    if kind == "cascade":
        return {"curves": (plot_name(entry), lambda: cascade_curves(entry))}
    if kind == "cooptimize":
        return {"fronts": (plot_name(entry), lambda: cooptimize_fronts(entry))}
    tasks = dict.fromkeys(r["task"] for r in data["rows"])
    return {t: (plot_name(entry, t), lambda t=t: compression_fronts(entry, t)) for t in tasks}


def study_plots(entries: list[dict]) -> dict[str, bytes]:
    """{plot name: PNG bytes} of every plot of every studies entry."""
    return {name: draw() for e in entries for name, draw in entry_plots(e).values()}

