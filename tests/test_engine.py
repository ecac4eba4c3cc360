"""The fan-out engine (eval.engine): Ray tasks merge exactly as the serial loop; bad addresses fail fast;
the sharded SNN == QANN evaluation (eval.exact) gives the same records however it is sharded."""
from __future__ import annotations

import sys
import time

import pytest

from eval.engine import EngineError, map_tasks, shutdown


def square_after(x):
    time.sleep(0.05 * (5 - x % 5))  # later items finish first
    return {"x": x, "y": x * x}


def add_shared(shared, x):
    return shared["offset"] + x


def fail_on_three(x):
    if x == 3:
        raise ValueError("item 3 is bad")
    return x


def test_serial_map_is_the_list_comprehension_and_never_imports_ray():
    had_ray = "ray" in sys.modules
    items = list(range(7))
    assert map_tasks(square_after, items) == [square_after(i) for i in items]
    assert map_tasks(add_shared, items, shared={"offset": 10}) == [10 + i for i in items]
    assert map_tasks(square_after, []) == []
    if not had_ray:
        assert "ray" not in sys.modules


def test_workers_below_one_is_an_error():
    with pytest.raises(EngineError, match="--workers must be >= 1"):
        map_tasks(square_after, [1, 2], workers=0)


@pytest.mark.parametrize("address", ["nonsense", "host:", ":6379", "host:port"])
def test_malformed_ray_address_names_the_form(address):
    with pytest.raises(EngineError, match="HOST:PORT"):
        map_tasks(square_after, [1, 2], ray_address=address)


def test_unreachable_ray_address_fails_fast_with_the_address():
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match="127.0.0.1:1.*unreachable"):
        map_tasks(square_after, [1, 2], ray_address="127.0.0.1:1")
    assert time.perf_counter() - t0 < 10


@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray")
    from eval.engine import ensure_ray
    ray = ensure_ray(workers=2)  # a local instance with num_cpus=2
    yield ray
    shutdown()


@pytest.mark.slow
def test_ray_map_merges_in_input_order_as_the_serial_run(local_ray):
    items = list(range(12))
    serial = map_tasks(square_after, items, workers=1)
    assert map_tasks(square_after, items, workers=2) == serial
    assert map_tasks(add_shared, items, workers=2, shared={"offset": -3}) == [i - 3 for i in items]
    seen = []
    map_tasks(square_after, items[:3], workers=2, status=seen.append)
    assert seen[-1] == "square_after 3/3"
    with pytest.raises(ValueError, match="item 3 is bad"):
        map_tasks(fail_on_three, items, workers=2)


@pytest.fixture(scope="module")
def small_qann_file(tmp_path_factory):
    """medical-wdbc at W8A4 (settles in ~20 steps), saved as a QANN file."""
    import torch

    from converters.io import save_qann
    from converters.workflow import build_qann, resolve_model
    torch.manual_seed(0)
    t, model, _, _ = resolve_model("medical-wdbc")
    qann = build_qann(t, model, w_bits=8, a_bits=4, calib=16, seed=0)
    return str(save_qann(qann, tmp_path_factory.mktemp("qann") / "wdbc", meta={"task": t.name}))


TIMING = ("build_s", "run_s", "snn_cpu_s", "workers", "shards", "memory_estimate_bytes")


@pytest.mark.slow
def test_sharded_exact_split_equals_the_single_process_run(small_qann_file, local_ray):
    from eval.exact import exact_split
    kw = dict(limit=10, batch_size=2, seed=0)
    one = exact_split(small_qann_file, workers=1, **kw)
    two = exact_split(small_qann_file, workers=2, **kw)
    assert one["shards"] == 3 and two["shards"] == 5  # 5 batches: 3 shards of <= 2 in one process, 5 on Ray
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING and k != "per_batch"}  # noqa: E731
    rows = lambda r: [{k: v for k, v in b.items() if k != "snn_s"} for b in r["per_batch"]]  # noqa: E731
    assert strip(one) == strip(two)
    assert rows(one) == rows(two)
    assert [b["batch"] for b in two["per_batch"]] == list(range(5))
    assert one["n"] == 10 and one["identical"] == 10 and one["max_rel_diff"] == 0.0
    assert one["t_settle_max"] >= one["t_settle_mean"] >= 1


def test_shards_cover_every_batch_once():
    from eval.exact import shards_of
    for n, w in [(1, 1), (5, 2), (17, 3), (100, 16), (3, 8)]:
        s = shards_of(n, w)
        covered = [b for sh in s for b in range(sh["start"], sh["stop"])]
        assert covered == list(range(n))
        assert len(s) <= max(1, w * 4)


def test_merge_of_batch_records():
    from eval.exact import merge
    recs = [{"n": 2, "identical": 2, "max_abs_diff": 0.0, "max_abs_ref": 4.0, "t_settle": 10, "settled": True},
            {"n": 3, "identical": 2, "max_abs_diff": 0.5, "max_abs_ref": 5.0, "t_settle": 20, "settled": False}]
    m = merge(recs)
    assert (m["n"], m["identical"], m["all_identical"]) == (5, 4, False)
    assert m["max_rel_diff"] == pytest.approx(0.1)
    assert (m["t_settle_max"], m["t_settle_mean"], m["unsettled_batches"]) == (20, 15.0, 1)


def test_bench_exact_unreachable_address_exits_2_before_building(capsys):
    from eval.benchmarks.bench_exact import main
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(["--task", "vision-digits", "--ray-address", "127.0.0.1:1"])
    assert e.value.code == 2
    assert "unreachable" in capsys.readouterr().err
    assert time.perf_counter() - t0 < 10


@pytest.mark.slow
def test_design_search_on_ray_equals_the_one_process_search(local_ray):
    from eval.design import search
    from neuro_hw import load_hw_config
    from neuromorphic_helpers import tiny_vit_run
    _, _, wl, _, res, _ = tiny_vit_run()
    shared = {"base": load_hw_config("neuromorphic"), "workload": wl, "trace": res.trace}
    one = search(shared, trials=60, population=30, seed=1, workers=1)
    two = search(shared, trials=60, population=30, seed=1, workers=2)
    for k in ("points", "front", "chosen", "default", "evaluated", "infeasible"):
        assert one[k] == two[k], k


def test_cooptimize_cli_unreachable_ray_address_exits_2_before_training():
    from click.testing import CliRunner

    from cli import main
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, ["cooptimize", "vision-digits", "--workers", "2", "--ray-address", "127.0.0.1:1"])
    assert r.exit_code == 2 and "unreachable" in r.output
    assert time.perf_counter() - t0 < 10
