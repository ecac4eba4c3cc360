"""One transformer `Block` (attention + MLP) from which every snmfm model is built.

Pre-LN (GPT-2, ViT):   x = x + Attn(LN1(x));  x = x + MLP(LN2(x))
Post-LN (BERT):        x = LN1(x + Attn(x));  x = LN2(x + MLP(x))

Every activation that becomes spikes enters a quantizer owned by the layer that reads it:
LN1 output -> qkv.quant; Q, K -> qk.quant_a/b; softmax -> av.quant_a (unsigned); V -> av.quant_b;
context -> proj.quant; LN2 output -> fc1.quant; GELU output -> fc2.quant.  The residual stream is
never spikes: it is an accumulator that adds the increments of `proj` and `fc2` (charged as adds)
and is read by the non-spiking LayerNorms.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.models.config import ModelConfig
from snmfm.nn import GELU, LayerNorm, QuantLinear, QuantMatMul, Softmax

NEG_INF = -1e9  # additive mask value; finite so a fully masked row stays finite in float64


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection and optional causal mask.

    `attn="softmax"` is standard attention (softmax is a non-spiking unit);
    `attn="relu"` is the spike-friendly softmax-free variant attn = ReLU(QK^T/sqrt(d)) / L_k,
    whose output is non-negative and enters an unsigned quantizer directly (no digital unit).

    `n_heads` overrides the config's head count for this block (a head-pruned block keeps
    head_dim = d_model / cfg.n_heads, so its inner width n_heads * head_dim may be < d_model).
    """

    def __init__(self, cfg: ModelConfig, n_heads: int | None = None):
        super().__init__()
        d, h = cfg.d_model, cfg.n_heads
        if d % h:
            raise ValueError(f"d_model={d} is not divisible by n_heads={h}")
        self.head_dim, self.causal = d // h, cfg.causal
        self.n_heads = h if n_heads is None else int(n_heads)
        if self.n_heads < 1:
            raise ValueError(f"an attention block needs at least one head, got n_heads={self.n_heads}")
        inner = self.n_heads * self.head_dim
        self.attn_kind = cfg.attn
        self.qkv = QuantLinear(d, 3 * inner)
        self.qk = QuantMatMul(out_scale=1.0 / math.sqrt(self.head_dim))
        self.softmax = Softmax()
        self.av = QuantMatMul(signed_a=False)
        self.proj = QuantLinear(inner, d)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None,
                cache: dict | None = None) -> torch.Tensor:
        """x [B, L, d]; pad_mask [B, Lk] bool (True = real token); cache: dict with 'k','v' of
        earlier positions (real-valued, pre-quantization), updated in place (incremental decoding)."""
        B, L, _ = x.shape
        inner = self.n_heads * self.head_dim
        q, k, v = self.qkv(x).split(inner, dim=-1)
        q, k, v = (t.reshape(B, L, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        Lk = k.shape[2]
        scores = self.qk(q, k.transpose(-2, -1))  # [B, H, L, Lk]
        mask = None
        if self.causal:
            qi = torch.arange(past, past + L, device=x.device)[:, None]
            ki = torch.arange(Lk, device=x.device)[None, :]
            mask = (ki <= qi)[None, None]
        if pad_mask is not None:
            pm = pad_mask[:, None, None, :].bool()
            mask = pm if mask is None else (mask & pm)
        if self.attn_kind == "softmax":
            if mask is not None:
                scores = scores.masked_fill(~mask, NEG_INF)
            attn = self.softmax(scores)
        else:  # softmax-free ReLU attention
            attn = F.relu(scores)
            if mask is not None:
                attn = attn.masked_fill(~mask, 0.0)
            attn = attn / Lk
        ctx = self.av(attn, v)  # [B, H, L, hd]
        ctx = ctx.transpose(1, 2).reshape(B, L, inner)
        return self.proj(ctx)


class MLP(nn.Module):
    """fc1 -> GELU (non-spiking unit) -> fc2, or fc1 -> ReLU -> fc2 where the ReLU is absorbed into
    fc2's unsigned quantizer (qmin = 0), so the spiking version needs no digital unit."""

    def __init__(self, cfg: ModelConfig, d_ff: int | None = None):
        super().__init__()
        self.act_kind = cfg.act
        d_ff = cfg.d_ff if d_ff is None else int(d_ff)
        if d_ff < 1:
            raise ValueError(f"an MLP needs at least one hidden channel, got d_ff={d_ff}")
        self.fc1 = QuantLinear(cfg.d_model, d_ff)
        if cfg.act == "relu":
            self.act = None
        else:
            self.act = GELU(approximate="tanh" if cfg.act == "gelu_tanh" else "none")
        self.fc2 = QuantLinear(d_ff, cfg.d_model, signed=cfg.act != "relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = F.relu(h) if self.act is None else self.act(h)
        return self.fc2(h)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, n_heads: int | None = None, d_ff: int | None = None):
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.ln1 = LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.attn = Attention(cfg, n_heads)
        self.ln2 = LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.mlp = MLP(cfg, d_ff)

    def forward(self, x, pad_mask=None, cache=None):
        if self.pre_norm:
            x = x + self.attn(self.ln1(x), pad_mask, cache)
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x, pad_mask, cache))
        return self.ln2(x + self.mlp(x))


def block_shapes(cfg: ModelConfig) -> list[dict]:
    """Per-block {"n_heads", "d_ff"}: from ``cfg.extra["block_shapes"]`` (written by
    `snmfm.compress.prune`), else the config's uniform sizes."""
    shapes = cfg.extra.get("block_shapes")
    if shapes is None:
        return [{"n_heads": cfg.n_heads, "d_ff": cfg.d_ff} for _ in range(cfg.n_layers)]
    if len(shapes) != cfg.n_layers:
        raise ValueError(f"invalid model config: extra.block_shapes has {len(shapes)} entries "
                         f"for n_layers={cfg.n_layers}")
    return [{"n_heads": int(s["n_heads"]), "d_ff": int(s["d_ff"])} for s in shapes]


class Trunk(nn.Module):
    """A stack of blocks, with the final LayerNorm of pre-LN models."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg, s["n_heads"], s["d_ff"]) for s in block_shapes(cfg))
        self.ln_f = LayerNorm(cfg.d_model, eps=cfg.ln_eps) if cfg.norm == "pre" else None

    def forward(self, x, pad_mask=None, caches=None):
        for i, blk in enumerate(self.blocks):
            x = blk(x, pad_mask, None if caches is None else caches[i])
        return x if self.ln_f is None else self.ln_f(x)
