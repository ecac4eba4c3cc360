"""Workload IR: one graph of `Op` records extracted once from a QANN; both hardware models read it.

Extraction runs the model once on an example input with forward hooks on its snmfm layers, so
shapes are real shapes.  Op names are module paths; `spike_inputs` names the ActivityTrace sites
(neurons) whose spikes drive the op in the SNN, and a non-spiking op's own name is its trace site.

Counts are per inference (per sample of the example batch): MACs, parameters, elements.
For GEMM-like ops `gemm` = (batch, M, K, N): `batch` independent M x K @ K x N products (heads).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from snmfm.nn import NonSpiking, QuantConv2d, QuantFeatureEmbed, QuantLinear, QuantMatMul, quantizers

OP_KINDS = ("linear", "conv", "feature_embed", "embed", "matmul_act", "softmax", "layernorm", "gelu",
            "tanh", "add")
NONSPIKING_KINDS = ("softmax", "layernorm", "gelu", "tanh")
# ops whose inputs are spikes fanned out over synapses (GEMM-like on the conventional accelerator)
SYNAPTIC_KINDS = ("linear", "conv", "feature_embed", "matmul_act")


@dataclass(frozen=True)
class Op:
    """One operation of the QANN (per inference).

    kind: one of OP_KINDS.  gemm: (batch, M, K, N) for linear/conv(im2col)/feature_embed/matmul_act,
    else None.  w_bits/a_bits: weight bits and input-activation bits (0 where not applicable).
    in_elems/out_elems: input and output elements; params: stored weights; macs: multiply-accumulates
    of the dense (non-spiking) evaluation.  producers: names of ops that feed it.  spike_inputs: trace
    sites (IF neurons) of its spiking inputs; for matmul_act [site of A, site of B].  signed: per spike
    input, whether -1 spikes exist."""

    name: str
    kind: str
    in_shape: tuple
    out_shape: tuple
    gemm: tuple | None = None
    w_bits: int = 0
    a_bits: int = 0
    macs: int = 0
    params: int = 0
    in_elems: int = 0
    out_elems: int = 0
    producers: tuple = ()
    spike_inputs: tuple = ()
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("in_shape", "out_shape", "gemm", "producers", "spike_inputs"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Op":
        d = dict(d)
        for k in ("in_shape", "out_shape", "producers", "spike_inputs"):
            d[k] = tuple(tuple(x) if isinstance(x, list) else x for x in d[k])
        d["gemm"] = tuple(d["gemm"]) if d.get("gemm") is not None else None
        if d["kind"] not in OP_KINDS:
            raise ValueError(f"unknown op kind {d['kind']!r}; allowed: {', '.join(OP_KINDS)}")
        return cls(**d)


@dataclass
class Workload:
    name: str
    ops: list[Op]
    meta: dict = field(default_factory=dict)

    SCHEMA = "snmfm.workload/1"

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(f"no op named {name!r} in workload {self.name!r}")

    @property
    def total_macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def total_params(self) -> int:
        return sum(o.params for o in self.ops)

    def weight_bits_total(self) -> int:
        return sum(o.params * o.w_bits for o in self.ops)

    def to_dict(self) -> dict:
        return {"schema": self.SCHEMA, "name": self.name, "meta": self.meta,
                "ops": [o.to_dict() for o in self.ops]}

    @classmethod
    def from_dict(cls, d: dict) -> "Workload":
        if d.get("schema") != cls.SCHEMA:
            raise ValueError(f"not an snmfm workload (schema {d.get('schema')!r}, expected {cls.SCHEMA!r})")
        return cls(name=d["name"], ops=[Op.from_dict(o) for o in d["ops"]], meta=d.get("meta", {}))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "Workload":
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"workload file {p} not found")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"workload file {p} is corrupt: {e}") from e


def _bits(q) -> int:
    return int(q.bits) if getattr(q, "bits", None) else 32


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@torch.no_grad()
def extract_workload(model: nn.Module, *inputs, name: str = "model") -> Workload:
    """Extract the Workload of `model` (a QANN, or a float model with snmfm quantizer sites, in which
    case activation bits are reported as 32) on example `inputs` (batch of any size; counts are
    per sample)."""
    tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
    if not tensors:
        raise ValueError("extract_workload needs example inputs")
    B = tensors[0].shape[0]
    records: list[dict] = []
    owner: dict[int, str] = {}  # storage pointer of an op's output -> op name
    alive: list[torch.Tensor] = []  # keep outputs alive so a freed pointer is never reused
    hooks = []

    def src(t: torch.Tensor) -> tuple:
        if not isinstance(t, torch.Tensor):
            return ()
        p = t.untyped_storage().data_ptr()
        return (owner[p],) if p in owner else ()

    def add(module_name: str, kind: str, args, out, **kw):
        producers = tuple(dict.fromkeys(p for a in args for p in src(a)))
        if not producers and records:
            # The input was made by a copy (reshape of a transpose, a residual add, a concat) that
            # no hook sees: it comes from the op just before, or from that op's residual add.
            prev = records[-1]["name"]
            producers = (prev + ".residual",) if prev.endswith((".attn.proj", ".mlp.fc2")) else (prev,)
        records.append(dict(name=module_name, kind=kind, producers=producers, **kw))
        owner[out.untyped_storage().data_ptr()] = module_name
        alive.append(out)

    names = {id(m): n for n, m in model.named_modules()}

    def hook(module, args, out):
        n = names[id(module)]
        x = args[0]
        if isinstance(module, QuantLinear):
            K, N = module.in_features, module.out_features
            M = _prod(x.shape[1:-1])
            add(n, "linear", args, out, in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:]),
                gemm=(1, M, K, N), w_bits=module.w_bits or 32, a_bits=_bits(module.quant),
                macs=M * K * N, params=K * N, spike_inputs=(f"{n}.quant",),
                extra={"bias": module.linear.bias is not None, "signed": [module.quant.signed]})
        elif isinstance(module, QuantConv2d):
            c = module.conv
            kh, kw = c.kernel_size
            K = c.in_channels * kh * kw
            M = _prod(out.shape[2:])
            N = c.out_channels
            add(n, "conv", args, out, in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:]),
                gemm=(1, M, K, N), w_bits=module.w_bits or 32, a_bits=_bits(module.quant),
                macs=M * K * N, params=K * N, spike_inputs=(f"{n}.quant",),
                extra={"kernel": [kh, kw], "stride": list(c.stride), "signed": [module.quant.signed],
                       "fanout_per_input": N * (kh // c.stride[0]) * (kw // c.stride[1]) or N})
        elif isinstance(module, QuantFeatureEmbed):
            Fn, d = module.weight.shape
            add(n, "feature_embed", args, out, in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:]),
                gemm=(Fn, 1, 1, d), w_bits=module.w_bits or 32, a_bits=_bits(module.quant),
                macs=Fn * d, params=Fn * d, spike_inputs=(f"{n}.quant",),
                extra={"signed": [module.quant.signed]})
        elif isinstance(module, QuantMatMul):
            a, b = args
            batch = _prod(a.shape[1:-2])
            M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
            add(n, "matmul_act", args, out, in_shape=tuple(a.shape[1:]), out_shape=tuple(out.shape[1:]),
                gemm=(batch, M, K, N), a_bits=max(_bits(module.quant_a), _bits(module.quant_b)),
                macs=batch * M * K * N, spike_inputs=(f"{n}.quant_a", f"{n}.quant_b"),
                extra={"b_shape": list(b.shape[1:]), "a_bits_each": [_bits(module.quant_a), _bits(module.quant_b)],
                       "signed": [module.quant_a.signed, module.quant_b.signed]})
        elif isinstance(module, NonSpiking):
            add(n, module.kind, args, out, in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:]),
                extra={"rows": _prod(x.shape[1:-1]), "width": int(x.shape[-1])})
        elif isinstance(module, nn.Embedding):
            add(n, "embed", args, out, in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:]),
                params=module.weight.numel(), w_bits=int(getattr(model, "snmfm_quant", {}).get("embed_bits", 32)),
                extra={"lookups": _prod(x.shape[1:]), "width": module.embedding_dim})

    for m in model.modules():
        if isinstance(m, (QuantLinear, QuantConv2d, QuantFeatureEmbed, QuantMatMul, NonSpiking, nn.Embedding)):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    ops = []
    for r in records:
        in_elems = _prod(r["in_shape"])
        out_elems = _prod(r["out_shape"])
        ops.append(Op(name=r["name"], kind=r["kind"], in_shape=r["in_shape"], out_shape=r["out_shape"],
                      gemm=r.get("gemm"), w_bits=r.get("w_bits", 0), a_bits=r.get("a_bits", 0),
                      macs=r.get("macs", 0), params=r.get("params", 0), in_elems=in_elems,
                      out_elems=out_elems, producers=r["producers"], spike_inputs=r.get("spike_inputs", ()),
                      extra=r.get("extra", {})))
        # Residual adds: the outputs of attention / MLP output projections are added into the
        # residual stream (an accumulator, not spikes).
        if r["kind"] == "linear" and r["name"].endswith((".attn.proj", ".mlp.fc2")):
            ops.append(Op(name=r["name"] + ".residual", kind="add", in_shape=r["out_shape"],
                          out_shape=r["out_shape"], in_elems=out_elems * 2, out_elems=out_elems,
                          producers=(r["name"],), a_bits=0))
    meta = {"batch_example": int(B), "quant": dict(getattr(model, "snmfm_quant", {})),
            "n_quantizers": len(quantizers(model))}
    return Workload(name=name, ops=ops, meta=meta)


# ---- decoders: a prefill and a decode step at context length n, with the KV cache --------------
def _decoder_parts(model: nn.Module):
    """(the QANN/FP32 module, its DecoderLM, image-prefix positions) of a decoder or multimodal LM
    (a SpikingModel is read through the QANN it was converted from)."""
    from snmfm.models import DecoderLM, MultimodalLM
    base = getattr(model, "source_qann", model)
    if isinstance(base, MultimodalLM):
        return base, base.decoder, base.n_prefix
    if isinstance(base, DecoderLM):
        return base, base, 0
    raise TypeError(f"decoder workloads need a DecoderLM or MultimodalLM (FP32, QANN or its "
                    f"SpikingModel), got {type(base).__name__}")


def _renamed(ops: list[Op], prefix: str) -> list[Op]:
    """Ops of a submodule named as in the whole model (so they match its ActivityTrace sites)."""
    import dataclasses
    return [dataclasses.replace(o, name=prefix + o.name,
                                producers=tuple(prefix + p for p in o.producers),
                                spike_inputs=tuple(prefix + s for s in o.spike_inputs)) for o in ops]


@torch.no_grad()
def extract_decoder_call(model: nn.Module, positions: int, context: int = 0, *, images=None,
                         tokens: torch.Tensor | None = None, name: str | None = None) -> Workload:
    """Workload of one call of a decoder with a KV cache: `positions` new tokens computed while the
    cache already holds `context` text positions (context 0: a prefill over the prompt; for a
    MultimodalLM the prefill also encodes the image, and later calls find its prefix in the cache).

    A decode step is (positions=1, context=n); a speculative verification pass is (k + 1, n).
    KV-cache traffic is in the ops: Q.K^T and P.V read their B operand (K^T, V) over all
    Lk = cached + new key positions, and `extra["kv_cache"]` on those ops says how much of it comes
    from the cache (`read_elems`, the cached positions) and how much is appended (`write_elems`),
    at the operand's bits; `meta["kv_cache"]` sums them (`read_bits`, `write_bits`).  `tokens`
    [1, context + positions] and `images` [1, C, H, W] are example inputs (zeros by default: the
    shapes do not depend on them)."""
    base, dec, n_prefix = _decoder_parts(model)
    if positions < 1 or context < 0:
        raise ValueError(f"a decoder call needs positions >= 1 and context >= 0, got {positions}, {context}")
    total = n_prefix + context + positions
    if total > dec.config.max_len:
        raise ValueError(f"{n_prefix} prefix + {context} cached + {positions} new positions exceed "
                         f"the model's max_len={dec.config.max_len}")
    if tokens is None:
        tokens = torch.zeros(1, context + positions, dtype=torch.long)
    if tokens.shape != (1, context + positions):
        raise ValueError(f"tokens must be [1, {context + positions}], got {list(tokens.shape)}")
    multimodal = dec is not base
    if multimodal and images is None:
        v = base.config.vision
        images = torch.zeros(1, v.channels, v.image_size, v.image_size)
    caches = dec.new_caches()
    was_training = base.training
    base.eval()
    try:
        if context == 0:
            args = (images, tokens, caches) if multimodal else (tokens, caches)
            wl = extract_workload(base, *args, name=name or "prefill")
        else:
            if multimodal:
                base(images, tokens[:, :context], caches)
            else:
                dec(tokens[:, :context], caches)
            wl = extract_workload(dec, tokens[:, context:], caches, n_prefix + context,
                                  name=name or "decode")
            if multimodal:
                wl = Workload(wl.name, _renamed(wl.ops, "decoder."), wl.meta)
    finally:
        base.train(was_training)
    cached = n_prefix + context if context else 0
    new = positions + (n_prefix if multimodal and context == 0 else 0)
    read_bits = write_bits = 0
    ops = []
    import dataclasses
    for o in wl.ops:
        if o.kind == "matmul_act" and o.name.endswith((".attn.qk", ".attn.av")) and \
                (not multimodal or o.name.startswith("decoder.")):
            b, _, K, N = o.gemm
            per_pos = b * (K if o.name.endswith(".qk") else N)     # heads x head_dim
            bits = int((o.extra.get("a_bits_each") or [o.a_bits, o.a_bits])[1] or 32)
            kv = {"operand": "b", "cached": cached, "new": new, "read_elems": per_pos * cached,
                  "write_elems": per_pos * new, "bits": bits}
            read_bits += kv["read_elems"] * bits
            write_bits += kv["write_elems"] * bits
            o = dataclasses.replace(o, extra={**o.extra, "kv_cache": kv})
        ops.append(o)
    meta = dict(wl.meta)
    meta["decoder_call"] = {"positions": positions, "context": context, "image_prefix": n_prefix,
                            "kind": "prefill" if context == 0 else ("decode" if positions == 1 else "verify")}
    meta["kv_cache"] = {"read_bits": read_bits, "write_bits": write_bits, "cached_positions": cached,
                        "new_positions": new}
    return Workload(name=wl.name, ops=ops, meta=meta)


def extract_decoder_workloads(model: nn.Module, prompt_len: int, context_len: int, *, images=None
                              ) -> tuple[Workload, Workload]:
    """(prefill over a `prompt_len`-token prompt, one decode step with `context_len` positions in
    the KV cache): the two Workloads that define a decoder's energy per generated token."""
    return (extract_decoder_call(model, prompt_len, 0, images=images, name=f"prefill{prompt_len}"),
            extract_decoder_call(model, 1, context_len, images=images, name=f"decode@{context_len}"))
