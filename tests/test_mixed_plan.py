"""Measured mixed precision of activations (snmfm.compress.mixed): groups of sites, the knapsack
over probed moves, the measure-and-repair loop, and a plan that builds a QANN the SNN reproduces."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snmfm.compress import calibrate, quantize
from snmfm.compress.mixed import overrides_for, plan_activation_bits, site_groups, solve_knapsack
from snmfm.compress.quant import quant_layers
from snmfm.models import build_model


def _text_model(seed=0):
    torch.manual_seed(seed)
    m = build_model("text", "tiny", vocab_size=64, n_classes=0).eval()
    m.trunk.blocks[0].ln1.ln.weight.data[3] = 30.0  # an outlier channel, as in BERT
    return m


def _inputs(n=6, L=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 64, (n, L), generator=g), torch.ones(n, L, dtype=torch.long)


def test_site_groups_partition_every_quantised_layer_by_kind_block_and_site():
    m = _text_model()
    layers = list(quant_layers(m))
    for by in ("kind", "block", "site"):
        g = site_groups(m, by)
        assert sorted(n for names in g.values() for n in names) == sorted(layers)
    assert set(site_groups(m, "kind")) == {"qkv", "qk", "av", "proj", "fc1", "fc2"}
    assert len(site_groups(m, "site")) == len(layers)
    assert all(k.endswith("blocks.0") for k in site_groups(m, "block"))
    with pytest.raises(ValueError, match="unknown grouping 'head'"):
        site_groups(m, "head")


def test_overrides_name_only_the_moved_groups():
    groups = {"a": ["x.a"], "b": ["x.b", "y.b"]}
    assert overrides_for(groups, {"a": 4, "b": 6}, 4) == {"x.b": {"a_bits": 6}, "y.b": {"a_bits": 6}}


def _brute(probes, base, budget, base_bits):
    q0, c0 = base
    best = (q0, {g: base_bits for g in probes})
    opts = {g: [(base_bits, 0, 0)] + [(b, q - q0, c - c0) for b, (q, c) in d.items()] for g, d in probes.items()}
    for combo in itertools.product(*opts.values()):
        if c0 + sum(x[2] for x in combo) <= budget and q0 + sum(x[1] for x in combo) > best[0] + 1e-12:
            best = (q0 + sum(x[1] for x in combo), {g: x[0] for g, x in zip(opts, combo)})
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.2, 0.2), st.floats(-5, 5), st.floats(-0.2, 0.2), st.floats(-5, 5)),
                min_size=1, max_size=4), st.floats(-3, 6))
def test_knapsack_is_the_exact_optimum_and_greedy_stays_within_budget(moves, slack):
    base = (0.5, 10.0)
    probes = {f"g{i}": {3: (0.5 + a, 10.0 + b), 6: (0.5 + c, 10.0 + d)} for i, (a, b, c, d) in enumerate(moves)}
    budget = 10.0 + slack
    bits, q, c = solve_knapsack(probes, base, budget, 4)
    bq, _ = _brute(probes, base, budget, 4)
    assert q == pytest.approx(bq, abs=1e-9)
    assert c <= budget + 1e-9 or bits == {g: 4 for g in probes}
    gbits, gq, gc = solve_knapsack(probes, base, budget, 4, max_combinations=1)   # the greedy path
    assert gq <= bq + 1e-9 and (gc <= budget + 1e-9 or gbits == {g: 4 for g in probes})


def test_plan_with_additive_effects_finds_the_known_best_plan():
    m = _text_model()
    groups = site_groups(m, "kind")
    gain = {"qkv": 0.05, "fc2": 0.04, "fc1": 0.01, "proj": 0.005, "qk": 0.002, "av": 0.002}  # per bit above 4
    cost_per_bit = {"qkv": 1.0, "fc2": 2.0, "fc1": 3.0, "proj": 1.0, "qk": 0.5, "av": 0.5}
    kind = {n: g for g, names in groups.items() for n in names}

    def widths(ov):
        w = {g: 4 for g in groups}
        for n, o in ov.items():
            w[kind[n]] = o["a_bits"]
        return w

    def quality(ov):
        return 0.8 + sum(gain[g] * (b - 4) for g, b in widths(ov).items())

    def cost(ov):
        return 100.0 + sum(cost_per_bit[g] * (b - 4) for g, b in widths(ov).items())
    plan = plan_activation_bits(m, quality, cost, base_bits=4, options=(3, 5, 6), groups=groups)
    # budget = the base cost: every bit bought must be paid by a bit sold elsewhere.  Best: sell fc1
    # and the cheap-per-gain sites, buy qkv (0.05 per unit cost) -- checked against brute force
    assert plan.cost <= plan.budget == 100.0
    assert plan.quality > plan.base_quality
    best_q = max(quality(overrides_for(groups, dict(zip(groups, bs)), 4))
                 for bs in itertools.product((3, 4, 5, 6), repeat=len(groups))
                 if cost(overrides_for(groups, dict(zip(groups, bs)), 4)) <= 100.0)
    assert plan.quality == pytest.approx(best_q)
    assert plan.bits["qkv"] == 6 and plan.bits["fc1"] == 3
    assert "qkv A6" in plan.summary()


def test_repair_keeps_the_measured_cost_within_budget_when_costs_do_not_add():
    m = _text_model()
    groups = site_groups(m, "kind")
    kind = {n: g for g, names in groups.items() for n in names}

    def widths(ov):
        w = {g: 4 for g in groups}
        for n, o in ov.items():
            w[kind[n]] = o["a_bits"]
        return w

    def quality(ov):
        return sum(widths(ov).values()) / 100

    def cost(ov):  # moves cost more together than apart (e.g. longer settling)
        up = sum(max(0, b - 4) for b in widths(ov).values())
        down = sum(max(0, 4 - b) for b in widths(ov).values())
        return 50.0 + up + 0.5 * up * (up - 1) - down
    plan = plan_activation_bits(m, quality, cost, base_bits=4, options=(3, 5), groups=groups, rounds=6)
    assert plan.cost <= plan.budget
    assert plan.cost == cost(plan.overrides) and plan.quality == quality(plan.overrides)
    assert len(plan.history) >= 2


def test_plan_raises_when_nothing_fits_and_checks_its_arguments():
    m = _text_model()
    with pytest.raises(ValueError, match="no measured plan fits the budget"):
        plan_activation_bits(m, lambda ov: 0.0, lambda ov: 10.0 + len(ov), budget=5.0, options=(6,))
    with pytest.raises(ValueError, match="options must hold widths"):
        plan_activation_bits(m, lambda ov: 0.0, lambda ov: 0.0, options=(4,), base_bits=4)
    with pytest.raises(ValueError, match="unknown layer"):
        plan_activation_bits(m, lambda ov: 0.0, lambda ov: 0.0, groups={"x": ["nope"]})


def test_measured_plan_on_a_real_model_builds_an_exact_qann():
    from converters import convert
    m = _text_model()
    data = [_inputs(seed=s) for s in range(2)]
    calibrate(m, data)
    x = _inputs(n=8, seed=7)
    with torch.no_grad():
        ref = m(*x).double()

    def quality(ov):
        with torch.no_grad():
            return -float((quantize(m, 8, 4, overrides=ov)(*x) - ref).pow(2).mean())

    def cost(ov):  # activation bits summed over sites: a size-like budget
        return sum(ov.get(n, {}).get("a_bits", 4) for n in quant_layers(m))
    plan = plan_activation_bits(m, quality, cost, base_bits=4, options=(3, 6), groups="kind")
    assert plan.cost <= plan.budget and plan.quality >= plan.base_quality
    q = quantize(m, 8, 4, overrides=plan.overrides)
    with torch.no_grad():
        assert torch.equal(convert(q, coding="graded").run(*x).output, q(*x))
