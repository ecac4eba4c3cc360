"""Input co-optimisation benchmark: accuracy-versus-energy Pareto fronts on both accelerators.

For each task (default vision-digits, vqa-digits, code-stdlib): the input configurations of
eval.cooptimize.task_configs (resolution x patch size with a model trained per shape, training-free
token pruning/merging, context length), each at W8A8 / W8A4 / W4A4 and, on the neuromorphic chip,
at fixed T below T_settle; the Pareto front per accelerator and the front's cheapest point within
0.5 point of the default configuration (and its most accurate point) against the default.

    python -m eval.benchmarks.bench_cooptimize --plots results/coopt [--tasks ...] [--workers 8]

Prints tables; --plots DIR writes cooptimize-<task>.png and .json there and results.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASKS = ("vision-digits", "vqa-digits", "code-stdlib")


def _e(pj: float) -> str:
    for unit, f in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _pt(p: dict) -> str:
    t = "" if p["T"] is None else f" T={p['T']}"
    return f"{p['config']} {p['bits']}{t}"


def print_result(r: dict, log=print) -> None:
    log(f"\n== {r['task']}: {len(r['configs'])} input configurations x {len(r['bits'])} bit widths "
        f"(SNN on {r['snn_examples']} test queries, T in {r['T_values']})")
    log(f"{'config':<16} {'bits':<5} {'MACs':>9} {'QANN acc':>8} {'T_settle':>8}")
    for m in r["measurements"]:
        log(f"{m['label']:<16} W{m['w_bits']}A{m['a_bits']:<2} {m['workload']['macs']:>9} "
            f"{100 * m['qann_accuracy']:>7.2f}% {str(m['t_settle']):>8}")
    for acc, f in r["fronts"].items():
        d = f["default"]
        log(f"-- {acc}: {f['n_points']} points, front of {len(f['front'])}; default {_pt(d)}: "
            f"{100 * d['accuracy']:.2f}%, {_e(d['energy_pj'])}")
        for p in f["front"]:
            log(f"   front  {_pt(p):<28} {100 * p['accuracy']:>7.2f}%  {_e(p['energy_pj']):>10}  "
                f"x{p['energy_pj'] / d['energy_pj']:.3f} of default")
        for k, what in (("iso_accuracy", "cheapest within 0.5 pt of default"), ("best_accuracy", "most accurate")):
            p = f[k]
            if p is None:
                log(f"   {what}: none")
            else:
                log(f"   {what}: {_pt(p)}: {100 * p['accuracy']:.2f}% ({100 * p['accuracy_delta']:+.2f} pt), "
                    f"{_e(p['energy_pj'])} = {100 * p['energy_ratio']:.1f}% of the default's energy")
    for p in r.get("plots", []):
        log(f"plot: {p}")


def main(argv=None) -> int:
    from eval.cooptimize import DEFAULT_T, run_cooptimize
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--bits", nargs="+", default=["W8A8", "W8A4", "W4A4"])
    ap.add_argument("--T", nargs="+", type=int, default=list(DEFAULT_T))
    ap.add_argument("--snn-examples", type=int, default=None, help="default: per task (eval.cooptimize.TASK_DEFAULTS)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per shape (default: per task)")
    ap.add_argument("--plots", "--out", dest="out", default=None, help="folder for PNG fronts and JSON")
    ap.add_argument("--workers", type=int, default=1, help="Ray tasks in parallel (eval.engine)")
    ap.add_argument("--ray-address", default=None, help="run on this Ray cluster (HOST:PORT)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    bits = []
    for b in a.bits:
        w, _, x = b.upper().removeprefix("W").partition("A")
        bits.append((int(w), int(x)))
    t0 = time.perf_counter()
    results = []
    for t in a.tasks:
        r = run_cooptimize(t, bits=bits, T_values=a.T, snn_examples=a.snn_examples, steps=a.steps,
                           seed=a.seed, out_dir=a.out, workers=a.workers, ray_address=a.ray_address,
                           status=lambda s, t=t: print(f"[{time.strftime('%H:%M:%S')}] {t}: {s}", flush=True))
        print_result(r)
        results.append(r)
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    if a.out:
        (Path(a.out) / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
