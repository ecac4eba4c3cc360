"""Input co-optimisation: what the model is shown, searched jointly with bits and time steps.

The knobs change the *input* and therefore the sequence the transformer runs on:

* visual resolution: images resized before the patch embedding (`ResizedInput`: area averaging
  down, pixel replication up), a model trained per (resolution, patch size), since the token grid
  changes;
* patch size / stride: tokens = (resolution / patch)^2 (non-overlapping patches: stride = patch);
* training-free token pruning or merging (`TokenPruned`): keep the k patch tokens whose *input*
  patch has the most energy (sum of squared pixels; blank background patches go first), and
  optionally merge the dropped ones into one averaged token (ToMe-like, Bolya et al. ICLR 2023,
  here by input energy instead of similarity).  Choosing by the input keeps the SNN exact: the
  choice is the same at every time step, so the SNN still equals the QANN;
* context length of a language model (`TruncatedContext`): the first n tokens.

`pareto_front` is the selection every study uses: the configurations no other configuration
beats on both energy and accuracy.  Everything here is hardware-free; eval.cooptimize charges the
configurations on both accelerators.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

TOKEN_MODES = ("prune", "merge")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size]: area averaging when shrinking (a lower-resolution
    sensor), pixel replication for integer enlargements (no new information), bilinear otherwise."""
    H = images.shape[-1]
    if size == H:
        return images
    if size < H:
        return F.interpolate(images, size=(size, size), mode="area")
    if size % H == 0:
        return F.interpolate(images, size=(size, size), mode="nearest")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class ResizedInput(nn.Module):
    """`model` fed with images resized to `size` (argument `image_arg` of the inputs).  The
    resize is input preprocessing (a sensor at that resolution): no quantizer, not charged."""

    def __init__(self, model: nn.Module, size: int, image_arg: int = 0):
        super().__init__()
        self.model, self.size, self.image_arg = model, int(size), int(image_arg)
        self.config = getattr(model, "config", None)

    def forward(self, *inputs, **kw):
        args = list(inputs)
        args[self.image_arg] = resize_images(args[self.image_arg], self.size)
        return self.model(*args, **kw)


def keep_indices(images: torch.Tensor, patch: int, keep: int) -> torch.Tensor:
    """[B, keep] indices (in raster order) of the patches with the most input energy; ties go to
    the earlier patch (stable sort), so equal rows always choose alike."""
    energy = F.unfold(images.to(torch.float64), patch, stride=patch).pow(2).sum(1)  # [B, N]
    order = torch.argsort(-energy, dim=1, stable=True)[:, :keep]
    return order.sort(1).values


class TokenPruned(nn.Module):
    """A ViT (classifier) or MultimodalLM whose image encoder keeps `keep` patch tokens (+ CLS).

    mode 'prune' drops the rest; 'merge' adds one token, the mean of the dropped tokens
    (embedding + position), so their content is summarised instead of lost.  In a MultimodalLM
    the shortened image prefix ends at the full prefix's last position, so the text tokens keep
    the positions the decoder was trained with."""

    def __init__(self, model: nn.Module, keep: int, mode: str = "prune"):
        super().__init__()
        if mode not in TOKEN_MODES:
            raise ValueError(f"token mode {mode!r}; allowed: {', '.join(TOKEN_MODES)}")
        self.model, self.keep, self.mode = model, int(keep), mode
        self.config = getattr(model, "config", None)
        self.multimodal = hasattr(model, "vision")
        vit = model.vision if self.multimodal else model
        n = (vit.config.image_size // vit.config.patch_size) ** 2
        if not 1 <= self.keep <= n:
            raise ValueError(f"keep must be in 1..{n} patch tokens, got {keep}")

    def _vit(self):
        return self.model.vision if self.multimodal else self.model

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        vit = self._vit()
        dt = next(vit.parameters()).dtype
        x = vit.patch(images.to(dt)).flatten(2).transpose(1, 2)          # [B, N, d]
        pos = vit.pos.to(x.dtype)
        x = x + pos[:, 1:]
        idx = keep_indices(images, vit.config.patch_size, self.keep)       # [B, k]
        kept = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
        parts = [(vit.cls.to(x.dtype) + pos[:, :1]).expand(x.shape[0], -1, -1), kept]
        if self.mode == "merge" and self.keep < x.shape[1]:
            dropped = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device).scatter(1, idx, 0.0)
            merged = (x * dropped[..., None]).sum(1, keepdim=True) / dropped.sum(1)[:, None, None]
            parts.append(merged)
        return vit.trunk(torch.cat(parts, 1))

    @property
    def n_tokens(self) -> int:
        vit = self._vit()
        n = (vit.config.image_size // vit.config.patch_size) ** 2
        return 1 + self.keep + (1 if self.mode == "merge" and self.keep < n else 0)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | None = None):
        h = self.encode(images)
        if not self.multimodal:
            return h if self._vit().head is None else self._vit().head(h[:, 0])
        prefix = self.model.projector(h)
        # the text keeps its trained positions: the shortened prefix ends where the full one did
        logits = self.model.decoder(tokens, prefix=prefix, start_pos=self.model.n_prefix - prefix.shape[1])
        return logits[:, prefix.shape[1]:]


class TruncatedContext(nn.Module):
    """A sequence model run on the first `n` tokens of each input (argument `token_arg`)."""

    def __init__(self, model: nn.Module, n: int, token_arg: int = 0):
        super().__init__()
        self.model, self.n, self.token_arg = model, int(n), int(token_arg)
        self.config = getattr(model, "config", None)

    def forward(self, *inputs, **kw):
        args = list(inputs)
        args[self.token_arg] = args[self.token_arg][:, :self.n]
        return self.model(*args, **kw)


@dataclass(frozen=True)
class InputConfig:
    """One input configuration.  image_size/patch_size: None = the model's own; keep_tokens:
    training-free pruning/merging (None = all tokens); context: tokens kept (None = all)."""

    image_size: int | None = None
    patch_size: int | None = None
    keep_tokens: int | None = None
    token_mode: str = "prune"
    context: int | None = None

    def label(self) -> str:
        parts = []
        if self.image_size is not None:
            parts.append(f"{self.image_size}px/p{self.patch_size}")
        if self.keep_tokens is not None:
            parts.append(f"{self.token_mode}{self.keep_tokens}")
        if self.context is not None:
            parts.append(f"ctx{self.context}")
        return " ".join(parts) or "default"

    @property
    def trains(self) -> bool:
        """A model must be trained for this configuration (the token grid changes)."""
        return self.image_size is not None

    def to_dict(self) -> dict:
        return asdict(self)


def n_patch_tokens(image_size: int, patch_size: int) -> int:
    return (image_size // patch_size) ** 2


def vision_grid(native: int = 8, native_patch: int = 2) -> list[InputConfig]:
    """Resolution x patch configurations for 8x8 digits (each trains a model) and training-free
    token pruning/merging of the native model: 4x4 (p1, p2), 6x6 (p1, p2, p3), 8x8 (p1, p2, p4),
    16x16 (p4, p8); prune to 14 or 12 of 16 tokens, merge keeping 14, 12 or 10 (an 8x8 digit
    has ~4 blank 2x2 patches: pruning deeper than that removes strokes)."""
    shapes = [(4, 1), (4, 2), (6, 1), (6, 2), (6, 3), (native, 1), (native, native_patch), (native, 4),
              (2 * native, 4), (2 * native, 8)]
    out = [InputConfig(r, p) for r, p in shapes]
    n = n_patch_tokens(native, native_patch)
    out += [InputConfig(keep_tokens=k) for k in (7 * n // 8, 3 * n // 4)]
    out += [InputConfig(keep_tokens=k, token_mode="merge") for k in (7 * n // 8, 3 * n // 4, 5 * n // 8)]
    return out


def pareto_front(points: Sequence[dict], cost: str = "energy_pj", gain: str = "accuracy") -> list[int]:
    """Indices of the points no other point dominates (cost <= and gain >= with one strict),
    sorted by cost.  Of identical points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][cost], -points[i][gain], i))
    front, best = [], -float("inf")
    for i in order:
        g = points[i][gain]
        if g > best:
            front.append(i)
            best = g
    return front


def dominated_by(points: Sequence[dict], i: int, cost: str = "energy_pj", gain: str = "accuracy") -> bool:
    """Whether point i is strictly dominated by another point (for checks and tests)."""
    p = points[i]
    return any((q[cost] <= p[cost] and q[gain] >= p[gain]) and (q[cost] < p[cost] or q[gain] > p[gain])
               for j, q in enumerate(points) if j != i)
