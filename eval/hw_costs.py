"""Per-layer cost tables for `snmfm.compress.plan_bits`, computed from Workloads and hardware models.

(Moved here from `neuro_hw.costs`: it calibrates, converts and runs models, which is eval's job;
`neuro_hw` no longer imports `snmfm`.  The target is "size" or any registered accelerator name;
below, "conventional" / "neuromorphic" stand for any accelerator without / with an ActivityTrace.)

`plan_bits` lives in `snmfm`, which must not import `neuro_hw`; it reads costs as data (see
snmfm/compress/plan.py for the table format).  This module makes those tables:

* ``size``: bits of stored weights (delegated to `snmfm.compress.plan.size_costs`);
* ``conventional``: for every uniform option (w_bits, a_bits) the QANN's Workload is extracted and
  simulated on the conventional accelerator; a layer's cost for that option is the energy of its
  op row (`HwReport.per_op`), and the rest of the total -- non-spiking units, residual adds,
  embeddings -- is the fixed part;
* ``neuromorphic``: the same, but driven by the SNN's ActivityTrace.  Fewer activation levels mean
  fewer spikes *and* fewer time steps, so the traces are measured: the QANN at each uniform a_bits
  is converted and run until quiet on `inputs`, and each layer's cost (its synaptic fetches,
  accumulates, its input neurons' updates, spikes and packets) is read from the chip model's op row.
  Everything charged per time step or per second -- barriers, static power, non-spiking units
  re-evaluated every step -- depends on the *largest* activation bit width in the network, so it is
  the fixed part, tabulated per largest a_bits (``fixed = {"a4": ..., "a8": ...}``).

Approximations, stated: a layer's cost is taken from the uniform run at its own (w_bits, a_bits),
i.e. layers are charged independently (a layer's spike count depends mostly on its own quantizer's
levels); the fixed part at largest a_bits A comes from the uniform W{A}A{A} run (w_ref when A is not
a weight choice), so the cost of every uniform plan is (up to the trace of w_ref) its simulated
energy.  For the neuromorphic chip the spike trace of option (w, a) is that of the W{w_ref}A{a} SNN
(weights change spike counts only through rounding).  A mixed plan can cost more than the sum: a
layer downstream of a high-resolution one sees inputs that keep changing for more time steps than
in its uniform run.  `plan_measure` simulates a plan's own QANN and SNN, and `plan_bits(measure=...)`
uses it to keep only plans whose simulated energy fits the budget.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from neuro_hw import accelerators, load_hw_config, needs_trace
from neuro_hw.workload import extract_workload

TARGETS = ("size", "conventional", "neuromorphic")   # examples; any registered accelerator name works


def _default_simulate(workload, trace, hw):
    from neuro_hw import simulate
    return simulate(workload, trace, hw)


def _check_target(target: str) -> None:
    """"size" or an accelerator name (registered, alias or config file): ValueError listing them."""
    if target != "size":
        load_hw_config(target)


def _qann_factory(model: nn.Module, calib: Iterable | None, calibrated: bool, scales: dict | None = None):
    """QANN builder with one calibration and a shared scale cache (fast sweep over bit plans)."""
    from snmfm.compress import calibrate
    from snmfm.compress.qat import freeze, prepare_qat
    if not calibrated:
        if calib is None:
            raise ValueError("cost_table needs calibration batches (calib=...) or a calibrated model")
        calibrate(model, calib)
    cache: dict = {} if scales is None else scales

    def make(w_bits: int, a_bits: int, overrides=None) -> nn.Module:
        return freeze(prepare_qat(model, w_bits, a_bits, overrides=overrides, scales=cache))
    return make


@torch.no_grad()
def snn_trace(qann: nn.Module, inputs: tuple, max_T: int = 4096):
    """ActivityTrace of the converted QANN run until quiet on `inputs`."""
    from converters import convert
    return convert(qann).run(*inputs, max_T=max_T).trace


def cost_table(model: nn.Module, inputs: tuple, target: str, *, hw=None, choices=(2, 4, 8),
               a_choices=None, calib: Iterable | None = None, calibrated: bool = False, w_ref: int = 8,
               simulate: Callable | None = None, name: str = "model", scales: dict | None = None) -> dict:
    """Cost table of `model` (float, snmfm layers) for `plan_bits(..., target=target)`.

    inputs: example model inputs (a tuple; a few samples: the SNN runs on them for 'neuromorphic',
    counts are per inference).  calib: calibration batches (skipped if `calibrated`).
    hw: hardware config (name, file or object; default: the target's bundled default).
    simulate(workload, trace, hw) -> HwReport: defaults to `neuro_hw.simulate`.
    scales: activation-step cache shared with `sensitivity` / `prepare_qat` (saves re-searching)."""
    _check_target(target)
    w_choices = tuple(sorted({int(b) for b in choices}))
    a_choices = tuple(sorted({int(b) for b in (a_choices or choices)}))
    if target == "size":
        from snmfm.compress.cost_table import size_costs
        return size_costs(model, w_choices)
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    sim = simulate or _default_simulate
    hw = hw if hw is not None else target
    make = _qann_factory(model, calib, calibrated, scales)
    from snmfm.compress.quant import quant_layers
    layer_names = list(quant_layers(model))
    traces = {}
    if needs_trace(hw):
        for a in a_choices:
            traces[a] = snn_trace(make(w_ref, a), inputs)
    layers: dict[str, dict[str, float]] = {n: {} for n in layer_names}
    fixed: dict[str, float] = {}
    totals: dict[str, float] = {}
    steps: dict[str, int] = {}
    for a in a_choices:
        for w in sorted(set(w_choices) | {w_ref if a not in w_choices else a}):
            qann = make(w, a)
            wl = extract_workload(qann, *inputs, name=f"{name}-w{w}a{a}")
            rep = sim(wl, traces.get(a), hw)
            per_op = {r["name"]: float(r["energy_pj"]) for r in rep.per_op}
            layer_sum = 0.0
            for n in layer_names:
                if n not in per_op:
                    raise KeyError(f"hardware report has no op row for layer {n!r}")
                layer_sum += per_op[n]
                if w in w_choices:
                    layers[n][f"w{w}a{a}"] = per_op[n]
            totals[f"w{w}a{a}"] = float(rep.energy_pj)
            if w == (a if a in w_choices else w_ref):
                fixed[f"a{a}"] = float(rep.energy_pj) - layer_sum
                for n in layer_names:  # act-only layers read this run (below)
                    layers[n].setdefault(f"w{w}a{a}", per_op[n])
            if a in traces:
                steps[f"a{a}"] = int(traces[a].steps)
    # activation-only layers (Q K^T, attn V) have no weights: one cost per a_bits, from the same
    # uniform run as the fixed part (other layers' weight bits move them only through the mapping)
    for n in layer_names:
        if _is_act_only(model, n):
            layers[n] = {f"a{a}": layers[n][f"w{a if a in w_choices else w_ref}a{a}"] for a in a_choices}
    meta = {"hw": _hw_name(hw), "w_ref": w_ref, "n_inputs": int(inputs[0].shape[0]),
            "simulated_totals_pj": totals, "approximation": "per-layer costs from uniform runs"}
    if steps:
        meta["snn_steps"] = steps
    return {"schema": "snmfm.costs/1", "target": target, "unit": "pJ", "layers": layers,
            "fixed": fixed, "meta": meta}


def _is_act_only(model: nn.Module, name: str) -> bool:
    from snmfm.nn import QuantMatMul
    return isinstance(model.get_submodule(name), QuantMatMul)


def _hw_name(hw) -> str:
    if isinstance(hw, str):
        return hw
    return getattr(hw, "name", type(hw).__name__)


def measure_plan(model: nn.Module, plan_layers: dict, inputs: tuple, target: str, *, hw=None,
                 calib: Iterable | None = None, calibrated: bool = False, qann: nn.Module | None = None,
                 simulate: Callable | None = None):
    """Simulated HwReport of a bit plan (its real energy, to compare with the table's prediction).
    `qann`: the plan's QANN when already built (e.g. after fine-tuning)."""
    if target == "size":
        raise ValueError(f"measure_plan simulates hardware: target must be an accelerator name "
                         f"({', '.join(accelerators())}), "
                         f"got {target!r}")
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    if qann is None:
        qann = _qann_factory(model, calib, calibrated)(8, 8, overrides=plan_layers)
    wl = extract_workload(qann, *inputs)
    hw = hw if hw is not None else target
    trace = snn_trace(qann, inputs) if needs_trace(hw) else None
    return (simulate or _default_simulate)(wl, trace, hw)


def plan_measure(model: nn.Module, inputs: tuple, target: str, *, hw=None, scales: dict | None = None,
                 simulate: Callable | None = None) -> Callable:
    """A callable {layer: bits} -> simulated energy (pJ) of that plan's QANN on `inputs`, for
    `plan_bits(measure=...)`: it checks the cost table's prediction against the simulator.  The
    model must be calibrated; QANNs are built from the shared activation-step cache."""
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    make = _qann_factory(model, None, True, scales)

    def measure(layers: dict) -> float:
        qann = make(8, 8, overrides=layers)
        return float(measure_plan(model, layers, inputs, target, hw=hw, qann=qann, simulate=simulate).energy_pj)
    return measure


def measure_fn(target: str, hw=None, n_inputs: int = 16, **kw) -> Callable:
    """(model, calib_batches, *, scales) -> `plan_measure` callable, for
    `compress_checkpoint(measure=...)`; `scales` is the caller's activation-step cache."""
    def fn(model, calib, *, scales: dict | None = None):
        calib = list(calib)
        return plan_measure(model, tuple(x[:n_inputs] for x in calib[0]), target, hw=hw,
                            **{"scales": scales, **kw})
    return fn


def cost_fn(target: str, hw=None, n_inputs: int = 16, **kw) -> Callable:
    """A callable (model, calib_batches, *, scales, choices, a_choices, calibrated) -> cost table, for
    `snmfm.compress.compress_checkpoint` (which may not import neuro_hw itself): example inputs are
    the first `n_inputs` calibration samples.  The keywords let the caller share its activation-step
    cache and bit choices and skip a second calibration; `kw` given here wins over them."""
    def fn(model, calib, *, scales: dict | None = None, choices=None, a_choices=None, calibrated: bool = False):
        calib = list(calib)
        inputs = tuple(x[:n_inputs] for x in calib[0])
        given = {"scales": scales, "calibrated": calibrated, "choices": choices, "a_choices": a_choices}
        opts = {**{k: v for k, v in given.items() if v is not None}, **kw}
        return cost_table(model, inputs, target, hw=hw, calib=calib, **opts)
    return fn
