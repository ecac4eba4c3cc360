"""Structural pruning: removed units are gone (exact surgery), models shrink, rebuild from config,
and still convert exactly."""
from __future__ import annotations

import pytest
import torch

from converters import convert
from neuro_hw.workload import extract_workload
from snmfm.compress import calibrate, quantize
from snmfm.compress.prune import prune
from snmfm.models import build_model, model_from_config


def _vit(**kw):
    torch.manual_seed(0)
    return build_model("vit", "tiny", n_layers=2, n_heads=4, **kw).eval()


X = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_removing_heads_equals_zeroing_their_context_columns():
    m = _vit()
    p = prune(m, heads={0: [1, 3], 1: [0]})
    ref = m
    hd = m.trunk.blocks[0].attn.head_dim
    hooks = []
    for blk, drop in ((ref.trunk.blocks[0], [1, 3]), (ref.trunk.blocks[1], [0])):
        def zero(mod, args, drop=drop):
            x = args[0].clone()
            for h in drop:
                x[..., h * hd:(h + 1) * hd] = 0
            return (x,)
        hooks.append(blk.attn.proj.register_forward_pre_hook(zero))
    expect = ref(X)
    for h in hooks:
        h.remove()
    assert torch.allclose(p(X), expect, atol=1e-5)
    assert [b.attn.n_heads for b in p.trunk.blocks] == [2, 3]
    assert p.trunk.blocks[0].attn.qkv.linear.weight.shape == (3 * 2 * hd, 32)
    assert p.config.extra["pruned"]["heads"] == {"trunk.blocks.0": [1, 3], "trunk.blocks.1": [0]}


@torch.no_grad()
def test_removing_mlp_channels_equals_zeroing_them():
    m = _vit()
    p = prune(m, mlp_channels={"trunk.blocks.1": [0, 5, 7]})
    keep = torch.ones(64)
    keep[[0, 5, 7]] = 0
    hook = m.trunk.blocks[1].mlp.fc2.register_forward_pre_hook(lambda mod, args: (args[0] * keep,))
    expect = m(X)
    hook.remove()
    assert torch.allclose(p(X), expect, atol=1e-5)
    assert p.trunk.blocks[1].mlp.fc1.out_features == 64 - 3


@torch.no_grad()
def test_removing_a_block_of_a_pre_norm_model_skips_it():
    m = _vit()
    p = prune(m, blocks=[0])
    x = m.patch(X).flatten(2).transpose(1, 2)
    x = torch.cat([m.cls.expand(x.shape[0], -1, -1), x], 1) + m.pos
    expect = m.head(m.trunk.ln_f(m.trunk.blocks[1](x))[:, 0])
    assert torch.allclose(p(X), expect, atol=1e-6)
    assert p.config.n_layers == 1 and p.config.extra["pruned"]["blocks"] == ["trunk.blocks.0"]


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_pruned_model_rebuilds_from_its_config_and_has_fewer_macs(importance):
    m = _vit()
    p = prune(m, heads=0.5, mlp_channels=0.5, importance=importance, data=[(X,)])
    r = model_from_config(p.config.to_dict())
    r.load_state_dict(p.state_dict())
    assert torch.equal(r.eval()(X), p(X))
    macs = extract_workload(m, X).total_macs
    macs_p = extract_workload(p, X).total_macs
    assert macs_p < 0.7 * macs
    assert p.snmfm_prune["params_after"] < p.snmfm_prune["params_before"]


def test_taylor_importance_keeps_the_head_that_matters():
    """A head whose output projection is scaled up dominates the output; Taylor keeps it."""
    m = _vit()
    with torch.no_grad():
        hd = m.trunk.blocks[0].attn.head_dim
        w = m.trunk.blocks[0].attn.proj.linear.weight
        w[:, 2 * hd:3 * hd] *= 50
    p = prune(m, heads=3, importance="taylor", data=[(X,)])
    assert 2 not in p.snmfm_prune["heads"]["trunk.blocks.0"]


def test_pruned_multimodal_and_text_models_rebuild():
    torch.manual_seed(0)
    mm = build_model("multimodal", "tiny").eval()
    img, tok = torch.randn(2, 1, 8, 8), torch.randint(0, 64, (2, 5))
    p = prune(mm, heads=1, mlp_channels=0.25)
    r = model_from_config(p.config.to_dict())
    r.load_state_dict(p.state_dict())
    assert torch.equal(r.eval()(img, tok), p(img, tok))
    txt = build_model("text", "tiny", n_layers=2).eval()
    p = prune(txt, blocks=1)
    assert len(p.trunk.blocks) == 1 and p.config.n_layers == 1


def test_pruned_model_converts_exactly():
    p = prune(_vit(), heads=0.5, mlp_channels=0.5)
    calibrate(p, [(X,)])
    qann = quantize(p, 8, 8)
    r = convert(qann).run(X)
    assert torch.equal(r.output, qann(X))


def test_pruning_errors_are_clear():
    m = _vit()
    with pytest.raises(ValueError, match="at least 1 must remain"):
        prune(m, heads={0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="unknown importance"):
        prune(m, heads=1, importance="random")
    with pytest.raises(ValueError, match="needs data"):
        prune(m, heads=1, importance="taylor")
    with pytest.raises(ValueError, match="cannot remove every block"):
        prune(m, blocks=[0, 1])
    calibrate(m, [(X,)])
    with pytest.raises(ValueError, match="before quantize"):
        prune(quantize(m), heads=1)


def test_torch_pruning_removes_the_same_mlp_channels_as_our_surgery():
    """Cross-check with Torch-Pruning where it handles our model (MLP channels: fc1 rows / fc2
    columns).  It cannot prune heads of the fused QKV projection: its dependency graph treats the
    activation products Q K^T and attn V as elementwise ops and maps qkv output channels straight onto
    proj's inputs (IndexError), so heads and blocks use our own surgery."""
    tp = pytest.importorskip("torch_pruning")
    m = _vit()
    drop = [1, 4, 9]
    ours = prune(m, mlp_channels={"trunk.blocks.0": drop})
    theirs = __import__("copy").deepcopy(m)
    dg = tp.DependencyGraph().build_dependency(theirs, example_inputs=X,
                                               unwrapped_parameters=[(theirs.cls, 2), (theirs.pos, 2)])
    dg.get_pruning_group(theirs.trunk.blocks[0].mlp.fc1.linear, tp.prune_linear_out_channels, idxs=drop).prune()
    for name, t in ours.state_dict().items():
        assert torch.equal(t, theirs.state_dict()[name]), name
