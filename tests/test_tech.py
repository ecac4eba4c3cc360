"""The technology table reproduces its published sources and scales as it says it does."""
import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuro_hw.tech import TECH_NODES, TechTable, get_tech, stillmaker_energy_factor

T45 = get_tech("45nm")


def test_default_node_is_45nm_horowitz():
    t = get_tech()
    assert t.name == "45nm" and t.node_nm == 45 and t.scale == 1.0
    assert "Horowitz" in t.sources["add_pj"]


def test_unknown_node_lists_available_nodes():
    with pytest.raises(ValueError) as e:
        get_tech("3nm")
    for n in TECH_NODES:
        assert n in str(e.value)


def test_reproduces_horowitz_isscc2014_table():
    # Horowitz, ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V): the published points are exact.
    assert T45.add_pj(8) == pytest.approx(0.03)
    assert T45.add_pj(32) == pytest.approx(0.1)
    assert T45.mul_pj(8) == pytest.approx(0.2)
    assert T45.mul_pj(32) == pytest.approx(3.1)
    assert T45.fp_add_pj(16) == pytest.approx(0.4)
    assert T45.fp_add_pj(32) == pytest.approx(0.9)
    assert T45.fp_mul_pj(16) == pytest.approx(1.1)
    assert T45.fp_mul_pj(32) == pytest.approx(3.7)
    assert T45.sram_read_pj(8 * 1024, 64) == pytest.approx(10)
    assert T45.sram_read_pj(32 * 1024, 64) == pytest.approx(20)
    assert T45.sram_read_pj(1024 * 1024, 64) == pytest.approx(100)
    assert T45.dram_pj(64) == pytest.approx(1300)


@given(st.integers(1, 64), st.integers(1, 64))
def test_adds_are_linear_in_bits(a, b):
    # Affine in bits through Horowitz's points: every extra bit costs the same energy.
    slope = (T45.add_pj(32) - T45.add_pj(8)) / 24
    assert T45.add_pj(a + b) - T45.add_pj(a) == pytest.approx(slope * b, rel=1e-9)
    assert T45.add_pj(b + 1) > T45.add_pj(b)
    assert T45.add_pj(2 * b) / T45.add_pj(b) <= 2.0 + 1e-9


@given(st.integers(2, 32))
def test_multipliers_are_about_quadratic_in_bits(b):
    ratio = T45.mul_pj(2 * b) / T45.mul_pj(b)
    assert 3.8 < ratio < 4.0     # exponent 0.99 on bits_a * bits_b
    assert T45.mul_pj(b, 2 * b) == pytest.approx(T45.mul_pj(2 * b, b))


@given(st.integers(1, 32), st.integers(1, 32), st.sampled_from([16, 24, 32, 48]))
def test_mac_is_multiply_plus_accumulator_add(w, a, acc):
    assert T45.mac_pj(w, a, acc) == pytest.approx(T45.mul_pj(w, a) + T45.add_pj(acc))


@given(st.integers(256, 1 << 24), st.integers(1, 512))
def test_sram_energy_grows_with_capacity_and_is_linear_in_width(cap, width):
    assert T45.sram_read_pj(2 * cap, width) > T45.sram_read_pj(cap, width)
    assert T45.sram_read_pj(cap, 2 * width) == pytest.approx(2 * T45.sram_read_pj(cap, width))
    assert T45.sram_write_pj(cap, width) >= T45.sram_read_pj(cap, width) * 0.9


def test_nonlinear_units_are_built_from_fp_ops():
    for bits in (16, 32):
        m, a = T45.fp_mul_pj(bits), T45.fp_add_pj(bits)
        assert T45.exp_pj(bits) == pytest.approx(4 * m + 4 * a + T45.add_pj(8))
        assert T45.div_pj(bits) == pytest.approx(5 * m + 2 * a)
        assert T45.sqrt_pj(bits) == pytest.approx(7 * m + 2 * a)
        assert T45.exp_pj(bits) > 5 * T45.mac_pj(8, 8)       # never free next to a MAC


def test_every_constant_cites_a_source():
    needed = {"add_pj", "mul_pj", "mac_pj", "cmp_pj", "fp_add_pj", "fp_mul_pj", "exp_pj", "div_pj", "sqrt_pj",
              "sram_read_pj", "sram_write_pj", "reg_pj", "dram_pj_per_bit", "sram_leak_w_per_kib",
              "logic_leak_w_per_mm2", "sram_area_mm2", "mac_area_mm2", "clock_hz"}
    for node in TECH_NODES:
        src = get_tech(node).sources
        assert needed <= set(src), needed - set(src)
        assert all(isinstance(v, str) and len(v) > 10 for v in src.values())


@pytest.mark.parametrize("node,vdd", [("14nm", 0.8), ("7nm", 0.7)])
def test_scaled_nodes_follow_stillmaker_baas(node, vdd):
    t = get_tech(node)
    n = int(node[:-2])
    a, b, c = {14: (0.2363, -0.09675, 0.02239), 7: (0.1776, -0.09097, 0.02447)}[n]
    a45, b45, c45 = 1.103, -0.362, 0.2767          # Stillmaker & Baas 2017, Table 5
    factor = (a * vdd**2 + b * vdd + c) / (a45 * 0.81 + b45 * 0.9 + c45)
    assert stillmaker_energy_factor(n, vdd) == pytest.approx(factor)
    assert t.scale == pytest.approx(factor) and 0 < factor < 1
    for f in ("add_pj", "mul_pj", "fp_add_pj", "fp_mul_pj", "exp_pj", "reg_pj"):
        assert getattr(t, f)(16) == pytest.approx(factor * getattr(T45, f)(16))
    assert t.sram_read_pj(32768, 64) == pytest.approx(factor * 20)
    assert t.dram_pj_per_bit == T45.dram_pj_per_bit         # DRAM is not a logic-node property
    assert "Stillmaker" in t.sources["add_pj"]


def test_table_is_frozen_and_rejects_bad_bit_widths():
    with pytest.raises(dataclasses.FrozenInstanceError):
        T45.vdd_v = 1.0
    for bad in (0, -8):
        with pytest.raises(ValueError):
            T45.add_pj(bad)
    with pytest.raises(ValueError):
        T45.sram_read_pj(0, 64)
    assert isinstance(T45, TechTable) and math.isfinite(T45.sram_leak_w(1024))
