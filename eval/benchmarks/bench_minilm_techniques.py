"""all-MiniLM-L6-v2 at low activation bits: what each outlier-aware technique contributes.

Every row is a QANN of the packaged all-MiniLM-L6-v2 (integer codes: `converters.convert` reproduces
it bit for bit, checked on `--snn` sentences for the rows marked so), compared with the FP32 model
by the cosine of the sentence embeddings (masked mean + L2 norm) on the held-out sentences: every
shipped sentence outside the text-minilm calib split (540).  Calibration: the calib split (60).
Recovery (QAT) trains on `load_train_sentences()` (996 sentences, disjoint from all 600 shipped).

Rows (for each W/A in --bits):
* baseline          one scale per site, MSE clipping search, fitted windows (the old default);
* clip=percentile / clip=max   the other clipping searches;
* smooth a=ALPHA    per-input-channel activation scales (snmfm.compress.smooth), MSE clipping;
* smooth + QAT      the best smoothing, then `snmfm.tasks.text.recover` (LSQ + cosine distillation);
* mixed             (`--mixed`) `snmfm.compress.mixed.plan_activation_bits` on the task's recipe
                    (text-minilm's smoothed model, calibrated on its calib batches, as `snmfm run`):
                    per-kind activation widths (qkv, qk, av, proj, fc1, fc2 of every block) probed
                    from uniform W8A4 and chosen by the measured knapsack whose graded-SNN energy on
                    neuromorphic-ideal (8 calib sentences) is at most uniform W8A4's; quality =
                    embedding cosine on --plan-sentences training sentences (never held-out ones);
* mixed + QAT       the plan, then `recover` with its overrides (--qat-steps).
With --mixed a second table gives each plan's energy per batch of --energy-sentences held-out
sentences: graded SNN on neuromorphic-ideal and loihi2, binary SNN on neuromorphic-ideal
(--binary-energy; minutes per plan on a CPU) and the QANN on the conventional accelerator.
`--save-qanns DIR` writes the QANNs for eval/benchmarks/bench_minilm_exact.py; `--plan
eval/benchmarks/bench_minilm_plan.json` reuses the plan of the README (found with 48 training
sentences and the task's first calib batch of 8) instead of probing again; `--from-qanns DIR`
only evaluates saved QANNs.  The README's rows:

    python -m eval.benchmarks.bench_minilm_techniques --alphas 0.9 --mixed --plan eval/benchmarks/bench_minilm_plan.json \
        --qat-steps 400 --qat-lr 2e-4 --qat-layers --save-qanns runs/minilm_qanns
    python -m eval.benchmarks.bench_minilm_techniques --from-qanns runs/minilm_qanns --binary-energy

    python -m eval.benchmarks.bench_minilm_techniques                      # all rows, 540 sentences
    python -m eval.benchmarks.bench_minilm_techniques --qat-steps 0 --quick
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from eval.benchmarks.bench_minilm import _cos, embed_batches, split, tokenize


def _row(name, w, a, c, **extra) -> dict:
    return {"technique": name, "w_bits": w, "a_bits": a, "mean": float(c.mean()), "min": float(c.min()),
            "n": int(c.numel()), **extra}


def _snn_exact(qann, batches) -> bool:
    from converters import convert
    snn = convert(qann)
    with torch.no_grad():
        return all(torch.equal(snn.run(ids, mask, record=False).output, qann(ids, mask)) for _, ids, mask in batches)


def run(n_eval: int | None = None, bits=((8, 8), (8, 4)), alphas=(0.5, 0.75, 0.9), methods=("percentile", "max"),
        qat_steps: int = 100, qat_lr: float = 1e-4, n_snn: int = 3, mixed: bool = False,
        plan_sentences: int = 64, energy_sentences: int = 8, binary_energy: bool = False,
        save_qanns: str | None = None, qat_layers: bool = False, plan_file: str | None = None,
        device: str | None = None, log=print) -> dict:
    from snmfm.compress import calibrate, quantize, smooth
    from snmfm.data.sentences import load_sentences
    from snmfm.models.hf import load_minilm
    from snmfm.tasks.text import recover
    t_start = time.perf_counter()
    model, tok = load_minilm()
    S = load_sentences()
    idx = split(len(S), n_eval)
    cal = tokenize(tok, [S[i] for i in idx["calib"]], 64)
    ev = tokenize(tok, [S[i] for i in idx["eval"]], 32)
    snn_b = tokenize(tok, [S[i] for i in idx["eval"][:n_snn]], n_snn) if n_snn else []
    data = [(ids, mask) for _, ids, mask in cal]
    ref = embed_batches(model, ev)
    rows = []

    def evaluate(name, qann, w, a, snn=False, **extra):
        c = _cos(embed_batches(qann, ev), ref)
        r = _row(name, w, a, c, **extra)
        if snn and snn_b:
            r["snn_equal"] = _snn_exact(qann, snn_b)
        rows.append(r)
        log(f"  {name:<24} W{w}A{a}: mean {r['mean']:.5f} min {r['min']:.5f}"
            + (f" SNN==QANN {r['snn_equal']}" if "snn_equal" in r else ""))
        return r

    calibrate(model, data)
    for w, a in bits:
        evaluate("baseline (mse)", quantize(model, w, a), w, a)
        for m in methods:
            evaluate(f"clip={m}", quantize(model, w, a, method=m), w, a)
    best = {}
    smoothed = {}
    for alpha in alphas:
        sm = smooth(model, data, alpha)
        calibrate(sm, data)
        smoothed[alpha] = sm
        for w, a in bits:
            r = evaluate(f"smooth a={alpha}", quantize(sm, w, a), w, a)
            if (w, a) not in best or r["mean"] > best[(w, a)][1]:
                best[(w, a)] = (alpha, r["mean"])
    for (w, a), (alpha, _) in best.items():  # exactness of the best smoothed QANN
        evaluate(f"smooth a={alpha} (SNN check)", quantize(smoothed[alpha], w, a), w, a, snn=True)
    saved, row_of = {}, {}   # QANNs by label (the energy table, --save-qanns) and their rows
    for (w, a), (alpha, _) in best.items():
        saved[f"W{w}A{a}"] = quantize(smoothed[alpha], w, a)
        row_of[f"W{w}A{a}"] = next(r for r in rows if r["technique"] == f"smooth a={alpha} (SNN check)"
                                   and (r["w_bits"], r["a_bits"]) == (w, a))

    def qat_row(name, model, w, a, overrides=None):
        t0, c0 = time.perf_counter(), time.process_time()
        q = recover(model, tok, w, a, steps=qat_steps, lr=qat_lr, device=device, log_every=25, overrides=overrides,
                    layers=qat_layers)
        r = evaluate(name, q, w, a, snn=True, qat_wall_s=time.perf_counter() - t0,
                     qat_cpu_s=time.process_time() - c0)
        return q, r
    if qat_steps:
        for w, a in bits:
            if a >= 8:
                continue
            alpha = best[(w, a)][0]
            label = f"W{w}A{a}-qat{qat_steps}"
            saved[label], row_of[label] = qat_row(f"smooth a={alpha} + QAT {qat_steps}", smoothed[alpha], w, a)
    out = {"n_eval": len(idx["eval"]), "n_calib": len(idx["calib"]), "rows": rows}
    if mixed:   # on the text-minilm task's own recipe (smoothed alpha 0.9, calibrated on its calib batches)
        from snmfm.tasks import get_task
        task = get_task("text-minilm")
        sm = task.build_model()
        calibrate(sm, [tuple(b) for b in task.batches("calib", 64)])
        alpha = getattr(sm, "snmfm_smooth", {}).get("alpha")
        saved["W8A4"] = quantize(sm, 8, 4)
        row_of["W8A4"] = evaluate("task recipe W8A4", saved["W8A4"], 8, 4)
        if plan_file:   # a plan found before (e.g. bench_minilm_plan.json): no probing
            from snmfm.compress.mixed import MixedPlan
            d = json.loads(Path(plan_file).read_text())
            plan = MixedPlan(**{k: d[k] for k in ("bits", "overrides", "base_bits", "quality", "cost", "budget",
                                                  "base_quality", "base_cost")})
        else:
            plan_b = tuple(next(iter(task.batches("calib", energy_sentences))))
            plan = mixed_plan(sm, tok, n_quality=plan_sentences, energy_batch=plan_b, log=log)
        q = quantize(sm, 8, 4, overrides=plan.overrides)
        row_of["mixed"] = evaluate(f"smooth a={alpha} + mixed (W8A4 energy)", q, 8, 4, snn=True, plan=plan.bits)
        saved["mixed"] = q
        if qat_steps:
            label = f"mixed-qat{qat_steps}"
            saved[label], row_of[label] = qat_row(f"smooth a={alpha} + mixed + QAT {qat_steps}", sm, 8, 4,
                                                  plan.overrides)
        eb = tokenize(tok, [S[i] for i in idx["eval"][:energy_sentences]], energy_sentences)[0][1:]
        plans = {k: v for k, v in saved.items() if k != "W8A8"}
        out["mixed"] = {"plan": plan.to_dict(), "energy_sentences": energy_sentences, "energy": []}
        for label, qn in plans.items():
            ov = plan.overrides if label.startswith("mixed") else {}
            e = energies(qn, eb, binary=binary_energy)
            r = row_of[label]
            out["mixed"]["energy"].append({"plan": label, "bits": bits_summary(ov), "mean": r["mean"],
                                           "min": r["min"], "energy_pj": e})
            log(f"  energy {label}: " + ", ".join(f"{k} {v:.4g} pJ" for k, v in e.items()))
    if save_qanns:
        from eval.benchmarks.bench_minilm_exact import save_qann
        Path(save_qanns).mkdir(parents=True, exist_ok=True)
        for label, qn in saved.items():
            save_qann(qn, Path(save_qanns) / f"{label}.qann.pt")
    out["wall_s"] = time.perf_counter() - t_start
    return out


def evaluate_saved(folder, n_eval: int | None = None, energy_sentences: int = 8, binary_energy: bool = False,
                   log=print) -> dict:
    """Rows and the energy table for the QANN files FOLDER/*.qann.pt (written by --save-qanns):
    held-out cosine to FP32 and energies, as `run` reports them, without re-planning or re-training."""
    from eval.benchmarks.bench_minilm_exact import load_qanns
    from snmfm.data.sentences import load_sentences
    from snmfm.models.hf import load_minilm
    qanns = load_qanns(folder)
    if not qanns:
        raise SystemExit(f"no QANN files (*.qann.pt) in {folder}")
    model, tok = load_minilm()
    S = load_sentences()
    idx = split(len(S), n_eval)
    ev = tokenize(tok, [S[i] for i in idx["eval"]], 32)
    ref = embed_batches(model, ev)
    eb = tokenize(tok, [S[i] for i in idx["eval"][:energy_sentences]], energy_sentences)[0][1:]
    rows, energy = [], []
    for label, q in qanns.items():
        info = getattr(q, "snmfm_quant", {})
        ov = info.get("overrides", {})
        c = _cos(embed_batches(q, ev), ref)
        r = _row(label, info.get("w_bits"), info.get("a_bits"), c)
        rows.append(r)
        e = energies(q, eb, binary=binary_energy)
        energy.append({"plan": label, "bits": bits_summary(ov, info.get("a_bits", 4)), "mean": r["mean"],
                       "min": r["min"], "energy_pj": e})
        log(f"  {label}: mean {r['mean']:.5f} min {r['min']:.5f}; " + ", ".join(f"{k} {v:.4g} pJ" for k, v in e.items()))
    return {"n_eval": len(idx["eval"]), "n_calib": len(idx["calib"]), "rows": rows,
            "mixed": {"energy_sentences": energy_sentences, "energy": energy}}


def plan_energy(qann, batch, accelerator: str = "neuromorphic-ideal", coding: str = "graded") -> float:
    """Energy (pJ) of `qann` on `accelerator` for the sentences of `batch` (input_ids, mask): the SNN
    converted with `coding` and run until quiet, its ActivityTrace simulated (the path of eval.measure;
    a dense accelerator gets the Workload without a trace)."""
    from converters import convert
    from neuro_hw import extract_workload, needs_trace, simulate
    wl = extract_workload(qann, *tuple(x[:1] for x in batch))
    trace = convert(qann, coding=coding).run(*batch).trace if needs_trace(accelerator) else None
    return float(simulate(wl, trace, accelerator).energy_pj)


def mixed_plan(model, tok, n_quality: int = 64, energy_batch=None, options=(2, 3, 5, 6, 8),
               groups: str = "kind", accelerator: str = "neuromorphic-ideal", coding: str = "graded",
               log=print):
    """`snmfm.compress.mixed.plan_activation_bits` on the calibrated smoothed MiniLM: base W8A4,
    quality = mean embedding cosine to FP32 on the first `n_quality` training sentences (never the
    held-out ones), cost = the graded SNN's energy on `accelerator` for `energy_batch` (calib
    sentences), budget = uniform W8A4's cost on the same sentences."""
    from snmfm.compress.mixed import plan_activation_bits
    from snmfm.compress.qat import freeze, prepare_qat
    from snmfm.data.sentences import load_train_sentences
    qb = tokenize(tok, load_train_sentences(n_quality), 64)
    ref = embed_batches(model, qb)
    scales: dict = {}

    def make(ov):
        return freeze(prepare_qat(model, 8, 4, overrides=ov, scales=scales))

    def quality(ov):
        return float(_cos(embed_batches(make(ov), qb), ref).mean())

    def cost(ov):
        return plan_energy(make(ov), energy_batch, accelerator, coding)
    t0 = time.perf_counter()
    plan = plan_activation_bits(model, quality, cost, base_bits=4, options=options, groups=groups, log=log)
    log(f"  plan {plan.summary()}: quality {plan.quality:.5f}, {accelerator} {coding} "
        f"{plan.cost:.4g} pJ <= {plan.budget:.4g} ({time.perf_counter() - t0:.0f} s)")
    return plan


def energies(qann, batch, binary: bool = True) -> dict:
    """{label: pJ} of one QANN: graded SNN on neuromorphic-ideal and loihi2, binary SNN on
    neuromorphic-ideal (`binary`: slow on a CPU at 8-bit sites), the QANN on conventional."""
    out = {"neuromorphic-ideal graded": plan_energy(qann, batch, "neuromorphic-ideal", "graded"),
           "loihi2 graded": plan_energy(qann, batch, "loihi2", "graded")}
    if binary:
        out["neuromorphic-ideal binary"] = plan_energy(qann, batch, "neuromorphic-ideal", "binary")
    out["conventional"] = plan_energy(qann, batch, "conventional")
    return out


def bits_summary(overrides: dict, base: int = 4) -> str:
    """'qkv A6 x6, fc2 A6 x6, others A4' from a plan's overrides."""
    from collections import Counter
    c = Counter((n.rpartition(".")[2], o["a_bits"]) for n, o in overrides.items() if "a_bits" in o)
    parts = [f"{k} A{b} x{n}" for (k, b), n in sorted(c.items())]
    return ", ".join(parts + [f"others A{base}"]) if parts else f"uniform A{base}"


def format_table(res: dict) -> str:
    lines = [f"all-MiniLM-L6-v2, QANN vs FP32 sentence-embedding cosine on {res['n_eval']} held-out sentences "
             f"(calibration {res['n_calib']})", "",
             "| technique | W/A | mean cosine | min cosine | SNN == QANN |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        snn = {True: "yes", False: "NO"}.get(r.get("snn_equal"), "")
        lines.append(f"| {r['technique']} | W{r['w_bits']}A{r['a_bits']} | {r['mean']:.5f} | {r['min']:.5f} | {snn} |")
    if "mixed" in res:
        mx = res["mixed"]
        keys = list(mx["energy"][0]["energy_pj"]) if mx["energy"] else []
        lines += ["", f"Energy per batch of {mx['energy_sentences']} held-out sentences (pJ); plan "
                  f"budget: uniform W8A4's graded energy on neuromorphic-ideal", "",
                  "| plan | bits per site | mean cosine | min cosine | " + " | ".join(keys) + " |",
                  "|---|---|---|---|" + "---|" * len(keys)]
        for e in mx["energy"]:
            lines.append(f"| {e['plan']} | {e['bits']} | {e['mean']:.5f} | {e['min']:.5f} | "
                         + " | ".join(f"{e['energy_pj'][k]:.4g}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m eval.benchmarks.bench_minilm_techniques",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--n-eval", type=int, default=None, help="first n held-out sentences (default all 540)")
    ap.add_argument("--alphas", default="0.5,0.75,0.9")
    ap.add_argument("--qat-steps", type=int, default=100)
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--snn", type=int, default=3, help="sentences of the SNN == QANN check")
    ap.add_argument("--mixed", action="store_true", help="also the energy-matched mixed plan (slow: SNN traces)")
    ap.add_argument("--plan-sentences", type=int, default=64, help="training sentences the planner scores on")
    ap.add_argument("--energy-sentences", type=int, default=8, help="sentences of the energy measurements")
    ap.add_argument("--binary-energy", action="store_true", help="also the binary SNN's energy (slow on a CPU)")
    ap.add_argument("--save-qanns", metavar="DIR", help="write the QANNs (for bench_minilm_exact --qanns DIR)")
    ap.add_argument("--from-qanns", metavar="DIR", help="only evaluate the QANN files DIR/*.qann.pt (cosine, energy)")
    ap.add_argument("--qat-layers", action="store_true", help="QAT distils every block's token states too")
    ap.add_argument("--plan", metavar="FILE", help="use this mixed plan (JSON of MixedPlan.to_dict, e.g. "
                    "eval/benchmarks/bench_minilm_plan.json) instead of planning")
    ap.add_argument("--quick", action="store_true", help="60 sentences, alpha 0.75 only, no clip rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="where the QAT fine-tuning runs (e.g. cuda)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = dict(n_eval=a.n_eval, alphas=tuple(float(x) for x in a.alphas.split(",")), qat_steps=a.qat_steps,
              qat_lr=a.qat_lr, n_snn=a.snn, mixed=a.mixed, plan_sentences=a.plan_sentences,
              energy_sentences=a.energy_sentences, binary_energy=a.binary_energy, save_qanns=a.save_qanns,
              qat_layers=a.qat_layers, plan_file=a.plan, device=a.device)
    if a.quick:
        kw.update(n_eval=60, alphas=(0.75,), methods=())
    if a.from_qanns:
        res = evaluate_saved(a.from_qanns, a.n_eval, a.energy_sentences, a.binary_energy)
    else:
        res = run(**kw)
    print(format_table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
