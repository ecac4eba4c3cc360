"""`code-stdlib`: a byte-level decoder LM trained on Python's own standard library.

Evaluated on held-out *modules* (see snmfm.data.stdlib): next-byte accuracy and perplexity
(exp of the mean negative log-likelihood per byte, natural log).  `complete` gives greedy
completions with any model form (it calls `fn` on the full sequence each step: no KV cache)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from snmfm.data import stdlib
from snmfm.data.splits import TensorData
from snmfm.tasks.base import Batch, Task, argmax_correct
from snmfm.train import TrainConfig


class CodeStdlib(Task):
    name = "code-stdlib"
    model_name = "decoder"
    kind = "lm"
    description = "byte-level decoder LM on Python's standard-library source, held-out modules"
    context = 128                          # bytes of context per window (the model's max_len)
    train_config = TrainConfig(steps=2000, batch_size=32, lr=3e-3, warmup=100, weight_decay=0.05)
    eval_batch_size = 128

    def model_overrides(self) -> dict:
        return {"vocab_size": 256, "max_len": self.context}

    def data(self, split: str, seed: int = 0) -> TensorData:
        return stdlib.windows(split, self.context, seed)

    def sample(self, gen, batch_size, step):
        if not hasattr(self, "_stream"):
            self._stream = stdlib.train_stream("train")
        w = stdlib.random_crops(self._stream, batch_size, self.context, gen)
        return w[:, :-1], w[:, 1:]

    def _loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def score(self, outputs: torch.Tensor, batch: Batch) -> tuple[int, int]:
        return argmax_correct(outputs, batch.targets)

    def _accumulate(self, extra, outputs, batch):
        logits = outputs.reshape(-1, outputs.shape[-1]).to(torch.float64)
        nll = F.cross_entropy(logits, batch.targets.reshape(-1).to(logits.device), reduction="sum")
        extra["nll"] = extra.get("nll", 0.0) + float(nll)
        extra["bytes"] = extra.get("bytes", 0) + batch.targets.numel()

    def _finish(self, extra):
        nll = extra["nll"] / extra["bytes"]
        return {"perplexity": float(torch.tensor(nll).exp()), "nll_per_byte": nll,
                "bits_per_byte": nll / float(torch.log(torch.tensor(2.0)))}

    def info(self) -> dict:
        return {"corpus": stdlib.corpus_info(), "context": self.context}

    @torch.no_grad()
    def complete(self, fn: Callable, prompt: str | bytes, n_bytes: int = 64,
                 stop: bytes | None = None) -> str:
        """Greedy completion of `prompt` by `fn` (logits [1, L, 256] for bytes [1, L]); the
        context is the last `context` bytes.  Returns the generated text only."""
        data = prompt.encode() if isinstance(prompt, str) else bytes(prompt)
        if not data:
            raise ValueError("prompt must not be empty")
        seq = list(data)
        out = []
        for _ in range(n_bytes):
            x = torch.tensor([seq[-self.context:]])
            nxt = int(fn(x)[0, -1].argmax())
            seq.append(nxt)
            out.append(nxt)
            if stop is not None and bytes(out).endswith(stop):
                break
        return bytes(out).decode("utf-8", errors="replace")
