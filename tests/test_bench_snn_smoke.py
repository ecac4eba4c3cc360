"""Smoke test of eval/benchmarks/bench_snn.py on its tiniest setting (seconds, not minutes)."""
from __future__ import annotations

import pytest

from eval.benchmarks._sj_compare import have_spikingjelly
from eval.benchmarks.bench_snn import (SJ_TINY, bench_models, bench_spikingjelly, models_table, run_task,
                                       sj_table)


def _quiet(*_):
    pass


def test_bench_snn_tiny_model_is_exact_and_tabulated():
    rows = bench_models(["vit"], size="tiny", batch=2, bits=[(8, 4)], repeats=1, qann_repeats=2,
                        isolate=False, log=_quiet)
    (r,) = rows
    assert r["exact"]
    assert 1 <= r["t_settle"] <= r["steps"]
    assert r["qann"]["cpu_ms"] > 0 and r["snn_notrace"]["cpu_ms"] > 0 and r["snn_trace"]["cpu_ms"] > 0
    table = models_table(rows)
    assert "| vit | W8A4 | binary | 1 |" in table and table.rstrip().endswith("True |")
    # every event reaches >= 1 synapse of its consumer; the throughput is over the traced wall time
    assert r["synaptic_events"] > r["events"] > 0
    assert r["synaptic_events_per_s"] == pytest.approx(
        r["synaptic_events"] / (min(r["snn_trace"]["wall_ms_all"]) / 1e3))


def test_bench_snn_two_threads_and_sigma_delta_stream_report_synaptic_events():
    rows = bench_models(["vit"], size="tiny", batch=2, bits=[(8, 4)], repeats=1, qann_repeats=2,
                        isolate=False, log=_quiet, codings=["sigma-delta"], threads=2)
    (r,) = rows
    assert r["exact"] and r["threads"] == 2
    assert r["synaptic_events"] > 0 and r["synaptic_events_per_s"] > 0
    assert "| vit | W8A4 | sigma-delta | 2 |" in models_table(rows)


def test_bench_worker_runs_in_its_own_process_and_reports_time_and_memory():
    r = run_task(dict(task="qann", model="vit", size="tiny", batch=2, w_bits=8, a_bits=4, repeats=1,
                      qann_repeats=2))
    assert r["cpu_ms"] > 0 and r["wall_ms"] > 0 and r["maxrss_mb"] > 0


@pytest.mark.skipif(not have_spikingjelly(), reason="spikingjelly or transformers not installed")
def test_spikingjelly_comparison_runs_on_the_same_network_and_snmfm_is_bitwise_exact():
    rows = bench_spikingjelly(SJ_TINY, batch=2, bits=[(8, 4)], repeats=1, qann_repeats=1,
                              dtypes=("float32",), traces=(False,), t_extra=16, isolate=False,
                              log=_quiet)
    snmfm = [r for r in rows if r["sim"] == "snmfm"]
    sj = [r for r in rows if r["sim"] == "spikingjelly"]
    assert snmfm and all(r["own"]["equal"] for r in snmfm)
    (s,) = sj
    # same network: the SpikeZIP QANN computes the snmfm QANN's function (float32 rounding aside)
    assert s["qann_vs_snmfm"]["max_rel"] < 1e-4 and s["fp_map_max_abs"] < 1e-4
    assert s["converged"] and s["own"]["top1"] >= 0.5
    assert "| spikingjelly | float32 |" in sj_table(rows)
