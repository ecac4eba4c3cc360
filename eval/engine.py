"""One engine for everything that fans out: map a function over items as Ray tasks.

    from eval.engine import map_tasks
    results = map_tasks(fn, items, workers=8)            # local Ray, 8 CPUs
    results = map_tasks(fn, items, ray_address="head:6379")  # an existing cluster
    results = map_tasks(fn, items)                       # workers=1: in this process, no Ray

`results[i] == fn(items[i])` (or `fn(shared, items[i])` with `shared=`) in input order, whatever
order the tasks finish in, so a fanned-out run merges exactly as the serial loop would.  Each task
gets one CPU (Ray then sets OMP_NUM_THREADS=1 in its worker, and `fn` runs single-threaded as the
old spawned process pools did).  `shared` is put into Ray's object store once and handed to every
task (a model, a trace), instead of being pickled with each item.

Ray is imported only when a run fans out: the core import path (`import eval`, the CLI's --help)
never loads it.  A local instance needs no set-up (`num_cpus` = the `workers` asked for, capped at
the machine's cores); `ray_address` connects to a running cluster (`ray start --head` on the
head node) and an address that does not answer raises `EngineError` naming it (CLI: exit 2)
within a few seconds instead of Ray's minutes of retries.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONNECT_TIMEOUT_S = 5.0
_UNSET = object()


class EngineError(ValueError):
    """The engine cannot run (unreachable Ray address, Ray not installed): a user error."""


def available_cpus() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _check_reachable(address: str) -> None:
    """Fail fast when `address` (host:port or ray://host:port) does not accept a connection."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EngineError(f"--ray-address {address!r}: give HOST:PORT of a Ray head node "
                          "(e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001), or 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise EngineError(f"--ray-address {address!r} is unreachable ({e.__class__.__name__}: {e}); "
                          "start the cluster with `ray start --head` there, or leave --ray-address "
                          "out to run on a local Ray instance") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EngineError("Ray is not installed: pip install 'snmfm[ray]' (or run with --workers 1)") from None
    return ray


def ensure_ray(*, workers: int | None = None, ray_address: str | None = None):
    """The `ray` module, initialised: an existing connection is reused; otherwise a cluster at
    `ray_address` or a local instance with min(workers, cores) CPUs."""
    if ray_address:
        _check_reachable(ray_address)  # fail fast, even when a local instance is already running
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    # workers import what the driver imports: this checkout first, then (local instance) the
    # driver's own import path, so functions of scripts and test modules resolve by name too
    import sys
    paths = [str(REPO_ROOT)] + ([] if ray_address else [p for p in sys.path if p and os.path.isdir(p)])
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    kw = dict(include_dashboard=False, log_to_driver=True, configure_logging=False,
              ignore_reinit_error=True)
    if ray_address:
        try:
            ray.init(address=ray_address, runtime_env={"env_vars": env}, **kw)
        except (ConnectionError, RuntimeError, TimeoutError) as e:
            raise EngineError(f"--ray-address {ray_address!r}: cannot join the Ray cluster ({e})") from None
    else:
        n = max(1, min(workers or available_cpus(), available_cpus()))
        ray.init(num_cpus=n, runtime_env={"env_vars": env}, **kw)
    return ray


def _call(fn, has_shared: bool, shared, item):
    return fn(shared, item) if has_shared else fn(item)


def map_tasks(fn: Callable, items: Sequence, *, workers: int | None = 1, ray_address: str | None = None,
              shared=_UNSET, status: Callable[[str], None] | None = None, label: str | None = None) -> list:
    """[fn(item) for item in items] (or fn(shared, item)), fanned out as Ray tasks when
    workers > 1, workers is None (all cores) or a ray_address is given; in input order.

    `fn` must be importable by name in the workers (a module-level function)."""
    items = list(items)
    say = status or (lambda s: None)
    name = label or getattr(fn, "__name__", "task")
    if workers is not None and workers < 1:
        raise EngineError(f"--workers must be >= 1, got {workers}")
    has_shared = shared is not _UNSET
    if not ray_address and (workers == 1 or len(items) <= 1):  # nothing to fan out
        out = []
        for i, it in enumerate(items):
            out.append(_call(fn, has_shared, shared, it))
            say(f"{name} {i + 1}/{len(items)}")
        return out
    if not items:
        return []
    ray = ensure_ray(workers=workers, ray_address=ray_address)
    remote = ray.remote(num_cpus=1)(_call)
    fn_ref = ray.put(fn)
    shared_ref = ray.put(shared) if has_shared else None
    refs = [remote.remote(fn_ref, has_shared, shared_ref, it) for it in items]
    index = {r: i for i, r in enumerate(refs)}
    out: list = [None] * len(refs)
    pending, done = list(refs), 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for r in ready:
            out[index[r]] = ray.get(r)  # re-raises the task's exception here
            done += 1
            say(f"{name} {done}/{len(refs)}")
    return out


def shutdown() -> None:
    """Stop the local Ray instance this process started (no-op without Ray)."""
    import sys
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
