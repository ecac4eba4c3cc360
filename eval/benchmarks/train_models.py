"""Train and cache every model the operation-optimisation benchmarks use, in parallel.

Cascade ladders (tiny / small / medium of vision-digits, medical-wdbc, vqa-digits) and the
co-optimisation models (one per resolution x patch shape of vision-digits and vqa-digits, the
default checkpoints, code-stdlib's included).  Each job is eval.model_cache.trained_model (or the
task's default checkpoint), so the benchmarks find them in the cache afterwards.

    python -m eval.benchmarks.train_models [--device cuda] [--workers 8] [--only cascade|coopt]
"""
from __future__ import annotations

import argparse
import time


def _job(job: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if job["kind"] == "coopt":
        from eval.cooptimize import train_job
        out = train_job(job)
    else:
        from eval.model_cache import trained_model
        _, meta = trained_model(job["task"], job["size"], steps=job.get("steps"), seed=job["seed"],
                                device=job.get("device"))
        out = {"key": meta.get("key"), "accuracy": (meta.get("metrics") or {}).get("accuracy")}
    return {**out, "task": job["task"], "what": job.get("size") or job.get("config"),
            "wall_s": time.perf_counter() - t0}


def jobs(only=None, device=None, seed=0, cascade_tasks=("vision-digits", "medical-wdbc", "vqa-digits"),
         coopt_tasks=("vision-digits", "vqa-digits", "code-stdlib"), sizes=("tiny", "small", "medium"),
         steps=None) -> list[dict]:
    from eval.cooptimize import training_jobs
    out = []
    if only in (None, "cascade"):
        out += [{"kind": "cascade", "task": t, "size": s, "steps": steps, "seed": seed, "device": device}
                for t in cascade_tasks for s in sizes]
    if only in (None, "coopt"):
        for t in coopt_tasks:
            out += [{**j, "kind": "coopt"} for j in training_jobs(t, seed=seed, device=device)]
    # the default checkpoints first (several jobs need them), then the longest jobs
    from snmfm.tasks import get_task
    seen, uniq = set(), []
    for j in out:
        default = (j["kind"] == "cascade" and j["size"] == get_task(j["task"]).default_size) or (
            j["kind"] == "coopt" and not j["config"].get("image_size"))
        k = (j["task"], "default") if default else (j["task"], j.get("size"), str(j.get("config")))
        if k not in seen:
            seen.add(k)
            uniq.append(j)
    return uniq


def main(argv=None) -> int:
    from eval.cooptimize import run_jobs
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--workers", type=int, default=1, help="Ray tasks in parallel (eval.engine)")
    ap.add_argument("--ray-address", default=None, help="run on this Ray cluster (HOST:PORT)")
    ap.add_argument("--only", choices=("cascade", "coopt"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    js = jobs(a.only, a.device, a.seed)
    # default checkpoints before anything that builds on them
    first = [j for j in js if (j["kind"] == "cascade" and j["size"] == "small")
             or (j["kind"] == "coopt" and not j["config"].get("image_size"))]
    # (the cascade's 'small' is the task's default size: its default checkpoint)
    rest = [j for j in js if j not in first]
    t0 = time.perf_counter()
    for r in run_jobs(_job, first, a.workers, ray_address=a.ray_address) + run_jobs(_job, rest, a.workers, ray_address=a.ray_address):
        print(f"{r['task']:<14} {str(r['what']):<70} acc {r['accuracy']} {r['wall_s']:.0f} s {r['key']}", flush=True)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
