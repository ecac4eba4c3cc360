"""Which snmfm this is: package version and git revision, also for an installed copy.

A wheel built from a git checkout carries `snmfm/_build_info.json`, written at build time by
setup.py (the revision the wheel was built from).  An editable install or a source checkout has
no such file: the revision is read from the checkout itself (read-only `git` calls).  Reports
record `build_info()` in their provenance, so a report always names the code that made it."""
from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

INFO_FILE = Path(__file__).resolve().parent / "_build_info.json"


def git_state(root: Path) -> dict | None:
    """{"git_revision", "git_dirty"} of the git checkout holding `root`, or None."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"git_revision": commit, "git_dirty": bool(status.strip())} if commit else None


def _version() -> str | None:
    from importlib import metadata
    try:
        return metadata.version("snmfm")
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def build_info() -> dict:
    """{"version", "git_revision", "git_dirty", "source"}: source says where the revision came
    from ("recorded at build" in a wheel, "git checkout" for a source tree or editable install,
    "unknown" otherwise)."""
    if INFO_FILE.is_file():
        try:
            d = json.loads(INFO_FILE.read_text())
            return {"version": d.get("version") or _version(), "git_revision": d.get("git_revision"),
                    "git_dirty": d.get("git_dirty"), "source": "recorded at build"}
        except (OSError, json.JSONDecodeError):
            pass
    root = INFO_FILE.parent.parent
    if (root / ".git").exists():
        g = git_state(root)
        if g:
            return {"version": _version(), **g, "source": "git checkout"}
    return {"version": _version(), "git_revision": None, "git_dirty": None, "source": "unknown"}
