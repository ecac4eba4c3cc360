"""The rich summary table printed at the end of the main job."""
from __future__ import annotations

from eval.compare import Report
from eval.report_doc import fmt_acc, fmt_energy, fmt_ratio, fmt_time


def summary_table(report: Report):
    from rich.table import Table
    t = Table(title="snmfm main job: neuromorphic vs conventional (main bit widths)", show_lines=False)
    for col in ("task", "bits", "per", "FP32", "QANN", "SNN (ex.)", "SNN=QANN", "T_settle",
                "E neuro", "E conv", "E conv/neuro", "lat neuro", "lat conv", "EDP conv/neuro",
                "iso E conv/neuro"):
        t.add_column(col, justify="left" if col in ("task", "bits", "per") else "right")
    for c in report.comparison["tasks"]:
        a, acc, ex = c["accelerators"], c["accuracy"], c["exactness"]
        t.add_row(c["task"], c["main"], c["unit"], fmt_acc(acc["fp32"]["accuracy"]),
                  fmt_acc(acc["qann"]["accuracy"]),
                  f"{fmt_acc(acc['snn']['accuracy'])} ({acc['snn']['n_examples']})",
                  f"{100 * ex['agreement']:.1f}%", str(ex["t_settle"]),
                  fmt_energy(a["neuromorphic"]["energy_per_unit_pj"]),
                  fmt_energy(a["conventional"]["energy_per_unit_pj"]), fmt_ratio(c["ratios"]["energy"]),
                  fmt_time(a["neuromorphic"]["latency_s"]), fmt_time(a["conventional"]["latency_s"]),
                  fmt_ratio(c["ratios"]["edp"]), fmt_ratio(c["iso_accuracy"]["energy_ratio"]))
    return t


def print_summary(report: Report, console=None, out_dir=None) -> None:
    from rich.console import Console
    console = console or Console()
    console.print(summary_table(report))
    console.print(f"ratios: {report.comparison['ratio_definition']}; wall time "
                  f"{report.results.wall_s:.1f} s")
    if out_dir is not None:
        console.print(f"report: {out_dir}/report.html, report.md, report.json")
