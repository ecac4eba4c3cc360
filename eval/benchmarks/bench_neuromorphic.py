"""Benchmark of the neuromorphic chip model: speed, a configuration sweep, the switches, and the
honesty check against Loihi's published per-event energies.

    python -m eval.benchmarks.bench_neuromorphic            # tables on stdout
    python -m eval.benchmarks.bench_neuromorphic --json     # the same numbers as JSON

Workloads: a small ViT (real SNN run: its ActivityTrace) and a MiniLM-size text encoder
(6 layers, d 384, 12 heads, d_ff 1536, seq 128) with a *synthetic* trace
(`neuro_hw.neuromorphic.synthetic_trace`, 30% of neurons spike at step 1, decaying by 0.8 per
step for 16 steps) unless --minilm-trace points to a saved real trace (+ --minilm-workload).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch

from neuro_hw.neuromorphic import NeuromorphicConfig, map_workload, simulate_neuromorphic, synthetic_trace
from neuro_hw.neuromorphic.simulate import _Costs
from neuro_hw.workload import Workload, extract_workload


def vit_small_run(seed: int = 0):
    from converters import convert
    from snmfm.compress import calibrate, quantize
    from snmfm.models import build_model
    torch.manual_seed(seed)
    m = build_model("vit", "small")
    x = torch.randn(8, 1, 8, 8)
    calibrate(m, [x])
    q = quantize(m, w_bits=8, a_bits=4)
    res = convert(q).run(x[:4])
    return extract_workload(q, x[:4], name="vit-small"), res.trace


def minilm_workload(w_bits: int = 8, a_bits: int = 4) -> Workload:
    """Shapes from the float model (no calibration needed), with the bit widths a w8a4 QANN has."""
    import dataclasses
    from snmfm.models import build_model
    m = build_model("text", "tiny", d_model=384, n_layers=6, n_heads=12, d_ff=1536, vocab_size=30522,
                    max_len=128, pool="none")
    w = extract_workload(m, torch.randint(0, 30522, (1, 128)), name="minilm-size")
    ops = []
    for o in w.ops:
        extra = dict(o.extra)
        if o.kind == "matmul_act":
            extra["a_bits_each"] = [a_bits, a_bits]
        ops.append(dataclasses.replace(o, w_bits=w_bits if o.w_bits else 0,
                                       a_bits=a_bits if o.a_bits else 0, extra=extra))
    w.ops = ops
    return w


def time_report(w, trace, cfg, repeat: int = 7) -> float:
    simulate_neuromorphic(w, trace, cfg)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        simulate_neuromorphic(w, trace, cfg)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _sweep_one(shared, cfg):
    return simulate_neuromorphic(*shared, cfg)


def sweep_configs() -> list[NeuromorphicConfig]:
    """>= 100 chips: mesh size x synapse memory x neuron memory x split x pipelining."""
    base = NeuromorphicConfig.default()
    out = []
    for (mx, my), syn_kib, neu_kib, split, pipe in itertools.product(
            [(4, 4), (8, 4), (8, 8), (16, 8), (16, 16)], [64, 128, 256], [16, 64], ["memory", "balanced"],
            [True, False]):
        out.append(base.replace(**{"cores.mesh": [mx, my], "cores.count": mx * my * 4,
                                   "cores.synapse_mem_bytes": syn_kib * 1024,
                                   "cores.neuron_mem_bytes": neu_kib * 1024,
                                   "cores.split": split, "mode.pipeline": pipe}))
    return out


def switches(w, trace, base: NeuromorphicConfig) -> list[dict]:
    rows = []
    for sa, pipe in itertools.product([True, False], [True, False]):
        cfg = base.replace(**{"mode.spike_aware": sa, "mode.pipeline": pipe})
        r = simulate_neuromorphic(w, trace, cfg)
        rows.append({"spike_aware": sa, "pipeline": pipe, "energy_uj": r.energy_pj / 1e6,
                     "latency_ms": r.latency_s * 1e3, "static_share": r.breakdown_pj["static"] / r.energy_pj,
                     "spike_driven_energy": r.spike_driven_fraction["energy"]})
    return rows


def per_event_energies() -> list[dict]:
    """Per-event energies (pJ, at 14 nm) of the idealised chip against the registered `loihi1`
    chip (neuro_hw.load_hw_config("loihi1"): SANA-FE's Loihi model, constants cited in its TOML)
    and Loihi's published figures (Davies et al. 2018, Table 1)."""
    from neuro_hw import load_hw_config
    rows = []
    for label, cfg in [("ideal 45nm", NeuromorphicConfig.default()),
                       ("ideal 14nm", NeuromorphicConfig.default().replace(tech="14nm"))]:
        c = _Costs(cfg)
        local = cfg.noc.packet_bits * cfg.noc.local_pj_per_bit * c.tech.scale
        rows.append({"model": label,
                     "synop_pj": c.syn_word / 8 + c.neu_word_rw / 2 + c.add_acc + c.synop_overhead,
                     "neuron_update_pj": c.update, "idle_neuron_pj": c.idle_neuron, "hop_pj": c.hop,
                     "local_delivery_pj": local, "packet_sent_pj": c.packet - local})
    lo = load_hw_config("loihi1").at_node("14nm")
    rows.append({"model": "loihi1 (registered, 14nm)", "synop_pj": lo.e("core.synapse.energy_process_spike"),
                 "neuron_update_pj": lo.e("core.soma.energy_access_neuron") + lo.e("core.soma.energy_update_neuron"),
                 "idle_neuron_pj": lo.e("core.soma.energy_access_neuron"), "hop_pj": lo.e("tile.energy_east_hop"),
                 "local_delivery_pj": lo.e("core.axon_in.energy_message_in"),
                 "packet_sent_pj": lo.e("core.soma.energy_spike_out") + lo.e("core.axon_out.energy_message_out")})
    rows.append({"model": "Loihi published (14nm)", "synop_pj": 23.6, "neuron_update_pj": 72.8,
                 "idle_neuron_pj": 51.2, "hop_pj": 3.6, "local_delivery_pj": 1.7, "packet_sent_pj": 76.8})
    return rows


def table(rows: list[dict], title: str) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r[k]) for k in keys] for r in rows]
    wid = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.ljust(wid[i]) for i, k in enumerate(keys))
    body = "\n".join("  ".join(c[i].ljust(wid[i]) for i in range(len(keys))) for c in cells)
    return f"\n{title}\n{line}\n{'-' * len(line)}\n{body}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--minilm-trace", help="saved ActivityTrace JSON of a MiniLM-size SNN run")
    ap.add_argument("--minilm-workload", help="saved Workload JSON matching --minilm-trace")
    ap.add_argument("--workers", type=int, default=1, help="the sweep as Ray tasks (eval.engine; 1: in process)")
    ap.add_argument("--ray-address", default=None, help="run the sweep on this Ray cluster (HOST:PORT)")
    args = ap.parse_args(argv)
    out = {}
    base = NeuromorphicConfig.default()

    w_vit, tr_vit = vit_small_run()
    r = simulate_neuromorphic(w_vit, tr_vit, base)
    out["vit_small_breakdown"] = [{"part": k, "energy_nj": v / 1e3, "share": v / r.energy_pj}
                                  for k, v in r.breakdown_pj.items()]
    from neuro_hw.tech import get_tech
    naive = r.meta["events"]["synops"] * get_tech(base.tech).add_pj(32)
    out["vit_small"] = {"energy_uj": r.energy_pj / 1e6, "latency_ms": r.latency_s * 1e3,
                        "naive_synops_x_add_uj": naive / 1e6,
                        "spike_driven": r.spike_driven_fraction, "t_settle": tr_vit.t_settle,
                        "cores_used": r.meta["utilisation"]["cores_used"]}

    if args.minilm_trace:
        from converters import ActivityTrace
        w_lm, tr_lm = Workload.load(args.minilm_workload), ActivityTrace.load(args.minilm_trace)
        lm_kind = "real trace"
    else:
        w_lm = minilm_workload()
        tr_lm = synthetic_trace(w_lm, steps=32, settle=16, rate=0.3, decay=0.8)
        lm_kind = "synthetic trace"
    big = base.replace(**{"cores.mesh": [16, 16], "cores.count": 1024, "cores.neuron_mem_bytes": 65536})
    out["speed"] = [
        {"workload": "vit-small (real trace)", "ops": len(w_vit.ops),
         "s_per_report": time_report(w_vit, tr_vit, base)},
        {"workload": f"minilm-size seq128 ({lm_kind})", "ops": len(w_lm.ops),
         "s_per_report": time_report(w_lm, tr_lm, base)},
        {"workload": f"minilm-size on 1024 cores ({lm_kind})", "ops": len(w_lm.ops),
         "s_per_report": time_report(w_lm, tr_lm, big)},
    ]
    cfgs = sweep_configs()
    t0 = time.perf_counter()
    from eval.engine import map_tasks
    results = map_tasks(_sweep_one, cfgs, workers=args.workers, ray_address=args.ray_address, shared=(w_lm, tr_lm))
    sweep_s = time.perf_counter() - t0
    rb, cb = min(zip(results, cfgs), key=lambda rc: rc[0].energy_pj * rc[0].latency_s)
    out["sweep"] = {"configs": len(cfgs), "seconds": sweep_s, "workers": args.workers, "workload": f"minilm-size ({lm_kind})",
                    "best_edp": {"mesh": list(cb.cores.mesh), "synapse_kib": cb.cores.synapse_mem_bytes // 1024,
                                 "neuron_kib": cb.cores.neuron_mem_bytes // 1024, "split": cb.cores.split,
                                 "pipeline": cb.mode.pipeline, "energy_uj": rb.energy_pj / 1e6,
                                 "latency_ms": rb.latency_s * 1e3}}
    out["switches_vit_small"] = switches(w_vit, tr_vit, base)
    out["switches_minilm_1024_cores"] = switches(w_lm, tr_lm, big)
    out["per_event_energy"] = per_event_energies()
    out["minilm_fit"] = {"default_chip_notes": len(map_workload(w_lm, base).notes),
                         "1024_core_chip_notes": len(map_workload(w_lm, big).notes)}

    if args.json:
        print(json.dumps(out, indent=1, default=float))
        return out
    v = out["vit_small"]
    print(f"vit-small: {v['energy_uj']:.3f} uJ, {v['latency_ms']:.3f} ms per inference, t_settle "
          f"{v['t_settle']}, {v['cores_used']} cores, spike-driven ops {v['spike_driven']['ops']:.2f} / "
          f"energy {v['spike_driven']['energy']:.2f}; a synops x 32-bit add estimate would say "
          f"{v['naive_synops_x_add_uj']:.3f} uJ")
    print(table(out["vit_small_breakdown"], "energy breakdown, vit-small, default chip (45 nm):"))
    print(table(out["speed"], "time per HwReport:"))
    s = out["sweep"]
    print(f"\nsweep: {s['configs']} chip configurations of {s['workload']} in {s['seconds']:.2f} s; "
          f"best EDP: {s['best_edp']}")
    print(table(out["switches_vit_small"], "switches, vit-small, default chip:"))
    print(table(out["switches_minilm_1024_cores"],
                f"switches, minilm-size ({lm_kind}), 16x16 tiles x 4 cores, 64 KiB neuron memory:"))
    print(table(out["per_event_energy"], "per-event energy vs Loihi (published: Davies 2018 Table 1; "
                "loihi1: the registered chip, SANA-FE's Loihi model):"))
    print(f"\nMiniLM-size off-chip spills: {out['minilm_fit']}")
    return out


if __name__ == "__main__":
    main()
