"""Cascade benchmark: size ladders with self-tests, calibrated on calib, charged on test.

For each task (default vision-digits, medical-wdbc, vqa-digits): members tiny / small / medium
(trained once and cached outside the repo, eval.model_cache), W8A8 QANNs on the conventional
accelerator and their SNNs on the neuromorphic chip; every ladder x self-test x calibration method;
per scenario (conventional, neuromorphic, mixed) the operating point chosen on calib and its test
accuracy, energy and latency per query against the largest member, escalation rate and self-test
cost.  Acceptance: within 0.5 point of the largest member at <= 60% of its energy.

    python -m eval.benchmarks.bench_cascade --out results/cascade [--tasks ...] [--workers 3] [--ray-address HOST:PORT]

Prints tables; with --out writes cascade-<task>.json and cascade-<task>.png per task and
results.json.  Trained members and hardware measurements are cached (SNMFM_OPT_CACHE).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASKS = ("vision-digits", "medical-wdbc", "vqa-digits")


def _one(args: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from eval.cascade import run_cascade
    args = dict(args)
    name = args.pop("task")
    return run_cascade(name, **args)


def fmt_e(pj: float) -> str:
    for unit, f in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def print_result(r: dict, log=print) -> None:
    log(f"\n== {r['task']} ({r['readout']}, {r['bits']}; calib n={r['calibration']['n_calib']}, "
        f"test n={r['calibration']['n_test']})")
    log(f"{'member':<8} {'params':>8} {'MACs':>10} {'acc calib':>9} {'acc test':>9} {'conv E/query':>13} "
        f"{'neuro E/query':>14} {'T_settle':>8} {'SNN=QANN':>8}")
    for m in r["members"]:
        log(f"{m['name']:<8} {m['params']:>8} {m['macs']:>10} {100 * m['accuracy']['calib']:>8.2f}% "
            f"{100 * m['accuracy']['test']:>8.2f}% {fmt_e(m['hw']['conventional']['energy_pj']):>13} "
            f"{fmt_e(m['hw']['neuromorphic']['energy_pj']):>14} {str(m['t_settle']):>8} "
            f"{m['snn_agreement']:>8.3f}")
    for sc, d in r["scenarios"].items():
        ref = d["reference"]
        log(f"-- {sc}: reference {ref['member']} on {ref['placement']}: test accuracy "
            f"{100 * ref['accuracy']['test']:.2f}%, {fmt_e(ref['energy_pj'])}/query, "
            f"{ref['latency_s'] * 1e6:.1f} us")
        log(f"   {'ladder':<22} {'test':<9} {'method':<9} {'tol':>5} {'acc':>7} {'drop':>6} {'E/ref':>6} "
            f"{'lat/ref':>7} {'escal':>6} {'selftest share':>14} {'wasted/q':>9}")
        rows = sorted(d["variants"], key=lambda v: (v["method"], v["tolerance"], v["ladder"], v["self_test"]))
        for v in rows:
            head = f"   {v['ladder']:<22} {v['self_test']:<9} {v['method']:<9} {v['tolerance']:>5.3f}"
            if not v["feasible"]:
                b = v["best_achievable"]
                log(f"{head}   infeasible on calib: " + (f"best achievable {b:.4f}" if b is not None
                                                          else v["error"].split(": ", 1)[-1][:70]))
                continue
            t = v["test"]
            log(f"{head} {100 * t['accuracy']:>6.2f}% {100 * t['accuracy_drop']:>5.2f} {t['energy_ratio']:>6.3f} "
                f"{t['latency_ratio']:>7.3f} {t['escalation_rate']:>6.3f} {100 * t['self_test_share']:>13.4f}% "
                f"{fmt_e(t['wasted_pj']):>9}")
        ch = d["chosen"]
        if ch is None:
            log("   chosen: none (no variant met the tolerance on calib)")
        else:
            t = ch["test"]
            log(f"   chosen on calib: {ch['ladder']} / {ch['self_test']} ({ch['method']}, tol {ch['tolerance']}), "
                f"thresholds {['%.4g' % x for x in ch['thresholds']]}: test accuracy {100 * t['accuracy']:.2f}% "
                f"(reference {100 * ref['accuracy']['test']:.2f}%), energy {fmt_e(t['energy_pj'])} = "
                f"{100 * t['energy_ratio']:.1f}% of the reference, escalation {100 * t['escalation_rate']:.1f}%, "
                f"self-test {fmt_e(t['self_test_pj'])}/query")
        a = d["acceptance"]
        log(f"   acceptance (<= 0.5 pt drop at <= 60% energy): {'MET' if a['met'] else 'not met'} "
            f"(accuracy {'ok' if a['accuracy_within_0.5pt'] else 'no'}, energy {'ok' if a['energy_at_most_60pct'] else 'no'})")
    if r.get("online_check"):
        o = r["online_check"]
        log(f"online run of the chosen conventional cascade: accuracy {100 * o['accuracy']:.2f}%, escalation "
            f"{100 * o['escalation_rate']:.1f}%, matches the offline replay: {o['matches_offline']}")
    for n in r.get("notes", []):
        log(f"note: {n}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--sizes", nargs="+", default=None,
                    help="ladder, cheapest first (default tiny small medium)")
    ap.add_argument("--steps", type=int, default=None, help="training steps of non-default sizes (default: task recipe)")
    ap.add_argument("--snn-examples", type=int, default=16)
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--method", default="empirical", choices=("empirical", "ltt", "crc"))
    ap.add_argument("--certify-tolerance", type=float, default=0.02)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--out", default=None, help="folder for JSON and PNG plots")
    ap.add_argument("--workers", type=int, default=1, help="tasks run in parallel as Ray tasks (eval.engine)")
    ap.add_argument("--ray-address", default=None, help="run on this Ray cluster (HOST:PORT)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    jobs = [{"task": t, "sizes": a.sizes or ["tiny", "small", "medium"], "steps": a.steps, "snn_examples": a.snn_examples,
             "tolerance": a.tolerance, "method": a.method, "certify_tolerance": a.certify_tolerance,
             "delta": a.delta, "out_dir": a.out, "seed": a.seed} for t in a.tasks]
    from eval.engine import map_tasks
    results = map_tasks(_one, jobs, workers=a.workers, ray_address=a.ray_address)
    for r in results:
        print_result(r)
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
