"""SpikingJelly export: SpikingJelly Linear / Conv2d layers and its `STBIFNode` neurons.

SpikingJelly ships the ST-BIF neuron of SpikeZIP-TF (``neuron.STBIFNode``): residual q starting at
1/2, ``q += x / q_threshold``, +1 when q >= 1 and the count is below ``pos_max``, -1 when q < 0 and the
count is above ``neg_min``, reset by subtraction.  That *is* snmfm's neuron, so this export is exact
for every network (signed sites, -1 spikes and count bounds included):

* each quantizer site -> ``STBIFNode(q_threshold=s, pos_max=qmax, neg_min=qmin)`` (q_threshold kept in
  float64: the constructor would round it to float32);
* layers: ``layer.Linear`` / ``layer.Conv2d`` (bias-free) with the integer weights, followed by the
  per-channel scale s_in * w_scale ("float units"); the bias is added as a step-1 current.
STBIFNode takes one scalar threshold per layer, hence float units rather than integer units.
"""
from __future__ import annotations

import torch
from torch import nn

from converters.backends.chain import Chain, torch_ops
from converters.backends.run import ChainSNN

DESCRIPTION = ("SpikingJelly: layer.Linear/layer.Conv2d with integer weights, times s_in*w_scale per channel, + "
               "neuron.STBIFNode(q_threshold=s, pos_max=qmax, neg_min=qmin) per quantizer site -- SpikingJelly's "
               "own ST-BIF neuron (residual starts at 1/2, reset by subtraction, +1/-1 spikes, count bounds), "
               "so every network is expressed exactly; bias given as a step-1 current; float64.")


class SpikingJellySNN(ChainSNN):
    units = "float"

    def __init__(self, chain: Chain):
        from spikingjelly.activation_based import layer, neuron
        super().__init__(chain, DESCRIPTION)
        self.ops_mod = torch_ops(chain, layer.Linear, layer.Conv2d)
        self.nodes = nn.ModuleList()
        for site in chain.neurons:
            node = neuron.STBIFNode(q_threshold=site.scale, level=site.qmax - site.qmin + 1, sym=site.signed,
                                    pos_max=float(site.qmax), neg_min=float(site.qmin), step_mode="s")
            node.q_threshold = torch.tensor(site.scale, dtype=torch.float64)
            self.nodes.append(node)

    def reset_neurons(self):
        for node in self.nodes:
            node.reset()

    def neuron_step(self, l, current):
        node = self.nodes[l]
        node(current)
        return node.cur_output.to(torch.float64)

    def op(self, l, spikes):
        return self.ops_mod[l](spikes)


def build(chain: Chain) -> SpikingJellySNN:
    m = SpikingJellySNN(chain).double()
    for node, site in zip(m.nodes, chain.neurons):  # .double() keeps values; re-assert exact float64 scale
        node.q_threshold = torch.tensor(site.scale, dtype=torch.float64)
    return m
