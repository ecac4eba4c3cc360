"""Checkpoints: round trip, and clear errors for every way a checkpoint can be wrong."""
import json

import pytest
import torch

from snmfm.checkpoint import CheckpointError, checkpoint_files, load_checkpoint, read_meta, save_checkpoint
from snmfm.models import build_model
from snmfm.tasks import TASKS, get_task
from snmfm.tasks.run import default_checkpoint


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("vit", "tiny", n_classes=10)
    path = save_checkpoint(model, tmp_path / "m", {"task": "vision-digits", "seed": 3,
                                                   "metrics": {"accuracy": 0.5}})
    return model, path


def test_round_trip_restores_weights_config_and_meta(saved):
    model, path = saved
    loaded, meta = load_checkpoint(path)
    assert loaded.config == model.config
    s1, s2 = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert meta["seed"] == 3 and meta["metrics"]["accuracy"] == 0.5
    assert meta["versions"]["torch"] == torch.__version__ and len(meta["tensors_sha256"]) == 64
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(model.eval()(x), loaded(x))


def test_path_may_be_given_with_either_suffix(saved):
    _, path = saved
    for p in checkpoint_files(path):
        assert load_checkpoint(p)[1]["seed"] == 3


def test_tied_embeddings_are_stored_once(tmp_path):
    model = build_model("decoder", "tiny", tie_embeddings=True)
    path = save_checkpoint(model, tmp_path / "tied", {})
    loaded, meta = load_checkpoint(path)
    assert meta["aliases"] and loaded.lm_head.linear.weight.data_ptr() == loaded.embed.tok.weight.data_ptr()


def test_missing_files_are_named(tmp_path, saved):
    with pytest.raises(CheckpointError, match="not found: .*nothing.json"):
        load_checkpoint(tmp_path / "nothing")
    _, path = saved
    checkpoint_files(path)[0].unlink()
    with pytest.raises(CheckpointError, match=r"not found: .*m\.safetensors"):
        load_checkpoint(path)


def test_bad_json_is_reported_as_corrupt(saved):
    _, path = saved
    checkpoint_files(path)[1].write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_changed_tensors_fail_the_hash_check(saved):
    _, path = saved
    f = checkpoint_files(path)[0]
    f.write_bytes(f.read_bytes()[:-16])
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt checkpoint tensors"):
        load_checkpoint(path, verify=False)


def test_config_that_does_not_fit_the_tensors_names_the_key(saved):
    _, path = saved
    jf = checkpoint_files(path)[1]
    meta = json.loads(jf.read_text())
    meta["config"]["d_ff"] = 48
    jf.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tensor 'trunk.blocks.0.mlp.fc1.linear.weight' has shape"):
        load_checkpoint(path)
    meta["config"]["n_layers"] = 2
    jf.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="missing tensor.*trunk.blocks.1"):
        load_checkpoint(path)
    meta["config"]["kind"] = "banana"
    jf.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="config that does not build"):
        load_checkpoint(path)


def test_checkpoint_of_another_task_is_refused(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="made for task 'vision-digits', not 'code-stdlib'"):
        load_checkpoint(path, task="code-stdlib")


def test_not_an_snmfm_record_is_refused(saved):
    _, path = saved
    checkpoint_files(path)[1].write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not an snmfm checkpoint"):
        read_meta(path)


def test_quantized_models_are_not_saved_as_float_checkpoints(tmp_path):
    from snmfm.nn import set_quant_mode
    model = build_model("vit", "tiny")
    set_quant_mode(model, "calib")
    with pytest.raises(CheckpointError, match="quantizers in mode"):
        save_checkpoint(model, tmp_path / "q", {})


def test_default_checkpoints_are_shipped_for_trainable_tasks():
    for name in TASKS:
        if get_task(name).kind == "embed":
            with pytest.raises(CheckpointError, match="pretrained"):
                default_checkpoint(name)
            continue
        path = default_checkpoint(name)
        tensors, meta = checkpoint_files(path)
        assert tensors.is_file() and meta.is_file()
        assert "snmfm/checkpoints" in str(path).replace("\\", "/")


def test_missing_default_checkpoint_is_trained_once_and_cached(tmp_path, monkeypatch, capsys):
    import snmfm.checkpoint as ck
    task = get_task("medical-wdbc")
    monkeypatch.setattr(ck, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setenv("SNMFM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(type(task), "train_config", task.train_config.replace(steps=2))
    path = default_checkpoint("medical-wdbc", progress=False)
    assert "training it now" in capsys.readouterr().err
    assert path == tmp_path / "cache" / "checkpoints" / "medical-wdbc"
    assert default_checkpoint("medical-wdbc") == path
    assert "training" not in capsys.readouterr().err
    model, meta = load_checkpoint(path, task="medical-wdbc")
    assert meta["train"]["steps"] == 2
