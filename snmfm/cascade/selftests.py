"""Self-tests: how confident is a member in its answer?  Each maps a member's answer to a
confidence in [0, 1] (higher = keep the answer) and says what it costs as operation counts.

Over the logits z of each answer position (K classes or vocabulary entries, A positions):

  max_prob   min over positions of max_k softmax(z)_k                       (Hendrycks & Gimpel 2017)
  margin     min over positions of p_(1) - p_(2), the top-two probability gap
  entropy    1 - max over positions of H(softmax z) / log K
  logprob    exp(sum over positions of log p(chosen token)): the answer's sequence probability,
             the self-test of generation (for one position it equals max_prob)
  agreement  two cheap members: 1[same answer] * min(their max_prob)      (committee agreement)
  probe      a logistic-regression estimate of P(member is right) from the member's features
             (e.g. the head's input) and its max_prob, margin and entropy, fitted on labelled
             held-out queries disjoint from those that calibrate the thresholds

Costs are operation counts per query (fp_add, fp_mul, cmp, exp, log, div, and `reads`: values
read from the output buffer), so `eval` can charge them on either accelerator's digital/vector
unit without snmfm knowing any hardware.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SELF_TESTS = ("max_prob", "margin", "entropy", "logprob", "agreement", "probe")


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.to(torch.float64), dim=-1)


def max_prob(logits: torch.Tensor) -> torch.Tensor:
    """logits [N, A, K] -> [N]."""
    return _probs(logits).amax(-1).amin(-1)


def margin(logits: torch.Tensor) -> torch.Tensor:
    top = _probs(logits).topk(2, dim=-1).values if logits.shape[-1] > 1 else None
    if top is None:
        return torch.ones(logits.shape[0], dtype=torch.float64)
    return (top[..., 0] - top[..., 1]).amin(-1)


def entropy_conf(logits: torch.Tensor) -> torch.Tensor:
    K = logits.shape[-1]
    if K < 2:
        return torch.ones(logits.shape[0], dtype=torch.float64)
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    H = -(logp.exp() * logp).sum(-1)
    return (1.0 - H / math.log(K)).amin(-1).clamp(0.0, 1.0)


def logprob(logits: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return logp.gather(-1, preds[..., None]).squeeze(-1).sum(-1).exp()


def agreement(logits_a, preds_a, logits_b, preds_b) -> torch.Tensor:
    same = (preds_a == preds_b).all(-1).to(torch.float64)
    return same * torch.minimum(max_prob(logits_a), max_prob(logits_b))


def summary_features(logits: torch.Tensor) -> torch.Tensor:
    """[N, 3]: max_prob, margin, entropy confidence (the probe's inputs beside the features)."""
    return torch.stack([max_prob(logits), margin(logits), entropy_conf(logits)], 1)


@dataclass
class Probe:
    """Logistic regression P(right | x) on x = [features, max_prob, margin, entropy], standardised
    with the fitting set's mean and std (foldable into the weights: no cost at run time)."""

    weight: torch.Tensor
    bias: float
    mean: torch.Tensor
    std: torch.Tensor
    meta: dict

    @staticmethod
    def inputs(logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        s = summary_features(logits)
        return s if features is None else torch.cat([features.to(torch.float64), s], 1)

    def __call__(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        x = (self.inputs(logits, features) - self.mean) / self.std
        return torch.sigmoid(x @ self.weight + self.bias)

    @property
    def dim(self) -> int:
        return int(self.weight.numel())

    @classmethod
    def fit(cls, logits: torch.Tensor, features: torch.Tensor | None, right: torch.Tensor,
            l2: float = 1e-2, iters: int = 30) -> "Probe":
        """Newton's method on the L2-regularised mean log-loss (a handful of weights: exact
        Hessian, converges in a few steps)."""
        x = cls.inputs(logits, features)
        y = right.to(torch.float64)
        if len(y) < 4 or float(y.min()) == float(y.max()):
            raise ValueError(f"the probe needs right and wrong answers to learn from: its {len(y)} fitting "
                             f"queries are all {'right' if len(y) and float(y[0]) else 'wrong'}; use more "
                             "queries (probe_fraction) or another self-test")
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1], dtype=x.dtype)
        z = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=torch.float64)], 1)
        n, d = z.shape
        reg = torch.full((d,), 2 * l2, dtype=torch.float64)
        reg[-1] = 1e-8  # the bias is not penalised
        w = torch.zeros(d, dtype=torch.float64)
        p0 = float(y.mean().clamp(1e-3, 1 - 1e-3))
        w[-1] = math.log(p0 / (1 - p0))
        for _ in range(iters):
            p = torch.sigmoid(z @ w)
            grad = z.T @ (p - y) / n + reg * w
            hess = (z.T * (p * (1 - p))) @ z / n + torch.diag(reg)
            step = torch.linalg.solve(hess, grad)
            w = w - step
            if float(step.abs().max()) < 1e-10:
                break
        return cls(w[:-1].clone(), float(w[-1]), mean, std,
                   {"n_fit": int(n), "fit_right_rate": float(y.mean()), "l2": l2})


def confidence(name: str, logits, preds, features=None, probe: Probe | None = None,
               other: tuple | None = None) -> torch.Tensor:
    """Confidence [N] in [0, 1] of one stage's answers.  other: (logits, preds) of the second
    member of an agreement stage."""
    if name == "max_prob":
        return max_prob(logits)
    if name == "margin":
        return margin(logits)
    if name == "entropy":
        return entropy_conf(logits)
    if name == "logprob":
        return logprob(logits, preds)
    if name == "agreement":
        if other is None:
            raise ValueError("the agreement self-test needs a stage of two members")
        return agreement(logits, preds, *other)
    if name == "probe":
        if probe is None:
            raise ValueError("the probe self-test is not fitted: calibrate the cascade first")
        return probe(logits, features)
    raise ValueError(f"unknown self-test {name!r}; allowed: {', '.join(SELF_TESTS)}")


def _softmax_ops(K: int) -> dict:
    # max (K-1 compares), z = x - max (K adds), exp(z) (K), running sum (K-1 adds)
    return {"cmp": K - 1, "fp_add": 2 * K - 1, "exp": K}


def _add(*ds: dict) -> dict:
    out: dict = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def self_test_ops(name: str, n_outputs: int, positions: int = 1, feature_dim: int = 0) -> dict:
    """Operation counts of one query's self-test (the threshold compare included).  `reads`:
    values read from the member's output buffer (logits, features)."""
    K, A = int(n_outputs), int(positions)
    sm = _softmax_ops(K)
    if name in ("max_prob", "agreement"):
        per = _add(sm, {"div": 1})                        # p_max = 1 / sum exp(z - max)
        ops = _add(*[per] * A, {"cmp": A})                # min over positions + threshold
        if name == "agreement":                           # two members, answers compared
            ops = _add(ops, ops, {"cmp": A, "fp_mul": 1})
        return _add(ops, {"reads": K * A * (2 if name == "agreement" else 1)})
    if name == "margin":
        per = _add(sm, {"cmp": K - 1, "div": 1, "fp_add": 1})   # second max, (1 - e2) / sum
        return _add(*[per] * A, {"cmp": A, "reads": K * A})
    if name == "entropy":
        # H = log S - sum(e * z) / S: K multiplies and adds, one divide and one log per position
        per = _add(sm, {"fp_mul": K + 1, "fp_add": K + 1, "div": 1, "log": 1})
        return _add(*[per] * A, {"cmp": A, "reads": K * A})
    if name == "logprob":
        per = _add(sm, {"log": 1, "fp_add": 1})          # z_chosen - log sum exp(z)
        return _add(*[per] * A, {"fp_add": A - 1, "cmp": 1, "reads": K * A})  # vs log(threshold)
    if name == "probe":
        summ = _add(self_test_ops("entropy", K, A), {"cmp": (K - 1) * A, "fp_add": A})  # + margin
        d = int(feature_dim) + 3
        return _add(summ, {"fp_mul": d, "fp_add": d, "cmp": 1, "reads": int(feature_dim)})  # vs logit(threshold)
    raise ValueError(f"unknown self-test {name!r}; allowed: {', '.join(SELF_TESTS)}")
