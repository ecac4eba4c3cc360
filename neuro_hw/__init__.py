"""Hardware models: workload IR, technology table, registered accelerators (neuromorphic chips,
conventional accelerator), one memory policy for all of them."""
from neuro_hw.policy import MemoryPolicy
from neuro_hw.registry import (accelerators, get_kind, kind_of, load_hw_config, needs_trace,
                               register_accelerator, register_alias, register_kind, trace_problem,
                               coding_problem)
from neuro_hw.report import HwReport
from neuro_hw.workload import SYNAPTIC_KINDS, Op, Workload, extract_workload


def simulate(workload: Workload, trace=None, hw="neuromorphic", *, policy=None, node=None) -> HwReport:
    """Simulate one inference of `workload` on accelerator `hw` (a registered name or alias, a
    config file, a dict or a config object), dispatched through the registry.

    trace: the SNN's ActivityTrace, required by accelerators that are driven by spikes
    (`needs_trace(hw)`), ignored by the others.  policy: a `MemoryPolicy` (or dict / "resident" /
    "streamed"); default `MemoryPolicy()`: weights resident, activations on chip, power gating, the
    same rule for every accelerator.  node: evaluate the chip at another technology node (e.g.
    "45nm" to compare chips at one node; Stillmaker & Baas scaling, `neuro_hw.tech`)."""
    from neuro_hw.registry import accelerator_name, at_node
    cfg = load_hw_config(hw)
    if node is not None:
        cfg = at_node(cfg, node)
    kind = get_kind(kind_of(cfg))
    if kind.needs_trace and trace is None:
        raise ValueError(f"accelerator {accelerator_name(hw, cfg)!r} (kind {kind.name}) is driven by spikes: "
                         "pass the SNN's ActivityTrace (SpikingModel.run(...).trace)")
    pol = MemoryPolicy.coerce(policy)
    rep = kind.simulate_fn(workload, trace, cfg, policy=pol)
    rep.accelerator = accelerator_name(hw, cfg)
    rep.kind = kind.name
    rep.node = str(getattr(cfg, "tech", rep.node))
    rep.memory_policy = pol.to_dict()
    return rep


__all__ = ["HwReport", "MemoryPolicy", "Op", "SYNAPTIC_KINDS", "Workload", "accelerators",
           "extract_workload", "load_hw_config", "needs_trace", "register_accelerator",
           "register_alias", "register_kind", "simulate", "trace_problem", "coding_problem"]
