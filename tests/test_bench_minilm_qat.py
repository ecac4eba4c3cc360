"""bench_minilm_qat's --average arguments (the averaging itself: tests/test_qat.py)."""
from __future__ import annotations

import pytest

from eval.benchmarks.bench_minilm_qat import average, parse_parts


def test_parse_parts_reads_label_weight_pairs():
    assert parse_parts("wide-act=0.25, wide-act-lr5=0.25,start=0.5") == {"wide-act": 0.25, "wide-act-lr5": 0.25,
                                                                         "start": 0.5}
    with pytest.raises(SystemExit, match="not LABEL=WEIGHT"):
        parse_parts("wide-act")
    with pytest.raises(SystemExit, match="is not a number"):
        parse_parts("wide-act=half")


def test_average_names_missing_parts_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="no nope.qann.pt in .*--import"):
        average(tmp_path, {"nope": 0.5, "start": 0.5}, "x")
    with pytest.raises(SystemExit, match="besides 'start'"):
        average(tmp_path, {"start": 1.0}, "x")
    assert not list(tmp_path.iterdir())
