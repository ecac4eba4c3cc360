"""`build_model(name, size)`: reference MFMs by name and size."""
from __future__ import annotations

from torch import nn

from snmfm.models.config import ModelConfig
from snmfm.models.mfm import model_from_config

# Trunk sizes shared by every model name.  "tiny" is for tests, "small" is the default the tasks
# train on CPU in minutes, "base" is a larger point for scaling studies.
SIZES: dict[str, dict] = {
    "tiny": dict(d_model=32, n_layers=1, n_heads=2, d_ff=64),
    "small": dict(d_model=64, n_layers=2, n_heads=4, d_ff=128),
    "medium": dict(d_model=128, n_layers=4, n_heads=4, d_ff=256),
    "base": dict(d_model=256, n_layers=6, n_heads=8, d_ff=1024),
}

# Input/output defaults of each model name (tasks override them, e.g. n_classes).
NAMES: dict[str, dict] = {
    "vit": dict(kind="vit", image_size=8, patch_size=2, channels=1, n_classes=10),
    "features": dict(kind="features", n_features=30, n_classes=2),
    "text": dict(kind="text", vocab_size=256, max_len=128, pool="mean", norm="post", embed_ln=True),
    "decoder": dict(kind="decoder", vocab_size=256, max_len=256, causal=True),
    "multimodal": dict(kind="multimodal", vocab_size=64, max_len=64, causal=True),
}


def build_model(name: str, size: str = "small", **overrides) -> nn.Module:
    """Build a reference MFM, e.g. ``build_model("vit", "small", n_classes=10)``.

    For ``multimodal`` the image encoder has the same size unless ``vision=`` (a dict of
    ModelConfig fields) is given."""
    if name not in NAMES:
        raise ValueError(f"unknown model name {name!r}; available: {', '.join(NAMES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r} for model {name!r}; available: {', '.join(SIZES)}")
    fields = {**SIZES[size], **NAMES[name], **overrides}
    if name == "multimodal":
        vision = {**SIZES[size], **NAMES["vit"], "n_classes": 0}
        vision.update(fields.pop("vision", None) or {})
        fields["vision"] = ModelConfig(**vision)
    return model_from_config(ModelConfig(**fields))
