"""Small study outputs in exactly the producers' formats (no model is run), for the report tests.

speculative_output  eval.benchmarks.bench_speculative.main's dict (as `snmfm speculate --json` writes it)
cascade_output      eval.cascade_study.run_cascade's dict
cooptimize_output   eval.cooptimize.run_cooptimize's dict
compression_output  eval.benchmarks.bench_compress.main's results.json
"""
from __future__ import annotations

CHIPS = ("conventional", "neuromorphic")


def speculative_output() -> dict:
    args = {"tasks": ["code-stdlib"], "prompts": 2, "snn_prompts": 1, "energy_prompts": 1, "sweep_prompts": 1,
            "prompt_len": 48, "new": 8, "k": 4, "distill_steps": 30, "distilled_bits": [8, 4],
            "compressed_bits": [4, 4], "chunk": 32, "calib": 64, "quick": True, "json": "/tmp/spec.json"}
    exactness, speed = [], []
    drafts = [("distilled", f) for f in ("fp32", "qann", "snn")] + [("compressed", f) for f in ("qann", "snn")]
    for target in ("fp32", "qann", "snn"):
        for kind, form in drafts + [("self", target)]:
            n = 1 if "snn" in (target, form) else 2
            exactness.append({"task": "code-stdlib", "target": target, "draft": kind, "draft_form": form,
                              "prompts": n, "identical": n, "uncached_identical": None if target == "snn" else 2,
                              "plain_prompts": 1 if target == "snn" else 2, "identical_%": 100.0})
            speed.append({"target": target, "draft": kind, "draft_form": form, "prompts": n,
                          "acceptance_rate": 0.25, "mean_accepted_length": 0.75, "target_passes_per_token": 0.625,
                          "wall_ms_per_token": 5.4, "cpu_ms_per_token": 3.4, "plain_wall_ms_per_token": 1.9,
                          "plain_cpu_ms_per_token": 1.7, "speedup_wall": 0.35, "speedup_cpu": 0.5})
    energy = [_energy_row("plain", None, c, 21769.0 if c == "conventional" else 2247842.7) for c in CHIPS]
    for i, kind in enumerate(("distilled", "compressed", "self")):
        for d in CHIPS:
            for t in CHIPS:
                base = 21769.0 if t == "conventional" else 2247842.7
                # the distilled draft on the chip pays off against a conventional target
                f = 0.8 if (kind, d, t) == ("distilled", "neuromorphic", "conventional") else 1.2 + 0.3 * i
                energy.append(_energy_row(kind, d, t, base * f))
    k_sweep = [{"draft": kind, "k": k, "acceptance_rate": 0.2, "energy_nj_per_token": 21769.0 * (1 + 0.1 * k),
                "plain_nj_per_token": 21769.0, "saving": -0.1 * k}
               for kind in ("distilled", "compressed", "self") for k in (1, 2, 3, 4, 6)]
    return {"args": args, "exactness": exactness, "speed": speed, "energy": energy, "k_sweep": k_sweep,
            "winners": {c: min((r for r in energy if r["target_chip"] == c), key=lambda r: r["energy_nj_per_token"])
                        for c in CHIPS}}


def _energy_row(kind, d_chip, t_chip, nj: float) -> dict:
    hetero = d_chip is not None and d_chip != t_chip
    return {"draft": kind, "draft_chip": d_chip, "target_chip": t_chip, "tokens": 8, "energy_nj_per_token": nj,
            "latency_us_per_token": nj / 900.0, "draft_share": 0.0 if d_chip is None else 0.3,
            "wasted_share": 0.0 if d_chip is None else 0.4, "link_pj_per_token": 546.0 if hetero else 0.0}


def _hw(conv_pj: float, neuro_pj: float) -> dict:
    return {"conventional": {"energy_pj": conv_pj, "latency_s": conv_pj * 2e-12},
            "neuromorphic": {"energy_pj": neuro_pj, "latency_s": neuro_pj * 6e-12}}


def cascade_output(task: str = "medical-wdbc", ref_acc: float = 0.9649) -> dict:
    members = [
        {"name": "tiny", "size": "tiny", "params": 9216, "macs": 316480, "accuracy": {"calib": 0.91, "test": 0.956},
         "qann_test_accuracy_task": 0.956, "t_settle": 256, "snn_agreement": 1.0, "snn_examples": 8,
         "hw": _hw(7.09e6, 9.1e8), "checkpoint": f"{task}-tiny-steps300-seed0-2b7848967e"},
        {"name": "small", "size": "small", "params": 67584, "macs": 2279680,
         "accuracy": {"calib": 0.93, "test": ref_acc}, "qann_test_accuracy_task": ref_acc, "t_settle": 258,
         "snn_agreement": 1.0, "snn_examples": 8, "hw": _hw(3.37e7, 5.03e9), "checkpoint": "default"}]
    scenarios, curves = {}, {}
    for sc in ("conventional", "neuromorphic", "mixed"):
        place = "conventional" if sc == "mixed" else sc
        ref_e = members[1]["hw"][place]["energy_pj"]
        test = {"accuracy": ref_acc, "accuracy_drop": 0.0, "energy_pj": 0.3 * ref_e, "latency_s": 1e-5,
                "energy_ratio": 0.3, "latency_ratio": 0.4, "escalation_rate": 0.035,
                "exit_fractions": [0.965, 0.035], "self_test_pj": 50.9, "self_test_share": 3.7e-6,
                "wasted_pj": 2.4e5, "transfer_pj": 684.0 if sc == "mixed" else 0.0}
        chosen = {"ladder": "tiny>small", "self_test": "margin", "method": "empirical", "tolerance": 0.005,
                  "feasible": True, "thresholds": [0.6],
                  "calib": {"accuracy": 0.93, "energy_pj": 0.28 * ref_e, "escalation_rate": 0.0175, "bound": 0.0,
                            "drop": 0.0, "n": 57},
                  "test": test}
        infeasible = {"ladder": "tiny>small", "self_test": "entropy", "method": "ltt", "tolerance": 0.005,
                      "feasible": False, "error": "no threshold certifies 0.005", "best_achievable": None}
        scenarios[sc] = {"reference": {"member": "small", "placement": place,
                                       "accuracy": {"calib": 0.93, "test": ref_acc},
                                       "energy_pj": ref_e, "latency_s": 2.2e-4},
                         "chosen": None if sc == "mixed" else chosen, "variants": [chosen, infeasible],
                         "acceptance": {"accuracy_within_0.5pt": sc != "mixed", "energy_at_most_60pct": sc != "mixed",
                                        "met": sc != "mixed"}}
        curves[sc] = {test_name: [{"threshold": th, "accuracy": 0.956 + 0.01 * th, "escalation_rate": th,
                                   "energy_pj": members[0]["hw"]["conventional"]["energy_pj"] * (1 + 4 * th)}
                                  for th in (0.0, 0.3, 0.6)]
                      for test_name in ("max_prob", "margin", "entropy")}
    return {"task": task, "kind": "classify", "readout": "classify", "sizes": ["tiny", "small"], "bits": "W8A8",
            "reference": "small", "members": members,
            "calibration": {"method": "empirical", "tolerance": 0.005, "certify_tolerance": 0.02, "delta": 0.1,
                            "n_calib": 57, "n_test": 114},
            "targets": {"accuracy_tolerance": 0.005, "energy_ratio": 0.6}, "scenarios": scenarios,
            "curves": curves,
            "online_check": {"ladder": "tiny>small", "self_test": "margin", "accuracy": ref_acc,
                             "escalation_rate": 0.035, "matches_offline": True, "energy_pj": 1.0e7},
            "notes": ["members placed on the neuromorphic chip are SNNs run until quiet"], "wall_s": 29.5}


def _coopt_point(config, bits, T, acc, e, t_settle=None) -> dict:
    p = {"config": config, "bits": bits, "tokens": None, "T": T, "accuracy": acc, "energy_pj": e,
         "latency_s": e * 1e-12, "macs": 338816}
    if T is not None:
        p["t_settle"] = t_settle
    return p


def cooptimize_output(task: str = "vision-digits") -> dict:
    configs = [{"image_size": None, "patch_size": None, "keep_tokens": None, "token_mode": "prune", "context": None,
                "label": "default"},
               {"image_size": None, "patch_size": None, "keep_tokens": 12, "token_mode": "prune", "context": None,
                "label": "prune12"},
               {"image_size": 4, "patch_size": 2, "keep_tokens": None, "token_mode": "prune", "context": None,
                "label": "4px/p2"}]
    conv, neuro = [], []
    for i, c in enumerate(c["label"] for c in configs):
        for j, bits in enumerate(("W8A8", "W4A4")):
            acc = 0.98 - 0.04 * i - 0.02 * j
            e = 2.3e7 / (1 + i) / (1 + j)
            conv.append(_coopt_point(c, bits, None, acc, e))
            neuro.append(_coopt_point(c, bits, "settle", acc - 0.01, 100 * e, 258))
            for T in (4, 16):
                neuro.append(_coopt_point(c, bits, T, acc * T / 20, 100 * e * T / 258, 258))

    def front(points, default):
        order = sorted(points, key=lambda p: (p["energy_pj"], -p["accuracy"]))
        fp, best = [], -1.0
        for p in order:
            if p["accuracy"] > best:
                fp.append(p)
                best = p["accuracy"]
        iso = [p for p in fp if p["accuracy"] >= default["accuracy"] - 0.005]
        cheapest = min(iso, key=lambda p: p["energy_pj"]) if iso else None
        top = max(fp, key=lambda p: (p["accuracy"], -p["energy_pj"]))

        def vs(p):
            return None if p is None else {**p, "energy_ratio": p["energy_pj"] / default["energy_pj"],
                                           "accuracy_delta": p["accuracy"] - default["accuracy"]}
        return {"front": fp, "n_points": len(points), "default": default, "iso_accuracy": vs(cheapest),
                "best_accuracy": vs(top)}

    return {"task": task, "configs": configs, "bits": ["W8A8", "W4A4"], "T_values": [4, 16], "snn_examples": 8,
            "eval_limit": 256, "steps": 300, "default": {"config": "default", "bits": "W8A8", "T": "settle"},
            "points": {"conventional": conv, "neuromorphic": neuro},
            "fronts": {"conventional": front(conv, conv[0]), "neuromorphic": front(neuro, neuro[0])},
            "measurements": [{"label": c["label"], "w_bits": 8, "a_bits": 8,
                              "workload": {"macs": 338816, "params": 66432, "weight_bits": 531456, "n_ops": 27},
                              "model": "default", "train_accuracy_test": 0.98, "wall_s": 9.0, "t_settle": 258,
                              "qann_accuracy": 0.98, "snn_agreement": 1.0} for c in configs],
            "wall_s": 120.0}


def compression_output(task: str = "medical-wdbc") -> dict:
    rows = []
    for target, unit, base in (("size", "bits", 6.5e5), ("conventional", "pJ", 3.3e7), ("neuromorphic", "pJ", 5.0e9)):
        pts = [("W8A8", "uniform", 1.0, 0.9737, 8.0, 8.0), ("W4A4", "uniform", 0.55, 0.9561, 4.0, 4.0),
               ("W2A2", "uniform", 0.3, 0.6404, 2.0, 2.0), ("mixed@W4A4", "mixed", 0.55, 0.9561, 4.0, 4.0),
               ("mixed@mid", "mixed", 0.75, 0.9649, 6.0, 4.0 if target == "size" else 6.0),
               ("mixed@W8A8", "mixed", 1.0, 0.9737, 8.0, 8.0)]
        for point, kind, f, acc, w, a in pts:
            row = {"task": task, "target": target, "point": point, "kind": kind, "budget": base * f,
                   "cost": base * f, "unit": unit, "accuracy": acc, "fp32_accuracy": 0.9737,
                   "avg_w_bits": w, "avg_a_bits": a}
            if target != "size":
                row["simulated"] = base * f * 0.99
            rows.append(row)
    prune = {"macs_before": 1192832, "macs_after": 780000, "mac_reduction": 1 - 780000 / 1192832,
             "params_before": 66432, "params_after": 45000,
             "removed": {"heads": 1, "mlp_channels": 0.5, "blocks": 0}, "fp32_accuracy": 0.98,
             "pruned_accuracy": 0.61, "recovered_accuracy": 0.972, "recovered_w8a8_accuracy": 0.97,
             "snn_equals_qann": True, "recovery_steps": 100, "recovery_lr": 0.001, "heads": 1,
             "mlp_channels": 0.5, "time_s": 30.0}
    comparison = []
    for r in rows:
        if r["kind"] != "mixed":
            continue
        spent = r.get("simulated", r["cost"])
        fits = [x for x in rows if x["target"] == r["target"] and x["kind"] == "uniform"
                and x.get("simulated", x["cost"]) <= r["budget"] * (1 + 1e-9)]
        best = max(fits, key=lambda x: (x["accuracy"], -x.get("simulated", x["cost"]))) if fits else None
        comparison.append({"task": task, "target": r["target"], "point": r["point"], "budget": r["budget"],
                           "mixed_cost": spent, "mixed_accuracy": r["accuracy"],
                           "within_budget": spent <= r["budget"] * (1 + 1e-9),
                           "uniform": best["point"] if best else None,
                           "uniform_cost": best.get("simulated", best["cost"]) if best else None,
                           "uniform_accuracy": best["accuracy"] if best else None,
                           "mixed_at_least_uniform": best is None or r["accuracy"] >= best["accuracy"]})
    return {"rows": rows, "mixed_worse_than_uniform": [], "budget_comparison": comparison,
            "mixed_below_uniform_at": [], "time_s": {task: 40.0, "prune": 30.0, "total": 70.0}, "prune": prune}
