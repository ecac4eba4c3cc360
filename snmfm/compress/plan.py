"""Mixed precision: choose each layer's w_bits and a_bits by an exact integer program.

`plan_bits(model, budget, costs, target, sensitivity)` solves

    minimise    sum_l sum_o  x[l,o] * sens[l,o]
    subject to  sum_o x[l,o] = 1                      (one option o = (w_bits, a_bits) per layer)
                sum_l sum_o x[l,o] * cost[l,o] + sum_A z[A] * fixed[A] <= budget
                sum_A z[A] = 1,   x[l,o] <= sum_{A >= a_bits(o)} z[A]
                x, z binary

with scipy.optimize.milp (HiGHS, zero MIP gap: the optimum, not a heuristic).  sens[l,o] is the
measured sensitivity of quantising layer l's weights to w_bits plus that of its input activations to
a_bits (`snmfm.compress.sensitivity`; additive, as in HAWQ-v2/v3), made non-increasing in bits.
z selects the *largest* activation bit width in the model, A: on the neuromorphic chip the number of
time steps -- and with it synchronisation and static energy -- grows with the largest number of
activation levels anywhere in the network, so that cost is charged once, for the whole model.

Costs are data (../DESIGN: "Layers talk through data"): a cost table in the format of
`snmfm.compress.cost_table` (`size_costs(model)` for "size"; `eval.hw_costs` makes the energy
tables from Workloads and the hardware models).  The plan is a `BitPlan`, a JSON file a user can read and edit;
``quantize(model, overrides=plan.layers)`` applies it.

Granularity: per layer.  Per-head bit widths would need a scale and bit width per head in the QANN
(`Quantizer` and the integer weights have one bit width per layer), so they are left out; the head
level of the sensitivity table shows where they would pay.
"""
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from snmfm.compress.cost_table import (TARGETS, _fixed, _lookup, check_costs, check_target, parse_budget,
                                       plan_cost, size_costs, uniform_cost)
from snmfm.compress.quant import WEIGHT_LAYERS, quant_layers
from snmfm.compress.sensitivity import SensitivityTable, monotone

__all__ = ["BitPlan", "InfeasibleBudget", "TARGETS", "build_problem", "min_cost", "plan_bits", "plan_cost",
           "size_costs", "solve", "uniform_cost"]


class InfeasibleBudget(ValueError):
    """No bit plan fits the budget; `min_budget` is the smallest budget that has one."""

    def __init__(self, msg: str, min_budget: float):
        super().__init__(msg)
        self.min_budget = min_budget


@dataclass
class BitPlan:
    """Per-layer bit widths plus how they were chosen.  `layers`: {layer: {"w_bits", "a_bits"}}
    (activation-only layers have just "a_bits"): the ``overrides`` of `quantize`."""

    layers: dict[str, dict[str, int]]
    target: str = "size"
    budget: float | None = None
    cost: float | None = None
    objective: float | None = None
    meta: dict = field(default_factory=dict)

    SCHEMA = "snmfm.bitplan/1"

    def __post_init__(self):
        for name, o in self.layers.items():
            bad = set(o) - {"w_bits", "a_bits"}
            if bad:
                raise ValueError(f"bit plan layer {name!r} has unknown key(s) {sorted(bad)}; allowed: a_bits, w_bits")
            for k, v in o.items():
                if not isinstance(v, int) or isinstance(v, bool) or v < 2:
                    raise ValueError(f"bit plan layer {name!r}: {k} must be an integer >= 2, got {v!r}")

    def to_dict(self) -> dict:
        return {"schema": self.SCHEMA, "target": self.target, "budget": self.budget, "cost": self.cost,
                "objective": self.objective, "layers": self.layers, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "BitPlan":
        if d.get("schema") != cls.SCHEMA:
            raise ValueError(f"not an snmfm bit plan (schema {d.get('schema')!r}, expected {cls.SCHEMA!r})")
        if not isinstance(d.get("layers"), dict):
            raise ValueError("bit plan needs 'layers': {layer: {'w_bits': b, 'a_bits': b}}")
        return cls(layers={k: dict(v) for k, v in d["layers"].items()}, target=d.get("target", "size"),
                   budget=d.get("budget"), cost=d.get("cost"), objective=d.get("objective"),
                   meta=d.get("meta", {}))

    def save(self, path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return p

    @classmethod
    def load(cls, path) -> "BitPlan":
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"bit plan {p} not found")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"bit plan {p} is not valid JSON: {e}") from None

    def check(self, model: nn.Module) -> None:
        """Every layer of the plan exists in `model` (as `quantize` will require)."""
        layers = quant_layers(model)
        unknown = [k for k in self.layers if k not in layers]
        if unknown:
            raise ValueError(f"bit plan names unknown layer(s) {unknown}; layers: {', '.join(layers)}")


# ---- the integer program -----------------------------------------------------------------------
@dataclass
class _Problem:
    layers: list[str]
    options: list[list[tuple[int | None, int]]]
    sens: list[np.ndarray]
    cost: list[np.ndarray]
    a_levels: list[int]
    fixed: np.ndarray  # per a_levels entry


def _layer_sens(table: dict[str, dict[int, float]], name: str, bits, kind: str) -> dict[int, float]:
    if name not in table:
        raise KeyError(f"sensitivity table has no {kind} entry for layer {name!r}")
    got = monotone(table[name])
    missing = [b for b in bits if b not in got]
    if missing:
        raise KeyError(f"sensitivity table has no {kind} value at {missing} bits for layer {name!r} "
                       f"(has {sorted(got)}); measure those bit widths")
    return got


def build_problem(model: nn.Module, costs: Mapping, sens: SensitivityTable, w_choices, a_choices,
                  fixed_layers: Mapping | None = None) -> _Problem:
    layers = quant_layers(model)
    sw, sa = sens.layer_table("w"), sens.layer_table("a")
    fixed_layers = dict(fixed_layers or {})
    names, options, s_list, c_list = [], [], [], []
    for name, layer in layers.items():
        has_w = isinstance(layer, WEIGHT_LAYERS)
        if name not in costs["layers"]:
            raise KeyError(f"cost table has no entry for layer {name!r}; make it from this model")
        opts_w = [None] if not has_w else list(w_choices)
        opts_a = list(a_choices)
        if name in fixed_layers:
            f = fixed_layers[name]
            opts_w = [f["w_bits"]] if has_w and "w_bits" in f else opts_w
            opts_a = [f["a_bits"]] if "a_bits" in f else opts_a
        ws = _layer_sens(sw, name, [w for w in opts_w if w], "weight") if has_w else {}
        as_ = _layer_sens(sa, name, opts_a, "activation")
        opts = list(itertools.product(opts_w, opts_a))
        names.append(name)
        options.append(opts)
        s_list.append(np.array([(ws[w] if w else 0.0) + as_[a] for w, a in opts]))
        c_list.append(np.array([_lookup(costs["layers"][name], w, a, name) for w, a in opts]))
    a_levels = sorted({a for opts in options for _, a in opts})
    fixed = np.array([_fixed(costs, A) for A in a_levels])
    return _Problem(names, options, s_list, c_list, a_levels, fixed)


def min_cost(p: _Problem) -> float:
    """Smallest total cost of any plan (the smallest feasible budget)."""
    best = np.inf
    for A, f in zip(p.a_levels, p.fixed):
        tot = f
        for opts, c in zip(p.options, p.cost):
            ok = [ci for (w, a), ci in zip(opts, c) if a <= A]
            if not ok:
                tot = np.inf
                break
            tot += min(ok)
        best = min(best, tot)
    return float(best)


def solve(p: _Problem, budget: float, exclude=()) -> tuple[list[int], int, float, float] | None:
    """Exact MILP.  Returns (option index per layer, index of the largest-a level, objective, cost),
    or None when no plan is left.  exclude: earlier solutions (option index per layer) to cut off,
    so repeated calls enumerate the best plans in order."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    n_x = sum(len(o) for o in p.options)
    n_z = len(p.a_levels)
    n = n_x + n_z
    scale = max(abs(budget), 1e-30)
    sens = np.concatenate(p.sens)
    cost = np.concatenate([*p.cost, p.fixed])
    # Secondary objective: among plans of equal sensitivity, more bits (sensitivities at high bit
    # widths sit at the measurement's noise floor and tie after `monotone`; more bits never hurt,
    # and the budget is there to be spent).  Its weight is far below any sensitivity difference
    # that matters, so the primary optimum is unchanged.
    bits = np.concatenate([[(w or 0) + a for w, a in opts] for opts in p.options])
    s_span = max(float(sens.max() - sens.min()), 1e-30) if len(sens) else 1.0
    tie = 1e-9 * s_span / max(float(bits.sum()), 1.0)
    c = np.concatenate([sens - tie * bits, np.zeros(n_z)])
    rows, lo, hi = [], [], []
    off = 0
    for opts in p.options:  # one option per layer
        r = np.zeros(n)
        r[off:off + len(opts)] = 1
        rows.append(r)
        lo.append(1)
        hi.append(1)
        off += len(opts)
    r = np.zeros(n)
    r[n_x:] = 1  # one largest-a level
    rows.append(r)
    lo.append(1)
    hi.append(1)
    off = 0
    for opts in p.options:  # a layer's a_bits cannot exceed the largest level chosen
        for j, (_, a) in enumerate(opts):
            r = np.zeros(n)
            r[off + j] = 1
            for k, A in enumerate(p.a_levels):
                if A >= a:
                    r[n_x + k] = -1
            rows.append(r)
            lo.append(-np.inf)
            hi.append(0)
        off += len(opts)
    rows.append(cost / scale)  # the budget
    lo.append(-np.inf)
    hi.append(budget / scale)
    starts = np.cumsum([0] + [len(o) for o in p.options])[:-1]
    for prev in exclude:  # no-good cut: not all of an earlier solution's choices again
        r = np.zeros(n)
        r[[int(s0 + j) for s0, j in zip(starts, prev)]] = 1
        rows.append(r)
        lo.append(-np.inf)
        hi.append(len(prev) - 1)
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=np.ones(n),
               bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0, "presolve": True})
    if res.status == 2:  # infeasible
        return None
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"MILP solver failed: {res.message}")
    x = np.round(res.x).astype(int)
    choice, off = [], 0
    for opts in p.options:
        choice.append(int(np.argmax(x[off:off + len(opts)])))
        off += len(opts)
    # the largest level actually used (z may sit above it when that costs nothing extra)
    k = p.a_levels.index(max(p.options[i][j][1] for i, j in enumerate(choice)))
    obj = float(sum(p.sens[i][j] for i, j in enumerate(choice)))
    total = float(sum(p.cost[i][j] for i, j in enumerate(choice)) + p.fixed[k])
    return choice, k, obj, total


def plan_bits(model: nn.Module, budget, costs: Mapping | None = None, target: str = "size", *,
              sensitivity: SensitivityTable | None = None, data=None, choices=(2, 4, 8), a_choices=None,
              fixed_layers: Mapping | None = None, validate=None, top_k: int = 4, scales: dict | None = None,
              measure=None, max_rounds: int = 6, **sensitivity_kw) -> BitPlan:
    """The per-layer bit plan of least total sensitivity whose cost fits `budget`.

    budget: a number in the cost table's unit, or 'w4a4'-style (the cost of that uniform plan).
    costs: a cost table (see the module docstring); None for target 'size' (computed here).
    sensitivity: a SensitivityTable with layer-level w and a rows at every bit width in the
    choices; or pass `data` (batches of model inputs) to measure one now.
    choices / a_choices: bit widths to choose from for weights / activations (a_choices defaults to
    choices).  fixed_layers: {layer: {"w_bits"?, "a_bits"?}} pinned (e.g. keep the head at 8 bits).
    validate: batches of model inputs (other than those the sensitivities came from).  The additive
    sensitivity is a model of the damage; with `validate`, the `top_k` best plans of the program
    (enumerated exactly, with no-good cuts) and the most precise uniform plan within the budget are
    each built as a QANN (the model must be calibrated); the uniform plan (else the program's
    optimum) is returned unless another candidate's output is closer to the float model's (KL) on
    significantly more inputs (sign test) and on average.
    scales: activation-step cache shared with `prepare_qat`.
    measure: optional callable {layer: bits} -> the plan's real cost (e.g. simulated energy, from
    `eval.hw_costs.plan_measure`).  The table is a per-layer linear model; when the simulated cost
    of the program's plan exceeds the budget, the program's budget is tightened by the overshoot and
    it is solved again (at most `max_rounds` times); candidates are kept only if their simulated
    cost fits, and the plan's `cost` is then the simulated one (`meta["predicted_cost"]` the table's).
    A 'w4a4' budget is then the simulated cost of that uniform plan.

    Raises InfeasibleBudget (with the smallest feasible budget) and ValueError for an unknown target."""
    check_target(target)
    w_choices = tuple(sorted({int(b) for b in choices}))
    a_choices = tuple(sorted({int(b) for b in (a_choices or choices)}))
    if costs is None:
        if target != "size":
            raise ValueError(f"target {target!r} needs a cost table from the hardware models: "
                             f"eval.hw_costs.cost_table(model, inputs, {target!r})")
        costs = size_costs(model, w_choices)
    check_costs(costs)
    if costs["target"] != target:
        raise ValueError(f"cost table is for target {costs['target']!r}, not {target!r}")
    if sensitivity is None:
        if data is None:
            raise ValueError("plan_bits needs a sensitivity table or data (batches of model inputs) to measure one")
        from snmfm.compress.sensitivity import sensitivity as measure
        sensitivity = measure(model, data, bits=sorted(set(w_choices) | set(a_choices)), levels=("layer",),
                              **sensitivity_kw)
    p = build_problem(model, costs, sensitivity, w_choices, a_choices, fixed_layers)
    b = parse_budget(budget, costs)
    smallest = min_cost(p)
    unit = costs.get("unit", "")
    if b < smallest * (1 - 1e-12):
        raise InfeasibleBudget(f"no bit plan fits a budget of {b:.6g} {unit} for target {target!r}; "
                               f"the smallest feasible budget is {smallest:.6g} {unit} "
                               f"(choices w={list(w_choices)}, a={list(a_choices)})", smallest)
    measured: dict[str, float] = {}

    def real_cost(layers: dict) -> float:
        key = json.dumps(layers, sort_keys=True)
        if key not in measured:
            measured[key] = float(measure(layers))
        return measured[key]

    uniform_spec = isinstance(budget, str) and bool(re.fullmatch(r"w\d+a\d+", budget.strip().lower()))
    if measure is not None and uniform_spec:  # 'w4a4': what that plan really costs
        b = real_cost(_uniform_layers(p, *parse_key_pair(budget)))
    meta = {"unit": unit, "solver": "scipy.optimize.milp (HiGHS), mip_rel_gap=0",
            "w_choices": list(w_choices), "a_choices": list(a_choices), "min_budget": smallest,
            "sensitivity_metric": sensitivity.metric,
            "uniform_costs": {f"w{c}a{c}": uniform_cost(costs, c, c) for c in sorted(set(w_choices) & set(a_choices))},
            "budget_spec": budget.strip().lower() if uniform_spec else None}
    b_eff, rounds = b, []
    for _ in range(max_rounds if measure is not None else 1):
        found, cuts = [], []
        for _ in range(top_k if validate is not None else 1):
            sol = solve(p, max(b_eff, smallest), cuts)
            if sol is None:
                break
            cuts.append(sol[0])
            found.append(sol)
        cands = [(f"milp#{i + 1}", _layers_of(p, c), o, t) for i, (c, _, o, t) in enumerate(found)]
        cost_of = real_cost if measure is not None else (lambda layers: plan_cost(layers, costs))
        uni = _best_uniform(p, cost_of, b, w_choices, a_choices, fixed_layers) if validate is not None else None
        if uni is not None and all(c[1] != uni[1] for c in cands):
            cands.append(uni)
        if measure is None:
            break
        fits = [c for c in cands if real_cost(c[1]) <= b * (1 + 1e-9)]
        rounds.append({"budget_used": b_eff, "predicted": cands[0][3], "simulated": real_cost(cands[0][1])})
        if any(c[0].startswith("milp") for c in fits):
            cands = fits
            break
        # the table under-predicted (e.g. more time steps than the uniform runs it came from):
        # tighten the program's budget by the measured overshoot and solve again
        b_eff *= 0.98 * b / real_cost(cands[0][1])
        if b_eff < smallest:
            break
    if measure is not None:
        meta["budget_rounds"] = rounds
        cands = [c for c in cands if real_cost(c[1]) <= b * (1 + 1e-9)]
        if not cands:
            raise InfeasibleBudget(f"no bit plan found whose simulated cost fits {b:.6g} {unit} for target "
                                   f"{target!r} (the cost table under-predicts; raise the budget)", smallest)
    ref = next((i for i, c in enumerate(cands) if uni is not None and c[1] == uni[1]), 0)
    best = 0
    if validate is not None:
        rows = _validate(model, cands, validate, scales)
        best = _significantly_best(rows, ref)
        meta["validation"] = {"metric": "kl to float on validate", "candidates": rows,
                              "reference": rows[ref]["source"], "chosen": rows[best]["source"]}
    _, layers, obj, total = cands[best]
    meta["max_a_bits"] = max(o["a_bits"] for o in layers.values())
    if measure is not None:
        meta["predicted_cost"], total = total, real_cost(layers)
    return BitPlan(layers=layers, target=target, budget=b, cost=total, objective=obj, meta=meta)


def parse_key_pair(spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"w(\d+)a(\d+)", str(spec).strip().lower())
    if not m:
        raise ValueError(f"budget {spec!r}: give a number or a uniform plan such as 'w4a4'")
    return int(m.group(1)), int(m.group(2))


def _uniform_layers(p: _Problem, w_bits: int, a_bits: int) -> dict:
    return {name: ({"a_bits": a_bits} if opts[0][0] is None else {"w_bits": w_bits, "a_bits": a_bits})
            for name, opts in zip(p.layers, p.options)}


def _layers_of(p: _Problem, choice) -> dict:
    layers = {}
    for name, opts, j in zip(p.layers, p.options, choice):
        w, a = opts[j]
        layers[name] = {"a_bits": int(a)} if w is None else {"w_bits": int(w), "a_bits": int(a)}
    return layers


def _best_uniform(p: _Problem, cost_of, budget, w_choices, a_choices, fixed_layers):
    """The most precise uniform W{b}A{b} plan (pins applied) that fits the budget, as a candidate."""
    for bits in sorted(set(w_choices) & set(a_choices), reverse=True):
        choice = []
        for name, opts in zip(p.layers, p.options):
            want = [j for j, (w, a) in enumerate(opts) if (w is None or w == bits) and a == bits]
            if not want and name in (fixed_layers or {}):
                want = [0]  # a pinned layer keeps its pinned option
            if not want:
                break
            choice.append(want[0])
        if len(choice) != len(p.layers):
            continue
        layers = _layers_of(p, choice)
        total = cost_of(layers)
        if total <= budget * (1 + 1e-9):
            obj = float(sum(p.sens[i][j] for i, j in enumerate(choice)))
            return f"uniform w{bits}a{bits}", layers, obj, total
    return None


def _per_sample_kl(out, ref):
    import torch.nn.functional as F
    lp, lr = F.log_softmax(out.double(), -1), F.log_softmax(ref.double(), -1)
    kl = (lr.exp() * (lr - lp)).sum(-1)
    return kl.reshape(kl.shape[0], -1).mean(1)


def _validate(model: nn.Module, cands, data, scales) -> list[dict]:
    import torch

    from snmfm.compress.qat import freeze, prepare_qat
    from snmfm.compress.quant import _as_args
    data = [_as_args(x) for x in data]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        refs = [model(*x) for x in data]
        rows = []
        for source, layers, obj, total in cands:
            qann = freeze(prepare_qat(model, overrides=layers, scales=scales))
            kl = torch.cat([_per_sample_kl(qann(*x), r) for x, r in zip(data, refs)])
            rows.append({"source": source, "kl": float(kl.mean()), "objective": obj, "cost": total,
                         "_per_sample": kl})
    model.train(was_training)
    return rows


def _significantly_best(rows: list[dict], ref: int) -> int:
    """Index of the plan to keep: the reference (the uniform plan within the budget, else the
    program's optimum) unless another candidate is closer to the float model on significantly more
    inputs than it is farther (one-sided sign test at 5%) and on average.  Measured KL has sampling
    noise and heavy tails (a few inputs carry most of it); near-identical high-bit plans split the
    inputs evenly, a plan that is better almost everywhere wins: mixed precision is adopted where
    the evidence says it pays."""
    base = rows[ref]["_per_sample"]
    best, best_kl = ref, rows[ref]["kl"]
    for i, r in enumerate(rows):
        if i == ref:
            continue
        d = r["_per_sample"] - base
        wins, losses = int((d < 0).sum()), int((d > 0).sum())
        n = wins + losses
        if n and wins > n / 2 + 1.645 * (n ** 0.5) / 2 and float(d.mean()) < 0 and r["kl"] < best_kl:
            best, best_kl = i, r["kl"]
    for r in rows:
        r.pop("_per_sample")
    return best
