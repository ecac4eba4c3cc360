"""The rich summary tables printed at the end of the main job (quality, then energy)."""
from __future__ import annotations

from eval.compare import Report
from eval.report_doc import fmt_acc, fmt_energy, fmt_ratio, fmt_time


def summary_tables(report: Report):
    """(quality table, energy table) of the main bit widths of every task."""
    from rich import box
    from rich.table import Table
    q = Table(title="Quality (held-out; SNN on its subset)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("task", "bits", "FP32", "QANN", "SNN", "SNN ex.", "SNN=QANN", "T_settle"):
        q.add_column(col, justify="left" if col in ("task", "bits") else "right", no_wrap=True)
    e = Table(title="Energy per unit, latency per inference (ratios: conventional / neuromorphic)",
              title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("task", "per", "E neuro", "E conv", "E ratio", "lat neuro", "lat conv", "EDP ratio",
                "iso E ratio"):
        e.add_column(col, justify="left" if col in ("task", "per") else "right", no_wrap=True)
    for c in report.comparison["tasks"]:
        a, acc, ex = c["accelerators"], c["accuracy"], c["exactness"]
        q.add_row(c["task"], c["main"], fmt_acc(acc["fp32"]["accuracy"]), fmt_acc(acc["qann"]["accuracy"]),
                  fmt_acc(acc["snn"]["accuracy"]), str(acc["snn"]["n_examples"]),
                  f"{100 * ex['agreement']:.1f}%", str(ex["t_settle"]) if ex["settled"] else "not settled")
        e.add_row(c["task"], c["unit"], fmt_energy(a["neuromorphic"]["energy_per_unit_pj"]),
                  fmt_energy(a["conventional"]["energy_per_unit_pj"]), fmt_ratio(c["ratios"]["energy"]),
                  fmt_time(a["neuromorphic"]["latency_s"]), fmt_time(a["conventional"]["latency_s"]),
                  fmt_ratio(c["ratios"]["edp"]), fmt_ratio(c["iso_accuracy"]["energy_ratio"]))
    return q, e


def print_summary(report: Report, console=None, out_dir=None) -> None:
    from rich.console import Console
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: no terminal width to fit, keep rows whole
            console = Console(width=160)
    for table in summary_tables(report):
        console.print(table)
    console.print(f"E ratio > 1: the neuromorphic chip needs less energy; iso: cheapest configuration of "
                  f"each within {report.comparison['tolerance']:g} of FP32 accuracy. "
                  f"Wall time {report.results.wall_s:.1f} s.")
    if report.studies:
        console.print("Study sections: " + ", ".join(f"{e['kind']} ({e['key']})" for e in report.studies))
    if out_dir is not None:
        console.print(f"Report: {out_dir}/report.html (also report.md, report.json, PNG plots)")
