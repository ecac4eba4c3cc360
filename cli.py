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
    """Library exception types that are the user's to fix (imported lazily: fast --help)."""
    from snmfm.checkpoint import CheckpointError
    from snmfm.tasks import TaskError
    return (CheckpointError, TaskError, FileNotFoundError)


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


def print_table(result: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if isinstance(v, float):
            v = f"{v:.4f}"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b:.4f}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
        table.add_row(str(k), str(v))
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


# ---- commands ---------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snmfm")
def main():
    """snmfm: compressed multimodal foundation models -> exact spiking models -> hardware energy.

    Tasks: vision-digits, medical-wdbc, code-stdlib, vqa-digits, text-minilm."""


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


if __name__ == "__main__":
    sys.exit(main())
