"""Structural types shared by snmfm and the layers above it (no imports of converters here:
snmfm.speculative and snmfm.cascade must recognise a spiking model without depending on it)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class TimeStepped(Protocol):
    """A model that runs in time steps (converters.SpikingModel): `run(*inputs, T=None, record=...)`
    simulates until quiet (or T steps) and returns a result with `.output`, `.steps`, `.t_settle`
    and `.trace`; `net` is the wrapped network, `coding` the spiking coding's name and `neurons()`
    its spiking sites.  The exact signature of `run` is converters.SpikingModel.run's."""

    net: object
    coding: str

    def run(self, *inputs, **kw): ...

    def neurons(self) -> list: ...


def is_time_stepped(model) -> bool:
    """True for a model that runs in time steps (an SNN), False for a QANN / FP32 module."""
    return isinstance(model, TimeStepped)
