"""HF `transformers` models -> snmfm models, for research code: `converters.from_hf(hf_model)`.

The mapping itself lives in `snmfm.models.hf` (it builds snmfm models); this module only re-exports
it next to `convert`, so ``convert(quantize(calibrate(from_hf(hf), data), 8, 8))`` reads in one place.
"""
from snmfm.models.hf import SUPPORTED, UnsupportedHFModel, from_hf

__all__ = ["SUPPORTED", "UnsupportedHFModel", "from_hf"]
