"""graded: one integer-payload event per step carrying the change of the site's code.

Rule (Loihi 2's graded spikes, Orchard et al., SiPS 2021; Lava's Dense `num_message_bits`):

    n_t = r_t                                   event when r_t != n_{t-1}: payload p_t = r_t - n_{t-1}

The payload is a signed integer of payload_bits = (qmax - qmin).bit_length() + 1 bits, enough for
any change of a code in [qmin, qmax].

Exact, and settled after one step.  The spiking model's forward over a step visits the sites in
topological order and applies every layer to the counts of the *same* step (no synaptic delay).
Step 1: the first site's input is the network input, so n_1 = r_1 is its QANN code; by induction
along the forward order every site's input at step 1 is the QANN pre-activation and n_1 = r_1 is
the QANN code: the step-1 output is the QANN's, integer for integer.  Step 2: the inputs are
presented again unchanged, so by the same induction every site's target r_2 = r_1 = n_1 and no
event is sent: the network is quiet.  Hence a run until quiet (T=None) needs only step 1, and
`SpikingModel.run` stops there (`one_step`); tests/test_codings.py runs T=2 explicitly and checks
that step 2 has no event.  Cached key/value positions start at their settled counts, so they
send nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from converters import _kernels, _triton
from converters.codings import register
from converters.codings.base import quiet_gate, signed_payload_bits
from snmfm.nn import QuantSpec

MAX_PAYLOAD_BITS = 31  # counts are int32: a change must fit one


def jump(r: torch.Tensor, n0: torch.Tensor, gate) -> torch.Tensor:
    """n_t = r_t at every step (the graded and sigma-delta rule), in torch."""
    out = r.clone()
    if gate is not None:
        quiet_gate(out, r, gate)
    return out


def check_payload(name: str, spec: QuantSpec, site: str) -> None:
    bits = signed_payload_bits(spec)
    if bits > MAX_PAYLOAD_BITS:
        raise ValueError(f"coding {name!r} cannot carry site {site!r}: its code range [{spec.qmin}, {spec.qmax}] "
                         f"needs {bits}-bit payloads, more than the {MAX_PAYLOAD_BITS} bits of a count")


@dataclass(frozen=True)
class Graded:
    name: str = "graded"
    keeps_state: bool = False
    one_step: bool = True
    gated: bool = False

    def payload_bits(self, spec: QuantSpec) -> int:
        return signed_payload_bits(spec)

    def check(self, spec: QuantSpec, site: str) -> None:
        check_payload(self.name, spec, site)

    def advance(self, r, n0, gate):
        return jump(r, n0, gate)

    def cuda_kernel(self, x, par, n, rprev, row_len, per_sample, out, last, trace):
        return _triton.neuron_chunk(x, par, n, rprev, row_len, per_sample, out, last, trace, jump=True)

    def kernel(self, x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace, gate):
        return _kernels.graded_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace)


register("graded", Graded)
