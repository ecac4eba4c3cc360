"""The study sections of the report document (blocks as in eval.report_doc).

One section per study kind present in the report's `studies` (eval.studies), each entry with where
it came from and the settings it ran with.  Every number is read from the study's own output.
"""
from __future__ import annotations

from eval.plots_studies import (
    entry_plots,
    front_indices,
    point_label,
    speculative_winners,
)
from eval.fmt import fmt_acc, fmt_energy, fmt_ratio, fmt_time

ACCEL_SHORT = {None: "—"}   # any other accelerator name stands for itself (ACCEL_SHORT.get(name, name))


def _pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage; shares below 0.1% with two significant digits (not as 0.0%)."""
    if x is None:
        return "—"
    if 0 < abs(x) < 1e-3:
        return f"{100 * x:.2g}%"
    return f"{100 * x:.{digits}f}%"


def _num(x, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _setting(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_setting(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_setting(x)}" for k, x in v.items()) + "}"
    return str(v)


def _about(entry: dict) -> list:
    """Where an entry came from and what it ran with."""
    s = entry["source"]
    if s["origin"] == "run":
        src = f"Run by {s['invocation']} ({s['added_utc']})."
    else:
        src = f"Added from {s['file']} (sha256 {s['sha256'][:12]}…, {s['added_utc']})."
    wall = entry["data"].get("wall_s")
    times = entry["data"].get("time_s")
    if wall is None and isinstance(times, dict):  # bench_compress: seconds per task and in total
        wall = times.get("total")
    if isinstance(wall, (int, float)):
        src += f" The study took {wall:.0f} s of wall time where it ran."
    settings = "; ".join(f"{k} {_setting(v)}" for k, v in entry["settings"].items())
    return [("p", src), ("p", f"Settings: {settings}.")]


def _img(entry: dict, what: str, alt: str) -> list:
    plots = entry_plots(entry)
    return [("img", plots[what][0], alt)] if what in plots else []


# ---- speculative decoding ------------------------------------------------------------------------
SPECULATIVE_TEXT = (
    "A draft model proposes k tokens, the target verifies them in one pass and keeps the longest "
    "agreeing prefix plus its own next token, so greedy speculative decoding returns the target's own "
    "greedy output (exactness table). Energy and latency per generated token charge every call of the "
    "schedule -- draft calls, verification passes, rejected drafts (wasted share) and, when draft and "
    "target sit on different accelerators, the link between them -- on the accelerator each member "
    "sits on. SNN members on the neuromorphic chip are driven by the spikes they recorded; on the "
    "conventional accelerator a member runs as its QANN (the same integers). Rows whose draft and "
    "target accelerators differ are the heterogeneous pairings. Wall speed-ups are CPU (PyTorch) "
    "timings on the machine that ran the study, not accelerator latencies.")


def _speed_of(data: dict, kind: str) -> dict | None:
    """The speed row of the energy runs' members: SNN target with the SNN draft of that kind."""
    return next((r for r in data["speed"] if r["target"] == "snn" and r["draft"] == kind
                 and r["draft_form"] == "snn"), None)


def _speculative(entry: dict, level: int) -> list:
    data = entry["data"]
    out = _about(entry)
    a = data["args"]
    if data["energy"]:
        plain = {r["target_chip"]: r for r in data["energy"] if r["draft"] == "plain"}
        win = speculative_winners(data)
        rows = []
        for r in data["energy"]:
            sp = _speed_of(data, r["draft"]) if r["draft"] != "plain" else None
            base = plain.get(r["target_chip"])
            rows.append([
                "plain (target alone)" if r["draft"] == "plain" else r["draft"], ACCEL_SHORT.get(r["draft_chip"], r["draft_chip"]),
                r["target_chip"], str(r["tokens"]), fmt_energy(1e3 * r["energy_nj_per_token"]),
                "—" if base is None else f"{r['energy_nj_per_token'] / base['energy_nj_per_token']:.3g}×",
                fmt_time(1e-6 * r["latency_us_per_token"]), _pct(r["draft_share"]), _pct(r["wasted_share"]),
                fmt_energy(r["link_pj_per_token"]),
                "—" if sp is None else f"{sp['acceptance_rate']:.2f}",
                "—" if sp is None else f"{sp['mean_accepted_length']:.2f}",
                "—" if sp is None else fmt_ratio(sp["speedup_wall"]),
                "★" if r is win[r["target_chip"]] else ""])
        n_prompts = a.get("energy_prompts")
        out += [("h", level, "Energy and latency per generated token, every pairing"),
                *_img(entry, "energy", "Energy per generated token of every draft/target pairing"),
                ("p", f"SNN target and SNN drafts, k = {a['k']}"
                      + (f", {n_prompts} held-out prompt(s)" if n_prompts is not None else "")
                      # bench_speculative measures speed and energy on the language-model task only
                      + (" of code-stdlib" if "code-stdlib" in a["tasks"] else "")
                      + ". 'x plain' is the energy per token relative to plain decoding of the target on the "
                      "same accelerator (below 1: speculative decoding saves energy). Acceptance rate, mean "
                      "accepted length (drafts kept per round) and wall speed-up are those of the same "
                      "members (SNN target, SNN draft) in the speed runs."),
                ("table", ["Draft", "Draft on", "Target on", "Tokens", "E/token", "× plain", "Latency/token",
                           "Draft share", "Wasted share", "Link/token", "Acceptance", "Mean accepted",
                           "Wall speed-up", "Least E"], rows)]
        items = []
        for chip, r in win.items():
            base = plain.get(chip)
            what = ("plain decoding (no draft pays for itself)" if r["draft"] == "plain"
                    else f"{r['draft']} draft on the {r['draft_chip']} accelerator")
            cmp = "" if base is None or r is base else (
                f", {r['energy_nj_per_token'] / base['energy_nj_per_token']:.3g}× plain decoding's "
                f"{fmt_energy(1e3 * base['energy_nj_per_token'])}")
            items.append(f"Target on the {chip} accelerator: least energy per token with {what}: "
                         f"{fmt_energy(1e3 * r['energy_nj_per_token'])}{cmp}; latency "
                         f"{fmt_time(1e-6 * r['latency_us_per_token'])} per token.")
        best = min(data["energy"], key=lambda r: r["energy_nj_per_token"])
        items.append(f"Least energy per token overall: {best['draft']}"
                     + (f" draft on {best['draft_chip']}" if best["draft_chip"] else "")
                     + f", target on {best['target_chip']} ({fmt_energy(1e3 * best['energy_nj_per_token'])}).")
        fastest = min(data["energy"], key=lambda r: r["latency_us_per_token"])
        items.append(f"Least latency per token: {fastest['draft']}"
                     + (f" draft on {fastest['draft_chip']}" if fastest["draft_chip"] else "")
                     + f", target on {fastest['target_chip']} ({fmt_time(1e-6 * fastest['latency_us_per_token'])}).")
        out.append(("list", items))
    if data["speed"]:
        rows = [[r["target"], r["draft"], r["draft_form"], str(r["prompts"]), f"{r['acceptance_rate']:.2f}",
                 f"{r['mean_accepted_length']:.2f}", f"{r['target_passes_per_token']:.2f}",
                 f"{r['wall_ms_per_token']:.3g} ms", f"{r['plain_wall_ms_per_token']:.3g} ms",
                 fmt_ratio(r["speedup_wall"]), fmt_ratio(r["speedup_cpu"])] for r in data["speed"]]
        out += [("h", level, "Acceptance and speed (CPU timings)"),
                ("p", f"Every target form with every draft (k = {a['k']}"
                      + ("; code-stdlib" if "code-stdlib" in a["tasks"] else "")
                      + "); speed-up over plain cached greedy decoding of the same target on the same prompts "
                      "(wall clock and process CPU time)."),
                ("table", ["Target", "Draft", "Draft form", "Prompts", "Acceptance", "Mean accepted",
                           "Target passes/token", "Wall/token", "Plain wall/token", "Wall speed-up",
                           "CPU speed-up"], rows)]
    if data["exactness"]:
        rows = [[r["task"], r["target"], r["draft"], r["draft_form"], f"{r['identical']}/{r['prompts']}",
                 "—" if r.get("uncached_identical") is None
                 else f"{r['uncached_identical']}/{r.get('plain_prompts', r['prompts'])}"]
                for r in data["exactness"]]
        out += [("h", level, "Exactness"),
                ("p", "Held-out prompts on which greedy speculative decoding returned exactly the target's "
                      "own greedy output (and, for FP32/QANN targets, plain cached decoding equalled "
                      "uncached decoding)."),
                ("table", ["Task", "Target", "Draft", "Draft form", "Identical", "Cached = uncached"], rows)]
    if data.get("k_sweep"):
        rows = [[r["draft"], str(r["k"]), f"{r['acceptance_rate']:.2f}", fmt_energy(1e3 * r["energy_nj_per_token"]),
                 fmt_energy(1e3 * r["plain_nj_per_token"]), f"{100 * r['saving']:+.1f}%"] for r in data["k_sweep"]]
        out += [("h", level, "Energy per token against k"),
                *_img(entry, "k", "Energy per generated token against draft length k"),
                ("p", "QANN target and QANN drafts on the conventional accelerator; saving against plain "
                      "decoding (negative: speculative decoding costs more)."),
                ("table", ["Draft", "k", "Acceptance", "E/token", "Plain E/token", "Saving"], rows)]
    return out


# ---- cascades ----------------------------------------------------------------------------------
CASCADE_TEXT = (
    "A cascade answers each query with its cheapest member and escalates to the next member only "
    "when a self-test on the answer (confidence, margin, entropy, a probe, agreement of two members) "
    "fails. Thresholds are calibrated on the calib split with each scenario's energies as costs; the "
    "operating point is the variant with the least calib energy that met the accuracy tolerance on "
    "calib, then charged on the test split. Scenarios: conventional (every member a QANN on the "
    "conventional accelerator), neuromorphic (every member an SNN on the neuromorphic chip), mixed "
    "(the cheaper members as SNNs on the chip, the reference where the scenario's reference row says; "
    "transfers charged). Curves: the full ladder with each self-test's threshold swept on test.")


def _cascade(entry: dict, level: int) -> list:
    d = entry["data"]
    c = d["calibration"]
    out = [("h", level, f"{d['task']} ({d.get('readout', '')}, {d['bits']}; calib n={c['n_calib']}, "
                        f"test n={c['n_test']})")] + _about(entry)
    out += _img(entry, "curves", f"Cascade accuracy versus energy per query, {d['task']}")
    rows = []
    accs = list(d.get("accelerators") or d["members"][0]["hw"])   # the accelerators the study was given
    for m in d["members"]:
        hw = m["hw"]
        rows.append([m["name"] + (" (reference)" if m["name"] == d["reference"] else ""), f"{m['params']:,}",
                     f"{m['macs']:,}", fmt_acc(m["accuracy"].get("calib")), fmt_acc(m["accuracy"]["test"]),
                     *[fmt_energy(hw[a]["energy_pj"]) for a in accs], *[fmt_time(hw[a]["latency_s"]) for a in accs],
                     _num(m["t_settle"], "d"), _pct(m["snn_agreement"])])
    out.append(("table", ["Member", "Params", "MACs", "Calib acc.", "Test acc.", *[f"E/query {a}" for a in accs],
                          *[f"Latency {a}" for a in accs], "T_settle", "SNN=QANN"], rows))
    rows = []
    for sc, s in d["scenarios"].items():
        ref, ch = s["reference"], s["chosen"]
        n_ok = sum(1 for v in s["variants"] if v["feasible"])
        cells = [sc, f"{ref['member']} on {ref['placement']}", fmt_acc(ref["accuracy"]["test"]),
                 fmt_energy(ref["energy_pj"])]
        if ch is None:
            cells += [f"none ({n_ok}/{len(s['variants'])} variants feasible on calib)"] + ["—"] * 6
        else:
            t = ch["test"]
            cells += [f"{ch['ladder']}, {ch['self_test']} ({ch['method']}, tol {ch['tolerance']:g})",
                      f"{fmt_acc(t['accuracy'])} ({0.0 - 100 * t['accuracy_drop']:+.2f} pt)"
                      if t.get("accuracy_drop") is not None else fmt_acc(t["accuracy"]),
                      fmt_energy(t["energy_pj"]), f"{t['energy_ratio']:.3g}×", f"{t['latency_ratio']:.3g}×",
                      _pct(t["escalation_rate"]),
                      f"{fmt_energy(t['self_test_pj'])} ({_pct(t['self_test_share'])})"]
        acc = s["acceptance"]
        cells.append(("met" if acc["met"] else "not met") + "".join(
            f"; {k.replace('_', ' ')}: {'yes' if v else 'no'}" for k, v in acc.items() if k != "met"))
        rows.append(cells)
    out += [("p", "Operating point per scenario against the reference member alone (energy and latency "
                  "ratios: cascade / reference, test split)."),
            ("table", ["Scenario", "Reference", "Ref. acc.", "Ref. E/query", "Chosen (ladder, self-test)",
                       "Test acc. (vs ref.)", "E/query", "E vs ref.", "Latency vs ref.", "Escalation rate",
                       "Self-test cost/query (share)", "Target"], rows)]
    items = []
    o = d.get("online_check")
    if o:
        items.append(f"Chosen conventional cascade run for real on the test split ({o['ladder']}, "
                      f"{o['self_test']}): accuracy {fmt_acc(o['accuracy'])}, escalation rate "
                      f"{_pct(o['escalation_rate'])}, energy {fmt_energy(o['energy_pj'])}/query; matches the "
                      f"offline replay: {'yes' if o['matches_offline'] else 'NO'}.")
    items += list(d.get("notes", []))
    if items:
        out.append(("list", items))
    return out


# ---- co-optimisation ---------------------------------------------------------------------------
COOPT_TEXT = (
    "Every input configuration (resolution and patch stride with a model trained per shape, token "
    "pruning or merging, context length) at every bit width, and on each SNN-driven accelerator at every "
    "fixed time step T below the settle point. A dense accelerator's accuracy is the QANN's on the test "
    "split (T plays no part); an SNN-driven one's is the SNN's at that T on its subset. The front is the "
    "Pareto set; the iso-accuracy point is the front's cheapest within the study's tolerance of the "
    "default configuration's accuracy, each compared with the default (native input, first bit width, "
    "T_settle on the SNN-driven accelerators).")


def _coopt(entry: dict, level: int) -> list:
    d = entry["data"]
    out = [("h", level, d["task"])] + _about(entry)
    out += _img(entry, "fronts", f"Co-optimisation Pareto fronts, {d['task']}")
    rows, front_rows = [], []
    for acc, f in d["fronts"].items():
        dft = f["default"]
        cells = [acc, f"{f['n_points']} / {len(f['front'])}", point_label(dft), fmt_acc(dft["accuracy"]),
                 fmt_energy(dft["energy_pj"])]
        for key in ("iso_accuracy", "best_accuracy"):
            p = f[key]
            if p is None:
                cells += ["none", "—", "—", "—"]
                continue
            cells += [point_label(p), f"{fmt_acc(p['accuracy'])} ({100 * (p['accuracy'] - dft['accuracy']):+.2f} pt)",
                      fmt_energy(p["energy_pj"]), f"{p['energy_pj'] / dft['energy_pj']:.3g}×"]
        rows.append(cells)
        for p in f["front"]:
            front_rows.append([acc, p["config"], p["bits"], "—" if p["T"] is None else str(p["T"]),
                               fmt_acc(p["accuracy"]), fmt_energy(p["energy_pj"]), fmt_time(p["latency_s"])])
    out += [("table", ["Accelerator", "Points / on front", "Default", "Default acc.", "Default E",
                       "Iso-accuracy point", "Acc. (vs default)", "E", "E vs default",
                       "Most accurate point", "Acc. (vs default)", "E", "E vs default"], rows),
            ("p", "The Pareto fronts (energy per inference, cheapest first):"),
            ("table", ["Accelerator", "Input", "Bits", "T", "Accuracy", "E/inference", "Latency"], front_rows)]
    return out


# ---- compression ------------------------------------------------------------------------------
COMPRESSION_TEXT = (
    "Uniform QANNs (W8A8, W4A4, W2A2) and mixed-precision plans (the exact integer program of "
    "plan_bits) given the budgets of uniform W4A4 and W8A8 and one between them, per target: model "
    "size (weight bits), or energy per inference on the conventional accelerator or the neuromorphic "
    "chip. Predicted cost is the per-layer cost table's; for the energy targets the simulated energy "
    "is the plan's own Workload (and on the chip its own SNN trace). Accuracy is on the test split. "
    "The Pareto front of each target is over all of its points.")


def _cost(v, unit: str) -> str:
    if v is None:
        return "—"
    return fmt_energy(v) if unit == "pJ" else f"{v:,.0f} {unit}"


def _compression(entry: dict, level: int) -> list:
    d = entry["data"]
    out = _about(entry)
    for task in dict.fromkeys(r["task"] for r in d["rows"]):
        rs = [r for r in d["rows"] if r["task"] == task]
        out += [("h", level, task)] + _img(entry, task, f"Compression accuracy versus cost, {task}")
        rows, fronts = [], []
        for target in dict.fromkeys(r["target"] for r in rs):
            tr = [r for r in rs if r["target"] == target]
            pts = [(r["simulated"] if r.get("simulated") is not None else r["cost"], r["accuracy"]) for r in tr]
            front = {id(tr[i]) for i in front_indices(pts)}
            fronts.append(f"{target}: " + ", ".join(tr[i]["point"] for i in front_indices(pts)))
            for r in tr:
                rows.append([target, r["point"], r["kind"], _cost(r.get("budget"), r["unit"]),
                             _cost(r["cost"], r["unit"]), _cost(r.get("simulated"), r["unit"]),
                             fmt_acc(r["accuracy"]), f"{100 * (r['accuracy'] - r['fp32_accuracy']):+.2f} pt",
                             f"{r['avg_w_bits']:.2f}", f"{r['avg_a_bits']:.2f}", "yes" if id(r) in front else ""])
        out += [("p", f"FP32 accuracy {fmt_acc(rs[0]['fp32_accuracy'])}."),
                ("table", ["Target", "Point", "Kind", "Budget", "Predicted cost", "Simulated", "Accuracy",
                           "vs FP32", "Avg W bits", "Avg A bits", "On front"], rows),
                ("list", ["Pareto front (cheapest first) -- " + f for f in fronts])]
        cmp = [c for c in d.get("budget_comparison", []) if c["task"] == task]
        if cmp:
            unit = {r["target"]: r["unit"] for r in rs}
            rows = [[c["target"], c["point"], _cost(c["budget"], unit.get(c["target"], "")),
                     _cost(c["mixed_cost"], unit.get(c["target"], "")), fmt_acc(c["mixed_accuracy"]),
                     "none fits" if c["uniform"] is None else c["uniform"],
                     _cost(c["uniform_cost"], unit.get(c["target"], "")), fmt_acc(c["uniform_accuracy"]),
                     "yes" if c["within_budget"] else "NO", "yes" if c["mixed_at_least_uniform"] else "NO"]
                    for c in cmp]
            out += [("p", "At each mixed plan's budget, the most accurate uniform plan that fits the same "
                          "budget (simulated energy for the energy targets):"),
                    ("table", ["Target", "Mixed point", "Budget", "Mixed cost", "Mixed acc.", "Best uniform within",
                               "Its cost", "Its acc.", "Mixed within budget", "Mixed >= uniform"], rows)]
    bad = d.get("mixed_below_uniform_at", d.get("mixed_worse_than_uniform"))
    if bad is not None:
        out.append(("p", "Mixed precision less accurate than a uniform plan at the same budget: "
                         + ("; ".join(bad) if bad else "nowhere") + "."))
    p = d.get("prune")
    if p:
        removed = p.get("removed") or {}
        rows = [["MACs per inference", f"{p['macs_before']:,} → {p['macs_after']:,} "
                                       f"(−{_pct(p['mac_reduction'])})"]]
        if "params_before" in p:
            rows.append(["parameters", f"{p['params_before']:,} → {p['params_after']:,}"])
        if removed:
            rows.append(["removed", _removed(removed)])
        rows += [["FP32 accuracy (unpruned)", fmt_acc(p["fp32_accuracy"])],
                 ["pruned, before recovery", fmt_acc(p["pruned_accuracy"])],
                 ["after recovery fine-tuning" + (f" ({p['recovery_steps']} steps)" if "recovery_steps" in p else ""),
                  fmt_acc(p["recovered_accuracy"])],
                 ["recovered, W8A8 QANN", fmt_acc(p["recovered_w8a8_accuracy"])],
                 ["SNN == QANN after pruning", "yes" if p["snn_equals_qann"] else "NO"]]
        # bench_compress's pruning check runs on vision-digits (its output does not name the task)
        task = p.get("task", "vision-digits, the pruning check of the benchmark")
        out += [("h", level, f"Structured pruning ({task})"),
                ("p", "Attention heads and MLP channels removed by Taylor importance, then recovery "
                      "fine-tuning by distillation from the unpruned FP32 model; MACs from the Workload."),
                ("table", ["", ""], rows)]
    return out


def _removed(removed: dict) -> str:
    """What pruning removed, counted: {"heads": {block: [indices]}, ...} -> "heads 2 (block: 1, ...)"."""
    parts = []
    for k, v in removed.items():
        if isinstance(v, dict):
            n = {b: len(x) if isinstance(x, (list, tuple)) else x for b, x in v.items()}
            parts.append(f"{k} {sum(n.values())} (" + ", ".join(f"{b}: {c}" for b, c in n.items()) + ")"
                         if n else f"{k} 0")
        elif isinstance(v, (list, tuple)):
            parts.append(f"{k} {len(v)}" + (f" ({', '.join(map(str, v))})" if v else ""))
        else:
            parts.append(f"{k} {v}")
    return "; ".join(parts)


SECTIONS = {
    "speculative": ("Study: speculative decoding", SPECULATIVE_TEXT, _speculative),
    "cascade": ("Study: cascades", CASCADE_TEXT, _cascade),
    "cooptimize": ("Study: co-optimisation of input, bits and time steps", COOPT_TEXT, _coopt),
    "compression": ("Study: compression (mixed precision and pruning)", COMPRESSION_TEXT, _compression),
}


def study_sections(entries: list[dict]) -> list:
    """Document blocks of every study in `entries`, one h2 section per kind."""
    out = []
    for kind, (title, text, render) in SECTIONS.items():
        es = [e for e in entries if e["kind"] == kind]
        if not es:
            continue
        out += [("h", 2, title), ("p", text)]
        for e in es:
            if kind in ("speculative", "compression") and len(es) > 1:
                out.append(("h", 3, e["key"]))
                out += render(e, 4)
            else:
                out += render(e, 3)
    return out
