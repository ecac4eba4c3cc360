"""ConventionalConfig: the systolic-array accelerator as a file a user can edit and diff.

The default is modelled on Gemmini's default configuration (Genc et al., "Gemmini: Enabling
systematic deep-learning architecture evaluation via full-stack integration", DAC 2021;
ucb-bar/gemmini `GemminiConfigs.defaultConfig`): a 16x16 mesh of 8-bit MACs with 32-bit
accumulators, weight- or output-stationary (Dataflow.BOTH), a 256 KiB scratchpad for inputs and
weights (here split 128 + 128 KiB), a 64 KiB accumulator SRAM for outputs, and a 128-bit DMA bus
(16 bytes per cycle).  Gemmini runs softmax/LayerNorm/GELU on its host core or on optional
normalisation units; we give it a 16-lane fp16 vector unit (one lane per array column) so those
ops are charged as digital units on the same chip.  Clock 1 GHz, 45 nm (the tech table default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from neuro_hw.tech import TECH_NODES

DATAFLOWS = ("ws", "os")
ATTENTION = ("tiled", "naive")

# TOML sections -> field names.  Flat keys are accepted too.
SECTIONS: dict[str, tuple[str, ...]] = {
    "array": ("rows", "cols", "dataflow"),
    "memory": ("input_sram_kib", "weight_sram_kib", "output_sram_kib", "dram_bytes_per_cycle",
               "double_buffer"),
    "vector": ("vector_lanes", "vector_bits"),
    "schedule": ("fusion", "attention", "leakage"),
}
_SECTION_FIELD = {"rows": "array_rows", "cols": "array_cols"}   # short names inside [array]


@dataclass(frozen=True)
class ConventionalConfig:
    """A weight/output-stationary systolic array with SRAM buffers, DRAM and a vector unit.

    Buffers are separate SRAMs for the array's left input (activations), top input (weights) and
    outputs (32-bit accumulators).  With `double_buffer` half of each buffer holds the tile being
    computed and half the tile being loaded (as SCALE-Sim does), so tiles are sized to half.
    Switches: `fusion` (LayerNorm/GELU/softmax/residual adds run in the producing GEMM's epilogue,
    q/k/v projections share their input read), `attention` ("tiled": FlashAttention-style, the
    score matrix never leaves the chip; "naive": scores/probabilities go through DRAM), `leakage`
    (static power x latency charged)."""

    name: str = "gemmini-like"
    tech: str = "45nm"
    clock_hz: float = 1e9
    array_rows: int = 16
    array_cols: int = 16
    dataflow: str = "ws"
    input_sram_kib: float = 128
    weight_sram_kib: float = 128
    output_sram_kib: float = 64
    dram_bytes_per_cycle: float = 16
    double_buffer: bool = True
    vector_lanes: int = 16
    vector_bits: int = 16
    acc_bits: int = 32
    fusion: bool = True
    attention: str = "tiled"
    leakage: bool = True

    SOURCES = {
        "array_rows/array_cols": "Gemmini defaultConfig meshRows = meshColumns = 16 (DAC 2021)",
        "dataflow": "Gemmini Dataflow.BOTH (ws and os supported)",
        "input_sram_kib/weight_sram_kib": "Gemmini sp_capacity 256 KiB, split evenly",
        "output_sram_kib": "Gemmini acc_capacity 64 KiB (32-bit accumulators, accType SInt(32))",
        "dram_bytes_per_cycle": "Gemmini dma_buswidth 128 bits = 16 B/cycle",
        "vector_lanes": "assumption: one fp16 lane per array column",
        "clock_hz": "1 GHz (Gemmini evaluated at 1 GHz in FireSim)",
    }

    def __post_init__(self):
        self.validate()

    # -- derived sizes ---------------------------------------------------------------------------
    @property
    def input_sram_bytes(self) -> int:
        return int(self.input_sram_kib * 1024)

    @property
    def weight_sram_bytes(self) -> int:
        return int(self.weight_sram_kib * 1024)

    @property
    def output_sram_bytes(self) -> int:
        return int(self.output_sram_kib * 1024)

    def usable_bytes(self, which: str) -> int:
        """Bytes a tile may occupy in buffer `which` (input/weight/output)."""
        b = getattr(self, f"{which}_sram_bytes")
        return b // 2 if self.double_buffer else b

    # -- validation --------------------------------------------------------------------------------
    def validate(self) -> None:
        def bad(msg):
            raise ValueError(f"invalid conventional accelerator config: {msg}")
        for k in ("array_rows", "array_cols", "vector_lanes", "vector_bits", "acc_bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f"{k} must be a positive integer, got {v!r}")
        for k in ("input_sram_kib", "weight_sram_kib", "output_sram_kib", "dram_bytes_per_cycle",
                  "clock_hz"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                bad(f"{k} must be > 0, got {v!r}")
        for k in ("double_buffer", "fusion", "leakage"):
            if not isinstance(getattr(self, k), bool):
                bad(f"{k} must be true or false, got {getattr(self, k)!r}")
        if self.dataflow not in DATAFLOWS:
            bad(f"dataflow {self.dataflow!r}; allowed: {', '.join(DATAFLOWS)}")
        if self.attention not in ATTENTION:
            bad(f"attention {self.attention!r}; allowed: {', '.join(ATTENTION)}")
        if self.tech not in TECH_NODES:
            bad(f"tech {self.tech!r}; allowed: {', '.join(TECH_NODES)}")
        if self.vector_bits not in (16, 32):
            bad(f"vector_bits must be 16 or 32 (fp16/fp32 vector unit), got {self.vector_bits}")
        if self.acc_bits < 16:
            bad(f"acc_bits must be >= 16 to accumulate 8-bit products, got {self.acc_bits}")
        # Inconsistent sizes: each buffer must hold at least one array-sized tile (32-bit worst
        # case operands, accumulators for outputs), or no GEMM can be scheduled at all.
        r, c = self.array_rows, self.array_cols
        need = {"input": r * r * 4, "weight": r * c * 4, "output": r * c * self.acc_bits // 8}
        for which, n in need.items():
            if self.usable_bytes(which) < n:
                bad(f"{which}_sram_kib={getattr(self, which + '_sram_kib')} is too small for one "
                    f"{r}x{c} array tile ({n} B{' per half, double-buffered' if self.double_buffer else ''})")

    # -- dict / file forms -------------------------------------------------------------------------
    @classmethod
    def default(cls) -> "ConventionalConfig":
        return cls()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: dict) -> "ConventionalConfig":
        """Build from a flat dict or a sectioned one ([array], [memory], [vector], [schedule]);
        unknown keys are errors that name the key and the allowed keys."""
        if not isinstance(d, dict):
            raise ValueError(f"conventional accelerator config must be a mapping, got {type(d).__name__}")
        allowed = set(cls.field_names())
        flat: dict = {}
        for k, v in d.items():
            if k == "accelerator":
                if v != "conventional":
                    raise ValueError(f"accelerator {v!r} given to the conventional config")
                continue
            if k in SECTIONS:
                if not isinstance(v, dict):
                    raise ValueError(f"[{k}] must be a section (table), got {v!r}")
                for kk, vv in v.items():
                    if kk not in SECTIONS[k]:
                        raise ValueError(f"unknown key {kk!r} in [{k}]; allowed: {', '.join(SECTIONS[k])}")
                    flat[_SECTION_FIELD.get(kk, kk)] = vv
            elif k in allowed:
                flat[k] = v
            else:
                raise ValueError(f"unknown key {k!r} in conventional accelerator config; allowed: "
                                 f"{', '.join(sorted(allowed))}, sections {', '.join(SECTIONS)}")
        # TOML integers for float fields are fine; floats for int fields are not silently cut.
        for k in ("input_sram_kib", "weight_sram_kib", "output_sram_kib", "dram_bytes_per_cycle",
                  "clock_hz"):
            if k in flat and isinstance(flat[k], int) and not isinstance(flat[k], bool):
                flat[k] = float(flat[k])
        return cls(**flat)

    def to_dict(self) -> dict:
        """Sectioned dict, the same layout as the bundled TOML file."""
        flat = dataclasses.asdict(self)
        out = {"accelerator": "conventional"}
        in_section = {_SECTION_FIELD.get(k, k) for ks in SECTIONS.values() for k in ks}
        for k, v in flat.items():
            if k not in in_section:
                out[k] = v
        for sec, keys in SECTIONS.items():
            out[sec] = {k: flat[_SECTION_FIELD.get(k, k)] for k in keys}
        return out

    def replace(self, **changes) -> "ConventionalConfig":
        return dataclasses.replace(self, **changes)
