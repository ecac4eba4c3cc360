"""Neuromorphic chip model: a Loihi-class many-core mesh driven by the SNN's ActivityTrace.

    cfg = NeuromorphicConfig.default()                 # or load_hw_config("neuromorphic")
    report = simulate_neuromorphic(workload, trace, cfg)

config.py    the chip as data (NeuromorphicConfig, bundled as neuro_hw/configs/neuromorphic*.toml)
mapping.py   ops, units and neuron sites onto cores under memory limits (spills flagged)
events.py    event counts per op and step: analytical from the trace; event-exact from spikes
record.py    full spike tensors of a small SNN run, for the event-exact path
simulate.py  energy breakdown, latency, per-op rows -> HwReport
"""
from neuro_hw.neuromorphic.config import NeuromorphicConfig
from neuro_hw.neuromorphic.events import Activity, activity, analytical_totals, exact_totals
from neuro_hw.neuromorphic.mapping import Mapping, map_workload
from neuro_hw.neuromorphic.record import SpikeRecord, record_spikes
from neuro_hw.neuromorphic.simulate import PARTS, UNIT_RECIPES, simulate_neuromorphic
from neuro_hw.neuromorphic.synthetic import synthetic_trace

__all__ = ["Activity", "Mapping", "NeuromorphicConfig", "PARTS", "SpikeRecord", "UNIT_RECIPES",
           "activity", "analytical_totals", "exact_totals", "map_workload", "record_spikes",
           "simulate_neuromorphic", "synthetic_trace"]
