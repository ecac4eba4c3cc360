"""bench_validate: loihi1 against SANA-FE's Loihi model on identical spiking workloads, and the
published silicon table (figures, model values, errors)."""
from __future__ import annotations

import math

import pytest

from eval.benchmarks.bench_validate import compare_with_sanafe, silicon_figures


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_loihi1_matches_sanafe_per_component_and_in_total(rate):
    pytest.importorskip("sanafe")
    c = compare_with_sanafe(rate, steps=16, sizes=(64, 48, 32, 10))
    assert c["events"] > 0
    for k in ("synapse", "soma", "network"):
        assert abs(c["components_pj"][k]["error"]) <= 0.15, (k, c["components_pj"][k])
    assert abs(c["components_pj"]["total"]["error"]) <= 0.30
    assert abs(c["latency_s"]["error"]) <= 0.30


def test_silicon_table_lists_figure_model_and_error():
    rows = silicon_figures()
    assert len({r["figure"].split(",")[0] for r in rows}) >= 2 and len(rows) >= 3
    for r in rows:
        assert r["published"] > 0 and r["model"] > 0 and math.isfinite(r["error"])
        assert r["assumption"] and r["lacks"]
