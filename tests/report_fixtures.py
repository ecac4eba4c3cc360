"""A small synthetic `Results` (no model is run) for the report tests."""
from __future__ import annotations

from eval.results import Results, TaskResult, VariantResult
from neuro_hw.report import HwReport


def hw(accelerator: str, scale: float, ops=("blocks.0.attn.qkv", "blocks.0.mlp.fc1", "head")) -> HwReport:
    if accelerator == "neuromorphic":
        parts = {"synaptic_ops": 120.0 * scale, "neuron_updates": 30.0 * scale, "noc": 10.0 * scale,
                 "nonspiking_units": 25.0 * scale, "static": 40.0 * scale, "sync": 5.0 * scale}
        sdf = {"ops": 0.8, "energy": 0.55}
    else:
        parts = {"mac": 200.0 * scale, "sram": 90.0 * scale, "dram": 300.0 * scale, "vector": 12.0 * scale,
                 "static": 8.0 * scale}
        sdf = None
    total = sum(parts.values())
    share = [0.5, 0.3, 0.1]
    per_op = [{"name": n, "kind": "linear", "energy_pj": total * s, "cycles": 100.0 * (i + 1)}
              for i, (n, s) in enumerate(zip(ops, share))]
    return HwReport(accelerator=accelerator, energy_pj=total, breakdown_pj=parts, cycles=1000.0 * scale,
                    latency_s=1e-6 * scale * (3.0 if accelerator == "neuromorphic" else 1.0), per_op=per_op,
                    config={"name": accelerator, "tech": "45nm"}, spike_driven_fraction=sdf,
                    notes=["weights fit on chip"] if accelerator == "neuromorphic" else [])


def variant(label: str, w: int, a: int, acc: float, scale: float, steps: int = 20, exact: bool = True) -> VariantResult:
    curve = [min(acc, acc * (i + 1) / (steps // 2)) for i in range(steps)]
    return VariantResult(
        label=label, w_bits=w, a_bits=a,
        qann={"accuracy": acc, "n": 200, "n_examples": 200, "split": "test"},
        snn={"accuracy": acc if exact else acc - 0.05, "n": 32, "n_examples": 32, "split": "test", "T": None,
             "steps": steps, "t_settle": steps - 2, "settled": True, "t_settle_mean": steps / 2,
             "t_settle_max": steps - 2, "acc_per_step": curve, "qann_accuracy_subset": acc,
             "agreement": 1.0 if exact else 0.9, "agreement_n": 32, "max_abs_err": 0.0 if exact else 0.1,
             "max_rel_err": 0.0 if exact else 0.01, "spikes_per_inference": 1234.5},
        workload={"name": f"t-{label}", "n_ops": 9, "macs": 100000, "params": 5000, "weight_bits": 40000,
                  "example": "first example of the SNN subset", "trace_steps_simulated": steps - 2},
        hw={"neuromorphic": hw("neuromorphic", scale), "conventional": hw("conventional", scale * 0.9)},
        wall_s={"quantize": 0.1, "snn_run": 1.0}, coding="binary")


def task(name: str, kind: str = "classify", tokens: int = 1) -> TaskResult:
    return TaskResult(
        task=name, kind=kind, model_name="vit", size="tiny", description=f"synthetic {name}",
        checkpoint={"path": "/nowhere/x.safetensors", "sha256": "0" * 64, "json_sha256": None,
                    "trained_now": False},
        fp32={"accuracy": 0.95, "n": 200 * tokens, "n_examples": 200, "split": "test"},
        normalisation={"unit": "token" if tokens > 1 else "inference", "tokens_per_inference": tokens,
                       "text": "synthetic normalisation"},
        variants=[variant("W8A8", 8, 8, 0.945, 1.0), variant("W8A4", 8, 4, 0.93, 0.5),
                  variant("W4A4", 4, 4, 0.80, 0.3, exact=False)],
        main="W8A8", fp32_hw={"conventional": hw("conventional", 4.0)},
        wall_s={"load": 0.5, "fp32_eval": 0.2}, notes=[])


def synthetic_results() -> Results:
    return Results(
        tasks=[task("synthetic-classify"), task("synthetic-lm", "lm", tokens=16)],
        options={"tasks": ["synthetic-classify", "synthetic-lm"], "sizes": {}, "w_bits": 8, "a_bits": 8,
                 "bits": [[8, 8], [8, 4], [4, 4]], "T": None, "limit": None, "seed": 0, "tolerance": 0.01,
                 "snn_examples": {"synthetic-classify": 32, "synthetic-lm": 32},
                 "hardware": {"neuromorphic": {"requested": "neuromorphic", "config": {"cores": 128},
                                               "kind": "neuromorphic", "needs_trace": True},
                              "conventional": {"requested": "conventional", "config": {"rows": 32},
                                               "kind": "conventional", "needs_trace": False}},
                 "accelerators": ["neuromorphic", "conventional"], "codings": ["binary"], "memory_policy": None},
        provenance={"packages": {"torch": "2", "numpy": "1"}, "environment": {"python": "3", "platform": "x"},
                    "build": {"version": "0.1.0", "git_revision": "0123456789abcdef", "git_dirty": False,
                              "source": "recorded at build"},
                    "git": None, "command": ["pytest"], "seed": 0, "started_utc": "2025-01-01T00:00:00+00:00",
                    "finished_utc": "2025-01-01T00:01:00+00:00", "stage_wall_s": {"synthetic-classify": 1.0}},
        wall_s=60.0)
