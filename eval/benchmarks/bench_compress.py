"""Compression benchmark: accuracy-vs-cost Pareto fronts of uniform and mixed precision, and pruning.

For each task (trained default checkpoint) and each target (size, conventional, neuromorphic):

* uniform W8A8, W4A4 and W2A2 QANNs;
* mixed precision (`plan_bits`, choices 2/4/8 bits or --choices) at the budgets of uniform W4A4
  and W8A8 and at their geometric mean, validated on 256 training inputs (the program's best plans
  and the uniform plan re-ranked by measured KL to FP32) -- for the size target the activation bits
  are pinned to the uniform point's
  (size does not depend on them, so leaving them free would compare W4A8 with W4A4);
* each point's test accuracy (post-training quantisation, or QAT with --finetune-steps), its
  predicted cost (the cost table) and, for the energy targets, its simulated energy (the plan's own
  Workload and, on the neuromorphic chip, its own SNN trace).  Energy budgets are the simulated
  energies of the uniform plans, and mixed plans are checked against the simulator
  (`plan_bits(measure=...)`), since the per-layer table under-predicts plans that mix activation
  bit widths on the neuromorphic chip (more time steps than the uniform runs it was made from).

On the neuromorphic chip the time steps -- and with them static and synchronisation energy -- grow
with the largest activation bit width anywhere in the network, so with choices 2/4/8 no plan lies
between "largest a_bits 4" (~W4A4 energy) and "largest a_bits 8" (~W8A8 energy): the middle budget
cannot be spent.  `--choices 2 4 6 8` gives the program a 6-bit level to spend it on.

Then the pruning check on vision-digits: heads and MLP channels removed (Taylor importance), MACs
before/after from the Workload, accuracy before/after recovery fine-tuning (distillation from the
unpruned FP32 model), and the recovered model quantised to W8A8 and converted (SNN == QANN checked).

    python -m eval.benchmarks.bench_compress --out results/compress [--json FILE] [--tasks ...] [--targets ...]

Prints the Pareto rows and, at every mixed budget, the best uniform plan that fits it; writes
results.json and one PNG per task to --out, and the same JSON to --json.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

UNIFORM = (8, 4, 2)


def _avg_bits(plan_layers: dict, model) -> dict:
    from snmfm.compress.plan import size_costs
    sc = size_costs(model, (2, 4, 8))
    n = {k: v["w2"] / 2 for k, v in sc["layers"].items() if "w2" in v}
    wb = sum(n[k] * o["w_bits"] for k, o in plan_layers.items() if "w_bits" in o) / max(1, sum(n.values()))
    ab = sum(o["a_bits"] for o in plan_layers.values()) / max(1, len(plan_layers))
    return {"avg_w_bits": round(wb, 3), "avg_a_bits": round(ab, 3)}


def _uniform_layers(model, w: int, a: int) -> dict:
    from snmfm.compress.quant import WEIGHT_LAYERS, quant_layers
    return {n: ({"w_bits": w, "a_bits": a} if isinstance(m, WEIGHT_LAYERS) else {"a_bits": a})
            for n, m in quant_layers(model).items()}


def run_task(task_name: str, targets, *, finetune_steps: int = 0, eval_limit: int | None = None,
             n_inputs: int = 8, choices=(2, 4, 8), device=None, calib_samples: int = 256,
             sens_batches: int = 2, val_samples: int = 256, log=print) -> list[dict]:
    from eval.hw_costs import cost_table, measure_plan, plan_measure
    from snmfm.compress import calibrate
    from snmfm.compress.plan import plan_bits, plan_cost, uniform_cost
    from snmfm.compress.qat import finetune, freeze, prepare_qat, task_adapter
    from snmfm.compress.sensitivity import sensitivity
    from snmfm.tasks import get_task

    task = get_task(task_name)
    teacher, _ = task.load()
    fp32 = task.evaluate(teacher, limit=eval_limit)["accuracy"]
    model = __import__("copy").deepcopy(teacher)
    calib = [tuple(b) for b in task.batches("calib", 64, limit=calib_samples)]
    calibrate(model, calib)
    inputs = tuple(x[:n_inputs] for x in calib[0])
    held_out = [tuple(b) for b in task.batches("train", 64, limit=val_samples)]  # plan validation inputs
    t0 = time.time()
    scales: dict = {}
    sens = sensitivity(model, calib[:sens_batches], bits=choices, levels=("layer",), calibrated=True, scales=scales)
    log(f"[{task_name}] FP32 accuracy {fp32:.4f}; sensitivity {time.time() - t0:.0f}s")
    cache: dict = {}

    def build(layers: dict):
        key = json.dumps(layers, sort_keys=True)
        if key not in cache:
            student = prepare_qat(model, overrides=layers, scales=scales)
            if finetune_steps:
                kw = task_adapter(task)
                finetune(student, teacher, kw.pop("sample"), steps=finetune_steps, device=device, **kw)
            qann = freeze(student)
            cache[key] = (qann, task.evaluate(qann, limit=eval_limit)["accuracy"])
        return cache[key]

    rows = []
    for target in targets:
        t0 = time.time()
        costs = cost_table(model, inputs, target, choices=choices, calib=calib, calibrated=True, scales=scales)
        log(f"[{task_name}/{target}] cost table {time.time() - t0:.0f}s")
        points = [(f"W{b}A{b}", "uniform", _uniform_layers(model, b, b), uniform_cost(costs, b, b), b)
                  for b in UNIFORM]
        # energy budgets are simulated energies (the table is a model of them; plans are checked)
        measure = plan_measure(model, inputs, target, scales=scales) if target != "size" else None
        hi, lo = ((measure(_uniform_layers(model, 8, 8)), measure(_uniform_layers(model, 4, 4))) if measure
                  else (uniform_cost(costs, 8, 8), uniform_cost(costs, 4, 4)))
        for label, budget, a_pin in (("mixed@W4A4", lo, 4), ("mixed@mid", math.sqrt(lo * hi), 8),
                                     ("mixed@W8A8", hi, 8)):
            a_choices = (a_pin,) if target == "size" else None
            plan = plan_bits(model, budget, costs, target, sensitivity=sens, choices=choices,
                             a_choices=a_choices, validate=held_out, scales=scales, measure=measure)
            if measure is not None:
                log(f"  {label}: budget rounds " + ", ".join(
                    f"{r['budget_used']:.3g}->{r['simulated']:.3g}" for r in plan.meta["budget_rounds"]))
            log(f"  {label}: chose {plan.meta['validation']['chosen']} of "
                + ", ".join(f"{r['source']} kl {r['kl']:.2e}" for r in plan.meta["validation"]["candidates"]))
            points.append((label, "mixed", plan.layers, budget, None))
        for label, kind, layers, budget, _ in points:
            qann, acc = build(layers)
            row = {"task": task_name, "target": target, "point": label, "kind": kind,
                   "budget": budget, "cost": plan_cost(layers, costs), "unit": costs["unit"],
                   "accuracy": acc, "fp32_accuracy": fp32, **_avg_bits(layers, model)}
            if target != "size":
                rep = measure_plan(model, layers, inputs, target, qann=qann)
                row["simulated"] = rep.energy_pj
            rows.append(row)
            log(f"  {target:12s} {label:11s} cost {row['cost']:.4g} {row['unit']}"
                + (f" (simulated {row['simulated']:.4g})" if "simulated" in row else "")
                + f"  acc {acc:.4f}  w {row['avg_w_bits']} a {row['avg_a_bits']}")
    return rows


def prune_check(*, heads=1, mlp_channels=0.5, steps: int = 1000, lr: float = 1e-3, temperature: float = 1.0,
                device=None, eval_limit=None, log=print) -> dict:
    """vision-digits: >= 30% fewer MACs, <= 1 point accuracy loss after recovery, exact SNN."""
    from converters import convert
    from neuro_hw.workload import extract_workload
    from snmfm.compress import calibrate, quantize
    from snmfm.compress.prune import prune
    from snmfm.compress.qat import finetune, task_adapter
    from snmfm.tasks import get_task
    task = get_task("vision-digits")
    teacher, _ = task.load()
    x = task.example_inputs(16)
    calib = [tuple(b) for b in task.batches("calib", 64, limit=256)]
    base_acc = task.evaluate(teacher, limit=eval_limit)["accuracy"]
    t0 = time.time()
    pruned = prune(teacher, heads=heads, mlp_channels=mlp_channels, importance="taylor", data=calib)
    macs0, macs1 = extract_workload(teacher, *x).total_macs, extract_workload(pruned, *x).total_macs
    acc_pruned = task.evaluate(pruned, limit=eval_limit)["accuracy"]
    kw = task_adapter(task)
    finetune(pruned, teacher, kw.pop("sample"), steps=steps, lr=lr, temperature=temperature, device=device, **kw)
    acc_rec = task.evaluate(pruned, limit=eval_limit)["accuracy"]
    calibrate(pruned, calib)
    qann = quantize(pruned, 8, 8)
    acc_q = task.evaluate(qann, limit=eval_limit)["accuracy"]
    xs = task.example_inputs(32)
    r = convert(qann).run(*xs)
    exact = bool(torch.equal(r.output, qann(*xs)))
    out = {"task": "vision-digits", "importance": "taylor", "macs_before": macs0, "macs_after": macs1, "mac_reduction": 1 - macs1 / macs0,
           "params_before": pruned.snmfm_prune["params_before"], "params_after": pruned.snmfm_prune["params_after"],
           "removed": {k: pruned.snmfm_prune[k] for k in ("heads", "mlp_channels", "blocks")},
           "fp32_accuracy": base_acc, "pruned_accuracy": acc_pruned, "recovered_accuracy": acc_rec,
           "recovered_w8a8_accuracy": acc_q, "snn_equals_qann": exact, "recovery_steps": steps,
           "recovery_lr": lr, "heads": heads, "mlp_channels": mlp_channels,
           "time_s": time.time() - t0}
    log(f"[prune vision-digits] MACs {macs0} -> {macs1} (-{out['mac_reduction']:.1%}); accuracy "
        f"{base_acc:.4f} -> pruned {acc_pruned:.4f} -> recovered {acc_rec:.4f} (W8A8 {acc_q:.4f}); SNN==QANN {exact}")
    return out


def table(rows: list[dict]) -> str:
    head = (f"{'task':14s} {'target':12s} {'point':11s} {'cost':>11s} {'simulated':>11s} {'unit':4s} "
            f"{'acc':>7s} {'w':>5s} {'a':>5s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        sim = f"{r['simulated']:.4g}" if "simulated" in r else ""
        lines.append(f"{r['task']:14s} {r['target']:12s} {r['point']:11s} {r['cost']:11.4g} {sim:>11s} "
                     f"{r['unit']:4s} {r['accuracy']:7.4f} {r['avg_w_bits']:5.2f} {r['avg_a_bits']:5.2f}")
    return "\n".join(lines)


def comparison_table(comparison: list[dict]) -> str:
    head = (f"{'task':14s} {'target':12s} {'mixed point':11s} {'budget':>11s} {'mixed':>11s} {'acc':>7s} "
            f"{'best uniform':12s} {'cost':>11s} {'acc':>7s} ok")
    lines = [head, "-" * len(head)]
    for c in comparison:
        u = c["uniform"] or "-"
        uc = f"{c['uniform_cost']:.4g}" if c["uniform"] else ""
        ua = f"{c['uniform_accuracy']:.4f}" if c["uniform"] else ""
        ok = "yes" if c["mixed_at_least_uniform"] and c["within_budget"] else "NO"
        lines.append(f"{c['task']:14s} {c['target']:12s} {c['point']:11s} {c['budget']:11.4g} "
                     f"{c['mixed_cost']:11.4g} {c['mixed_accuracy']:7.4f} {u:12s} {uc:>11s} {ua:>7s} {ok}")
    return "\n".join(lines)


def check_mixed_beats_uniform(rows: list[dict]) -> list[str]:
    """Budgets where mixed precision is less accurate than the uniform plan it was given the cost of."""
    bad = []
    for r in rows:
        if r["point"] in ("mixed@W4A4", "mixed@W8A8"):
            u = [x for x in rows if x["task"] == r["task"] and x["target"] == r["target"]
                 and x["point"] == r["point"].split("@")[1]][0]
            if r["accuracy"] < u["accuracy"]:
                bad.append(f"{r['task']}/{r['target']}: {r['point']} {r['accuracy']:.4f} "
                           f"< {u['point']} {u['accuracy']:.4f}")
    return bad


def _spent(r: dict) -> float:
    """What a point really costs: simulated energy for the energy targets, the table's cost for size."""
    return r.get("simulated", r["cost"])


def budget_comparison(rows: list[dict]) -> list[dict]:
    """At every mixed point's budget: the best uniform plan that fits the same budget (cost, or
    simulated energy for the energy targets), and whether the mixed plan matches or beats it and
    stays within the budget itself."""
    out = []
    for r in rows:
        if r["kind"] != "mixed":
            continue
        same = [x for x in rows if x["task"] == r["task"] and x["target"] == r["target"] and x["kind"] == "uniform"]
        fits = [x for x in same if _spent(x) <= r["budget"] * (1 + 1e-9)]
        best = max(fits, key=lambda x: (x["accuracy"], -_spent(x))) if fits else None
        out.append({"task": r["task"], "target": r["target"], "point": r["point"], "budget": r["budget"],
                    "mixed_cost": _spent(r), "mixed_accuracy": r["accuracy"],
                    "within_budget": _spent(r) <= r["budget"] * (1 + 1e-9),
                    "uniform": best["point"] if best else None,
                    "uniform_cost": _spent(best) if best else None,
                    "uniform_accuracy": best["accuracy"] if best else None,
                    "mixed_at_least_uniform": best is None or r["accuracy"] >= best["accuracy"]})
    return out


def plot(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for task in dict.fromkeys(r["task"] for r in rows):
        targets = list(dict.fromkeys(r["target"] for r in rows if r["task"] == task))
        fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.4), squeeze=False)
        for ax, target in zip(axes[0], targets):
            rs = [r for r in rows if r["task"] == task and r["target"] == target]
            for kind, marker in (("uniform", "o"), ("mixed", "s")):
                pts = sorted((r.get("simulated", r["cost"]), r["accuracy"], r["point"])
                             for r in rs if r["kind"] == kind)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=kind)
                for c, a, lab in pts:
                    ax.annotate(lab.replace("mixed@", "m@"), (c, a), fontsize=6)
            fp32 = rs[0]["fp32_accuracy"]
            ax.axhline(fp32, color="gray", ls="--", lw=0.8, label="FP32")
            near = [r["accuracy"] for r in rs if r["accuracy"] >= fp32 - 0.2]  # zoom on the useful range
            ax.set_ylim(min(near) - 0.01, max(fp32, max(near)) + 0.01)
            off = [r["point"] for r in rs if r["accuracy"] < fp32 - 0.2]
            if off:
                ax.text(0.02, 0.02, "below: " + ", ".join(off), transform=ax.transAxes, fontsize=6)
            ax.set_xscale("log")
            ax.set_xlabel(f"{target} ({rs[0]['unit']}{', simulated' if target != 'size' else ''})")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{task}: {target}", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / f"pareto_{task}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for results.json and the Pareto plots")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    ap.add_argument("--tasks", nargs="*", default=["vision-digits", "medical-wdbc", "code-stdlib"])
    ap.add_argument("--targets", nargs="+", default=["size", "conventional", "neuromorphic"])
    ap.add_argument("--finetune-steps", type=int, default=0)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--n-inputs", type=int, default=8, help="samples the SNN/workload cost tables run on")
    ap.add_argument("--calib-samples", type=int, default=256)
    ap.add_argument("--sens-batches", type=int, default=2,
                    help="calibration batches (of 64) sensitivity is measured on")
    ap.add_argument("--val-samples", type=int, default=256, help="training inputs plans are validated on")
    ap.add_argument("--no-prune", action="store_true")
    ap.add_argument("--prune-steps", type=int, default=1000)
    ap.add_argument("--device", default=None, help="device for fine-tuning (cuda when present)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--choices", type=int, nargs="+", default=[2, 4, 8], help="bit widths mixed precision picks from")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    def save(result: dict) -> None:
        text = json.dumps(result, indent=1)
        if args.out is not None:
            (args.out / "results.json").write_text(text)
        if args.json is not None:
            args.json.write_text(text)

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    rows, times = [], {}
    t_all = time.time()
    for t in args.tasks:
        t0 = time.time()
        rows += run_task(t, args.targets, finetune_steps=args.finetune_steps, eval_limit=args.eval_limit,
                         n_inputs=args.n_inputs, choices=tuple(sorted(set(args.choices) | {2, 4, 8})),
                         device=args.device, calib_samples=args.calib_samples, sens_batches=args.sens_batches,
                         val_samples=args.val_samples)
        times[t] = time.time() - t0
        save({"rows": rows, "time_s": times})
    comparison = budget_comparison(rows)
    result = {"rows": rows, "mixed_worse_than_uniform": check_mixed_beats_uniform(rows),
              "budget_comparison": comparison,
              "mixed_below_uniform_at": [f"{c['task']}/{c['target']}/{c['point']}" for c in comparison
                                         if not c["mixed_at_least_uniform"]],
              "time_s": times}
    if not args.no_prune:
        result["prune"] = prune_check(steps=args.prune_steps, device=args.device)
        times["prune"] = result["prune"]["time_s"]
    times["total"] = time.time() - t_all
    save(result)
    if rows:
        print(table(rows))
        print(comparison_table(comparison))
        print("mixed worse than uniform at:", result["mixed_below_uniform_at"] or "nowhere")
        if args.out is not None:
            print("plots:", ", ".join(str(p) for p in plot(rows, args.out)))
    return result


if __name__ == "__main__":
    main()
