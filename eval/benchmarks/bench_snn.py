"""How fast and how exact is snmfm's SNN simulation?  Two tables.

1. For each reference model (random weights, calibrated and quantized at each W/A setting) and each
   coding (`--codings`, converters.codings) the SNN simulation against the QANN it must reproduce:
   T_settle, events per batch, synaptic events per batch and per second, QANN and SNN time (trace
   on and off), SNN / QANN, the ratio SNN / (T_settle x QANN) (target <= 1: time-batching should
   make a step cheaper than a QANN forward), peak memory, and whether the SNN output equals the
   QANN output (torch.equal).
2. One small RoBERTa run as an SNN by SpikingJelly 2.0's SpikeZIP-TF recipe and by snmfm, on the
   same weights and the same quantizer scales and places (see `_sj_compare`): agreement with the QANN,
   time and memory.

Synaptic events: every event a neuron site sent, times its fan-out in the op that consumes it,
summed over the batch: `neuro_hw.synops.synops_from_trace` (the `row` count, what the neuromorphic
chip model charges): an event of a linear / conv input reaches every output of its weight row
(zero weights included); in an activation product (Q K^T, attention x V) an event of A meets a row
of B (N synapses) and an event of B a column of A (M).  Only events the SNN actually sent are
counted (from its ActivityTrace), never dense work.  "synaptic events / s" divides that by the
best (smallest) wall time of the SNN run with the trace on: with several threads the process CPU
time adds the threads up, so wall time is the clock of a throughput.  Wall times are only as good
as the machine is idle.

Every measurement runs in a fresh subprocess with `--threads` torch threads (default 1; with 2 or
more the SNN run splits its batch into one shard of samples per thread, converters.snn, and an
unsplit run's numba kernels follow torch's thread count) (`--worker`), so its peak memory
(Linux VmHWM, reset through /proc/self/clear_refs just before the timed runs; torch allocations are
invisible to tracemalloc) is its own.  Times are medians over repeats of process CPU time and of wall
time (an SNN run repeats at least `--repeats` times and until its runs add up to `--min-seconds`,
default 1 s: three runs of a 0.1 s 4-bit simulation are too few for a best time on a shared host); CPU time is the default in the tables because it is robust to other load on the machine.

    python -m eval.benchmarks.bench_snn                     # both tables, defaults below
    python -m eval.benchmarks.bench_snn --models vit --bits 8/4 --repeats 1 --no-sj
    python -m eval.benchmarks.bench_snn --codings binary,graded,sigma-delta --no-sj
    python -m eval.benchmarks.bench_snn --threads 2 --no-sj --clock wall   # issue 16: 2 cores

sigma-delta is timed on a stream (`STREAM_FRAMES` inputs, each the previous one with a few
elements moved by one quantization step's worth; every frame checked against the QANN), per input:
that is the use it is for; on a single input it is the graded coding.  Its "events per batch" are
per input after the first (the stream's steady state); its synaptic events and times are per input
over the whole stream, the first input included, so their ratio is the stream's throughput.
    python -m eval.benchmarks.bench_snn --tiny              # seconds; what the smoke test runs
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("vit", "features", "decoder", "multimodal", "text")
CODINGS = ("binary",)
STREAM_FRAMES = 4
BITS = ((8, 8), (8, 4))
REPO = Path(__file__).resolve().parents[2]

# The SpikingJelly comparison network (hidden 64, 2 layers, 4 heads: the "small" snmfm trunk).
SJ_NET = dict(hidden=64, layers=2, heads=4, d_ff=128, vocab=256, seq_len=32, n_classes=10)
SJ_TINY = dict(hidden=16, layers=1, heads=2, d_ff=32, vocab=32, seq_len=6, n_classes=4)


# ---- measuring -------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak resident memory of the code inside the `with`, above the resident memory before it.

    Linux: VmHWM reset by writing 5 to /proc/self/clear_refs.  Elsewhere (or if that is refused),
    only the process's lifetime peak (ru_maxrss) is known and `peak_mb` is None."""

    def __enter__(self):
        gc.collect()
        _malloc_trim()  # hand freed setup memory back, so RSS before = memory actually in use
        self.rss0_kb = _status_kb("VmRSS")
        self.reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        hwm = _status_kb("VmHWM") if self.reset else None
        self.peak_mb = (hwm - self.rss0_kb) / 1024 if hwm is not None and self.rss0_kb else None
        self.hwm_mb = hwm / 1024 if hwm is not None else None
        self.maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return False


MIN_SECONDS = 1.0  # short runs repeat until their wall times add up to this (like timeit's autorange)
MAX_REPEATS = 50


def timed(fn, repeats: int, min_seconds: float = 0.0) -> dict:
    """Median process CPU and wall milliseconds of `fn()` over `repeats` calls, or more until the
    wall times add up to `min_seconds` (at most MAX_REPEATS calls): a 4-bit run of 0.1 s timed
    three times gave a best time anywhere between 85 and 139 ms on the shared host.  Also peak
    memory."""
    wall, cpu = [], []
    with PeakMemory() as mem:
        while len(wall) < repeats or (sum(wall) < min_seconds * 1e3 and len(wall) < MAX_REPEATS):
            c0, w0 = time.process_time(), time.perf_counter()
            out = fn()
            cpu.append((time.process_time() - c0) * 1e3)
            wall.append((time.perf_counter() - w0) * 1e3)
            del out
    return {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall),
            "cpu_ms_all": cpu, "wall_ms_all": wall, "peak_mb": mem.peak_mb, "hwm_mb": mem.hwm_mb,
            "maxrss_mb": mem.maxrss_mb}


# ---- the reference models -----------------------------------------------------------------------
def model_inputs(name: str, model, batch: int, seed: int = 1) -> tuple:
    """A batch of random inputs of the right kind for a reference model."""
    import torch
    g = torch.Generator().manual_seed(seed)
    c = model.config

    def image(cfg):
        return torch.randn(batch, cfg.channels, cfg.image_size, cfg.image_size, generator=g)

    def tokens(vocab, n):
        return torch.randint(0, vocab, (batch, n), generator=g)
    if name == "vit":
        return (image(c),)
    if name == "features":
        return (torch.randn(batch, c.n_features, generator=g),)
    if name in ("text", "decoder"):
        return (tokens(c.vocab_size, min(32, c.max_len)),)
    if name == "multimodal":
        return image(c.vision), tokens(c.vocab_size, min(16, c.max_len - model.n_prefix))
    raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")


def build_qann(name: str, size: str, w_bits: int, a_bits: int, batch: int, seed: int = 0):
    """(QANN, inputs): random weights, calibrated on 2 other batches, quantized."""
    import torch
    from snmfm.compress import calibrate, quantize
    from snmfm.models import build_model
    torch.manual_seed(seed)
    model = build_model(name, size).eval()
    calibrate(model, [model_inputs(name, model, batch, seed=100 + i) for i in range(2)])
    return quantize(model, w_bits, a_bits), model_inputs(name, model, batch, seed=1)


# ---- worker tasks: each runs in its own process -------------------------------------------------
def _sj():
    """The `_sj_compare` module.  A worker runs this file as a script, and imports its sibling
    directly: importing the `eval` package would load the report/plotting stack into every
    measurement process."""
    if __package__:
        from eval.benchmarks import _sj_compare
    else:
        import _sj_compare
    return _sj_compare


def task_qann(spec: dict) -> dict:
    import torch
    qann, x = build_qann(spec["model"], spec["size"], spec["w_bits"], spec["a_bits"], spec["batch"])
    with torch.no_grad():
        for _ in range(2):
            qann(*x)  # warm-up
        return timed(lambda: qann(*x), spec["qann_repeats"])


def stream_frames(x: tuple, n: int, seed: int = 0) -> list[tuple]:
    """n inputs, each the previous one with 1% of its float elements moved by +0.05 (integer inputs,
    token ids, are kept): a slowly changing stream."""
    import torch
    g = torch.Generator().manual_seed(seed)
    frames = [tuple(x)]
    for _ in range(n - 1):
        nxt = []
        for t in frames[-1]:
            if torch.is_floating_point(t):
                t = t.clone()
                flat = t.view(-1)
                idx = torch.randint(0, flat.numel(), (max(1, flat.numel() // 100),), generator=g)
                flat[idx] += 0.05
            nxt.append(t)
        frames.append(tuple(nxt))
    return frames


def synaptic_events(qann, x: tuple, traces) -> float:
    """Events x fan-out of the consuming op, summed over the samples of every trace given (module
    docstring)."""
    from neuro_hw.synops import synops_from_trace
    from neuro_hw.workload import extract_workload
    wl = extract_workload(qann, *(t[:1] for t in x))
    return sum(synops_from_trace(wl, tr) * tr.n_samples for tr in traces)


def task_snn(spec: dict) -> dict:
    import torch
    from converters import convert
    qann, x = build_qann(spec["model"], spec["size"], spec["w_bits"], spec["a_bits"], spec["batch"])
    coding = spec.get("coding", "binary")
    snn = convert(qann, coding)
    last = {}
    if coding == "sigma-delta":  # a stream, timed per input
        frames = stream_frames(x, STREAM_FRAMES)
        with torch.no_grad():
            refs = [qann(*f) for f in frames]
        snn.stream(frames[:2], record=spec["record"])  # warm-up

        def go():
            last["r"] = snn.stream(frames, record=spec["record"])
            return None
        res = timed(go, spec["repeats"], spec.get("min_seconds", 0.0))
        r = last["r"]
        for k in ("cpu_ms", "wall_ms"):
            res[k] = res[k] / len(frames)
        for k in ("cpu_ms_all", "wall_ms_all"):
            res[k] = [v / len(frames) for v in res[k]]
        res.update(steps=max(r.steps), t_settle=max(t or 0 for t in r.t_settle),
                   exact=all(bool(torch.equal(o, f)) for o, f in zip(r.outputs, refs)),
                   events=(sum(r.events[1:]) / (len(frames) - 1)) if r.events else None,
                   # per input, over the whole stream (the time is per input of the whole stream)
                   synaptic_events=synaptic_events(qann, x, r.traces) / len(frames) if spec["record"] else None)
        return res
    with torch.no_grad():
        ref = qann(*x)
    snn.run(*x, T=2, record=spec["record"])  # warm-up (every op once)

    def go():
        last["r"] = snn.run(*x, record=spec["record"])
        return None
    res = timed(go, spec["repeats"], spec.get("min_seconds", 0.0))
    r = last["r"]
    res.update(steps=r.steps, t_settle=r.t_settle, exact=bool(torch.equal(r.output, ref)),
               events=r.trace.total_events() if r.trace is not None else None,
               synaptic_events=synaptic_events(qann, x, [r.trace]) if r.trace is not None else None)
    return res


def task_sj(spec: dict) -> dict:
    """SpikingJelly's SpikeZIP-TF recipe on the SpikeZIP QANN of the snmfm QANN."""
    import torch
    S = _sj()
    d = S.build(**spec["net"], batch=spec["batch"], w_bits=spec["w_bits"], a_bits=spec["a_bits"])
    dtype = getattr(torch, spec["dtype"])
    ids = d["ids"]
    with torch.no_grad():
        ref_snmfm = d["qann"](ids)
        sj_qann = S.spikezip_qann(d["hf"], d["qann"], dtype)
        ref_sj = sj_qann(ids)
        qann_vs = S.agreement(ref_sj, ref_snmfm)
        t_qann = timed(lambda: sj_qann(ids), spec["qann_repeats"])
    snn = S.sj_convert(sj_qann, spec["T_max"])
    # One untimed run of T_max steps: the accuracy curve and the last step whose output is non-zero
    # (after it the summed output cannot change): T_conv, the T that SpikingJelly needs.
    curve, acc = [], {}

    def each(t, out):
        prev = acc.get("prev")
        if prev is None or not torch.equal(prev, out):
            acc["last"] = t
        acc["prev"] = out.clone()
        if t in spec["curve_at"] or t == spec["T_max"]:
            curve.append({"t": t, "own": S.agreement(out, ref_sj), "snmfm": S.agreement(out, ref_snmfm)})
    final = S.sj_run(snn, ids, spec["T_max"], each)
    last_change = acc["last"]
    T = last_change
    with torch.no_grad():
        res = timed(lambda: S.sj_run(snn, ids, T), spec["repeats"])
        out = S.sj_run(snn, ids, T)
    res.update(T=T, T_max=spec["T_max"], converged=last_change < spec["T_max"],
               own=S.agreement(out, ref_sj), snmfm=S.agreement(out, ref_snmfm),
               final_own=S.agreement(final, ref_sj), qann_vs_snmfm=qann_vs, curve=curve,
               qann_cpu_ms=t_qann["cpu_ms"], qann_wall_ms=t_qann["wall_ms"],
               fp_map_max_abs=S.fp_mapping_error(d["hf"], d["fp"], ids))
    return res


def task_sj_snmfm(spec: dict) -> dict:
    """snmfm on the same network as task_sj (same weights, scales, quantizer places)."""
    import torch
    from converters import convert
    S = _sj()
    d = S.build(**spec["net"], batch=spec["batch"], w_bits=spec["w_bits"], a_bits=spec["a_bits"])
    ids, qann = d["ids"], d["qann"]
    with torch.no_grad():
        ref = qann(ids)
        t_qann = timed(lambda: qann(ids), spec["qann_repeats"])
    snn = convert(qann)
    snn.run(ids, T=2, record=spec["record"])
    last = {}

    def go():
        last["r"] = snn.run(ids, record=spec["record"])
    res = timed(go, spec["repeats"])
    r = last["r"]
    res.update(T=r.steps, t_settle=r.t_settle, own=S.agreement(r.output, ref),
               qann_cpu_ms=t_qann["cpu_ms"], qann_wall_ms=t_qann["wall_ms"])
    return res


TASKS = {"qann": task_qann, "snn": task_snn, "sj": task_sj, "sj_snmfm": task_sj_snmfm}


def run_task(spec: dict, isolate: bool = True) -> dict:
    """Run one measurement with spec["threads"] torch threads (default 1), in a fresh subprocess
    unless `isolate` is False."""
    threads = int(spec.get("threads", 1))
    if not isolate:
        import torch
        n = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return TASKS[spec["task"]](spec)
        finally:
            torch.set_num_threads(n)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                       capture_output=True, text=True, env=env, cwd=str(REPO))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {spec['task']} failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(lines[-1])


def _alloc_on() -> bool:
    from converters import _alloc
    return _alloc.enabled() and _alloc._glibc() is not None


def _worker(spec_json: str) -> None:
    import warnings
    import torch
    warnings.filterwarnings("ignore")
    spec = json.loads(spec_json)
    torch.set_num_threads(int(spec.get("threads", 1)))
    # Every process (QANN, snmfm SNN, SpikingJelly) runs under the same glibc allocator settings
    # that SpikingModel.run applies (converters/_alloc.py), so none is timed with page faults
    # the others are spared.
    from converters import _alloc
    _alloc.tune()
    print(json.dumps(TASKS[spec["task"]](spec)), flush=True)


# ---- the two benchmarks -------------------------------------------------------------------------
def bench_models(models=MODELS, size="small", batch=32, bits=BITS, repeats=3, qann_repeats=20,
                 isolate=True, log=print, rows: list | None = None, codings=CODINGS,
                 threads: int = 1, min_seconds: float = 0.0) -> list[dict]:
    """One row per (model, W/A, coding); appended to `rows` as it is measured (partial results
    survive).  SNN runs repeat at least `repeats` times and until `min_seconds` of runs."""
    rows = [] if rows is None else rows
    for name in models:
        for w_bits, a_bits in bits:
            base = dict(model=name, size=size, batch=batch, w_bits=w_bits, a_bits=a_bits,
                        repeats=repeats, qann_repeats=qann_repeats, threads=threads, min_seconds=min_seconds)
            q = run_task({**base, "task": "qann"}, isolate)
            for coding in codings:
                on = run_task({**base, "task": "snn", "record": True, "coding": coding}, isolate)
                off = run_task({**base, "task": "snn", "record": False, "coding": coding}, isolate)
                row = dict(model=name, size=size, batch=batch, w_bits=w_bits, a_bits=a_bits, coding=coding,
                           t_settle=on["t_settle"] or off["t_settle"], steps=on["steps"], qann=q, snn_trace=on,
                           snn_notrace=off, exact=on["exact"] and off["exact"], events=on.get("events"),
                           synaptic_events=on.get("synaptic_events"), threads=threads)
                row["synaptic_events_per_s"] = events_per_s(row)
                rows.append(row)
                log(f"  {name} W{w_bits}A{a_bits} {coding}: T_settle {row['t_settle']}, events {row['events']}, "
                    f"SNN {off['cpu_ms']:.0f} ms (trace {on['cpu_ms']:.0f}), QANN {q['cpu_ms']:.1f} ms, "
                    f"synaptic events/s {_fmt(row['synaptic_events_per_s'], '.3g')}, exact {row['exact']}")
    return rows


def bench_spikingjelly(net=None, batch=32, bits=BITS, repeats=3, qann_repeats=10, dtypes=("float32", "float64"),
                       traces=(False, True), t_extra=128, isolate=True, log=print,
                       rows: list | None = None) -> list[dict]:
    """SpikingJelly runs T_max = 2^a_bits + t_extra steps once (its biases alone take 2^a_bits steps
    to be released), then is timed on the steps it needed (the last step with a non-zero output)."""
    net = dict(SJ_NET if net is None else net)
    rows = [] if rows is None else rows
    for w_bits, a_bits in bits:
        level = 2**a_bits
        T_max = level + t_extra
        base = dict(net=net, batch=batch, w_bits=w_bits, a_bits=a_bits, repeats=repeats,
                    qann_repeats=qann_repeats)
        for rec in traces:
            r = run_task({**base, "task": "sj_snmfm", "record": rec}, isolate)
            rows.append(dict(sim="snmfm", dtype="int (float64 codes)", trace=rec, w_bits=w_bits,
                             a_bits=a_bits, **r))
            log(f"  snmfm W{w_bits}A{a_bits} trace={rec}: T {r['T']}, {r['cpu_ms']:.0f} ms, "
                f"equal {r['own']['equal']}")
        curve_at = sorted(t for t in {8, 16, 32, 64, level // 2, level, level + 32, level + 64} if t <= T_max)
        for dt in dtypes:
            r = run_task({**base, "task": "sj", "dtype": dt, "T_max": T_max, "curve_at": curve_at}, isolate)
            rows.append(dict(sim="spikingjelly", dtype=dt, trace=False, w_bits=w_bits, a_bits=a_bits, **r))
            log(f"  SpikingJelly {dt} W{w_bits}A{a_bits}: T {r['T']}, {r['cpu_ms']:.0f} ms, "
                f"max rel vs own QANN {r['own']['max_rel']:.3g}, top-1 {r['own']['top1']:.3f}")
    return rows


# ---- tables ---------------------------------------------------------------------------------------
def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def events_per_s(row: dict) -> float | None:
    """Synaptic events per second of wall time: the row's synaptic events over the best wall time
    of its SNN run with the trace on (module docstring)."""
    ev, walls = row.get("synaptic_events"), row["snn_trace"].get("wall_ms_all")
    if ev is None or not walls:
        return None
    return ev / (min(walls) / 1e3)


def models_table(rows: list[dict], clock: str = "cpu") -> str:
    k = f"{clock}_ms"
    head = ("| model | W/A | coding | threads | T_settle | steps run | events per batch | synaptic events per batch "
            "| synaptic events/s (trace, best wall) | QANN ms | SNN ms (trace) "
            "| SNN ms (no trace) | SNN/QANN no trace | SNN/(T_settle x QANN) no trace | ... trace | QANN MB "
            "| SNN MB (trace) | SNN MB (no trace) | exact |")
    lines = [head, "|" + "|".join(["---"] * 19) + "|"]
    for r in rows:
        q, on, off = r["qann"][k], r["snn_trace"][k], r["snn_notrace"][k]
        ts = max(1, r["t_settle"] or 1)
        ev = r.get("events")
        lines.append(
            f"| {r['model']} | W{r['w_bits']}A{r['a_bits']} | {r.get('coding', 'binary')} | {r.get('threads', 1)} "
            f"| {r['t_settle']} | {r['steps']} | {_fmt(ev, '.0f')} | {_fmt(r.get('synaptic_events'), '.3g')} "
            f"| {_fmt(events_per_s(r), '.3g')} | {q:.1f} | {on:.0f} | {off:.0f} | {off / q:.2f} "
            f"| {off / (ts * q):.2f} | {on / (ts * q):.2f} | {_fmt(r['qann']['peak_mb'])} "
            f"| {_fmt(r['snn_trace']['peak_mb'])} | {_fmt(r['snn_notrace']['peak_mb'])} | {r['exact']} |")
    return "\n".join(lines)


def sj_table(rows: list[dict], clock: str = "cpu") -> str:
    k = f"{clock}_ms"
    head = ("| simulator | arithmetic | trace | W/A | T | top-1 vs own QANN | max rel err vs own QANN "
            "| bitwise equal | top-1 vs snmfm QANN | max rel vs snmfm QANN | SNN ms | ms/step | QANN ms "
            "| peak MB | snmfm speed-up |")
    lines = [head, "|" + "|".join(["---"] * 15) + "|"]
    fastest = {}
    for r in rows:
        if r["sim"] == "snmfm" and not r["trace"]:
            fastest[(r["w_bits"], r["a_bits"])] = r[k]
    for r in rows:
        vs = r["own"] if r["sim"] == "snmfm" else r["snmfm"]
        sp = fastest.get((r["w_bits"], r["a_bits"]))
        lines.append(
            f"| {r['sim']} | {r['dtype']} | {'on' if r['trace'] else 'off'} | W{r['w_bits']}A{r['a_bits']} "
            f"| {r['T']} | {r['own']['top1']:.3f} | {r['own']['max_rel']:.2e} | {r['own']['equal']} "
            f"| {vs['top1']:.3f} | {vs['max_rel']:.2e} | {r[k]:.0f} | {r[k] / r['T']:.2f} "
            f"| {r['qann_' + k]:.1f} | {_fmt(r['peak_mb'])} "
            f"| {'-' if sp is None or r['sim'] == 'snmfm' else format(r[k] / sp, '.2f') + 'x'} |")
    notes = []
    for r in rows:
        if r["sim"] == "spikingjelly":
            notes.append(f"- SpikingJelly {r['dtype']} W{r['w_bits']}A{r['a_bits']}: its QANN vs the snmfm QANN: "
                         f"max rel {r['qann_vs_snmfm']['max_rel']:.2e}, top-1 {r['qann_vs_snmfm']['top1']:.3f}; "
                         f"output last changed at step {r['T']} of {r['T_max']}; HF->snmfm FP32 mapping max abs "
                         f"{r['fp_map_max_abs']:.1e}; curve (t: max rel vs own QANN): "
                         + ", ".join(f"{c['t']}: {c['own']['max_rel']:.1e}" for c in r["curve"]))
    return "\n".join(lines + [""] + notes)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m eval.benchmarks.bench_snn", description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--size", default="small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bits", default="8/8,8/4", help="comma-separated W/A pairs, e.g. 8/8,8/4")
    ap.add_argument("--codings", default=",".join(CODINGS),
                    help="comma-separated codings (converters.codings.names()), e.g. binary,graded,sigma-delta")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                    help="SNN runs repeat beyond --repeats until their wall times add up to this")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch (and SNN kernel) threads per measurement; issue 16 measures 2")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--no-sj", action="store_true", help="skip the SpikingJelly comparison")
    ap.add_argument("--sj-only", action="store_true")
    ap.add_argument("--sj-dtypes", default="float32,float64")
    ap.add_argument("--sj-extra-steps", type=int, default=128,
                    help="SpikingJelly runs 2^a_bits + this many steps before its T is read off")
    ap.add_argument("--tiny", action="store_true", help="tiny models, batch 2, W8A4, one repeat")
    ap.add_argument("--in-process", action="store_true", help="no subprocess per measurement")
    ap.add_argument("--json", help="write every measurement to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    if a.min_seconds < 0:
        ap.error(f"--min-seconds must be >= 0, got {a.min_seconds}")
    if a.worker:
        _worker(a.worker)
        return {}
    bits = [tuple(int(b) for b in p.split("/")) for p in a.bits.split(",")]
    net, size, batch, repeats, extra = None, a.size, a.batch, a.repeats, a.sj_extra_steps
    if a.tiny:
        net, size, batch, repeats, bits, extra = SJ_TINY, "tiny", 2, 1, [(8, 4)], 32
        a.min_seconds = 0.0
    from eval.benchmarks._sj_compare import have_spikingjelly
    commit = _commit()
    print(f"# bench_snn at {commit}: {a.threads} torch thread(s) per measurement, times = median {a.clock} ms over "
          f"{repeats} repeats (SNN: or more, to {a.min_seconds:g} s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"glibc allocator tuning {'on' if _alloc_on() else 'off'} in every process", flush=True)
    out = {"clock": a.clock, "repeats": repeats, "min_seconds": a.min_seconds, "threads": a.threads, "loadavg_start": os.getloadavg(), "commit": commit,
           "models": [], "spikingjelly": []}

    def save(_msg=""):
        if _msg:
            print(_msg, flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps({**out, "loadavg_now": os.getloadavg()}, indent=1))
    if not a.sj_only:
        from converters import codings as _codings
        for c in a.codings.split(","):
            _codings.get(c)  # an unknown name fails here, before any measurement
        rows = bench_models(a.models.split(","), size, batch, bits, repeats, isolate=not a.in_process,
                            log=save, rows=out["models"], codings=a.codings.split(","), threads=a.threads,
                            min_seconds=a.min_seconds)
        print(f"\n## SNN simulation vs QANN ({size} models, batch {batch})\n")
        print(models_table(rows, a.clock), flush=True)
    if not a.no_sj:
        if not have_spikingjelly():
            print("\nSpikingJelly or transformers not installed: comparison skipped.")
        else:
            rows = bench_spikingjelly(net, batch, bits, repeats, dtypes=a.sj_dtypes.split(","),
                                      t_extra=extra, isolate=not a.in_process, log=save,
                                      rows=out["spikingjelly"])
            n = net or SJ_NET
            print(f"\n## SpikingJelly 2.0 SpikeZIP-TF recipe vs snmfm (RoBERTa hidden {n['hidden']}, "
                  f"{n['layers']} layers, {n['heads']} heads, seq {n['seq_len']}, batch {batch})\n")
            print(sj_table(rows, a.clock), flush=True)
    save()
    return out


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=str(REPO), timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=str(REPO), timeout=10).stdout.strip()
        return (head or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
