"""Choosing thresholds so that a cascade stays within `tolerance` of its largest member.

The risk of a threshold setting lambda is the accuracy the cascade loses against the largest
member (the reference, the ladder's last rung) on the same queries:

  drop(lambda) = acc(reference) - acc(cascade)
               = P(cascade wrong, reference right) - P(cascade right, reference wrong)
              <= E[l(lambda)],   l = 1[cascade wrong and reference right]  in {0, 1}.

Three ways to pick lambda on n held-out calibration queries (the task's *calib* split):

* ``ltt`` -- Learn then Test (Angelopoulos, Bates, Candes, Jordan, Lei 2021): for each candidate,
  test H0: E[l] > tolerance with the exact binomial p-value P(Binom(n, tolerance) <= sum l);
  candidates are tested in a fixed sequence from the most conservative (escalate nearly everything)
  to the most permissive and testing stops at the first non-rejection (fixed-sequence testing:
  family-wise error <= delta without a multiplicity correction).  A grid over several thresholds
  uses Bonferroni (delta / candidates) instead.  Guarantee: with probability >= 1 - delta over the
  calibration draw, every selected lambda has E[l] <= tolerance, so the expected accuracy drop on
  new queries is <= tolerance.
* ``crc`` -- conformal risk control (Angelopoulos, Bates, Fisch, Lei, Schuster 2022) on the
  monotonised loss l~(lambda) = max of l over the more conservative candidates (non-decreasing
  along the sequence, >= l): keep the candidates whose (sum l~ + 1) / (n + 1) <= tolerance.
  Guarantee: E[l(lambda_hat)] <= tolerance in expectation over calibration and test draws.
* ``empirical`` -- the plug-in rule mean_calib(l) <= tolerance: no guarantee, the point estimate
  of the same loss that the other two bound.  (The signed drop is not used: on a small calib split
  the reference's own mistakes would buy the cascade slack that does not carry over to new data.)

Escalating every query (the reference alone) has l = 0 identically and is always valid; it is the
fallback, never a calibration result: when nothing else is valid, `calibrate` raises with the best
achievable tolerance.  Certifying `tolerance` needs enough queries even with no losses at all:
ltt n >= log(1/delta) / tolerance, crc n >= 1/tolerance - 1 (`min_queries`).
"""
from __future__ import annotations

import math

import numpy as np

METHODS = ("ltt", "crc", "empirical")


def binom_pvalue(k: int, n: int, eps: float) -> float:
    """P(Binom(n, eps) <= k): small when k losses in n are unlikely if the true risk were eps."""
    from scipy.stats import binom
    if eps <= 0:
        return 1.0 if k > 0 else 1.0
    if eps >= 1:
        return 0.0
    return float(binom.cdf(k, n, eps))


def binom_ucb(k: int, n: int, delta: float) -> float:
    """Clopper-Pearson upper confidence bound (level 1 - delta) of a binomial rate from k in n."""
    from scipy.stats import beta
    if k >= n:
        return 1.0
    return float(beta.ppf(1 - delta, k + 1, n - k))


def min_queries(tolerance: float, method: str, delta: float = 0.1) -> int:
    """Calibration queries needed to certify `tolerance` even if no query is lost."""
    if tolerance <= 0:
        return math.inf
    if method == "ltt":
        return math.ceil(math.log(1 / delta) / -math.log1p(-min(tolerance, 0.999999)))
    if method == "crc":
        return max(0, math.ceil(1 / tolerance - 1))
    return 1


def valid_candidates(losses: np.ndarray, drops: np.ndarray, tolerance: float, method: str,
                     delta: float, sequence: bool) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask [C], bound [C]) for candidates ordered from the most conservative.

    losses [C, n] in {0, 1} (cascade wrong, reference right); drops [C]: signed accuracy drop.
    bound: the candidate's certified risk (ltt: binomial UCB, crc: (sum l~ + 1)/(n + 1),
    empirical: the mean loss)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(METHODS)}")
    C, n = losses.shape
    k = losses.sum(1).astype(int)
    if method == "empirical":
        rate = k / max(n, 1)
        return rate <= tolerance + 1e-12, rate.astype(float)
    if method == "crc":
        if not sequence:
            raise ValueError("method 'crc' needs one threshold path (search='shared'), not a grid")
        mono = np.maximum.accumulate(losses, axis=0).sum(1)
        bound = (mono + 1.0) / (n + 1.0)
        ok = bound <= tolerance + 1e-12
        # the selected set is the prefix (bound is non-decreasing along the sequence)
        return np.logical_and.accumulate(ok), bound
    level = delta if sequence else delta / max(C, 1)
    pvals = np.array([binom_pvalue(int(ki), n, tolerance) for ki in k])
    bound = np.array([binom_ucb(int(ki), n, level) for ki in k])
    ok = pvals <= level
    if sequence:
        ok = np.logical_and.accumulate(ok)
    return ok, bound
