"""`compress_checkpoint`: the whole compression stage in one call (what `snmfm compress` runs).

load -> prune (optional) -> calibrate -> cost table -> sensitivity -> plan_bits (MILP) ->
recovery fine-tuning (QAT, distilled from the original FP32 model; optional) or post-training
quantisation -> QANN -> evaluate -> save the float checkpoint, the bit plan JSON and (through the
`save_qann` callable, e.g. `converters.io.save_qann`) the QANN itself.

Energy targets need per-layer costs from the hardware models, which `snmfm` may not import: pass
them in as `costs`, a callable (model, calib_batches) -> cost table, e.g.
``eval.hw_costs.cost_fn("neuromorphic")``.  The table is computed *after* pruning, on the model
whose bits are planned.
"""
from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from snmfm.compress.cost_table import check_budget
from snmfm.compress.cost_table import check_target
from snmfm.compress.plan import BitPlan, plan_bits
from snmfm.compress.prune import prune
from snmfm.compress.quant import calibrate
from snmfm.compress.qat import finetune, freeze, prepare_qat, task_adapter, unparametrize
from snmfm.compress.sensitivity import sensitivity
from snmfm.nn import quantizers


@dataclass
class CompressResult:
    model: nn.Module            # float model (pruned, fine-tuned latent weights)
    qann: nn.Module             # the QANN (int mode): what convert() takes
    plan: BitPlan
    metrics: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)


def _call(fn: Callable, model, calib, **context):
    """fn(model, calib, **the keywords of `context` that fn accepts): a plain (model, calib)
    callable works, one that takes e.g. ``scales`` shares the pipeline's activation-step cache."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(model, calib, **context)
    return fn(model, calib, **{k: v for k, v in context.items() if k in params})


def latent_float(student: nn.Module) -> nn.Module:
    """The float model under a `prepare_qat` student: parametrisations removed (latent weights
    kept), quantizers off, learned steps dropped."""
    m = copy.deepcopy(student)
    for mod in list(m.modules()):
        if parametrize.is_parametrized(mod):
            unparametrize(mod)
    for _, q in quantizers(m):
        q.mode, q.log_scale, q.bits, q.samples = "off", None, None, []
    if hasattr(m, "snmfm_qat"):
        del m.snmfm_qat
    return m.float().eval()


def compress_checkpoint(checkpoint, *, budget, target: str = "size", out=None, task: str | None = None,
                        costs: Mapping | Callable | None = None, measure: Callable | None = None,
                        choices=(2, 4, 8), a_choices=None,
                        heads=None, mlp_channels=None, blocks=None, importance: str = "taylor",
                        finetune_steps: int = 0, lr: float = 2e-4, batch_size: int = 64,
                        calib_samples: int = 256, fixed_layers: Mapping | None = None,
                        device: str | None = None, seed: int = 0, evaluate: bool = True,
                        save_qann: Callable | None = None, progress: bool = False,
                        status: Callable[[str], None] | None = None) -> CompressResult:
    """Compress a trained checkpoint to a bit budget (see the module docstring).

    budget: number in the target's unit (bits for size, pJ per inference for energy) or 'w4a4'-style:
    the cost of that uniform plan for the model being planned (after pruning, when it prunes).
    costs: cost table or callable (model, calib_batches) -> table; required for energy targets.
    measure: optional callable (model, calib_batches) -> (plan layers -> simulated cost), e.g.
    ``eval.hw_costs.measure_fn(target)``: plans are then checked against the simulator.
    Both callables also get, when they take them as keywords, ``scales`` (the activation-step
    cache), and `costs` ``choices``, ``a_choices`` and ``calibrated=True`` (the model they get is
    calibrated on `calib_batches`).
    heads / mlp_channels / blocks: pruning (see `prune`); importance 'taylor' uses calibration data.
    finetune_steps: QAT steps (0: post-training quantisation).  out: base path of the outputs
    (<out>.json/.safetensors float checkpoint, <out>.plan.json, <out>-qann.* via save_qann).
    status: called with a short text as each stage starts (the CLI prints it on stderr)."""
    from snmfm.checkpoint import load_checkpoint, save_checkpoint
    from snmfm.tasks import get_task
    check_target(target)
    if target != "size" and costs is None:
        raise ValueError(f"target {target!r} needs costs from the hardware models, e.g. "
                         f"costs=eval.hw_costs.cost_fn({target!r})")
    budget = check_budget(budget, choices, a_choices)  # bad budget text fails before any work
    say = status or (lambda text: None)
    t0 = time.time()
    say("load checkpoint")
    torch.manual_seed(seed)
    teacher, meta = load_checkpoint(checkpoint, task=task)
    task_name = task or meta.get("task")
    if task_name is None:
        raise ValueError(f"checkpoint {checkpoint} names no task; pass task=")
    tk = get_task(task_name)
    calib = [tuple(b) for b in tk.batches("calib", batch_size, seed=seed, limit=calib_samples)]
    metrics: dict = {"task": task_name, "target": target}
    if evaluate:
        say("evaluate FP32 model")
        metrics["fp32_accuracy"] = tk.evaluate(teacher)["accuracy"]

    model = teacher
    pruned = any(x is not None for x in (heads, mlp_channels, blocks))
    if pruned:
        say(f"prune ({importance} importance)")
        model = prune(teacher, heads=heads, mlp_channels=mlp_channels, blocks=blocks,
                      importance=importance, data=calib[:4])
        metrics["prune"] = {k: model.snmfm_prune[k] for k in ("heads", "mlp_channels", "blocks",
                                                               "params_before", "params_after")}
    model = copy.deepcopy(model).eval()
    say(f"calibrate on {sum(len(b[0]) for b in calib)} samples")
    calibrate(model, calib)
    scales: dict = {}  # activation steps searched once, shared by costs, sensitivity and QAT
    say(f"cost table ({target})" + ("" if target == "size" else ": simulating every layer and bit width"))
    table = (_call(costs, model, calib, scales=scales, choices=choices, a_choices=a_choices, calibrated=True)
             if callable(costs) else costs)
    say("sensitivity of each layer to its bit width")
    sens = sensitivity(model, calib[:2], bits=sorted(set(choices) | set(a_choices or choices)),
                       levels=("layer",), calibrated=True, scales=scales)
    held_out = [tuple(b) for b in tk.batches("train", batch_size, seed=seed, limit=calib_samples)]
    say("plan bits (integer program" + (", checked against the simulator)" if measure is not None else ")"))
    plan = plan_bits(model, budget, table, target, sensitivity=sens, choices=choices,
                     a_choices=a_choices, fixed_layers=fixed_layers, validate=held_out, scales=scales,
                     measure=_call(measure, model, calib, scales=scales) if measure is not None else None)
    if finetune_steps > 0:
        say(f"fine-tune {finetune_steps} steps (LSQ + distillation)")
        student = prepare_qat(model, overrides=plan.layers, scales=scales)
        adapter = task_adapter(tk, batch_size)
        stats = finetune(student, teacher, adapter.pop("sample"), steps=finetune_steps, lr=lr,
                         device=device, seed=seed, log_every=100 if progress else 0, **adapter)
        qann = freeze(student)
        model = latent_float(student)
        metrics["finetune"] = stats
    else:
        qann = freeze(prepare_qat(model, overrides=plan.layers, scales=scales))  # == quantize(...)
        model = copy.deepcopy(model)
        for _, q in quantizers(model):
            q.samples = []
    if evaluate:
        say("evaluate the QANN")
        metrics["qann_accuracy"] = tk.evaluate(qann)["accuracy"]
    plan.meta.update({"source_checkpoint": str(checkpoint), "task": task_name,
                      "prune": metrics.get("prune"), "finetune_steps": finetune_steps,
                      "accuracy": {k: metrics[k] for k in ("fp32_accuracy", "qann_accuracy") if k in metrics}})
    metrics["time_s"] = time.time() - t0
    paths = {}
    if out is not None:
        say(f"save to {out}")
        base = Path(out)
        base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
        paths["checkpoint"] = str(save_checkpoint(model, base, {**{k: v for k, v in meta.items()
                                                                   if k in ("task", "model_name", "size", "seed")},
                                                                "compress": metrics}))
        paths["plan"] = str(plan.save(base.with_name(base.name + ".plan.json")))
        if save_qann is not None:
            paths["qann"] = str(save_qann(qann, base.with_name(base.name + "-qann"), meta={"task": task_name, "plan": plan.to_dict()}))
    return CompressResult(model=model, qann=qann, plan=plan, metrics=metrics, paths=paths)
