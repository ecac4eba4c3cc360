"""`LoihiConfig`: a silicon-calibrated Loihi-family chip, read from a TOML that looks like SANA-FE's
`loihi.yaml`: a hierarchy of units (chip -> tile -> core -> axon_in / synapse / soma / axon_out),
each event with its energy AND its latency, and every constant with the source it comes from:

    node = "14nm"                                   # the node the numbers were measured at
    [core.synapse]
    energy_process_spike = { value = 35.5e-12, unit = "J", source = "SANA-FE loihi.yaml ..." }

A constant without a `source` (or with an empty one), or a required constant that is missing, is an
error naming the constant and the file's section.  Energies are joules and latencies seconds per
event, as in SANA-FE.  Every energy is scaled by the Stillmaker & Baas factor from `node` to the
node the chip is evaluated at (`tech`, default = `node`), the same factor the technology table
applies to every other chip (`neuro_hw.tech`); latencies are kept (a node change is an energy
comparison, not a redesign).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from dataclasses import dataclass, field

# section -> required constants.  Values: numbers unless the name says otherwise.
REQUIRED = {
    "chip": ("cores", "mesh_x", "mesh_y", "cores_per_tile", "neurons_per_core", "synapse_mem_bytes",
             "weight_bits_max", "static_power_w", "graded_spikes", "max_payload_bits"),
    "sync": ("latency_barrier_1_tile", "latency_barrier_2_tiles", "latency_barrier_4_tiles",
             "latency_barrier_29_tiles", "energy_barrier"),
    "tile": ("energy_east_hop", "latency_east_hop", "energy_north_hop", "latency_north_hop"),
    "core.axon_in": ("energy_message_in", "latency_message_in"),
    "core.synapse": ("energy_process_spike", "latency_process_spike"),
    "core.soma": ("energy_access_neuron", "latency_access_neuron", "energy_update_neuron",
                  "latency_update_neuron", "energy_spike_out", "latency_spike_out"),
    "core.axon_out": ("energy_message_out", "latency_message_out", "energy_payload_bit"),
}
INT_KEYS = {"cores", "mesh_x", "mesh_y", "cores_per_tile", "neurons_per_core", "synapse_mem_bytes",
            "weight_bits_max", "max_payload_bits"}
BOOL_KEYS = {"graded_spikes"}
TOP_KEYS = {"kind", "accelerator", "name", "node", "tech", "description", "sources"}


@dataclass(frozen=True)
class LoihiConfig:
    """name; node: technology node of the constants; tech: node the chip is evaluated at (energies
    scaled by Stillmaker & Baas between the two); c: {"section.key": value}; sources: the same keys
    -> citation; description: free text (the file's header)."""

    name: str
    node: str
    c: dict
    sources: dict
    tech: str = ""
    description: str = ""
    refs: dict = field(default_factory=dict)

    def __post_init__(self):
        from neuro_hw.tech import TECH_NODES
        if not self.tech:
            object.__setattr__(self, "tech", self.node)
        for what, n in (("node", self.node), ("tech", self.tech)):
            if n not in TECH_NODES:
                raise ValueError(f"loihi config {self.name!r}: {what} {n!r} unknown; available: "
                                 f"{', '.join(TECH_NODES)}")
        c = self.c
        if c["chip.mesh_x"] * c["chip.mesh_y"] * c["chip.cores_per_tile"] != c["chip.cores"]:
            raise ValueError(f"loihi config {self.name!r}: chip.cores = {c['chip.cores']} but mesh "
                             f"{c['chip.mesh_x']} x {c['chip.mesh_y']} tiles x {c['chip.cores_per_tile']}")
        if c["chip.graded_spikes"] and c["chip.max_payload_bits"] < 1:
            raise ValueError(f"loihi config {self.name!r}: graded_spikes needs max_payload_bits >= 1")

    # ---- reading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> "LoihiConfig":
        if not isinstance(d, dict):
            raise ValueError(f"loihi config must be a mapping, got {type(d).__name__}")
        name = d.get("name", "loihi")
        where = f"loihi config {name!r}"
        unknown = sorted(set(d) - TOP_KEYS - {s.split(".")[0] for s in REQUIRED})
        if unknown:
            raise ValueError(f"{where}: unknown top-level key(s) {unknown}; allowed: "
                             f"{sorted(TOP_KEYS | {s.split('.')[0] for s in REQUIRED})}")
        if "node" not in d:
            raise ValueError(f"{where}: missing 'node' (the technology node of its constants, e.g. \"14nm\")")
        core_units = {s.split(".")[1] for s in REQUIRED if s.startswith("core.")}
        bad_units = sorted(set(d.get("core", {}) or {}) - core_units)
        if bad_units:
            raise ValueError(f"{where}: unknown unit(s) {bad_units} in [core]; allowed: {sorted(core_units)}")
        vals, srcs = {}, {}
        for sec, keys in REQUIRED.items():
            t = d
            for part in sec.split("."):
                t = t.get(part, {}) if isinstance(t, dict) else {}
            if not isinstance(t, dict):
                raise ValueError(f"{where}: [{sec}] must be a table")
            extra = sorted(set(t) - set(keys))
            if extra:
                raise ValueError(f"{where}: unknown constant(s) {extra} in [{sec}]; allowed: {', '.join(keys)}")
            for k in keys:
                full = f"{sec}.{k}"
                if k not in t:
                    raise ValueError(f"{where}: required constant [{sec}] {k} is missing "
                                     f"(give {k} = {{ value = ..., source = \"...\" }})")
                v = t[k]
                if not isinstance(v, dict) or "value" not in v:
                    raise ValueError(f"{where}: [{sec}] {k} must be a table {{ value = ..., source = \"...\" }}, "
                                     f"got {v!r}")
                src = v.get("source")
                if not isinstance(src, str) or not src.strip():
                    raise ValueError(f"{where}: constant [{sec}] {k} has no source: every constant needs "
                                     "source = \"<paper / file it comes from, or 'estimate: <derivation>'>\"")
                x = v["value"]
                if k in BOOL_KEYS:
                    if not isinstance(x, bool):
                        raise ValueError(f"{where}: [{sec}] {k} must be true or false, got {x!r}")
                elif k in INT_KEYS:
                    if isinstance(x, bool) or not isinstance(x, int) or x < 0 or (x == 0 and k != "max_payload_bits"):
                        raise ValueError(f"{where}: [{sec}] {k} must be a positive integer, got {x!r}")
                elif isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0:
                    raise ValueError(f"{where}: [{sec}] {k} must be a number >= 0, got {x!r}")
                vals[full] = x
                srcs[full] = src.strip()
        refs = d.get("sources", {}) or {}
        if not isinstance(refs, dict):
            raise ValueError(f"{where}: [sources] must be a table of short name -> citation")
        return cls(name=name, node=d["node"], c=vals, sources=srcs, tech=d.get("tech", "") or "",
                   description=d.get("description", ""), refs=dict(refs))

    @classmethod
    def default(cls) -> "LoihiConfig":
        """The bundled loihi1 chip (neuro_hw/configs/loihi1.toml), read without the registry."""
        import tomllib
        path = Path(__file__).resolve().parents[1] / "configs" / "loihi1.toml"
        d = tomllib.loads(path.read_text())
        d.pop("kind", None)
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        out: dict = {"kind": "loihi", "name": self.name, "node": self.node, "tech": self.tech}
        if self.description:
            out["description"] = self.description
        if self.refs:
            out["sources"] = dict(self.refs)
        for full, v in self.c.items():
            sec, _, k = full.rpartition(".")
            t = out
            for part in sec.split("."):
                t = t.setdefault(part, {})
            t[k] = {"value": v, "source": self.sources[full]}
        return out

    def at_node(self, node: str) -> "LoihiConfig":
        """The same chip with its energies evaluated at `node` (Stillmaker & Baas)."""
        return dataclasses.replace(self, tech=node)

    def check_trace(self, trace) -> None:
        """ValueError when the trace's payloads do not fit this chip's messages: a graded trace needs
        graded spikes wide enough for every site's payload."""
        coding = getattr(trace, "coding", "binary")
        for name, s in trace.sites.items():
            bits = int(getattr(s, "payload_bits", 0) or 0)
            if s.kind != "neuron" or bits <= 0:
                continue
            if not self.c["chip.graded_spikes"]:
                raise ValueError(f"site {name!r} sends {bits}-bit graded payloads (coding {coding!r}) but "
                                 f"chip {self.name!r} has no graded spikes (binary spikes only); use a binary "
                                 "coding or a chip with graded spikes (e.g. loihi2)")
            if bits > self.c["chip.max_payload_bits"]:
                raise ValueError(f"site {name!r} sends {bits}-bit payloads (coding {coding!r}) but chip "
                                 f"{self.name!r} carries at most {self.c['chip.max_payload_bits']} payload "
                                 "bits per message; lower the activation bits")

    def check_coding(self, coding: str) -> None:
        """ValueError when a coding's events carry payloads and this chip has no graded spikes."""
        if coding != "binary" and not self.c["chip.graded_spikes"]:
            raise ValueError(f"coding {coding!r} sends graded payloads but chip {self.name!r} has binary "
                             "spikes only")

    # ---- derived -----------------------------------------------------------------------------
    @property
    def energy_scale(self) -> float:
        """Energy factor from the constants' node to the evaluated node (1.0 at its own node)."""
        from neuro_hw.tech import get_tech
        return get_tech(self.tech).scale / get_tech(self.node).scale

    def e(self, key: str) -> float:
        """An energy constant in pJ at the evaluated node."""
        return self.c[key] * 1e12 * self.energy_scale

    def t(self, key: str) -> float:
        """A latency constant in seconds."""
        return float(self.c[key])

    def barrier_s(self, tiles: int) -> float:
        """Per-time-step barrier latency for `tiles` tiles in use (SANA-FE's table: the largest
        entry not above the tile count)."""
        table = [(29, "sync.latency_barrier_29_tiles"), (4, "sync.latency_barrier_4_tiles"),
                 (2, "sync.latency_barrier_2_tiles"), (1, "sync.latency_barrier_1_tile")]
        for n, key in table:
            if tiles >= n:
                return self.t(key)
        return self.t("sync.latency_barrier_1_tile")

    def mapping_config(self):
        """The structural part as a NeuromorphicConfig, for `neuromorphic.map_workload` (cores,
        mesh, synapse memory, compartments per core; weights stored at up to weight_bits_max)."""
        from neuro_hw.neuromorphic.config import CoreConfig, NeuromorphicConfig
        c = self.c
        wmax = c["chip.weight_bits_max"]
        widths = tuple(b for b in (1, 2, 4, 8, 16, 32) if b <= wmax) or (wmax,)
        cores = CoreConfig(count=c["chip.cores"], mesh=(c["chip.mesh_x"], c["chip.mesh_y"]),
                           cores_per_tile=c["chip.cores_per_tile"],
                           synapse_mem_bytes=c["chip.synapse_mem_bytes"],
                           # a compartment: 32-bit accumulator + 32-bit state (8 B): the neuron
                           # memory then holds neurons_per_core compartments
                           neuron_mem_bytes=8 * c["chip.neurons_per_core"], acc_bits=32,
                           neuron_state_bits=32, weight_bits=widths)
        return NeuromorphicConfig(name=self.name, cores=cores)
