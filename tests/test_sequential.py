"""converters.from_sequential: a plain torch MLP / conv net becomes an snmfm model whose SNN == QANN."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from converters import convert
from converters.sequential import SUPPORTED_LAYERS, from_sequential
from converters.snn import ConversionError
from snmfm.compress import calibrate, quantize
from snmfm.nn import QuantConv2d, QuantLinear, quantizers

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _snn_equals_qann(model, x, w_bits, a_bits):
    calibrate(model, [x])
    qann = quantize(model, w_bits, a_bits)
    snn = convert(qann)
    res = snn.run(x, T=None, max_T=4096)
    assert torch.equal(res.output, qann(x))
    return qann, snn, res


def test_float_model_is_unchanged():
    torch.manual_seed(0)
    cases = [
        (nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Identity(), nn.Linear(8, 3)), torch.randn(5, 6)),
        (nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 5, 3),
                       nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(20, 3)), torch.rand(3, 2, 12, 12)),
        (nn.Sequential(nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), nn.ReLU()), nn.AvgPool2d(2), nn.Flatten(),
                       nn.Linear(27, 4)), torch.rand(3, 1, 15, 15)),
    ]
    for model, x in cases:
        model.eval()
        torch.testing.assert_close(from_sequential(model, example_input=x)(x), model(x), atol=1e-5, rtol=1e-5)


def test_relu_is_absorbed_by_unsigned_quantizers():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.Linear(5, 2))
    signed = [q.signed for _, q in quantizers(from_sequential(model))]
    assert signed == [True, False, True]  # after ReLU: unsigned; after a plain Linear: signed
    assert [q.signed for _, q in quantizers(from_sequential(model, input_signed=False))][0] is False
    assert [q.signed for _, q in quantizers(from_sequential(model, example_input=torch.rand(3, 4)))][0] is False
    assert [q.signed for _, q in quantizers(from_sequential(model, example_input=torch.randn(3, 4) - 2))][0] is True


def test_weights_are_copied_into_snmfm_layers():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    seq = from_sequential(model)
    conv, lin = [m for m in seq if isinstance(m, (QuantConv2d, QuantLinear))]
    assert torch.equal(conv.conv.weight, model[0].weight) and torch.equal(lin.linear.bias, model[3].bias)
    assert conv.conv.stride == (2, 2) and conv.conv.padding == (1, 1)
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2", "3"]


@SETTINGS
@given(widths=st.lists(st.integers(1, 7), min_size=2, max_size=4), w_bits=st.integers(2, 8),
       a_bits=st.integers(2, 6), input_signed=st.booleans(), batch=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_snn_matches_qann_on_random_mlps(widths, w_bits, a_bits, input_signed, batch, seed):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    x = torch.randn(batch, widths[0]) * 3
    _snn_equals_qann(from_sequential(nn.Sequential(*layers), input_signed=input_signed), x, w_bits, a_bits)


@SETTINGS
@given(c=st.integers(1, 3), k=st.integers(1, 3), stride=st.integers(1, 2), pad=st.booleans(),
       pool=st.sampled_from(["none", "after_conv", "after_relu"]), w_bits=st.integers(2, 8),
       a_bits=st.integers(2, 5), seed=st.integers(0, 10**6))
def test_snn_matches_qann_on_random_conv_nets(c, k, stride, pad, pool, w_bits, a_bits, seed):
    torch.manual_seed(seed)
    hw = 8
    conv1 = nn.Conv2d(2, c, k, stride=stride, padding=(k - 1) // 2 if pad else 0)
    body = [conv1] + ([nn.AvgPool2d(2)] if pool == "after_conv" else []) + [nn.ReLU()] \
        + ([nn.AvgPool2d(2)] if pool == "after_relu" else []) + [nn.Conv2d(c, 3, 1), nn.ReLU(), nn.Flatten()]
    x = torch.rand(3, 2, hw, hw)
    feats = nn.Sequential(*body)(x).shape[1]
    model = nn.Sequential(*body, nn.Linear(feats, 4)).eval()
    seq = from_sequential(model, example_input=x)
    torch.testing.assert_close(seq(x), model(x), atol=1e-5, rtol=1e-5)
    _snn_equals_qann(seq, x, w_bits, a_bits)


def test_traced_module_is_read_as_a_chain():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 7), nn.Linear(7, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(torch.flatten(x, 1))))

    net, x = Net().eval(), torch.randn(4, 2, 3)
    seq = from_sequential(net)
    assert [n for n, _ in seq.named_children()] == ["flatten", "a", "relu", "b"]
    assert [q.signed for _, q in quantizers(seq)] == [True, False]
    torch.testing.assert_close(seq(x), net(x))
    _snn_equals_qann(seq, x, 6, 4)


def test_unsupported_layer_error_names_path_type_and_supported_layers():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.GELU()), nn.Linear(4, 2))
    with pytest.raises(ConversionError) as e:
        from_sequential(model)
    msg = str(e.value)
    assert "'1.1'" in msg and "GELU" in msg and SUPPORTED_LAYERS in msg


def test_non_chain_forward_and_inexact_pools_are_rejected():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x) + x

    with pytest.raises(ConversionError, match="not a chain"):
        from_sequential(Residual())
    with pytest.raises(ConversionError, match="stride == kernel"):
        from_sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, stride=1)))
    with pytest.raises(ConversionError, match="cannot be kept exact"):
        from_sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.ReLU()))
    with pytest.raises(ConversionError, match="groups=1"):
        from_sequential(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)))
    with pytest.raises(ConversionError, match="no Linear or Conv2d"):
        from_sequential(nn.Sequential(nn.ReLU()))
