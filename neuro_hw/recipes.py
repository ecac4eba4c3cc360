"""Operation recipes of the non-spiking units, in one place for every hardware model.

Each nonlinearity is the floating-point operations it takes per element and per row (a row is
the normalisation axis of softmax / LayerNorm).  `cmp` is a compare (max, clamp), `exp` / `div` /
`sqrt` are the multi-op sequences of `neuro_hw.tech` (`exp_pj`, `div_pj`, `sqrt_pj`).  The models
add what their dataflow needs around the function itself:

* the conventional accelerator reads int32 accumulations and multiplies by the scale once
  (`DEQUANT`), and requantises outputs that feed a GEMM (`REQUANT`);
* a neuromorphic core computes the differenced output f(X_t) - f(X_{t-1}) (`DIFFERENCE`).
"""
from __future__ import annotations

# kind: (per element, per row)
NONLINEAR = {
    # max (compare), x - max, exp, running sum, x * (1/sum); per row one reciprocal
    "softmax": ({"cmp": 1, "add": 2, "mul": 1, "exp": 1}, {"div": 1}),
    # sum for the mean, centre, square, sum of squares, * rstd, * gamma, + beta;
    # per row: mean and variance scaled by 1/n, + eps, rstd = 1/sqrt (sqrt, then div)
    "layernorm": ({"add": 4, "mul": 3}, {"mul": 2, "add": 1, "sqrt": 1, "div": 1}),
    # tanh form 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), tanh(u) = (e^2u - 1)/(e^2u + 1):
    # x^2, x^3, *0.044715, +x, *sqrt(2/pi), *2, exp, -1, +1, div, +1, *x, *0.5
    "gelu": ({"mul": 7, "add": 4, "exp": 1, "div": 1}, {}),
    # tanh(x) = (e^2x - 1)/(e^2x + 1): *2, exp, -1, +1, div
    "tanh": ({"mul": 1, "add": 2, "exp": 1, "div": 1}, {}),
}
DEQUANT = {"mul": 1}           # int32 accumulation -> value: one multiply by the scale
REQUANT = {"mul": 1, "add": 1, "cmp": 2}   # * 1/scale, round, clamp
DIFFERENCE = {"add": 1}        # f(X_t) - f(X_{t-1}) of a differenced non-spiking unit

# lane-cycles of one fp lane per operation (the op counts of tech.exp_pj / div_pj / sqrt_pj)
LANE_CYCLES = {"add": 1, "mul": 1, "cmp": 1, "exp": 9, "div": 7, "sqrt": 9}


def combine(*recipes: dict) -> dict:
    out: dict = {}
    for r in recipes:
        for k, v in r.items():
            out[k] = out.get(k, 0) + v
    return out


def recipe(kind: str) -> tuple[dict, dict]:
    """(per element, per row) operation counts of the nonlinearity `kind`."""
    if kind not in NONLINEAR:
        raise ValueError(f"no recipe for non-spiking op kind {kind!r}; known: {', '.join(NONLINEAR)}")
    return NONLINEAR[kind]
