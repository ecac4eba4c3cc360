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
DEFAULT_HW = ("conventional", "neuromorphic")
DEFAULT_CODINGS = ("binary", "graded")
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


class _Setup:
    """The task's QANN, held-out batches, SNNs per coding with their fault-free step counts,
    hardware facts (stored widths, accumulator widths, the chip's mapping) and the workload."""

    def __init__(self, task_name, *, hw, codings, limit, snn_limit, w_bits, a_bits, calib, seed, batch_size):
        from converters import convert
        from converters.qann_cache import cached_qann
        from converters.workflow import resolve_model
        import neuro_hw
        from neuro_hw.neuromorphic.mapping import map_workload, stored_weight_bits
        torch.manual_seed(seed)
        self.task, model, qann, self.info = resolve_model(task_name)
        self.qann = qann or cached_qann(self.task, model, self.info, w_bits=w_bits, a_bits=a_bits, calib=calib,
                                        seed=seed)  # the QANN `snmfm convert` builds (calibration cached)
        self.qann.eval()
        self.memo: dict = {}
        self.batches = list(self.task.batches("test", batch_size, seed=seed, limit=limit))
        self.snn_batches = list(self.task.batches("test", batch_size, seed=seed, limit=snn_limit or limit))
        self.sides = {h: side_of(h) for h in hw}
        self.cfg = {h: neuro_hw.load_hw_config(h) for h in hw}
        self.clean_qann = self.accuracy(lambda *x: self.qann(*x), self.batches)
        self.snn, self.steps, self.clean_snn = {}, {}, {}
        for c in codings:
            snn = convert(self.qann, coding=c)
            self.snn[c] = snn
            steps, correct, n = [], 0.0, 0
            for b in self.snn_batches:
                r = snn.run(*b, record=False)
                steps.append(r.steps)
                ok, k = self.task.score(r.output, b)
                correct, n = correct + ok, n + k
            self.steps[c], self.clean_snn[c] = steps, correct / max(n, 1)
        first = self.batches[0]
        self.workload = neuro_hw.extract_workload(self.qann, *[x[:1] for x in first], name=self.task.name)
        self.w_bits = {}
        self.acc_bits = {}
        self.mapping = {}
        for h, cfg in self.cfg.items():
            if self.sides[h] == "neuromorphic":
                self.acc_bits[h] = int(cfg.cores.acc_bits)
                self.w_bits[h] = {int(m.w_bits): stored_weight_bits(int(m.w_bits), tuple(cfg.cores.weight_bits))
                                  for m in self.qann.modules() if getattr(m, "w_int", None) is not None}
                self.mapping[h] = map_workload(self.workload, cfg)
            else:
                self.acc_bits[h] = int(cfg.acc_bits)
                self.w_bits[h] = {}

    @torch.no_grad()
    def accuracy(self, fn, batches) -> float:
        correct, n = 0.0, 0
        for b in batches:
            ok, k = self.task.score(fn(*b), b)
            correct, n = correct + ok, n + k
        return correct / max(n, 1)


def _stored_width(setup, hw) -> int | None:
    widths = set(setup.w_bits[hw].values())
    if len(widths) > 1:
        raise FaultError(f"layers of mixed stored widths {sorted(widths)} on {hw!r}: not supported by the study")
    return widths.pop() if widths else None


def _accuracy_once(setup, hw, coding, spec: FaultSpec, mit: Mitigation, shortcuts: bool) -> tuple[float, dict, str]:
    """(accuracy, fault log, computed_as) of one rate and seed."""
    from converters import convert
    from converters.faults import FaultyRun
    from neuro_hw.protection import lost_outputs
    side = setup.sides[hw]
    kind = spec.kind
    one_step = coding is not None and setup.snn[coding].coding_spec.one_step
    qann_exact = kind in ("weight-bitflip", "stuck-neuron", "dead-core") or (kind == "acc-bitflip" and one_step)
    use_qann = side == "conventional" or (shortcuts and qann_exact)
    how = "qann" if side == "conventional" else ("qann (exact shortcut)" if use_qann else f"snn ({coding})")
    if use_qann and kind != "dead-core":  # the same faulty QANN computed once for both sides
        key = (kind, spec.rate, spec.seed, spec.stuck, mit, _stored_width(setup, hw), setup.acc_bits[hw])
        if key not in setup.memo:
            setup.memo[key] = _accuracy_qann(setup, hw, spec, mit)
        acc, log = setup.memo[key]
        return acc, log, how
    batches = setup.batches if use_qann else setup.snn_batches
    acc_bits = setup.acc_bits[hw]
    if kind == "weight-bitflip":  # the chip's synapse memory holds the faulty weights
        q = copy.deepcopy(setup.qann)
        log = flip_weights(q, spec.rate, spec.seed, stored_bits=_stored_width(setup, hw), ecc=mit.ecc)
        snn = convert(q, coding=coding)
        return setup.accuracy(lambda *x: snn.run(*x, record=False).output, batches), log, how
    dead = None
    if kind == "dead-core":
        cores = setup.cfg[hw].cores.count
        d = sample_positions(cores, spec.rate, rng_for(spec.seed, "dead-core"))
        log = {"trials": cores, "faults": int(d.size)}
        if mit.remap or d.size == 0:  # the mapping avoids them: the arithmetic is untouched
            return (setup.clean_qann if use_qann else setup.clean_snn[coding]), log, how
        dead = lost_outputs(setup.mapping[hw], setup.workload, d)
    if use_qann:
        inj = Injector(setup.qann, spec, mitigation=mit, acc_bits=acc_bits, dead_outputs=dead)

        def fn(*x):
            inj.batch(x[0].shape[0], 1)
            with inj:
                return setup.qann(*x)
        acc = setup.accuracy(fn, batches)
        return acc, (log if kind == "dead-core" else inj.log), how
    fr = FaultyRun(setup.snn[coding], spec, mitigation=mit, acc_bits=acc_bits, dead_outputs=dead)
    steps = iter(setup.steps[coding])
    acc = setup.accuracy(lambda *x: fr.run(*x, n_steps=next(steps), record=False).output, batches)
    return acc, (log if kind == "dead-core" else fr.log), how


def _has(kind, side, coding) -> bool:
    try:
        check_fault(kind, 0.0, side, coding)
    except FaultError:
        return False
    return True


def _accuracy_qann(setup, hw, spec: FaultSpec, mit: Mitigation) -> tuple[float, dict]:
    """Accuracy and fault log of the QANN under a weight, accumulator or stuck-unit fault."""
    if spec.kind == "weight-bitflip":
        q = copy.deepcopy(setup.qann)
        log = flip_weights(q, spec.rate, spec.seed, stored_bits=_stored_width(setup, hw), ecc=mit.ecc)
        return setup.accuracy(lambda *x: q(*x), setup.batches), log
    inj = Injector(setup.qann, spec, mitigation=mit, acc_bits=setup.acc_bits[hw])

    def fn(*x):
        inj.batch(x[0].shape[0], 1)
        with inj:
            return setup.qann(*x)
    return setup.accuracy(fn, setup.batches), inj.log


def configurations(setup, kinds, codings) -> list[dict]:
    """Every (accelerator, coding, kind) a fault can hit, from the kinds table."""
    out = []
    for hw, side in setup.sides.items():
        for coding in (codings if side == "neuromorphic" else (None,)):
            for kind in kinds:
                try:
                    check_fault(kind, 0.0, side, coding)
                except FaultError:
                    continue
                out.append({"accelerator": hw, "side": side, "coding": coding, "kind": kind})
    return out


def fault_study(task: str, *, kinds=None, rates=DEFAULT_RATES, seeds: int = 10, hw=DEFAULT_HW,
                codings=DEFAULT_CODINGS, limit: int | None = None, snn_limit: int | None = None,
                w_bits: int = 8, a_bits: int = 8, calib: int = 64, seed: int = 0, batch_size: int = 128,
                shortcuts: bool = True, mitigations=(False, True), progress=None) -> dict:
    """The whole study for one task (module docstring); a JSON-able dict."""
    kinds = list(kinds or KINDS)
    for k in kinds:
        if k not in KINDS:
            raise FaultError(f"unknown fault kind {k!r}; known kinds: {', '.join(KINDS)}")
    rates = [check_rate(r) for r in rates]
    if len(rates) < 1 or sorted(rates) != list(rates) or len(set(rates)) != len(rates):
        raise FaultError(f"rates must be distinct and increasing, got {rates}")
    if seeds < 1:
        raise FaultError(f"--seeds must be >= 1, got {seeds}")
    from converters import codings as codings_mod
    for c in codings:
        codings_mod.get(c)  # unknown coding -> ValueError listing the registered ones
    sides = {h: side_of(h) for h in hw}
    for k in kinds:
        if not any(_has(k, sd, c) for sd in sides.values() for c in (codings if sd == "neuromorphic" else (None,))):
            sd = "neuromorphic" if "neuromorphic" in sides.values() else next(iter(sides.values()))
            check_fault(k, 0.0, sd, codings[0] if sd == "neuromorphic" and codings else None)
            raise FaultError(f"fault kind {k!r} exists on none of the accelerators {', '.join(sides)} "
                             f"with codings {', '.join(codings)}")
    t0 = time.perf_counter()
    setup = _Setup(task, hw=list(hw), codings=list(codings), limit=limit, snn_limit=snn_limit, w_bits=w_bits,
                   a_bits=a_bits, calib=calib, seed=seed, batch_size=batch_size)
    for c, a in setup.clean_snn.items():  # the reference must hold before any fault is blamed
        if setup.snn_batches is setup.batches and a != setup.clean_qann:
            raise RuntimeError(f"fault-free SNN ({c}) accuracy {a} differs from the QANN's {setup.clean_qann}")
    confs = configurations(setup, kinds, codings)
    costs = _costs(setup, confs)
    out = []
    for conf in confs:
        for mitigated in mitigations:
            mit = MITIGATION_FOR[conf["kind"]] if mitigated else Mitigation()
            if mitigated and not mit.any:
                continue
            pts, how = [], None
            clean = setup.clean_qann if conf["side"] == "conventional" else None
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
                             f"{'+' + ','.join(mit.names()) if mit.any else ''} rate {r:g}: {m:.4f}")
            if clean is None:
                clean = setup.clean_qann if how.startswith("qann") else setup.clean_snn[conf["coding"]]
            key = (conf["accelerator"], conf["coding"], tuple(mit.names()))
            out.append({**conf, "unit": KINDS[conf["kind"]].unit, "where": KINDS[conf["kind"]].where[conf["side"]],
                        "mitigation": mit.names(), "computed_as": how, "clean_accuracy": clean,
                        "points": pts, "loss_1pt": loss_rate(rates, [p["mean"] for p in pts], clean),
                        "overhead": costs.get(key)})
    return {"schema": SCHEMA, "task": setup.task.name, "model": setup.info, "w_bits": w_bits, "a_bits": a_bits,
            "rates": rates, "seeds": seeds, "n_examples": sum(len(b.targets) for b in setup.batches),
            "n_examples_snn": sum(len(b.targets) for b in setup.snn_batches),
            "clean_accuracy": {"qann": setup.clean_qann, **{f"snn:{c}": a for c, a in setup.clean_snn.items()}},
            "stored_weight_bits": {h: (_stored_width(setup, h) or w_bits) for h in setup.sides},
            "acc_bits": setup.acc_bits, "shortcuts": shortcuts, "configurations": out,
            "wall_s": time.perf_counter() - t0}


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
                b = setup.snn_batches[0]
                trace = setup.snn[coding].run(*[x[:8] for x in b]).trace
            reports[(hw, coding)] = neuro_hw.simulate(setup.workload, trace, hw)
        rep = charge(reports[(hw, coding)], setup.workload, mit)
        p = rep.meta["protection"]
        out[key] = {"energy_pj_per_inference": reports[(hw, coding)].energy_pj, "mitigation_pj": p["energy_pj"],
                    "energy_overhead": p["energy_overhead"], "storage_bytes": p["storage_bytes"],
                    "storage_fraction_of_weights": p["storage_fraction_of_weights"]}
    return out
