"""SNN == QANN over a task's whole held-out split, sharded across Ray tasks (eval.exact).

    python -m eval.benchmarks.bench_exact --task code-stdlib --a-bits 8 --workers 16
    python -m eval.benchmarks.bench_exact --task code-stdlib --coding graded --device cuda --workers 1 --batch-size 256
    snmfm bench exact --task vision-digits --workers 2 --json out.json
    snmfm bench exact --task code-stdlib --ray-address 10.0.0.5:6379     # a Ray cluster

Prints identical / total (bitwise equal SNN and QANN outputs), the largest relative difference,
T_settle statistics over batches, and wall times; --json writes the summary with per-batch records.
Exit code 2 on bad input (unknown task, unreachable --ray-address, a model that cannot fit in memory).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def print_result(r: dict) -> None:
    print(f"{r['task']} W{r['w_bits']}A{r['a_bits']} {r.get('coding', 'binary')} on {r.get('device', 'cpu')}, {r['split']} split: {r['n']} examples, "
          f"{r['batches']} batches of {r['batch_size']} in {r['shards']} shards on "
          f"{r['ray_address'] or (str(r['workers']) + ' workers')}")
    print(f"  SNN == QANN (bitwise): {r['identical']}/{r['n']}  ({100 * r['identical_fraction']:.2f}%)")
    print(f"  max relative difference: {r['max_rel_diff']:.3g}  (max |SNN - QANN| {r['max_abs_diff']:.3g})")
    print(f"  T_settle over batches: mean {r['t_settle_mean']:.1f}, median {r['t_settle_median']:.0f}, "
          f"max {r['t_settle_max']}; unsettled batches {r['unsettled_batches']}")
    print(f"  wall: QANN build {r['build_s']:.1f} s, sharded run {r['run_s']:.1f} s "
          f"(SNN time summed over tasks {r['snn_cpu_s']:.1f} s)")


def main(argv=None) -> int:
    from eval.engine import EngineError, available_cpus
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, help="task name (its shipped checkpoint), checkpoint or QANN file")
    ap.add_argument("--w-bits", type=int, default=8)
    ap.add_argument("--a-bits", type=int, default=8)
    ap.add_argument("--split", default="test", help="held-out split (test; calib also works)")
    ap.add_argument("--limit", type=int, default=None, help="first N examples only (default: the whole split)")
    ap.add_argument("--timesteps", type=int, default=None, help="fixed T (default: until quiet)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None,
                    help=f"Ray tasks in parallel (default: all {available_cpus()} cores; 1: one process, no Ray)")
    ap.add_argument("--ray-address", default=None, help="run on this Ray cluster (HOST:PORT)")
    ap.add_argument("--json", dest="json_path", default=None, help="write the summary here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coding", default="binary", help="the SNN's coding (binary, graded, sigma-delta)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (cuda: use --workers 1)")
    a = ap.parse_args(argv)
    from eval.exact import exact_split
    from snmfm.tasks import TaskError
    workers = a.workers if a.workers is not None else available_cpus()
    t0 = time.perf_counter()
    try:
        r = exact_split(a.task, w_bits=a.w_bits, a_bits=a.a_bits, split=a.split, limit=a.limit, T=a.timesteps,
                        calib=a.calib, batch_size=a.batch_size, seed=a.seed, workers=workers,
                        ray_address=a.ray_address, coding=a.coding, device=a.device,
                        status=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True))
    except (EngineError, TaskError, ValueError, FileNotFoundError) as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None  # also through `snmfm bench exact`, which ignores return codes
    print_result(r)
    print(f"wall {time.perf_counter() - t0:.1f} s")
    if a.json_path:
        Path(a.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_path).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
