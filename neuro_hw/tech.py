"""Technology table: energy per operation and per access, leakage and clock for a named CMOS node.

Both accelerators charge every operation through one `TechTable`, so a comparison between them
is a comparison of architectures, not of energy constants.

The default node is 45 nm from Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, Fig. 1.1.9 (0.9 V), the table most accelerator papers start from:

    int add   8 b 0.03 pJ,  32 b 0.1 pJ        int mult  8 b 0.2 pJ,  32 b 3.1 pJ
    fp add   16 b 0.4 pJ,   32 b 0.9 pJ        fp mult  16 b 1.1 pJ,  32 b 3.7 pJ
    SRAM read 64 b: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ       DRAM 64 b: 1.3-2.6 nJ

Between the published points:
- integer adders are interpolated *linearly* in bits (a ripple or prefix adder switches one cell
  per bit, so energy ~ bits; Horowitz's own 8 -> 32 b ratio is 3.3x, close to 4x);
- integer multipliers scale with the *product* of the operand widths (an array multiplier has
  a_bits x b_bits partial-product cells, so energy ~ bits^2 for square operands); fitted as a
  power law through Horowitz's 8 b and 32 b points (exponent 0.99 on bits_a*bits_b, i.e. 15.5x for
  4x the bits, "multipliers are ~quadratic");
- floating-point ops are interpolated log-log between the 16 b and 32 b points;
- SRAM energy per access is interpolated in log(capacity) between the three points (power law per
  segment, extended with the end segments' slopes) and is proportional to the access width.

Scaled nodes use Stillmaker & Baas, "Scaling equations for the accurate prediction of CMOS device
performance from 180 nm to 7 nm", Integration 58 (2017) 74-81, Table 5: energy per operation at
node n and supply V is E_n(V) = a_n V^2 + b_n V + c_n (fitted to PTM/ITRS HSpice runs), so
E(node, V) = E(45 nm, 0.9 V) * E_node(V) / E_45(0.9).  Area scales with their area table.  The factor
is applied to logic and SRAM alike; DRAM energy per bit is a property of the memory device and its
interface, not of the logic node, so it is kept (node comparisons then isolate on-chip scaling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# --- Horowitz ISSCC 2014, 45 nm, 0.9 V ----------------------------------------------------------
HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V)"
INT_ADD_PJ = {8: 0.03, 32: 0.1}            # [HOROWITZ]
INT_MUL_PJ = {8: 0.2, 32: 3.1}             # [HOROWITZ]
FP_ADD_PJ = {16: 0.4, 32: 0.9}             # [HOROWITZ]
FP_MUL_PJ = {16: 1.1, 32: 3.7}             # [HOROWITZ]
SRAM_64B_PJ = {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0}   # [HOROWITZ] 64-bit read
DRAM_PJ_PER_BIT_45 = 1300.0 / 64           # [HOROWITZ] 1.3 nJ per 64-bit access (low end of 1.3-2.6 nJ)

# Write energy of an SRAM access relative to a read.  CACTI-class models give writes within ~10%
# of reads for small arrays (full-swing write drivers vs. sensed low-swing reads); ZigZag's bundled
# tpu_like accelerator (CACTI-derived) uses w/r = 378.4/416.16 = 0.91 for its 2 MB buffer and 1.0
# for register files.  We take 1.0: reads and writes cost the same per bit.
SRAM_WRITE_OVER_READ = 1.0

# Flip-flop / pipeline-register energy per bit written and read back (one clocked DFF).  Estimate
# at 45 nm, 0.9 V: 1.3 fJ/bit, ZigZag's tpu_like 16-bit output register (0.021 pJ / 16 b, itself a
# CACTI-style estimate at 45-28 nm), which is ~ one 45 nm standard-cell DFF toggle.
REG_PJ_PER_BIT_45 = 0.021 / 16

# Leakage at 45 nm.  SRAM: 6T bitcell leakage of ~0.6 nA at 0.9 V (45 nm low-power process, order of
# CACTI 6.5 'itrs-lop' cells) -> 0.6e-9 A * 0.9 V * 8192 bit = 4.4 uW per KiB.  Logic: 45 nm LP
# standard cells leak ~ 0.1-1 mW/mm^2 depending on Vt mix; we take 0.5 mW/mm^2.  Both are
# estimates (no single published table), stated as such in `sources`.
SRAM_LEAK_W_PER_KIB_45 = 0.6e-9 * 0.9 * 8192
LOGIC_LEAK_W_PER_MM2_45 = 0.5e-3

# Area at 45 nm.  SRAM: Intel 45 nm 6T bitcell 0.346 um^2 (Mistry et al., IEDM 2007) at ~70% array
# efficiency -> 8192 * 0.346 / 0.7 um^2 per KiB.  MAC: an 8x8-bit multiplier + 32-bit adder
# ~ 1,500 NAND2-equivalent gates at ~0.8 um^2 (Nangate 45 nm NAND2_X1 0.798 um^2) ~ 1.2e-3 mm^2;
# scaled by the operand-width product like the multiplier energy.
SRAM_MM2_PER_KIB_45 = 8192 * 0.346 / 0.7 * 1e-6
MAC8_MM2_45 = 1500 * 0.8e-6

# --- Stillmaker & Baas 2017, Table 5: energy factor a V^2 + b V + c per node --------------------
STILLMAKER = ("Stillmaker & Baas, 'Scaling equations for the accurate prediction of CMOS device "
              "performance from 180 nm to 7 nm', Integration 58 (2017) 74-81, Tables 4-5")
STILLMAKER_ENERGY = {  # node_nm: (a, b, c)
    130: (3.755, -4.398, 1.975), 90: (4.762, -4.781, 2.092),
    45: (1.103, -0.362, 0.2767), 32: (0.9559, -0.7823, 0.471),
    20: (0.373, -0.1582, 0.04104), 16: (0.2958, -0.1241, 0.03024),
    14: (0.2363, -0.09675, 0.02239), 10: (0.2068, -0.09311, 0.02375),
    7: (0.1776, -0.09097, 0.02447),
}
STILLMAKER_AREA_FROM_45 = {45: 1.0, 32: 0.46, 20: 0.21, 16: 0.19, 14: 0.17, 10: 0.1, 7: 0.059}


def stillmaker_energy_factor(node_nm: int, vdd_v: float, from_node_nm: int = 45,
                             from_vdd_v: float = 0.9) -> float:
    """Energy per operation at (node_nm, vdd_v) over energy at (from_node_nm, from_vdd_v)."""
    def e(n, v):
        a, b, c = STILLMAKER_ENERGY[n]
        return a * v * v + b * v + c
    return e(node_nm, vdd_v) / e(from_node_nm, from_vdd_v)


def _interp_loglog(points: dict, x: float) -> float:
    """Power-law interpolation through sorted (x, y) points, extended with the end segments."""
    xs = sorted(points)
    if x <= 0:
        raise ValueError(f"need a positive argument, got {x}")
    i = 0
    while i < len(xs) - 2 and x > xs[i + 1]:
        i += 1
    x0, x1 = xs[i], xs[i + 1]
    y0, y1 = points[x0], points[x1]
    p = math.log(y1 / y0) / math.log(x1 / x0)
    return y0 * (x / x0) ** p


@dataclass(frozen=True)
class TechTable:
    """Energy (pJ) per operation / access, leakage (W) and clock for one CMOS node.

    `scale` multiplies every on-chip dynamic energy of the 45 nm Horowitz table (1.0 at 45 nm);
    `area_scale` multiplies areas.  Every constant is named in `sources` with its citation."""

    name: str
    node_nm: float
    vdd_v: float
    clock_hz: float
    scale: float = 1.0
    area_scale: float = 1.0
    dram_pj_per_bit: float = DRAM_PJ_PER_BIT_45
    sram_leak_w_per_kib: float = SRAM_LEAK_W_PER_KIB_45
    logic_leak_w_per_mm2: float = LOGIC_LEAK_W_PER_MM2_45
    sources: dict = field(default_factory=dict, hash=False, compare=False)

    # -- integer datapath ------------------------------------------------------------------------
    def add_pj(self, bits: int) -> float:
        """Integer add: linear in bits through Horowitz's 8 b / 32 b points."""
        _check_bits(bits)
        (b0, e0), (b1, e1) = sorted(INT_ADD_PJ.items())
        slope = (e1 - e0) / (b1 - b0)
        return self.scale * max(e0 + slope * (bits - b0), slope * bits)

    def mul_pj(self, bits_a: int, bits_b: int | None = None) -> float:
        """Integer multiply: power law in bits_a*bits_b (array multiplier, ~quadratic)."""
        bits_b = bits_a if bits_b is None else bits_b
        _check_bits(bits_a)
        _check_bits(bits_b)
        pts = {b * b: e for b, e in INT_MUL_PJ.items()}
        return self.scale * _interp_loglog(pts, bits_a * bits_b)

    def mac_pj(self, w_bits: int, a_bits: int, acc_bits: int = 32) -> float:
        """Multiply-accumulate: one w_bits x a_bits multiply plus one acc_bits add."""
        return self.mul_pj(w_bits, a_bits) + self.add_pj(acc_bits)

    def cmp_pj(self, bits: int) -> float:
        """Compare (threshold test, max): a subtraction, i.e. an add of the same width."""
        return self.add_pj(bits)

    # -- floating point and the nonlinear units built from it --------------------------------------
    def fp_add_pj(self, bits: int = 16) -> float:
        _check_bits(bits)
        return self.scale * _interp_loglog(FP_ADD_PJ, bits)

    def fp_mul_pj(self, bits: int = 16) -> float:
        _check_bits(bits)
        return self.scale * _interp_loglog(FP_MUL_PJ, bits)

    def exp_pj(self, bits: int = 16) -> float:
        """exp(x) = 2^(x log2 e): one multiply by log2 e, range reduction into integer and
        fraction (one add), a degree-3 minimax polynomial for 2^f in Horner form (3 mul + 3 add),
        and an integer add into the exponent field: 4 fp mul + 4 fp add + 1 int add."""
        return 4 * self.fp_mul_pj(bits) + 4 * self.fp_add_pj(bits) + self.add_pj(8)

    def div_pj(self, bits: int = 16) -> float:
        """a / b = a * (1/b): reciprocal by table seed + two Newton-Raphson steps
        (r <- r (2 - b r): 2 mul + 1 add each), then one multiply: 5 fp mul + 2 fp add."""
        return 5 * self.fp_mul_pj(bits) + 2 * self.fp_add_pj(bits)

    def sqrt_pj(self, bits: int = 16) -> float:
        """1/sqrt(x) by table seed + two Newton-Raphson steps (y <- y (1.5 - 0.5 x y^2):
        3 mul + 1 add each), then one multiply for sqrt(x) = x / sqrt(x): 7 fp mul + 2 fp add.
        (LayerNorm needs 1/sqrt directly and may skip the last multiply; we charge it anyway.)"""
        return 7 * self.fp_mul_pj(bits) + 2 * self.fp_add_pj(bits)

    # -- storage -----------------------------------------------------------------------------------
    def sram_read_pj(self, capacity_bytes: int, width_bits: int) -> float:
        """One read of `width_bits` from an SRAM of `capacity_bytes`: Horowitz's 64-bit energy at
        that capacity (power law in capacity between 8 KB, 32 KB and 1 MB) times width/64."""
        if capacity_bytes <= 0 or width_bits <= 0:
            raise ValueError(f"SRAM capacity and width must be positive, got {capacity_bytes} B, "
                             f"{width_bits} b")
        return self.scale * _interp_loglog(SRAM_64B_PJ, capacity_bytes) * width_bits / 64

    def sram_write_pj(self, capacity_bytes: int, width_bits: int) -> float:
        return SRAM_WRITE_OVER_READ * self.sram_read_pj(capacity_bytes, width_bits)

    def reg_pj(self, bits: int) -> float:
        """Write + read of a pipeline register / flip-flop of `bits` (systolic operand hops)."""
        _check_bits(bits)
        return self.scale * REG_PJ_PER_BIT_45 * bits

    def dram_pj(self, bits: int) -> float:
        return self.dram_pj_per_bit * bits

    # -- leakage and area --------------------------------------------------------------------------
    def sram_leak_w(self, capacity_bytes: int) -> float:
        return self.sram_leak_w_per_kib * capacity_bytes / 1024

    def sram_area_mm2(self, capacity_bytes: int) -> float:
        return self.area_scale * SRAM_MM2_PER_KIB_45 * capacity_bytes / 1024

    def mac_area_mm2(self, w_bits: int = 8, a_bits: int = 8) -> float:
        return self.area_scale * MAC8_MM2_45 * (w_bits * a_bits) / 64

    def logic_leak_w(self, area_mm2: float) -> float:
        return self.logic_leak_w_per_mm2 * area_mm2

    def to_dict(self) -> dict:
        return {"name": self.name, "node_nm": self.node_nm, "vdd_v": self.vdd_v,
                "clock_hz": self.clock_hz, "scale": self.scale, "area_scale": self.area_scale,
                "dram_pj_per_bit": self.dram_pj_per_bit,
                "sram_leak_w_per_kib": self.sram_leak_w_per_kib,
                "logic_leak_w_per_mm2": self.logic_leak_w_per_mm2}


def _check_bits(bits) -> None:
    if not isinstance(bits, (int,)) and not float(bits).is_integer():
        raise ValueError(f"bit width must be an integer, got {bits!r}")
    if bits <= 0:
        raise ValueError(f"bit width must be positive, got {bits}")


_SOURCES_45 = {
    "add_pj": f"{HOROWITZ}: int add 8 b 0.03 pJ, 32 b 0.1 pJ; linear in bits",
    "mul_pj": f"{HOROWITZ}: int mult 8 b 0.2 pJ, 32 b 3.1 pJ; power law in bits_a*bits_b (~quadratic)",
    "mac_pj": "mul_pj(w, a) + add_pj(acc)",
    "cmp_pj": "a compare is a subtraction: add_pj(bits)",
    "fp_add_pj": f"{HOROWITZ}: fp add 16 b 0.4 pJ, 32 b 0.9 pJ",
    "fp_mul_pj": f"{HOROWITZ}: fp mult 16 b 1.1 pJ, 32 b 3.7 pJ",
    "exp_pj": "derived: 4 fp mul + 4 fp add + 1 int add (range reduction + cubic polynomial)",
    "div_pj": "derived: 5 fp mul + 2 fp add (Newton-Raphson reciprocal, 2 steps, then multiply)",
    "sqrt_pj": "derived: 7 fp mul + 2 fp add (Newton-Raphson 1/sqrt, 2 steps, then multiply)",
    "sram_read_pj": f"{HOROWITZ}: 64 b cache read 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; "
                    "power law in capacity, linear in width",
    "sram_write_pj": "= sram_read_pj (ZigZag tpu_like CACTI numbers: write/read 0.91-1.0)",
    "reg_pj": "estimate: 1.3 fJ/bit (ZigZag tpu_like 2-byte register 0.021 pJ; ~one 45 nm DFF toggle)",
    "dram_pj_per_bit": f"{HOROWITZ}: DRAM 1.3-2.6 nJ per 64 b; low end 1.3 nJ/64 = 20.3 pJ/bit",
    "sram_leak_w_per_kib": "estimate: 0.6 nA/bitcell at 0.9 V (45 nm low-power, CACTI itrs-lop order)",
    "logic_leak_w_per_mm2": "estimate: 0.5 mW/mm^2 for 45 nm LP standard cells",
    "sram_area_mm2": "Intel 45 nm 6T cell 0.346 um^2 (Mistry et al., IEDM 2007), 70% array efficiency",
    "mac_area_mm2": "estimate: 8x8 mult + 32 b add ~1500 NAND2 eq. x 0.8 um^2 (Nangate 45 nm NAND2_X1)",
    "clock_hz": "design choice: 1 GHz (Horowitz's 45 nm energies are per op, clock-independent)",
}


def _scaled(node_nm: int, vdd_v: float, clock_hz: float) -> TechTable:
    s = stillmaker_energy_factor(node_nm, vdd_v)
    a = STILLMAKER_AREA_FROM_45[node_nm]
    src = dict(_SOURCES_45)
    note = (f"; scaled to {node_nm} nm / {vdd_v} V by {s:.4f} = E_{node_nm}({vdd_v})/E_45(0.9) "
            f"[{STILLMAKER}]")
    for k in ("add_pj", "mul_pj", "fp_add_pj", "fp_mul_pj", "sram_read_pj", "reg_pj"):
        src[k] += note
    src["sram_leak_w_per_kib"] += (f"; scaled by the same energy factor {s:.4f} (assumption: the "
                                   "source gives no leakage fit; treat scaled leakage as rough)")
    src["logic_leak_w_per_mm2"] += (f"; per mm^2 scaled by energy/area = {s / a:.3f} (same device count "
                                    "per function leaks ~ like it switches; rough)")
    src["sram_area_mm2"] += f"; area x {a} [{STILLMAKER}, Table 4]"
    src["mac_area_mm2"] += f"; area x {a} [{STILLMAKER}, Table 4]"
    src["dram_pj_per_bit"] += "; not scaled (device/interface energy, not logic node)"
    return TechTable(name=f"{node_nm}nm", node_nm=float(node_nm), vdd_v=vdd_v, clock_hz=clock_hz,
                     scale=s, area_scale=a, dram_pj_per_bit=DRAM_PJ_PER_BIT_45,
                     sram_leak_w_per_kib=SRAM_LEAK_W_PER_KIB_45 * s,
                     logic_leak_w_per_mm2=LOGIC_LEAK_W_PER_MM2_45 * s / a, sources=src)


TECH_NODES = ("45nm", "14nm", "7nm")


def get_tech(name: str = "45nm") -> TechTable:
    """The technology table of a named node (see TECH_NODES)."""
    if isinstance(name, TechTable):
        return name
    if name == "45nm":
        return TechTable(name="45nm", node_nm=45.0, vdd_v=0.9, clock_hz=1e9, sources=dict(_SOURCES_45))
    if name == "14nm":   # FinFET nominal 0.8 V
        return _scaled(14, 0.8, 1e9)
    if name == "7nm":    # FinFET nominal 0.7 V
        return _scaled(7, 0.7, 1e9)
    raise ValueError(f"unknown technology node {name!r}; available: {', '.join(TECH_NODES)}")
