"""Spiking codings: how a QANN quantizer site becomes a spiking unit (one module per coding).

    from converters import codings
    codings.names()                   # ['binary', 'graded', 'sigma-delta']
    codings.get("graded")             # the Coding object
    codings.get("binary", gate="settled")

The protocol and the shared proof of exactness are in `converters.codings.base`; each coding's
module states its rule, its events and why it is exact.  A module registers its coding at import.
"""
from __future__ import annotations

from converters.codings.base import Coding, signed_payload_bits

_REGISTRY: dict[str, type] = {}
DEFAULT = "binary"


def register(name: str, factory) -> None:
    """Register a coding class (or factory taking the coding's options) under `name`."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"coding {name!r} is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    return list(_REGISTRY)


def get(name, **options) -> Coding:
    """The coding registered as `name` (options go to its constructor); a Coding passes through."""
    if not isinstance(name, str):
        if isinstance(name, Coding) and not options:
            return name
        raise TypeError(f"coding must be a name ({', '.join(names())}) or a Coding, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown coding {name!r}; registered: {', '.join(names())}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as e:
        raise ValueError(f"coding {name!r} does not take options {sorted(options)}: {e}") from e


def _import_modules() -> None:
    """Import every module of this package (each registers its coding): a new coding is one new
    module here, nothing else to edit.  Sorted, so the registry's order is stable."""
    import importlib
    import pkgutil
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_modules()

__all__ = ["Coding", "DEFAULT", "get", "names", "register", "signed_payload_bits"]
