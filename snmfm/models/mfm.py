"""The reference multimodal foundation models, all built from `blocks.Block`.

ViT          image -> patches (QuantConv2d) + [CLS] + positions -> blocks -> LN -> head(CLS)
Features     tabular features -> one token per feature (QuantFeatureEmbed) + [CLS] -> blocks -> head
TextEncoder  tokens (+ positions, token types) [-> LN] -> blocks -> CLS/mean pooling [-> head]
DecoderLM    tokens + positions -> causal blocks -> LN -> LM head
MultimodalLM image -> ViT tokens -> projector -> prefix of a DecoderLM that generates the answer
"""
from __future__ import annotations

import torch
from torch import nn

from snmfm.models.blocks import Trunk
from snmfm.models.config import ModelConfig
from snmfm.nn import LayerNorm, QuantConv2d, QuantFeatureEmbed, QuantLinear


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over tokens (dim 1) of x [B, L, d] with mask [B, L].

    Summed token by token in a fixed order rather than with `x.sum(1)`: a vectorised reduction may
    add in a different order for a different batch size, and the SNN evaluates the pooling on a
    batch T times larger than the QANN's; elementwise adds in a fixed order give the same bits."""
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    m = mask.to(x.dtype)
    acc = x[:, 0] * m[:, 0, None]
    for i in range(1, x.shape[1]):
        acc = acc + x[:, i] * m[:, i, None]
    return acc / m.sum(1, keepdim=True).clamp_min(1.0)


class ViT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.patch = QuantConv2d(cfg.channels, cfg.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, cfg.d_model) * 0.02)
        self.trunk = Trunk(cfg)
        self.head = QuantLinear(cfg.d_model, cfg.n_classes) if cfg.n_classes else None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] -> tokens [B, 1 + patches, d] (after the final LayerNorm)."""
        x = self.patch(images.to(_dtype(self)))  # [B, d, h, w]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.trunk(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.encode(images)
        return h if self.head is None else self.head(h[:, 0])


class FeatureTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = QuantFeatureEmbed(cfg.n_features, cfg.d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.trunk = Trunk(cfg)
        self.head = QuantLinear(cfg.d_model, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x.to(_dtype(self)))
        t = torch.cat([self.cls.to(t.dtype).expand(t.shape[0], -1, -1), t], dim=1)
        return self.head(self.trunk(t)[:, 0])


class TokenEmbedding(nn.Module):
    """Token + learned position (+ token type) embeddings, optionally LayerNorm-ed (BERT)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.typ = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.ln = LayerNorm(cfg.d_model, eps=cfg.ln_eps) if cfg.embed_ln else None
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, ids: torch.Tensor, start_pos: int = 0, token_type_ids=None,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        x = self.tok(ids)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        L = x.shape[1]
        if start_pos + L > self.pos.num_embeddings:
            raise ValueError(f"sequence of {start_pos + L} positions exceeds max_len={self.pos.num_embeddings}")
        x = x + self.pos(torch.arange(start_pos, start_pos + L, device=ids.device))[None]
        if self.typ is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(ids)
            x = x + self.typ(token_type_ids)
        return x if self.ln is None else self.ln(x)


class TextEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = TokenEmbedding(cfg)
        self.trunk = Trunk(cfg)
        self.head = QuantLinear(cfg.d_model, cfg.n_classes) if cfg.n_classes else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        h = self.trunk(self.embed(input_ids, token_type_ids=token_type_ids), attention_mask)
        if self.config.pool == "none":
            return h
        pooled = h[:, 0] if self.config.pool == "cls" else masked_mean(h, attention_mask)
        return pooled if self.head is None else self.head(pooled)


class DecoderLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = TokenEmbedding(cfg)
        self.trunk = Trunk(cfg)
        self.lm_head = QuantLinear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.linear.weight = self.embed.tok.weight

    def new_caches(self) -> list[dict]:
        return [{} for _ in self.trunk.blocks]

    def forward(self, tokens: torch.Tensor, caches: list[dict] | None = None, start_pos: int = 0,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, L] -> logits [B, L(+prefix), V].  With `caches`, keys/values of earlier
        positions are reused and only the new positions are computed."""
        x = self.embed(tokens, start_pos=start_pos, prefix=prefix)
        return self.lm_head(self.trunk(x, None, caches))


class MultimodalLM(nn.Module):
    """Image encoder + projector + decoder; the image tokens are a prefix of the text."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.vision = ViT(cfg.vision)
        self.projector = QuantLinear(cfg.vision.d_model, cfg.d_model)
        self.decoder = DecoderLM(cfg.replace(kind="decoder", vision=None))

    @property
    def n_prefix(self) -> int:
        v = self.config.vision
        return (v.image_size // v.patch_size) ** 2 + 1

    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.vision.encode(images))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, caches=None) -> torch.Tensor:
        """-> logits over the text positions only [B, L, V]."""
        logits = self.decoder(tokens, caches=caches, prefix=self.prefix(images))
        return logits[:, self.n_prefix:]


MODEL_CLASSES = {"vit": ViT, "features": FeatureTransformer, "text": TextEncoder,
                 "decoder": DecoderLM, "multimodal": MultimodalLM}


def model_from_config(cfg: ModelConfig | dict) -> nn.Module:
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return MODEL_CLASSES[cfg.kind](cfg)
