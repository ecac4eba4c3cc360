"""The conventional accelerator agrees with SCALE-Sim (cycles, SRAM traffic) and ZigZag (energy).

A few small shapes only; `python -m eval.benchmarks.bench_crosscheck` runs all transformer layers.
"""
import pytest

from neuro_hw.crosscheck import (QUICK_GEMMS, crosscheck_config, have_scalesim, have_zigzag,
                                 scalesim_crosscheck, zigzag_crosscheck)

needs_scalesim = pytest.mark.skipif(not have_scalesim(), reason="scalesim not installed (pip install scalesim)")
needs_zigzag = pytest.mark.skipif(not have_zigzag(), reason="zigzag-dse not installed (pip install zigzag-dse six)")


@needs_scalesim
@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_cycles_and_sram_traffic_match_scalesim(dataflow):
    cfg = crosscheck_config(array_rows=16, array_cols=32, dataflow=dataflow)
    for row in scalesim_crosscheck(QUICK_GEMMS, cfg):
        assert abs(row.deviation("cycles")) <= 0.10, (row.label, row.ours, row.theirs)
        assert abs(row.sram_deviation) <= 0.15, (row.label, row.ours, row.theirs)
        assert abs(row.deviation("ifmap_reads")) <= 0.15 and abs(row.deviation("filter_reads")) <= 0.15


@needs_zigzag
@pytest.mark.slow
def test_gemm_energy_matches_zigzag_on_a_matched_architecture():
    rows = zigzag_crosscheck([QUICK_GEMMS[1], QUICK_GEMMS[2]], crosscheck_config())
    for row in rows:
        assert abs(row.deviation) <= 0.25, (row.label, row.ours, row.theirs)
        assert row.ours["mac"] == pytest.approx(row.theirs["mac_pj"], rel=1e-6)   # same MAC count x cost
