"""What the design search (`snmfm design`) may change on each kind of accelerator.

A design space is a list of `Knob`s, each a name and its allowed values; `space_for(cfg)` gives
the knobs of a configuration's kind and `apply(cfg, point)` the configuration with a point's
values (validated like any config: an inconsistent point raises ValueError).  Values are powers
of two (or the listed options) around the shipped defaults, so each default is a point of its
space (`default_point(cfg)`), and the search result can be compared against it.

Conventional (systolic array): array rows and columns, dataflow, input / weight / output SRAM,
vector lanes.  The DRAM interface, clock, bit widths and the memory policy are kept: they are the
system the accelerator lives in, not the accelerator.

Neuromorphic (Loihi-class): tiles in x and y and cores per tile (core count = their product),
synapse and neuron memory per core, synapse word width, accumulate lanes, neuron lanes, the
non-spiking unit's lanes, and the spike packet width (the message payload: 16 b only carries a
binary spike's address; graded payloads need wider packets, checked by `simulate`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple
    doc: str = ""


CONVENTIONAL = (
    Knob("array_rows", (4, 8, 16, 32, 64, 128), "systolic array rows"),
    Knob("array_cols", (4, 8, 16, 32, 64, 128), "systolic array columns"),
    Knob("dataflow", ("ws", "os"), "weight- or output-stationary"),
    Knob("input_sram_kib", (16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0), "activation SRAM"),
    Knob("weight_sram_kib", (16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0), "weight SRAM"),
    Knob("output_sram_kib", (16.0, 32.0, 64.0, 128.0, 256.0, 512.0), "accumulator SRAM"),
    Knob("vector_lanes", (2, 4, 8, 16, 32, 64), "fp16 lanes for softmax / LayerNorm / GELU"),
)

NEUROMORPHIC = (
    Knob("tiles_x", (1, 2, 4, 8, 16), "mesh tiles in x"),
    Knob("tiles_y", (1, 2, 4, 8, 16), "mesh tiles in y"),
    Knob("cores_per_tile", (1, 2, 4, 8), "cores sharing a router"),
    Knob("synapse_mem_kib", (16, 32, 64, 128, 256, 512, 1024), "synapse SRAM per core"),
    Knob("neuron_mem_kib", (4, 8, 16, 32, 64), "neuron SRAM per core"),
    Knob("word_bits", (32, 64, 128), "synapse memory word"),
    Knob("accumulate_lanes", (1, 2, 4, 8, 16), "synaptic accumulates per cycle per core"),
    Knob("neuron_lanes", (1, 2, 4, 8), "neuron updates per cycle per core"),
    Knob("unit_lanes", (1, 2, 4, 8, 16), "fp lanes of the non-spiking unit per core"),
    Knob("packet_bits", (16, 32, 48, 64), "spike packet (message payload) width"),
)


NEURON_BITS = 128  # neuron memory per neuron (compartment): Davies 2018's 1,024 per 16 KiB core


def check_packet(cfg, payload_bits: int = 0) -> None:
    """A spike packet must name its destination core and neuron (axon) and carry the payload:
    ceil(log2 cores) + ceil(log2 neurons per core) + payload_bits <= packet_bits, else ValueError."""
    if kind_of(cfg) != "neuromorphic":
        return
    k = cfg.cores
    neurons = max(1, k.neuron_mem_bytes * 8 // NEURON_BITS)
    need = (k.count - 1).bit_length() + (neurons - 1).bit_length() + int(payload_bits)
    if need > cfg.noc.packet_bits:
        raise ValueError(f"a {cfg.noc.packet_bits}-bit packet cannot carry a spike on this chip: "
                         f"{(k.count - 1).bit_length()} bits of core, {(neurons - 1).bit_length()} of neuron and "
                         f"{payload_bits} of payload need {need}")


def kind_of(cfg) -> str:
    from neuro_hw.conventional import ConventionalConfig
    from neuro_hw.neuromorphic import NeuromorphicConfig
    if isinstance(cfg, NeuromorphicConfig):
        return "neuromorphic"
    if isinstance(cfg, ConventionalConfig):
        return "conventional"
    raise ValueError(f"no design space for a {type(cfg).__name__}: neuro_hw.design_space knows the "
                     "neuromorphic and conventional configurations")


def space_for(cfg) -> tuple[Knob, ...]:
    return NEUROMORPHIC if kind_of(cfg) == "neuromorphic" else CONVENTIONAL


def size(cfg) -> int:
    """Number of points in the space."""
    n = 1
    for k in space_for(cfg):
        n *= len(k.values)
    return n


def default_point(cfg) -> dict:
    """The point of `cfg` itself (its values need not be on the knobs' grids)."""
    if kind_of(cfg) == "conventional":
        return {k.name: getattr(cfg, k.name) for k in CONVENTIONAL}
    c = cfg.cores
    return {"tiles_x": c.mesh[0], "tiles_y": c.mesh[1], "cores_per_tile": c.cores_per_tile,
            "synapse_mem_kib": c.synapse_mem_bytes // 1024, "neuron_mem_kib": c.neuron_mem_bytes // 1024,
            "word_bits": c.word_bits, "accumulate_lanes": c.accumulate_lanes, "neuron_lanes": c.neuron_lanes,
            "unit_lanes": cfg.units.lanes, "packet_bits": cfg.noc.packet_bits}


def apply(cfg, point: dict):
    """`cfg` with the knobs of `point` set (other fields kept); unknown knobs raise ValueError."""
    knobs = {k.name for k in space_for(cfg)}
    unknown = sorted(set(point) - knobs)
    if unknown:
        raise ValueError(f"unknown design knob(s) {unknown}; allowed: {sorted(knobs)}")
    name = cfg.name if cfg.name.endswith("(designed)") else f"{cfg.name} (designed)"
    if kind_of(cfg) == "conventional":
        return dataclasses.replace(cfg, name=name, **point)
    p = {**default_point(cfg), **point}
    cores = dataclasses.replace(
        cfg.cores, mesh=(int(p["tiles_x"]), int(p["tiles_y"])), cores_per_tile=int(p["cores_per_tile"]),
        count=int(p["tiles_x"] * p["tiles_y"] * p["cores_per_tile"]),
        synapse_mem_bytes=int(p["synapse_mem_kib"]) * 1024, neuron_mem_bytes=int(p["neuron_mem_kib"]) * 1024,
        word_bits=int(p["word_bits"]), accumulate_lanes=int(p["accumulate_lanes"]),
        neuron_lanes=int(p["neuron_lanes"]))
    return dataclasses.replace(cfg, name=name, cores=cores,
                               units=dataclasses.replace(cfg.units, lanes=int(p["unit_lanes"])),
                               noc=dataclasses.replace(cfg.noc, packet_bits=int(p["packet_bits"])))
