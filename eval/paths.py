"""Output paths checked before any compute: a job that writes its results after minutes of work
must not find out only then that it cannot write them.

`check_out_dir` (a report or results folder) and `check_out_file` (the base path of files such as
OUT.json + OUT.safetensors) raise `OutputPathError` (a ValueError: the CLI turns it into exit code
2 and one line) when the path lies under an existing file, when the nearest existing folder cannot
be written (read-only folder or file system), or -- for a folder -- when it would replace something
the caller did not ask to replace.  They create nothing: writability is probed with a temporary
folder that is removed again.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPORT_MARKER = "report.json"


class OutputPathError(ValueError):
    """An output path that cannot be written, or would silently replace earlier results."""


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_location(path: Path, what: str) -> None:
    """`path` (existing or not) can be written: no file among its parents, and the folder that
    would receive it (itself when it is an existing folder, else its nearest existing parent)
    accepts new entries."""
    if path.is_dir():
        where = path
    else:
        where = _nearest_existing(path.parent)
        if not where.is_dir():
            raise OutputPathError(f"{what} {path}: {where} is a file, not a folder; choose another path")
    try:
        probe = tempfile.mkdtemp(prefix=".snmfm-write-check-", dir=where)
    except OSError as e:
        raise OutputPathError(f"{what} {path}: {where} is not writable ({e.strerror or e}); "
                              "choose a folder you can write to") from None
    os.rmdir(probe)


def check_out_dir(path, *, force: bool = False, marker: str = REPORT_MARKER,
                  what: str = "output folder") -> Path:
    """Check a folder that a job will write (and replace as a whole) at its end.

    Refused: a path that is a file or lies under one; a location that is not writable; an existing
    non-empty folder without `marker` (it is not an earlier output: never replaced); an existing
    earlier output (holding `marker`) unless `force`.  marker=None: a folder the job adds files
    to (only the location is checked)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{what} {out} is a file, not a folder; choose another path")
    _check_writable_location(out, what)
    if marker is not None and out.is_dir() and any(out.iterdir()):
        if not (out / marker).exists():
            raise OutputPathError(f"{what} {out} is not empty and holds no {marker}: refusing to replace "
                                  "it; choose a new or empty folder")
        if not force:
            raise OutputPathError(f"{what} {out} already holds a report ({marker}); pass --force to "
                                  "replace it, or choose another folder")
    return out


def check_out_file(base, *, what: str = "output") -> Path:
    """Check the base path of output files (e.g. BASE.json + BASE.safetensors): its folder can be
    created and written, and BASE is not an existing folder."""
    out = Path(base)
    if out.is_dir():
        raise OutputPathError(f"{what} {out} is a folder; give a file base path such as {out / 'model'}")
    _check_writable_location(out, what)
    return out


def out_option_value(args: list[str], name: str = "--out") -> str | None:
    """The value of `--out` among raw arguments passed on to another parser (`snmfm bench`)."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None
