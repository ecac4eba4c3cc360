"""Running an NIR graph with snnTorch or Norse neurons through nirtorch.

`nir_to_torch(graph, "snntorch" | "norse")` maps the graph's Linear / Affine / Conv2d / Flatten nodes
to float64 torch layers and its IF nodes to the framework's neurons with reset by subtraction --
snnTorch ``Leaky(beta=1, reset_mechanism="subtract", reset_delay=True)`` or a Norse SNNCell with
Norse's IAF step and ``reset_subtract`` -- and `run_torch_graph` steps it through time, recording the
spikes of every IF node.  This is how a graph written by snmfm is checked against two frameworks'
neurons, independently of snmfm's own simulator.

Why not the frameworks' own NIR importers (measured on graphs written by snmfm, versions installed
here): snnTorch 1.0.0 ``import_from_nir`` requires one threshold for all neurons of a layer and maps
IF to ``Leaky(beta=0.9, reset_delay=False, init_hidden=False)`` -- leaky, and returning a tuple the
next layer cannot take (snnTorch issue #416; beta fixed to 1 after 1.0.0 by PR #452); SpikingJelly
2.0.0 requires r = 1/dt and a uniform threshold; Norse 1.1.0 ``from_nir`` runs, but its ``IAFCell``
resets to v_reset and loses the charge above threshold, so only 2-3% of neurons end with snmfm's count.
NIR 1.0.8's IF node has a reset *value* and no field for the reset mechanism; snmfm's graphs state
theirs in the graph metadata (``snmfm_neuron``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from converters.backends.chain import apply_tail
from converters.backends.nir import _nir


class _ToFloat64(nn.Module):
    def forward(self, x):
        return x.to(torch.float64)


def _torch_node_map(neuron: str):
    nir = _nir()

    def linear(node):
        w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
        m = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine)).double()
        with torch.no_grad():
            m.weight.copy_(w)
            if isinstance(node, nir.Affine):
                m.bias.copy_(torch.as_tensor(np.asarray(node.bias, dtype=np.float64)))
        return m

    def conv(node):
        w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
        m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=tuple(node.stride),
                      padding=node.padding if isinstance(node.padding, str) else tuple(node.padding),
                      dilation=tuple(node.dilation), groups=int(node.groups)).double()
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(torch.as_tensor(np.asarray(node.bias, dtype=np.float64)))
        return m

    def flatten(node):  # NIR dims exclude the batch; torch's include it
        end = node.end_dim if node.end_dim == -1 else node.end_dim + 1
        return nn.Flatten(node.start_dim + 1, end)

    def if_neuron(node):
        thr = torch.as_tensor(np.asarray(node.v_threshold, dtype=np.float64))
        if neuron == "snntorch":
            import snntorch as snn
            lif = snn.Leaky(beta=1.0, threshold=thr, reset_mechanism="subtract", reset_delay=True, init_hidden=True)
            m = nn.Sequential(lif, _ToFloat64())
            m.snmfm_if = True
            return m
        from converters.backends.norse import subtractive_iaf_cell
        m = subtractive_iaf_cell(thr)
        m.snmfm_if = True
        return m

    return {nir.Linear: linear, nir.Affine: linear, nir.Conv2d: conv, nir.Flatten: flatten, nir.IF: if_neuron}


def nir_to_torch(graph_or_path, neuron: str = "snntorch"):
    """An NIR graph as a torch module through nirtorch, its IF nodes as snnTorch ``Leaky(beta=1,
    reset_mechanism="subtract", reset_delay=True)`` or Norse subtractive-IF cells (neuron="norse")."""
    nir = _nir()
    import nirtorch
    if neuron not in ("snntorch", "norse"):
        raise ValueError(f"neuron must be 'snntorch' or 'norse', got {neuron!r}")
    graph = nir.read(str(graph_or_path)) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    return nirtorch.nir_to_torch(graph, _torch_node_map(neuron), dtype=torch.float64)


def _reset_snntorch(module: nn.Module) -> None:
    import snntorch as snn
    for m in module.modules():
        if isinstance(m, snn.Leaky):
            m.mem = torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def run_torch_graph(module: nn.Module, x_seq: torch.Tensor, *, tail: str = "", relay: bool = True):
    """Run a nirtorch module (from `nir_to_torch`, or a framework's own NIR importer) over the steps
    of `x_seq` [T, B, ...].  Returns (summed output after the tail, {IF node name: [T, B, n] spikes}),
    relay neurons removed when `relay`."""
    _reset_snntorch(module)
    spikes: dict[str, list] = {}

    def hook(name):
        def record(mod, args, out):
            z = (out[0] if isinstance(out, tuple) else out).to(torch.float64)
            if relay:
                z = z[:, :-1]
            spikes.setdefault(name, []).append(z.reshape(z.shape[0], -1))
        return record

    hooks = [m.register_forward_hook(hook(name)) for name, m in module.named_modules()
             if getattr(m, "snmfm_if", False) or (type(m).__name__ in _STOCK_IF and not _inside_marked(module, name))]
    state, total = None, None
    try:
        for x in x_seq:
            out = module(x, state) if state is not None else module(x)
            if isinstance(out, tuple):
                out, state = out
            total = out if total is None else total + out
    finally:
        for h in hooks:
            h.remove()
    tail_ops = tuple(t for t in tail.split(",") if t)
    return apply_tail(tail_ops, total.to(torch.float64)), {k: torch.stack(v) for k, v in spikes.items()}


_STOCK_IF = ("IAFCell", "Leaky", "IFNode")  # IF modules of the frameworks' own NIR importers


def _inside_marked(root: nn.Module, name: str) -> bool:
    """True when `name` lies inside a module marked as one IF node (its hook already covers it)."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        if getattr(root.get_submodule(".".join(parts[:i])), "snmfm_if", False):
            return True
    return False


__all__ = ["nir_to_torch", "run_torch_graph"]
