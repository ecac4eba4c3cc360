"""Model configurations: sizes are data, not subclasses."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MODEL_KINDS = ("vit", "features", "text", "decoder", "multimodal")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a reference MFM.  Saved as JSON beside each checkpoint."""

    kind: str
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    norm: str = "pre"          # pre | post
    act: str = "gelu"          # gelu | gelu_tanh | relu (spike-friendly)
    attn: str = "softmax"      # softmax | relu (spike-friendly, softmax-free)
    ln_eps: float = 1e-5
    causal: bool = False
    # inputs
    vocab_size: int = 0        # text / decoder / multimodal
    max_len: int = 0           # text / decoder / multimodal (positions)
    type_vocab_size: int = 0   # BERT token types (0 = none)
    embed_ln: bool = False     # BERT: LayerNorm after the embeddings
    image_size: int = 0        # vit / multimodal
    patch_size: int = 0
    channels: int = 1
    n_features: int = 0        # features (tabular)
    # outputs
    n_classes: int = 0         # vit / features / text classifier head (0 = no head)
    pool: str = "cls"          # cls | mean | none
    tie_embeddings: bool = False
    # multimodal: the image encoder's config (a ModelConfig of kind 'vit', n_classes 0)
    vision: "ModelConfig | None" = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = ModelConfig.from_dict(self.vision)
        self.validate()

    def validate(self) -> None:
        def bad(msg):
            raise ValueError(f"invalid model config: {msg}")
        if self.kind not in MODEL_KINDS:
            bad(f"kind {self.kind!r} unknown; allowed: {', '.join(MODEL_KINDS)}")
        for name in ("d_model", "n_layers", "n_heads", "d_ff"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            bad(f"d_model={self.d_model} not divisible by n_heads={self.n_heads}")
        if self.norm not in ("pre", "post"):
            bad(f"norm {self.norm!r}; allowed: pre, post")
        if self.act not in ("gelu", "gelu_tanh", "relu"):
            bad(f"act {self.act!r}; allowed: gelu, gelu_tanh, relu")
        if self.attn not in ("softmax", "relu"):
            bad(f"attn {self.attn!r}; allowed: softmax, relu")
        if self.pool not in ("cls", "mean", "none"):
            bad(f"pool {self.pool!r}; allowed: cls, mean, none")
        if self.kind in ("vit",) and (self.image_size < 1 or self.patch_size < 1
                                      or self.image_size % self.patch_size):
            bad(f"vit needs image_size divisible by patch_size, got {self.image_size}/{self.patch_size}")
        if self.kind in ("text", "decoder", "multimodal") and (self.vocab_size < 1 or self.max_len < 1):
            bad(f"{self.kind} needs vocab_size and max_len >= 1")
        if self.kind == "features" and self.n_features < 1:
            bad("features needs n_features >= 1")
        if self.kind == "multimodal" and self.vision is None:
            bad("multimodal needs a 'vision' config")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown model config key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)
