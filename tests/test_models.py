"""Reference MFMs: every model name builds at every size with the documented input/output shapes."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snmfm.models import NAMES, SIZES, ModelConfig, build_model, model_from_config


def inputs_for(name: str, model, batch: int = 2, length: int = 5):
    cfg = model.config
    if name == "vit":
        return (torch.rand(batch, cfg.channels, cfg.image_size, cfg.image_size),)
    if name == "features":
        return (torch.randn(batch, cfg.n_features),)
    if name in ("text", "decoder"):
        return (torch.randint(0, cfg.vocab_size, (batch, length)),)
    v = cfg.vision
    return (torch.rand(batch, v.channels, v.image_size, v.image_size),
            torch.randint(0, cfg.vocab_size, (batch, length)))


def expected_shape(name: str, cfg: ModelConfig, batch: int, length: int) -> tuple:
    if name in ("vit", "features"):
        return (batch, cfg.n_classes)
    if name == "text":
        return (batch, cfg.d_model) if cfg.n_classes == 0 else (batch, cfg.n_classes)
    return (batch, length, cfg.vocab_size)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(NAMES))
def test_every_model_name_and_size_has_documented_output_shape(name, size):
    torch.manual_seed(0)
    model = build_model(name, size).eval()
    assert model.config.d_model == SIZES[size]["d_model"]
    assert len(model.config.extra.get("block_shapes", [None] * SIZES[size]["n_layers"])) == SIZES[size]["n_layers"]
    with torch.no_grad():
        out = model(*inputs_for(name, model, batch=2, length=5))
    assert tuple(out.shape) == expected_shape(name, model.config, 2, 5)
    assert torch.isfinite(out).all()


@settings(max_examples=5, deadline=None)
@given(batch=st.integers(1, 4), length=st.integers(1, 12), n_classes=st.integers(2, 7))
def test_tiny_models_follow_batch_length_and_class_count(batch, length, n_classes):
    vit = build_model("vit", "tiny", n_classes=n_classes).eval()
    text = build_model("text", "tiny", n_classes=n_classes).eval()
    mm = build_model("multimodal", "tiny").eval()
    with torch.no_grad():
        assert vit(*inputs_for("vit", vit, batch)).shape == (batch, n_classes)
        assert text(*inputs_for("text", text, batch, length)).shape == (batch, n_classes)
        assert mm(*inputs_for("multimodal", mm, batch, length)).shape == (batch, length, mm.config.vocab_size)


def test_text_encoder_pool_none_returns_token_states():
    m = build_model("text", "tiny", pool="none").eval()
    ids = torch.randint(0, 256, (3, 7))
    assert m(ids).shape == (3, 7, 32)


def test_decoder_with_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    m = build_model("decoder", "tiny").eval()
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        full = m(ids)
        caches = m.new_caches()
        steps = [m(ids[:, :4], caches=caches)]
        for i in range(4, 9):
            steps.append(m(ids[:, i:i + 1], caches=caches, start_pos=i))
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_multimodal_logits_cover_text_positions_only():
    m = build_model("multimodal", "tiny").eval()
    images, tokens = inputs_for("multimodal", m, 2, 6)
    assert m(images, tokens).shape == (2, 6, m.config.vocab_size)
    assert m.n_prefix == (8 // 2) ** 2 + 1


def test_config_round_trips_through_dict():
    m = build_model("multimodal", "tiny")
    again = model_from_config(m.config.to_dict())
    assert again.config == m.config
    assert [k for k in again.state_dict()] == [k for k in m.state_dict()]


def test_build_model_rejects_unknown_name_and_lists_the_names():
    with pytest.raises(ValueError, match="unknown model name 'resnet'.*vit"):
        build_model("resnet")


def test_build_model_rejects_unknown_size_and_lists_the_sizes():
    with pytest.raises(ValueError, match="unknown size 'huge'.*tiny, small"):
        build_model("vit", "huge")


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        build_model("vit", "tiny", n_heads=3)
    with pytest.raises(ValueError, match="image_size divisible by patch_size"):
        build_model("vit", "tiny", patch_size=3)
