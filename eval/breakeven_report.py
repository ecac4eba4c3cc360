"""The break-even study as plots, report blocks and console tables (data from eval.breakeven).

For the report (eval.report_doc block format: ("h", level, text) | ("p", text) | ("table",
headers, rows) | ("img", plot name, alt) | ("list", items)):

    from eval.breakeven_report import plots, section
    plots(data)            -> {plot name: (alt text, draw() -> PNG bytes)}
    section(data, level=2) -> blocks (the img blocks name the plots above)
    console_tables(data)   -> [(title, headers, rows)]  (the CLI's tables)
    write_outputs(data, out_dir) -> files written (breakeven.json, breakeven.md, PNGs)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from eval.figures import FONT_PT, MARKERS, PALETTE, grid, png
from eval.fmt import fmt_acc, fmt_energy, fmt_ratio, fmt_time

CODING_COLORS = {"binary": PALETTE[0], "graded": PALETTE[2], "sigma-delta": PALETTE[1]}
TEXT = (
    "Each point is one configuration (coding, activation bits, memory policy{rates}) charged on one "
    "SNN-driven accelerator, against a dense baseline at the same bits and memory policy: energy "
    "ratio baseline / spiking (above 1 the spiking accelerator wins) against the synaptic operations "
    "per stored weight per inference (events x fan-out / weights). One SNN run per coding, bits{and_rate} "
    "is charged on every accelerator and policy. Accuracy: the SNN reproduces the QANN integer for "
    "integer (agreement on every example it ran), so a configuration's accuracy is its QANN's on the "
    "held-out split; iso-accuracy means within {tol:g} point(s) of FP32. The ratio plot leaves out "
    "still streams (0% change), where the baseline skips every frame.")
STREAM_TEXT = (
    "Streams: energy per frame in steady state (frames 1..15 of each 16-frame clip). The dense "
    "baseline gets the reuse it can have exactly: a frame identical to the previous one costs only "
    "change detection (one 8-bit compare per pixel); otherwise the patch embedding and block 0's "
    "LayerNorm and QKV rows are recomputed only for patches that changed (the class token's row is "
    "reused), and everything from the first attention product on is recomputed. Binary and graded "
    "codings keep no state between frames, so their per-frame cost does not depend on the change "
    "rate (run once per bit width); sigma-delta runs once per rate. The change rate on the x axis "
    "is the one measured on the clips that ran. Crossings are interpolated in log(ratio) between "
    "the two measured rates that bracket them.")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def _eps_floor(pts: list[dict]) -> float:
    pos = [p["events_per_synapse"] for p in pts if p["events_per_synapse"] > 0]
    return min(pos) / 3 if pos else 1e-3


# ---- plots --------------------------------------------------------------------------------------
def ratio_plot(data: dict, task: str) -> bytes:
    """Energy ratio (baseline / spiking) against events per synapse, log-log, break-even at 1: one
    panel per baseline and memory policy; colour = coding, marker = accelerator."""
    t = data["tasks"][task]
    panels = [(b, p) for b in t["baselines_accelerators"] for p in t["policies"]]
    fig, axes = grid(max(1, len(panels)), width=5.0, height=4.0)
    for ax, (base, pol) in zip(axes, panels):
        # identical frames (rate 0) are skipped by the baseline: a ratio of ~0 there says nothing
        pts = [p for p in t["points"] if p["policy"] == pol and not (t["stream"] and p["measured_rate"] == 0)]
        floor = _eps_floor(pts)
        for i, acc in enumerate(t["spiking"]):
            for coding, color in CODING_COLORS.items():
                sel = [p for p in pts if p["accelerator"] == acc and p["coding"] == coding
                       and p["ratio"].get(base, 0) > 0 and p["events_per_synapse"] > 0]
                if sel:
                    ax.scatter([p["events_per_synapse"] for p in sel], [p["ratio"][base] for p in sel],
                               color=color, marker=MARKERS[i % len(MARKERS)], s=36, alpha=0.8,
                               label=f"{coding} on {acc}")
        ax.axhline(1.0, color="black", lw=1.2, ls="--", label="break-even")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(left=floor)
        ax.set_xlabel("synaptic ops per weight per inference", fontsize=FONT_PT)
        ax.set_ylabel(f"energy {base} / spiking", fontsize=FONT_PT)
        ax.set_title(f"{task}: vs {base}, weights {pol}", fontsize=FONT_PT + 1)
        ax.tick_params(labelsize=FONT_PT)
        ax.grid(True, which="major", alpha=0.3)
    if panels:
        axes[0].legend(fontsize=FONT_PT - 1, loc="best")
    return png(fig)


def stream_energy_plot(data: dict, task: str) -> bytes:
    """Energy per frame against the measured change rate (symlog x, log y): sigma-delta on every
    spiking accelerator (one line per activation bits) and every dense baseline with its reuse; one
    panel per memory policy."""
    t = data["tasks"][task]
    fig, axes = grid(len(t["policies"]), width=6.0, height=4.4, max_cols=2)
    styles = ["-", "--", ":", "-."]
    bits = sorted({p["a_bits"] for p in t["points"]} | {b["a_bits"] for b in t["baselines"]}, reverse=True)
    order = t["spiking"] + t["baselines_accelerators"]
    for ax, pol in zip(axes, t["policies"]):
        for acc in order:
            color = PALETTE[order.index(acc) % len(PALETTE)]
            for j, b in enumerate(bits):
                if acc in t["spiking"]:
                    sel = [p for p in t["points"] if p["accelerator"] == acc and p["coding"] == "sigma-delta"
                           and p["policy"] == pol and p["a_bits"] == b]
                    name = f"{acc} sigma-delta A{b}"
                else:
                    sel = [p for p in t["baselines"] if p["accelerator"] == acc and p["policy"] == pol
                           and p["a_bits"] == b]
                    name = f"{acc} A{b} (reuse)"
                sel = sorted(sel, key=lambda p: p["measured_rate"])
                if sel:
                    ax.plot([100 * p["measured_rate"] for p in sel], [max(p["energy_pj"], 1e-3) / 1e6 for p in sel],
                            color=color, ls=styles[j % len(styles)], marker="o" if acc in t["spiking"] else "s",
                            ms=4, label=name)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("log")
        ax.set_xlabel("pixels changed per frame (%), measured", fontsize=FONT_PT)
        ax.set_ylabel("energy per frame (µJ)", fontsize=FONT_PT)
        ax.set_title(f"{task}: weights {pol}", fontsize=FONT_PT + 1)
        ax.tick_params(labelsize=FONT_PT)
        ax.grid(True, which="major", alpha=0.3)
    if axes:
        axes[0].legend(fontsize=FONT_PT - 2, loc="best", ncol=1)
    return png(fig)


def plots(data: dict) -> dict:
    """{plot name: (alt text, draw)} of every break-even plot of `data`."""
    out = {}
    for task, t in data["tasks"].items():
        if t["points"] and t["baselines_accelerators"]:
            out[f"breakeven_{_safe(task)}_ratio"] = (
                f"{task}: energy ratio against synaptic ops per weight, break-even line at 1",
                lambda task=task: ratio_plot(data, task))
        if t["stream"] and t["points"]:
            out[f"breakeven_{_safe(task)}_stream"] = (
                f"{task}: energy per frame against the change rate",
                lambda task=task: stream_energy_plot(data, task))
    return out


# ---- tables and sentences -----------------------------------------------------------------------
def _rate(r) -> str:
    return "—" if r is None else f"{100 * r:.3g}%"


def _cell(best: dict | None) -> str:
    if best is None:
        return "none within tolerance"
    return f"{fmt_energy(best['energy_pj'])} ({best['config']})"


def iso_table(t: dict) -> tuple[list, list]:
    """Cheapest configuration within tolerance of FP32 per accelerator (rows: change rates)."""
    headers = (["change rate (asked / measured)"] if t["stream"] else []) + ["FP32"] + t["accelerators"]
    rows = []
    measured = dict(zip(t["rates"], t["measured_rates"])) if t["stream"] else {}
    for f in t["fp32"]:
        r = f["rate"]
        row = [f"{_rate(r)} / {_rate(measured[r])}"] if t["stream"] else []
        row.append(fmt_acc(f["accuracy"]))
        for a in t["accelerators"]:
            best = next(i["best"] for i in t["iso_accuracy"] if i["accelerator"] == a and i["rate"] == r)
            row.append(_cell(best))
        rows.append(row)
    return headers, rows


def stream_table(t: dict, policy: str) -> tuple[list, list]:
    """Energy per frame of sigma-delta (each spiking accelerator, each bits) and of each baseline
    (with reuse), against the change rate, under one memory policy."""
    bits = sorted({p["a_bits"] for p in t["points"]}, reverse=True)
    sd = [a for a in t["spiking"] if any(p["accelerator"] == a and p["coding"] == "sigma-delta" for p in t["points"])]
    cols = [(a, b) for a in sd for b in bits]   # chips that cannot run sigma-delta: in the coding table
    headers = ["change rate (measured)"] + [f"{a} σΔ A{b}" for a, b in cols] + \
              [f"{d} A{b} (reuse)" for d in t["baselines_accelerators"] for b in bits]
    rows = []
    for r, m in zip(t["rates"], t["measured_rates"]):
        row = [_rate(m)]
        for a, b in cols:
            p = next((p for p in t["points"] if p["accelerator"] == a and p["a_bits"] == b and p["rate"] == r
                      and p["policy"] == policy and p["coding"] == "sigma-delta"), None)
            row.append(fmt_energy(p["energy_pj"]) if p else "—")
        for d in t["baselines_accelerators"]:
            for b in bits:
                p = next((p for p in t["baselines"] if p["accelerator"] == d and p["a_bits"] == b
                          and p["rate"] == r and p["policy"] == policy), None)
                row.append(fmt_energy(p["energy_pj"]) if p else "—")
        rows.append(row)
    return headers, rows


def crossing_sentences(t: dict) -> list[str]:
    """Where sigma-delta breaks even with the baseline at the same bits and policy, and where the
    iso-accuracy verdict flips, as sentences."""
    out = []
    sd = [c for c in t["crossings"] if c["coding"] == "sigma-delta"]
    for c in sorted(sd, key=lambda c: (c["accelerator"], c["baseline"], c["policy"], -c["a_bits"])):
        side = "below" if c["spiking_wins_below"] else "above"
        out.append(f"sigma-delta A{c['a_bits']} on {c['accelerator']} vs {c['baseline']} ({c['policy']} weights): "
                   f"break-even at {_rate(c['x'])} of pixels changing per frame (between measured "
                   f"{_rate(c['between'][0])} and {_rate(c['between'][1])}); the spiking chip wins {side} it.")
    if t["stream"] and not sd:
        out.append("sigma-delta does not cross the dense baseline at the same bits and policy anywhere in "
                   "the measured change-rate range.")
    for v in t["verdicts"]:
        for f in v["flips"]:
            side = "below" if f["spiking_wins_below"] else "above"
            out.append(f"Iso-accuracy verdict ({v['policy']} weights), {v['accelerator']} vs {v['baseline']}: "
                       f"flips at {_rate(f['x'])} of pixels changing per frame; the spiking chip wins {side} it.")
    return out


def verdict_sentences(t: dict) -> list[str]:
    """One sentence per spiking accelerator, baseline and policy: the iso-accuracy ratio (at each
    rate on streams, summarised by its range)."""
    out = []
    for v in t["verdicts"]:
        rs = [p for p in v["per_rate"] if p["ratio"] is not None]
        if not rs:
            accs = [p["accuracy"] for p in t["points"] + t["baselines"] if p["policy"] == v["policy"]]
            fp = max(f["accuracy"] for f in t["fp32"])
            out.append(f"{v['accelerator']} vs {v['baseline']} ({v['policy']} weights): no configuration within "
                       f"{100 * t['tolerance']:g} point(s) of FP32 ({fmt_acc(fp)}; best quantized "
                       f"{fmt_acc(max(accs) if accs else None)}): no iso-accuracy verdict.")
            continue
        if t["stream"]:
            wins = [p for p in rs if p["ratio"] > 1]
            best = max(rs, key=lambda p: p["ratio"])
            out.append(f"{v['accelerator']} vs {v['baseline']} ({v['policy']} weights, iso-accuracy): the spiking "
                       f"chip wins at {len(wins)} of {len(rs)} change rates; best ratio {fmt_ratio(best['ratio'])} at "
                       f"{_rate(best['measured_rate'])} ({best['spiking']['config']} vs {best['baseline']['config']}).")
        else:
            p = rs[0]
            # ratio = baseline / spiking energy: above 1 the spiking chip needs `ratio` x less
            who = (f"{v['accelerator']} needs {fmt_ratio(p['ratio'])} less energy" if p["ratio"] > 1 else
                   f"{v['baseline']} needs {fmt_ratio(1 / p['ratio'])} less energy")
            out.append(f"{v['accelerator']} vs {v['baseline']} ({v['policy']} weights, iso-accuracy): {who} "
                       f"({p['spiking']['config']}: {fmt_energy(p['spiking']['energy_pj'])}; "
                       f"{p['baseline']['config']}: {fmt_energy(p['baseline']['energy_pj'])}).")
    return out


def table_rate(t: dict):
    """The change rate a stream task's one-rate tables show: the rate the rate-independent codings
    ran at (the task's default), else the middle measured rate; None for other tasks."""
    if not t["stream"]:
        return None
    ran = [p["run_rate"] for p in t["points"] if p.get("rate_independent") and p.get("run_rate") in t["rates"]]
    return ran[0] if ran else t["rates"][len(t["rates"]) // 2]


def _cheapest_of(rows: list[dict], floor: float):
    """(accelerator, point) of the cheapest row with accuracy >= floor, or None."""
    ok = [p for p in rows if p["accuracy"] >= floor - 1e-12]
    return min(((p["accelerator"], p) for p in ok), key=lambda ap: (ap[1]["energy_pj"], ap[1]["a_bits"])) if ok else None


def _conf(p: dict, spiking: bool) -> str:
    return (f"{p['coding']}, " if spiking else "") + f"W{p['w_bits']}A{p['a_bits']}"


def headline(task: str, t: dict) -> str | None:
    """One verdict sentence for a task of the sweep, for the report's opening: at iso-accuracy, the
    cheapest spiking configuration (any chip, coding, bits) against the cheapest dense one, under
    the first memory policy -- on streams at the table rate, with the change rate at which that
    verdict flips when the sweep found one.  None when the sweep has no dense baseline."""
    if not t["baselines_accelerators"] or not t["spiking"]:
        return None
    pol, r = t["policies"][0], table_rate(t)
    fp = next(f["accuracy"] for f in t["fp32"] if f["rate"] == r)
    floor = fp - t["tolerance"]
    pts = [p for p in t["points"] if p["policy"] == pol and p["rate"] == r]
    base = [b for b in t["baselines"] if b["policy"] == pol and b["rate"] == r]
    s, d = _cheapest_of(pts, floor), _cheapest_of(base, floor)
    where = (f"On {task} with {_rate(t['measured_rates'][t['rates'].index(r)])} of pixels changing per frame "
             f"({_rate(r)} asked)" if t["stream"] else f"On {task}")
    tol = f"within {100 * t['tolerance']:g} point(s) of FP32"
    if s is None or d is None:
        side = " and no ".join(x for x, y in (("spiking", s), ("dense", d)) if y is None)
        return f"{where} ({t['unit']}, {pol} weights) no {side} configuration is {tol}: no iso-accuracy verdict."
    ratio = s[1]["energy_pj"] / d[1]["energy_pj"]
    sc = f"{s[0]}, {_conf(s[1], True)}"
    dc = f"{d[0]}, {_conf(d[1], False)}"
    if ratio > 1:
        text = f"the {d[0]} accelerator ({_conf(d[1], False)}) needs {fmt_ratio(ratio)} less energy than the best spiking configuration ({sc})"
    elif ratio < 1:
        text = f"the best spiking configuration ({sc}) needs {fmt_ratio(1 / ratio)} less energy than the dense one ({dc})"
    else:
        text = f"the best spiking configuration ({sc}) and the dense one ({dc}) need the same energy"
    out = (f"{where}, at iso-accuracy ({tol}, {t['unit']}, {pol} weights) {text}: "
           f"{fmt_energy(s[1]['energy_pj'])} against {fmt_energy(d[1]['energy_pj'])}.")
    if t["stream"]:
        flips = [f for v in t["verdicts"] if v["accelerator"] == s[0] and v["baseline"] == d[0]
                 and v["policy"] == pol for f in v["flips"]]
        if flips:
            out += " The verdict flips at " + "; ".join(
                f"{_rate(f['x'])} (between measured {_rate(f['between'][0])} and {_rate(f['between'][1])}; "
                f"spiking wins {'below' if f['spiking_wins_below'] else 'above'} it)" for f in flips) + \
                   ", found by the sweep."
        else:
            lo, hi = min(t["measured_rates"]), max(t["measured_rates"])
            out += f" The verdict does not flip between {_rate(lo)} and {_rate(hi)} of pixels changing per frame."
    return out


def coding_table(t: dict, policy: str) -> tuple[list, list]:
    """Every coding on every accelerator the sweep was given (one row each; dense accelerators run
    the QANN, one row), energy per unit at each activation width under `policy` (streams: at the
    table rate) with its accuracy; a pair the chip cannot run says so and why."""
    r = table_rate(t)
    bits = sorted(set(t.get("a_bits") or [p["a_bits"] for p in t["points"] + t["baselines"]]), reverse=True)
    codings = list(dict.fromkeys([*(t.get("codings") or []), *CODING_COLORS]))
    headers = ["Accelerator", "Coding"] + [f"W{t['points'][0]['w_bits'] if t['points'] else 8}A{b}" for b in bits]
    rows = []
    for acc in t["accelerators"]:
        if acc not in t["spiking"]:
            cells = []
            for b in bits:
                p = next((x for x in t["baselines"] if x["accelerator"] == acc and x["a_bits"] == b
                          and x["policy"] == policy and x["rate"] == r), None)
                cells.append("—" if p is None else f"{fmt_energy(p['energy_pj'])} ({fmt_acc(p['accuracy'])})")
            rows.append([acc, "— (dense QANN)"] + cells)
            continue
        for c in codings:
            why = next((x["reason"] for x in t["skipped"] if x["accelerator"] == acc and x["coding"] == c
                        and x.get("a_bits") is None), None)
            if why:   # the reason is listed under the table (skipped_notes)
                rows.append([acc, c] + ["skipped"] * len(bits))
                continue
            cells = []
            for b in bits:
                p = next((x for x in t["points"] if x["accelerator"] == acc and x["coding"] == c and x["a_bits"] == b
                          and x["policy"] == policy and x["rate"] == r), None)
                w = next((x["reason"] for x in t["skipped"] if x["accelerator"] == acc and x["coding"] == c
                          and x.get("a_bits") == b), None)
                cells.append("skipped" if w else "not run" if p is None else
                             f"{fmt_energy(p['energy_pj'])} ({fmt_acc(p['accuracy'])})")
            rows.append([acc, c] + cells)
    return headers, rows


def skipped_notes(t: dict) -> list[str]:
    """Why each skipped (accelerator, coding[, bits]) pair of the coding table was skipped."""
    out = []
    for x in t["skipped"]:
        line = f"{x['accelerator']}, {x['coding']}" + (f", A{x['a_bits']}" if x.get("a_bits") is not None else "") \
            + f": skipped, {x['reason']}"
        if line not in out:
            out.append(line)
    return out


def section(data: dict, level: int = 2) -> list:
    """Report blocks of the break-even study (one sub-section per task)."""
    s = data["settings"]
    any_stream = any(t["stream"] for t in data["tasks"].values())
    text = TEXT.format(rates=", change rate" if any_stream else "",
                       and_rate=" (and change rate for sigma-delta on streams)" if any_stream else "",
                       tol=100 * s["tolerance"])
    sweep = (f"Sweep: codings {', '.join(s['codings'])}; W{s['w_bits']} with activations A"
             + "/A".join(str(b) for b in s["a_bits"]) + f"; weights {', '.join(s['policies'])}"
             + (f"; change rates {', '.join(_rate(r) for r in s['rates'])} on {s['n_clips']} clips" if any_stream else "")
             + f"; {s['snn_examples']} examples per SNN run elsewhere"
             + ("; the reduced sweep of `snmfm run` (`snmfm breakeven TASK` runs the full one)" if s.get("quick") else "")
             + f". Wall time {data.get('wall_s', 0):.0f} s"
             + (f" (CPU time of the process {data['cpu_s']:.0f} s)" if data.get("cpu_s") is not None else "") + ".")
    out = [("h", level, "Break-even: where does spiking win?"), ("p", text), ("p", sweep)]
    if any_stream:
        out.append(("p", STREAM_TEXT))
    names = plots(data)
    for task, t in data["tasks"].items():
        out.append(("h", level + 1, task))
        out.append(("list", verdict_sentences(t) + crossing_sentences(t)))
        pol, r = t["policies"][0], table_rate(t)
        h, rows = coding_table(t, pol)
        out += [("p", f"Every coding on every accelerator: energy {t['unit']} ({pol} weights"
                      + (f", {_rate(r)} of pixels changing per frame asked" if t["stream"] else "")
                      + ") and, in brackets, accuracy (" + t.get("accuracy_source", "held-out split") + "). "
                      + _runs_text(t)), ("table", h, rows)]
        if t["skipped"]:
            out.append(("list", skipped_notes(t)))
        h, rows = iso_table(t)
        out += [("p", f"Cheapest configuration within {100 * data['settings']['tolerance']:g} point(s) of FP32 "
                      f"on each accelerator ({t['unit']})."), ("table", h, rows)]
        if t["stream"]:
            for pol in t["policies"]:
                h, rows = stream_table(t, pol)
                out += [("p", f"Energy per frame, weights {pol}."), ("table", h, rows)]
            key = f"breakeven_{_safe(task)}_stream"
            if key in names:
                out.append(("img", key, names[key][0]))
        key = f"breakeven_{_safe(task)}_ratio"
        if key in names:
            out.append(("img", key, names[key][0]))
    return out


def _runs_text(t: dict) -> str:
    """How many SNN runs the task's points come from, their sample counts and what was reused."""
    runs = t.get("runs") or []
    if not runs:
        return "No SNN ran (no SNN-driven accelerator)."
    reused = sum(1 for r in runs if r.get("reused"))
    ns = sorted({int(r["snn_n"]) for r in runs})
    return (f"{len(runs)} SNN run(s), each over {', '.join(map(str, ns))} scored item(s)"
            + (f"; {reused} of them reused from the main job's measurements" if reused else "")
            + "; agreement with the QANN "
            + ("1.0 on every run." if all(r["agreement"] == 1.0 for r in runs) else
               f"{min(r['agreement'] for r in runs):.4f} at worst."))


def console_tables(data: dict) -> list[tuple[str, list, list]]:
    """(title, headers, rows) for the CLI."""
    out = []
    for task, t in data["tasks"].items():
        h, rows = iso_table(t)
        out.append((f"{task}: cheapest within {100 * data['settings']['tolerance']:g} pt of FP32 ({t['unit']})", h, rows))
        if t["stream"]:
            for pol in t["policies"]:
                h, rows = stream_table(t, pol)
                out.append((f"{task}: energy per frame, weights {pol}", h, rows))
    return out


def write_outputs(data: dict, out_dir) -> list[Path]:
    """breakeven.json, breakeven.md and the PNG plots into `out_dir` (created)."""
    from eval.jsonio import jsonable
    from eval.report_md import render_markdown
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    files = {}
    for name, (_, draw) in plots(data).items():
        p = d / f"{name}.png"
        p.write_bytes(draw())
        files[name] = p.name
        written.append(p)
    j = d / "breakeven.json"
    j.write_text(json.dumps(jsonable(data), indent=1, allow_nan=False))
    md = d / "breakeven.md"
    md.write_text(render_markdown(section(data, 1), files))
    return written + [j, md]

