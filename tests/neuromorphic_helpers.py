"""Shared by test_neuromorphic.py and test_synops.py: one tiny ViT QANN, its Workload, SNN run,
trace and full spike record (built once per session)."""
from functools import lru_cache

import torch


@lru_cache(maxsize=None)
def tiny_vit_run():
    from converters import convert
    from neuro_hw.neuromorphic import record_spikes
    from neuro_hw.workload import extract_workload
    from snmfm.compress import calibrate, quantize
    from snmfm.models import build_model

    torch.manual_seed(0)
    m = build_model("vit", "tiny")
    x = torch.randn(4, 1, 8, 8)
    calibrate(m, [x])
    q = quantize(m, w_bits=8, a_bits=4)
    w = extract_workload(q, x[:2])
    snn = convert(q)
    res, rec = record_spikes(snn, x[:2])
    return q, x[:2], w, snn, res, rec
