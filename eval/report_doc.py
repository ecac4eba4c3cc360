"""The report as a document: a list of blocks that report_md and report_html both render.

One builder, two renderers, so the Markdown and the HTML report always say the same thing.
Blocks: ("h", level, text) | ("p", text) | ("list", [text]) | ("table", headers, rows) |
("img", plot name, alt text) | ("pre", text).  Every number comes from the Report (the study sections, eval.report_studies,
from the studies' own outputs).  Tables list accelerators as rows, so a run with any number of
accelerators gives the same columns.
"""
from __future__ import annotations

import json

from eval.compare import Report
from eval.fmt import fmt_acc, fmt_edp, fmt_energy, fmt_time, fmt_vs

CAVEATS = [
    "Energies and latencies come from analytical architecture models (neuro_hw), not from measured "
    "silicon: the SNN is simulated step by step in PyTorch and its activity (events per site and "
    "step) drives the models of the SNN-driven accelerators; the QANN's Workload drives the dense "
    "accelerators.",
    "Every accelerator reads the same Workload and the same technology scaling; the node of each "
    "figure and the memory policy are stated per accelerator. Absolute joules are estimates; ratios "
    "between models are the more robust reading.",
    "The SNN reproduces the QANN's integers by construction; the report measures how far that held "
    "(agreement, max |SNN-QANN|/max|QANN|) on the examples it ran. The SNN ran on a subset of the "
    "held-out data (counts in the tables); FP32 and QANN accuracies use the whole held-out split.",
    "SNN-driven energy uses the activity recorded on the SNN subset (averaged per example) and the "
    "time steps until the network went quiet (T_settle), unless a fixed T was asked for.",
    "Decoders (lm, vqa) are charged for one forward over the whole example (teacher forcing), "
    "divided by the number of tokens that forward predicts; autoregressive generation with a KV "
    "cache, batching and host-side costs are not in these numbers.",
    "Non-spiking units (softmax, LayerNorm, GELU) are charged as digital units on the spiking chips; "
    "the spike-driven fraction says how much of their work and energy is event-driven.",
]


def _acc_label(kind: str) -> str:
    return "mean cosine to FP32" if kind == "embed" else "accuracy"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _bits(label: str) -> str:
    return label.split("-", 1)[0]


def snn_text(acc: dict, ex: dict) -> str:
    """What the SNN did, with its sample size: never a bare accuracy beside full-split numbers."""
    n = acc["snn"]["n_examples"]
    if ex["exact"]:
        return f"SNN = QANN on {'the 1 example' if n == 1 else f'all {n} examples'} it ran (T_settle {ex['t_settle']})"
    settled = f"T_settle {ex['t_settle']}" if ex["settled"] else f"not settled in {ex['steps']} steps"
    return (f"SNN {fmt_acc(acc['snn']['accuracy'])} on {n} examples (QANN {fmt_acc(acc['snn']['qann_accuracy_subset'])} "
            f"on the same; agreement {_pct(ex['agreement'])}, {settled})")


def _policy(p) -> str:
    if not p:
        return "—"
    if isinstance(p, dict):
        return ", ".join(f"{k} {v}" if not isinstance(v, bool) else (k if v else f"no {k}") for k, v in p.items())
    return str(p)


def _ratio_headers(report: Report) -> list[str]:
    return [f"Energy vs {b}" for b in report.comparison["baselines"]]


def _ratio_cells(ratios: dict, accel: str, baselines: list[str]) -> list[str]:
    r = ratios.get(accel, {})
    return ["baseline" if b == accel else fmt_vs(r.get(b)) for b in baselines]


# ---- sections ----------------------------------------------------------------------------------
def verdicts(report: Report) -> list[str]:
    """The verdict sentence of every task, in run order."""
    return [t["verdict"]["text"] for t in report.comparison["tasks"]]


def _breakeven_entries(report: Report) -> list[dict]:
    return [e for e in report.studies if e["kind"] == "breakeven"]


def breakeven_headlines(report: Report) -> list[str]:
    """Verdict sentences of the break-even tasks the main comparison does not cover (the stream
    tasks): eval.breakeven_report.headline, computed from the sweep's own data."""
    from eval.breakeven_report import headline
    main = {t["task"] for t in report.comparison["tasks"]}
    out = []
    for e in _breakeven_entries(report):
        for task, t in e["data"]["tasks"].items():
            if task not in main:
                h = headline(task, t)
                if h:
                    out.append(h + " (Break-even section.)")
    return out


def _breakeven(report: Report) -> list:
    """The break-even section(s): eval.breakeven_report.section of each breakeven entry."""
    from eval.breakeven_report import section
    out = []
    for e in _breakeven_entries(report):
        out += section(e["data"], level=2)
        s = e["source"]
        out.append(("p", f"Source: {s['invocation'] or s['file']} ({s['added_utc']})."))
    return out


def _verdict(report: Report) -> list:
    base = ", ".join(report.comparison["baselines"]) or "none"
    return [("h", 2, "Verdict"), ("list", verdicts(report) + breakeven_headlines(report)),
            ("p", f"Iso-accuracy: the cheapest measured configuration within {report.comparison['tolerance']:g} "
                  f"of the FP32 model's accuracy on each accelerator. Dense baselines (accelerators that run "
                  f"the QANN without spikes): {base}. In the tables, \"Energy vs B\" says how many times less "
                  "or more energy an accelerator needs than baseline B (report.json stores the ratio "
                  f"{report.comparison['ratio_definition']}).")]


def _summary(report: Report) -> list:
    q_rows = []
    for t in report.comparison["tasks"]:
        acc, ex = t["accuracy"], t["exactness"]
        q_rows.append([t["task"], t["model"], _bits(t["main"]), t["coding"],
                       f"{fmt_acc(acc['fp32']['accuracy'])} ({acc['fp32']['n_examples']})",
                       f"{fmt_acc(acc['qann']['accuracy'])} ({acc['qann']['n_examples']})",
                       snn_text(acc, ex)])
    baselines = report.comparison["baselines"]
    policies = {_policy(a["memory_policy"]) for t in report.comparison["tasks"] for a in t["accelerators"].values()}
    one_policy = policies.pop() if len(policies) == 1 else None  # the usual case: stated once, not per row
    e_rows = []
    for t in report.comparison["tasks"]:
        for name, a in t["accelerators"].items():
            e_rows.append([t["task"], name, "SNN" if a["needs_trace"] else "QANN", t["unit"],
                           fmt_energy(a["energy_per_unit_pj"]),
                           *_ratio_cells(t["ratios"]["energy"], name, baselines),
                           fmt_time(a["latency_s"]), _pct(a["static_share"]), _pct(a["offchip_share"]),
                           f"yes ({len(a['spills'])})" if a["spills"] else "no",
                           *([] if one_policy else [_policy(a["memory_policy"])]), a["node"] or "—"])
    return [("h", 2, "Summary"),
            ("p", "Quality of every model form for the main configuration. FP32 and QANN over the whole "
                  "held-out split (example counts in brackets); the SNN over its own subset, compared with "
                  "the QANN on the same examples."),
            ("table", ["Task", "Model", "Bits", "Coding", "FP32 (n)", "QANN (n)", "SNN"], q_rows),
            ("p", "Energy per unit (inference or predicted token) and latency per inference of the main "
                  "configuration on every accelerator of the run (runs: the SNN's events or the QANN "
                  "densely); static = share of fixed power over the "
                  "run's latency, off-chip = share of DRAM traffic, spills = notes of weights or state "
                  "that did not fit on chip (listed under the breakdown)."
                  + (f" Memory policy of every accelerator: {one_policy}." if one_policy else "")),
            ("table", ["Task", "Accelerator", "Runs", "Per", "Energy", *_ratio_headers(report), "Latency",
                       "Static", "Off-chip", "Spills", *([] if one_policy else ["Memory policy"]), "Node"], e_rows)]


def _counts(report: Report) -> list:
    items = []
    for res in report.results.tasks:
        v = res.variant()
        items.append(
            f"{res.task}: {res.normalisation['text']}. FP32 and QANN {_acc_label(res.kind)} over "
            f"{res.fp32['n']} scored items from {res.fp32.get('n_examples')} held-out examples; SNN over "
            f"{v.snn['n']} scored items from {v.snn['n_examples']} held-out examples "
            f"({'until quiet' if v.snn['T'] is None else 'fixed T=' + str(v.snn['T'])}, "
            f"{v.snn['steps']} steps simulated, {v.workload.get('trace_steps_simulated', v.snn['steps'])} charged "
            f"on the SNN-driven accelerators); Workload: {v.workload['n_ops']} ops, {v.workload['macs']:,} MACs, "
            f"{v.workload['params']:,} parameters per inference ({v.workload.get('example', 'one example')}).")
    return [("h", 2, "What each number is over"), ("list", items)]


def _iso(report: Report) -> list:
    rows = []
    baselines = report.comparison["baselines"]
    for t in report.comparison["tasks"]:
        iso = t["iso_accuracy"]
        for name, c in iso["choices"].items():
            if c is None:
                rows.append([t["task"], name, "—", "—", "—", "—", *(["—"] * len(baselines))])
                continue
            flag = "" if c["within_tolerance"] else " (none within tolerance: most accurate shown)"
            rows.append([t["task"], name, _bits(c["label"]), c.get("coding") or "—",
                         f"{fmt_acc(c['accuracy'])}{flag}", f"{fmt_energy(c['energy_per_unit_pj'])}/{t['unit']}",
                         *_ratio_cells(iso["energy_ratio"], name, baselines)])
    tol = report.comparison["tolerance"]
    return [("h", 2, "Iso-accuracy view"),
            ("p", f"The cheapest measured configuration of each accelerator whose accuracy is within "
                  f"{tol:g} (absolute) of the FP32 model's. Dense accelerators run the QANN (or the FP32 "
                  "model); SNN-driven ones run the SNN, credited with the QANN's held-out accuracy only "
                  "where the SNN reproduced the QANN on every example it ran."),
            ("table", ["Task", "Accelerator", "Bits", "Coding", "Accuracy", "Energy",
                       *_ratio_headers(report)], rows)]


def _breakdown(report: Report) -> list:
    out = [("h", 2, "Energy: absolute and breakdown"),
           ("p", "First the energy per unit on a log scale, then the named components as each hardware "
                 "model reports them, as shares of that accelerator's own total (they sum to it)."),
           ("img", "energy_absolute", "Energy per unit of every accelerator, log scale"),
           ("img", "energy_breakdown", "Energy breakdown as shares of each accelerator's total")]
    for t in report.comparison["tasks"]:
        a = t["accelerators"]
        accs = list(a)
        names = sorted({k for x in a.values() for k in x["breakdown_per_unit_pj"]},
                       key=lambda k: -max(x["breakdown_per_unit_pj"].get(k, 0.0) for x in a.values()))
        rows = []
        for k in names:
            row = [k]
            for acc in accs:
                e = a[acc]["breakdown_per_unit_pj"].get(k)
                tot = a[acc]["energy_per_unit_pj"]
                row.append("—" if e is None else f"{fmt_energy(e)} ({100 * e / tot:.1f}%)" if tot else fmt_energy(e))
            rows.append(row)
        rows.append(["total"] + [fmt_energy(a[acc]["energy_per_unit_pj"]) for acc in accs])
        rows.append(["cycles per inference"] + [f"{a[acc]['cycles']:.4g}" for acc in accs])
        rows.append(["EDP per inference"] + [fmt_edp(a[acc]["edp_pj_s"]) for acc in accs])
        out += [("h", 3, f"{t['task']} ({t['main']}, per {t['unit']})"),
                ("table", ["Component"] + accs, rows)]
        extra = []
        for acc in accs:
            sdf = a[acc].get("spike_driven_fraction")
            if sdf:
                extra.append(f"{acc}: spike-driven fraction "
                             + ", ".join(f"{k} {100 * v:.1f}%" if isinstance(v, (int, float)) else f"{k} {v}"
                                         for k, v in sdf.items()))
            extra += [f"{acc}: {n}" for n in a[acc].get("notes", [])]
        if extra:
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
    first_coding = (report.results.options.get("codings") or ["binary"])[0]
    for t in report.comparison["tasks"]:
        for v in t["variants"]:
            snn = ("= QANN" if v["exact"] else f"{fmt_acc(v['snn_accuracy'])} ({_pct(v['agreement'])} agree)")
            for name, e in v["energy_per_unit_pj"].items():
                dense = not t["accelerators"][name]["needs_trace"]
                if dense and v["coding"] != first_coding:
                    continue  # the dense accelerators run the QANN: the same for every coding
                rows.append([t["task"], _bits(v["label"]), "— (QANN)" if dense else v["coding"], name,
                             fmt_acc(v["qann_accuracy"]),
                             "—" if dense else f"{snn}, {v['snn_examples']} ex.",
                             "—" if dense else str(v["t_settle"]), fmt_energy(e),
                             *_ratio_cells(v["energy_ratio"], name, report.comparison["baselines"]),
                             fmt_time(v["latency_s"].get(name))])
        res = report.results.task(t["task"])
        for name, hw in res.fp32_hw.items():
            rows.append([t["task"], "FP32", "—", name, fmt_acc(res.fp32["accuracy"]), "—", "—",
                         fmt_energy(hw.energy_pj / t["tokens_per_inference"]),
                         *(["—"] * len(report.comparison["baselines"])), fmt_time(hw.latency_s)])
    return [("h", 2, "Energy versus accuracy"), ("img", "energy_vs_accuracy", "Energy against accuracy"),
            ("p", "Every measured configuration on every accelerator (energy per unit; FP32 with 32-bit "
                  "weights and activations on the dense accelerators where modelled). QANN accuracy over the "
                  "held-out split; the SNN column says how the SNN compared with it on its subset."),
            ("table", ["Task", "Bits", "Coding", "Accelerator", "QANN", "SNN (subset)", "T_settle", "Energy",
                       *_ratio_headers(report), "Latency"], rows)]


def _per_op(report: Report) -> list:
    out = [("h", 2, "Where the energy goes (per op)"),
           ("p", "The ops with the largest share of any accelerator's energy (per unit). Fixed costs "
                 "that belong to no op (static power, synchronisation, I/O) are in the breakdown above.")]
    for t in report.comparison["tasks"]:
        accs = list(t["accelerators"])
        rows = [[r["name"], r["kind"]] + [f"{fmt_energy(r['energy_pj'].get(a))} ({_pct(r['share'].get(a))})"
                                          for a in accs] for r in t["per_op"]]
        out += [("h", 3, f"{t['task']} ({t['main']})"), ("table", ["Op", "Kind"] + accs, rows)]
    return out


def _provenance(report: Report) -> list:
    r = report.results
    p = r.provenance
    git = p.get("git")
    rows = [["started / finished (UTC)", f"{p['started_utc']} / {p['finished_utc']}"],
            ["wall time of the run", f"{r.wall_s:.1f} s"
             + (f" (CPU time of the process {p['cpu_s']:.1f} s)" if p.get("cpu_s") is not None else "")],
            ["wall (CPU) time per part", ", ".join(
                f"{k} {v:.1f} s" + (f" ({p['stage_cpu_s'][k]:.1f} s)" if k in (p.get("stage_cpu_s") or {}) else "")
                for k, v in (p.get("stage_wall_s") or {}).items())],
            ["git revision", f"{git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}" if git else "not a git checkout"],
            ["snmfm build", _build_text(p.get("build"))],
            ["accelerators", ", ".join(f"{a} ({'SNN-driven' if r.needs_trace(a) else 'dense'})" for a in r.accelerators)],
            ["codings", ", ".join(r.options.get("codings") or ["binary"])],
            ["memory policy", _policy(r.options.get("memory_policy")) if r.options.get("memory_policy")
             else "each accelerator's default (stated per accelerator in the summary)"],
            ["command", " ".join(p.get("command", []))],
            ["seed", str(p["seed"])],
            ["bits (main, variants)", ", ".join(f"W{w}A{a}" for w, a in r.options["bits"])],
            ["T", "until quiet" if r.options["T"] is None else str(r.options["T"])],
            ["held-out examples (FP32 / QANN; SNN)",
             ", ".join(f"{t.task} {t.fp32.get('n_examples')}; {t.variant().snn['n_examples']}" for t in r.tasks)
             + ("" if r.options["limit"] is None else f" (limit {r.options['limit']})")],
            *[[f"{n} (default task)", why] for n, why in (r.options.get("left_out_tasks") or {}).items()],
            ["packages", ", ".join(f"{k} {v}" for k, v in p["packages"].items())],
            ["environment", ", ".join(f"{k}={v}" for k, v in p["environment"].items())]]
    for res in r.tasks:
        c = res.checkpoint
        rows.append([f"{res.task} checkpoint",
                     f"{c.get('path') or '(trained in this run, not saved)'}; sha256 {c.get('sha256') or '—'}"
                     + ("; trained in this run" if c.get("trained_now") else "")])
        cpu = (p.get("task_stage_cpu_s") or {}).get(res.task) or {}
        rows.append([f"{res.task} wall time per stage" + (" (CPU time of the process)" if cpu else ""),
                     ", ".join(f"{k} {v:.1f} s" + (f" ({cpu[k]:.1f} s)" if k in cpu else "")
                               for k, v in res.wall_s.items())])
        for n in res.notes:
            rows.append([f"{res.task} note", n])
    hw = json.dumps(r.options["hardware"], indent=1, sort_keys=True)
    return [("h", 2, "Provenance"), ("table", ["", ""], rows),
            ("h", 3, "Hardware configurations (echo)"), ("pre", hw)]


def _build_text(b: dict | None) -> str:
    if not b:
        return "not recorded"
    rev = b.get("git_revision") or "unknown revision"
    dirty = " (uncommitted changes)" if b.get("git_dirty") else ""
    return f"version {b.get('version') or '?'}, git {rev}{dirty} ({b.get('source', '?')})"


def build_document(report: Report) -> list:
    r = report.results
    git = r.provenance.get("git")
    build = r.provenance.get("build") or {}
    rev = (git or {}).get("commit") or build.get("git_revision")
    head = (f"Run of {r.provenance['started_utc']} ({r.wall_s:.0f} s, seed {r.options['seed']}"
            + (f", snmfm {build['version']}" if build.get("version") else "")
            + (f", git {rev[:10]}" if rev else "") + f"), accelerators: {', '.join(r.accelerators)}. "
            "Every number below was measured or simulated in this run; none is copied in. Energies are "
            "per inference, or per predicted token for decoders; latencies are per inference.")
    if _breakeven_entries(report):
        head += (" The break-even section follows the summary: every coding on every accelerator, the "
                 "cheapest configuration within the tolerance per accelerator, and on streams the energy "
                 "per frame against the change rate.")
    kinds = ", ".join(dict.fromkeys(e["kind"] for e in report.studies if e["kind"] != "breakeven"))
    if kinds:
        head += (f" Study sections ({kinds}) follow the main comparison; each says where its numbers "
                 "come from (this run, or the study output added to the report) and its settings.")
    doc = [("h", 1, "snmfm energy report: " + ", ".join(r.accelerators)), ("p", head)]
    doc += _verdict(report) + _summary(report) + _breakeven(report) + _counts(report) + _iso(report)
    doc += _breakdown(report)
    doc += _acc_vs_t(report) + _variants(report) + _per_op(report)
    if report.studies:
        from eval.report_studies import study_sections
        doc += study_sections(report.studies)
    doc += [("h", 2, "What is modelled and what is not"), ("list", CAVEATS)]
    doc += _provenance(report)
    return doc
