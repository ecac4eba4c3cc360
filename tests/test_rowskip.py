"""Skipping unchanged rows (snmfm.rowskip) gives the dense path's bits: per op on random shapes and
chunkings, and through whole spiking models (every step's output and the trace)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from converters import convert
from snmfm import _kernels, rowskip
from snmfm.nn import int_matmul

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba not installed")


@pytest.fixture(autouse=True)
def _skipping_on(monkeypatch):
    monkeypatch.setattr(rowskip, "ENABLED", True)  # opt-in (module docstring says why)


def _series(rng, T, rows, D, p_change, dtype, ints):
    """[T, rows, D] inputs where each row changes from one step to the next with p_change."""
    if ints:
        x = torch.from_numpy(rng.integers(-9, 10, (T, rows, D))).to(dtype)
    else:
        x = torch.from_numpy(rng.normal(0, 3, (T, rows, D))).to(dtype)
    keep = torch.from_numpy(rng.random((T, rows)) >= p_change)
    keep[0] = False
    for t in range(1, T):
        x[t][keep[t]] = x[t - 1][keep[t]]
    return x


def _ops(rng, D, N):
    w = torch.from_numpy(rng.integers(-127, 128, (D, N))).to(torch.float64)
    scale = torch.from_numpy(rng.uniform(1e-3, 1e-2, N))
    bias = torch.from_numpy(rng.normal(0, 1, N))
    ln = nn.LayerNorm(D)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    w32 = w.to(torch.float32)
    return {
        "linear": (lambda r: int_matmul(r, w, 9.0 * 127 * D, scale=scale, bias=bias, operand_max=127.0), N, True),
        # QuantLinear's path: float32 accumulators, dequantised while copied; dense = int_matmul
        "linear-fused": ((lambda r: r.to(torch.float32) @ w32, (scale.numpy(), bias.numpy()),
                          lambda r: int_matmul(r, w, 9.0 * 127 * D, scale=scale, bias=bias, operand_max=127.0)),
                         N, True),
        "softmax": (lambda r: torch.softmax(r, dim=-1), D, False),
        "layernorm": (lambda r: F.layer_norm(r, (D,), ln.weight.detach().to(r.dtype), ln.bias.detach().to(r.dtype),
                                             1e-5), D, False),
    }


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["linear", "linear-fused", "softmax", "layernorm"]),
       st.lists(st.integers(1, 5), min_size=1, max_size=5),
       st.integers(1, 4), st.integers(1, 6), st.integers(1, 37), st.integers(1, 19),
       st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.sampled_from(["float32", "float64"]), st.integers(0, 2**31 - 1))
def test_skipped_rows_equal_the_dense_op_bitwise_on_random_shapes(op, chunks, B, L, D, N, p_change, dtype, seed):
    rng = np.random.default_rng(seed)
    fn, n_out, ints = _ops(rng, D, N)[op]
    epilogue, dense_fn = None, fn
    if isinstance(fn, tuple):
        fn, epilogue, dense_fn = fn
    T = sum(chunks)
    x = _series(rng, T, B * L, D, p_change, getattr(torch, dtype), ints).reshape(T * B, L, D)
    module = nn.Module()
    t0 = 0
    with torch.no_grad():
        for steps in chunks:
            xc = x[t0 * B:(t0 + steps) * B]
            dense = dense_fn(xc.reshape(-1, D)).reshape(steps * B, L, n_out)
            got = rowskip.rowwise(module, xc, fn, (t0, steps), n_out=n_out, epilogue=epilogue)
            assert got is not None
            assert got.dtype == dense.dtype and got.shape == dense.shape
            ints_view = {torch.float64: torch.int64, torch.float32: torch.int32}[dense.dtype]
            assert torch.equal(got.view(ints_view), dense.view(ints_view)), (op, t0, steps)
            t0 += steps


def test_row_changes_compares_bits_and_every_row_of_a_fresh_step_zero_is_changed():
    x = torch.zeros((3, 4, 2), dtype=torch.float64)
    x[1, 0, 1] = -0.0           # -0.0 == 0.0 as numbers, not as bits: a changed row
    x[:, 1, 0] = float("nan")   # the same NaN at every step: unchanged
    x[2, 2, 0] = 1.0
    prev = x[0].clone()
    prev[3, 1] = 5.0
    mask = np.empty((3, 4), np.uint8)
    n = _kernels.row_changes(x.view(torch.int64).numpy(), prev.view(torch.int64).numpy(), True, mask)
    assert mask.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0], [1, 0, 1, 0]] and n == 4
    n = _kernels.row_changes(x.view(torch.int64).numpy(), prev.view(torch.int64).numpy(), False, mask)
    assert mask[0].tolist() == [1, 1, 1, 1] and n == 7


def test_rows_are_not_skipped_outside_a_chunk_under_autograd_or_with_forward_hooks():
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    m = nn.Module()
    fn = _ops(np.random.default_rng(0), 5, 5)["softmax"][0]
    with torch.no_grad():
        assert rowskip.rowwise(m, x, fn, None) is None
        h = m.register_forward_hook(lambda *a: None)
        assert rowskip.rowwise(m, x, fn, (0, 2)) is None
        h.remove()
        assert rowskip.rowwise(m, x, fn, (0, 2)) is not None
    with torch.enable_grad():
        assert rowskip.rowwise(m, x, fn, (0, 2)) is None
    with pytest.raises(ValueError, match="rows to"):
        with torch.no_grad():
            rowskip.rowwise(nn.Module(), x, lambda r: r[:, :2], (0, 2))


def test_a_chunk_that_does_not_continue_the_last_one_starts_afresh():
    """The kept last step is used only by the chunk right after it in the same run: a new run
    (step0 0), a gap or a new shape compares step 0 with nothing."""
    m = nn.Module()
    fn = _ops(np.random.default_rng(1), 6, 6)["softmax"][0]
    a = torch.randn(2 * 3, 4, 6, dtype=torch.float64)
    b = torch.randn(2 * 3, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        rowskip.rowwise(m, a, fn, (0, 2))
        for chunk in [(0, 2), (5, 2), (2, 2)]:  # (2, 2) continues (0, 2) ... but after (5, 2): fresh
            got = rowskip.rowwise(m, b, fn, chunk)
            assert torch.equal(got, fn(b.reshape(-1, 6)).reshape(b.shape))
        c = torch.randn(2 * 5, 4, 6, dtype=torch.float64)  # another batch size
        assert torch.equal(rowskip.rowwise(m, c, fn, (4, 2)), fn(c.reshape(-1, 6)).reshape(c.shape))


def _qann(name, a_bits, seed=0):
    from snmfm.compress import calibrate, quantize
    from snmfm.models import build_model
    from eval.benchmarks.bench_snn import model_inputs
    torch.manual_seed(seed)
    model = build_model(name, "tiny").eval()
    calibrate(model, [model_inputs(name, model, 3, seed=100)])
    return quantize(model, 8, a_bits), model_inputs(name, model, 3, seed=1)


@pytest.mark.parametrize("name,a_bits", [("text", 6), ("decoder", 4), ("vit", 5), ("multimodal", 4)])
def test_snn_with_row_skipping_equals_dense_snn_at_every_step_and_in_its_trace(monkeypatch, name, a_bits):
    qann, x = _qann(name, a_bits)
    snn = convert(qann)
    runs, filled = {}, []
    for k in ("fill_rows", "fill_rows_dequant"):
        fill = getattr(_kernels, k)
        monkeypatch.setattr(_kernels, k, lambda mask, *a, fill=fill: (filled.append(int((mask == 0).sum())),
                                                                      fill(mask, *a)))
    for flag in (False, True):
        monkeypatch.setattr(rowskip, "ENABLED", flag)
        runs[flag] = snn.run(*x, keep_steps=True)
        assert (sum(filled) > 0) == flag  # rows were skipped (only) with skipping on
    dense, skip = runs[False], runs[True]
    assert dense.steps == skip.steps and dense.t_settle == skip.t_settle
    assert torch.equal(dense.per_step, skip.per_step)
    with torch.no_grad():
        assert torch.equal(skip.output, qann(*x))
    assert dense.trace.to_dict() == skip.trace.to_dict()
    assert not any("_rowskip" in m.__dict__ or m.__dict__.get("time_chunk") for m in snn.modules())


def test_row_skipping_keeps_kv_cached_decoding_exact():
    qann, (ids,) = _qann("decoder", 4)
    snn = convert(qann)
    caches_q, caches_s = qann.new_caches(), snn.net.new_caches()
    with torch.no_grad():
        ref = [qann(ids[:, :5], caches=caches_q), qann(ids[:, 5:6], caches=caches_q, start_pos=5)]
    got = [snn.run(ids[:, :5], caches=caches_s).output,
           snn.run(ids[:, 5:6], caches=caches_s, forward_kw={"start_pos": 5}).output]
    assert all(torch.equal(a, b) for a, b in zip(ref, got))
    assert math.isfinite(float(got[-1].abs().max()))
