"""GPU benchmark: the exact SNN with its ActivityTrace on CUDA against the same SNN on 2 CPU cores.

Cases (issue 16's acceptance):
1. all-MiniLM-L6-v2, 32 shipped sentences, W8A8, trace on: SNN time on the GPU and on 2 CPU cores
   (torch and numba limited to 2 threads), each bitwise equal (torch.equal) to the QANN on its
   device.  Machines without the `transformers` extra read a compact export of the mapped model
   (`bench_minilm.export_compact`: the vocabulary rows the sentences use, nothing else changed).
2. A GPT-2-small-sized decoder (12 layers x 768, 12 heads, d_ff 3072, GPT-2's vocabulary of 50257,
   random weights, calibrated on random token windows), batch 32 x 128 tokens, A8, trace on.
Every coding asked for is run (binary: ±1 spikes until quiet; graded: one step).  Peak GPU memory
is `torch.cuda.max_memory_allocated`.  Prints a table; `--out FILE` writes the JSON.

    python -m eval.benchmarks.bench_gpu --device cuda --codings binary,graded
    python -m eval.benchmarks.bench_gpu --export-minilm DIR     # on a machine with the extra
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from converters import convert
from snmfm.compress import calibrate, quantize
from snmfm.device import resolve_device


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev):
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0


def _cpu_threads(n: int) -> None:
    torch.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def measure(qann, inputs: tuple, dev: torch.device, coding: str) -> dict:
    """QANN and SNN (trace on) on `dev`: times, exactness, events, steps, peak memory."""
    qann = qann.to(dev)
    xs = tuple(x.to(dev) for x in inputs)
    snn = convert(qann, coding=coding).to(dev)
    with torch.no_grad():
        ref, t_q = _timed(lambda: qann(*xs), dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        run, t_s = _timed(lambda: snn.run(*xs, record=True), dev)
        if dev.type == "cuda":  # the first run compiled the fused kernels (converters/_triton.py)
            run, t_warm = _timed(lambda: snn.run(*xs, record=True), dev)
            t_s, t_first = t_warm, t_s
    events = int(run.trace.total_spikes())
    row = {"device": str(dev), "coding": coding, "qann_s": t_q, "snn_s": t_s, "steps": run.steps,
           "t_settle": run.t_settle, "bitwise_equal": bool(torch.equal(run.output, ref)),
           "max_abs_diff": float((run.output.double() - ref.double()).abs().max()),
           "events": events, "events_per_s": events / t_s}
    if dev.type == "cuda":
        row["snn_first_s"] = t_first  # including the kernels' JIT compilation (cached on disk after)
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    qann.cpu()
    return row


def minilm_case(compact: str | None, n: int = 32, n_calib: int = 32):
    """(qann W8A8, inputs) for the first `n` shipped sentences, calibrated on the next `n_calib`."""
    if compact:
        from eval.benchmarks.bench_minilm import load_compact, rebatch
        model, d = load_compact(compact)
        batches, pad = d["batches"], d["pad_id"]
    else:
        from eval.benchmarks.bench_minilm import rebatch, tokenize
        from snmfm.data.sentences import load_sentences
        from snmfm.models.hf import load_minilm
        model, tok = load_minilm()
        sents = load_sentences()[: n + n_calib]
        batches, pad = tokenize(tok, sents, 64), tok.pad_token_id
    run_b = rebatch(batches, set(range(n)), n, pad)
    cal_b = rebatch(batches, set(range(n, n + n_calib)), n_calib, pad)
    calibrate(model, [(ids, mask) for _, ids, mask in cal_b])
    qann = quantize(model, w_bits=8, a_bits=8)
    _, ids, mask = run_b[0]
    return qann, (ids, mask)


def gpt2_small_case(batch: int = 32, seq: int = 128, a_bits: int = 8, seed: int = 0):
    from snmfm.models import build_model
    torch.manual_seed(seed)
    model = build_model("decoder", "small", d_model=768, n_layers=12, n_heads=12, d_ff=3072,
                        max_len=seq, vocab_size=50257).eval()
    g = torch.Generator().manual_seed(seed)
    calib = [torch.randint(0, 50257, (4, seq), generator=g) for _ in range(2)]
    calibrate(model, [(x,) for x in calib])
    qann = quantize(model, w_bits=8, a_bits=a_bits)
    return qann, (torch.randint(0, 50257, (batch, seq), generator=g),)


def run(device: str = "auto", codings=("binary", "graded"), cpu_threads: int = 2,
        minilm_compact: str | None = None, cases=("minilm", "gpt2"), cpu_baseline: bool = True) -> dict:
    dev = resolve_device(device)
    if dev.type == "cpu":
        _cpu_threads(cpu_threads)
    rows = []
    for case in cases:
        if case == "minilm":
            qann, xs = minilm_case(minilm_compact)
            label = "MiniLM-L6 32 sent. W8A8"
        else:
            qann, xs = gpt2_small_case()
            label = "GPT-2-small 32x128 W8A8"
        for coding in codings:
            r = measure(qann, xs, dev, coding)
            r["case"] = label
            rows.append(r)
            print(_fmt(r), flush=True)
            if cpu_baseline and case == "minilm" and dev.type != "cpu":
                _cpu_threads(cpu_threads)
                c = measure(qann, xs, torch.device("cpu"), coding)
                c["case"], c["cpu_threads"] = label, cpu_threads
                c["gpu_speedup"] = c["snn_s"] / r["snn_s"]
                rows.append(c)
                print(_fmt(c), flush=True)
    return {"rows": rows, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}


def _fmt(r: dict) -> str:
    extra = f" speed-up {r['gpu_speedup']:.1f}x" if "gpu_speedup" in r else ""
    mem = f" peak {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
    if "snn_first_s" in r:
        mem += f" (first run {r['snn_first_s']:.2f} s)"
    return (f"| {r['case']} | {r['device']} | {r['coding']} | T {r['steps']} (settle {r['t_settle']}) | "
            f"QANN {r['qann_s']:.3f} s | SNN+trace {r['snn_s']:.2f} s | equal {r['bitwise_equal']} | "
            f"{r['events']:.3g} events, {r['events_per_s']:.3g}/s |{mem}{extra}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--codings", default="binary,graded")
    ap.add_argument("--cases", default="minilm,gpt2")
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU baseline")
    ap.add_argument("--minilm-compact", help="folder of bench_minilm's compact export")
    ap.add_argument("--export-minilm", help="write the compact MiniLM export to this folder and exit")
    ap.add_argument("--out", help="JSON file")
    a = ap.parse_args(argv)
    if a.export_minilm:
        from eval.benchmarks.bench_minilm import export_compact
        from snmfm.data.sentences import load_sentences
        from snmfm.models.hf import load_minilm
        model, tok = load_minilm()
        print(export_compact(a.export_minilm, model, tok, load_sentences()[:64], 64))
        return {}
    res = run(a.device, tuple(a.codings.split(",")), a.cpu_threads, a.minilm_compact,
              tuple(a.cases.split(",")), not a.no_cpu)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
