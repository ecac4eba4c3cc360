"""The fault study as a report section: a table of plain data, a plot, and files on disk.

`fault_section(result)` turns a `eval.faults.fault_study` result into rows (one per configuration:
accelerator, coding, fault kind, mitigation, the rate at which it loses one point, the
mitigation's energy and storage overhead) that a report can render as it likes;
`fault_plot(result)` draws accuracy against rate (mean and 95% interval over seeds) with one panel
per fault kind; `write_fault_study(result, out_dir)` writes `faults_<task>.json` and `.png`.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

SECTION_COLUMNS = ("accelerator", "coding", "kind", "unit", "mitigation", "loss_1pt_rate", "loss_1pt_bracket",
                   "energy_overhead", "storage_overhead", "computed_as")


def fault_section(result: dict) -> dict:
    """{"title", "task", "clean_accuracy", "columns", "rows", "notes"}: plain data for a report."""
    rows = []
    for c in result["configurations"]:
        ov = c.get("overhead") or {}
        frac = ov.get("storage_fraction_of_weights") or {}
        rows.append({"accelerator": c["accelerator"], "coding": c["coding"] or "-", "kind": c["kind"],
                     "unit": c["unit"], "mitigation": "+".join(c["mitigation"]) or "none",
                     "loss_1pt_rate": c["loss_1pt"]["rate"], "loss_1pt_bracket": c["loss_1pt"]["bracket"],
                     "energy_overhead": ov.get("energy_overhead"),
                     "storage_overhead": sum(frac.values()) if frac else None, "computed_as": c["computed_as"]})
    return {"title": f"Fault resilience: {result['task']}", "task": result["task"],
            "clean_accuracy": result["clean_accuracy"], "columns": list(SECTION_COLUMNS), "rows": rows,
            "notes": [f"{result['seeds']} seeds per rate, rates {', '.join(f'{r:g}' for r in result['rates'])}; "
                      f"{result['n_examples']} held-out examples ({result['n_examples_snn']} for SNN runs).",
                      "loss_1pt_rate: rate at which mean accuracy first falls 0.01 below the fault-free "
                      "accuracy (log-interpolated); a bracket [r, None] means not reached at the highest rate.",
                      "Overheads: energy per inference relative to the unprotected accelerator, storage "
                      "relative to the weights (neuro_hw.protection)."]}


def format_rate(loss: dict) -> str:
    if loss["rate"] is not None:
        return f"{loss['rate']:.2g}"
    lo, hi = loss["bracket"]
    return f"> {lo:g}" if hi is None else f"< {hi:g}"


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


def fault_plot(result: dict) -> bytes:
    """PNG: accuracy vs fault rate, one panel per kind, a line per accelerator/coding/mitigation."""
    kinds = list(dict.fromkeys(c["kind"] for c in result["configurations"]))
    fig, axes = _grid(len(kinds), max_cols=4)
    styles = {}
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for ax, kind in zip(axes, kinds):
        for c in result["configurations"]:
            if c["kind"] != kind:
                continue
            who = c["accelerator"] + (f"/{c['coding']}" if c["coding"] else "")
            color = styles.setdefault(who, palette[len(styles) % len(palette)])
            rates = [p["rate"] for p in c["points"]]
            mean = [p["mean"] for p in c["points"]]
            lo = [p["ci95"][0] for p in c["points"]]
            hi = [p["ci95"][1] for p in c["points"]]
            dash = "--" if c["mitigation"] else "-"
            label = who + (" +" + "+".join(c["mitigation"]) if c["mitigation"] else "")
            ax.plot(rates, mean, dash, color=color, marker="o", ms=3, label=label)
            ax.fill_between(rates, lo, hi, color=color, alpha=0.15)
        ax.axhline(result["clean_accuracy"]["qann"] - 0.01, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("fault rate (" + next(c["unit"] for c in result["configurations"] if c["kind"] == kind) + ")",
                      fontsize=7)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=6)
    fig.suptitle(f"{result['task']}: accuracy vs fault rate (mean, 95% CI over {result['seeds']} seeds; "
                 f"dotted: 1 point below fault-free)", fontsize=9)
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
    """Write faults_<task>.json and faults_<task>.png into `out_dir` (each replaced atomically:
    a failure leaves no partial file); returns {"json": path, "png": path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = fault_plot(result)  # before anything is written: a plotting error writes nothing
    js = json.dumps(_json_safe(result), sort_keys=True, indent=1).encode()
    paths = {"json": out / f"faults_{result['task']}.json", "png": out / f"faults_{result['task']}.png"}
    _atomic_write(paths["json"], js)
    _atomic_write(paths["png"], png)
    return {k: str(v) for k, v in paths.items()}
