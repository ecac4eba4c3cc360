"""The chip-to-chip link: moving data between two accelerators (a schedule that places members on
different chips, e.g. an SNN draft on a neuromorphic chip and its QANN target on the conventional
accelerator).  One definition for every caller in eval.

Energy: an off-chip transfer at the technology table's DRAM-interface energy per bit (Horowitz,
ISSCC 2014: 1.3 nJ per 64-bit access = 20.3 pJ/bit at 45 nm; not scaled with the logic node).
Bandwidth: `LINK_GBPS` = 10 Gb/s, the host link of the neuromorphic chip configs (an assumption of
the same order as Loihi's off-chip FPGA/host interface); pass `gbps` to study another link.
"""
from __future__ import annotations

LINK_GBPS = 10.0


def link_cost(bits: float, *, tech="45nm", gbps: float | None = None) -> dict:
    """{"bits", "energy_pj", "latency_s", "pj_per_bit", "link_gbps"} of moving `bits` between chips."""
    from neuro_hw.tech import get_tech
    if bits < 0:
        raise ValueError(f"link transfer of {bits} bits: must be >= 0")
    gbps = LINK_GBPS if gbps is None else float(gbps)
    if gbps <= 0:
        raise ValueError(f"link bandwidth must be > 0 Gb/s, got {gbps}")
    pj = get_tech(tech).dram_pj_per_bit
    return {"bits": float(bits), "energy_pj": float(bits) * pj, "latency_s": float(bits) / (gbps * 1e9),
            "pj_per_bit": pj, "link_gbps": gbps}
