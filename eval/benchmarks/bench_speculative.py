"""Speculative decoding on the trained code-stdlib and vqa-digits models: exactness, speed, energy.

    python -m eval.benchmarks.bench_speculative [--prompts 16] [--snn-prompts 3] [--json OUT]
    python -m eval.benchmarks.bench_speculative --quick        # a smoke run (minutes)

Members (per task): the target in three forms (FP32 default checkpoint; QANN w8a8 calibrated on
the calibration split; its SNN), and three kinds of draft:
  distilled   a "tiny" model of the task's family trained for --distill-steps on the target's
              next-token distributions (FP32; its QANN at --distilled-bits, w8a4; that QANN's SNN),
  compressed  the target quantized at --compressed-bits, w4a4 (QANN; its SNN),
  self        the target's first block + final LayerNorm + head (in the target's own form).

Tables:
1. exactness: greedy speculative output == the target's own greedy decoding (cached; for FP32 and
   QANN targets also == uncached decoding), per task, target form, draft kind and form, over
   held-out prompts (code-stdlib: the first --prompt-len bytes of test windows, --new bytes
   generated; vqa-digits: test images and questions, the answer word + <eos>);
2. speed on code-stdlib: acceptance rate, mean accepted length (drafts kept per round), target
   passes per generated token, wall and CPU ms per token on this machine, speed-up over plain
   cached greedy decoding of the same target (CPU time is robust to other load; wall is asked for);
3. energy per generated token on code-stdlib (eval.speculative.charge): SNN members with recorded
   traces; every pairing of draft chip x target chip, plain decoding of the target on each chip as
   the baseline, and the pairing that wins on each target chip;
4. energy per token against k on the conventional accelerator (QANN members).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from converters import convert
from converters.workflow import build_qann
from eval.speculative import Placement, charge
from snmfm.speculative import compressed_draft, decode, draft_for, first_layers, speculative_decode

CHIPS = ("conventional", "neuromorphic")   # default --hw: the accelerators members are placed on


def members(task, args) -> dict:
    """Targets by form and drafts by (kind, form) for one task."""
    model, tmeta = task.load()
    model.eval()
    calib = list(task.batches("calib", 16, limit=args.calib))
    t0 = time.perf_counter()
    q = build_qann(task, model, w_bits=8, a_bits=8, calib=args.calib)
    snn = convert(q)
    d = draft_for(model, task, tmeta.get("tensors_sha256"), "tiny", steps=args.distill_steps, batch_size=16, seed=0)
    dq = compressed_draft(d, calib, w_bits=args.distilled_bits[0], a_bits=args.distilled_bits[1])
    cq = compressed_draft(model, calib, w_bits=args.compressed_bits[0], a_bits=args.compressed_bits[1])
    print(f"[{task.name}] members built in {time.perf_counter() - t0:.0f} s "
          f"(distillation KL {d.snmfm_distill['final_kl']:.3f})", file=sys.stderr)
    return {"targets": {"fp32": model, "qann": q, "snn": snn},
            "drafts": {("distilled", "fp32"): d, ("distilled", "qann"): dq, ("distilled", "snn"): convert(dq),
                       ("compressed", "qann"): cq, ("compressed", "snn"): convert(cq),
                       ("self", "fp32"): first_layers(model, 1), ("self", "qann"): first_layers(q, 1),
                       ("self", "snn"): first_layers(snn, 1)}}


def prompts(task, n: int, args) -> list[dict]:
    """Held-out prompts: {"prompt", "images", "max_new", "stop"}."""
    out = []
    if task.name == "code-stdlib":
        for b in task.batches("test", 64, limit=n):
            for row in b[0]:
                out.append({"prompt": row[:args.prompt_len], "images": None, "max_new": args.new, "stop": None})
        return out[:n]
    from snmfm.data import vqa
    for b in task.batches("test", 64, limit=n):
        images, tokens = b
        for i in range(len(images)):
            # two tokens past the answer's <eos>, so that rounds after the prefill draft something
            out.append({"prompt": tokens[i, :vqa.PROMPT_LEN], "images": images[i:i + 1],
                        "max_new": vqa.ANSWER_LEN + 2, "stop": vqa.EOS})
    return out[:n]


def _timed(fn, *a, **kw):
    """fn(*a, **kw), its wall and process CPU seconds."""
    w, c = time.perf_counter(), time.process_time()
    r = fn(*a, **kw)
    return r, time.perf_counter() - w, time.process_time() - c


def run_task(task, args, report: dict) -> None:
    mem = members(task, args)
    ps = prompts(task, args.prompts, args)
    snn_kw = {"chunk": args.chunk}
    rows, speed = [], []
    for t_form, target in mem["targets"].items():
        use = ps[:args.snn_prompts] if t_form == "snn" else ps
        plain, plain_w, plain_c, plain_tok, uncached_ok = [], 0.0, 0.0, 0, 0
        for p in use:
            r, w, c = _timed(decode, target, p["prompt"], p["max_new"], images=p["images"],
                             stop_token=p["stop"], snn_kw=snn_kw)
            plain.append(r.tokens)
            plain_w, plain_c, plain_tok = plain_w + w, plain_c + c, plain_tok + len(r.tokens)
            if t_form != "snn":
                u = decode(target, p["prompt"], p["max_new"], images=p["images"], stop_token=p["stop"], cached=False)
                uncached_ok += u.tokens == r.tokens
        for (kind, d_form), draft in mem["drafts"].items():
            if kind == "self" and d_form != t_form:
                continue
            use_d = use[:args.snn_prompts] if "snn" in (t_form, d_form) else use
            same, stats, w_tot, c_tot, tok = 0, [], 0.0, 0.0, 0
            for p, ref in zip(use_d, plain):
                r, w, c = _timed(speculative_decode, target, draft, p["prompt"], p["max_new"], k=args.k,
                                 images=p["images"], stop_token=p["stop"], snn_kw=snn_kw)
                same += r.tokens == ref
                stats.append(r.metrics())
                w_tot, c_tot, tok = w_tot + w, c_tot + c, tok + len(r.tokens)
            rows.append({"task": task.name, "target": t_form, "draft": kind, "draft_form": d_form,
                         "prompts": len(use_d), "identical": same,
                         "uncached_identical": uncached_ok if t_form != "snn" else None,
                         "plain_prompts": len(use)})
            if task.name == "code-stdlib":
                n_plain = sum(len(x) for x in plain[:len(use_d)])
                pw = plain_w * n_plain / max(1, plain_tok)   # plain time on the same prompts
                pc = plain_c * n_plain / max(1, plain_tok)
                drafted = sum(s["drafted"] for s in stats)
                speed.append({"target": t_form, "draft": kind, "draft_form": d_form, "prompts": len(use_d),
                              "acceptance_rate": sum(s["accepted"] for s in stats) / max(1, drafted),
                              "mean_accepted_length": sum(s["accepted"] for s in stats)
                              / max(1, sum(s["rounds"] for s in stats)),
                              "target_passes_per_token": sum(s["target_passes_per_token"] * s["tokens"] for s in stats) / max(1, tok),
                              "wall_ms_per_token": 1e3 * w_tot / max(1, tok),
                              "cpu_ms_per_token": 1e3 * c_tot / max(1, tok),
                              "plain_wall_ms_per_token": 1e3 * pw / max(1, n_plain),
                              "plain_cpu_ms_per_token": 1e3 * pc / max(1, n_plain),
                              "speedup_wall": pw / w_tot if w_tot else float("nan"),
                              "speedup_cpu": pc / c_tot if c_tot else float("nan")})
            print(f"[{task.name}] target {t_form} draft {kind}/{d_form}: {same}/{len(use_d)} identical",
                  file=sys.stderr)
    report["exactness"].extend(rows)
    report["speed"].extend(speed)
    if task.name == "code-stdlib" and args.energy_prompts > 0:
        report["energy"].extend(energy(mem, ps[:args.energy_prompts], args))
    if task.name == "code-stdlib" and args.sweep_prompts > 0:
        report["k_sweep"].extend(k_sweep(mem, ps[:args.sweep_prompts], args))


def k_sweep(mem: dict, ps: list[dict], args) -> list[dict]:
    """Energy per token on the conventional accelerator (QANN members) against k: where the
    saved target passes pay for the draft calls and the rejected work."""
    q = mem["targets"]["qann"]
    plain = [decode(q, p["prompt"], p["max_new"]) for p in ps]
    base = sum(charge(r, {"target": Placement(q)})["energy_pj"] for r in plain) / sum(len(r.tokens) for r in plain)
    out = []
    for kind in ("distilled", "compressed", "self"):
        draft = mem["drafts"][kind, "qann"]
        for k in (1, 2, 3, 4, 6):
            rs = [speculative_decode(q, draft, p["prompt"], p["max_new"], k=k) for p in ps]
            cs = [charge(r, {"draft": Placement(draft), "target": Placement(q)}) for r in rs]
            tok = sum(c["tokens"] for c in cs)
            drafted = sum(r.metrics()["drafted"] for r in rs)
            out.append({"draft": kind, "k": k, "acceptance_rate": sum(r.metrics()["accepted"] for r in rs) / max(1, drafted),
                        "energy_nj_per_token": sum(c["energy_pj"] for c in cs) / tok / 1e3,
                        "plain_nj_per_token": base / 1e3,
                        "saving": 1 - sum(c["energy_pj"] for c in cs) / tok / base})
    return out


def _chips(args) -> list[str]:
    """The accelerators of --hw (registered names), checked to load."""
    from eval.accelerators import label, parse_hw
    return [label(h) for h in parse_hw(getattr(args, "hw", None) or ",".join(CHIPS))]


def energy(mem: dict, ps: list[dict], args) -> list[dict]:
    """Energy per token of every pairing, SNN members with recorded traces."""
    snn = mem["targets"]["snn"]
    out = []
    kw = {"record": True, "snn_kw": {"chunk": args.chunk}}
    runs = {"plain": [decode(snn, p["prompt"], p["max_new"], **kw) for p in ps]}
    for kind in ("distilled", "compressed", "self"):
        draft = mem["drafts"][kind, "snn"]
        runs[kind] = [(draft, speculative_decode(snn, draft, p["prompt"], p["max_new"], k=args.k, **kw))
                      for p in ps]
    chips = _chips(args)
    for chip in chips:
        cs = [charge(r, {"target": Placement(snn, chip)}) for r in runs["plain"]]
        out.append(_energy_row("plain", None, chip, cs))
    for kind in ("distilled", "compressed", "self"):
        for d_chip in chips:
            for t_chip in chips:
                cs = [charge(r, {"draft": Placement(draft, d_chip), "target": Placement(snn, t_chip)})
                      for draft, r in runs[kind]]
                out.append(_energy_row(kind, d_chip, t_chip, cs))
        print(f"[energy] {kind} charged", file=sys.stderr)
    return out


def _energy_row(kind, d_chip, t_chip, cs) -> dict:
    tok = sum(c["tokens"] for c in cs)
    e = sum(c["energy_pj"] for c in cs)
    return {"draft": kind, "draft_chip": d_chip, "target_chip": t_chip, "tokens": tok,
            "energy_nj_per_token": e / tok / 1e3,
            "latency_us_per_token": sum(c["latency_s"] for c in cs) / tok * 1e6,
            "draft_share": sum(c["by_member"].get("draft", {}).get("energy_pj", 0.0) for c in cs) / e,
            "wasted_share": sum(c["wasted_pj"] for c in cs) / e,
            "link_pj_per_token": sum(c["link"]["energy_pj"] for c in cs) / tok}


# ---- printing ----------------------------------------------------------------------------------
def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = [c[1] for c in cols]
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt))
        body.append(cells)
    w = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w[i]) for i, c in enumerate(cells))
    return "\n".join([line(head), line(["-" * x for x in w])] + [line(b) for b in body])


def print_report(rep: dict) -> None:
    print("\n## 1. Greedy speculative decoding == the target's greedy decoding (held-out prompts)\n")
    for r in rep["exactness"]:
        r["identical_%"] = 100.0 * r["identical"] / max(1, r["prompts"])
    print(_table(rep["exactness"], [("task", "task", ""), ("target", "target", ""), ("draft", "draft", ""),
                                    ("draft_form", "form", ""), ("prompts", "prompts", "d"),
                                    ("identical_%", "identical %", ".0f"),
                                    ("uncached_identical", "plain cached==uncached", "")]))
    if rep["speed"]:
        print(f"\n## 2. Speed on code-stdlib (k = {rep['args']['k']}, {rep['args']['new']} bytes per prompt)\n")
        print(_table(rep["speed"], [("target", "target", ""), ("draft", "draft", ""), ("draft_form", "form", ""),
                                    ("prompts", "n", "d"), ("acceptance_rate", "accept", ".2f"),
                                    ("mean_accepted_length", "kept/round", ".2f"),
                                    ("target_passes_per_token", "target passes/tok", ".2f"),
                                    ("wall_ms_per_token", "wall ms/tok", ".1f"),
                                    ("plain_wall_ms_per_token", "plain wall", ".1f"),
                                    ("speedup_wall", "speed-up wall", ".2f"),
                                    ("cpu_ms_per_token", "cpu ms/tok", ".1f"),
                                    ("speedup_cpu", "speed-up cpu", ".2f")]))
    if rep["energy"]:
        print("\n## 3. Energy per generated token on code-stdlib (SNN members, recorded traces)\n")
        print(_table(rep["energy"], [("draft", "draft", ""), ("draft_chip", "draft on", ""),
                                     ("target_chip", "target on", ""), ("tokens", "tokens", "d"),
                                     ("energy_nj_per_token", "nJ/token", ".1f"),
                                     ("latency_us_per_token", "us/token", ".2f"),
                                     ("draft_share", "draft share", ".2f"),
                                     ("wasted_share", "wasted share", ".2f"),
                                     ("link_pj_per_token", "link pJ/tok", ".1f")]))
        for chip in dict.fromkeys(r["target_chip"] for r in rep["energy"]):
            cand = [r for r in rep["energy"] if r["target_chip"] == chip]
            best = min(cand, key=lambda r: r["energy_nj_per_token"])
            base = next(r for r in cand if r["draft"] == "plain")
            rep.setdefault("winners", {})[chip] = best
            print(f"\ntarget on {chip}: best = {best['draft']}"
                  + (f" draft on {best['draft_chip']}" if best["draft_chip"] else "")
                  + f", {best['energy_nj_per_token']:.1f} nJ/token vs plain {base['energy_nj_per_token']:.1f}")


def _bits(s: str) -> tuple[int, int]:
    w, a = s.split("/")
    return int(w), int(a)


def print_sweep(rep: dict) -> None:
    if rep["k_sweep"]:
        print("\n## 4. Energy per token against k, QANN members on the conventional accelerator\n")
        print(_table(rep["k_sweep"], [("draft", "draft", ""), ("k", "k", "d"), ("acceptance_rate", "accept", ".2f"),
                                      ("energy_nj_per_token", "nJ/token", ".1f"),
                                      ("plain_nj_per_token", "plain nJ/token", ".1f"),
                                      ("saving", "saving", "+.1%")]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["code-stdlib", "vqa-digits"])
    ap.add_argument("--prompts", type=int, default=16, help="held-out prompts per task (FP32/QANN members)")
    ap.add_argument("--snn-prompts", type=int, default=3, help="prompts for runs with an SNN member")
    ap.add_argument("--energy-prompts", type=int, default=2)
    ap.add_argument("--sweep-prompts", type=int, default=8, help="prompts of the k sweep (conventional)")
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--new", type=int, default=32, help="bytes generated per code-stdlib prompt")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--hw", default=",".join(CHIPS),
                    help="accelerators the members are placed on, every draft/target pairing (registered names)")
    ap.add_argument("--distill-steps", type=int, default=300)
    ap.add_argument("--distilled-bits", type=_bits, default=(8, 4), help="W/A bits of the distilled QANN draft")
    ap.add_argument("--compressed-bits", type=_bits, default=(4, 4), help="W/A bits of the compressed draft")
    ap.add_argument("--chunk", type=int, default=32, help="SNN time steps per batched chunk")
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="2 prompts, 1 SNN prompt, 8 bytes, 30 distillation steps")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.prompts, args.snn_prompts, args.energy_prompts, args.new, args.distill_steps = 2, 1, 1, 8, 30
        args.sweep_prompts = 1
    torch.set_num_threads(1)
    from snmfm.tasks import get_task
    rep = {"args": vars(args), "exactness": [], "speed": [], "energy": [], "k_sweep": []}
    for name in args.tasks:
        run_task(get_task(name), args, rep)
    print_report(rep)
    print_sweep(rep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1, default=str)
    return rep


if __name__ == "__main__":
    main()
