"""Incremental decoding with a KV cache: FP32, QANN and SNN, reference decoder, multimodal LM and
HF GPT-2; decoder Workloads (prefill, decode step at context n) and their KV-cache terms on both
accelerators."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from converters import convert
from neuro_hw import simulate
from neuro_hw.workload import extract_decoder_call, extract_decoder_workloads
from snmfm.compress import calibrate, quantize
from snmfm.models import build_model
from snmfm.speculative import Decoder

torch.set_num_threads(1)


def _gpt2():
    transformers = pytest.importorskip("transformers")
    from snmfm.models.hf import from_hf
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=60, n_positions=48,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    return hf, from_hf(hf)


def _model(kind):
    """(FP32 model, QANN (a_bits 4), prompt-and-continuation tokens [1, 10], images or None)."""
    torch.manual_seed(0)
    images = None
    if kind == "decoder":
        m = build_model("decoder", "tiny").eval()
        x = torch.randint(0, 256, (1, 10))
        calib = (torch.randint(0, 256, (4, 12)),)
    elif kind == "multimodal":
        m = build_model("multimodal", "tiny").eval()
        x = torch.randint(0, 64, (1, 10))
        images = torch.rand(1, 1, 8, 8) * 16
        calib = (torch.rand(4, 1, 8, 8) * 16, torch.randint(0, 64, (4, 10)))
    else:
        _, m = _gpt2()
        x = torch.randint(0, 60, (1, 10))
        calib = (torch.randint(0, 60, (4, 12)),)
    calibrate(m, [calib])
    return m, quantize(m, 8, 4), x, images


def _incremental(model, x, images, split=6):
    """Logits of all positions of x: a prefill over x[:, :split], then one token at a time."""
    dec = Decoder(model, images=images, cached=True)
    out = [dec.feed(x[:, :split], "prefill")]
    for i in range(split, x.shape[1]):
        out.append(dec.feed(x[:, i:i + 1], "decode"))
    return torch.cat(out, 1), dec


def _full(model, x, images):
    return Decoder(model, images=images, cached=False).feed(x, "prefill")


@pytest.mark.parametrize("kind", ["decoder", "multimodal", "gpt2"])
def test_cached_decoding_matches_uncached_logits_fp32_and_qann(kind):
    m, q, x, images = _model(kind)
    for model in (m, q):
        cached, _ = _incremental(model, x, images)
        full = _full(model, x, images)
        assert (cached - full).abs().max() <= 1e-5 * full.abs().max()


def test_mapped_gpt2_cached_decoding_matches_hf_past_key_values():
    hf, m = _gpt2()
    x = torch.randint(0, 60, (1, 9))
    with torch.no_grad():
        out = hf(x[:, :5], use_cache=True)
        ref = [out.logits]
        past = out.past_key_values
        for i in range(5, 9):
            o = hf(x[:, i:i + 1], past_key_values=past, use_cache=True)
            ref.append(o.logits)
            past = o.past_key_values
    ref = torch.cat(ref, 1).double()
    ours, _ = _incremental(m, x, None, split=5)
    assert (ours - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("kind", ["decoder", "multimodal", "gpt2"])
def test_snn_cached_decode_equals_qann_cached_and_uncached_exactly(kind):
    _, q, x, images = _model(kind)
    snn = convert(q)
    qann_cached, _ = _incremental(q, x, images)
    snn_cached, dec = _incremental(snn, x, images)
    assert torch.equal(snn_cached, qann_cached)
    assert torch.equal(snn_cached, _full(q, x, images))
    # the SNN's cache holds the QANN's keys and values, exactly
    _, qdec = _incremental(q, x, images)
    for c, qc in zip(dec.caches, qdec.caches):
        assert torch.equal(c["k"], qc["k"]) and torch.equal(c["v"], qc["v"])


def test_cached_snn_step_sends_no_spike_for_cached_positions():
    """Key and value neurons of cached positions start at their settled counts: in a decode step
    only the new position's neurons are ever updated (at most H x head_dim per step)."""
    _, q, x, _ = _model("decoder")
    snn = convert(q)
    dec = Decoder(snn, cached=True, record=True)
    dec.feed(x[:, :8], "prefill")
    prefill = dec.log[-1].trace
    dec.feed(x[:, 8:9], "decode")
    step = dec.log[-1].trace
    attn = q.trunk.blocks[0].attn
    per_position = attn.n_heads * attn.head_dim
    for site in ("trunk.blocks.0.attn.qk.quant_b", "trunk.blocks.0.attn.av.quant_b"):
        assert step.sites[site].updates.max() <= per_position
        assert step.sites[site].spikes.sum() > 0
        assert prefill.sites[site].updates.max() > per_position   # 8 new positions there
    assert step.total_spikes() < prefill.total_spikes() / 3


def test_rollback_forgets_positions_and_decoding_resumes_exactly():
    _, q, x, _ = _model("decoder")
    snn = convert(q)
    for model in (q, snn):
        dec = Decoder(model, cached=True)
        dec.feed(x[:, :6], "prefill")
        dec.feed(x[:, 6:9], "verify")
        dec.rollback(7)
        assert dec.n == 7 and dec.caches[0]["k"].shape[2] == 7
        again = dec.feed(x[:, 7:10], "verify")
        assert torch.equal(again, _full(q, x, None)[:, 7:10])


# ---- decoder Workloads --------------------------------------------------------------------------
def test_decoder_workloads_carry_kv_cache_reads_and_writes():
    _, q, _, _ = _model("decoder")
    prefill, step = extract_decoder_workloads(q, prompt_len=8, context_len=20)
    attn = q.trunk.blocks[0].attn
    inner, bits = attn.n_heads * attn.head_dim, attn.qk.quant_b.bits
    layers = len(q.trunk.blocks)
    assert prefill.meta["kv_cache"] == {"read_bits": 0, "write_bits": 2 * layers * 8 * inner * bits,
                                        "cached_positions": 0, "new_positions": 8}
    assert step.meta["kv_cache"]["read_bits"] == 2 * layers * 20 * inner * bits
    assert step.meta["kv_cache"]["write_bits"] == 2 * layers * 1 * inner * bits
    qk = step.op("trunk.blocks.0.attn.qk")
    assert qk.gemm == (attn.n_heads, 1, attn.head_dim, 21)   # one query over 20 cached + 1 new keys
    assert step.op("lm_head").gemm[1] == 1
    # a verification pass of k + 1 positions, and the multimodal prefix in the cache
    assert extract_decoder_call(q, 5, 20).op("trunk.blocks.0.attn.av").gemm == (attn.n_heads, 5, 25, attn.head_dim)
    _, mq, _, _ = _model("multimodal")
    wl = extract_decoder_call(mq, 1, 3)
    assert wl.meta["kv_cache"]["cached_positions"] == mq.n_prefix + 3
    assert all(o.name.startswith("decoder.") for o in wl.ops)
    with pytest.raises(ValueError, match="exceed the model's max_len"):
        extract_decoder_call(q, 1, 10_000)


def test_decode_step_energy_grows_with_context_as_the_kv_cache_terms_say():
    """Conventional: the DRAM energy grows by exactly the KV-cache bytes read.  Neuromorphic (the
    same step's events at every context, `retarget_trace`): the energy grows, by at least the
    itemised KV-cache reads; the K-cache reads (each query spike fetches a row of K^T over every
    key) grow linearly with the cached positions, while V-cache reads follow the probability
    spikes, whose total is about fixed (probabilities sum to 1)."""
    from eval.speculative import retarget_trace
    _, q, x, _ = _model("decoder")
    snn = convert(q)
    dec = Decoder(snn, cached=True, record=True)
    dec.feed(torch.randint(0, 256, (1, 16)), "prefill")
    dec.feed(x[:, :1], "decode")
    trace = dec.log[-1].trace
    conv, neuro = [], []
    for n in (8, 16, 32, 64):
        wl = extract_decoder_call(q, 1, n)
        conv.append(simulate(wl, None, "conventional"))
        neuro.append(simulate(wl, retarget_trace(trace, wl), "neuromorphic"))
    pj_bit = conv[0].meta["tech_table"]["dram_pj_per_bit"]
    for a, b in itertools.pairwise(conv):
        assert b.energy_pj > a.energy_pj
        d_kv = (b.meta["kv_cache"]["read_bytes"] - a.meta["kv_cache"]["read_bytes"]) * 8 * pj_bit
        assert b.breakdown_pj["dram"] - a.breakdown_pj["dram"] == pytest.approx(d_kv, rel=1e-9)
        assert b.energy_pj - a.energy_pj >= b.meta["kv_cache"]["read_pj"] - a.meta["kv_cache"]["read_pj"]
    for a, b in itertools.pairwise(neuro):
        assert b.energy_pj > a.energy_pj
        assert b.energy_pj - a.energy_pj >= b.meta["kv_cache"]["read_pj"] - a.meta["kv_cache"]["read_pj"] > 0
    k_reads = [sum(r["kv_cache_read_pj"] for r in rep.per_op if r["name"].endswith(".attn.qk"))
               for rep in neuro]
    # per query spike: the cached share n / (n + 1) of a K^T row of n + 1 keys, in whole words
    from neuro_hw.neuromorphic import NeuromorphicConfig
    word = NeuromorphicConfig.default().cores.word_bits
    bits = q.trunk.blocks[0].attn.qk.quant_b.bits
    per_spike = [n / (n + 1) * math.ceil((n + 1) * bits / word) for n in (8, 16, 32, 64)]
    assert k_reads[-1] / k_reads[0] == pytest.approx(per_spike[-1] / per_spike[0], rel=1e-9)
