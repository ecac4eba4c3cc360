"""Memory a QANN + SNN run needs, estimated before running, and a refusal when it cannot fit.

    est = estimate_run_memory(qann, inputs)        # {"estimate_bytes", "params_bytes", ...}
    check_run_memory(qann, inputs)                 # raises ModelTooLarge (a ValueError) when the
                                                   # estimate exceeds the memory available now

The estimate (bytes) is

    2 x state(QANN)                                the QANN and its SNN (convert deep-copies it)
  + LIVE x 8 x B x largest x (1 + chunk_steps)     the QANN's reference forward and one SNN chunk

where `largest` is the largest tensor a module of the QANN outputs for ONE example (found by a
forward of the first example with hooks: attention scores included, as their quantizers are
modules), B the batch, 8 bytes a float64/int64 element (the exact GEMM epilogues and the
neurons' counters are 64-bit), `chunk_steps` the SNN's chunk length (T, or the automatic
chunking's: at most 8 steps and about 2^19 elements of the largest input; converters/snn.py), and
LIVE = 6 tensors of that size alive at once (input repeated over the chunk, GEMM output, membrane,
spike counts, spikes, output).  It is an estimate, on the high side on purpose: the point is to
refuse a run that would be killed by the OOM killer after minutes, not to predict RSS.
"""
from __future__ import annotations

import torch

LIVE = 6
BYTES_PER_ELEMENT = 8


class ModelTooLarge(ValueError):
    """The run's memory estimate exceeds the memory available: a user error (CLI exit 2)."""


def available_bytes() -> int:
    """Memory available to new allocations now (psutil, else /proc/meminfo, else free pages)."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def state_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


@torch.no_grad()
def largest_activation(qann: torch.nn.Module, inputs: tuple) -> int:
    """Elements of the largest tensor any module of `qann` outputs for the first example of `inputs`."""
    one = tuple(x[:1] if isinstance(x, torch.Tensor) and x.dim() > 0 else x for x in inputs)
    largest = max((x.numel() for x in one if isinstance(x, torch.Tensor)), default=1)

    def hook(_m, _args, out):
        nonlocal largest
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                largest = max(largest, t.numel())

    handles = [m.register_forward_hook(hook) for m in qann.modules()]
    was_training = qann.training
    try:
        qann.eval()
        qann(*one)
    finally:
        for h in handles:
            h.remove()
        qann.train(was_training)
    return largest


def estimate_run_memory(qann: torch.nn.Module, inputs: tuple, *, T: int | None = None,
                        chunk: int | None = None) -> dict:
    """The module docstring's estimate for running `qann` and its SNN on the batch `inputs`."""
    from converters.snn import _CHUNK_ELEMENTS, _CHUNK_MAX
    tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
    B = int(tensors[0].shape[0]) if tensors and tensors[0].dim() > 0 else 1
    largest = largest_activation(qann, inputs)
    if chunk is None:
        chunk = max(1, min(_CHUNK_MAX, T or _CHUNK_MAX, _CHUNK_ELEMENTS // max(1, B * largest)))
    params = 2 * state_bytes(qann)
    act = LIVE * BYTES_PER_ELEMENT * B * largest * (1 + chunk)
    return {"estimate_bytes": int(params + act), "params_bytes": int(params), "activation_bytes": int(act),
            "batch": B, "largest_activation_per_example": int(largest), "chunk_steps": int(chunk)}


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def check_run_memory(qann: torch.nn.Module, inputs: tuple, *, T: int | None = None, chunk: int | None = None,
                     available: int | None = None) -> dict:
    """`estimate_run_memory`, raising ModelTooLarge when it exceeds the available memory."""
    est = estimate_run_memory(qann, inputs, T=T, chunk=chunk)
    avail = available_bytes() if available is None else int(available)
    est["available_bytes"] = avail
    if est["estimate_bytes"] > avail:
        raise ModelTooLarge(
            f"this run needs about {_gib(est['estimate_bytes'])} (model {_gib(est['params_bytes'])} for the "
            f"QANN and its SNN + activations {_gib(est['activation_bytes'])}: batch {est['batch']} x "
            f"{est['largest_activation_per_example']:,} elements x {est['chunk_steps']} steps per chunk) but "
            f"only {_gib(avail)} is available; use a smaller batch (--batch-size), a smaller model, or a "
            "machine with more memory")
    return est
