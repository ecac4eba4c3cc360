"""Mapping a Workload onto the cores of a neuromorphic chip, layer by layer, under memory limits.

Where things live (Loihi's organisation: a core holds its neurons and their *fan-in* synapses,
spikes travel to the cores that hold the synapses they drive):

* a synaptic op (linear, conv, feature_embed, matmul_act, embed) is a *group* on one or more cores:
  its weights in synapse memory (params x stored weight bits; for matmul_act the two accumulated
  operands A and B, which play the role of weights in the increment identity), its output
  accumulators in neuron memory.  A linear / conv op too big for one core is split along its
  outputs N (each core holds all K rows for a slice of the outputs), so every input spike goes to
  every core of the op: one packet per destination core.  A matmul_act is split by head first,
  then by rows of A within a head (`matmul_cores_per_head`): a spike of A goes to the one core of
  its row, a spike of B to every core of its head (each keeps that head's B; the copies' memory is
  not counted);
* non-spiking units and residual adds sit on the cores of the op before them in the Workload
  (they read its accumulators), with their state (previous output / residual stream) in neuron
  memory;
* the IF neurons of a spike site sit with the group that computes their input (the op before the
  consumer; for matmul_act with two producers, the producer of that operand) and send their
  spikes over the mesh to the consumer's cores.  The first op's input neurons sit on its own cores
  and are driven by the host.

Groups are placed in Workload order, except embedding tables, placed last: they are read once per
inference, while synaptic weights are read on every spike.  With `pack_ops`, a group that fits in
the space left on the current core shares it.  What does not fit (no cores left, or a group
larger than the cores left) spills: that fraction of its memory is off chip and every access to it
is charged as DRAM traffic, flagged in the report.

Dead cores (`dead_cores`, e.g. from a fault scenario): the allocation skips them and uses the
working cores in the same order (remapping around them, as ReSpawn does; Putra et al., ICCAD 2021);
what no longer fits spills as above and the notes name the dead cores, so a chip that cannot hold
the network without them says so.  A chip with every core dead cannot be mapped (ValueError).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neuro_hw.workload import NONSPIKING_KINDS, SYNAPTIC_KINDS, Op, Workload

HOST_KINDS = SYNAPTIC_KINDS + ("embed",)


def stored_weight_bits(w_bits: int, supported: tuple) -> int:
    """Width a layer's weights take in synapse memory: the next supported width, or whole
    multiples of the widest format when the layer's weights are wider than every format."""
    w_bits = int(w_bits) or 32
    for b in supported:
        if b >= w_bits:
            return b
    top = supported[-1]
    return top * math.ceil(w_bits / top)


def operand_bits(op: Op) -> tuple[int, int]:
    bits = op.extra.get("a_bits_each") or [op.a_bits or 8, op.a_bits or 8]
    return int(bits[0]), int(bits[1])


def matmul_cores_per_head(op: Op, n_cores: int) -> int:
    """matmul_act ops are split over their cores by head (gemm batch) first, then by rows M of A
    within a head (each of a head's cores then keeps a copy of that head's B).  A spike of A
    reaches the one core holding its row; a spike of B reaches every core of its head."""
    return max(1, n_cores // max(1, op.gemm[0]))


def matmul_dest(op: Op, cores: np.ndarray, operand: int, idx: np.ndarray) -> list:
    """Destination cores of spikes of operand 0 (A [b, M, K]) or 1 (B [b, K, N]) with flat
    per-sample neuron indices `idx`: a list of index arrays, one per destination of each spike."""
    b, M, K, N = op.gemm
    c = len(cores)
    cph = matmul_cores_per_head(op, c)
    per_head = M * K if operand == 0 else K * N
    h = idx // per_head
    if cph == 1:
        return [cores[h * c // b]]
    base = h * cph
    if operand == 0:
        m = (idx // K) % M
        return [cores[base + m * cph // M]]
    return [cores[base + i] for i in range(cph)]


@dataclass
class Group:
    """One synaptic op (the host) with the units, adds and neuron sites that live on its cores."""

    host: str
    kind: str
    order: int
    syn_bytes: float = 0.0
    neuron_bytes: float = 0.0
    members: list = field(default_factory=list)   # (name, kind, neuron_bytes)
    cores: np.ndarray = None
    spill_syn: float = 0.0     # fraction of synapse-memory contents off chip
    spill_neuron: float = 0.0  # fraction of neuron-memory contents off chip


@dataclass
class Mapping:
    """Where every op, unit and neuron site of a Workload lives on the chip."""

    groups: dict            # host op name -> Group
    group_of: dict          # op / unit / add / site name -> host op name
    site_consumer: dict     # site name -> consuming op name
    core_xy: np.ndarray     # [cores, 2] router coordinates (x, y)
    syn_used: np.ndarray    # bytes used per core
    neuron_used: np.ndarray
    notes: list = field(default_factory=list)
    dead_cores: tuple = ()

    def cores_of(self, name: str) -> np.ndarray:
        return self.groups[self.group_of[name]].cores

    @property
    def used_cores(self) -> int:
        return int(((self.syn_used > 0) | (self.neuron_used > 0)).sum())

    def mean_hops(self, src: np.ndarray, dst: np.ndarray) -> tuple[float, float]:
        """Mean x and y hop distance between a source core and a destination core."""
        hx, hy = self.hops(src, dst)
        return float(hx.mean() / len(dst)), float(hy.mean() / len(dst))

    def hops(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per source core: summed x and y hop counts to every destination core (unicast)."""
        dx = np.abs(self.core_xy[src, 0][:, None] - self.core_xy[dst, 0][None, :]).sum(1)
        dy = np.abs(self.core_xy[src, 1][:, None] - self.core_xy[dst, 1][None, :]).sum(1)
        return dx, dy

    def utilisation(self, cfg) -> dict:
        k = cfg.cores
        return {"cores_used": self.used_cores, "cores_total": k.count,
                "cores": self.used_cores / k.count,
                "synapse_mem": float(self.syn_used.sum() / (k.count * k.synapse_mem_bytes)),
                "neuron_mem": float(self.neuron_used.sum() / (k.count * k.neuron_mem_bytes))}


def core_coordinates(cfg) -> np.ndarray:
    """Router (x, y) of each core id.  Core ids follow the tiles in snake order (row 0 left to
    right, row 1 right to left, ...) so consecutively allocated cores are mesh neighbours."""
    mx, my = cfg.cores.mesh
    tile = np.arange(cfg.cores.count) // cfg.cores.cores_per_tile
    y = tile // mx
    x = np.where(y % 2 == 0, tile % mx, mx - 1 - tile % mx)
    return np.stack([x, y], 1)


def _syn_bytes(op: Op, cfg) -> float:
    if op.kind == "matmul_act":
        b, M, K, N = op.gemm
        ba, bb = operand_bits(op)
        return b * (M * K * ba + K * N * bb) / 8
    return op.params * stored_weight_bits(op.w_bits, cfg.cores.weight_bits) / 8


def _site_neurons(op: Op, i: int) -> int:
    if op.kind == "matmul_act":
        b, M, K, N = op.gemm
        return b * M * K if i == 0 else b * K * N
    return op.in_elems


def _balanced(order: list, need: dict, ops: dict, n_cores: int) -> dict:
    """Spread the cores left after the memory-minimal allocation over the synaptic ops in
    proportion to their dense MACs (a workload-only proxy of their spike work), at most one core
    per output column."""
    total = sum(need.values())
    spare = n_cores - total
    syn = [g for g in order if g.kind in SYNAPTIC_KINDS]
    macs = {g.host: max(ops[g.host].macs, 1) for g in syn}
    if spare <= 0 or not syn:
        return need
    m = sum(macs.values())
    out = dict(need)
    for g in syn:
        op = ops[g.host]
        cap = op.gemm[3] if op.kind != "matmul_act" else max(op.gemm[2], op.gemm[3])
        out[g.host] = max(need[g.host], min(cap, need[g.host] + int(spare * macs[g.host] / m)))
    return out


def map_workload(workload: Workload, cfg, dead_cores=()) -> Mapping:
    """Assign the Workload's ops, units and neuron sites to cores (see the module docstring),
    avoiding `dead_cores` (core ids)."""
    k = cfg.cores
    acc_B, state_B, fp_B = k.acc_bits / 8, k.neuron_state_bits / 8, cfg.units.fp_bits / 8
    groups: dict[str, Group] = {}
    group_of: dict[str, str] = {}
    site_consumer: dict[str, str] = {}
    names = {o.name for o in workload.ops}
    current = None
    prev_op_group = None  # group of the op just before the one being looked at
    for i, op in enumerate(workload.ops):
        if op.kind in HOST_KINDS:
            g = Group(host=op.name, kind=op.kind, order=i, syn_bytes=_syn_bytes(op, cfg),
                      neuron_bytes=(op.out_elems * acc_B if op.kind != "embed" else 0.0))
            groups[op.name] = g
            group_of[op.name] = op.name
            for j, site in enumerate(op.spike_inputs):
                up = prev_op_group
                if (op.kind == "matmul_act" and len(op.producers) == len(op.spike_inputs)
                        and op.producers[j] in names and op.producers[j] in group_of):
                    up = group_of[op.producers[j]]
                home = groups[up] if up is not None else g
                nb = _site_neurons(op, j) * state_B
                home.members.append((site, "site", nb))
                home.neuron_bytes += nb
                group_of[site] = home.host
                site_consumer[site] = op.name
            current = g
        else:
            if current is None:  # a unit before any synaptic op: give it a group of its own
                current = Group(host=op.name, kind=op.kind, order=i)
                groups[op.name] = current
            if op.kind in NONSPIKING_KINDS:
                nb = op.out_elems * fp_B
            elif op.kind == "add":
                nb = op.out_elems * fp_B
            else:
                raise ValueError(f"op {op.name!r}: kind {op.kind!r} has no neuromorphic mapping")
            current.members.append((op.name, op.kind, nb))
            current.neuron_bytes += nb
            group_of[op.name] = current.host
        prev_op_group = group_of[op.name]

    order = sorted(groups.values(), key=lambda g: (g.kind == "embed", g.order))
    dead = sorted({int(c) for c in dead_cores})
    if any(c < 0 or c >= k.count for c in dead):
        raise ValueError(f"dead core ids must be in [0, {k.count}), got {dead}")
    alive = np.array([c for c in range(k.count) if c not in set(dead)], dtype=np.int64)
    if alive.size == 0:
        raise ValueError(f"all {k.count} cores are dead: the network cannot be mapped")
    C = int(alive.size)
    need = {g.host: max(1, math.ceil(g.syn_bytes / k.synapse_mem_bytes),
                        math.ceil(g.neuron_bytes / k.neuron_mem_bytes)) for g in order}
    mem_need = dict(need)
    if k.split == "balanced":
        need = _balanced(order, need, {o.name: o for o in workload.ops}, C)
    syn_used = np.zeros(k.count)
    neu_used = np.zeros(k.count)
    notes = []
    nxt = 0          # next fresh core
    open_core = None  # core that small groups may share (pack_ops)
    for g in order:
        need_g = need[g.host]
        if (k.pack_ops and k.split == "memory" and need_g == 1 and open_core is not None
                and syn_used[open_core] + g.syn_bytes <= k.synapse_mem_bytes
                and neu_used[open_core] + g.neuron_bytes <= k.neuron_mem_bytes):
            g.cores = np.array([open_core])
        elif nxt < C:
            n = min(need_g, C - nxt)
            g.cores = alive[nxt:nxt + n]
            nxt += n
            open_core = g.cores[-1] if n == 1 else None
        else:  # chip full: share the least-loaded core, everything of this group off chip
            c = int(alive[np.argmin((syn_used + neu_used)[alive])])
            g.cores = np.array([c])
            g.spill_syn = 1.0 if g.syn_bytes > 0 else 0.0
            g.spill_neuron = 1.0 if g.neuron_bytes > 0 else 0.0
        n = len(g.cores)
        if g.spill_syn < 1.0 and g.syn_bytes > 0:
            room = n * k.synapse_mem_bytes - syn_used[g.cores].sum()
            g.spill_syn = max(0.0, 1.0 - room / g.syn_bytes)
        if g.spill_neuron < 1.0 and g.neuron_bytes > 0:
            room = n * k.neuron_mem_bytes - neu_used[g.cores].sum()
            g.spill_neuron = max(0.0, 1.0 - room / g.neuron_bytes)
        syn_used[g.cores] += g.syn_bytes * (1 - g.spill_syn) / n
        neu_used[g.cores] += g.neuron_bytes * (1 - g.spill_neuron) / n
        if g.spill_syn > 0 or g.spill_neuron > 0:
            notes.append(f"OFF-CHIP: {g.host} ({g.kind}) needs {mem_need[g.host]} core(s) "
                         f"({g.syn_bytes / 1024:.1f} KiB synapse, {g.neuron_bytes / 1024:.1f} KiB "
                         f"neuron memory), got {n}: {100 * g.spill_syn:.0f}% of its synapse memory "
                         f"and {100 * g.spill_neuron:.0f}% of its neuron memory are charged as DRAM "
                         f"traffic per access")
    if dead:
        spilled = any(g.spill_syn > 0 or g.spill_neuron > 0 for g in groups.values())
        notes.append(f"DEAD CORES: {len(dead)} of {k.count} ({', '.join(map(str, dead[:16]))}"
                     f"{' ...' if len(dead) > 16 else ''}) avoided by the mapping; "
                     + ("the network no longer fits on chip (see OFF-CHIP)" if spilled else
                        "the network still fits on the working cores"))
    return Mapping(groups=groups, group_of=group_of, site_consumer=site_consumer,
                   core_xy=core_coordinates(cfg), syn_used=syn_used, neuron_used=neu_used, notes=notes,
                   dead_cores=tuple(dead))
