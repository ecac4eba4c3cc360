"""Compression: calibration, integer quantisation (the QANN), mixed precision and pruning."""
from snmfm.compress.quant import calibrate, is_qann, quantize, quantize_weight, search_scale

__all__ = ["calibrate", "is_qann", "quantize", "quantize_weight", "search_scale"]
