"""Norse export: torch Linear / Conv2d layers with integer weights and Norse IF cells.

Norse's own `IAFCell` resets to a value (v -> v_reset), which loses the charge above threshold, so
each quantizer site becomes a Norse `SNNCell` running Norse's IAF feed-forward step with Norse's
`reset_subtract` in place of the value reset:

    v <- v + i;   z = heaviside(v - v_th);   v <- v - z * v_th

(integer units, see `converters.backends.chain`; v_th lowered by one float64 ulp because Norse's
heaviside fires on v - v_th > 0 and the ST-BIF neuron on V >= threshold).  The initial membrane
threshold/2 + bias is delivered as a step-1 current.

What Norse cannot express: only +1 spikes and no count bounds (plain IF).  Counts equal snmfm's
exactly while snmfm's neurons emit no -1 spike and never saturate -- in practice ReLU networks
whose accumulated inputs only grow.
"""
from __future__ import annotations

import torch
from torch import nn

from converters.backends.chain import Chain, strict_threshold, torch_ops
from converters.backends.run import ChainSNN

DESCRIPTION = ("Norse: nn.Linear/nn.Conv2d with integer weights + norse SNNCell(IAF feed-forward step with "
               "norse.torch.functional.reset.reset_subtract) per quantizer site (Norse's IAFCell resets to a "
               "value and would lose the charge above threshold), thresholds per channel lowered one ulp "
               "(heaviside(v - v_th) is strict), initial membrane threshold/2 + bias as a step-1 current. "
               "Approximated: only +1 spikes, no count bounds -- counts equal snmfm's only while snmfm emits no "
               "-1 spike and does not saturate (ReLU networks whose accumulated inputs only grow); float64.")


def iaf_subtract_step(input_tensor, state, p, dt=1.0):
    """Norse's IAF feed-forward step with reset by subtraction (norse.torch.functional.iaf and .reset)."""
    from norse.torch.functional.iaf import IAFFeedForwardState
    from norse.torch.functional.reset import reset_subtract
    from norse.torch.functional.threshold import threshold
    v = state.v + input_tensor
    z = threshold(v - p.v_th, p.method, p.alpha)
    return z, IAFFeedForwardState(v=reset_subtract(z, v, p.v_reset, p.v_th))


def subtractive_iaf_cell(v_th: torch.Tensor) -> nn.Module:
    """A Norse SNNCell: integrate-and-fire with reset by subtraction, threshold `v_th` (broadcast)."""
    from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters
    from norse.torch.module.snn import SNNCell
    p = IAFParameters(v_th=torch.as_tensor(v_th, dtype=torch.float64), v_reset=torch.zeros((), dtype=torch.float64),
                      method="heaviside")
    return SNNCell(iaf_subtract_step, lambda x: IAFFeedForwardState(v=torch.zeros_like(x)), p, dt=1.0)


class NorseSNN(ChainSNN):
    def __init__(self, chain: Chain):
        super().__init__(chain, DESCRIPTION)
        self.ops_mod = torch_ops(chain)
        self.cells = nn.ModuleList()
        for l in range(chain.depth):
            theta = chain.threshold(l)
            if l > 0:
                theta = chain.ops[l - 1].channel_view(theta)
            self.cells.append(subtractive_iaf_cell(strict_threshold(theta)))
        self._state: list = []

    def reset_neurons(self):
        self._state = [None] * self.chain.depth

    def neuron_step(self, l, current):
        z, self._state[l] = self.cells[l](current, self._state[l])
        return z.to(torch.float64)

    def op(self, l, spikes):
        return self.ops_mod[l](spikes)


def build(chain: Chain) -> NorseSNN:
    return NorseSNN(chain).double()
