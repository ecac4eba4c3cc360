"""Writing a report folder, and re-rendering one from a saved report.json (`snmfm report RESULTS`),
optionally adding study outputs to it (`snmfm report RESULTS --study FILE.json`).

A report folder holds report.json (schema "snmfm.report/3": the measured results, the derived
comparison and the studies added to it; versions 1 and 2 are still read), report.md, report.html (self-contained) and the PNG plots
(study plots too).  It is written into a temporary sibling folder and renamed into place at the
end, so a failure never leaves a partial report behind, and an existing report folder is replaced
only by a complete one.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from eval.compare import Report, compare
from eval.plots import render_plots
from eval.report_doc import build_document
from eval.report_html import render_html
from eval.report_md import render_markdown
from eval.results import Results, read_report_json
from eval.studies import load_study_file, merge_entries
from eval.validate import validate_report

REPORT_FILES = ("report.json", "report.md", "report.html")


def _replace_dir(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_report(report: Report, out_dir) -> Path:
    """Write report.json, report.md, report.html and the PNG plots into `out_dir` (replacing an
    earlier report there); returns the folder.  Refuses a non-empty folder that is not a report."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"report folder {out} exists and is a file; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").exists():
        raise FileExistsError(f"{out} exists, is not empty and holds no report.json: refusing to replace "
                              "it; choose another output folder")
    d = report.to_dict()
    validate_report(d, source="the report being written")
    text = json.dumps(d, indent=1, allow_nan=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a report folder is meant to be shared
    try:
        (tmp / "report.json").write_text(text)
        plots = render_plots(report)
        files = {}
        for name, png in plots.items():
            (tmp / f"{name}.png").write_bytes(png)
            files[name] = f"{name}.png"
        doc = build_document(report)
        (tmp / "report.md").write_text(render_markdown(doc, files))
        (tmp / "report.html").write_text(render_html(doc, plots))
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_report(path) -> Report:
    """The Report of a saved report.json (or report folder): its results, compared again with the
    tolerance it was written with, and its studies."""
    d = read_report_json(path)
    results = Results.from_dict(d["results"])
    return compare(results, tolerance=d["tolerance"], studies=d["studies"]["entries"])


def report_from_results(path, out_dir=None, tolerance: float | None = None, studies=()) -> Report:
    """Re-render md/html/plots (and report.json) from a saved report.json into `out_dir` (default:
    the folder holding it), adding the study outputs in the files `studies` (eval.studies: an
    entry of the same kind and key replaces the report's own).  Every file is read and checked
    before anything is written.  Missing file -> FileNotFoundError; wrong schema, or a study file
    that is corrupt or not a study's output -> ValueError."""
    p = Path(path)
    d = read_report_json(p)
    results = Results.from_dict(d["results"])
    added = [e for f in studies for e in load_study_file(f)]
    report = compare(results, tolerance=d["tolerance"] if tolerance is None else tolerance,
                     studies=merge_entries(d["studies"]["entries"], added))
    target = Path(out_dir) if out_dir is not None else (p if p.is_dir() else p.parent)
    write_report(report, target)
    return report
