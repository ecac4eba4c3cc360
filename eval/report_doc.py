"""The report as a document: a list of blocks that report_md and report_html both render.

One builder, two renderers, so the Markdown and the HTML report always say the same thing.
Blocks: ("h", level, text) | ("p", text) | ("list", [text]) | ("table", headers, rows) |
("img", plot name, alt text) | ("pre", text).  Every number comes from the Report (the study
sections, eval.report_studies, from the studies' own outputs).
"""
from __future__ import annotations

import json

from eval.compare import Report
from eval.results import ACCELERATORS

CAVEATS = [
    "Energies and latencies come from analytical architecture models (neuro_hw), not from measured "
    "silicon: the SNN is simulated step by step in PyTorch and its spike counts drive a model of a "
    "neuromorphic chip; the QANN's Workload drives a model of a systolic-array accelerator.",
    "Both accelerators read the same Workload and the same technology table (energy per operation "
    "and per memory access for one process node, each number with its source); change the node or "
    "the configs and the numbers change. Absolute joules are estimates; ratios between the two "
    "models are the more robust reading.",
    "The SNN reproduces the QANN's integers by construction; the report measures how far that held "
    "(agreement, max |SNN-QANN|/max|QANN|) on the examples it ran. The SNN ran on a subset of the "
    "held-out data (counts in the table); FP32 and QANN accuracies use the whole held-out split.",
    "Neuromorphic energy uses the activity recorded on the SNN subset (averaged per example) and the "
    "time steps until the network went quiet (T_settle), unless a fixed T was asked for.",
    "Decoders (lm, vqa) are charged for one forward over the whole example (teacher forcing), "
    "divided by the number of tokens that forward predicts; autoregressive generation with a KV "
    "cache, batching and host-side costs are not in these numbers.",
    "Non-spiking units (softmax, LayerNorm, GELU) are charged as digital units on the neuromorphic "
    "chip; the spike-driven fraction says how much of its work and energy is event-driven.",
]


# ---- number formatting -----------------------------------------------------------------------
def fmt_energy(pj: float | None) -> str:
    if pj is None:
        return "—"
    for f, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    for f, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(s) >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_acc(a: float | None) -> str:
    return "—" if a is None else f"{100 * a:.2f}%"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3g}×"


def fmt_edp(x: float | None) -> str:
    return "—" if x is None else f"{x:.2e} pJ·s"


def _acc_label(kind: str) -> str:
    return "mean cosine to FP32" if kind == "embed" else "accuracy"


# ---- sections ----------------------------------------------------------------------------------
def _summary(report: Report) -> list:
    rows = []
    for t in report.comparison["tasks"]:
        a, acc, ex = t["accelerators"], t["accuracy"], t["exactness"]
        rows.append([
            t["task"], t["model"], t["main"], t["unit"],
            fmt_acc(acc["fp32"]["accuracy"]), fmt_acc(acc["qann"]["accuracy"]),
            f"{fmt_acc(acc['snn']['accuracy'])} ({acc['snn']['n_examples']} ex.)",
            f"{100 * ex['agreement']:.1f}% / {ex['max_rel_err']:.1e}",
            str(ex["t_settle"]) if ex["settled"] else f"not settled ({ex['steps']})",
            fmt_energy(a["neuromorphic"]["energy_per_unit_pj"]), fmt_energy(a["conventional"]["energy_per_unit_pj"]),
            fmt_ratio(t["ratios"]["energy"]),
            fmt_time(a["neuromorphic"]["latency_s"]), fmt_time(a["conventional"]["latency_s"]),
            fmt_ratio(t["ratios"]["latency"]), fmt_ratio(t["ratios"]["edp"]),
        ])
    headers = ["Task", "Model", "Bits", "Per", "FP32", "QANN", "SNN", "SNN=QANN (agree / max rel err)",
               "T_settle", "E neuromorphic", "E conventional", "E conv/neuro", "Latency neuro",
               "Latency conv", "Latency conv/neuro", "EDP conv/neuro"]
    return [("h", 2, "Summary"),
            ("p", "Accuracy of every model form, energy per unit (inference or predicted token, see "
                  "below) and latency per inference on both accelerators, for the main bit widths. "
                  f"Ratios are {report.comparison['ratio_definition']}."),
            ("table", headers, rows)]


def _counts(report: Report) -> list:
    items = []
    for res in report.results.tasks:
        v = res.variant()
        items.append(
            f"{res.task}: {res.normalisation['text']}. FP32 and QANN {_acc_label(res.kind)} over "
            f"{res.fp32['n']} scored items from {res.fp32.get('n_examples')} held-out examples; SNN over "
            f"{v.snn['n']} scored items from {v.snn['n_examples']} held-out examples "
            f"({'until quiet' if v.snn['T'] is None else 'fixed T=' + str(v.snn['T'])}, "
            f"{v.snn['steps']} steps simulated, {v.workload['trace_steps_simulated'] if 'trace_steps_simulated' in v.workload else v.snn['steps']} charged on the chip); "
            f"Workload: {v.workload['n_ops']} ops, {v.workload['macs']:,} MACs, {v.workload['params']:,} "
            f"parameters per inference ({v.workload.get('example', 'one example')}).")
    return [("h", 2, "What each number is over"), ("list", items)]


def _iso(report: Report) -> list:
    rows = []
    for t in report.comparison["tasks"]:
        iso = t["iso_accuracy"]
        cells = [t["task"], fmt_acc(iso["reference_accuracy"]), fmt_acc(iso["threshold"])]
        for accel in ACCELERATORS:
            c = iso[accel]
            if c is None:
                cells.append("—")
                continue
            flag = "" if c["within_tolerance"] else " (none within tolerance: most accurate shown)"
            cells.append(f"{c['label']}: {fmt_acc(c['accuracy'])}, {fmt_energy(c['energy_per_unit_pj'])}/"
                         f"{t['unit']}{flag}")
        cells.append(fmt_ratio(iso["energy_ratio"]))
        rows.append(cells)
    tol = report.comparison["tolerance"]
    return [("h", 2, "Iso-accuracy view"),
            ("p", f"The cheapest measured configuration of each accelerator whose accuracy is within "
                  f"{tol:g} (absolute) of the FP32 model's. The conventional accelerator runs the QANN "
                  "(or the FP32 model); the neuromorphic chip runs the SNN, credited with the QANN's "
                  "held-out accuracy only where the SNN reproduced the QANN on every example it ran."),
            ("table", ["Task", "FP32", "Threshold", "Neuromorphic (cheapest within)",
                       "Conventional (cheapest within)", "E conv/neuro"], rows)]


def _breakdown(report: Report) -> list:
    out = [("h", 2, "Energy breakdown"), ("img", "energy_breakdown", "Stacked energy breakdown per task"),
           ("p", "Named components as each hardware model reports them (they sum to the total).")]
    for t in report.comparison["tasks"]:
        a = t["accelerators"]
        names = sorted({k for acc in ACCELERATORS for k in a[acc]["breakdown_per_unit_pj"]},
                       key=lambda k: -max(a[acc]["breakdown_per_unit_pj"].get(k, 0.0) for acc in ACCELERATORS))
        rows = []
        for k in names:
            row = [k]
            for acc in ACCELERATORS:
                e = a[acc]["breakdown_per_unit_pj"].get(k)
                tot = a[acc]["energy_per_unit_pj"]
                row += ["—", ""] if e is None else [fmt_energy(e), f"{100 * e / tot:.1f}%" if tot else ""]
            rows.append(row)
        rows.append(["total", fmt_energy(a["neuromorphic"]["energy_per_unit_pj"]), "100%",
                     fmt_energy(a["conventional"]["energy_per_unit_pj"]), "100%"])
        out += [("h", 3, f"{t['task']} ({t['main']}, per {t['unit']})"),
                ("table", ["Component", "Neuromorphic", "share", "Conventional", "share"], rows)]
        sdf = a["neuromorphic"].get("spike_driven_fraction")
        extra = [f"cycles per inference: neuromorphic {a['neuromorphic']['cycles']:.4g}, conventional "
                 f"{a['conventional']['cycles']:.4g}; EDP: neuromorphic {fmt_edp(a['neuromorphic']['edp_pj_s'])}, "
                 f"conventional {fmt_edp(a['conventional']['edp_pj_s'])} (per inference)"]
        if sdf:
            extra.append("spike-driven fraction on the neuromorphic chip: "
                         + ", ".join(f"{k} {100 * v:.1f}%" if isinstance(v, (int, float)) else f"{k} {v}"
                                     for k, v in sdf.items()))
        for acc in ACCELERATORS:
            extra += [f"{acc}: {n}" for n in a[acc].get("notes", [])]
        out.append(("list", extra))
    return out


STEP_MARKS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _acc_vs_t(report: Report) -> list:
    rows = []
    marks_all = set()
    for res in report.results.tasks:
        for v in res.variants:
            n = len(v.snn["acc_per_step"])
            marks_all |= {m for m in STEP_MARKS if m <= n}
    marks = sorted(marks_all)
    for res in report.results.tasks:
        for v in res.variants:
            c = v.snn["acc_per_step"]
            cells = [res.task, v.label] + [fmt_acc(c[m - 1]) if m <= len(c) else fmt_acc(c[-1]) for m in marks]
            cells += [str(v.snn["t_settle"]), fmt_acc(c[-1]), fmt_acc(v.snn["qann_accuracy_subset"])]
            rows.append(cells)
    return [("h", 2, "Accuracy versus time step"), ("img", "accuracy_vs_T", "SNN accuracy per time step"),
            ("p", "SNN accuracy on its subset after t steps (a run that went quiet keeps its last output). "
                  "At T_settle it equals the QANN's on the same examples when the conversion is exact."),
            ("table", ["Task", "Bits"] + [f"t={m}" for m in marks] + ["T_settle", "final", "QANN (subset)"], rows)]


def _variants(report: Report) -> list:
    rows = []
    for t in report.comparison["tasks"]:
        for v in t["variants"]:
            rows.append([t["task"], v["label"], fmt_acc(v["qann_accuracy"]),
                         f"{fmt_acc(v['snn_accuracy'])} ({v['snn_examples']} ex.)",
                         f"{100 * v['agreement']:.1f}%", str(v["t_settle"]),
                         fmt_energy(v["energy_per_unit_pj"].get("neuromorphic")),
                         fmt_energy(v["energy_per_unit_pj"].get("conventional")), fmt_ratio(v["energy_ratio"]),
                         fmt_time(v["latency_s"].get("neuromorphic")), fmt_time(v["latency_s"].get("conventional"))])
        res = report.results.task(t["task"])
        if "conventional" in res.fp32_hw:
            hw = res.fp32_hw["conventional"]
            rows.append([t["task"], "FP32", fmt_acc(res.fp32["accuracy"]), "—", "—", "—", "—",
                         fmt_energy(hw.energy_pj / t["tokens_per_inference"]), "—", "—", fmt_time(hw.latency_s)])
    return [("h", 2, "Energy versus accuracy"), ("img", "energy_vs_accuracy", "Energy against accuracy"),
            ("p", "Every measured configuration (energy per unit; FP32 on the conventional accelerator "
                  "with 32-bit weights and activations where modelled)."),
            ("table", ["Task", "Config", "QANN", "SNN", "SNN=QANN", "T_settle", "E neuro", "E conv",
                       "E conv/neuro", "Latency neuro", "Latency conv"], rows)]


def _per_op(report: Report) -> list:
    out = [("h", 2, "Where the energy goes (per op)"),
           ("p", "The ops with the largest share of either accelerator's energy (per unit). Fixed costs "
                 "that belong to no op (static power, synchronisation, I/O) are in the breakdown above.")]
    for t in report.comparison["tasks"]:
        rows = [[r["name"], r["kind"], fmt_energy(r["neuromorphic_pj"]), f"{100 * r['neuromorphic_share']:.1f}%",
                 fmt_energy(r["conventional_pj"]), f"{100 * r['conventional_share']:.1f}%"] for r in t["per_op"]]
        out += [("h", 3, f"{t['task']} ({t['main']})"),
                ("table", ["Op", "Kind", "Neuromorphic", "share", "Conventional", "share"], rows)]
    return out


def _provenance(report: Report) -> list:
    r = report.results
    p = r.provenance
    git = p.get("git")
    rows = [["started / finished (UTC)", f"{p['started_utc']} / {p['finished_utc']}"],
            ["wall time of the run", f"{r.wall_s:.1f} s"
             + (f" (CPU time of the process {p['cpu_s']:.1f} s)" if p.get("cpu_s") is not None else "")],
            ["git revision", f"{git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}" if git else "not a git checkout"],
            ["command", " ".join(p.get("command", []))],
            ["seed", str(p["seed"])],
            ["bits (main, variants)", ", ".join(f"W{w}A{a}" for w, a in r.options["bits"])],
            ["T", "until quiet" if r.options["T"] is None else str(r.options["T"])],
            ["held-out examples (FP32 / QANN; SNN)",
             ", ".join(f"{t.task} {t.fp32.get('n_examples')}; {t.variant().snn['n_examples']}" for t in r.tasks)
             + ("" if r.options["limit"] is None else f" (limit {r.options['limit']})")],
            ["packages", ", ".join(f"{k} {v}" for k, v in p["packages"].items())],
            ["environment", ", ".join(f"{k}={v}" for k, v in p["environment"].items())]]
    for res in r.tasks:
        c = res.checkpoint
        rows.append([f"{res.task} checkpoint",
                     f"{c.get('path') or '(trained in this run, not saved)'}; sha256 {c.get('sha256') or '—'}"
                     + ("; trained in this run" if c.get("trained_now") else "")])
        rows.append([f"{res.task} wall time per stage",
                     ", ".join(f"{k} {v:.1f} s" for k, v in res.wall_s.items())])
        for n in res.notes:
            rows.append([f"{res.task} note", n])
    hw = json.dumps(r.options["hardware"], indent=1, sort_keys=True)
    return [("h", 2, "Provenance"), ("table", ["", ""], rows),
            ("h", 3, "Hardware configurations (echo)"), ("pre", hw)]


def build_document(report: Report) -> list:
    r = report.results
    git = r.provenance.get("git")
    head = (f"Run of {r.provenance['started_utc']} ({r.wall_s:.0f} s, seed {r.options['seed']}"
            + (f", git {git['commit'][:10]}" if git else "") + "). Every number below was measured or "
            "simulated in this run; none is copied in. Energies are per inference, or per predicted "
            "token for decoders; latencies are per inference.")
    if report.studies:
        kinds = ", ".join(dict.fromkeys(e["kind"] for e in report.studies))
        head += (f" Study sections ({kinds}) follow the main comparison; each says where its numbers "
                 "come from (this run, or the study output added to the report) and its settings.")
    doc = [("h", 1, "snmfm: neuromorphic versus conventional energy report"), ("p", head)]
    doc += _summary(report) + _counts(report) + _iso(report) + _breakdown(report) + _acc_vs_t(report)
    doc += _variants(report) + _per_op(report)
    if report.studies:
        from eval.report_studies import study_sections
        doc += study_sections(report.studies)
    doc += [("h", 2, "What is modelled and what is not"), ("list", CAVEATS)]
    doc += _provenance(report)
    return doc
