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

from neuro_hw import recipes as _r

# Lane-cycles of the composite functions (the fp-op counts in TechTable.exp_pj / div_pj / sqrt_pj).
EXP_OPS, DIV_OPS, SQRT_OPS = _r.LANE_CYCLES["exp"], _r.LANE_CYCLES["div"], _r.LANE_CYCLES["sqrt"]


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


def _recipe(ops: dict) -> Recipe:
    return Recipe(fp_add=ops.get("add", 0), fp_mul=ops.get("mul", 0), cmp=ops.get("cmp", 0),
                  exp=ops.get("exp", 0), div=ops.get("div", 0), sqrt=ops.get("sqrt", 0))


# (per element, per row), from the shared recipes (neuro_hw.recipes) plus the dequantising multiply
# of the int32 input; residual add in the accumulator domain.
RECIPES: dict[str, tuple[Recipe, Recipe]] = {
    kind: (_recipe(_r.combine(per_el, _r.DEQUANT)), _recipe(per_row))
    for kind, (per_el, per_row) in _r.NONLINEAR.items()}
RECIPES["add"] = (Recipe(int_add=1), Recipe())

# Requantise one element for a GEMM input: multiply by 1/scale, round (add), clamp (2 compares).
REQUANT = _recipe(_r.REQUANT)


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
