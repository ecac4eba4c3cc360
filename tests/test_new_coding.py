"""A new coding is one module in converters/codings/ (issue 13): this test writes one, a
rate-limited graded coding, into a directory on the package's path, and everything downstream
takes it with no other change: discovery, conversion (bitwise equal to the QANN), the trace, the
hardware models (graded chips charge it, binary-only chips refuse it) and the exporters' error."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import converters.codings as codings
from converters import convert, export
from neuro_hw import simulate
from neuro_hw.workload import extract_workload
from snmfm.compress import calibrate, quantize
from snmfm.models import build_model

MODULE = '''
"""bounded: graded events whose payload is at most K in magnitude.

    n_t = n_{t-1} + clamp(r_t - n_{t-1}, -K, K)       event: payload n_t - n_{t-1} when nonzero

Exact for the same reason as binary (K = 1): with the input constant the count walks to r within
ceil(|r - n| / K) steps and stays.  Payload: K.bit_length() + 1 signed bits."""
from dataclasses import dataclass

import torch

from converters.codings import register


@dataclass(frozen=True)
class Bounded:
    k: int = 3
    name: str = "bounded"
    keeps_state: bool = False
    one_step: bool = False
    gated: bool = False

    def payload_bits(self, spec):
        return int(self.k).bit_length() + 1

    def check(self, spec, site):
        if self.k < 1:
            raise ValueError(f"coding 'bounded' needs k >= 1 (site {site!r})")

    def advance(self, r, n0, gate):
        out = torch.empty_like(r)
        n = n0.to(r.dtype).clone()
        for t in range(r.shape[0]):
            n.add_((r[t] - n).clamp_(-self.k, self.k))
            out[t] = n
        return out


register("bounded", Bounded)
'''


@pytest.fixture
def bounded(tmp_path, monkeypatch):
    (tmp_path / "bounded.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.setattr(codings, "_REGISTRY", dict(codings._REGISTRY))
    monkeypatch.setattr(codings, "__path__", [*codings.__path__, str(tmp_path)])
    codings._import_modules()          # what the package does at import: discover every module
    yield "bounded"
    sys.modules.pop("converters.codings.bounded", None)


def _vit_qann(a_bits=8, B=4):
    torch.manual_seed(0)
    model = build_model("vit", "tiny").eval()
    x = torch.rand(B, 1, 8, 8) * 16
    calibrate(model, [(x,)])
    return quantize(model, 8, a_bits), x


def test_a_coding_added_as_one_module_is_discovered_exact_traced_charged_and_refused_by_export(bounded):
    assert "bounded" in codings.names() and codings.get("bounded", k=5).k == 5
    qann, x = _vit_qann()
    ref = qann(x)
    runs = {}
    for name in ("binary", "bounded"):
        runs[name] = convert(qann, coding=name).run(x, record=True)
        assert torch.equal(runs[name].output, ref), name
    tr, tb = runs["bounded"].trace, runs["binary"].trace
    assert tr.coding == "bounded"
    bits = {s.payload_bits for s in tr.sites.values() if s.kind == "neuron"}
    assert bits == {3}                                    # 3.bit_length() + 1
    assert tr.total_spikes() < tb.total_spikes()          # a jump of up to 3 is one event
    assert runs["bounded"].t_settle < runs["binary"].t_settle
    w = extract_workload(qann, x)
    for hw in ("neuromorphic", "loihi2"):
        r = simulate(w, tr, hw)
        assert r.energy_pj > 0 and abs(sum(r.breakdown_pj.values()) - r.energy_pj) <= 1e-9 * r.energy_pj
    with pytest.raises(ValueError, match="no graded spikes"):
        simulate(w, tr, "loihi1")
    with pytest.raises(ValueError, match="'bounded'"):
        export(convert(qann, coding="bounded"), "nir")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # registry only
@given(k=st.integers(1, 6), a_bits=st.sampled_from([4, 8]), seed=st.integers(0, 2**16))
def test_the_new_coding_is_exact_for_any_step_bound(bounded, k, a_bits, seed):
    torch.manual_seed(seed)
    qann, x = _vit_qann(a_bits, B=2)
    snn = convert(qann, coding=codings.get("bounded", k=k))
    assert torch.equal(snn.run(x).output, qann(x))
