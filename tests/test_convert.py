"""SNN == QANN, exactly: neurons, every spiking op, whole random blocks and models; bad inputs."""
from __future__ import annotations


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from converters import (ConversionError, convert, if_neuron_reference, load_qann, load_spiking,
                        save_qann, track_counts)
from snmfm.compress import calibrate, quantize
from snmfm.models import Block, ModelConfig, build_model
from snmfm.nn import QuantLinear, QuantMatMul

FAST = settings(max_examples=25, deadline=None)


def _qann(model, *inputs, w_bits=8, a_bits=8, **kw):
    calibrate(model.eval(), [inputs])
    return quantize(model, w_bits, a_bits, **kw)


# ---- the neuron --------------------------------------------------------------------------------
@FAST
@given(st.integers(1, 40), st.integers(2, 8), st.booleans(), st.integers(0, 2**31 - 1))
def test_if_neuron_count_form_equals_literal_membrane_dynamics(T, bits, signed, seed):
    """The count form n_t = n_{t-1} + sign(r_t - n_{t-1}) is the ST-BIF membrane dynamics."""
    g = torch.Generator().manual_seed(seed)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    s = 4.0  # inputs are multiples of 1/4 and s = 4: every float operation below is exact
    x = torch.randint(-24, 25, (T, 50), generator=g).to(torch.float64) / 4
    spikes = if_neuron_reference(x, s, qmin, qmax)
    S = torch.cumsum(x, 0)
    r = torch.clamp(torch.floor(S / s + 0.5), qmin, qmax)
    counts = track_counts(r, torch.zeros(50, dtype=torch.float64))
    assert torch.equal(torch.cumsum(spikes, 0), counts)


def test_neuron_settles_to_quantizer_output_within_range_steps():
    x = torch.tensor([[10.3, -7.9, 0.2, 100.0, -100.0]], dtype=torch.float64)
    steps = torch.cat([x, torch.zeros(20, 5, dtype=torch.float64)])
    n = torch.cumsum(if_neuron_reference(steps, 1.0, -8, 7), 0)[-1]
    assert n.tolist() == [7.0, -8.0, 0.0, 7.0, -8.0]


# ---- single spiking ops -----------------------------------------------------------------------
class _LinearNet(nn.Module):
    def __init__(self, d_in, d_out, signed):
        super().__init__()
        self.l1 = QuantLinear(d_in, d_out, signed=signed)
        self.l2 = QuantLinear(d_out, 3)

    def forward(self, x):
        return self.l2(self.l1(x))


class _MatMulNet(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mm = QuantMatMul(out_scale=0.5)
        self.out = QuantLinear(d, 2)

    def forward(self, a, b):
        return self.out(self.mm(a, b))


@FAST
@given(st.integers(1, 12), st.integers(1, 12), st.integers(2, 8), st.integers(2, 8), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_snn_matches_qann_on_random_linear_layers(d_in, d_out, w_bits, a_bits, signed, seed):
    torch.manual_seed(seed)
    net = _LinearNet(d_in, d_out, signed)
    x = torch.randn(6, 5, d_in) * 3
    q = _qann(net, x, w_bits=w_bits, a_bits=a_bits)
    r = convert(q).run(x)
    assert torch.equal(r.output, q(x))
    assert r.t_settle is not None and r.t_settle <= r.steps


@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_snn_matches_qann_on_random_activation_products(M, K, N, a_bits, seed):
    """Q K^T and attn V: both operands are spike trains (increment identity)."""
    torch.manual_seed(seed)
    net = _MatMulNet(N)
    a, b = torch.randn(3, 2, M, K) * 2, torch.randn(3, 2, K, N) * 2
    q = _qann(net, a, b, a_bits=a_bits)
    assert torch.equal(convert(q).run(a, b).output, q(a, b))


class _BlockNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.inp = QuantLinear(5, cfg.d_model)
        self.block = Block(cfg)
        self.out = QuantLinear(cfg.d_model, 3)

    def forward(self, x, mask):
        return self.out(self.block(self.inp(x), mask))


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([(8, 2), (12, 3), (16, 4)]), st.integers(1, 9), st.sampled_from(["pre", "post"]),
       st.sampled_from(["gelu", "gelu_tanh", "relu"]), st.sampled_from(["softmax", "relu"]), st.booleans(),
       st.sampled_from([3, 4, 6]), st.integers(0, 2**31 - 1))
def test_snn_matches_qann_on_random_attention_blocks(dh, L, norm, act, attn, causal, a_bits, seed):
    torch.manual_seed(seed)
    d, h = dh
    cfg = ModelConfig(kind="text", d_model=d, n_heads=h, d_ff=2 * d, norm=norm, act=act, attn=attn,
                      causal=causal, vocab_size=4, max_len=16)
    net = _BlockNet(cfg)
    x = torch.randn(4, L, 5)
    mask = torch.ones(4, L, dtype=torch.bool)
    mask[0, L // 2 + 1:] = False  # padding
    q = _qann(net, x, mask, a_bits=a_bits)
    r = convert(q).run(x, mask)
    assert torch.equal(r.output, q(x, mask))


@pytest.mark.parametrize("name,size,a_bits", [
    ("vit", "tiny", 4), ("features", "tiny", 4), ("text", "tiny", 4), ("decoder", "tiny", 4),
    ("multimodal", "tiny", 4), ("vit", "small", 4), ("vit", "tiny", 8), ("decoder", "tiny", 8)])
def test_snn_matches_qann_on_every_reference_model(name, size, a_bits):
    torch.manual_seed(0)
    m = build_model(name, size)
    inputs = {"vit": (torch.rand(3, 1, 8, 8) * 16,), "features": (torch.randn(3, 30),),
              "text": (torch.randint(0, 256, (3, 7)), torch.ones(3, 7, dtype=torch.bool)),
              "decoder": (torch.randint(0, 256, (3, 9)),),
              "multimodal": (torch.rand(3, 1, 8, 8) * 16, torch.randint(0, 64, (3, 4)))}[name]
    q = _qann(m, *inputs, a_bits=a_bits)
    r = convert(q).run(*inputs, keep_steps=True)
    ref = q(*inputs)
    assert torch.equal(r.output, ref)
    # after T_settle every step's output is the QANN's; before it, it is not yet
    assert torch.equal(r.per_step[r.t_settle - 1], ref)
    assert r.t_settle >= 2 ** (a_bits - 1) - 1 or r.t_settle <= r.steps
    # fixed T past settling gives the same answer
    assert torch.equal(convert(q).run(*inputs, T=r.t_settle + 3).output, ref)


def test_trace_counts_are_consistent_with_final_spike_counts():
    torch.manual_seed(1)
    m = build_model("vit", "tiny")
    x = torch.rand(2, 1, 8, 8) * 16
    q = _qann(m, x, a_bits=4)
    r = convert(q).run(x)
    site = r.trace.sites["patch.quant"]
    codes = q.patch.quant.codes(x)
    # each neuron reaches its code by |code| net spikes: +1 minus -1 spikes sum to the codes' sum
    assert int(site.pos.sum() - site.neg.sum()) == int(codes.sum())
    assert site.pos.sum() + site.neg.sum() >= codes.abs().sum()
    assert r.trace.t_settle == r.t_settle
    assert max(r.trace.t_settle_per_sample) == r.t_settle
    for s in r.trace.sites.values():
        assert len(s.pos) == r.steps


# ---- bad input --------------------------------------------------------------------------------
@pytest.fixture
def torch_path():
    """Run with the torch implementation of the neurons and the trace instead of the kernels."""
    from converters import _kernels
    _kernels._DISABLED = True
    yield
    _kernels._DISABLED = False


def _run_both(q, inputs, **kw):
    from converters import _kernels
    assert _kernels.available(), "numba is a core dependency: the kernel path must be on"
    fast = convert(q).run(*inputs, keep_steps=True, **kw)
    _kernels._DISABLED = True
    try:
        ref = convert(q).run(*inputs, keep_steps=True, **kw)
    finally:
        _kernels._DISABLED = False
    return fast, ref


def _assert_same_trace(a, b):
    assert (a.steps, a.t_settle, a.t_settle_per_sample) == (b.steps, b.t_settle, b.t_settle_per_sample)
    assert a.sites.keys() == b.sites.keys()
    for k in a.sites:
        for f in ("pos", "neg", "active_rows", "updates"):
            assert getattr(a.sites[k], f).tolist() == getattr(b.sites[k], f).tolist(), (k, f)
        assert a.sites[k].shape == b.sites[k].shape


@pytest.mark.parametrize("name,a_bits,T", [("vit", 4, None), ("text", 4, None), ("decoder", 6, None),
                                            ("features", 8, 5), ("multimodal", 4, None)])
def test_kernel_path_equals_torch_path_outputs_and_trace(name, a_bits, T):
    """The fused numba kernels (neurons, unit re-evaluation counts) give the same outputs at every
    step and the same ActivityTrace, counter for counter, as the torch implementation."""
    torch.manual_seed(3)
    m = build_model(name, "tiny")
    inputs = {"vit": (torch.rand(3, 1, 8, 8) * 16,), "features": (torch.randn(3, 30),),
              "text": (torch.randint(0, 256, (3, 7)), torch.ones(3, 7, dtype=torch.bool)),
              "decoder": (torch.randint(0, 256, (3, 9)),),
              "multimodal": (torch.rand(3, 1, 8, 8) * 16, torch.randint(0, 64, (3, 4)))}[name]
    q = _qann(m, *inputs, a_bits=a_bits)
    fast, ref = _run_both(q, inputs, T=T)
    assert torch.equal(fast.per_step, ref.per_step)
    assert torch.equal(fast.output, q(*inputs)) or T is not None
    _assert_same_trace(fast.trace, ref.trace)


@pytest.mark.parametrize("name,a_bits", [("vit", 4), ("decoder", 6), ("multimodal", 4)])
def test_kernel_path_without_trace_equals_torch_path(name, a_bits):
    """record=False takes the kernel's lighter no-trace loop: the same outputs at every step, the
    same number of steps and the same T_settle as the torch path."""
    torch.manual_seed(4)
    m = build_model(name, "tiny")
    inputs = {"vit": (torch.rand(3, 1, 8, 8) * 16,), "decoder": (torch.randint(0, 256, (3, 9)),),
              "multimodal": (torch.rand(3, 1, 8, 8) * 16, torch.randint(0, 64, (3, 4)))}[name]
    q = _qann(m, *inputs, a_bits=a_bits)
    fast, ref = _run_both(q, inputs, record=False)
    assert fast.trace is None and ref.trace is None
    assert torch.equal(fast.per_step, ref.per_step)
    assert (fast.steps, fast.t_settle) == (ref.steps, ref.t_settle)
    assert torch.equal(fast.output, q(*inputs))
    traced = convert(q).run(*inputs)
    assert (traced.steps, traced.t_settle) == (fast.steps, fast.t_settle)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.sampled_from([1, 2, 3, 5, 7, 8, 16, 24]), st.integers(2, 8),
       st.booleans(), st.integers(0, 2**31 - 1), st.booleans())
def test_kernel_neuron_equals_torch_neuron_on_random_chunks(T, B, D, bits, signed, seed, record):
    """One IF layer over two chunks of random inputs: same counts, spikes, rows, updates and
    per-sample last spikes from the kernel and from torch (with a recorder); without one, the
    same counts, last spike step and quiet flag after each chunk."""
    from converters import _kernels
    from converters.neurons import IFNeuron
    from converters.trace import TraceRecorder
    from snmfm.nn import Quantizer
    g = torch.Generator().manual_seed(seed)
    q = Quantizer(signed=signed)
    q.set_bits(bits)
    q.mode = "int"
    q.scale = torch.tensor(0.37, dtype=torch.float64)
    xs = [torch.randn(T * B, 3, D, generator=g, dtype=torch.float64) * 2 ** bits * 0.2 for _ in range(2)]
    xs[1][: B] = xs[0][-B:]  # the second chunk starts where the first ended: quiet rows occur
    outs, recs, flags = [], [], []
    for disabled in (False, True):
        _kernels._DISABLED = disabled
        try:
            n = IFNeuron(q, "site")
            n.recorder = TraceRecorder(B) if record else None
            n.steps = T
            res, fl = [], []
            for i, x in enumerate(xs):
                n.step0 = i * T
                if record:
                    n.recorder.step0 = i * T
                res.append(n.codes(x).to(torch.float64))
                fl.append((n.last_step_quiet, None if record else n.last_spike_step))
            outs.append(torch.cat(res))
            flags.append(fl)
            if record:
                recs.append(n.recorder.finish(2 * T))
        finally:
            _kernels._DISABLED = False
    assert torch.equal(outs[0], outs[1])
    assert flags[0] == flags[1]
    if record:
        _assert_same_trace(recs[0], recs[1])


def test_auto_chunks_probe_then_bounded_steps_and_explicit_chunk_is_checked():
    torch.manual_seed(0)
    m = build_model("vit", "tiny")
    x = torch.rand(2, 1, 8, 8) * 16
    q = _qann(m, x, a_bits=4)
    snn = convert(q)
    seen = []
    r = snn.run(x, step_fn=lambda t0, y: seen.append(y.shape[0]))
    assert seen[0] == 1 and max(seen) <= 8 and sum(seen) == r.steps
    assert torch.equal(r.output, q(x))
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        snn.run(x, chunk=0)


def test_trace_recorder_grows_one_buffer_per_site_and_keeps_every_step():
    """Counters of many chunks go into one growing array per site (no small object per chunk that
    would fragment the heap: see TraceRecorder), and `finish` returns every step in order."""
    import numpy as np
    from converters.trace import TraceRecorder
    rec = TraceRecorder(2)
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 100, (int(rng.integers(1, 9)), 4)) for _ in range(60)]
    for i, c in enumerate(chunks):
        rec.step0 = sum(len(x) for x in chunks[:i])
        rec.neuron_counts("n", (3,), c, np.array([len(c) - 1, -1]))
    assert isinstance(rec.rows["n"][0], np.ndarray) and len(rec.rows) == 1
    steps = sum(len(c) for c in chunks)
    tr = rec.finish(steps + 1)
    want = np.concatenate(chunks)
    for i, k in enumerate(("pos", "neg", "active_rows", "updates")):
        assert getattr(tr.sites["n"], k).tolist() == want[:, i].tolist()
    assert tr.t_settle_per_sample == [steps, 0] and tr.t_settle == steps


def test_chunk_schedule_covers_the_walk_then_grows_slowly():
    """The walk of `first` steps in chunks of at most `cap`, then 1, 1, 2, 2, 4, 4, ... (<= cap):
    a network that settles s steps after the walk runs at most about s/2 + 1 steps past it."""
    from itertools import islice
    from converters.snn import _chunk_sizes
    assert list(islice(_chunk_sizes(1000, 8, first=19), 12)) == [8, 8, 3, 1, 1, 2, 2, 4, 4, 8, 8, 8]
    assert list(islice(_chunk_sizes(5, 8, first=19), 3)) == [5, 1, 1]  # the walk is cut at the limit
    for extra in range(1, 60):  # settles `extra` steps after a walk of 19; quiet one step later
        done, sizes = 0, _chunk_sizes(1000, 8, first=19)
        while done < 19 + extra + 1:
            done += next(sizes)
        assert done - (19 + extra) <= max(1, extra // 2 + 1), (extra, done)


def test_unsupported_module_is_named_with_supported_list():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = QuantLinear(4, 4)
            self.pool = nn.MaxPool1d(2)

        def forward(self, x):
            return self.pool(self.lin(x))

    m = Odd()
    x = torch.randn(2, 3, 4)
    q = _qann(m, x)
    with pytest.raises(ConversionError, match=r"'pool'.*MaxPool1d.*Supported"):
        convert(q)


def test_bare_linear_without_quantizer_is_rejected():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = QuantLinear(4, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x))

    q = _qann(Bare(), torch.randn(2, 4))
    with pytest.raises(ConversionError, match=r"'b'.*no input quantizer"):
        convert(q)


def test_uncalibrated_and_unquantized_models_are_rejected():
    m = build_model("vit", "tiny")
    with pytest.raises(ValueError, match="uncalibrated model"):
        quantize(m, 8, 8)
    with pytest.raises(ConversionError, match="not 'int'"):
        convert(m)


@pytest.mark.parametrize("T", [0, -3, 2.5])
def test_timesteps_below_one_are_rejected(T):
    m = build_model("vit", "tiny")
    x = torch.rand(2, 1, 8, 8)
    snn = convert(_qann(m, x))
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        snn.run(x, T=T)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_inputs_are_rejected(bad):
    m = build_model("vit", "tiny")
    x = torch.rand(2, 1, 8, 8)
    snn = convert(_qann(m, x))
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        snn.run(x)


def test_not_quiet_within_max_T_is_an_error():
    m = build_model("vit", "tiny")
    x = torch.rand(2, 1, 8, 8) * 16
    snn = convert(_qann(m, x, a_bits=8))
    with pytest.raises(RuntimeError, match="did not go quiet within max_T=3"):
        snn.run(x, max_T=3)


def test_qann_and_snn_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    m = build_model("decoder", "tiny")
    x = torch.randint(0, 256, (2, 6))
    q = _qann(m, x, a_bits=4)
    save_qann(q, tmp_path / "q")
    q2 = load_qann(tmp_path / "q.json")
    assert torch.equal(q2(x), q(x))
    assert torch.equal(load_spiking(tmp_path / "q").run(x).output, q(x))


def test_mismatched_or_corrupt_checkpoint_gives_clear_errors(tmp_path):
    m = build_model("decoder", "tiny")
    x = torch.randint(0, 256, (2, 6))
    save_qann(_qann(m, x), tmp_path / "q")
    import json
    doc = json.loads((tmp_path / "q.json").read_text())
    doc["config"]["d_ff"] = 96
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    (tmp_path / "bad.safetensors").write_bytes((tmp_path / "q.safetensors").read_bytes())
    with pytest.raises(ValueError, match="mismatched checkpoint"):
        load_qann(tmp_path / "bad")
    (tmp_path / "c.json").write_text("{not json")
    (tmp_path / "c.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        load_qann(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_qann(tmp_path / "missing")


def test_qann_w8a8_tracks_fp32_and_integer_weights_are_integers():
    torch.manual_seed(0)
    m = build_model("vit", "small")
    x = torch.rand(16, 1, 8, 8) * 16
    q = _qann(m, x)
    fp, qo = m(x), q(x)
    assert (fp - qo).abs().max() / fp.abs().max() < 0.1
    w = q.trunk.blocks[0].attn.qkv.w_int
    assert torch.equal(w, torch.round(w)) and w.abs().max() <= 127
    qkv = q.trunk.blocks[0].attn.qkv.quant
    assert qkv.qmax - qkv.qmin == 255 and qkv.qmin < 0 < qkv.qmax  # 8 bits, window fitted to the range


def test_acc_bound_follows_in_place_weight_changes():
    """The cached max|w_int| (no GPU sync per forward) is refreshed when the weights change."""
    from snmfm.nn import QuantLinear
    lin = QuantLinear(8, 4)
    lin.quant.set_bits(8)
    lin.set_int_weight(torch.full((4, 8), 3.0), torch.ones(4), 8)
    assert lin.acc_bound() == 128 * 3 * 8 and lin.operand_max() == 128
    lin.w_int[0, 0] = 1000.0  # e.g. an injected bit flip
    assert lin.acc_bound() == 128 * 1000 * 8 and lin.operand_max() == 1000
    lin.set_int_weight(torch.full((4, 8), 2.0), torch.ones(4), 8)
    assert lin.acc_bound() == 128 * 2 * 8


def test_gpu_chunk_budget_follows_free_memory_within_bounds(monkeypatch):
    from converters import snn
    dev = torch.device("cuda")
    for free, want in ((1 << 30, snn._CHUNK_ELEMENTS_GPU),            # a small card: the floor
                       (8 << 30, int(0.75 * (8 << 30)) // (8 * snn._GPU_LIVE)),  # in between
                       (140 << 30, snn._CHUNK_ELEMENTS_GPU_MAX)):    # an H200: the cap
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d, f=free: (f, 2 * f))
        assert snn._gpu_chunk_elements(dev) == want

    def no_cuda(d):
        raise RuntimeError("no CUDA")
    monkeypatch.setattr(torch.cuda, "mem_get_info", no_cuda)
    assert snn._gpu_chunk_elements(dev) == snn._CHUNK_ELEMENTS_GPU
