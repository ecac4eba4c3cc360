"""Chip area (mm^2) of an accelerator configuration, from per-node figures with their sources.

One table, `AREA_45NM`, at 45 nm; a configuration's node scales it by the technology table's
`area_scale` (Stillmaker & Baas 2017, Table 4: 14 nm = 0.17x, 7 nm = 0.059x of 45 nm).  SRAM and
the 8-bit MAC are the technology table's own figures (`neuro_hw.tech`: Mistry et al. IEDM 2007
bitcell, Nangate 45 nm cells), so energy and area come from one place.  The rest are gate-count
estimates in Nangate 45 nm standard cells, stated as estimates.

What is counted (and what is not):
* conventional: rows x cols MACs (at the 8 x 8-bit operand product; acc 32 b), the input, weight
  and output SRAMs, the vector unit's fp lanes, and a fixed control/DMA block;
* neuromorphic: per core its synapse and neuron SRAMs, the core logic (`cores.logic_mm2`, which
  already holds one accumulate lane and one neuron lane), each extra accumulate lane (an
  acc_bits adder + an 8-bit operand path) and extra neuron lane, the non-spiking unit's fp lanes;
  per tile one mesh router sized by the packet width.
Not counted on either side: pads, PHYs, the DRAM, clock tree and wiring beyond the array
efficiency of the SRAM figure.  Area is a ranking objective for the design search
(`snmfm design`), not a die-size prediction.  For scale: the default Loihi-class config
(neuromorphic.toml) comes out at 18.4 mm^2 at 14 nm, against Loihi's 60 mm^2 die (Davies et al.,
IEEE Micro 2018), which also holds three x86 cores, the learning engines and I/O; the Gemmini-like
conventional default at 1.74 mm^2 at 45 nm.
"""
from __future__ import annotations

from neuro_hw.tech import MAC8_MM2_45, SRAM_MM2_PER_KIB_45, get_tech

NAND2_UM2_45 = 0.798   # Nangate 45 nm Open Cell Library NAND2_X1 (as neuro_hw.tech's MAC figure)
DFF_UM2_45 = 4.522     # Nangate 45 nm Open Cell Library DFF_X1
MUX2_UM2_45 = 1.862    # Nangate 45 nm Open Cell Library MUX2_X1

# name: (mm^2 at 45 nm, source).  Per-unit figures; multiplied by counts in `area_mm2`.
AREA_45NM = {
    "sram_per_kib": (SRAM_MM2_PER_KIB_45,
                     "Intel 45 nm 6T bitcell 0.346 um^2 (Mistry et al., IEDM 2007) at 70% array "
                     "efficiency: 8192 x 0.346 / 0.7 um^2 per KiB (neuro_hw.tech)"),
    "mac8": (MAC8_MM2_45,
             "estimate: 8x8-bit multiplier + 32-bit adder ~1,500 NAND2 eq. x 0.8 um^2 (Nangate 45 nm "
             "NAND2_X1) (neuro_hw.tech); scaled by the operand-width product"),
    "int_add_per_bit": (10 * NAND2_UM2_45 * 1e-6,
                        "estimate: a prefix adder ~10 NAND2 eq. per bit (Nangate 45 nm NAND2_X1 0.798 um^2)"),
    "fp16_lane": (3000 * NAND2_UM2_45 * 1e-6,
                  "estimate: fp16 multiplier (11x11-bit mantissa array) + fp16 adder (align, add, "
                  "normalise) ~3,000 NAND2 eq. (Nangate 45 nm NAND2_X1 0.798 um^2)"),
    "router_per_port_bit": (4 * DFF_UM2_45 * 1e-6 + 5 * MUX2_UM2_45 * 1e-6,
                            "estimate: per port and packet bit a 4-flit input buffer (4 Nangate DFF_X1, "
                            "4.522 um^2) and a 5:1 crossbar leg (5 MUX2_X1, 1.862 um^2)"),
    "router_control": (2000 * NAND2_UM2_45 * 1e-6,
                       "estimate: routing + arbitration logic of a 5-port mesh router ~2,000 NAND2 eq."),
    "conventional_control": (0.1,
                             "estimate: sequencer, DMA engine and address generators of a Gemmini-class "
                             "accelerator, 0.1 mm^2 at 45 nm (~125k NAND2 eq.)"),
}
ROUTER_PORTS = 5  # mesh router: N, E, S, W and the local port


def _a(name: str) -> float:
    return AREA_45NM[name][0]


def sources() -> dict:
    """Every area constant with its source (for reports)."""
    return {k: v[1] for k, v in AREA_45NM.items()}


def area_mm2(cfg) -> dict:
    """{"total": mm^2, part: mm^2, ...} of a configuration object (or a registered name / file)."""
    from neuro_hw import load_hw_config
    from neuro_hw.conventional import ConventionalConfig
    from neuro_hw.neuromorphic import NeuromorphicConfig
    cfg = load_hw_config(cfg)
    if isinstance(cfg, NeuromorphicConfig):
        parts = _neuromorphic(cfg)
    elif isinstance(cfg, ConventionalConfig):
        parts = _conventional(cfg)
    else:
        raise ValueError(f"no area model for a {type(cfg).__name__}; neuro_hw.area knows the neuromorphic "
                         "and conventional configurations")
    s = get_tech(cfg.tech).area_scale
    parts = {k: v * s for k, v in parts.items()}
    return {"total": sum(parts.values()), **parts}


def _conventional(c) -> dict:
    kib = c.input_sram_kib + c.weight_sram_kib + c.output_sram_kib
    return {"mac_array": c.array_rows * c.array_cols * _a("mac8"),
            "sram": kib * _a("sram_per_kib"),
            "vector_unit": c.vector_lanes * _a("fp16_lane") * (c.vector_bits / 16) ** 2,
            "control": _a("conventional_control")}


def _neuromorphic(c) -> dict:
    k = c.cores
    n_tiles = k.mesh[0] * k.mesh[1]
    extra_acc = (k.accumulate_lanes - 1) * (k.acc_bits * _a("int_add_per_bit") + _a("mac8") / 8)
    extra_neu = (k.neuron_lanes - 1) * (k.neuron_state_bits + 2 * k.acc_bits) * _a("int_add_per_bit")
    router = ROUTER_PORTS * c.noc.packet_bits * _a("router_per_port_bit") + _a("router_control")
    return {"synapse_sram": k.count * k.synapse_mem_bytes / 1024 * _a("sram_per_kib"),
            "neuron_sram": k.count * k.neuron_mem_bytes / 1024 * _a("sram_per_kib"),
            "core_logic": k.count * (k.logic_mm2 + extra_acc + extra_neu),
            "units": k.count * c.units.lanes * _a("fp16_lane") * (c.units.fp_bits / 16) ** 2,
            "routers": n_tiles * router}
