"""HwReport: what a hardware model says about one inference of one Workload."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class HwReport:
    """energy_pj: total per inference; breakdown_pj: named parts summing to energy_pj; cycles and
    latency_s per inference; per_op rows (dicts with at least name, kind, energy_pj, cycles);
    config: echo of the hardware config; spike_driven_fraction (neuromorphic only): share of
    operations ("ops") and of energy ("energy") that are event-driven accumulates rather than
    non-spiking units, dense work or fixed costs; notes: warnings (e.g. weights spilled off chip)."""

    accelerator: str
    energy_pj: float
    breakdown_pj: dict[str, float]
    cycles: float
    latency_s: float
    per_op: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    spike_driven_fraction: dict | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    kind: str = ""                 # the hardware model kind (neuro_hw.registry)
    node: str = ""                 # technology node of the numbers, e.g. "45nm", "14nm"
    memory_policy: dict = field(default_factory=dict)   # the MemoryPolicy applied (neuro_hw.policy)

    SCHEMA = "snmfm.hwreport/1"

    def __post_init__(self):
        self.check()

    def check(self, rel_tol: float = 1e-9) -> None:
        s = sum(self.breakdown_pj.values())
        if not math.isclose(s, self.energy_pj, rel_tol=rel_tol, abs_tol=1e-6):
            raise ValueError(f"energy breakdown sums to {s} pJ, not the total {self.energy_pj} pJ")
        for k, v in self.breakdown_pj.items():
            if v < 0 or not math.isfinite(v):
                raise ValueError(f"energy component {k!r} is {v}: must be finite and >= 0")

    @property
    def edp_pj_s(self) -> float:
        """Energy-delay product (pJ x s)."""
        return self.energy_pj * self.latency_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema"] = self.SCHEMA
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HwReport":
        d = dict(d)
        schema = d.pop("schema", None)
        if schema != cls.SCHEMA:
            raise ValueError(f"not an snmfm HwReport (schema {schema!r}, expected {cls.SCHEMA!r})")
        return cls(**d)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "HwReport":
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"HwReport file {p} not found")
        return cls.from_dict(json.loads(p.read_text()))
