"""Effect of each conventional-accelerator switch on ViT- and MiniLM-size workloads, and speed.

    python -m eval.benchmarks.bench_conventional [--json OUT]

Workloads are extracted from the reference MFMs at real sizes (MiniLM-L6: d 384, 6 layers, 12
heads, FFN 1536, 128 tokens; ViT-Ti/16: d 192, 12 layers, 3 heads, FFN 768, 197 tokens) with all
weights and activations at 8 bits (the float model's Workload with its bit widths set, which has the
QANN's shapes; quantising these models takes minutes on a CPU and does not change a shape).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from neuro_hw.conventional import ConventionalConfig, simulate_conventional
from neuro_hw.workload import Workload, extract_workload

SWITCHES = [
    ("default (fusion, tiled attention, ws, 45 nm)", {}),
    ("fusion off", {"fusion": False}),
    ("naive attention", {"attention": "naive"}),
    ("fusion off + naive attention", {"fusion": False, "attention": "naive"}),
    ("output-stationary", {"dataflow": "os"}),
    ("14 nm", {"tech": "14nm"}),
    ("7 nm", {"tech": "7nm"}),
    ("no leakage", {"leakage": False}),
    ("2x buffers", {"input_sram_kib": 256.0, "weight_sram_kib": 256.0, "output_sram_kib": 128.0}),
    ("32x32 array", {"array_rows": 32, "array_cols": 32}),
]


def with_bits(w: Workload, w_bits: int, a_bits: int) -> Workload:
    ops = []
    for o in w.ops:
        extra = dict(o.extra)
        if o.kind == "matmul_act":
            extra["a_bits_each"] = [a_bits, a_bits]
        ops.append(dataclasses.replace(o, w_bits=w_bits if o.w_bits else 0,
                                       a_bits=a_bits if o.a_bits else 0, extra=extra))
    return Workload(f"{w.name}-w{w_bits}a{a_bits}", ops, dict(w.meta))


def minilm_workload(bits: int = 8) -> Workload:
    from snmfm.models import build_model
    m = build_model("text", "small", d_model=384, n_layers=6, n_heads=12, d_ff=1536, vocab_size=30522,
                    max_len=128, n_classes=0)
    return with_bits(extract_workload(m, torch.randint(0, 30522, (1, 128)), name="MiniLM-L6@128"), bits, bits)


def vit_workload(bits: int = 8) -> Workload:
    from snmfm.models import build_model
    m = build_model("vit", "small", d_model=192, n_layers=12, n_heads=3, d_ff=768, image_size=224,
                    patch_size=16, channels=3, n_classes=1000)
    return with_bits(extract_workload(m, torch.randn(1, 3, 224, 224), name="ViT-Ti/16@197"), bits, bits)


def effect_table(w: Workload) -> list[dict]:
    base_cfg = ConventionalConfig.default()
    rows, base = [], None
    for label, change in SWITCHES:
        r = simulate_conventional(w, base_cfg.replace(**change))
        base = base or r
        rows.append({"switch": label, "energy_uj": r.energy_pj / 1e6, "vs_default": r.energy_pj / base.energy_pj - 1,
                     "latency_ms": r.latency_s * 1e3, "dram_mb": r.meta["dram_bytes"] / 1e6,
                     "share": {k: v / r.energy_pj for k, v in r.breakdown_pj.items()}})
    return rows


def timing(w: Workload) -> dict:
    cfg = ConventionalConfig.default()
    t = time.perf_counter()
    simulate_conventional(w, cfg)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(10):
        simulate_conventional(w, cfg)
    out = {"conventional_cold_s": cold, "conventional_warm_s": (time.perf_counter() - t) / 10}
    try:
        from neuro_hw.neuromorphic import NeuromorphicConfig, simulate_neuromorphic
        from neuro_hw.neuromorphic.synthetic import synthetic_trace
        trace = synthetic_trace(w, steps=32)
        t = time.perf_counter()
        simulate_neuromorphic(w, trace, NeuromorphicConfig.default())
        out["neuromorphic_s"] = time.perf_counter() - t
        t = time.perf_counter()
        simulate_conventional(w, cfg.replace(name="fresh-cache", array_rows=16))
        simulate_neuromorphic(w, trace, NeuromorphicConfig.default())
        out["both_s"] = time.perf_counter() - t
    except Exception as e:  # noqa: BLE001 - the neuromorphic model is optional here
        out["neuromorphic_error"] = f"{type(e).__name__}: {e}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    res = {}
    for w in (vit_workload(), minilm_workload()):
        rows = effect_table(w)
        res[w.name] = {"effects": rows, "timing": timing(w), "macs": w.total_macs}
        print(f"\n{w.name}: {w.total_macs / 1e9:.2f} GMAC, {len(w.ops)} ops")
        print(f"{'switch':46s} {'energy uJ':>10s} {'vs default':>10s} {'latency ms':>10s} {'DRAM MB':>8s}  "
              f"{'mac/reg/sram/dram/vector/leak %':>32s}")
        for r in rows:
            sh = "/".join(f"{100 * r['share'][k]:.0f}" for k in ("mac", "reg", "sram", "dram", "vector", "leakage"))
            print(f"{r['switch']:46s} {r['energy_uj']:10.1f} {100 * r['vs_default']:+9.1f}% {r['latency_ms']:10.3f} "
                  f"{r['dram_mb']:8.2f}  {sh:>32s}")
        tm = res[w.name]["timing"]
        print("timing: " + ", ".join(f"{k} {v * 1e3:.1f} ms" if isinstance(v, float) else f"{k}: {v}"
                                     for k, v in tm.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
