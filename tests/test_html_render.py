"""report.html renders in headless Chromium at 1400 px without console errors, with no text under
9 px, no table wider than the page and plots shown large enough that their smallest text stays
above 9 px (skipped without Chromium)."""
from __future__ import annotations

import copy
import html as _html
import json
import os
import re
import shutil
import subprocess

import pytest
from report_fixtures import hw, synthetic_results, task

from eval import compare, write_report
from eval.figures import FONT_PT

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,3000")
# Measured in the page after load: the smallest font of any element holding text, tables that
# overflow their box (scroll), the page's own width, and each image's display scale.
PROBE = """<script>
window.addEventListener('load', () => {
  let minPx = 1e9, minWhat = '';
  for (const el of document.querySelectorAll('body *')) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const px = parseFloat(getComputedStyle(el).fontSize);
    if (px < minPx) { minPx = px; minWhat = el.tagName + ': ' + el.textContent.slice(0, 40); }
  }
  const wide = [...document.querySelectorAll('table')].filter(t => t.scrollWidth > t.clientWidth + 1)
      .map(t => t.querySelector('th').textContent + ' (' + t.scrollWidth + ' > ' + t.clientWidth + ' px)');
  const scale = [...document.querySelectorAll('img')].map(i => i.clientWidth / i.naturalWidth);
  document.body.setAttribute('data-probe', JSON.stringify({minPx, minWhat, wide, scale,
      pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth}));
});
</script>"""


def _chromium() -> str | None:
    env = os.environ.get("SNMFM_CHROMIUM")
    for c in ((env,) if env else ()) + CANDIDATES:
        if c and os.path.exists(c):
            return c
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium():
    c = _chromium()
    if c is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium); install one (apt-get install chromium) "
                    "or set SNMFM_CHROMIUM to check that report.html renders")
    return c


def _big_results():
    """Four tasks on four accelerators (two dense): the widest tables and plot grids a run makes."""
    r = synthetic_results()
    r.tasks += [task("synthetic-vqa-long-name", "vqa", tokens=4), task("synthetic-embed", "embed")]
    r.options["tasks"] = [t.task for t in r.tasks]
    for name, traced, scale in (("loihi2-graded-test", True, 0.4), ("dense-second-baseline", False, 3.0)):
        r.options["hardware"][name] = {"requested": name, "config": {}, "kind": "test", "needs_trace": traced}
        r.options["accelerators"].append(name)
        for t in r.tasks:
            for v in t.variants:
                h = copy.deepcopy(hw("neuromorphic" if traced else "conventional", scale))
                h.accelerator = name
                v.hw[name] = h
    return r


def _run(chromium, args, tmp_path):
    cmd = [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_html_report_renders_in_headless_chromium_without_console_errors(chromium, tmp_path):
    out = tmp_path / "report"
    write_report(compare(_big_results()), out)
    shot = tmp_path / "shot.png"
    p = _run(chromium, [f"--screenshot={shot}", (out / "report.html").as_uri()], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    console = [line for line in p.stderr.splitlines() if re.search(r"CONSOLE", line)]
    assert not console, "console messages while rendering report.html:\n" + "\n".join(console)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_html_report_is_readable_at_1400_px(chromium, tmp_path):
    out = tmp_path / "report"
    write_report(compare(_big_results()), out)
    probe = out / "probe.html"
    probe.write_text((out / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    p = _run(chromium, ["--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r'data-probe="([^"]*)"', p.stdout)
    assert m, p.stderr[-2000:]
    d = json.loads(_html.unescape(m.group(1)))
    assert d["viewport"] == 1400 and d["pageWidth"] <= 1400, d  # nothing wider than the page
    assert d["minPx"] >= 9, f"text under 9 px: {d['minWhat']} ({d['minPx']} px)"
    assert not d["wide"], f"tables wider than the page: {d['wide']}"
    # plot text is at least FONT_PT - 1 points at 100 dpi; shown at `scale` of its size it must stay >= 9 px
    smallest_px = (FONT_PT - 1) * 100 / 72
    assert len(d["scale"]) >= 4 and min(d["scale"]) * smallest_px >= 9, d["scale"]
