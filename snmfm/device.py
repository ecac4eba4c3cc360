"""`--device cpu|cuda|auto` resolved in one place, with a clear error when CUDA is asked for and absent."""
from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """torch.device for "cpu", "cuda" / "cuda:N" or "auto" (cuda when a GPU is visible, else cpu).

    Asking for CUDA without a usable GPU raises ValueError naming the fix (CLI: exit 2) instead of
    failing later inside a kernel."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "cpu" if name is None else str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is visible to torch (torch.cuda.is_available() is "
                             f"False; torch {torch.__version__}, built with CUDA {torch.version.cuda}); use "
                             "--device cpu, or --device auto to take a GPU only when there is one")
        idx = int(name.split(":", 1)[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device(name)
    raise ValueError(f"--device {name!r} unknown; use one of {', '.join(DEVICES)} (or cuda:N)")
