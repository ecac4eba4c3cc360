"""Speculative decoding: greedy output is the target's own, token for token, for every draft kind
and model form; speculative sampling draws from the target's distribution; the call log and its
charging on both accelerators; bad input."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats

from converters import convert
from snmfm.compress import calibrate, quantize
from snmfm.models import build_model
from snmfm.speculative import (compressed_draft, decode, distill_draft, first_layers,
                               speculative_decode, verify)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def family():
    """A 2-layer byte decoder (FP32, QANN a4, SNN), its compressed QANN/SNN draft (a3) and a
    distilled 1-layer draft, on code-stdlib's vocabulary."""
    from snmfm.tasks import get_task
    task = get_task("code-stdlib")
    torch.manual_seed(0)
    fp = build_model("decoder", "tiny", vocab_size=256, max_len=128, n_layers=2).eval()
    calib = [(torch.randint(0, 256, (4, 32)),)]
    calibrate(fp, calib)
    q = quantize(fp, 8, 4)
    small = compressed_draft(fp, calib, w_bits=4, a_bits=3)
    distilled = distill_draft(fp, task, size="tiny", steps=10, batch_size=4)
    return {"fp32": fp, "qann": q, "snn": convert(q), "small_qann": small, "small_snn": convert(small),
            "distilled": distilled, "task": task}


PROMPTS = [list(b"def f(x):\n    return "), list(b"import os\nimport ")]


@pytest.mark.parametrize("target_form", ["fp32", "qann", "snn"])
def test_greedy_speculative_decoding_is_the_targets_greedy_output_for_every_draft(family, target_form):
    target = family[target_form]
    drafts = {"distilled": family["distilled"], "compressed_qann": family["small_qann"],
              "compressed_snn": family["small_snn"], "self_first_layer": first_layers(target, 1)}
    for prompt in PROMPTS[:1] if target_form == "snn" else PROMPTS:
        ref = decode(target, prompt, 10).tokens
        if target_form != "snn":   # (the SNN's cached decoding is tested in test_kv_cache)
            assert ref == decode(target, prompt, 10, cached=False).tokens
        for name, draft in drafts.items():
            r = speculative_decode(target, draft, prompt, 10, k=3)
            assert r.tokens == ref, (target_form, name)
            assert len(r.tokens) == 10


def test_fp32_and_qann_drafts_of_an_snn_target_and_snn_drafts_of_fp32(family):
    prompt = PROMPTS[0]
    for target, draft in [(family["snn"], family["qann"]), (family["fp32"], family["snn"]),
                          (family["snn"], family["distilled"])]:
        assert speculative_decode(target, draft, prompt, 8, k=4).tokens == decode(target, prompt, 8).tokens


def test_self_speculation_view_shares_weights_and_runs_the_first_layers(family):
    q = family["qann"]
    view = first_layers(q, 1)
    assert len(view.trunk.blocks) == 1 and len(q.trunk.blocks) == 2
    assert view.trunk.blocks[0] is q.trunk.blocks[0] and view.lm_head is q.lm_head
    x = torch.randint(0, 256, (1, 7))
    h = q.embed(x)
    expect = q.lm_head(q.trunk.ln_f(q.trunk.blocks[0](h)))
    assert torch.equal(view(x), expect)
    assert len(first_layers(family["snn"], 1).neurons()) < len(family["snn"].neurons())
    with pytest.raises(ValueError, match="1 <= m <= 2"):
        first_layers(q, 3)


def test_multimodal_greedy_speculation_stops_at_eos_like_the_target():
    torch.manual_seed(0)
    m = build_model("multimodal", "tiny", n_layers=2).eval()
    images = torch.rand(4, 1, 8, 8) * 16
    calibrate(m, [(images, torch.randint(0, 64, (4, 8)))])
    q = quantize(m, 8, 4)
    snn = convert(q)
    for i in range(2):
        img = images[i:i + 1]
        prompt = torch.randint(0, 64, (6,)).tolist()
        for target in (m, q, snn):
            ref = decode(target, prompt, 6, images=img, stop_token=3).tokens
            r = speculative_decode(target, first_layers(target, 1), prompt, 6, k=2, images=img, stop_token=3)
            assert r.tokens == ref
            assert r.calls[0].image and not r.calls[-1].image


def test_batched_lockstep_speculation_equals_each_sequences_greedy_decoding(family):
    q, draft = family["qann"], family["distilled"]
    prompts = torch.randint(0, 256, (3, 9))
    r = speculative_decode(q, draft, prompts, 7, k=3)
    assert r.tokens == [decode(q, p, 7).tokens for p in prompts]
    assert r.calls[0].batch == 3


def test_call_log_counts_passes_positions_and_wasted_work(family):
    q = family["qann"]
    r = speculative_decode(q, family["small_qann"], PROMPTS[0], 12, k=3)
    m = r.metrics()
    target = [c for c in r.calls if c.member == "target"]
    assert target[0].purpose == "prefill" and target[0].context == 0
    assert target[0].positions == len(PROMPTS[0])
    assert len(target) == 1 + len(r.rounds)
    assert m["target_passes_per_token"] == pytest.approx(len(target) / 12)
    assert m["accepted"] == sum(a for _, a in r.rounds) and 0 <= m["acceptance_rate"] <= 1
    for c, (n_d, kept) in zip(target[1:], r.rounds):
        assert c.cached and c.positions == n_d + 1 and c.wasted == n_d - kept
    drafts = [c for c in r.calls if c.member == "draft"]
    assert sum(c.wasted > 0 for c in drafts) == m["drafted"] - m["accepted"]
    # adaptive k at threshold 1: the draft never proposes; output unchanged
    a = speculative_decode(q, family["small_qann"], PROMPTS[0], 12, k=3, adaptive=1.0)
    assert a.tokens == r.tokens and a.metrics()["drafted"] == 0


# ---- speculative sampling ----------------------------------------------------------------------
def _peaked(seed, vocab=6, max_len=64, std=1.0):
    torch.manual_seed(seed)
    m = build_model("decoder", "tiny", vocab_size=vocab, max_len=max_len).eval()
    torch.nn.init.normal_(m.embed.tok.weight, std=std)
    torch.nn.init.normal_(m.lm_head.linear.weight, std=std)
    return m


def _pit_pvalue(p: torch.Tensor, tokens: torch.Tensor, gen: torch.Generator) -> float:
    """Randomised probability integral transform of tokens [N] under their distributions p [N, V]:
    uniform on [0, 1) iff each token is drawn from its p; chi-square test over 20 bins."""
    pt = p.gather(1, tokens[:, None])[:, 0]
    lo = p.cumsum(1).gather(1, tokens[:, None])[:, 0] - pt
    u = (lo + torch.rand(pt.shape, generator=gen, dtype=torch.float64) * pt).numpy()
    return float(stats.chisquare(np.histogram(u, bins=20, range=(0, 1))[0]).pvalue)


def test_speculative_sampling_rule_draws_20000_tokens_from_the_target_distribution():
    """20,000 rounds of k = 3 with a small-vocabulary target and a different draft: every emitted
    token (kept drafts, residual draws after a rejection, bonus tokens) is distributed as the
    target's p at its position, and rejections do happen."""
    target, draft = _peaked(0, std=0.5), _peaked(1, std=0.5)
    gen = torch.Generator().manual_seed(0)
    N, k, V = 20_000, 3, 6
    seq = torch.randint(0, V, (N, 2), generator=gen)
    qs = []
    with torch.no_grad():
        for _ in range(k):
            q = torch.softmax(draft(seq)[:, -1].double(), -1)
            qs.append(q)
            seq = torch.cat([seq, torch.multinomial(q, 1, generator=gen)], 1)
        p = torch.softmax(target(seq)[:, 1:].double(), -1)          # positions 2 .. 2 + k
    kept, fix = verify(p, torch.stack(qs, 1), seq[:, 2:], sampling=True, generator=gen)
    assert 0.2 < float((kept == 0).float().mean()) < 0.9 and int((kept == k).sum()) > 500
    toks, dists = [], []
    for i in range(k + 1):   # the i-th emitted token of every round that emitted it
        rows = kept >= i
        tok = torch.where(kept[rows] > i, seq[rows, 2 + i] if i < k else fix[rows], fix[rows])
        toks.append(tok)
        dists.append(p[rows, i])
    tokens = torch.cat(toks)
    assert len(tokens) >= 20_000
    assert _pit_pvalue(torch.cat(dists), tokens, gen) > 0.01
    # the first token alone against the target's marginal: the same test on 6 cells
    first = torch.bincount(toks[0], minlength=V).numpy()
    expect = p[:, 0].sum(0).numpy()
    assert stats.chisquare(first, expect * first.sum() / expect.sum()).pvalue > 0.01


def test_speculative_sampling_end_to_end_matches_the_target():
    """The whole loop (drafting, verification, cache rollback, lockstep batch): 4 sequences of
    1000 sampled tokens, every one distributed as the target's p given its prefix."""
    target = _peaked(0, max_len=1010)
    draft = copy.deepcopy(target)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = draft.lm_head.linear.weight
        w.add_(torch.randn(w.shape, generator=gen) * 0.05)
    prompts = torch.randint(0, 6, (4, 2), generator=gen)
    r = speculative_decode(target, draft, prompts, 1000, k=4, sampling=True, generator=gen)
    tokens = torch.tensor(r.sequences)
    kept = [j for _, j in r.rounds]
    assert tokens.numel() == 4000 and min(kept) == 0 and max(kept) == 4
    with torch.no_grad():
        p = torch.softmax(target(torch.cat([prompts, tokens], 1))[:, 1:-1].double(), -1)
    assert _pit_pvalue(p.reshape(-1, 6), tokens.reshape(-1), gen) > 0.01


# ---- bad input ---------------------------------------------------------------------------------
def test_bad_input_gives_clear_errors(family):
    q = family["qann"]
    other = build_model("decoder", "tiny", vocab_size=100, max_len=128)
    with pytest.raises(ValueError, match="vocabularies differ: draft has 100 tokens, target 256"):
        speculative_decode(q, other, PROMPTS[0], 4)
    for k in (0, -2, 1.5):
        with pytest.raises(ValueError, match="k \\(draft tokens per round\\) must be an integer >= 1"):
            speculative_decode(q, family["small_qann"], PROMPTS[0], 4, k=k)
    with pytest.raises(ValueError, match="prompt must be a non-empty"):
        speculative_decode(q, family["small_qann"], [], 4)
    with pytest.raises(ValueError, match="exceed the model's capacity"):
        decode(q, list(range(200)), 4)
    with pytest.raises(ValueError, match="needs images"):
        decode(build_model("multimodal", "tiny"), [1, 2], 2)
    with pytest.raises(TypeError, match="DecoderLM or MultimodalLM"):
        decode(build_model("vit", "tiny"), [1, 2], 2)


# ---- charging the call log (eval.speculative) ----------------------------------------------------
def test_call_log_is_charged_per_token_on_both_accelerators_and_every_pairing(family):
    from eval.speculative import Placement, charge
    q, snn, small, small_snn = family["qann"], family["snn"], family["small_qann"], family["small_snn"]
    prompt = PROMPTS[1]
    r = speculative_decode(snn, small_snn, prompt, 6, k=3, record=True)
    plain = decode(q, prompt, 6)
    out = {}
    for dh in ("conventional", "neuromorphic"):
        for th in ("conventional", "neuromorphic"):
            c = charge(r, {"draft": Placement(small_snn, dh), "target": Placement(snn, th)})
            out[dh, th] = c
            assert c["energy_pj_per_token"] > 0 and c["latency_s_per_token"] > 0
            assert c["energy_pj"] == pytest.approx(sum(m["energy_pj"] for m in c["by_member"].values())
                                                   + c["link"]["energy_pj"])
            assert (c["link"]["bits"] > 0) == (dh != th)
            assert 0 <= c["wasted_fraction"] < 1
    # members that ran as QANNs are replayed on their SNNs for traces: the same charge
    rq = speculative_decode(q, small, prompt, 6, k=3)
    assert rq.tokens == r.tokens
    cq = charge(rq, {"draft": Placement(small, "neuromorphic", snn=small_snn),
                     "target": Placement(q, "neuromorphic", snn=snn)})
    assert cq["energy_pj"] == pytest.approx(out["neuromorphic", "neuromorphic"]["energy_pj"], rel=1e-9)
    base = charge(plain, {"target": Placement(q, "conventional")})
    assert base["by_member"].keys() == {"target"} and base["tokens"] == 6
    with pytest.raises(ValueError, match="needs its SpikingModel"):
        charge(plain, {"target": Placement(q, "neuromorphic")})
