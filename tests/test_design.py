"""Design search (eval.design, neuro_hw.design_space, neuro_hw.area): Pareto fronts, the default as a
point of its space, area with its sources, the NSGA-II search on a tiny ViT, and bad input."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.design import OBJECTIVES, choose, design_section, pareto_indices, search
from neuro_hw import load_hw_config
from neuro_hw.area import AREA_45NM, area_mm2, sources
from neuro_hw.design_space import apply, check_packet, default_point, size, space_for
from neuromorphic_helpers import tiny_vit_run


# ---- Pareto front -------------------------------------------------------------------------------
def test_pareto_front_of_a_known_set():
    objs = np.array([[1, 5, 1], [2, 2, 2], [3, 3, 3], [5, 1, 1], [1, 5, 1], [2, 2, 3]])
    # [3,3,3] and [2,2,3] are dominated by [2,2,2]; the duplicate [1,5,1] rows both stay
    assert pareto_indices(objs) == [0, 1, 3, 4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 6)] * 3), min_size=1, max_size=60))
def test_front_points_are_undominated_and_every_other_point_is_dominated(rows):
    objs = np.array(rows, dtype=float)
    front = set(pareto_indices(objs))

    def dominates(a, b):
        return bool((a <= b).all() and (a < b).any())
    for i in range(len(objs)):
        dominated = any(dominates(objs[j], objs[i]) for j in range(len(objs)))
        assert (i in front) == (not dominated)


def test_chosen_design_is_no_worse_than_the_default_when_one_exists():
    d = {"energy_pj": 10.0, "latency_s": 1.0, "area_mm2": 1.0}
    front = [{"energy_pj": 5.0, "latency_s": 2.0, "area_mm2": 0.5},   # faster-energy but slower
             {"energy_pj": 8.0, "latency_s": 0.9, "area_mm2": 1.0},
             {"energy_pj": 9.0, "latency_s": 0.5, "area_mm2": 0.5}]
    c = choose(front, d)
    assert c["energy_pj"] == 8.0 and c["energy_pj_ratio"] == pytest.approx(0.8)
    c2 = choose(front[:1], d)  # nothing no worse: best product of ratios
    assert c2["energy_pj"] == 5.0 and "product" in c2["rule"]


# ---- design space and area ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["neuromorphic", "conventional"])
def test_default_config_is_a_point_of_its_space(name):
    cfg = load_hw_config(name)
    p = default_point(cfg)
    assert set(p) == {k.name for k in space_for(cfg)}
    for k in space_for(cfg):
        assert p[k.name] in k.values, k.name
    again = apply(cfg, p)
    assert dataclasses.replace(again, name=cfg.name) == cfg
    assert size(cfg) == int(np.prod([len(k.values) for k in space_for(cfg)]))
    with pytest.raises(ValueError, match="unknown design knob"):
        apply(cfg, {"nonsense": 1})


def test_neuromorphic_point_sets_core_count_from_the_mesh():
    cfg = apply(load_hw_config("neuromorphic"), {"tiles_x": 2, "tiles_y": 4, "cores_per_tile": 8,
                                                 "synapse_mem_kib": 256, "packet_bits": 48})
    assert (cfg.cores.count, cfg.cores.mesh, cfg.cores.synapse_mem_bytes, cfg.noc.packet_bits) == (64, (2, 4), 262144, 48)


def test_packet_must_hold_core_neuron_and_payload_bits():
    cfg = load_hw_config("neuromorphic")  # 128 cores (7 b), 16 KiB / 128 b = 1024 neurons (10 b)
    check_packet(cfg)
    check_packet(cfg, payload_bits=15)
    with pytest.raises(ValueError, match="32-bit packet cannot carry.*need 33"):
        check_packet(cfg, payload_bits=16)
    check_packet(load_hw_config("conventional"), payload_bits=99)  # no packets: nothing to check


@pytest.mark.parametrize("name", ["neuromorphic", "conventional"])
def test_area_parts_sum_to_the_total_and_scale_with_the_node(name):
    cfg = load_hw_config(name)
    a = area_mm2(cfg)
    assert a["total"] == pytest.approx(sum(v for k, v in a.items() if k != "total"))
    assert all(v > 0 for v in a.values())
    a14 = area_mm2(dataclasses.replace(cfg, tech="14nm"))
    assert a14["total"] == pytest.approx(0.17 * a["total"])  # Stillmaker & Baas area factor


def test_area_grows_with_memory_and_compute():
    n = load_hw_config("neuromorphic")
    base = area_mm2(n)["total"]
    for p in ({"synapse_mem_kib": 256}, {"tiles_x": 16}, {"accumulate_lanes": 4}, {"unit_lanes": 8},
              {"packet_bits": 64}):
        assert area_mm2(apply(n, p))["total"] > base, p
    c = load_hw_config("conventional")
    assert area_mm2(apply(c, {"array_rows": 32}))["total"] > area_mm2(c)["total"]
    # 16x16 8-bit MACs + 320 KiB SRAM + 16 fp16 lanes + control, 45 nm
    expect = 256 * AREA_45NM["mac8"][0] + 320 * AREA_45NM["sram_per_kib"][0] + 16 * AREA_45NM["fp16_lane"][0] + 0.1
    assert area_mm2(c)["total"] == pytest.approx(expect)


def test_every_area_constant_has_a_source():
    assert set(sources()) == set(AREA_45NM)
    assert all(len(s) > 20 for s in sources().values())


# ---- the search ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_shared():
    _, _, wl, _, res, _ = tiny_vit_run()
    return {"neuromorphic": {"base": load_hw_config("neuromorphic"), "workload": wl, "trace": res.trace},
            "conventional": {"base": load_hw_config("conventional"), "workload": wl, "trace": None}}


@pytest.mark.parametrize("name", ["neuromorphic", "conventional"])
def test_search_evaluates_distinct_designs_and_finds_an_undominated_front(tiny_shared, name):
    r = search(tiny_shared[name], trials=150, population=40, seed=0)
    assert r["evaluated"] == 150 and r["feasible"] + r["infeasible"] == 150
    keys = [tuple(sorted(p["point"].items())) for p in r["points"]]
    assert len(set(keys)) == len(keys)
    pts = np.array([[p[o] for o in OBJECTIVES] for p in r["points"]])
    front = np.array([[p[o] for o in OBJECTIVES] for p in r["front"]])
    for f in front:  # nothing evaluated dominates a front point
        assert not (((pts <= f).all(1)) & ((pts < f).any(1))).any()
    d = r["default"]
    assert tuple(sorted(d["point"].items())) in keys  # the default was evaluated as generation 0
    c = r["chosen"]
    assert c is not None
    if c["rule"].startswith("lowest energy"):
        assert c["latency_s"] <= d["latency_s"] and c["area_mm2"] <= d["area_mm2"]
        assert c["energy_pj"] <= d["energy_pj"]
    again = search(tiny_shared[name], trials=150, population=40, seed=0)
    assert [p["point"] for p in again["points"]] == [p["point"] for p in r["points"]]  # seeded


def test_report_section_lists_every_accelerator(tiny_shared):
    r = search(tiny_shared["conventional"], trials=40, population=20)
    result = {"task": "t", "coding": "binary", "w_bits": 8, "a_bits": 4, "evaluated": 40, "search_wall_s": 1.0,
              "configs_per_s": 40.0, "samples": 2, "accelerators": {"conventional": r}}
    blocks = design_section(result)
    assert blocks[0][0] == "h"
    table = [b for b in blocks if b[0] == "table"][0]
    assert [row[0] for row in table[2]] == ["conventional"]


# ---- CLI bad input --------------------------------------------------------------------------------
def test_design_cli_bad_input_exits_2():
    from cli import main
    r = CliRunner().invoke(main, ["design", "vision-digits", "--hw", "no-such-chip"])
    assert r.exit_code == 2 and "no-such-chip" in r.output
    r = CliRunner().invoke(main, ["design", "vision-digits", "--coding", "morse"])
    assert r.exit_code == 2 and "unknown coding 'morse'" in r.output
    r = CliRunner().invoke(main, ["design", "vision-digits", "--ray-address", "127.0.0.1:1"])
    assert r.exit_code == 2 and "unreachable" in r.output
