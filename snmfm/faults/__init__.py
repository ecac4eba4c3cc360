"""Fault models (plain seeded data + functions) shared by the QANN and the SNN.

`kinds`: the fault kinds, their rate units and where each lives on each accelerator side;
`sample`: seeded draws and two's-complement bit flips (weights, with or without SECDED ECC);
`inject`: hooks that inject accumulator bit flips, stuck units and dead outputs into the integer
layers of a QANN or of a SpikingModel (the same modules compute both).  Spike-packet faults live
with the codings (converters.faults); costs of the mitigations with the hardware
(neuro_hw.protection); the study in eval.faults.
"""
from snmfm.faults.inject import CONSUMERS, Injector, consumers, injected, layer_shapes
from snmfm.faults.kinds import (KINDS, MITIGATION_FOR, SIDES, FaultError, FaultKind, FaultSpec, Mitigation,
                                check_fault, check_rate, get_kind, names)
from snmfm.faults.sample import flip_bits, flip_bitstream, flip_weights, rng_for, sample_positions, weight_modules

__all__ = ["CONSUMERS", "KINDS", "MITIGATION_FOR", "SIDES", "FaultError", "FaultKind", "FaultSpec", "Injector",
           "Mitigation", "check_fault", "check_rate", "consumers", "flip_bits", "flip_bitstream", "flip_weights",
           "get_kind", "injected", "layer_shapes", "names", "rng_for", "sample_positions", "weight_modules"]
