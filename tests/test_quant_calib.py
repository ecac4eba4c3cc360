"""Calibration and scale search: the reservoir keeps the true range, the MSE search is the same
search made faster, fitted integer windows give skewed sites their codes, and a QANN with shifted
windows still converts to an SNN that reproduces it exactly."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F

from converters import convert, load_qann, save_qann
from snmfm.compress import calibrate, quantize
from snmfm.compress.quant import fit_window, search_scale
from snmfm.models import build_model
from snmfm.nn import Quantizer, quantizers


def _search_scale_unchunked(samples, qmin, qmax, method="mse", percentile=99.99):
    """search_scale as it was before the chunked search (all 128 candidates in one [128, N] tensor)."""
    x = samples.to(torch.float64)
    mag = x.abs() if qmin < 0 else x.clamp_min(0)
    top = float(mag.max())
    if method == "max":
        return top / qmax
    if method == "percentile":
        k = max(1, round(mag.numel() * percentile / 100.0))
        return max(float(mag.kthvalue(min(k, mag.numel())).values), top * 1e-6) / qmax
    xs = x if x.numel() <= 65536 else x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:65536]]
    scales = torch.linspace(0.02, 1.0, 128, dtype=torch.float64) * top / qmax
    q = torch.clamp(torch.floor(xs[None, :] / scales[:, None] + 0.5), qmin, qmax) * scales[:, None]
    return float(scales[int(((q - xs[None, :]) ** 2).mean(1).argmin())])


def _gelu_like(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.gelu(torch.randn(n, generator=g) * 1.5 - 0.5)
    x[:5] = torch.tensor([14.0, 20.0, 9.0, 11.0, 17.0])  # a few massive activations
    return x


# ---- the scale search ----------------------------------------------------------------------------
@pytest.mark.parametrize("qmin, qmax", [(-128, 127), (0, 255), (-8, 7), (0, 15), (-2, 1)])
@pytest.mark.parametrize("method", ["mse", "percentile", "max"])
def test_search_scale_is_bit_identical_to_the_unchunked_search(qmin, qmax, method):
    g = torch.Generator().manual_seed(qmax)
    for x in (torch.randn(200_000, generator=g), torch.randn(30_000, generator=g) ** 3,
              torch.rand(70_000, generator=g) * 4 - 1, _gelu_like(5_000)):
        assert search_scale(x, qmin, qmax, method) == _search_scale_unchunked(x, qmin, qmax, method)


def test_fit_window_gives_gelu_outputs_almost_all_codes():
    x = _gelu_like(50_000)
    assert fit_window(x, 8, signed=True) == (-3, 252)  # -0.17 / 3 < 20 / 252
    assert fit_window(x, 8, signed=False) == (0, 255)
    assert fit_window(torch.rand(100) + 1, 4) == (0, 15)  # never negative: no negative codes
    assert fit_window(-torch.rand(100) - 1, 4) == (-15, 0)
    assert fit_window(torch.zeros(10), 8) == (-128, 127)
    qmin, qmax = fit_window(torch.randn(100_000, generator=torch.Generator().manual_seed(1)), 8)
    assert qmax - qmin == 255 and abs(qmin + 128) <= 8  # a symmetric site stays about symmetric


def test_fitted_window_halves_the_gelu_step_and_the_error():
    x = _gelu_like(50_000)
    qmin, qmax = fit_window(x, 8)
    s_fit, s_sym = search_scale(x, qmin, qmax, "max"), search_scale(x, -128, 127, "max")
    assert s_fit == pytest.approx(float(x.max()) / qmax) and s_fit < 0.52 * s_sym
    assert qmin * s_fit <= float(x.min())  # no clipping on either side at the no-clipping scale

    def mse(s, lo, hi):
        return float(((torch.clamp(torch.floor(x / s + 0.5), lo, hi) * s - x) ** 2).mean())
    assert mse(search_scale(x, qmin, qmax), qmin, qmax) < 0.5 * mse(search_scale(x, -128, 127), -128, 127)


# ---- the calibration reservoir -------------------------------------------------------------------
def test_calibration_reservoir_keeps_exact_extremes_and_a_proportional_bounded_sample():
    q = Quantizer()
    q.max_samples = 4096
    q.mode = "calib"
    g = torch.Generator().manual_seed(0)
    big = torch.randn(100_000, generator=g)
    big[12345] = 60.0  # one massive activation among 100k values
    q(big)
    q(torch.full((20_000,), 3.0))  # a smaller second batch, all 3.0
    q(torch.tensor([-9.0]))
    s = torch.cat(q.samples)
    assert float(s.max()) == 60.0 and float(s.min()) == -9.0
    assert s.numel() <= q.max_samples + 2
    frac_second = float((s == 3.0).double().mean())
    assert 0.12 < frac_second < 0.22  # 20k of 120k values seen: ~1/6 of the reservoir
    q.samples = []  # a reset starts a fresh reservoir
    q(torch.ones(10))
    assert torch.cat(q.samples).numel() == 12 and float(torch.cat(q.samples).max()) == 1.0


# ---- QANN and SNN with shifted windows -----------------------------------------------------------
def _vit_qann(window):
    torch.manual_seed(0)
    m = build_model("vit", "tiny", n_classes=5).eval()
    x = torch.rand(6, 1, 8, 8) * 16
    calibrate(m, [(x[:4],)])
    return quantize(m, 8, 6, window=window), x


@pytest.fixture(scope="module")
def vit_qann():
    return _vit_qann("fit")


def test_gelu_sites_get_shifted_windows_and_the_window_is_recorded(vit_qann):
    qann, _ = vit_qann
    qs = dict(quantizers(qann))
    fc2 = [q for n, q in qs.items() if n.endswith("mlp.fc2.quant")]
    assert fc2 and all(-8 <= q.qmin < 0 for q in fc2)  # GELU >= -0.17: a few negative codes, not 32
    assert all(q.qmax - q.qmin + 1 == 2 ** q.bits == 64 for q in qs.values())
    assert qann.snmfm_quant["window"] == "fit"
    sym, _ = _vit_qann("symmetric")
    assert all((q.qmin, q.qmax) in ((-32, 31), (0, 63)) for _, q in quantizers(sym))


def test_snn_equals_qann_exactly_with_shifted_windows(vit_qann):
    qann, x = vit_qann
    r = convert(qann).run(x)
    assert torch.equal(r.output, qann(x))


def test_shifted_windows_survive_save_and_load(vit_qann, tmp_path):
    qann, x = vit_qann
    save_qann(qann, tmp_path / "q")
    back = load_qann(tmp_path / "q")
    for (n, a), (_, b) in zip(quantizers(qann), quantizers(back)):
        assert (a.qmin, a.qmax, a.bits, float(a.scale)) == (b.qmin, b.qmax, b.bits, float(b.scale)), n
    assert torch.equal(back(x), qann(x))


# ---- the fused GEMM epilogue ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 37), st.integers(1, 19), st.integers(1, 70), st.sampled_from(["none", "scalar", "vector"]),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_fused_epilogue_gives_the_torch_bits(R, K, N, scale_kind, with_bias, seed):
    """int_matmul's one-pass numba epilogue (float64(acc) * scale + bias) equals torch's three
    in-place passes bit for bit, on odd shapes (vector body and scalar tail alike), so a QANN and
    an SNN agree whichever path runs them."""
    from snmfm import _kernels
    from snmfm.nn import int_matmul
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-128, 128, (R, K), generator=g).to(torch.float32)
    b = torch.randint(-128, 128, (K, N), generator=g).to(torch.float64)
    scale = {"none": None, "scalar": torch.rand((), generator=g, dtype=torch.float64) / 7,
             "vector": torch.rand(N, generator=g, dtype=torch.float64) / 7}[scale_kind]
    bias = torch.randn(N, generator=g) * 3 if with_bias else None
    bound = 128 * 128 * K
    assert _kernels.available()
    fused = int_matmul(a, b, bound, scale=scale, bias=bias)
    _kernels._DISABLED = True
    try:
        ref = int_matmul(a, b, bound, scale=scale, bias=bias)
    finally:
        _kernels._DISABLED = False
    assert fused.dtype == ref.dtype == torch.float64
    assert torch.equal(fused, ref)
    acc = a.to(torch.float64) @ b
    want = acc * (1.0 if scale is None else scale) + (0.0 if bias is None else bias.to(torch.float64))
    assert torch.allclose(fused, want, rtol=1e-12, atol=1e-9)
