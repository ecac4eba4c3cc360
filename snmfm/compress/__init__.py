"""Compression: calibration, integer quantisation (the QANN), mixed precision, pruning and recovery.

    from snmfm.compress import calibrate, quantize, prune, plan_bits

* `calibrate` / `quantize`: activation scales from real inputs, then the QANN (integer weights,
  explicit quantizers) that `converters.convert` turns into an exact SNN;
* `sensitivity`: output change when one unit (model, block, layer, head, channel group) is
  quantised, for weights and activations; `hessian_sensitivity`: the HAWQ-v2 estimate;
* `plan_bits`: per-layer bit widths by an exact integer program under a budget in model size or
  accelerator energy (cost tables come in as data: `eval.hw_costs.cost_table`); a `BitPlan` is an
  editable JSON file that ``quantize(model, overrides=plan.layers)`` applies;
* `smooth` (`snmfm.compress.outliers`): per-input-channel activation scales (SmoothQuant), exact;
* `prune`: heads, MLP channels and blocks removed physically (magnitude or Taylor importance);
* `prepare_qat` / `finetune` / `freeze` (`qat` in one call): LSQ quantisation-aware recovery,
  distilled from the float model;
* `compress_checkpoint`: all of it on a saved checkpoint (what `snmfm compress` runs).

Several functions share their module's name (`prune`, `sensitivity`, `qat`): the package attribute is
the function; import other names of those modules with ``from snmfm.compress.prune import ...``.
"""
from snmfm.compress.cost_table import TARGETS, parse_budget, plan_cost, size_costs, uniform_cost
from snmfm.compress.pipeline import CompressResult, compress_checkpoint
from snmfm.compress.outliers import smooth
from snmfm.compress.plan import BitPlan, InfeasibleBudget, plan_bits
from snmfm.compress.prune import prune
from snmfm.compress.qat import finetune, freeze, prepare_qat, qat
from snmfm.compress.quant import (activation_range, calibrate, fit_window, is_qann, quantize, quantize_weight,
                                  search_scale)
from snmfm.compress.sensitivity import SensitivityTable, hessian_sensitivity, sensitivity

__all__ = ["TARGETS", "BitPlan", "CompressResult", "InfeasibleBudget", "SensitivityTable", "activation_range",
           "calibrate", "compress_checkpoint", "fit_window", "finetune", "freeze", "hessian_sensitivity", "is_qann", "parse_budget",
           "plan_bits", "plan_cost", "prepare_qat", "prune", "qat", "quantize", "quantize_weight", "search_scale",
           "sensitivity", "smooth", "size_costs", "uniform_cost"]
