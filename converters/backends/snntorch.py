"""snnTorch export: torch Linear / Conv2d layers with integer weights and `snn.Leaky` IF neurons.

Mapping (integer units, see `converters.backends.chain`):
* each quantizer site -> ``snn.Leaky(beta=1, threshold=theta, reset_mechanism="subtract",
  reset_delay=True)``: no leak, reset by subtraction, one spike per step, per-channel thresholds;
* initial membrane theta/2 + bias: delivered as an extra current at step 1 (Leaky's state starts at 0);
* the threshold is lowered by one float64 ulp, because Leaky fires on ``mem > threshold`` and the
  ST-BIF neuron on ``V >= threshold``.

What snnTorch cannot express: Leaky emits only +1 spikes and has no count bounds, so this is the
plain IF neuron.  Its counts equal snmfm's exactly as long as snmfm's neurons emit no -1 spike and
never sit at a count bound (qmin or qmax) with input left over -- in practice ReLU networks (unsigned
sites) whose accumulated inputs only grow; otherwise the -1 corrections and the clipping are missing.

Why ``reset_delay=True``: with ``reset_delay=False`` (what snnTorch's NIR importer uses) a neuron
holding more than two thresholds of charge stops firing early (membrane 5.5 with threshold 1 gives
4 spikes instead of 5, snnTorch 1.0.0), while the delayed form is exactly subtractive IF.
"""
from __future__ import annotations

import torch
from torch import nn

from converters.backends.chain import Chain, strict_threshold, torch_ops
from converters.backends.run import ChainSNN

DESCRIPTION = ("snnTorch: nn.Linear/nn.Conv2d with integer weights + snn.Leaky(beta=1, reset_mechanism='subtract', "
               "reset_delay=True) per quantizer site, thresholds s_out/(s_in*w_scale) per channel (lowered one "
               "ulp: Leaky fires on mem > threshold), initial membrane threshold/2 + bias given as a step-1 "
               "current. Approximated: Leaky emits only +1 spikes and has no count bounds, so counts equal "
               "snmfm's only while snmfm's neurons emit no -1 spike and do not saturate (ReLU networks whose "
               "accumulated inputs only grow); float64.")


class SnnTorchSNN(ChainSNN):
    def __init__(self, chain: Chain):
        import snntorch as snn
        super().__init__(chain, DESCRIPTION)
        self.ops_mod = torch_ops(chain)
        self.lif = nn.ModuleList()
        for l in range(chain.depth):
            theta = chain.threshold(l)
            if l > 0:
                theta = chain.ops[l - 1].channel_view(theta)
            self.lif.append(snn.Leaky(beta=1.0, threshold=strict_threshold(theta), reset_mechanism="subtract",
                                      reset_delay=True, init_hidden=False))
        self._mem: list = []

    def reset_neurons(self):
        self._mem = [None] * self.chain.depth

    def neuron_step(self, l, current):
        mem = self._mem[l] if self._mem[l] is not None else torch.zeros_like(current)
        spk, self._mem[l] = self.lif[l](current, mem)
        return spk.to(torch.float64)

    def op(self, l, spikes):
        return self.ops_mod[l](spikes)


def build(chain: Chain) -> SnnTorchSNN:
    return SnnTorchSNN(chain).double()
