"""CLI: `snmfm train` and `snmfm evaluate`; user errors exit 2 with a message, no traceback."""
import json

import pytest
from click.testing import CliRunner

from cli import main


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for f in fragments:
        assert f in result.output


def test_help_lists_the_commands():
    r = run("--help")
    assert r.exit_code == 0
    assert "train" in r.output and "evaluate" in r.output
    for cmd in ("train", "evaluate"):
        sub = run(cmd, "--help")
        assert sub.exit_code == 0 and "--json" in sub.output and "--seed" in sub.output


def test_unknown_task_names_the_choices():
    assert_user_error(run("evaluate", "imagenet"), "imagenet", "vision-digits")
    assert_user_error(run("train", "imagenet"), "imagenet", "code-stdlib")


def test_bad_size_names_the_sizes():
    assert_user_error(run("train", "vision-digits", "--size", "huge"), "huge", "tiny", "small")


def test_missing_checkpoint_says_which_file(tmp_path):
    assert_user_error(run("evaluate", "vision-digits", "--checkpoint", str(tmp_path / "none")),
                      "not found", "none.json")


def test_corrupt_checkpoint_is_reported(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    assert_user_error(run("evaluate", "vision-digits", "--checkpoint", str(tmp_path / "bad")),
                      "not valid JSON")


def test_training_the_pretrained_task_is_refused():
    assert_user_error(run("train", "text-minilm"), "pretrained")


def test_evaluate_vision_digits_json_from_shipped_checkpoint():
    r = run("evaluate", "vision-digits", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["accuracy"] >= 0.97 and result["n"] == 360
    assert result["task"] == "vision-digits" and result["split"] == "test"


def test_evaluate_prints_a_table_without_json():
    r = run("evaluate", "medical-wdbc", "--limit", "20")
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "medical-wdbc" in r.output


def test_train_then_evaluate_round_trip(tmp_path):
    out = tmp_path / "wdbc"
    r = run("train", "medical-wdbc", "--size", "tiny", "--steps", "3", "--seed", "2",
            "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    trained = json.loads(r.stdout)
    assert trained["checkpoint"] == str(out) and trained["steps"] == 3 and trained["seed"] == 2
    assert (tmp_path / "wdbc.safetensors").is_file() and (tmp_path / "wdbc.json").is_file()
    r = run("evaluate", "medical-wdbc", "--checkpoint", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] == pytest.approx(trained["accuracy"])
    assert_user_error(run("evaluate", "vision-digits", "--checkpoint", str(out)),
                      "made for task 'medical-wdbc'")


def test_steps_must_be_positive():
    assert_user_error(run("train", "medical-wdbc", "--steps", "0"), "--steps")
