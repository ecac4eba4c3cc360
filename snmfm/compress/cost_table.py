"""The cost-table format `plan_bits` reads (data, so `snmfm` never imports `neuro_hw`).

    {"schema": "snmfm.costs/1", "target": "size" | <accelerator name>, "unit": "bits" | "pJ",
     "layers": {layer path: {"w4a8": cost, ...}},   # "a8": activation-only; "w4": any a_bits; "any"
     "fixed": {"a8": cost, ...} or {"any": cost},    # bit-independent part, by largest a_bits
     "meta": {...}}

`size_costs(model)` makes the "size" table; `eval.hw_costs.cost_table` makes the energy tables.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from torch import nn

from snmfm.compress.quant import WEIGHT_LAYERS, _weight_of, quant_layers

# "size", or any accelerator name: energy targets are data (neuro_hw's registry knows the names;
# snmfm does not).  TARGETS lists the size target and the two default accelerator names.
TARGETS = ("size", "conventional", "neuromorphic")


def check_target(target) -> str:
    """A cost target: "size" or an accelerator name (checked against the registry by whoever makes
    the energy table)."""
    if not isinstance(target, str) or not target.strip() or "," in target:
        raise ValueError(f"target must be 'size' or one accelerator name (e.g. conventional, loihi2), "
                         f"got {target!r}")
    return target
COSTS_SCHEMA = "snmfm.costs/1"
_KEY = re.compile(r"^(?:w(\d+))?(?:a(\d+))?$")


def parse_key(key: str) -> tuple[int | None, int | None]:
    m = _KEY.match(str(key))
    if not m or (m.group(1) is None and m.group(2) is None):
        raise ValueError(f"cost key {key!r} is not of the form 'w<bits>a<bits>', 'w<bits>' or 'a<bits>'")
    return (int(m.group(1)) if m.group(1) else None, int(m.group(2)) if m.group(2) else None)


def option_key(w_bits: int | None, a_bits: int | None) -> str:
    return (f"w{w_bits}" if w_bits else "") + (f"a{a_bits}" if a_bits else "")


def size_costs(model: nn.Module, choices=(2, 3, 4, 5, 6, 7, 8), embed_bits: int = 8) -> dict:
    """Cost table of model size in bits: weight-layer parameters x w_bits; fixed: embedding tables at
    `embed_bits` and every other parameter (biases, norms, positions) at 32 bits."""
    layers = quant_layers(model)
    table, owned = {}, set()
    for name, layer in layers.items():
        if isinstance(layer, WEIGHT_LAYERS):
            w = _weight_of(layer)
            owned.add(id(w))
            table[name] = {f"w{b}": float(w.numel() * b) for b in choices}
        else:
            table[name] = {"any": 0.0}  # activation x activation: no stored weights
    fixed = 0.0
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen = set()
    for p in model.parameters():
        if id(p) in owned or id(p) in seen:
            continue
        seen.add(id(p))
        fixed += p.numel() * (embed_bits if id(p) in emb else 32)
    return {"schema": COSTS_SCHEMA, "target": "size", "unit": "bits", "layers": table,
            "fixed": {"any": fixed}, "meta": {"embed_bits": embed_bits}}


def check_costs(costs: Mapping) -> None:
    if costs.get("schema") != COSTS_SCHEMA:
        raise ValueError(f"not an snmfm cost table (schema {costs.get('schema')!r}, expected {COSTS_SCHEMA!r})")
    check_target(costs.get("target"))
    if (costs.get("target") == "size") != (costs.get("unit") == "bits"):
        raise ValueError(f"cost table for target {costs.get('target')!r} has unit {costs.get('unit')!r}: "
                         "'size' is in bits, an accelerator's energy in pJ")
    for name, opts in costs["layers"].items():
        for k, v in opts.items():
            if k != "any":
                parse_key(k)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"cost of {name!r} option {k!r} is {v}: must be finite and >= 0")


def _lookup(opts: Mapping, w: int | None, a: int, name: str) -> float:
    for key in (option_key(w, a), option_key(w, None), option_key(None, a), "any"):
        if key and key in opts:
            return float(opts[key])
    raise KeyError(f"cost table has no option w_bits={w}, a_bits={a} for layer {name!r} "
                   f"(has {', '.join(opts)})")


def _fixed(costs: Mapping, a_max: int) -> float:
    fx = costs.get("fixed") or {}
    if not fx:
        return 0.0
    if "any" in fx:
        return float(fx["any"])
    key = f"a{a_max}"
    if key not in fx:
        raise KeyError(f"cost table 'fixed' has no entry for largest a_bits={a_max} (has {', '.join(fx)})")
    # More activation levels never make the fixed part cheaper (more time steps): take it
    # non-decreasing, so the program cannot gain by declaring a larger maximum than it uses.
    return max(float(v) for k, v in fx.items() if parse_key(k)[1] <= a_max)


def uniform_cost(costs: Mapping, w_bits: int, a_bits: int) -> float:
    """Total cost of uniform W{w_bits}A{a_bits} under a cost table."""
    total = _fixed(costs, a_bits)
    for name, opts in costs["layers"].items():
        has_w = any(k != "any" and parse_key(k)[0] is not None for k in opts)
        total += _lookup(opts, w_bits if has_w else None, a_bits, name)
    return total


_UNIFORM = re.compile(r"w(\d+)a(\d+)")


def check_budget(budget, w_choices=None, a_choices=None) -> float | str:
    """Validate a budget before any work is done: a finite number (returned as float) or a
    uniform plan 'wXaY' / 'WXAY' (returned normalised, e.g. 'w4a4'), whose bit widths must be among
    the choices the cost table will hold (themselves valid bit widths, 2 to 16)."""
    from snmfm.compress.bits import check_bit_widths
    for choices, what in ((w_choices, "choices"), (a_choices, "a_choices")):
        if choices is not None:
            check_bit_widths(choices, what)
    if isinstance(budget, bool):
        raise ValueError(f"budget {budget!r}: give a number or a uniform plan such as 'w4a4'")
    if not isinstance(budget, (int, float)):
        s = str(budget).strip().lower()
        m = _UNIFORM.fullmatch(s)
        if m:
            from snmfm.compress.bits import MAX_BITS, MIN_BITS, VALID_BITS
            w, a = int(m.group(1)), int(m.group(2))
            for bits, allowed, what in ((w, w_choices, "weight"), (a, a_choices or w_choices, "activation")):
                if not MIN_BITS <= bits <= MAX_BITS:
                    raise ValueError(f"budget {budget!r}: {bits}-bit {what}s are not a valid plan; {VALID_BITS}")
                if allowed is not None and bits not in {int(b) for b in allowed}:
                    raise ValueError(f"budget {budget!r}: {bits}-bit {what}s are not among the bit widths "
                                     f"planned over ({', '.join(str(b) for b in sorted(allowed))}); add "
                                     f"{bits} to the choices (--choices; {VALID_BITS}) or give the budget "
                                     "as a number")
            return s
        try:
            budget = float(s)
        except ValueError:
            raise ValueError(f"budget {str(budget)!r} is neither a number nor a uniform plan such as "
                             "'w4a4' or 'W8A8'") from None
    b = float(budget)
    if not np.isfinite(b):  # too small a number is left to plan_bits: its error names the smallest
        raise ValueError(f"budget must be a finite number, got {budget!r}")
    return b


def parse_budget(budget, costs: Mapping) -> float:
    """A number (in the table's unit), or 'w4a4' / 'W8A8': the cost of that uniform plan."""
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        return float(budget)
    s = str(budget).strip().lower()
    m = _UNIFORM.fullmatch(s)
    if m:
        try:
            return uniform_cost(costs, int(m.group(1)), int(m.group(2)))
        except KeyError as e:
            raise ValueError(f"budget {budget!r}: the cost table has no such uniform plan ({e.args[0]})") from None
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"budget {budget!r}: give a number in {costs.get('unit', 'cost units')} "
                         "or a uniform plan such as 'w4a4'") from None


def plan_cost(plan, costs: Mapping) -> float:
    """Total cost of a plan (a {layer: {w_bits, a_bits}} dict or a BitPlan) under a cost table."""
    layers = getattr(plan, "layers", plan)
    a_max = max(o["a_bits"] for o in layers.values())
    return _fixed(costs, a_max) + sum(_lookup(costs["layers"][n], o.get("w_bits"), o["a_bits"], n)
                                      for n, o in layers.items())
