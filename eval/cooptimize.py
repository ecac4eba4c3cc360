"""Input co-optimisation on both accelerators (`run_cooptimize`): accuracy-versus-energy fronts
over input configuration x bit width x time steps.

Per task, every input configuration (snmfm.cooptimize: resolution and patch size with a model
trained per shape, training-free token pruning/merging of the default model, context length of a
language model) is quantized at each bit width and measured by eval.measure:

on every accelerator it is given (`hw`, names as neuro_hw registers them; default the dense
conventional accelerator and the idealised neuromorphic chip):
* a dense accelerator (no trace): the QANN's Workload; accuracy of the QANN on the test split (T
  plays no part: the QANN runs once, densely);
* an SNN-driven accelerator: the SNN run until quiet on `snn_examples` test queries (one run shared
  by all of them), charged at the settle point and at every fixed T below it (the trace cut to T
  steps); accuracy at that T on the same queries (at the settle point the SNN equals the QANN on
  them).

The fronts are the Pareto sets of those points; the report quotes the front's cheapest point within
half a point of the default configuration's accuracy (iso-accuracy saving) and its most accurate
point, each against the default configuration (the task's default checkpoint, native input, W8A8,
and on the chip T = T_settle).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from snmfm.cooptimize import InputConfig, pareto_front, vision_grid

DEFAULT_BITS = ((8, 8), (8, 4), (4, 4))
DEFAULT_HW = ("conventional", "neuromorphic")
DEFAULT_T = (2, 4, 8, 16, 32, 64, 128)
ISO_TOLERANCE = 0.005
# per task: training steps of the per-shape models, SNN queries, QANN test-query cap
TASK_DEFAULTS = {
    "vision-digits": {"steps": 1500, "snn_examples": 32, "eval_limit": None},
    "vqa-digits": {"steps": 1500, "snn_examples": 16, "eval_limit": None},
    "code-stdlib": {"steps": None, "snn_examples": 4, "eval_limit": 256},
    "medical-wdbc": {"steps": None, "snn_examples": 64, "eval_limit": None},
}


def task_configs(task_name: str) -> list[InputConfig]:
    """The default search space of a task (the default configuration first)."""
    if task_name == "vision-digits":
        return [InputConfig()] + vision_grid()
    if task_name == "vqa-digits":
        return [InputConfig(), InputConfig(4, 2), InputConfig(6, 3), InputConfig(8, 2), InputConfig(8, 4),
                InputConfig(keep_tokens=14), InputConfig(keep_tokens=12), InputConfig(keep_tokens=12, token_mode="merge")]
    if task_name in ("code-stdlib", "text-minilm"):
        return [InputConfig()] + [InputConfig(context=n) for n in (16, 32, 64)]
    raise ValueError(f"no co-optimisation search space for task {task_name!r}; "
                     "tasks: vision-digits, vqa-digits, code-stdlib, text-minilm")


# ---- models per configuration ----------------------------------------------------------------------
def _overrides(task, cfg: InputConfig) -> dict:
    shape = {"image_size": cfg.image_size, "patch_size": cfg.patch_size}
    return {"vision": shape} if task.model_name == "multimodal" else shape


def _native(task) -> int:
    return 8  # both vision tasks use the 8x8 digits


def config_model(task_name: str, cfg: InputConfig, *, size: str | None = None, steps: int | None = None,
                 seed: int = 0, cache=None, train: bool = True, progress: bool = False,
                 device: str | None = None):
    """(module taking the task's inputs, meta) for one input configuration."""
    from snmfm.cooptimize import ResizedInput, TokenPruned
    from snmfm.tasks import get_task

    from eval.model_cache import trained_model
    task = get_task(task_name)
    if cfg.trains:
        r = cfg.image_size
        wrap = (lambda m: ResizedInput(m, r)) if r != _native(task) else None
        model, meta = trained_model(task.name, size, overrides=_overrides(task, cfg), steps=steps,
                                    seed=seed, wrap=wrap, tag=f"resize{r}", cache=cache, train=train,
                                    progress=progress, device=device)
        return (ResizedInput(model, r) if wrap else model), meta
    base_steps = None if size in (None, task.default_size) else steps
    model, meta = trained_model(task.name, size, steps=base_steps, seed=seed, cache=cache, train=train,
                                progress=progress, device=device)
    if cfg.keep_tokens is not None:
        return TokenPruned(model, cfg.keep_tokens, cfg.token_mode), meta
    return model, meta


def truncated_task(task, n: int | None):
    """The task with inputs and targets cut to the first n positions (None: the task itself)."""
    if n is None:
        return task
    from snmfm.tasks import Batch
    base = type(task)

    class Truncated(base):
        def batches(self, split, batch_size, seed=0, limit=None):
            for b in base.batches(self, split, batch_size, seed, limit):
                yield Batch(tuple(x[:, :n] for x in b), b.targets[:, :n], b.ids)

    t = Truncated.__new__(Truncated)
    t.__dict__.update(task.__dict__)
    return t


# ---- one measurement (a worker job) ------------------------------------------------------------
def measure_job(job: dict) -> dict:
    """Measure one (configuration, bits); cached as JSON under the optimisation cache."""
    import torch

    from snmfm.tasks import get_task

    from eval.measure import measure_model
    from eval.model_cache import cache_root, code_version
    torch.set_num_threads(1)
    cfg = InputConfig(**job["config"])
    root = Path(job["cache"]) if job.get("cache") else cache_root()
    module, meta = config_model(job["task"], cfg, size=job.get("size"), steps=job.get("steps"),
                                seed=job["seed"], cache=job.get("cache"), train=job.get("train", True))
    sha = (meta.get("tensors_sha256") or "")[:12]
    w, a = job["bits"]
    hw = list(job.get("hw") or DEFAULT_HW)
    key = (f"{job['task']}-{cfg.label().replace(' ', '_').replace('/', '-')}-{sha}-W{w}A{a}-hw{'+'.join(hw)}"
           f"-snn{job['snn_examples']}-T{'_'.join(map(str, job['T_values']))}-lim{job.get('eval_limit')}"
           f"-cal{job.get('calib_limit', 256)}-seed{job['seed']}")
    f = root / "coopt" / code_version("measure") / f"{key}.json"
    if f.is_file():
        return json.loads(f.read_text())
    t0 = time.perf_counter()
    task = truncated_task(get_task(job["task"]), cfg.context)
    m = measure_model(task, module, w_bits=w, a_bits=a, snn_examples=job["snn_examples"],
                      T_values=job["T_values"], eval_limit=job.get("eval_limit"), seed=job["seed"],
                      calib_limit=job.get("calib_limit", 256), accelerators=hw)
    m.update({"config": cfg.to_dict(), "label": cfg.label(), "model": meta.get("key"),
              "train_accuracy_test": (meta.get("metrics") or {}).get("accuracy"),
              "wall_s": time.perf_counter() - t0})
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(m))
    return m


def train_job(job: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    _, meta = config_model(job["task"], InputConfig(**job["config"]), size=job.get("size"),
                           steps=job.get("steps"), seed=job["seed"], cache=job.get("cache"),
                           device=job.get("device"))
    return {"key": meta.get("key"), "accuracy": (meta.get("metrics") or {}).get("accuracy")}


def training_jobs(task_name: str, configs: Sequence[InputConfig] | None = None, *, size=None, steps=None,
                  seed: int = 0, cache=None, device: str | None = None) -> list[dict]:
    """Jobs for `train_job`: the per-shape models and the default model (once)."""
    d = TASK_DEFAULTS.get(task_name, {})
    configs = list(configs) if configs is not None else task_configs(task_name)
    steps = steps if steps is not None else d.get("steps")
    common = {"task": task_name, "size": size, "steps": steps, "seed": seed,
              "cache": str(cache) if cache else None, "device": device}
    jobs = [{**common, "config": InputConfig().to_dict()}] if any(not c.trains for c in configs) else []
    return jobs + [{**common, "config": c.to_dict()} for c in configs if c.trains]


def measure_jobs(task_name: str, configs: Sequence[InputConfig] | None = None, *,
                 bits: Sequence[tuple[int, int]] = DEFAULT_BITS, T_values: Sequence[int] = DEFAULT_T,
                 size: str | None = None, steps: int | None = None, snn_examples: int | None = None,
                 eval_limit: int | None = -1, calib_limit: int | None = 256, seed: int = 0, cache=None,
                 train: bool = True, hw: Sequence[str] = DEFAULT_HW) -> list[dict]:
    """Jobs for `measure_job`: every configuration at every bit width (defaults as run_cooptimize)."""
    d = TASK_DEFAULTS.get(task_name, {})
    configs = list(configs) if configs is not None else task_configs(task_name)
    steps = steps if steps is not None else d.get("steps")
    snn_examples = snn_examples or d.get("snn_examples", 32)
    eval_limit = d.get("eval_limit") if eval_limit == -1 else eval_limit
    common = {"task": task_name, "size": size, "steps": steps, "seed": seed,
              "cache": str(cache) if cache else None}
    return [{**common, "config": c.to_dict(), "bits": list(b), "snn_examples": snn_examples,
             "T_values": list(T_values), "eval_limit": eval_limit, "calib_limit": calib_limit, "train": train,
             "hw": list(hw)}
            for c in configs for b in bits]


def run_jobs(fn: Callable, jobs: list[dict], workers: int = 1, status: Callable | None = None,
             ray_address: str | None = None) -> list:
    """Run jobs in order (workers=1) or as Ray tasks (eval.engine; one CPU each), results in
    input order either way."""
    from eval.engine import map_tasks
    return map_tasks(fn, jobs, workers=workers, ray_address=ray_address, status=status)


# ---- the study ------------------------------------------------------------------------------------
def points_of(measurements: list[dict]) -> dict[str, list[dict]]:
    """Accuracy/energy points per accelerator from measurements: a dense accelerator's at the
    QANN's accuracy (T None), an SNN-driven one's at the settle point and at every fixed T."""
    out: dict[str, list[dict]] = {}
    for m in measurements:
        base = {"config": m["label"], "bits": f"W{m['w_bits']}A{m['a_bits']}", "tokens": None}
        traced = {a: v["needs_trace"] for a, v in m.get("accelerators", {}).items()} or \
            {"conventional": False, "neuromorphic": True}  # measurements cached before accelerators were named
        for acc, h in m["hw"].items():
            pts = out.setdefault(acc, [])
            if not traced[acc]:
                pts.append({**base, "T": None, "accuracy": m["qann"]["accuracy"], "energy_pj": h["energy_pj"],
                            "latency_s": h["latency_s"], "macs": m["workload"]["macs"]})
                continue
            pts.append({**base, "T": "settle", "t_settle": m["snn"]["t_settle"], "accuracy": m["snn"]["accuracy"],
                        "energy_pj": h["energy_pj"], "latency_s": h["latency_s"], "macs": m["workload"]["macs"]})
            for T, per in sorted(m["hw_T"].items(), key=lambda kv: int(kv[0])):
                hT = per.get(acc) if "energy_pj" not in per else per  # older cache: the chip's summary
                if hT is not None:
                    pts.append({**base, "T": int(T), "t_settle": m["snn"]["t_settle"], "accuracy": hT["accuracy"],
                                "energy_pj": hT["energy_pj"], "latency_s": hT["latency_s"],
                                "macs": m["workload"]["macs"]})
    return out


def front_summary(points: list[dict], default: dict, tolerance: float = ISO_TOLERANCE) -> dict:
    front = pareto_front(points)
    fp = [points[i] for i in front]
    iso = [p for p in fp if p["accuracy"] >= default["accuracy"] - tolerance - 1e-12]
    cheapest = min(iso, key=lambda p: p["energy_pj"]) if iso else None
    best = max(fp, key=lambda p: (p["accuracy"], -p["energy_pj"]))

    def vs(p):
        return None if p is None else {**p, "energy_ratio": p["energy_pj"] / default["energy_pj"],
                                       "accuracy_delta": p["accuracy"] - default["accuracy"]}
    return {"front": fp, "n_points": len(points), "default": default,
            "iso_accuracy": vs(cheapest), "best_accuracy": vs(best)}


def run_cooptimize(task_name: str, configs: Sequence[InputConfig] | None = None, *,
                   bits: Sequence[tuple[int, int]] = DEFAULT_BITS, T_values: Sequence[int] = DEFAULT_T,
                   size: str | None = None, steps: int | None = None, snn_examples: int | None = None,
                   eval_limit: int | None = -1, calib_limit: int | None = 256, seed: int = 0, cache=None,
                   out_dir=None, workers: int = 1, ray_address: str | None = None,
                   train: bool = True, train_device: str | None = None, hw: Sequence[str] = DEFAULT_HW,
                   status: Callable[[str], None] | None = None) -> dict:
    """The co-optimisation study of one task (module docstring); returns a JSON-able dict.

    configs: input configurations (default `task_configs`); the first is the default one.  steps,
    snn_examples, eval_limit: per-shape training steps, SNN test queries, QANN test-query cap
    (defaults in TASK_DEFAULTS; eval_limit=-1 means the task default).  workers: Ray tasks for
    training and measuring (ray_address: on that cluster; eval.engine); train_device: where per-shape models train (e.g. "cuda").  out_dir:
    write cooptimize-<task>.json and the fronts' PNG there.  hw: the accelerators (names or
    "a,b"), each with its own front."""
    from eval.accelerators import label, needs_trace, parse_hw
    hw = [label(h) for h in parse_hw(hw)]  # unknown names fail before any work
    t0 = time.perf_counter()
    say = status or (lambda s: None)
    d = TASK_DEFAULTS.get(task_name, {})
    configs = list(configs) if configs is not None else task_configs(task_name)
    steps = steps if steps is not None else d.get("steps")
    snn_examples = snn_examples or d.get("snn_examples", 32)
    eval_limit = d.get("eval_limit") if eval_limit == -1 else eval_limit
    if train:
        trains = training_jobs(task_name, configs, size=size, steps=steps, seed=seed, cache=cache,
                               device=train_device)
        say(f"train {len(trains)} models")
        run_jobs(train_job, trains, workers, say, ray_address)
    jobs = measure_jobs(task_name, configs, bits=bits, T_values=T_values, size=size, steps=steps,
                        snn_examples=snn_examples, eval_limit=eval_limit, calib_limit=calib_limit, seed=seed,
                        cache=cache, train=train, hw=hw)
    say(f"measure {len(jobs)} configurations")
    ms = run_jobs(measure_job, jobs, workers, say, ray_address)
    pts = points_of(ms)
    default_label = configs[0].label()
    main_bits = f"W{bits[0][0]}A{bits[0][1]}"
    fronts = {}
    for acc, p in pts.items():
        want_T = "settle" if needs_trace(acc) else None
        default = next(q for q in p if q["config"] == default_label and q["bits"] == main_bits and q["T"] == want_T)
        fronts[acc] = front_summary(p, default)
    result = {"task": task_name, "configs": [c.to_dict() | {"label": c.label()} for c in configs],
              "bits": [f"W{w}A{a}" for w, a in bits], "T_values": list(T_values),
              "snn_examples": snn_examples, "eval_limit": eval_limit, "steps": steps,
              "default": {"config": default_label, "bits": main_bits, "T": "settle"},
              "accelerators": {a: {"needs_trace": needs_trace(a)} for a in hw}, "points": pts, "fronts": fronts,
              "measurements": [{k: m[k] for k in ("label", "w_bits", "a_bits", "workload", "model",
                                                  "train_accuracy_test", "wall_s")}
                               | {"t_settle": m["snn"]["t_settle"], "qann_accuracy": m["qann"]["accuracy"],
                                  "snn_agreement": m["snn"]["agreement"]} for m in ms],
              "wall_s": time.perf_counter() - t0}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(plot_fronts(result, out / f"cooptimize-{task_name}.png"))]
        (out / f"cooptimize-{task_name}.json").write_text(json.dumps(result, indent=1))
    return result


def plot_fronts(result: dict, path) -> Path:
    """Accuracy versus energy per inference on both accelerators: every point (colour = input
    configuration, marker = bits), the Pareto front, the default configuration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [c["label"] for c in result["configs"]]
    cmap = plt.get_cmap("tab20")
    colour = {lb: cmap(i % 20) for i, lb in enumerate(labels)}
    markers = {b: m for b, m in zip(result["bits"], "os^Dv")}
    accels = list(result["points"])
    fig, axes = plt.subplots(1, len(accels), figsize=(6.5 * len(accels), 5), squeeze=False)
    for ax, acc in zip(axes[0], accels):
        pts = result["points"][acc]
        for p in pts:
            ax.scatter(p["energy_pj"], 100 * p["accuracy"], color=colour[p["config"]],
                       marker=markers.get(p["bits"], "o"), s=18, alpha=0.75, lw=0)
        fr = result["fronts"][acc]
        ax.step([p["energy_pj"] for p in fr["front"]], [100 * p["accuracy"] for p in fr["front"]],
                where="post", color="k", lw=1.2, label="Pareto front")
        dft = fr["default"]
        ax.scatter(dft["energy_pj"], 100 * dft["accuracy"], marker="*", s=220, color="tab:red",
                   edgecolor="k", zorder=5, label="default")
        if fr["iso_accuracy"]:
            p = fr["iso_accuracy"]
            ax.scatter(p["energy_pj"], 100 * p["accuracy"], marker="P", s=150, color="gold",
                       edgecolor="k", zorder=5, label=f"iso-accuracy: {_pt(p)}")
        ax.set_xscale("log")
        ax.set_xlabel("energy per inference (pJ)")
        ax.set_ylabel("test accuracy (%)")
        lo = min(100 * p["accuracy"] for p in fr["front"])
        ax.set_ylim(max(0, min(lo, 100 * dft["accuracy"]) - 5), 100.5)
        ax.set_title(f"{result['task']}: {acc} ({len(pts)} points)")
        ax.legend(fontsize=7, loc="lower right")
    handles = [plt.Line2D([], [], color=colour[lb], marker="o", ls="", label=lb) for lb in labels]
    handles += [plt.Line2D([], [], color="gray", marker=m, ls="", label=b) for b, m in markers.items()]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _pt(p: dict) -> str:
    t = "" if p.get("T") in (None,) else f" T={p['T']}"
    return f"{p['config']} {p['bits']}{t}"
