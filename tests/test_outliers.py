"""Outlier-aware quantisation: per-input-channel activation scales (SmoothQuant-style) keep the float
function, help a model with outlier channels, and keep the QANN an integer model that the SNN
reproduces bit for bit and that saves and loads unchanged."""
from __future__ import annotations

import pytest
import torch

from converters import ConversionError, convert, load_qann, save_qann
from snmfm.compress import calibrate, quantize, smooth
from snmfm.models import build_model
from snmfm.nn import QuantLinear
from text_helpers import WordTokenizer


def _text_model(seed=0, outliers=True):
    torch.manual_seed(seed)
    m = build_model("text", "tiny", vocab_size=64, n_classes=0).eval()
    if outliers:  # a BERT-like outlier channel: LayerNorm gamma of one channel 30x the rest
        with torch.no_grad():
            for blk in m.trunk.blocks if hasattr(m, "trunk") else []:
                blk.ln1.ln.weight[3] = 30.0
                blk.ln2.ln.weight[5] = -25.0
    return m


def _inputs(n=6, L=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (n, L), generator=g)
    mask = torch.ones(n, L, dtype=torch.long)
    mask[0, 6:] = 0
    return ids, mask


def test_smooth_keeps_the_float_function_and_sets_positive_channel_scales():
    m = _text_model()
    data = [_inputs(seed=s) for s in range(2)]
    sm = smooth(m, data, alpha=0.7)
    x = _inputs(seed=9)
    with torch.no_grad():
        assert torch.allclose(sm(*x), m(*x), atol=1e-4, rtol=1e-4)
    lin = [l for l in sm.modules() if isinstance(l, QuantLinear)]
    assert lin and all(l.in_div is not None and bool((l.in_div > 0).all()) for l in lin)
    assert all(l.in_div is None for l in m.modules() if isinstance(l, QuantLinear))  # a copy


def test_smoothing_helps_a_model_with_outlier_channels_at_4_bit_activations():
    m = _text_model()
    data = [_inputs(seed=s) for s in range(3)]
    x = _inputs(n=12, seed=7)
    with torch.no_grad():
        ref = m(*x).double()

    def err(model):
        calibrate(model, data)
        with torch.no_grad():
            return float((quantize(model, 8, 4)(*x) - ref).pow(2).mean())
    assert err(smooth(m, data, alpha=0.8)) < 0.7 * err(m)


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_snn_equals_smoothed_qann_bitwise_and_survives_save_load(tmp_path, alpha):
    m = _text_model()
    data = [_inputs(seed=s) for s in range(2)]
    sm = smooth(m, data, alpha=alpha)
    calibrate(sm, data)
    qann = quantize(sm, 8, 4)
    x = _inputs(n=4, seed=5)
    with torch.no_grad():
        y = qann(*x)
    assert torch.equal(convert(qann).run(*x).output, y)
    back = load_qann(save_qann(qann, tmp_path / "q"))
    with torch.no_grad():
        assert torch.equal(back(*x), y)


def test_smooth_rejects_bad_alpha_and_unknown_layers():
    m = _text_model()
    data = [_inputs()]
    with pytest.raises(ValueError, match="alpha"):
        smooth(m, data, alpha=1.5)
    with pytest.raises(ValueError, match="no QuantLinear matches"):
        smooth(m, data, layers=["nope"])
    with pytest.raises(ValueError, match="in_div"):
        next(l for l in m.modules() if isinstance(l, QuantLinear)).set_in_div(torch.zeros(3))


def test_export_backends_refuse_per_channel_scales():
    from converters.backends.chain import chain_of
    torch.manual_seed(0)
    net = torch.nn.Sequential(QuantLinear(4, 3), torch.nn.ReLU(), QuantLinear(3, 2, signed=False))
    data = [torch.randn(8, 4)]
    sm = smooth(net, data, alpha=0.5)
    calibrate(sm, data)
    with pytest.raises(ConversionError, match="per-channel activation scales"):
        chain_of(quantize(sm, 8, 8))


def test_cosine_distillation_recovers_a_smoothed_4bit_encoder_and_the_qann_stays_exact():
    import torch.nn.functional as F

    from snmfm.compress import finetune, freeze, prepare_qat
    m = _text_model()
    data = [_inputs(seed=s) for s in range(3)]
    sm = smooth(m, data, alpha=0.8)
    calibrate(sm, data)
    x = data[0]  # the loss it minimises falls on the data it trains on
    with torch.no_grad():
        ref = sm(*x).double()
    st = prepare_qat(sm, 8, 2)
    from snmfm.compress.qat import cosine_loss

    def loss():  # what the fine-tuning minimises, on its training batches
        with torch.no_grad():
            st.eval()
            return sum(float(cosine_loss(st(*b), sm(*b))) for b in data)
    before = loss()
    stats = finetune(st, sm, lambda g, s: data[s % 3], steps=30, lr=5e-4, distill="cosine")
    assert stats["distill"] == "cosine"
    assert loss() < 0.8 * before
    q = freeze(st)
    with torch.no_grad():
        y = q(*x)
    assert float(F.cosine_similarity(y, ref, dim=-1).mean()) > 0.9
    assert torch.equal(convert(q).run(*x).output, y)
    with pytest.raises(ValueError, match="distillation loss"):
        finetune(st, sm, lambda g, s: data[0], steps=1, distill="l7")


def test_text_minilm_builds_the_smoothed_model_by_default():
    pytest.importorskip("transformers")
    from snmfm.tasks import TaskError, get_task
    from snmfm.tasks.text import SMOOTH_ALPHA
    task = get_task("text-minilm")
    try:
        plain = task.build_model(smooth_alpha=None)
    except (TaskError, FileNotFoundError, OSError) as e:
        pytest.skip(f"MiniLM not available here: {e}")
    model = task.build_model()
    assert model.snmfm_smooth["alpha"] == SMOOTH_ALPHA
    fc1 = model.trunk.blocks[0].mlp.fc1
    assert fc1.in_div is not None and plain.trunk.blocks[0].mlp.fc1.in_div is None
    r = task.evaluate(model, limit=16)  # the same float function as the published model
    assert r["accuracy"] > 0.99999


def test_smoothed_models_prune_and_checkpoint_without_changing_their_function(tmp_path):
    from snmfm.checkpoint import load_checkpoint, save_checkpoint
    from snmfm.compress import prune
    m = _text_model()
    data = [_inputs(seed=s) for s in range(2)]
    sm = smooth(m, data, alpha=0.7)
    x = _inputs(seed=4)
    drop = {"trunk.blocks.0": [1]}
    with torch.no_grad():
        ref = prune(m, heads=drop, mlp_channels={"trunk.blocks.0": [0, 5, 9]})(*x)
        small = prune(sm, heads=drop, mlp_channels={"trunk.blocks.0": [0, 5, 9]})
        assert torch.allclose(small(*x), ref, atol=1e-4, rtol=1e-4)
        back, _ = load_checkpoint(save_checkpoint(sm, tmp_path / "sm"))
        assert torch.equal(back(*x), sm(*x))


def test_layerwise_recovery_matches_every_block_at_the_real_tokens_and_stays_exact():
    from snmfm.compress.qat import cosine_loss, prepare_qat
    from snmfm.tasks.text import _TokenStates, recover
    m = _text_model()
    tok = WordTokenizer()
    sentences = ["the cat sat on the mat", "spikes are integers", "a b c d e f g", "low bits", "one more here",
                 "exact to the bit", "the end of it"]
    data = [tuple(tok(sentences, padding=True)[k] for k in ("input_ids", "attention_mask"))]
    sm = smooth(m, data, alpha=0.8)
    calibrate(sm, data)
    ids, mask = data[0]
    rows = _TokenStates(sm)(ids, mask)
    assert rows.shape == (len(m.trunk.blocks) * int(mask.sum()) + len(ids), sm(ids, mask).shape[-1])

    def layer_loss(model):
        with torch.no_grad():
            return float(cosine_loss(_TokenStates(model)(ids, mask), _TokenStates(sm)(ids, mask)))
    before = layer_loss(prepare_qat(sm, 8, 3).eval())
    q = recover(sm, tok, 8, 3, steps=25, lr=5e-4, batch_size=4, sentences=sentences, layers=True)
    assert q.snmfm_quant["qat"]["distilled"] == "token states + embedding"
    assert layer_loss(q) < before
    with torch.no_grad():
        assert torch.equal(convert(q, coding="graded").run(ids, mask).output, q(ids, mask))


def test_recover_trains_from_pretokenised_batches_without_a_tokenizer():
    """The GPU-box path: batches instead of tokenizer + sentences, wide windows, activity budget."""
    from snmfm.nn import quantizers
    from snmfm.tasks.text import recover
    m = _text_model()
    data = [_inputs(seed=s) for s in range(3)]
    sm = smooth(m, data, alpha=0.8)
    calibrate(sm, data)
    costs = {n: 1.0 for n, _ in quantizers(sm)}
    q = recover(sm, None, 8, 5, steps=6, lr=5e-4, batches=data, step_bits=3, layers=True, activity=costs,
                activity_budget=0.9, log_every=3, log=lambda s: None)
    st = q.snmfm_quant["qat"]
    assert len(st["history"]) == 2 and "activity" in st["history"][0] and q.snmfm_quant["step_bits"] == 3
    assert all(qq.bits == 5 for _, qq in quantizers(q))
    x = data[0]
    with torch.no_grad():
        assert torch.equal(convert(q, coding="graded").run(*x).output, q(*x))
    with pytest.raises(ValueError, match="tokenizer"):
        recover(sm, None, 8, 4, steps=1)
