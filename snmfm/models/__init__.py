"""Reference multimodal foundation models (nanoGPT-style: one Block, sizes as configs)."""
from snmfm.models.blocks import MLP, Attention, Block, Trunk
from snmfm.models.config import ModelConfig
from snmfm.models.mfm import (DecoderLM, FeatureTransformer, MultimodalLM, TextEncoder, ViT,
                              model_from_config)
from snmfm.models.registry import NAMES, SIZES, build_model

__all__ = ["Attention", "Block", "DecoderLM", "FeatureTransformer", "MLP", "ModelConfig",
           "MultimodalLM", "NAMES", "SIZES", "TextEncoder", "Trunk", "ViT", "build_model",
           "model_from_config"]
