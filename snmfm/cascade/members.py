"""Cascade members: any model form as a callable on the task's positional inputs, plus metadata.

A `Member` is what a cascade calls: `fn(*inputs)` returns the model's outputs (logits), exactly as
`Task.evaluate` would call it, so the FP32 model, the QANN and a SpikingModel are interchangeable.
`form` (fp32 | qann | snn), `size` and `placement` (any accelerator name, e.g. conventional, loihi2)
are labels: the cascade never looks at hardware, `eval.cascade` reads them to charge each call on
its accelerator (names are data here; `snmfm` does not know which accelerators exist).

What a member *answers* depends on the task kind (`Readout`):

* classify: one prediction per query, the argmax of logits [B, K]; positions A = 1;
* generate (vqa-digits): the greedy answer of `answer_len` tokens after the prompt, decoded with
  the member itself (no teacher forcing: a cascade never sees the targets), with the logits that
  chose each token [B, A, V].

`record_members` runs every member once over a dataset and keeps (predictions, logits, features):
self-tests, threshold calibration and accuracy-versus-cost sweeps then run offline on the records.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

FORMS = ("fp32", "qann", "snn")
# default placement labels when none is given: spiking members on "neuromorphic", the rest on
# "conventional" (both registered names of neuro_hw); any accelerator name is accepted
PLACEMENTS = ("conventional", "neuromorphic")
DEFAULT_PLACEMENT = {"snn": "neuromorphic", "qann": "conventional", "fp32": "conventional"}


class CascadeError(ValueError):
    """A cascade cannot be built or run as asked; the message says what to change."""


@dataclass
class Member:
    """One rung of the ladder.  fn(*inputs) -> logits; features(*inputs) -> [B, d] (optional,
    for the probe self-test: e.g. the head's input, captured by `model_member`).  placement: the
    accelerator name it runs on; spiking: whether that accelerator is driven by spikes (the caller,
    who knows the hardware, says so: `neuro_hw.needs_trace(placement)`; None: not stated)."""

    name: str
    fn: Callable
    form: str = "qann"
    size: str = ""
    placement: str = "conventional"
    features: Callable | None = None
    meta: dict = field(default_factory=dict)
    spiking: bool | None = None

    def __post_init__(self):
        if self.form not in FORMS:
            raise CascadeError(f"member {self.name!r}: form {self.form!r} unknown; allowed: {', '.join(FORMS)}")
        if not isinstance(self.placement, str) or not self.placement:
            raise CascadeError(f"member {self.name!r}: placement must be an accelerator name, got "
                               f"{self.placement!r}")
        if self.form == "fp32" and self.spiking:
            raise CascadeError(f"member {self.name!r}: an FP32 model has no spikes to run on the "
                               f"spike-driven chip {self.placement!r}; place it on a dense accelerator "
                               "(e.g. conventional)")

    def __call__(self, *inputs):
        return self.fn(*inputs)

    def describe(self) -> dict:
        return {"name": self.name, "form": self.form, "size": self.size,
                "placement": self.placement, **self.meta}


def _rows(x: torch.Tensor, B: int) -> torch.Tensor:
    """The last B rows: a SpikingModel runs time-major batches [steps * B, ...]; the last step's
    rows hold the settled values."""
    return x[-B:] if x.shape[0] != B else x


def model_member(name: str, model: nn.Module, form: str | None = None, size: str = "",
                 placement: str | None = None, feature_module: str | None = "auto",
                 T: int | None = None, **meta) -> Member:
    """A Member from a model object: an nn.Module (FP32 or QANN) or a SpikingModel.

    feature_module: the submodule whose *input* is the probe's feature vector ("auto": `head`, or
    `lm_head` / `decoder.lm_head` for language models; None: no features).  For a SpikingModel the
    feature is read at the last time step.  T: fixed time steps of a SpikingModel (None: until
    quiet, where the SNN equals the QANN exactly)."""
    from snmfm.compress.quant import is_qann
    from snmfm.protocols import is_time_stepped
    is_snn = is_time_stepped(model)
    net = model.net if is_snn else model
    if form is None:
        form = "snn" if is_snn else ("qann" if is_qann(model) else "fp32")
    if placement is None:
        placement = DEFAULT_PLACEMENT[form]
    names = dict(net.named_modules())
    if feature_module == "auto":
        feature_module = next((n for n in ("head", "lm_head", "decoder.lm_head", "model.head", "model.lm_head",
                                           "model.decoder.lm_head") if names.get(n) is not None), None)
    target = net.get_submodule(feature_module) if feature_module is not None else None
    recent: list[tuple[tuple, torch.Tensor]] = []  # (inputs, features) of the last few calls

    @torch.no_grad()
    def fn(*inputs):
        got = []
        h = target.register_forward_pre_hook(lambda m, a: got.append(a[0].detach())) if target is not None else None
        try:
            out = model.run(*inputs, T=T, record=False).output if is_snn else model(*inputs)
        finally:
            if h is not None:
                h.remove()
        if got:
            x = _rows(got[-1], int(inputs[0].shape[0]))
            recent.append((inputs, x[:, -1] if x.dim() == 3 else x))  # sequences: the last position
            del recent[:-4]
        return out

    def features(*inputs):
        """The feature of these inputs: captured by the member's own forward when it just ran on
        them (the answer's pass: features cost no extra run), else by running it."""
        for args, feats in reversed(recent):
            if len(args) == len(inputs) and all(a.shape == b.shape and torch.equal(a, b)
                                                for a, b in zip(args, inputs)):
                return feats
        fn(*inputs)
        return recent[-1][1]

    if not is_snn:
        model.eval()
    return Member(name=name, fn=fn, form=form, size=size, placement=placement,
                  features=features if target is not None else None,
                  meta={"feature_module": feature_module, "T": T, **meta})


# ---- readouts: what a member answers --------------------------------------------------------------
@dataclass(frozen=True)
class Readout:
    """How a member's outputs become answers.  kind: classify | generate.  For generate:
    prompt_len (positions of the prompt in the token input, argument `token_arg`), answer_len,
    eos / pad token ids (tokens after <eos> are forced to <pad>, as `VQADigits.generate`)."""

    kind: str = "classify"
    prompt_len: int = 0
    answer_len: int = 1
    eos: int | None = None
    pad: int = 0
    token_arg: int = 1

    @property
    def positions(self) -> int:
        return 1 if self.kind == "classify" else self.answer_len

    def feature_inputs(self, inputs: tuple) -> tuple:
        """The inputs a member's features are read from: the prompt only for generation (its last
        position is the one that chooses the first answer token), the query itself otherwise."""
        if self.kind == "classify":
            return tuple(inputs)
        args = list(inputs)
        args[self.token_arg] = args[self.token_arg][:, :self.prompt_len]
        return tuple(args)

    @torch.no_grad()
    def answer(self, fn: Callable, inputs: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions [B, A] long, logits that chose them [B, A, V] float64)."""
        if self.kind == "classify":
            out = fn(*inputs)
            if out.dim() != 2:
                raise CascadeError(f"a classifier member must return logits [B, classes], got shape "
                                   f"{tuple(out.shape)}")
            logits = out.detach().to(torch.float64)[:, None, :]
            return logits.argmax(-1), logits
        tokens = inputs[self.token_arg]
        seq = tokens[:, :self.prompt_len]
        done = torch.zeros(len(seq), dtype=torch.bool)
        preds, logits = [], []
        for _ in range(self.answer_len):
            args = list(inputs)
            args[self.token_arg] = seq
            out = fn(*args)
            if out.dim() != 3:
                raise CascadeError(f"a generating member must return logits [B, L, vocab], got shape "
                                   f"{tuple(out.shape)}")
            last = out[:, -1].detach().to(torch.float64).cpu()
            nxt = last.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad), nxt)
            if self.eos is not None:
                done |= nxt == self.eos
            preds.append(nxt)
            logits.append(last)
            seq = torch.cat([seq, nxt[:, None].to(seq.dtype)], dim=1)
        return torch.stack(preds, 1), torch.stack(logits, 1)


def readout_for(task) -> Readout:
    """The readout of a built-in task: classify tasks answer a class, vqa generates its answer."""
    if task.kind == "classify":
        return Readout("classify")
    if task.kind == "vqa":
        from snmfm.data import vqa
        return Readout("generate", prompt_len=vqa.PROMPT_LEN, answer_len=vqa.ANSWER_LEN,
                       eos=vqa.EOS, pad=vqa.PAD, token_arg=1)
    raise CascadeError(f"task {task.name!r} ({task.kind}) has no per-query answer a cascade can accept "
                       "or escalate; cascades support classify tasks and vqa (generated answers)")


# ---- records: every member once over a dataset ----------------------------------------------------
@dataclass
class MemberRecord:
    """One member over N queries: preds [N, A], logits [N, A, V], features [N, d] or None."""

    preds: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor | None = None


@dataclass
class Records:
    """Every member's answers over the same N queries, with the targets [N, A]."""

    members: dict[str, MemberRecord]
    targets: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.targets.shape[0])

    def correct(self, name: str) -> torch.Tensor:
        return (self.members[name].preds == self.targets).all(-1)

    def subset(self, idx) -> "Records":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Records({k: MemberRecord(r.preds[idx], r.logits[idx],
                                        None if r.features is None else r.features[idx])
                        for k, r in self.members.items()}, self.targets[idx], dict(self.meta))


def input_bits(inputs: tuple) -> int:
    """Bits of one query's inputs as they arrive (float32 pixels/features, integer tokens as bytes):
    what a query moved between accelerators carries off chip."""
    return sum(int(x[:1].numel()) * (x.element_size() * 8 if torch.is_floating_point(x) else 8)
               for x in inputs if isinstance(x, torch.Tensor))


def _targets(batch, readout: Readout) -> torch.Tensor:
    t = batch.targets
    return t.reshape(len(t), -1).long() if readout.kind == "generate" else t.reshape(-1, 1).long()


def check_members(members: Sequence[Member], inputs: tuple, readout: Readout) -> dict:
    """Run every member on `inputs` and check that they answer the same task: same output rank,
    same number of classes / vocabulary, same answer shape.  Returns {name: output shape}."""
    shapes = {}
    for m in members:
        try:
            preds, logits = readout.answer(m.fn, inputs)
        except CascadeError as e:
            raise CascadeError(f"member {m.name!r}: {e}") from None
        shapes[m.name] = (tuple(preds.shape[1:]), int(logits.shape[-1]))
    ref_name, ref = next(iter(shapes.items()))
    for name, s in shapes.items():
        if s != ref:
            what = "classes" if readout.kind == "classify" else "vocabulary entries"
            raise CascadeError(
                f"cascade members disagree on the task: {ref_name!r} answers {ref[0]} with {ref[1]} "
                f"{what}, {name!r} answers {s[0]} with {s[1]}; every member must be a model of the same "
                f"task (same classes / vocabulary / answer length)")
    return {k: {"answer_shape": list(v[0]), "n_outputs": v[1]} for k, v in shapes.items()}


@torch.no_grad()
def record_members(members: Sequence[Member], batches: Iterable, readout: Readout,
                   features: bool = True) -> Records:
    """Run each member once over `batches` (Batch objects with .targets)."""
    members = list(members)
    acc: dict[str, dict[str, list]] = {m.name: {"p": [], "l": [], "f": []} for m in members}
    targets, checked, bits = [], False, 0
    for batch in batches:
        inputs = tuple(batch)
        if not checked:
            check_members(members, tuple(x[:2] for x in inputs), readout)
            checked, bits = True, input_bits(inputs)
        targets.append(_targets(batch, readout))
        for m in members:
            p, lg = readout.answer(m.fn, inputs)
            acc[m.name]["p"].append(p)
            acc[m.name]["l"].append(lg)
            if features and m.features is not None:
                feats = m.features(*readout.feature_inputs(inputs))
                acc[m.name]["f"].append(feats.to(torch.float64).cpu())
    if not targets:
        raise CascadeError("no queries to record (empty batches)")
    recs = {k: MemberRecord(torch.cat(v["p"]), torch.cat(v["l"]), torch.cat(v["f"]) if v["f"] else None)
            for k, v in acc.items()}
    return Records(recs, torch.cat(targets), {"readout": readout.kind, "input_bits": bits})
