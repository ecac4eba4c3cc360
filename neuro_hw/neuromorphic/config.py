"""`NeuromorphicConfig`: a Loihi-class many-core chip as a file a user can edit and diff.

Sections (TOML tables) and what they describe:

* ``[cores]``     core count, mesh of tiles, per-core synapse and neuron memories, datapath widths;
* ``[noc]``       spike packets and the mesh routers that carry them;
* ``[units]``     per-core digital units for the non-spiking operations (softmax, LayerNorm, GELU);
* ``[sync]``      the per-time-step barrier and the host interface;
* ``[memory]``    the off-chip DRAM that holds whatever does not fit on the chip;
* ``[mode]``      switches: spike-aware dataflow, pipelining, event-exact counting, run length;
* ``[overhead]``  per-event energy beyond the datapath model (0 = the idealised datapath), used by
                  the calibrated variant ``neuromorphic_loihi.toml`` to reproduce Loihi silicon.

Energies of arithmetic, SRAM, DRAM and leakage come from the shared technology table
(`neuro_hw.tech.get_tech(tech)`), the same one the conventional accelerator uses.  The per-bit NoC
energies and the per-event overheads below are given at 45 nm and scaled with the table's
node factor, like the rest of the logic.

Default = a Loihi-class chip (Davies et al., "Loihi: a neuromorphic manycore processor with
on-chip learning", IEEE Micro 38(1), 2018), built from the 45 nm Horowitz table:

  128 cores, 8 x 4 tiles of 4 cores ........ Davies 2018 (chip overview); the 8 x 4 tile mesh as
                                              transcribed in SANA-FE arch/loihi.yaml (Boyle et al.)
  128 KiB synapse memory per core ........... Davies 2018: 16 MB synaptic memory / 128 cores
  1,024 neurons (compartments) per core ..... Davies 2018; x 128 b of state and accumulators
                                              each = 16 KiB neuron memory (our estimate)
  64-bit synapse memory word ................ SANA-FE arch/loihi.yaml (Loihi synapse word_bits 64)
  hop latency 4.1 ns E-W, 6.5 ns N-S ........ Davies 2018 Table 1 (via SANA-FE arch/loihi.yaml)
  global barrier ~299 ns on 8 x 4 tiles ..... SANA-FE arch/loihi.yaml latency_global_barrier (from
                                              Davies 2018); we model 2 x mesh diameter of hops +
                                              a fixed part calibrated to give 299 ns
  NoC 0.2 pJ/bit per router+link hop ........ Park et al., DAC 2012: 45 nm 4x4 mesh NoC, 892 Gb/s at
                                              531 mW = 0.6 pJ per delivered bit over ~3 router+link
                                              traversals; local (same-tile) delivery: one router,
                                              0.1 pJ/bit (half a hop, our estimate)
  32-bit spike packet ........................ estimate (destination tile/core + axon index)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

DAVIES_2018 = ("Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', "
               "IEEE Micro 38(1) 82-99, 2018")
SANAFE = "SANA-FE arch/loihi.yaml (Boyle et al., SLAM-Lab/SANA-FE), values transcribed from Davies 2018"
PARK_2012 = ("Park et al., 'Approaching the theoretical limits of a mesh NoC with a 16-node chip "
             "prototype in 45nm SOI', DAC 2012")

STEPS_MODES = ("settle", "trace")
SPLIT_MODES = ("memory", "balanced")


@dataclass(frozen=True)
class CoreConfig:
    """Per-core resources.  Memories are per core; `weight_bits` lists the synapse formats the
    synapse memory supports (a layer's weights are stored at the next supported width)."""

    count: int = 128                      # [DAVIES_2018]
    mesh: tuple = (8, 4)                  # tiles in x, y [SANAFE]
    cores_per_tile: int = 4               # cores sharing one router [DAVIES_2018, SANAFE]
    synapse_mem_bytes: int = 128 * 1024   # [DAVIES_2018] 16 MB / 128 cores
    neuron_mem_bytes: int = 16 * 1024     # 1024 compartments [DAVIES_2018] x 128 b (estimate)
    word_bits: int = 64                   # synapse memory word [SANAFE]
    acc_bits: int = 32                    # dendritic accumulator (same width as the conventional MACs)
    neuron_state_bits: int = 32           # membrane 24 b + spike count 8 b (estimate)
    weight_bits: tuple = (1, 2, 4, 8, 16)  # supported synapse widths (design choice)
    accumulate_lanes: int = 1             # synaptic accumulates per cycle (Loihi: 3.5 ns/synop)
    neuron_lanes: int = 1                 # neuron updates per cycle
    logic_mm2: float = 0.25               # core logic area at 45 nm (estimate: ~300k NAND2 eq.)
    pack_ops: bool = True                 # let small ops share a core
    split: str = "memory"                 # memory: fewest cores that hold an op; balanced: spread
                                          # all cores over the synaptic ops in proportion to MACs


@dataclass(frozen=True)
class NocConfig:
    packet_bits: int = 32                 # spike packet (estimate)
    hop_pj_per_bit: float = 0.2           # router + link per hop at 45 nm [PARK_2012]
    local_pj_per_bit: float = 0.1         # injection/ejection through the local router (estimate)
    hop_ns_x: float = 4.1                 # east-west hop latency [DAVIES_2018 via SANAFE]
    hop_ns_y: float = 6.5                 # north-south hop latency [DAVIES_2018 via SANAFE]


@dataclass(frozen=True)
class UnitConfig:
    """Digital units for non-spiking ops (not in Loihi 1; Loihi 2 has programmable microcode
    neurons and graded spikes).  `lanes` fp operations per cycle per core at `fp_bits`."""

    lanes: int = 4
    fp_bits: int = 16


@dataclass(frozen=True)
class SyncConfig:
    barrier_fixed_ns: float = 202.6       # 299 ns [SANAFE] - 2 x (7 x 4.1 + 3 x 6.5) ns of hops
    host_io_pj_per_bit: float = 1300.0 / 64  # off-chip link: the table's DRAM energy per bit (Horowitz)
    host_io_gbps: float = 10.0            # host link bandwidth (assumption)


@dataclass(frozen=True)
class MemoryConfig:
    dram_bits_per_cycle: int = 64         # one 64-bit channel at the core clock (assumption)


@dataclass(frozen=True)
class ModeConfig:
    spike_aware: bool = True     # off: every synapse row fetched, every neuron updated, every step
    pipeline: bool = True        # layers overlap across time steps (Loihi's 1-step synaptic delay)
    event_exact: bool = False    # route every recorded spike individually (needs a SpikeRecord)
    steps: str = "settle"        # settle: each input runs to its t_settle + 1 quiet step; trace: all
    power_gate_unused: bool = False  # unused cores leak (False) or are power-gated (True)


@dataclass(frozen=True)
class OverheadConfig:
    """Energy per event beyond the datapath model, at 45 nm (scaled with the node like logic).
    0 = idealised datapath; `neuromorphic_loihi.toml` sets them so the 14 nm model reproduces
    Davies 2018's measured per-event energies."""

    synop_pj: float = 0.0          # per synaptic operation
    neuron_update_pj: float = 0.0  # per (event-driven) neuron update
    idle_neuron_pj: float = 0.0    # per neuron per step NOT updated (chips that visit every neuron)
    packet_pj: float = 0.0         # per packet sent


SECTIONS = {"cores": CoreConfig, "noc": NocConfig, "units": UnitConfig, "sync": SyncConfig,
            "memory": MemoryConfig, "mode": ModeConfig, "overhead": OverheadConfig}


@dataclass(frozen=True)
class NeuromorphicConfig:
    name: str = "neuromorphic-ideal"
    tech: str = "45nm"
    clock_hz: float = 1e9        # the tech table's clock (Loihi itself is asynchronous)
    cores: CoreConfig = field(default_factory=CoreConfig)
    noc: NocConfig = field(default_factory=NocConfig)
    units: UnitConfig = field(default_factory=UnitConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    mode: ModeConfig = field(default_factory=ModeConfig)
    overhead: OverheadConfig = field(default_factory=OverheadConfig)

    def __post_init__(self):
        _validate(self)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def default(cls) -> "NeuromorphicConfig":
        return cls()

    @classmethod
    def from_dict(cls, d: dict) -> "NeuromorphicConfig":
        """Overrides of the default: top-level keys and [section] tables; unknown keys are errors."""
        if not isinstance(d, dict):
            raise ValueError(f"neuromorphic config must be a mapping, got {type(d).__name__}")
        d = dict(d)
        acc = d.pop("accelerator", "neuromorphic")
        if acc != "neuromorphic":
            raise ValueError(f"neuromorphic config has accelerator = {acc!r}")
        top = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - top)
        if unknown:
            raise ValueError(f"unknown neuromorphic config key(s) {unknown}; allowed: {sorted(top)}")
        kw = {}
        for k, v in d.items():
            if k in SECTIONS:
                kw[k] = _section(k, v)
            else:
                kw[k] = v
        return cls(**kw)

    def to_dict(self) -> dict:
        out = {"accelerator": "neuromorphic", "name": self.name, "tech": self.tech,
               "clock_hz": self.clock_hz}
        for s in SECTIONS:
            sec = dataclasses.asdict(getattr(self, s))
            out[s] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
        return out

    def replace(self, **changes) -> "NeuromorphicConfig":
        """Copy with changes; section fields by dotted name: replace(**{"cores.count": 256})."""
        d = self.to_dict()
        for k, v in changes.items():
            sec, _, key = k.rpartition(".")
            if sec:
                if sec not in d or not isinstance(d[sec], dict):
                    raise ValueError(f"unknown config section {sec!r}; allowed: {sorted(SECTIONS)}")
                d[sec][key] = v
            else:
                d[key] = v
        return NeuromorphicConfig.from_dict(d)


def _section(name: str, v) -> object:
    cls = SECTIONS[name]
    if isinstance(v, cls):
        return v
    if not isinstance(v, dict):
        raise ValueError(f"config section [{name}] must be a table, got {type(v).__name__}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(v) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{name}]; allowed: {sorted(allowed)}")
    v = {k: tuple(x) if isinstance(x, list) else x for k, x in v.items()}
    return dataclasses.replace(cls(), **v)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return (isinstance(x, (int, float))) and not isinstance(x, bool)


def _validate(c: NeuromorphicConfig) -> None:
    def bad(msg):
        raise ValueError(f"invalid neuromorphic config: {msg}")

    if not isinstance(c.name, str):
        bad(f"name must be a string, got {c.name!r}")
    from neuro_hw.tech import TECH_NODES, get_tech
    if not isinstance(c.tech, str) or c.tech not in TECH_NODES:
        bad(f"tech {c.tech!r} unknown; available: {', '.join(TECH_NODES)}")
    get_tech(c.tech)
    if not _is_num(c.clock_hz) or c.clock_hz <= 0:
        bad(f"clock_hz must be > 0, got {c.clock_hz!r}")
    for sname, cls in SECTIONS.items():
        sec = getattr(c, sname)
        if not isinstance(sec, cls):
            bad(f"section {sname} must be a {cls.__name__}")
        for f in fields(cls):
            v = getattr(sec, f.name)
            default = getattr(cls(), f.name)
            where = f"{sname}.{f.name}"
            if isinstance(default, bool):
                if not isinstance(v, bool):
                    bad(f"{where} must be true or false, got {v!r}")
            elif isinstance(default, int):
                if not _is_int(v) or v < 1:
                    bad(f"{where} must be an integer >= 1, got {v!r}")
            elif isinstance(default, float):
                if not _is_num(v) or v < 0:
                    bad(f"{where} must be a number >= 0, got {v!r}")
    k = c.cores
    if (not isinstance(k.mesh, tuple) or len(k.mesh) != 2
            or not all(_is_int(m) and m >= 1 for m in k.mesh)):
        bad(f"cores.mesh must be two integers >= 1 (tiles in x, y), got {k.mesh!r}")
    if k.mesh[0] * k.mesh[1] * k.cores_per_tile != k.count:
        bad(f"cores.count = {k.count} but cores.mesh {k.mesh[0]} x {k.mesh[1]} tiles x "
            f"cores_per_tile {k.cores_per_tile} = {k.mesh[0] * k.mesh[1] * k.cores_per_tile}")
    if (not isinstance(k.weight_bits, tuple) or not k.weight_bits
            or not all(_is_int(b) and b >= 1 for b in k.weight_bits)
            or list(k.weight_bits) != sorted(set(k.weight_bits))):
        bad(f"cores.weight_bits must be increasing integers >= 1, got {k.weight_bits!r}")
    if k.split not in SPLIT_MODES:
        bad(f"cores.split {k.split!r} unknown; allowed: {', '.join(SPLIT_MODES)}")
    if k.logic_mm2 <= 0:
        bad(f"cores.logic_mm2 must be > 0, got {k.logic_mm2}")
    if k.neuron_state_bits > 8 * k.neuron_mem_bytes or k.acc_bits > 8 * k.neuron_mem_bytes:
        bad("cores.neuron_mem_bytes is smaller than one neuron's state")
    if c.sync.host_io_gbps <= 0:
        bad(f"sync.host_io_gbps must be > 0, got {c.sync.host_io_gbps}")
    if c.noc.hop_ns_x <= 0 or c.noc.hop_ns_y <= 0:
        bad("noc.hop_ns_x and noc.hop_ns_y must be > 0")
    if c.mode.steps not in STEPS_MODES:
        bad(f"mode.steps {c.mode.steps!r} unknown; allowed: {', '.join(STEPS_MODES)}")
