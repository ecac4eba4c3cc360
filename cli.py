"""snmfm command line: thin wrappers that parse, call one library function, and print.

Every command prints a rich table, or with --json exactly one JSON object on stdout (progress and
notes go to stderr).  User errors (unknown task, bad size, missing or corrupt checkpoint) exit
with code 2 and a one-line message that names the problem and the fix, never a traceback.

Adding a command: decorate a function with ``@main.command()`` and ``@handles_errors``, call
one library function, and finish with ``emit(result, as_json, title=...)``.
"""
from __future__ import annotations

import functools
import json
import math
import sys

import click

EXIT_USAGE = 2


# ---- helpers shared by every command ----------------------------------------------------------
class SnmfmCLIError(click.ClickException):
    """A user error: printed as 'Error: <message>' and exit code 2."""

    exit_code = EXIT_USAGE


def _user_errors() -> tuple[type[BaseException], ...]:
    """Library exception types that are the user's to fix (imported lazily: fast --help).
    ValueError is the library's "bad input" error (bad config key, T < 1, infeasible budget...)."""
    from snmfm.checkpoint import CheckpointError
    from snmfm.tasks import TaskError
    return (CheckpointError, TaskError, FileNotFoundError, ValueError)


def handles_errors(fn):
    """Turn the library's user-facing errors into exit code 2 with their message."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except _user_errors() as e:
            raise SnmfmCLIError(str(e)) from None
    return wrapper


def _coding_names(ctx, param, value):
    """--coding NAME[,NAME...]: registered codings (converters.codings), checked before any work."""
    if value is None:
        return value
    from converters import codings
    names = [v.strip() for v in str(value).split(",") if v.strip()]
    if not names:
        raise click.BadParameter(f"give a coding: {', '.join(codings.names())}", param=param)
    multi = param.name == "codings"
    if len(names) > 1 and not multi:
        raise click.BadParameter(f"give one coding, got {len(names)}: {value}", param=param)
    for n in names:
        try:
            codings.get(n)
        except ValueError as e:
            raise click.BadParameter(str(e), param=param) from None
    return value if multi else names[0]


CODING = click.option("--coding", default="binary", show_default=True, callback=_coding_names,
                      help="Spiking coding of the SNN: binary (±1 spikes), graded (integer-payload events, "
                           "settles in one step) or sigma-delta (graded, state kept over a stream).")


def _hw_names(ctx, param, value):
    """--hw NAME[,NAME...]: each a registered accelerator, an alias or a config file, checked before
    any work (an unknown name lists the registered ones; exit code 2)."""
    if value is None:
        return value
    from neuro_hw import load_hw_config
    names = [v.strip() for v in str(value).split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give an accelerator name or a config file", param=param)
    for n in names:
        if param.name == "target" and n == "size":
            continue
        try:
            load_hw_config(n)
        except (ValueError, FileNotFoundError) as e:
            raise click.BadParameter(str(e), param=param) from None
    return value


def _plain(x):
    """JSON-safe value: NaN/Inf as null (strict JSON), tensors and numpy scalars as numbers."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):
        return _plain(x.tolist())
    return x


def print_json(obj) -> None:
    click.echo(json.dumps(_plain(obj), sort_keys=True))


def _cell(key, value) -> str:
    """A table cell in human units (eval.fmt.fmt_quantity: `*_pj` energies, `*_s` times); a dict
    as `k=v` pairs formatted the same way.  Strings pass through (already formatted)."""
    from eval.fmt import fmt_quantity
    if isinstance(value, dict):
        return ", ".join(f"{a}={_cell(a, b)}" for a, b in value.items())
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"{len(value)} values (see --json)"
    return fmt_quantity(key, value)


def print_table(result: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        table.add_row(str(k), _cell(k, v))
    Console().print(table)


def emit(result: dict, as_json: bool, title: str) -> None:
    if as_json:
        print_json(result)
    else:
        print_table(result, title)


class LazyChoice(click.Choice):
    """click.Choice whose choices are read on first use, so `snmfm --help` does not import torch."""

    def __init__(self, load, case_sensitive: bool = True):
        self._load, self._choices, self.case_sensitive = load, None, case_sensitive

    @property
    def choices(self):
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices


def _task_names() -> list[str]:
    from snmfm.tasks import TASKS
    return list(TASKS)


def _size_names() -> list[str]:
    from snmfm.models import SIZES
    return list(SIZES)


TASK = click.argument("task", type=LazyChoice(_task_names), metavar="TASK")
SEED = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")


def _device(ctx, param, value):
    """--device checked when parsed (snmfm.device.resolve_device): cuda without a GPU is exit 2."""
    from snmfm.device import resolve_device
    try:
        return resolve_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix(f"--device {value}: "), ctx=ctx, param=param) from None


# for every command with --device: the option gives the command a torch.device
DEVICE = click.option("--device", default="cpu", show_default=True, callback=_device, metavar="cpu|cuda|auto",
                      help="Where the model and SNN run (auto: cuda when a GPU is visible).")


# ---- commands ---------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snmfm")
def main():
    """snmfm: compressed multimodal foundation models -> exact spiking models -> hardware energy.

    Tasks: vision-digits, medical-wdbc, code-stdlib, vqa-digits, text-minilm, vision-digits-stream."""


@main.command()
@TASK
@click.option("--size", type=LazyChoice(_size_names), default=None,
              help="Model size (default: the task's default size).")
@SEED
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps (default: the task's).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint path (writes PATH.safetensors + PATH.json; default: the cache).")
@JSON
@handles_errors
def train(task, size, seed, steps, out, as_json):
    """Train TASK's model from scratch (seeded, CPU) and save a checkpoint."""
    from snmfm.tasks.run import train_and_save
    _check_out_file(out)
    result = train_and_save(task, out=out, size=size, seed=seed, steps=steps, progress=not as_json)
    emit(result, as_json, title=f"trained {task}")


@main.command()
@TASK
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint path (default: the task's shipped checkpoint).")
@SEED
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate at most N test examples (chosen by --seed).")
@JSON
@handles_errors
def evaluate(task, checkpoint, seed, limit, as_json):
    """Evaluate a trained checkpoint of TASK on its held-out test split."""
    from snmfm.tasks.run import evaluate_checkpoint
    result = evaluate_checkpoint(task, checkpoint=checkpoint, seed=seed, limit=limit)
    emit(result, as_json, title=f"{task} ({result['split']} split)")


# ---- conversion, hardware, the main job -------------------------------------------------------
MODEL = click.argument("model", metavar="MODEL")
BITS = [click.option("--w-bits", type=click.IntRange(2, 16), default=8, show_default=True,
                     help="Weight bits."),
        click.option("--a-bits", type=click.IntRange(2, 16), default=8, show_default=True,
                     help="Activation bits (levels = 2^bits: also the SNN's spike budget).")]


def _bits(fn):
    for opt in reversed(BITS):
        fn = opt(fn)
    return fn


@main.command()
@MODEL
@click.option("--task", default=None, help="Task of MODEL when it is a checkpoint file that does not say.")
@_bits
@click.option("--timesteps", type=click.IntRange(min=1), default=None,
              help="Fixed time steps (default: run until the network is quiet).")
@click.option("--calib", type=click.IntRange(min=1), default=64, show_default=True,
              help="Calibration samples from the task's calib split.")
@click.option("--method", type=click.Choice(["mse", "percentile", "max"]), default="mse", show_default=True,
              help="Activation scale search.")
@click.option("--check", "n_check", type=click.IntRange(min=1), default=32, show_default=True,
              help="Held-out inputs on which SNN == QANN is checked.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the QANN to OUT.json + OUT.safetensors (loadable by converters.load_qann / load_spiking).")
@CODING
@SEED
@JSON
@handles_errors
def convert(model, task, w_bits, a_bits, timesteps, calib, method, n_check, out, coding, seed, as_json):
    """Quantize MODEL (task name or checkpoint) and convert it to an exact SNN.

    Prints T_settle and the SNN == QANN check on held-out inputs."""
    from converters.workflow import convert_checkpoint
    _check_out_file(out)
    result = convert_checkpoint(model, task=task, w_bits=w_bits, a_bits=a_bits, T=timesteps, calib=calib,
                                n_check=n_check, method=method, out=out, seed=seed, coding=coding)
    for w in result["warnings"]:
        click.echo(f"warning: {w}", err=True)
    steps = f", fixed T={timesteps}" if timesteps is not None else ""
    emit(result, as_json, title=f"converted {result['task']} {result['bits']} {coding}{steps}")


@main.command()
@MODEL
@click.option("--hw", default="neuromorphic", show_default=True, callback=_hw_names,
              help="Hardware: a registered accelerator (conventional, loihi1, loihi2, neuromorphic-ideal, "
                   "...; alias neuromorphic) or a TOML/YAML file.")
@click.option("--task", default=None, help="Task of MODEL when it is a checkpoint file that does not say.")
@_bits
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Held-out inputs whose SNN activity drives the neuromorphic chip (default: the main "
                   "job's count for the task, at most 16; text-minilm 1).")
@click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Fixed SNN time steps.")
@CODING
@SEED
@JSON
@handles_errors
def simulate(model, hw, task, w_bits, a_bits, samples, timesteps, coding, seed, as_json):
    """Energy, cycles and latency of one inference of MODEL on a hardware model.

    MODEL: a task name (its default checkpoint), a checkpoint path or a QANN file."""
    from eval.workflow import simulate_model
    report = simulate_model(model, hw, task=task, w_bits=w_bits, a_bits=a_bits, samples=samples,
                            T=timesteps, seed=seed, status=lambda text: click.echo(text, err=True))
    if as_json:
        print_json(report.to_dict())
        return
    from eval.fmt import fmt_energy, fmt_time
    row = {"accelerator": report.accelerator, "energy": fmt_energy(report.energy_pj), "cycles": report.cycles,
           "latency": fmt_time(report.latency_s),
           **{f"breakdown.{k}": fmt_energy(v) for k, v in report.breakdown_pj.items()}}
    if report.spike_driven_fraction:
        row.update({f"spike_driven.{k}": f"{100 * v:.1f}%" for k, v in report.spike_driven_fraction.items()})
    print_table(row, title=f"{report.meta.get('task')} on {report.accelerator}")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)


def _csv(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _tasks_option(value: str | None) -> list[str] | None:
    """--tasks: None when not given (the command's default tasks); an empty list is an error, not
    "all tasks"."""
    if value is None:
        return None
    names = _csv(value)
    if not names:
        raise SnmfmCLIError(f"--tasks {value!r} is empty; give comma-separated task names such as "
                            "vision-digits,medical-wdbc, or leave --tasks out for the default tasks")
    return names


def _stage_printer(what: str):
    """Progress for a long command: one timestamped line per stage on stderr (stdout stays the
    table or the one JSON object)."""
    import time

    def say(text: str) -> None:
        click.echo(f"[{time.strftime('%H:%M:%S')}] {what}: {text}", err=True)
    return say


def _check_task_extras(names) -> None:
    """A task whose optional extra is not installed fails now, naming the extra to install."""
    from snmfm.tasks import get_task
    for name in names or ():
        get_task(name).check_available()


def _check_out_file(out, what: str = "--out") -> None:
    """An --out file base that cannot be written fails now, not after the compute."""
    if out is not None:
        from eval.paths import check_out_file
        check_out_file(out, what=what)


def _check_out_folder(out_dir) -> None:
    """A folder a command adds files to (plots, JSON): checked now, not after the compute."""
    if out_dir is not None:
        from eval.paths import check_out_dir
        check_out_dir(out_dir, marker=None, what="--out")


@main.command()
@click.option("--tasks", default=None, help="Comma-separated tasks (default: every default task).")
@click.option("--size", default=None, help="Model size for every task (default: each task's checkpoint).")
@_bits
@click.option("--timesteps", type=click.IntRange(min=1), default=None,
              help="Fixed SNN time steps (default: until quiet).")
@click.option("--hw", "hw", default=None, metavar="NAME[,NAME...]",
              help="Accelerators to compare (registered names or config files; default: every registered "
                   "one). One SNN run drives all that need its activity.")
@click.option("--coding", "codings", default="binary,graded,sigma-delta", show_default=True,
              metavar="CODING[,CODING...]", callback=_coding_names,
              help="Spike codings to convert every bit width with (the first is the main one).")
@click.option("--breakeven/--no-breakeven", default=True, show_default=True,
              help="Add the break-even section (every coding x accelerator x A8/A4 x memory policy; with the "
                   "default tasks also vision-digits-stream over 5 change rates), reusing the main job's runs.")
@click.option("--hw-neuromorphic", default=None, hidden=True)
@click.option("--hw-conventional", default=None, hidden=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="snmfm-report", show_default=True,
              help="Report folder.")
@click.option("--force", is_flag=True, help="Replace the report already in the --out folder.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Cap on held-out examples (FP32/QANN).")
@click.option("--snn-examples", type=click.IntRange(min=1), default=None,
              help="Held-out examples the SNN runs on (default: per task).")
@click.option("--no-variants", is_flag=True, help="Only the main bit widths (skip the A4 / W4A4 iso-accuracy variants).")
@click.option("--studies", default=None, metavar="NAMES",
              help="Also run these studies at small settings and add their sections to the report: "
                   "comma-separated speculative, cascade, cooptimize, compression, or all "
                   "(default: none; each adds minutes).")
@SEED
@JSON
@handles_errors
def run(tasks, size, w_bits, a_bits, timesteps, hw, codings, breakeven, hw_neuromorphic, hw_conventional, out_dir,
        force, limit, snn_examples, no_variants, studies, seed, as_json):
    """The main job: FP32 / QANN / SNN quality and energy on every accelerator, as a report folder."""
    from eval import compare, run_main
    from eval.paths import check_out_dir
    names = _tasks_option(tasks)
    if hw_neuromorphic or hw_conventional:  # the options before --hw (two fixed accelerators)
        if hw:
            raise click.UsageError("--hw replaces --hw-neuromorphic/--hw-conventional: give only --hw")
        hw = ",".join([hw_neuromorphic or "neuromorphic", hw_conventional or "conventional"])
    check_out_dir(out_dir, force=force, what="--out")  # before minutes of compute
    _check_task_extras(names)
    if breakeven and timesteps is not None:
        raise click.UsageError("--timesteps runs the SNN for a fixed T; the break-even section charges SNNs run "
                               "until quiet: add --no-breakeven")
    results = run_main(tasks=names, sizes=size, w_bits=w_bits, a_bits=a_bits, T=timesteps,
                       hw=hw, codings=codings, out_dir=out_dir, breakeven=breakeven,
                       limit=limit, seed=seed, progress=not as_json, variants=not no_variants,
                       snn_examples=snn_examples, studies=studies)
    if as_json:
        print_json({"out_dir": out_dir, "comparison": compare(results).comparison})


@main.command()
@click.argument("results", type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the re-rendered report (default: beside RESULTS).")
@click.option("--study", "study_files", multiple=True, type=click.Path(), metavar="FILE.json",
              help="Add a study's JSON output to the report (repeatable): snmfm speculate --json FILE, "
                   "snmfm cascade/cooptimize TASK --json > FILE, or bench compress/cascade/cooptimize's "
                   "results.json. A study of the same kind and task replaces the report's own.")
@JSON
@handles_errors
def report(results, out_dir, study_files, as_json):
    """Re-render report.md / report.html / plots from a saved report.json (or its folder),
    adding the study outputs given with --study."""
    from eval import report_from_results
    from eval.summary import print_summary
    rep = report_from_results(results, out_dir, studies=study_files)
    if as_json:
        print_json(rep.comparison)
    else:
        print_summary(rep, out_dir=out_dir)


# ---- compression and operation optimisation ---------------------------------------------------
@main.command()
@MODEL
@click.option("--budget", required=True,
              help="Budget in the target's unit -- bits (size) or pJ per inference (energy) -- or a uniform "
                   "plan such as w4a4 / W8A8, meaning its cost under --target.")
@click.option("--target", default="size", show_default=True, callback=_hw_names,
              help="What the budget limits: model size, or the energy of one inference on an accelerator "
                   "(a registered name such as conventional, loihi2; per-layer costs from its model).")
@click.option("--hw", default=None, callback=_hw_names,
              help="Hardware config for an energy target: bundled name or TOML/YAML file (default: the target's).")
@click.option("--choices", default="2,4,8", show_default=True, help="Bit widths the plan chooses from.")
@click.option("--task", default=None, help="Task of MODEL when it is a checkpoint file that does not say.")
@click.option("--prune", "prune_spec", default=None,
              help="Structural pruning, e.g. 'heads=1,mlp=0.5,blocks=1': heads / MLP channels removed per "
                   "block (count, or fraction with a decimal point), whole blocks removed.")
@click.option("--prune-heads", type=click.IntRange(min=0), default=None, help="Attention heads to remove per block.")
@click.option("--prune-mlp", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fraction of MLP channels to remove.")
@click.option("--importance", type=click.Choice(["taylor", "magnitude"]), default="taylor", show_default=True,
              help="Which units pruning removes first.")
@click.option("--finetune-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Quantisation-aware recovery fine-tuning steps (LSQ + distillation).")
@click.option("--calib", type=click.IntRange(min=1), default=256, show_default=True,
              help="Calibration samples from the task's calib split.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the compressed checkpoint, its bit plan (OUT.plan.json) and QANN (OUT-qann.json).")
@SEED
@JSON
@handles_errors
def compress(model, budget, target, hw, choices, task, prune_spec, prune_heads, prune_mlp, importance,
             finetune_steps, calib, out, seed, as_json):
    """Mixed-precision plan (exact integer program), pruning and recovery fine-tuning of MODEL.

    MODEL: a task name (its shipped checkpoint) or a float checkpoint path.  Energy targets take
    their per-layer costs from the hardware models and check the plan against the simulator."""
    from converters.io import save_qann
    from converters.workflow import resolve_model
    from snmfm.compress.cost_table import check_budget
    from snmfm.compress.pipeline import compress_checkpoint
    from snmfm.compress.prune import parse_prune_spec
    _check_out_file(out)
    from snmfm.compress.bits import check_bit_widths
    try:
        bits = tuple(int(b) for b in _csv(choices))
    except (TypeError, ValueError):
        raise SnmfmCLIError(f"--choices {choices!r}: give comma-separated bit widths such as 2,4,8") from None
    bits = check_bit_widths(bits, "--choices")
    check_budget(budget, bits)  # before loading anything
    if hw is not None and target == "size":
        raise SnmfmCLIError("--hw applies to the energy targets (--target conventional or neuromorphic)")
    pruning = parse_prune_spec(prune_spec)
    for name, value in (("heads", prune_heads), ("mlp_channels", prune_mlp)):
        if value is not None:
            if name in pruning:
                raise SnmfmCLIError(f"{name} given twice (--prune and --prune-{name.split('_')[0]})")
            pruning[name] = value
    t, _, qann, info = resolve_model(model, task)
    if qann is not None:
        raise SnmfmCLIError(f"{model} is a QANN file: compress starts from a float checkpoint or a task name")
    ref = info.get("path") or str(t.default_checkpoint())
    energy = {}
    if target != "size":
        from eval.hw_costs import cost_fn, measure_fn
        energy = {"costs": cost_fn(target, hw=hw), "measure": measure_fn(target, hw=hw)}
    result = compress_checkpoint(ref, budget=budget, target=target, out=out, task=t.name, choices=bits,
                                 importance=importance, finetune_steps=finetune_steps, calib_samples=calib,
                                 seed=seed, save_qann=save_qann if out else None, progress=not as_json,
                                 status=_stage_printer("compress"),
                                 **energy, **pruning)
    plan = result.plan
    d = {"task": t.name, "target": target, "budget": plan.budget, "budget_spec": budget, "cost": plan.cost,
         "unit": plan.meta.get("unit"), "min_budget": plan.meta.get("min_budget"),
         "max_a_bits": plan.meta.get("max_a_bits"), **result.metrics,
         "paths": {k: str(v) for k, v in result.paths.items()}}
    if as_json:
        print_json({**d, "plan": plan.to_dict()})
    else:
        emit(_compress_display(d, plan), False, title=f"compressed {t.name} ({target} budget {budget})")


def _compress_display(d: dict, plan) -> dict:
    """compress's result for the console: budget and cost in human units, pruned units counted
    (the index lists stay in --json), the plan as its bit widths."""
    from eval.fmt import fmt_quantity
    from snmfm.compress.bits import plan_label
    unit = d.get("unit")
    out = {k: v for k, v in d.items() if k not in ("budget_spec", "unit", "prune")}
    for k in ("budget", "cost", "min_budget"):
        out[k] = fmt_quantity(k, d.get(k), unit=unit)
    out["budget"] += f" ({d['budget_spec']})"
    out["plan"] = plan_label(plan.layers)
    if d.get("prune"):
        out["prune"] = _prune_summary(d["prune"])
    return out


def _prune_summary(p: dict) -> str:
    """'2 heads in 2 blocks, 130 channels in 2 blocks, 0 blocks; params 69,194 -> 44,394'."""
    parts = []
    for key, noun in (("heads", "heads"), ("mlp_channels", "channels")):
        per = {b: v for b, v in (p.get(key) or {}).items() if v}
        parts.append(f"{sum(len(v) for v in per.values())} {noun} in {len(per)} blocks")
    parts.append(f"{len(p.get('blocks') or [])} whole blocks")
    text = ", ".join(parts)
    if p.get("params_before") is not None:
        text += f"; params {p['params_before']:,} -> {p['params_after']:,}"
    return text


def _run_bench(module: str, argv: list[str]):
    import importlib
    return importlib.import_module(f"eval.benchmarks.{module}").main(argv)


@main.command()
@click.option("--tasks", default="code-stdlib,vqa-digits", show_default=True, help="Comma-separated decoder tasks.")
@click.option("--k", type=click.IntRange(min=1), default=4, show_default=True, help="Draft tokens per round.")
@click.option("--prompts", type=click.IntRange(min=1), default=16, show_default=True, help="Held-out prompts per task.")
@click.option("--quick", is_flag=True, help="A small run (2 prompts, short generations).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the results as JSON to this file.")
@handles_errors
def speculate(tasks, k, prompts, quick, json_path):
    """Speculative decoding: exactness, acceptance, speed-up and energy per token per pairing
    (distilled / compressed / self drafts; FP32, QANN and SNN members; both accelerators)."""
    argv = ["--tasks", *_tasks_option(tasks), "--k", str(k), "--prompts", str(prompts)]
    _check_out_file(json_path, what="--json")
    argv += ["--quick"] if quick else []
    argv += ["--json", json_path] if json_path else []
    _run_bench("bench_speculative", argv)


@main.command()
@TASK
@click.option("--sizes", default="tiny,small,medium", show_default=True, help="Ladder of model sizes.")
@click.option("--tolerance", type=float, default=0.005, show_default=True,
              help="Accuracy the cascade may lose against its largest member (fraction).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Folder for plots.")
@click.option("--hw", default="conventional,neuromorphic", show_default=True, callback=_hw_names,
              metavar="NAME[,NAME...]",
              help="Accelerators (registered names): one scenario per accelerator, plus mixed when there is a "
                   "dense and an SNN-driven one.")
@SEED
@JSON
@handles_errors
def cascade(task, sizes, tolerance, out_dir, hw, seed, as_json):
    """Small-to-large cascade with calibrated self-tests, charged on every accelerator given."""
    from eval.cascade_study import run_cascade
    _check_out_folder(out_dir)
    result = run_cascade(task, _csv(sizes), tolerance=tolerance, out_dir=out_dir, seed=seed,
                         progress=not as_json, accelerators=hw)
    if as_json:
        print_json(result)
    else:
        click.echo(json.dumps(_plain(result.get("summary", result)), indent=1, sort_keys=True, default=str))


@main.command()
@TASK
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Folder for Pareto plots.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray tasks training and measuring the configurations (1: this process, no Ray).")
@click.option("--ray-address", default=None, metavar="HOST:PORT", help="Run them on this Ray cluster.")
@SEED
@JSON
@handles_errors
def cooptimize(task, out_dir, workers, ray_address, seed, as_json):
    """Joint search of resolution / patch stride / context length, bits and T: Pareto fronts on
    both accelerators."""
    from eval.cooptimize import run_cooptimize
    from eval.engine import ensure_ray
    _check_out_folder(out_dir)
    if ray_address:
        ensure_ray(ray_address=ray_address)  # an unreachable cluster fails before any training
    result = run_cooptimize(task, seed=seed, out_dir=out_dir, workers=workers, ray_address=ray_address)
    if as_json:
        print_json(result)
    else:
        click.echo(json.dumps(_plain(result.get("summary", result)), indent=1, sort_keys=True, default=str))


@main.command()
@TASK
@click.option("--hw", default=None, metavar="NAME[,NAME...]",
              help="Accelerators whose parameters are searched (default: every registered one).")
@click.option("--coding", default="binary", show_default=True, help="SNN coding whose trace drives the chips.")
@_bits
@click.option("--trials", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Distinct designs evaluated in total (split evenly over the accelerators).")
@click.option("--population", type=click.IntRange(min=2), default=200, show_default=True,
              help="NSGA-II population (designs per generation).")
@click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Held-out inputs of the one SNN run whose trace every neuromorphic design is charged on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray tasks evaluating each generation (1: this process, no Ray).")
@click.option("--ray-address", default=None, metavar="HOST:PORT", help="Run the evaluations on this Ray cluster.")
@click.option("--time-limit", type=click.FloatRange(min=1), default=None, help="Stop searching after SECONDS.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="snmfm-design", show_default=True,
              help="Folder for design-TASK.json and design-TASK.png.")
@SEED
@JSON
@handles_errors
def design(task, hw, coding, w_bits, a_bits, trials, population, samples, workers, ray_address, time_limit,
           out_dir, seed, as_json):
    """Specialised accelerator for TASK: NSGA-II over each accelerator's parameters minimising energy,
    latency and area; Pareto fronts and the chosen design against the default."""
    from eval.design import run_design, summary
    _check_out_folder(out_dir)
    result = run_design(task, hw=hw, trials=trials, population=population, w_bits=w_bits, a_bits=a_bits,
                        coding=coding, samples=samples, seed=seed, workers=workers, ray_address=ray_address,
                        time_limit_s=time_limit, out_dir=out_dir,
                        status=None if as_json else (lambda s: click.echo(s, err=True)))
    if as_json:
        print_json({k: v for k, v in result.items() if k != "accelerators"}
                   | {"accelerators": {n: {k: v for k, v in r.items() if k != "points"}
                                       for n, r in result["accelerators"].items()}})
    else:
        emit(summary(result), False, title=f"design search {task} (plot: {result.get('plot')})")


def _numbers(value: str, kind, what: str) -> list:
    try:
        out = [kind(v) for v in _csv(value)]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {value!r}") from None
    if not out:
        raise click.BadParameter(f"{what} is empty; give at least one value")
    return out


@main.command()
@click.argument("tasks", metavar="TASK[,TASK...]")
@click.option("--hw", default=None, metavar="NAME[,NAME...]",
              help="Accelerators (default: every registered one).")
@click.option("--codings", default="binary,graded,sigma-delta", show_default=True)
@click.option("--a-bits", default="8,6,4", show_default=True, help="Activation bits (weights: --w-bits).")
@click.option("--w-bits", type=click.IntRange(2, 16), default=8, show_default=True)
@click.option("--policies", default="resident,streamed", show_default=True, help="Memory policies (weights).")
@click.option("--rates", default="0,0.01,0.02,0.05,0.1,0.2,0.5", show_default=True,
              help="Change rates (fraction of pixels changing per frame) of stream tasks.")
@click.option("--clips", "n_clips", type=click.IntRange(min=1), default=16, show_default=True,
              help="Clips of 16 frames the sigma-delta SNN streams per rate.")
@click.option("--snn-examples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Examples (frames) per SNN run of the other codings and tasks.")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None,
              help="Held-out examples (frames) for FP32/QANN accuracy (default: the whole split).")
@click.option("--tolerance", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Iso-accuracy: within this of FP32 accuracy (0.01 = 1 point).")
@click.option("--quick", is_flag=True, help="The reduced sweep of `snmfm run` (A8/A4, 5 rates, 4 clips).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for breakeven.json, breakeven.md and the plots.")
@click.option("--force", is_flag=True, help="Replace an earlier break-even output in --out.")
@SEED
@JSON
@handles_errors
def breakeven(tasks, hw, codings, a_bits, w_bits, policies, rates, n_clips, snn_examples, eval_limit,
              tolerance, quick, out_dir, force, seed, as_json):
    """Break-even study: coding x accelerator x bits x memory policy x change rate; energy ratio
    against events per synapse, iso-accuracy cheapest configurations, crossing change rates."""
    from eval.breakeven import run_breakeven
    from eval.breakeven_report import console_tables, write_outputs
    from eval.paths import check_out_dir
    if out_dir is not None:
        check_out_dir(out_dir, marker="breakeven.json", force=force, what="--out")  # before any compute
    src = click.get_current_context()
    kw = {"w_bits": w_bits, "tolerance": tolerance, "seed": seed}
    for name, value, conv in (("codings", codings, str), ("a_bits", a_bits, int), ("policies", policies, str),
                              ("rates", rates, float), ("n_clips", n_clips, None), ("snn_examples", snn_examples, None),
                              ("eval_limit", eval_limit, None)):
        if quick and src.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            continue  # the reduced sweep's value
        if conv is None:
            kw[name] = value
        elif conv is str:
            kw[name] = _csv(value)
            if not kw[name]:
                raise click.BadParameter(f"--{name} is empty; give at least one name")
        else:
            kw[name] = _numbers(value, conv, "--" + name.replace("_", "-"))
    say = (lambda m: click.echo(f"breakeven: {m}", err=True)) if not as_json else None
    data = run_breakeven(_csv(tasks), hw, quick=quick, status=say, **kw)
    if out_dir is not None:
        for f in write_outputs(data, out_dir):
            click.echo(f"wrote {f}", err=True)
    if as_json:
        print_json(data)
        return
    from rich.console import Console
    from rich.table import Table
    console = Console()
    for title, headers, rows in console_tables(data):
        table = Table(title=title, show_header=True)
        for h in headers:
            table.add_column(str(h))
        for r in rows:
            table.add_row(*[str(c) for c in r])
        console.print(table)
    from eval.breakeven_report import crossing_sentences, verdict_sentences
    for task, t in data["tasks"].items():
        for line in verdict_sentences(t) + crossing_sentences(t):
            click.echo(f"{task}: {line}")
    click.echo(f"wall time {data['wall_s']:.0f} s")


@main.command()
@TASK
@click.option("--kinds", callback=lambda c, p, v: _csv(v), default=None,
              help="Fault kinds, comma-separated (default: all; see snmfm.faults.KINDS).")
@click.option("--rates", default="1e-9,1e-8,1e-7,1e-6,1e-5,1e-4,1e-3,1e-2", show_default=True,
              help="Fault rates (probabilities per bit, event, neuron or core), increasing.")
@click.option("--seeds", type=int, default=10, show_default=True, help="Seeds per rate.")
@click.option("--hw", default=None, help="Accelerators (default: every registered one).")
@click.option("--coding", "codings", default=None, help="SNN codings (default: every registered one).")
@click.option("--limit", type=int, default=None, help="Held-out examples (default: the whole split).")
@click.option("--snn-limit", type=int, default=None,
              help="Held-out examples for SNN runs of codings that take many steps (binary; default: --limit).")
@click.option("--no-shortcuts", is_flag=True,
              help="Run the SNN even where it provably equals the faulty QANN.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="faults_out", show_default=True)
@click.option("--merge", "merge_files", default=None,
              help="Write the report of studies run before (faults_TASK.json files, comma-separated; e.g. "
                   "one process per coding) merged into one, instead of running.")
@SEED
@JSON
@handles_errors
def faults(task, kinds, rates, seeds, hw, codings, limit, snn_limit, no_shortcuts, out_dir, merge_files, seed,
           as_json):
    """Accuracy against fault rate on each accelerator and coding, with and without mitigation;
    the rate at which each loses one point.  Writes faults_TASK.json, .png and .md."""
    from eval.faults import fault_study, merge_studies
    from eval.faults_report import fault_section, format_rate, write_fault_study
    _check_out_folder(out_dir)
    if merge_files:
        from pathlib import Path
        parts = []
        for f in _csv(merge_files):
            try:
                parts.append(json.loads(Path(f).read_text()))
            except (OSError, ValueError) as e:
                raise click.BadParameter(f"--merge: cannot read {f!r} as a fault study: {e}") from None
        result = merge_studies(parts)
        if result["task"] != task:
            raise click.BadParameter(f"--merge: the studies are of task {result['task']!r}, not {task!r}")
    else:
        try:
            rate_list = [float(r) for r in _csv(rates)]
        except ValueError:
            raise click.BadParameter(f"--rates must be numbers, got {rates!r}") from None
        result = fault_study(task, kinds=kinds, rates=rate_list, seeds=seeds, hw=_csv(hw) if hw else None,
                             codings=_csv(codings) if codings else None,
                             limit=limit, snn_limit=snn_limit, shortcuts=not no_shortcuts, seed=seed,
                             progress=lambda m: click.echo(m, err=True))
    paths = write_fault_study(result, out_dir)
    if as_json:
        print_json({**result, "paths": paths})
        return
    sec = fault_section(result)
    emit({f"{r['accelerator']}/{r['coding']}/{r['kind']}/{r['mitigation']}": format_rate(c["loss_1pt"])
          for r, c in zip(sec["rows"], result["configurations"])} | {"files": ", ".join(paths.values())},
         False, title=f"{task}: rate at which accuracy drops 1 point")


BENCHES = ("snn", "conventional", "neuromorphic", "crosscheck", "minilm", "compress", "speculative",
           "cascade", "cooptimize", "exact", "codings", "validate")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", type=click.Choice(BENCHES))
@click.pass_context
def bench(ctx, name):
    """Run a benchmark of eval/benchmarks (prints a table); extra arguments go to it (--help)."""
    from eval.paths import check_out_dir, out_option_value
    out = out_option_value(list(ctx.args)) or out_option_value(list(ctx.args), "--plots")
    if out is not None:
        try:
            check_out_dir(out, marker=None, what="--out")  # before the benchmark runs
        except ValueError as e:
            raise SnmfmCLIError(str(e)) from None
    _run_bench(f"bench_{name}", list(ctx.args))


if __name__ == "__main__":
    sys.exit(main())
