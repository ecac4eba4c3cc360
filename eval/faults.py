"""`snmfm faults TASK`: accuracy against fault rate on both accelerators, with and without mitigation.

For one task's shipped checkpoint, quantized as `snmfm convert` quantizes it, the fault-free QANN is
the reference (the SNN of every coding equals it bit for bit).  Each *configuration* is an
accelerator side (conventional: the QANN on the systolic accelerator; neuromorphic: the SNN of one
coding on the chip), a fault kind (snmfm.faults.KINDS) and a mitigation (none, or the one
`MITIGATION_FOR` the kind).  For every rate and seed the faults are drawn, injected where the
arithmetic happens, and the held-out accuracy measured; the curve is the mean over seeds with a 95%
Student-t interval, and `loss_1pt` the rate at which the mean first falls one point (0.01) below
the fault-free accuracy, interpolated in log rate between the two measured rates around the
crossing (a bracket when the grid does not cross).

Both sides see the same physical rate: weight bits at each side's stored width (a W8 layer is
8-bit words on both), accumulator bits at each side's `acc_bits` (32 on both bundled configs).

Exact shortcuts (`shortcuts=True`, the default): where the SNN provably computes the same integers
as the QANN under the same fault, the neuromorphic accuracy is computed by the faulty QANN and the
configuration says so (`computed_as`).  That holds for faults fixed before the run (weight bit
flips, stuck units, dead outputs: the SNN is then the exact conversion of a faulty QANN) and for
accumulator flips under a one-step coding (graded: the flip hits the one step); tests/test_faults.py
checks each.  Faults that depend on time or events (accumulator flips in a binary run, spike
packets) always run the SNN.

Cost (the grid is rates x seeds x configurations): every batch whose fault draws come out empty
is the fault-free batch bit for bit, so its fault-free result is reused without running it
(`Injector.predict`, `converters.faults.predict_event_faults`: the same seeded draws as the run);
results are shared between accelerators whose faults act on the same integers (the same stored
weight width and accumulator width; spike-packet faults do not depend on the chip); torch runs
on one thread (on a shared CPU more threads were 10x slower, not faster).  Codings that take many
steps (binary: hundreds) run their SNN on `snn_limit` examples; one-step codings (graded,
sigma-delta) and the QANN on `limit`.  An accelerator that cannot run a coding (Loihi 1 has no
graded payloads, `neuro_hw.coding_problem`) is listed under "skipped" with the reason.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from snmfm.faults import (KINDS, MITIGATION_FOR, FaultError, FaultSpec, Injector, Mitigation, check_fault,
                          check_rate, flip_weights, rng_for, sample_positions)

SCHEMA = "snmfm.faults/1"
DEFAULT_RATES = (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
DEFAULT_HW = None       # every registered accelerator (neuro_hw.accelerators())
DEFAULT_CODINGS = None  # every registered coding (converters.codings.names())
EVENT_KINDS = ("spike-drop", "spike-duplicate", "payload-bitflip")


def side_of(hw: str) -> str:
    """'conventional' or 'neuromorphic': the accelerator kind of a registered name."""
    import neuro_hw
    cfg = neuro_hw.load_hw_config(hw)
    kind_of = getattr(neuro_hw, "kind_of", None)  # the accelerator registry (C2) when present
    if kind_of is not None:
        k = kind_of(cfg)
        return "conventional" if k == "conventional" else "neuromorphic"
    from neuro_hw.neuromorphic import NeuromorphicConfig
    return "neuromorphic" if isinstance(cfg, NeuromorphicConfig) else "conventional"


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of `values` (zero width when they agree)."""
    from scipy import stats
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if v.size < 2 or float(v.std()) == 0.0:
        return m, m, m
    h = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - h, m + h


def loss_rate(rates, means, clean: float, points: float = 0.01) -> dict:
    """Rate at which the mean accuracy first drops `points` below `clean`: {"rate", "bracket"};
    rate interpolated linearly in log10(rate) between the measured rates around the crossing;
    rate None and a one-sided bracket when the grid does not cross (or crosses at its first rate)."""
    target = clean - points
    for i, (r, m) in enumerate(zip(rates, means)):
        if m <= target + 1e-12:
            if i == 0:
                return {"rate": None, "bracket": [None, r], "crossed": True,
                        "note": f"already {points * 100:.0f} point(s) down at the lowest rate"}
            r0, m0 = rates[i - 1], means[i - 1]
            if r0 <= 0:
                return {"rate": r, "bracket": [r0, r], "crossed": True}
            f = (m0 - target) / (m0 - m) if m0 != m else 1.0
            lr = math.log10(r0) + f * (math.log10(r) - math.log10(r0))
            return {"rate": 10 ** lr, "bracket": [r0, r], "crossed": True}
    return {"rate": None, "bracket": [rates[-1], None], "crossed": False,
            "note": f"not {points * 100:.0f} point(s) down at the highest rate"}


def loss_rate_ci(rates, accuracies, clean: float, points: float = 0.01, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> list:
    """Bootstrap interval [low, high] of the `loss_rate` over seeds: `accuracies[i][s]` is the
    accuracy at rates[i] under seed s; the seeds are resampled with replacement `n_boot` times and
    the loss rate of each resample's mean curve taken.  A bound is a rate, or a string: below the
    lowest rate (the
    resample is already down there: "<r0"); ">rN": above the highest rate (not reached)."""
    a = np.asarray(accuracies, dtype=float)            # [rates, seeds]
    S = a.shape[1]
    idx = np.random.default_rng(seed).integers(0, S, size=(n_boot, S))
    means = a[:, idx].mean(axis=2).T                    # [n_boot, rates]
    vals = []
    for m in means:
        r = loss_rate(rates, list(m), clean, points)
        vals.append(r["rate"] if r["rate"] is not None else (-math.inf if r["crossed"] else math.inf))
    lo, hi = np.quantile(np.asarray(vals), [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")

    def bound(v):
        if v == -math.inf:
            return f"<{rates[0]:g}"
        return f">{rates[-1]:g}" if v == math.inf else float(v)
    return [bound(lo), bound(hi)]


def _chip(cfg):
    """The structural chip (cores, widths, accumulators) of a neuromorphic config: a Loihi config
    maps onto the idealised chip's structure (`mapping_config`)."""
    m = getattr(cfg, "mapping_config", None)
    return m() if callable(m) else cfg


class _Setup:
    """The task's QANN, held-out batches, SNNs per coding with their fault-free results (steps,
    correct per batch, events per chunk), hardware facts (stored widths, accumulator widths, the
    chip's mapping) and the workload."""

    def __init__(self, task_name, *, hw, codings, limit, snn_limit, w_bits, a_bits, calib, seed, batch_size):
        from converters import convert
        from converters.faults import events_of_run
        from converters.qann_cache import cached_qann
        from converters.workflow import resolve_model
        import neuro_hw
        from neuro_hw.neuromorphic.mapping import map_workload, stored_weight_bits
        from snmfm.faults import layer_shapes
        torch.manual_seed(seed)
        self.task, model, qann, self.info = resolve_model(task_name)
        self.qann = qann or cached_qann(self.task, model, self.info, w_bits=w_bits, a_bits=a_bits, calib=calib,
                                        seed=seed)  # the QANN `snmfm convert` builds (calibration cached)
        self.qann.eval()
        self.memo: dict = {}
        self.stats = {"evaluated": 0, "reused": 0, "skipped_batches": 0, "run_batches": 0}
        self.batches = list(self.task.batches("test", batch_size, seed=seed, limit=limit))
        self.multi_batches = list(self.task.batches("test", batch_size, seed=seed, limit=snn_limit or limit))
        self.shapes = layer_shapes(self.qann, *self.batches[0])
        self.sides = {h: side_of(h) for h in hw}
        self.cfg = {h: neuro_hw.load_hw_config(h) for h in hw}
        self.clean_batches = [self._score(self.qann(*b), b) for b in self.batches]   # (correct, n)
        self.clean_qann = self._acc(self.clean_batches)
        self.snn, self.runs = {}, {}
        for c in codings:
            snn = convert(self.qann, coding=c)
            self.snn[c] = snn
            runs = []
            for i, b in enumerate(self.batches_of(c)):
                r, chunks = events_of_run(snn, *b, index=i, record=False)
                runs.append({"steps": r.steps, "score": self._score(r.output, b), "chunks": chunks})
            self.runs[c] = runs
        self.payload_bits = {c: {n: int(u.payload_bits) for n, u in s.neurons()} for c, s in self.snn.items()}
        self.clean_snn = {c: self._acc([r["score"] for r in runs]) for c, runs in self.runs.items()}
        first = self.batches[0]
        self.workload = neuro_hw.extract_workload(self.qann, *[x[:1] for x in first], name=self.task.name)
        self.layer_wbits = sorted({int(m.w_bits) for m in self.qann.modules() if getattr(m, "w_int", None) is not None})
        self.w_bits, self.acc_bits, self.mapping, self.cores = {}, {}, {}, {}
        for h, cfg in self.cfg.items():
            if self.sides[h] == "neuromorphic":
                chip = _chip(cfg)
                self.acc_bits[h] = int(chip.cores.acc_bits)
                self.cores[h] = int(chip.cores.count)
                self.w_bits[h] = {int(m.w_bits): stored_weight_bits(int(m.w_bits), tuple(chip.cores.weight_bits))
                                  for m in self.qann.modules() if getattr(m, "w_int", None) is not None}
                self.mapping[h] = map_workload(self.workload, chip)
            else:
                self.acc_bits[h] = int(cfg.acc_bits)
                self.w_bits[h] = {}

    def batches_of(self, coding):
        """The batches a coding's SNN runs on: all (`limit`) for a one-step coding, `snn_limit`
        for one that takes many steps."""
        if coding is None or self.snn[coding].coding_spec.one_step:
            return self.batches
        return self.multi_batches

    def _score(self, out, b) -> tuple:
        ok, k = self.task.score(out, b)
        return float(ok), int(k)

    @staticmethod
    def _acc(scores) -> float:
        n = sum(k for _, k in scores)
        return sum(ok for ok, _ in scores) / max(n, 1)

    def accuracy(self, fn, batches) -> float:
        with torch.no_grad():
            return self._acc([self._score(fn(*b), b) for b in batches])


def _stored_width(setup, hw) -> int | None:
    widths = set(setup.w_bits[hw].values())
    if len(widths) > 1:
        raise FaultError(f"layers of mixed stored widths {sorted(widths)} on {hw!r}: not supported by the study")
    return widths.pop() if widths else None


def _add(log: dict, more: dict) -> None:
    for k in ("trials", "faults"):
        log[k] = log.get(k, 0) + int(more.get(k, 0))


def _accuracy_once(setup, hw, coding, spec: FaultSpec, mit: Mitigation, shortcuts: bool) -> tuple[float, dict, str]:
    """(accuracy, fault log, computed_as) of one rate and seed."""
    side = setup.sides[hw]
    kind = spec.kind
    one_step = coding is not None and setup.snn[coding].coding_spec.one_step
    qann_exact = kind in ("weight-bitflip", "stuck-neuron", "dead-core") or (kind == "acc-bitflip" and one_step)
    use_qann = side == "conventional" or (shortcuts and qann_exact)
    how = "qann" if side == "conventional" else ("qann (exact shortcut)" if use_qann else f"snn ({coding})")
    width, acc_bits = _stored_width(setup, hw), setup.acc_bits[hw]
    # the width the words are stored at: the chip's, or (conventional) each layer's own w_bits
    eff = width if width is not None else (setup.layer_wbits[0] if len(setup.layer_wbits) == 1 else None)
    if kind == "dead-core":  # the chip's own cores and mapping: not shared
        key = ("dead", hw, coding if not use_qann else None, spec, mit)
    elif use_qann:           # the same faulty QANN computed once for every side with these widths
        key = ("qann", kind, spec, mit, eff, acc_bits)
    elif kind in EVENT_KINDS:  # the network's packets: the chip does not enter
        key = ("snn", coding, kind, spec, mit)
    else:
        key = ("snn", coding, kind, spec, mit, eff, acc_bits)
    if key in setup.memo:
        setup.stats["reused"] += 1
        acc, log = setup.memo[key]
        return acc, dict(log), how
    setup.stats["evaluated"] += 1
    acc, log = _evaluate(setup, hw, None if use_qann else coding, spec, mit, width, acc_bits)
    setup.memo[key] = (acc, log)
    return acc, dict(log), how


def _evaluate(setup, hw, coding, spec: FaultSpec, mit: Mitigation, width, acc_bits) -> tuple[float, dict]:
    """Accuracy and fault log of one fault scenario: on the QANN when `coding` is None, else on
    that coding's SNN.  Batches whose draws are empty reuse the fault-free result (exact)."""
    from converters import convert
    from converters.faults import FaultyRun, predict_event_faults
    from neuro_hw.protection import lost_outputs
    kind = spec.kind
    batches = setup.batches if coding is None else setup.batches_of(coding)
    clean = setup.clean_batches if coding is None else [r["score"] for r in setup.runs[coding]]
    if kind == "weight-bitflip":  # the stored words (synapse memory or weight SRAM) hold the faulty weights
        q = copy.deepcopy(setup.qann)
        log = flip_weights(q, spec.rate, spec.seed, stored_bits=width, ecc=mit.ecc)
        if log["effective"] == 0:  # no data bit left flipped: the fault-free model, bit for bit
            setup.stats["skipped_batches"] += len(batches)
            return setup._acc(clean), log
        setup.stats["run_batches"] += len(batches)
        if coding is None:
            return setup.accuracy(lambda *x: q(*x), batches), log
        snn = convert(q, coding=coding)
        return setup.accuracy(lambda *x: snn.run(*x, record=False).output, batches), log
    dead = None
    if kind == "dead-core":
        d = sample_positions(setup.cores[hw], spec.rate, rng_for(spec.seed, "dead-core"))
        log = {"trials": setup.cores[hw], "faults": int(d.size)}
        if mit.remap or d.size == 0:  # the mapping avoids them: the arithmetic is untouched
            setup.stats["skipped_batches"] += len(batches)
            return setup._acc(clean), log
        dead = lost_outputs(setup.mapping[hw], setup.workload, d)
    if coding is None:
        runner = Injector(setup.qann, spec, mitigation=mit, acc_bits=acc_bits, dead_outputs=dead)
    else:
        runner = FaultyRun(setup.snn[coding], spec, mitigation=mit, acc_bits=acc_bits, dead_outputs=dead)
    log = {"trials": 0, "faults": 0}
    scores = []
    for i, (b, c) in enumerate(zip(batches, clean)):
        B = next(x for x in b if isinstance(x, torch.Tensor)).shape[0]
        if kind in EVENT_KINDS:
            pred = predict_event_faults(setup.runs[coding][i]["chunks"], spec, i, setup.payload_bits[coding])
        else:
            inj = runner if coding is None else runner.inj
            pred = inj.predict(B, i, setup.shapes)
        if pred["faults"] == 0:      # no fault drawn in this batch: its fault-free result, bit for bit
            _add(log, pred)
            scores.append(c)
            setup.stats["skipped_batches"] += 1
            continue
        setup.stats["run_batches"] += 1
        with torch.no_grad():
            if coding is None:
                runner.batch(B, 1, i)
                before = dict(runner.log)
                with runner:
                    out = setup.qann(*b)
                _add(log, {k: runner.log[k] - before.get(k, 0) for k in ("trials", "faults")})
            else:
                before = dict(runner.log)
                out = runner.run(*b, n_steps=setup.runs[coding][i]["steps"], index=i, record=False).output
                _add(log, {k: runner.log[k] - before.get(k, 0) for k in ("trials", "faults")})
        scores.append(setup._score(out, b))
    if kind == "stuck-neuron":   # persistent units, drawn once: every batch predicts the same ones
        log = {"trials": pred["trials"], "faults": pred["faults"]}
    elif kind == "dead-core":
        log = {"trials": setup.cores[hw], "faults": int(d.size)}
    return setup._acc(scores), log


def _has(kind, side, coding) -> bool:
    try:
        check_fault(kind, 0.0, side, coding)
    except FaultError:
        return False
    return True


def configurations(setup, kinds, codings) -> tuple[list, list]:
    """(every (accelerator, coding, kind) a fault can hit, from the kinds table; the (accelerator,
    coding) pairs left out because the chip cannot run the coding, with the reason)."""
    import neuro_hw
    out, skipped = [], []
    for hw, side in setup.sides.items():
        for coding in (codings if side == "neuromorphic" else (None,)):
            if coding is not None:
                why = neuro_hw.coding_problem(hw, coding)
                if why:
                    skipped.append({"accelerator": hw, "coding": coding, "reason": why})
                    continue
            for kind in kinds:
                try:
                    check_fault(kind, 0.0, side, coding)
                except FaultError:
                    continue
                out.append({"accelerator": hw, "side": side, "coding": coding, "kind": kind})
    return out, skipped


def fault_study(task: str, *, kinds=None, rates=DEFAULT_RATES, seeds: int = 10, hw=DEFAULT_HW,
                codings=DEFAULT_CODINGS, limit: int | None = None, snn_limit: int | None = None,
                w_bits: int = 8, a_bits: int = 8, calib: int = 64, seed: int = 0, batch_size: int = 128,
                shortcuts: bool = True, mitigations=(False, True), threads: int | None = 1,
                progress=None) -> dict:
    """The whole study for one task (module docstring); a JSON-able dict.  hw / codings: None =
    every registered one; snn_limit: examples for SNN runs of codings that take many steps
    (binary); threads: torch threads during the study (None: leave as is)."""
    import neuro_hw
    from converters import codings as codings_mod
    hw = list(neuro_hw.accelerators() if hw is None else hw)
    codings = list(codings_mod.names() if codings is None else codings)
    kinds = list(kinds or KINDS)
    for k in kinds:
        if k not in KINDS:
            raise FaultError(f"unknown fault kind {k!r}; known kinds: {', '.join(KINDS)}")
    rates = [check_rate(r) for r in rates]
    if len(rates) < 1 or sorted(rates) != list(rates) or len(set(rates)) != len(rates):
        raise FaultError(f"rates must be distinct and increasing, got {rates}")
    if seeds < 1:
        raise FaultError(f"--seeds must be >= 1, got {seeds}")
    for c in codings:
        codings_mod.get(c)  # unknown coding -> ValueError listing the registered ones
    sides = {h: side_of(h) for h in hw}
    for k in kinds:
        if not any(_has(k, sd, c) for sd in sides.values() for c in (codings if sd == "neuromorphic" else (None,))):
            sd = "neuromorphic" if "neuromorphic" in sides.values() else next(iter(sides.values()))
            check_fault(k, 0.0, sd, codings[0] if sd == "neuromorphic" and codings else None)
            raise FaultError(f"fault kind {k!r} exists on none of the accelerators {', '.join(sides)} "
                             f"with codings {', '.join(codings)}")
    t0, c0 = time.perf_counter(), time.process_time()
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _study(task, kinds=kinds, rates=rates, seeds=seeds, hw=hw, codings=codings, limit=limit,
                      snn_limit=snn_limit, w_bits=w_bits, a_bits=a_bits, calib=calib, seed=seed,
                      batch_size=batch_size, shortcuts=shortcuts, mitigations=mitigations, progress=progress,
                      t0=t0, c0=c0)
    finally:
        torch.set_num_threads(prev_threads)


def _study(task, *, kinds, rates, seeds, hw, codings, limit, snn_limit, w_bits, a_bits, calib, seed, batch_size,
           shortcuts, mitigations, progress, t0, c0) -> dict:
    setup = _Setup(task, hw=hw, codings=codings, limit=limit, snn_limit=snn_limit, w_bits=w_bits,
                   a_bits=a_bits, calib=calib, seed=seed, batch_size=batch_size)
    for c, a in setup.clean_snn.items():  # the reference must hold before any fault is blamed
        if setup.batches_of(c) is setup.batches and a != setup.clean_qann:
            raise RuntimeError(f"fault-free SNN ({c}) accuracy {a} differs from the QANN's {setup.clean_qann}")
    setup_s = time.perf_counter() - t0
    confs, skipped = configurations(setup, kinds, codings)
    costs = _costs(setup, confs)
    out = []
    for conf in confs:
        for mitigated in mitigations:
            mit = MITIGATION_FOR[conf["kind"]] if mitigated else Mitigation()
            if mitigated and not mit.any:
                continue
            pts, how = [], None
            for r in rates:
                accs, faults, trials = [], 0, 0
                for s in range(seeds):
                    spec = FaultSpec(conf["kind"], r, seed=1000 * seed + s)
                    a, log, how = _accuracy_once(setup, conf["accelerator"], conf["coding"], spec, mit, shortcuts)
                    accs.append(a)
                    faults += int(log.get("faults", log.get("flipped", 0)))
                    trials += int(log.get("trials", log.get("bits", 0)))
                m, lo, hi = t_interval(accs)
                pts.append({"rate": r, "mean": m, "ci95": [lo, hi], "accuracies": accs,
                            "faults_per_seed": faults / seeds, "trials_per_seed": trials / seeds})
                if progress:
                    progress(f"{conf['accelerator']}/{conf['coding'] or '-'}/{conf['kind']}"
                             f"{'+' + ','.join(mit.names()) if mit.any else ''} rate {r:g}: {m:.4f} "
                             f"({time.perf_counter() - t0:.0f} s)")
            on_qann = how.startswith("qann")
            clean = setup.clean_qann if on_qann else setup.clean_snn[conf["coding"]]
            n_ex = sum(len(b.targets) for b in (setup.batches if on_qann else setup.batches_of(conf["coding"])))
            key = (conf["accelerator"], conf["coding"], tuple(mit.names()))
            out.append({**conf, "unit": KINDS[conf["kind"]].unit, "where": KINDS[conf["kind"]].where[conf["side"]],
                        "mitigation": mit.names(), "computed_as": how, "clean_accuracy": clean,
                        "n_examples": n_ex, "points": pts,
                        "loss_1pt": {**loss_rate(rates, [p["mean"] for p in pts], clean),
                                     "ci95": loss_rate_ci(rates, [p["accuracies"] for p in pts], clean)},
                        "overhead": costs.get(key)})
    return {"schema": SCHEMA, "task": setup.task.name, "model": setup.info, "w_bits": w_bits, "a_bits": a_bits,
            "rates": rates, "seeds": seeds, "n_examples": sum(len(b.targets) for b in setup.batches),
            "n_examples_snn": sum(len(b.targets) for b in setup.multi_batches),
            "clean_accuracy": {"qann": setup.clean_qann, **{f"snn:{c}": a for c, a in setup.clean_snn.items()}},
            "stored_weight_bits": {h: (_stored_width(setup, h) or w_bits) for h in setup.sides},
            "acc_bits": setup.acc_bits, "shortcuts": shortcuts, "configurations": out, "skipped": skipped,
            "work": dict(setup.stats), "setup_s": setup_s,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def _costs(setup, confs) -> dict:
    """Energy/storage overhead of each mitigation, charged on one inference's HwReport per
    (accelerator, coding) by neuro_hw.protection; remap: the chip re-simulated around the dead
    cores of the highest studied rate is not charged here (its accuracy is the fault-free one)."""
    import neuro_hw
    from neuro_hw.protection import charge
    out, reports = {}, {}
    for conf in confs:
        mit = MITIGATION_FOR[conf["kind"]]
        hw, coding = conf["accelerator"], conf["coding"]
        key = (hw, coding, tuple(mit.names()))
        if key in out or not (mit.ecc or mit.guard or mit.tmr):
            continue
        if (hw, coding) not in reports:
            trace = None
            if conf["side"] == "neuromorphic":
                b = setup.batches_of(coding)[0]
                trace = setup.snn[coding].run(*[x[:8] for x in b]).trace
            reports[(hw, coding)] = neuro_hw.simulate(setup.workload, trace, hw)
        rep = charge(reports[(hw, coding)], setup.workload, mit)
        p = rep.meta["protection"]
        out[key] = {"energy_pj_per_inference": reports[(hw, coding)].energy_pj, "mitigation_pj": p["energy_pj"],
                    "energy_overhead": p["energy_overhead"], "storage_bytes": p["storage_bytes"],
                    "storage_fraction_of_weights": p["storage_fraction_of_weights"]}
    return out


def merge_studies(results: list) -> dict:
    """One study from parts run separately (e.g. one process per coding on a shared machine): the
    same task, model widths, rates, seeds and held-out examples are required; configurations are
    concatenated (a configuration present twice is an error) and ordered by accelerator, coding,
    kind; work and CPU time add up, wall time is the longest part's (they ran side by side)."""
    if not results:
        raise ValueError("merge_studies needs at least one study")
    base = results[0]
    same = ("schema", "task", "w_bits", "a_bits", "rates", "seeds", "n_examples", "shortcuts")
    for r in results[1:]:
        diff = [k for k in same if r.get(k) != base.get(k)]
        if diff:
            raise ValueError(f"cannot merge fault studies that differ in {', '.join(diff)}")
    q = {r["clean_accuracy"]["qann"] for r in results}
    if len(q) > 1:
        raise ValueError(f"cannot merge fault studies with different fault-free QANN accuracies {sorted(q)}")
    seen, confs = set(), []
    for r in results:
        for c in r["configurations"]:
            key = (c["accelerator"], c["coding"], c["kind"], tuple(c["mitigation"]))
            if key in seen:
                raise ValueError(f"configuration {key} is in more than one study")
            seen.add(key)
            confs.append(c)
    kind_order = {k: i for i, k in enumerate(KINDS)}
    confs.sort(key=lambda c: (c["side"] != "conventional", c["accelerator"], c["coding"] or "",
                              kind_order.get(c["kind"], 99), len(c["mitigation"])))
    skipped = {(s["accelerator"], s["coding"]): s for r in results for s in r.get("skipped", [])}
    # a pair skipped in one part (e.g. loihi1 + graded) but run in none stays skipped
    run_pairs = {(c["accelerator"], c["coding"]) for c in confs}
    out = dict(base)
    out.update({
        "n_examples_snn": max(r["n_examples_snn"] for r in results),
        "clean_accuracy": {k: v for r in results for k, v in r["clean_accuracy"].items()},
        "stored_weight_bits": {k: v for r in results for k, v in r["stored_weight_bits"].items()},
        "acc_bits": {k: v for r in results for k, v in r["acc_bits"].items()},
        "configurations": confs,
        "skipped": [s for k, s in skipped.items() if k not in run_pairs],
        "work": {k: sum(r.get("work", {}).get(k, 0) for r in results) for k in base.get("work", {})},
        "setup_s": sum(r.get("setup_s", 0.0) for r in results),
        "wall_s": max(r["wall_s"] for r in results), "cpu_s": sum(r.get("cpu_s", 0.0) for r in results),
        "parts": [{"configurations": len(r["configurations"]), "wall_s": r["wall_s"], "cpu_s": r.get("cpu_s")}
                  for r in results]})
    return out
