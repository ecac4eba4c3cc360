"""--device resolution (snmfm.device) and the CLI option every --device command shares."""
from __future__ import annotations

import click
import pytest
import torch
from click.testing import CliRunner

from snmfm.device import resolve_device


def test_cpu_and_auto_resolve_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_a_gpu_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown; use one of cpu, cuda, auto"):
        resolve_device("tpu")


def test_cli_device_option_exits_2_on_cuda_without_gpu(monkeypatch):
    from cli import DEVICE
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    @click.command()
    @DEVICE
    def cmd(device):
        click.echo(str(device))

    assert CliRunner().invoke(cmd, ["--device", "auto"]).output.strip() == "cpu"
    r = CliRunner().invoke(cmd, ["--device", "cuda"])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output
