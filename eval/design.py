"""`snmfm design TASK`: a specialised accelerator for one workload, per registered accelerator.

One SNN run (the task's QANN in the chosen coding, on `samples` held-out inputs, until quiet) gives
the Workload and the ActivityTrace; every neuromorphic candidate is charged on that same trace,
every conventional candidate on the same Workload, by the analytical `neuro_hw.simulate` (a few
ms per call, so no part of it needs caching across candidates: the mapping and the activity depend
on the swept core count and memories).  The search is NSGA-II (Optuna's `NSGAIISampler`, plain
Optuna in this process, ask/tell by generation) over the knobs of `neuro_hw.design_space`,
minimising energy per inference, latency and area (`neuro_hw.area`).  Plain Optuna rather than
Optuna on Ray Tune: the sampler's bookkeeping is ~0.2 ms per trial, far below a simulate call, so
the only thing worth fanning out is the evaluation of a generation, which `eval.engine.map_tasks`
does in chunks when `workers > 1` (a Ray task per trial would cost more than the trial).

Duplicate points (NSGA-II proposes them on discrete grids) are answered from a cache and not
counted; the search runs until `trials` distinct points were evaluated (or `time_limit_s`).
Points a chip cannot realise (a packet too narrow for its addresses and payload, a config that
does not validate, a payload the chip cannot carry) are counted as infeasible and told to Optuna
as failed.

Result per accelerator: the default design's (energy, latency, area), every evaluated point, the
Pareto front, and the chosen design: the front's lowest-energy point whose latency and area are no
worse than the default's; when the front has none, the point minimising the product of the three
ratios to the default.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

OBJECTIVES = ("energy_pj", "latency_s", "area_mm2")
# NSGA-II mutation probability per knob, raised from Optuna's 1/knobs so that fewer children repeat
# a design already seen (tiny ViT, conventional, 3,000 distinct designs: 6,000 -> 3,400 proposals)
MUTATION_PROB = 0.3
DEFAULT_TRIALS = 10_000


# ---- evaluation (runs in this process or in Ray workers) ----------------------------------------
def evaluate_point(shared: dict, point: dict) -> dict:
    """Objectives of `point` applied to shared["base"] on shared's workload (and trace)."""
    from neuro_hw.area import area_mm2
    from neuro_hw.design_space import apply, check_packet
    try:
        cfg = apply(shared["base"], point)
        check_packet(cfg, shared.get("payload_bits", 0))
        rep = _simulate(shared["workload"], shared["trace"], cfg)
    except ValueError as e:
        return {"point": point, "feasible": False, "reason": str(e)}
    return {"point": point, "feasible": True, "energy_pj": float(rep.energy_pj),
            "latency_s": float(rep.latency_s), "area_mm2": float(area_mm2(cfg)["total"])}


def evaluate_chunk(shared: dict, points: list[dict]) -> list[dict]:
    return [evaluate_point(shared, p) for p in points]


def _simulate(workload, trace, cfg):
    from neuro_hw import simulate
    return simulate(workload, trace, cfg)


# ---- Pareto front and choice ----------------------------------------------------------------------
def pareto_indices(objs: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of `objs` [n, k] (all minimised), in input order.  A row
    is dominated when another is <= in every objective and < in one; equal rows both stay."""
    objs = np.asarray(objs, dtype=float)
    n = len(objs)
    keep = np.ones(n, dtype=bool)
    for s in range(0, n, 512):
        block = objs[s:s + 512]
        le = (objs[None, :, :] <= block[:, None, :]).all(-1)
        lt = (objs[None, :, :] < block[:, None, :]).any(-1)
        keep[s:s + 512] = ~(le & lt).any(1)
    return [int(i) for i in np.flatnonzero(keep)]


def choose(front: list[dict], default: dict) -> dict:
    """The chosen design on `front` against `default` (module docstring)."""
    no_worse = [p for p in front if p["latency_s"] <= default["latency_s"] and p["area_mm2"] <= default["area_mm2"]]
    if no_worse:
        best, rule = min(no_worse, key=lambda p: p["energy_pj"]), "lowest energy at no more latency and area"
    else:
        best = min(front, key=lambda p: math.prod(p[o] / default[o] for o in OBJECTIVES))
        rule = "smallest product of energy, latency and area ratios (no point is no worse in latency and area)"
    return {**best, "rule": rule, **{f"{o}_ratio": best[o] / default[o] for o in OBJECTIVES}}


# ---- the search -------------------------------------------------------------------------------------
def search(shared: dict, *, trials: int = DEFAULT_TRIALS, population: int = 200, seed: int = 0,
           workers: int = 1, ray_address: str | None = None, time_limit_s: float | None = None,
           status: Callable[[str], None] | None = None) -> dict:
    """NSGA-II over the design space of shared["base"]; see the module docstring."""
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState

    from eval.engine import map_tasks
    from neuro_hw.design_space import default_point, size, space_for
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = shared["base"]
    knobs = space_for(base)
    # each knob as the index of its value (ordinal: the grids are increasing), cheaper for Optuna
    # to compare than categorical choices
    dists = {k.name: IntDistribution(0, len(k.values) - 1) for k in knobs}

    def point_of(idx: dict) -> dict:
        return {k.name: k.values[idx[k.name]] for k in knobs}
    trials = min(trials, size(base))
    say = status or (lambda s: None)
    t0, c0 = time.perf_counter(), time.process_time()
    default = evaluate_point(shared, default_point(base))
    if not default["feasible"]:
        raise ValueError(f"the default design of {base.name} does not evaluate: {default['reason']}")
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed, mutation_prob=MUTATION_PROB)
    study = optuna.create_study(directions=["minimize"] * len(OBJECTIVES), sampler=sampler)
    dflt = default_point(base)
    if all(dflt[k.name] in k.values for k in knobs):  # the default is in generation 0
        study.enqueue_trial({k.name: k.values.index(dflt[k.name]) for k in knobs}, skip_if_exists=False)
    cache: dict[tuple, dict] = {}
    asked = 0
    sim_s = 0.0
    while len(cache) < trials and asked < 50 * trials:
        if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
            break
        batch = [study.ask(dists) for _ in range(population)]
        asked += len(batch)
        keys = [tuple(point_of(t.params)[k.name] for k in knobs) for t in batch]
        new = list(dict.fromkeys(k for k in keys if k not in cache))[:max(0, trials - len(cache))]
        t1 = time.perf_counter()
        n_chunks = 1 if workers == 1 and not ray_address else max(1, (workers or 1) * 2)
        chunks = [new[i::n_chunks] for i in range(n_chunks) if new[i::n_chunks]]
        results = map_tasks(evaluate_chunk, [[dict(zip([k.name for k in knobs], key)) for key in c] for c in chunks],
                            workers=workers, ray_address=ray_address, shared=shared)
        sim_s += time.perf_counter() - t1
        got = {key: r for c, rs in zip(chunks, results) for key, r in zip(c, rs)}
        for key in new:  # in proposal order: the same cache (and result) however the batch was split
            cache[key] = got[key]
        for t, key in zip(batch, keys):
            r = cache.get(key)
            if r is None:  # over the budget: not evaluated
                study.tell(t, state=TrialState.FAIL)
            elif r["feasible"]:
                study.tell(t, [r[o] for o in OBJECTIVES])
            else:
                study.tell(t, state=TrialState.FAIL)
        say(f"{base.name}: {len(cache)}/{trials} designs ({time.perf_counter() - t0:.0f} s)")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    pts = [r for r in cache.values() if r["feasible"]]
    objs = np.array([[p[o] for o in OBJECTIVES] for p in pts]) if pts else np.zeros((0, 3))
    front = [pts[i] for i in pareto_indices(objs)] if pts else []
    front.sort(key=lambda p: p["energy_pj"])
    d = {o: default[o] for o in OBJECTIVES} | {"point": default["point"]}
    return {"accelerator": base.name, "knobs": {k.name: list(k.values) for k in knobs}, "space_size": size(base),
            "default": d, "evaluated": len(cache), "feasible": len(pts), "infeasible": len(cache) - len(pts),
            "asked": asked, "wall_s": wall, "cpu_s": cpu, "simulate_wall_s": sim_s,
            "configs_per_s": len(cache) / wall if wall > 0 else None,
            "front": front, "chosen": choose(front, d) if front else None, "points": pts,
            "infeasible_examples": [r for r in cache.values() if not r["feasible"]][:5]}


def prepare(task: str, *, hw: Sequence | None = None, w_bits: int = 8, a_bits: int = 8, coding: str = "binary",
            samples: int = 16, calib: int = 64, seed: int = 0) -> tuple[dict, dict]:
    """(one shared dict per accelerator, info): the Workload and, where needed, the trace of one
    SNN run of `task`'s QANN."""
    import torch

    from converters.workflow import build_qann, resolve_model
    from eval.accelerators import label, needs_trace, parse_hw
    from eval.measure import measure
    from neuro_hw import load_hw_config
    from neuro_hw.design_space import kind_of
    from converters import codings as coding_registry
    coding_registry.get(coding)  # an unknown coding fails now, naming the registered ones
    hws = parse_hw(hw)
    cfgs = {label(h): load_hw_config(h) for h in hws}
    for name, c in cfgs.items():
        kind_of(c)  # no design space: fail before any model work
    torch.manual_seed(seed)
    t, model, qann, info = resolve_model(task)
    if qann is None:
        qann = build_qann(t, model, w_bits=w_bits, a_bits=a_bits, calib=calib, seed=seed)
    m = measure(t, qann, list(cfgs.values()), coding=coding, snn_examples=samples, seed=seed, run_snn=True,
                name=t.name)
    trace = m.hw_trace
    payload = max((int(getattr(s, "payload_bits", 0) or 0) for s in trace.sites.values()
                   if getattr(s, "kind", "") == "neuron"), default=0)
    shared = {name: {"base": c, "workload": m.workload, "trace": trace if needs_trace(c) else None,
                     "payload_bits": payload if needs_trace(c) else 0} for name, c in cfgs.items()}
    info = {"task": t.name, "model": info, "w_bits": w_bits, "a_bits": a_bits, "coding": coding,
            "samples": samples, "seed": seed, "t_settle": m.snn.get("t_settle") if m.snn else None,
            "snn_agreement": m.snn.get("agreement") if m.snn else None, "payload_bits": payload,
            "workload_ops": len(m.workload.ops), "workload_macs": int(m.workload.total_macs)}
    return shared, info


def run_design(task: str, *, hw: Sequence | str | None = None, trials: int = DEFAULT_TRIALS, population: int = 200,
               w_bits: int = 8, a_bits: int = 8, coding: str = "binary", samples: int = 16, calib: int = 64,
               seed: int = 0, workers: int = 1, ray_address: str | None = None, time_limit_s: float | None = None,
               out_dir=None, status: Callable[[str], None] | None = None) -> dict:
    """The whole `snmfm design` job: `trials` distinct designs in total, split evenly over the
    accelerators; JSON-able result (and design-<task>.json / .png in out_dir)."""
    from eval.engine import ensure_ray
    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    if population < 2:
        raise ValueError(f"--population must be >= 2, got {population}")
    if ray_address:
        ensure_ray(ray_address=ray_address)  # an unreachable cluster fails before the SNN run
    t0 = time.perf_counter()
    say = status or (lambda s: None)
    shared, info = prepare(task, hw=hw, w_bits=w_bits, a_bits=a_bits, coding=coding, samples=samples,
                           calib=calib, seed=seed)
    prep_s = time.perf_counter() - t0
    say(f"SNN run and workload: {prep_s:.0f} s")
    per = math.ceil(trials / len(shared))
    results = {}
    for name, sh in shared.items():
        left = None if time_limit_s is None else max(1.0, time_limit_s - (time.perf_counter() - t0))
        results[name] = search(sh, trials=per, population=population, seed=seed, workers=workers,
                               ray_address=ray_address, time_limit_s=left, status=say)
    wall = time.perf_counter() - t0
    evaluated = sum(r["evaluated"] for r in results.values())
    search_s = sum(r["wall_s"] for r in results.values())
    search_cpu = sum(r["cpu_s"] for r in results.values())  # this process only (Ray workers not counted)
    out = {"kind": "design", **info, "trials": trials, "population": population, "workers": workers,
           "accelerators": results, "evaluated": evaluated, "search_wall_s": search_s,
           "configs_per_s": evaluated / search_s if search_s > 0 else None, "search_cpu_s": search_cpu,
           "prepare_s": prep_s, "wall_s": wall,
           "objectives": list(OBJECTIVES)}
    if out_dir is not None:
        import json

        from eval.jsonio import jsonable
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        png = d / f"design-{info['task']}.png"
        plot_design(out, png)
        out["plot"] = str(png)
        (d / f"design-{info['task']}.json").write_text(json.dumps(jsonable(out), indent=1))
    return out


def summary(result: dict) -> dict:
    """The table `snmfm design` prints: per accelerator default vs chosen."""
    rows = {"task": result["task"], "coding": result["coding"], "evaluated": result["evaluated"],
            "designs_per_second": result["configs_per_s"], "search_wall_s": result["search_wall_s"],
            "search_cpu_s": result["search_cpu_s"], "prepare_s": result["prepare_s"]}
    for name, r in result["accelerators"].items():
        c = r["chosen"]
        rows[f"{name}.front"] = len(r["front"])
        rows[f"{name}.infeasible"] = r["infeasible"]
        if c is not None:
            for o in OBJECTIVES:
                rows[f"{name}.{o}_ratio"] = c[f"{o}_ratio"]
            rows[f"{name}.chosen"] = ", ".join(f"{k}={v}" for k, v in c["point"].items()
                                               if r["default"]["point"].get(k) != v) or "the default"
    return rows


# ---- plot and report section ------------------------------------------------------------------------
def plot_design(result: dict, path) -> Path:
    """Energy vs latency of every evaluated design (colour: area), the front, default and chosen."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    accs = result["accelerators"]
    fig, axes = plt.subplots(1, len(accs), figsize=(5.2 * len(accs), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], accs.items()):
        if r["points"]:
            p = np.array([[q["latency_s"], q["energy_pj"], q["area_mm2"]] for q in r["points"]])
            sc = ax.scatter(p[:, 0], p[:, 1], c=np.log10(p[:, 2]), s=4, cmap="viridis", alpha=0.5, linewidths=0)
            fig.colorbar(sc, ax=ax, label="log10 area (mm²)")
        if r["front"]:
            f = np.array([[q["latency_s"], q["energy_pj"]] for q in r["front"]])
            ax.scatter(f[:, 0], f[:, 1], s=10, facecolors="none", edgecolors="k", linewidths=0.6,
                       label=f"Pareto front ({len(r['front'])})")
        dft = r["default"]
        ax.scatter([dft["latency_s"]], [dft["energy_pj"]], marker="s", s=60, c="tab:red", label="default")
        if r["chosen"]:
            ax.scatter([r["chosen"]["latency_s"]], [r["chosen"]["energy_pj"]], marker="*", s=160, c="tab:orange",
                       edgecolors="k", label="chosen")
        ax.set(xscale="log", yscale="log", xlabel="latency per inference (s)", ylabel="energy per inference (pJ)",
               title=f"{name}: {r['evaluated']} designs")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"design search, {result['task']} W{result['w_bits']}A{result['a_bits']} {result['coding']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


DESIGN_TEXT = (
    "A multi-objective search (NSGA-II, Optuna) over each accelerator's own parameters for this task's "
    "workload: energy per inference and latency from the analytical hardware model (neuromorphic "
    "candidates all charged on the trace of one SNN run), area from per-node figures (neuro_hw.area, "
    "sources there). The chosen design is the front's lowest-energy point with no more latency and area "
    "than the shipped default (else the best product of the three ratios).")


def design_section(result: dict, level: int = 3, image: str | None = None) -> list:
    """Report blocks (eval.report_doc style: ("h", level, text), ("p", text), ("table", head, rows),
    ("img", path, alt)) of a `run_design` result."""
    from eval.fmt import fmt_energy, fmt_time
    out = [("h", level, f"Design search: {result['task']} ({result['coding']}, W{result['w_bits']}A{result['a_bits']})"),
           ("p", DESIGN_TEXT),
           ("p", f"{result['evaluated']} distinct designs evaluated in {result['search_wall_s']:.0f} s "
                 f"({result['configs_per_s']:.0f} per second) after one SNN run of {result['samples']} inputs.")]
    img = image or result.get("plot")
    if img:
        out.append(("img", img, f"design search fronts, {result['task']}"))
    rows = []
    for name, r in result["accelerators"].items():
        d, c = r["default"], r["chosen"]
        changed = "—" if c is None else (", ".join(f"{k} {d['point'].get(k)}→{v}" for k, v in c["point"].items()
                                                   if d["point"].get(k) != v) or "none")
        rows.append([name, f"{r['evaluated']} / {r['infeasible']} / {len(r['front'])}",
                     fmt_energy(d["energy_pj"]), fmt_time(d["latency_s"]), f"{d['area_mm2']:.3g} mm²",
                     "—" if c is None else fmt_energy(c["energy_pj"]), "—" if c is None else fmt_time(c["latency_s"]),
                     "—" if c is None else f"{c['area_mm2']:.3g} mm²",
                     "—" if c is None else f"{c['energy_pj_ratio']:.3g}× / {c['latency_s_ratio']:.3g}× / {c['area_mm2_ratio']:.3g}×",
                     changed])
    out.append(("table", ["Accelerator", "Evaluated / infeasible / front", "Default E", "Default latency",
                          "Default area", "Chosen E", "Chosen latency", "Chosen area",
                          "E / latency / area vs default", "Changed knobs"], rows))
    return out
