"""The call log of a cascade: which member ran on which queries, and which self-test after it.

`eval.cascade` charges it: each member call costs its HwReport on the member's placement per
query, each self-test its operation counts on that placement's digital/vector unit, and a query
that moves between accelerators pays the off-chip transfer of its inputs.  Plain data, JSON
round-trip, so a log can be saved with a result and charged again under other hardware.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class MemberCall:
    """`member` (with its form, size, placement) answered `queries` (indices into the log's
    queries) at ladder `stage`; `positions`: forward positions per query (answer tokens of a
    generating member, 1 for a classifier)."""

    stage: int
    member: str
    form: str
    size: str
    placement: str
    queries: list[int]
    positions: int = 1


@dataclass
class SelfTestCall:
    """Self-test `test` of ladder `stage` ran on `queries` on the digital/vector unit of
    `placement`; `ops`: operation counts per query (snmfm.cascade.selftests.self_test_ops)."""

    stage: int
    test: str
    placement: str
    queries: list[int]
    ops: dict


@dataclass
class CallLog:
    n_queries: int
    members: list[MemberCall] = field(default_factory=list)
    self_tests: list[SelfTestCall] = field(default_factory=list)
    exit_stage: list[int] = field(default_factory=list)
    stages: list[list[str]] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    input_bits: int = 0                 # bits of one query's inputs (for off-chip transfers)

    @property
    def escalation_rate(self) -> float:
        """Fraction of queries answered beyond the first stage."""
        return sum(1 for s in self.exit_stage if s > 0) / max(self.n_queries, 1)

    def exit_fractions(self) -> list[float]:
        n = max(self.n_queries, 1)
        return [sum(1 for s in self.exit_stage if s == i) / n for i in range(len(self.stages))]

    def calls_per_member(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.members:
            out[c.member] = out.get(c.member, 0) + len(c.queries)
        return out

    def extend(self, other: "CallLog") -> "CallLog":
        """Append another batch's log (its query indices shifted after ours); returns self."""
        off = self.n_queries
        if not self.stages:
            self.stages, self.thresholds, self.input_bits = other.stages, other.thresholds, other.input_bits
        self.members += [MemberCall(**{**asdict(c), "queries": [q + off for q in c.queries]})
                         for c in other.members]
        self.self_tests += [SelfTestCall(**{**asdict(c), "queries": [q + off for q in c.queries]})
                            for c in other.self_tests]
        self.exit_stage += list(other.exit_stage)
        self.n_queries += other.n_queries
        return self

    def merged(self) -> "CallLog":
        """The same log with one call per (stage, member) and per (stage, test): batch order lost."""
        out = CallLog(self.n_queries, exit_stage=list(self.exit_stage), stages=self.stages,
                      thresholds=self.thresholds, input_bits=self.input_bits)
        idx: dict = {}
        for c in self.members:
            k = ("m", c.stage, c.member)
            if k not in idx:
                idx[k] = MemberCall(**{**asdict(c), "queries": []})
                out.members.append(idx[k])
            idx[k].queries += c.queries
        for c in self.self_tests:
            k = ("t", c.stage, c.test)
            if k not in idx:
                idx[k] = SelfTestCall(**{**asdict(c), "queries": []})
                out.self_tests.append(idx[k])
            idx[k].queries += c.queries
        for c in out.members + out.self_tests:
            c.queries.sort()
        return out

    def to_dict(self, queries: bool = True) -> dict:
        d = asdict(self)
        if not queries:
            for c in d["members"] + d["self_tests"]:
                c["n"] = len(c.pop("queries"))
            d.pop("exit_stage")
            d["exit_fractions"] = self.exit_fractions()
        d["escalation_rate"] = self.escalation_rate
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CallLog":
        d = {k: v for k, v in d.items() if k not in ("escalation_rate", "exit_fractions")}
        d["members"] = [MemberCall(**c) for c in d.get("members", [])]
        d["self_tests"] = [SelfTestCall(**c) for c in d.get("self_tests", [])]
        return cls(**d)
