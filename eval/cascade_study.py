"""`run_cascade(task)`: model cascades over a size ladder, calibrated and charged on both
accelerators.

1. Members: the task's model at each size (trained once and cached, eval.model_cache), quantized
   (W8A8 by default), measured by eval.measure: conventional accelerator from the QANN Workload,
   neuromorphic chip from the SNN run until quiet on `snn_examples` test queries.
2. Every member answers every calib and test query once (QANN forward; a member placed on the
   neuromorphic chip is its SNN, whose settled output equals the QANN's exactly -- the measured
   agreement is reported).  Self-tests, calibration and sweeps replay these records offline.
3. For each scenario (all on the conventional accelerator, all on the neuromorphic chip, mixed:
   cheap SNN stages on the chip, the QANN reference on the conventional accelerator), each ladder
   and each self-test: thresholds calibrated on *calib* with that scenario's energies as costs,
   then the call log on *test* is charged (eval.cascade.charge_log).  The operating point reported
   per scenario is the variant with the lowest calib energy that met the tolerance on calib.
4. The chosen conventional cascade is also run for real on the test split (later members only on
   escalated queries) and checked against the offline replay.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from eval.cascade import SCENARIOS, charge_log, curve, stage_energy, summarise_points, within

DEFAULT_SIZES = ("tiny", "small", "medium")
ENERGY_TARGET = 0.6        # acceptance: at most 60% of the largest member's energy ...
ACCURACY_TOLERANCE = 0.005  # ... within half a point of its accuracy


def _self_tests(kind: str, n_members: int) -> list[str]:
    tests = ["max_prob", "margin", "entropy", "probe"]
    if kind == "generate":
        tests.append("logprob")
    if n_members >= 3:
        tests.append("agreement")
    return tests


def _ladders(names: list[str], test: str) -> list[list]:
    """Ladders to try for one self-test: the full ladder and every (cheap, reference) pair; for
    agreement, the two cheapest as a pair then the reference."""
    ref = names[-1]
    if test == "agreement":
        return [[(names[0], names[1]), ref]] if len(names) >= 3 else []
    out = [names] if len(names) > 2 else []
    out += [[n, ref] for n in names[:-1]]
    return out


def _label(ladder) -> str:
    return ">".join("+".join(s) if isinstance(s, tuple) else s for s in ladder)


DEFAULT_ACCELERATORS = ("conventional", "neuromorphic")


def _measure(task, size, model, meta, bits, snn_examples, seed, cache, status,
             accelerators: Sequence[str] = DEFAULT_ACCELERATORS) -> dict:
    from eval.measure import measure_model
    from eval.model_cache import cache_root, code_version
    root = Path(cache) if cache is not None else cache_root()
    sha = (meta.get("tensors_sha256") or "")[:12]
    accs = "" if tuple(accelerators) == DEFAULT_ACCELERATORS else "-" + "+".join(accelerators)
    f = root / "hw" / code_version("measure") / (f"{task.name}-{size}-{sha}-W{bits[0]}A{bits[1]}-snn{snn_examples}"
                                                 f"-seed{seed}{accs}.json")
    if f.is_file():
        return json.loads(f.read_text())
    status(f"measure {size} (W{bits[0]}A{bits[1]}, SNN on {snn_examples} test queries)")
    m = measure_model(task, model, w_bits=bits[0], a_bits=bits[1], snn_examples=snn_examples, seed=seed,
                      accelerators=list(accelerators))
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(m))
    return m


def run_cascade(task_name: str, sizes: Sequence[str] = DEFAULT_SIZES, *, steps: int | dict | None = None,
                self_tests: Sequence[str] | None = None, tolerance: float = ACCURACY_TOLERANCE,
                method: str = "empirical", certify_tolerance: float = 0.02, delta: float = 0.1,
                bits: tuple[int, int] = (8, 8), snn_examples: int = 32, seed: int = 0,
                scenarios: Sequence[str] | None = None, cache=None, out_dir=None, hw: dict | None = None,
                train_device: str | None = None, progress: bool = False,
                status: Callable[[str], None] | None = None,
                accelerators: Sequence[str] | str | None = None) -> dict:
    """The cascade study of one task (module docstring); returns a JSON-able dict.

    sizes: the ladder, cheapest first, the reference last.  steps: training steps of the
    non-default sizes (int, or {size: steps}; None: the task's recipe).  tolerance/method: the
    calibration that picks the reported operating point (empirical at half a point by default);
    ltt and crc are run too, at `tolerance` and at `certify_tolerance`, to show what the
    calib split can certify.  out_dir: write cascade-<task>.json and the accuracy-energy plot there.
    train_device: where missing members train (e.g. "cuda"; default the CPU).
    accelerators: registered names ("a,b" or a list; default conventional, neuromorphic) every
    member is measured on; scenarios (default: one per accelerator, every member placed on it,
    plus "mixed" when there is a dense and an SNN-driven one: the cheaper members on the first
    SNN-driven accelerator, the reference on the first dense one)."""
    import dataclasses

    from snmfm.cascade import Cascade, CalibrationError, Member, readout_for
    from snmfm.tasks import get_task

    from eval.accelerators import label, needs_trace, parse_hw
    accs = [label(h) for h in parse_hw(list(DEFAULT_ACCELERATORS) if accelerators is None else accelerators)]
    dense = [a for a in accs if not needs_trace(a)]
    spiking = [a for a in accs if needs_trace(a)]
    allowed = accs + (["mixed"] if dense and spiking else [])
    scenarios = list(allowed if scenarios is None else scenarios)
    bad = [sc for sc in scenarios if sc not in allowed]
    if bad or not scenarios:
        raise ValueError(f"cascade scenarios {bad or scenarios!r}: allowed {', '.join(allowed)} (an accelerator "
                         "of the run, or mixed when it has a dense and an SNN-driven one)")

    from eval.measure import quantized
    from eval.model_cache import trained_model
    t0 = time.perf_counter()
    say = status or (lambda s: None)
    task = get_task(task_name)
    readout = readout_for(task)
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError("a cascade needs at least two sizes")
    step_of = (lambda s: steps.get(s)) if isinstance(steps, dict) else (lambda s: steps)
    notes = []

    # 1. members
    qanns, members, meas = {}, {}, {}
    for size in sizes:
        say(f"model {size}")
        model, meta = trained_model(task.name, size, steps=step_of(size), seed=seed, progress=progress,
                                    cache=cache, device=train_device)
        meas[size] = _measure(task, size, model, meta, bits, snn_examples, seed, cache, say, accs)
        qanns[size] = quantized(task, model, *bits, seed=seed)
        members[size] = {"meta": meta}
    member_hw = {s: {a: meas[s]["hw"][a] for a in accs} for s in sizes}  # filed under the registered name

    # 2. records (QANN answers: identical to the settled SNN's)
    from snmfm.cascade import model_member
    base = [model_member(s, qanns[s], size=s) for s in sizes]
    say("record calib and test answers")
    rec = {"calib": record_all(base, task, "calib", readout), "test": record_all(base, task, "test", readout)}
    member_rows = []
    for s in sizes:
        m = meas[s]
        member_rows.append({
            "name": s, "size": s, "params": m["workload"]["params"], "macs": m["workload"]["macs"],
            "accuracy": {sp: float(rec[sp].correct(s).double().mean()) for sp in rec},
            "qann_test_accuracy_task": m["qann"]["accuracy"], "t_settle": m["snn"]["t_settle"],
            "snn_agreement": m["snn"]["agreement"], "snn_examples": snn_examples,
            "hw": {a: {k: member_hw[s][a][k] for k in ("energy_pj", "latency_s")} for a in member_hw[s]},
            "checkpoint": members[s]["meta"].get("key")})
        if m["snn"]["agreement"] < 1.0:
            notes.append(f"{s}: SNN/QANN agreement {m['snn']['agreement']:.3f} on {snn_examples} queries")
    if spiking:
        notes.append(f"members placed on SNN-driven accelerators ({', '.join(spiking)}) are SNNs run until "
                     "quiet; their answers are the QANN's (exact by construction; agreement measured on the SNN subset)")
    if readout.kind == "generate":
        notes.append("a generating member's query is charged as one forward over prompt and answer "
                     "(the main job's workload), i.e. prefill + decode with a KV cache")
    ref = sizes[-1]
    best = max(sizes, key=lambda s: float(rec["calib"].correct(s).double().mean()))
    if best != ref and float(rec["calib"].correct(best).double().mean()) > float(rec["calib"].correct(ref).double().mean()) + 0.01:
        notes.append(f"the reference {ref!r} is not the most accurate member on calib ({best!r} is): "
                     "a cascade that stops early can beat it")
    n_out = int(rec["test"].members[ref].logits.shape[-1])

    def place(n, scenario):
        if scenario == "mixed":
            return dense[0] if n == ref else spiking[0]
        return scenario

    def make(ladder, test, scenario):
        def mem(n):
            b = next(m for m in base if m.name == n)
            p = place(n, scenario)
            if needs_trace(p):
                return Member(n, b.fn, "snn", n, p, b.features, {"answers_from": "qann"}, spiking=True)
            return dataclasses.replace(b, placement=p, spiking=False)
        stages = [tuple(mem(n) for n in s) if isinstance(s, tuple) else mem(s) for s in ladder]
        return Cascade(stages, self_test=test, readout=readout, name=_label(ladder))

    # 3. variants per scenario
    tests = list(self_tests) if self_tests else _self_tests(readout.kind, len(sizes))
    out_sc, curves = {}, {}
    for sc in scenarios:
        ref_acc = {sp: float(rec[sp].correct(ref).double().mean()) for sp in rec}
        ref_place = place(ref, sc)
        ref_hw = member_hw[ref][ref_place]
        rows = []
        for test in tests:
            for ladder in _ladders(sizes, test):
                for meth, tol in _method_grid(method, tolerance, certify_tolerance):
                    c = make(ladder, test, sc)
                    costs, tcost = stage_energy(c, member_hw, sc, n_out, hw)
                    row = {"ladder": _label(ladder), "self_test": test, "method": meth, "tolerance": tol}
                    try:
                        cal = c.calibrate(rec["calib"], tolerance=tol, method=meth, delta=delta,
                                          costs=costs, test_costs=tcost, seed=seed)
                    except CalibrationError as e:
                        rows.append({**row, "feasible": False, "error": str(e),
                                     "best_achievable": e.best if math.isfinite(e.best) else None})
                        continue
                    preds, _, log = c.simulate(rec["test"])
                    acc = float((preds == rec["test"].targets).all(-1).double().mean())
                    ch = charge_log(log, member_hw, None if sc == "mixed" else sc, hw)
                    rows.append({**row, "feasible": True, "thresholds": cal.thresholds,
                                 "calib": {"accuracy": cal.accuracy, "energy_pj": cal.expected_cost,
                                           "escalation_rate": cal.escalation_rate, "bound": cal.bound,
                                           "drop": cal.drop, "n": cal.n},
                                 "test": {"accuracy": acc, "accuracy_drop": ref_acc["test"] - acc,
                                          "energy_pj": ch["energy_pj"], "latency_s": ch["latency_s"],
                                          "energy_ratio": ch["energy_pj"] / ref_hw["energy_pj"],
                                          "latency_ratio": ch["latency_s"] / ref_hw["latency_s"],
                                          "escalation_rate": ch["escalation_rate"],
                                          "exit_fractions": ch["exit_fractions"],
                                          "self_test_pj": ch["self_tests_pj"] / ch["n_queries"],
                                          "self_test_share": ch["self_test_share"],
                                          "wasted_pj": ch["wasted_pj"] / ch["n_queries"],
                                          "transfer_pj": ch["transfer_pj"] / ch["n_queries"]}})
        primary = [r for r in rows if r["feasible"] and r["method"] == method and r["tolerance"] == tolerance]
        chosen = min(primary, key=lambda r: (r["calib"]["energy_pj"], -r["calib"]["accuracy"]), default=None)
        acc_ok = chosen is not None and within(chosen["test"]["accuracy"], ref_acc["test"], ACCURACY_TOLERANCE)
        en_ok = chosen is not None and chosen["test"]["energy_ratio"] <= ENERGY_TARGET
        out_sc[sc] = {"reference": {"member": ref, "placement": ref_place, "accuracy": ref_acc,
                                    "energy_pj": ref_hw["energy_pj"], "latency_s": ref_hw["latency_s"]},
                      "placements": {n: place(n, sc) for n in sizes},
                      "chosen": chosen, "variants": rows,
                      "acceptance": {"accuracy_within_0.5pt": acc_ok, "energy_at_most_60pct": en_ok,
                                     "met": bool(acc_ok and en_ok)}}
        curves[sc] = {test: summarise_points(curve(make(sizes, test, sc), rec["test"], member_hw, sc, hw))
                      for test in tests if test not in ("agreement", "probe")}

    # 4. the chosen cascade of the first dense accelerator (else the first scenario), run for real
    online = None
    first = next((a for a in dense if a in out_sc), next(iter(out_sc)))
    ch = out_sc[first]["chosen"]
    if ch is not None:
        ladder = [tuple(s.split("+")) if "+" in s else s for s in ch["ladder"].split(">")]
        c = make(ladder, ch["self_test"], first)
        c.calibrate(rec["calib"], tolerance=ch["tolerance"], method=ch["method"], delta=delta,
                    costs=stage_energy(c, member_hw, first, n_out, hw)[0],
                    test_costs=stage_energy(c, member_hw, first, n_out, hw)[1], seed=seed)
        say("online run of the chosen cascade")
        r = c.evaluate(task.batches("test", 256, seed))
        online = {"ladder": ch["ladder"], "self_test": ch["self_test"], "accuracy": r["accuracy"],
                  "escalation_rate": r["escalation_rate"],
                  "matches_offline": abs(r["accuracy"] - ch["test"]["accuracy"]) < 1e-12
                  and abs(r["escalation_rate"] - ch["test"]["escalation_rate"]) < 1e-12,
                  "energy_pj": charge_log(r["log"], member_hw, None if first == "mixed" else first, hw)["energy_pj"],
                  "scenario": first}

    result = {"task": task.name, "kind": task.kind, "readout": readout.kind, "sizes": sizes,
              "accelerators": accs, "spiking": spiking,
              "bits": f"W{bits[0]}A{bits[1]}", "reference": ref, "members": member_rows,
              "calibration": {"method": method, "tolerance": tolerance, "certify_tolerance": certify_tolerance,
                              "delta": delta, "n_calib": rec["calib"].n, "n_test": rec["test"].n},
              "targets": {"accuracy_tolerance": ACCURACY_TOLERANCE, "energy_ratio": ENERGY_TARGET},
              "scenarios": out_sc, "curves": curves, "online_check": online, "notes": notes,
              "wall_s": time.perf_counter() - t0}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(plot_cascade(result, out / f"cascade-{task.name}.png"))]
        (out / f"cascade-{task.name}.json").write_text(json.dumps(result, indent=1, default=_json))
    return result


def _method_grid(method, tolerance, certify_tolerance):
    out = [(method, tolerance)]
    for m in ("ltt", "crc", "empirical"):
        for tol in (tolerance, certify_tolerance):
            if (m, tol) not in out:
                out.append((m, tol))
    return out


def record_all(members, task, split, readout):
    from snmfm.cascade import record_members
    return record_members(members, task.batches(split, 256), readout, features=True)


def _json(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON-able: {type(x).__name__}")


def plot_cascade(result: dict, path) -> Path:
    """Accuracy versus energy per query, one panel per scenario: each self-test's threshold path
    on the test split, the members alone, and the chosen operating point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scs = list(result["scenarios"])
    fig, axes = plt.subplots(1, len(scs), figsize=(5.2 * len(scs), 4.2), squeeze=False)
    for ax, sc in zip(axes[0], scs):
        d = result["scenarios"][sc]
        for test, pts in result["curves"].get(sc, {}).items():
            ax.plot([p["energy_pj"] for p in pts], [100 * p["accuracy"] for p in pts], ".-", lw=1,
                    ms=3, label=f"{_ladder_name(result)} {test}")
        from eval.plots_studies import member_placement
        for m in result["members"]:
            acc = member_placement(result, sc, m["name"])
            ax.scatter(m["hw"][acc]["energy_pj"], 100 * m["accuracy"]["test"], marker="s", s=36,
                       color="k", zorder=3)
            ax.annotate(m["name"], (m["hw"][acc]["energy_pj"], 100 * m["accuracy"]["test"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=8)
        ch = d["chosen"]
        if ch is not None:
            ax.scatter(ch["test"]["energy_pj"], 100 * ch["test"]["accuracy"], marker="*", s=160,
                       color="tab:red", zorder=4, label=f"chosen: {ch['ladder']} {ch['self_test']}")
        r = d["reference"]
        ax.axhline(100 * (r["accuracy"]["test"] - ACCURACY_TOLERANCE), color="gray", ls=":", lw=1)
        ax.axvline(ENERGY_TARGET * r["energy_pj"], color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("energy per query (pJ)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{result['task']}: {sc}")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _ladder_name(result) -> str:
    return ">".join(result["sizes"])
