"""QANN -> SNN: `convert` and the time-batched `SpikingModel`.

`convert(qann, coding=...)` deep-copies the QANN and puts a spiking unit (`IFNeuron`) of one coding
(converters.codings: "binary" signed IF neurons by default, "graded", "sigma-delta") wherever a
quantizer stood.  Every other operation is unchanged, and in the spiking model each of them is applied to the
*accumulated* spike counts of its inputs at each time step:

* linear / conv / embedding layers on counts: W @ n_t = sum over steps of W @ spikes, exactly (integer
  arithmetic), so the layer's output increments are the event-driven accumulates of its input spikes;
* a product of two spiking tensors A_t B_t: its increments are a_t B_{t-1} + A_{t-1} b_t + a_t b_t
  (the increment identity), again exact integers;
* non-spiking units (softmax, LayerNorm, GELU, tanh) evaluate f(X_t) on the accumulated input; their
  differenced output f(X_t) - f(X_{t-1}) is what a digital unit would send, and the next neuron
  integrates it.  They are recorded as unit calls, never as spikes.

Time-batched: a chunk of `steps` time steps runs as one batch of steps * B inputs (time-major), so
each layer does one big matmul per chunk and only the neurons loop over steps.  Chunks continue until
the network is quiet (no spike in a step: from then on nothing changes) or until a fixed T.  A
coding whose counts reach their targets in one step (graded, sigma-delta) is quiet after step 1 by
the proof in converters/codings/graded.py, so a run until quiet stops there.

Streams (`stream(xs)`): one run per input; under a coding that keeps state (sigma-delta) every
count starts at its final value of the previous input, so only changed codes send events.

Incremental decoding (`run(..., caches=...)`): the caches hold the same real-valued keys and values
of earlier positions as the QANN's (`DecoderLM.new_caches()`), taken from the last step of the runs
that computed them, i.e. once those runs had settled.  Each chunk sees them repeated over its
steps, and the key and value neurons of every attention block start the run with the cached
positions at their settled counts (`IFNeuron.settled`): those neurons are quiet from step 1 and
send no spike again, so a cached step costs only the new positions' events, and settles to the
QANN's cached step exactly.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from converters import _alloc, _triton, codings
from converters.neurons import IFNeuron
from converters.trace import _COUNTERS as _COUNTER_FIELDS
from converters.trace import ActivityTrace, TraceRecorder
from snmfm.models.blocks import Attention
from snmfm.nn import NonSpiking, quantizers


# Split a CPU run over the batch into one shard per thread (SpikingModel._run_sharded);
# SNMFM_SHARD=0 keeps one run over the whole batch, parallel inside each operation instead.
SHARDING = os.environ.get("SNMFM_SHARD", "1") != "0"
# Drop samples that have gone quiet from the rest of a run (converters.snn._compact);
# SNMFM_COMPACT=0 keeps every sample to the end (an A/B switch: the results are the same).
COMPACTING = os.environ.get("SNMFM_COMPACT", "1") != "0"


class ConversionError(ValueError):
    """The model cannot be converted; the message names the module and what is supported."""


SUPPORTED = ("snmfm.nn: QuantLinear, QuantConv2d, QuantFeatureEmbed, QuantMatMul, Quantizer, "
             "LayerNorm, Softmax, GELU, Tanh; torch.nn: Embedding, ReLU, Dropout (eval), Identity, "
             "Flatten, Sequential, ModuleList, ModuleDict, Conv2d/Linear only inside Quant* layers")

_ALLOWED_TORCH = (nn.Embedding, nn.ReLU, nn.Dropout, nn.Identity, nn.Flatten, nn.Sequential,
                  nn.ModuleList, nn.ModuleDict, nn.LayerNorm, nn.Linear, nn.Conv2d)


def _check_supported(qann: nn.Module) -> None:
    import snmfm.nn as snn_ops
    for name, m in qann.named_modules():
        mod = type(m).__module__
        if mod.startswith("snmfm.") or isinstance(m, _ALLOWED_TORCH):
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                parent = name.rsplit(".", 1)[0] if "." in name else ""
                owner = qann.get_submodule(parent) if parent else qann
                if not isinstance(owner, (snn_ops.QuantLinear, snn_ops.QuantConv2d)):
                    raise ConversionError(
                        f"unsupported module {name!r} ({type(m).__name__}): a bare {type(m).__name__} "
                        f"has no input quantizer. Build the model from snmfm.nn layers or map it with "
                        f"converters.from_hf / converters.from_sequential. Supported: {SUPPORTED}")
            continue
        if name == "":
            continue  # the root may be any container class that only wires children
        if list(m.children()):
            continue  # user containers are fine; their leaves are checked
        raise ConversionError(f"unsupported module {name!r} of type {type(m).__module__}.{type(m).__name__}. "
                              f"Supported: {SUPPORTED}")


def convert(qann: nn.Module, coding="binary", **options) -> "SpikingModel":
    """Convert a QANN (from `snmfm.compress.quantize`) into a SpikingModel that reproduces it exactly.

    coding: a registered coding name (`converters.codings.names()`) or a Coding object; options
    go to the coding (e.g. ``gate="settled"`` for binary)."""
    coding = codings.get(coding, **options)
    qs = quantizers(qann)
    if not qs:
        raise ConversionError("model has no Quantizer sites: quantize it first "
                              "(snmfm.compress.calibrate + snmfm.compress.quantize)")
    for name, q in qs:
        if q.mode != "int":
            raise ConversionError(f"quantizer {name!r} is in mode {q.mode!r}, not 'int': the model is "
                                  "not a QANN; run snmfm.compress.quantize on the calibrated model")
    _check_supported(qann)
    for name, q in qs:  # a site the coding cannot carry is named before anything is copied
        try:
            coding.check(q.spec(), name)
        except ValueError as e:
            raise ConversionError(str(e)) from e
    net = copy.deepcopy(qann).eval()
    for name, q in quantizers(net):
        parent_name, _, attr = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, attr, IFNeuron(q, name, coding))
    return SpikingModel(net, meta=dict(getattr(qann, "snmfm_quant", {})), coding=coding, source_qann=qann)


@dataclass
class StreamResult:
    """What `stream(xs)` returns: per input its output (== the QANN on that input), its trace (its
    own steps), its T_settle and its number of steps."""

    outputs: list
    traces: list
    t_settle: list
    steps: list

    @property
    def events(self) -> list[int]:
        """Events per input (summed over the batch), or [] without traces."""
        return [t.total_events() for t in self.traces if t is not None]


@dataclass
class SNNResult:
    """What a run returns: the output after the last step, optionally every step's output, and the
    activity trace.  `t_settle` is the last step with a spike (None if still spiking at the end)."""

    output: torch.Tensor
    steps: int
    t_settle: int | None
    trace: ActivityTrace | None
    per_step: torch.Tensor | None = None  # [steps, B, ...] when keep_steps
    extra: dict = field(default_factory=dict)


def _chunk_sizes(limit: int, cap: int, first: int):
    """Time steps per chunk: `first` steps (in chunks of at most `cap`), then 1, 1, 2, 2, 4, 4, ...
    (<= cap): a network that settles a few steps after `first` (the depth of the network, at
    4-bit activations often 1-3 steps) is seen quiet one step later, and a long tail still runs in
    growing chunks, overshooting its settling step by at most about a third."""
    left = max(1, min(first, limit))
    while left > 0:
        yield min(left, cap)
        left -= min(left, cap)
    k = 1
    while True:
        for _ in range(2):
            yield max(1, min(k, cap))
        k *= 2


class SpikingModel(nn.Module):
    """A converted model.  `run(*inputs, T=None)` simulates it; `T=None` runs until quiet;
    `stream(xs)` runs a sequence of inputs.  `coding` names its coding, `source_qann` is the QANN
    it was converted from (kept out of the module tree: not a submodule, not in its state)."""

    def __init__(self, net: nn.Module, meta: dict | None = None, coding=None, source_qann=None):
        super().__init__()
        self.net = net
        self.meta = meta or {}
        self.coding_spec = codings.get(codings.DEFAULT if coding is None else coding)
        self.__dict__["source_qann"] = source_qann  # plain attribute: not registered as a submodule

    @property
    def coding(self) -> str:
        return self.coding_spec.name

    def neurons(self) -> list[tuple[str, IFNeuron]]:
        return [(n, m) for n, m in self.net.named_modules() if isinstance(m, IFNeuron)]

    def quant_specs(self) -> dict:
        """Site name -> its frozen snmfm.nn.QuantSpec (bits, signed, qmin, qmax, scale)."""
        return {n: m.spec for n, m in self.neurons()}

    def units(self) -> list[tuple[str, NonSpiking]]:
        return [(n, m) for n, m in self.net.named_modules() if isinstance(m, NonSpiking)]

    def forward(self, *inputs, **kw):
        return self.run(*inputs, **kw).output

    @torch.no_grad()
    def run(self, *inputs, T: int | None = None, max_T: int | None = None, chunk: int | None = None,
            record: bool = True, keep_steps: bool = False, step_fn=None,
            caches: list[dict] | None = None, entry: str | None = None,
            forward_kw: dict | None = None, threads: int | None = None) -> SNNResult:
        return self._run(inputs, T=T, max_T=max_T, chunk=chunk, record=record, keep_steps=keep_steps,
                         step_fn=step_fn, caches=caches, entry=entry, forward_kw=forward_kw, threads=threads)

    def _run(self, inputs, *, T=None, max_T=None, chunk=None, record=True, keep_steps=False, step_fn=None,
             caches=None, entry=None, forward_kw=None, carry=False, prev_units=None, threads=None,
             chunk_batch=None) -> SNNResult:
        """Simulate on a batch of inputs (the model's positional inputs, batch first).

        T: fixed number of time steps; None runs until the network is quiet (at most max_T steps;
        default 4096, and for a gated coding the bound of its sequential settling, the sum over
        sites of their longest walk, when that is larger).
        chunk: time steps per batched chunk (default: one probe step, then as many steps as keep
        the largest neuron input of a chunk within about 4 MB, at most 8).
        keep_steps: also return the output of every step ([steps, B, ...]).
        step_fn: called as step_fn(t0, outputs[chunk, B, ...]) after each chunk (accuracy per step
        without keeping every output).
        caches: KV caches of a decoder (`new_caches()` of the model, or of `entry`), passed to the
        forward as ``caches=`` and updated in place with the new positions' settled keys/values;
        cached positions start at their settled counts (module docstring).
        entry: run this submodule instead of the whole model (e.g. "decoder" of a MultimodalLM
        for decode steps after the image prefix is cached); its neurons alone decide quiet.
        forward_kw: further keyword arguments of the forward (not repeated over time; e.g.
        ``{"start_pos": n}``).
        threads: CPU threads of the run (default torch.get_num_threads()).  On the CPU a run with
        n >= 2 threads and a batch of >= 2 is split into min(n, B) shards of samples that run side
        by side, one thread each, on replicas of the network that share its weights (`_shard_plan`
        says when, `_run_sharded` why); the result (outputs, trace, T_settle, steps) is the same as
        one run over the whole batch.  threads=1 runs the batch as one, torch's and the kernels'
        threads parallel inside each operation.
        (Internal, used by `stream`: carry starts every count at its final value of the previous
        run; prev_units are the non-spiking units' previous inputs for the trace.  chunk_batch: the
        batch the chunks are sized for, a shard's whole run's.)"""
        if T is not None and (not isinstance(T, int) or T < 1):
            raise ValueError(f"T must be an integer >= 1 (or None to run until quiet), got {T!r}")
        if max_T is None:
            max_T = 4096
            if self.coding_spec.gated:  # each site walks at most max(|qmin|, qmax) steps once opened
                max_T = max(max_T, sum(max(-n.qmin, n.qmax) + 1 for _, n in self.neurons()) + 1)
        if max_T < 1:
            raise ValueError(f"max_T must be >= 1, got {max_T}")
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        if not tensors:
            raise ValueError("run needs at least one input tensor")
        for x in tensors:
            if torch.is_floating_point(x) and not torch.isfinite(x).all():
                raise ValueError("input contains NaN or Inf; the SNN (like the QANN) needs finite inputs")
        B = tensors[0].shape[0]
        device = tensors[0].device
        shards = self._shard_plan(inputs, B, device, threads, forward_kw,
                                  step_fn=step_fn, caches=caches, carry=carry, prev_units=prev_units)
        if shards > 1:
            return self._run_sharded(inputs, B, shards, T=T, max_T=max_T, chunk=chunk, record=record,
                                     keep_steps=keep_steps, entry=entry, forward_kw=forward_kw)
        _alloc.tune()  # keep freed chunk-sized tensors mapped (converters/_alloc.py says why)
        net = self.net if entry is None else self.net.get_submodule(entry)
        kw = dict(forward_kw or {})
        if caches is not None:
            if any(not isinstance(c, dict) for c in caches):
                raise TypeError("caches must be a list of dicts (model.new_caches())")
            for c in caches:
                if "k" in c and c["k"].shape[0] != B:
                    raise ValueError(f"a cache holds a batch of {c['k'].shape[0]}, the inputs {B}")
        limit = T if T is not None else max_T
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 time step, got {chunk}")
        auto = chunk is None  # a 1-step probe first, then chunks sized by the activations seen
        cap = 1 if auto else min(chunk, limit)
        prefix = "" if entry is None else entry + "."
        neurons = [(prefix + n, m) for n, m in net.named_modules() if isinstance(m, IFNeuron)]
        coding = self.coding_spec
        if T is None and coding.one_step:
            limit = 1  # quiet after step 1 (converters/codings/graded.py proves it)
        # Until quiet: no neuron can settle before it has walked to its largest code, so the first
        # chunks cover that walk; later chunks grow geometrically (1, 1, 2, 2, 4, 4, ...) so few
        # steps are simulated past the settling step (`_chunk_sizes`).
        levels = max((max(abs(n.qmin), n.qmax) for _, n in neurons), default=1)
        first = levels + 2 if T is None else limit
        sizes = None if auto else _chunk_sizes(limit, cap, first=first)
        recorder = TraceRecorder(B, coding.name) if record else None
        if recorder is not None and prev_units:
            recorder.prev_inputs.update(prev_units)
        # A sample that has gone quiet stays quiet (the argument below holds per sample), so it
        # leaves the batch (`_compact`) where every site runs the CPU kernels and no hook but the
        # trace's own sees the batch.
        compactable = (COMPACTING and T is None and not coding.one_step and not coding.gated and step_fn is None
                       and not keep_steps and caches is None and not carry and device.type == "cpu"
                       and not _has_hooks(net))
        hooks = []
        for name, n in neurons:
            n.reset(carry=carry)
            n.recorder = recorder
        if caches is not None:
            for m in net.modules():
                if isinstance(m, Attention):
                    hooks.append(m.register_forward_pre_hook(_settle_cached_kv(B), with_kwargs=True))
        if record:
            for name, u in net.named_modules():
                if isinstance(u, NonSpiking):
                    hooks.append(u.register_forward_pre_hook(self._unit_hook(recorder, prefix + name, u.kind)))
            for name, m in net.named_modules():
                if isinstance(m, nn.Embedding):
                    hooks.append(m.register_forward_pre_hook(self._embed_hook(recorder, prefix + name)))
        # Quiet = no neuron spiked in the last step run.  Inputs are constant after step 1, so every
        # count then equals its target and no target can move again: the network stays quiet.
        # compacted runs: the samples still running (indices into the batch), every sample's output
        # and, per neuron and unit, the final state of the samples that left (`_hold`)
        active, out_all, held = None, None, {}
        kept, done, quiet, out = [], 0, False, None
        try:
            while done < limit and not quiet:
                if sizes is None and done > 0:
                    cap = _auto_chunk(neurons, B, limit, device, scale=(chunk_batch or B) / B)
                    sizes = _chunk_sizes(limit - done, cap, first=max(1, first - done))
                steps = 1 if sizes is None else min(next(sizes), limit - done)
                self._steps = steps
                gate = torch.ones((steps, B), dtype=torch.uint8, device=device) if coding.gated else None
                for _, n in neurons:
                    n.steps = steps
                    n.step0 = done
                    n.gate = gate
                    # tells the consumers which chunk runs (snmfm/rowskip.py: rows whose input
                    # did not change since the previous step may be skipped)
                    n.__dict__["time_chunk"] = (done, steps)
                if recorder is not None:
                    recorder.step0 = done
                big = [_repeat(x, steps) if isinstance(x, torch.Tensor) else x for x in inputs]
                if caches is not None:
                    step_caches = [{k: _repeat(v, steps) for k, v in c.items()} for c in caches]
                    kw["caches"] = step_caches
                y = net(*big, **kw)
                y = y.reshape(steps, B, *y.shape[1:])
                if keep_steps:
                    kept.append(y)
                if step_fn is not None:
                    step_fn(done, y)
                out = y[-1]
                done += steps
                if T is None and coding.one_step:
                    quiet = True
                elif T is None and gate is not None:
                    # gated: quiet once every site is settled for every sample (binary.py)
                    quiet = not neurons or bool(gate[-1].all())
                elif T is None:
                    quiet = _all_quiet(neurons)
                if not quiet and compactable:
                    settled = _quiet_samples(neurons, steps)
                    if settled is not None and settled.any():
                        if out_all is None:
                            out_all, active = out.clone(), torch.arange(B)
                        out_all[active] = out
                        keep = torch.from_numpy(np.flatnonzero(~settled))
                        inputs = [x.index_select(0, keep) if isinstance(x, torch.Tensor) else x for x in inputs]
                        _compact(net, neurons, recorder, keep.numpy(), active, held)
                        active = active[keep]
                        B = len(keep)
        finally:
            for h in hooks:
                h.remove()
            for _, n in neurons:
                n.recorder = None
                n.settled = None
                n.gate = None
                n.carry = None
                n.__dict__["time_chunk"] = None
            for m in net.modules():  # rows kept from the run's last step (snmfm/rowskip.py)
                m.__dict__.pop("_rowskip", None)
        if caches is not None:  # the settled (last-step) keys and values of every position
            for c, sc in zip(caches, step_caches):
                c.update({k: v[-B:].clone() for k, v in sc.items()})
        # quiet by proof at the last step run (a one-step coding): its last event is T_settle
        proven = T is None and coding.one_step
        trace = recorder.finish(done, settled=proven) if recorder is not None else None
        t_settle = trace.t_settle if trace is not None else None
        if T is None and not quiet:
            raise RuntimeError(f"the SNN did not go quiet within max_T={max_T} steps; raise max_T")
        if trace is None:  # no recorder: the neurons tracked their last spike
            last = _last_spike_step(neurons)
            t_settle = last if last < done or proven else None
        if out_all is not None:  # every sample's output, final counts and units' last inputs
            out_all[active] = out
            out = out_all
            for name, n in neurons:
                n.__dict__["count"] = _restore(held, name, n.count, active)
            if recorder is not None:
                for name, p in recorder.prev_inputs.items():
                    recorder.prev_inputs[name] = _restore(held, name, p, active)
        res = SNNResult(output=out, steps=done, t_settle=t_settle, trace=trace,
                        per_step=torch.cat(kept) if keep_steps else None)
        if recorder is not None:
            res.extra["unit_inputs"] = {k: v for k, v in recorder.prev_inputs.items()
                                        if recorder.kinds.get(k) not in (None, "neuron")}
        return res

    def _shard_plan(self, inputs, B: int, device, threads, forward_kw, *, step_fn, caches, carry,
                    prev_units) -> int:
        """How many shards of samples a run is split into (1: not split).  Split only where the
        pieces are independent and their results merge into the whole run's exactly: on the CPU,
        every tensor input batch-first with B rows, no step_fn (it sees whole-batch outputs per
        chunk), no caches or carried state (a stream), no tensor among forward_kw, and nothing
        attached to the network that a replica would not carry: no forward hooks (user probes,
        snmfm.faults injectors), no fault hook or wrapped `codes` on a neuron (converters.faults,
        neuro_hw's event-exact recorder)."""
        n = torch.get_num_threads() if threads is None else int(threads)
        if threads is not None and n < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        n = min(n, B)
        if n < 2 or not SHARDING or device.type != "cpu" or _triton.interpreting():
            return 1  # (Triton's CPU interpreter, a test mode, keeps global state: one thread)
        if step_fn is not None or caches is not None or carry or prev_units:
            return 1
        if any(isinstance(x, torch.Tensor) and (x.dim() == 0 or x.shape[0] != B or x.device != device)
               for x in inputs):
            return 1
        if any(isinstance(v, torch.Tensor) for v in (forward_kw or {}).values()):
            return 1
        if _has_hooks(self.net):
            return 1
        if any(n.fault is not None or "codes" in n.__dict__ for _, n in self.neurons()):
            return 1
        return n

    def _replicas(self, n: int) -> list["SpikingModel"]:
        """n SpikingModels on copies of the network's module tree (`_clone_modules`) that share
        its parameters, buffers and every other attribute value, made afresh for each sharded
        run: a module attribute changed between runs is then never stale in a replica."""
        for _, neuron in self.neurons():  # a run starts from reset neurons anyway
            neuron.reset()
        return [SpikingModel(_clone_modules(self.net), meta=self.meta, coding=self.coding_spec,
                             source_qann=self.source_qann) for _ in range(n)]

    def _run_sharded(self, inputs, B: int, shards: int, *, T, max_T, chunk, record, keep_steps, entry,
                     forward_kw) -> SNNResult:
        """A run split into `shards` contiguous slices of the batch, each on its own thread and
        replica of the network (`_replicas`), one torch and kernel thread each (or
        threads // shards), merged into the result of one run over the whole batch.

        Why: the samples of a batch never interact, so the slices need no synchronisation at all,
        whereas one run over the batch on n threads forks and joins both thread pools (torch's
        OpenMP and numba's) in every operation of every chunk, for operations of 0.1-1 ms.  On 2
        cores (bench_snn, text, W8A8, binary, trace on, best of 3) a sharded run took 0.69x the
        time of the intra-op parallel one without compaction (`_compact`), about the same with
        it.  The kernels and torch release the GIL, so the threads' C work overlaps; only their
        Python (about a tenth of a run) takes turns.

        Why the merge is exact: a sample's counts depend on that sample alone (the ops are row-wise
        or per sample, integer GEMMs are exact in any order), every shard runs the whole batch's
        chunk schedule (`chunk_batch`), and a sample that has gone quiet stays quiet, so the shard
        that holds the last sample to settle stops where the whole run would, the others earlier
        with nothing but quiet steps left: outputs are concatenated, traces merged
        (`converters.trace.merge_traces`, shorter ones padded with quiet steps), per-step outputs
        padded with their last step."""
        from converters.trace import merge_traces
        total = torch.get_num_threads()
        per = max(1, total // shards)
        bounds = [(i * B // shards, (i + 1) * B // shards) for i in range(shards)]
        parts = [tuple(x[a:b] if isinstance(x, torch.Tensor) else x for x in inputs) for a, b in bounds]
        replicas = self._replicas(shards)

        def work(i):
            torch.set_num_threads(per)  # this thread's intra-op threads (OpenMP's are per thread)
            with torch.no_grad():       # grad mode is per thread too
                return replicas[i]._run(parts[i], T=T, max_T=max_T, chunk=chunk, record=record,
                                        keep_steps=keep_steps, entry=entry, forward_kw=forward_kw,
                                        threads=1, chunk_batch=B)
        try:
            results = list(_shard_pool(shards).map(work, range(shards)))
        finally:
            torch.set_num_threads(total)  # the workers' set_num_threads also moved torch's default
        steps = max(r.steps for r in results)
        trace = merge_traces([r.trace for r in results]) if record else None
        if trace is not None:  # a lookup shared by the batch (position ids [L], site shape ()) is
            for name, site in results[0].trace.sites.items():  # counted once, as one run counts it
                if site.kind == "embed" and site.shape == ():
                    merged = trace.sites[name]  # (merge_traces made its arrays, steps long)
                    for k in _COUNTER_FIELDS:
                        a = getattr(merged, k)
                        a[:] = 0
                        a[:len(getattr(site, k))] = getattr(site, k)
        if trace is not None:
            t_settle = trace.t_settle
        else:
            settles = [r.t_settle for r in results]
            t_settle = None if any(v is None for v in settles) else max(settles)
        per_step = None
        if keep_steps:
            per_step = torch.cat([r.per_step if r.steps == steps else
                                  torch.cat([r.per_step, r.per_step[-1:].expand(steps - r.steps, *r.per_step.shape[1:])])
                                  for r in results], 1)
        res = SNNResult(output=torch.cat([r.output for r in results]), steps=steps, t_settle=t_settle,
                        trace=trace, per_step=per_step)
        if record:
            units = [r.extra.get("unit_inputs", {}) for r in results]
            res.extra["unit_inputs"] = {k: torch.cat([u[k] for u in units]) for k in units[0]}
        # the network's neurons end as one run would leave them: the last counts of every sample
        net = self.net if entry is None else self.net.get_submodule(entry)
        mine = [m for m in net.modules() if isinstance(m, IFNeuron)]
        theirs = [[m for m in (r.net if entry is None else r.net.get_submodule(entry)).modules()
                   if isinstance(m, IFNeuron)] for r in replicas]
        for k, m in enumerate(mine):
            m.reset()
            counts = [t[k].count for t in theirs]
            if all(c is not None for c in counts):
                m.count = torch.cat(counts)
        return res

    @torch.no_grad()
    def stream(self, xs, *, T: int | None = None, max_T: int | None = None, record: bool = True,
               caches: list[dict] | None = None, entry: str | None = None, forward_kw=None) -> StreamResult:
        """Run a sequence of inputs one after another: outputs[i] == the QANN on xs[i].

        xs: a tensor [N, B, ...] (N inputs of one batch), or a list of inputs, each a tensor or a
        tuple of the model's positional inputs, all of one shape.  Under a coding that keeps state
        (sigma-delta) each input starts where the previous one ended (counts, and the non-spiking
        units' previous inputs for the trace), so only codes that changed send events; other
        codings run each input from zero, as run() does.
        caches / entry: as in run(), shared by the inputs in order (a decoder fed one decode step
        after another: caches grow by each step's positions).
        forward_kw: a dict for every input, or a list of dicts, one per input (e.g. the
        ``start_pos`` of each decode step)."""
        items = [xs[i] for i in range(xs.shape[0])] if isinstance(xs, torch.Tensor) else list(xs)
        if not items:
            raise ValueError("stream needs at least one input")
        items = [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in items]
        sig0 = _signature(items[0])
        for i, x in enumerate(items[1:], 1):
            if _signature(x) != sig0:
                raise ValueError(f"stream needs inputs of one shape: input 0 is {_describe(sig0)}, "
                                 f"input {i} is {_describe(_signature(x))}; split the stream where the shape changes")
        if isinstance(forward_kw, (list, tuple)):
            if len(forward_kw) != len(items):
                raise ValueError(f"forward_kw has {len(forward_kw)} entries for {len(items)} inputs")
            kws = list(forward_kw)
        else:
            kws = [forward_kw] * len(items)
        keep = self.coding_spec.keeps_state
        outputs, traces, settle, steps = [], [], [], []
        units = None
        for i, (x, kw) in enumerate(zip(items, kws)):
            r = self._run(x, T=T, max_T=max_T, record=record, caches=caches, entry=entry, forward_kw=kw,
                          carry=keep and i > 0, prev_units=units if keep else None)
            units = r.extra.pop("unit_inputs", None)
            outputs.append(r.output)
            traces.append(r.trace)
            settle.append(r.t_settle)
            steps.append(r.steps)
        net = self.net if entry is None else self.net.get_submodule(entry)
        for m in net.modules():  # the stream's state does not leak into a later run()
            if isinstance(m, IFNeuron):
                m.reset()
        return StreamResult(outputs=outputs, traces=traces, t_settle=settle, steps=steps)

    run.__doc__ = _run.__doc__

    def _unit_hook(self, recorder, name, kind):
        def hook(module, args):
            recorder.unit(name, kind, args[0], self._steps)
        return hook

    def _embed_hook(self, recorder, name):
        def hook(module, args):
            recorder.embed(name, args[0], self._steps)
        return hook


# Elements of the largest neuron input a chunk may hold (2^19 float64 = 4 MB).  Larger chunks
# spend less Python per step but their tensors fall out of the caches: the GEMMs (K = 64-256, so
# bound by writing their outputs), the float64 epilogues and the non-spiking units then cost more
# per element than in the QANN.  Measured (bench_snn's models, batch 32, one thread, largest input
# 2^17 elements per step): 2-4 steps per chunk ran fastest, 1 step 10-20% slower (Python per
# step), 8 steps 5-15% slower; 32-64 steps up to 1.5x slower before the allocator settings of
# converters/_alloc.py (glibc unmapped and page-faulted tensors over 32 MB at every allocation).
_CHUNK_ELEMENTS = 2**19
_CHUNK_MAX = 8
# On a GPU a chunk is a few kernel launches per layer whatever its size, and launches and Python,
# not memory traffic, bound a step of a small model: chunks of up to 64 steps keep the device busy
# (eval/benchmarks/bench_gpu.py).  The element budget follows the device's free memory: about
# _GPU_LIVE float64 tensors of a chunk's largest neuron input are alive at once, and a quarter of
# the free memory is left to the model and the allocator; never below 2^25 elements (256 MB of
# float64, what a 16 GB card holds comfortably) nor above 2^28 (2 GB per tensor).  With the fixed
# 2^25, GPT-2-small at batch 32 x 128 (12.6 M elements per MLP step) ran 2 steps per chunk.
_CHUNK_ELEMENTS_GPU = 2**25
_CHUNK_ELEMENTS_GPU_MAX = 2**28
_GPU_LIVE = 12
_CHUNK_MAX_GPU = 64


def _gpu_chunk_elements(device: torch.device) -> int:
    """Element budget of one chunk's largest neuron input on `device` (see above)."""
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError, ValueError):  # not a CUDA device (e.g. mps): the floor
        return _CHUNK_ELEMENTS_GPU
    fit = int(0.75 * free) // (8 * _GPU_LIVE)
    return int(min(_CHUNK_ELEMENTS_GPU_MAX, max(_CHUNK_ELEMENTS_GPU, fit)))


def _clone_modules(m: nn.Module) -> nn.Module:
    """A copy of a module tree: new module objects, each with its own attribute dict and its own
    copies of the containers in it (parameters, buffers, submodules, hook tables, a neuron's
    state dict), sharing every value (tensors, codings, numbers).  A run only rebinds a module's
    attributes and registers hooks on its own tables, so replicas never see each other's state.
    Why not copy.deepcopy with the tensors in its memo: it took 4.4 ms per replica of `text`
    small (62 modules), against a 4-bit run of about 100 ms; this takes 1.9 ms."""
    new = m.__class__.__new__(m.__class__)
    d = {k: (copy.copy(v) if isinstance(v, (dict, list, set)) else v) for k, v in m.__dict__.items()}
    d["_modules"] = {k: None if v is None else _clone_modules(v) for k, v in m._modules.items()}
    new.__dict__.update(d)
    return new


_POOL: list = [None, 0, 0]  # the shards' thread pool, its size and the process that made it


def _shard_pool(n: int):
    """A thread pool of at least n threads, kept for later runs: its threads keep their malloc
    arenas (warm, already faulted in) from one run to the next.  A forked child makes its own
    (the parent's threads do not exist there, and the inherited pool would wait for them)."""
    if _POOL[1] < n or _POOL[2] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor
        if _POOL[0] is not None and _POOL[2] == os.getpid():
            _POOL[0].shutdown(wait=False)
        _POOL[:] = [ThreadPoolExecutor(max_workers=n, thread_name_prefix="snmfm-shard"), n, os.getpid()]
    return _POOL[0]


def _has_hooks(net: nn.Module) -> bool:
    """Forward hooks anywhere in `net` or global ones (a user's probe would see the batch)."""
    mod = torch.nn.modules.module
    if mod._global_forward_hooks or mod._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def _quiet_samples(neurons, steps: int):
    """Per sample of the chunk just run: no site sent an event at its last step (bool numpy [B]),
    from the CPU kernels' per-sample last event step; None where a site did not run them (the
    torch or GPU path, a fault hook)."""
    lasts = []
    for _, n in neurons:
        st = n._kstate
        if st is None or "last" not in st or n.fault is not None:
            return None
        lasts.append(st["last"])
    if not lasts:
        return None
    return np.maximum.reduce(lasts) < steps - 1


def _compact(net: nn.Module, neurons, recorder, keep: np.ndarray, active: torch.Tensor, held: dict) -> None:
    """Drop the samples that went quiet from a run's state: keep (sorted indices into the current
    batch, whose samples are `active`, indices into the run's batch) the samples that still run.
    A quiet sample's counts, targets and units' inputs never change again, so its remaining steps
    would record nothing and compute its output again; the run keeps its output, and `held` its
    final counts and units' inputs (`_hold`).  Exact: every kernel works per sample, and the
    trace's counts of a quiet sample are zero from then on (tests/test_shard.py checks runs with
    and without)."""
    B = len(active)
    for name, n in neurons:
        _hold(held, name, n.count, active)
        n.compact(keep, B)
    if recorder is not None:
        for name, p in recorder.prev_inputs.items():
            _hold(held, name, p, active)
        recorder.compact(keep, B)
    for m in net.modules():  # rows kept from the last step (snmfm/rowskip.py): of the old batch
        m.__dict__.pop("_rowskip", None)


def _hold(held: dict, key: str, cur: torch.Tensor, active: torch.Tensor) -> None:
    """Keep `cur` (per-sample state whose leading rows are the samples `active`, flat or [B, ...])
    in held[key], a store over the run's whole batch made at the first compaction."""
    rows = cur.reshape(len(active), -1)
    if key not in held:  # the first compaction: every sample of the run is still active
        held[key] = (rows.clone(), tuple(cur.shape))
    else:
        held[key][0][active] = rows


def _restore(held: dict, key: str, cur: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The whole batch's state at the end of a compacted run: held[key] with the samples still
    `active` at the end set from `cur`."""
    full, shape = held[key]
    full[active] = cur.reshape(len(active), -1).to(full.dtype)
    return full.reshape(shape)


def _all_quiet(neurons) -> bool:
    """Was the last step quiet at every site?  One host synchronisation for all sites: on a GPU
    each site leaves its flag as a device tensor (IFNeuron._codes_torch)."""
    flags = [n.last_step_quiet for _, n in neurons]
    if not all(f for f in flags if not torch.is_tensor(f)):
        return False
    ts = [f for f in flags if torch.is_tensor(f)]
    return not ts or bool(torch.stack(ts).all())


def _last_spike_step(neurons) -> int:
    """The last step with an event at any site (0: none); one synchronisation on a GPU."""
    vals = [n.last_spike_step for _, n in neurons]
    ts = [v for v in vals if torch.is_tensor(v)]
    host = max((int(v) for v in vals if not torch.is_tensor(v)), default=0)
    return max(host, int(torch.stack(ts).max())) if ts else host


def _auto_chunk(neurons, B: int, limit: int, device: torch.device | None = None, scale: float = 1.0) -> int:
    """Steps per chunk after the 1-step probe: as many as keep the largest neuron input (per step,
    seen in the probe) within _CHUNK_ELEMENTS, between 1 and _CHUNK_MAX.  scale: the batch the
    chunks are sized for over the batch run (a shard of a sharded run sizes its chunks as the
    whole batch would, so every shard runs the whole run's chunk schedule)."""
    largest = round(max((n.input_numel for _, n in neurons), default=1) * scale)
    gpu = device is not None and device.type != "cpu"
    budget, most = (_gpu_chunk_elements(device), _CHUNK_MAX_GPU) if gpu else (_CHUNK_ELEMENTS, _CHUNK_MAX)
    return int(max(1, min(most, limit, budget // max(1, largest))))


def _signature(inputs: tuple) -> tuple:
    return tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__ for x in inputs)


def _describe(sig: tuple) -> str:
    return ", ".join(f"{list(s[0])} {str(s[1]).replace('torch.', '')}" if isinstance(s, tuple) else s for s in sig)


def _repeat(x: torch.Tensor, steps: int) -> torch.Tensor:
    """x [B, ...] -> [steps * B, ...], time-major (step t is rows t*B .. t*B + B - 1)."""
    return x.repeat(steps, *([1] * (x.dim() - 1)))


def _settle_cached_kv(B: int):
    """Forward pre-hook of an Attention module: the key and value neurons start with the cached
    positions (the leading ones along the key axis) at their settled counts, the QANN codes of the
    cached keys/values; taken from the first B rows (every step repeats the same cache)."""
    def hook(module, args, kwargs):
        cache = args[2] if len(args) > 2 else kwargs.get("cache")
        if not cache or "k" not in cache:
            return
        k_site, v_site = module.qk.quant_b, module.av.quant_b
        if isinstance(k_site, IFNeuron) and k_site.count is None:
            k_site.settled = (k_site.targets(cache["k"][:B].transpose(-2, -1)), -1)  # K^T [B, H, hd, Lk]
        if isinstance(v_site, IFNeuron) and v_site.count is None:
            v_site.settled = (v_site.targets(cache["v"][:B]), -2)                    # V [B, H, Lk, hd]
    return hook
