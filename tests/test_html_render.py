"""report.html renders in headless Chromium without console errors (skipped without Chromium)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from report_fixtures import synthetic_results

from eval import compare, write_report

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def _chromium() -> str | None:
    env = os.environ.get("SNMFM_CHROMIUM")
    for c in ((env,) if env else ()) + CANDIDATES:
        if c and os.path.exists(c):
            return c
    return shutil.which("chromium")


def test_html_report_renders_in_headless_chromium_without_console_errors(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium); install one (apt-get install chromium) "
                    "or set SNMFM_CHROMIUM to check that report.html renders")
    out = tmp_path / "report"
    write_report(compare(synthetic_results()), out)
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1280,2000", f"--screenshot={shot}", (out / "report.html").as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    console = [line for line in p.stderr.splitlines() if re.search(r"CONSOLE", line)]
    assert not console, "console messages while rendering report.html:\n" + "\n".join(console)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
