"""Conventional accelerator: systolic array + SRAM buffers + DRAM + vector unit.

    from neuro_hw.conventional import ConventionalConfig, simulate_conventional
    report = simulate_conventional(workload, ConventionalConfig.default())
"""
from neuro_hw.conventional.config import ConventionalConfig
from neuro_hw.conventional.simulate import plan_kernels, simulate_conventional, static_power_w
from neuro_hw.conventional.systolic import compute_cycles, dram_tiling, sram_counts

__all__ = ["ConventionalConfig", "simulate_conventional", "plan_kernels", "static_power_w",
           "compute_cycles", "dram_tiling", "sram_counts"]
