"""`MemoryPolicy`: one rule for where weights and activations live, applied to every accelerator.

* ``weights = "resident"``: weights are loaded once and stay in the chip's weight memory (the
  conventional accelerator's weight SRAM, the neuromorphic cores' synapse memories) as far as they
  fit; the part that does not fit (the spill) is read from DRAM at every inference and charged.
  ``"streamed"``: every weight is read from DRAM at every inference.
* ``activations = "on-chip"``: an intermediate tensor stays in on-chip buffers when it fits (the
  conventional accelerator's input buffer; a neuromorphic chip's neuron memories, where it always
  lives unless its cores spill); ``"dram"``: every kernel output round-trips through DRAM (the
  op-by-op execution of the conventional model before the policy existed).  The network's input
  and final output cross the chip boundary in every case.
* ``power_gating = True``: static power is charged only for the cores and SRAM banks in use
  (neuromorphic: the cores the mapping used; conventional: the weight SRAM banks holding resident
  weights, all of the array and the other buffers, which every kernel uses); False: the whole chip
  leaks.

`neuro_hw.simulate` applies `MemoryPolicy()` (resident, on-chip, gating) unless told otherwise and
every HwReport states the policy it ran under (`HwReport.memory_policy`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

WEIGHTS = ("resident", "streamed")
ACTIVATIONS = ("on-chip", "dram")


@dataclass(frozen=True)
class MemoryPolicy:
    weights: str = "resident"
    power_gating: bool = True
    activations: str = "on-chip"

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"memory policy: weights {self.weights!r} unknown; allowed: {', '.join(WEIGHTS)}")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"memory policy: activations {self.activations!r} unknown; allowed: "
                             f"{', '.join(ACTIVATIONS)}")
        if not isinstance(self.power_gating, bool):
            raise ValueError(f"memory policy: power_gating must be true or false, got {self.power_gating!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def coerce(cls, policy) -> "MemoryPolicy":
        """A MemoryPolicy from None (the default), a dict, a string "resident" / "streamed" (other
        fields default), or a MemoryPolicy."""
        if policy is None:
            return cls()
        if isinstance(policy, cls):
            return policy
        if isinstance(policy, str):
            return cls(weights=policy)
        if isinstance(policy, dict):
            unknown = sorted(set(policy) - {"weights", "power_gating", "activations"})
            if unknown:
                raise ValueError(f"memory policy: unknown key(s) {unknown}; allowed: weights, power_gating, "
                                 "activations")
            return cls(**policy)
        raise ValueError(f"memory policy must be a MemoryPolicy, dict or 'resident'/'streamed', got {policy!r}")
