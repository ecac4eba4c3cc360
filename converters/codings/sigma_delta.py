"""sigma-delta: graded events only for codes that changed since the previous input of a stream.

A sigma-delta neuron (lava-dl `slayer`/`netx`; Brehove et al. 2025, arXiv 2505.06417) integrates
incoming deltas (sigma) and sends the change of its quantized output (delta).  Here the sigma part
is the accumulated input the consumers already compute, and the delta part is the graded rule

    n_t = r_t                                   event when r_t != n_{t-1}: payload p_t = r_t - n_{t-1}

with one difference that matters on streams: `SpikingModel.stream(xs)` starts input i with every
count at its final value of input i-1 (and every non-spiking unit's previous input kept, so the
trace charges only re-evaluated rows).  Sites whose code did not change send nothing.

Exact.  The proof of graded.py does not depend on the counts before step 1: at step 1 every site
jumps to its QANN code of the new input, whatever it held.  So outputs[i] == qann(xs[i]), integer
for integer, and step 2 is quiet.  A site whose shape changes between inputs (a growing attention
row of a decoder fed decode steps) cannot carry its state; it starts from zero (and its cached key
/ value positions from their settled counts), which changes the events, never the result.
"""
from __future__ import annotations

from dataclasses import dataclass

from converters.codings import register
from converters.codings.graded import Graded


@dataclass(frozen=True)
class SigmaDelta(Graded):
    """The graded rule, kernel and payload (converters.codings.graded.Graded); only the state a
    stream carries from one input to the next differs."""

    name: str = "sigma-delta"
    keeps_state: bool = True


register("sigma-delta", SigmaDelta)
