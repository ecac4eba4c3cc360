"""Report v3: any list of accelerators, ratios against named baselines, verdict sentences, old
reports still read, and eval/ free of import cycles."""
from __future__ import annotations

import ast
import copy
import json
import math
from pathlib import Path

import pytest
from report_fixtures import hw, synthetic_results

from eval import compare, load_report, load_results, report_from_results, write_report
from eval.results import REPORT_SCHEMA
from eval.validate import validate_report
from eval.verdict import verdict

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent


def _with_accelerators(results, extra: dict[str, tuple[bool, float]]):
    """The synthetic results with more accelerators: name -> (needs_trace, energy scale)."""
    r = copy.deepcopy(results)
    for name, (traced, scale) in extra.items():
        r.options["hardware"][name] = {"requested": name, "config": {"name": name}, "kind": "test",
                                       "needs_trace": traced}
        r.options["accelerators"].append(name)
        for t in r.tasks:
            for i, v in enumerate(t.variants):
                h = hw("neuromorphic" if traced else "conventional", scale / (i + 1))
                h.accelerator = name
                v.hw[name] = h
    return r


def test_v2_report_still_loads_and_rerenders_as_v3(tmp_path):
    """A report.json written by the version-2 code (two fixed accelerators) is read as v3."""
    src = FIXTURES / "report_v2.json"
    assert json.loads(src.read_text())["schema"] == "snmfm.report/2"
    results = load_results(src)
    assert results.accelerators == ["neuromorphic", "conventional"]
    assert results.baselines == ["conventional"] and results.needs_trace("neuromorphic")
    assert all(v.coding == "binary" for t in results.tasks for v in t.variants)
    rep = report_from_results(src, tmp_path / "again")
    d = json.loads((tmp_path / "again" / "report.json").read_text())
    assert d["schema"] == REPORT_SCHEMA == "snmfm.report/3"
    validate_report(d)
    old = json.loads(src.read_text())["comparison"]["tasks"][0]
    new = rep.comparison["tasks"][0]
    assert math.isclose(new["ratios"]["energy"]["neuromorphic"]["conventional"], old["ratios"]["energy"])
    assert load_results(tmp_path / "again") == results


def test_v1_report_reads_as_v2_without_studies(tmp_path):
    d = json.loads((FIXTURES / "report_v2.json").read_text())
    d["schema"] = "snmfm.report/1"
    del d["studies"]
    (tmp_path / "report.json").write_text(json.dumps(d))
    assert load_report(tmp_path).studies == []


def test_v3_schema_rejects_a_report_missing_the_verdict():
    d = compare(synthetic_results()).to_dict()
    validate_report(d)
    del d["comparison"]["tasks"][0]["verdict"]
    with pytest.raises(ValueError, match="verdict"):
        validate_report(d)


def test_more_accelerators_appear_everywhere_with_no_other_change(tmp_path):
    """Two more accelerators (one SNN-driven, one dense: a second baseline) reach the comparison,
    every ratio table, the summary, the iso-accuracy view, the plots and the schema-valid JSON."""
    r = _with_accelerators(synthetic_results(), {"chip-x": (True, 0.5), "dense-y": (False, 2.0)})
    rep = compare(r)
    c = rep.comparison
    assert c["accelerators"] == ["neuromorphic", "conventional", "chip-x", "dense-y"]
    assert c["baselines"] == ["conventional", "dense-y"]
    t, res = c["tasks"][0], r.tasks[0].variant()
    assert list(t["accelerators"]) == c["accelerators"]
    e = {a: res.hw[a].energy_pj for a in c["accelerators"]}
    for a in ("neuromorphic", "chip-x"):
        for b in ("conventional", "dense-y"):
            assert math.isclose(t["ratios"]["energy"][a][b], e[b] / e[a])
    assert math.isclose(t["ratios"]["energy"]["conventional"]["dense-y"], e["dense-y"] / e["conventional"])
    assert "conventional" not in t["ratios"]["energy"]["conventional"]  # never against itself
    assert set(t["iso_accuracy"]["choices"]) == set(c["accelerators"])
    assert {row_a for row in t["per_op"] for row_a in row["energy_pj"]} == set(c["accelerators"])
    # chip-x is the cheapest spiking accelerator: the verdict names it
    assert "(chip-x, binary, W8A8)" in t["verdict"]["text"]
    out = write_report(rep, tmp_path / "rep")
    validate_report(json.loads((out / "report.json").read_text()))
    md = (out / "report.md").read_text()
    assert "| Energy vs conventional | Energy vs dense-y |" in md
    assert md.count("| synthetic-classify | chip-x |") == 2  # summary and iso-accuracy rows
    assert md.count("| synthetic-classify | W8A4 | binary | chip-x |") == 1  # every variant
    assert "| Component | neuromorphic | conventional | chip-x | dense-y |" in md
    assert load_results(out) == r


def test_verdict_sentence_from_known_numbers():
    spiking = {"neuromorphic-ideal", "loihi2"}
    choices = {
        "loihi2": {"label": "W8A4-graded", "coding": "graded", "accuracy": 0.95, "energy_per_unit_pj": 119e6,
                   "within_tolerance": True},
        "neuromorphic-ideal": {"label": "W8A8", "coding": "binary", "accuracy": 0.80,
                               "energy_per_unit_pj": 1e6, "within_tolerance": False},
        "conventional": {"label": "W8A8", "coding": "binary", "accuracy": 0.96, "energy_per_unit_pj": 3.2e6,
                         "within_tolerance": True},
    }
    v = verdict("vision-digits", {"tolerance": 0.01, "choices": choices}, spiking.__contains__)
    assert v["winner"] == "dense" and math.isclose(v["ratio"], 119 / 3.2)
    assert v["text"] == ("On vision-digits at iso-accuracy (within 1 point of FP32 accuracy) the conventional "
                         "accelerator (W8A8) needs 37.2× less energy per inference than the best spiking "
                         "configuration (loihi2, graded, W8A4): 119 µJ against 3.2 µJ.")
    choices["loihi2"]["energy_per_unit_pj"] = 0.8e6
    v = verdict("stream", {"tolerance": 0.01, "choices": choices}, spiking.__contains__, unit="token")
    assert v["winner"] == "spiking" and math.isclose(v["ratio"], 0.25)
    assert "the best spiking configuration (loihi2, graded, W8A4) needs 4× less energy per token than the " \
           "conventional accelerator (W8A8)" in v["text"]
    choices["loihi2"]["within_tolerance"] = False
    v = verdict("t", {"tolerance": 0.01, "choices": choices}, spiking.__contains__)
    assert v["winner"] is None and v["ratio"] is None and "no spiking configuration" in v["text"]


def _eval_import_graph() -> dict[str, set[str]]:
    mods = {}
    for p in (ROOT / "eval").rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph = {}
    for m, p in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):  # function-level imports count too
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[m] = {d for d in deps if d in mods and d != m}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> imported modules), or None."""
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state:
                found = visit(d, path + [d])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_no_import_cycles_in_eval():
    graph = _eval_import_graph()
    assert {"eval.measure", "eval.pipeline", "eval.study_runs", "eval.cascade_study"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in eval/: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_planted_cycle():
    graph = _eval_import_graph()
    graph["eval.fmt"] = graph["eval.fmt"] | {"eval.summary"}  # summary imports fmt
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and {"eval.fmt", "eval.summary"} <= set(cycle)


def test_run_checks_its_accelerators_before_any_work(tmp_path):
    from click.testing import CliRunner

    from cli import main
    from eval.accelerators import parse_hw, registered
    assert parse_hw(None) == registered() and len(registered()) >= 2
    assert parse_hw("conventional, neuromorphic") == ["conventional", "neuromorphic"]
    with pytest.raises(ValueError, match="given twice"):
        parse_hw("conventional,conventional")
    with pytest.raises(ValueError, match="empty name"):
        parse_hw("conventional,,neuromorphic")
    r = CliRunner().invoke(main, ["run", "--tasks", "medical-wdbc", "--hw", "no-such-chip",
                                  "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "no-such-chip" in r.output, r.output
    assert not (tmp_path / "r").exists()
