"""The console summary printed at the end of the main job: the verdict sentences, then quality and
energy tables (one row per task and accelerator, so any number of accelerators fits)."""
from __future__ import annotations

from eval.compare import Report
from eval.fmt import fmt_acc, fmt_energy, fmt_time, fmt_vs


def summary_tables(report: Report):
    """(quality table, energy table) of the main configuration of every task."""
    from rich import box
    from rich.table import Table
    q = Table(title="Quality (FP32/QANN on the held-out split; the SNN on its subset)", title_justify="left",
              box=box.SIMPLE_HEAD)
    for col in ("task", "bits", "coding", "FP32", "QANN", "SNN (subset)"):
        q.add_column(col, justify="right" if col in ("FP32", "QANN") else "left", no_wrap=col != "SNN (subset)")
    baselines = report.comparison["baselines"]
    e = Table(title="Energy per unit, latency per inference (vs a baseline: how much less or more energy "
                    "the accelerator needs than it)",
              title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("task", "accelerator", "per", "energy", *[f"vs {b}" for b in baselines], "latency", "static",
                "off-chip"):
        e.add_column(col, justify="left" if col in ("task", "accelerator", "per") else "right", no_wrap=True)
    for c in report.comparison["tasks"]:
        acc, ex = c["accuracy"], c["exactness"]
        n = acc["snn"]["n_examples"]
        snn = (f"= QANN on all {n} ex. (T_settle {ex['t_settle']})" if ex["exact"] else
               f"{fmt_acc(acc['snn']['accuracy'])} on {n} ex., {100 * ex['agreement']:.1f}% agree")
        q.add_row(c["task"], c["main"].split("-", 1)[0], c["coding"],
                  f"{fmt_acc(acc['fp32']['accuracy'])} ({acc['fp32']['n_examples']})",
                  f"{fmt_acc(acc['qann']['accuracy'])} ({acc['qann']['n_examples']})", snn)
        for name, a in c["accelerators"].items():
            r = c["ratios"]["energy"].get(name, {})
            e.add_row(c["task"], name, c["unit"], fmt_energy(a["energy_per_unit_pj"]),
                      *["baseline" if b == name else fmt_vs(r.get(b)) for b in baselines],
                      fmt_time(a["latency_s"]), f"{100 * a['static_share']:.0f}%", f"{100 * a['offchip_share']:.0f}%")
    return q, e


def print_summary(report: Report, console=None, out_dir=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: no terminal width to fit, keep rows whole
            console = Console(width=160)
    console.print("[bold]Verdict[/bold]")
    for t in report.comparison["tasks"]:
        console.print("  " + escape(t["verdict"]["text"]))
    for table in summary_tables(report):
        console.print(table)
    console.print(f"Main configuration per task; the verdict compares the cheapest configurations within "
                  f"{report.comparison['tolerance']:g} of FP32 accuracy. "
                  f"Wall time {report.results.wall_s:.1f} s.")
    if report.studies:
        console.print("Study sections: " + ", ".join(f"{e['kind']} ({e['key']})" for e in report.studies))
    if out_dir is not None:
        console.print(f"Report: {out_dir}/report.html (also report.md, report.json, PNG plots)")
