"""What each spiking coding sends on a shipped task model: events, synaptic ops per MAC, wasted
spikes, T_settle, and sigma-delta on a slowly changing stream.

For one task's shipped checkpoint (snmfm.tasks), calibrated and quantized at W/A bits, on `--n`
held-out inputs (one batch):
* per coding (binary with gate "none" and "settled", graded): events per inference, synaptic ops
  per inference (events x fan-out of the consuming op, neuro_hw.synops.synops_from_trace, as the
  neuromorphic chip model charges them) per MAC of the dense model, sum |payload| / sum |code| (for
  binary: spikes / sum |code|, the wasted-spike ratio; sum |code| is the graded run's payload,
  which jumps from 0 to each code once), T_settle, and SNN == QANN (torch.equal);
* a stream of `--frames` frames (the first held-out image, each frame the previous one with
  `--pixels` input pixels moved by one grey level), graded vs sigma-delta: events per frame after
  the first, and every frame's output against the QANN.

    python -m eval.benchmarks.bench_codings --task vision-digits --a-bits 8 --n 8
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def _qann(task_name: str, w_bits: int, a_bits: int, calib: int = 64, seed: int = 0):
    from converters.workflow import build_qann
    from snmfm.tasks import get_task
    t = get_task(task_name)
    model, _ = t.load()
    return t, build_qann(t, model, w_bits=w_bits, a_bits=a_bits, calib=calib, seed=seed)


def _inputs(t, n: int, seed: int = 0) -> tuple:
    batch = next(iter(t.batches("test", n, seed=seed, limit=n)))
    return tuple(batch.inputs if hasattr(batch, "inputs") else batch)


def measure_codings(qann, inputs, codings=(("binary", {}), ("binary", {"gate": "settled"}), ("graded", {}))):
    from converters import convert
    from neuro_hw.synops import synops_from_trace
    from neuro_hw.workload import extract_workload
    wl = extract_workload(qann, *(x[:1] for x in inputs))
    macs = wl.total_macs
    with torch.no_grad():
        ref = qann(*inputs)
    rows = []
    for name, kw in codings:
        snn = convert(qann, name, **kw)
        t0 = time.perf_counter()
        r = snn.run(*inputs)
        wall = time.perf_counter() - t0
        tr = r.trace
        B = tr.n_samples
        rows.append({"coding": name + (f" (gate={kw['gate']})" if kw else ""), "events": tr.total_events() / B,
                     "payload": tr.total_payload() / B, "synops": synops_from_trace(wl, tr),
                     "macs": macs, "t_settle": r.t_settle, "steps": r.steps, "wall_s": wall,
                     "exact": bool(torch.equal(r.output, ref))})
    code_sum = next(x["payload"] for x in rows if x["coding"] == "graded")
    for x in rows:
        x["synops_per_mac"] = x["synops"] / macs
        x["payload_per_code"] = x["payload"] / code_sum
    return rows


def stream_frames(x: torch.Tensor, n: int, pixels: int, step: float, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = [x.clone()]
    for _ in range(n - 1):
        f = out[-1].clone()
        flat = f.view(f.shape[0], -1)
        idx = torch.randint(0, flat.shape[1], (pixels,), generator=g)
        flat[:, idx] = flat[:, idx] + step
        out.append(f)
    return out


def measure_stream(qann, x: torch.Tensor, frames: int, pixels: int, step: float) -> dict:
    from converters import convert
    xs = stream_frames(x, frames, pixels, step)
    with torch.no_grad():
        refs = [qann(f) for f in xs]
    out = {}
    for name in ("graded", "sigma-delta"):
        r = convert(qann, name).stream(xs)
        out[name] = {"events_per_frame": r.events, "exact": all(torch.equal(o, f) for o, f in zip(r.outputs, refs))}
    g, s = out["graded"]["events_per_frame"][1:], out["sigma-delta"]["events_per_frame"][1:]
    out["sigma_delta_over_graded"] = sum(s) / max(1, sum(g))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m eval.benchmarks.bench_codings", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="vision-digits")
    ap.add_argument("--w-bits", type=int, default=8)
    ap.add_argument("--a-bits", type=int, default=8)
    ap.add_argument("--n", type=int, default=8, help="held-out inputs (one batch)")
    ap.add_argument("--frames", type=int, default=8, help="stream length (image tasks)")
    ap.add_argument("--pixels", type=int, default=3, help="pixels changed per frame")
    ap.add_argument("--grey-step", type=float, default=1 / 16,
                    help="change of a pixel per frame in input units (digits: one grey level = 1/16)")
    ap.add_argument("--clips", type=int, default=0,
                    help="also stream this many held-out clips of vision-digits-stream (frame by frame, "
                         "the clips as the batch) at --change-rate")
    ap.add_argument("--change-rate", type=float, default=0.05)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    t, qann = _qann(a.task, a.w_bits, a.a_bits)
    inputs = _inputs(t, a.n)
    torch.set_num_threads(1)
    rows = measure_codings(qann, inputs)
    print(f"## {a.task} W{a.w_bits}A{a.a_bits}, {a.n} held-out inputs (per inference)\n")
    print("| coding | events | synaptic ops | synops / MAC | payload / sum|code| | T_settle | steps | wall s | exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        print(f"| {x['coding']} | {x['events']:.0f} | {x['synops']:.3g} | {x['synops_per_mac']:.2f} "
              f"| {x['payload_per_code']:.2f} | {x['t_settle']} | {x['steps']} | {x['wall_s']:.2f} | {x['exact']} |")
    out = {"task": a.task, "w_bits": a.w_bits, "a_bits": a.a_bits, "n": a.n, "codings": rows}
    if len(inputs) == 1 and torch.is_floating_point(inputs[0]):
        s = measure_stream(qann, inputs[0][:1], a.frames, a.pixels, a.grey_step)
        out["stream"] = s
        print(f"\n## stream: {a.frames} frames, {a.pixels} pixels +{a.grey_step:g} per frame\n")
        print(f"graded events per frame:      {s['graded']['events_per_frame']} (exact {s['graded']['exact']})")
        print(f"sigma-delta events per frame: {s['sigma-delta']['events_per_frame']} (exact {s['sigma-delta']['exact']})")
        print(f"sigma-delta / graded after the first frame: {s['sigma_delta_over_graded']:.3f}")
    if a.clips:
        from snmfm.tasks import get_task
        st = get_task("vision-digits-stream", change_rate=a.change_rate)
        clips = st.clips("test", limit=a.clips)
        xs = clips.frames.transpose(0, 1).contiguous()  # [n_frames, n_clips, 1, 8, 8]
        from converters import convert
        res = {}
        with torch.no_grad():
            refs = [qann(f) for f in xs]
        for name in ("graded", "sigma-delta"):
            r = convert(qann, name).stream(xs)
            res[name] = {"events_per_frame": [e / xs.shape[1] for e in r.events],
                         "exact": all(torch.equal(o, f) for o, f in zip(r.outputs, refs))}
        g, sd = res["graded"]["events_per_frame"][1:], res["sigma-delta"]["events_per_frame"][1:]
        res["sigma_delta_over_graded"] = sum(sd) / max(1e-9, sum(g))
        res["measured_change_rate"] = clips.measured_change_rate
        out["clips"] = res
        print(f"\n## vision-digits-stream: {a.clips} clips x {xs.shape[0]} frames, change rate {a.change_rate} "
              f"(measured {clips.measured_change_rate:.3f}); events per frame and clip\n")
        for name in ("graded", "sigma-delta"):
            e = res[name]["events_per_frame"]
            print(f"{name}: first frame {e[0]:.0f}, later frames mean {sum(e[1:]) / len(e[1:]):.0f} "
                  f"(exact {res[name]['exact']})")
        print(f"sigma-delta / graded after the first frame: {res['sigma_delta_over_graded']:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
