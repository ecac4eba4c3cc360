"""Hardware models: workload IR, technology table, neuromorphic chip, conventional accelerator."""
from neuro_hw.config import load_hw_config
from neuro_hw.report import HwReport
from neuro_hw.workload import Op, Workload, extract_workload


def simulate(workload: Workload, trace=None, hw="neuromorphic") -> HwReport:
    """Simulate one inference of `workload` on `hw` (a config object, bundled name or file).

    The neuromorphic chip needs the SNN's ActivityTrace (`trace`); the conventional accelerator
    ignores it (it runs the QANN densely)."""
    from neuro_hw.conventional import ConventionalConfig, simulate_conventional
    from neuro_hw.neuromorphic import NeuromorphicConfig, simulate_neuromorphic
    cfg = load_hw_config(hw)
    if isinstance(cfg, NeuromorphicConfig):
        if trace is None:
            raise ValueError("the neuromorphic chip is driven by spikes: pass the SNN's ActivityTrace "
                             "(SpikingModel.run(...).trace)")
        return simulate_neuromorphic(workload, trace, cfg)
    if isinstance(cfg, ConventionalConfig):
        return simulate_conventional(workload, cfg)
    raise TypeError(f"unknown hardware config type {type(cfg).__name__}")


__all__ = ["HwReport", "Op", "Workload", "extract_workload", "load_hw_config", "simulate"]
