"""Speculative decoding over any model form, with a call log that `eval` charges on hardware.

A *draft* proposes k tokens one at a time; the *target* scores all of them in one pass (k + 1
positions over its KV cache) and keeps the longest acceptable prefix plus one token of its own:

* greedy: a draft token is kept iff it is the target's argmax there, and the first rejected one is
  replaced by the target's argmax, so the output is the target's own greedy decoding, token for
  token, whatever the draft (DESIGN: "Exactness carries over");
* sampling (Leviathan et al., ICML 2023; Chen et al., 2023): draft token d ~ q is kept with
  probability min(1, p(d)/q(d)), else a token is drawn from norm(max(0, p - q)); if all k are kept a
  bonus token is drawn from the target's next distribution.  Each emitted token is then distributed
  exactly as the target's p.

Members are any form of a `DecoderLM` or `MultimodalLM` (FP32, QANN from `snmfm.compress.quantize`,
or a converted SpikingModel, used through its ``run(..., caches=...)``; snmfm does not import
converters, so a SpikingModel is recognised by its ``run`` and ``net``).  Three kinds of draft:
`distill_draft` (a smaller decoder trained on the target's outputs), `compressed_draft` (the target
at lower bits, optionally pruned) and `first_layers` (self-speculation: the target's first m blocks,
its final LayerNorm and head, sharing its weights).

Every forward a member runs is a `Call` in the result's log: which member, on how many positions,
over how many cached positions, whether cached, how many of its positions' work was thrown away
(rejected drafts), its wall time, and for a recorded SpikingModel its ActivityTrace.  `eval.speculative`
turns the log into energy and latency per generated token on each accelerator.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.models.mfm import DecoderLM, MultimodalLM
from snmfm.protocols import is_time_stepped


# ---- the call log --------------------------------------------------------------------------------
@dataclass
class Call:
    """One forward pass of one member over a batch of `batch` sequences.  `context`: positions
    already in its KV cache (text positions; 0 for a prefill or an uncached call); `positions`: new
    positions computed per sequence; `tokens`: the token ids fed (first sequence); `wasted`:
    positions whose result was thrown away (rejected drafts).  A multimodal call with context 0 also
    encodes the image (`image`)."""

    member: str             # "draft" | "target"
    form: str               # "fp32" | "qann" | "snn"
    purpose: str            # "prefill" | "draft" | "verify" | "decode"
    positions: int
    context: int
    cached: bool
    batch: int = 1
    tokens: list = field(default_factory=list)
    image: bool = False
    wasted: int = 0
    wall_s: float = 0.0
    steps: int | None = None       # SNN time steps run
    t_settle: int | None = None
    trace: object = field(default=None, repr=False)   # ActivityTrace of a recorded SNN call

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("member", "form", "purpose", "positions", "context", "cached",
                                              "batch", "tokens", "image", "wasted", "wall_s", "steps",
                                              "t_settle")}


@dataclass
class DecodeResult:
    """Generated tokens per sequence (prompt excluded, cut after a stop token), the call log, and
    per round (tokens drafted, drafts kept).  `tokens` is the single sequence of an unbatched call."""

    sequences: list
    calls: list
    prompt_len: int
    rounds: list = field(default_factory=list)
    wall_s: float = 0.0
    mode: str = "greedy"
    batched: bool = False

    @property
    def tokens(self) -> list:
        return self.sequences if self.batched else self.sequences[0]

    def metrics(self) -> dict:
        n = max(1, sum(len(s) for s in self.sequences))
        B = max(1, len(self.sequences))
        drafted = sum(d for d, _ in self.rounds)
        accepted = sum(a for _, a in self.rounds)
        target_calls = sum(c.member == "target" for c in self.calls)
        return {"tokens": n, "rounds": len(self.rounds), "drafted": drafted, "accepted": accepted,
                "acceptance_rate": accepted / drafted if drafted else float("nan"),
                "mean_accepted_length": accepted / len(self.rounds) if self.rounds else 0.0,
                "target_passes_per_token": target_calls * B / n,       # prefill included
                "draft_passes_per_token": sum(c.member == "draft" for c in self.calls) * B / n,
                "wall_s_per_token": self.wall_s / n}

    def to_dict(self) -> dict:
        return {"sequences": [list(s) for s in self.sequences], "prompt_len": self.prompt_len,
                "mode": self.mode, "rounds": [list(r) for r in self.rounds], "wall_s": self.wall_s,
                "calls": [c.to_dict() for c in self.calls], "metrics": self.metrics()}


# ---- one member decoding a batch of sequences -----------------------------------------------------
def is_spiking(model) -> bool:
    """A model that runs in time steps (snmfm.protocols.TimeStepped: a converters.SpikingModel)."""
    return is_time_stepped(model)


def model_form(model) -> str:
    if is_spiking(model):
        return "snn"
    from snmfm.compress.quant import is_qann
    return "qann" if is_qann(model) else "fp32"


def decoder_parts(model) -> tuple[nn.Module, DecoderLM, int]:
    """(the module, its DecoderLM, image-prefix positions) of any form of a decoder / multimodal LM."""
    base = model.net if is_spiking(model) else model
    if isinstance(base, MultimodalLM):
        return base, base.decoder, base.n_prefix
    if isinstance(base, DecoderLM):
        return base, base, 0
    raise TypeError(f"speculative decoding needs a DecoderLM or MultimodalLM (FP32, QANN or "
                    f"SpikingModel), got {type(base).__name__}")


class Decoder:
    """Incremental decoding of a batch of equally long sequences by one model form.

    `feed(x [B, L])` appends tokens and returns the logits [B, L, V] (float64) at those positions;
    with `cached` only the new positions are computed over the KV cache, else the whole sequence
    is re-run.  `rollback(n)` forgets every position from n on.  Each feed is logged as a `Call`."""

    def __init__(self, model, *, member: str = "target", images: torch.Tensor | None = None,
                 cached: bool = True, log: list | None = None, record: bool = False,
                 snn_kw: dict | None = None):
        self.model, self.member, self.cached = model, member, cached
        self.base, self.dec, self.n_prefix = decoder_parts(model)
        self.multimodal = self.dec is not self.base
        if self.multimodal and images is None:
            raise ValueError("a MultimodalLM member needs images [B, C, H, W]")
        self.images = images
        self.spiking = is_spiking(model)
        self.form = model_form(model)
        self.record, self.snn_kw = record, dict(snn_kw or {})
        self.log = log if log is not None else []
        self.vocab_size = self.dec.config.vocab_size
        self.capacity = self.dec.config.max_len - self.n_prefix   # text positions that fit
        self.seq: torch.Tensor | None = None
        self.caches = self.dec.new_caches() if cached else None
        if isinstance(model, nn.Module):
            model.eval()

    @property
    def n(self) -> int:
        """Positions computed so far (in the KV cache when cached)."""
        return 0 if self.seq is None else self.seq.shape[1]

    def rollback(self, n: int) -> None:
        if n >= self.n:
            return
        self.seq = self.seq[:, :n]
        if self.caches is not None:
            keep = self.n_prefix + n
            for c in self.caches:
                if "k" in c:
                    c["k"], c["v"] = c["k"][:, :, :keep], c["v"][:, :, :keep]

    @torch.no_grad()
    def feed(self, x: torch.Tensor, purpose: str) -> torch.Tensor:
        L = x.shape[1]
        if L < 1:
            raise ValueError("feed needs at least one token")
        if self.n + L > self.capacity:
            raise ValueError(f"{self.n + L} text positions exceed the model's capacity "
                             f"{self.capacity} (max_len {self.dec.config.max_len})")
        if self.images is not None and self.images.shape[0] != x.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images for {x.shape[0]} sequences")
        t0 = time.perf_counter()
        ctx = self.n if self.cached else 0
        fed = x if self.cached or self.seq is None else torch.cat([self.seq, x], 1)
        logits, res = self._forward(fed, ctx)
        self.seq = x if self.seq is None else torch.cat([self.seq, x], 1)
        call = Call(member=self.member, form=self.form, purpose=purpose, positions=fed.shape[1],
                    context=ctx, cached=self.cached, batch=x.shape[0], tokens=fed[0].tolist(),
                    image=self.multimodal and ctx == 0, wall_s=time.perf_counter() - t0)
        if res is not None:
            call.steps, call.t_settle, call.trace = res.steps, res.t_settle, res.trace
        self.log.append(call)
        return logits[:, -L:].to(torch.float64)

    def _forward(self, x: torch.Tensor, ctx: int):
        kw = {} if self.caches is None else {"caches": self.caches}
        if self.spiking:
            run = dict(record=self.record, **self.snn_kw)
            if ctx == 0:
                args = (self.images, x) if self.multimodal else (x,)
                res = self.model.run(*args, **kw, **run)
            else:
                res = self.model.run(x, **kw, entry="decoder" if self.multimodal else None,
                                     forward_kw={"start_pos": self.n_prefix + ctx}, **run)
            return res.output, res
        if ctx == 0:
            return (self.model(self.images, x, **kw) if self.multimodal else self.model(x, **kw)), None
        return self.dec(x, start_pos=self.n_prefix + ctx, **kw), None


# ---- decoding --------------------------------------------------------------------------------------
def _prompts(prompt) -> tuple[torch.Tensor, bool]:
    """[B, P] long tensor of prompts, and whether the caller passed a batch."""
    x = prompt if isinstance(prompt, torch.Tensor) else torch.tensor(list(prompt))
    batched = x.dim() == 2
    x = x.reshape(1, -1) if not batched else x
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"the prompt must be a non-empty list of token ids or a [B, P] tensor, "
                         f"got shape {list(x.shape)}")
    return x.long(), batched


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits.to(torch.float64) / temperature, dim=-1)


def _draw(p: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """One sample per row of p [B, V] -> [B]."""
    return torch.multinomial(p, 1, generator=gen)[:, 0]


def _check(max_new: int, temperature: float) -> None:
    if not isinstance(max_new, int) or max_new < 1:
        raise ValueError(f"max_new must be an integer >= 1, got {max_new!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _finish(out: torch.Tensor, stop_token: int | None) -> list[list[int]]:
    seqs = []
    for row in out.tolist():
        if stop_token is not None and stop_token in row:
            row = row[:row.index(stop_token) + 1]
        seqs.append(row)
    return seqs


@torch.no_grad()
def decode(model, prompt, max_new: int = 32, *, sampling: bool = False, temperature: float = 1.0,
           images: torch.Tensor | None = None, stop_token: int | None = None, cached: bool = True,
           generator: torch.Generator | None = None, record: bool = False,
           snn_kw: dict | None = None) -> DecodeResult:
    """Plain autoregressive decoding by one model (the baseline): greedy, or sampling from
    softmax(logits / temperature).  Same arguments and call log as `speculative_decode`."""
    _check(max_new, temperature)
    x, batched = _prompts(prompt)
    t0 = time.perf_counter()
    tgt = Decoder(model, member="target", images=images, cached=cached, record=record, snn_kw=snn_kw)
    logits = tgt.feed(x, "prefill")
    out = torch.empty(x.shape[0], 0, dtype=torch.long)
    while True:
        p = logits[:, -1]
        t = _draw(_probs(p, temperature), generator) if sampling else p.argmax(-1)
        out = torch.cat([out, t[:, None]], 1)
        done = (out == stop_token).any(1).all() if stop_token is not None else False
        if out.shape[1] >= max_new or done or tgt.n + 1 > tgt.capacity:
            break
        logits = tgt.feed(t[:, None], "decode")
    return DecodeResult(sequences=_finish(out, stop_token), calls=tgt.log, prompt_len=x.shape[1],
                        wall_s=time.perf_counter() - t0, mode="sample" if sampling else "greedy",
                        batched=batched)


def verify(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, *, sampling: bool,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The verification rule of one round, per sequence of a batch.

    p [B, n+1, V]: the target's distributions at the n draft positions and the one after them;
    q [B, n, V]: the draft's distributions the drafts [B, n] were chosen from.
    Returns (kept [B], fix [B]): sequence b keeps its first kept[b] drafts, then emits fix[b].
    Greedy: a draft is kept iff it is the target's argmax; fix = the target's argmax there.
    Sampling (Leviathan et al. 2023, Algorithm 1; Chen et al. 2023): draft d is kept with
    probability min(1, p(d)/q(d)); at the first rejection fix is drawn from norm(max(0, p - q));
    after n kept drafts, a bonus token from p.  Each emitted token is distributed as p."""
    B, n = drafts.shape
    pd = p[:, :n].gather(2, drafts[..., None])[..., 0]          # p_i(d_i)  [B, n]
    if sampling:
        qd = q.gather(2, drafts[..., None])[..., 0]
        u = torch.rand(B, n, generator=generator, dtype=torch.float64)
        ok = u < (pd / qd).clamp(max=1.0)
    else:
        ok = p[:, :n].argmax(-1) == drafts
    kept = ok.long().cumprod(1).sum(1)                           # leading accepted drafts
    pk = p[torch.arange(B), kept]                                # target distribution after them
    if not sampling:
        return kept, pk.argmax(-1)
    rejected = kept < n
    if rejected.any():
        qk = q[torch.arange(B), kept.clamp(max=n - 1)]
        resid = (pk - qk).clamp_min(0.0)
        mass = resid.sum(-1, keepdim=True)
        use = rejected[:, None] & (mass > 0)
        pk = torch.where(use, resid / mass.clamp_min(1e-300), pk)
    return kept, _draw(pk, generator)


@torch.no_grad()
def speculative_decode(target, draft, prompt, max_new: int = 32, *, k: int = 4, sampling: bool = False,
                       temperature: float = 1.0, adaptive: float | None = None,
                       images: torch.Tensor | None = None, stop_token: int | None = None,
                       cached: bool = True, generator: torch.Generator | None = None,
                       record: bool = False, snn_kw: dict | None = None) -> DecodeResult:
    """Generate up to `max_new` tokens after `prompt` with `target`, drafted by `draft`.

    prompt: token ids (one sequence) or a [B, P] tensor (B sequences, decoded in lockstep; each
    round keeps the fewest drafts any sequence accepts, see `verify`).
    k: draft tokens per round (>= 1).  sampling: speculative sampling (else greedy verification).
    adaptive: stop drafting in a round once the draft's max probability (the lowest over the
    batch) falls below this threshold.  images: [B, C, H, W] for multimodal members (both see the
    same images).  cached: KV caches (else every call re-runs the whole sequence).  record: keep the
    ActivityTrace of SpikingModel calls in the log.  snn_kw: extra `run` arguments (max_T, chunk).
    Greedy: the tokens are exactly the target's greedy decoding.  Sampling: each token is
    distributed as the target's softmax(logits / temperature)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k (draft tokens per round) must be an integer >= 1, got {k!r}")
    if adaptive is not None and not 0.0 <= adaptive <= 1.0:
        raise ValueError(f"adaptive threshold must be in [0, 1], got {adaptive}")
    _check(max_new, temperature)
    x, batched = _prompts(prompt)
    t0 = time.perf_counter()
    log: list[Call] = []
    tgt = Decoder(target, member="target", images=images, cached=cached, log=log, record=record, snn_kw=snn_kw)
    dft = Decoder(draft, member="draft", images=images, cached=cached, log=log, record=record, snn_kw=snn_kw)
    if tgt.vocab_size != dft.vocab_size:
        raise ValueError(f"draft and target vocabularies differ: draft has {dft.vocab_size} tokens, "
                         f"target {tgt.vocab_size}; a draft must share the target's tokenizer")
    p0 = _probs(tgt.feed(x, "prefill")[:, -1], temperature)
    out = (_draw(p0, generator) if sampling else p0.argmax(-1))[:, None]
    seq = torch.cat([x, out], 1)
    rounds = []

    def finished() -> bool:
        return stop_token is not None and bool((out == stop_token).any(1).all())

    while out.shape[1] < max_new and not finished():
        room = min(tgt.capacity, dft.capacity) - seq.shape[1]
        if room < 0:
            break
        k_r = min(k, max_new - out.shape[1] - 1, room)
        drafts, qs, draft_calls = seq[:, :0], [], []
        for _ in range(k_r):
            q = _probs(dft.feed(torch.cat([seq, drafts], 1)[:, dft.n:], "draft")[:, -1], temperature)
            draft_calls.append(log[-1])
            if adaptive is not None and float(q.max(-1).values.min()) < adaptive:
                log[-1].wasted = log[-1].positions           # its proposal is not used
                break
            d = _draw(q, generator) if sampling else q.argmax(-1)
            drafts = torch.cat([drafts, d[:, None]], 1)
            qs.append(q)
        n_d = drafts.shape[1]
        logits = tgt.feed(torch.cat([seq, drafts], 1)[:, tgt.n:], "verify" if n_d else "decode")
        p = _probs(logits[:, -n_d - 1:], temperature)
        kept, fix = verify(p, torch.stack(qs, 1) if qs else p[:, :0], drafts, sampling=sampling,
                           generator=generator)
        # In a batch every sequence keeps J = the fewest drafts any kept; one that kept more emits
        # its accepted draft at J.  Either way the token at J is the rule's choice there
        # (distributed as p; the argmax when greedy), whatever the other sequences drew.
        J = int(kept.min())
        new = torch.where(kept > J, drafts[:, min(J, n_d - 1)], fix) if n_d else fix
        for c in draft_calls[J:n_d]:                     # drafts rejected, or after a rejection
            c.wasted = c.positions
        log[-1].wasted = n_d - J
        rounds.append((n_d, J))
        n_before = seq.shape[1]
        emitted = torch.cat([drafts[:, :J], new[:, None]], 1)
        seq = torch.cat([seq, emitted], 1)
        out = torch.cat([out, emitted], 1)
        tgt.rollback(n_before + J)
        dft.rollback(min(dft.n, n_before + J))
    return DecodeResult(sequences=_finish(out[:, :max_new], stop_token), calls=log, prompt_len=x.shape[1],
                        rounds=rounds, wall_s=time.perf_counter() - t0,
                        mode="sample" if sampling else "greedy", batched=batched)


# ---- drafts ----------------------------------------------------------------------------------------
def _shallow(module: nn.Module) -> nn.Module:
    """A new module object sharing `module`'s parameters, buffers and children, with its own
    registries (children, parameters, buffers, hooks), so changing the view leaves `module` as is."""
    view = copy.copy(module)
    for key, value in module.__dict__.items():
        if key.startswith("_") and isinstance(value, dict):
            view.__dict__[key] = type(value)(value)
    return view


def first_layers(model, m: int):
    """Self-speculation draft: a view of `model` (any form) that runs its first `m` blocks, then
    its final LayerNorm and LM head.  Shares every weight (and quantizer, and IF neuron) with it."""
    if is_spiking(model):
        view = type(model)(first_layers(model.net, m), meta=dict(getattr(model, "meta", {})))
        if getattr(model, "source_qann", None) is not None:
            object.__setattr__(view, "source_qann", first_layers(model.source_qann, m))
        return view
    base, dec, _ = decoder_parts(model)
    n_layers = len(dec.trunk.blocks)
    if not 1 <= m <= n_layers:
        raise ValueError(f"first_layers needs 1 <= m <= {n_layers} (the model's blocks), got {m}")
    if base is not dec:
        view = _shallow(base)
        view.decoder = first_layers(dec, m)
        return view
    view = _shallow(dec)
    trunk = _shallow(dec.trunk)
    trunk.blocks = nn.ModuleList(list(dec.trunk.blocks)[:m])
    view.trunk = trunk
    extra = dict(dec.config.extra)
    if "block_shapes" in extra:
        extra["block_shapes"] = extra["block_shapes"][:m]
    view.config = dec.config.replace(n_layers=m, extra=extra)
    return view


def compressed_draft(model: nn.Module, data, *, w_bits: int = 8, a_bits: int = 4, prune_kw: dict | None = None,
                     method: str = "mse") -> nn.Module:
    """The target compressed: (optionally pruned with `snmfm.compress.prune(**prune_kw)`, then)
    calibrated on `data` (batches of model inputs) and quantized at lower bits.  `model` is the
    FP32 target.  Convert the result for an SNN draft (fewer bits: fewer time steps)."""
    from snmfm.compress import calibrate, prune, quantize
    data = list(data)
    src = prune(model, **prune_kw) if prune_kw else model
    calibrate(src, data)
    return quantize(src, w_bits, a_bits, method=method)


def _model_inputs(task, batch) -> tuple:
    return (batch[0],) if task.kind == "lm" else tuple(batch)


def distill_draft(target, task, size: str = "tiny", steps: int = 300, *, batch_size: int = 16,
                  lr: float = 3e-3, temperature: float = 1.0, seed: int = 0) -> nn.Module:
    """A smaller decoder of the task's model family (`size` of snmfm.models.SIZES), trained for
    `steps` steps to match the target's next-token distributions (KL(p_target || p_draft) at
    every position, Hinton et al. 2015) on the task's training inputs.  The target may be any form
    (a SpikingModel is read through its QANN, which has the same outputs)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    teacher = getattr(target, "source_qann", None) if is_spiking(target) else target
    if teacher is None:
        raise ValueError("a SpikingModel target needs its source_qann to distil from")
    teacher.eval()
    _, tdec, _ = decoder_parts(teacher)
    draft = task.build_model(size, seed=seed).float()
    _, ddec, _ = decoder_parts(draft)
    if ddec.config.vocab_size != tdec.config.vocab_size:
        raise ValueError(f"task {task.name!r} builds a vocabulary of {ddec.config.vocab_size}, the "
                         f"target has {tdec.config.vocab_size}")
    opt = torch.optim.AdamW(draft.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    draft.train()
    for step in range(steps):
        inputs = _model_inputs(task, task.sample(gen, batch_size, step))
        with torch.no_grad():
            p = torch.log_softmax(teacher(*inputs).to(torch.float32) / temperature, -1)
        logq = torch.log_softmax(draft(*inputs) / temperature, -1)
        loss = F.kl_div(logq.reshape(-1, logq.shape[-1]), p.reshape(-1, p.shape[-1]),
                        log_target=True, reduction="batchmean")
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / max(1, steps // 10)) * (0.1 + 0.9 * (1 - step / steps))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
    draft.snmfm_distill = {"size": size, "steps": steps, "final_kl": float(loss.detach())}
    return draft.eval()


def _draft_recipe(target_sha256: str, size: str, steps: int, batch_size: int, lr: float,
                  temperature: float, seed: int) -> dict:
    return {"target_sha256": target_sha256, "size": size, "steps": int(steps), "batch_size": int(batch_size),
            "lr": float(lr), "temperature": float(temperature), "seed": int(seed)}


def draft_for(target, task, target_sha256: str | None, size: str = "tiny", steps: int = 300, *,
              batch_size: int = 16, lr: float = 3e-3, temperature: float = 1.0, seed: int = 0) -> nn.Module:
    """The distilled draft of `distill_draft(target, task, ...)`: loaded from the shipped
    checkpoint snmfm/checkpoints/<task>-draft-<size> when that file was distilled from the same
    target tensors (`target_sha256`, the sha256 in the target checkpoint's JSON) with the same
    recipe, else distilled now.  Shipping the drafts of the default targets lets speculative
    decoding studies start without training (`ship_draft` made them)."""
    from snmfm.checkpoint import SHIPPED_DIR, checkpoint_files, load_checkpoint, read_meta
    base = SHIPPED_DIR / f"{task.name}-draft-{size}"
    want = _draft_recipe(target_sha256 or "", size, steps, batch_size, lr, temperature, seed)
    if target_sha256 and all(f.is_file() for f in checkpoint_files(base)):
        if read_meta(base).get("distill_recipe") == want:
            draft, meta = load_checkpoint(base, task=task.name)
            draft = draft.float().eval()
            draft.snmfm_distill = {"size": size, "steps": steps, "final_kl": meta["final_kl"],
                                   "shipped": base.name}
            return draft
    return distill_draft(target, task, size, steps, batch_size=batch_size, lr=lr, temperature=temperature,
                         seed=seed)


def ship_draft(task, size: str = "tiny", steps: int = 300, **kw):
    """Distil the draft of the task's default target and write it to snmfm/checkpoints (how the
    shipped drafts were made)."""
    from snmfm.checkpoint import SHIPPED_DIR, save_checkpoint
    target, tmeta = task.load()
    draft = distill_draft(target, task, size, steps, **kw)
    rec = _draft_recipe(tmeta["tensors_sha256"], size, steps, kw.get("batch_size", 16), kw.get("lr", 3e-3),
                        kw.get("temperature", 1.0), kw.get("seed", 0))
    return save_checkpoint(draft, SHIPPED_DIR / f"{task.name}-draft-{size}",
                           {"task": task.name, "size": size, "distill_recipe": rec,
                            "final_kl": draft.snmfm_distill["final_kl"]})


__all__ = ["Call", "DecodeResult", "Decoder", "compressed_draft", "decode", "distill_draft", "draft_for",
           "first_layers", "ship_draft", "speculative_decode", "verify"]
