"""CUDA: every coding runs natively with its trace and stays bitwise equal to the QANN on the GPU.
(Skipped without a GPU; run on a CUDA machine: python -m pytest tests/test_gpu.py.)"""
from __future__ import annotations

import pytest
import torch

from converters import convert
from snmfm.compress import calibrate, quantize
from snmfm.device import resolve_device
from snmfm.models import build_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def _qann(name, a_bits, seed=0):
    torch.manual_seed(seed)
    if name == "vit":
        m, x = build_model("vit", "small", n_classes=10).eval(), torch.rand(8, 1, 8, 8) * 16
        inputs = (x,)
    else:
        m = build_model("decoder", "small").eval()
        inputs = (torch.randint(0, 256, (4, 24)),)
    calibrate(m, [inputs])
    return quantize(m, w_bits=8, a_bits=a_bits), inputs


@cuda
@pytest.mark.parametrize("coding", ["binary", "graded", "sigma-delta"])
@pytest.mark.parametrize("name", ["vit", "decoder"])
@pytest.mark.parametrize("a_bits", [8, 4])
def test_snn_with_trace_on_cuda_equals_qann_on_cuda(name, coding, a_bits):
    qann, inputs = _qann(name, a_bits)
    dev = torch.device("cuda")
    q = qann.to(dev)
    xs = tuple(x.to(dev) for x in inputs)
    ref = q(*xs)
    run = convert(q, coding=coding).to(dev).run(*xs, record=True)
    assert run.output.device.type == "cuda"
    assert torch.equal(run.output, ref)
    # the same model on the CPU: same structure of the trace, same events where the QANN's
    # integers agree across devices (float64 LayerNorm/softmax may round differently)
    qc = qann.cpu()
    cpu = convert(qc, coding=coding).run(*inputs, record=True)
    assert set(cpu.trace.sites) == set(run.trace.sites)
    if torch.equal(qc(*inputs), ref.cpu()):
        assert run.trace.total_spikes() == cpu.trace.total_spikes()
        assert run.t_settle == cpu.t_settle


@cuda
def test_no_trace_run_on_cuda_reports_t_settle():
    qann, inputs = _qann("vit", 4)
    dev = torch.device("cuda")
    q = qann.to(dev)
    xs = tuple(x.to(dev) for x in inputs)
    with_trace = convert(q).to(dev).run(*xs, record=True)
    without = convert(q).to(dev).run(*xs, record=False)
    assert torch.equal(with_trace.output, without.output)
    assert without.t_settle == with_trace.t_settle


@cuda
@pytest.mark.parametrize("bits,K", [(8, 768), (8, 3072), (11, 4096), (4, 64)])
def test_tf32_int_matmul_is_exact_against_float64(bits, K):
    """Integer operands up to 2^11 on TF32 tensor cores, K cut so partial sums stay below 2^24."""
    from snmfm.nn import int_matmul
    g = torch.Generator().manual_seed(bits * K)
    hi = 2 ** (bits - 1)
    a = torch.randint(-hi, hi, (4, 257, K), generator=g).double().cuda()
    b = torch.randint(-hi, hi, (K, 129), generator=g).double().cuda()
    a[0, 0] = hi  # the extremes, so partial sums reach the bound's order
    b[:, 0] = hi
    bound = float(hi * hi * K)
    ref = (a.cpu() @ b.cpu())  # float64 on the CPU: exact below 2^53
    out = int_matmul(a, b, bound, operand_max=float(hi))
    assert torch.equal(out.cpu(), ref)
    assert not torch.backends.cuda.matmul.allow_tf32  # the global flag is restored


@cuda
@pytest.mark.parametrize("coding", ["binary", "graded", "sigma-delta"])
def test_fused_kernels_equal_torch_path_on_cuda(coding):
    """converters/_triton.py against the torch rule on the GPU: same output, T_settle and every
    trace counter of every site."""
    from converters import _triton
    if _triton.triton is None:
        pytest.skip("no triton")
    qann, inputs = _qann("decoder", 8)
    dev = torch.device("cuda")
    q = qann.to(dev)
    xs = tuple(x.to(dev) for x in inputs)
    snn = convert(q, coding=coding).to(dev)
    k = snn.run(*xs, record=True)
    try:
        _triton._DISABLED = True
        t = snn.run(*xs, record=True)
    finally:
        _triton._DISABLED = False
    assert torch.equal(k.output, q(*xs)) and torch.equal(t.output, k.output)
    assert (k.steps, k.t_settle) == (t.steps, t.t_settle)
    assert k.trace.t_settle_per_sample == t.trace.t_settle_per_sample
    for site, a in k.trace.sites.items():
        b = t.trace.sites[site]
        for f in ("pos", "neg", "active_rows", "updates", "payload_abs"):
            assert (getattr(a, f) == getattr(b, f)).all(), (site, f)
