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
* mixed             (`--mixed`) the plan of `plan_bits` over a_bits {4,5,6,8} whose neuromorphic
                    energy (cost table from `eval.hw_costs.cost_table`, SNN traces on --mixed-sentences)
                    is at most uniform W8A4's, on the smoothed model.

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
        mixed_sentences: int = 2, device: str | None = None, log=print) -> dict:
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
    if qat_steps:
        for w, a in bits:
            if a >= 8:
                continue
            alpha = best[(w, a)][0]
            t0, c0 = time.perf_counter(), time.process_time()
            q = recover(smoothed[alpha], tok, w, a, steps=qat_steps, lr=qat_lr, device=device, log_every=25)
            evaluate(f"smooth a={alpha} + QAT {qat_steps}", q, w, a, snn=True,
                     qat_wall_s=time.perf_counter() - t0, qat_cpu_s=time.process_time() - c0)
    out = {"n_eval": len(idx["eval"]), "n_calib": len(idx["calib"]), "rows": rows}
    if mixed:
        out["mixed"] = mixed_plan(smoothed[best[(8, 4)][0]], tok, [S[i] for i in idx["calib"][:mixed_sentences]],
                                  data, log)
        plan = out["mixed"]["plan"]
        evaluate("smooth + mixed (W8A4 energy)", quantize(smoothed[best[(8, 4)][0]], 8, 4, overrides=plan),
                 8, 4, snn=True, plan=plan)
    out["wall_s"] = time.perf_counter() - t_start
    return out


def mixed_plan(model, tok, sentences: list[str], data, log=print) -> dict:
    """plan_bits over a_bits {4, 5, 6, 8} (weights 8) under the neuromorphic energy of uniform W8A4."""
    from snmfm.compress import plan_bits, sensitivity

    from eval.hw_costs import cost_table
    enc = tok(sentences, padding=True, return_tensors="pt")
    inputs = (enc["input_ids"], enc["attention_mask"])
    t0 = time.perf_counter()
    costs = cost_table(model, inputs, "neuromorphic", choices=(8,), a_choices=(4, 5, 6, 8), calib=data)
    log(f"  neuromorphic cost table in {time.perf_counter() - t0:.0f} s")
    def one_minus_cos(out, ref, batch):  # what the table reports: embedding cosine
        return float((1 - torch.nn.functional.cosine_similarity(out.double(), ref.double(), dim=-1)).mean())
    sens = sensitivity(model, data[:1], bits=(4, 5, 6, 8), levels=("layer",), metric=one_minus_cos,
                       calibrated=True)
    plan = plan_bits(model, "w8a4", costs, "neuromorphic", sensitivity=sens, choices=(8,), a_choices=(4, 5, 6, 8))
    return {"plan": plan.layers, "cost_pj": plan.cost, "budget_pj": plan.budget, "costs": costs}


def format_table(res: dict) -> str:
    lines = [f"all-MiniLM-L6-v2, QANN vs FP32 sentence-embedding cosine on {res['n_eval']} held-out sentences "
             f"(calibration {res['n_calib']})", "",
             "| technique | W/A | mean cosine | min cosine | SNN == QANN |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        snn = {True: "yes", False: "NO"}.get(r.get("snn_equal"), "")
        lines.append(f"| {r['technique']} | W{r['w_bits']}A{r['a_bits']} | {r['mean']:.5f} | {r['min']:.5f} | {snn} |")
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
    ap.add_argument("--quick", action="store_true", help="60 sentences, alpha 0.75 only, no clip rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="where the QAT fine-tuning runs (e.g. cuda)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = dict(n_eval=a.n_eval, alphas=tuple(float(x) for x in a.alphas.split(",")), qat_steps=a.qat_steps,
              qat_lr=a.qat_lr, n_snn=a.snn, mixed=a.mixed, device=a.device)
    if a.quick:
        kw.update(n_eval=60, alphas=(0.75,), methods=())
    res = run(**kw)
    print(format_table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
