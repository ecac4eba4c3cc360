"""Exports of converted MLP / conv networks to other SNN frameworks, NIR import, a Brian2 cross-check.

    exp = export(spiking_model, "snntorch" | "spikingjelly" | "norse" | "nir", ...)
    exp.module       # a torch module whose .run(x, T) returns output and per-layer spike counts,
                     # or (nir) the nir.NIRGraph, also written to `path` when given
    exp.description  # how snmfm's neuron maps onto the framework, what is exact, what is approximated

Every backend imports its framework lazily; a missing one raises ImportError naming the extra to install.
What each framework can express (details in each module's docstring):

| backend      | neuron                                  | -1 spikes | count bounds | exact for            |
|--------------|-----------------------------------------|-----------|--------------|----------------------|
| spikingjelly | neuron.STBIFNode (SpikeZIP-TF's ST-BIF) | yes       | yes          | every network        |
| snntorch     | snn.Leaky(beta=1, subtract)             | no        | no           | no -1, no saturation |
| norse        | SNNCell(IAF step + reset_subtract)      | no        | no           | no -1, no saturation |
| nir          | nir.IF (+ pulse channel for v0, bias)   | metadata  | metadata     | idem; import exact   |

Codings: only the binary coding exports (every framework above sends ±1 spikes); a graded or
sigma-delta SpikingModel raises a ValueError naming the coding and what can take it.

`import_nir(path_or_graph)` reads an NIR graph back as a SpikingModel (exact for graphs snmfm wrote);
`converters.backends.brian2.layer_network` simulates one layer in Brian2 as an independent check.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converters.backends.chain import Chain, chain_of
from converters.backends.run import ChainRun, simulate, site_counts

BACKENDS = ("snntorch", "spikingjelly", "norse", "nir")
EXPORTABLE_CODINGS = ("binary",)  # graded / sigma-delta: no framework here carries integer payloads
_EXTRAS = {"snntorch": "snntorch", "spikingjelly": "spikingjelly", "norse": "norse", "nir": "nir"}


@dataclass(frozen=True)
class Exported:
    backend: str
    module: Any              # torch module (.run(x, T) -> ChainRun) or nir.NIRGraph
    description: str
    two_sided: bool          # the backend's neurons emit -1 spikes
    bounded: bool            # the backend's neurons keep their count inside [qmin, qmax]


def _require(package: str, backend: str) -> None:
    import importlib
    try:
        importlib.import_module(package)
    except ImportError as e:
        raise ImportError(f"export to {backend!r} needs the {package!r} package: "
                          f"pip install 'snmfm[{_EXTRAS[backend]}]'") from e


def export(model, backend: str, *, path=None, input_shape=None) -> Exported:
    """Express a converted MLP / conv network (SpikingModel or QANN) in another SNN framework.

    path (nir only): also write the graph there with nir.write.
    input_shape (nir only): per-sample input shape, needed for conv networks."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    coding = getattr(model, "coding", "binary")
    if coding not in EXPORTABLE_CODINGS:
        raise ValueError(f"cannot export a {coding!r}-coded SpikingModel to {backend!r}: {backend} has no "
                         f"neuron with integer-payload events; the frameworks here take only the binary coding "
                         f"({', '.join(BACKENDS)}). Lava (lava-dl netx, Loihi 2 graded spikes) could express "
                         f"{coding!r} but does not install on Python >= 3.11. Export convert(qann, coding='binary') "
                         f"instead (the same QANN, ±1 spikes).")
    chain = model if isinstance(model, Chain) else chain_of(model)
    _require(backend, backend)
    if backend == "snntorch":
        from converters.backends import snntorch as b
        return Exported(backend, b.build(chain), b.DESCRIPTION, two_sided=False, bounded=False)
    if backend == "norse":
        from converters.backends import norse as b
        return Exported(backend, b.build(chain), b.DESCRIPTION, two_sided=False, bounded=False)
    if backend == "spikingjelly":
        from converters.backends import spikingjelly as b
        return Exported(backend, b.build(chain), b.DESCRIPTION, two_sided=True, bounded=True)
    from converters.backends import nir as b
    graph = b.to_nir(chain, input_shape=input_shape)
    if path is not None:
        import nir
        nir.write(str(path), graph)
    return Exported(backend, graph, b.DESCRIPTION, two_sided=False, bounded=False)


def import_nir(graph_or_path, **kw):
    """An NIR graph or file as an snmfm SpikingModel (see converters.backends.nir.import_nir)."""
    _require("nir", "nir")
    from converters.backends.nir import import_nir as _import
    return _import(graph_or_path, **kw)


__all__ = ["BACKENDS", "Chain", "ChainRun", "Exported", "chain_of", "export", "import_nir", "simulate", "site_counts"]
