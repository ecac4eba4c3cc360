"""all-MiniLM-L6-v2 through the pipeline: how closely each stage follows the one before it.

1. FP32.  The snmfm TextEncoder mapped from the packaged model (`snmfm.models.hf.load_minilm`)
   against sentence-transformers' own pipeline on the same files (Transformer -> mean Pooling ->
   Normalize): cosine of the sentence embeddings, max |difference|.
2. QANN.  `calibrate` on the text-minilm task's calibration split (60 shipped sentences, as the
   main job: one batch), then `quantize(model, w_bits, a_bits)`: cosine to FP32 on the held-out
   sentences, mean and min, over all of them and over the task's test split alone (the main
   job's number).  Also with the two's-complement windows of before `fit_window`
   (`window="symmetric"`), and `wide`: a mixed plan in which the inputs of the named layers
   (default fc1, fc2, qkv: the LayerNorm and GELU outputs) get `wide_bits`.
3. SNN.  `converters.convert(qann).run(input_ids, attention_mask)` until quiet on the first `n_snn`
   held-out sentences, in batches of similar token length: cosine to the QANN, max |SNN - QANN|,
   T_settle per batch, cosine of the step-t output to the QANN for t on a grid, time and peak memory.

Sentences (`snmfm.data.sentences`, 600) are split as the task splits them
(`snmfm.tasks.text.SPLIT`): calibration = the calib split (60); held out = the other 540 (the
pretrained model is trained on none of them), of which the test split is 180.  `n_eval` takes the
first n held-out sentences (in file order), `n_calib` the first n of the calib split.

    python -m eval.benchmarks.bench_minilm                    # 540 held-out sentences, SNN on 24
    python -m eval.benchmarks.bench_minilm --quick            # a minute: what tests/test_hf.py runs
    python -m eval.benchmarks.bench_minilm --json out.json

For a GPU machine that lacks the packaged model (or whose transfer limit is below its 90 MB),
`--export DIR` writes the mapped FP32 model with only the vocabulary rows the shipped sentences
use, plus the tokenised sentences (~48 MB); `--from-export DIR --device cuda` runs stages 2 and 3
from that file.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from eval.benchmarks.bench_snn import PeakMemory

T_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1024)
WIDE_SITES = ("fc1", "fc2", "qkv")


# ---- inputs -----------------------------------------------------------------------------------
def tokenize(tokenizer, sentences: list[str], batch_size: int, max_length: int | None = 256) -> list:
    """[(indices, input_ids, attention_mask)] in batches of similar token length."""
    from snmfm.models.hf import length_batches
    return list(length_batches(tokenizer, sentences, batch_size, max_length))


def embed_batches(model, batches: list, normalize: bool = True, device: str = "cpu") -> torch.Tensor:
    """Sentence embeddings [N, d] (float64) of tokenised batches, in sentence order."""
    n = sum(len(idx) for idx, _, _ in batches)
    out = [None] * n
    with torch.no_grad():
        for idx, ids, mask in batches:
            y = model(ids.to(device), mask.to(device)).to(torch.float64)
            y = F.normalize(y, dim=-1) if normalize else y
            for j, i in enumerate(idx):
                out[i] = y[j].cpu()
    return torch.stack(out)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.to(torch.float64), b.to(torch.float64), dim=-1)


def _stats(c: torch.Tensor) -> dict:
    return {"min": float(c.min()), "mean": float(c.mean()), "n": int(c.numel())}


def split(n_sentences: int, n_eval: int | None = None, n_calib: int | None = None) -> dict[str, list[int]]:
    """Sentence indices: "calib" (the task's calib split), "eval" (held out: every other sentence,
    in file order) and "test" (the held-out ones in the task's test split)."""
    from snmfm.data.splits import split_indices
    from snmfm.tasks.text import SPLIT
    parts = {k: v.tolist() for k, v in split_indices(n_sentences, SPLIT).items()}
    held = sorted(parts["train"] + parts["test"])
    for name, n, have in (("n_eval", n_eval, len(held)), ("n_calib", n_calib, len(parts["calib"]))):
        if n is not None and not 1 <= n <= have:
            raise ValueError(f"{name} = {n}: the split has {have} sentences")
    ev = held[:n_eval] if n_eval else held
    test = set(parts["test"])
    return {"calib": parts["calib"][:n_calib] if n_calib else parts["calib"], "eval": ev,
            "test": [i for i in ev if i in test]}


# ---- stage 1: FP32 mapping vs sentence-transformers --------------------------------------------
def fp32_vs_sentence_transformers(model, tokenizer, sentences: list[str], batch_size: int = 32) -> dict:
    from sentence_transformers import SentenceTransformer

    from snmfm.models.hf import embed, minilm_path
    st = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    t0 = time.perf_counter()
    ref = st.encode(sentences, batch_size=batch_size, convert_to_tensor=True)
    t_st = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = embed(model, tokenizer, sentences, batch_size)
    t_ours = time.perf_counter() - t0
    return {"cos": _stats(_cos(ours, ref)), "max_abs": float((ours - ref).abs().max()),
            "st_s": t_st, "snmfm_s": t_ours}


# ---- stage 2: QANN vs FP32 ----------------------------------------------------------------------
def make_qann(model, calib_batches: list, w_bits: int, a_bits: int, method: str = "mse",
              overrides: dict | None = None, window: str = "fit"):
    from snmfm.compress import calibrate, quantize
    calibrate(model, [(ids, mask) for _, ids, mask in calib_batches])
    return quantize(model, w_bits, a_bits, method=method, overrides=overrides, window=window)


def wide_overrides(model, sites=WIDE_SITES, bits: int = 10) -> dict:
    from snmfm.compress.quant import quant_layers
    return {n: {"a_bits": bits} for n in quant_layers(model) if n.rpartition(".")[2] in sites}


def qann_vs_fp32(fp32, qann, eval_batches: list, device: str = "cpu", test: list[int] | None = None,
                 ref: torch.Tensor | None = None) -> dict:
    """Cosine of QANN to FP32 sentence embeddings: over every sentence of `eval_batches` and over the
    positions `test` among them; `ref` reuses FP32 embeddings computed before."""
    t0 = time.perf_counter()
    ef = embed_batches(fp32.to(device), eval_batches, device=device) if ref is None else ref
    t_fp = time.perf_counter() - t0
    t0 = time.perf_counter()
    eq = embed_batches(qann.to(device), eval_batches, device=device)
    t_q = time.perf_counter() - t0
    fp32.cpu()
    c = _cos(eq, ef)
    out = {"cos": _stats(c), "qann_s": t_q, "fp32_s": t_fp}
    if test:
        out["cos_test"] = _stats(c[torch.tensor(test)])
    return out


# ---- stage 3: SNN vs QANN -----------------------------------------------------------------------
def snn_vs_qann(qann, batches: list, t_grid=T_GRID, chunk: int | None = None, device: str = "cpu",
                max_T: int = 4096, log=None) -> dict:
    """Run the converted QANN until quiet on each batch; compare with the QANN."""
    from converters import convert
    qann = qann.to(device)
    snn = convert(qann)
    record = device == "cpu"  # the activity trace is CPU-only (TraceRecorder calls .numpy())
    n = sum(len(idx) for idx, _, _ in batches)
    final_cos, grid_cos = torch.empty(n, dtype=torch.float64), torch.empty(len(t_grid), n, dtype=torch.float64)
    rows, max_abs, exact = [], 0.0, True
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    wall = cpu = 0.0
    with PeakMemory() as mem:
        for idx, ids, mask in batches:
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad():
                yq = qann(ids, mask)
            seen: dict[int, torch.Tensor] = {}

            def at_steps(t0, y, yq=yq, seen=seen):
                for i in range(y.shape[0]):
                    if t0 + i + 1 in t_grid:
                        seen[t0 + i + 1] = _cos(y[i], yq).cpu()

            c0, w0 = time.process_time(), time.perf_counter()
            r = snn.run(ids, mask, chunk=chunk if chunk else (1 if not record else None),
                        record=record, step_fn=at_steps, max_T=max_T)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            c = _cos(r.output, yq).cpu()
            idx_t = torch.tensor(idx)
            final_cos[idx_t] = c
            for g, t in enumerate(t_grid):
                grid_cos[g, idx_t] = seen.get(t, c)  # past the last step run the output is final
            diff = float((r.output - yq).abs().max())
            max_abs = max(max_abs, diff)
            exact &= bool(torch.equal(r.output, yq))
            # without a trace (GPU), chunk=1 makes the first quiet step exact: T_settle = steps - 1
            t_settle = r.t_settle if record else r.steps - 1
            rows.append({"batch": len(idx), "seq_len": int(ids.shape[1]), "steps": r.steps,
                         "t_settle": t_settle, "max_abs": diff})
            if log:
                log(f"  batch {len(rows)}/{len(batches)}: {rows[-1]}, {wall:.0f} s wall so far")
    out = {"cos": _stats(final_cos), "max_abs": max_abs, "exact": exact, "batches": rows,
           "t_settle_max": max(r["t_settle"] for r in rows), "wall_s": wall, "cpu_s": cpu,
           "tokens": sum(r["batch"] * r["seq_len"] for r in rows),
           "grid": {t: _stats(grid_cos[g]) for g, t in enumerate(t_grid)},
           "peak_mb": mem.peak_mb, "device": device}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    qann.cpu()
    return out


# ---- the compact export (GPU machines without the package) -------------------------------------
def export_compact(path, model, tokenizer, sentences: list[str], batch_size: int) -> Path:
    """Mapped FP32 model with only the vocabulary rows `sentences` use + their tokenised batches."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    enc = tokenizer(sentences, truncation=True, max_length=256)["input_ids"]
    used = sorted({i for ids in enc for i in ids} | {tokenizer.pad_token_id})
    remap = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    remap[torch.tensor(used)] = torch.arange(len(used))
    sd = {k: v for k, v in model.state_dict().items()}
    sd["embed.tok.weight"] = sd["embed.tok.weight"][torch.tensor(used)].clone()
    cfg = model.config.replace(vocab_size=len(used)).to_dict()
    batches = [(idx, remap[ids], mask) for idx, ids, mask in tokenize(tokenizer, sentences, batch_size)]
    torch.save({"config": cfg, "state_dict": sd, "sentences": sentences, "batch_size": batch_size,
                "batches": batches, "pad_id": int(remap[tokenizer.pad_token_id])}, path / "minilm_compact.pt")
    return path / "minilm_compact.pt"


def load_compact(path):
    from snmfm.models import model_from_config
    d = torch.load(Path(path) / "minilm_compact.pt", weights_only=False)
    model = model_from_config(d["config"])
    model.load_state_dict(d["state_dict"])
    return model.eval(), d


def rebatch(batches: list, keep: set[int], batch_size: int, pad_id: int = 0) -> list:
    """The sentences in `keep`, re-indexed 0..len(keep)-1 in order, in new batches of similar
    token length (right-padded with `pad_id`)."""
    order = {i: k for k, i in enumerate(sorted(keep))}
    rows = []
    for idx, ids, mask in batches:
        for j, i in enumerate(idx):
            if i in keep:
                n = int(mask[j].sum())
                rows.append((n, order[i], ids[j, :n]))
    rows.sort()
    out = []
    for s in range(0, len(rows), batch_size):
        part = rows[s:s + batch_size]
        L = max(n for n, _, _ in part)
        ids = torch.full((len(part), L), pad_id, dtype=torch.long)
        mask = torch.zeros((len(part), L), dtype=torch.long)
        for r, (n, _, row) in enumerate(part):
            ids[r, :n], mask[r, :n] = row, 1
        out.append(([k for _, k, _ in part], ids, mask))
    return out


# ---- the whole benchmark ------------------------------------------------------------------------
def run(n_eval: int | None = None, n_calib: int | None = None, n_snn: int = 24, w_bits: int = 8,
        a_bits: int = 8, snn_a_bits: int | None = None, method: str = "mse", window: str = "fit",
        compare_symmetric: bool = True, wide: bool = True, wide_bits: int = 10, batch_size: int = 32,
        calib_batch: int = 64, snn_batch: int = 8, chunk: int | None = None, device: str = "cpu",
        skip_fp32: bool = False, from_export: str | None = None, t_grid=T_GRID, log=print) -> dict:
    """The three stages; n_eval / n_calib None = the whole held-out set / calib split."""
    from snmfm.compress import quantize
    from snmfm.data.sentences import load_sentences
    if from_export:
        model, d = load_compact(from_export)
        sentences, all_batches, pad = d["sentences"], d["batches"], d.get("pad_id", 0)
    else:
        from snmfm.models.hf import load_minilm
        model, tok = load_minilm()
        sentences = load_sentences()
    idx = split(len(sentences), n_eval, n_calib)
    ev, n_snn = idx["eval"], min(n_snn, len(idx["eval"]))
    in_test = set(idx["test"])
    test_pos = [k for k, i in enumerate(ev) if i in in_test]
    res = {"n_eval": len(ev), "n_test": len(test_pos), "n_calib": len(idx["calib"]), "n_snn": n_snn,
           "w_bits": w_bits, "a_bits": a_bits, "method": method, "window": window, "device": device,
           "torch": torch.__version__}
    if from_export:
        ev_b = rebatch(all_batches, set(ev), batch_size, pad)
        cal_b = rebatch(all_batches, set(idx["calib"]), calib_batch, pad)
        snn_b = rebatch(all_batches, set(ev[:n_snn]), snn_batch, pad)
    else:
        evs = [sentences[i] for i in ev]
        if not skip_fp32:
            log("stage 1: FP32 mapping vs sentence-transformers ...")
            res["fp32_vs_st"] = fp32_vs_sentence_transformers(model, tok, evs, batch_size)
            log(f"  {res['fp32_vs_st']}")
        ev_b = tokenize(tok, evs, batch_size)
        cal_b = tokenize(tok, [sentences[i] for i in idx["calib"]], calib_batch)
        snn_b = tokenize(tok, evs[:n_snn], snn_batch)
    log(f"stage 2: calibrate on {res['n_calib']}, quantize W{w_bits}A{a_bits} ({method}, {window} windows) ...")
    t0 = time.perf_counter()
    qann = make_qann(model, cal_b, w_bits, a_bits, method, window=window)
    res["quantize_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = embed_batches(model.to(device), ev_b, device=device)
    fp32_s = time.perf_counter() - t0
    res["qann_vs_fp32"] = {**qann_vs_fp32(model, qann, ev_b, device, test_pos, ref), "fp32_s": fp32_s}
    log(f"  {res['qann_vs_fp32']}")
    if compare_symmetric and window != "symmetric":
        qs = quantize(model, w_bits, a_bits, method=method, window="symmetric")
        res["qann_symmetric_vs_fp32"] = qann_vs_fp32(model, qs, ev_b, device, test_pos, ref)
        log(f"  symmetric windows: {res['qann_symmetric_vs_fp32']}")
        del qs
    if wide:
        ov = wide_overrides(model, WIDE_SITES, wide_bits)
        qw = quantize(model, w_bits, a_bits, method=method, overrides=ov, window=window)
        res["qann_wide_vs_fp32"] = {"sites": list(WIDE_SITES), "bits": wide_bits,
                                    **qann_vs_fp32(model, qw, ev_b, device, test_pos, ref)}
        log(f"  {res['qann_wide_vs_fp32']}")
        del qw
    snn_qann = qann
    if snn_a_bits is not None and snn_a_bits != a_bits:
        snn_qann = quantize(model, w_bits, snn_a_bits, method=method, window=window)
    res["snn_a_bits"] = snn_a_bits or a_bits
    if n_snn:
        log(f"stage 3: SNN vs QANN on {n_snn} sentences ({len(snn_b)} batches) ...")
        res["snn_vs_qann"] = snn_vs_qann(snn_qann, snn_b, t_grid, chunk, device, log=log)
    return res


def format_tables(res: dict) -> str:
    title = (f"all-MiniLM-L6-v2 fidelity (device {res['device']}, torch {res['torch']}, "
             f"{res['n_eval']} held-out sentences ({res['n_test']} in the test split), "
             f"calibration on {res['n_calib']})")
    lines = [title, "",
             "| comparison | sentences | cos min | cos mean | test split min / mean | max abs diff | time |",
             "|---|---|---|---|---|---|---|"]
    if "fp32_vs_st" in res:
        r = res["fp32_vs_st"]
        lines.append(f"| FP32 snmfm vs sentence-transformers | {r['cos']['n']} | {r['cos']['min']:.7f} | "
                     f"{r['cos']['mean']:.7f} | | {r['max_abs']:.2e} | {r['snmfm_s']:.1f} s (ST {r['st_s']:.1f} s) |")

    def qrow(label: str, r: dict) -> str:
        t = r.get("cos_test")
        test = f"{t['min']:.5f} / {t['mean']:.5f}" if t else ""
        fp = f" (FP32 {r['fp32_s']:.1f} s)" if r["fp32_s"] > 0.01 else ""
        return (f"| {label} vs FP32 | {r['cos']['n']} | {r['cos']['min']:.5f} | {r['cos']['mean']:.5f} | "
                f"{test} | | {r['qann_s']:.1f} s{fp} |")
    wa = f"W{res['w_bits']}A{res['a_bits']}"
    lines.append(qrow(f"QANN {wa} ({res['method']}, {res['window']} windows)", res["qann_vs_fp32"]))
    if "qann_symmetric_vs_fp32" in res:
        lines.append(qrow(f"QANN {wa} ({res['method']}, symmetric windows)", res["qann_symmetric_vs_fp32"]))
    if "qann_wide_vs_fp32" in res:
        r = res["qann_wide_vs_fp32"]
        lines.append(qrow(f"QANN {wa}, A{r['bits']} at {'/'.join(r['sites'])} inputs", r))
    if "snn_vs_qann" in res:
        r = res["snn_vs_qann"]
        mem = f", peak +{r['peak_mb']:.0f} MB RSS" if r.get("peak_mb") is not None else ""
        if "cuda_peak_mb" in r:
            mem += f", {r['cuda_peak_mb']:.0f} MB GPU"
        lines.append(f"| SNN vs QANN W{res['w_bits']}A{res['snn_a_bits']} (until quiet) | {r['cos']['n']} | "
                     f"{r['cos']['min']:.9f} | {r['cos']['mean']:.9f} | | {r['max_abs']:.1e} "
                     f"(bit-equal: {r['exact']}) | {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU{mem} |")
        lines += ["", f"SNN batches: T_settle max {r['t_settle_max']}, {r['tokens']} tokens in all", "",
                  "| batch | seq len | steps run | T_settle | max abs diff |", "|---|---|---|---|---|"]
        lines += [f"| {b['batch']} | {b['seq_len']} | {b['steps']} | {b['t_settle']} | {b['max_abs']:.1e} |"
                  for b in r["batches"]]
        lines += ["", "| step t | cos(SNN_t, QANN) min | mean |", "|---|---|---|"]
        lines += [f"| {t} | {g['min']:.6f} | {g['mean']:.6f} |" for t, g in r["grid"].items()]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m eval.benchmarks.bench_minilm", description=__doc__.split("\n")[0])
    ap.add_argument("--n-eval", type=int, default=None, help="first n held-out sentences (default all 540)")
    ap.add_argument("--n-calib", type=int, default=None, help="first n of the calib split (default all 60)")
    ap.add_argument("--n-snn", type=int, default=24)
    ap.add_argument("--w-bits", type=int, default=8)
    ap.add_argument("--a-bits", type=int, default=8)
    ap.add_argument("--snn-a-bits", type=int, default=None, help="activation bits of the QANN the SNN runs")
    ap.add_argument("--method", default="mse", choices=("mse", "percentile", "max"))
    ap.add_argument("--window", default="fit", choices=("fit", "symmetric"), help="integer windows (quantize)")
    ap.add_argument("--no-symmetric", action="store_true", help="skip the comparison with symmetric windows")
    ap.add_argument("--no-wide", action="store_true", help="skip the mixed plan with wide fc1/fc2/qkv inputs")
    ap.add_argument("--wide-bits", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--snn-batch", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=None, help="SNN time steps per batched chunk")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-fp32", action="store_true")
    ap.add_argument("--quick", action="store_true", help="24 eval sentences, SNN at A4 on 4")
    ap.add_argument("--export", metavar="DIR", help="write the compact model + tokenised sentences and exit")
    ap.add_argument("--from-export", metavar="DIR")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine 2 threads ran the SNN 4-20x slower)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.export:
        from snmfm.data.sentences import load_sentences
        from snmfm.models.hf import load_minilm
        model, tok = load_minilm()
        print(export_compact(a.export, model, tok, load_sentences(), a.batch_size))
        return {}
    kw = dict(n_eval=a.n_eval, n_calib=a.n_calib, n_snn=a.n_snn, w_bits=a.w_bits, a_bits=a.a_bits,
              snn_a_bits=a.snn_a_bits, method=a.method, window=a.window,
              compare_symmetric=not a.no_symmetric, wide=not a.no_wide, wide_bits=a.wide_bits,
              batch_size=a.batch_size, snn_batch=a.snn_batch, chunk=a.chunk, device=a.device,
              skip_fp32=a.skip_fp32, from_export=a.from_export)
    if a.quick:
        kw.update(n_eval=24, n_snn=4, snn_a_bits=4, wide=False, compare_symmetric=False,
                  method="percentile", snn_batch=4)
    res = run(**kw)
    print(format_tables(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
