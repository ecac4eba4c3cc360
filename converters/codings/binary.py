"""binary: the signed integrate-and-fire neuron (ST-BIF; SpikeZIP-TF, You et al., ICML 2024).

Rule.  The count walks one step per time step towards its target:

    n_t = n_{t-1} + sign(r_t - n_{t-1})          event: payload p_t = sign(r_t - n_{t-1}) in {-1, +1}

This is the membrane form V_t = s/2 + S_t - n_t s with threshold s and reset by subtraction
(converters.neurons proves the two agree); a ±1 spike carries only its sign, so payload_bits = 0.

Exact.  Once the input is constant, r is constant and the walk reaches it within |r - n| steps,
then stays (sign(0) = 0).  Sites are settled one after another in the forward order of the network
as their inputs settle, so the whole network reaches the QANN codes.

Gating (`gate`).  With gate="none" every neuron walks at every step, also towards targets that are
still moving because upstream sites are still walking; the walks then overshoot and come back, and
those spikes cancel (3.8x sum |code| on vision-digits W8A8).  With gate="settled" a site's
neurons of sample b may not move at step t until every site before it in the forward order is
settled for sample b at step t (count == target everywhere):

    n_t = n_{t-1} + g_t(b) * sign(r_t - n_{t-1}),    g_t(b) = AND over earlier sites k of settled_k,t(b)
    settled_t(b) = g_t(b) AND (n_t == r_t for every neuron of sample b)

Exact too: a site's input depends only on sites computed before it in the forward pass, so when
they are all settled its input, hence r, is constant from then on; the first site's input is the
network's input, constant from step 1.  By induction over the sites each one walks, once opened,
monotonically from 0 to its final code: exactly |code| spikes, no cancelling spike at all.  The
price is latency: T_settle is the sum over sites of their longest walk instead of about the
longest walk.  Cached positions of a KV cache and carried stream state are already settled.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from converters import _kernels, _triton
from converters.codings import register
from converters.codings.base import quiet_gate
from snmfm.nn import QuantSpec

GATES = ("none", "settled")


@dataclass(frozen=True)
class Binary:
    gate: str = "none"
    name: str = "binary"
    keeps_state: bool = False
    one_step: bool = False

    def __post_init__(self):
        if self.gate not in GATES:
            raise ValueError(f"binary coding: unknown gate {self.gate!r}; choose one of {', '.join(GATES)}")

    @property
    def gated(self) -> bool:
        return self.gate == "settled"

    def payload_bits(self, spec: QuantSpec) -> int:
        return 0

    def check(self, spec: QuantSpec, site: str) -> None:
        return None  # any integer window: the walk reaches every code

    def advance(self, r, n0, gate):
        out = torch.empty_like(r)
        n = n0.to(r.dtype).clone()
        d = torch.empty_like(n)
        g = None if gate is None else gate.to(r.dtype).reshape(gate.shape[0], gate.shape[1], *([1] * (r.dim() - 2)))
        for t in range(r.shape[0]):
            torch.sub(r[t], n, out=d)
            d.clamp_(-1, 1)
            if g is not None:
                d.mul_(g[t])
            n.add_(d)
            out[t] = n
        if gate is not None:
            quiet_gate(out, r, gate)
        return out

    @property
    def cuda_kernel(self):
        """The fused GPU kernel (converters._triton) of the ungated walk; the gated walk runs the
        torch rule (its per-sample gate couples all neurons of a sample at every step)."""
        return None if self.gated else _cuda_walk

    def kernel(self, x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace, gate):
        if gate is None:
            return _kernels.if_chunk(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last, trace)
        return _kernels.if_chunk_gated(x, s, qmin, qmax, n, rprev, row_len, per_sample, out, stats, last,
                                       trace, gate)


def _cuda_walk(x, par, n, rprev, row_len, per_sample, out, last, trace):
    return _triton.neuron_chunk(x, par, n, rprev, row_len, per_sample, out, last, trace, jump=False)


register("binary", Binary)
