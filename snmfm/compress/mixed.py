"""Measured mixed precision of activations: bits where they are needed, under an energy budget.

`plan_bits` solves an integer program over per-layer costs and sensitivities tabulated from uniform
runs.  On a pretrained transformer at low activation bits that model is too coarse: the error is
spread over every site, and what a site costs on a spiking chip depends on how many of its codes
are non-zero at the bits chosen.  `plan_activation_bits` measures instead:

1. probe: from a base plan (every site at `base_bits`), move one *group* of sites (by default all
   sites of one kind: every block's ``qkv`` input, every ``fc2`` input, ...) to each candidate
   width and measure the plan's quality and cost (`quality(overrides)`, `cost(overrides)`:
   callables the caller supplies, e.g. the embedding cosine on training sentences and the
   simulated energy of the SNN's trace; `snmfm` itself does not know any hardware);
2. solve: the multiple-choice knapsack over the probed moves, assuming their effects add (exact
   enumeration over groups; at most `max_combinations` plans, else a greedy by gain per cost);
3. repair: measure the chosen plan itself; if its real cost exceeds the budget, the excess is
   charged to the prediction and the knapsack is solved again (at most `rounds` times).  The plan
   returned is the best *measured* plan within the budget (the base plan when nothing better fits).

Groups make the probes few (kinds x widths instead of sites x widths) and their effects large
enough to measure; `site_groups(model, "site")` gives one group per site.  The plan is an
``overrides`` mapping: ``quantize(model, w_bits, base_bits, overrides=plan.overrides)`` builds it,
as do `prepare_qat` and `snmfm.tasks.text.recover` (recovery fine-tuning of the planned QANN).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from snmfm.compress.quant import quant_layers

GROUPINGS = ("kind", "block", "site")


def site_groups(model: nn.Module, by: str = "kind") -> dict[str, list[str]]:
    """Quantised sites of `model` (its `quant_layers`, by path) grouped for planning.

    by: "kind" (the layer's last name: qkv, qk, av, proj, fc1, fc2 -- the same role in every
    block), "block" (every site of one block together: the path up to ``blocks.N``) or "site"
    (one group per layer)."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; allowed: {', '.join(GROUPINGS)}")
    groups: dict[str, list[str]] = {}
    for name in quant_layers(model):
        if by == "site":
            key = name
        elif by == "kind":
            key = name.rpartition(".")[2]
        else:
            parts = name.split(".")
            key = next((".".join(parts[:i + 2]) for i, p in enumerate(parts[:-1]) if p == "blocks"),
                       name.rpartition(".")[0] or name)
        groups.setdefault(key, []).append(name)
    if not groups:
        raise ValueError("the model has no quantised layers (QuantLinear / QuantConv2d / QuantMatMul)")
    return groups


def overrides_for(groups: Mapping[str, Sequence[str]], bits: Mapping[str, int], base_bits: int) -> dict:
    """{layer: {"a_bits": b}} for every layer of a group whose width differs from `base_bits`."""
    out = {}
    for g, b in bits.items():
        if int(b) != int(base_bits):
            for name in groups[g]:
                out[name] = {"a_bits": int(b)}
    return out


@dataclass
class MixedPlan:
    """Activation widths per group; `overrides` is what `quantize` / `prepare_qat` take.
    quality / cost: measured on the plan itself; budget: the cost it had to stay within;
    probes: {group: {bits: (quality, cost)}} of the one-group moves from the base plan;
    history: every plan measured (bits, predicted and measured quality and cost)."""

    bits: dict[str, int]
    overrides: dict[str, dict[str, int]]
    base_bits: int
    quality: float
    cost: float
    budget: float
    base_quality: float
    base_cost: float
    probes: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        """Widths per group, e.g. 'qkv A6, fc2 A6, fc1 A3, others A4'."""
        moved = [f"{g} A{b}" for g, b in self.bits.items() if b != self.base_bits]
        return ", ".join(moved + [f"others A{self.base_bits}"]) if moved else f"uniform A{self.base_bits}"

    def to_dict(self) -> dict:
        return {"schema": "snmfm.mixedplan/1", "bits": self.bits, "overrides": self.overrides,
                "base_bits": self.base_bits, "quality": self.quality, "cost": self.cost, "budget": self.budget,
                "base_quality": self.base_quality, "base_cost": self.base_cost,
                "probes": {g: {str(b): list(v) for b, v in d.items()} for g, d in self.probes.items()},
                "history": self.history}


def solve_knapsack(probes: Mapping[str, Mapping[int, tuple[float, float]]], base: tuple[float, float],
                   budget: float, base_bits: int, max_combinations: int = 200_000) -> tuple[dict, float, float]:
    """Per group one width maximising base quality + sum of the probed quality changes, with base
    cost + sum of the probed cost changes <= budget.  Returns (bits, predicted quality, predicted
    cost); the base plan when no move fits.  Exact enumeration when the product of the groups'
    options is at most `max_combinations`, else greedy by quality gained per cost."""
    q0, c0 = base
    groups = list(probes)
    opts = [[(base_bits, 0.0, 0.0)] + [(b, q - q0, c - c0) for b, (q, c) in sorted(probes[g].items())
                                       if b != base_bits] for g in groups]
    n = 1
    for o in opts:
        n *= len(o)
    best = ({g: base_bits for g in groups}, q0, c0)
    if n <= max_combinations:
        for combo in itertools.product(*opts):
            dc = sum(x[2] for x in combo)
            if c0 + dc > budget:
                continue
            dq = sum(x[1] for x in combo)
            if q0 + dq > best[1] + 1e-12:
                best = ({g: x[0] for g, x in zip(groups, combo)}, q0 + dq, c0 + dc)
        return best
    chosen = {g: (base_bits, 0.0, 0.0) for g in groups}   # greedy: best marginal move that fits
    while True:
        cq, cc = sum(v[1] for v in chosen.values()), sum(v[2] for v in chosen.values())
        cand = []
        for g, o in zip(groups, opts):
            for x in o:
                ddq, ddc = x[1] - chosen[g][1], x[2] - chosen[g][2]
                if ddq > 1e-12 and c0 + cc + ddc <= budget:
                    cand.append((ddq / ddc if ddc > 0 else float("inf"), ddq, g, x))
        if not cand:
            return {g: v[0] for g, v in chosen.items()}, q0 + cq, c0 + cc
        _, _, g, x = max(cand)
        chosen[g] = x


def plan_activation_bits(model: nn.Module, quality: Callable[[dict], float], cost: Callable[[dict], float],
                         *, budget: float | None = None, base_bits: int = 4, options: Sequence[int] = (3, 5, 6, 8),
                         groups: Mapping[str, Sequence[str]] | str = "kind", rounds: int = 4,
                         log: Callable[[str], None] | None = None) -> MixedPlan:
    """The best measured activation-bit plan whose cost stays within `budget` (module docstring).

    model: the calibrated float model (only its layer names are read).  quality(overrides) ->
    higher is better; cost(overrides) -> e.g. energy in pJ; both get ``overrides`` for a QANN at
    (w_bits, `base_bits`).  budget: None = the base plan's own cost (the uniform plan's energy).
    groups: a grouping name for `site_groups` or {group: [layer, ...]}."""
    say = log or (lambda s: None)
    if isinstance(groups, str):
        groups = site_groups(model, groups)
    layers = quant_layers(model)
    unknown = sorted({n for names in groups.values() for n in names} - set(layers))
    if unknown:
        raise ValueError(f"groups name unknown layer(s) {unknown}; layers: {', '.join(layers)}")
    options = sorted({int(b) for b in options} - {int(base_bits)})
    if not options or min(options) < 2:
        raise ValueError(f"options must hold widths >= 2 other than base_bits {base_bits}, got {options}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    q0, c0 = float(quality({})), float(cost({}))
    budget = c0 if budget is None else float(budget)
    say(f"base A{base_bits}: quality {q0:.5f}, cost {c0:.4g} (budget {budget:.4g})")
    history = [{"bits": {g: base_bits for g in groups}, "measured_quality": q0, "measured_cost": c0}]
    probes: dict[str, dict[int, tuple[float, float]]] = {}
    for g in groups:
        probes[g] = {}
        for b in options:
            ov = overrides_for(groups, {g: b}, base_bits)
            probes[g][b] = (float(quality(ov)), float(cost(ov)))
            say(f"probe {g} A{b}: quality {probes[g][b][0]:.5f}, cost {probes[g][b][1]:.4g}")
    best = (q0, c0, {g: base_bits for g in groups}) if c0 <= budget else None
    excess = 0.0
    seen = set()
    for r in range(rounds):
        bits, pq, pc = solve_knapsack(probes, (q0, c0), budget - excess, base_bits)
        key = tuple(sorted(bits.items()))
        if key in seen:
            break
        seen.add(key)
        ov = overrides_for(groups, bits, base_bits)
        mq, mc = float(quality(ov)), float(cost(ov))
        history.append({"bits": dict(bits), "predicted_quality": pq, "predicted_cost": pc,
                        "measured_quality": mq, "measured_cost": mc})
        say(f"round {r + 1}: {bits} predicted {pq:.5f} / {pc:.4g}, measured {mq:.5f} / {mc:.4g}")
        if mc <= budget and (best is None or mq > best[0]):
            best = (mq, mc, dict(bits))
        if mc <= budget:
            break
        excess += mc - budget   # the additive model under-predicted the cost: ask for less
    if best is None:
        raise ValueError(f"no measured plan fits the budget {budget:.4g} (the base plan costs {c0:.4g}); "
                         "raise the budget or add narrower options")
    mq, mc, bits = best
    return MixedPlan(bits=bits, overrides=overrides_for(groups, bits, base_bits), base_bits=int(base_bits),
                     quality=mq, cost=mc, budget=budget, base_quality=q0, base_cost=c0, probes=probes,
                     history=history)
