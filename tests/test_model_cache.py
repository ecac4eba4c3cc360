"""Study caches are keyed by code version and inputs; shipped members and drafts load without
training, and only when they are what the recipe would make."""
from __future__ import annotations

import json

import pytest
import torch

import eval.model_cache as mc
from snmfm.checkpoint import SHIPPED_DIR, checkpoint_files, load_checkpoint


def test_code_version_is_stable_and_changes_with_the_sources(tmp_path, monkeypatch):
    v = mc.code_version("train")
    assert len(v) == 12 and v == mc.code_version("train")
    assert mc.code_version("measure") != v
    (tmp_path / "snmfm").mkdir()
    (tmp_path / "snmfm" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(mc, "_REPO", tmp_path)
    monkeypatch.setattr(mc, "CODE_PARTS", {"train": ("snmfm",)})
    monkeypatch.setattr(mc, "_VERSIONS", {})
    a = mc.code_version("train")
    (tmp_path / "snmfm" / "a.py").write_text("x = 2\n")
    monkeypatch.setattr(mc, "_VERSIONS", {})
    assert mc.code_version("train") != a
    with pytest.raises(ValueError, match="unknown code part"):
        mc.code_version("nope")


def test_model_key_depends_on_training_code(monkeypatch):
    k = mc.model_key("vision-digits", "tiny", None, 100, 0)
    monkeypatch.setattr(mc, "_VERSIONS", {**mc._VERSIONS, "train": "0" * 12})
    assert mc.model_key("vision-digits", "tiny", None, 100, 0) != k


@pytest.mark.parametrize("task,size,max_bytes", [("vision-digits", "tiny", 1_000_000), ("vqa-digits", "tiny", 1_000_000),
                                                ("vision-digits", "medium", 1_200_000),
                                                ("vqa-digits", "medium", 2_300_000)])  # medium: float16
def test_shipped_members_are_small_and_load_without_training(task, size, max_bytes, tmp_path):
    base = mc.shipped_member(task, size)
    assert base is not None, f"{task}-{size} should ship in {SHIPPED_DIR}"
    st, js = checkpoint_files(base)
    assert st.stat().st_size < max_bytes
    meta = json.loads(js.read_text())
    assert meta["task"] == task and meta["size"] == size and meta["seed"] == 0
    model, m = mc.trained_model(task, size, cache=tmp_path, train=False)
    assert m["key"] == f"shipped:{task}-{size}"
    assert not any(tmp_path.rglob("*.safetensors"))  # nothing trained or written
    # a different recipe (steps) is not the shipped member
    with pytest.raises(FileNotFoundError):
        mc.trained_model(task, size, steps=7, cache=tmp_path, train=False)


def test_shipped_draft_is_used_only_for_its_target_and_recipe():
    from snmfm.speculative import draft_for
    from snmfm.tasks import get_task
    task = get_task("code-stdlib")
    base = SHIPPED_DIR / "code-stdlib-draft-tiny"
    assert all(f.is_file() for f in checkpoint_files(base))
    target, tmeta = task.load()
    d = draft_for(target, task, tmeta["tensors_sha256"], "tiny", steps=300)
    assert d.snmfm_distill.get("shipped") == base.name
    shipped, _ = load_checkpoint(base)
    assert all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), shipped.state_dict().values()))
    # another recipe distils (1 step keeps this fast) instead of reusing the file
    d1 = draft_for(target, task, tmeta["tensors_sha256"], "tiny", steps=1)
    assert "shipped" not in d1.snmfm_distill
    d2 = draft_for(target, task, "0" * 64, "tiny", steps=1)
    assert "shipped" not in d2.snmfm_distill


def test_ship_member_half_stores_float16_that_loads_into_float32(tmp_path, monkeypatch):
    import snmfm.checkpoint as ck
    from snmfm.checkpoint import save_checkpoint
    from snmfm.tasks import get_task
    task = get_task("vision-digits")
    torch.manual_seed(0)
    model = task.build_model("tiny")
    src = save_checkpoint(model, tmp_path / "src" / "m", {"task": task.name, "size": "tiny", "seed": 0,
                                                          "metrics": {"accuracy": 0.5}})
    monkeypatch.setattr(mc, "trained_model", lambda *a, **k: (model, {"path": str(src)}))
    monkeypatch.setattr(ck, "SHIPPED_DIR", tmp_path / "ship")
    (tmp_path / "ship").mkdir()
    dest = mc.ship_member(task.name, "tiny", half=True)
    st, js = checkpoint_files(dest)
    from safetensors.torch import load_file
    assert {v.dtype for v in load_file(str(st)).values()} == {torch.float16}
    meta = json.loads(js.read_text())
    assert meta["stored"] == "float16" and meta["metrics_float32"] == {"accuracy": 0.5}
    assert 0.0 <= meta["metrics"]["accuracy"] <= 1.0
    back, _ = load_checkpoint(dest)
    assert all(p.dtype == torch.float32 for p in back.parameters())
    w = dict(model.named_parameters())
    for k, v in back.named_parameters():
        assert torch.equal(v, w[k].detach().half().float())
    with pytest.raises(FileExistsError):
        mc.ship_member(task.name, "tiny", half=True)
    # a training machine writes the member elsewhere (to copy into snmfm/checkpoints), never over one
    (tmp_path / "ship" / "vision-digits-tiny.json").unlink()
    elsewhere = mc.ship_member(task.name, "tiny", out=tmp_path / "out" / "sub")
    assert elsewhere == tmp_path / "out" / "sub" / "vision-digits-tiny"
    assert all(f.is_file() for f in checkpoint_files(elsewhere)) and load_checkpoint(elsewhere)[1]["size"] == "tiny"
    with pytest.raises(FileExistsError, match="exists"):
        mc.ship_member(task.name, "tiny", out=tmp_path / "out" / "sub")


def test_shipped_members_were_trained_by_the_recipe_their_size_gets():
    """A size may get its own recipe (vqa-digits medium: a lower lr); every shipped checkpoint --
    the tasks' defaults and the members -- records exactly the recipe of its task at its size, so a
    per-size change never leaves a stale member that `shipped_member` would still hand out."""
    from snmfm.tasks import get_task
    checked = 0
    for js in sorted(SHIPPED_DIR.glob("*.json")):
        meta = json.loads(js.read_text())
        if "draft" in js.stem or "train" not in meta:
            continue
        recipe = get_task(meta["task"]).train_config_for(meta["size"]).to_dict()
        assert meta["train"] == json.loads(json.dumps(recipe)), js.name
        checked += 1
    assert checked >= 6


def test_vqa_medium_recipe_is_the_one_trained_and_recorded(tmp_path):
    from snmfm.tasks import get_task
    task = get_task("vqa-digits")
    small, medium = task.train_config_for("small"), task.train_config_for("medium")
    assert small == task.train_config and task.train_config_for("tiny") == task.train_config
    assert medium.lr == 5e-4 < small.lr and medium.replace(lr=small.lr) == small
    short = task.train_config_for("medium", steps=20)
    assert (short.steps, short.warmup, short.lr) == (20, 2, 5e-4)
    assert get_task("vision-digits").train_config_for("medium") == get_task("vision-digits").train_config
    _, meta = mc.trained_model("vqa-digits", "medium", steps=1, cache=tmp_path)
    assert meta["train"] == task.train_config_for("medium", steps=1).to_dict() and meta["train"]["lr"] == 5e-4
