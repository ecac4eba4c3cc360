"""Keep freed heap memory mapped while the SNN runs (glibc only).

Why.  A time-batched chunk allocates and frees tensors of the same few sizes (several MB each) at
every layer of every chunk.  With glibc's defaults, freed memory at the top of the heap beyond the
trim threshold is handed back to the kernel (and tensors above the mmap threshold are unmapped),
so the next allocation of the same size page-faults every 4 KB page afresh and the kernel zeroes
it.  Measured on the SpikingJelly comparison RoBERTa at W8A4 (eval/benchmarks/bench_snn.py's
network, batch 32, one thread): 600-2,100 minor page faults per time step and 1.2-1.6x the run
time with the defaults; 0 faults per step with the settings below.  PyTorch's CPU allocator has
no cache of its own, and a cached allocator (jemalloc, tcmalloc) is not a Python dependency we
can install, so the settings are glibc's own knobs:

* M_MMAP_THRESHOLD = 32 MB (glibc's maximum for its dynamic threshold): tensors below it come
  from the heap, not from a fresh mapping;
* M_TRIM_THRESHOLD = 1 GB: freed memory at the top of the heap is kept for reuse up to 1 GB
  instead of being returned at once.

They are process-wide and stay set (glibc cannot report the previous values to restore them); the
cost is that up to 1 GB of freed heap stays resident for reuse, as with any caching allocator.
`release()` (``malloc_trim``) returns it.  Set the environment variable ``SNMFM_MALLOC_TUNING=0``
to leave the allocator alone.  On other C libraries nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30

_libc = None
_tuned = False


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt  # glibc (and a few others) only
            lib.malloc_trim
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def enabled() -> bool:
    return os.environ.get("SNMFM_MALLOC_TUNING", "1") != "0"


def tune() -> bool:
    """Apply the settings once per process (no-op when disabled or not glibc); True if applied."""
    global _tuned
    if _tuned or not enabled():
        return _tuned
    lib = _glibc()
    if lib is None:
        return False
    ok = lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = lib.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _tuned = ok
    return ok


def release() -> None:
    """Return freed heap memory to the operating system (``malloc_trim(0)``)."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
