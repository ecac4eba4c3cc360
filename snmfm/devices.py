"""`--device cpu|cuda|auto`: one resolver for every command and library entry point."""
from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda", "auto")


class DeviceError(ValueError):
    """The requested device cannot be used here; the message says why and what to use."""


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'cpu' -> cpu; 'cuda' (or 'cuda:N') -> that GPU, or DeviceError when there is none;
    'auto'/None -> the first GPU if torch sees one, else the CPU."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU on this machine "
                              "(a CPU-only torch wheel, or no driver); use --device cpu or auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    raise DeviceError(f"unknown device {name!r}; allowed: {', '.join(DEVICES)} (or cuda:N)")
