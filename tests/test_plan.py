"""plan_bits: the MILP is exact (equals brute force), budgets and errors are honest, plans are
readable JSON that `quantize` applies, and mixed-precision QANNs still convert exactly."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from converters import convert
from snmfm.compress import calibrate, quantize
from snmfm.compress.plan import (BitPlan, InfeasibleBudget, plan_bits, plan_cost, size_costs,
                                 uniform_cost)
from snmfm.compress.sensitivity import SensitivityTable, sensitivity
from snmfm.models import build_model
from snmfm.nn import QuantLinear, QuantMatMul


class _Three(nn.Module):
    """Three weight layers and one activation product: a problem small enough to brute-force."""

    def __init__(self):
        super().__init__()
        self.a = QuantLinear(4, 6)
        self.b = QuantLinear(6, 5)
        self.mm = QuantMatMul()
        self.c = QuantLinear(5, 3)

    def forward(self, x):
        h = self.b(self.a(x))
        return self.c(self.mm(h[:, :, None], h[:, None, :]).sum(-1))


LAYERS = ("a", "b", "mm", "c")


def _tables(draw_s, draw_c, draw_f, bits):
    rows = []
    for i, name in enumerate(LAYERS):
        for j, b in enumerate(bits):
            if name != "mm":
                rows.append({"unit": name, "level": "layer", "kind": "w", "bits": b, "value": draw_s[i][j]})
            rows.append({"unit": name, "level": "layer", "kind": "a", "bits": b, "value": draw_s[i][j + len(bits)]})
    sens = SensitivityTable(metric="kl", rows=rows)
    layers = {}
    for i, name in enumerate(LAYERS):
        if name == "mm":
            layers[name] = {f"a{a}": draw_c[i][k] for k, a in enumerate(bits)}
        else:
            layers[name] = {f"w{w}a{a}": draw_c[i][k] for k, (w, a) in enumerate(itertools.product(bits, bits))}
    costs = {"schema": "snmfm.costs/1", "target": "neuromorphic", "unit": "pJ", "layers": layers,
             "fixed": {f"a{a}": f for a, f in zip(bits, draw_f)}}
    return sens, costs


def _brute(sens: SensitivityTable, costs, bits, budget):
    """Best total sensitivity over every plan within `budget`, and the cheapest plan's cost."""
    from snmfm.compress.sensitivity import monotone
    sw, sa = sens.layer_table("w"), sens.layer_table("a")
    per_layer = []  # (sensitivity, cost, a_bits) of every option of every layer
    for name in LAYERS:
        opts = [(None, a) for a in bits] if name == "mm" else list(itertools.product(bits, bits))
        per_layer.append([((monotone(sw[name])[w] if w else 0.0) + monotone(sa[name])[a],
                           plan_cost({name: {"a_bits": a} if w is None else {"w_bits": w, "a_bits": a}},
                                     {**costs, "fixed": {}}), a) for w, a in opts])
    fixed = dict(zip(bits, np.maximum.accumulate([costs["fixed"][f"a{b}"] for b in bits])))
    best, cheapest = None, np.inf
    for combo in itertools.product(*per_layer):
        c = fixed[max(o[2] for o in combo)] + sum(o[1] for o in combo)
        cheapest = min(cheapest, c)
        if c <= budget * (1 + 1e-9):
            s = sum(o[0] for o in combo)
            best = s if best is None else min(best, s)
    return best, cheapest


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=6, max_size=6), min_size=4, max_size=4),
       st.lists(st.lists(st.integers(1, 50), min_size=9, max_size=9), min_size=4, max_size=4),
       st.lists(st.integers(0, 100), min_size=3, max_size=3), st.floats(0.0, 1.0))
def test_milp_plan_equals_brute_force_search(s, c, f, where):
    bits = (2, 4, 8)
    sens, costs = _tables(s, [[float(v) for v in row] for row in c], [float(v) for v in f], bits)
    model = _Three()
    _, cheapest = _brute(sens, costs, bits, np.inf)
    most = max(uniform_cost(costs, 8, 8), cheapest)
    budget = cheapest + where * (most - cheapest) * 1.2
    plan = plan_bits(model, budget, costs, "neuromorphic", sensitivity=sens, choices=bits)
    best, _ = _brute(sens, costs, bits, budget)
    # HiGHS proves optimality within its absolute tolerances (about 1e-7 on the objective): plans
    # whose sensitivities differ by less (hypothesis found a 2^-24 difference) may tie
    assert plan.objective == pytest.approx(best, abs=1e-6)
    assert plan.cost <= budget * (1 + 1e-9)
    assert plan.cost == pytest.approx(plan_cost(plan, costs))


def test_infeasible_budget_error_states_smallest_feasible_budget():
    bits = (2, 4, 8)
    sens, costs = _tables([[0.5] * 6] * 4, [[float(k + 1) for k in range(9)]] * 4, [10.0, 20.0, 40.0], bits)
    _, cheapest = _brute(sens, costs, bits, np.inf)
    with pytest.raises(InfeasibleBudget, match="smallest feasible budget") as e:
        plan_bits(_Three(), cheapest - 1, costs, "neuromorphic", sensitivity=sens, choices=bits)
    assert e.value.min_budget == pytest.approx(cheapest)
    plan = plan_bits(_Three(), cheapest, costs, "neuromorphic", sensitivity=sens, choices=bits)
    assert plan.cost == pytest.approx(cheapest)


def test_a_malformed_target_is_refused():
    # targets are data: "size" or one accelerator name (the registry lives in neuro_hw, not here)
    for bad in ("", "loihi1,loihi2", None):
        with pytest.raises(ValueError, match="'size' or one accelerator name"):
            plan_bits(_Three(), 1e9, None, bad, sensitivity=SensitivityTable("kl"))


def test_energy_target_without_costs_says_where_costs_come_from():
    with pytest.raises(ValueError, match="eval.hw_costs"):
        plan_bits(_Three(), 1e9, None, "neuromorphic", sensitivity=SensitivityTable("kl"))


def test_largest_activation_bits_is_charged_once_for_the_whole_model():
    """Fixed (per time step) cost by largest a_bits: one 8-bit layer costs the 8-bit fixed part."""
    bits = (4, 8)
    s = [[0.0, 0.0, 1.0, 0.0]] * 4  # a-bits matter, w-bits do not
    c = [[1.0, 1.0, 1.0, 1.0]] * 4  # layer costs flat
    sens, costs = _tables(s, c, [0.0, 100.0], bits)
    tight = plan_bits(_Three(), 4 + 50, costs, "neuromorphic", sensitivity=sens, choices=bits)
    assert all(o["a_bits"] == 4 for o in tight.layers.values())
    loose = plan_bits(_Three(), 4 + 100, costs, "neuromorphic", sensitivity=sens, choices=bits)
    assert all(o["a_bits"] == 8 for o in loose.layers.values())
    assert loose.meta["max_a_bits"] == 8 and tight.meta["max_a_bits"] == 4


@pytest.fixture(scope="module")
def vit_and_table():
    torch.manual_seed(0)
    m = build_model("vit", "tiny").eval()
    data = [torch.randn(8, 1, 8, 8)]
    return m, data, sensitivity(m, data, bits=(2, 4, 8), levels=("layer",))


def test_size_budget_of_uniform_plan_admits_it_and_counts_bits(vit_and_table):
    m, _, sens = vit_and_table
    costs = size_costs(m, (2, 4, 8))
    plan = plan_bits(m, "w8a8", costs, "size", sensitivity=sens)
    assert all(o.get("w_bits", 8) == 8 and o["a_bits"] == 8 for o in plan.layers.values())
    n_w = sum(q.linear.weight.numel() for q in m.modules() if isinstance(q, QuantLinear)) + m.patch.conv.weight.numel()
    assert uniform_cost(costs, 8, 8) - uniform_cost(costs, 4, 4) == 4 * n_w
    p4 = plan_bits(m, "w4a4", costs, "size", sensitivity=sens)
    assert p4.cost <= uniform_cost(costs, 4, 4)
    only4 = plan_bits(m, "w4a4", costs, "size", sensitivity=sens, choices=(4,), a_choices=(2, 4, 8))
    assert p4.objective <= only4.objective + 1e-12  # more choices never plan worse


def test_plan_json_is_editable_and_quantize_applies_it(vit_and_table, tmp_path):
    m, data, sens = vit_and_table
    plan = plan_bits(m, "w4a4", None, "size", sensitivity=sens)
    path = plan.save(tmp_path / "plan.json")
    doc = json.loads(path.read_text())
    doc["layers"]["head"] = {"w_bits": 8, "a_bits": 6}  # a user edit
    path.write_text(json.dumps(doc))
    edited = BitPlan.load(path)
    edited.check(m)
    calibrate(m, data)
    qann = quantize(m, overrides=edited.layers)
    assert qann.head.w_bits == 8 and qann.head.quant.bits == 6
    for name, o in edited.layers.items():
        layer = qann.get_submodule(name)
        q = layer.quant_a if isinstance(layer, QuantMatMul) else layer.quant
        assert q.bits == o["a_bits"]
    x = data[0][:4]
    r = convert(qann).run(x)
    assert torch.equal(r.output, qann(x))  # mixed precision converts exactly


def test_bad_plan_files_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="integer >= 2"):
        BitPlan(layers={"head": {"w_bits": 1, "a_bits": 8}})
    with pytest.raises(ValueError, match="unknown key"):
        BitPlan(layers={"head": {"bits": 4}})
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BitPlan.load(p)


def test_top_plans_are_enumerated_in_order_and_validation_picks_by_measured_kl(vit_and_table):
    from snmfm.compress.plan import build_problem, solve
    m, data, sens = vit_and_table
    costs = size_costs(m, (2, 4, 8))
    budget = uniform_cost(costs, 4, 4)
    p = build_problem(m, costs, sens, (2, 4, 8), (2, 4, 8))
    objs, cuts = [], []
    for _ in range(3):
        sol = solve(p, budget, cuts)
        cuts.append(sol[0])
        objs.append(sol[2])
    assert objs == sorted(objs) and len({tuple(c) for c in cuts}) == 3
    calibrate(m, data)
    plan = plan_bits(m, budget, costs, "size", sensitivity=sens, validate=[torch.randn(8, 1, 8, 8)], top_k=3)
    rows = plan.meta["validation"]["candidates"]
    by_source = {r["source"]: r for r in rows}
    chosen, ref = by_source[plan.meta["validation"]["chosen"]], by_source[plan.meta["validation"]["reference"]]
    assert len(rows) >= 3 and chosen["kl"] <= ref["kl"]  # the uniform plan, or a measurably better one
    if chosen["source"] == "uniform w4a4":
        assert all(o["a_bits"] == 4 and o.get("w_bits", 4) == 4 for o in plan.layers.values())
    assert plan.cost <= budget


def test_simulated_cost_overshoot_tightens_the_budget_until_the_plan_fits():
    """A measured cost above the table's (here: +40% whenever activation bit widths are mixed) is
    fed back: the returned plan's measured cost fits the budget."""
    bits = (4, 8)
    s = [[0.0, 0.0, 1.0, 0.0]] * 4
    c = [[1.0, 2.0, 3.0, 4.0]] * 4
    sens, costs = _tables(s, c, [0.0, 10.0], bits)

    def measure(layers):
        mixed = len({o["a_bits"] for o in layers.values()}) > 1
        return plan_cost(layers, costs) * (1.4 if mixed else 1.0)
    budget = plan_cost({n: ({"a_bits": 8} if n == "mm" else {"w_bits": 4, "a_bits": 8}) for n in LAYERS}, costs) - 1
    plan = plan_bits(_Three(), budget, costs, "neuromorphic", sensitivity=sens, choices=bits, measure=measure)
    assert plan.cost == measure(plan.layers) <= budget
    assert len(plan.meta["budget_rounds"]) >= 1 and "predicted_cost" in plan.meta


def test_public_names_import_from_snmfm_compress_without_the_layers_above():
    """DESIGN's public names (and the rest of the stage) come from `snmfm.compress`, in a fresh
    interpreter (no import cycle), without pulling in converters / neuro_hw / eval."""
    import subprocess
    import sys
    code = ("import sys; from snmfm.compress import (calibrate, quantize, prune, plan_bits, BitPlan, "
            "InfeasibleBudget, sensitivity, SensitivityTable, prepare_qat, finetune, freeze, qat, "
            "compress_checkpoint, CompressResult); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('converters', 'neuro_hw', 'eval', 'cli')); "
            "assert not bad, bad; assert callable(prune) and callable(sensitivity) and callable(qat)")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import snmfm.compress as c
    assert {"calibrate", "quantize", "prune", "plan_bits"} <= set(c.__all__)
    assert all(hasattr(c, n) for n in c.__all__)
