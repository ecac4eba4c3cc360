"""simulate_conventional(workload, cfg) -> HwReport: one dense inference of the QANN.

The op list is cut into *kernels* (groups of ops that run as one pass over the data):
  - without fusion every op is its own kernel: it reads its inputs from DRAM and writes its
    output back (op-by-op execution);
  - with fusion a GEMM (or embedding gather) absorbs the elementwise/row ops that follow it
    (LayerNorm, GELU, tanh, softmax, residual add) into its epilogue, so the tensors between
    them never leave the chip; row ops are fused only when a full row of accumulators fits the
    output buffer.  q/k/v projections of one input share one read of it;
  - attention="tiled" runs Q.K^T -> softmax -> P.V as one FlashAttention-style kernel: scores
    and probabilities stay on chip (exact two-pass recompute when a score row does not fit);
    attention="naive" materialises the L x L matrix in DRAM.
A kernel's latency is max(array cycles, vector-unit cycles, DRAM bytes / bandwidth): DMA and
compute overlap through the double-buffered SRAMs.  Leakage is static power x latency.

Per-op rows carry their own energy parts (mac, reg, sram, dram, vector, leakage) and the kernel
they ran in; the breakdown is the sum of those parts, so it sums to the total by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from neuro_hw.conventional.config import ConventionalConfig
from neuro_hw.conventional.systolic import ceil_div, compute_cycles, dram_tiling, sram_counts
from neuro_hw.conventional.vector import RECIPES, REQUANT, Recipe
from neuro_hw.report import HwReport
from neuro_hw.tech import TechTable, get_tech
from neuro_hw.workload import OP_KINDS, SYNAPTIC_KINDS, Op, Workload

GEMM_KINDS = SYNAPTIC_KINDS   # the GEMM-like ops are the synaptic ones
VECTOR_KINDS = ("softmax", "layernorm", "gelu", "tanh", "add")
ROW_KINDS = ("softmax", "layernorm")
PARTS = ("mac", "reg", "sram", "dram", "vector", "leakage")


@dataclass
class _Cost:
    """Energy parts (pJ) and counts of one op."""

    op: Op
    kernel: str = ""
    parts: dict = field(default_factory=lambda: {p: 0.0 for p in PARTS})
    array_cycles: float = 0.0
    vector_ops: float = 0.0
    dram_bytes: float = 0.0
    macs: int = 0
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class _Model:
    """The accelerator's unit costs for one config (a small helper, not a framework)."""

    def __init__(self, cfg: ConventionalConfig, tech: TechTable, policy=None, weight_bytes: float = 0.0):
        self.cfg, self.tech = cfg, tech
        # Memory policy (neuro_hw.policy).  None: the op-by-op model without a policy (every weight
        # and every kernel output through DRAM at every inference).
        self.policy = policy
        cap_w = cfg.weight_sram_bytes   # resident weights are not double-buffered
        if policy is None or policy.weights == "streamed" or weight_bytes <= 0:
            self.w_spill = 1.0 if (policy is None or policy.weights == "streamed") else 0.0
        else:
            self.w_spill = max(0.0, weight_bytes - cap_w) / weight_bytes
        self.weight_bytes = weight_bytes
        self.act_onchip = policy is not None and policy.activations == "on-chip"
        self.R, self.C = cfg.array_rows, cfg.array_cols
        self.caps = {w: cfg.usable_bytes(w) for w in ("input", "weight", "output")}
        self.vb, self.acc = cfg.vector_bits, cfg.acc_bits
        self._memo: dict = {}

    def unit(self, fn: str, *args) -> float:
        """tech.<fn>(*args), memoised (the table interpolates; a workload asks the same few)."""
        key = (fn, args)
        if key not in self._memo:
            self._memo[key] = getattr(self.tech, fn)(*args)
        return self._memo[key]

    def recipe_pj(self, recipe: Recipe) -> float:
        key = ("recipe", recipe)
        if key not in self._memo:
            self._memo[key] = recipe.energy_pj(self.tech, self.vb, self.acc)
        return self._memo[key]

    def sram_rd(self, which: str, n_elems: float, bits: int) -> float:
        return n_elems * self.unit("sram_read_pj", self.caps[which], bits) if n_elems else 0.0

    def sram_wr(self, which: str, n_elems: float, bits: int) -> float:
        return n_elems * self.unit("sram_write_pj", self.caps[which], bits) if n_elems else 0.0

    def dram(self, c: _Cost, n_bytes: float, which: str, read: bool) -> None:
        """Charge a DRAM transfer and the SRAM write (fill) or read (drain) on chip."""
        if n_bytes <= 0:
            return
        c.dram_bytes += n_bytes
        c.parts["dram"] += self.tech.dram_pj(8 * n_bytes)
        # A transfer of B bytes is B*8 bits through the SRAM port; energy is linear in width.
        pj = self.unit("sram_write_pj" if read else "sram_read_pj", self.caps[which], 8)
        c.parts["sram"] += n_bytes * pj

    def act_dram(self, n_bytes: float, boundary: bool = False) -> bool:
        """Does an activation tensor of n_bytes go through DRAM?  At the chip boundary (network
        input / output) always; otherwise unless the policy keeps activations on chip and the
        tensor fits the (usable) input buffer, where the next kernel reads it."""
        return boundary or not self.act_onchip or n_bytes > self.caps["input"]

    def handoff(self, c: _Cost, n_elems: float, bits: int) -> None:
        """An output kept on chip: read from the output buffer, written into the input buffer."""
        c.parts["sram"] += self.sram_rd("output", n_elems, bits) + self.sram_wr("input", n_elems, bits)

    def vector(self, c: _Cost, recipe: Recipe, n: float) -> None:
        c.parts["vector"] += n * self.recipe_pj(recipe)
        c.vector_ops += n * recipe.ops


def _gemm_bits(op: Op) -> tuple[int, int]:
    """(bits of A, bits of B) of a GEMM-like op: B is the weight, or the second activation."""
    if op.kind == "matmul_act":
        each = op.extra.get("a_bits_each") or [op.a_bits, op.a_bits]
        return int(each[0] or 32), int(each[1] or 32)
    return int(op.a_bits or 32), int(op.w_bits or 32)


def _in_bits(op: Op, vb: int) -> int:
    """Bits at which `op` wants its (first) input."""
    if op.kind in GEMM_KINDS:
        if op.kind == "matmul_act":
            return max(_gemm_bits(op))
        return _gemm_bits(op)[0]
    return vb


def _rows_width(op: Op) -> tuple[int, int]:
    if "rows" in op.extra and "width" in op.extra:
        return int(op.extra["rows"]), int(op.extra["width"])
    w = int(op.out_shape[-1]) if op.out_shape else 1
    return max(1, op.out_elems // max(1, w)), w


def _is_attention(ops: list[Op], i: int) -> bool:
    if i + 2 >= len(ops):
        return False
    a, s, b = ops[i], ops[i + 1], ops[i + 2]
    return (a.kind == "matmul_act" and s.kind == "softmax" and b.kind == "matmul_act"
            and tuple(s.in_shape) == tuple(a.out_shape) and a.gemm[0] == b.gemm[0]
            and a.gemm[3] == b.gemm[2])


def plan_kernels(ops: list[Op], cfg: ConventionalConfig) -> list[tuple[str, list[int]]]:
    """Cut the op list into kernels: ("attention" | "fused" | "single", op indices)."""
    out_cap = cfg.usable_bytes("output")
    kernels, i, n = [], 0, len(ops)
    while i < n:
        op = ops[i]
        if cfg.attention == "tiled" and _is_attention(ops, i):
            kernels.append(("attention", [i, i + 1, i + 2]))
            i += 3
            continue
        if cfg.fusion and op.kind in GEMM_KINDS + ("embed",):
            g, j = [i], i + 1
            while j < n and ops[j].kind in VECTOR_KINDS and ops[j].out_elems == op.out_elems:
                if cfg.attention == "tiled" and _is_attention(ops, j):
                    break
                if ops[j].kind in ROW_KINDS:
                    rows, width = _rows_width(ops[j])
                    if width * cfg.acc_bits // 8 * min(rows, cfg.array_rows) > out_cap:
                        break
                g.append(j)
                j += 1
            kernels.append(("fused" if len(g) > 1 else "single", g))
            i = j
            continue
        kernels.append(("single", [i]))
        i += 1
    return kernels


def _qkv_shares_input(ops: list[Op], i: int, cfg: ConventionalConfig) -> bool:
    """Fusion: a linear right after a linear of the same parent module and input shape (separate
    q/k/v projections) reads the input the previous one left in the input SRAM."""
    if not cfg.fusion or i == 0:
        return False
    a, b = ops[i - 1], ops[i]
    if a.kind != "linear" or b.kind != "linear" or tuple(a.in_shape) != tuple(b.in_shape):
        return False
    if a.name.rsplit(".", 1)[0] != b.name.rsplit(".", 1)[0]:
        return False
    _, M, K, _ = b.gemm
    return M * K * _gemm_bits(b)[0] / 8 <= cfg.usable_bytes("input")


def _gemm(m: _Model, c: _Cost, *, a_from_dram: bool, b_from_dram: bool | float, recompute: bool = False) -> None:
    """Array work of a GEMM op and the DRAM reads of its operands (`recompute`: a second pass that
    costs energy and time but adds no useful MACs).  b_from_dram may be a fraction: the spilled
    share of resident weights."""
    op, cfg = c.op, m.cfg
    batch, M, K, N = (int(x) for x in op.gemm)
    ab, bb = _gemm_bits(op)
    a_tr, b_tr, mt, nt, sched, rra, rrb = dram_tiling(M, K, N, ab, bb, m.acc, m.caps["input"],
                                                       m.caps["weight"], m.caps["output"], m.R, m.C)
    s = sram_counts(M, K, N, m.R, m.C, cfg.dataflow, ceil_div(M, mt))
    macs = batch * M * K * N
    c.macs += 0 if recompute else macs
    c.array_cycles += batch * compute_cycles(M, K, N, m.R, m.C, cfg.dataflow)
    c.parts["mac"] += macs * m.unit("mac_pj", bb, ab, m.acc)
    reg = lambda bits: m.unit("reg_pj", bits)                           # noqa: E731
    hop = reg(ab) + (reg(m.acc) if cfg.dataflow == "ws" else reg(bb))
    load = s.b_reads * reg(bb) if cfg.dataflow == "ws" else M * N * reg(m.acc)
    c.parts["reg"] += batch * (M * K * N * hop + load * (m.R + 1) / 2)
    c.parts["sram"] += batch * (
        m.sram_rd("input", s.a_reads, ab) + m.sram_rd("weight", s.b_reads, bb)
        + m.sram_wr("output", s.c_writes, m.acc) + m.sram_rd("output", s.c_reads, m.acc)
        + m.sram_rd("output", M * N, m.acc))           # drain to the epilogue
    if op.kind == "conv" and op.in_elems and op.in_elems < M * K:
        a_tr *= op.in_elems / (M * K)                   # im2col expands on chip
    if a_from_dram:
        m.dram(c, batch * a_tr, "input", read=True)
    if b_from_dram:
        m.dram(c, batch * b_tr * float(b_from_dram), "weight", read=True)
    c.extra.update(schedule=sched, m_tile=mt, n_tile=nt, a_rereads=rra, b_rereads=rrb)
    if op.extra.get("bias", False):
        m.vector(c, Recipe(int_add=1), batch * M * N)


def _vector_op(m: _Model, c: _Cost, requant: bool) -> None:
    op = c.op
    if op.kind == "add":
        rows, width = 1, op.out_elems
    else:
        rows, width = _rows_width(op)
    per_el, per_row = RECIPES[op.kind]
    m.vector(c, per_el, rows * width)
    m.vector(c, per_row, rows)
    if requant:
        m.vector(c, REQUANT, rows * width)


def _out_bits(ops: list[Op], i: int, vb: int) -> int:
    """Bits at which op i's output is stored: what the next op reads (an explicit
    extra["out_bits"] wins; the last op's output is kept at the vector unit's precision)."""
    if "out_bits" in ops[i].extra:
        return int(ops[i].extra["out_bits"])
    return _in_bits(ops[i + 1], vb) if i + 1 < len(ops) else vb


def _feeds_gemm(ops: list[Op], i: int) -> bool:
    return i + 1 < len(ops) and ops[i + 1].kind in GEMM_KINDS


def _act_bytes(op: Op, operand: int) -> float:
    """Bytes of a GEMM op's activation operand (0: A, 1: B of a matmul_act)."""
    batch, M, K, N = (int(x) for x in op.gemm)
    ab, bb = _gemm_bits(op)
    if operand == 0:
        return (op.in_elems if op.kind == "conv" and op.in_elems else batch * M * K) * ab / 8
    return batch * K * N * bb / 8


def _weights_from_dram(m: _Model, op: Op, first: bool) -> bool | float:
    """B operand traffic: a weight's spilled share, or whether a matmul_act's B comes from DRAM
    (always for a decoder's KV cache: state kept between calls lives in DRAM, see _kv_cache_terms)."""
    if op.kind == "matmul_act":
        return bool(op.extra.get("kv_cache")) or m.act_dram(_act_bytes(op, 1), first)
    return m.w_spill


def _run_kernel(m: _Model, ops: list[Op], kind: str, idx: list[int], first: bool = True,
                final: bool = True) -> tuple[list[_Cost], float]:
    """Cost of one kernel; returns its op costs and its latency in cycles.  first / final: the
    kernel reads the network's input / writes the network's output (crossing the chip boundary)."""
    vb = m.vb
    costs = [_Cost(ops[i], kernel=ops[idx[0]].name) for i in idx]
    last = idx[-1]
    if kind == "attention":
        qk, sm, av = costs
        qa, qb = m.act_dram(_act_bytes(qk.op, 0), first), _weights_from_dram(m, qk.op, first)
        _gemm(m, qk, a_from_dram=qa, b_from_dram=qb)
        rows, width = _rows_width(sm.op)
        fits = width * m.acc // 8 * min(rows, m.R) <= m.caps["output"]
        if not fits:     # exact softmax needs the row max and sum first: recompute Q.K^T
            _gemm(m, qk, a_from_dram=qa, b_from_dram=qb, recompute=True)
            qk.notes.append("score row does not fit on chip: two-pass (recomputed) exact softmax")
        _vector_op(m, sm, requant=True)
        sm.parts["sram"] += m.sram_wr("input", sm.op.out_elems, _gemm_bits(av.op)[0])
        _gemm(m, av, a_from_dram=False, b_from_dram=_weights_from_dram(m, av.op, first))
        ob = _out_bits(ops, last, vb)
        if _feeds_gemm(ops, last):
            m.vector(av, REQUANT, av.op.out_elems)
        if m.act_dram(av.op.out_elems * ob / 8, final):
            m.dram(av, av.op.out_elems * ob / 8, "output", read=False)
        else:
            m.handoff(av, av.op.out_elems, ob)
        qk.extra["online_softmax"] = "single pass" if fits else "two pass"
    else:
        head = costs[0]
        op = head.op
        if op.kind in GEMM_KINDS:
            _gemm(m, head, a_from_dram=(not _qkv_shares_input(ops, idx[0], m.cfg)
                                        and m.act_dram(_act_bytes(op, 0), first)),
                  b_from_dram=_weights_from_dram(m, op, first))
        elif op.kind == "embed":
            lookups = int(op.extra.get("lookups", 1))
            width = int(op.extra.get("width", op.out_elems))
            table = lookups * width * (op.w_bits or 32) / 8   # embedding rows: weights
            m.dram(head, table * m.w_spill, "input", read=True)
            head.parts["sram"] += m.sram_rd("weight", lookups * width * (1 - m.w_spill), op.w_bits or 32)
            m.vector(head, REQUANT, op.out_elems)       # dequantise the table entries
        elif op.kind in VECTOR_KINDS:
            in_el = op.in_elems or op.out_elems
            if m.act_dram(in_el * vb / 8, first):
                m.dram(head, in_el * vb / 8, "output", read=True)
            head.parts["sram"] += m.sram_rd("output", in_el, vb)
        else:
            raise ValueError(f"op {op.name!r}: kind {op.kind!r} not supported; known: {', '.join(OP_KINDS)}")
        if op.kind in VECTOR_KINDS:
            _vector_op(m, head, requant=_feeds_gemm(ops, idx[0]) and len(idx) == 1)
        for pos, c in enumerate(costs[1:], start=1):
            i = idx[pos]
            if c.op.kind == "add":     # the residual operand: from DRAM unless kept on chip
                if m.act_dram(c.op.out_elems * vb / 8):
                    m.dram(c, c.op.out_elems * vb / 8, "output", read=True)
                c.parts["sram"] += m.sram_rd("output", c.op.out_elems, vb)
            _vector_op(m, c, requant=_feeds_gemm(ops, i) and i == last)
            c.parts["reg"] += m.unit("reg_pj", vb) * c.op.out_elems      # pipeline hand-off
            if c.op.kind == "add" and i != last:                       # residual stream persists
                if m.act_dram(c.op.out_elems * vb / 8):
                    m.dram(c, c.op.out_elems * vb / 8, "output", read=False)
                    c.extra["residual_written_back"] = True     # a later add reads it
                else:
                    c.parts["sram"] += m.sram_wr("input", c.op.out_elems, vb)
                    c.extra["residual_kept_on_chip"] = True
        tail = costs[-1]
        ob = _out_bits(ops, last, vb)
        if tail.op.kind in GEMM_KINDS and _feeds_gemm(ops, last):
            m.vector(tail, REQUANT, tail.op.out_elems)
        tail.parts["sram"] += m.sram_wr("output", tail.op.out_elems, ob)    # staged for the DMA
        if m.act_dram(tail.op.out_elems * ob / 8, final):
            m.dram(tail, tail.op.out_elems * ob / 8, "output", read=False)
        else:
            m.handoff(tail, tail.op.out_elems, ob)
    array = sum(c.array_cycles for c in costs)
    vec = sum(c.vector_ops for c in costs) / m.cfg.vector_lanes
    dram = sum(c.dram_bytes for c in costs) / m.cfg.dram_bytes_per_cycle
    return costs, max(array, vec, dram, 1.0)


def static_power_w(cfg: ConventionalConfig, tech: TechTable, weight_sram_used: float | None = None) -> float:
    """SRAM leakage of the buffers + logic leakage of the array and the vector unit.
    weight_sram_used: bytes of weight SRAM powered (power gating of the banks that hold no resident
    weights); None: all of it."""
    w = cfg.weight_sram_bytes if weight_sram_used is None else min(cfg.weight_sram_bytes, weight_sram_used)
    sram = tech.sram_leak_w(cfg.input_sram_bytes + w + cfg.output_sram_bytes)
    # A vector lane (fp16 FMA + exp/div sequencing) ~ 4 8x8 MACs of area: an estimate.
    logic_mm2 = (cfg.array_rows * cfg.array_cols + 4 * cfg.vector_lanes) * tech.mac_area_mm2(8, 8)
    return sram + tech.logic_leak_w(logic_mm2)


def weight_bytes(workload: Workload) -> float:
    """Bytes of stored weights (GEMM weights and embedding tables) at their bit widths."""
    return sum(o.params * (o.w_bits or 32) / 8 for o in workload.ops if o.kind != "matmul_act")


def simulate_conventional(workload: Workload, cfg: ConventionalConfig | None = None, *,
                          policy=None) -> HwReport:
    """Energy, latency and per-op costs of one inference of `workload` on the accelerator.

    policy: a `neuro_hw.MemoryPolicy`; resident weights stay in the weight SRAM as far as they fit
    (the spilled share streams from DRAM at every inference), intermediate activations stay in
    the input buffer where they fit, power gating leaves the weight SRAM banks without resident
    weights dark.  None: no policy, the op-by-op model (every weight and every kernel output
    through DRAM at every inference, all buffers leaking)."""
    cfg = cfg if cfg is not None else ConventionalConfig.default()
    tech = get_tech(cfg.tech)
    wbytes = weight_bytes(workload)
    m = _Model(cfg, tech, policy, wbytes)
    ops = list(workload.ops)
    for o in ops:
        if o.kind in GEMM_KINDS and not o.gemm:
            raise ValueError(f"op {o.name!r} of kind {o.kind!r} has no gemm shape")
    gated = (policy is not None and policy.power_gating and policy.weights == "resident"
             and m.w_spill == 0.0)
    p_static = static_power_w(cfg, tech, wbytes if gated else None) if cfg.leakage else 0.0
    rows, total_cycles = [], 0.0
    breakdown = {p: 0.0 for p in PARTS}
    kernels = plan_kernels(ops, cfg)
    for n_k, (kind, idx) in enumerate(kernels):
        costs, cycles = _run_kernel(m, ops, kind, idx, first=n_k == 0, final=n_k == len(kernels) - 1)
        total_cycles += cycles
        leak = p_static * cycles / cfg.clock_hz * 1e12
        costs[0].parts["leakage"] += leak
        for pos, c in enumerate(costs):
            for p in PARTS:
                breakdown[p] += c.parts[p]
            rows.append({"name": c.op.name, "kind": c.op.kind, "kernel": c.kernel, "kernel_kind": kind,
                         "energy_pj": sum(c.parts.values()), "cycles": cycles if pos == 0 else 0.0,
                         "array_cycles": c.array_cycles, "vector_cycles": c.vector_ops / cfg.vector_lanes,
                         "macs": c.macs, "dram_bytes": c.dram_bytes,
                         "parts_pj": dict(c.parts), **c.extra,
                         **({"notes": c.notes} if c.notes else {})})
    energy = sum(breakdown.values())
    macs = sum(r["macs"] for r in rows)
    peak = cfg.array_rows * cfg.array_cols * total_cycles
    notes = sorted({n for r in rows for n in r.get("notes", [])})
    if policy is not None and policy.weights == "resident" and m.w_spill > 0:
        notes.append(f"weights {wbytes / 1024:.1f} KiB exceed the {cfg.weight_sram_kib:g} KiB weight SRAM: "
                     f"{m.w_spill:.1%} spill and stream from DRAM at every inference")
    return HwReport(
        accelerator="conventional", energy_pj=energy, breakdown_pj=breakdown, cycles=total_cycles,
        latency_s=total_cycles / cfg.clock_hz, per_op=rows, config=cfg.to_dict(),
        notes=notes,
        meta={"workload": workload.name, "tech_table": tech.to_dict(), "macs": macs,
              "array_utilization": macs / peak if peak else 0.0,
              "dram_bytes": sum(r["dram_bytes"] for r in rows), "static_power_w": p_static,
              "kernels": sum(1 for r in rows if r["cycles"] > 0),
              "weight_bytes": wbytes, "weight_spill_fraction": m.w_spill,
              **_kv_cache_terms(workload, rows, m)})


def _kv_cache_terms(workload: Workload, rows: list[dict], m: _Model) -> dict:
    """{"kv_cache": ...} for a decoder call (ops with extra["kv_cache"], see
    neuro_hw.workload.extract_decoder_call), else {}.  Itemised, not charged again: the cached keys
    and values are the B operands that Q.K^T and P.V read from DRAM (b_rereads times, twice when
    the softmax is two-pass), and the new ones leave the chip in the qkv projection's output."""
    row_of = {r["name"]: r for r in rows}
    rd = wr = 0.0
    for o in workload.ops:
        kv = o.extra.get("kv_cache")
        if not kv:
            continue
        r = row_of.get(o.name, {})
        passes = 2 if r.get("online_softmax") == "two pass" else 1
        rd += kv["read_elems"] * kv["bits"] / 8 * int(r.get("b_rereads", 1)) * passes
        wr += kv["write_elems"] * kv["bits"] / 8
    if not rd and not wr and not any(o.extra.get("kv_cache") for o in workload.ops):
        return {}
    fill = m.tech.dram_pj(8) + m.unit("sram_write_pj", m.caps["weight"], 8)    # per byte in
    drain = m.tech.dram_pj(8) + m.unit("sram_read_pj", m.caps["output"], 8)    # per byte out
    return {"kv_cache": {"read_bytes": rd, "write_bytes": wr, "read_pj": rd * fill,
                         "write_pj": wr * drain, "dram_read_pj": m.tech.dram_pj(8 * rd)}}
