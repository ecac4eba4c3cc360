"""The vector unit: non-spiking ops charged as the arithmetic they are.

Every nonlinearity is broken into the operations a floating-point vector unit executes, each
charged from the technology table (exp/div/sqrt are themselves built from fp multiplies and adds,
see neuro_hw.tech).  `ops` counts lane-cycles: one per fp add/mul/compare, and exp/div/sqrt by
their fp-op count, so a `lanes`-wide unit needs ops / lanes cycles.

Inputs arriving from a GEMM are int32 accumulations: one multiply by the scale dequantises them.
Outputs feeding a GEMM are requantised: one multiply by 1/scale, round, clamp (2 compares).
"""
from __future__ import annotations

from dataclasses import dataclass

from neuro_hw.tech import TechTable

# Lane-cycles of the composite functions (the fp-op counts in TechTable.exp_pj / div_pj / sqrt_pj).
EXP_OPS, DIV_OPS, SQRT_OPS = 9, 7, 9


@dataclass(frozen=True)
class Recipe:
    """Per-element and per-row operation counts of one nonlinearity."""

    fp_add: float = 0
    fp_mul: float = 0
    cmp: float = 0
    exp: float = 0
    div: float = 0
    sqrt: float = 0
    int_add: float = 0      # integer adds at the accumulator width (residual adds)

    def energy_pj(self, tech: TechTable, bits: int, acc_bits: int) -> float:
        return (self.fp_add * tech.fp_add_pj(bits) + self.fp_mul * tech.fp_mul_pj(bits)
                + self.cmp * tech.cmp_pj(bits) + self.exp * tech.exp_pj(bits)
                + self.div * tech.div_pj(bits) + self.sqrt * tech.sqrt_pj(bits)
                + self.int_add * tech.add_pj(acc_bits))

    @property
    def ops(self) -> float:
        return (self.fp_add + self.fp_mul + self.cmp + self.int_add + EXP_OPS * self.exp
                + DIV_OPS * self.div + SQRT_OPS * self.sqrt)


# (per element, per row).  Counts include the dequantising multiply of the int32 input.
RECIPES: dict[str, tuple[Recipe, Recipe]] = {
    # max (cmp), x - max, exp, running sum, multiply by 1/sum; per row one reciprocal.
    "softmax": (Recipe(fp_mul=2, fp_add=2, cmp=1, exp=1), Recipe(div=1)),
    # sum for the mean, centre, square, sum of squares, scale by rstd, gamma, beta;
    # per row: two multiplies by 1/n, + eps, 1/sqrt (sqrt + div).
    "layernorm": (Recipe(fp_mul=4, fp_add=4), Recipe(fp_mul=2, fp_add=1, sqrt=1, div=1)),
    # tanh form 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), tanh(u) = (e^2u - 1)/(e^2u + 1):
    # x^2, x^3, *0.044715, +x, *sqrt(2/pi), *2, exp, -1, +1, div, +1, *x, *0.5 (+ dequant).
    "gelu": (Recipe(fp_mul=8, fp_add=4, exp=1, div=1), Recipe()),
    # tanh(x) = (e^2x - 1)/(e^2x + 1): *2, exp, -1, +1, div (+ dequant).
    "tanh": (Recipe(fp_mul=2, fp_add=2, exp=1, div=1), Recipe()),
    # residual add in the accumulator domain.
    "add": (Recipe(int_add=1), Recipe()),
}

# Requantise one element for a GEMM input: multiply by 1/scale, round (add), clamp (2 compares).
REQUANT = Recipe(fp_mul=1, fp_add=1, cmp=2)

def vector_cost(kind: str, rows: int, width: int, tech: TechTable, bits: int, acc_bits: int,
                requant: bool) -> tuple[float, float]:
    """(energy_pj, lane_ops) of a non-spiking op over rows x width elements."""
    if kind not in RECIPES:
        raise ValueError(f"no vector recipe for op kind {kind!r}; known: {', '.join(RECIPES)}")
    per_el, per_row = RECIPES[kind]
    n = rows * width
    e = n * per_el.energy_pj(tech, bits, acc_bits) + rows * per_row.energy_pj(tech, bits, acc_bits)
    ops = n * per_el.ops + rows * per_row.ops
    if requant:
        e += n * REQUANT.energy_pj(tech, bits, acc_bits)
        ops += n * REQUANT.ops
    return e, ops
