"""Memory estimate before a QANN + SNN run, and the refusal when it cannot fit (converters.memory)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from converters.memory import (BYTES_PER_ELEMENT, LIVE, ModelTooLarge, available_bytes, check_run_memory,
                               estimate_run_memory, largest_activation, state_bytes)


def mlp():
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))


def test_largest_activation_is_found_by_hooks_for_one_example():
    x = torch.randn(5, 4)
    assert largest_activation(mlp(), (x,)) == 32
    wide = nn.Sequential(nn.Linear(4, 300), nn.Linear(300, 2))
    assert largest_activation(wide, (x,)) == 300


def test_estimate_is_the_documented_formula():
    m = mlp()
    x = torch.randn(3, 4)
    est = estimate_run_memory(m, (x,), T=2)
    assert est["params_bytes"] == 2 * state_bytes(m) == 2 * 4 * (4 * 32 + 32 + 32 * 2 + 2)
    assert est["chunk_steps"] == 2
    assert est["activation_bytes"] == LIVE * BYTES_PER_ELEMENT * 3 * 32 * (1 + 2)
    assert est["estimate_bytes"] == est["params_bytes"] + est["activation_bytes"]
    assert estimate_run_memory(m, (torch.randn(30, 4),), T=2)["estimate_bytes"] > est["estimate_bytes"]


def test_a_run_that_cannot_fit_is_refused_with_the_estimate():
    m = mlp()
    x = torch.randn(3, 4)
    with pytest.raises(ModelTooLarge, match=r"needs about .* GiB.*only .* GiB is available.*--batch-size"):
        check_run_memory(m, (x,), available=1000)
    ok = check_run_memory(m, (x,), available=10**9)
    assert ok["available_bytes"] == 10**9
    assert isinstance(ModelTooLarge("x"), ValueError)  # the CLI's user-error type: exit 2
    assert available_bytes() > 0


@pytest.mark.parametrize("cmd", [["convert", "medical-wdbc", "--calib", "8", "--check", "2"],
                                 ["simulate", "medical-wdbc", "--calib", "8", "--samples", "2"]])
def test_cli_refuses_a_run_that_cannot_fit_with_exit_2(monkeypatch, cmd):
    from click.testing import CliRunner

    import converters.memory as memory
    from cli import main
    if "--calib" in cmd and cmd[0] == "simulate":
        cmd = [c for c in cmd if c not in ("--calib", "8")]
    monkeypatch.setattr(memory, "available_bytes", lambda: 4096)
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code == 2, r.output
    assert "needs about" in r.output and "is available" in r.output
