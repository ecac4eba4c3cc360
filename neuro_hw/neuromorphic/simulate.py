"""`simulate_neuromorphic(workload, trace, cfg) -> HwReport`: energy and latency of one inference.

Energy, per event (all arithmetic and memory energies from the shared technology table):

* synaptic op, per input spike (spike-aware dataflow): fetch the spike's weight row from synapse
  SRAM, in `word_bits` words, on each core that holds a slice of the outputs; accumulate the
  fan-out targets (one add at `acc_bits` per synaptic op) with a read-modify-write of the
  accumulator words in neuron memory.  matmul_act uses the increment identity scheduled as
  b_t first, then a_t:  A_t B_t - A_{t-1} B_{t-1} = A_{t-1} b_t + a_t B_t  (equal to
  a_t B_{t-1} + A_{t-1} b_t + a_t b_t): a spike of B fetches a column of the stored A_{t-1}
  (M values) and accumulates M outputs, then the stored B is updated, and a spike of A fetches a
  row of the stored B_t (N values); each spike also updates its own stored operand;
* neuron update (per `updates` of the trace): read state + input accumulator, add, two compares
  (+ threshold and 0), write state; per spike one more add (reset by subtraction) and a count add;
* packets: one per spike and destination core (all cores of a linear/conv op; the row's core for
  a spike of A and every core of the head for a spike of B of a matmul_act), local router energy
  + per hop energy;
* non-spiking units: per re-evaluated element the fp operations of the unit (UNIT_RECIPES, with
  the table's exp / div / sqrt), reading its accumulated input and its previous output, writing
  the output; they run on the per-core digital units and are charged as what they are;
* residual add: per changed element one fp multiply (the producer's scale) and one fp add into
  the residual stream (read-modify-write);
* embedding: per lookup one row read and an fp add per element;
* fixed costs: a barrier per time step (per pipeline tick when pipelined), host I/O of the input
  and output, static power (leakage of every powered core) times the latency;
* off chip: the spilled fraction of a group's memory is read/written as DRAM bits instead.

Latency: per time step, the work of each core in cycles (synaptic fetches at one word or
`accumulate_lanes` targets per cycle, neuron updates at `neuron_lanes` per cycle, one packet
injected per cycle, unit fp operations at `units.lanes` per cycle).  Without pipelining, ops run
one after another in each step and the step ends with a barrier.  With pipelining, op i works on
step t - stage(i) in tick t (Loihi's one-step synaptic delay), ticks last as long as their busiest
core plus the longest route, and there are (steps + stages - 1) ticks.  The trace's counts are
those of the exact SNN: pipelining only moves the same events into ticks.  Latency uses the mean
activity per step over the trace's samples.
"""
from __future__ import annotations

import math

import numpy as np

from neuro_hw.neuromorphic.config import NeuromorphicConfig
from neuro_hw.neuromorphic.events import Activity, activity, analytical_totals, exact_totals, fanout
from neuro_hw.neuromorphic.mapping import Mapping, map_workload, operand_bits, stored_weight_bits
from neuro_hw import recipes as _r
from neuro_hw.report import HwReport
from neuro_hw.tech import get_tech
from neuro_hw.workload import NONSPIKING_KINDS, SYNAPTIC_KINDS, Workload

PARTS = ("synaptic_sram", "accumulate", "neuron_update", "noc", "nonspiking_units", "residual_add",
         "embed", "offchip", "sync", "host_io", "static")

# Floating-point operations per element (and per row) of each non-spiking unit: the shared recipe
# (neuro_hw.recipes) plus the subtraction that forms the differenced output f(X_t) - f(X_{t-1}).
# A compare counts as an fp add (the unit is an fp unit).
def _fp_ops(ops: dict) -> dict:
    out = {k: v for k, v in ops.items() if k != "cmp"}
    if ops.get("cmp"):
        out["add"] = out.get("add", 0) + ops["cmp"]
    return out


UNIT_RECIPES = {kind: (_fp_ops(_r.combine(per_el, _r.DIFFERENCE)), _fp_ops(per_row))
                for kind, (per_el, per_row) in _r.NONLINEAR.items()}
# cycles of one unit lane per operation: exp, div, sqrt are the multi-op sequences of neuro_hw.tech
UNIT_OP_CYCLES = _r.LANE_CYCLES


def _split(n: int, parts: int) -> np.ndarray:
    parts = max(1, min(parts, n)) if n > 0 else 1
    base, extra = divmod(n, parts)
    return np.array([base + 1] * extra + [base] * (parts - extra))


class _Costs:
    """Per-event energies (pJ) of one config on its technology table."""

    def __init__(self, cfg: NeuromorphicConfig):
        t = get_tech(cfg.tech)
        k, u = cfg.cores, cfg.units
        self.tech = t
        self.syn_word = t.sram_read_pj(k.synapse_mem_bytes, k.word_bits)
        self.syn_word_rw = self.syn_word + t.sram_write_pj(k.synapse_mem_bytes, k.word_bits)
        self.neu_word_rw = (t.sram_read_pj(k.neuron_mem_bytes, k.word_bits)
                            + t.sram_write_pj(k.neuron_mem_bytes, k.word_bits))
        self.add_acc = t.add_pj(k.acc_bits)
        self.cmp_acc = t.cmp_pj(k.acc_bits)
        self.state_rw = (t.sram_read_pj(k.neuron_mem_bytes, k.neuron_state_bits + k.acc_bits)
                         + t.sram_write_pj(k.neuron_mem_bytes, k.neuron_state_bits))
        self.state_bits_rw = 2 * k.neuron_state_bits + k.acc_bits
        self.update = self.state_rw + self.add_acc + 2 * self.cmp_acc + cfg.overhead.neuron_update_pj * t.scale
        self.spike = self.add_acc + t.add_pj(8)
        self.dram_bit = t.dram_pj_per_bit
        pb = cfg.noc.packet_bits
        self.packet = pb * cfg.noc.local_pj_per_bit * t.scale + cfg.overhead.packet_pj * t.scale
        self.hop = pb * cfg.noc.hop_pj_per_bit * t.scale
        self.synop_overhead = cfg.overhead.synop_pj * t.scale
        self.idle_neuron = cfg.overhead.idle_neuron_pj * t.scale
        fb = u.fp_bits
        self.fp = {"add": t.fp_add_pj(fb), "mul": t.fp_mul_pj(fb), "exp": t.exp_pj(fb),
                   "div": t.div_pj(fb), "sqrt": t.sqrt_pj(fb)}
        self.unit_mem = (t.sram_read_pj(k.neuron_mem_bytes, k.acc_bits + fb)
                         + t.sram_write_pj(k.neuron_mem_bytes, fb))
        self.unit_mem_bits = k.acc_bits + 2 * fb
        self.resid_mem = (t.sram_read_pj(k.neuron_mem_bytes, fb) + t.sram_write_pj(k.neuron_mem_bytes, fb))

    def recipe(self, kind: str, width: int) -> tuple[float, float, float]:
        """(energy pJ, lane cycles, operations) per element of a unit of row width `width`."""
        per_el, per_row = UNIT_RECIPES[kind]
        e = (sum(self.fp[o] * n for o, n in per_el.items())
             + sum(self.fp[o] * n for o, n in per_row.items()) / width)
        cyc = (sum(UNIT_OP_CYCLES[o] * n for o, n in per_el.items())
               + sum(UNIT_OP_CYCLES[o] * n for o, n in per_row.items()) / width)
        ops = sum(per_el.values()) + sum(per_row.values()) / width
        return e, cyc, ops


def _fetch_shape(n_targets: int, n_cores: int, elem_bits: int, cfg) -> tuple[int, int, int]:
    """Per input spike, over the op's cores: synapse words read, accumulator words
    read-modified-written, and cycles of the busiest core."""
    k = cfg.cores
    sizes = _split(n_targets, n_cores)
    words = np.ceil(sizes * elem_bits / k.word_bits)
    acc_words = np.ceil(sizes * k.acc_bits / k.word_bits)
    cyc = np.maximum(words, np.ceil(sizes / k.accumulate_lanes)).max()
    return int(words.sum()), int(acc_words.sum()), int(cyc)


def streamed_weight_bits(workload: Workload, mapping: Mapping) -> float:
    """Weight bits held on chip (synapse memories, embedding tables; not matmul_act operands, which
    are activations): what a streamed-weights policy reloads from DRAM at every inference."""
    bits = 0.0
    for g in mapping.groups.values():
        if g.kind != "matmul_act":
            bits += 8 * g.syn_bytes * (1 - g.spill_syn)
    return bits


def simulate_neuromorphic(workload: Workload, trace, cfg: NeuromorphicConfig | None = None, *,
                          record=None, mapping: Mapping | None = None, policy=None) -> HwReport:
    """One inference of `workload` driven by the SNN's ActivityTrace `trace` (counts summed over
    trace.n_samples inputs; the report is per inference).  `record`: a SpikeRecord of the same
    run, required when cfg.mode.event_exact.  `mapping`: reuse a `map_workload` result.
    `policy`: a `neuro_hw.MemoryPolicy`: resident weights stay in synapse memory (the spill is
    charged per access as always), streamed weights are reloaded from DRAM at every inference;
    power gating leaks only the used cores.  None: the config's own mode.power_gate_unused."""
    cfg = cfg or NeuromorphicConfig.default()
    mapping = mapping or map_workload(workload, cfg)
    act = activity(workload, trace, mapping, cfg)
    meta = {"utilisation": mapping.utilisation(cfg), "mean_steps": act.mean_steps}
    if cfg.mode.event_exact:
        if record is None:
            raise ValueError("mode.event_exact needs the spikes themselves: pass record= "
                             "(neuro_hw.neuromorphic.record_spikes(snn, *inputs))")
        meta["event_exact_check"] = _apply_exact(workload, act, record, mapping)
    c = _Costs(cfg)
    k, fb = cfg.cores, cfg.units.fp_bits
    clock = cfg.clock_hz
    parts = dict.fromkeys(PARTS, 0.0)
    ops_count = {"synaptic": 0.0, "neuron": 0.0, "nonspiking": 0.0, "residual": 0.0, "embed": 0.0}
    syn_event_pj = 0.0  # event-driven synaptic energy (on and off chip)
    items = []          # (stage, cores, per-step cycles per core)
    route_cycles = []   # (per-step activity, route latency in cycles)
    rows = []
    stage_of = {o.name: i for i, o in enumerate(workload.ops)}
    for op in workload.ops:
        g = mapping.groups[mapping.group_of[op.name]]
        cores = g.cores
        e = dict.fromkeys(PARTS, 0.0)
        cyc = np.zeros(act.steps)
        row = {"name": op.name, "kind": op.kind, "cores": len(cores), "core_first": int(cores[0]),
               "offchip": bool(g.spill_syn > 0 or g.spill_neuron > 0),
               "offchip_fraction": round(max(g.spill_syn, g.spill_neuron), 6)}
        a = act.ops.get(op.name, {})
        if op.kind in SYNAPTIC_KINDS:
            if op.kind == "matmul_act":
                # A spike: row of the stored B_t on its row's core; B spike: column of the stored
                # A_{t-1} on each core of its head (rows of the head split over those cores)
                b, M, K, N = op.gemm
                ba, bb = operand_bits(op)
                fetches = [(a["fetch_a"], N, bb, 1), (a["fetch_b"], M, ba, a["cores_per_head"])]
            else:
                wb = stored_weight_bits(op.w_bits, k.weight_bits)
                fetches = [(a["fetch_a"], fanout(op), wb, len(cores))]
            for f, n_t, bits, n_c in fetches:
                words, acc_words, cyc_f = _fetch_shape(n_t, n_c, bits, cfg)
                F = float(f.sum())
                e["synaptic_sram"] += F * words * c.syn_word * (1 - g.spill_syn)
                e["accumulate"] += F * acc_words * c.neu_word_rw * (1 - g.spill_neuron)
                dram_bits = (words * g.spill_syn + 2 * acc_words * g.spill_neuron) * k.word_bits
                e["offchip"] += F * dram_bits * c.dram_bit
                # per core: a matmul_act's spikes spread over its heads' cores; a linear's reach all
                share = (1.0 / len(cores)) * n_c if op.kind == "matmul_act" else 1.0
                cyc = cyc + share * f * (cyc_f + dram_bits / n_c / cfg.memory.dram_bits_per_cycle)
            synops = float(a["synops"].sum())
            e["accumulate"] += synops * (c.add_acc + c.synop_overhead)
            if op.kind == "matmul_act":  # each spike also updates its stored operand
                upd = a["operand_updates"]
                e["synaptic_sram"] += float(upd.sum()) * c.syn_word_rw * (1 - g.spill_syn)
                e["offchip"] += float(upd.sum()) * 2 * k.word_bits * c.dram_bit * g.spill_syn
                cyc = cyc + 2 * upd / len(cores)
                if op.extra.get("kv_cache"):
                    row.update(_kv_cache_row(op, a, g, c, cfg))
            syn_event_pj += e["synaptic_sram"] + e["accumulate"] + e["offchip"]
            ops_count["synaptic"] += synops
            row.update(synops=synops, row_fetches=float(sum(f.sum() for f, _, _, _ in fetches)),
                       weight_kib=round(g.syn_bytes / 1024, 3))
            items.append((stage_of[op.name], cores, cyc))
            # the op's input neurons: updates, spikes, packets (charged to this op's row)
            sp_tot = pk_tot = hop_tot = upd_tot = 0.0
            for s in op.spike_inputs:
                sa = act.sites[s]
                sg = mapping.groups[mapping.group_of[s]]
                upd, spk = sa["updates"], sa["spikes"]
                U, S = float(upd.sum()), float(spk.sum())
                e["neuron_update"] += U * (c.update - c.state_rw * sg.spill_neuron) + S * c.spike
                if c.idle_neuron:  # neurons visited at every step although nothing changed
                    idle = np.maximum(sa["neurons"] * act.run_weight - upd, 0.0)
                    e["neuron_update"] += float(idle.sum()) * c.idle_neuron
                e["offchip"] += U * c.state_bits_rw * c.dram_bit * sg.spill_neuron
                P, H = float(sa["packets"].sum()), float((sa["hops_x"] + sa["hops_y"]).sum())
                e["noc"] += P * c.packet + H * c.hop
                ops_count["neuron"] += 3 * U + 2 * S
                ns = len(sg.cores)
                items.append((stage_of[op.name], sg.cores, (upd / k.neuron_lanes + sa["packets"]) / ns))
                route = _max_route(mapping, sg.cores, cores, cfg) * clock
                route_cycles.append((stage_of[op.name], spk, route))
                sp_tot, pk_tot, hop_tot, upd_tot = sp_tot + S, pk_tot + P, hop_tot + H, upd_tot + U
            row.update(spikes=sp_tot, packets=pk_tot, hops=hop_tot, neuron_updates=upd_tot)
        elif op.kind in NONSPIKING_KINDS:
            ep, cp, opn = c.recipe(op.kind, a["width"])
            el = a["elems"]
            E = float(el.sum())
            e["nonspiking_units"] += E * (ep + c.unit_mem * (1 - g.spill_neuron))
            e["offchip"] += E * c.unit_mem_bits * c.dram_bit * g.spill_neuron
            ops_count["nonspiking"] += E * opn
            items.append((stage_of[op.name], cores, el * cp / cfg.units.lanes / len(cores)))
            row.update(elements=E, rows=float(a["rows"].sum()))
        elif op.kind == "add":
            el = a["elems"]
            E = float(el.sum())
            e["residual_add"] += E * (c.fp["mul"] + c.fp["add"] + c.resid_mem * (1 - g.spill_neuron))
            e["offchip"] += E * 2 * fb * c.dram_bit * g.spill_neuron
            ops_count["residual"] += 2 * E
            items.append((stage_of[op.name], cores, el * 2 / cfg.units.lanes / len(cores)))
            row.update(elements=E)
        elif op.kind == "embed":
            look, width = a["lookups"], a["width"]
            L = float(look.sum())
            words = math.ceil(width * stored_weight_bits(op.w_bits, k.weight_bits) / k.word_bits)
            e["embed"] += L * (words * c.syn_word * (1 - g.spill_syn) + width * (c.fp["add"] + c.resid_mem))
            e["offchip"] += L * words * k.word_bits * c.dram_bit * g.spill_syn
            ops_count["embed"] += L * width
            items.append((stage_of[op.name], cores, look * words / len(cores)))
            row.update(lookups=L, weight_kib=round(g.syn_bytes / 1024, 3))
        row["energy_pj"] = float(sum(e.values()))
        row["cycles"] = 0.0
        for p in PARTS:
            parts[p] += e[p]
        rows.append(row)

    # ---- latency --------------------------------------------------------------------------
    mx, my = k.mesh
    barrier_ns = cfg.sync.barrier_fixed_ns + 2 * ((mx - 1) * cfg.noc.hop_ns_x + (my - 1) * cfg.noc.hop_ns_y)
    barrier_cycles = barrier_ns * 1e-9 * clock
    work_cycles, ticks, per_item_cycles, busy = _schedule(items, route_cycles, act, cfg.mode.pipeline)
    meta["utilisation"]["core_busy"] = busy
    stages = len({s for s, _, _ in items})
    barriers = act.mean_steps + (stages - 1 if cfg.mode.pipeline else 0)
    host_in_bits = _host_input_bits(workload, mapping, fb)
    host_out_bits = workload.ops[-1].out_elems * k.acc_bits if workload.ops else 0
    host_bits = host_in_bits + host_out_bits
    host_cycles = host_bits / (cfg.sync.host_io_gbps * 1e9) * clock
    stream_bits = streamed_weight_bits(workload, mapping) if (policy is not None
                                                              and policy.weights == "streamed") else 0.0
    if stream_bits:   # reload the synapse memories: DRAM read + SRAM write, at the DRAM bandwidth
        parts["offchip"] += stream_bits * (c.dram_bit + c.syn_word_rw / 2 / k.word_bits)
    stream_cycles = stream_bits / cfg.memory.dram_bits_per_cycle
    cycles = float(work_cycles + barriers * barrier_cycles + host_cycles + stream_cycles)
    latency_s = cycles / clock
    n_tiles = mx * my
    parts["sync"] = barriers * 2 * n_tiles * (c.packet + c.hop)
    parts["host_io"] = host_bits * cfg.sync.host_io_pj_per_bit
    gate = cfg.mode.power_gate_unused if policy is None else policy.power_gating
    powered = mapping.used_cores if gate else k.count
    t = c.tech
    static_w = (t.sram_leak_w(powered * (k.synapse_mem_bytes + k.neuron_mem_bytes))
                + t.logic_leak_w(powered * k.logic_mm2 * t.area_scale))
    parts["static"] = static_w * latency_s * 1e12
    for row in rows:
        row["cycles"] = float(per_item_cycles.get(stage_of[row["name"]], 0.0))
    parts = {p: float(v) for p, v in parts.items()}
    total = sum(parts.values())
    all_ops = sum(ops_count.values())
    sdf = {"ops": float(ops_count["synaptic"] / all_ops) if all_ops else 0.0,
           "energy": float(syn_event_pj / total) if total else 0.0}
    notes = list(mapping.notes)
    if parts["offchip"] > 0:
        notes.append(f"off-chip DRAM traffic: {parts['offchip'] / total:.1%} of the energy")
    if not cfg.mode.spike_aware:
        notes.append("spike-aware dataflow OFF: every synapse row fetched and every neuron updated "
                     "at every step")
    meta.update({"run_steps": (f"{cfg.mode.steps}: " + ("each input runs until its own t_settle + 1 "
                                "quiet step (the host stops it when the chip is quiet)"
                                if cfg.mode.steps == "settle" else "every input runs all trace.steps")),
                 "barriers": barriers, "barrier_ns": barrier_ns, "ticks": ticks, "stages": stages,
                 "static_power_w": static_w, "powered_cores": int(powered),
                 "streamed_weight_bits": stream_bits, "host_io_bits": host_bits, "ops_by_class": ops_count,
                 "tech": t.name, "events": analytical_totals(workload, act)["_all"],
                 "placement": {g.host: [int(g.cores[0]), len(g.cores)] for g in mapping.groups.values()}})
    if any("kv_cache_read_pj" in r for r in rows):
        meta["kv_cache"] = {
            "read_pj": float(sum(r.get("kv_cache_read_pj", 0.0) for r in rows)),
            "write_pj": float(sum(r.get("kv_cache_write_pj", 0.0) for r in rows)),
            "stored_bits": float(sum(o.extra["kv_cache"]["read_elems"] * o.extra["kv_cache"]["bits"]
                                     for o in workload.ops if o.extra.get("kv_cache"))),
            "offchip": any(r.get("offchip") for r in rows if "kv_cache_read_pj" in r)}
    return HwReport(accelerator="neuromorphic", energy_pj=total, breakdown_pj=parts, cycles=cycles,
                    latency_s=latency_s, per_op=rows, config=cfg.to_dict(),
                    spike_driven_fraction=sdf, notes=notes, meta=meta)


def _kv_cache_row(op, a: dict, g, c: _Costs, cfg: NeuromorphicConfig) -> dict:
    """Itemised KV-cache energy of a decoder call's Q.K^T or P.V (ops with extra["kv_cache"], see
    neuro_hw.workload.extract_decoder_call); already inside synaptic_sram / offchip, not charged
    again.  The cache is the op's stored B operand (K^T or V, settled counts of the cached
    positions): a spike of A fetches a row of B, of which the cached share (cached / Lk key
    positions, spikes spread evenly as elsewhere in the analytical path) is a KV-cache read; a
    spike of B (a new position) updates its stored entry on each core of its head: a KV-cache
    write."""
    kv = op.extra["kv_cache"]
    b, M, K, N = op.gemm
    _, bb = operand_bits(op)
    lk = N if op.name.endswith(".qk") else K
    share = kv["cached"] / lk if lk else 0.0
    words, _, _ = _fetch_shape(N, 1, bb, cfg)
    wb = cfg.cores.word_bits
    read = share * float(a["fetch_a"].sum()) * words * (c.syn_word * (1 - g.spill_syn)
                                                         + wb * c.dram_bit * g.spill_syn)
    writes = float(a["fetch_b"].sum()) * a["cores_per_head"]
    write = writes * (c.syn_word_rw * (1 - g.spill_syn) + 2 * wb * c.dram_bit * g.spill_syn)
    return {"kv_cache_read_pj": read, "kv_cache_write_pj": write}


def _max_route(mapping: Mapping, src, dst, cfg) -> float:
    """Seconds for a packet on the longest route from `src` to `dst` cores."""
    xy = mapping.core_xy
    dx = np.abs(xy[src, 0][:, None] - xy[dst, 0][None, :]).max()
    dy = np.abs(xy[src, 1][:, None] - xy[dst, 1][None, :]).max()
    return (dx * cfg.noc.hop_ns_x + dy * cfg.noc.hop_ns_y) * 1e-9


def _host_input_bits(workload: Workload, mapping: Mapping, fp_bits: int) -> float:
    """Input values of the sites driven by the host (fp_bits each) and embedding ids (32 b)."""
    bits = 0.0
    for op in workload.ops:
        if op.kind == "embed":
            bits += 32 * op.extra.get("lookups", op.in_elems)
        for j, s in enumerate(op.spike_inputs):
            if mapping.group_of.get(s) == op.name and mapping.groups[op.name].order == 0:
                bits += fp_bits * op.in_elems
    return bits


def _schedule(items, routes, act: Activity, pipeline: bool):
    """Work cycles per inference (without barriers), number of ticks, cycles per op (by stage),
    and the mean busy fraction of the used cores over the work cycles."""
    T = act.steps
    stages = sorted({s for s, _, _ in items})
    rank = {s: i for i, s in enumerate(stages)}
    per_stage = {}
    for s, _, w in items:
        per_stage[s] = per_stage.get(s, 0.0) + float(w.sum())
    used = np.unique(np.concatenate([np.asarray(cores) for _, cores, _ in items]))
    core_work = sum(float(w.sum()) * len(cores) for _, cores, w in items)
    if not pipeline:
        # ops one after another in each step; each op's cores work in parallel
        total = sum(float(w.sum()) for _, _, w in items)
        for s, spk, route in routes:
            total += route * float((spk > 0).sum())
        ticks = T
    else:
        S = len(stages)
        L = T + S - 1
        col = {cc: i for i, cc in enumerate(used)}
        work = np.zeros((len(used), L))
        for s, cores, w in items:
            r = rank[s]
            idx = [col[cc] for cc in cores]
            work[idx, r:r + T] += w[None, :]
        busy = np.zeros(L)
        for s, spk, route in routes:
            r = rank[s]
            busy[r:r + T] = np.maximum(busy[r:r + T], np.where(spk > 0, route, 0.0))
        total = float(work.max(0).sum() + busy.sum())
        ticks = L
    busy = core_work / (len(used) * total) if total > 0 else 0.0
    return total, ticks, per_stage, float(busy)


def _apply_exact(workload: Workload, act: Activity, record, mapping: Mapping) -> dict:
    """Replace the analytical hop (and conv synop) counts by those of the routed spike events;
    return the comparison of the event totals."""
    ana = analytical_totals(workload, act)
    ex = exact_totals(workload, record, mapping)
    for op in workload.ops:
        if op.name not in ex or op.name == "_all":
            continue
        h_a, h_e = ana[op.name]["hops"], ex[op.name]["hops"]
        for s in op.spike_inputs:
            f = h_e / h_a if h_a > 0 else 0.0
            act.sites[s]["hops_x"] = act.sites[s]["hops_x"] * f
            act.sites[s]["hops_y"] = act.sites[s]["hops_y"] * f
            if h_a == 0 and h_e > 0:  # cannot rescale zero: spread the exact hops over the spikes
                sp = act.sites[s]["spikes"]
                act.sites[s]["hops_x"] = sp / max(sp.sum(), 1e-30) * h_e / len(op.spike_inputs)
        s_a, s_e = ana[op.name]["synops"], ex[op.name]["synops"]
        if s_a > 0 and s_a != s_e:
            act.ops[op.name]["synops"] = act.ops[op.name]["synops"] * (s_e / s_a)
    return {k: {"analytical": ana["_all"][k], "exact": ex["_all"][k]}
            for k in ("synops", "packets", "hops", "neuron_updates", "spikes")}
