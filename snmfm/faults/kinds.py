"""Fault kinds as data: what each one corrupts, the unit of its rate, where it lives on each side.

One table (`KINDS`) names every fault kind the package can inject.  The two sides of the
comparison are accelerator *kinds*: "conventional" (the systolic accelerator running the QANN) and
"neuromorphic" (any event-driven chip running the SNN of some coding).  A kind absent from a side's
`where` does not exist there (a conventional accelerator has no spike packets; a binary spike
carries no payload), and asking for it is an error, never a silent no-op.

Rates are probabilities in [0, 1] per the kind's unit: per stored bit, per event, per neuron or
per core.  The same physical per-bit rate applied to the same stored integers is what makes the
two sides comparable: a weight bit of synapse memory and a weight bit of weight SRAM flip alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

SIDES = ("conventional", "neuromorphic")


class FaultError(ValueError):
    """A fault request that cannot be honoured; the message names the problem and the fix."""


@dataclass(frozen=True)
class FaultKind:
    """name: the kind's name; unit: what the rate is a probability of; where: side -> the physical
    place the fault hits on that side; codings: the SNN codings it applies to on the neuromorphic
    side (None = all; a kind on payload bits needs a coding whose events carry a payload)."""

    name: str
    unit: str
    where: dict
    codings: tuple | None = None
    description: str = ""


KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("weight-bitflip", "per stored weight bit (persistent)",
              {"conventional": "weight SRAM/DRAM", "neuromorphic": "synapse memory"},
              description="flip bits of the stored two's-complement integer weights"),
    FaultKind("acc-bitflip", "per accumulator bit per inference",
              {"conventional": "PE accumulator (acc_bits)",
               "neuromorphic": "dendritic accumulator / membrane (acc_bits)"},
              description="flip a bit of a layer's integer accumulator once during the inference; "
                          "on the chip at a random time step, the offset persisting after it"),
    FaultKind("stuck-neuron", "per neuron (persistent)",
              {"conventional": "activation word feeding the next layer",
               "neuromorphic": "spiking neuron (a quantizer site's unit)"},
              description="a unit whose code is stuck at 0 (silent) or at its maximum"),
    FaultKind("spike-drop", "per event", {"neuromorphic": "NoC packet"},
              description="an event is lost on the network: the receivers never see it"),
    FaultKind("spike-duplicate", "per event", {"neuromorphic": "NoC packet"},
              description="an event is delivered twice"),
    FaultKind("payload-bitflip", "per payload bit of an event", {"neuromorphic": "NoC packet payload"},
              codings=("graded", "sigma-delta"),
              description="bits of a graded event's integer payload flip in transit"),
    FaultKind("dead-core", "per core (persistent)", {"neuromorphic": "neuromorphic core"},
              description="a core is dead: its synapses, accumulators and neurons are lost unless "
                          "the mapping routes around it"),
)}


def names() -> list[str]:
    return list(KINDS)


def get_kind(name: str) -> FaultKind:
    if name not in KINDS:
        raise FaultError(f"unknown fault kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]


def check_rate(rate) -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise FaultError(f"fault rate must be a number in [0, 1], got {rate!r}") from None
    if not math.isfinite(r) or not 0.0 <= r <= 1.0:
        raise FaultError(f"fault rate must be a probability in [0, 1], got {rate!r}")
    return r


def check_fault(kind: str, rate, side: str, coding: str | None = None) -> FaultKind:
    """The FaultKind of `kind` after checking that `rate` is a probability and that the side
    (and, on the neuromorphic side, the coding) has the thing the kind corrupts."""
    k = get_kind(kind)
    check_rate(rate)
    if side not in SIDES:
        raise FaultError(f"unknown accelerator side {side!r}; sides: {', '.join(SIDES)}")
    if side not in k.where:
        has = ", ".join(n for n, v in KINDS.items() if side in v.where)
        raise FaultError(f"fault kind {kind!r} ({k.unit}) does not exist on the {side} accelerator "
                         f"(it hits: {', '.join(k.where.values())}); kinds for {side}: {has}")
    if side == "neuromorphic" and k.codings is not None and coding is not None and coding not in k.codings:
        raise FaultError(f"fault kind {kind!r} needs events that carry a payload (codings: "
                         f"{', '.join(k.codings)}); coding {coding!r} sends none")
    return k


@dataclass(frozen=True)
class FaultSpec:
    """One fault scenario: kind, rate (per the kind's unit), seed of its random draws.
    stuck: value of a stuck neuron ("zero": silent, "max": saturated)."""

    kind: str
    rate: float
    seed: int = 0
    stuck: str = "zero"
    params: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        get_kind(self.kind)
        object.__setattr__(self, "rate", check_rate(self.rate))
        if self.stuck not in ("zero", "max"):
            raise FaultError(f"stuck value must be 'zero' or 'max', got {self.stuck!r}")


@dataclass(frozen=True)
class Mitigation:
    """Which protections are on.  ecc: SECDED (72,64) on weight memory (single-bit errors per
    64-bit word corrected); guard: bound-and-protect (SoftSNN, Putra et al. 2022): an accumulator
    outside the analytic bound max|code| * sum|w_int| of its row is reset to 0, and a received
    spike count is kept inside its site's [qmin, qmax]; tmr: names of the consumer modules
    (output layer) computed three times with a majority vote, their input neurons too."""

    ecc: bool = False
    guard: bool = False
    tmr: tuple = ()
    remap: bool = False

    @property
    def any(self) -> bool:
        return self.ecc or self.guard or bool(self.tmr) or self.remap

    def names(self) -> list[str]:
        out = [n for n, on in (("ecc", self.ecc), ("guard", self.guard), ("remap", self.remap)) if on]
        return out + [f"tmr:{m}" for m in self.tmr]


# The mitigation a study switches on for each kind (what can act on that fault).
MITIGATION_FOR = {
    "weight-bitflip": Mitigation(ecc=True),
    "acc-bitflip": Mitigation(guard=True, tmr=("head",)),
    "stuck-neuron": Mitigation(tmr=("head",)),
    "spike-drop": Mitigation(guard=True),
    "spike-duplicate": Mitigation(guard=True),
    "payload-bitflip": Mitigation(guard=True),
    "dead-core": Mitigation(remap=True),
}
