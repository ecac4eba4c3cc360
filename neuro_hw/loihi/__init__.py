"""Silicon-calibrated Loihi-family chips (kind "loihi"): `loihi1` (Davies 2018 / SANA-FE, 14 nm)
and `loihi2` (Intel 4, graded spikes), each one TOML in neuro_hw/configs with a source per constant.

config.py    LoihiConfig: the SANA-FE-style unit hierarchy, energy and latency per event, sources
simulate.py  simulate_loihi(workload, trace, cfg, policy=) -> HwReport
"""
from neuro_hw.loihi.config import REQUIRED, LoihiConfig
from neuro_hw.loihi.simulate import PARTS, check_payloads, simulate_loihi

__all__ = ["LoihiConfig", "PARTS", "REQUIRED", "check_payloads", "simulate_loihi"]
