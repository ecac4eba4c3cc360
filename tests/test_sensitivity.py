"""Sensitivity tables: every level of the hierarchy, sane orderings, no side effects, JSON."""
from __future__ import annotations

import math

import pytest
import torch

from snmfm.compress.sensitivity import (SensitivityTable, hessian_sensitivity, hutchinson_trace,
                                        monotone, sensitivity, units_of)
from snmfm.models import build_model


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    m = build_model("vit", "tiny", n_layers=2).eval()
    return m, [torch.randn(8, 1, 8, 8)]


@pytest.fixture(scope="module")
def table(vit):
    m, data = vit
    return sensitivity(m, data, bits=(2, 8), channel_groups=2)


def test_table_covers_model_block_layer_head_and_channel_levels(vit, table):
    m, _ = vit
    assert table.units("model") == ["model"]
    assert table.units("block") == ["trunk.blocks.0", "trunk.blocks.1"]
    assert "trunk.blocks.1.attn.qk" in table.units("layer") and "head" in table.units("layer")
    assert len(table.units("head")) == 2 * m.trunk.blocks[0].attn.n_heads
    assert len(table.units("channel")) == 2 * 2
    # activation products have no weights: only "a" rows
    assert not [r for r in table.rows if r["unit"].endswith(".qk") and r["kind"] == "w"]


def test_fewer_bits_hurt_more_and_the_whole_model_hurts_most(table):
    for kind in ("w", "a"):
        assert table.value("model", kind, 2) > table.value("model", kind, 8) >= 0
        worst_block = max(table.value(b, kind, 2) for b in table.units("block"))
        assert table.value("model", kind, 2) >= 0.5 * worst_block
    kl = [r["value"] for r in table.rows]
    assert all(v >= 0 and math.isfinite(v) for v in kl)  # KL divergences


def test_measuring_leaves_the_model_unchanged(vit):
    m, data = vit
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ref = m(data[0])
    sensitivity(m, data, bits=(2,), levels=("head",))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert torch.equal(m(data[0]), ref)


def test_head_units_select_their_own_rows_and_columns(vit):
    m, _ = vit
    u = [u for u in units_of(m, ("head",)) if u.name == "trunk.blocks.0.attn.head1"][0]
    attn = m.trunk.blocks[0].attn
    hd, inner = attn.head_dim, attn.n_heads * attn.head_dim
    rows = u.weights["trunk.blocks.0.attn.qkv"][1].tolist()
    assert rows == [k * inner + hd + j for k in range(3) for j in range(hd)]
    x = torch.zeros(1, 5, inner)
    mask = u.acts["trunk.blocks.0.attn.proj.quant"](x)
    assert mask.reshape(-1).nonzero().reshape(-1).tolist() == list(range(hd, 2 * hd))


def test_table_round_trips_through_json(table, tmp_path):
    table.save(tmp_path / "s.json")
    back = SensitivityTable.load(tmp_path / "s.json")
    assert back.rows == table.rows and back.metric == "kl"
    lt = back.layer_table("a")
    assert set(lt["head"]) == {2, 8}
    with pytest.raises(ValueError, match="schema"):
        SensitivityTable.from_dict({"rows": []})


def test_custom_metric_and_unknown_options(vit):
    m, data = vit
    t = sensitivity(m, data, bits=(4,), levels=("model",), kinds=("w",),
                    metric=lambda out, ref, batch: float((out - ref).abs().max()))
    assert t.rows[0]["value"] > 0 and t.metric == "<lambda>"
    with pytest.raises(ValueError, match="unknown level"):
        sensitivity(m, data, levels=("neuron",))
    with pytest.raises(ValueError, match="unknown metric"):
        sensitivity(m, data, metric="accuracy")


def test_hutchinson_trace_equals_exact_trace_of_a_diagonal_quadratic():
    """Squared loss of a linear layer: H = 2/N X^T X (x) I.  With orthogonal inputs H is diagonal,
    and Hutchinson's v^T H v (v_i = +-1) is then exactly the trace, 2 * sum(x^2) / N * d_out."""
    from snmfm.nn import QuantLinear
    torch.manual_seed(0)
    model = torch.nn.Sequential(QuantLinear(5, 3))
    x = torch.diag(torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5]))
    loss = lambda out, batch: (out ** 2).sum(-1).mean()  # noqa: E731
    tr = hutchinson_trace(model, [(x,)], loss_fn=loss, n_probes=3)
    assert tr["0"] == pytest.approx(2 * float((x ** 2).sum()) / 5 * 3, rel=1e-5)


def test_hessian_sensitivity_grows_as_bits_shrink(vit):
    m, data = vit
    t = hessian_sensitivity(m, data, bits=(2, 8), n_probes=2)
    lt = t.layer_table("w")
    assert all(v[2] >= v[8] for v in lt.values())


def test_monotone_makes_fewer_bits_never_better():
    assert monotone({2: 0.1, 4: 0.3, 8: -0.01}) == {8: 0.0, 4: 0.3, 2: 0.3}
