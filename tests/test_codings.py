"""Spiking codings (converters.codings): every coding reproduces the QANN bitwise; the events each
emits (trace contract C1); graded settles in one step; sigma-delta streams keep state; bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from converters import ActivityTrace, ConversionError, codings, convert
from converters.codings.base import Coding
from snmfm.compress import calibrate, quantize
from snmfm.models import Block, ModelConfig, build_model
from snmfm.nn import QuantLinear

CODINGS = [("binary", {}), ("binary", {"gate": "settled"}), ("graded", {}), ("sigma-delta", {})]
IDS = ["binary", "binary-settled", "graded", "sigma-delta"]
FAST = settings(max_examples=15, deadline=None)


def _qann(model, *inputs, w_bits=8, a_bits=8):
    calibrate(model.eval(), [inputs])
    return quantize(model, w_bits, a_bits)


def _inputs(name, B=3):
    return {"vit": (torch.rand(B, 1, 8, 8) * 16,), "features": (torch.randn(B, 30),),
            "text": (torch.randint(0, 256, (B, 7)), torch.ones(B, 7, dtype=torch.bool)),
            "decoder": (torch.randint(0, 256, (B, 9)),),
            "multimodal": (torch.rand(B, 1, 8, 8) * 16, torch.randint(0, 64, (B, 4)))}[name]


class _Net(nn.Module):
    def __init__(self, d_in, d, signed):
        super().__init__()
        self.l1 = QuantLinear(d_in, d, signed=signed)
        self.l2 = QuantLinear(d, 3)

    def forward(self, x):
        return self.l2(self.l1(x))


# ---- registry ----------------------------------------------------------------------------------
def test_registry_names_every_coding_and_each_is_a_coding():
    assert codings.names() == ["binary", "graded", "sigma-delta"]
    for name in codings.names():
        c = codings.get(name)
        assert isinstance(c, Coding) and c.name == name


def test_unknown_coding_and_unknown_option_are_clear_errors():
    with pytest.raises(ValueError, match="unknown coding 'x'; registered: binary, graded, sigma-delta"):
        codings.get("x")
    with pytest.raises(ValueError, match="unknown gate 'sometimes'"):
        codings.get("binary", gate="sometimes")
    with pytest.raises(ValueError, match="does not take options"):
        codings.get("graded", gate="settled")
    q = _qann(_Net(4, 5, True), torch.randn(2, 4))
    with pytest.raises(ValueError, match="unknown coding 'ternary'"):
        convert(q, coding="ternary")


def test_payload_bits_hold_any_change_of_the_code():
    from snmfm.nn import QuantSpec
    for bits, signed in [(2, True), (4, False), (8, True), (8, False), (16, True)]:
        qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
        spec = QuantSpec(bits, signed, qmin, qmax, 0.5)
        b = codings.get("graded").payload_bits(spec)
        assert -(2 ** (b - 1)) <= qmin - qmax and qmax - qmin <= 2 ** (b - 1) - 1  # fits a signed b-bit int
        assert not (qmax - qmin <= 2 ** (b - 2) - 1)                                # and b - 1 would not
        assert codings.get("binary").payload_bits(spec) == 0
    assert codings.get("sigma-delta").payload_bits(QuantSpec(8, False, 0, 255, 1.0)) == 9


# ---- exactness ---------------------------------------------------------------------------------
@FAST
@given(st.sampled_from(range(len(CODINGS))), st.integers(1, 10), st.integers(1, 10), st.integers(2, 8),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_every_coding_matches_qann_on_random_linear_layers(ci, d_in, d, a_bits, signed, seed):
    torch.manual_seed(seed)
    x = torch.randn(5, 4, d_in) * 3
    q = _qann(_Net(d_in, d, signed), x, a_bits=a_bits)
    name, kw = CODINGS[ci]
    r = convert(q, name, **kw).run(x)
    assert torch.equal(r.output, q(x))
    assert r.trace.coding == name


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(range(len(CODINGS))), st.sampled_from([(8, 2), (12, 3)]), st.integers(1, 7),
       st.sampled_from(["pre", "post"]), st.sampled_from(["softmax", "relu"]), st.booleans(),
       st.sampled_from([3, 4, 8]), st.integers(0, 2**31 - 1))
def test_every_coding_matches_qann_on_random_attention_blocks(ci, dh, L, norm, attn, causal, a_bits, seed):
    torch.manual_seed(seed)
    d, h = dh
    cfg = ModelConfig(kind="text", d_model=d, n_heads=h, d_ff=2 * d, norm=norm, act="gelu", attn=attn,
                      causal=causal, vocab_size=4, max_len=16)

    class BlockNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.block, self.out = QuantLinear(5, d), Block(cfg), QuantLinear(d, 3)

        def forward(self, x, mask):
            return self.out(self.block(self.inp(x), mask))

    x = torch.randn(3, L, 5)
    mask = torch.ones(3, L, dtype=torch.bool)
    mask[0, L // 2 + 1:] = False
    q = _qann(BlockNet(), x, mask, a_bits=a_bits)
    name, kw = CODINGS[ci]
    assert torch.equal(convert(q, name, **kw).run(x, mask).output, q(x, mask))


@pytest.mark.parametrize("coding,kw", CODINGS, ids=IDS)
@pytest.mark.parametrize("name,a_bits", [("vit", 4), ("text", 8), ("decoder", 4), ("multimodal", 8),
                                         ("features", 4)])
def test_every_coding_matches_qann_on_reference_models(coding, kw, name, a_bits):
    torch.manual_seed(0)
    m = build_model(name, "tiny")
    inputs = _inputs(name)
    q = _qann(m, *inputs, a_bits=a_bits)
    r = convert(q, coding, **kw).run(*inputs)
    assert torch.equal(r.output, q(*inputs))
    assert r.t_settle is not None and r.t_settle <= r.steps


# ---- graded: one step, then provably quiet ---------------------------------------------------
@pytest.mark.parametrize("coding", ["graded", "sigma-delta"])
@pytest.mark.parametrize("name", ["vit", "text", "decoder", "multimodal"])
def test_one_step_codings_are_exact_at_step_one_and_send_nothing_at_step_two(coding, name):
    """The proof in converters/codings/graded.py, checked: an explicit T=2 run has the QANN output
    at both steps and no event at step 2, so a run until quiet stops after step 1."""
    torch.manual_seed(1)
    inputs = _inputs(name)
    q = _qann(build_model(name, "tiny"), *inputs, a_bits=4)
    snn = convert(q, coding)
    two = snn.run(*inputs, T=2, keep_steps=True)
    ref = q(*inputs)
    assert torch.equal(two.per_step[0], ref) and torch.equal(two.per_step[1], ref)
    ev = two.trace.events_per_step()
    assert ev[0] > 0 and ev[1] == 0
    assert all(s.updates[1] == 0 for s in two.trace.sites.values() if s.kind == "neuron")
    auto = snn.run(*inputs)
    assert auto.steps == 1 and auto.t_settle == 1 and torch.equal(auto.output, ref)
    assert auto.trace.total_events() == int(ev[0])
    quiet = snn.run(*inputs, record=False)
    assert (quiet.steps, quiet.t_settle) == (1, 1)


def test_graded_events_are_the_nonzero_codes_of_a_one_layer_net():
    """Hand-made: one site, known codes. Events at step 1 = nonzero codes, split by sign; payload
    = |code|; rows with an event; payload_bits from the range."""
    net = _Net(4, 2, True)
    x = torch.tensor([[0.0, 1.0, -2.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    q = _qann(net, x, a_bits=4)
    q.l1.quant.scale.fill_(1.0)  # codes are the inputs themselves: [0, 1, -2, 3], [0, 0, 0, 0]
    snn = convert(q, "graded")
    r = snn.run(x, T=2)
    site = r.trace.sites["l1.quant"]
    assert site.pos.tolist() == [2, 0] and site.neg.tolist() == [1, 0]
    assert site.events.tolist() == [3, 0] and site.spikes.tolist() == [3, 0]
    assert site.payload_abs.tolist() == [6, 0]
    assert site.active_rows.tolist() == [1, 0]
    assert site.payload_bits == 5  # [-8, 7]: changes up to 15 need 4 bits + sign
    b = convert(q, "binary").run(x)
    bs = b.trace.sites["l1.quant"]
    assert bs.payload_bits == 0 and int(bs.events.sum()) == 6 and np.array_equal(bs.payload_abs, bs.events)
    assert bs.events[:4].tolist() == [3, 2, 1, 0]  # ±1 per step: codes 1, -2, 3 take 1, 2, 3 steps


@pytest.mark.parametrize("coding", ["graded", "binary"])
@pytest.mark.parametrize("name,a_bits,T", [("vit", 4, None), ("decoder", 6, None), ("multimodal", 4, 3),
                                            ("text", 8, None)])
def test_kernel_path_equals_torch_path_for_every_coding(coding, name, a_bits, T):
    from converters import _kernels
    torch.manual_seed(3)
    inputs = _inputs(name)
    q = _qann(build_model(name, "tiny"), *inputs, a_bits=a_bits)
    kw = {"gate": "settled"} if coding == "binary" else {}
    runs = []
    for disabled in (False, True):
        _kernels._DISABLED = disabled
        try:
            runs.append(convert(q, coding, **kw).run(*inputs, T=T, keep_steps=True))
        finally:
            _kernels._DISABLED = False
    fast, ref = runs
    assert torch.equal(fast.per_step, ref.per_step)
    a, b = fast.trace, ref.trace
    assert (a.steps, a.t_settle, a.t_settle_per_sample) == (b.steps, b.t_settle, b.t_settle_per_sample)
    for k in a.sites:
        for f in ("pos", "neg", "active_rows", "updates", "payload_abs"):
            assert getattr(a.sites[k], f).tolist() == getattr(b.sites[k], f).tolist(), (k, f)
        assert a.sites[k].payload_bits == b.sites[k].payload_bits


# ---- trace schema ------------------------------------------------------------------------------
def test_trace_v2_round_trips_and_v1_loads_as_binary(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    q = _qann(_Net(4, 3, True), x)
    tr = convert(q, "graded").run(x).trace
    tr.save(tmp_path / "t.json")
    back = ActivityTrace.load(tmp_path / "t.json")
    assert back.coding == "graded" and back.total_events() == tr.total_events()
    assert back.total_payload() == tr.total_payload()
    assert {k: s.payload_bits for k, s in back.sites.items()} == {k: s.payload_bits for k, s in tr.sites.items()}
    d = convert(q).run(x).trace.to_dict()
    d["schema"] = "snmfm.activity_trace/1"
    d.pop("coding")
    for s in d["sites"].values():
        s.pop("payload_abs"), s.pop("payload_bits")
    old = ActivityTrace.from_dict(d)
    assert old.coding == "binary"
    assert all(np.array_equal(s.payload_abs, s.pos + s.neg) and s.payload_bits == 0 for s in old.sites.values())
    with pytest.raises(ValueError, match="readable"):
        ActivityTrace.from_dict({**d, "schema": "other/1"})


# ---- export --------------------------------------------------------------------------------------
@pytest.mark.parametrize("coding", ["graded", "sigma-delta"])
def test_export_of_a_payload_coding_names_the_coding_and_what_takes_it(coding):
    from converters import export
    x = torch.rand(2, 4)
    q = _qann(nn.Sequential(QuantLinear(4, 3), nn.ReLU(), QuantLinear(3, 2, signed=False)), x)
    with pytest.raises(ValueError, match=f"cannot export a '{coding}'-coded SpikingModel to 'nir'.*binary"):
        export(convert(q, coding), "nir")


# ---- streams -------------------------------------------------------------------------------------
def _frames(x, n, pixels=3, seed=0):
    """A clip whose frames differ from the previous one in a few pixels by one grey level."""
    g = torch.Generator().manual_seed(seed)
    out = [x.clone()]
    for _ in range(n - 1):
        f = out[-1].clone()
        f.view(f.shape[0], -1)[:, torch.randint(0, f[0].numel(), (pixels,), generator=g)] += 1.0
        out.append(f)
    return out


@pytest.mark.parametrize("coding,kw", CODINGS, ids=IDS)
def test_stream_equals_qann_input_by_input(coding, kw):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8) * 16
    q = _qann(build_model("vit", "tiny"), x, a_bits=4)
    frames = _frames(x, 4)
    r = convert(q, coding, **kw).stream(frames)
    assert len(r.outputs) == len(r.traces) == len(r.t_settle) == 4
    for out, f in zip(r.outputs, frames):
        assert torch.equal(out, q(f))
    # a tensor [N, B, ...] is the same stream
    r2 = convert(q, coding, **kw).stream(torch.stack(frames))
    assert all(torch.equal(a, b) for a, b in zip(r.outputs, r2.outputs)) and r.events == r2.events


def test_sigma_delta_sends_only_changes_and_graded_starts_each_input_afresh():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8) * 16
    q = _qann(build_model("vit", "tiny"), x, a_bits=8)
    frames = _frames(x, 5)
    sd = convert(q, "sigma-delta").stream(frames)
    gr = convert(q, "graded").stream(frames)
    assert sd.events[0] == gr.events[0]  # the first input starts from zero in both
    for i in range(1, 5):
        assert 0 < sd.events[i] <= gr.events[i] / 2
        assert gr.events[i] == convert(q, "graded").run(frames[i]).trace.total_events()
    # a repeated input changes no code: no event, no neuron update, no unit re-evaluated
    same = convert(q, "sigma-delta").stream([x, x, x])
    assert same.events[1:] == [0, 0]
    for s in same.traces[2].sites.values():
        assert s.active_rows.sum() == 0 and s.updates.sum() == 0
    # the stream's state does not leak into a later run
    snn = convert(q, "sigma-delta")
    snn.stream(frames)
    assert snn.run(frames[-1]).trace.total_events() == gr.events[-1]


def test_sigma_delta_stream_kernel_equals_torch_path():
    from converters import _kernels
    torch.manual_seed(2)
    x = torch.rand(2, 1, 8, 8) * 16
    q = _qann(build_model("vit", "tiny"), x, a_bits=6)
    frames = _frames(x, 3, pixels=5)
    runs = []
    for disabled in (False, True):
        _kernels._DISABLED = disabled
        try:
            runs.append(convert(q, "sigma-delta").stream(frames))
        finally:
            _kernels._DISABLED = False
    for ta, tb in zip(runs[0].traces, runs[1].traces):
        for k in ta.sites:
            for f in ("pos", "neg", "active_rows", "updates", "payload_abs"):
                assert getattr(ta.sites[k], f).tolist() == getattr(tb.sites[k], f).tolist(), (k, f)


@pytest.mark.parametrize("coding", ["sigma-delta", "graded", "binary"])
def test_decoder_stream_of_cached_decode_steps_equals_qann_cached_decoding(coding):
    """A decoder fed one decode step after another over its KV cache: each step's logits equal the
    QANN's cached decoding, bitwise; under sigma-delta a step starts where the previous ended."""
    torch.manual_seed(0)
    m = build_model("decoder", "tiny").eval()
    toks = torch.randint(0, 256, (2, 10))
    q = _qann(m, toks, a_bits=4)
    cq = q.new_caches()
    ref = [q(toks[:, :6], caches=cq)]
    ref += [q(toks[:, i:i + 1], caches=cq, start_pos=i) for i in range(6, 10)]
    snn = convert(q, coding)
    cs = snn.net.new_caches()
    assert torch.equal(snn.run(toks[:, :6], caches=cs).output, ref[0])
    st = snn.stream([toks[:, i:i + 1] for i in range(6, 10)], caches=cs,
                    forward_kw=[{"start_pos": i} for i in range(6, 10)])
    for out, r in zip(st.outputs, ref[1:]):
        assert torch.equal(out, r)
    for c, d in zip(cs, cq):
        assert torch.equal(c["k"], d["k"]) and torch.equal(c["v"], d["v"])


def test_stream_rejects_inputs_of_different_shapes_and_mismatched_forward_kw():
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    snn = convert(_qann(_Net(4, 3, True), x), "sigma-delta")
    with pytest.raises(ValueError, match=r"stream needs inputs of one shape: input 0 is \[2, 4\] float32, "
                                         r"input 1 is \[3, 4\] float32"):
        snn.stream([x, torch.randn(3, 4)])
    with pytest.raises(ValueError, match="at least one input"):
        snn.stream([])
    with pytest.raises(ValueError, match="forward_kw has 1 entries for 2 inputs"):
        snn.stream([x, x], forward_kw=[{}])


def test_a_site_the_coding_cannot_carry_is_named():
    x = torch.randn(2, 4)
    q = _qann(_Net(4, 3, True), x)
    q.l1.quant.set_bits(32)  # a 32-bit window: its changes need 33-bit payloads
    with pytest.raises(ConversionError, match="cannot carry site 'l1.quant'.*33-bit payloads"):
        convert(q, "graded")


# ---- CLI -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_coding_option_converts_with_the_coding_and_rejects_unknown_names():
    import json
    from click.testing import CliRunner
    from cli import main
    r = CliRunner().invoke(main, ["convert", "medical-wdbc", "--coding", "graded", "--check", "4",
                                  "--calib", "8", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["coding"] == "graded" and out["check_identical_fraction"] == 1.0 and out["check_t_settle"] == 1
    for args in (["convert", "medical-wdbc", "--coding", "ternary"],
                 ["simulate", "medical-wdbc", "--coding", "ternary"],
                 ["convert", "medical-wdbc", "--coding", "graded,binary"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert "--coding" in r.output


# ---- shipped task models -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("task", ["vision-digits", "medical-wdbc", "code-stdlib", "vqa-digits"])
def test_every_coding_matches_qann_on_shipped_task_models_at_w8a8_and_w8a4(task):
    """Each task's shipped checkpoint, calibrated on 16 examples, on 3 held-out examples: every
    coding (binary gated and not, graded, sigma-delta as a stream of the 3) equals the QANN bitwise."""
    from converters.workflow import build_qann
    from snmfm.tasks import get_task
    t = get_task(task)
    batch = next(iter(t.batches("test", 3, seed=0, limit=3)))
    inputs = tuple(batch.inputs)
    for a_bits in (8, 4):
        model, _ = t.load()
        q = build_qann(t, model, w_bits=8, a_bits=a_bits, calib=16)
        with torch.no_grad():
            ref = q(*inputs)
        for coding, kw in CODINGS[:3] if a_bits == 4 or task != "code-stdlib" else [CODINGS[0], CODINGS[2]]:
            assert torch.equal(convert(q, coding, **kw).run(*inputs, record=False).output, ref), (task, coding, kw)
        rows = [tuple(x[i:i + 1] for x in inputs) for i in range(3)]
        st = convert(q, "sigma-delta").stream(rows)
        for out, row in zip(st.outputs, rows):
            with torch.no_grad():
                assert torch.equal(out, q(*row))


def test_bench_codings_measures_events_synops_and_wasted_spikes_on_a_small_model():
    from eval.benchmarks.bench_codings import measure_codings, measure_stream
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8) * 16
    q = _qann(build_model("vit", "tiny"), x, a_bits=4)
    rows = {r["coding"]: r for r in measure_codings(q, (x,))}
    assert set(rows) == {"binary", "binary (gate=settled)", "graded"}
    assert all(r["exact"] for r in rows.values())
    g, b, s = rows["graded"], rows["binary"], rows["binary (gate=settled)"]
    assert g["payload_per_code"] == 1.0 and g["t_settle"] == 1 and g["events"] < b["events"]
    assert s["payload_per_code"] == pytest.approx(1.0) and b["payload_per_code"] >= 1.0
    assert s["t_settle"] >= b["t_settle"]
    assert 0 < g["synops_per_mac"] < b["synops_per_mac"]
    st = measure_stream(q, x[:1], frames=3, pixels=2, step=1.0)
    assert st["graded"]["exact"] and st["sigma-delta"]["exact"] and 0 < st["sigma_delta_over_graded"] < 1
