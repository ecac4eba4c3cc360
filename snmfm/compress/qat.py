"""Recovery fine-tuning: quantisation-aware training with learned step sizes, distilled from FP32.

Three plain functions, so each step can be inspected:

* `prepare_qat(calibrated, w_bits, a_bits, overrides)` -- a trainable copy whose activation
  quantizers are in ``fake`` mode (LSQ: the step size is a parameter, Esser et al., ICLR 2020) and
  whose weights are fake-quantised per output channel with their own learned steps (a
  `torch.nn.utils.parametrize` parametrisation, straight-through rounding).  Initial steps are
  exactly those `quantize` would choose (MSE search on the calibration samples; max-abs weights).
* `finetune(student, teacher, sample, steps)` -- AdamW on weights and steps; loss =
  alpha * tau^2 * KL(teacher || student at temperature tau) + (1 - alpha) * task loss
  (knowledge distillation, Hinton et al. 2015); CPU or GPU (`device`).
* `freeze(student)` -- the QANN in the same ``int`` form `quantize` returns: integer codes with the
  learned scales, integer weights round(w / s_w) with the learned per-channel steps, float64.
  `converters.convert` takes it as it takes any QANN, and the SNN reproduces it exactly.

`freeze(prepare_qat(m, ...))` without training equals `quantize(m, ...)` (to the last ulp of a step
size), so `prepare_qat` + `freeze` is also a fast way to build many QANNs from one calibration:
scales are cached per (quantizer, bits) in the `scales` dict.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from snmfm.compress.quant import (CALIB_METHODS, WEIGHT_LAYERS, _as_args, activation_range, fit_window,
                                  quant_layers, quantize_weight)
from snmfm.nn import QuantConv2d, QuantLinear, QuantMatMul, Quantizer, qrange, quantizers


class _RoundSTE(torch.autograd.Function):
    """torch.round (what `quantize_weight` uses) with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


class LSQWeight(nn.Module):
    """Weight fake quantiser (a parametrisation): w_q = s * round(clamp(w / s, -qmax, qmax)) with a
    learned step s per output channel and the LSQ gradient scale 1 / sqrt(fan_in * qmax)."""

    def __init__(self, step: torch.Tensor, bits: int):
        super().__init__()
        self.bits = int(bits)
        self.qmax = 2 ** (self.bits - 1) - 1
        self.log_scale = nn.Parameter(step.detach().to(torch.float64).log())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self.log_scale.exp().to(w.dtype).reshape(-1, *([1] * (w.dim() - 1)))
        g = 1.0 / math.sqrt(max(1, w[0].numel()) * self.qmax)
        s = s * g + (s - s * g).detach()
        return _RoundSTE.apply(torch.clamp(w / s, -self.qmax, self.qmax)) * s


def _weight_owner(layer) -> tuple[nn.Module, str]:
    if isinstance(layer, QuantLinear):
        return layer.linear, "weight"
    if isinstance(layer, QuantConv2d):
        return layer.conv, "weight"
    return layer, "weight"  # QuantFeatureEmbed


def unparametrize(module: nn.Module) -> dict[str, torch.Tensor]:
    """Strip the parametrisations of one module of a *deep copy*, keeping the latent tensors.

    `parametrize.remove_parametrizations` deletes the property from the module's generated class,
    and a deep copy shares that class with the original: removing it there would break the
    original.  Here only the instance changes: it gets back its base class and plain parameters."""
    latent = {name: plist.original for name, plist in module.parametrizations.items()}
    del module._modules["parametrizations"]
    module.__class__ = module.__class__.__bases__[0]
    for name, p in latent.items():  # the same Parameter objects: ties within the copy survive
        module.register_parameter(name, p)
    return {name: p.detach() for name, p in latent.items()}


def wide_range(samples: torch.Tensor, step_bits: int, a_bits: int, signed: bool, method: str = "mse",
               percentile: float = 99.99, window: str = "fit") -> tuple[float, int, int]:
    """(step, qmin, qmax): the step `activation_range` finds for `step_bits` bits, the integer window
    of `a_bits` bits (fitted as `quantize` fits it, widened to contain the `step_bits` window)."""
    step, lo, hi = activation_range(samples, step_bits, signed, method, percentile, window)
    wlo, whi = fit_window(samples, a_bits, signed) if window == "fit" else qrange(a_bits, signed)
    if lo < wlo:   # (not seen in practice: both windows are placed in proportion to the range)
        wlo, whi = lo, lo + (whi - wlo)
    elif hi > whi:
        wlo, whi = hi - (whi - wlo), hi
    return step, wlo, whi


def _check_overrides(layers: Mapping, overrides: Mapping) -> None:
    for name, o in overrides.items():
        if name not in layers:
            raise ValueError(f"bit override for unknown layer {name!r}; layers: {', '.join(layers)}")
        bad = set(o) - {"w_bits", "a_bits", "step_bits"}
        if bad:
            raise ValueError(f"override for {name!r} has unknown key(s) {sorted(bad)}; "
                             "allowed: a_bits, step_bits, w_bits")


def prepare_qat(model: nn.Module, w_bits: int = 8, a_bits: int = 8, *,
                overrides: Mapping[str, Mapping[str, int]] | None = None, method: str = "mse",
                percentile: float = 99.99, scales: dict | None = None, embed_bits: int | None = None,
                window: str = "fit", step_bits: int | None = None) -> nn.Module:
    """Trainable fake-quantised copy (float32) of a calibrated float model.

    scales: optional cache {(quantizer path, bits, ...): (step, qmin, qmax)} read and filled here, so
    sweeping many bit plans over one calibration searches each scale once.  window: as `quantize`.
    step_bits (also a per-layer override key): start each activation step where the search puts it
    for `step_bits` bits, with the wider integer window of `a_bits` (`wide_range`): on a graded-spike
    chip the energy follows the nonzero codes, i.e. the step, so this keeps `step_bits`' activity
    without its clipping."""
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIB_METHODS)}")
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    _check_overrides(quant_layers(model), overrides)
    scales = {} if scales is None else scales
    student = copy.deepcopy(model).float()
    src = dict(quantizers(model))
    for name, layer in quant_layers(student).items():
        o = overrides.get(name, {})
        ab = int(o.get("a_bits", a_bits))
        sb = o.get("step_bits", step_bits)
        sb = ab if sb is None else int(sb)
        if sb > ab:
            raise ValueError(f"step_bits {sb} > a_bits {ab} for {name!r}: the window must hold the step's range")
        qn = [f"{name}.quant_a", f"{name}.quant_b"] if isinstance(layer, QuantMatMul) else [f"{name}.quant"]
        qs = [layer.quant_a, layer.quant_b] if isinstance(layer, QuantMatMul) else [layer.quant]
        for qname, q in zip(qn, qs):
            q.set_bits(ab)
            key = (qname, ab, method, percentile, window) + ((sb,) if sb != ab else ())
            if key not in scales:
                samples = src[qname].samples
                if not samples:
                    raise ValueError(f"uncalibrated model: quantizer {qname!r} saw no data; "
                                     "call snmfm.compress.calibrate(model, data) first")
                cat = torch.cat(samples)
                if sb == ab:
                    scales[key] = activation_range(cat, ab, q.signed, method, percentile, window)
                else:
                    scales[key] = wide_range(cat, sb, ab, q.signed, method, percentile, window)
            step, q.qmin, q.qmax = scales[key]
            q.samples = []
            q.log_scale = nn.Parameter(torch.tensor(step, dtype=torch.float64).log())
            q.mode = "fake"
        if isinstance(layer, WEIGHT_LAYERS):
            wb = int(o.get("w_bits", w_bits))
            owner, attr = _weight_owner(layer)
            _, step = quantize_weight(getattr(owner, attr), wb)
            parametrize.register_parametrization(owner, attr, LSQWeight(step, wb))
            layer.w_bits = wb
    for _, q in quantizers(student):
        if q.mode != "fake":
            raise ValueError("a Quantizer outside a QuantLinear/QuantConv2d/QuantMatMul/QuantFeatureEmbed "
                             "cannot be paired with integer weights")
    student.snmfm_qat = {"w_bits": w_bits, "a_bits": a_bits, "method": method, "percentile": percentile,
                         "window": window, "step_bits": step_bits,
                         "overrides": overrides,
                         "embed_bits": embed_bits if embed_bits is not None else w_bits}
    return student


@torch.no_grad()
def freeze(student: nn.Module) -> nn.Module:
    """The QANN (``int`` mode, float64, integer weights) of a `prepare_qat` model."""
    info = getattr(student, "snmfm_qat", None)
    if info is None:
        raise ValueError("freeze needs a model from prepare_qat (fake-quantised, learned steps)")
    qann = copy.deepcopy(student)
    for name, layer in quant_layers(qann).items():
        qs = [layer.quant_a, layer.quant_b] if isinstance(layer, QuantMatMul) else [layer.quant]
        for q in qs:
            q.scale = q.log_scale.detach().exp().to(torch.float64).reshape(())
            q.log_scale = None
            q.mode = "int"
        if isinstance(layer, WEIGHT_LAYERS):
            owner, attr = _weight_owner(layer)
            lsq = owner.parametrizations[attr][0]
            step = lsq.log_scale.detach().exp().to(torch.float64)
            w = unparametrize(owner)[attr].to(torch.float64)
            flat = w.reshape(w.shape[0], -1)
            w_int = torch.clamp(torch.round(flat / step[:, None]), -lsq.qmax, lsq.qmax).reshape(w.shape)
            layer.set_int_weight(w_int, step, lsq.bits)
    qann = qann.double().eval()
    eb = info["embed_bits"]
    for m in qann.modules():
        if isinstance(m, nn.Embedding):
            w_int, s = quantize_weight(m.weight, eb)
            m.weight.copy_(w_int * s[:, None])
    del qann.snmfm_qat
    qann.snmfm_quant = {**info, "overrides": {k: dict(v) for k, v in info["overrides"].items()},
                        "qat": info.get("trained", {})}
    return qann


def distill_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """tau^2 * KL(softmax(t/tau) || softmax(s/tau)), averaged over all leading positions."""
    t = teacher_out.reshape(-1, teacher_out.shape[-1]).float() / temperature
    s = student_out.reshape(-1, student_out.shape[-1]).float() / temperature
    return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True,
                    reduction="batchmean") * temperature**2


def cosine_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """1 - cos(student, teacher) along the last axis, averaged: distillation of embeddings (a
    sentence encoder's output is compared by cosine, so that is what is matched)."""
    return (1.0 - F.cosine_similarity(student_out.float(), teacher_out.float(), dim=-1)).mean()


DISTILL_LOSSES = {"kl": distill_loss, "cosine": cosine_loss}


class ActivityPenalty:
    """Weighted count of nonzero activation codes of a fake-quantised student, relative to a reference.

    A code is nonzero where |x / s| >= 1/2 (a graded-spike chip sends one event for it and fetches
    one weight row).  Forward hooks on the student's quantizers count that per site, hard and with
    a sigmoid surrogate of temperature `tau` (whose gradient moves the steps and the weights); hooks
    on the teacher's quantizers count the teacher's activations at the student's *initial* steps:
    the reference, on the same batch.  `ratio()` = sum_site cost * soft count (student) / the same
    for the reference; `hard_ratio()` the same with exact counts.  Call `remove()` when done."""

    def __init__(self, student: nn.Module, teacher: nn.Module, costs: Mapping[str, float], tau: float = 0.1):
        sq, tq = dict(quantizers(student)), dict(quantizers(teacher))
        unknown = [n for n in costs if n not in sq or n not in tq]
        if unknown:
            raise ValueError(f"activity costs for unknown quantizer(s) {unknown[:3]}; "
                             f"quantizers: {', '.join(list(sq)[:4])}, ...")
        self.tau = tau
        self._cur: dict[str, list] = {}
        self._hooks = []
        for name, cost in costs.items():
            q = sq[name]
            if q.mode != "fake":
                raise ValueError(f"activity penalty needs a prepare_qat student ({name!r} is in mode {q.mode!r})")
            step0 = float(q.log_scale.detach().exp())
            self._hooks.append(q.register_forward_hook(self._student_hook(name, float(cost), q)))
            self._hooks.append(tq[name].register_forward_hook(self._teacher_hook(name, float(cost), step0, q.signed)))

    def _student_hook(self, name, cost, q):
        def hook(module, args, out):
            x = args[0].float()
            s = q.log_scale.exp().float()
            m = x.abs() / s if q.signed else x / s
            self._cur.setdefault("student", []).append(
                (cost * torch.sigmoid((m - 0.5) / self.tau).sum(), cost * (m >= 0.5).sum().detach()))
        return hook

    def _teacher_hook(self, name, cost, step0, signed):
        def hook(module, args, out):
            x = args[0].detach().float()
            m = x.abs() / step0 if signed else x / step0
            self._cur.setdefault("teacher", []).append(
                (cost * torch.sigmoid((m - 0.5) / self.tau).sum(), cost * (m >= 0.5).sum()))
        return hook

    def _take(self):
        s, t = self._cur.pop("student", []), self._cur.pop("teacher", [])
        if not s or not t:
            raise RuntimeError("activity penalty: no quantizer ran in this step (inputs bypass the costed sites?)")
        self._last = (sum(a for a, _ in s), sum(b for _, b in s), sum(a for a, _ in t), sum(b for _, b in t))
        return self._last

    def ratio(self) -> torch.Tensor:
        soft, _, ref, _ = self._take()
        return soft / ref.clamp_min(1e-30)

    def hard_ratio(self) -> float:
        _, hard, _, ref = self._last
        return float(hard / ref.clamp_min(1e-30))

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def finetune(student: nn.Module, teacher: nn.Module, sample: Callable, *, steps: int = 200,
             lr: float = 2e-4, scale_lr: float | None = None, weight_decay: float = 0.0,
             alpha: float | None = None, temperature: float = 1.0, task_loss: Callable | None = None,
             inputs_of: Callable = _as_args, device: str | torch.device | None = None, seed: int = 0,
             log_every: int = 0, distill: str = "kl", warmup: int = 0,
             activity: Mapping[str, float] | None = None, activity_budget: float = 1.0,
             activity_weight: float = 1.0, time_limit_s: float | None = None, log: Callable = print) -> dict:
    """Fine-tune a `prepare_qat` student in place against a float `teacher`.

    sample(gen, step) -> a training batch; inputs_of(batch) -> the model's positional inputs;
    task_loss(student_output, batch) -> scalar (omit for pure distillation).  alpha: weight of the
    distillation term (default 1 without a task loss, else 0.5).  distill: "kl" (logits) or
    "cosine" (embeddings).  Learning rate: linear warm-up over `warmup` steps, then cosine decay.
    activity: {quantizer path: cost of one nonzero code} (e.g. pJ per event from a hardware cost
    table) -- keeps the student's weighted count of nonzero codes, what a graded-spike chip pays
    for, within `activity_budget` times the count the *initial* steps give the teacher's
    activations on the same batch (`ActivityPenalty`).  Returns training stats with `history`
    (mean loss and activity ratio per `log_every` steps).  time_limit_s: stop after this many
    seconds: the learning-rate schedule then runs on elapsed time or steps, whichever is further on,
    so a run cut by the clock still ends annealed (`stats["stopped_at"]`: the step it stopped at)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if distill not in DISTILL_LOSSES:
        raise ValueError(f"unknown distillation loss {distill!r}; allowed: {', '.join(DISTILL_LOSSES)}")
    dloss = DISTILL_LOSSES[distill]
    if alpha is None:
        alpha = 1.0 if task_loss is None else 0.5
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha < 1.0 and task_loss is None:
        raise ValueError("alpha < 1 weights a task loss: pass task_loss")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    student.to(dev).train()
    teacher = teacher.to(dev).float().eval()
    scale_params = [p for n, p in student.named_parameters() if n.endswith("log_scale")]
    ids = {id(p) for p in scale_params}
    other = [p for p in student.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": other, "weight_decay": weight_decay},
                             {"params": scale_params, "weight_decay": 0.0,
                              "lr": scale_lr if scale_lr is not None else lr}], lr=lr)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(seed)
    penalty = ActivityPenalty(student, teacher, activity) if activity else None
    t0, losses, ratios, history = time.time(), [], [], []
    stopped_at = None
    try:
        for step in range(steps):
            if time_limit_s is not None and time.time() - t0 > time_limit_s:
                stopped_at = step
                log(f"qat: time limit {time_limit_s:.0f} s reached at step {step}/{steps}")
                break
            batch = sample(gen, step)
            batch = tuple(b.to(dev) if isinstance(b, torch.Tensor) else b for b in batch) \
                if isinstance(batch, tuple) else batch.to(dev)
            args = inputs_of(batch)
            with torch.no_grad():
                t_out = teacher(*args)
            s_out = student(*args)
            loss = alpha * dloss(s_out, t_out, temperature) if alpha > 0 else 0.0
            if alpha < 1.0:
                loss = loss + (1.0 - alpha) * task_loss(s_out, batch)
            if penalty is not None:
                ratio = penalty.ratio()
                loss = loss + activity_weight * torch.relu(ratio - activity_budget)
                ratios.append(float(penalty.hard_ratio()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # progress: by steps, or by time when a time limit is given (whichever is further on)
            prog = step / max(1, steps)
            if time_limit_s:
                prog = max(prog, (time.time() - t0) / time_limit_s)
            wu = warmup / max(1, steps)
            frac = min(1.0, (step + 1) / warmup) if step < warmup else \
                0.5 * (1 + math.cos(math.pi * min(1.0, (prog - wu) / max(1e-9, 1 - wu))))  # cosine decay
            for g, b in zip(opt.param_groups, base):
                g["lr"] = b * frac
            opt.step()
            losses.append(float(loss.detach()))
            if log_every and (step + 1) % log_every == 0:
                row = {"step": step + 1, "loss": sum(losses[-log_every:]) / log_every,
                       "time_s": time.time() - t0}
                if ratios:
                    row["activity"] = sum(ratios[-log_every:]) / log_every
                history.append(row)
                log(f"qat step {step + 1}/{steps} loss {row['loss']:.5f}"
                    + (f" activity {row['activity']:.4f}" if ratios else "") + f" ({row['time_s']:.0f} s)")
    finally:
        if penalty is not None:
            penalty.remove()
    student.cpu().eval()
    teacher.cpu()
    stats = {"steps": steps, "lr": lr, "alpha": alpha, "temperature": temperature, "distill": distill,
             "warmup": warmup, "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])) if losses else None,
             "time_s": time.time() - t0, "device": str(dev), "history": history,
             "stopped_at": stopped_at}
    if penalty is not None:
        stats.update(activity_budget=activity_budget, activity_weight=activity_weight,
                     final_activity=sum(ratios[-20:]) / len(ratios[-20:]) if ratios else None)
    if hasattr(student, "snmfm_qat"):
        student.snmfm_qat["trained"] = stats
    return stats


def task_adapter(task, batch_size: int = 64) -> dict:
    """`finetune` keyword arguments for a classify or lm task of `snmfm.tasks`: sample from the
    task's training stream, inputs = all but the last element, loss = cross-entropy on the last."""
    if task.kind not in ("classify", "lm"):
        return {"sample": lambda g, s: task.sample(g, batch_size, s), "inputs_of": lambda b: tuple(b[:-1])}

    def loss(out, batch):
        y = batch[-1]
        return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))
    return {"sample": lambda g, s: task.sample(g, batch_size, s), "inputs_of": lambda b: tuple(b[:-1]),
            "task_loss": loss}


def qat(model: nn.Module, sample: Callable, w_bits: int = 8, a_bits: int = 8, *,
        overrides: Mapping | None = None, steps: int = 200, scales: dict | None = None,
        **finetune_kw) -> nn.Module:
    """calibrated float model -> QAT-fine-tuned QANN (prepare_qat, finetune against the float
    model itself as teacher, freeze)."""
    student = prepare_qat(model, w_bits, a_bits, overrides=overrides, scales=scales)
    finetune(student, model, sample, steps=steps, **finetune_kw)
    return freeze(student)


# ---- after training: weight-space averaging and step scaling ------------------------------------
def _int_weight_layers(qann: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in quant_layers(qann).items() if isinstance(m, WEIGHT_LAYERS) and getattr(m, "is_int", False)}


@torch.no_grad()
def average_qanns(qanns: list[nn.Module], weights: list[float] | None = None) -> nn.Module:
    """One QANN from the weighted average of several QANNs of the same model and bit plan.

    A model soup (Wortsman et al., ICML 2022) of fine-tuned QANNs, or with the un-trained start
    (`freeze(prepare_qat(...))`) a WiSE-FT interpolation (Wortsman et al., CVPR 2022) that pulls an
    over-fitted QAT back towards the pretrained weights.  Each integer weight layer's dequantised
    weights (w_int * s_w) are averaged and re-quantised at the weighted geometric mean of the
    per-channel steps (clamped to the layer's bits, as `freeze` rounds LSQ weights); embedding
    tables (max-abs rows) re-quantised at the plan's ``embed_bits``; activation steps by the
    weighted geometric mean (steps are scales); every other float tensor (biases,
    LayerNorm, smoothing divisors must agree) by the weighted mean.  Integer windows stay: the
    QANNs must have the same quantizer windows and weight bits, else ValueError.  The result is a
    QANN like any other (integer codes), so `converters.convert` reproduces it exactly."""
    if not qanns:
        raise ValueError("average_qanns needs at least one QANN")
    weights = [1.0 / len(qanns)] * len(qanns) if weights is None else [float(w) for w in weights]
    if len(weights) != len(qanns):
        raise ValueError(f"{len(weights)} weights for {len(qanns)} QANNs; give one weight per QANN")
    if min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-9:
        raise ValueError(f"weights must be >= 0 and sum to 1, got {weights}")
    out = copy.deepcopy(qanns[0])
    sds = [q.state_dict() for q in qanns]
    keys = list(sds[0])
    for i, sd in enumerate(sds[1:], 1):
        if list(sd) != keys or any(sd[k].shape != sds[0][k].shape for k in keys):
            raise ValueError(f"QANN {i} is not the same model as QANN 0 (state keys or shapes differ)")
    zq = [dict(quantizers(q)) for q in qanns]
    for name, qz in quantizers(out):
        for i, d in enumerate(zq[1:], 1):
            if (d[name].qmin, d[name].qmax) != (qz.qmin, qz.qmax):
                raise ValueError(f"quantizer {name}: window [{d[name].qmin}, {d[name].qmax}] in QANN {i} vs "
                                 f"[{qz.qmin}, {qz.qmax}] in QANN 0; only QANNs of one bit plan can be averaged")
        qz.scale = torch.exp(sum(w * torch.log(d[name].scale) for w, d in zip(weights, zq))).reshape(()).to(qz.scale)
    zl = [_int_weight_layers(q) for q in qanns]
    skip = set()
    for name, layer in _int_weight_layers(out).items():
        if any(d[name].w_bits != layer.w_bits for d in zl):
            raise ValueError(f"layer {name}: weight bits differ between the QANNs")
        shape = (-1, *[1] * (layer.w_int.dim() - 1))
        w = sum(wt * d[name].w_int * d[name].w_scale.reshape(shape) for wt, d in zip(weights, zl))
        s = torch.exp(sum(wt * torch.log(d[name].w_scale) for wt, d in zip(weights, zl)))
        qmax = 2 ** (layer.w_bits - 1) - 1
        layer.set_int_weight(torch.clamp(torch.round(w / s.reshape(shape)), -qmax, qmax), s, layer.w_bits)
        skip |= {f"{name}.w_int", f"{name}.w_scale"}
    skip |= {f"{name}.scale" for name, _ in quantizers(out)}
    sd = out.state_dict()
    for k in keys:
        if k in skip or not sd[k].is_floating_point():
            continue
        if k.endswith("in_div") and any(not torch.equal(s[k], sds[0][k]) for s in sds):
            raise ValueError(f"{k}: the smoothing divisors differ; only QANNs of one smoothed model can be averaged")
        sd[k].copy_(sum(w * s[k] for w, s in zip(weights, sds)))
    info = dict(getattr(out, "snmfm_quant", {}))
    eb = info.get("embed_bits")
    if eb:
        for m in out.modules():
            if isinstance(m, nn.Embedding):
                w_int, s = quantize_weight(m.weight, eb)
                m.weight.copy_(w_int * s[:, None])
    out.snmfm_quant = {**info, "average": {"weights": weights, "n": len(qanns)}}
    return out.eval()


def scale_steps(qann: nn.Module, factor: float) -> nn.Module:
    """A copy of `qann` with every activation step multiplied by `factor` (integer windows kept).

    factor < 1 gives finer codes -- more nonzero codes, i.e. more graded-chip events and energy,
    less rounding error; where a QAT left energy below its budget this spends it."""
    if not factor > 0:
        raise ValueError(f"step factor must be > 0, got {factor}")
    out = copy.deepcopy(qann)
    for _, qz in quantizers(out):
        qz.scale = qz.scale * float(factor)
    info = dict(getattr(out, "snmfm_quant", {}))
    out.snmfm_quant = {**info, "step_scale": float(factor) * float(info.get("step_scale", 1.0))}
    return out
