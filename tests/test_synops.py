"""SynOps (NeuroBench definition) of converted networks, checked against hand computations."""
import pytest
import torch
from torch import nn

from converters import convert
from neuro_hw.neuromorphic import record_spikes
from neuro_hw.synops import synops, synops_from_trace
from neuro_hw.workload import extract_workload
from neuromorphic_helpers import tiny_vit_run
from snmfm.nn import QuantLinear


def _set_int(layer: QuantLinear, w_int, bits: int = 4, scale: float = 1.0) -> None:
    """Hand-built QANN layer: integer weights (scale 1), input quantizer with step `scale`."""
    q = layer.quant
    q.set_bits(bits)
    q.scale = torch.tensor(scale, dtype=torch.float64)
    q.mode = "int"
    layer.linear.bias.data.zero_()
    w = torch.tensor(w_int, dtype=torch.float64)
    layer.set_int_weight(w, torch.ones(w.shape[0], dtype=torch.float64), 4)


def hand_mlp() -> nn.Module:
    """x (3) -> QuantLinear(3, 2) -> unsigned quantizer (ReLU) -> QuantLinear(2, 2)."""
    net = nn.Sequential(QuantLinear(3, 2), QuantLinear(2, 2, signed=False)).double()
    _set_int(net[0], [[1, 0, -2], [0, 0, 3]])
    _set_int(net[1], [[1, 1], [0, 0]])
    return net


def test_synops_match_hand_computation_on_a_two_layer_mlp():
    # Input codes [2, 0, -1]: neuron 0 spikes +1 at steps 1 and 2, neuron 2 spikes -1 at step 1.
    # Layer 0 (W0 columns: nnz 1, 0, 2): effective = 2 spikes x 1 + 1 spike x 2 = 4; row = 3 x 2 = 6.
    # Layer-0 accumulator: step 1 [1*1 + (-2)(-1), 3*(-1)] = [3, -3], from step 2 on [4, -3]; the
    # unsigned quantizer's targets are [3, 0] then [4, 0], so neuron 0 of layer 1 spikes at steps
    # 1..4 (one step per step).  Layer 1 (W1 column 0 has 1 non-zero): effective 4 x 1 = 4, row 4 x 2 = 8.
    # Dense over T = 6 steps: 6 x (3 x 2 + 2 x 2) = 60.
    net = hand_mlp()
    snn = convert(net)
    x = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
    res, rec = record_spikes(snn, x, T=6)
    assert torch.allclose(res.output, net(x))
    s = synops(snn, rec)
    assert s.per_layer["0"]["eff_acs"] == 4 and s.per_layer["0"]["row"] == 6
    assert s.per_layer["1"]["eff_acs"] == 4 and s.per_layer["1"]["row"] == 8
    assert (s.eff_acs, s.row, s.dense, s.eff_macs) == (8, 14, 60, 0)
    # the trace-only count is the chip's (row) count
    wl = extract_workload(net, x)
    assert synops_from_trace(wl, res.trace) == 14


def test_synops_are_per_inference_means_over_samples():
    net = hand_mlp()
    snn = convert(net)
    x = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    _, rec = record_spikes(snn, x, T=6)
    s = synops(snn, rec)
    assert s.eff_acs == pytest.approx(8 / 2) and s.row == pytest.approx(14 / 2)


def test_synops_on_a_vit_bounds_and_attention_extension():
    q, x, w, snn, res, rec = tiny_vit_run()
    s = synops(snn, rec)
    assert 0 < s.eff_acs <= s.row <= s.dense
    assert set(s.extension) == {"trunk.blocks.0.attn.qk", "trunk.blocks.0.attn.av"}
    # layers + extension rows equal the chip's count from the trace
    row_all = s.row + sum(v["row"] for v in s.extension.values())
    assert row_all == pytest.approx(synops_from_trace(w, res.trace))
