"""Seeded draws of fault positions, and what a flip does to a two's-complement integer.

Every fault of the package is drawn here: `sample_positions(n, rate, rng)` returns the indices of
the Bernoulli(rate) trials out of `n` that fail.  It draws the *number* of failures from
Binomial(n, rate) and then that many distinct positions uniformly, which has exactly the
distribution of n independent Bernoulli trials and costs O(failures) instead of O(n) (a 1e-9 rate
over a few million bits is almost always zero draws).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from snmfm.faults.kinds import FaultError


def rng_for(seed: int, *stream) -> np.random.Generator:
    """A generator for one purpose (`stream`: e.g. ("weights",) or ("acc", module_name)) of one
    seed, so adding a draw in one place does not shift the draws of another."""
    words = [int(seed) & 0xFFFFFFFF] + [hash_str(str(s)) for s in stream]
    return np.random.default_rng(np.random.SeedSequence(words))


@functools.lru_cache(maxsize=4096)
def hash_str(s: str) -> int:
    """A stable (not per-process salted) hash of a string."""
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def sample_positions(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted distinct indices in [0, n) of the trials that fail, each with probability `rate`."""
    n = int(n)
    if n <= 0 or rate <= 0.0:
        return np.zeros(0, np.int64)
    k = int(rng.binomial(n, rate))
    if k == 0:
        return np.zeros(0, np.int64)
    if k == n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def flip_bits(values: np.ndarray, positions: np.ndarray, bits: np.ndarray, width: int) -> np.ndarray:
    """Integers `values` (int64) after flipping bit `bits[i]` of element `positions[i]` (possibly
    several bits of one element) in a `width`-bit two's-complement word.  Values must fit the width."""
    out = np.array(values, dtype=np.int64, copy=True)
    if positions.size == 0:
        return out
    if width < 2 or width > 62:
        raise FaultError(f"bit width must be in [2, 62], got {width}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if out.size and (out.min() < lo or out.max() > hi):
        raise FaultError(f"values outside a {width}-bit signed word [{lo}, {hi}]: "
                         f"the stored width is too narrow for them")
    mask = (1 << width) - 1
    u = out & mask                                   # two's complement as an unsigned word
    np.bitwise_xor.at(u, positions, np.left_shift(np.int64(1), bits.astype(np.int64)))
    return np.where(u > hi, u - (1 << width), u)


def flip_bitstream(values: np.ndarray, width: int, rate: float, rng: np.random.Generator,
                   ecc: bool = False) -> tuple[np.ndarray, dict]:
    """Integers `values` (flat, stored one after another as `width`-bit words) after each stored bit
    flips with probability `rate`.  With `ecc`, the bits are kept in SECDED (72, 64) words (64 data
    bits + 8 check bits, Hamming 1950 extended; the standard DRAM/SRAM ECC): the check bits can flip
    too, a word with exactly one flipped bit is corrected, a word with two or more keeps its data
    bits' flips (detected, not correctable).  Returns (values, log): log counts the bits stored,
    flipped and left flipped after correction."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    n_data = values.size * width
    if not ecc:
        pos = sample_positions(n_data, rate, rng)
        out = flip_bits(values, pos // width, pos % width, width)
        return out, {"bits": n_data, "flipped": int(pos.size), "effective": int(pos.size)}
    words = -(-n_data // 64)
    n_bits = words * 72
    pos = sample_positions(n_bits, rate, rng)
    word, off = pos // 72, pos % 72
    per_word = np.bincount(word, minlength=words) if pos.size else np.zeros(words, np.int64)
    keep = (per_word[word] >= 2) & (off < 64)           # uncorrectable words, data bits only
    data_pos = word[keep] * 64 + off[keep]
    data_pos = data_pos[data_pos < n_data]               # padding bits of the last word hold no data
    out = flip_bits(values, data_pos // width, data_pos % width, width)
    return out, {"bits": n_bits, "flipped": int(pos.size), "effective": int(data_pos.size)}


def weight_modules(model: torch.nn.Module) -> list:
    """(name, module) of every layer holding integer weights (`w_int`), in module order."""
    return [(n, m) for n, m in model.named_modules()
            if getattr(m, "w_int", None) is not None and hasattr(m, "w_bits")]


@torch.no_grad()
def flip_weights(model: torch.nn.Module, rate: float, seed: int, *, stored_bits: int | None = None,
                 ecc: bool = False) -> dict:
    """Flip bits of every integer weight of `model` IN PLACE (call it on a copy): all layers'
    weights are one memory of `stored_bits`-bit words (default: each layer's w_bits, the width the
    conventional accelerator stores; the chip passes its synapse width), each bit flipping with
    probability `rate`.  Returns the log of `flip_bitstream`."""
    mods = weight_modules(model)
    if not mods:
        raise FaultError("the model has no integer weights: quantize it first (snmfm.compress.quantize)")
    widths = {int(stored_bits or m.w_bits) for _, m in mods}
    log = {"bits": 0, "flipped": 0, "effective": 0, "layers": len(mods)}
    rng = rng_for(seed, "weights")
    for width in sorted(widths):  # one draw per stored width (one memory per word format)
        group = [m for _, m in mods if int(stored_bits or m.w_bits) == width]
        flat = np.concatenate([m.w_int.detach().cpu().numpy().astype(np.int64).reshape(-1) for m in group])
        out, lg = flip_bitstream(flat, width, rate, rng, ecc=ecc)
        for key in ("bits", "flipped", "effective"):
            log[key] += lg[key]
        i = 0
        for m in group:
            n = m.w_int.numel()
            m.w_int = torch.from_numpy(out[i:i + n].astype(np.float64)).view_as(m.w_int).to(m.w_int.device)
            i += n
    return log
