"""The fault study as a report section: a table of plain data, a plot, and files on disk.

`fault_section(result)` turns a `eval.faults.fault_study` result into rows (one per configuration:
accelerator, coding, fault kind, mitigation, the rate at which it loses one point, the
mitigation's energy and storage overhead) that a report can render as it likes;
`fault_plot(result)` draws accuracy against rate (mean and 95% interval over seeds) with one panel
per fault kind; `fault_markdown(result, image=None)` is the section as Markdown (the table, the
notes, the configurations skipped and why); `write_fault_study(result, out_dir)` writes
`faults_<task>.json`, `.png` and `.md`.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

SECTION_COLUMNS = ("accelerator", "coding", "kind", "unit", "mitigation", "loss_1pt_rate", "loss_1pt_bracket",
                   "loss_1pt_ci95", "n_examples", "energy_overhead", "storage_overhead", "computed_as")


def fault_section(result: dict) -> dict:
    """{"title", "task", "clean_accuracy", "columns", "rows", "notes"}: plain data for a report."""
    rows = []
    for c in result["configurations"]:
        ov = c.get("overhead") or {}
        frac = ov.get("storage_fraction_of_weights") or {}
        rows.append({"accelerator": c["accelerator"], "coding": c["coding"] or "-", "kind": c["kind"],
                     "unit": c["unit"], "mitigation": "+".join(c["mitigation"]) or "none",
                     "loss_1pt_rate": c["loss_1pt"]["rate"], "loss_1pt_bracket": c["loss_1pt"]["bracket"],
                     "loss_1pt_ci95": c["loss_1pt"].get("ci95"), "n_examples": c.get("n_examples"),
                     "energy_overhead": ov.get("energy_overhead"),
                     "storage_overhead": sum(frac.values()) if frac else None, "computed_as": c["computed_as"]})
    return {"title": f"Fault resilience: {result['task']}", "task": result["task"],
            "clean_accuracy": result["clean_accuracy"], "columns": list(SECTION_COLUMNS), "rows": rows,
            "notes": [f"{result['seeds']} seeds per rate, rates {', '.join(f'{r:g}' for r in result['rates'])}; "
                      f"{result['n_examples']} held-out examples ({result['n_examples_snn']} for SNN runs).",
                      "loss_1pt_rate: rate at which mean accuracy first falls 0.01 below the fault-free "
                      "accuracy (log-interpolated); a bracket [r, None] means not reached at the highest rate; "
                      "loss_1pt_ci95: 95% bootstrap interval over seeds.",
                      "Overheads: energy per inference relative to the unprotected accelerator, storage "
                      "relative to the weights (neuro_hw.protection)."]}


def format_rate(loss: dict) -> str:
    if loss["rate"] is not None:
        return f"{loss['rate']:.2g}"
    lo, hi = loss["bracket"]
    return f"> {lo:g}" if hi is None else f"< {hi:g}"


def format_ci(ci) -> str:
    """'[a, b]' of a bootstrap interval (bounds: rates, or '<r' / '>r' strings); '' if absent."""
    if not ci:
        return ""
    return "[" + ", ".join(v if isinstance(v, str) else f"{v:.2g}" for v in ci) + "]"


def _pct(v) -> str:
    return "" if v is None else f"+{v * 100:.2g}%"


def summary_rows(result: dict) -> list[dict]:
    """One row per distinct curve: configurations with identical curves on the same examples (the
    same faults on the same integers: weight flips at one stored width on every chip and coding,
    packets on every chip of one coding) are merged, their accelerators and codings listed
    together; energy overheads stay per accelerator (min-max over the merged ones)."""
    groups: dict = {}
    for c in result["configurations"]:
        key = (c["kind"], tuple(c["mitigation"]), c.get("n_examples"),
               tuple(tuple(p["accuracies"]) for p in c["points"]))
        g = groups.setdefault(key, {"conf": c, "accelerators": [], "codings": [], "how": [], "overheads": []})
        for field, v in (("accelerators", c["accelerator"]), ("codings", c["coding"] or "-"),
                         ("how", c["computed_as"])):
            if v not in g[field]:
                g[field].append(v)
        ov = (c.get("overhead") or {}).get("energy_overhead")
        if ov is not None and c["mitigation"]:
            g["overheads"].append(ov)
    rows = []
    for (kind, mit, n, _), g in groups.items():
        c = g["conf"]
        ovs = g["overheads"]
        ov = "" if not ovs else (_pct(min(ovs)) if max(ovs) - min(ovs) < 1e-12 else f"{_pct(min(ovs))}..{_pct(max(ovs))}")
        rows.append({"kind": kind, "accelerators": ", ".join(g["accelerators"]), "coding": ", ".join(g["codings"]),
                     "mitigation": "+".join(mit) or "none", "loss_1pt": format_rate(c["loss_1pt"]),
                     "ci95": format_ci(c["loss_1pt"].get("ci95")),
                     "acc_at_max": f"{c['points'][-1]['mean']:.3f}", "clean": f"{c['clean_accuracy']:.3f}",
                     "n": n, "computed_as": ", ".join(g["how"]), "overhead": ov})
    return rows


def fault_markdown(result: dict, image: str | None = None) -> str:
    """The study as Markdown: settings, the table of 1-point-loss rates (one row per distinct
    curve), the skipped configurations with the reason, and the plot when `image` is given."""
    rates = result["rates"]
    out = [f"# Fault resilience: {result['task']}", "",
           f"{result['seeds']} seeds per rate; rates {', '.join(f'{r:g}' for r in rates)}; "
           f"{result['n_examples']} held-out examples ({result['n_examples_snn']} for SNN runs of codings "
           f"that take many steps); fault-free accuracy "
           + ", ".join(f"{k} {v:.4f}" for k, v in result["clean_accuracy"].items()) + ".", "",
           "1-pt loss: the rate at which the mean accuracy over seeds is one point below the fault-free "
           "accuracy of the same examples (log-interpolated; '> r': not reached at the highest rate; "
           "'< r': already down at the lowest); CI: 95% bootstrap over seeds. Overhead: energy per "
           "inference of the mitigation (neuro_hw.protection).", "",
           f"| kind | accelerators | codings | mitigation | 1-pt loss | CI | acc @ {rates[-1]:g} | clean | n "
           f"| computed as | energy overhead |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary_rows(result):
        out.append(f"| {r['kind']} | {r['accelerators']} | {r['coding']} | {r['mitigation']} | {r['loss_1pt']} "
                   f"| {r['ci95']} | {r['acc_at_max']} | {r['clean']} | {r['n']} | {r['computed_as']} "
                   f"| {r['overhead']} |")
    if result.get("skipped"):
        out += ["", "Not run (the chip cannot run the coding):", ""]
        out += [f"- {s['accelerator']} / {s['coding']}: {s['reason']}" for s in result["skipped"]]
    work = result.get("work")
    if work:
        out += ["", f"Work: {work['evaluated']} fault scenarios evaluated, {work['reused']} shared between "
                f"accelerators; {work['run_batches']} batches run, {work['skipped_batches']} reused as "
                f"fault-free (no fault drawn). Wall {result['wall_s']:.0f} s, CPU {result.get('cpu_s', 0):.0f} s."]
    if image:
        out += ["", f"![accuracy against fault rate]({image})"]
    return "\n".join(out) + "\n"


def _grid(n: int, width: float = 4.2, height: float = 3.4, max_cols: int = 4):
    from matplotlib.figure import Figure
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows), dpi=100, layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _png(fig) -> bytes:
    import io
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


SHORT = {"conventional": "conv", "neuromorphic-ideal": "ideal", "neuromorphic": "ideal", "loihi1": "L1", "loihi2": "L2"}


def fault_plot(result: dict) -> bytes:
    """PNG: accuracy vs fault rate, one panel per kind, a line per distinct curve (chips whose
    curves are identical share a line, named together), dashed with mitigation."""
    kinds = list(dict.fromkeys(c["kind"] for c in result["configurations"]))
    fig, axes = _grid(len(kinds), max_cols=4)
    styles = {}
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for ax, kind in zip(axes, kinds):
        curves: dict = {}
        for c in result["configurations"]:
            if c["kind"] != kind:
                continue
            key = (c["coding"], tuple(c["mitigation"]), tuple(tuple(p["accuracies"]) for p in c["points"]))
            curves.setdefault(key, (c, []))[1].append(SHORT.get(c["accelerator"], c["accelerator"]))
        for (coding, mit, _), (c, names) in curves.items():
            who = "+".join(names) + (f"/{coding}" if coding else "")
            color = styles.setdefault(who, palette[len(styles) % len(palette)])
            rates = [p["rate"] for p in c["points"]]
            mean = [p["mean"] for p in c["points"]]
            lo = [p["ci95"][0] for p in c["points"]]
            hi = [p["ci95"][1] for p in c["points"]]
            ax.plot(rates, mean, "--" if mit else "-", color=color, marker="o", ms=3,
                    label=who + (" +" + "+".join(mit) if mit else "") + f" (n={c.get('n_examples', '?')})")
            ax.fill_between(rates, lo, hi, color=color, alpha=0.12)
        ax.axhline(result["clean_accuracy"]["qann"] - 0.01, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("fault rate (" + next(c["unit"] for c in result["configurations"] if c["kind"] == kind) + ")",
                      fontsize=7)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=5)
    fig.suptitle(f"{result['task']}: accuracy vs fault rate (mean, 95% CI over {result['seeds']} seeds; "
                 f"dotted: 1 point below the fault-free QANN)", fontsize=9)
    return _png(fig)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_fault_study(result: dict, out_dir) -> dict:
    """Write faults_<task>.json, .png and .md into `out_dir` (each replaced atomically: a failure
    leaves no partial file); returns {"json": path, "png": path, "md": path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = fault_plot(result)  # before anything is written: a plotting error writes nothing
    js = json.dumps(_json_safe(result), sort_keys=True, indent=1).encode()
    paths = {"json": out / f"faults_{result['task']}.json", "png": out / f"faults_{result['task']}.png",
             "md": out / f"faults_{result['task']}.md"}
    md = fault_markdown(result, image=paths["png"].name).encode()
    _atomic_write(paths["json"], js)
    _atomic_write(paths["png"], png)
    _atomic_write(paths["md"], md)
    return {k: str(v) for k, v in paths.items()}
