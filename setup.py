"""Build hook: a wheel records the git revision it was built from (snmfm/_build_info.json), so an
installed copy still names its revision (snmfm._build_info.build_info).  Everything else about
the package is in pyproject.toml."""
import json
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithInfo(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the revision from its checkout at run time
        sys.path.insert(0, str(ROOT / "snmfm"))
        try:
            from _build_info import git_state  # the module itself, without importing snmfm (torch)
        finally:
            sys.path.pop(0)
        info = {"version": self.distribution.get_version(), **(git_state(ROOT) or
                                                                {"git_revision": None, "git_dirty": None})}
        out = Path(self.build_lib) / "snmfm" / "_build_info.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(info))


setup(cmdclass={"build_py": BuildPyWithInfo})
