"""Cross-checks of the conventional accelerator against independent simulators.

- SCALE-Sim v3 (PyPI `scalesim`; Samajdar et al., ISPASS 2020): compute cycles and SRAM traffic
  (ifmap reads, filter reads, ofmap writes) of one GEMM on the same array, dataflow and buffers.
- ZigZag (PyPI `zigzag-dse`; Mei et al., IEEE TC 2021): energy of one GEMM on an architecture
  generated from the same config and the same technology table (MAC, register, SRAM and DRAM
  costs per bit), with ZigZag's own mapping search (minimum energy).

Both tools write files; they run in temporary directories.  `TRANSFORMER_GEMMS` are the GEMMs of
real transformer layers at sequence length 128 (ViT at its 197 tokens).

SCALE-Sim 3.0.0 converts a 1-element array to int (`int(max(list_of_arrays))`), which NumPy >= 2.3
rejects; `run_scalesim` works around it by having the write buffer return a flat array (the same
numbers), instead of requiring numpy < 2.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from neuro_hw.conventional.config import ConventionalConfig
from neuro_hw.conventional.systolic import ceil_div, compute_cycles, dram_tiling, sram_counts
from neuro_hw.tech import get_tech

# (label, M, K, N): M tokens x K input features -> N output features; attention products per head.
TRANSFORMER_GEMMS: tuple[tuple[str, int, int, int], ...] = (
    ("MiniLM-L6 qkv", 128, 384, 1152),
    ("MiniLM-L6 attn.out", 128, 384, 384),
    ("MiniLM-L6 ffn.in", 128, 384, 1536),
    ("MiniLM-L6 ffn.out", 128, 1536, 384),
    ("MiniLM-L6 Q.K^T/head", 128, 32, 128),
    ("MiniLM-L6 P.V/head", 128, 128, 32),
    ("BERT-base Q.K^T/head", 128, 64, 128),
    ("BERT-base P.V/head", 128, 128, 64),
    ("ViT-Ti/16 qkv", 197, 192, 576),
    ("ViT-Ti/16 attn.out", 197, 192, 192),
    ("ViT-Ti/16 ffn.in", 197, 192, 768),
    ("ViT-Ti/16 ffn.out", 197, 768, 192),
)
# A quick subset for tests (small enough for seconds of SCALE-Sim).
QUICK_GEMMS = (TRANSFORMER_GEMMS[4], TRANSFORMER_GEMMS[5], ("tiny linear", 64, 96, 80))


def crosscheck_config(**overrides) -> ConventionalConfig:
    """The architecture both tools are given: a 32x32 array (SCALE-Sim runs ~4x faster than on
    16x16 for the same GEMM), no double buffering (SCALE-Sim's buffer sizes are the whole SRAM)."""
    base = dict(name="crosscheck-32x32", array_rows=32, array_cols=32, input_sram_kib=64,
                weight_sram_kib=64, output_sram_kib=64, double_buffer=False, fusion=False,
                leakage=False)
    base.update(overrides)
    return ConventionalConfig(**base)


# --------------------------------------------------------------------------------------- ours ---
def ours_scalesim_counts(M: int, K: int, N: int, cfg: ConventionalConfig, bits: int = 8) -> dict:
    """Our cycles and SRAM accesses for one GEMM, in SCALE-Sim's terms."""
    R, C = cfg.array_rows, cfg.array_cols
    _, _, mt, _, _, _, _ = dram_tiling(M, K, N, bits, bits, cfg.acc_bits, cfg.usable_bytes("input"),
                                       cfg.usable_bytes("weight"), cfg.usable_bytes("output"), R, C)
    s = sram_counts(M, K, N, R, C, cfg.dataflow, ceil_div(M, mt))
    return {"cycles": compute_cycles(M, K, N, R, C, cfg.dataflow), "ifmap_reads": s.a_reads,
            "filter_reads": s.b_reads, "ofmap_writes": s.c_writes}


# ---------------------------------------------------------------------------------- SCALE-Sim ---
def have_scalesim() -> bool:
    try:
        import scalesim.scale_sim  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False
    return True


_SCALESIM_CFG = """[general]
run_name = xc

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {R}
ArrayWidth = {C}
IfmapSramSzkB = {ifmap}
FilterSramSzkB = {filt}
OfmapSramSzkB = {ofmap}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bw}
Dataflow = {df}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


@contextlib.contextmanager
def _scalesim_numpy2_fix():
    import numpy as np
    from scalesim.memory import write_buffer as wb
    orig = wb.write_buffer.service_writes

    def service_writes(self, *args, **kwargs):
        return np.asarray(orig(self, *args, **kwargs)).reshape(-1)

    wb.write_buffer.service_writes = service_writes
    try:
        yield
    finally:
        wb.write_buffer.service_writes = orig


def _read_csv_row(path: Path) -> dict:
    head, row = path.read_text().strip().splitlines()[:2]
    keys = [k.strip() for k in head.split(",") if k.strip()]
    vals = [v.strip() for v in row.split(",") if v.strip()]
    return dict(zip(keys, (float(v) for v in vals)))


def run_scalesim(M: int, K: int, N: int, cfg: ConventionalConfig) -> dict:
    """SCALE-Sim v3 on one GEMM (bits are irrelevant to it: word size 1 byte)."""
    from scalesim.scale_sim import scalesim
    with tempfile.TemporaryDirectory(prefix="snmfm_scalesim_") as d:
        d = Path(d)
        kib = {w: max(1, int(round(cfg.usable_bytes(w) / 1024))) for w in ("input", "weight", "output")}
        (d / "arch.cfg").write_text(_SCALESIM_CFG.format(
            R=cfg.array_rows, C=cfg.array_cols, ifmap=kib["input"], filt=kib["weight"], ofmap=kib["output"],
            bw=int(cfg.dram_bytes_per_cycle), df=cfg.dataflow))
        (d / "topo.csv").write_text(f"Layer, M, N, K,\ng, {M}, {N}, {K},\n")
        (d / "layout.csv").write_text("Layer name,\n")
        with _scalesim_numpy2_fix(), contextlib.redirect_stdout(io.StringIO()):
            s = scalesim(save_disk_space=True, verbose=False, config=str(d / "arch.cfg"),
                         topology=str(d / "topo.csv"), layout=str(d / "layout.csv"), input_type_gemm=True)
            s.run_scale(top_path=str(d / "out"))
        comp = _read_csv_row(next((d / "out").rglob("COMPUTE_REPORT.csv")))
        det = _read_csv_row(next((d / "out").rglob("DETAILED_ACCESS_REPORT.csv")))
    return {"cycles": comp["Total Cycles"], "ifmap_reads": det["SRAM IFMAP Reads"],
            "filter_reads": det["SRAM Filter Reads"], "ofmap_writes": det["SRAM OFMAP Writes"]}


@dataclass
class ScaleSimRow:
    label: str
    M: int
    K: int
    N: int
    ours: dict
    theirs: dict

    def deviation(self, key: str) -> float:
        return (self.ours[key] - self.theirs[key]) / self.theirs[key]

    @property
    def sram_ours(self) -> float:
        return self.ours["ifmap_reads"] + self.ours["filter_reads"] + self.ours["ofmap_writes"]

    @property
    def sram_theirs(self) -> float:
        return self.theirs["ifmap_reads"] + self.theirs["filter_reads"] + self.theirs["ofmap_writes"]

    @property
    def sram_deviation(self) -> float:
        return (self.sram_ours - self.sram_theirs) / self.sram_theirs


def scalesim_crosscheck(shapes=TRANSFORMER_GEMMS, cfg: ConventionalConfig | None = None) -> list[ScaleSimRow]:
    cfg = cfg or crosscheck_config()
    return [ScaleSimRow(label, M, K, N, ours_scalesim_counts(M, K, N, cfg), run_scalesim(M, K, N, cfg))
            for label, M, K, N in shapes]


# ------------------------------------------------------------------------------------- ZigZag ---
def have_zigzag() -> bool:
    try:
        import zigzag.api  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def _zz_port(name: str, kind: str, bw_min: int, bw_max: int, alloc: list[str]) -> dict:
    return {"name": name, "type": kind, "bandwidth_min": bw_min, "bandwidth_max": bw_max,
            "allocation": alloc}


def zigzag_accelerator(cfg: ConventionalConfig, bits: int = 8) -> dict:
    """A ZigZag accelerator matched to `cfg` (weight-stationary): per-PE weight and partial-sum
    registers, per-PE input register, input/weight/output SRAMs of the usable sizes, DRAM.  Every
    cost is our tech table's energy per bit times the port width, so ZigZag and we price each bit
    moved identically; what differs is how many bits each decides to move."""
    tech = get_tech(cfg.tech)
    acc = cfg.acc_bits
    wide = cfg.array_cols * bits     # one array edge per access

    def sram(which: str, operands: list[str], ports: list[dict], bw: int) -> dict:
        cap = cfg.usable_bytes(which)
        return {"size": cap * 8, "r_cost": tech.sram_read_pj(cap, bw), "w_cost": tech.sram_write_pj(cap, bw),
                "area": 0, "latency": 1, "operands": operands, "ports": ports,
                "served_dimensions": ["D1", "D2"]}

    def reg(op: str, size: int, cost: float, served: list[str], low: str, high: str) -> dict:
        return {"size": size, "r_cost": cost / 2, "w_cost": cost / 2, "area": 0, "latency": 1,
                "operands": [op], "served_dimensions": served,
                "ports": [_zz_port("r_port_1", "read", size, size, [f"{op}, {low}"]),
                          _zz_port("w_port_1", "write", size, size, [f"{op}, {high}"])]}

    o_reg = reg("O", acc, tech.reg_pj(acc), [], "tl", "fl")
    o_reg["ports"] = [_zz_port("r_port_1", "read", acc, acc, ["O, tl"]),
                      _zz_port("r_port_2", "read", acc, acc, ["O, th"]),
                      _zz_port("w_port_1", "write", acc, acc, ["O, fh"]),
                      _zz_port("w_port_2", "write", acc, acc, ["O, fl"])]
    dram_bw = int(cfg.dram_bytes_per_cycle * 8)
    return {
        "name": "snmfm_matched",
        "memories": {
            "reg_W": reg("I2", bits, tech.reg_pj(bits), [], "tl", "fh"),
            "reg_I": reg("I1", bits, tech.reg_pj(bits), [], "tl", "fh"),
            "reg_O": o_reg,
            "sram_I": sram("input", ["I1"], [_zz_port("r_port_1", "read", bits, wide, ["I1, tl"]),
                                            _zz_port("w_port_1", "write", bits, wide, ["I1, fh"])], wide),
            "sram_W": sram("weight", ["I2"], [_zz_port("r_port_1", "read", bits, wide, ["I2, tl"]),
                                             _zz_port("w_port_1", "write", bits, wide, ["I2, fh"])], wide),
            "sram_O": sram("output", ["O"], [
                _zz_port("r_port_1", "read", bits, cfg.array_cols * acc, ["O, tl", "O, th"]),
                _zz_port("w_port_1", "write", bits, cfg.array_cols * acc, ["O, fh", "O, fl"])],
                cfg.array_cols * acc),
            "dram": {"size": 10 ** 10, "r_cost": tech.dram_pj(dram_bw), "w_cost": tech.dram_pj(dram_bw),
                     "area": 0, "latency": 1, "operands": ["I1", "I2", "O"],
                     "served_dimensions": ["D1", "D2"],
                     "ports": [_zz_port("rw_port_1", "read_write", bits, dram_bw,
                                        ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"])]},
        },
        "operational_array": {"unit_energy": tech.mac_pj(bits, bits, acc), "unit_area": 1,
                              "dimensions": ["D1", "D2"], "sizes": [cfg.array_cols, cfg.array_rows],
                              "input_precision": [bits, bits]},
    }


def run_zigzag(M: int, K: int, N: int, cfg: ConventionalConfig, bits: int = 8) -> dict:
    """ZigZag's minimum-energy mapping of one GEMM on the matched accelerator: total energy (pJ),
    MAC energy and memory energy per level."""
    import yaml
    from zigzag.api import get_hardware_performance_zigzag
    workload = [{"id": 0, "name": "gemm", "operator_type": "Gemm",
                 "equation": "O[d][k]+=I[d][c]*W[c][k]", "loop_dims": ["D", "C", "K"],
                 "loop_sizes": [M, K, N],
                 "operand_precision": {"I": bits, "W": bits, "O": cfg.acc_bits, "O_final": bits},
                 "operand_source": {"I": 0, "W": 0}}]
    # weight-stationary: output features across the array columns (D1), reduction down the rows (D2).
    mapping = [{"name": "default", "spatial_mapping": {"D1": [f"K, {cfg.array_cols}"],
                                                       "D2": [f"C, {cfg.array_rows}"]},
                "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]
    with tempfile.TemporaryDirectory(prefix="snmfm_zigzag_") as d:
        d = Path(d)
        (d / "acc.yaml").write_text(yaml.safe_dump(zigzag_accelerator(cfg, bits), sort_keys=False))
        (d / "map.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
        (d / "wl.yaml").write_text(yaml.safe_dump(workload, sort_keys=False))
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                energy, _lat, cmes = get_hardware_performance_zigzag(
                    workload=str(d / "wl.yaml"), accelerator=str(d / "acc.yaml"), mapping=str(d / "map.yaml"),
                    opt="energy", dump_folder=str(d / "out"), loma_show_progress_bar=False)
        finally:
            logging.getLogger().setLevel(level)
    cme = cmes[0][1][0][0] if isinstance(cmes[0][1], list) else cmes[0][0]
    per_level = {}
    for op, energies in cme.mem_energy_breakdown.items():
        per_level[str(op)] = [float(e) for e in energies]
    return {"energy_pj": float(energy), "mac_pj": float(cme.mac_energy), "mem_pj": float(cme.mem_energy),
            "per_level_pj": per_level}


def ours_gemm_energy(M: int, K: int, N: int, cfg: ConventionalConfig, bits: int = 8) -> dict:
    """Our energy of the same GEMM as a one-op workload (no bias, no leakage, output written to
    DRAM at `bits`, as ZigZag's O_final precision); the requantising epilogue is left out
    because ZigZag has no such unit."""
    from neuro_hw.conventional.simulate import simulate_conventional
    from neuro_hw.workload import Op, Workload
    op = Op(name="gemm", kind="linear", in_shape=(M, K), out_shape=(M, N), gemm=(1, M, K, N),
            w_bits=bits, a_bits=bits, macs=M * K * N, params=K * N, in_elems=M * K, out_elems=M * N,
            extra={"bias": False, "out_bits": bits})
    r = simulate_conventional(Workload("gemm", [op]), cfg.replace(leakage=False, vector_bits=16))
    return {"energy_pj": r.energy_pj - r.breakdown_pj["vector"], **{k: v for k, v in r.breakdown_pj.items()}}


@dataclass
class ZigZagRow:
    label: str
    M: int
    K: int
    N: int
    ours: dict
    theirs: dict

    @property
    def deviation(self) -> float:
        return (self.ours["energy_pj"] - self.theirs["energy_pj"]) / self.theirs["energy_pj"]


def zigzag_crosscheck(shapes=TRANSFORMER_GEMMS, cfg: ConventionalConfig | None = None) -> list[ZigZagRow]:
    cfg = cfg or crosscheck_config()
    return [ZigZagRow(label, M, K, N, ours_gemm_energy(M, K, N, cfg), run_zigzag(M, K, N, cfg))
            for label, M, K, N in shapes]
