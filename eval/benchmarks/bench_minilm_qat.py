"""all-MiniLM-L6-v2 recovery (QAT) on a machine without transformers (a GPU box), evaluated here.

Four steps, each a mode of this module:

1. ``--export-inputs DIR`` (here: needs the packaged model and its tokenizer) writes
   DIR/minilm_qat_inputs.pt: the text-minilm recipe model (smoothed, float, *uncalibrated*) with the
   token-embedding table cut to the rows the calib and training sentences use, the task's calib
   batches and the tokenised training sentences (`load_train_sentences`, disjoint from the 600
   shipped evaluation sentences: no held-out sentence goes to the training machine), ids remapped;
   plus the per-site event costs of uniform W8A4 (`event_costs`: pJ per nonzero code, graded
   coding on neuromorphic-ideal, 8 calib sentences) for the activity-constrained QAT, and the
   README's mixed plan.
2. ``--train-from FILE --label L [options] --out DIR`` (there, e.g. ``--device cuda``) calibrates
   on the calib batches (CPU, as `snmfm run`), runs `snmfm.tasks.text.recover` -- the library's
   QAT, on the device -- and writes DIR/L.qann.pt (the frozen QANN packed: integer weights as
   int8, compact embedding rows) and DIR/L.json (settings, loss/activity history, times).
3. ``--import DIR --save-qanns QDIR`` (here) puts the full vocabulary back (rows the training never
   saw are exactly the recipe's 8-bit rows: AdamW without weight decay leaves them unchanged) and
   writes QDIR/L.qann.pt (``--inputs FILE``: the step-1 file, for its vocabulary) plus the recipe's uniform W8A4 as the energy reference, for
   ``bench_minilm_techniques --from-qanns QDIR`` (held-out cosine to the FP32 model, energy per
   accelerator) and ``bench_minilm_exact --qanns QDIR --no-recipe`` (SNN == QANN per sentence).
4. ``--average QDIR --parts wide-act=0.25,wide-act-lr5=0.25,start=0.5 --step-scale 0.7 --label L``
   (here) writes QDIR/L.qann.pt: the weight-space average of imported QANNs of one plan ("start":
   the un-trained QANN of that plan), activation steps times --step-scale
   (`snmfm.compress.qat.average_qanns`, `scale_steps`), and prints its cosine on the 60 calib-split
   sentences (never in the QAT's gradient, not held-out) and its graded energy vs uniform W8A4: the
   long GPU QATs over-fit the 996 training sentences, and averaging back towards the start is
   chosen on the calib split, then measured once on the held-out sentences.

The wide plan (``--step-bits 4 --a-bits 6``): every activation site starts at the step the MSE
search picks for 4 bits but gets a 6-bit integer window.  On a graded-spike chip a site's energy
follows its nonzero codes, i.e. its step, not its window (measured on 160 held-out sentences, no
QAT: 0.939 mean cosine at -1.7% energy vs uniform W8A4's 0.893); ``--activity-weight`` then keeps
the QAT's steps from buying accuracy with events (`snmfm.compress.qat.ActivityPenalty`).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

INPUTS = "minilm_qat_inputs.pt"
FORMAT_IN = "snmfm.minilm_qat_inputs/1"
FORMAT_OUT = "snmfm.minilm_qat_qann/1"
PLAN_FILE = Path(__file__).with_name("bench_minilm_plan.json")


# ---- costs ----------------------------------------------------------------------------------------
def event_costs(qann, batch, accelerator: str = "neuromorphic-ideal", coding: str = "graded") -> dict[str, float]:
    """{quantizer path: pJ per nonzero code}: each op's energy on `accelerator` (per_op of the
    simulated trace of `batch`) divided by the events of the quantizer sites feeding it."""
    from converters import convert
    from neuro_hw import extract_workload, simulate
    from snmfm.nn import quantizers
    wl = extract_workload(qann, *tuple(x[:1] for x in batch))
    trace = convert(qann, coding=coding).run(*batch).trace
    rep = simulate(wl, trace, accelerator)
    names = [n for n, _ in quantizers(qann)]
    out = {}
    for op in rep.per_op:
        sites = [n for n in names if n.rpartition(".")[0] == op["name"]]
        events = sum(int(trace.sites[n].events.sum()) for n in sites if n in trace.sites)
        for n in sites:
            out[n] = float(op.get("energy_pj", 0.0)) / max(events, 1)
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"no op energy for quantizer(s) {missing[:3]} on {accelerator}")
    return out


# ---- step 1: inputs for the training machine ------------------------------------------------------
def _cut_vocab(model, used: torch.Tensor):
    from eval.benchmarks.bench_minilm_exact import _embedding
    model = copy.deepcopy(model)
    name, emb = _embedding(model)
    emb.weight = torch.nn.Parameter(emb.weight.detach()[used].clone())
    emb.num_embeddings = len(used)
    return model, name


def export_inputs(folder, batch_size: int = 32, cost_sentences: int = 8, log=print) -> Path:
    from snmfm.compress import calibrate, quantize
    from snmfm.data.sentences import load_train_sentences
    from snmfm.models.hf import length_batches, load_minilm
    from snmfm.tasks import get_task
    task = get_task("text-minilm")
    _, tok = load_minilm()
    model = task.build_model().eval()
    calib = [tuple(b) for b in task.batches("calib", 64)]
    max_len = model.config.extra.get("max_seq_length")
    train = [(ids, mask) for _, ids, mask in length_batches(tok, load_train_sentences(), batch_size, max_len)]
    used = sorted({int(i) for ids, _ in calib + train for i in ids.unique()} | {tok.pad_token_id})
    used = torch.tensor(used)
    remap = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    compact, ename = _cut_vocab(model, used)
    with torch.no_grad():   # the cut model computes the same function on these ids
        ids, mask = train[0]
        if not torch.equal(compact(remap[ids], mask), model(ids, mask)):
            raise RuntimeError("the vocabulary cut changed the model's output")
    calibrate(model, calib)
    cb = tuple(next(iter(task.batches("calib", cost_sentences))))
    costs = event_costs(quantize(model, 8, 4), cb)
    plan = json.loads(PLAN_FILE.read_text())["overrides"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / INPUTS
    torch.save({"format": FORMAT_IN, "model": compact, "embedding": ename, "vocab": used,
                "calib": [(remap[i], m) for i, m in calib], "train": [(remap[i], m) for i, m in train],
                "pad_id": int(remap[tok.pad_token_id]),
                "costs": costs, "mixed_plan": plan}, f)
    log(f"wrote {f} ({f.stat().st_size / 2**20:.1f} MiB): {len(used)} vocabulary rows, "
        f"{sum(len(i) for i, _ in train)} training sentences in {len(train)} batches")
    return f


# ---- step 2: train (any device) -------------------------------------------------------------------
def pack_qann(qann) -> dict:
    """A frozen QANN as int8/int16 integer tensors where exact, the float weights of integer layers
    dropped (rebuilt from w_int * w_scale by `unpack_qann`), the module skeleton on 'meta'."""
    from eval.benchmarks.bench_minilm_exact import _pack, _pack_rows, _embedding
    from snmfm.compress.quant import quant_layers
    from snmfm.nn import QuantLinear
    q = copy.deepcopy(qann).cpu()
    ename, emb = _embedding(q)
    for layer in quant_layers(q).values():
        if isinstance(layer, QuantLinear) and layer.is_int:
            layer.linear.weight.data = layer.w_int * layer.w_scale[:, None]
        layer.__dict__.pop("_bounds_key", None)
        layer.__dict__.pop("_bounds_val", None)
    rows = _pack_rows(emb.weight.detach().clone())
    state = {k: _pack(v) for k, v in q.state_dict().items()
             if k != f"{ename}.weight" and not k.endswith("linear.weight")}
    return {"format": FORMAT_OUT, "skeleton": q.to("meta"), "state": state, "embedding": ename,
            "embedding_rows": rows}


def unpack_qann(d: dict):
    from eval.benchmarks.bench_minilm_exact import unpack_entry
    if d.get("format") != FORMAT_OUT:
        raise ValueError(f"not a packed MiniLM QANN ({FORMAT_OUT})")
    return unpack_entry(d)


def train(inputs, label: str, out, *, plan: str = "wide", step_bits: int | None = 4, a_bits: int = 6,
          steps: int = 2000, lr: float = 2e-4, scale_lr: float | None = None, warmup: int = 100,
          layers: bool = True, activity_weight: float = 0.0, activity_budget: float = 1.0,
          device: str | None = None, seed: int = 0, log_every: int = 50, batch_size: int = 32,
          n_batches: int = 2000, time_limit_s: float | None = None, log=print) -> dict:
    """QAT of one plan on the exported inputs (`recover`, the library's path), frozen and packed.

    plan: "wide" (every site `a_bits` windows at `step_bits` steps), "uniform" (W8A{a_bits}), or
    "mixed" (the README's plan, overrides from bench_minilm_plan.json).  Training batches:
    `n_batches` random draws of `batch_size` training sentences (`random_batches`)."""
    from snmfm.compress import calibrate
    from snmfm.tasks.text import recover
    d = torch.load(inputs, weights_only=False) if not isinstance(inputs, dict) else inputs
    if d.get("format") != FORMAT_IN:
        raise ValueError(f"{inputs}: not MiniLM QAT inputs ({FORMAT_IN}); write them with --export-inputs")
    t0 = time.perf_counter()
    model = copy.deepcopy(d["model"]).float().eval()
    calibrate(model, d["calib"])
    t_cal = time.perf_counter() - t0
    kw = dict(a_bits=a_bits, step_bits=None)
    if plan == "wide":
        kw["step_bits"] = step_bits
    elif plan == "mixed":
        kw = dict(a_bits=4, step_bits=None, overrides=d["mixed_plan"])
    elif plan != "uniform":
        raise ValueError(f"unknown plan {plan!r}; allowed: wide, uniform, mixed")
    activity = d["costs"] if activity_weight > 0 else None
    batches = random_batches(d["train"], batch_size, n_batches, seed, pad_id=int(d["pad_id"]))
    qann = recover(model, None, 8, batches=batches, steps=steps, lr=lr, scale_lr=scale_lr, warmup=warmup,
                   layers=layers, device=device, seed=seed, log_every=log_every, activity=activity,
                   activity_weight=activity_weight, activity_budget=activity_budget, time_limit_s=time_limit_s,
                   log=log, **kw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(pack_qann(qann), out / f"{label}.qann.pt")
    stats = qann.snmfm_quant.get("qat", {})
    rec = {"label": label, "plan": plan, "step_bits": kw.get("step_bits"), "a_bits": kw["a_bits"],
           "steps": steps, "batch_size": batch_size, "n_batches": n_batches, "lr": lr, "scale_lr": scale_lr, "warmup": warmup, "layers": layers,
           "activity_weight": activity_weight, "activity_budget": activity_budget, "seed": seed,
           "calibrate_s": t_cal, "wall_s": time.perf_counter() - t0, "qat": stats}
    (out / f"{label}.json").write_text(json.dumps(rec, indent=1, default=str))
    log(f"{label}: final loss {stats.get('final_loss')}, {stats.get('time_s', 0):.0f} s QAT on {stats.get('device')}")
    return rec


def random_batches(batches: list, batch_size: int, n: int, seed: int = 0, pad_id: int = 0) -> list:
    """`n` batches of `batch_size` sentences drawn at random (without replacement within a batch)
    from the sentences of `batches` [(ids, mask)], each padded to its longest sentence: more
    distinct batches than the fixed length-sorted ones, for long training runs."""
    rows = [ids[j][: int(mask[j].sum())] for ids, mask in batches for j in range(len(ids))]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pick = torch.randperm(len(rows), generator=g)[:batch_size].tolist()
        L = max(len(rows[i]) for i in pick)
        ids = torch.full((len(pick), L), pad_id, dtype=rows[0].dtype)
        mask = torch.zeros((len(pick), L), dtype=batches[0][1].dtype)
        for r, i in enumerate(pick):
            ids[r, : len(rows[i])] = rows[i]
            mask[r, : len(rows[i])] = 1
        out.append((ids, mask))
    return out


# ---- step 3: back to the full vocabulary ----------------------------------------------------------
def import_qanns(folder, save_qanns, inputs=None, log=print) -> dict:
    """QDIR/L.qann.pt (full vocabulary) for every packed QANN in `folder`, and QDIR/W8A4.qann.pt."""
    from eval.benchmarks.bench_minilm_exact import _embedding, save_qann
    from snmfm.compress import calibrate, quantize
    from snmfm.tasks import get_task
    task = get_task("text-minilm")
    model = task.build_model()
    calibrate(model, [tuple(b) for b in task.batches("calib", 64)])
    ref = quantize(model, 8, 4)
    files = sorted(Path(folder).glob("*.qann.pt"))
    if not files:
        raise SystemExit(f"no packed QANNs (*.qann.pt) in {folder}")
    vocab = _vocab_of(inputs or Path(".gpu/qat") / INPUTS)
    out = {}
    save = Path(save_qanns)
    save.mkdir(parents=True, exist_ok=True)
    for f in files:
        q = unpack_qann(torch.load(f, weights_only=False))
        _, emb = _embedding(q)
        _, full = _embedding(ref)
        table = full.weight.detach().clone()
        table[vocab] = emb.weight.detach().to(table.dtype)
        emb.weight = torch.nn.Parameter(table, requires_grad=False)
        emb.num_embeddings = table.shape[0]
        label = f.name.removesuffix(".qann.pt")
        save_qann(q, save / f"{label}.qann.pt")
        out[label] = q
        log(f"imported {label}")
    save_qann(ref, save / "W8A4.qann.pt")
    return out


# ---- step 4 (here): average and re-step imported QANNs, checked on the calib split -------------
def _recipe_model():
    from snmfm.compress import calibrate
    from snmfm.tasks import get_task
    task = get_task("text-minilm")
    model = task.build_model()
    calibrate(model, [tuple(b) for b in task.batches("calib", 64)])
    return task, model


def start_qann(model, like) -> torch.nn.Module:
    """The un-trained QANN of `like`'s bit plan (`freeze(prepare_qat(...))` of the calibrated recipe
    model): the QAT's starting point, for averaging the trained weights back towards it."""
    from snmfm.compress.qat import freeze, prepare_qat
    info = like.snmfm_quant
    return freeze(prepare_qat(model, info["w_bits"], info["a_bits"], overrides=info.get("overrides") or None,
                              step_bits=info.get("step_bits"), method=info.get("method", "mse"),
                              embed_bits=info.get("embed_bits")))


def parse_parts(text: str) -> dict[str, float]:
    """'wide-act=0.25,wide-act-lr5=0.25,start=0.5' -> {label: weight}."""
    out = {}
    for part in text.split(","):
        label, eq, w = part.strip().partition("=")
        if not eq or not label:
            raise SystemExit(f"--parts: {part!r} is not LABEL=WEIGHT (e.g. wide-act=0.5,start=0.5)")
        try:
            out[label] = float(w)
        except ValueError:
            raise SystemExit(f"--parts: weight {w!r} of {label} is not a number") from None
    return out


def validation(qann, model_fp32=None, tok=None, batch=None, ref_energy=None) -> dict:
    """Cosine to FP32 on the 60 sentences of the text-minilm calib split (never in the QAT's
    gradient: the training machine only calibrates on them; not held-out) and the graded energy on
    neuromorphic-ideal of the first 8 of them relative to uniform W8A4's."""
    from eval.benchmarks.bench_minilm import _cos, embed_batches, split, tokenize
    from eval.benchmarks.bench_minilm_techniques import plan_energy
    from snmfm.data.sentences import load_sentences
    S = load_sentences()
    val = tokenize(tok, [S[i] for i in split(len(S), None)["calib"]], 32)
    c = _cos(embed_batches(qann, val), embed_batches(model_fp32, val))
    out = {"n": int(c.numel()), "mean": float(c.mean()), "min": float(c.min())}
    if batch is not None and ref_energy:
        out["energy_vs_w8a4"] = plan_energy(qann, batch) / ref_energy
    return out


def average(qdir, parts: dict[str, float], label: str, step_scale: float = 1.0, log=print) -> dict:
    """QDIR/LABEL.qann.pt = `scale_steps(average_qanns(parts), step_scale)`; a part named "start"
    is the un-trained QANN of the other parts' plan (`start_qann`).  Logs the calib-split check."""
    from snmfm.compress import quantize
    from snmfm.compress.qat import average_qanns, scale_steps
    from snmfm.models.hf import load_minilm
    from eval.benchmarks.bench_minilm_exact import save_qann
    from eval.benchmarks.bench_minilm_techniques import plan_energy
    qdir = Path(qdir)
    missing = [k for k in parts if k != "start" and not (qdir / f"{k}.qann.pt").exists()]
    if missing:
        raise SystemExit(f"--parts: no {', '.join(f'{k}.qann.pt' for k in missing)} in {qdir} "
                         "(import the trained QANNs first: --import DIR --save-qanns QDIR)")
    trained = {k: torch.load(qdir / f"{k}.qann.pt", weights_only=False) for k in parts if k != "start"}
    if not trained:
        raise SystemExit("--parts needs at least one trained QANN of QDIR besides 'start'")
    task, model = _recipe_model()
    qs = [trained[k] if k != "start" else start_qann(model, next(iter(trained.values()))) for k in parts]
    q = scale_steps(average_qanns(qs, list(parts.values())), step_scale)
    q.snmfm_quant["average"]["parts"] = dict(parts)
    fp32, tok = load_minilm()
    eb = tuple(next(iter(task.batches("calib", 8))))
    val = validation(q, fp32, tok, eb, plan_energy(quantize(model, 8, 4), eb))
    save_qann(q, qdir / f"{label}.qann.pt")
    log(f"{label}: {parts}, steps x{step_scale}: calib-split cosine mean {val['mean']:.5f} min {val['min']:.5f} "
        f"({val['n']} sentences), graded energy {val['energy_vs_w8a4']:.4f} x W8A4 -> {qdir / (label + '.qann.pt')}")
    return val


def _vocab_of(inputs) -> torch.Tensor:
    if not Path(inputs).exists():
        raise SystemExit(f"{inputs}: the inputs file the training ran on is needed (its vocabulary rows); "
                         "pass --inputs FILE")
    return torch.load(inputs, weights_only=False)["vocab"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m eval.benchmarks.bench_minilm_qat", description=__doc__.split("\n")[0])
    ap.add_argument("--export-inputs", metavar="DIR")
    ap.add_argument("--train-from", metavar="FILE")
    ap.add_argument("--import", dest="import_", metavar="DIR")
    ap.add_argument("--save-qanns", metavar="QDIR")
    ap.add_argument("--inputs", metavar="FILE", help=f"with --import: the inputs file of the training "
                    f"(default .gpu/qat/{INPUTS})")
    ap.add_argument("--average", metavar="QDIR", help="average imported QANNs of QDIR (--parts) into "
                    "QDIR/LABEL.qann.pt, checked on the calib split")
    ap.add_argument("--parts", default="wide-act=0.25,wide-act-lr5=0.25,start=0.5",
                    help="with --average: LABEL=WEIGHT,... ('start': the un-trained QANN of their plan)")
    ap.add_argument("--step-scale", type=float, default=1.0, help="with --average: multiply every activation step")
    ap.add_argument("--out", metavar="DIR", default=".")
    ap.add_argument("--label", default="wide")
    ap.add_argument("--plan", default="wide", choices=("wide", "uniform", "mixed"))
    ap.add_argument("--step-bits", type=int, default=4)
    ap.add_argument("--a-bits", type=int, default=6)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--scale-lr", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--no-layers", action="store_true", help="distil the embedding only")
    ap.add_argument("--activity-weight", type=float, default=0.0)
    ap.add_argument("--activity-budget", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-batches", type=int, default=2000, help="distinct random training batches")
    ap.add_argument("--time-limit-s", type=float, default=None, help="stop the QAT after this many seconds")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.export_inputs:
        return export_inputs(a.export_inputs)
    if a.train_from:
        return train(a.train_from, a.label, a.out, plan=a.plan, step_bits=a.step_bits, a_bits=a.a_bits, steps=a.steps,
                     lr=a.lr, scale_lr=a.scale_lr, warmup=a.warmup, layers=not a.no_layers,
                     activity_weight=a.activity_weight, activity_budget=a.activity_budget, device=a.device,
                     seed=a.seed, log_every=a.log_every, batch_size=a.batch_size, n_batches=a.n_batches,
                     time_limit_s=a.time_limit_s)
    if a.import_:
        if not a.save_qanns:
            ap.error("--import needs --save-qanns QDIR")
        return import_qanns(a.import_, a.save_qanns, a.inputs)
    if a.average:
        return average(a.average, parse_parts(a.parts), a.label, a.step_scale)
    ap.error("give one of --export-inputs, --train-from, --import, --average")


if __name__ == "__main__":
    main()
