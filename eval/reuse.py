"""What the dense baseline may reuse exactly on a stream of frames (eval.breakeven).

A frame identical to the previous one is not recomputed (same integers in, same integers out): it
costs only change detection, one 8-bit compare per pixel.  Otherwise the ops before the first op
that mixes tokens (`reusable_prefix`: on the ViT the patch embedding, block 0's LayerNorm and QKV
projection) are computed only for the token rows whose input patch changed; the class token's row
is a constant and is reused too.  Everything from the first attention product on is recomputed (a
changed key changes every softmax row).  `reduced_workload` is the Workload of such a frame, which
any dense accelerator then simulates like any other.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import torch


def reusable_prefix(workload) -> list[str]:
    """Names of the ops before the first op that mixes tokens (matmul_act, softmax): their output
    rows depend only on the same token's input row, so unchanged rows can be reused exactly."""
    out = []
    for op in workload.ops:
        if op.kind in ("matmul_act", "softmax"):
            break
        if op.kind not in ("conv", "linear", "layernorm", "gelu", "add"):
            break
        out.append(op.name)
    return out


def _scale_rows(op, rows: int, total: int):
    """`op` evaluated on `rows` of its `total` token rows (conv: patches; others: tokens)."""
    if rows == total:
        return op
    f = rows / total
    kw = {"macs": int(round(op.macs * f)), "in_elems": int(round(op.in_elems * f)),
          "out_elems": int(round(op.out_elems * f))}
    if op.gemm is not None:
        b, m, k, n = op.gemm
        kw["gemm"] = (b, rows if m == total else max(1, int(round(m * f))), k, n)
    if op.kind == "conv":
        kw["out_shape"] = (op.out_shape[0], rows, 1)
        kw["in_shape"] = (op.in_shape[0], rows * op.extra.get("kernel", [1, 1])[0], op.extra.get("kernel", [1, 1])[1])
    else:
        kw["in_shape"] = (rows,) + tuple(op.in_shape[1:])
        kw["out_shape"] = (rows,) + tuple(op.out_shape[1:])
    extra = dict(op.extra)
    if "rows" in extra:
        extra["rows"] = rows
    return replace(op, extra=extra, **kw)


def reduced_workload(workload, changed_patches: int, n_patches: int, reuse_cls: bool = True):
    """The Workload of a frame in which `changed_patches` of `n_patches` patches changed: the
    reusable prefix computed for those rows only (and the class token's row, unless `reuse_cls`:
    its input is a constant, so it is reused too)."""
    from neuro_hw import Workload
    prefix = set(reusable_prefix(workload))
    ops = []
    for op in workload.ops:
        if op.name in prefix:
            total = n_patches if op.kind == "conv" else int(op.in_shape[0])
            extra_rows = 0 if op.kind == "conv" or reuse_cls else total - n_patches
            ops.append(_scale_rows(op, changed_patches + extra_rows, total))
        else:
            ops.append(op)
    return Workload(name=f"{workload.name}-rows{changed_patches}of{n_patches}", ops=ops, meta=dict(workload.meta))


def changed_patches(grey: torch.Tensor, patch: int) -> np.ndarray:
    """Changed patches per steady-state frame: grey [n_clips, n_frames, C, H, W] -> [n_clips *
    (n_frames - 1)] counts of patch x patch blocks with any pixel differing from the previous frame."""
    d = (grey[:, 1:] != grey[:, :-1]).any(2)                    # [N, F-1, H, W]
    n, f, h, w = d.shape
    blocks = d.reshape(n, f, h // patch, patch, w // patch, patch).any(5).any(3)
    return blocks.reshape(n * f, -1).sum(1).numpy()


def detect_change_pj(hw, n_pixels: int) -> float:
    """Change detection on the conventional side: one 8-bit compare per pixel (the technology table
    of the accelerator's config)."""
    import neuro_hw
    from neuro_hw.tech import get_tech
    cfg = neuro_hw.load_hw_config(hw)
    tech = get_tech(getattr(cfg, "tech", "45nm"))
    return n_pixels * tech.cmp_pj(8)


def stream_baseline(workload, grey: torch.Tensor, patch: int, hw, policy) -> dict:
    """Per-frame energy and latency of a dense accelerator on a stream's steady-state frames with
    the exact reuse credited (module docstring)."""
    from eval.measure import simulate_hw
    counts = Counter(int(k) for k in changed_patches(grey, patch))
    n_patches = (grey.shape[-1] // patch) * (grey.shape[-2] // patch)
    detect = detect_change_pj(hw, int(np.prod(grey.shape[2:])))
    full = simulate_hw(workload, None, hw, policy)
    e = lat = 0.0
    total = sum(counts.values())
    for k, n in counts.items():
        if k == 0:
            ek, lk = 0.0, 0.0
        else:
            r = simulate_hw(reduced_workload(workload, k, n_patches), None, hw, policy)
            ek, lk = r.energy_pj, r.latency_s
        e += n * (ek + detect)
        lat += n * lk
    return {"energy_pj": e / total, "latency_s": lat / total, "full_energy_pj": float(full.energy_pj),
            "full_latency_s": float(full.latency_s), "skipped_frames": counts.get(0, 0) / total,
            "mean_rows_recomputed": sum(k * n for k, n in counts.items()) / total,
            "n_patches": n_patches, "detect_pj": detect}
