"""`simulate_loihi(workload, trace, cfg, policy=) -> HwReport`: a silicon-calibrated Loihi-family chip.

Events come from the SNN's ActivityTrace through the same mapping and analytical event counts as
the idealised chip (`neuro_hw.neuromorphic.map_workload`, `.activity`); each event is charged the
chip's measured energy and latency (`LoihiConfig`, SANA-FE's loihi.yaml style):

* synapse: per synaptic op (input event x fan-out) `energy_process_spike`; a graded event (payload
  of p bits, chips with graded spikes) adds the p x w-bit multiply of its payload by the weight
  (tech table at the evaluated node: the estimate of the graded MAC);
* soma: every compartment is visited at every time step the inference runs (`energy_access_neuron`,
  as Loihi and SANA-FE do), updated neurons add `energy_update_neuron`, each event `energy_spike_out`;
* axon out / in: one message per event and destination core (`energy_message_out` +
  payload bits x `energy_payload_bit`, `energy_message_in`), hops x the tile's hop energy;
* non-spiking units (softmax, LayerNorm, GELU), residual adds, embeddings: the shared recipes
  (`neuro_hw.recipes`) on the tech table at the evaluated node, on the cores' embedded / microcoded
  units (an estimate: Loihi publishes no per-op energy for them);
* off chip: weights that do not fit the cores spill (each synaptic op on them reads its weight from
  DRAM), or all weights reload from DRAM per inference under `MemoryPolicy(weights="streamed")`;
* host I/O: input values in and outputs out over the chip link (`neuro_hw.link`);
* static: the measured chip static power (per used core when power gating) x latency.

Latency: per core and time step, the sum of its events' latencies (SANA-FE: synaptic ops, message
in, neuron access / update, spike out, message out); a time step lasts as long as its busiest core
plus the barrier (SANA-FE's table by tiles in use).  The SNN simulator propagates an input through
the whole network within one of its steps; on the chip each layer adds one step of delay, so an
inference of T trace steps through a pipeline of S layers takes T + S - 1 ticks, each with a
barrier.  A graded network that settles in 1 step still pays its S ticks.
"""
from __future__ import annotations

import numpy as np

from neuro_hw import recipes as _r
from neuro_hw.loihi.config import LoihiConfig
from neuro_hw.neuromorphic.events import activity
from neuro_hw.neuromorphic.mapping import map_workload, stored_weight_bits
from neuro_hw.link import link_cost
from neuro_hw.neuromorphic.simulate import _host_input_bits, streamed_weight_bits
from neuro_hw.report import HwReport
from neuro_hw.tech import get_tech
from neuro_hw.workload import NONSPIKING_KINDS, SYNAPTIC_KINDS, Workload

PARTS = ("synapse", "soma_access", "soma_update", "spike_out", "message", "hops", "nonspiking_units",
         "residual_add", "embed", "offchip", "sync", "host_io", "static")
CHIP_PARTS = ("synapse", "soma_access", "soma_update", "spike_out", "message", "hops")  # SANA-FE's scope


def check_payloads(trace, cfg: LoihiConfig) -> None:
    """A graded trace needs graded spikes wide enough for every site's payload (`cfg.check_trace`)."""
    cfg.check_trace(trace)


def _schedule_units(items, T: int):
    """Seconds of work per inference over T + S - 1 pipelined ticks: op at stage rank r works on its
    step t - r in tick t; within a core the units (synapse, soma, axon out, digital units) work as a
    pipeline (SANA-FE's core model), so a core's tick lasts as long as its busiest unit; a tick as
    long as its busiest core.  Returns (work seconds, ticks, seconds per stage)."""
    stages = sorted({s for s, _, _, _ in items})
    rank = {s: i for i, s in enumerate(stages)}
    L = T + len(stages) - 1
    cores = sorted({int(c) for _, cs, _, _ in items for c in cs})
    units = sorted({u for _, _, _, u in items})
    col = {c: i for i, c in enumerate(cores)}
    work = np.zeros((len(units), len(cores), L))
    per_stage: dict = {}
    for s, cs, w, u in items:
        r = rank[s]
        idx = [col[int(c)] for c in cs]
        work[units.index(u)][np.ix_(idx, np.arange(r, r + T))] += np.asarray(w, dtype=float)[None, :]
        per_stage[s] = per_stage.get(s, 0.0) + float(np.sum(w))
    total = float(work.max(axis=0).max(axis=0).sum()) if len(cores) else 0.0
    return total, L, per_stage


def simulate_loihi(workload: Workload, trace, cfg: LoihiConfig, *, policy=None) -> HwReport:
    check_payloads(trace, cfg)
    mcfg = cfg.mapping_config()
    mapping = map_workload(workload, mcfg)
    act = activity(workload, trace, mapping, mcfg)
    t = get_tech(cfg.tech)
    e, lat = cfg.e, cfg.t
    parts = dict.fromkeys(PARTS, 0.0)
    items, rows = [], []
    stage_of = {o.name: i for i, o in enumerate(workload.ops)}
    w = act.run_weight
    ops_count = {"synaptic": 0.0, "other": 0.0}
    syn_event_pj = 0.0
    last_syn = max((i for i, o in enumerate(workload.ops) if o.kind in SYNAPTIC_KINDS), default=None)
    fp = {"add": t.fp_add_pj(16), "mul": t.fp_mul_pj(16), "cmp": t.fp_add_pj(16), "exp": t.exp_pj(16),
          "div": t.div_pj(16), "sqrt": t.sqrt_pj(16)}
    for i, op in enumerate(workload.ops):
        g = mapping.groups[mapping.group_of[op.name]]
        cores = g.cores
        ep = dict.fromkeys(PARTS, 0.0)
        row = {"name": op.name, "kind": op.kind, "cores": len(cores),
               "offchip": bool(g.spill_syn > 0 or g.spill_neuron > 0)}
        a = act.ops.get(op.name, {})
        if op.kind in SYNAPTIC_KINDS:
            synops = a["synops"]
            S = float(synops.sum())
            e_syn = e("core.synapse.energy_process_spike")
            wb = stored_weight_bits(op.w_bits or 8, mcfg.cores.weight_bits)
            bits_in = [int(getattr(trace.sites[s], "payload_bits", 0) or 0) for s in op.spike_inputs]
            p = max(bits_in) if bits_in else 0
            if p > 0:   # graded: payload x weight multiply per synaptic op (estimate, tech table)
                e_syn += t.mul_pj(p, int(wb))
            ep["synapse"] += S * e_syn
            ep["offchip"] += S * g.spill_syn * wb * t.dram_pj_per_bit
            packets_in = sum(act.sites[s]["packets"] for s in op.spike_inputs)
            ep["message"] += float(packets_in.sum()) * e("core.axon_in.energy_message_in")
            work = (synops * lat("core.synapse.latency_process_spike")
                    + packets_in * lat("core.axon_in.latency_message_in")) / len(cores)
            items.append((stage_of[op.name], cores, work, "synapse"))
            ops_count["synaptic"] += S
            sp_tot = up_tot = pk_tot = 0.0
            for s, pb in zip(op.spike_inputs, bits_in):
                sa = act.sites[s]
                sg = mapping.groups[mapping.group_of[s]]
                n = sa["neurons"]
                acc = n * w
                ep["soma_access"] += float(acc.sum()) * e("core.soma.energy_access_neuron")
                ep["soma_update"] += float(sa["updates"].sum()) * e("core.soma.energy_update_neuron")
                ep["spike_out"] += float(sa["spikes"].sum()) * e("core.soma.energy_spike_out")
                msg = e("core.axon_out.energy_message_out") + pb * e("core.axon_out.energy_payload_bit")
                ep["message"] += float(sa["packets"].sum()) * msg
                ep["hops"] += (float(sa["hops_x"].sum()) * e("tile.energy_east_hop")
                               + float(sa["hops_y"].sum()) * e("tile.energy_north_hop"))
                nwork = (acc * lat("core.soma.latency_access_neuron")
                         + sa["updates"] * lat("core.soma.latency_update_neuron")
                         + sa["spikes"] * lat("core.soma.latency_spike_out")) / len(sg.cores)
                items.append((stage_of[op.name], sg.cores, nwork, "soma"))
                items.append((stage_of[op.name], sg.cores,
                              sa["packets"] * lat("core.axon_out.latency_message_out") / len(sg.cores), "axon_out"))
                sp_tot += float(sa["spikes"].sum())
                up_tot += float(sa["updates"].sum())
                pk_tot += float(sa["packets"].sum())
            if i == last_syn:   # the output compartments are visited every step too
                acc = op.out_elems * w
                ep["soma_access"] += float(acc.sum()) * e("core.soma.energy_access_neuron")
                items.append((stage_of[op.name], cores,
                              acc * lat("core.soma.latency_access_neuron") / len(cores), "soma"))
            syn_event_pj += sum(ep.values())
            row.update(synops=S, spikes=sp_tot, neuron_updates=up_tot, packets=pk_tot,
                       weight_kib=round(g.syn_bytes / 1024, 3), payload_bits=p)
        elif op.kind in NONSPIKING_KINDS:
            per_el, per_row = _r.recipe(op.kind)
            width = a["width"]
            ops_el = _r.combine(per_el, _r.DIFFERENCE)
            pj = (sum(fp[k] * v for k, v in ops_el.items()) + sum(fp[k] * v for k, v in per_row.items()) / width)
            cyc = (sum(_r.LANE_CYCLES[k] * v for k, v in ops_el.items())
                   + sum(_r.LANE_CYCLES[k] * v for k, v in per_row.items()) / width)
            el = a["elems"]
            ep["nonspiking_units"] += float(el.sum()) * pj
            items.append((stage_of[op.name], cores, el * cyc * 1e-9 / len(cores), "unit"))   # 1 op/ns per core
            ops_count["other"] += float(el.sum())
            row.update(elements=float(el.sum()))
        elif op.kind == "add":
            el = a["elems"]
            ep["residual_add"] += float(el.sum()) * (fp["mul"] + fp["add"])
            items.append((stage_of[op.name], cores, el * 2e-9 / len(cores), "unit"))
            ops_count["other"] += float(el.sum())
            row.update(elements=float(el.sum()))
        elif op.kind == "embed":
            look = a["lookups"]
            ep["embed"] += float(look.sum()) * a["width"] * (fp["add"] + e("core.synapse.energy_process_spike"))
            items.append((stage_of[op.name], cores, look * a["width"]
                          * lat("core.synapse.latency_process_spike") / len(cores), "synapse"))
            row.update(lookups=float(look.sum()))
        row["energy_pj"] = float(sum(ep.values()))
        for k in PARTS:
            parts[k] += ep[k]
        rows.append(row)

    work_s, ticks, per_stage = _schedule_units(items, act.steps)
    stages = len({s for s, _, _, _ in items})
    barriers = act.mean_steps + stages - 1
    tiles_used = len({tuple(mapping.core_xy[c]) for c in range(len(mapping.syn_used))
                      if mapping.syn_used[c] > 0 or mapping.neuron_used[c] > 0})
    barrier = cfg.barrier_s(max(tiles_used, 1))
    stream_bits = streamed_weight_bits(workload, mapping) if (policy is not None
                                                              and policy.weights == "streamed") else 0.0
    parts["offchip"] += stream_bits * t.dram_pj_per_bit
    stream_s = stream_bits / 64 / 1e9   # one 64-bit DRAM channel at 1 GHz, as the idealised chip
    # the host sends the input values (fp16) and reads the outputs (32-bit): the chip link
    host_bits = _host_input_bits(workload, mapping, 16) + (workload.ops[-1].out_elems * 32 if workload.ops else 0)
    host = link_cost(host_bits)
    parts["host_io"] = host["energy_pj"]
    latency = float(work_s + barriers * barrier + stream_s + host["latency_s"])
    parts["sync"] = barriers * tiles_used * e("sync.energy_barrier")
    n_cores = cfg.c["chip.cores"]
    gate = True if policy is None else policy.power_gating
    powered = mapping.used_cores if gate else n_cores
    static_w = cfg.c["chip.static_power_w"] * cfg.energy_scale * powered / n_cores
    parts["static"] = static_w * latency * 1e12
    for row in rows:
        row["latency_s"] = float(per_stage.get(stage_of[row["name"]], 0.0))
        row["cycles"] = 0.0
    parts = {k: float(v) for k, v in parts.items()}
    total = sum(parts.values())
    allops = sum(ops_count.values())
    notes = list(mapping.notes)
    if parts["offchip"] > 0:
        notes.append(f"off-chip traffic: {parts['offchip'] / total:.1%} of the energy")
    if any(o.kind in NONSPIKING_KINDS for o in workload.ops):
        notes.append(f"{cfg.name}: non-spiking units charged from the shared recipes on the tech table "
                     "(estimate; no published per-op figure)")
    clock_hz = 1e9
    return HwReport(
        accelerator=cfg.name, energy_pj=total, breakdown_pj=parts, cycles=latency * clock_hz,
        latency_s=latency, per_op=rows, config=cfg.to_dict(),
        spike_driven_fraction={"ops": ops_count["synaptic"] / allops if allops else 0.0,
                               "energy": syn_event_pj / total if total else 0.0},
        notes=notes, kind="loihi", node=cfg.tech,
        meta={"utilisation": mapping.utilisation(mcfg), "powered_cores": int(powered),
              "tiles_used": tiles_used, "barrier_s": barrier, "barriers": barriers, "ticks": ticks,
              "stages": stages, "work_s": float(work_s), "mean_steps": act.mean_steps,
              "static_power_w": static_w, "energy_scale": cfg.energy_scale, "constants_node": cfg.node,
              "coding": getattr(trace, "coding", "binary"), "streamed_weight_bits": stream_bits,
              "cycles_note": "cycles = latency x 1 GHz (Loihi is asynchronous; for comparison only)"})
