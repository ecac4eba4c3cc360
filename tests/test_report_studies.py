"""Study sections of the report: speculative decoding, cascades, co-optimisation, compression.

The study outputs are synthetic but in the producers' exact formats (tests/study_fixtures.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_fixtures import synthetic_results
from study_fixtures import (
    cascade_output,
    compression_output,
    cooptimize_output,
    speculative_output,
)

from eval import (
    REPORT_SCHEMA,
    compare,
    load_report,
    load_results,
    report_from_results,
    write_report,
)
from eval.plots import PLOTS
from eval.plots_studies import entry_plots
from eval.studies import STUDIES, load_study_file, make_entry, parse_study_names
from eval.validate import validate_report

SOURCE = {"origin": "run", "file": None, "sha256": None, "added_utc": "2025-01-01T00:00:00+00:00",
          "invocation": "pytest"}


def _entries() -> list[dict]:
    return [make_entry("speculative", speculative_output(), SOURCE),
            make_entry("cascade", cascade_output(), SOURCE),
            make_entry("cooptimize", cooptimize_output(), SOURCE),
            make_entry("compression", compression_output(), SOURCE)]


@pytest.fixture(scope="module")
def with_studies(tmp_path_factory):
    entries = _entries()
    out = tmp_path_factory.mktemp("rep") / "report"
    write_report(compare(synthetic_results(), studies=entries), out)
    return entries, out


PNG_STUB = b"\x89PNG\r\n\x1a\n stub"


@pytest.fixture()
def fast_plots(monkeypatch):
    """Stub PNGs with the real plot names (drawing them takes seconds; the first test draws them)."""
    import eval.report
    from eval.plots import PLOTS

    def render(report):
        return {name: PNG_STUB for name in PLOTS} | {name: PNG_STUB for e in report.studies
                                                     for name, _ in entry_plots(e).values()}
    monkeypatch.setattr(eval.report, "render_plots", render)


@pytest.fixture()
def plain_report(tmp_path, fast_plots):
    out = tmp_path / "report"
    write_report(compare(synthetic_results()), out)
    return out


def _write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def _no_temporary_folders(parent) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".")]


def test_study_sections_render_in_markdown_and_html_with_their_plots(with_studies):
    entries, out = with_studies
    md = (out / "report.md").read_text()
    for title in ("## Study: speculative decoding", "## Study: cascades",
                  "## Study: co-optimisation of input, bits and time steps",
                  "## Study: compression (mixed precision and pruning)", "### Structured pruning"):
        assert title in md
    # sections sit between the main comparison and the caveats
    assert md.index("## Where the energy goes") < md.index("## Study: speculative") < md.index("## What is modelled")
    names = [name for e in entries for name, _ in entry_plots(e).values()]
    assert len(names) == 5  # speculative energy + k sweep, cascade, co-optimisation, compression per task
    for name in names:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name}.png)" in md
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(PLOTS) + len(names)
    assert all(r.startswith("data:") for r in re.findall(r'(?:src|href)="([^"]*)"', html))
    assert "Study: cascades" in html and "<script" not in html


def test_speculative_section_names_the_winning_pairing_per_accelerator(with_studies):
    _, out = with_studies
    md = (out / "report.md").read_text()
    # the fixture's distilled SNN draft on the chip beats plain decoding of the conventional target
    assert ("Target on the conventional accelerator: least energy per token with distilled draft on the "
            "neuromorphic accelerator") in md
    assert "Target on the neuromorphic accelerator: least energy per token with plain decoding" in md
    row = next(line for line in md.splitlines() if line.startswith("| distilled | neuromorphic | conventional |"))
    assert "| 0.8× |" in row and "| ★ |" in row  # energy relative to plain on that chip, and the winner mark
    assert "| Acceptance |" in md and "| Wall speed-up |" in md


def test_every_number_comes_from_the_study_output(with_studies):
    _, out = with_studies
    md = (out / "report.md").read_text()
    spec, casc, coopt = speculative_output(), cascade_output(), cooptimize_output()
    assert "21.8 µJ" in md                                   # 21769 nJ/token, plain on conventional
    assert "tiny>small, margin (empirical, tol 0.005)" in md  # the chosen cascade operating point
    assert "3.5%" in md                                      # its escalation rate
    assert "(0.00037%)" in md                                # its self-test share, not rounded to 0
    assert f"snn_examples {casc['members'][0]['snn_examples']}" in md
    assert f"T_values [{', '.join(map(str, coopt['T_values']))}]" in md
    assert f"distill_steps {spec['args']['distill_steps']}" in md and "quick yes" in md
    assert "| size | W4A4 | uniform |" in md and "MACs per inference | 1,192,832 → 780,000" in md
    assert "| Best uniform within |" in md and "The study took 70 s" in md


def test_report_json_with_studies_is_versioned_validates_and_round_trips(with_studies):
    entries, out = with_studies
    d = json.loads((out / "report.json").read_text())
    assert d["schema"] == REPORT_SCHEMA == "snmfm.report/3"
    assert d["studies"]["schema"] == "snmfm.studies/1"
    validate_report(d)
    rep = load_report(out)
    assert rep.studies == json.loads(json.dumps(entries))
    assert load_results(out) == synthetic_results()


def test_study_files_merge_into_a_report_and_stay_on_re_render(plain_report, tmp_path):
    files = [_write(tmp_path / "spec.json", speculative_output()),
             _write(tmp_path / "cascade.json", cascade_output("medical-wdbc")),
             # bench cascade / cooptimize write a list of per-task outputs
             _write(tmp_path / "coopt-results.json", [cooptimize_output("vision-digits"),
                                                      cooptimize_output("vqa-digits")]),
             _write(tmp_path / "compress-results.json", compression_output())]
    rep = report_from_results(plain_report, studies=files)
    assert [(e["kind"], e["key"]) for e in rep.studies] == [
        ("speculative", "code-stdlib"), ("cascade", "medical-wdbc"), ("cooptimize", "vision-digits"),
        ("cooptimize", "vqa-digits"), ("compression", "medical-wdbc+prune")]
    src = rep.studies[1]["source"]
    assert src["origin"] == "file" and src["file"].endswith("cascade.json") and len(src["sha256"]) == 64
    again = report_from_results(plain_report / "report.json")  # no --study: the studies stay
    assert again.studies == rep.studies
    assert "## Study: co-optimisation" in (plain_report / "report.md").read_text()


def test_a_study_of_the_same_kind_and_task_replaces_the_older_one(plain_report, tmp_path):
    report_from_results(plain_report, studies=[_write(tmp_path / "a.json", cascade_output("medical-wdbc", 0.9649)),
                                               _write(tmp_path / "b.json", cascade_output("vision-digits"))])
    newer = _write(tmp_path / "c.json", cascade_output("medical-wdbc", 0.9825))
    rep = report_from_results(plain_report, studies=[newer])
    wdbc = [e for e in rep.studies if e["key"] == "medical-wdbc"]
    assert len(wdbc) == 1 and wdbc[0]["source"]["file"] == newer
    assert {e["key"] for e in rep.studies} == {"medical-wdbc", "vision-digits"}
    assert "98.25%" in (plain_report / "report.md").read_text()


def test_bad_study_files_are_clear_errors_and_leave_the_report_as_it_was(plain_report, tmp_path):
    before = (plain_report / "report.json").read_bytes()
    cases = []
    cases.append((FileNotFoundError, "nope.json", str(tmp_path / "nope.json")))
    (tmp_path / "corrupt.json").write_text('{"rows": [')
    cases.append((ValueError, "not valid JSON", str(tmp_path / "corrupt.json")))
    cases.append((ValueError, "not the output of a study.*a report.json", str(plain_report / "report.json")))
    cases.append((ValueError, "not the output of a study.*speculative: `snmfm speculate --json FILE`",
                  _write(tmp_path / "other.json", {"task": "medical-wdbc", "accuracy": 0.9})))
    broken = cascade_output()
    broken["members"][0]["accuracy"]["test"] = 1.7
    cases.append((ValueError, "not a valid cascade study output at members/0/accuracy/test",
                  _write(tmp_path / "broken.json", broken)))
    no_energy = speculative_output()
    del no_energy["energy"][3]["energy_nj_per_token"]
    cases.append((ValueError, "energy/3", _write(tmp_path / "spec.json", no_energy)))
    cases.append((ValueError, "empty list", _write(tmp_path / "empty.json", [])))
    good = _write(tmp_path / "good.json", cascade_output())
    for exc, match, path in cases:
        with pytest.raises(exc, match=match):
            report_from_results(plain_report, studies=[good, path])  # a good file does not help a bad one
        assert (plain_report / "report.json").read_bytes() == before
        assert _no_temporary_folders(plain_report.parent)


def test_unknown_study_names_are_named_with_the_allowed_ones(tmp_path):
    assert parse_study_names("all") == list(STUDIES) and parse_study_names(None) == []
    assert parse_study_names("cascade, speculative,cascade") == ["cascade", "speculative"]
    with pytest.raises(ValueError, match=r"unknown study 'cascades'; studies: speculative, cascade, "
                                         r"cooptimize, compression \(or all\)"):
        parse_study_names("cascades")
    from eval import run_main
    with pytest.raises(ValueError, match="unknown study 'bogus'"):  # before any work
        run_main(tasks=["medical-wdbc"], studies="bogus", out_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_cli_report_study_and_run_studies_errors_exit_2(plain_report, tmp_path):
    from cli import main
    runner = CliRunner()
    ok = runner.invoke(main, ["report", str(plain_report), "--json", "--study",
                              _write(tmp_path / "c.json", cascade_output()), "--study",
                              _write(tmp_path / "s.json", speculative_output())])
    assert ok.exit_code == 0, ok.output
    assert {e["kind"] for e in load_report(plain_report).studies} == {"cascade", "speculative"}
    bad = runner.invoke(main, ["report", str(plain_report), "--study", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "missing.json" in bad.output
    bad = runner.invoke(main, ["run", "--tasks", "medical-wdbc", "--studies", "speculative,nope",
                               "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "unknown study 'nope'" in bad.output and "compression" in bad.output


def test_version_1_reports_are_read_without_studies_and_other_versions_are_refused(tmp_path):
    # a version-2 report as the version-2 code wrote it (tests/fixtures), its studies removed: version 1
    d = json.loads((Path(__file__).parent / "fixtures" / "report_v2.json").read_text())
    del d["studies"]
    old = tmp_path / "v1.json"
    old.write_text(json.dumps({**d, "schema": "snmfm.report/1"}))
    assert load_report(old).studies == []
    rep = report_from_results(old, tmp_path / "v3", studies=[_write(tmp_path / "c.json", cascade_output())])
    assert json.loads((tmp_path / "v3" / "report.json").read_text())["schema"] == "snmfm.report/3"
    assert [e["kind"] for e in rep.studies] == ["cascade"]
    future = tmp_path / "v9.json"
    future.write_text(json.dumps({**d, "schema": "snmfm.report/9"}))
    with pytest.raises(ValueError, match=r"'snmfm.report/9', expected 'snmfm.report/3'"):
        load_report(future)


def test_studies_run_by_the_main_job_record_their_settings_and_keep_stdout_clean(monkeypatch, capsys):
    from eval import study_runs
    from eval.benchmarks import bench_compress, bench_speculative

    def fake(data):
        def main(argv):
            print("a table the benchmark prints")
            fake.argv = argv
            return data
        return main
    monkeypatch.setattr(bench_speculative, "main", fake(speculative_output()))
    entries, wall = study_runs.run_studies("speculative")
    assert capsys.readouterr().out == ""  # `snmfm run --json` prints one JSON object on stdout
    assert fake.argv == study_runs.QUICK_STUDIES["speculative"]["argv"]
    (e,) = entries
    assert e["source"]["origin"] == "run" and "--quick" in e["source"]["invocation"]
    assert e["settings"]["quick"] is True and set(wall) == {"speculative"}
    monkeypatch.setattr(bench_compress, "main", fake(compression_output()))
    (e,) = study_runs.run_studies(["compression"])[0]
    assert fake.argv[0] == "--out" and fake.argv[2:] == study_runs.QUICK_STUDIES["compression"]["argv"]
    assert e["settings"]["prune"]["recovery_steps"] == 100


def test_load_study_file_detects_each_kind(tmp_path):
    for kind, data in (("speculative", speculative_output()), ("cascade", cascade_output()),
                       ("cooptimize", cooptimize_output()), ("compression", compression_output())):
        (e,) = load_study_file(_write(tmp_path / f"{kind}.json", data))
        assert e["kind"] == kind and e["data"] == json.loads(json.dumps(data))


def test_main_job_adds_its_studies_to_the_report_or_writes_nothing_when_one_fails(tmp_path, monkeypatch, fast_plots):
    from report_fixtures import task

    import eval.pipeline
    from eval import run_main, study_runs
    # the tasks are measured elsewhere (tests/test_pipeline.py); here they are synthetic
    monkeypatch.setattr(eval.pipeline, "run_task", lambda name, *a, **k: task(name))
    kw = {"tasks": ["medical-wdbc"], "variants": False, "progress": False}
    monkeypatch.setitem(study_runs.RUNNERS, "cascade",
                        lambda seed, say: [study_runs._entry("cascade", cascade_output(), "pytest")])
    results = run_main(studies="cascade", out_dir=tmp_path / "rep", **kw)
    assert results.options["studies"] == ["cascade"] and "study.cascade" in results.provenance["stage_wall_s"]
    assert [e["kind"] for e in load_report(tmp_path / "rep").studies] == ["cascade"]
    assert "## Study: cascades" in (tmp_path / "rep" / "report.md").read_text()

    def boom(seed, say):
        raise RuntimeError("study failed")
    monkeypatch.setitem(study_runs.RUNNERS, "cascade", boom)
    with pytest.raises(RuntimeError, match="study failed"):
        run_main(studies="cascade", out_dir=tmp_path / "fresh", **kw)
    assert not (tmp_path / "fresh").exists() and _no_temporary_folders(tmp_path)
