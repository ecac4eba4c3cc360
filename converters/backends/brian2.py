"""Brian2 cross-check: one converted layer simulated by an independent, clock-driven simulator.

`layer_network(model, layer, in_spikes)` takes weight layer `layer` of a converted network (a
SpikingModel, QANN or Chain) and the +1 / -1 spike trains of its input neurons ([T, B, ...], e.g. from
`converters.backends.chain.simulate(..., keep_spikes=True)`), and builds:

* two `SpikeGeneratorGroup`s: the +1 and the -1 spikes of each input neuron (one copy per sample),
  plus a one-spike pulse generator;
* a `NeuronGroup` of the layer's output neurons (one copy per sample) in integer units (see
  `converters.backends.chain`): state v (membrane) and n (count), threshold theta = s_out/(s_in w_scale),
  initial v = theta/2;
* `Synapses` from the generators with the integer weights (+W for +1 spikes, -W for -1 spikes:
  ``v_post += w``), and from the pulse generator with weight bias / (s_in w_scale) (the bias acts once);
* the ST-BIF rule as Brian2 events: spike ``v >= theta and n < qmax`` with reset ``v -= theta; n += 1``,
  and a custom event ``down``: ``v < 0 and n > qmin`` with ``v += theta; n -= 1``.

Timing: Brian2 delivers synaptic input in the 'synapses' slot, after the 'thresholds' slot, so the
input spikes of step t are emitted at time index t-1 and the neurons' decision of step t is read at
index t; the network runs T+1 steps and its index-0 state (v = theta/2, never an event) is discarded.
Weights are integers, so all synaptic accumulation is exact in float64.  The numpy code generation
target is used (no compiler needed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from converters.backends.chain import Chain, chain_of


@dataclass
class LayerRun:
    """Brian2's answer for one layer: net count per output neuron [B, n_out], +1 and -1 spikes per
    step (summed over neurons and samples), and the Brian2 Network that produced them."""

    counts: torch.Tensor
    pos: np.ndarray
    neg: np.ndarray
    network: object


def _dense(chain: Chain, layer: int, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The layer's integer weights as a dense [n_out, n_in] matrix (conv unrolled: small layers only)."""
    op = chain.ops[layer]
    n_in = int(np.prod(in_shape))
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    return op.apply(eye).reshape(n_in, -1).t().contiguous()


def _import_brian2():
    try:
        import brian2
    except ImportError as e:
        raise ImportError("the Brian2 cross-check needs brian2: pip install 'snmfm[brian2]'") from e
    except AttributeError as e:  # brian2 < 2.10 with numpy >= 2 fails while importing (np.ndarray.ptp)
        raise ImportError(f"brian2 does not import with this numpy ({e}); brian2 2.9 needs numpy < 2") from e
    return brian2


def layer_network(model, layer, in_spikes: torch.Tensor) -> LayerRun:
    """Simulate weight layer `layer` (index into the chain's ops, or its module path) with Brian2 on
    the given input spike trains [T, B, *input neuron shape]; returns its output neurons' counts."""
    b2 = _import_brian2()
    chain = model if isinstance(model, Chain) else chain_of(model)
    if isinstance(layer, str):
        names = [op.name for op in chain.ops]
        if layer not in names:
            raise ValueError(f"no layer {layer!r}; layers: {', '.join(names)}")
        layer = names.index(layer)
    if not 0 <= layer < chain.depth - 1:
        raise ValueError(f"layer {layer} has no output neurons: pick 0 .. {chain.depth - 2} "
                         "(the last layer is the readout)")
    T, B = in_spikes.shape[:2]
    in_shape = tuple(in_spikes.shape[2:])
    W = _dense(chain, layer, in_shape)                          # [n_out, n_in] integers
    n_out, n_in = W.shape
    op = chain.ops[layer]
    out_shape = op.apply(torch.zeros(1, *in_shape)).shape[1:]
    per_neuron = lambda v: op.channel_view(v).expand(*out_shape).reshape(-1).numpy()  # noqa: E731
    theta = per_neuron(chain.threshold(layer + 1))
    pulse_w = per_neuron(chain.v0(layer + 1) - chain.threshold(layer + 1) / 2)   # bias / k
    site = chain.neurons[layer + 1]

    prev_target = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    try:
        dt = 1 * b2.ms
        s = in_spikes.reshape(T, B * n_in).numpy()
        t_pos, i_pos = np.nonzero(s > 0)
        t_neg, i_neg = np.nonzero(s < 0)
        gen_pos = b2.SpikeGeneratorGroup(B * n_in, i_pos, t_pos * dt, dt=dt)
        gen_neg = b2.SpikeGeneratorGroup(B * n_in, i_neg, t_neg * dt, dt=dt)
        pulse = b2.SpikeGeneratorGroup(1, [0], [0] * dt, dt=dt)
        neurons = b2.NeuronGroup(
            B * n_out, "v : 1\nn : 1\ntheta : 1 (constant)\nqmin : 1 (constant)\nqmax : 1 (constant)",
            threshold="v >= theta and n < qmax", reset="v -= theta\nn += 1",
            events={"down": "v < 0 and n > qmin"}, dt=dt)
        neurons.run_on_event("down", "v += theta\nn -= 1")
        neurons.theta = np.tile(theta, B)
        neurons.v = np.tile(theta, B) / 2
        neurons.qmin, neurons.qmax = float(site.qmin), float(site.qmax)
        # sample b's input neuron i connects to sample b's output neuron j with weight W[j, i]
        j_idx, i_idx = np.nonzero(W.numpy())
        w = W.numpy()[j_idx, i_idx]
        pre = (np.arange(B)[:, None] * n_in + i_idx[None, :]).reshape(-1)
        post = (np.arange(B)[:, None] * n_out + j_idx[None, :]).reshape(-1)
        syn_pos = b2.Synapses(gen_pos, neurons, "w : 1", on_pre="v_post += w", dt=dt)
        syn_neg = b2.Synapses(gen_neg, neurons, "w : 1", on_pre="v_post -= w", dt=dt)
        syn_bias = b2.Synapses(pulse, neurons, "w : 1", on_pre="v_post += w", dt=dt)
        for syn in (syn_pos, syn_neg):
            if len(pre):
                syn.connect(i=pre, j=post)
                syn.w = np.tile(w, B)
        syn_bias.connect(i=np.zeros(B * n_out, dtype=int), j=np.arange(B * n_out))
        syn_bias.w = np.tile(pulse_w, B)
        up = b2.SpikeMonitor(neurons)
        down = b2.EventMonitor(neurons, "down")
        net = b2.Network(gen_pos, gen_neg, pulse, neurons, syn_pos, syn_neg, syn_bias, up, down)
        net.run((T + 1) * dt, namespace={})
    finally:
        b2.prefs.codegen.target = prev_target

    def per_step(mon):
        steps = np.round(np.asarray(mon.t / dt)).astype(np.int64)   # index t = decision of step t
        if np.any(steps < 1):
            raise RuntimeError("Brian2 neuron fired before any input arrived; check the mapping")
        return np.bincount(steps - 1, minlength=T)[:T], np.asarray(mon.i)

    pos, i_up = per_step(up)
    neg, i_down = per_step(down)
    counts = np.bincount(i_up, minlength=B * n_out) - np.bincount(i_down, minlength=B * n_out)
    return LayerRun(torch.as_tensor(counts.reshape(B, n_out), dtype=torch.float64), pos, neg, net)


__all__ = ["LayerRun", "layer_network"]
