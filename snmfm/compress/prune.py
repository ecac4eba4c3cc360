"""Structural pruning: remove attention heads, MLP channels and whole blocks, physically.

The pruned model is smaller, not masked: a head removed from a block takes its rows of the fused
QKV projection (its q, k and v slices) and its columns of the output projection with it; an MLP
channel takes its row of fc1 and its column of fc2; a removed block leaves the ModuleList.  Every
MAC and parameter of the removed units is gone, so the Workload, the SNN and both hardware models
see the smaller model.

Per-block shapes are recorded in ``config.extra["block_shapes"]`` (``[{"n_heads", "d_ff"}, ...]``)
and ``n_layers`` is updated, so ``model_from_config(pruned.config)`` rebuilds the pruned
architecture and the saved state dict loads into it.  ``config.extra["pruned"]`` lists what was
removed (indices in the original model).

Importance (which units go):
* ``magnitude`` -- L2 norm of the weights a unit owns (head: its QKV rows and proj columns; channel:
  its fc1 row and fc2 column; block: its proj and fc2 weights).  Needs no data.
* ``taylor`` -- first-order Taylor estimate of the loss change when the unit is removed
  (Molchanov et al., CVPR 2019): a gate of 1 multiplies each unit's output, and the importance is
  the squared gradient of the loss with respect to the gate, (sum over the unit of w * dL/dw)^2,
  averaged over `data`.  The loss is `loss_fn(output, batch)` or, by default, cross-entropy against
  the model's own predictions.
Whole blocks, whenever `data` is given, are ranked by the measured divergence of the output when
the block is skipped (as cheap as one forward pass per block, and exact rather than estimated).

Why our own surgery rather than Torch-Pruning: Torch-Pruning removes MLP channels exactly as we do
(cross-checked in tests/test_prune.py), but its dependency graph treats the activation products
Q K^T and attn V as elementwise ops and maps the fused qkv output channels straight onto proj's
inputs, so it cannot remove heads (IndexError), and it does not remove blocks; one surgery for all
three also keeps the ModelConfig in step, so the pruned checkpoint reloads.

Pruning happens on the float model, before calibration: quantizer samples are cleared (their
shapes change), so calibrate after pruning.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.models.blocks import Attention, Block, MLP, Trunk
from snmfm.nn import QuantLinear, quantizers

IMPORTANCE = ("magnitude", "taylor")


def _as_args(batch) -> tuple:
    return (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)


def trunk_blocks(model: nn.Module) -> dict[str, Block]:
    """Blocks of every Trunk in `model`, by module path (e.g. ``trunk.blocks.0``)."""
    out = {}
    for tname, t in model.named_modules():
        if isinstance(t, Trunk):
            for i, b in enumerate(t.blocks):
                out[f"{tname}.blocks.{i}" if tname else f"blocks.{i}"] = b
    return out


# ---- importance --------------------------------------------------------------------------------
def _head_magnitude(attn: Attention) -> torch.Tensor:
    H, hd = attn.n_heads, attn.head_dim
    inner = H * hd
    w = attn.qkv.linear.weight.detach().reshape(3, H, hd, -1)
    p = attn.proj.linear.weight.detach().reshape(-1, H, hd)
    return (w.pow(2).sum((0, 2, 3)) + p.pow(2).sum((0, 2))).sqrt() if inner else torch.zeros(0)


def _channel_magnitude(mlp: MLP) -> torch.Tensor:
    w1 = mlp.fc1.linear.weight.detach()
    w2 = mlp.fc2.linear.weight.detach()
    return (w1.pow(2).sum(1) + w2.pow(2).sum(0)).sqrt()


def _block_magnitude(block: Block) -> float:
    return float(block.attn.proj.linear.weight.detach().norm() + block.mlp.fc2.linear.weight.detach().norm())


def _default_loss(output: torch.Tensor, batch) -> torch.Tensor:
    """Cross-entropy against the model's own top-1 (labels are not needed to rank units)."""
    logits = output.reshape(-1, output.shape[-1])
    return F.cross_entropy(logits, logits.detach().argmax(-1))


def _taylor(model: nn.Module, blocks: dict[str, Block], data: Iterable, loss_fn, inputs_of):
    """Squared gate gradients per head and per channel, averaged over batches."""
    head_gates = {n: torch.ones(b.attn.n_heads, requires_grad=True) for n, b in blocks.items()}
    chan_gates = {n: torch.ones(b.mlp.fc2.in_features, requires_grad=True) for n, b in blocks.items()}
    head_imp = {n: torch.zeros(b.attn.n_heads) for n, b in blocks.items()}
    chan_imp = {n: torch.zeros(b.mlp.fc2.in_features) for n, b in blocks.items()}
    hooks = []
    for n, b in blocks.items():
        hg, cg, hd = head_gates[n], chan_gates[n], b.attn.head_dim

        def head_hook(mod, args, hg=hg, hd=hd):
            x = args[0]
            return (x * hg.to(x.dtype).repeat_interleave(hd),)

        def chan_hook(mod, args, cg=cg):
            x = args[0]
            return (x * cg.to(x.dtype),)
        hooks.append(b.attn.proj.register_forward_pre_hook(head_hook))
        hooks.append(b.mlp.fc2.register_forward_pre_hook(chan_hook))
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        for batch in data:
            model.zero_grad(set_to_none=True)
            for g in (*head_gates.values(), *chan_gates.values()):
                g.grad = None
            loss = loss_fn(model(*inputs_of(batch)), batch)
            loss.backward()
            for n in blocks:
                head_imp[n] += head_gates[n].grad.detach() ** 2
                chan_imp[n] += chan_gates[n].grad.detach() ** 2
            n_batches += 1
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if n_batches == 0:
        raise ValueError("taylor importance needs data: an iterable of at least one batch")
    return ({n: v / n_batches for n, v in head_imp.items()}, {n: v / n_batches for n, v in chan_imp.items()})


class _Skip(nn.Module):
    def forward(self, x, pad_mask=None, cache=None):
        return x


@torch.no_grad()
def _block_divergence(model, blocks: dict[str, Block], data, inputs_of) -> dict[str, float]:
    """Mean squared change of the model output when each block alone is skipped (normalised by the
    output's mean square so the numbers read as relative errors)."""
    data = list(data)
    if not data:
        raise ValueError("block importance from data needs at least one batch")
    was_training = model.training
    model.eval()
    refs = [model(*inputs_of(b)) for b in data]
    out = {}
    try:
        for name, blk in blocks.items():
            parent_name, _, idx = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            parent[int(idx)] = _Skip()
            try:
                err = sum(float((model(*inputs_of(b)) - r).pow(2).mean() / r.pow(2).mean().clamp_min(1e-30))
                          for b, r in zip(data, refs))
            finally:
                parent[int(idx)] = blk
            out[name] = err / len(data)
    finally:
        model.train(was_training)
    return out


# ---- selection ---------------------------------------------------------------------------------
def _n_remove(spec, n: int, what: str, keep_min: int = 1) -> int:
    if isinstance(spec, bool):
        raise TypeError(f"{what}: give a fraction in [0, 1), a count, or explicit indices, not a bool")
    if isinstance(spec, float):
        if not 0.0 <= spec < 1.0:
            raise ValueError(f"{what}: fraction must be in [0, 1), got {spec}")
        k = int(math.floor(spec * n + 0.5))
    elif isinstance(spec, int):
        k = spec
    else:
        raise TypeError(f"{what}: expected a fraction, a count or {{block: [indices]}}, got {type(spec).__name__}")
    if not 0 <= k <= n - keep_min:
        raise ValueError(f"{what}: cannot remove {k} of {n} (at least {keep_min} must remain)")
    return k


def _lowest(scores: torch.Tensor, k: int) -> list[int]:
    if k == 0:
        return []
    # stable order: lowest importance first, ties broken by index
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:k])


def _resolve_block(key, names: list[str]) -> str:
    if isinstance(key, int):
        if len({n.rsplit(".blocks.", 1)[0] for n in names}) > 1:
            raise ValueError(f"block index {key} is ambiguous in a model with several trunks; "
                             f"use a block path ({', '.join(names)})")
        match = [n for n in names if n.endswith(f"blocks.{key}")]
        if not match:
            raise ValueError(f"no block {key}; blocks: {', '.join(names)}")
        return match[0]
    if key not in names:
        raise ValueError(f"no block named {key!r}; blocks: {', '.join(names)}")
    return key


def _select_units(spec, blocks, sizes: dict[str, int], scores, what: str) -> dict[str, list[int]]:
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        out = {}
        for key, idx in spec.items():
            name = _resolve_block(key, list(blocks))
            idx = sorted({int(i) for i in idx})
            n = sizes[name]
            if any(i < 0 or i >= n for i in idx):
                raise ValueError(f"{what}: index out of range for {name} (has {n})")
            if len(idx) >= n:
                raise ValueError(f"{what}: cannot remove all {n} of {name}; at least 1 must remain")
            if idx:
                out[name] = idx
        return out
    out = {}
    for name in blocks:
        k = _n_remove(spec, sizes[name], f"{what} of {name}")
        if k:
            out[name] = _lowest(scores()[name], k)
    return out


# ---- surgery -----------------------------------------------------------------------------------
def _new_linear(old: QuantLinear, weight: torch.Tensor, bias: torch.Tensor | None,
                in_cols: torch.Tensor | None = None) -> QuantLinear:
    """A QuantLinear with the given weight; `in_cols`: the input channels kept (per-channel
    activation scales of `snmfm.compress.smooth` follow them)."""
    new = QuantLinear(weight.shape[1], weight.shape[0], bias=bias is not None, signed=old.quant.signed)
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.linear.weight.copy_(weight)
        if bias is not None:
            new.linear.bias.copy_(bias)
    if old.in_div is not None:
        new.set_in_div(old.in_div if in_cols is None else old.in_div[in_cols.to(old.in_div.device)])
    new.train(old.training)
    return new


def _remove_heads(attn: Attention, drop: list[int]) -> None:
    H, hd = attn.n_heads, attn.head_dim
    keep = [h for h in range(H) if h not in set(drop)]
    inner = H * hd
    cols = torch.tensor([h * hd + j for h in keep for j in range(hd)], dtype=torch.long)
    rows = torch.cat([cols + part * inner for part in range(3)])
    q, p = attn.qkv.linear, attn.proj.linear
    attn.qkv = _new_linear(attn.qkv, q.weight.detach()[rows], None if q.bias is None else q.bias.detach()[rows])
    attn.proj = _new_linear(attn.proj, p.weight.detach()[:, cols], None if p.bias is None else p.bias.detach(), cols)
    attn.n_heads = len(keep)


def _remove_channels(mlp: MLP, drop: list[int]) -> None:
    keep = torch.tensor([c for c in range(mlp.fc1.out_features) if c not in set(drop)], dtype=torch.long)
    a, b = mlp.fc1.linear, mlp.fc2.linear
    mlp.fc1 = _new_linear(mlp.fc1, a.weight.detach()[keep], None if a.bias is None else a.bias.detach()[keep])
    mlp.fc2 = _new_linear(mlp.fc2, b.weight.detach()[:, keep], None if b.bias is None else b.bias.detach(), keep)


def _owner_config(model: nn.Module, trunk_name: str):
    """The ModelConfig that describes the trunk at `trunk_name` (its nearest ancestor with one)."""
    parts = trunk_name.split(".")[:-1] if trunk_name else []
    while True:
        mod = model.get_submodule(".".join(parts)) if parts else model
        if hasattr(mod, "config"):
            return ".".join(parts), mod.config
        if not parts:
            raise ValueError(f"cannot find the ModelConfig of trunk {trunk_name!r}: prune works on "
                             "snmfm.models (build_model / model_from_config)")
        parts = parts[:-1]


def _sync_configs(model: nn.Module) -> None:
    for tname, t in model.named_modules():
        if not isinstance(t, Trunk):
            continue
        owner, cfg = _owner_config(model, tname)
        shapes = [{"n_heads": b.attn.n_heads, "d_ff": b.mlp.fc1.out_features} for b in t.blocks]
        cfgs = [cfg]
        # MultimodalLM rebuilds its decoder from the root config (kind replaced): keep both in step
        root = getattr(model, "config", None)
        if owner == "decoder" and root is not None and root.kind == "multimodal":
            cfgs.append(root)
        for c in cfgs:
            c.n_layers = len(t.blocks)
            extra = dict(c.extra)
            if c is not cfg and "pruned" in cfg.extra:
                extra["pruned"] = cfg.extra["pruned"]
            if all(s == {"n_heads": c.n_heads, "d_ff": c.d_ff} for s in shapes):
                extra.pop("block_shapes", None)
            else:
                extra["block_shapes"] = shapes
            c.extra = extra


def _record(model: nn.Module, tname: str, removed: dict) -> None:
    _, cfg = _owner_config(model, tname)
    extra = dict(cfg.extra)
    prev = extra.get("pruned", {"heads": {}, "mlp_channels": {}, "blocks": []})
    for k in ("heads", "mlp_channels"):
        prev.setdefault(k, {}).update(removed[k])
    prev.setdefault("blocks", []).extend(removed["blocks"])
    extra["pruned"] = prev
    cfg.extra = extra


_SPEC_KEYS = {"heads": "heads", "mlp": "mlp_channels", "mlp_channels": "mlp_channels", "channels": "mlp_channels",
              "blocks": "blocks"}


def parse_prune_spec(spec: str | None) -> dict:
    """'heads=1,mlp=0.5,blocks=1' -> {"heads": 1, "mlp_channels": 0.5, "blocks": 1} (the keyword
    arguments of `prune`).  An integer is a count per block (blocks: in the model), a number with a
    decimal point a fraction in [0, 1)."""
    out: dict = {}
    if spec is None or not str(spec).strip():
        return out
    for part in str(spec).split(","):
        key, eq, val = (x.strip() for x in part.partition("="))
        if not eq or key.lower() not in _SPEC_KEYS:
            raise ValueError(f"prune spec {spec!r}: expected comma-separated key=value with keys heads, mlp, "
                             f"blocks (e.g. 'heads=1,mlp=0.5'), got {part.strip()!r}")
        try:
            num = float(val) if any(c in val for c in ".eE") else int(val)
        except ValueError:
            raise ValueError(f"prune spec {spec!r}: {key} must be a count or a fraction, got {val!r}") from None
        name = _SPEC_KEYS[key.lower()]
        if name in out:
            raise ValueError(f"prune spec {spec!r}: {key} given twice")
        if name == "blocks" and isinstance(num, float):
            raise ValueError(f"prune spec {spec!r}: blocks is a count of blocks, got {val!r}")
        if num < 0 or (isinstance(num, float) and num >= 1):
            raise ValueError(f"prune spec {spec!r}: {key}={val} must be a count >= 0 or a fraction in [0, 1)")
        out[name] = num
    return out


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prune(model: nn.Module, heads=None, mlp_channels=None, blocks=None, *, importance: str = "magnitude",
          data: Iterable | None = None, loss_fn: Callable | None = None,
          inputs_of: Callable = _as_args) -> nn.Module:
    """Return a physically smaller copy of `model` (an snmfm reference model, float).

    heads / mlp_channels: a fraction in [0, 1) or a count, removed from every block (lowest
    importance first, at least one kept), or explicit ``{block: [indices]}`` (block = path such as
    ``"trunk.blocks.0"``, or an int for single-trunk models).
    blocks: a count (least important blocks removed) or a list of blocks.
    importance: ``magnitude`` or ``taylor`` (needs `data`: batches of model inputs; `loss_fn(output,
    batch)` defaults to cross-entropy against the model's own predictions; `inputs_of(batch)`
    extracts the positional model inputs from a batch).

    What was removed (original indices) is in ``pruned.config.extra["pruned"]`` and returned as
    ``pruned.snmfm_prune``."""
    if importance not in IMPORTANCE:
        raise ValueError(f"unknown importance {importance!r}; allowed: {', '.join(IMPORTANCE)}")
    for name, q in quantizers(model):
        if q.mode == "int":
            raise ValueError("prune the float model, before quantize (this one is a QANN)")
    blks = trunk_blocks(model)
    if not blks:
        raise ValueError("model has no snmfm Trunk of Blocks to prune")
    if importance == "taylor" and data is None and (heads is not None or mlp_channels is not None):
        raise ValueError("importance='taylor' needs data (batches of model inputs)")
    if data is not None:
        data = list(data)
    out = copy.deepcopy(model)
    for _, q in quantizers(out):
        q.samples = []
    blks = trunk_blocks(out)
    params_before = count_params(out)

    cache = {}

    def scores():
        if "s" not in cache:
            if importance == "taylor":
                cache["s"] = _taylor(out, blks, data, loss_fn or _default_loss, inputs_of)
            else:
                cache["s"] = ({n: _head_magnitude(b.attn) for n, b in blks.items()},
                              {n: _channel_magnitude(b.mlp) for n, b in blks.items()})
        return cache["s"]

    drop_heads = _select_units(heads, blks, {n: b.attn.n_heads for n, b in blks.items()},
                               lambda: scores()[0], "heads")
    drop_chans = _select_units(mlp_channels, blks, {n: b.mlp.fc1.out_features for n, b in blks.items()},
                               lambda: scores()[1], "mlp_channels")
    drop_blocks: list[str] = []
    if blocks is not None:
        if isinstance(blocks, (list, tuple, set)):
            drop_blocks = sorted({_resolve_block(b, list(blks)) for b in blocks})
        else:
            k = _n_remove(blocks, len(blks), "blocks")
            imp = (_block_divergence(out, blks, data, inputs_of) if data is not None
                   else {n: _block_magnitude(b) for n, b in blks.items()})
            drop_blocks = sorted(sorted(blks, key=lambda n: (imp[n], n))[:k])
        per_trunk: dict[str, int] = {}
        for n in blks:
            per_trunk[n.rsplit(".blocks.", 1)[0]] = per_trunk.get(n.rsplit(".blocks.", 1)[0], 0) + 1
        for n in drop_blocks:
            per_trunk[n.rsplit(".blocks.", 1)[0]] -= 1
        if any(v < 1 for v in per_trunk.values()):
            raise ValueError("cannot remove every block of a trunk")

    for n, idx in drop_heads.items():
        _remove_heads(blks[n].attn, idx)
    for n, idx in drop_chans.items():
        _remove_channels(blks[n].mlp, idx)
    trunk_of = {n: n.rsplit(".blocks.", 1)[0] if ".blocks." in n else "" for n in blks}
    for tname in dict.fromkeys(trunk_of.values()):
        t = out.get_submodule(tname) if tname else out
        mine = [n for n in blks if trunk_of[n] == tname]
        removed = {"heads": {n: drop_heads[n] for n in mine if n in drop_heads},
                   "mlp_channels": {n: drop_chans[n] for n in mine if n in drop_chans},
                   "blocks": [n for n in drop_blocks if n in mine]}
        t.blocks = nn.ModuleList(blks[n] for n in mine if n not in drop_blocks)
        _record(out, tname, removed)
    _sync_configs(out)
    out.snmfm_prune = {"importance": importance, "heads": drop_heads, "mlp_channels": drop_chans,
                       "blocks": drop_blocks, "params_before": params_before,
                       "params_after": count_params(out)}
    return out
