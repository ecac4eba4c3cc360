"""all-MiniLM-L6-v2: SNN == QANN bit for bit on every held-out sentence, per coding and bit plan.

For each QANN (W8A8 and W8A4 of the task's recipe -- smoothed, calibrated on the calib split --
plus any QANN files given, e.g. the mixed plan and its QAT written by bench_minilm_techniques
``--save-qanns DIR``) and each coding, the converted SNN runs until quiet on every held-out
sentence (540) in batches of similar length; a sentence counts as exact when its output row is
bitwise equal to the QANN's (`torch.equal`).

    python -m eval.benchmarks.bench_minilm_exact                          # graded + sigma-delta, CPU
    python -m eval.benchmarks.bench_minilm_exact --qanns DIR              # also DIR/*.qann.pt
    python -m eval.benchmarks.bench_minilm_exact --export DIR             # compact files for a GPU box
    python -m eval.benchmarks.bench_minilm_exact --from-export DIR --codings binary --device cuda

Graded and sigma-delta settle in one step (about a second per 32 sentences on one CPU core);
binary runs until quiet (T_settle 20-50 at A4, 250-450 at A8: minutes per 32 sentences on a CPU),
hence the export: `--export DIR` writes every QANN (integer weights as int8, the embedding rows
the shipped sentences use) and the tokenised held-out batches into DIR (~12 MB per
QANN; no transformers needed to read it), and `--from-export DIR` runs from there on any device.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from eval.benchmarks.bench_minilm import split, tokenize

CODINGS = ("graded", "sigma-delta")
FORMAT = "snmfm.minilm_exact/1"


# ---- the QANNs --------------------------------------------------------------------------------
def recipe_qanns(bits=((8, 8), (8, 4))) -> tuple[dict, object]:
    """{label: QANN} of the text-minilm recipe (smoothed, calibrated on the calib split), tokenizer."""
    from snmfm.compress import calibrate, quantize
    from snmfm.models.hf import load_minilm
    from snmfm.tasks import get_task
    if not bits:
        return {}, load_minilm()[1]
    task = get_task("text-minilm")
    model = task.build_model()
    calibrate(model, [tuple(b) for b in task.batches("calib", 64)])
    return {f"W{w}A{a}": quantize(model, w, a) for w, a in bits}, load_minilm()[1]


def save_qann(qann, path) -> Path:
    """One QANN as a whole module (torch.save; the repository's classes load it)."""
    path = Path(path)
    torch.save(qann, path)
    return path


def load_qanns(folder) -> dict:
    return {p.name.removesuffix(".qann.pt"): torch.load(p, weights_only=False)
            for p in sorted(Path(folder).glob("*.qann.pt"))}


# ---- the compact export -------------------------------------------------------------------------
def _pack(t: torch.Tensor):
    """A float tensor as the narrowest integer type that holds it exactly, else as it is."""
    if t.is_floating_point() and t.numel() and bool(torch.isfinite(t).all()) and bool((t == t.round()).all()):
        m = float(t.abs().max())
        for dt, lim in ((torch.int8, 127), (torch.int16, 32767)):
            if m <= lim:
                return {"int": t.to(dt), "dtype": str(t.dtype).removeprefix("torch.")}
    return t


def _unpack(v):
    if isinstance(v, dict) and "row_scale" in v:
        return v["rows"].to(torch.float64) * v["row_scale"][:, None]
    return v["int"].to(getattr(torch, v["dtype"])) if isinstance(v, dict) else v


def unpack_entry(e: dict):
    """The QANN of one packed entry (skeleton, packed state, embedding rows): int8 codes back to
    float64, and each QuantLinear's float weight as w_int * w_scale, as `quantize` leaves it."""
    from snmfm.compress.quant import quant_layers
    from snmfm.nn import QuantLinear
    q = e["skeleton"]
    state = {k: _unpack(v) for k, v in e["state"].items()}
    state[f"{e['embedding']}.weight"] = _unpack(e["embedding_rows"])
    for name, layer in quant_layers(q).items():
        if isinstance(layer, QuantLinear):
            state[f"{name}.linear.weight"] = state[f"{name}.w_int"] * state[f"{name}.w_scale"][:, None]
    q.load_state_dict(state, assign=True)
    return q.eval()


def _pack_rows(t: torch.Tensor):
    """A quantised embedding table (rows w_int * s, `quantize_weight` at 8 bits) as int8 rows and
    their scales when that reproduces it bit for bit, else as it is."""
    from snmfm.compress.quant import quantize_weight
    if t.dtype == torch.float64 and t.dim() == 2:
        w_int, s = quantize_weight(t, 8)
        if torch.equal(w_int * s[:, None], t):
            return {"rows": w_int.to(torch.int8), "row_scale": s}
    return t


def _embedding(qann) -> tuple[str, torch.nn.Embedding]:
    name = next(n for n, m in qann.named_modules() if isinstance(m, torch.nn.Embedding))
    return name, qann.get_submodule(name)


def export(path, qanns: dict, tokenizer, sentences: list[str], batch_size: int = 32) -> Path:
    """Every QANN in `qanns` with the token embedding cut to the rows `sentences` use (int8 rows and
    a scale per row when that is exact), the float weights of integer layers dropped (the int mode
    reads w_int; they are rebuilt as w_int * w_scale on load), integer tensors as int8/int16; plus
    the tokenised sentences in batches (ids remapped)."""
    from snmfm.compress.quant import quant_layers
    from snmfm.nn import QuantLinear
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    enc = tokenizer(sentences, truncation=True, max_length=256)["input_ids"]
    used = torch.tensor(sorted({i for ids in enc for i in ids} | {tokenizer.pad_token_id}))
    remap = torch.full((tokenizer.vocab_size,), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    out = {}
    for label, q in qanns.items():
        q = copy.deepcopy(q).cpu()
        ename, emb = _embedding(q)
        r = emb.weight.detach()[used].clone()
        emb.weight = torch.nn.Parameter(r, requires_grad=False)
        emb.num_embeddings = len(used)
        for layer in quant_layers(q).values():
            if isinstance(layer, QuantLinear) and layer.is_int:
                layer.linear.weight.data = layer.w_int * layer.w_scale[:, None]  # what load rebuilds
            layer.__dict__.pop("_bounds_key", None)
            layer.__dict__.pop("_bounds_val", None)
        sd = {k: _pack(v) for k, v in q.state_dict().items() if k != f"{ename}.weight"
              and not k.endswith("linear.weight")}
        out[label] = {"skeleton": q.to("meta"), "state": sd, "embedding": ename, "embedding_rows": _pack_rows(r)}
    batches = [(idx, remap[ids], mask) for idx, ids, mask in tokenize(tokenizer, sentences, batch_size)]
    f = path / "minilm_qanns.pt"
    torch.save({"format": FORMAT, "qanns": out, "sentences": sentences,
                "batches": batches, "pad_id": int(remap[tokenizer.pad_token_id])}, f)
    return f


def load_export(path, n_eval: int | None = None, batch_size: int = 32) -> tuple[dict, list]:
    """({label: QANN}, batches) from `export`; n_eval: only the first n sentences (re-batched)."""
    d = torch.load(Path(path) / "minilm_qanns.pt", weights_only=False)
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: not a MiniLM QANN export ({FORMAT})")
    qanns = {label: unpack_entry(e) for label, e in d["qanns"].items()}
    batches = d["batches"]
    if n_eval:
        from eval.benchmarks.bench_minilm import rebatch
        batches = rebatch(batches, set(range(min(n_eval, len(d["sentences"])))), batch_size, d["pad_id"])
    return qanns, batches


# ---- the check ----------------------------------------------------------------------------------
@torch.no_grad()
def exactness(qann, batches: list, coding: str, device: str = "cpu", max_T: int = 4096, log=None) -> dict:
    """Sentences whose SNN output row equals the QANN's bitwise, with time and steps."""
    from converters import convert
    qann = qann.to(device)
    snn = convert(qann, coding=coding)
    n = exact = 0
    steps, t0, c0 = [], time.perf_counter(), time.process_time()
    for k, (idx, ids, mask) in enumerate(batches):
        ids, mask = ids.to(device), mask.to(device)
        ref = qann(ids, mask)
        r = snn.run(ids, mask, record=False, max_T=max_T)
        eq = (r.output == ref).reshape(len(idx), -1).all(1)
        exact += int(eq.sum())
        n += len(idx)
        steps.append(int(r.steps))
        if log:
            log(f"  {coding} batch {k + 1}/{len(batches)}: {int(eq.sum())}/{len(idx)} exact, {r.steps} steps, "
                f"{time.perf_counter() - t0:.0f} s")
    qann.cpu()
    return {"coding": coding, "exact": exact, "n": n, "steps_max": max(steps),
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "device": device}


def run(qanns: dict, batches: list, codings=CODINGS, device: str = "cpu", log=print) -> list[dict]:
    rows = []
    for label, q in qanns.items():
        for c in codings:
            r = {"qann": label, **exactness(q, batches, c, device)}
            rows.append(r)
            log(f"{label} {c}: {r['exact']}/{r['n']} exact, steps max {r['steps_max']}, "
                f"{r['wall_s']:.0f} s wall / {r['cpu_s']:.0f} s CPU")
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| QANN | coding | exact sentences | steps (max) | time |", "|---|---|---|---|---|"]
    lines += [f"| {r['qann']} | {r['coding']} | {r['exact']} / {r['n']} | {r['steps_max']} | "
              f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU ({r['device']}) |" for r in rows]
    return "\n".join(lines)


def held_out_batches(tokenizer, n_eval: int | None = None, batch_size: int = 32) -> tuple[list[str], list]:
    from snmfm.data.sentences import load_sentences
    S = load_sentences()
    ev = [S[i] for i in split(len(S), n_eval)["eval"]]
    return ev, tokenize(tokenizer, ev, batch_size)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m eval.benchmarks.bench_minilm_exact", description=__doc__.split("\n")[0])
    ap.add_argument("--codings", default=",".join(CODINGS))
    ap.add_argument("--qanns", metavar="DIR", help="also the QANN files DIR/*.qann.pt")
    ap.add_argument("--no-recipe", action="store_true", help="only the --qanns files, not W8A8/W8A4 of the recipe")
    ap.add_argument("--n-eval", type=int, default=None, help="first n held-out sentences (default all 540)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--export", metavar="DIR", help="write the compact QANNs + batches to DIR and exit")
    ap.add_argument("--from-export", metavar="DIR")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    codings = [c.strip() for c in a.codings.split(",") if c.strip()]
    from converters import codings as registry
    for c in codings:
        registry.get(c)   # unknown coding: ValueError naming the registered ones
    if a.from_export:
        qanns, batches = load_export(a.from_export, a.n_eval, a.batch_size)
    else:
        qanns, tok = recipe_qanns(() if a.no_recipe else ((8, 8), (8, 4)))
        if a.qanns:
            qanns.update(load_qanns(a.qanns))
        sentences, batches = held_out_batches(tok, a.n_eval, a.batch_size)
        if a.export:
            print(export(a.export, qanns, tok, sentences, a.batch_size))
            return []
    rows = run(qanns, batches, codings, a.device)
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
