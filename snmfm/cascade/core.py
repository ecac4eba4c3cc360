"""`Cascade`: answer with the cheapest member whose self-test passes, else escalate.

A ladder of stages, cheapest first; each stage is one member (or two for the agreement test) and a
self-test; the last stage is the reference (the largest member) and always answers.  A query
stops at the first stage whose confidence reaches that stage's threshold.  Thresholds come from
`calibrate` (see snmfm.cascade.risk for the methods and their guarantees) on held-out queries.

Everything that decides is offline-capable: `record_members` runs each member once over a split,
and `simulate` replays the cascade for any thresholds on those records (what calibration and the
accuracy-versus-cost sweeps use); `run` executes it for real, calling later members only on the
escalated queries, and returns the same predictions and call log.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from snmfm.cascade.log import CallLog, MemberCall, SelfTestCall
from snmfm.cascade.members import (CascadeError, Member, Readout, Records, check_members,
                                   input_bits, readout_for, record_members)
from snmfm.cascade.risk import METHODS, min_queries, valid_candidates
from snmfm.cascade.selftests import SELF_TESTS, Probe, confidence, self_test_ops

# Candidate thresholds on the [0, 1] confidence scale, fixed before seeing any data (so that
# Learn-then-Test's candidate set is data-independent): a coarse linear part and a fine
# geometric part towards 1, where confident members live.
GRID = tuple(sorted({0.0, 1.0, *(i / 20 for i in range(1, 20)),
                     *(1 - 2 ** (-k / 2) for k in range(3, 41))}))
NEVER = math.inf  # threshold that accepts nothing: every query escalates


class CalibrationError(CascadeError):
    """No threshold except 'escalate everything' meets the tolerance; `best` is the smallest
    tolerance that a non-trivial threshold would have met."""

    def __init__(self, msg: str, best: float):
        super().__init__(msg)
        self.best = best


@dataclass
class Stage:
    members: tuple[Member, ...]
    self_test: str | None
    probe: Probe | None = None

    @property
    def answerer(self) -> Member:
        """The member whose answer the stage returns (the larger of an agreeing pair)."""
        return self.members[-1]


@dataclass
class Calibration:
    """What `calibrate` chose and why (all numbers on the calibration queries)."""

    thresholds: list[float]
    method: str
    tolerance: float
    delta: float
    search: str
    n: int
    bound: float
    accuracy: float
    reference_accuracy: float
    escalation_rate: float
    expected_cost: float
    reference_cost: float
    drop: float
    n_candidates: int
    n_valid: int
    min_queries: int
    probe: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        d = asdict(self)
        d["thresholds"] = [None if math.isinf(t) else t for t in self.thresholds]
        return d


@dataclass
class CascadeResult:
    predictions: torch.Tensor          # [B, A] answers
    exit_stage: torch.Tensor           # [B] stage that answered
    confidence: torch.Tensor           # [S - 1, B], NaN where the stage did not run
    log: CallLog
    outputs: torch.Tensor | None = None  # classify: the answering member's logits [B, K]


class Cascade:
    """stages: Members cheapest first, the largest (reference) last; an entry that is a pair of
    Members is an agreement stage.  self_test: one name for every non-final stage or one per
    non-final stage (SELF_TESTS).  readout: how members answer (`Cascade.for_task` sets it)."""

    def __init__(self, stages: Sequence, self_test: str | Sequence[str] = "max_prob",
                 thresholds: Sequence[float] | None = None, readout: Readout | None = None,
                 name: str = "cascade"):
        stages = [tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in stages]
        if len(stages) < 2:
            raise CascadeError("a cascade needs at least two stages (a cheap member and the reference)")
        for s in stages:
            for m in s:
                if not isinstance(m, Member):
                    raise CascadeError(f"cascade stages hold snmfm.cascade.Member objects, got "
                                       f"{type(m).__name__} (use model_member(name, model))")
        if len(stages[-1]) != 1:
            raise CascadeError("the last stage is the reference: exactly one member")
        tests = [self_test] * (len(stages) - 1) if isinstance(self_test, str) else list(self_test)
        if len(tests) != len(stages) - 1:
            raise CascadeError(f"{len(stages) - 1} non-final stages but {len(tests)} self-tests")
        for i, (s, t) in enumerate(zip(stages, tests)):
            if t not in SELF_TESTS:
                raise CascadeError(f"unknown self-test {t!r}; allowed: {', '.join(SELF_TESTS)}")
            if (t == "agreement") != (len(s) == 2) or len(s) > 2:
                raise CascadeError(f"stage {i}: the agreement self-test needs exactly a pair of members "
                                   f"and a pair needs the agreement test (got {len(s)} member(s), {t!r})")
        names = [m.name for s in stages for m in s]
        if len(set(names)) != len(names):
            raise CascadeError(f"member names must be unique, got {names}")
        self.stages = [Stage(s, t) for s, t in zip(stages, tests + [None])]
        self.readout = readout or Readout("classify")
        self.name = name
        self.thresholds = [NEVER] * (len(stages) - 1) if thresholds is None else [float(t) for t in thresholds]
        if len(self.thresholds) != len(stages) - 1:
            raise CascadeError(f"{len(stages) - 1} non-final stages but {len(self.thresholds)} thresholds")
        self.calibration: Calibration | None = None

    @classmethod
    def for_task(cls, task, stages: Sequence, **kw) -> "Cascade":
        return cls(stages, readout=readout_for(task), name=kw.pop("name", f"{task.name}-cascade"), **kw)

    # -- structure ----------------------------------------------------------------------------
    @property
    def members(self) -> list[Member]:
        return [m for s in self.stages for m in s.members]

    @property
    def reference(self) -> Member:
        return self.stages[-1].members[0]

    def check(self, *inputs) -> dict:
        """Every member answers the same task on `inputs` (else CascadeError)."""
        return check_members(self.members, inputs, self.readout)

    def record(self, batches: Iterable) -> Records:
        return record_members(self.members, batches, self.readout,
                              features=any(s.self_test == "probe" for s in self.stages))

    def describe(self) -> dict:
        return {"name": self.name, "readout": self.readout.kind,
                "stages": [{"members": [m.describe() for m in s.members], "self_test": s.self_test}
                           for s in self.stages],
                "thresholds": [None if math.isinf(t) else t for t in self.thresholds]}

    def self_test_ops(self, stage: int, n_outputs: int) -> dict:
        s = self.stages[stage]
        feat = s.probe.dim - 3 if s.probe is not None else 0
        return self_test_ops(s.self_test, n_outputs, self.readout.positions, feat)

    # -- offline replay on records -------------------------------------------------------------
    def confidences(self, rec: Records) -> torch.Tensor:
        """[S - 1, N] confidence of each non-final stage on every recorded query."""
        out = []
        for s in self.stages[:-1]:
            a = rec.members[s.members[0].name]
            other = None
            if len(s.members) == 2:
                b = rec.members[s.members[1].name]
                other = (b.logits, b.preds)
            out.append(confidence(s.self_test, a.logits, a.preds, a.features, s.probe, other))
        return torch.stack(out)

    def _exits(self, conf: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        """conf [S-1, N], th [C, S-1] -> exit stage [C, N]."""
        S = len(self.stages)
        acc = conf[None] >= th[..., None]
        first = acc.to(torch.int8).argmax(1)
        return torch.where(acc.any(1), first, torch.full_like(first, S - 1))

    def _stage_costs(self, costs: Mapping | None, test_costs: Mapping | Sequence | None) -> np.ndarray:
        """Cumulative cost of a query that exits at each stage."""
        S = len(self.stages)
        per = []
        for i, s in enumerate(self.stages):
            c = sum(_member_cost(m, i, costs) for m in s.members)
            if i < S - 1 and test_costs is not None:
                c += float(test_costs[i])
            per.append(c)
        return np.cumsum(per)

    def simulate(self, rec: Records, thresholds: Sequence[float] | None = None,
                 queries: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, CallLog]:
        """(predictions [N, A], exit stage [N], call log) of the cascade on recorded queries."""
        th = torch.tensor([self.thresholds if thresholds is None else list(thresholds)], dtype=torch.float64)
        conf = self.confidences(rec)
        exit_ = self._exits(conf, th)[0]
        preds = torch.stack([rec.members[s.answerer.name].preds for s in self.stages])
        out = preds[exit_, torch.arange(rec.n)]
        n_out = int(next(iter(rec.members.values())).logits.shape[-1])
        log = self._log(exit_, n_out, th[0].tolist(), int(rec.meta.get("input_bits", 0)))
        return out, exit_, log

    def _log(self, exit_: torch.Tensor, n_outputs: int, thresholds: list, input_bits: int = 0) -> CallLog:
        log = CallLog(int(exit_.numel()), stages=[[m.name for m in s.members] for s in self.stages],
                      thresholds=[None if math.isinf(t) else t for t in thresholds], input_bits=input_bits,
                      exit_stage=[int(e) for e in exit_])
        for i, s in enumerate(self.stages):
            q = torch.nonzero(exit_ >= i).flatten().tolist()
            if not q:
                break
            for m in s.members:
                log.members.append(MemberCall(i, m.name, m.form, m.size, m.placement, q,
                                              self.readout.positions))
            if s.self_test is not None:
                log.self_tests.append(SelfTestCall(i, s.self_test, s.answerer.placement, q,
                                                   self.self_test_ops(i, n_outputs)))
        return log

    # -- calibration ---------------------------------------------------------------------------
    def candidates(self, search: str) -> torch.Tensor:
        """Threshold settings [C, S-1], most conservative first."""
        k = len(self.stages) - 1
        grid = torch.tensor(sorted(GRID, reverse=True), dtype=torch.float64)
        if search == "shared" or k == 1:
            return grid[:, None].repeat(1, k)
        if search == "grid":
            return torch.cartesian_prod(*[grid] * k).reshape(-1, k)
        raise CascadeError(f"unknown threshold search {search!r}; allowed: shared, grid")

    def sweep(self, rec: Records, costs: Mapping | None = None, test_costs=None,
              search: str = "shared") -> list[dict]:
        """Accuracy, escalation and mean cost per query of every candidate threshold setting."""
        th = self.candidates(search)
        exits = self._exits(self.confidences(rec), th)
        right = torch.stack([rec.correct(s.answerer.name) for s in self.stages])
        ok = right.gather(0, exits)
        cum = torch.tensor(self._stage_costs(costs, test_costs))
        cost = cum[exits].mean(1)
        return [{"thresholds": th[c].tolist(), "accuracy": float(ok[c].double().mean()),
                 "escalation_rate": float((exits[c] > 0).double().mean()), "cost": float(cost[c])}
                for c in range(len(th))]

    def calibrate(self, data, tolerance: float = 0.005, method: str = "ltt", delta: float = 0.1,
                  search: str = "shared", costs: Mapping | None = None, test_costs=None,
                  probe_fit: str = "crossfit", probe_fraction: float = 0.5, probe_folds: int = 5,
                  seed: int = 0, on_infeasible: str = "raise") -> Calibration:
        """Choose thresholds on held-out labelled queries (`Records` or batches with targets).

        tolerance: allowed accuracy drop against the reference (0.005 = half a point).
        method: ltt | crc | empirical (snmfm.cascade.risk); delta: ltt's error probability.
        search: shared (one threshold for every stage: a single path, fixed-sequence testing) or
        grid (one per stage, Bonferroni).  costs: {member name: cost per query} (e.g. energy on an
        accelerator; default member.meta['cost'], else 10**stage); test_costs: per non-final stage.
        The chosen setting is the cheapest valid one.  A probe self-test is fitted on the same
        queries: probe_fit 'crossfit' (default) calibrates the thresholds on out-of-fold probe
        scores (`probe_folds` folds; every query used, the deployed probe fitted on all of them --
        the guarantee then holds up to the probe's refit), 'split' fits it on a seeded
        `probe_fraction` and calibrates on the rest (the guarantee holds as stated, on fewer queries).
        on_infeasible: raise (CalibrationError) or escalate (keep escalating every query)."""
        if method not in METHODS:
            raise CascadeError(f"unknown calibration method {method!r}; allowed: {', '.join(METHODS)}")
        if on_infeasible not in ("raise", "escalate"):
            raise CascadeError(f"on_infeasible must be 'raise' or 'escalate', got {on_infeasible!r}")
        rec = data if isinstance(data, Records) else self.record(data)
        rec, probe_info, oof = self._fit_probes(rec, probe_fit, probe_fraction, probe_folds, seed)
        th = self.candidates(search)
        conf = self.confidences(rec)
        for i, c in oof.items():
            conf[i] = c
        exits = self._exits(conf, th)
        right = torch.stack([rec.correct(s.answerer.name) for s in self.stages])
        ok = right.gather(0, exits)
        ref_ok = right[-1]
        losses = (~ok & ref_ok[None]).numpy().astype(np.int64)
        acc = ok.double().mean(1).numpy()
        ref_acc = float(ref_ok.double().mean())
        drops = ref_acc - acc
        valid, bound = valid_candidates(losses, drops, tolerance, method, delta, search == "shared" or th.shape[1] == 1)
        # a setting that stops no calibration query early is 'escalate everything' in effect
        stops = (exits < len(self.stages) - 1).any(1).numpy()
        valid &= stops
        cum = self._stage_costs(costs, test_costs)
        cost = cum[exits.numpy()].mean(1)
        need = min_queries(tolerance, method, delta)
        if not valid.any():
            best = float(bound[stops].min()) if stops.any() else float("inf")
            msg = (f"no threshold keeps the cascade within tolerance {tolerance:g} of its largest member "
                   f"{self.reference.name!r} on {rec.n} calibration queries (method {method}"
                   f"{f', delta {delta:g}' if method == 'ltt' else ''}, search {search}): the best "
                   f"achievable is {best:.4g}. ")
            if method != "empirical" and rec.n < need:
                msg += (f"Certifying {tolerance:g} needs at least {need} calibration queries even with "
                        f"no loss at all. ")
            msg += ("Raise the tolerance, use method='empirical' (no guarantee), calibrate on more "
                    "queries, or pass on_infeasible='escalate' to escalate every query.")
            if on_infeasible == "raise":
                raise CalibrationError(msg, best)
            chosen, thresholds = None, [NEVER] * th.shape[1]
        else:
            idx = np.flatnonzero(valid)
            chosen = int(idx[np.lexsort((np.arange(len(idx)), -acc[idx], cost[idx]))[0]])
            thresholds = th[chosen].tolist()
        self.thresholds = thresholds
        esc = float((exits[chosen] > 0).double().mean()) if chosen is not None else 1.0
        self.calibration = Calibration(
            thresholds=list(thresholds), method=method, tolerance=tolerance, delta=delta, search=search,
            n=rec.n, bound=float(bound[chosen]) if chosen is not None else 0.0,
            accuracy=float(acc[chosen]) if chosen is not None else ref_acc, reference_accuracy=ref_acc,
            escalation_rate=esc, expected_cost=float(cost[chosen]) if chosen is not None else float(cum[-1]),
            reference_cost=_member_cost(self.reference, len(self.stages) - 1, costs),
            drop=float(drops[chosen]) if chosen is not None else 0.0,
            n_candidates=int(len(th)), n_valid=int(valid.sum()), min_queries=int(min(need, 10**9)),
            probe=probe_info)
        return self.calibration

    def _fit_probes(self, rec: Records, how: str, fraction: float, folds: int,
                    seed: int) -> tuple[Records, dict, dict]:
        """Fit the probes; returns (queries for the thresholds, info, {stage: out-of-fold conf})."""
        idx = [i for i, s in enumerate(self.stages) if s.self_test == "probe"]
        if not idx:
            return rec, {}, {}
        perm = torch.randperm(rec.n, generator=torch.Generator().manual_seed(seed))

        def fit(s, part: Records) -> Probe:
            r = part.members[s.members[0].name]
            try:
                return Probe.fit(r.logits, r.features, part.correct(s.members[0].name))
            except ValueError as e:
                raise CalibrationError(f"stage {s.members[0].name!r}: {e}", math.inf) from None
        if how == "split":
            if not 0 < fraction < 1:
                raise CascadeError(f"probe_fraction must be in (0, 1), got {fraction}")
            n_fit = int(round(rec.n * fraction))
            part, rest = rec.subset(perm[:n_fit]), rec.subset(perm[n_fit:])
            info = {"fit": "split", "n_fit": n_fit, "n_thresholds": rest.n, "seed": seed}
            for i in idx:
                self.stages[i].probe = fit(self.stages[i], part)
                info[self.stages[i].members[0].name] = self.stages[i].probe.meta
            return rest, info, {}
        if how != "crossfit":
            raise CascadeError(f"probe_fit must be 'crossfit' or 'split', got {how!r}")
        if not 2 <= folds <= rec.n:
            raise CascadeError(f"probe_folds must be in 2..{rec.n}, got {folds}")
        oof = {i: torch.zeros(rec.n, dtype=torch.float64) for i in idx}
        for k in range(folds):
            held = perm[k::folds]
            keep = torch.ones(rec.n, dtype=torch.bool)
            keep[held] = False
            train, test = rec.subset(torch.nonzero(keep).flatten()), rec.subset(held)
            for i in idx:
                s = self.stages[i]
                probe = fit(s, train)
                r = test.members[s.members[0].name]
                oof[i][held] = probe(r.logits, r.features)
        info = {"fit": "crossfit", "folds": folds, "n_fit": rec.n, "n_thresholds": rec.n, "seed": seed}
        for i in idx:
            self.stages[i].probe = fit(self.stages[i], rec)
            info[self.stages[i].members[0].name] = self.stages[i].probe.meta
        return rec, info, oof

    # -- execution -----------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, *inputs) -> CascadeResult:
        """Answer a batch: later members run only on the queries escalated to them."""
        B = int(inputs[0].shape[0])
        S = len(self.stages)
        remaining = torch.arange(B)
        preds, outputs = None, None
        exit_ = torch.full((B,), S - 1, dtype=torch.long)
        conf_all = torch.full((S - 1, B), float("nan"), dtype=torch.float64)
        n_out = None
        for i, s in enumerate(self.stages):
            sub = tuple(x[remaining] for x in inputs)
            answers = [self.readout.answer(m.fn, sub) for m in s.members]
            p, lg = answers[-1]
            n_out = int(lg.shape[-1])
            if preds is None:
                preds = torch.zeros((B, p.shape[1]), dtype=p.dtype)
                outputs = torch.zeros((B, n_out), dtype=torch.float64) if self.readout.kind == "classify" else None
            if i == S - 1:
                keep = torch.ones(len(remaining), dtype=torch.bool)
            else:
                first_p, first_lg = answers[0]
                feats = None
                if s.self_test == "probe" and s.members[0].features is not None:
                    feats = s.members[0].features(*self.readout.feature_inputs(sub)).to(torch.float64)
                other = (lg, p) if len(s.members) == 2 else None
                c = confidence(s.self_test, first_lg, first_p, feats, s.probe, other)
                conf_all[i, remaining] = c
                keep = c >= self.thresholds[i]
            done = remaining[keep]
            preds[done] = p[keep]
            if outputs is not None:
                outputs[done] = lg[keep, 0]
            exit_[done] = i
            remaining = remaining[~keep]
            if len(remaining) == 0:
                break
        log = self._log(exit_, n_out, self.thresholds, input_bits=input_bits(inputs))
        return CascadeResult(preds, exit_, conf_all, log, outputs)

    def __call__(self, *inputs):
        r = self.run(*inputs)
        return r.outputs if r.outputs is not None else r.predictions

    @torch.no_grad()
    def evaluate(self, batches: Iterable) -> dict:
        """Accuracy of the cascade on labelled batches, with the merged call log."""
        log, right, n = None, 0, 0
        for batch in batches:
            r = self.run(*tuple(batch))
            t = batch.targets.reshape(len(batch.targets), -1).long()
            right += int((r.predictions == t).all(-1).sum())
            n += len(t)
            log = r.log if log is None else log.extend(r.log)
        if log is None:
            raise CascadeError("no queries to evaluate (empty batches)")
        return {"accuracy": right / n, "n": n, "escalation_rate": log.escalation_rate,
                "exit_fractions": log.exit_fractions(), "log": log}


def _member_cost(m: Member, stage: int, costs: Mapping | None) -> float:
    if costs is not None and m.name in costs:
        return float(costs[m.name])
    if "cost" in m.meta:
        return float(m.meta["cost"])
    return float(10 ** stage)
