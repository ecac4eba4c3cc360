"""snmfm._build_info: a report names the code that made it, from a checkout or an installed wheel."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import snmfm._build_info as bi

ROOT = Path(__file__).resolve().parent.parent


def _head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_checkout_names_its_revision(monkeypatch, tmp_path):
    monkeypatch.setattr(bi, "INFO_FILE", ROOT / "snmfm" / "no-such-file.json")
    bi.build_info.cache_clear()
    try:
        info = bi.build_info()
    finally:
        bi.build_info.cache_clear()
    assert info["source"] == "git checkout" and info["git_revision"] == _head()
    assert isinstance(info["git_dirty"], bool)


def test_an_installed_copy_reads_the_revision_recorded_at_build(monkeypatch, tmp_path):
    f = tmp_path / "_build_info.json"
    f.write_text(json.dumps({"version": "9.9", "git_revision": "abc123", "git_dirty": False}))
    monkeypatch.setattr(bi, "INFO_FILE", f)
    bi.build_info.cache_clear()
    try:
        assert bi.build_info() == {"version": "9.9", "git_revision": "abc123", "git_dirty": False,
                                   "source": "recorded at build"}
    finally:
        bi.build_info.cache_clear()


def test_building_the_package_records_the_revision(tmp_path):
    """setup.py's build_py (what a wheel build runs) writes snmfm/_build_info.json."""
    p = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    info = json.loads((tmp_path / "snmfm" / "_build_info.json").read_text())
    assert info["git_revision"] == _head() and info["version"]
    assert (tmp_path / "snmfm" / "_build_info.py").is_file()
