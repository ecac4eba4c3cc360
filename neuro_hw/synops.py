"""Synaptic operations (SynOps) of a converted network, following NeuroBench's definition.

NeuroBench (Yik et al., "The NeuroBench framework for benchmarking neuromorphic computing
algorithms and systems", Nature Communications 2025; metric `SynapticOperations`, docs
"Synaptic Operations"): the average number of synaptic operations per model execution, from the
neuron activations and their fan-out synapses, in three forms:

* Dense:   every activation (zero or not) times every connection, per time step: the work of
           hardware that does not exploit sparsity;
* Eff_ACs: only non-zero activations along non-zero weights, counted by running each layer on
           binarised inputs (x != 0) and binarised weights (W != 0) and summing the outputs;
* Eff_MACs: the same for activations that are not binary.
Counted on the connection layers (Linear, Conv); pooling and normalisation are not counted.

Where we differ, and why:
* our spikes are signed ({-1, 0, +1}, ST-BIF neurons).  NeuroBench calls an input binary only when
  it is in {0, 1}, so a -1 spike would make it count MACs; a -1 spike is a subtraction of the
  weight, an accumulate, so we count every spike-driven operation as an AC (Eff_MACs is 0);
* we count per inference from the SNN's recorded spikes (sum over the steps run, mean over the
  samples), which is what NeuroBench's per-step hooks sum to;
* activation products (QuantMatMul, the attention's QK^T and AV) are not NeuroBench connection
  layers.  We add them as an extension, kept separate (`extension`): with the increment identity
  a spike of A meets the non-zero entries of the stored B_t and a spike of B the non-zero entries
  of the stored A_{t-1};
* `row` counts what the neuromorphic chip model does: a spike fetches its whole weight row, zero
  weights included (dense row storage), i.e. spikes x fan-out.  Eff_ACs <= row <= Dense.
syops (Chen et al., syops-counter) counts the same ACs (spike count x fan-out, zero weights
included, i.e. our `row`) through module hooks; we follow NeuroBench because its effective count
is a published benchmark definition and it also states the dense reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from snmfm.nn import QuantConv2d, QuantFeatureEmbed, QuantLinear, QuantMatMul


@dataclass
class SynOps:
    """Per inference (mean over samples).  per_layer: {layer: {"dense", "eff_acs", "eff_macs", "row"}}."""

    dense: float
    eff_acs: float
    eff_macs: float
    row: float
    per_layer: dict = field(default_factory=dict)
    extension: dict = field(default_factory=dict)  # matmul_act layers (not in NeuroBench)

    def to_dict(self) -> dict:
        return {"dense": self.dense, "eff_acs": self.eff_acs, "eff_macs": self.eff_macs, "row": self.row,
                "per_layer": self.per_layer, "extension": self.extension,
                "definition": "NeuroBench SynapticOperations; signed spikes counted as ACs"}


def _layer_counts(layer, spikes: torch.Tensor) -> dict:
    """spikes [steps, B, *in_shape] (signed) -> totals over steps and samples."""
    steps, B = spikes.shape[:2]
    x = spikes.reshape(steps * B, *spikes.shape[2:]).ne(0).to(torch.float64)
    ones = torch.ones_like(x)
    if isinstance(layer, QuantLinear):
        wb = layer.w_int.ne(0).to(torch.float64)            # [N, K]
        eff = (x @ wb.t()).sum()
        dense = (ones @ torch.ones_like(wb).t()).sum()
        row = x.sum() * wb.shape[0]
    elif isinstance(layer, QuantConv2d):
        wb = layer.w_int.ne(0).to(torch.float64)            # [N, C, kh, kw]
        c = layer.conv
        eff = F.conv2d(x, wb, None, c.stride, c.padding).sum()
        dense = F.conv2d(ones[:1], torch.ones_like(wb), None, c.stride, c.padding).sum() * x.shape[0]
        row = (x * _conv_fanout(c, tuple(wb.shape), tuple(x.shape[1:]))).sum()
    elif isinstance(layer, QuantFeatureEmbed):
        nnz = layer.w_int.ne(0).to(torch.float64).sum(1)    # [F] non-zero weights per feature row
        eff = (x * nnz).sum()
        dense = ones.sum() * layer.w_int.shape[1]
        row = x.sum() * layer.w_int.shape[1]
    else:
        raise TypeError(f"not a connection layer: {type(layer).__name__}")
    return {"dense": float(dense), "eff_acs": float(eff), "eff_macs": 0.0, "row": float(row)}


def _conv_fanout(conv, wshape: tuple, in_shape: tuple) -> torch.Tensor:
    """Per input element [C, H, W]: out_channels x the number of output positions whose receptive
    field covers it (the row a spike of that element fetches)."""
    n_out, _, kh, kw = wshape
    _, H, W = in_shape
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    pad = (H - ((Ho - 1) * sh - 2 * ph + kh), W - ((Wo - 1) * sw - 2 * pw + kw))
    cover = F.conv_transpose2d(torch.ones((1, 1, Ho, Wo), dtype=torch.float64),
                               torch.ones((1, 1, kh, kw), dtype=torch.float64), None, (sh, sw), (ph, pw),
                               output_padding=pad)
    return (cover[0] * n_out).expand(*in_shape)


def _matmul_counts(spk_a: torch.Tensor, spk_b: torch.Tensor) -> dict:
    """Increment identity with b first: A_{t-1} b_t + a_t B_t, on binarised operands."""
    steps = spk_a.shape[0]
    A = torch.cumsum(spk_a.to(torch.int32), 0)
    Bm = torch.cumsum(spk_b.to(torch.int32), 0)
    A_prev = torch.cat([torch.zeros_like(A[:1]), A[:-1]], 0)
    a = spk_a.ne(0).to(torch.float64)
    b = spk_b.ne(0).to(torch.float64)
    eff = (A_prev.ne(0).to(torch.float64) @ b).sum() + (a @ Bm.ne(0).to(torch.float64)).sum()
    M, N = spk_a.shape[-2], spk_b.shape[-1]
    row = a.sum() * N + b.sum() * M
    dense = 2.0 * steps * spk_a[0].numel() * N
    return {"dense": float(dense), "eff_acs": float(eff), "eff_macs": 0.0, "row": float(row)}


def synops(snn, record) -> SynOps:
    """SynOps per inference of a SpikingModel from a SpikeRecord of its run
    (`neuro_hw.neuromorphic.record_spikes(snn, x)`)."""
    B = record.n_samples
    per, ext = {}, {}
    for name, m in snn.net.named_modules():
        if isinstance(m, (QuantLinear, QuantConv2d, QuantFeatureEmbed)):
            site = f"{name}.quant"
            if site in record.spikes:
                c = _layer_counts(m, torch.from_numpy(record.spikes[site]))
                per[name] = {k: v / B for k, v in c.items()}
        elif isinstance(m, QuantMatMul):
            sa, sb = f"{name}.quant_a", f"{name}.quant_b"
            if sa in record.spikes and sb in record.spikes:
                c = _matmul_counts(torch.from_numpy(record.spikes[sa]), torch.from_numpy(record.spikes[sb]))
                ext[name] = {k: v / B for k, v in c.items()}
    tot = {k: sum(r[k] for r in per.values()) for k in ("dense", "eff_acs", "eff_macs", "row")}
    return SynOps(per_layer=per, extension=ext, **tot)


def synops_from_trace(workload, trace) -> float:
    """The `row` count from an ActivityTrace alone (spikes x fan-out, per inference): the synaptic
    operations the neuromorphic chip model performs, matmul_act included."""
    from neuro_hw.neuromorphic.events import fanout
    from neuro_hw.workload import SYNAPTIC_KINDS
    total = 0.0
    for op in workload.ops:
        if op.kind in SYNAPTIC_KINDS and op.kind != "matmul_act":
            total += float(trace.sites[op.spike_inputs[0]].spikes.sum()) * fanout(op)
        elif op.kind == "matmul_act":
            b, M, K, N = op.gemm
            total += float(trace.sites[op.spike_inputs[0]].spikes.sum()) * N
            total += float(trace.sites[op.spike_inputs[1]].spikes.sum()) * M
    return total / trace.n_samples


__all__ = ["SynOps", "synops", "synops_from_trace"]
