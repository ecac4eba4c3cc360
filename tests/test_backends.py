"""Exports to snnTorch / SpikingJelly / Norse / NIR, NIR import, and the Brian2 cross-check.

Spike counts are compared per neuron layer and per time step (+1 and -1 spikes separately) and per
neuron (final count), against snmfm's SpikingModel trace."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from converters import convert
from converters.backends import BACKENDS, export
from converters.backends.chain import chain_of
from converters.backends.run import simulate, site_counts
from converters.sequential import from_sequential
from converters.snn import ConversionError
from snmfm.compress import calibrate, quantize

T = 24


def _convert(model, x, w_bits=6, a_bits=4, method="mse", **kw):
    seq = from_sequential(model.eval(), example_input=x, **kw)
    calibrate(seq, [x])
    return convert(quantize(seq, w_bits, a_bits, method=method))


def _mlp(seed, monotone=False):
    """ReLU MLP; monotone: non-negative weights (and inputs), so every accumulated input only grows and
    snmfm emits no -1 spike -- the case one-sided IF neurons reproduce exactly."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    if monotone:
        with torch.no_grad():
            for lin in (m[0], m[2], m[4]):
                lin.weight.abs_()
    return m, torch.rand(12, 6)


def _conv(seed, monotone=False):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 5, 3, stride=2),
                      nn.ReLU(), nn.Flatten(), nn.Linear(20, 3))
    if monotone:
        with torch.no_grad():
            for layer in (m[0], m[3], m[6]):
                layer.weight.abs_()
    return m, torch.rand(4, 2, 10, 10)


def _assert_same_spikes(run, trace, counts, sites):
    for name in sites:
        assert np.array_equal(run.pos[name], trace.sites[name].pos), name
        assert np.array_equal(run.neg[name], trace.sites[name].neg), name
        assert torch.equal(run.counts[name], counts[name]), name


def _snmfm(snn, x):
    res = snn.run(x, T=T)
    return res, site_counts(snn)


# ---- the chain every backend exports from ----------------------------------------------------------
@pytest.mark.parametrize("make", [_mlp, _conv])
@pytest.mark.parametrize("input_signed", [True, False])
def test_literal_membrane_dynamics_of_the_chain_match_snmfm(make, input_signed):
    model, x = make(0)
    snn = _convert(model, x * 2 - 1, input_signed=input_signed)
    res, counts = _snmfm(snn, x * 2 - 1)
    ref = simulate(chain_of(snn), x * 2 - 1, T)
    _assert_same_spikes(ref, res.trace, counts, res.trace.sites)
    assert torch.equal(ref.output, res.output)
    assert res.trace.total_spikes() > 0 and sum(s.neg.sum() for s in res.trace.sites.values()) > 0


# ---- framework exports ----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [_mlp, _conv])
def test_spikingjelly_export_is_exact_for_every_network(make):
    pytest.importorskip("spikingjelly")
    model, x = make(1)
    x = x * 2 - 1  # signed input: -1 spikes at the input neurons too
    snn = _convert(model, x)
    res, counts = _snmfm(snn, x)
    exp = export(snn, "spikingjelly")
    assert exp.two_sided and exp.bounded and "STBIFNode" in exp.description
    run = exp.module.run(x, T)
    _assert_same_spikes(run, res.trace, counts, res.trace.sites)
    torch.testing.assert_close(run.output, res.output, rtol=1e-12, atol=1e-12)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4), w_bits=st.integers(2, 8),
       a_bits=st.integers(2, 5), seed=st.integers(0, 10**6))
def test_spikingjelly_export_is_exact_on_random_mlps(widths, w_bits, a_bits, seed):
    pytest.importorskip("spikingjelly")
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    x = torch.randn(5, widths[0]) * 2
    snn = _convert(nn.Sequential(*layers), x, w_bits, a_bits)
    res, counts = _snmfm(snn, x)
    _assert_same_spikes(export(snn, "spikingjelly").module.run(x, T), res.trace, counts, res.trace.sites)


@pytest.mark.parametrize("backend", ["snntorch", "norse"])
@pytest.mark.parametrize("make", [_mlp, _conv])
def test_one_sided_exports_equal_snmfm_on_relu_nets_whose_inputs_only_grow(backend, make):
    pytest.importorskip(backend)
    model, x = make(2, monotone=True)
    snn = _convert(model, x, method="max")  # no clipping: no neuron saturates
    res, counts = _snmfm(snn, x)
    assert all(s.neg.sum() == 0 for s in res.trace.sites.values())  # the precondition, checked
    exp = export(snn, backend)
    assert not exp.two_sided and "-1" in exp.description
    run = exp.module.run(x, T)
    _assert_same_spikes(run, res.trace, counts, res.trace.sites)
    torch.testing.assert_close(run.output, res.output, rtol=1e-12, atol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), a_bits=st.integers(2, 5), backend=st.sampled_from(["snntorch", "norse"]))
def test_one_sided_exports_run_plain_if_dynamics_and_equal_snmfm_whenever_it_emits_no_negative_spike(
        seed, a_bits, backend):
    pytest.importorskip(backend)
    model, x = _mlp(seed)
    snn = _convert(model, x, a_bits=a_bits)
    res, counts = _snmfm(snn, x)
    chain = chain_of(snn)
    run = export(snn, backend).module.run(x, T)
    plain = simulate(chain, x, T, two_sided=False, bounded=False)
    for name in run.counts:  # always: the framework neurons are the plain IF neuron, exactly
        assert torch.equal(run.counts[name], plain.counts[name])
        assert np.array_equal(run.pos[name], plain.pos[name])
    stbif = simulate(chain, x, T)
    if all(torch.equal(plain.counts[n], stbif.counts[n]) for n in plain.counts):
        _assert_same_spikes(run, res.trace, counts, res.trace.sites)


# ---- NIR ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,input_shape", [(_mlp, None), (_conv, (2, 10, 10))])
@pytest.mark.parametrize("reader", ["snntorch", "norse"])
def test_nir_file_read_back_with_snntorch_and_norse_neurons_gives_identical_spike_counts(
        tmp_path, make, input_shape, reader):
    pytest.importorskip("nirtorch")
    pytest.importorskip(reader)
    import nir

    from converters.backends.nir import nir_input
    from converters.backends.nir_readers import nir_to_torch, run_torch_graph
    model, x = make(3, monotone=True)
    snn = _convert(model, x, method="max")
    res, counts = _snmfm(snn, x)
    path = tmp_path / "net.nir"
    export(snn, "nir", path=path, input_shape=input_shape)
    graph = nir.read(str(path))
    out, spikes = run_torch_graph(nir_to_torch(graph, reader), nir_input(x, T), tail=graph.metadata["snmfm_tail"])
    for l, site in enumerate(chain_of(snn).neurons):
        z = spikes[f"if{l}"]  # [T, B, n], relay neurons removed
        assert np.array_equal((z > 0).sum((1, 2)).numpy(), res.trace.sites[site.name].pos)
        assert torch.equal(z.sum(0), counts[site.name])
    torch.testing.assert_close(out, res.output, rtol=1e-12, atol=1e-12)


def test_nir_graph_uses_standard_nodes_integer_weights_and_no_biases():
    pytest.importorskip("nir")
    import nir
    model, x = _conv(4)
    snn = _convert(model, x)
    graph = export(snn, "nir", input_shape=(2, 10, 10)).module
    assert {type(n).__name__ for n in graph.nodes.values()} <= {"Input", "Output", "Linear", "Conv2d", "Flatten", "IF"}
    hidden = [n for k, n in graph.nodes.items() if isinstance(n, (nir.Linear, nir.Conv2d)) and k != "encode"
              and not n.metadata["snmfm_readout"]]
    assert len(hidden) == 2
    for node in hidden:
        w = np.asarray(node.weight)
        if isinstance(node, nir.Conv2d):
            real = w[:, :-1]  # the last input channel is the pulse
            assert not np.any(node.bias)
        else:
            pulse = int(np.argmax(w[-1]))  # the relay neuron (last row) reads the pulse column
            real = np.delete(w, pulse, axis=1)
        assert np.array_equal(real, np.round(real))
    for node in graph.nodes.values():
        if isinstance(node, nir.IF):
            assert np.all(node.r == 1) and np.all(node.v_reset == 0)


@pytest.mark.parametrize("make,input_shape", [(_mlp, None), (_conv, (2, 10, 10))])
def test_nir_round_trip_is_exact(tmp_path, make, input_shape):
    pytest.importorskip("nir")
    from converters.backends import import_nir
    model, x = make(5)
    x = x * 2 - 1
    snn = _convert(model, x)  # signed input: -1 spikes and count bounds come back through metadata
    res, counts = _snmfm(snn, x)
    export(snn, "nir", path=tmp_path / "net.nir", input_shape=input_shape)
    back = import_nir(tmp_path / "net.nir")
    res2, counts2 = _snmfm(back, x)
    assert torch.equal(res2.output, res.output)
    assert list(res2.trace.sites) == list(res.trace.sites)
    for name, site in res.trace.sites.items():
        assert np.array_equal(res2.trace.sites[name].pos, site.pos)
        assert np.array_equal(res2.trace.sites[name].neg, site.neg)
        assert torch.equal(counts2[name], counts[name])


def test_foreign_nir_graph_is_imported_under_snmfm_conventions():
    pytest.importorskip("nir")
    import nir

    from converters.backends import import_nir
    from converters.backends.nir import read_chain
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(5, 3)), rng.normal(size=5) * 0.1, rng.integers(-3, 4, size=(2, 5)).astype(float)
    thr = np.full(5, 0.7)
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([3])}), "fc": nir.Affine(weight=w1, bias=b1),
        "lif": nir.IF(r=np.ones(5), v_threshold=thr), "ro": nir.Linear(weight=w2),
        "out": nir.Output(output_type={"output": np.array([2])})},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "ro"), ("ro", "out")])
    chain = read_chain(graph, w_bits=8)
    # weights quantized per output channel, the threshold folded into the channel scale
    np.testing.assert_allclose((chain.ops[0].w_int * chain.ops[0].w_scale[:, None]).numpy(), w1 / 0.7, rtol=0.02,
                               atol=0.02 * np.abs(w1 / 0.7).max())
    assert torch.equal(chain.ops[1].w_int, torch.as_tensor(w2))  # integer weights are kept as they are
    assert chain.neurons[1].qmin == 0 and chain.neurons[1].scale == 1.0
    snn = import_nir(graph)
    x = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    res = snn.run(x, T=None)
    assert res.output.shape == (2, 2) and res.t_settle is not None
    ending_in_if = nir.NIRGraph(nodes={k: v for k, v in graph.nodes.items() if k != "ro"} | {
        "out": nir.Output(output_type={"output": np.array([5])})},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    assert import_nir(ending_in_if).run(x, T=None).output.shape == (2, 5)  # counts read out as they are


# ---- Brian2 ------------------------------------------------------------------------------------------
def _brian2():
    try:
        import brian2  # noqa: F401
    except (ImportError, AttributeError) as e:  # brian2 2.9 fails to import with numpy >= 2
        pytest.skip(f"brian2 is not usable here ({type(e).__name__}: {e}); brian2 < 2.10 needs numpy < 2")


@pytest.mark.parametrize("make", [_mlp, _conv])
def test_brian2_layer_counts_equal_snmfm(make):
    _brian2()
    from converters.backends.brian2 import layer_network
    model, x = make(6)
    x = (x * 2 - 1)[:3]
    snn = _convert(model, x)
    res, counts = _snmfm(snn, x)
    chain = chain_of(snn)
    inputs = simulate(chain, x, T, keep_spikes=True).spikes
    for layer in range(chain.depth - 1):
        site = chain.neurons[layer + 1].name
        run = layer_network(snn, layer, inputs[chain.neurons[layer].name])
        assert torch.equal(run.counts, counts[site])
        assert np.array_equal(run.pos, res.trace.sites[site].pos)
        assert np.array_equal(run.neg, res.trace.sites[site].neg)


# ---- errors ------------------------------------------------------------------------------------------
def test_export_rejects_unknown_backends_and_non_chain_models():
    model, x = _mlp(7)
    snn = _convert(model, x)
    with pytest.raises(ValueError, match="available: " + ", ".join(BACKENDS)):
        export(snn, "loihi")
    from snmfm.nn import Tanh
    bad = convert(quantize(calibrate(nn.Sequential(from_sequential(nn.Linear(6, 3)), Tanh()), [x]), 6, 4))
    with pytest.raises(ConversionError, match="Tanh"):
        export(bad, "nir")
