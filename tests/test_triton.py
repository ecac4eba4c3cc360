"""The GPU kernels (converters/_triton.py) run here in Triton's CPU interpreter: the same kernel
source the GPU compiles, checked against the numba kernels and the torch path on random shapes,
and a whole SNN run with its trace against the torch path.  (tests/test_gpu.py runs them compiled
on a GPU.)  The interpreter must be switched on before triton is imported, so each check runs in
a fresh interpreter process."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_kernels_equal_numba_kernels_on_random_shapes():
    out = _run("""
        import numpy as np, torch
        from converters import _kernels, _triton
        rng = np.random.default_rng(0)
        for case in range(24):
            T = int(rng.integers(1, 7)); B = int(rng.integers(1, 5)); row = int(rng.integers(1, 40))
            rows = int(rng.integers(1, 4)); per = row * rows; M = B * per
            qmin, qmax = [(0, 15), (-8, 7), (-128, 127), (0, 255)][case % 4]
            s = float(rng.uniform(0.05, 2.0))
            # accumulated inputs that settle: a random walk towards a target, then constant
            tgt = rng.uniform(qmin - 2, qmax + 2, M) * s
            steps = np.stack([tgt * min(1.0, (t + 1) / max(1, T - 1)) for t in range(T)])
            if case % 3 == 0:
                steps[:, : M // 2] = steps[0, : M // 2]   # some neurons constant from step 1
            x = np.ascontiguousarray(steps, np.float64)
            n0 = rng.integers(qmin, qmax + 1, M).astype(np.int32) if case % 2 else np.zeros(M, np.int32)
            rp0 = rng.integers(qmin, qmax + 1, M).astype(np.int32)
            for jump in (False, True):
                for trace in (False, True):
                    n_a, rp_a = n0.copy(), rp0.copy()
                    out_a = np.zeros((T, M), np.float32); st_a = np.zeros((T, 5), np.int64); last_a = np.empty(B, np.int64)
                    k = _kernels.graded_chunk if jump else _kernels.if_chunk
                    k(x, s, float(qmin), float(qmax), n_a, rp_a, row, per, out_a, st_a, last_a, trace)
                    n_b, rp_b = torch.from_numpy(n0.copy()), torch.from_numpy(rp0.copy())
                    out_b = torch.zeros((T, M), dtype=torch.float32); last_b = torch.full((B,), -1, dtype=torch.int32)
                    st_b = _triton.neuron_chunk(torch.from_numpy(x), _triton.params(s, qmin, qmax, "cpu"), n_b, rp_b, row, per, out_b, last_b,
                                                trace, jump)
                    assert np.array_equal(out_a, out_b.numpy()), (case, jump, trace)
                    assert np.array_equal(n_a, n_b.numpy()), (case, jump, trace)
                    assert np.array_equal(last_a, last_b.numpy().astype(np.int64)), (case, jump, trace, last_a, last_b)
                    if trace:
                        assert np.array_equal(st_a, st_b.numpy()), (case, jump, st_a, st_b)
                        assert np.array_equal(rp_a, rp_b.numpy())
            # changed rows of a non-spiking unit's input (NaN equals NaN)
            u = x.copy(); u[:, :row] = np.nan
            prev = np.full(M, np.nan) if case % 2 else x[0].copy()
            c_a = np.zeros(T, np.int64)
            _kernels.changed_rows(u, prev, row, c_a)
            c_b = _triton.changed_rows(torch.from_numpy(u), torch.from_numpy(prev), row)
            assert np.array_equal(c_a, c_b.numpy()), (case, c_a, c_b)
        print("ok")
    """)
    assert "ok" in out


def test_snn_run_with_kernels_equals_torch_path_and_qann():
    out = _run("""
        import torch
        from converters import _triton, convert
        from snmfm.compress import calibrate, quantize
        from snmfm.models import build_model
        torch.manual_seed(0)
        for name, a_bits in (("vit", 4), ("decoder", 4)):
            if name == "vit":
                m, inputs = build_model("vit", "small", n_classes=10).eval(), (torch.rand(2, 1, 8, 8) * 16,)
            else:
                m, inputs = build_model("decoder", "small").eval(), (torch.randint(0, 256, (2, 10)),)
            calibrate(m, [inputs])
            q = quantize(m, w_bits=8, a_bits=a_bits)
            ref = q(*inputs)
            for coding in ("binary", "graded", "sigma-delta"):
                snn = convert(q, coding=coding)
                _triton._DISABLED = False
                k = snn.run(*inputs, record=True)
                k_nt = snn.run(*inputs, record=False)
                _triton._DISABLED = True
                t = snn.run(*inputs, record=True)
                _triton._DISABLED = False
                assert torch.equal(k.output, ref) and torch.equal(t.output, ref), (name, coding)
                assert torch.equal(k_nt.output, ref)
                assert k.steps == t.steps and k.t_settle == t.t_settle == k_nt.t_settle, (k.t_settle, t.t_settle, k_nt.t_settle)
                assert k.trace.t_settle_per_sample == t.trace.t_settle_per_sample
                assert set(k.trace.sites) == set(t.trace.sites)
                for site, a in k.trace.sites.items():
                    b = t.trace.sites[site]
                    for f in ("pos", "neg", "active_rows", "updates", "payload_abs"):
                        assert (getattr(a, f) == getattr(b, f)).all(), (name, coding, site, f)
                print(name, a_bits, coding, k.trace.total_events(), k.t_settle)
        print("ok")
    """)
    assert "ok" in out
